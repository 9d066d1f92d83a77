//! Shared test support: fresh databases per test, the refundd binary, mail
//! files with a chosen receipt time, and a second real IMAP server (GNU
//! Mailutils imap4d) beside mailstack's Dovecot, behind one [`ImapServer`].

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::mailstack;

/// Where the machine's PostgreSQL is (`REFUNDD_TEST_PG`), trust auth.
pub fn pg_base() -> String {
    std::env::var("REFUNDD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of its own for one test, dropped when the value is dropped
/// (best effort: a crashed test leaves a `refundd_it_*` database behind,
/// which no other run ever sees).
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A SQLite file in a temp dir.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("refundd.db").display());
        TestDb {
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database. Fails loudly when PostgreSQL is not
    /// reachable: CI must prove the PostgreSQL half.
    pub async fn postgres() -> TestDb {
        use sqlx::Connection;
        let name = format!("refundd_it_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is not reachable: {e}", pg_base()));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        TestDb {
            url: format!("{}/{name}", pg_base()),
            pg_name: Some(name),
            _dir: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let base = pg_base();
            // Drop in a thread with its own runtime: Drop may run inside one.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) =
                        sqlx::PgConnection::connect(&format!("{base}/postgres")).await
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                })
            })
            .join();
        }
    }
}

/// Runs the refundd binary with a config file; returns its output.
pub fn refundd(config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_refundd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("REFUNDD_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("refundd runs")
}

/// Writes a mail file whose modification time (the receipt time) is `at`.
pub fn write_mail(path: &Path, bytes: &[u8], at: DateTime<Utc>) {
    std::fs::write(path, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at.into())
        .unwrap();
}

/// The `Date:` header of a mail, for fixtures whose story happens then.
pub fn header_date(bytes: &[u8]) -> DateTime<Utc> {
    let headers = mail_parser::MessageParser::new()
        .parse_headers(bytes)
        .expect("headers");
    DateTime::from_timestamp(headers.date().expect("Date header").to_timestamp(), 0).unwrap()
}

/// Stores `bytes` as received at their `Date:` header, as ingest would.
pub async fn store_at_its_date(
    store: &refundd::store::Store,
    source: &str,
    bytes: Vec<u8>,
) -> refundd::store::Inserted {
    let received_at = header_date(&bytes);
    refundd::ingest::store_message(
        store,
        refundd::ingest::RawMessage {
            source: source.into(),
            bytes,
            received_at,
            full_size: None,
        },
    )
    .await
    .unwrap()
}

/// The demo's sample mails (file name, bytes), in file-name order.
pub fn demo_mail() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/demo/mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 17, "the demo's sample mails");
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A mail server that refuses every message for good (5xx).
pub struct RefusingSink;

impl refundd::reply::MailSink for RefusingSink {
    fn send<'a>(
        &'a self,
        _message: &'a refundd::reply::OutgoingMessage,
        _to: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), refundd::reply::SendError>> {
        Box::pin(async {
            Err(refundd::reply::SendError::permanent(
                "550 mailbox unavailable",
                None,
            ))
        })
    }
}

/// Minor units of `order` in cash refunds still pending, over `cases`.
pub async fn pending_refunds(
    store: &refundd::store::Store,
    cases: &[refundd::store::CaseId],
    order: &str,
) -> i64 {
    let mut total = 0;
    for case in cases {
        for action in store.actions_for_case(*case).await.unwrap() {
            if let (
                refundd::store::ActionStatus::Pending,
                refundd::domain::Action::CashRefund {
                    order_id, amount, ..
                },
            ) = (action.status, &action.action)
                && order_id == order
            {
                total += amount;
            }
        }
    }
    total
}

