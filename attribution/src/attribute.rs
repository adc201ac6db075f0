//! Revenue and conversion attribution for queries with an `attribution` option.

use crate::models::{shares, Touch};
use beacon_core::{
    day_start, local_date, sessionize, site_or_unknown, Dimension, Event, EventKind, Filter,
    Metric, MetricValue, Query, QueryError, QueryResult, ResultRow, SessionSummary, Site, Store,
    StoreError,
};
use chrono::{DateTime, Days, Utc};
use std::collections::HashMap;

/// A session-level dimension's value for a session (its first event and summary).
fn session_value(dim: &Dimension, first: &Event, s: &SessionSummary) -> Option<String> {
    use Dimension as D;
    let a = &first.acquisition;
    match dim {
        D::Source => a.source.clone(),
        D::Referrer => first.page.referrer.clone(),
        D::Channel => a.channel.clone(),
        D::UtmSource => a.utm.source.clone(),
        D::UtmMedium => a.utm.medium.clone(),
        D::UtmCampaign => a.utm.campaign.clone(),
        D::UtmContent => a.utm.content.clone(),
        D::UtmTerm => a.utm.term.clone(),
        D::Country => first.location.country.clone(),
        D::Region => first.location.region.clone(),
        D::City => first.location.city.clone(),
        D::Device => first.device.device_type.map(|d| d.as_str().to_owned()),
        D::Browser => first.device.browser.clone(),
        D::Os => first.device.os.clone(),
        D::Company => first.network.company.name.clone(),
        D::VisitorType => first.network.visitor_type.map(|v| v.as_str().to_owned()),
        D::EntryPage => Some(first.page.path.clone()),
        D::ExitPage => s.exit_page.clone(),
        D::Page | D::Goal | D::Prop(_) | D::Time(_) => None,
    }
}

