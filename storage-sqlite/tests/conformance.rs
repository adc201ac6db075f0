//! The conformance suite on the SQLite store: every event-store and config-store
//! case, each on a store of its own in a fresh directory, and once more on one
//! directory shared by every case (reopened per case), as a persistent database is.

use beacon_core::{ConfigStore, EventStore};
use beacon_storage_sqlite::SqliteStore;
use beacon_testkit::Backend;

/// A store in a temporary directory, removed with it.
struct TempStore {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Backend for TempStore {
    fn events(&self) -> Option<&dyn EventStore> {
        Some(&self.store)
    }
    fn config(&self) -> Option<&dyn ConfigStore> {
        Some(&self.store)
    }
}

async fn fresh() -> TempStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    TempStore {
        store: SqliteStore::open(dir.path())
            .await
            .expect("the store opens"),
        _dir: dir,
    }
}

/// One directory for the whole test process.
fn shared_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

struct SharedStore(SqliteStore);

impl Backend for SharedStore {
    fn events(&self) -> Option<&dyn EventStore> {
        Some(&self.0)
    }
    fn config(&self) -> Option<&dyn ConfigStore> {
        Some(&self.0)
    }
}

beacon_testkit::conformance_suite!(sqlite_store, fresh());
beacon_testkit::conformance_suite!(
    sqlite_store_shared,
    setup = async {
        // The schema is made once, before the cases open the directory together.
        SqliteStore::open(shared_dir())
            .await
            .expect("the store opens")
            .close()
            .await;
    },
    make = async {
        SharedStore(
            SqliteStore::open(shared_dir())
                .await
                .expect("the store opens"),
        )
    }
);
