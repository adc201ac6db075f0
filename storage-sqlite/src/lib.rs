//! # beacon-storage-sqlite
//!
//! [`SqliteStore`]: Beacon's durable embedded store. Every event is committed to
//! SQLite (WAL mode, one transaction per append) before `append` returns, and is
//! mirrored in a [`beacon_core::MemoryStore`], which answers every request kind; on
//! open, SQLite is read back into memory. Configuration (sites, saved goals and
//! funnels, secrets, webhook delivery ids, salts) lives in one keyed table.
//!
//! ```
//! use beacon_core::{Analytics, ConfigStore, Event, EventStore, Query, Site};
//! use beacon_storage_sqlite::SqliteStore;
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path()).await.unwrap();
//! store.put_site(Site::new("example.com")).await.unwrap();
//! let mut e = Event { site: "example.com".into(), id: uuid::Uuid::from_u128(1), ..Event::default() };
//! e.identity.visitor_id = "v1".into();
//! e.timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
//! assert_eq!(store.append(&[e.clone()]).await.unwrap().stored, 1);
//! assert_eq!(store.append(&[e]).await.unwrap().duplicates.len(), 1, "idempotent by id");
//!
//! let q = Query::from_json(r#"{"site":"example.com","date_range":["2026-03-01","2026-03-01"]}"#).unwrap();
//! let now: chrono::DateTime<chrono::Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
//! let r = Analytics::new(&store, &store).query(&q, now).await.unwrap();
//! assert_eq!(r.rows[0].metrics[0].as_f64(), 1.0);
//! store.close().await;
//! # });
//! ```
//!
//! Data directory layout: `<dir>/beacon.sqlite` (with SQLite's `-wal` and `-shm`
//! files beside it) and `<dir>/beacon.snapshot`, see [snapshot](crate#snapshot).
//! Tables:
//! - `batches (id, site, events, codec, body, min_ts, max_ts)`: the events of one
//!   site from one commit (at most [`BATCH`]), see [`batches`](crate#batches);
//!   `min_ts` / `max_ts` (ms) let a scan skip batches outside its range;
//! - `payments (site, id)`: ids of stored purchases and refunds (derived from the
//!   provider's order), kept after an erase, so that a redelivered order is not
//!   stored again (`payment_ids (id)` of earlier versions, when present, is still
//!   consulted);
//! - `config (kind, scope, name, value)`: configuration records.
//! - `meta (key, value)`: the erase `generation`, raised by every erase.
//!
//! # Batches
//!
//! A batch's `body` is in its `codec`'s form. `columns+zstd` is written: the
//! batch's events field by field, each field's values side by side (strings through
//! a dictionary of the batch, times as differences), in a zstd frame with a content
//! checksum behind its uncompressed size; 32 B/event of realistic traffic against
//! 75 for `msgpack+lz4` (each event a MessagePack map with the field names of the
//! event's JSON, in an LZ4 block), which earlier versions wrote and is still read,
//! as is their `ndjson+lz4` (one JSON event per line). A row per event, with its
//! key and index, cost more than everything else in ingest, and reading 10M rows
//! back dominated restart.
//!
//! # Snapshot
//!
//! Decoding every batch and interning its strings again made a restart of 10M
//! events take about 16 s. [`SqliteStore::close`] therefore writes what memory
//! holds ([`MemoryStore::write_snapshot`]: dictionaries and columns) to
//! `beacon.snapshot`, in a zstd frame with a content checksum, behind a header
//! naming the last batch it holds, how many batches and events up to it, and the
//! erase generation. `open` also writes one after reading a million events or more
//! from the log (a store that was killed, not closed). The snapshot is a cache: the
//! next open loads it only when the log's batches up to that one still count the
//! same and no erase happened since, then reads the batches after it; otherwise,
//! or when it does not read back, it is removed and the whole log is loaded. An
//! erase removes it at once (it holds the erased events). It is written to a
//! temporary file, synced, and renamed, so a crash leaves the old one or the new
//! one; and only by a process whose memory holds exactly the log (no other process
//! wrote batches or erased since it counted them).
//!
//! # Older data directories
//!
//! A store written by an earlier version is converted when opened: one `events`
//! row per event becomes batches; the `sites`, `webhook_secrets` and `salts` tables
//! become `config` records; batches without `min_ts` / `max_ts` are always read.

mod batches;
mod columns;
mod config;
mod snapshot;

pub use batches::BATCH;

use async_trait::async_trait;
use batches::{
    decode_batch, encode_batches, erase_visitor, failed, remember_payments, write_batches,
    BatchBuilder, StoredBatch,
};
use beacon_core::backend::{
    AppendReport, ChunkEncoder, EventBatches, PreparedEvents, ScanRequest, StoreStats,
};
use beacon_core::{
    Context, EraseScope, Event, EventStore, Funnel, FunnelResult, GoalsRequest, GoalsResult,
    MemoryStore, Query, QueryResult, RealtimeRequest, RealtimeResult, Site, StoreError,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Batches read per query on open.
const LOAD_PAGE: i64 = 16;

/// Events read from the log (not from the snapshot) on open that make `open` write a
/// new snapshot before it returns: a store killed rather than closed loads its log
/// once, not on every start.
const SNAPSHOT_AFTER_REPLAY: u64 = 1_000_000;

/// How often the background task moves the write-ahead log into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// SQLite for durability, [`MemoryStore`] for answers.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    memory: Arc<MemoryStore>,
    /// Appends are checked for known ids and written one at a time; the lock holds
    /// the table that finds an append's repeated ids.
    commit: tokio::sync::Mutex<Repeats>,
    /// Sites read from `config`, kept for lookups on every hit.
    sites: RwLock<BTreeMap<String, Site>>,
    checkpointer: tokio::task::AbortHandle,
    dir: PathBuf,
    /// What memory holds of the log (changed under `commit`).
    coverage: Mutex<Coverage>,
}

/// What this process's memory holds of the batch log, so that a snapshot of it
/// can say which batches it covers.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    /// Batch rows loaded or written by this process: while `whole`, every row of
    /// the log.
    batches: i64,
    /// The log's erase generation that memory reflects.
    generation: i64,
    /// False once another process changed the log under this one (memory may then
    /// miss batches): no snapshot is written.
    whole: bool,
    /// Events stored or erased since the snapshot on disk was written (or, without
    /// one, since open): a snapshot is worth writing when there are any.
    changed: u64,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// Checkpoints the WAL off the commit path until the pool closes. SQLite's automatic
/// checkpoint runs inside whichever commit crosses the threshold, and every request
/// waiting on that commit waited for it too (maxima of 0.5 to 0.9 s under load;
/// 58 ms without).
async fn checkpoint_in_background(pool: SqlitePool) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if pool.is_closed() {
            return;
        }
        // PASSIVE: copies what it can without blocking writers or readers.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "wal checkpoint failed");
        }
    }
}

