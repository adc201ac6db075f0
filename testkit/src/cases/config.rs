//! The config-store cases. Sites are named with the run's tag, and listings are
//! read for this run's records only, so the cases can share a persistent database.

use crate::fixture::{at, run_tag, site};
use beacon_core::backend::{ConfigKey, ConfigKind};
use beacon_core::{
    Analytics, ConfigStore, Currency, Funnel, GoalDefinition, GoalMatch, GoalsRequest, MemoryStore,
    Money, Query, QueryError, RealtimeRequest, SavedFunnel, Site, StepMatch, StoreError, Tz,
};

fn ours(sites: Vec<Site>) -> Vec<String> {
    sites
        .into_iter()
        .map(|s| s.domain)
        .filter(|d| d.contains(run_tag()))
        .collect()
}

/// Sites are created, read, updated (time zone), listed by domain and removed.
pub(super) async fn sites_create_update_list_remove(c: &dyn ConfigStore) {
    let (a, b) = (site("config-a"), site("config-b"));
    c.put_site(b.clone()).await.expect("put b");
    c.put_site(a.clone()).await.expect("put a");
    assert_eq!(c.site(&a.domain).await.expect("get"), Some(a.clone()));
    let berlin: Tz = "Europe/Berlin".parse().expect("zone");
    c.put_site(a.clone().with_timezone(berlin))
        .await
        .expect("update");
    assert_eq!(
        c.site(&a.domain).await.expect("get").map(|s| s.timezone),
        Some(berlin)
    );
    let listed = ours(c.sites().await.expect("list"));
    let (ia, ib) = (
        listed.iter().position(|d| *d == a.domain),
        listed.iter().position(|d| *d == b.domain),
    );
    assert!(
        ia.is_some() && ia < ib,
        "both listed, by domain: {listed:?}"
    );
    assert!(c.remove_site(&a.domain).await.expect("remove"));
    assert_eq!(c.site(&a.domain).await.expect("get"), None);
    assert!(!c.remove_site(&a.domain).await.expect("remove again"));
    assert!(c.site(&b.domain).await.expect("get").is_some());
}

/// A bad domain or timeout is refused, naming the field, and nothing is stored.
pub(super) async fn an_invalid_site_is_refused(c: &dyn ConfigStore) {
    let bad = Site::new(format!("bad domain {}!", run_tag()));
    match c.put_site(bad.clone()).await {
        Err(StoreError::InvalidSite { field, .. }) => assert_eq!(field, "domain"),
        other => panic!("expected an invalid site, got {other:?}"),
    }
    assert_eq!(c.site(&bad.domain).await.expect("get"), None);
    let short = site("config-timeout").with_session_timeout_secs(10);
    match c.put_site(short).await {
        Err(StoreError::InvalidSite { field, .. }) => assert_eq!(field, "session_timeout_secs"),
        other => panic!("expected an invalid site, got {other:?}"),
    }
}

/// Goals are saved by name (ordered by name), replaced under the same name, removed.
pub(super) async fn saved_goals_by_name(c: &dyn ConfigStore) {
    let s = site("config-goals").domain;
    let mut signup = GoalDefinition::new("Signup", GoalMatch::Event("signup".into()));
    signup.value = Some(Money::parse("5.00", Currency::USD).expect("money"));
    let pricing = GoalDefinition::new("Pricing", GoalMatch::Page("/pricing*".into()));
    c.put_goal(&s, &signup).await.expect("put");
    c.put_goal(&s, &pricing).await.expect("put");
    assert_eq!(c.goals(&s).await.expect("list"), [pricing.clone(), signup]);
    let replaced = GoalDefinition::new("Signup", GoalMatch::Attribute("signup".into()));
    c.put_goal(&s, &replaced).await.expect("replace");
    assert_eq!(
        c.goals(&s).await.expect("list"),
        [pricing.clone(), replaced]
    );
    assert!(c.remove_goal(&s, "Signup").await.expect("remove"));
    assert!(!c.remove_goal(&s, "Signup").await.expect("remove again"));
    assert_eq!(c.goals(&s).await.expect("list"), [pricing]);
    let bad = GoalDefinition::new("", GoalMatch::Page("/".into()));
    assert!(
        c.put_goal(&s, &bad).await.is_err(),
        "an empty name is refused"
    );
    assert!(c
        .goals(&site("config-goals-none").domain)
        .await
        .expect("list")
        .is_empty());
}

