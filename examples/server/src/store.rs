//! The embedded, durable store: every event is committed to SQLite (WAL mode, one
//! transaction per batch) before it is acknowledged, and lives in the in-memory engine,
//! which answers queries. On open, SQLite is read back into memory.
//!
//! Data directory layout: `<data-dir>/beacon.sqlite` (with SQLite's `-wal` and `-shm`
//! files beside it). Tables: `sites (domain, settings JSON)`, `events (id, site,
//! visitor, ts, body JSON)`, `webhook_secrets (site, provider, secret)`, `salts (day,
//! salt)`: the daily salts of cookieless visitor ids, today's and yesterday's only.

use async_trait::async_trait;
use beacon_core::{
    EraseScope, Event, EventColumns, EventStore, MemoryStore, Query, QueryResult, Site, SiteStore,
    StoreError,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;

fn backend(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

fn json_err(operation: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

/// SQLite for durability, [`MemoryStore`] for queries.
#[derive(Debug)]
pub struct EmbeddedStore {
    pool: SqlitePool,
    memory: MemoryStore,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` and loads it into memory.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend {
            operation: "create data dir",
            source: Box::new(e),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("beacon.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL survives a killed process (not a power cut) and keeps commits fast.
            .synchronous(SqliteSynchronous::Normal)
            // Event ids arrive in time order of the hits, not of insertion: a page cache
            // that holds the id index keeps large imports from going to disk per row.
            .pragma("cache_size", "-262144")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(backend("open sqlite"))?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS sites (domain TEXT PRIMARY KEY, settings TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS events (id BLOB PRIMARY KEY, site TEXT NOT NULL, visitor TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS events_site_visitor ON events (site, visitor)",
            "CREATE TABLE IF NOT EXISTS salts (day TEXT PRIMARY KEY, salt BLOB NOT NULL)",
            "CREATE TABLE IF NOT EXISTS webhook_secrets (site TEXT NOT NULL, provider TEXT NOT NULL, secret TEXT NOT NULL, PRIMARY KEY (site, provider))",
        ] {
            sqlx::query(ddl).execute(&pool).await.map_err(backend("create schema"))?;
        }
        let store = Self {
            pool,
            memory: MemoryStore::new(),
        };
        store.load().await?;
        Ok(store)
    }

    async fn load(&self) -> Result<(), StoreError> {
        let sites = sqlx::query("SELECT settings FROM sites")
            .fetch_all(&self.pool)
            .await
            .map_err(backend("load sites"))?;
        for row in sites {
            let site: Site =
                serde_json::from_str(row.get::<&str, _>(0)).map_err(json_err("decode site"))?;
            self.memory.put_site_sync(site)?;
        }
        // Keyset pages (rowid > last), each decoded on every core while SQLite reads
        // the next page.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fetch = |after: i64| {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let rows = sqlx::query(
                    "SELECT rowid, body FROM events WHERE rowid > ? ORDER BY rowid LIMIT 50000",
                )
                .bind(after)
                .fetch_all(&pool)
                .await
                .map_err(backend("load events"))?;
                let last = rows.last().map(|r| r.get::<i64, _>(0));
                let bodies: Vec<String> = rows.iter().map(|r| r.get::<String, _>(1)).collect();
                Ok::<_, StoreError>((last, bodies))
            })
        };
        let mut next = fetch(0);
        loop {
            let (last, bodies) = next.await.map_err(|e| StoreError::Backend {
                operation: "load events",
                source: Box::new(e),
            })??;
            let Some(last) = last else { break };
            next = fetch(last);
            let chunk = bodies.len().div_ceil(threads).max(1);
            let decoded: Vec<Result<Vec<Event>, serde_json::Error>> = std::thread::scope(|s| {
                let handles: Vec<_> = bodies
                    .chunks(chunk)
                    .map(|part| {
                        s.spawn(move || {
                            part.iter()
                                .map(|b| serde_json::from_str::<Event>(b))
                                .collect::<Result<Vec<Event>, _>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            for events in decoded {
                self.memory
                    .append_sync(&events.map_err(json_err("decode event"))?)?;
            }
        }
        self.memory.build();
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
            .map_err(backend("save salt"))?;
        let row = sqlx::query("SELECT salt FROM salts WHERE day = ?")
            .bind(&key)
            .fetch_one(&self.pool)
            .await
            .map_err(backend("load salt"))?;
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
            .map_err(backend("drop salts"))?;
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
            .map_err(backend("save webhook secret"))?;
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
            .map_err(backend("load webhook secret"))?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// (site, provider) pairs with a webhook secret; never the secrets.
    pub async fn webhook_providers(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT site, provider FROM webhook_secrets ORDER BY site, provider")
                .fetch_all(&self.pool)
                .await
                .map_err(backend("list webhook secrets"))?;
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
            .map_err(backend("remove webhook secret"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Closes the database cleanly (checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        for e in events {
            if self.memory.site_sync(&e.site).is_none() {
                return Err(StoreError::UnknownSite(e.site.clone()));
            }
        }
        let mut tx = self.pool.begin().await.map_err(backend("begin"))?;
        // Many rows per statement: each statement is a round trip to sqlx's SQLite thread.
        let mut inserted = std::collections::HashSet::with_capacity(events.len());
        for chunk in events.chunks(200) {
            let mut sql =
                String::from("INSERT OR IGNORE INTO events (id, site, visitor, ts, body) VALUES ");
            for k in 0..chunk.len() {
                sql.push_str(if k == 0 {
                    "(?, ?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?, ?)"
                });
            }
            sql.push_str(" RETURNING id");
            let mut q = sqlx::query(&sql);
            for e in chunk {
                let body = serde_json::to_string(e).map_err(json_err("encode event"))?;
                q = q
                    .bind(e.id.as_bytes().to_vec())
                    .bind(e.site.clone())
                    .bind(e.identity.visitor_id.clone())
                    .bind(e.timestamp.timestamp_millis())
                    .bind(body);
            }
            for row in q
                .fetch_all(&mut *tx)
                .await
                .map_err(backend("insert events"))?
            {
                let id: Vec<u8> = row.get(0);
                inserted.insert(id);
            }
        }
        // Rows ignored as duplicates (same id, already stored) are not appended twice.
        let fresh: Vec<Event> = events
            .iter()
            .filter(|e| inserted.contains(e.id.as_bytes().as_slice()))
            .cloned()
            .collect();
        tx.commit().await.map_err(backend("commit"))?;
        // Committed: now visible to queries. Duplicates (same id) were ignored.
        self.memory.append_sync(&fresh)
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
        let q = match &scope {
            EraseScope::All => sqlx::query("DELETE FROM events WHERE site = ?").bind(site),
            EraseScope::Visitor(v) => {
                sqlx::query("DELETE FROM events WHERE site = ? AND visitor = ?")
                    .bind(site)
                    .bind(v.clone())
            }
        };
        q.execute(&self.pool).await.map_err(backend("erase"))?;
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
        let settings = serde_json::to_string(&site).map_err(json_err("encode site"))?;
        sqlx::query("INSERT INTO sites (domain, settings) VALUES (?, ?) ON CONFLICT (domain) DO UPDATE SET settings = excluded.settings")
            .bind(&site.domain)
            .bind(settings)
            .execute(&self.pool)
            .await
            .map_err(backend("save site"))?;
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
            .map_err(backend("load site"))?;
        match row {
            None => Ok(None),
            Some(row) => {
                let site: Site =
                    serde_json::from_str(row.get::<&str, _>(0)).map_err(json_err("decode site"))?;
                self.memory.put_site_sync(site.clone())?;
                Ok(Some(site))
            }
        }
    }
    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.memory.sites().await
    }
    async fn remove_site(&self, domain: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend("begin"))?;
        sqlx::query("DELETE FROM events WHERE site = ?")
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(backend("remove site"))?;
        sqlx::query("DELETE FROM sites WHERE domain = ?")
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(backend("remove site"))?;
        sqlx::query("DELETE FROM webhook_secrets WHERE site = ?")
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(backend("remove site"))?;
        tx.commit().await.map_err(backend("commit"))?;
        self.memory.remove_site(domain).await
    }
}
