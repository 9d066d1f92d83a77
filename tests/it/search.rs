//! The queue's search finds what customers wrote, not what their mail
//! programs encoded: a word that exists only inside a base64 German body or
//! a quoted-printable French body is found (and the raw bytes prove it
//! could not be found by looking at them); accents and case do not matter;
//! messages stored before the index existed are indexed at start. SQLite
//! and PostgreSQL.

use refundd::domain::Category;
use refundd::store::{QueueFilter, Store};

use crate::console::{Console, seed_case};
use crate::support::TestDb;

/// "Ich möchte eine Rückerstattung für das Porträt, es ist völlig
/// missraten." — German, UTF-8, base64: no word of it is in the bytes.
pub fn german_base64() -> Vec<u8> {
    let body = "Ich möchte eine Rückerstattung für das Porträt, es ist völlig missraten.\r\n\
                Mit freundlichen Grüßen\r\nJürgen";
    let encoded = base64_lines(body.as_bytes());
    format!(
        "From: =?utf-8?q?J=C3=BCrgen_Becker?= <juergen@example.de>\r\nTo: refunds@anumi.example\r\n\
         Subject: Bestellung\r\nMessage-ID: <de-{}@mail.example>\r\nDate: Mon, 8 Jun 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}",
        uuid::Uuid::new_v4()
    )
    .into_bytes()
}

/// "Je voudrais être remboursée : l'aquarelle ne me ressemble pas." —
/// French, latin-1, quoted-printable, with a soft line break inside
/// `aquarelle`: neither `remboursée` nor `aquarelle` is in the bytes.
pub fn french_quoted_printable() -> Vec<u8> {
    let mut raw = format!(
        "From: Camille Roux <camille@example.fr>\r\nTo: refunds@anumi.example\r\nSubject: Demande\r\n\
         Message-ID: <fr-{}@mail.example>\r\nDate: Mon, 8 Jun 2026 11:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        uuid::Uuid::new_v4()
    )
    .into_bytes();
    raw.extend_from_slice(
        b"Je voudrais =EAtre rembours=E9e : l'aqua=\r\nrelle ne me ressemble pas.\r\nCamille\r\n",
    );
    raw
}

fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect()
}

async fn found(store: &Store, search: &str) -> Vec<String> {
    store
        .queue(&QueueFilter {
            search: Some(search.into()),
            ..QueueFilter::default()
        })
        .await
        .unwrap()
        .items
        .iter()
        .map(|i| i.id.to_string())
        .collect()
}

#[tokio::test]
async fn search_finds_words_inside_base64_and_quoted_printable_bodies_on_sqlite() {
    encoded_bodies(TestDb::sqlite()).await;
}

#[tokio::test]
async fn search_finds_words_inside_base64_and_quoted_printable_bodies_on_postgres() {
    encoded_bodies(TestDb::postgres().await).await;
}

async fn encoded_bodies(db: TestDb) {
    let console = Console::start(&db).await;
    let german = german_base64();
    let french = french_quoted_printable();
    for (raw, words) in [
        (&german, &["ckerstattung", "missraten", "porträt"][..]),
        (&french, &["remboursée", "rembours\u{e9}e", "aquarelle"][..]),
    ] {
        let text = String::from_utf8_lossy(raw).to_lowercase();
        for word in words {
            assert!(!text.contains(word), "`{word}` is not in the raw bytes");
        }
    }
    let de = seed_case(
        &console.store,
        "juergen@example.de",
        None,
        Category::Other,
        german,
        12,
    )
    .await
    .to_string();
    let fr = seed_case(
        &console.store,
        "camille@example.fr",
        None,
        Category::NoResemblance,
        french,
        13,
    )
    .await
    .to_string();

    for (search, want) in [
        ("Rückerstattung", vec![de.clone()]),
        ("ruckerstattung", vec![de.clone()]),
        ("RÜCKERST", vec![de.clone()]),
        ("missraten", vec![de.clone()]),
        ("Jürgen Becker", vec![de.clone()]),
        ("juergen@example.de", vec![de.clone()]),
        ("remboursée", vec![fr.clone()]),
        ("rembourse", vec![fr.clone()]),
        ("aquarelle ressemble", vec![fr.clone()]),
        ("camille", vec![fr.clone()]),
        ("aquarelle missraten", vec![]),
        ("Schadenersatz", vec![]),
        (fr.as_str(), vec![fr.clone()]),
    ] {
        assert_eq!(
            found(&console.store, search).await,
            want,
            "search {search:?}"
        );
    }

    // The console's queue page searches the same way.
    let session = console.login("rita@anumi.example").await;
    let html = console
        .get(&session, "/?q=R%C3%BCckerstattung")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!(">{de}<")), "the page finds {de}");
    assert!(!html.contains(&format!(">{fr}<")), "and only {de}");
    console.shutdown.cancel();
}

#[tokio::test]
async fn messages_stored_before_the_index_are_indexed_at_start_on_sqlite() {
    indexed_at_start(TestDb::sqlite()).await;
}

#[tokio::test]
async fn messages_stored_before_the_index_are_indexed_at_start_on_postgres() {
    indexed_at_start(TestDb::postgres().await).await;
}

async fn indexed_at_start(db: TestDb) {
    let console = Console::start(&db).await;
    let de = seed_case(
        &console.store,
        "juergen@example.de",
        None,
        Category::Other,
        german_base64(),
        12,
    )
    .await
    .to_string();
    // As a database from before the index: no words, nothing indexed.
    let forget = if db.url.starts_with("sqlite") {
        "DELETE FROM message_search"
    } else {
        "TRUNCATE message_search"
    };
    raw_sql(
        &db.url,
        &[forget, "UPDATE messages SET search_indexed = FALSE"],
    )
    .await;
    assert!(found(&console.store, "missraten").await.is_empty());

    let restarted = Store::connect(&db.url).await.unwrap();
    assert_eq!(found(&restarted, "missraten").await, vec![de]);
    assert_eq!(restarted.index_pending_messages().await.unwrap(), 0);
    console.shutdown.cancel();
}

/// Runs statements straight on the test database (what a test must do to
/// look behind the store).
pub async fn raw_sql(url: &str, statements: &[&str]) {
    use sqlx::Connection;
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(sqlx::AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(sqlx::AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}