/// Funnels are saved by name with their window, read back whole, listed, removed.
pub(super) async fn saved_funnels_by_name(c: &dyn ConfigStore) {
    let s = site("config-funnels").domain;
    let mut checkout = SavedFunnel::new(
        "Checkout",
        vec![
            StepMatch::Page("/cart".into()),
            StepMatch::Goal("paid".into()),
        ],
    );
    checkout.window_ms = 30 * 60_000;
    let blog = SavedFunnel::new("Blog", vec![StepMatch::Page("/blog/*".into())]);
    c.put_funnel(&s, &checkout).await.expect("put");
    c.put_funnel(&s, &blog).await.expect("put");
    assert_eq!(
        c.funnel(&s, "Checkout").await.expect("get"),
        Some(checkout.clone())
    );
    assert_eq!(
        c.funnels(&s).await.expect("list"),
        [blog.clone(), checkout.clone()]
    );
    let run: Funnel = checkout.to_funnel(s.clone(), beacon_core::DateRange::Last7Days);
    assert_eq!((run.window_ms, run.steps.len()), (30 * 60_000, 2));
    assert!(c.remove_funnel(&s, "Blog").await.expect("remove"));
    assert_eq!(c.funnels(&s).await.expect("list"), [checkout]);
    assert_eq!(c.funnel(&s, "Blog").await.expect("get"), None);
}

/// A secret is read back by name but listed by name only; an empty one is refused.
pub(super) async fn secrets_are_never_listed(c: &dyn ConfigStore) {
    let s = site("config-secrets").domain;
    c.put_secret(&s, "api", "s3cret-value").await.expect("put");
    assert_eq!(
        c.secret(&s, "api").await.expect("get").as_deref(),
        Some("s3cret-value")
    );
    let names = c.secret_names(Some(&s)).await.expect("names");
    assert_eq!(names, [(s.clone(), "api".to_owned())]);
    assert!(!format!("{names:?}").contains("s3cret"), "never the value");
    assert!(c.put_secret(&s, "empty", "").await.is_err());
    assert_eq!(c.secret(&s, "missing").await.expect("get"), None);
}

/// Webhook secrets are per site and provider; listing gives pairs, never secrets.
pub(super) async fn webhook_secrets_per_provider(c: &dyn ConfigStore) {
    let s = site("config-webhooks").domain;
    c.put_webhook_secret(&s, "stripe", "whsec_1")
        .await
        .expect("put");
    c.put_webhook_secret(&s, "polar", "polar_1")
        .await
        .expect("put");
    c.put_webhook_secret(&s, "stripe", "whsec_2")
        .await
        .expect("replace");
    assert_eq!(
        c.webhook_secret(&s, "stripe")
            .await
            .expect("get")
            .as_deref(),
        Some("whsec_2")
    );
    let pairs: Vec<(String, String)> = c
        .webhook_providers()
        .await
        .expect("list")
        .into_iter()
        .filter(|(site, _)| *site == s)
        .collect();
    assert_eq!(
        pairs,
        [(s.clone(), "polar".into()), (s.clone(), "stripe".into())]
    );
    assert!(c.remove_webhook_secret(&s, "stripe").await.expect("remove"));
    assert!(!c
        .remove_webhook_secret(&s, "stripe")
        .await
        .expect("remove again"));
    assert_eq!(c.webhook_secret(&s, "stripe").await.expect("get"), None);
}

/// A delivery id is remembered for its site and provider only.
pub(super) async fn delivery_ids_are_kept_per_site(c: &dyn ConfigStore) {
    let (a, b) = (
        site("config-delivery-a").domain,
        site("config-delivery-b").domain,
    );
    let when = at("2026-03-01T10:00:00");
    assert_eq!(c.delivery(&a, "stripe", "evt_1").await.expect("get"), None);
    c.remember_delivery(&a, "stripe", "evt_1", when)
        .await
        .expect("remember");
    assert_eq!(
        c.delivery(&a, "stripe", "evt_1").await.expect("get"),
        Some(when)
    );
    assert_eq!(
        c.delivery(&b, "stripe", "evt_1").await.expect("get"),
        None,
        "per site"
    );
    assert_eq!(
        c.delivery(&a, "polar", "evt_1").await.expect("get"),
        None,
        "per provider"
    );
}

/// Delivery ids recorded before a cutoff are forgotten; later ones stay.
pub(super) async fn old_delivery_ids_are_forgotten(c: &dyn ConfigStore) {
    let s = site("config-delivery-old").domain;
    let (old, new) = (at("2026-01-01T00:00:00"), at("2026-03-01T00:00:00"));
    c.remember_delivery(&s, "stripe", "old", old)
        .await
        .expect("remember");
    c.remember_delivery(&s, "stripe", "new", new)
        .await
        .expect("remember");
    assert!(
        c.forget_deliveries_before(at("2026-02-01T00:00:00"))
            .await
            .expect("forget")
            >= 1
    );
    assert_eq!(c.delivery(&s, "stripe", "old").await.expect("get"), None);
    assert_eq!(
        c.delivery(&s, "stripe", "new").await.expect("get"),
        Some(new)
    );
}