/// Finds ids repeated within an append: a table of indices into its events, kept
/// from one append to the next (a new set for each 16,384-event chunk was a
/// megabyte allocated and its pages touched, chunk after chunk).
#[derive(Default)]
struct Repeats {
    seen: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for Repeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repeats")
            .field("capacity", &self.seen.capacity())
            .finish()
    }
}

/// The events of `events` that are new: not held by `memory`, not earlier in
/// `events`; and the ids of the others.
fn fresh<'e>(
    memory: &MemoryStore,
    events: &'e [Event],
    repeats: &mut Repeats,
) -> (Vec<&'e Event>, Vec<uuid::Uuid>) {
    use std::hash::BuildHasher;
    let Repeats { seen, hasher } = repeats;
    seen.clear();
    let mut candidates = Vec::with_capacity(events.len());
    let mut dup = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.id.is_nil() {
            candidates.push(e);
            continue;
        }
        let same = |j: &u32| {
            let o = &events[*j as usize];
            o.id == e.id && o.site == e.site
        };
        match seen.entry(hasher.hash_one(e.id), same, |j| {
            hasher.hash_one(events[*j as usize].id)
        }) {
            hashbrown::hash_table::Entry::Occupied(_) => dup.push(e.id),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(u32::try_from(i).expect("fewer than 2^32 events an append"));
                candidates.push(e);
            }
        }
    }
    let held = memory.holds_each(&candidates);
    let mut new = Vec::with_capacity(candidates.len());
    for (e, held) in candidates.into_iter().zip(held) {
        if held {
            dup.push(e.id);
        } else {
            new.push(e);
        }
    }
    (new, dup)
}

/// A chunk's batches, written event by event as an importer's worker makes them.
struct SqliteChunk(BatchBuilder);

impl ChunkEncoder for SqliteChunk {
    fn add(&mut self, events: &[Event]) -> Result<(), StoreError> {
        events.iter().try_for_each(|e| self.0.put(e))
    }

    fn finish(self: Box<Self>, events: Vec<Event>) -> Result<PreparedEvents, StoreError> {
        if self.0.len() != events.len() {
            return Err(StoreError::backend(
                "prepare a chunk",
                std::io::Error::other(format!(
                    "{} events encoded, {} given to append",
                    self.0.len(),
                    events.len()
                )),
            ));
        }
        let batches = self.0.finish()?;
        Ok(PreparedEvents::with_payload(events, Box::new(batches)))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, converts an older layout, and
    /// loads every event into memory.
    ///
    /// A `beacon.sqlite` that exists but is empty (0 bytes) is refused: it holds no
    /// sites or events, and starting on it would look like a store that lost them.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(failed("create data dir"))?;
        let file = dir.join("beacon.sqlite");
        if std::fs::metadata(&file).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::Corrupt {
                what: file.display().to_string(),
                detail: "is empty (0 bytes), so it holds no sites and no events; refusing to \
                         open it as a store. Restore it from a backup, or remove it to start \
                         an empty store"
                    .into(),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL survives a killed process (not a power cut) and keeps commits fast.
            .synchronous(SqliteSynchronous::Normal)
            // Batches are appended, never looked up by key: a small page cache does, and
            // every commit by another pooled connection resets it.
            .pragma("cache_size", "-8192")
            .pragma("temp_store", "memory")
            // Checkpoints run in the background (`checkpoint_in_background`).
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A local file's connection does not go stale; the ping before every
            // checkout was a round trip to the connection's thread on every commit.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(failed("open sqlite"))?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, site TEXT NOT NULL, events INTEGER NOT NULL, codec TEXT NOT NULL, body BLOB NOT NULL)",
            "CREATE INDEX IF NOT EXISTS batches_site ON batches (site)",
            "CREATE TABLE IF NOT EXISTS payments (site TEXT NOT NULL, id BLOB NOT NULL, PRIMARY KEY (site, id)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS config (kind TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (kind, scope, name)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(failed("create schema"))?;
        }
        let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('batches')")
            .fetch_all(&pool)
            .await
            .map_err(failed("read schema"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for col in ["min_ts", "max_ts"] {
            if !columns.iter().any(|c| c == col) {
                sqlx::query(&format!("ALTER TABLE batches ADD COLUMN {col} INTEGER"))
                    .execute(&pool)
                    .await
                    .map_err(failed("upgrade schema"))?;
            }
        }
        let checkpointer = tokio::spawn(checkpoint_in_background(pool.clone())).abort_handle();
        let store = Self {
            pool,
            memory: Arc::new(MemoryStore::new()),
            commit: tokio::sync::Mutex::new(Repeats::default()),
            sites: RwLock::new(BTreeMap::new()),
            checkpointer,
            dir: dir.to_owned(),
            coverage: Mutex::new(Coverage::default()),
        };
        config::convert_legacy_tables(&store.pool).await?;
        store.convert_event_rows().await?;
        let replayed = store.load().await?;
        if replayed >= SNAPSHOT_AFTER_REPLAY {
            store.write_snapshot().await?;
        }
        Ok(store)
    }

    /// Converts the `events` table of older versions (one row per event) into batches.
    async fn convert_event_rows(&self) -> Result<(), StoreError> {
        let old =
            sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'")
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("convert events"))?;
        if old.is_none() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(failed("begin"))?;
        let mut after = 0i64;
        let mut converted = 0usize;
        loop {
            let rows = sqlx::query(
                "SELECT rowid, body FROM events WHERE rowid > ? ORDER BY rowid LIMIT 8192",
            )
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("convert events"))?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let events = rows
                .iter()
                .map(|r| serde_json::from_str::<Event>(r.get::<&str, _>(1)))
                .collect::<Result<Vec<Event>, _>>()
                .map_err(|e| StoreError::Corrupt {
                    what: "an event row of an older store".into(),
                    detail: e.to_string(),
                })?;
            let refs: Vec<&Event> = events.iter().collect();
            let fresh = remember_payments(&mut tx, &refs).await?;
            write_batches(&mut tx, &encode_batches(&fresh)?).await?;
            converted += events.len();
        }
        sqlx::query("DROP TABLE events")
            .execute(&mut *tx)
            .await
            .map_err(failed("convert events"))?;
        tx.commit().await.map_err(failed("commit"))?;
        sqlx::query("VACUUM")
            .execute(&self.pool)
            .await
            .map_err(failed("convert events"))?;
        tracing::info!(events = converted, "converted event rows to batches");
        Ok(())
    }

