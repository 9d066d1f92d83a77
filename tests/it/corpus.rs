//! Real-world broken mail (`../shared/corpora/`, read in place) through the
//! whole pipeline: every file is stored, and every stored message ends in a
//! recorded case (or an ignored one) — no panic, nothing lost.

use chrono::{TimeZone, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use refundd::config::Settings;
use refundd::ingest::{self, RawMessage};
use refundd::pipeline::Pipeline;
use refundd::store::{CaseFilter, Inserted, Store};

use crate::support::{TestDb, repo};

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            corpus_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("eml" | "msg")
        ) {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn every_corpus_message_ends_as_a_recorded_case() {
    let root = repo().join("../shared/corpora");
    if !root.exists() {
        eprintln!(
            "SKIPPED: {} is absent; the corpus test needs the shared corpora",
            root.display()
        );
        return;
    }
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "found only {} corpus files under {}",
        files.len(),
        root.display()
    );

    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let settings = Arc::new(Settings::default());
    let pipeline = Pipeline::new(store.clone(), settings).unwrap();
    let received_at = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let mut stored = 0;
    for path in &files {
        let raw = RawMessage {
            source: format!("corpus:{}", path.display()),
            bytes: std::fs::read(path).unwrap(),
            received_at,
            full_size: None,
        };
        if let Inserted::New(_) = ingest::store_message(&store, raw).await.unwrap() {
            stored += 1;
        }
    }
    let processed = pipeline.process_pending(received_at).await.unwrap();
    let failed = store.failed_messages(100).await.unwrap();
    let left = store.unprocessed_messages(100).await.unwrap();
    assert!(
        failed.is_empty(),
        "messages that failed: {:?}",
        failed
            .iter()
            .map(|m| (&m.source, &m.error))
            .collect::<Vec<_>>()
    );
    assert!(
        left.is_empty(),
        "messages left behind: {:?}",
        left.iter().map(|m| &m.source).collect::<Vec<_>>()
    );
    let distinct: std::collections::BTreeSet<i64> = processed.iter().map(|p| p.message).collect();
    assert_eq!(
        distinct.len(),
        stored,
        "every stored message was processed once"
    );
    assert_eq!(processed.len(), stored);
    let cases = store
        .list_cases(&CaseFilter {
            limit: Some(10_000),
            ..CaseFilter::default()
        })
        .await
        .unwrap();
    let joined = processed.iter().filter(|p| p.joined).count();
    assert_eq!(
        cases.len() + joined,
        stored,
        "each message opened a case or joined one"
    );
    eprintln!(
        "{} corpus files read, {stored} distinct messages, {} cases",
        files.len(),
        cases.len()
    );
}
