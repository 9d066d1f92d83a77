//! Real mail servers for the integration tests: a Dovecot IMAP server and
//! an aiosmtpd SMTP sink (`smtp_sink.py`), each started per test in its own
//! temp dir on a free loopback port, polled until ready (never slept on),
//! and killed when dropped. See /work/shared/MAILSTACK.md for the measured
//! facts behind the Dovecot config.

use anyhow::{Context, Result, bail, ensure};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use refundd::ingest::imap::{ImapConfig, ImapStream, ImapTls};
use refundd::reply::smtp::{SmtpConfig, SmtpTls};

/// The one user every Dovecot instance knows.
pub const USER: &str = "refunds@example.test";
/// Its password (distinctive, so that a test can search logs for it).
pub const PASSWORD: &str = "imap-pw-Q7x3Vb9Lk2";

const READY_WITHIN: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(20);

/// A free loopback port (bound, read, released: another process could take
/// it in between, which is rare enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A temp dir Dovecot's `mail` user can traverse (`mktemp -d` makes 0700).
pub fn open_tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Kills a process group we started (its leader's pid), and reaps the leader.
pub fn kill_group(child: &mut Child) {
    let pgid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    if !matches!(killed, Ok(status) if status.success()) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The uid and gid of the `mail` user (from /etc/passwd).
pub fn mail_ids() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("mail:"))
        .context("no mail user")?;
    let fields: Vec<&str> = line.split(':').collect();
    Ok((fields[2].parse()?, fields[3].parse()?))
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with `openssl`.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCert {
    /// Writes `cert.pem` and `key.pem` into `dir`.
    pub fn create(dir: &Path) -> Result<TestCert> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
            // An end-entity certificate: webpki refuses a CA one as a server's.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        ensure!(status.success(), "openssl req failed");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
        Ok(TestCert { cert, key })
    }
}

/// A folder's state as STATUS reports it (RFC 3501 §6.3.10, RFC 7162 §3.1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub recent: u32,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub unseen: Option<u32>,
    pub highest_modseq: Option<u64>,
}

/// A running Dovecot with one user, `refunds@example.test`.
pub struct Dovecot {
    dir: tempfile::TempDir,
    /// The plain (or STARTTLS, with TLS on) IMAP port.
    pub port: u16,
    /// The implicit-TLS port, when started with TLS.
    pub tls_port: Option<u16>,
    /// The CA file clients must trust, when started with TLS.
    pub ca_file: Option<PathBuf>,
    child: Option<Child>,
}

impl Dovecot {
    /// Starts a Dovecot without TLS.
    pub fn start() -> Result<Dovecot> {
        Self::launch(false, None)
    }

    /// Starts a Dovecot with a self-signed certificate: STARTTLS on `port`,
    /// implicit TLS on `tls_port`.
    pub fn start_tls() -> Result<Dovecot> {
        Self::launch(true, None)
    }

    /// Starts a Dovecot that also accepts `AUTHENTICATE XOAUTH2`, asking
    /// `introspection_url` (RFC 7662, `POST token=…`) whether a token is
    /// active, as Gmail's and Microsoft 365's servers check theirs.
    // Used by the XOAUTH2 test only; benches/daemon_drain.rs includes this file.
    #[allow(dead_code)]
    pub fn start_oauth2(introspection_url: &str) -> Result<Dovecot> {
        Self::launch(false, Some(introspection_url))
    }

