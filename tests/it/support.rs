//! Shared test support: fresh databases per test, the refundd binary, and
//! mail files with a chosen receipt time.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::process::Output;

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
