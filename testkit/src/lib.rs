//! # beacon-testkit
//!
//! The conformance suite: named cases over fixtures with hand-checked answers.
//! Every case runs its queries on the backend under test and on a fresh
//! [`MemoryStore`] fed the same events, and asserts both the hand-checked answer and
//! that the two agree. A backend joins with one macro call:
//!
//! ```text
//! beacon_testkit::conformance_suite!(memory, async { beacon_core::MemoryStore::new() });
//! ```
//!
//! That expands to a module `memory` with one `#[test]` per case.

mod cases;
mod fixture;
mod vec_store;

pub use cases::*;
pub use fixture::{at, Ev, Fixture};
pub use vec_store::VecStore;

/// Runs a future to completion on a fresh single-threaded runtime (used by the macro).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
        .block_on(f)
}

/// Expands to a module named `$name` with one test per conformance case, each run
/// on a store made by `$make` (an expression giving a future of the store).
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        $crate::__conformance_cases!($name, $make;
            main_stats,
            gap_of_exactly_the_timeout_continues,
            gap_of_one_second_more_splits,
            session_crossing_range_start_is_not_a_visit,
            session_crossing_range_end_counts_whole,
            unsorted_input_gives_the_same_answer,
            late_event_merges_two_sessions,
            bounce_rules,
            session_level_dimension_is_frozen_at_first_event,
            event_level_dimension_page,
            entry_and_exit_pages,
            filter_operators,
            event_filter_matches_whole_visit,
            timezone_day_and_hour_buckets_across_dst,
            week_and_month_buckets,
            conversions_and_conversion_rate,
            revenue_in_one_currency,
            time_on_page_and_scroll_depth,
            custom_property_dimension_and_filter,
            bots_are_excluded_unless_asked,
            order_limit_offset_and_total_rows,
            erase_visitor_and_all,
            refunds_are_not_activity,
            session_timeout_per_site,
            several_dimensions,
            empty_range_gives_zeros,
            relative_date_ranges,
            device_browser_os_and_channel,
            unknown_site_is_an_error
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($name:ident, $make:expr; $($case:ident),* $(,)?) => {
        mod $name {
            $(
                #[test]
                fn $case() {
                    $crate::block_on(async {
                        let store = $make.await;
                        $crate::$case(&store).await;
                    });
                }
            )*
        }
    };
}