    fn launch(tls: bool, oauth2: Option<&str>) -> Result<Dovecot> {
        let dir = open_tempdir("refundd-dovecot-")?;
        let root = dir.path();
        let mail = root.join("mail");
        std::fs::create_dir(&mail)?;
        let (uid, gid) = mail_ids()?;
        std::os::unix::fs::chown(&mail, Some(uid), Some(gid))?;
        std::fs::write(
            root.join("users"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )?;

        let port = free_port();
        let (tls_port, ca_file, ssl) = if tls {
            let cert = TestCert::create(root)?;
            let tls_port = free_port();
            let ssl = format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                cert.cert.display(),
                cert.key.display()
            );
            (Some(tls_port), Some(cert.cert), ssl)
        } else {
            (None, None, "ssl = no\n".to_owned())
        };
        let imaps = match tls_port {
            Some(p) => format!("  inet_listener imaps {{\n    port = {p}\n    ssl = yes\n  }}\n"),
            None => String::new(),
        };
        let (mechanisms, oauth2_passdb) = match oauth2 {
            Some(url) => {
                std::fs::write(
                    root.join("oauth2.conf.ext"),
                    format!(
                        "introspection_mode = post\nintrospection_url = {url}\n\
                         username_attribute = username\nactive_attribute = active\n\
                         active_value = true\nforce_introspection = yes\n"
                    ),
                )?;
                (
                    "plain login xoauth2",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n  args = {}\n}}\n",
                        root.join("oauth2.conf.ext").display()
                    ),
                )
            }
            None => ("plain login", String::new()),
        };
        let instance = root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("refundd-test");
        let d = root.display();
        let config = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = {instance}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = mail
