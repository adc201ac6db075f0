//! The memory snapshot beside the log: a closed store reopens from it and the
//! batches after it; it is trusted only while the log is what it covers; an erase
//! removes it; a snapshot that does not read back, or that another process's
//! writes made incomplete, is never used.

use beacon_core::backend::ScanRequest;
use beacon_core::{ConfigStore, EraseScope, Event, EventStore, Site};
use beacon_storage_sqlite::SqliteStore;
use futures_util::TryStreamExt;
use sqlx::Connection;
use std::path::Path;

const SITE: &str = "example.com";

fn events(visitors: std::ops::Range<u32>, per_visitor: u32) -> Vec<Event> {
    visitors
        .flat_map(|v| {
            (0..per_visitor).map(move |i| {
                let mut e = Event {
                    site: SITE.into(),
                    id: uuid::Uuid::from_u128(u128::from(v) << 32 | u128::from(i) | 1 << 100),
                    timestamp: chrono::DateTime::from_timestamp(
                        1_772_352_000 + i64::from(i) * 60,
                        0,
                    )
                    .expect("time"),
                    ..Event::default()
                };
                e.identity.visitor_id = format!("visitor-{v}");
                e.page.host = SITE.into();
                e.page.path = format!("/page/{}", i % 3);
                e.acquisition.source = Some(format!("source-{}", v % 4).into());
                e
            })
        })
        .collect()
}

async fn open(dir: &Path) -> SqliteStore {
    let store = SqliteStore::open(dir).await.expect("open");
    store.put_site(Site::new(SITE)).await.expect("site");
    store
}

/// Every event memory answers from, as (visitor, id), ordered.
async fn held(store: &SqliteStore) -> Vec<(String, uuid::Uuid)> {
    let batches = store
        .memory()
        .scan(&ScanRequest::new(SITE))
        .await
        .expect("scan");
    let mut out: Vec<_> = batches
        .try_collect::<Vec<_>>()
        .await
        .expect("batches")
        .into_iter()
        .flatten()
        .map(|e| (e.identity.visitor_id, e.id))
        .collect();
    out.sort();
    out
}

fn ids(events: &[Event]) -> Vec<(String, uuid::Uuid)> {
    let mut out: Vec<_> = events
        .iter()
        .map(|e| (e.identity.visitor_id.clone(), e.id))
        .collect();
    out.sort();
    out
}

fn snapshot_file(dir: &Path) -> std::path::PathBuf {
    dir.join("beacon.snapshot")
}

/// Overwrites the body of every batch with bytes no codec reads (counts kept): an
/// open that decodes the log then fails, one that takes the snapshot does not.
async fn spoil_batches(dir: &Path, up_to: i64) {
    let url = format!("sqlite://{}", dir.join("beacon.sqlite").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("UPDATE batches SET body = x'00ff00ff' WHERE id <= ?")
        .bind(up_to)
        .execute(&mut conn)
        .await
        .expect("spoil");
    conn.close().await.expect("close");
}

async fn max_batch(dir: &Path) -> i64 {
    let url = format!("sqlite://{}", dir.join("beacon.sqlite").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let (id,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM batches")
        .fetch_one(&mut conn)
        .await
        .expect("max");
    conn.close().await.expect("close");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_reopens_from_its_snapshot_and_the_batches_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = events(0..50, 20);
    let store = open(dir.path()).await;
    store.append(&first).await.expect("append");
    store.close().await;
    assert!(
        snapshot_file(dir.path()).exists(),
        "close writes a snapshot"
    );

    // The log's batches covered by the snapshot can no longer be decoded: the open
    // succeeds only because it reads the snapshot, not them.
    let covered = max_batch(dir.path()).await;
    spoil_batches(dir.path(), covered).await;
    let store = open(dir.path()).await;
    assert_eq!(
        held(&store).await,
        ids(&first),
        "every event, from the snapshot"
    );
    let dup = store.append(&first[..10]).await.expect("append");
    assert_eq!(dup.stored, 0, "ids from the snapshot are held");

    // Appended after the snapshot, and never closed (as if killed): the next open
    // takes the snapshot, then these batches from the log.
    let second = events(50..60, 20);
    store.append(&second).await.expect("append");
    drop(store);
    let store = open(dir.path()).await;
    let mut all = first.clone();
    all.extend(second.iter().cloned());
    assert_eq!(
        held(&store).await,
        ids(&all),
        "snapshot and the log after it"
    );
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_removes_the_snapshot_and_an_older_one_put_back_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = events(0..20, 10);
    let store = open(dir.path()).await;
    store.append(&all).await.expect("append");
    store.close().await;
    let old = std::fs::read(snapshot_file(dir.path())).expect("snapshot");

    let store = open(dir.path()).await;
    store
        .erase(SITE, EraseScope::Visitor("visitor-3".into()))
        .await
        .expect("erase");
    assert!(
        !snapshot_file(dir.path()).exists(),
        "the snapshot held the erased events: it goes with the erase"
    );
    drop(store);

    // The snapshot from before the erase, put back: stale by the erase generation.
    std::fs::write(snapshot_file(dir.path()), &old).expect("put back");
    let store = open(dir.path()).await;
    let kept: Vec<Event> = all
        .iter()
        .filter(|e| e.identity.visitor_id != "visitor-3")
        .cloned()
        .collect();
    assert_eq!(held(&store).await, ids(&kept), "erased events stay erased");
    assert!(
        !snapshot_file(dir.path()).exists(),
        "a stale snapshot is removed"
    );
    store.close().await;
    let store = open(dir.path()).await;
    assert_eq!(held(&store).await, ids(&kept));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_read_back_is_removed_and_the_log_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = events(0..30, 10);
    let store = open(dir.path()).await;
    store.append(&all).await.expect("append");
    store.close().await;
    let file = snapshot_file(dir.path());
    let mut bytes = std::fs::read(&file).expect("snapshot");
    // A byte in the compressed payload (past the header): the frame's checksum or
    // the snapshot's own checks catch it.
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&file, &bytes).expect("corrupt");
    let store = open(dir.path()).await;
    assert_eq!(held(&store).await, ids(&all), "every event, from the log");
    assert!(!file.exists(), "the unreadable snapshot is removed");
    // A cut-short one too.
    store.close().await;
    let bytes = std::fs::read(&file).expect("snapshot");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("cut");
    let store = open(dir.path()).await;
    assert_eq!(held(&store).await, ids(&all));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_memory_misses_another_writers_batches_writes_no_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path()).await;
    let b = open(dir.path()).await;
    let from_a = events(0..10, 5);
    let from_b = events(10..20, 5);
    a.append(&from_a).await.expect("append");
    b.append(&from_b).await.expect("append");
    a.close().await;
    assert!(
        !snapshot_file(dir.path()).exists(),
        "a does not hold b's events: its snapshot would lose them"
    );
    b.close().await;
    assert!(!snapshot_file(dir.path()).exists());
    let store = open(dir.path()).await;
    let mut all = from_a.clone();
    all.extend(from_b.iter().cloned());
    assert_eq!(held(&store).await, ids(&all));
    store.close().await;
    assert!(
        snapshot_file(dir.path()).exists(),
        "one process: a snapshot"
    );
}
