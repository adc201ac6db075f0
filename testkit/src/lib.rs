//! # beacon-testkit
//!
//! The conformance suite: the contract every Beacon backend passes. Each case is a
//! function over a fresh handle on the backend; event-store cases run every request
//! on the backend and on a [`beacon_core::MemoryStore`] fed the same events, and
//! assert both the hand-checked answer and that the two agree.
//!
//! A backend joins with one macro call in its `tests/`:
//!
//! ```text
//! beacon_testkit::conformance_suite!(my_store, async { MyStore::connect(..).await.unwrap() });
//! ```
//!
//! That expands to a module `my_store` with one `#[test]` per case, run on what the
//! future gives; that value implements [`Backend`] (say which parts it serves).
//! The parts have their own macros: [`event_store_suite!`], [`config_store_suite!`],
//! [`session_state_suite!`] and [`salt_store_suite!`]; [`conformance_suite!`] runs
//! the event-store and config-store cases. Every macro also takes
//! `setup = async { .. }, make = async { .. }`: the setup runs once per suite
//! module, before its first case (create a schema, start from a clean database). Sites
//! are named with a tag unique to the run ([`run_tag`]), so the suite may run again
//! and again against one persistent database.
//!
//! The case lists are [`EVENT_CASES`], [`CONFIG_CASES`], [`SESSION_CASES`] and
//! [`SALT_CASES`]; each name is written once, in the list that both defines the
//! tests and looks the functions up (a case function left out of it is dead code,
//! which the lints refuse; a name without a function does not compile).

mod cases;
mod fixture;
pub mod fuzz;
pub mod http;
mod vec_store;
pub mod webdriver;

pub use cases::{run_case, Part, CONFIG_CASES, EVENT_CASES, SALT_CASES, SESSION_CASES};
pub use fixture::{at, run_tag, site, Ev, Fixture, NOW};
pub use vec_store::VecStore;

use beacon_core::backend::{MemorySaltStore, MemorySessionState};
use beacon_core::{ConfigStore, EventStore, MemoryConfig, MemoryStore, SaltStore, SessionState};

/// A backend under test: the parts of Beacon's storage it serves.
pub trait Backend: Send + Sync {
    /// Its event store.
    fn events(&self) -> Option<&dyn EventStore> {
        None
    }
    /// Its config store.
    fn config(&self) -> Option<&dyn ConfigStore> {
        None
    }
    /// Its session state.
    fn sessions(&self) -> Option<&dyn SessionState> {
        None
    }
    /// Its salt store.
    fn salts(&self) -> Option<&dyn SaltStore> {
        None
    }
}

impl Backend for MemoryStore {
    fn events(&self) -> Option<&dyn EventStore> {
        Some(self)
    }
    fn config(&self) -> Option<&dyn ConfigStore> {
        Some(self)
    }
}

impl Backend for MemoryConfig {
    fn config(&self) -> Option<&dyn ConfigStore> {
        Some(self)
    }
}

impl Backend for MemorySessionState {
    fn sessions(&self) -> Option<&dyn SessionState> {
        Some(self)
    }
}

impl Backend for MemorySaltStore {
    fn salts(&self) -> Option<&dyn SaltStore> {
        Some(self)
    }
}

/// Runs a future to completion on a fresh runtime (used by the macros).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(f)
}

/// One test per event-store case ([`EVENT_CASES`]).
#[macro_export]
macro_rules! event_store_suite {
    ($name:ident, setup = $setup:expr, make = $make:expr) => {
        $crate::__event_cases!($crate::__suite; $name, Events, $setup, $make);
    };
    ($name:ident, $make:expr) => {
        $crate::event_store_suite!($name, setup = async {}, make = $make);
    };
}

/// One test per config-store case ([`CONFIG_CASES`]).
#[macro_export]
macro_rules! config_store_suite {
    ($name:ident, setup = $setup:expr, make = $make:expr) => {
        $crate::__config_cases!($crate::__suite; $name, Config, $setup, $make);
    };
    ($name:ident, $make:expr) => {
        $crate::config_store_suite!($name, setup = async {}, make = $make);
    };
}

/// One test per session-state case ([`SESSION_CASES`]).
#[macro_export]
macro_rules! session_state_suite {
    ($name:ident, setup = $setup:expr, make = $make:expr) => {
        $crate::__session_cases!($crate::__suite; $name, Sessions, $setup, $make);
    };
    ($name:ident, $make:expr) => {
        $crate::session_state_suite!($name, setup = async {}, make = $make);
    };
}

/// One test per salt-store case ([`SALT_CASES`]).
#[macro_export]
macro_rules! salt_store_suite {
    ($name:ident, setup = $setup:expr, make = $make:expr) => {
        $crate::__salt_cases!($crate::__suite; $name, Salts, $setup, $make);
    };
    ($name:ident, $make:expr) => {
        $crate::salt_store_suite!($name, setup = async {}, make = $make);
    };
}

/// The event-store and config-store cases, in modules `<name>::events` and
/// `<name>::config`, for a backend that serves both.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, setup = $setup:expr, make = $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::event_store_suite!(events, setup = $setup, make = $make);
            $crate::config_store_suite!(config, setup = $setup, make = $make);
        }
    };
    ($name:ident, $make:expr) => {
        $crate::conformance_suite!($name, setup = async {}, make = $make);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite {
    ($name:ident, $part:ident, $setup:expr, $make:expr; $($case:ident),* $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            static SETUP: std::sync::Once = std::sync::Once::new();
            $(
                #[test]
                fn $case() {
                    SETUP.call_once(|| $crate::block_on($setup));
                    $crate::block_on(async {
                        let backend = $make.await;
                        $crate::run_case($crate::Part::$part, stringify!($case), &backend).await;
                    });
                }
            )*
        }
    };
}