default_internal_group = mail
default_login_user = mail
first_valid_uid = 1
mail_uid = mail
mail_gid = mail
{ssl}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
{oauth2_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={d}/mail/%d/%n
}}
mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
{imaps}}}
service anvil {{
  chroot =
}}
"#
        );
        std::fs::write(root.join("dovecot.conf"), config)?;
        let mut dovecot = Dovecot {
            dir,
            port,
            tls_port,
            ca_file,
            child: None,
        };
        dovecot.run()?;
        Ok(dovecot)
    }

    fn run(&mut self) -> Result<()> {
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that stop() ends every child too.
            .process_group(0)
            .spawn()
            .context("cannot run dovecot (apt-get install dovecot-imapd)")?;
        self.child = Some(child);
        let log = self.dir.path().join("dovecot.log");
        wait_for_greeting(self.port, b"* OK").with_context(|| {
            format!(
                "dovecot did not greet; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Kills the server (all its processes, at once: a crash, as far as
    /// clients can tell). The data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.run()
    }

    /// Stops it as an operator would (SIGTERM to the master, which ends its
    /// children and releases mailbox locks), then starts it again. A
    /// SIGKILLed Dovecot leaves dotlocks that stall the next delivery until
    /// they go stale (minutes): real, but not what a restart test is about.
    pub fn restart_gracefully(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        self.run()
    }

    /// The on-disk Maildir++ directory of the test user's `folder` (one
    /// level, created over IMAP first), for writing a backlog straight into
    /// its `new/` as a local delivery agent would.
    // Used by benches/daemon_drain.rs, which includes this file; no test does.
    #[allow(dead_code)]
    pub fn folder_maildir(&self, folder: &str) -> PathBuf {
        let (local, domain) = USER.split_once('@').unwrap_or((USER, ""));
        let maildir = self
            .dir
            .path()
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir");
        if folder.eq_ignore_ascii_case("INBOX") {
            maildir
        } else {
            maildir.join(format!(".{folder}"))
        }
    }

    /// Client settings for this server: plain text, the test user.
    pub fn config(&self) -> ImapConfig {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            tls: ImapTls::None,
            username: USER.into(),
            password: Some(PASSWORD.into()),
            command_timeout: 10,
            ..ImapConfig::default()
        }
    }

    /// Appends a message to `folder` with the given INTERNALDATE, from a
    /// connection of its own (as a mail delivery would).
    pub async fn append(
        &self,
        folder: &str,
        bytes: &[u8],
        internal_date: DateTime<Utc>,
    ) -> Result<()> {
        self.append_all(folder, &[(bytes.to_vec(), internal_date, None)])
            .await
    }

    /// Appends messages to `folder` in order over one connection of its
    /// own, each with its INTERNALDATE and optional flags (`(\Seen)`).
    /// Appending does not select the folder, so every message stays
    /// `\Recent`.
    pub async fn append_all(
        &self,
        folder: &str,
        messages: &[(Vec<u8>, DateTime<Utc>, Option<&str>)],
    ) -> Result<()> {
        let mut session = self.admin_session().await?;
        for (bytes, internal_date, flags) in messages {
            let date = internal_date
                .format("\"%d-%b-%Y %H:%M:%S +0000\"")
                .to_string();
            session.append(folder, *flags, Some(&date), bytes).await?;
        }
        session.logout().await?;
        Ok(())
    }

    /// `STATUS folder (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN
    /// HIGHESTMODSEQ)`, asked without selecting the folder: what another
    /// client sees of its state.
    pub async fn status(&self, folder: &str) -> Result<FolderStatus> {
        let mut session = self.admin_session().await?;
        let mailbox = session
            .status(
                folder,
                "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)",
            )
            .await?;
        session.logout().await?;
        Ok(FolderStatus {
            messages: mailbox.exists,
            recent: mailbox.recent,
            uidnext: mailbox.uid_next,
            uidvalidity: mailbox.uid_validity,
            unseen: mailbox.unseen,
            highest_modseq: mailbox.highest_modseq,
        })
    }

    /// Every message's UID and flags in `folder` (read with EXAMINE, which
    /// changes nothing), `\Recent` left out since it depends on who asks.
    pub async fn flags(&self, folder: &str) -> Result<Vec<(u32, Vec<String>)>> {
        let mut session = self.admin_session().await?;
        session.examine(folder).await?;
        let fetches: Vec<_> = session
            .uid_fetch("1:*", "(UID FLAGS)")
            .await?
            .try_collect()
            .await?;
        let mut flags: Vec<(u32, Vec<String>)> = fetches
            .iter()
            .filter_map(|f| {
                let mut names: Vec<String> = f
                    .flags()
                    .filter(|flag| !matches!(flag, async_imap::types::Flag::Recent))
                    .map(|flag| format!("{flag:?}"))
                    .collect();
                names.sort();
                Some((f.uid?, names))
            })
            .collect();
        flags.sort();
        session.logout().await?;
        Ok(flags)
    }

    /// Runs raw IMAP commands (CREATE, DELETE, …) on a connection of its own.
    pub async fn admin(&self, commands: &[&str]) -> Result<()> {
        let mut session = self.admin_session().await?;
        for command in commands {
            session
                .run_command_and_check_ok(command)
                .await
                .with_context(|| command.to_string())?;
        }
        session.logout().await?;
        Ok(())
    }

    /// The UIDs in `folder`, as another client sees them.
    pub async fn uids(&self, folder: &str) -> Result<Vec<u32>> {
        let mut session = self.admin_session().await?;
        session.examine(folder).await?;
        let mut uids: Vec<u32> = session.uid_search("ALL").await?.into_iter().collect();
        uids.sort_unstable();
        session.logout().await?;
        Ok(uids)
    }

    /// The number of messages in `folder` flagged `\Deleted`.
    pub async fn deleted_count(&self, folder: &str) -> Result<usize> {
        let mut session = self.admin_session().await?;
        session.examine(folder).await?;
        let fetches: Vec<_> = session.fetch("1:*", "FLAGS").await?.try_collect().await?;
        let deleted = fetches
            .iter()
            .filter(|f| {
                f.flags()
                    .any(|flag| matches!(flag, async_imap::types::Flag::Deleted))
            })
            .count();
        session.logout().await?;
        Ok(deleted)
    }

    async fn admin_session(&self) -> Result<async_imap::Session<ImapStream>> {
        let tcp = ImapStream::connect("127.0.0.1", self.port).await?;
        let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
        client.read_response().await?.context("no greeting")?;
        client
            .login(USER, PASSWORD)
            .await
            .map_err(|(err, _)| err)
            .context("admin login")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `port` until a connection greets with `prefix`.
pub fn wait_for_greeting(port: u16, prefix: &[u8]) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut greeting = [0u8; 64];
            if let Ok(n) = stream.read(&mut greeting)
                && greeting[..n].starts_with(prefix)
            {
                let _ = stream.write_all(b"z LOGOUT\r\n");
                return Ok(());
            }
        }
        if start.elapsed() > READY_WITHIN {
            bail!("no greeting on port {port} within {READY_WITHIN:?}");
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// How the SMTP sink answers and protects itself.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// Answer the end of DATA of the first N messages with `fail_code`.
    pub fail_first: u32,
    /// The code for the fault plan (451 if zero).
    pub fail_code: u16,
    /// Answer `RCPT TO` for this address with `fail_code`.
    pub fail_rcpt: Option<String>,
    /// Offer STARTTLS (and require it) with a self-signed certificate.
    pub starttls: bool,
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
}

/// One message the sink stored.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: Vec<u8>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The client's port: equal for messages sent over one connection.
    pub peer_port: u16,
}

/// A running aiosmtpd that writes each message into a directory.
pub struct SmtpSinkServer {
    dir: tempfile::TempDir,
    /// The SMTP port.
    pub port: u16,
    options: SinkOptions,
    cert: Option<TestCert>,
    child: Option<Child>,
}

impl SmtpSinkServer {
    /// Starts a sink with `options`.
    pub fn start(options: SinkOptions) -> Result<SmtpSinkServer> {
        let dir = open_tempdir("refundd-smtp-")?;
        std::fs::create_dir(dir.path().join("messages"))?;
        let cert = if options.starttls {
            Some(TestCert::create(dir.path())?)
        } else {
            None
        };
        let mut sink = SmtpSinkServer {
            dir,
            port: free_port(),
            options,
            cert,
            child: None,
        };
        sink.run()?;
        Ok(sink)
    }

    fn run(&mut self) -> Result<()> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_sink.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path().join("messages"))
            .args(["--fail-first", &self.options.fail_first.to_string()])
            .args(["--fail-code", &self.fail_code().to_string()])
            .arg("--quit-log")
            .arg(self.quit_log());
        if let Some(address) = &self.options.fail_rcpt {
            command.args(["--fail-rcpt", address]);
        }
        if let Some(cert) = &self.cert {
            command
                .arg("--cert")
                .arg(&cert.cert)
                .arg("--key")
                .arg(&cert.key)
                .arg("--starttls");
        }
        if let Some((user, password)) = &self.options.auth {
            command.args(["--auth", &format!("{user}:{password}")]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .context("cannot run python3 smtp_sink.py (pip install aiosmtpd)")?;
        // Blocks until the script prints READY (or exits): readiness without sleeping.
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        self.child = Some(child);
        ensure!(
            line.trim() == "READY",
            "smtp_sink.py did not start: {line:?}"
        );
        Ok(())
    }

    fn fail_code(&self) -> u16 {
        if self.options.fail_code == 0 {
            451
        } else {
            self.options.fail_code
        }
    }

    /// Kills the sink; stored messages stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    /// Starts it again on the same port and directory (the fault plan
    /// starts over).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.run()
    }

    /// The directory the sink writes `NNNNNN.eml` + `NNNNNN.json` into.
    pub fn messages_dir(&self) -> PathBuf {
        self.dir.path().join("messages")
    }

    /// Where the sink notes every `QUIT` it hears.
    fn quit_log(&self) -> PathBuf {
        self.dir.path().join("quits.jsonl")
    }

    /// The client port of every connection that said `QUIT`, in order.
    pub fn quits(&self) -> Result<Vec<u16>> {
        let log = match std::fs::read_to_string(self.quit_log()) {
            Ok(log) => log,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        log.lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line)?;
                Ok(value["peer_port"].as_u64().unwrap_or_default() as u16)
            })
            .collect()
    }

    /// The CA file clients must trust (STARTTLS sinks).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.cert.as_ref().map(|c| c.cert.clone())
    }

    /// Client settings for this sink.
    pub fn config(&self) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            tls: if self.options.starttls {
                SmtpTls::Starttls
            } else {
                SmtpTls::None
            },
            ca_file: self.ca_file(),
            username: self.options.auth.as_ref().map(|(user, _)| user.clone()),
            password: self
                .options
                .auth
                .as_ref()
                .map(|(_, password)| password.clone()),
            hello_name: Some("refundd.test".into()),
            timeout: 10,
            ..SmtpConfig::default()
        }
    }

    /// Every stored message, in arrival order.
    pub fn received(&self) -> Result<Vec<Received>> {
        let dir = self.messages_dir();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .into_iter()
            .map(|eml| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(eml.with_extension("json"))?)?;
                Ok(Received {
                    raw: std::fs::read(&eml)?,
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    peer_port: meta["peer_port"].as_u64().unwrap_or_default() as u16,
                })
            })
            .collect()
    }
}

impl Drop for SmtpSinkServer {
    fn drop(&mut self) {
        self.stop();
    }
}
