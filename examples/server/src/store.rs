//! The embedded, durable store: every event is committed to SQLite (WAL mode, one
//! transaction per group of requests or import chunk) before it is acknowledged, and
//! lives in the in-memory engine, which answers queries. On open, SQLite is read back
//! into memory.
//!
//! Events are stored in batches, not one row each: a batch is the events of one site
//! from one commit (at most [`BATCH`]), as MessagePack compressed with LZ4. A row per
//! event with its own key and index cost more than everything else in ingest, and
//! reading 10M rows back through SQLite dominated restart.
//!
//! Data directory layout: `<data-dir>/beacon.sqlite` (with SQLite's `-wal` and `-shm`
//! files beside it). Tables:
//! - `sites (domain, settings JSON)`;
//! - `batches (id, site, events, codec, body)`: `body` is an LZ4 block, its
//!   uncompressed size first as a little-endian u32, of the events one after another
//!   in the `codec`'s form: `msgpack+lz4` (each event a MessagePack map with the same
//!   field names as the event's JSON) is written; `ndjson+lz4` (one JSON event per
//!   line), which earlier versions wrote, is read too. MessagePack measured faster to
//!   write and to read back than JSON (no escaping, no number formatting).
//! - `payment_ids (id)`: ids of stored purchases and refunds, which webhooks derive from
//!   the provider's order, so that one order is stored once;
//! - `webhook_secrets (site, provider, secret)`;
//! - `salts (day, salt)`: the daily salts of cookieless visitor ids, yesterday's to
//!   tomorrow's only.
//!
//! A store written by an older version (one `events` row per event) is converted to
//! batches when opened.