/// Answers an attribution query over `events` of `site` (any order).
pub fn attribute_events(
    events: &[Event],
    site: &Site,
    q: &Query,
    now: DateTime<Utc>,
) -> Result<QueryResult, QueryError> {
    let a = q.attribution.ok_or_else(|| {
        QueryError::invalid("attribution", "is required for an attribution query")
    })?;
    // Goal filters choose the conversions; other filters are not supported here yet.
    let mut goals: Vec<String> = Vec::new();
    for (i, f) in q.filters.iter().enumerate() {
        match f {
            Filter::Is(Dimension::Goal, names) => goals.extend(names.iter().flatten().cloned()),
            _ => {
                return Err(QueryError::invalid(
                    format!("filters[{i}]"),
                    "attribution queries take only [\"is\", \"goal\", [...]] filters",
                ))
            }
        }
    }
    let tz = site.timezone;
    let (from, to) = q.date_range.resolve(local_date(tz, now), None);
    let (start, end) = (
        day_start(tz, from),
        day_start(tz, to.checked_add_days(Days::new(1)).unwrap_or(to)),
    );
    let currency = q.currency.unwrap_or(site.currency);

    let mut evs: Vec<Event> = events
        .iter()
        .filter(|e| e.site == site.domain && (q.include_bots || !e.is_bot()))
        .cloned()
        .collect();
    let summaries = sessionize(&mut evs, site.session_timeout_ms());
    // First event of each session (sessionize orders by visitor, time, id).
    let mut order: Vec<usize> = (0..evs.len()).collect();
    order.sort_by(|&x, &y| {
        (&evs[x].identity.visitor_id, evs[x].timestamp, evs[x].id).cmp(&(
            &evs[y].identity.visitor_id,
            evs[y].timestamp,
            evs[y].id,
        ))
    });
    let mut first_of: HashMap<u64, usize> = HashMap::new();
    for &i in &order {
        if let Some(sid) = evs[i].identity.session_id {
            first_of.entry(sid).or_insert(i);
        }
    }
    let mut by_visitor: HashMap<&str, Vec<&SessionSummary>> = HashMap::new();
    for s in &summaries {
        by_visitor.entry(s.visitor.as_str()).or_default().push(s);
    }

    let window_ms = i64::from(a.window_days) * 86_400_000;
    let mut credit: HashMap<Vec<Option<String>>, (f64, f64)> = HashMap::new();
    // Conversions in the canonical order, so that floating-point sums (and their
    // rounding) do not depend on the order events arrived in.
    for &i in &order {
        let e = &evs[i];
        if e.timestamp < start || e.timestamp >= end {
            continue;
        }
        let amount = match e.kind {
            EventKind::Purchase if goals.is_empty() => match e.commerce.revenue {
                Some(m) if m.currency == currency => m.minor as f64,
                Some(_) => 0.0,
                None => 0.0,
            },
            EventKind::Goal if e.name.as_ref().is_some_and(|n| goals.contains(n)) => e
                .commerce
                .goal_value
                .filter(|m| m.currency == currency)
                .map_or(0.0, |m| m.minor as f64),
            _ => continue,
        };
        let t = e.timestamp.timestamp_millis();
        let sessions: Vec<&&SessionSummary> = by_visitor
            .get(e.identity.visitor_id.as_str())
            .map(|v| {
                v.iter()
                    .filter(|s| s.start_ms <= t && s.start_ms >= t - window_ms)
                    .collect()
            })
            .unwrap_or_default();
        let keyed: Vec<(Vec<Option<String>>, Touch)> = sessions
            .iter()
            .filter_map(|s| {
                let first = &evs[*first_of.get(&s.session_id)?];
                let key: Vec<Option<String>> = q
                    .dimensions
                    .iter()
                    .map(|d| session_value(d, first, s))
                    .collect();
                Some((
                    key.clone(),
                    Touch {
                        start_ms: s.start_ms,
                        value: key.first().cloned().flatten(),
                    },
                ))
            })
            .collect();
        let touches: Vec<Touch> = keyed.iter().map(|(_, t)| t.clone()).collect();
        for ((key, _), share) in keyed
            .iter()
            .zip(shares(a.model, &touches, t, a.half_life_days))
        {
            if share == 0.0 {
                continue;
            }
            let c = credit.entry(key.clone()).or_default();
            c.0 += share * amount;
            c.1 += share;
        }
    }

    let exp = currency.exponent();
    let mut rows: Vec<ResultRow> = credit
        .into_iter()
        .map(|(dims, (revenue, conversions))| ResultRow {
            dimensions: dims,
            metrics: q
                .metrics
                .iter()
                .map(|m| match m {
                    Metric::Revenue => MetricValue {
                        units: revenue.round() as i64,
                        scale: exp,
                    },
                    _ => MetricValue {
                        units: (conversions * 100.0).round() as i64,
                        scale: 2,
                    },
                })
                .collect(),
        })
        // As in the main engine, rows whose metrics are all zero are left out.
        .filter(|r: &ResultRow| r.metrics.iter().any(|m| m.units != 0))
        .collect();
    rows.sort_by(|x, y| {
        y.metrics[0]
            .units
            .cmp(&x.metrics[0].units)
            .then_with(|| x.dimensions.cmp(&y.dimensions))
    });
    let total_rows = rows.len();
    Ok(QueryResult {
        rows: rows.into_iter().skip(q.offset).take(q.limit).collect(),
        metrics: q.metrics.clone(),
        total_rows,
        currency,
        query: q.to_json(Some((from, to))),
    })
}

/// Answers an attribution query on any store (scans the site's events).
pub async fn attribute(
    store: &dyn Store,
    q: &Query,
    now: DateTime<Utc>,
) -> Result<QueryResult, StoreError> {
    let site = site_or_unknown(store, &q.site).await?;
    let events = store.scan(&q.site, None, None).await?;
    Ok(attribute_events(&events, &site, q, now)?)
}