    /// The log's erase generation: raised by every erase, so that a snapshot written
    /// before one is not trusted after it.
    async fn generation(conn: &mut sqlx::SqliteConnection) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'generation'")
            .fetch_optional(conn)
            .await
            .map_err(failed("read generation"))?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    /// Batch rows and their events with ids up to `last` (`i64::MAX`: all), and the
    /// highest id among them.
    async fn count_batches(
        conn: &mut sqlx::SqliteConnection,
        last: i64,
    ) -> Result<(i64, i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(SUM(events), 0), COALESCE(MAX(id), 0) FROM batches WHERE id <= ?",
        )
        .bind(last)
        .fetch_one(conn)
        .await
        .map_err(failed("count batches"))?;
        Ok((row.get(0), row.get(1), row.get(2)))
    }

    /// Loads the snapshot when it holds what the log holds up to its last batch;
    /// returns what it covers. A stale or unreadable snapshot is removed (it may
    /// hold erased events) and memory is left empty.
    async fn restore(&self, generation: i64) -> Result<Option<snapshot::Covers>, StoreError> {
        let Some(covers) = snapshot::covers(&self.dir) else {
            snapshot::remove(&self.dir)?;
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await.map_err(failed("connect"))?;
        let (batches, events, _) = Self::count_batches(&mut conn, covers.last_batch).await?;
        drop(conn);
        let current =
            batches == covers.batches && events == covers.events && generation == covers.generation;
        if !current {
            tracing::info!(
                snapshot_generation = covers.generation,
                generation,
                "snapshot is stale: loading the log"
            );
            snapshot::remove(&self.dir)?;
            return Ok(None);
        }
        let (dir, memory) = (self.dir.clone(), Arc::clone(&self.memory));
        let read = tokio::task::spawn_blocking(move || snapshot::read(&dir, &memory))
            .await
            .map_err(failed("read snapshot"))?;
        match read {
            Ok(events) => {
                tracing::debug!(events, last_batch = covers.last_batch, "snapshot loaded");
                Ok(Some(covers))
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot unreadable: loading the log");
                snapshot::remove(&self.dir)?;
                Ok(None)
            }
        }
    }

    /// Loads memory: the snapshot when it is current, then the log's batches after
    /// it. Returns how many events came from the log.
    async fn load(&self) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let mut conn = self.pool.acquire().await.map_err(failed("connect"))?;
        let generation = Self::generation(&mut conn).await?;
        drop(conn);
        let covers = self.restore(generation).await?;
        let restored_ms = started.elapsed().as_millis() as u64;
        let first_after = covers.map_or(0, |c| c.last_batch);
        let counts =
            sqlx::query("SELECT site, SUM(events) FROM batches WHERE id > ? GROUP BY site")
                .bind(first_after)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("load events"))?;
        for row in counts {
            let n = usize::try_from(row.get::<i64, _>(1)).unwrap_or(0);
            self.memory.reserve_sync(row.get(0), n);
        }
        // A decoder per core takes batches as SQLite reads them, decodes them and adds
        // them to memory (under its write lock, briefly: decoding is most of the work).
        // Batches may land in any order: the engine orders rows when it builds.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = tokio::sync::mpsc::channel::<(usize, String, Vec<u8>, String)>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let decoders: Vec<_> = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let memory = Arc::clone(&self.memory);
                tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                    loop {
                        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                        let Some((count, codec, body, site)) = next else {
                            return Ok(());
                        };
                        memory.load_sync(&decode_batch(&codec, &body, count, &site)?)?;
                    }
                })
            })
            .collect();
        let mut after = first_after;
        let (mut rows_read, mut events_read) = (0i64, 0u64);
        let fetched: Result<(), StoreError> = 'fetch: loop {
            let rows = match sqlx::query(
                "SELECT id, events, codec, body, site FROM batches WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(LOAD_PAGE)
            .fetch_all(&self.pool)
            .await
            {
                Ok(rows) => rows,
                Err(e) => break Err(failed("load events")(e)),
            };
            let Some(last) = rows.last() else {
                break Ok(());
            };
            after = last.get(0);
            for r in rows {
                let count = usize::try_from(r.get::<i64, _>(1)).unwrap_or(0);
                rows_read += 1;
                events_read += count as u64;
                if tx
                    .send((count, r.get(2), r.get(3), r.get(4)))
                    .await
                    .is_err()
                {
                    // Every decoder stopped: their error is reported below.
                    break 'fetch Ok(());
                }
            }
        };
        drop(tx);
        for d in decoders {
            d.await.map_err(failed("load events"))??;
        }
        fetched?;
        let read_ms = started.elapsed().as_millis() as u64;
        self.memory.build();
        tracing::debug!(
            restored_ms,
            read_ms = read_ms - restored_ms,
            built_ms = started.elapsed().as_millis() as u64 - read_ms,
            events_read,
            "events loaded"
        );
        *self.coverage.lock().unwrap_or_else(|e| e.into_inner()) = Coverage {
            batches: covers.map_or(0, |c| c.batches) + rows_read,
            generation,
            whole: true,
            changed: events_read,
        };
        Ok(events_read)
    }

    /// Writes memory as the snapshot beside the database, when memory holds exactly
    /// the log (no other process wrote or erased since this one counted) and the
    /// snapshot on disk is behind. Appends wait meanwhile. Returns whether one was
    /// written.
    async fn write_snapshot(&self) -> Result<bool, StoreError> {
        let _one_at_a_time = self.commit.lock().await;
        let known = *self.coverage.lock().unwrap_or_else(|e| e.into_inner());
        if !known.whole || known.changed == 0 {
            return Ok(false);
        }
        let mut conn = self.pool.acquire().await.map_err(failed("connect"))?;
        let generation = Self::generation(&mut conn).await?;
        let (batches, events, last_batch) = Self::count_batches(&mut conn, i64::MAX).await?;
        drop(conn);
        if batches != known.batches || generation != known.generation {
            tracing::info!(
                batches,
                known = known.batches,
                "another process changed the log: no snapshot"
            );
            self.coverage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .whole = false;
            return Ok(false);
        }
        let covers = snapshot::Covers {
            last_batch,
            batches,
            events,
            generation,
        };
        let started = std::time::Instant::now();
        let (dir, memory) = (self.dir.clone(), Arc::clone(&self.memory));
        let written = tokio::task::spawn_blocking(move || snapshot::write(&dir, &memory, covers))
            .await
            .map_err(failed("write snapshot"))??;
        // Another process that erased meanwhile could not see this snapshot to remove
        // it: it must not outlive the erase.
        let mut conn = self.pool.acquire().await.map_err(failed("connect"))?;
        if Self::generation(&mut conn).await? != generation {
            snapshot::remove(&self.dir)?;
            self.coverage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .whole = false;
            return Ok(false);
        }
        drop(conn);
        tracing::debug!(
            events = written,
            last_batch,
            ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        self.coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .changed = 0;
        Ok(true)
    }

    /// The in-memory engine that answers (heap figures, synchronous reads).
    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// One transaction: payment ids, then batches (`encoded`, when given, holds the
    /// batches of all of `events`), then memory. Events held already are left out.
    async fn store_events(
        &self,
        events: &[Event],
        encoded: Option<&[StoredBatch]>,
    ) -> Result<AppendReport, StoreError> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let mut one_at_a_time = self.commit.lock().await;
        let (new, mut duplicates) = fresh(&self.memory, events, &mut one_at_a_time);
        if new.is_empty() {
            return Ok(AppendReport::new(0, duplicates));
        }
        let mut conn = self.pool.acquire().await.map_err(failed("connect"))?;
        let written = Self::write_events(&mut conn, &new, events.len(), encoded).await;
        if written.is_err() {
            // Whatever state the failed transaction left the connection in (SQLite
            // rolls some back by itself), it is never used again.
            conn.close_on_drop();
        }
        let (kept, payment_dups, batches) = written?;
        duplicates.extend(payment_dups);
        // Committed: now visible to requests.
        let stored = if kept.len() == events.len() {
            self.memory.append_sync(events)?.stored
        } else {
            let owned: Vec<Event> = kept.into_iter().cloned().collect();
            self.memory.append_sync(&owned)?.stored
        };
        {
            let mut c = self.coverage.lock().unwrap_or_else(|e| e.into_inner());
            c.batches += batches;
            c.changed += stored as u64;
        }
        Ok(AppendReport::new(stored, duplicates))
    }

    /// One write transaction on `conn`: payment ids, then batches (`encoded`, when
    /// given, holds the batches of all `total` events, which `new` then is). Returns
    /// the events kept, the ids of payments stored before and how many batch rows
    /// were written.
    async fn write_events<'e>(
        conn: &mut sqlx::SqliteConnection,
        new: &[&'e Event],
        total: usize,
        encoded: Option<&[StoredBatch]>,
    ) -> Result<(Vec<&'e Event>, Vec<uuid::Uuid>, i64), StoreError> {
        let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE")
            .await
            .map_err(failed("begin"))?;
        let kept = remember_payments(&mut tx, new).await?;
        let mut duplicates = Vec::new();
        if kept.len() < new.len() {
            // Payments stored before (by this or another process, or erased since).
            let kept_ids: HashSet<uuid::Uuid> = kept.iter().map(|e| e.id).collect();
            duplicates.extend(
                new.iter()
                    .filter(|e| batches::is_payment(e) && !kept_ids.contains(&e.id))
                    .map(|e| e.id),
            );
        }
        let encoded_here;
        let batches = match encoded {
            Some(batches) if kept.len() == total => batches,
            _ => {
                encoded_here = encode_batches(&kept)?;
                &encoded_here[..]
            }
        };
        write_batches(&mut tx, batches).await?;
        tx.commit().await.map_err(failed("commit"))?;
        Ok((kept, duplicates, batches.len() as i64))
    }

    /// Closes the database cleanly: writes the memory snapshot when events were
    /// stored or erased since the last one (the next open then loads it instead of
    /// decoding the log), and checkpoints the WAL. A snapshot that cannot be written
    /// is logged; the log holds every event either way.
    pub async fn close(&self) {
        if let Err(e) = self.write_snapshot().await {
            tracing::warn!(error = %e, "snapshot not written: the next open loads the log");
        }
        // The last connection's close would checkpoint and remove the WAL, but a
        // process that exits right after `close` can outrun the connection threads
        // and leave the whole WAL on disk (44 B/event after an import). TRUNCATE
        // copies it into the database and empties the file now.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "wal checkpoint on close failed");
        }
        self.pool.close().await;
    }

    /// The next events of a scan: batches after `after` overlapping the request's
    /// range, decoded and filtered.
    async fn scan_page(
        &self,
        req: &ScanRequest,
        after: i64,
    ) -> Result<Option<(i64, Vec<Event>)>, StoreError> {
        let from = req.from.map_or(i64::MIN, |t| t.timestamp_millis());
        let to = req.to.map_or(i64::MAX, |t| t.timestamp_millis());
        let rows = sqlx::query(
            "SELECT id, events, codec, body FROM batches WHERE site = ? AND id > ? \
             AND (max_ts IS NULL OR max_ts >= ?) AND (min_ts IS NULL OR min_ts < ?) \
             ORDER BY id LIMIT ?",
        )
        .bind(&req.site)
        .bind(after)
        .bind(from)
        .bind(to)
        .bind(LOAD_PAGE)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("scan"))?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        let last: i64 = last.get(0);
        let mut out = Vec::new();
        for r in &rows {
            let count = usize::try_from(r.get::<i64, _>(1)).unwrap_or(0);
            out.extend(
                decode_batch(r.get(2), r.get(3), count, &req.site)?
                    .into_iter()
                    .filter(|e| req.matches(e)),
            );
        }
        Ok(Some((last, out)))
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        self.store_events(events, None).await
    }

    /// Scans what SQLite holds (every field of every event), batch rows after batch
    /// rows; the request's range skips batches that cannot hold it.
    async fn scan(&self, req: &ScanRequest) -> Result<EventBatches<'_>, StoreError> {
        let req = req.clone();
        let state = (0i64, std::collections::VecDeque::<Event>::new(), false);
        Ok(Box::pin(futures_util::stream::try_unfold(
            state,
            move |(mut after, mut pending, mut done)| {
                let req = req.clone();
                async move {
                    let limit = req.batch_limit();
                    while pending.len() < limit && !done {
                        match self.scan_page(&req, after).await? {
                            Some((last, events)) => {
                                after = last;
                                pending.extend(events);
                            }
                            None => done = true,
                        }
                    }
                    if pending.is_empty() {
                        return Ok(None);
                    }
                    let n = pending.len().min(limit);
                    let batch: Vec<Event> = pending.drain(..n).collect();
                    Ok(Some((batch, (after, pending, done))))
                }
            },
        )))
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        let _one_at_a_time = self.commit.lock().await;
        let mut conn = self.pool.acquire().await.map_err(failed("connect"))?;
        let erased = async {
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(failed("begin"))?;
            let before = Self::count_batches(&mut tx, i64::MAX).await?.0;
            let generation_before = Self::generation(&mut tx).await?;
            match &scope {
                EraseScope::Visitor(v) => erase_visitor(&mut tx, site, v).await?,
                EraseScope::Before(t) => {
                    batches::erase_before(&mut tx, site, t.timestamp_millis()).await?
                }
                _ => {
                    sqlx::query("DELETE FROM batches WHERE site = ?")
                        .bind(site)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed("erase"))?;
                }
            }
            // A snapshot written before this erase holds what it erased: the new
            // generation makes it stale.
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ('generation', 1) \
                 ON CONFLICT (key) DO UPDATE SET value = value + 1",
            )
            .execute(&mut *tx)
            .await
            .map_err(failed("erase"))?;
            let after = Self::count_batches(&mut tx, i64::MAX).await?.0;
            tx.commit().await.map_err(failed("commit"))?;
            Ok::<_, StoreError>((before, generation_before, after))
        }
        .await;
        if erased.is_err() {
            conn.close_on_drop();
        }
        let (before, generation_before, after) = erased?;
        let removed = self.memory.erase(site, scope).await?;
        {
            let mut c = self.coverage.lock().unwrap_or_else(|e| e.into_inner());
            // Memory held the whole log before the erase only if nothing else wrote.
            c.whole &= c.batches == before && c.generation == generation_before;
            c.batches = after;
            c.generation = generation_before + 1;
            c.changed += removed.max(1);
        }
        // The erased events leave the disk now, not at the next close.
        snapshot::remove(&self.dir)?;
        Ok(removed)
    }

    fn reserve(&self, site: &str, additional: usize) {
        self.memory.reserve_sync(site, additional);
    }

    /// Encodes the batches on the calling thread (an import prepares on every core).
    fn prepare(&self, events: Vec<Event>) -> Result<PreparedEvents, StoreError> {
        let refs: Vec<&Event> = events.iter().collect();
        let batches = encode_batches(&refs)?;
        Ok(PreparedEvents::with_payload(events, Box::new(batches)))
    }

    fn chunk_encoder(&self) -> Option<Box<dyn ChunkEncoder>> {
        Some(Box::new(SqliteChunk(BatchBuilder::default())))
    }

    async fn append_prepared(&self, events: &PreparedEvents) -> Result<AppendReport, StoreError> {
        let encoded = events
            .payload()
            .and_then(|p| p.downcast_ref::<Vec<StoredBatch>>());
        self.store_events(events.events(), encoded.map(Vec::as_slice))
            .await
    }

    async fn extent(
        &self,
        site: &str,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        self.memory.extent(site).await
    }

    async fn query(
        &self,
        site: &Site,
        query: &Query,
        cx: &Context,
    ) -> Result<QueryResult, StoreError> {
        self.memory.query_sync(site, query, cx)
    }

    async fn funnel(
        &self,
        site: &Site,
        funnel: &Funnel,
        cx: &Context,
    ) -> Result<FunnelResult, StoreError> {
        self.memory.funnel_sync(site, funnel, cx)
    }

    async fn goals(
        &self,
        site: &Site,
        goals: &GoalsRequest,
        cx: &Context,
    ) -> Result<GoalsResult, StoreError> {
        self.memory.goals_sync(site, goals, cx)
    }

    async fn realtime(
        &self,
        site: &Site,
        req: &RealtimeRequest,
        cx: &Context,
    ) -> Result<RealtimeResult, StoreError> {
        self.memory.realtime_sync(site, req, cx)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.memory.stats().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batches::{encode_batch, encode_msgpack, CODEC, JSON_CODEC, MSGPACK_CODEC};
    use beacon_core::{ConfigStore, Currency, EventKind, Money};
    use futures_util::TryStreamExt;

    fn event(visitor: &str, minute: u32, kind: EventKind) -> Event {
        let mut e = Event {
            site: "example.com".into(),
            kind,
            timestamp: format!("2026-03-01T10:{minute:02}:00Z")
                .parse()
                .expect("time"),
            id: uuid::Uuid::from_u128(u128::from(minute) << 64 | visitor.len() as u128),
            ..Event::default()
        };
        e.identity.visitor_id = visitor.to_owned();
        e.page.path = format!("/{visitor}/{minute}");
        e.page.host = "example.com".into();
        e.device.browser = Some("Firefox \"quoted\"".into());
        e
    }

    async fn open(dir: &Path) -> SqliteStore {
        let store = SqliteStore::open(dir).await.expect("open");
        store
            .put_site(Site::new("example.com"))
            .await
            .expect("site");
        store
    }

    async fn scan(store: &SqliteStore, req: ScanRequest) -> Vec<Event> {
        let mut batches = store.scan(&req).await.expect("scan");
        let mut out = Vec::new();
        while let Some(b) = batches.try_next().await.expect("batch") {
            out.extend(b);
        }
        out
    }

    /// The events memory holds (the fields its engine keeps).
    async fn stored(store: &SqliteStore) -> Vec<Event> {
        let mut events = scan_memory(store).await;
        events.sort_by_key(|e| (e.timestamp, e.identity.visitor_id.clone()));
        events
    }

    async fn scan_memory(store: &SqliteStore) -> Vec<Event> {
        let mut batches = store
            .memory()
            .scan(&ScanRequest::new("example.com"))
            .await
            .expect("scan");
        let mut out = Vec::new();
        while let Some(b) = batches.try_next().await.expect("batch") {
            out.extend(b);
        }
        out
    }

    /// Every stored event, decoded from SQLite (memory keeps fewer fields).
    async fn raw(store: &SqliteStore) -> Vec<Event> {
        let rows = sqlx::query("SELECT events, codec, body, site FROM batches")
            .fetch_all(&store.pool)
            .await
            .expect("batches");
        let mut events: Vec<Event> = rows
            .iter()
            .flat_map(|r| {
                let count = usize::try_from(r.get::<i64, _>(0)).expect("count");
                decode_batch(r.get(1), r.get(2), count, r.get(3)).expect("decode")
            })
            .collect();
        events.sort_by_key(|e| (e.timestamp, e.identity.visitor_id.clone()));
        events
    }

    async fn batch_rows(store: &SqliteStore) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM batches")
            .fetch_one(&store.pool)
            .await
            .expect("count")
            .get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_leaves_no_write_ahead_log_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        for batch in 0..40u128 {
            let events: Vec<Event> = (0..2_000u128)
                .map(|i| {
                    let mut e = event(
                        &format!("visitor-{i}"),
                        (i % 60) as u32,
                        EventKind::Pageview,
                    );
                    e.id = uuid::Uuid::from_u128(batch << 32 | i);
                    e
                })
                .collect();
            store.append(&events).await.expect("append");
        }
        let wal = dir.path().join("beacon.sqlite-wal");
        assert!(
            std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
            "the appends went through the WAL"
        );
        store.close().await;
        let left = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert_eq!(left, 0, "close empties the WAL into the database");
        let reopened = open(dir.path()).await;
        assert_eq!(reopened.stats().await.expect("stats").events, Some(80_000));
        reopened.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_in_the_background_not_by_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let file = dir.path().join("beacon.sqlite");
        // Let the checkpoint of the schema pass, then measure the database file. The
        // appends stay below SQLite's automatic threshold (1,000 pages), so only the
        // background task moves them into the file.
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let before = std::fs::metadata(&file).expect("db file").len();
        for minute in 0..50 {
            let events: Vec<Event> = (0..200)
                .map(|v| {
                    event(
                        &format!("visitor-{minute}-{v}"),
                        minute,
                        EventKind::Pageview,
                    )
                })
                .collect();
            store.append(&events).await.expect("append");
        }
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let later = std::fs::metadata(&file).expect("db file").len();
        assert!(
            later > before,
            "the background checkpoint moved the log into the file ({before} -> {later} bytes)"
        );
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_written_as_json_lines_by_older_versions_load_and_erase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let events = [
            event("ann", 1, EventKind::Pageview),
            event("bob", 2, EventKind::Pageview),
        ];
        let mut lines = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut lines, e).expect("json");
            lines.push(b'\n');
        }
        sqlx::query("INSERT INTO batches (site, events, codec, body) VALUES (?, ?, ?, ?)")
            .bind("example.com")
            .bind(2i64)
            .bind(JSON_CODEC)
            .bind(lz4_flex::compress_prepend_size(&lines))
            .execute(&store.pool)
            .await
            .expect("insert");
        store.close().await;
        let store = open(dir.path()).await;
        assert_eq!(stored(&store).await.len(), 2);
        store
            .erase("example.com", EraseScope::Visitor("ann".into()))
            .await
            .expect("erase");
        assert_eq!(raw(&store).await, [events[1].clone()]);
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_survive_reopening_and_erase_rewrites_only_the_visitors_batches() {
        // A visitor id as the pipeline makes them: hexadecimal, which the columns
        // codec stores in half the bytes.
        const ANN: &str = "0a1b2c3d4e5f6a7b";
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        // Ann's id in no other field: only the visitor column can find her batches.
        let ann = |minute| Event {
            page: beacon_core::Page::default(),
            ..event(ANN, minute, EventKind::Pageview)
        };
        let first = vec![ann(1), event("bob", 2, EventKind::Pageview)];
        let second = vec![ann(3)];
        let third = vec![event("cy", 4, EventKind::Goal)];
        for events in [&first, &second, &third] {
            store.append(events).await.expect("append");
        }
        assert_eq!(batch_rows(&store).await, 3);
        let before = stored(&store).await;
        let mut all: Vec<Event> = first.iter().chain(&second).chain(&third).cloned().collect();
        all.sort_by_key(|e| (e.timestamp, e.identity.visitor_id.clone()));
        assert_eq!(raw(&store).await, all, "every field is stored");
        store.close().await;

        let store = open(dir.path()).await;
        assert_eq!(
            stored(&store).await,
            before,
            "memory is the same after reopening"
        );
        store
            .erase("example.com", EraseScope::Visitor(ANN.into()))
            .await
            .expect("erase");
        // The batch of ann alone is gone; the mixed one is rewritten; cy's is untouched.
        assert_eq!(batch_rows(&store).await, 2);
        assert!(
            raw(&store)
                .await
                .iter()
                .all(|e| e.identity.visitor_id != ANN),
            "no event of ann is left on disk"
        );
        store.close().await;

        let store = open(dir.path()).await;
        let left: Vec<String> = stored(&store)
            .await
            .iter()
            .map(|e| e.identity.visitor_id.clone())
            .collect();
        assert_eq!(left, ["bob", "cy"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_payment_id_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let mut purchase = event("ann", 5, EventKind::Purchase);
        purchase.commerce.revenue = Some(Money::parse("19.00", Currency::USD).expect("money"));
        let view = event("ann", 4, EventKind::Pageview);
        store
            .append(&[view.clone(), purchase.clone(), purchase.clone()])
            .await
            .expect("append");
        store
            .append(std::slice::from_ref(&purchase))
            .await
            .expect("redelivery");
        let prepared = store.prepare(vec![purchase.clone()]).expect("encode");
        let again = store.append_prepared(&prepared).await.expect("again");
        assert_eq!((again.stored, again.duplicates), (0, vec![purchase.id]));
        store.close().await;
        let store = open(dir.path()).await;
        assert_eq!(raw(&store).await, vec![view, purchase]);
        assert_eq!(stored(&store).await.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn event_rows_of_older_versions_are_converted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = vec![
            event("ann", 1, EventKind::Pageview),
            event("bob", 2, EventKind::Pageview),
        ];
        {
            let options = SqliteConnectOptions::new()
                .filename(dir.path().join("beacon.sqlite"))
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.expect("sqlite");
            for ddl in [
                "CREATE TABLE sites (domain TEXT PRIMARY KEY, settings TEXT NOT NULL)",
                "CREATE TABLE events (id BLOB PRIMARY KEY, site TEXT NOT NULL, visitor TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL)",
            ] {
                sqlx::query(ddl).execute(&pool).await.expect("ddl");
            }
            let site = serde_json::to_string(&Site::new("example.com")).expect("site");
            sqlx::query("INSERT INTO sites VALUES ('example.com', ?)")
                .bind(site)
                .execute(&pool)
                .await
                .expect("site");
            for e in &events {
                sqlx::query("INSERT INTO events VALUES (?, ?, ?, ?, ?)")
                    .bind(e.id.as_bytes().to_vec())
                    .bind(&e.site)
                    .bind(&e.identity.visitor_id)
                    .bind(e.timestamp.timestamp_millis())
                    .bind(serde_json::to_string(e).expect("json"))
                    .execute(&pool)
                    .await
                    .expect("row");
            }
            pool.close().await;
        }
        let store = SqliteStore::open(dir.path()).await.expect("open");
        assert_eq!(raw(&store).await, events);
        assert_eq!(stored(&store).await.len(), 2);
        assert_eq!(batch_rows(&store).await, 1);
        let old = sqlx::query("SELECT 1 FROM sqlite_master WHERE name = 'events'")
            .fetch_optional(&store.pool)
            .await
            .expect("schema");
        assert!(old.is_none(), "the old table is dropped");
    }

    #[test]
    fn a_corrupt_or_unknown_batch_is_an_error_not_a_panic() {
        let site = "example.com";
        assert!(decode_batch("zstd", b"", 0, site).is_err());
        for codec in [CODEC, MSGPACK_CODEC, JSON_CODEC] {
            assert!(decode_batch(codec, b"", 0, site).is_err());
            assert!(decode_batch(codec, b"\xff\xff\xff\x7fjunk", 0, site).is_err());
            let not_json = lz4_flex::compress_prepend_size(b"{not json}\n");
            assert!(decode_batch(codec, &not_json, 1, site).is_err());
        }
        // A batch cut short in the middle of an event.
        let whole = lz4_flex::decompress_size_prepended(
            &encode_msgpack(&[&full_event(), &full_event()]).expect("encode"),
        )
        .expect("lz4");
        let cut = lz4_flex::compress_prepend_size(&whole[..whole.len() - 7]);
        assert!(decode_batch(MSGPACK_CODEC, &cut, 2, site).is_err());
        // Columns: every cut, and every byte changed, of a whole batch's bytes is an
        // error or other events, never a panic.
        let body = encode_batch(&[&full_event(), &full_event()]).expect("encode");
        let bytes = columns::decompress(&body).expect("zstd");
        for n in 0..bytes.len() {
            assert!(columns::decode(&bytes[..n], site).is_err(), "cut at {n}");
        }
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut spoiled = bytes.clone();
                spoiled[i] ^= flip;
                let _ = columns::decode(&spoiled, site);
            }
        }
        let mut body = body;
        let last = body.len() - 1;
        body[last] ^= 0x55;
        assert!(
            decode_batch(CODEC, &body, 2, site).is_err(),
            "zstd frame damaged"
        );
        body[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decode_batch(CODEC, &body, 2, site).is_err(),
            "a size past the limit"
        );
    }

    /// An event with every field set, in every struct of the event model.
    fn full_event() -> Event {
        let t = |s: &str| Some(beacon_core::Text::from(s));
        let mut e = event("visitor \"é\" 1", 7, EventKind::Purchase);
        e.name = Some("plan ✓".into());
        e.timestamp = "2026-03-01T10:07:00.123456Z".parse().expect("time");
        e.client_timestamp = Some("2026-03-01T10:06:59.5Z".parse().expect("time"));
        let i = &mut e.identity;
        (i.session_id, i.session_number, i.user_id) = (Some(u64::MAX), Some(3), Some("u-1".into()));
        (i.email_sha256, i.phone_sha256) = (Some("e".repeat(64)), Some("f".repeat(64)));
        let p = &mut e.page;
        p.url = "https://example.com/p?q=1".into();
        (p.title, p.referrer) = (Some("Title\n\ttab".into()), Some("https://t.co/x".into()));
        p.referrer_domain = Some("t.co".into());
        let a = &mut e.acquisition;
        (a.source, a.medium, a.channel) = (t("Twitter"), t("social"), t("Organic Social"));
        a.utm = beacon_core::Utm {
            source: t("news"),
            medium: t("email"),
            campaign: t("spring"),
            content: t("hero"),
            term: t("shoes"),
        };
        a.click_ids = beacon_core::ClickIds {
            gclid: Some("g".into()),
            fbclid: Some("f".into()),
            ttclid: Some("t".into()),
            msclkid: Some("m".into()),
        };
        let d = &mut e.device;
        d.device_type = Some(beacon_core::DeviceType::Tablet);
        (d.brand, d.model, d.os, d.os_version) = (t("Apple"), t("iPad"), t("iPadOS"), t("17.1"));
        d.browser_version = t("17.1");
        (d.screen, d.viewport, d.pixel_ratio) = (Some((1024, 768)), Some((1000, 700)), Some(2.5));
        d.language = Some("fr-CA".into());
        let l = &mut e.location;
        (l.country, l.region, l.city, l.postal_code) = (t("CA"), t("QC"), t("Montréal"), t("H2X"));
        (l.latitude, l.longitude, l.timezone) = (Some(45.5), Some(-73.56), t("America/Toronto"));
        let n = &mut e.network;
        n.ip = Some("2001:db8::1".parse().expect("ip"));
        (n.asn, n.isp, n.organization) = (Some(64_512), t("ISP"), t("Org"));
        n.company = beacon_core::Company {
            name: t("Acme"),
            domain: t("acme.test"),
            industry: t("Retail"),
            size: t("51-200"),
        };
        n.visitor_type = Some(beacon_core::VisitorType::Business);
        (n.is_vpn, n.is_proxy, n.is_hosting) = (true, true, true);
        e.engagement = beacon_core::Engagement {
            time_ms: Some(12_345),
            scroll_depth: Some(80),
            clicks: Some(3),
            form_submits: Some(1),
            video_plays: Some(2),
            downloads: Some(4),
        };
        let usd = |minor| Money {
            minor,
            currency: Currency::USD,
        };
        let c = &mut e.commerce;
        (c.revenue, c.goal_value, c.refunded_total) =
            (Some(usd(4900)), Some(usd(100)), Some(usd(-900)));
        c.order_id = Some("order-1".into());
        e.props.insert("plan".into(), "pro".into());
        e.props.insert("".into(), "\u{0}".into());
        e.bot = Some(beacon_core::BotInfo {
            reason: "crawler pattern \"x\"".into(),
        });
        e
    }

    /// A chunk encoded piece by piece, as an importer's worker hands it over, gives
    /// the batches of each site in its events' order, a batch each [`BATCH`]
    /// events, each body the bytes of its events encoded at once by a fresh writer
    /// (a writer reused after a sealed batch starts clean). A different number of
    /// events at the end is an error.
    #[tokio::test]
    async fn a_chunk_encoded_in_pieces_is_its_batches() {
        let mut events = Vec::new();
        for i in 0..(BATCH * 5 / 4 + 900) {
            let mut e = event(
                &format!("v{}", i % 97),
                (i % 60) as u32,
                EventKind::Pageview,
            );
            e.id = uuid::Uuid::from_u128(i as u128 + 1);
            e.identity.session_id = Some((i % 13) as u64);
            e.client_timestamp = Some(e.timestamp - chrono::TimeDelta::milliseconds(i as i64));
            if i % 5 == 0 {
                e.site = format!("other{}.test", i % 3);
            }
            events.push(e);
        }
        let mut sites: Vec<&str> = Vec::new();
        for e in &events {
            if !sites.contains(&e.site.as_str()) {
                sites.push(&e.site);
            }
        }
        let mut expected = Vec::new();
        for site in sites {
            let of_site: Vec<&Event> = events.iter().filter(|e| e.site == site).collect();
            for batch in of_site.chunks(BATCH) {
                let times = batch.iter().map(|e| e.timestamp.timestamp_millis());
                expected.push((
                    site.to_owned(),
                    batch.len(),
                    times.clone().min().unwrap_or(0),
                    times.max().unwrap_or(0),
                    encode_batch(batch).expect("encode"),
                ));
            }
        }
        assert!(expected.len() >= 5, "two batches of one site, and others");
        let store = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(store.path()).await.expect("open");
        for piece in [1, 256, 5000, BATCH * 2] {
            let mut chunk = store.chunk_encoder().expect("an encoder");
            for part in events.chunks(piece) {
                chunk.add(part).expect("add");
            }
            let prepared = chunk.finish(events.clone()).expect("finish");
            let batches = prepared
                .payload()
                .and_then(|p| p.downcast_ref::<Vec<StoredBatch>>())
                .expect("batches");
            let got: Vec<_> = batches
                .iter()
                .map(|b| (b.site.clone(), b.events, b.min_ts, b.max_ts, b.body.clone()))
                .collect();
            assert!(got == expected, "pieces of {piece}");
        }
        let mut short = store.chunk_encoder().expect("an encoder");
        short.add(&events[..3]).expect("add");
        assert!(short.finish(events[..2].to_vec()).is_err());
    }

    /// Every field survives a stored batch, in the codec written and the ones read
    /// from older stores; each event is read back whole.
    #[test]
    fn every_field_survives_every_codec() {
        let mut v4 = full_event();
        v4.network.ip = Some("203.0.113.9".parse().expect("ip"));
        v4.timestamp = "2026-03-01T10:07:00Z".parse().expect("time");
        // URLs in each of the forms the columns codec writes: after the host and path
        // over https or http, and whole.
        v4.page.url = "http://example.com/v/1#top".into();
        let mut other = Event {
            site: "example.com".into(),
            ..Event::default()
        };
        other.page.url = "https://elsewhere.test/x".into();
        other.engagement.time_ms = Some(u64::MAX);
        other.commerce.revenue = Some(Money {
            minor: i64::MIN,
            currency: Currency::parse("JPY").expect("yen"),
        });
        // Times before and after the one before, with sub-millisecond parts and a
        // leap second.
        other.timestamp = "1969-12-31T23:59:59.999999999Z".parse().expect("time");
        let mut leap = event("v", 2, EventKind::Custom);
        leap.timestamp = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_001))
            .expect("leap second")
            .and_utc();
        let events = [
            full_event(),
            other,
            v4,
            event("v", 1, EventKind::Pageview),
            leap,
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let packed = encode_batch(&refs).expect("encode");
        assert_eq!(
            decode_batch(CODEC, &packed, 5, "example.com").expect("decode"),
            events
        );
        let packed = encode_msgpack(&refs).expect("encode");
        assert_eq!(
            decode_batch(MSGPACK_CODEC, &packed, 5, "example.com").expect("decode"),
            events
        );
        let mut lines = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut lines, e).expect("json");
            lines.push(b'\n');
        }
        let json = lz4_flex::compress_prepend_size(&lines);
        assert_eq!(
            decode_batch(JSON_CODEC, &json, 5, "example.com").expect("decode"),
            events
        );
        let two_sites = [&events[0], &Event::default()];
        assert!(encode_batch(&two_sites).is_err(), "a batch is of one site");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_id_is_stored_once_across_restarts_and_scans_read_every_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let mut full = full_event();
        full.site = "example.com".into();
        assert_eq!(
            store
                .append(std::slice::from_ref(&full))
                .await
                .expect("append")
                .stored,
            1
        );
        store.close().await;
        let store = open(dir.path()).await;
        let again = store
            .append(std::slice::from_ref(&full))
            .await
            .expect("again");
        assert_eq!((again.stored, again.duplicates), (0, vec![full.id]));
        assert_eq!(
            scan(&store, ScanRequest::new("example.com")).await,
            [full.clone()]
        );
        let before = ScanRequest::new("example.com").between(None, Some(full.timestamp));
        assert!(
            scan(&store, before).await.is_empty(),
            "batches outside the range are skipped"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_database_file_is_refused_not_taken_for_an_empty_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("beacon.sqlite"), b"").expect("empty file");
        let e = SqliteStore::open(dir.path()).await.expect_err("refused");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("0 bytes"), "{e}");
        assert_eq!(
            std::fs::metadata(dir.path().join("beacon.sqlite"))
                .expect("kept")
                .len(),
            0,
            "the file is left as it was"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_erases_from_disk_whole_and_straddling_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        // Two commits: minutes 1-3 in one batch, 10-12 in another.
        let first: Vec<Event> = (1..=3)
            .map(|m| event("ann", m, EventKind::Pageview))
            .collect();
        let second: Vec<Event> = (10..=12)
            .map(|m| event("bob", m, EventKind::Pageview))
            .collect();
        store.append(&first).await.expect("first");
        store.append(&second).await.expect("second");
        let cutoff = "2026-03-01T10:11:00Z".parse().expect("time");
        let n = store
            .erase("example.com", EraseScope::Before(cutoff))
            .await
            .expect("erase");
        assert_eq!(n, 4);
        store.close().await;
        drop(store);
        let store = SqliteStore::open(dir.path()).await.expect("reopen");
        let left: Vec<String> = store
            .scan(&ScanRequest::new("example.com"))
            .await
            .expect("scan")
            .try_collect::<Vec<Vec<Event>>>()
            .await
            .expect("batches")
            .into_iter()
            .flatten()
            .map(|e| e.page.path)
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, ["/bob/11", "/bob/12"], "after a restart too");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_erased_payment_redelivered_is_not_stored_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let mut purchase = event("ann", 5, EventKind::Purchase);
        purchase.commerce.revenue = Some(Money::parse("19.00", Currency::USD).expect("money"));
        store
            .append(std::slice::from_ref(&purchase))
            .await
            .expect("append");
        let n = store
            .erase("example.com", EraseScope::Visitor("ann".into()))
            .await
            .expect("erase");
        assert_eq!(n, 1);
        let again = store
            .append(std::slice::from_ref(&purchase))
            .await
            .expect("again");
        assert_eq!(
            again.stored, 0,
            "the order's id is remembered after the erase"
        );
        let view = event("ann", 6, EventKind::Pageview);
        assert_eq!(store.append(&[view]).await.expect("view").stored, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn configuration_tables_of_older_versions_are_converted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let options = SqliteConnectOptions::new()
                .filename(dir.path().join("beacon.sqlite"))
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.expect("sqlite");
            for ddl in [
                "CREATE TABLE sites (domain TEXT PRIMARY KEY, settings TEXT NOT NULL)",
                "CREATE TABLE salts (day TEXT PRIMARY KEY, salt BLOB NOT NULL)",
                "CREATE TABLE webhook_secrets (site TEXT NOT NULL, provider TEXT NOT NULL, secret TEXT NOT NULL, PRIMARY KEY (site, provider))",
            ] {
                sqlx::query(ddl).execute(&pool).await.expect("ddl");
            }
            let site = Site::new("old.example").with_session_timeout_secs(600);
            sqlx::query("INSERT INTO sites VALUES ('old.example', ?)")
                .bind(serde_json::to_string(&site).expect("site"))
                .execute(&pool)
                .await
                .expect("site");
            sqlx::query("INSERT INTO salts VALUES ('2026-03-01', ?)")
                .bind(vec![7u8; 32])
                .execute(&pool)
                .await
                .expect("salt");
            sqlx::query("INSERT INTO webhook_secrets VALUES ('old.example', 'stripe', 'whsec_x')")
                .execute(&pool)
                .await
                .expect("secret");
            pool.close().await;
        }
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let site = store
            .site("old.example")
            .await
            .expect("site")
            .expect("kept");
        assert_eq!(site.session_timeout_secs, 600);
        assert_eq!(
            store
                .webhook_secret("old.example", "stripe")
                .await
                .expect("secret")
                .as_deref(),
            Some("whsec_x")
        );
        let salt = store
            .get(&beacon_core::backend::ConfigKey::new(
                beacon_core::backend::ConfigKind::Salt,
                "",
                "2026-03-01",
            ))
            .await
            .expect("salt");
        assert_eq!(salt, Some(vec![7u8; 32]));
        let old = sqlx::query(
            "SELECT 1 FROM sqlite_master WHERE name IN ('sites', 'salts', 'webhook_secrets')",
        )
        .fetch_optional(&store.pool)
        .await
        .expect("schema");
        assert!(old.is_none(), "the old tables are dropped");
    }
}
