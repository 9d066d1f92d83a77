//! Sender verification in process: DKIM (RFC 6376, RSA and ed25519 per
//! RFC 8463), SPF (RFC 7208), DMARC (RFC 7489 / DMARCbis tree walk) and
//! ARC (RFC 8617) against DNS, with mail-auth. The pipeline runs it before
//! extraction when `[sender_auth] mode` is `verify` or `either`, and hands
//! the result to `extract::auth`, which applies the mode's rule.
//!
//! - Takes: the raw bytes of one message (as stored) and, once, the
//!   `[sender_auth]` settings.
//! - Gives: a [`Verification`]: each DKIM signature's result, SPF, DMARC
//!   (with what aligned), and the ARC chain with the sealer whose verdict
//!   was read. It decides nothing about money.
//! - Never: trusts a header the sender could write. The client IP for SPF
//!   comes only from the topmost `Received` written `by` one of our
//!   configured servers (`received_by`), the envelope sender only from the
//!   topmost `Return-Path` (written at final delivery). A DKIM signature
//!   with an `l=` body length never counts (content could have been
//!   appended after the signed part): mail-auth refuses every `l=`
//!   signature, and refundd checks again that a passing one covers the
//!   whole body.
//! - Fails: never as an error. A DNS error or timeout is `temperror`; the
//!   whole message has a time budget (`timeout_ms`), after which what is
//!   unfinished is `temperror` and `timed_out` is set. `temperror` is never
//!   a pass: the case goes to review.
//!
//! DNS answers are cached, parsed, until their TTL ends ([`cache`]);
//! lookups that failed are not cached. [`stub_dns`] is a loopback DNS
//! server for tests and benchmarks.

pub mod cache;
pub mod stub_dns;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mail_auth::common::crypto::Algorithm;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MX, MessageAuthenticator,
    Parameters, RecordSet, SpfOutput, SpfResult, Txt,
};

use crate::domain::{AuthResult, DkimCheck, Verification};
use crate::extract::config::SenderAuthConfig;
use crate::parse::{auth_results, received};
use cache::TtlCache;

/// Why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `[sender_auth] resolver` is not `IP:PORT`.
    #[error("[sender_auth] resolver `{0}` is not IP:PORT")]
    BadResolver(String),
    /// The system's resolver configuration could not be read or used.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
}

impl VerifyError {
    /// Whether retrying could help: a resolver configuration that could not
    /// be read may be readable later; a bad setting will not change.
    pub fn is_transient(&self) -> bool {
        matches!(self, VerifyError::Resolver(_))
    }
}

/// The parsed-answer caches, one per record kind.
struct Caches {
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

/// Verifies messages; built once from `[sender_auth]` and shared.
pub struct SenderVerifier {
    authenticator: MessageAuthenticator,
    caches: Caches,
    received_by: Vec<String>,
    trusted_sealers: Vec<String>,
    budget: Duration,
}

/// The caches handed to every mail-auth call.
type Cached<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

/// Which steps finished before the budget ran out.
#[derive(Default)]
struct Done {
    dkim: bool,
    arc: bool,
    spf: bool,
    dmarc: bool,
}

impl SenderVerifier {
    /// The verifier `config` asks for: `None` in `headers` mode (no DNS).
    pub fn for_config(config: &SenderAuthConfig) -> Result<Option<SenderVerifier>, VerifyError> {
        if config.verifies() {
            Self::new(config).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A verifier asking `config.resolver`, or the system's resolvers.
    pub fn new(config: &SenderAuthConfig) -> Result<SenderVerifier, VerifyError> {
        crate::act::polar::install_crypto_provider();
        let budget = Duration::from_millis(config.timeout_ms.max(1));
        let authenticator = match &config.resolver {
            Some(addr) => {
                let addr: std::net::SocketAddr = addr
                    .parse()
                    .map_err(|_| VerifyError::BadResolver(addr.clone()))?;
                let connection = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let server = NameServerConfig::new(
                    addr.ip(),
                    true,
                    vec![
                        connection(ConnectionConfig::udp()),
                        connection(ConnectionConfig::tcp()),
                    ],
                );
                MessageAuthenticator::new(
                    ResolverConfig::from_name_servers(vec![server]),
                    resolver_options(budget),
                )
            }
            None => mail_auth::hickory_resolver::system_conf::read_system_conf().and_then(
                |(conf, mut opts)| {
                    let ours = resolver_options(budget);
                    opts.timeout = ours.timeout;
                    opts.attempts = ours.attempts;
                    opts.edns0 = true;
                    MessageAuthenticator::new(conf, opts)
                },
            ),
        }
        .map_err(|e| VerifyError::Resolver(e.to_string()))?;
        let lower = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let entries = config.dns_cache_entries;
        Ok(SenderVerifier {
            authenticator,
            caches: Caches {
                txt: TtlCache::new(entries),
                mx: TtlCache::new(entries),
                ipv4: TtlCache::new(entries),
                ipv6: TtlCache::new(entries),
                ptr: TtlCache::new(entries),
            },
            received_by: lower(&config.received_by),
            trusted_sealers: lower(&config.trusted_arc_sealers),
            budget,
        })
    }

    /// Parsed TXT answers currently cached (DKIM keys, DMARC, SPF).
    pub fn cached_txt_answers(&self) -> usize {
        self.caches.txt.len()
    }

    /// Verifies one message within the time budget.
    pub async fn verify(&self, raw: &[u8]) -> Verification {
        let mut out = Verification::default();
        let mut done = Done::default();
        let finished = tokio::time::timeout(self.budget, self.run(raw, &mut out, &mut done))
            .await
            .is_ok();
        if !finished {
            out.timed_out = true;
            if !done.dkim {
                out.dkim.clear();
            }
            for (step_done, result) in [
                (done.arc, &mut out.arc),
                (done.spf, &mut out.spf),
                (done.dmarc, &mut out.dmarc),
            ] {
                if !step_done {
                    *result = AuthResult::Temperror;
                }
            }
        }
        out
    }

    fn params<'x, P>(&'x self, params: P) -> Cached<'x, P> {
        Parameters::new(params)
            .with_txt_cache(&self.caches.txt)
            .with_mx_cache(&self.caches.mx)
            .with_ipv4_cache(&self.caches.ipv4)
            .with_ipv6_cache(&self.caches.ipv6)
            .with_ptr_cache(&self.caches.ptr)
    }

