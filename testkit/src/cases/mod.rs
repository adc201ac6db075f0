//! The conformance cases, by part, and the one list of each part's names.

mod config;
mod events;
mod salts;
mod sessions;

use crate::Backend;
use beacon_core::{ConfigStore, EventStore, SaltStore, SessionState};
use std::future::Future;
use std::pin::Pin;

type Case<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// The parts of a backend the suite checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// [`EventStore`] cases.
    Events,
    /// [`ConfigStore`] cases.
    Config,
    /// [`SessionState`] cases.
    Sessions,
    /// [`SaltStore`] cases.
    Salts,
}

/// The event-store cases: calls `$m!($args; case, case, ...)`. The one list of them.
#[doc(hidden)]
#[macro_export]
macro_rules! __event_cases {
    ($m:path; $($args:tt)*) => {
        $m!($($args)*;
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
            erase_before_keeps_newer_events,
            refunds_are_not_activity,
            session_timeout_per_site,
            several_dimensions,
            empty_range_gives_zeros,
            relative_date_ranges,
            device_browser_os_and_channel,
            append_is_idempotent_by_event_id,
            duplicates_within_one_batch_are_reported,
            events_without_an_id_are_always_stored,
            scan_bounds_are_half_open,
            scan_batches_are_bounded,
            scan_filters_kinds_and_bots,
            extent_spans_first_to_last_event,
            count_is_the_scans_length,
            long_session_before_the_range_is_read_whole,
            funnel_steps_in_order_within_window,
            funnel_steps_must_be_strictly_later,
            funnel_page_globs_and_event_steps,
            funnel_step_matching_many_pages,
            funnel_breakdown_by_session_source,
            funnel_leaves_bots_out_unless_asked,
            goals_by_page_event_and_attribute,
            goals_values_and_rates,
            attribution_first_last_and_last_non_direct_touch,
            attribution_linear_and_position_based,
            attribution_time_decay,
            attribution_window_leaves_old_touches_out,
            attribution_refunds_reverse_the_credit,
            attribution_rates_convert_currencies,
            attribution_order_limit_offset_and_total_rows,
            attribution_goal_filter_makes_goals_conversions,
            every_date_range_form_on_every_request_kind,
            realtime_counts_the_last_minutes,
            realtime_sources_are_frozen_at_visit_start,
            erase_reaches_every_request_kind,
            invalid_requests_built_in_rust_are_refused,
            a_request_for_another_site_is_refused,
        );
    };
}

/// The config-store cases: calls `$m!($args; case, ...)`. The one list of them.
#[doc(hidden)]
#[macro_export]
macro_rules! __config_cases {
    ($m:path; $($args:tt)*) => {
        $m!($($args)*;
            sites_create_update_list_remove,
            an_invalid_site_is_refused,
            saved_goals_by_name,
            saved_funnels_by_name,
            secrets_are_never_listed,
            webhook_secrets_per_provider,
            delivery_ids_are_kept_per_site,
            old_delivery_ids_are_forgotten,
            removing_a_site_removes_its_configuration,
            put_if_absent_keeps_the_first_value,
            records_list_by_kind_and_scope,
            an_unknown_site_is_an_error,
            agencies_are_stored_and_listed,
            tokens_are_stored_by_prefix_without_their_secret,
            notes_are_kept_per_site_by_date,
        );
    };
}

/// The session-state cases. The one list of them.
#[doc(hidden)]
#[macro_export]
macro_rules! __session_cases {
    ($m:path; $($args:tt)*) => {
        $m!($($args)*;
            in_order_events_share_a_session,
            a_late_event_renames_sessions,
            a_cookieless_visitor_keeps_yesterdays_id_while_open,
            idle_visitors_are_evicted,
            choosing_records_nothing,
        );
    };
}

/// The salt-store cases. The one list of them.
#[doc(hidden)]
#[macro_export]
macro_rules! __salt_cases {
    ($m:path; $($args:tt)*) => {
        $m!($($args)*;
            one_salt_per_day,
            forgotten_salts_are_never_made_again,
        );
    };
}

macro_rules! registry {
    ($module:ident, $list:ident, $lookup:ident, $store:ty, $doc:literal; $($case:ident),* $(,)?) => {
        #[doc = $doc]
        pub const $list: &[&str] = &[$(stringify!($case)),*];

        fn $lookup<'a>(name: &str, store: &'a $store) -> Option<Case<'a>> {
            match name {
                $(stringify!($case) => Some(Box::pin($module::$case(store))),)*
                _ => None,
            }
        }
    };
}
pub(crate) use registry;

crate::__event_cases!(crate::cases::registry; events, EVENT_CASES, event_case, dyn EventStore, "The event-store cases.");
crate::__config_cases!(crate::cases::registry; config, CONFIG_CASES, config_case, dyn ConfigStore, "The config-store cases.");
crate::__session_cases!(crate::cases::registry; sessions, SESSION_CASES, session_case, dyn SessionState, "The session-state cases.");
crate::__salt_cases!(crate::cases::registry; salts, SALT_CASES, salt_case, dyn SaltStore, "The salt-store cases.");

fn missing<T>(part: Part) -> T {
    panic!("the backend serves no {part:?} part, which this suite checks")
}

/// Runs case `name` of `part` on `backend`.
///
/// # Panics
/// When the case fails, when there is no such case, or when the backend does not
/// serve the part (a suite never skips).
pub async fn run_case(part: Part, name: &str, backend: &dyn Backend) {
    let case = match part {
        Part::Events => event_case(name, backend.events().unwrap_or_else(|| missing(part))),
        Part::Config => config_case(name, backend.config().unwrap_or_else(|| missing(part))),
        Part::Sessions => session_case(name, backend.sessions().unwrap_or_else(|| missing(part))),
        Part::Salts => salt_case(name, backend.salts().unwrap_or_else(|| missing(part))),
    };
    case.unwrap_or_else(|| panic!("no {part:?} case named {name}"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_has_at_least_45_cases_each_named_once() {
        let all: Vec<&str> = [EVENT_CASES, CONFIG_CASES, SESSION_CASES, SALT_CASES].concat();
        assert!(all.len() >= 45, "{} cases", all.len());
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "a case is named twice");
    }
}
