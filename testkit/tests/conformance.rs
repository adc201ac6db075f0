//! The conformance suite on the reference engine itself, on a scan-only backend
//! (which answers through the storage traits' defaults) and on the in-memory state.

beacon_testkit::conformance_suite!(memory_store, async { beacon_core::MemoryStore::new() });
beacon_testkit::event_store_suite!(scan_only_store, async { beacon_testkit::VecStore::new() });
beacon_testkit::config_store_suite!(memory_config, async { beacon_core::MemoryConfig::new() });
beacon_testkit::session_state_suite!(memory_sessions, async {
    beacon_core::backend::MemorySessionState::new()
});
beacon_testkit::salt_store_suite!(memory_salts, async {
    beacon_core::backend::MemorySaltStore::new(std::sync::Arc::new(beacon_core::OsRandom))
});
