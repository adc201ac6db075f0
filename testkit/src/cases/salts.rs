//! The salt-store cases, on days derived from the run's tag.

use crate::fixture::run_tag;
use beacon_core::SaltStore;
use chrono::NaiveDate;

/// A day of the distant past picked by the run's tag (salts of real days are not touched).
fn day() -> NaiveDate {
    let n = u64::from_str_radix(run_tag(), 16).unwrap_or(0) % 36_000;
    NaiveDate::from_ymd_opt(1900, 1, 1).expect("date") + chrono::Days::new(n)
}

/// Asked twice, a day has one salt; the next day another.
pub(super) async fn one_salt_per_day(s: &dyn SaltStore) {
    let d = day();
    let a = s.salt_for(d).await.expect("salt");
    assert_eq!(s.salt_for(d).await.expect("salt"), a);
    assert_ne!(
        s.salt_for(d.succ_opt().expect("day")).await.expect("salt"),
        a
    );
    assert_ne!(a, [0u8; 32]);
}

/// A forgotten salt is never made again the same (old visitor ids stay unlinkable).
pub(super) async fn forgotten_salts_are_never_made_again(s: &dyn SaltStore) {
    let d = day();
    let a = s.salt_for(d).await.expect("salt");
    s.forget_before(d.succ_opt().expect("day"))
        .await
        .expect("forget");
    assert_ne!(s.salt_for(d).await.expect("salt"), a);
}