    async fn run(&self, raw: &[u8], out: &mut Verification, done: &mut Done) {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            done.dkim = true;
            done.arc = true;
            done.spf = true;
            done.dmarc = true;
            out.dmarc = AuthResult::Permerror;
            return;
        };
        let body_len = raw.len().saturating_sub(message.body_offset as usize) as u64;

        let dkim = self.authenticator.verify_dkim(self.params(&message)).await;
        let mut counted: Vec<DkimOutput<'_>> = Vec::new();
        for output in &dkim {
            let (check, counts) = dkim_check(output, body_len);
            out.dkim.push(check);
            if counts {
                counted.push(output.clone());
            }
        }
        done.dkim = true;

        let arc = self.authenticator.verify_arc(self.params(&message)).await;
        out.arc = dkim_result(arc.result());
        self.read_seal(&arc, out);
        done.arc = true;

        let envelope = self.envelope(&message);
        let spf = match &envelope {
            Some(env) => {
                out.client_ip = Some(env.ip.to_string());
                let spf = self
                    .authenticator
                    .verify_spf(self.params(SpfParameters::verify_mail_from(
                        env.ip,
                        &env.helo,
                        &env.host,
                        &env.mail_from,
                    )))
                    .await;
                out.spf = spf_result(spf.result());
                out.spf_domain = Some(spf.domain().to_owned()).filter(|d| !d.is_empty());
                spf
            }
            None => SpfOutput::default(),
        };
        done.spf = true;

        let mail_from_domain = envelope
            .as_ref()
            .map(|e| {
                e.mail_from
                    .rsplit_once('@')
                    .map_or(e.helo.clone(), |(_, d)| d.to_owned())
            })
            .unwrap_or_default();
        let dmarc = self
            .authenticator
            .verify_dmarc(self.params(DmarcParameters::new(
                &message,
                &counted,
                &mail_from_domain,
                &spf,
            )))
            .await;
        out.dmarc = dmarc_result(&dmarc.result());
        out.dmarc_domain = Some(dmarc.domain().to_ascii_lowercase()).filter(|d| !d.is_empty());
        out.dmarc_policy = dmarc
            .dmarc_record()
            .map(|_| policy_name(dmarc.policy()).to_owned());
        out.aligned_by = if *dmarc.dkim_result() == DmarcResult::Pass {
            Some("dkim".into())
        } else if *dmarc.spf_result() == DmarcResult::Pass {
            Some("spf".into())
        } else {
            None
        };
        done.dmarc = true;
    }