/// Removing a site removes its goals, funnels, secrets and delivery ids.
pub(super) async fn removing_a_site_removes_its_configuration(c: &dyn ConfigStore) {
    let s = site("config-cascade");
    let d = s.domain.clone();
    c.put_site(s).await.expect("site");
    c.put_goal(&d, &GoalDefinition::new("G", GoalMatch::Event("g".into())))
        .await
        .expect("goal");
    c.put_funnel(
        &d,
        &SavedFunnel::new("F", vec![StepMatch::Page("/".into())]),
    )
    .await
    .expect("funnel");
    c.put_webhook_secret(&d, "stripe", "whsec")
        .await
        .expect("secret");
    c.remember_delivery(&d, "stripe", "evt", at("2026-03-01T00:00:00"))
        .await
        .expect("delivery");
    assert!(c.remove_site(&d).await.expect("remove"));
    assert!(c.goals(&d).await.expect("goals").is_empty());
    assert!(c.funnels(&d).await.expect("funnels").is_empty());
    assert_eq!(c.webhook_secret(&d, "stripe").await.expect("secret"), None);
    assert_eq!(
        c.delivery(&d, "stripe", "evt").await.expect("delivery"),
        None
    );
}

/// `put_if_absent` stores once and then gives back what is there.
pub(super) async fn put_if_absent_keeps_the_first_value(c: &dyn ConfigStore) {
    let key = ConfigKey::new(ConfigKind::Secret, site("config-once").domain, "token");
    assert_eq!(c.put_if_absent(&key, b"first").await.expect("first"), None);
    assert_eq!(
        c.put_if_absent(&key, b"second")
            .await
            .expect("second")
            .as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        c.get(&key).await.expect("get").as_deref(),
        Some(&b"first"[..])
    );
    assert!(c.delete(&key).await.expect("delete"));
    assert_eq!(c.get(&key).await.expect("get"), None);
}

/// Records list by kind and scope, ordered by scope then name.
pub(super) async fn records_list_by_kind_and_scope(c: &dyn ConfigStore) {
    let (a, b) = (site("config-list-a").domain, site("config-list-b").domain);
    for (scope, name) in [(&b, "n1"), (&a, "n2"), (&a, "n1")] {
        let key = ConfigKey::new(ConfigKind::Secret, scope.clone(), name);
        c.put(&key, name.as_bytes()).await.expect("put");
    }
    let names: Vec<String> = c
        .list(ConfigKind::Secret, Some(&a))
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["n1", "n2"]);
    let all: Vec<(String, String, Vec<u8>)> = c
        .list(ConfigKind::Secret, None)
        .await
        .expect("list")
        .into_iter()
        .filter(|r| r.scope == a || r.scope == b)
        .map(|r| (r.scope, r.name, r.value))
        .collect();
    assert_eq!(
        all,
        [
            (a.clone(), "n1".into(), b"n1".to_vec()),
            (a.clone(), "n2".into(), b"n2".to_vec()),
            (b.clone(), "n1".into(), b"n1".to_vec())
        ]
    );
    assert!(c
        .list(ConfigKind::Goal, Some(&a))
        .await
        .expect("list")
        .is_empty());
    assert_eq!(
        c.delete_scope(ConfigKind::Secret, &a)
            .await
            .expect("delete"),
        2
    );
}

/// Every request kind for a site the configuration does not know answers the
/// unknown-site error naming it.
pub(super) async fn an_unknown_site_is_an_error(c: &dyn ConfigStore) {
    let events = MemoryStore::new();
    let reads = Analytics::new(&events, c);
    let d = site("config-never-created").domain;
    let now = at("2026-03-10T00:00:00");
    let unknown = |r: Result<(), StoreError>| match r {
        Err(StoreError::Query(QueryError::UnknownSite(s))) => assert_eq!(s, d),
        other => panic!("expected an unknown-site error, got {other:?}"),
    };
    unknown(reads.query(&Query::new(d.clone()), now).await.map(|_| ()));
    let f = Funnel::new(d.clone(), vec![StepMatch::Page("/".into())]);
    unknown(reads.funnel(&f, now).await.map(|_| ()));
    let g = GoalsRequest::new(
        d.clone(),
        vec![GoalDefinition::new("G", GoalMatch::Event("g".into()))],
    );
    unknown(reads.goals(&g, now).await.map(|_| ()));
    unknown(
        reads
            .realtime(&RealtimeRequest::new(d.clone()), now)
            .await
            .map(|_| ()),
    );
}