/// A running GNU Mailutils `imap4d`: a second real IMAP server, without
/// MOVE, UIDPLUS or keywords, whose IDLE never reports new mail and whose
/// `EXPUNGE` answer includes a line that is not IMAP (`* 1 EXPUNGED`).
/// One virtual user, [`mailstack::USER`], its folders mbox files (which keep
/// the INTERNALDATE given at APPEND) in a temp dir; the server runs as the
/// `mail` user, so file permissions bind it as they would in production.
pub struct Mailutils {
    dir: tempfile::TempDir,
    /// The plain-text IMAP port.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl Mailutils {
    /// Starts `imap4d` in daemon mode on a free loopback port.
    pub fn start() -> anyhow::Result<Mailutils> {
        use anyhow::{Context, ensure};
        let dir = mailstack::open_tempdir("refundd-imap4d-")?;
        let root = dir.path();
        let (uid, gid) = mailstack::mail_ids()?;
        let home = root.join("home");
        let folders = home.join("Mail");
        std::fs::create_dir_all(&folders)?;
        std::fs::create_dir(root.join("passwd"))?;
        let hash = std::process::Command::new("openssl")
            .args(["passwd", "-6", mailstack::PASSWORD])
            .output()
            .context("openssl passwd")?;
        ensure!(hash.status.success(), "openssl passwd failed");
        let hash = String::from_utf8(hash.stdout)?;
        let (local, domain) = mailstack::USER
            .split_once('@')
            .context("USER has a domain")?;
        // Mailutils' virtual domains: one passwd(5) file per domain.
        std::fs::write(
            root.join("passwd").join(domain),
            format!(
                "{local}:{}:{uid}:{gid}:refundd test:{}:/bin/false\n",
                hash.trim(),
                home.display()
            ),
        )?;
        // INBOX exists from the start, as after a first delivery.
        std::fs::write(home.join("INBOX"), b"")?;
        for path in [&home, &folders, &home.join("INBOX")] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        let port = mailstack::free_port();
        let d = root.display();
        let config = format!(
            r#"logging {{ syslog no; }}
auth {{
  authentication clear;
  authentication generic:virtdomain;
  authorization clear;
  authorization virtdomain;
}}
virtdomain {{ passwd-dir "{d}/passwd"; }}
mailbox {{ mailbox-pattern "mbox://{d}/home/INBOX"; }}
namespace personal {{
  prefix "" {{ directory "{d}/home/Mail"; delimiter "/"; mailbox-type "mbox"; }}
}}
tcp-wrappers {{ enable no; }}
server 127.0.0.1:{port} {{ single-process no; }}
"#
        );
        std::fs::write(root.join("imap4d.conf"), config)?;
        let mut server = Mailutils {
            dir,
            port,
            child: None,
        };
        server.run()?;
        Ok(server)
    }

    fn run(&mut self) -> anyhow::Result<()> {
        use anyhow::Context;
        use std::os::unix::process::CommandExt;
        let (uid, gid) = mailstack::mail_ids()?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("imap4d.log"))?;
        let child = std::process::Command::new("imap4d")
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("imap4d.conf").display()
            ))
            .args(["--daemon", "--foreground"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .uid(uid)
            .gid(gid)
            .process_group(0)
            .spawn()
            .context("cannot run imap4d (apt-get install mailutils-imap4d)")?;
        self.child = Some(child);
        mailstack::wait_for_greeting(self.port, b"* OK").with_context(|| {
            format!(
                "imap4d did not greet; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("imap4d.log")).unwrap_or_default()
            )
        })
    }

    /// Kills every imap4d process at once; the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            mailstack::kill_group(&mut child);
        }
    }

    /// Stops and starts it again on the same port with the same data
    /// (mbox files need no lock recovery).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.run()
    }

    /// Client settings for this server: plain text, the test user.
    pub fn config(&self) -> refundd::ingest::imap::ImapConfig {
        refundd::ingest::imap::ImapConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            tls: refundd::ingest::imap::ImapTls::None,
            username: mailstack::USER.into(),
            password: Some(mailstack::PASSWORD.into()),
            command_timeout: 10,
            ..refundd::ingest::imap::ImapConfig::default()
        }
    }
}

impl Drop for Mailutils {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which real IMAP server a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapKind {
    /// Dovecot: IDLE, MOVE, UIDPLUS, CONDSTORE, keywords.
    Dovecot,
    /// GNU Mailutils imap4d: none of those that matter (see [`Mailutils`]).
    Mailutils,
}

/// A running IMAP server of either kind, with the client-side helpers the
/// tests use to deliver mail and look at folders as another client.
pub enum ImapServer {
    Dovecot(mailstack::Dovecot),
    Mailutils(Mailutils),
}

impl ImapServer {
    /// Starts a server of `kind`.
    pub fn start(kind: ImapKind) -> anyhow::Result<ImapServer> {
        Ok(match kind {
            ImapKind::Dovecot => ImapServer::Dovecot(mailstack::Dovecot::start()?),
            ImapKind::Mailutils => ImapServer::Mailutils(Mailutils::start()?),
        })
    }

