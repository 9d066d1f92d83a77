//! No log level ever shows a secret: the real binary, at `RUST_LOG=trace`,
//! logs in to a real Dovecot (IMAP `LOGIN`) and a real SMTP server (`AUTH`
//! after STARTTLS) with known passwords, and neither password appears in
//! what it writes, in either log format, while trace logging demonstrably
//! happened.

use base64::Engine;
use std::path::Path;
use std::process::Command;

use refundd::config::Settings;

use crate::mailstack::{self, Dovecot, SinkOptions, SmtpSinkServer};
use crate::support::TestDb;

const SMTP_USER: &str = "refundd";
const SMTP_PASSWORD: &str = "smtp-pw-Zr8Kd4Mw1";

/// `refundd check-config` at `RUST_LOG=trace`: its stdout and stderr.
fn check_config_at_trace(config: &Path, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refundd"));
    command
        .arg("--config")
        .arg(config)
        .env_remove("REFUNDD_DATABASE_URL")
        .env_remove("REFUNDD_LOG_JSON")
        .env("RUST_LOG", "trace");
    if json {
        command.arg("--log-json");
    }
    let out = command.arg("check-config").output().expect("refundd runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok    imap") && stdout.contains("ok    smtp"),
        "both logins happened: {stdout}"
    );
    stdout + &stderr
}

/// Every form a password could take on the wire: as typed, and base64
/// as SMTP `AUTH PLAIN` / `AUTH LOGIN` send it.
fn forms_of(user: &str, password: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        password.to_owned(),
        b64(password),
        b64(&format!("\0{user}\0{password}")),
    ]
}

#[tokio::test]
async fn trace_logs_of_imap_and_smtp_logins_never_show_a_password() {
    let dovecot = Dovecot::start().expect("dovecot");
    let sink = SmtpSinkServer::start(SinkOptions {
        starttls: true,
        auth: Some((SMTP_USER.into(), SMTP_PASSWORD.into())),
        ..SinkOptions::default()
    })
    .expect("smtp sink");
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.database.url = db.url.clone();
    settings.imap = Some(dovecot.config());
    settings.smtp = Some(sink.config());
    let config = dir.path().join("refundd.toml");
    std::fs::write(&config, toml::to_string(&settings).unwrap()).unwrap();

    let mut secrets = forms_of(mailstack::USER, mailstack::PASSWORD);
    secrets.extend(forms_of(SMTP_USER, SMTP_PASSWORD));
    for json in [false, true] {
        let logged = check_config_at_trace(&config, json);
        let trace_lines = logged.lines().filter(|l| l.contains("TRACE")).count();
        assert!(
            trace_lines > 0,
            "trace logging happened (json: {json}):\n{logged}"
        );
        for secret in &secrets {
            assert!(
                !logged.contains(secret.as_str()),
                "json: {json}: a password shows as {secret:?} in:\n{logged}"
            );
        }
    }
}