/// Agencies are created, read and listed by name; a bad name is refused.
pub(super) async fn agencies_are_stored_and_listed(c: &dyn ConfigStore) {
    let now = at("2026-03-01T00:00:00");
    let (a, b) = (
        beacon_core::Agency::new(format!("agency-a-{}", run_tag()), now),
        beacon_core::Agency::new(format!("agency-b-{}", run_tag()), now),
    );
    c.put_agency(b.clone()).await.expect("put b");
    c.put_agency(a.clone()).await.expect("put a");
    assert_eq!(c.agency(&a.name).await.expect("get"), Some(a.clone()));
    assert_eq!(c.agency("no-such-agency").await.expect("get"), None);
    let listed: Vec<String> = c
        .agencies()
        .await
        .expect("list")
        .into_iter()
        .map(|x| x.name)
        .filter(|n| n.contains(run_tag()))
        .collect();
    assert_eq!(listed, [a.name.clone(), b.name.clone()]);
    let bad = beacon_core::Agency::new("no spaces", now);
    assert!(c.put_agency(bad).await.is_err());
}

/// A token is found by its prefix, matches its secret only, is listed, and is
/// revoked; the stored record holds a hash, never the secret.
pub(super) async fn tokens_are_stored_by_prefix_without_their_secret(c: &dyn ConfigStore) {
    use beacon_core::{ApiToken, Reach, Scope};
    let now = at("2026-03-01T00:00:00");
    let agency = format!("tokens-{}", run_tag());
    let issued = ApiToken::issue(
        &beacon_core::OsRandom,
        now,
        agency.clone(),
        Reach::Agency,
        Scope::Read,
        None,
    );
    c.put_token(&issued.token).await.expect("put");
    let got = c
        .token(&issued.token.prefix)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got, issued.token);
    assert!(got.matches(&issued.secret));
    let raw = c
        .get(&ConfigKey::new(ConfigKind::Token, "", &issued.token.prefix))
        .await
        .expect("raw")
        .expect("stored");
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains(&issued.secret[3..]), "{raw}");
    assert!(c
        .tokens()
        .await
        .expect("list")
        .iter()
        .any(|t| t.prefix == issued.token.prefix && t.agency == agency));
    assert!(c.revoke_token(&issued.token.prefix).await.expect("revoke"));
    let revoked = c
        .token(&issued.token.prefix)
        .await
        .expect("get")
        .expect("kept");
    assert!(revoked.revoked && !revoked.is_live(now));
    assert!(!c.revoke_token("00000000").await.expect("revoke none"));
}

/// Notes are kept per site, listed by date within a range, replaced by id and
/// removed, and go with their site; a note without text is refused.
pub(super) async fn notes_are_kept_per_site_by_date(c: &dyn ConfigStore) {
    let (a, b) = (site("notes-a"), site("notes-b"));
    c.put_site(a.clone()).await.expect("site a");
    c.put_site(b.clone()).await.expect("site b");
    let now = at("2026-03-01T00:00:00");
    let note = |site: &Site, id: &str, day: &str, text: &str| beacon_core::Note {
        id: id.into(),
        site: site.domain.clone(),
        date: day.parse().expect("day"),
        text: text.into(),
        tags: vec!["launch".into()],
        created: now,
        updated: now,
    };
    c.put_note(&note(&a, "n2", "2026-03-05", "second"))
        .await
        .expect("put");
    c.put_note(&note(&a, "n1", "2026-03-01", "first"))
        .await
        .expect("put");
    c.put_note(&note(&b, "n3", "2026-03-02", "other site"))
        .await
        .expect("put");
    let texts = |notes: Vec<beacon_core::Note>| -> Vec<String> {
        notes.into_iter().map(|n| n.text).collect()
    };
    assert_eq!(
        texts(c.notes(&a.domain, None, None).await.expect("list")),
        ["first", "second"]
    );
    let day = |d: &str| Some(d.parse().expect("day"));
    assert_eq!(
        texts(
            c.notes(&a.domain, day("2026-03-02"), day("2026-03-05"))
                .await
                .expect("range")
        ),
        ["second"]
    );
    c.put_note(&note(&a, "n2", "2026-03-05", "second, edited"))
        .await
        .expect("replace");
    assert_eq!(
        c.note(&a.domain, "n2").await.expect("get").map(|n| n.text),
        Some("second, edited".into())
    );
    assert!(c
        .put_note(&note(&a, "n4", "2026-03-05", "  "))
        .await
        .is_err());
    assert!(c.remove_note(&a.domain, "n1").await.expect("remove"));
    assert!(!c.remove_note(&a.domain, "n1").await.expect("again"));
    assert!(c.remove_site(&b.domain).await.expect("remove site"));
    assert!(c
        .notes(&b.domain, None, None)
        .await
        .expect("list")
        .is_empty());
    c.remove_site(&a.domain).await.expect("clean up");
}