use async_trait::async_trait;
use beacon_core::{
    EraseScope, Event, EventColumns, EventKind, EventStore, MemoryStore, Query, QueryResult, Site,
    SiteStore, StoreError,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The most events in one stored batch.
pub const BATCH: usize = 8192;

/// The codec of the batches written.
const CODEC: &str = "msgpack+lz4";

/// The codec earlier versions wrote: still read.
const JSON_CODEC: &str = "ndjson+lz4";

/// Batches read per query on open.
const LOAD_PAGE: i64 = 16;

/// Maps any error of `operation` into a store error.
fn failed<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

/// SQLite for durability, [`MemoryStore`] for queries.
#[derive(Debug)]
pub struct EmbeddedStore {
    pool: SqlitePool,
    memory: Arc<MemoryStore>,
    checkpointer: tokio::task::AbortHandle,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the background task moves the write-ahead log into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Checkpoints the WAL off the commit path until the pool closes. SQLite's automatic
/// checkpoint runs inside whichever commit crosses the threshold, and every request
/// waiting on that group commit waited for it too (maxima of 0.5 to 0.9 s under load;
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

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` and loads it into memory.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(failed("create data dir"))?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("beacon.sqlite"))
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
            "CREATE TABLE IF NOT EXISTS sites (domain TEXT PRIMARY KEY, settings TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, site TEXT NOT NULL, events INTEGER NOT NULL, codec TEXT NOT NULL, body BLOB NOT NULL)",
            "CREATE INDEX IF NOT EXISTS batches_site ON batches (site)",
            "CREATE TABLE IF NOT EXISTS payment_ids (id BLOB PRIMARY KEY)",
            "CREATE TABLE IF NOT EXISTS salts (day TEXT PRIMARY KEY, salt BLOB NOT NULL)",
            "CREATE TABLE IF NOT EXISTS webhook_secrets (site TEXT NOT NULL, provider TEXT NOT NULL, secret TEXT NOT NULL, PRIMARY KEY (site, provider))",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(failed("create schema"))?;
        }
        let checkpointer = tokio::spawn(checkpoint_in_background(pool.clone())).abort_handle();
        let store = Self {
            pool,
            memory: Arc::new(MemoryStore::new()),
            checkpointer,
        };
        store.convert_event_rows().await?;
        store.load().await?;
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
        let mut tx = self.pool.begin().await.map_err(failed("begin"))?;
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
                .map_err(failed("convert events"))?;
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

    async fn load(&self) -> Result<(), StoreError> {
        let sites = sqlx::query("SELECT settings FROM sites")
            .fetch_all(&self.pool)
            .await
            .map_err(failed("load sites"))?;
        for row in sites {
            let site: Site =
                serde_json::from_str(row.get::<&str, _>(0)).map_err(failed("decode site"))?;
            self.memory.put_site_sync(site)?;
        }
        let started = std::time::Instant::now();
        let counts = sqlx::query("SELECT site, SUM(events) FROM batches GROUP BY site")
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
        let (tx, rx) = tokio::sync::mpsc::channel::<(usize, String, Vec<u8>)>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let decoders: Vec<_> = (0..threads)
            .map(|_| {
                let rx = Arc::clone(&rx);
                let memory = Arc::clone(&self.memory);
                tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                    loop {
                        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                        let Some((count, codec, body)) = next else {
                            return Ok(());
                        };
                        memory.append_sync(&decode_batch(&codec, &body, count)?)?;
                    }
                })
            })
            .collect();
        let mut after = 0i64;
        let fetched: Result<(), StoreError> = 'fetch: loop {
            let rows = match sqlx::query(
                "SELECT id, events, codec, body FROM batches WHERE id > ? ORDER BY id LIMIT ?",
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
                if tx.send((count, r.get(2), r.get(3))).await.is_err() {
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
            read_ms,
            built_ms = started.elapsed().as_millis() as u64 - read_ms,
            "events loaded"
        );
        Ok(())
    }

    /// The in-memory engine (for realtime and sync queries).
    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// Stores `salt` for `day` unless one is stored already; returns the stored one
    /// (so two processes agree on a day's salt).
    pub async fn save_salt(
        &self,
        day: chrono::NaiveDate,
        salt: [u8; 32],
    ) -> Result<[u8; 32], StoreError> {
        let key = day.to_string();
        sqlx::query("INSERT OR IGNORE INTO salts (day, salt) VALUES (?, ?)")
            .bind(&key)
            .bind(salt.to_vec())
            .execute(&self.pool)
            .await
            .map_err(failed("save salt"))?;
        let row = sqlx::query("SELECT salt FROM salts WHERE day = ?")
            .bind(&key)
            .fetch_one(&self.pool)
            .await
            .map_err(failed("load salt"))?;
        let stored: Vec<u8> = row.get(0);
        Ok(stored.try_into().unwrap_or(salt))
    }

    /// Deletes salts of days before `day` (an old salt, once gone, can never link
    /// a visitor's days again).
    pub async fn drop_salts_before(&self, day: chrono::NaiveDate) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM salts WHERE day < ?")
            .bind(day.to_string())
            .execute(&self.pool)
            .await
            .map_err(failed("drop salts"))?;
        Ok(done.rows_affected())
    }

    /// Sets the signing secret of a payment provider's webhooks for a site.
    pub async fn put_webhook_secret(
        &self,
        site: &str,
        provider: &str,
        secret: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO webhook_secrets (site, provider, secret) VALUES (?, ?, ?) ON CONFLICT (site, provider) DO UPDATE SET secret = excluded.secret")
            .bind(site)
            .bind(provider)
            .bind(secret)
            .execute(&self.pool)
            .await
            .map_err(failed("save webhook secret"))?;
        Ok(())
    }

    /// The signing secret of `provider`'s webhooks for `site`.
    pub async fn webhook_secret(
        &self,
        site: &str,
        provider: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret FROM webhook_secrets WHERE site = ? AND provider = ?")
            .bind(site)
            .bind(provider)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("load webhook secret"))?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// (site, provider) pairs with a webhook secret; never the secrets.
    pub async fn webhook_providers(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT site, provider FROM webhook_secrets ORDER BY site, provider")
                .fetch_all(&self.pool)
                .await
                .map_err(failed("list webhook secrets"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Removes a webhook secret; whether there was one.
    pub async fn remove_webhook_secret(
        &self,
        site: &str,
        provider: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_secrets WHERE site = ? AND provider = ?")
            .bind(site)
            .bind(provider)
            .execute(&self.pool)
            .await
            .map_err(failed("remove webhook secret"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Commits events encoded ahead of time; returns how many were stored (a payment
    /// stored before is left out).
    pub async fn append_encoded(&self, encoded: EncodedEvents) -> Result<usize, StoreError> {
        self.store_events(&encoded.events, Some(encoded.batches))
            .await
    }

    /// One transaction: payment ids, batches (encoded now unless given), then memory.
    async fn store_events(
        &self,
        events: &[Event],
        encoded: Option<Vec<StoredBatch>>,
    ) -> Result<usize, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut site: Option<&str> = None;
        for e in events {
            if site != Some(e.site.as_str()) && self.memory.site_sync(&e.site).is_none() {
                return Err(StoreError::UnknownSite(e.site.clone()));
            }
            site = Some(&e.site);
        }
        let mut tx = self.pool.begin().await.map_err(failed("begin"))?;
        let all: Vec<&Event> = events.iter().collect();
        let fresh = remember_payments(&mut tx, &all).await?;
        let batches = match encoded {
            Some(batches) if fresh.len() == events.len() => batches,
            _ => encode_batches(&fresh)?,
        };
        write_batches(&mut tx, &batches).await?;
        tx.commit().await.map_err(failed("commit"))?;
        // Committed: now visible to queries.
        let stored = fresh.len();
        if stored == events.len() {
            self.memory.append_sync(events)?;
        } else {
            let fresh: Vec<Event> = fresh.into_iter().cloned().collect();
            self.memory.append_sync(&fresh)?;
        }
        Ok(stored)
    }

    /// Closes the database cleanly (checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, events: &[Event]) -> Result<(), StoreError> {
        self.store_events(events, None).await.map(|_| ())
    }

    async fn scan(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Event>, StoreError> {
        self.memory.scan(site, from, to).await
    }

    async fn columns(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        include_bots: bool,
    ) -> Result<EventColumns, StoreError> {
        self.memory.columns(site, from, to, include_bots).await
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("begin"))?;
        match &scope {
            EraseScope::All => {
                sqlx::query("DELETE FROM batches WHERE site = ?")
                    .bind(site)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("erase"))?;
            }
            EraseScope::Visitor(v) => erase_visitor(&mut tx, site, v).await?,
        }
        tx.commit().await.map_err(failed("commit"))?;
        self.memory.erase(site, scope).await
    }

    async fn query(
        &self,
        site: &Site,
        query: &Query,
        now: DateTime<Utc>,
    ) -> Result<QueryResult, StoreError> {
        self.memory.query_sync(site, query, now)
    }
}

#[async_trait]
impl SiteStore for EmbeddedStore {
    async fn put_site(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        let settings = serde_json::to_string(&site).map_err(failed("encode site"))?;
        sqlx::query("INSERT INTO sites (domain, settings) VALUES (?, ?) ON CONFLICT (domain) DO UPDATE SET settings = excluded.settings")
            .bind(&site.domain)
            .bind(settings)
            .execute(&self.pool)
            .await
            .map_err(failed("save site"))?;
        self.memory.put_site_sync(site)
    }
    async fn site(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        if let Some(site) = self.memory.site_sync(domain) {
            return Ok(Some(site));
        }
        // Another process (`beacon sites add`) may have created it since we loaded.
        let row = sqlx::query("SELECT settings FROM sites WHERE domain = ?")
            .bind(domain)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("load site"))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let site: Site =
                    serde_json::from_str(row.get::<&str, _>(0)).map_err(failed("decode site"))?;
                self.memory.put_site_sync(site.clone())?;
                Ok(Some(site))
            }
        }
    }
    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.memory.sites().await
    }
    async fn remove_site(&self, domain: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("begin"))?;
        sqlx::query("DELETE FROM batches WHERE site = ?")
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(failed("remove site"))?;
        sqlx::query("DELETE FROM sites WHERE domain = ?")
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(failed("remove site"))?;
        sqlx::query("DELETE FROM webhook_secrets WHERE site = ?")
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(failed("remove site"))?;
        tx.commit().await.map_err(failed("commit"))?;
        self.memory.remove_site(domain).await
    }
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// Purchases and refunds: their ids may be derived from a provider's order.
fn is_payment(e: &Event) -> bool {
    matches!(e.kind, EventKind::Purchase | EventKind::Refund)
}

/// Records the ids of purchases and refunds; returns `events` without the payments
/// stored before (or earlier in `events`): a provider's redelivery, or another
/// notification of the same order, is one purchase.
async fn remember_payments<'e>(
    tx: &mut Tx<'_>,
    events: &[&'e Event],
) -> Result<Vec<&'e Event>, StoreError> {
    let keyed: Vec<&Event> = events.iter().copied().filter(|e| is_payment(e)).collect();
    if keyed.is_empty() {
        return Ok(events.to_vec());
    }
    let mut new_ids: HashSet<uuid::Uuid> = HashSet::with_capacity(keyed.len());
    for chunk in keyed.chunks(500) {
        let mut sql = String::from("INSERT OR IGNORE INTO payment_ids (id) VALUES (?)");
        sql.push_str(&", (?)".repeat(chunk.len() - 1));
        sql.push_str(" RETURNING id");
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q.bind(e.id.as_bytes().to_vec());
        }
        for row in q
            .fetch_all(&mut **tx)
            .await
            .map_err(failed("record payment ids"))?
        {
            let id: Vec<u8> = row.get(0);
            if let Ok(id) = uuid::Uuid::from_slice(&id) {
                new_ids.insert(id);
            }
        }
    }
    // A new id is kept once: its first event in `events`.
    Ok(events
        .iter()
        .copied()
        .filter(|e| !is_payment(e) || new_ids.remove(&e.id))
        .collect())
}

/// A batch in its stored form.
#[derive(Debug)]
pub struct StoredBatch {
    site: String,
    events: usize,
    body: Vec<u8>,
}

/// Events with their stored form, encoded on the caller's thread (an import encodes
/// on every core, so that its commits only write).
#[derive(Debug, Default)]
pub struct EncodedEvents {
    events: Vec<Event>,
    batches: Vec<StoredBatch>,
}

impl EncodedEvents {
    /// Encodes `events` into batches.
    pub fn new(events: Vec<Event>) -> Result<Self, StoreError> {
        let refs: Vec<&Event> = events.iter().collect();
        let batches = encode_batches(&refs)?;
        Ok(Self { events, batches })
    }
}

/// Encodes `events` as batches of one site each, in their order.
fn encode_batches(events: &[&Event]) -> Result<Vec<StoredBatch>, StoreError> {
    let mut sites: Vec<&str> = Vec::new();
    for e in events {
        if !sites.contains(&e.site.as_str()) {
            sites.push(&e.site);
        }
    }
    let mut batches = Vec::new();
    for site in sites {
        let of_site: Vec<&Event> = events.iter().copied().filter(|e| e.site == site).collect();
        for batch in of_site.chunks(BATCH) {
            batches.push(StoredBatch {
                site: site.to_owned(),
                events: batch.len(),
                body: encode_batch(batch)?,
            });
        }
    }
    Ok(batches)
}

async fn write_batches(tx: &mut Tx<'_>, batches: &[StoredBatch]) -> Result<(), StoreError> {
    for b in batches {
        sqlx::query("INSERT INTO batches (site, events, codec, body) VALUES (?, ?, ?, ?)")
            .bind(&b.site)
            .bind(b.events as i64)
            .bind(CODEC)
            .bind(&b.body)
            .execute(&mut **tx)
            .await
            .map_err(failed("insert events"))?;
    }
    Ok(())
}

/// Rewrites the site's batches that hold events of `visitor`, without them. A batch
/// whose text does not contain the visitor's id is not decoded.
async fn erase_visitor(tx: &mut Tx<'_>, site: &str, visitor: &str) -> Result<(), StoreError> {
    let finders = visitor_needles(visitor)?;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT id, codec, body FROM batches WHERE site = ? AND id > ? ORDER BY id LIMIT 64",
        )
        .bind(site)
        .bind(after)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed("erase"))?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for row in &rows {
            let (batch, codec, body): (i64, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
            let bytes = decompress(&codec, &body)?;
            let finder = if codec == JSON_CODEC {
                &finders.0
            } else {
                &finders.1
            };
            if finder.find(&bytes).is_none() {
                continue;
            }
            let events = decode_events(&codec, &bytes, 0)?;
            let kept: Vec<&Event> = events
                .iter()
                .filter(|e| e.identity.visitor_id != visitor)
                .collect();
            if kept.len() == events.len() {
                continue;
            }
            let q = if kept.is_empty() {
                sqlx::query("DELETE FROM batches WHERE id = ?").bind(batch)
            } else {
                sqlx::query("UPDATE batches SET events = ?, codec = ?, body = ? WHERE id = ?")
                    .bind(kept.len() as i64)
                    .bind(CODEC)
                    .bind(encode_batch(&kept)?)
                    .bind(batch)
            };
            q.execute(&mut **tx).await.map_err(failed("erase"))?;
        }
    }
    Ok(())
}

/// What a batch holding events of `visitor` contains, in each codec: the field and
/// its value as that codec writes them (both write the shortest form, so a batch
/// without the bytes holds none of the visitor's events).
fn visitor_needles(
    visitor: &str,
) -> Result<
    (
        memchr::memmem::Finder<'static>,
        memchr::memmem::Finder<'static>,
    ),
    StoreError,
> {
    let id = serde_json::to_string(visitor).map_err(failed("erase"))?;
    let json = format!("\"visitor_id\":{id}").into_bytes();
    let mut packed = Vec::new();
    rmp_serde::encode::write(&mut packed, "visitor_id").map_err(failed("erase"))?;
    rmp_serde::encode::write(&mut packed, visitor).map_err(failed("erase"))?;
    Ok((
        memchr::memmem::Finder::new(&json).into_owned(),
        memchr::memmem::Finder::new(&packed).into_owned(),
    ))
}

thread_local! {
    /// Each encoding thread's text and compression buffers, kept between batches: a
    /// fresh multi-megabyte buffer per batch was paid for in page faults and zeroing.
    static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// The events as MessagePack maps one after another, LZ4-compressed, behind the
/// uncompressed size (little-endian `u32`, as `lz4_flex::decompress_size_prepended`
/// reads it).
fn encode_batch(events: &[&Event]) -> Result<Vec<u8>, StoreError> {
    BUFFERS.with_borrow_mut(|(text, out)| {
        text.clear();
        for e in events {
            rmp_serde::encode::write_named(&mut *text, e).map_err(failed("encode event"))?;
        }
        let size = u32::try_from(text.len()).map_err(failed("encode events"))?;
        let bound = 4 + lz4_flex::block::get_maximum_output_size(text.len());
        if out.len() < bound {
            out.resize(bound, 0);
        }
        out[..4].copy_from_slice(&size.to_le_bytes());
        let n = lz4_flex::block::compress_into(text, &mut out[4..])
            .map_err(failed("compress events"))?;
        Ok(out[..4 + n].to_vec())
    })
}

fn decompress(codec: &str, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    if codec != CODEC && codec != JSON_CODEC {
        return Err(StoreError::Backend {
            operation: "decode events",
            source: format!("unknown batch codec {codec:?}").into(),
        });
    }
    lz4_flex::decompress_size_prepended(body).map_err(failed("decode events"))
}

/// Decodes a batch of (about) `count` events.
fn decode_batch(codec: &str, body: &[u8], count: usize) -> Result<Vec<Event>, StoreError> {
    decode_events(codec, &decompress(codec, body)?, count)
}

/// Decodes a decompressed batch of `codec`.
fn decode_events(codec: &str, bytes: &[u8], count: usize) -> Result<Vec<Event>, StoreError> {
    if codec == JSON_CODEC {
        return decode_lines(bytes, count);
    }
    let mut events = Vec::with_capacity(count);
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    while de.position() < bytes.len() as u64 {
        events.push(serde::Deserialize::deserialize(&mut de).map_err(failed("decode event"))?);
    }
    Ok(events)
}

/// Decodes a decompressed batch.
fn decode_lines(bytes: &[u8], count: usize) -> Result<Vec<Event>, StoreError> {
    // One UTF-8 check for the batch, not one per string.
    let text = std::str::from_utf8(bytes).map_err(failed("decode events"))?;
    let mut events = Vec::with_capacity(count);
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        events.push(serde_json::from_str(line).map_err(failed("decode event"))?);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_core::{Currency, Money};

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

    async fn open(dir: &Path) -> EmbeddedStore {
        let store = EmbeddedStore::open(dir).await.expect("open");
        store
            .put_site(Site::new("example.com"))
            .await
            .expect("site");
        store
    }

    async fn stored(store: &EmbeddedStore) -> Vec<Event> {
        let mut events = store.scan("example.com", None, None).await.expect("scan");
        events.sort_by_key(|e| (e.timestamp, e.identity.visitor_id.clone()));
        events
    }

    /// Every stored event, decoded from SQLite (memory keeps fewer fields).
    async fn raw(store: &EmbeddedStore) -> Vec<Event> {
        let rows = sqlx::query("SELECT events, codec, body FROM batches")
            .fetch_all(&store.pool)
            .await
            .expect("batches");
        let mut events: Vec<Event> = rows
            .iter()
            .flat_map(|r| {
                let count = usize::try_from(r.get::<i64, _>(0)).expect("count");
                decode_batch(r.get(1), r.get(2), count).expect("decode")
            })
            .collect();
        events.sort_by_key(|e| (e.timestamp, e.identity.visitor_id.clone()));
        events
    }

    async fn batch_rows(store: &EmbeddedStore) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM batches")
            .fetch_one(&store.pool)
            .await
            .expect("count")
            .get(0)
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
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let first = vec![
            event("ann", 1, EventKind::Pageview),
            event("bob", 2, EventKind::Pageview),
        ];
        let second = vec![event("ann", 3, EventKind::Pageview)];
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
            .erase("example.com", EraseScope::Visitor("ann".into()))
            .await
            .expect("erase");
        // The batch of ann alone is gone; the mixed one is rewritten; cy's is untouched.
        assert_eq!(batch_rows(&store).await, 2);
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
        let encoded = EncodedEvents::new(vec![purchase.clone()]).expect("encode");
        assert_eq!(store.append_encoded(encoded).await.expect("again"), 0);
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
        let store = EmbeddedStore::open(dir.path()).await.expect("open");
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
        assert!(decode_batch("zstd", b"", 0).is_err());
        for codec in [CODEC, JSON_CODEC] {
            assert!(decode_batch(codec, b"\xff\xff\xff\x7fjunk", 0).is_err());
            let not_json = lz4_flex::compress_prepend_size(b"{not json}\n");
            assert!(decode_batch(codec, &not_json, 1).is_err());
        }
        // A batch cut short in the middle of an event.
        let whole = lz4_flex::decompress_size_prepended(
            &encode_batch(&[&full_event(), &full_event()]).expect("encode"),
        )
        .expect("lz4");
        let cut = lz4_flex::compress_prepend_size(&whole[..whole.len() - 7]);
        assert!(decode_batch(CODEC, &cut, 2).is_err());
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

    /// Every field survives a stored batch, in the codec written and the one read from
    /// older stores; each event is read back whole.
    #[test]
    fn every_field_survives_both_codecs() {
        let mut v4 = full_event();
        v4.network.ip = Some("203.0.113.9".parse().expect("ip"));
        v4.timestamp = "2026-03-01T10:07:00Z".parse().expect("time");
        let events = [
            full_event(),
            Event::default(),
            v4,
            event("v", 1, EventKind::Pageview),
        ];
        let refs: Vec<&Event> = events.iter().collect();
        let packed = encode_batch(&refs).expect("encode");
        assert_eq!(decode_batch(CODEC, &packed, 4).expect("decode"), events);
        let mut lines = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut lines, e).expect("json");
            lines.push(b'\n');
        }
        let json = lz4_flex::compress_prepend_size(&lines);
        assert_eq!(decode_batch(JSON_CODEC, &json, 4).expect("decode"), events);
    }
}
