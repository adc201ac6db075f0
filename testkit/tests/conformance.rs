//! The conformance suite on the reference engine itself and on a scan-only backend
//! (which answers through the storage traits' default `query`).

beacon_testkit::conformance_suite!(memory_store, async { beacon_core::MemoryStore::new() });
beacon_testkit::conformance_suite!(scan_only_store, async { beacon_testkit::VecStore::new() });
