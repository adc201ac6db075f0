//! [`ConfigStore`] on SQLite: the `config` table of keyed records, with sites kept
//! in memory too (ingest looks one up for every hit).

use crate::batches::failed;
use crate::SqliteStore;
use async_trait::async_trait;
use beacon_core::backend::{ConfigKey, ConfigKind, ConfigRecord};
use beacon_core::{ConfigStore, Site, StoreError};
use sqlx::{Row, SqlitePool};

/// Moves the tables of older versions (`sites`, `webhook_secrets`, `salts`) into
/// `config` records, in one transaction, and drops them.
pub(crate) async fn convert_legacy_tables(pool: &SqlitePool) -> Result<(), StoreError> {
    let present: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('sites', 'webhook_secrets', 'salts')",
    )
    .fetch_all(pool)
    .await
    .map_err(failed("read schema"))?
    .iter()
    .map(|r| r.get(0))
    .collect();
    if present.is_empty() {
        return Ok(());
    }
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(failed("begin"))?;
    let copy = [
        ("sites", "SELECT 'site', '', domain, CAST(settings AS BLOB) FROM sites"),
        (
            "webhook_secrets",
            "SELECT 'secret', site, 'webhook:' || provider, CAST(secret AS BLOB) FROM webhook_secrets",
        ),
        ("salts", "SELECT 'salt', '', day, salt FROM salts"),
    ];
    for (table, select) in copy {
        if !present.iter().any(|p| p == table) {
            continue;
        }
        let n = sqlx::query(&format!(
            "INSERT OR IGNORE INTO config (kind, scope, name, value) {select}"
        ))
        .execute(&mut *tx)
        .await
        .map_err(failed("convert configuration"))?
        .rows_affected();
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut *tx)
            .await
            .map_err(failed("convert configuration"))?;
        tracing::info!(table, records = n, "converted a table to config records");
    }
    tx.commit().await.map_err(failed("commit"))?;
    Ok(())
}

impl SqliteStore {
    fn cached_site(&self, domain: &str) -> Option<Site> {
        self.sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
            .cloned()
    }

    fn cache_site(&self, site: Option<&Site>, domain: &str) {
        let mut sites = self.sites.write().unwrap_or_else(|e| e.into_inner());
        match site {
            Some(s) => sites.insert(domain.to_owned(), s.clone()),
            None => sites.remove(domain),
        };
    }
}

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn get(&self, key: &ConfigKey) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM config WHERE kind = ? AND scope = ? AND name = ?")
            .bind(key.kind.as_str())
            .bind(&key.scope)
            .bind(&key.name)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("read config"))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn put(&self, key: &ConfigKey, value: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO config (kind, scope, name, value) VALUES (?, ?, ?, ?) \
             ON CONFLICT (kind, scope, name) DO UPDATE SET value = excluded.value",
        )
        .bind(key.kind.as_str())
        .bind(&key.scope)
        .bind(&key.name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(failed("write config"))?;
        if key.kind == ConfigKind::Site {
            // The cache learns it on the next lookup.
            self.cache_site(None, &key.name);
        }
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &ConfigKey,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO config (kind, scope, name, value) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(key.kind.as_str())
        .bind(&key.scope)
        .bind(&key.name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(failed("write config"))?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        Ok(Some(self.get(key).await?.ok_or_else(|| {
            StoreError::Corrupt {
                what: format!(
                    "config record {}/{}/{}",
                    key.kind.as_str(),
                    key.scope,
                    key.name
                ),
                detail: "was there and is gone".into(),
            }
        })?))
    }

    async fn delete(&self, key: &ConfigKey) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM config WHERE kind = ? AND scope = ? AND name = ?")
            .bind(key.kind.as_str())
            .bind(&key.scope)
            .bind(&key.name)
            .execute(&self.pool)
            .await
            .map_err(failed("delete config"))?
            .rows_affected();
        if key.kind == ConfigKind::Site {
            self.cache_site(None, &key.name);
        }
        Ok(n > 0)
    }

    async fn list(
        &self,
        kind: ConfigKind,
        scope: Option<&str>,
    ) -> Result<Vec<ConfigRecord>, StoreError> {
        let rows = match scope {
            Some(s) => sqlx::query(
                "SELECT scope, name, value FROM config WHERE kind = ? AND scope = ? ORDER BY scope, name",
            )
            .bind(kind.as_str())
            .bind(s),
            None => sqlx::query(
                "SELECT scope, name, value FROM config WHERE kind = ? ORDER BY scope, name",
            )
            .bind(kind.as_str()),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list config"))?;
        Ok(rows
            .iter()
            .map(|r| ConfigRecord {
                scope: r.get(0),
                name: r.get(1),
                value: r.get(2),
            })
            .collect())
    }

    async fn delete_scope(&self, kind: ConfigKind, scope: &str) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM config WHERE kind = ? AND scope = ?")
                .bind(kind.as_str())
                .bind(scope)
                .execute(&self.pool)
                .await
                .map_err(failed("delete config"))?
                .rows_affected(),
        )
    }

    /// From memory once read; another process's new site is read on its first lookup.
    async fn site(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        if let Some(s) = self.cached_site(domain) {
            return Ok(Some(s));
        }
        let key = ConfigKey::new(ConfigKind::Site, "", domain);
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        let site: Site = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            what: format!("site {domain}"),
            detail: e.to_string(),
        })?;
        self.cache_site(Some(&site), domain);
        Ok(Some(site))
    }
}