    /// The sealer whose recorded results count: the newest trusted one
    /// when the chain validates, else the newest (shown, never counted).
    fn read_seal(&self, arc: &mail_auth::ArcOutput<'_>, out: &mut Verification) {
        let sets = arc.sets();
        let trusted = |d: &str| {
            let d = d.to_ascii_lowercase();
            self.trusted_sealers.contains(&d)
        };
        let chosen = sets
            .iter()
            .rev()
            .find(|s| trusted(&s.seal.header.d))
            .or_else(|| sets.last());
        let Some(set) = chosen else { return };
        out.arc_sealer = Some(set.seal.header.d.to_ascii_lowercase());
        out.arc_trusted = trusted(&set.seal.header.d);
        let results = auth_results::parse_arc(&String::from_utf8_lossy(set.results.value));
        if let Some(dmarc) = results.method("dmarc") {
            out.arc_dmarc = Some(dmarc.result.clone());
            out.arc_header_from = dmarc.header_from.clone();
        }
    }

    /// The SMTP envelope as OUR server recorded it: client IP and HELO from
    /// the topmost `Received` written by one of `received_by`, the envelope
    /// sender from the topmost `Return-Path`.
    fn envelope(&self, message: &AuthenticatedMessage<'_>) -> Option<Envelope> {
        if self.received_by.is_empty() {
            return None;
        }
        let text = |v: &[u8]| {
            String::from_utf8_lossy(v)
                .replace(['\r', '\n'], "")
                .trim()
                .to_owned()
        };
        let ours = message
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"received"))
            .map(|(_, value)| received::parse(&text(value)))
            .find(|r| {
                r.by.as_ref()
                    .is_some_and(|by| self.received_by.contains(by))
            })?;
        let mail_from = message
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(b"return-path"))
            .map(|(_, value)| {
                text(value)
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let helo = ours.helo.unwrap_or_default();
        // A null reverse-path: SPF checks the HELO identity (RFC 7208 §2.4).
        let mail_from = if mail_from.is_empty() {
            format!("postmaster@{helo}")
        } else {
            mail_from
        };
        Some(Envelope {
            ip: ours.client_ip?,
            helo,
            host: ours.by.unwrap_or_default(),
            mail_from,
        })
    }
}

/// What our server saw of the SMTP session.
struct Envelope {
    ip: IpAddr,
    helo: String,
    host: String,
    mail_from: String,
}

/// Resolver options for a per-message budget: one try per server, each
/// given at most half the budget, EDNS for large DKIM keys.
fn resolver_options(budget: Duration) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = (budget / 2).clamp(Duration::from_millis(50), Duration::from_secs(3));
    opts.attempts = 1;
    opts.edns0 = true;
    opts
}

/// One signature for the record, and whether DMARC may count it.
fn dkim_check(output: &DkimOutput<'_>, body_len: u64) -> (DkimCheck, bool) {
    let signature = output.signature();
    let mut check = DkimCheck {
        domain: signature
            .map(|s| s.d.to_ascii_lowercase())
            .unwrap_or_default(),
        selector: signature.map(|s| s.s.clone()).unwrap_or_default(),
        algorithm: signature
            .map(|s| algorithm_name(s.a).to_owned())
            .unwrap_or_default(),
        result: dkim_result(output.result()),
        reason: dkim_reason(output.result()),
    };
    // DMARC reads passes and temperrors (a temperror on an aligned
    // signature makes DMARC temperror, RFC 7489 §6.6.2, never a pass).
    let mut counts = matches!(check.result, AuthResult::Pass | AuthResult::Temperror);
    // RFC 6376 §8.2: `l=` lets anyone append content after the signed
    // length; such a signature proves nothing about what we read.
    if let Some(s) = signature
        && check.result == AuthResult::Pass
        && s.l > 0
        && s.l < body_len
    {
        counts = false;
        check.result = AuthResult::Neutral;
        check.reason = Some(format!(
            "l= signs {} of {body_len} body bytes; not counted",
            s.l
        ));
    }
    (check, counts)
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

fn dkim_result(result: &DkimResult) -> AuthResult {
    match result {
        DkimResult::Pass => AuthResult::Pass,
        DkimResult::Neutral(_) => AuthResult::Neutral,
        DkimResult::Fail(_) => AuthResult::Fail,
        DkimResult::PermError(_) => AuthResult::Permerror,
        DkimResult::TempError(_) => AuthResult::Temperror,
        DkimResult::None => AuthResult::None,
    }
}

fn dkim_reason(result: &DkimResult) -> Option<String> {
    match result {
        DkimResult::Pass | DkimResult::None => None,
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => Some(e.to_string()),
    }
}

fn spf_result(result: SpfResult) -> AuthResult {
    match result {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::Softfail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::Temperror,
        SpfResult::PermError => AuthResult::Permerror,
        SpfResult::None => AuthResult::None,
    }
}

fn dmarc_result(result: &DmarcResult) -> AuthResult {
    match result {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::Temperror,
        DmarcResult::PermError(_) => AuthResult::Permerror,
        DmarcResult::None => AuthResult::None,
    }
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::None | Policy::Unspecified => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
    }
}