    fn port(&self) -> u16 {
        match self {
            ImapServer::Dovecot(d) => d.port,
            ImapServer::Mailutils(m) => m.port,
        }
    }

    /// Client settings for refundd. Mailutils' IDLE never reports new
    /// mail, so refundd polls it every second (as an operator would set
    /// `idle = false` for it).
    pub fn config(&self) -> refundd::ingest::imap::ImapConfig {
        match self {
            ImapServer::Dovecot(d) => d.config(),
            ImapServer::Mailutils(m) => refundd::ingest::imap::ImapConfig {
                idle: false,
                poll_interval: 1,
                ..m.config()
            },
        }
    }

    /// Stops the server as an operator would and starts it again.
    pub fn restart_gracefully(&mut self) -> anyhow::Result<()> {
        match self {
            ImapServer::Dovecot(d) => d.restart_gracefully(),
            ImapServer::Mailutils(m) => m.restart(),
        }
    }

    /// Appends a message with the given INTERNALDATE from a connection of
    /// its own.
    pub async fn append(
        &self,
        folder: &str,
        bytes: &[u8],
        internal_date: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut session = self.session().await?;
        let date = internal_date
            .format("\"%d-%b-%Y %H:%M:%S +0000\"")
            .to_string();
        session.append(folder, None, Some(&date), bytes).await?;
        session.logout().await?;
        Ok(())
    }

    /// Runs raw IMAP commands (CREATE, DELETE, STORE …) on a connection of
    /// its own; each must answer OK.
    pub async fn admin(&self, commands: &[&str]) -> anyhow::Result<()> {
        use anyhow::Context;
        let mut session = self.session().await?;
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
    pub async fn uids(&self, folder: &str) -> anyhow::Result<Vec<u32>> {
        let mut session = self.session().await?;
        session.examine(folder).await?;
        let mut uids: Vec<u32> = session.uid_search("ALL").await?.into_iter().collect();
        uids.sort_unstable();
        session.logout().await?;
        Ok(uids)
    }

    async fn session(
        &self,
    ) -> anyhow::Result<async_imap::Session<refundd::ingest::imap::ImapStream>> {
        use anyhow::Context;
        use refundd::ingest::imap::ImapStream;
        let tcp = ImapStream::connect("127.0.0.1", self.port()).await?;
        let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
        client.read_response().await?.context("no greeting")?;
        client
            .login(mailstack::USER, mailstack::PASSWORD)
            .await
            .map_err(|(err, _)| err)
            .context("admin login")
    }
}

/// While alive, the IMAP server (running as `mail`) cannot create folders
/// in `dir` (the directory holding a user's folders), as on a server whose
/// administrator forbids new top-level folders: `dir` belongs to root.
/// Dropping it gives the directory back.
pub struct FolderRefusal {
    dir: PathBuf,
}

/// Makes the server refuse `CREATE` under `dir` (see [`FolderRefusal`]).
pub fn refuse_new_folders(dir: PathBuf) -> FolderRefusal {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    FolderRefusal { dir }
}

impl Drop for FolderRefusal {
    fn drop(&mut self) {
        if let Ok((uid, gid)) = mailstack::mail_ids() {
            let _ = std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid));
        }
    }
}

/// An OAuth2 token introspection endpoint (RFC 7662) on a loopback port,
/// as Dovecot's `oauth2` passdb asks it: `POST token=…` answered with
/// `{"active": true, "username": …}` for the tokens currently active.
pub struct TokenIntrospection {
    /// Where Dovecot posts.
    pub url: String,
    active: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TokenIntrospection {
    /// Listens on a free loopback port (a thread of its own, for the life
    /// of the test process).
    pub fn start() -> TokenIntrospection {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let active = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let tokens = active.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let token = body
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("token="))
                    .unwrap_or_default()
                    .to_owned();
                let is_active = tokens.lock().unwrap().contains(&token);
                let json = if is_active {
                    format!(r#"{{"active":true,"username":"{}"}}"#, mailstack::USER)
                } else {
                    r#"{"active":false}"#.to_owned()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                );
            }
        });
        TokenIntrospection { url, active }
    }

    /// From now on, exactly these tokens are active (others expired).
    pub fn set_active(&self, tokens: &[&str]) {
        *self.active.lock().unwrap() = tokens.iter().map(|t| t.to_string()).collect();
    }
}
