//! Webhook bodies to [`Payment`]s, and payments to purchase and refund events.

use super::{Headers, Provider, WebhookError};
use beacon_core::{Currency, Event, EventKind, Money};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

/// Purchase or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentKind {
    /// Money received for an order.
    Purchase,
    /// Money given back for an order.
    Refund,
}

/// A payment read from a webhook: exact amounts, the order it belongs to and the
/// visitor the checkout named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The provider.
    pub provider: Provider,
    /// The provider's id of the delivery or event (the idempotency key).
    pub event_id: String,
    /// Purchase or refund.
    pub kind: PaymentKind,
    /// The order (a refund names the order it refunds).
    pub order_id: String,
    /// For a refund, the refund's own id when the provider gives one.
    pub refund_id: Option<String>,
    /// The purchase amount, or the amount of this refund.
    pub amount: Option<Money>,
    /// For a refund: the order's total refunded so far, when reported.
    pub refunded_total: Option<Money>,
    /// When it happened, by the provider's clock.
    pub timestamp: Option<DateTime<Utc>>,
    /// `beacon_visitor_id` from the checkout metadata (or Stripe's `client_reference_id`).
    pub visitor_id: Option<String>,
    /// `beacon_session_id` from the checkout metadata.
    pub session_id: Option<String>,
    /// The provider's customer id.
    pub customer_id: Option<String>,
    /// Product or plan name, when the body carries one.
    pub product: Option<String>,
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn text(v: &Value, path: &str) -> Option<String> {
    match at(v, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn need_text(v: &Value, path: &str) -> Result<String, WebhookError> {
    text(v, path).ok_or_else(|| WebhookError::field(path, "is required"))
}

fn currency(v: &Value, path: &str) -> Result<Currency, WebhookError> {
    let code = need_text(v, path)?;
    Currency::parse(&code)
        .ok_or_else(|| WebhookError::field(path, format!("{code:?} is not an ISO 4217 currency")))
}

/// An integer amount in minor units (Stripe, Lemon Squeezy, Polar).
fn minor(v: &Value, path: &str, cur: Currency) -> Result<Money, WebhookError> {
    let n = at(v, path)
        .and_then(Value::as_i64)
        .ok_or_else(|| WebhookError::field(path, "must be an integer amount in minor units"))?;
    if n < 0 {
        return Err(WebhookError::field(path, "must not be negative"));
    }
    Ok(Money {
        minor: n,
        currency: cur,
    })
}

/// A decimal-string amount (Shopify).
fn decimal(v: &Value, path: &str, cur: Currency) -> Result<Money, WebhookError> {
    let s = need_text(v, path)?;
    let m = Money::parse(&s, cur).map_err(|e| WebhookError::field(path, e.to_string()))?;
    if m.minor < 0 {
        return Err(WebhookError::field(path, "must not be negative"));
    }
    Ok(m)
}

fn unix(v: &Value, path: &str) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(at(v, path)?.as_i64()?, 0).single()
}

fn iso(v: &Value, path: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at(v, path)?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The beacon ids from a metadata object.
fn link(meta: Option<&Value>) -> (Option<String>, Option<String>) {
    let get = |k| meta.and_then(|m| text(m, k));
    (get("beacon_visitor_id"), get("beacon_session_id"))
}

impl Payment {
    fn new(provider: Provider, event_id: String, kind: PaymentKind, order_id: String) -> Self {
        Self {
            provider,
            event_id,
            kind,
            order_id,
            refund_id: None,
            amount: None,
            refunded_total: None,
            timestamp: None,
            visitor_id: None,
            session_id: None,
            customer_id: None,
            product: None,
        }
    }

    fn linked(mut self, (visitor, session): (Option<String>, Option<String>)) -> Self {
        self.visitor_id = self.visitor_id.or(visitor);
        self.session_id = self.session_id.or(session);
        self
    }

    /// A stable event id: redeliveries, and the several notifications a provider
    /// sends for one order (Stripe's checkout session and its payment intent), map to
    /// the same id, so a store that ignores duplicate ids keeps one purchase per order.
    pub fn stable_event_id(&self) -> uuid::Uuid {
        let kind = match self.kind {
            PaymentKind::Purchase => "purchase",
            PaymentKind::Refund => "refund",
        };
        let key = match self.kind {
            PaymentKind::Purchase => &self.order_id,
            PaymentKind::Refund => self.refund_id.as_ref().unwrap_or(&self.event_id),
        };
        let mut bytes = [0u8; 16];
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            for b in [self.provider.as_str(), kind, key]
                .iter()
                .flat_map(|s| s.bytes().chain([0xff]))
                .chain([i as u8])
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            chunk.copy_from_slice(&h.to_be_bytes());
        }
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// The purchase or refund event for `site`. Without a visitor link the visitor id
    /// is `<provider>:<customer or order id>`, so the revenue still counts; the time is
    /// the provider's, else `received`.
    pub fn to_event(&self, site: &str, received: DateTime<Utc>) -> Event {
        let mut e = Event {
            id: self.stable_event_id(),
            site: site.to_owned(),
            kind: match self.kind {
                PaymentKind::Purchase => EventKind::Purchase,
                PaymentKind::Refund => EventKind::Refund,
            },
            timestamp: self.timestamp.unwrap_or(received),
            ..Event::default()
        };
        if self.kind == PaymentKind::Purchase {
            e.name = Some(self.product.clone().unwrap_or_else(|| "purchase".into()));
        }
        e.identity.visitor_id = self.visitor_id.clone().unwrap_or_else(|| {
            format!(
                "{}:{}",
                self.provider,
                self.customer_id.as_ref().unwrap_or(&self.order_id)
            )
        });
        e.commerce.order_id = Some(self.order_id.clone());
        e.commerce.revenue = self.amount;
        e.commerce.refunded_total = self.refunded_total;
        e.props
            .insert("payment_provider".into(), self.provider.as_str().into());
        if let Some(s) = &self.session_id {
            e.props.insert("beacon_session_id".into(), s.clone());
        }
        e
    }
}

/// Reads a verified delivery's body into payments. Event types that carry no money
/// for Beacon (an open checkout, a customer update) give an empty list, not an error.
pub fn parse_payments(
    provider: Provider,
    headers: &Headers,
    body: &[u8],
) -> Result<Vec<Payment>, WebhookError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadJson(e.to_string()))?;
    if !v.is_object() {
        return Err(WebhookError::BadJson(
            "the body must be a JSON object".into(),
        ));
    }
    match provider {
        Provider::Stripe => stripe(&v),
        Provider::LemonSqueezy => lemonsqueezy(&v),
        Provider::Polar => polar(headers, &v),
        Provider::Shopify => shopify(headers, &v),
    }
}

fn stripe(v: &Value) -> Result<Vec<Payment>, WebhookError> {
    let id = need_text(v, "id")?;
    let kind = need_text(v, "type")?;
    let o =
        at(v, "data.object").ok_or_else(|| WebhookError::field("data.object", "is required"))?;
    let created = unix(v, "created");
    let p = |kind, order: String| {
        let mut p = Payment::new(Provider::Stripe, id.clone(), kind, order);
        p.timestamp = created;
        p.customer_id = text(o, "customer");
        p
    };
    let out = match kind.as_str() {
        "checkout.session.completed" => {
            if text(o, "payment_status").as_deref() != Some("paid") {
                return Ok(Vec::new());
            }
            // A subscription checkout's money is its first invoice (invoice.paid names
            // the same order); a one-off checkout's is its payment intent.
            let order = text(o, "invoice")
                .or_else(|| text(o, "payment_intent"))
                .unwrap_or(need_text(o, "id")?);
            let cur = currency(o, "currency")?;
            let mut p = p(PaymentKind::Purchase, order);
            p.amount = Some(minor(o, "amount_total", cur)?);
            p.visitor_id = text(o, "client_reference_id");
            p.linked(link(at(o, "metadata")))
        }
        "payment_intent.succeeded" => {
            let order = text(o, "invoice").unwrap_or(need_text(o, "id")?);
            let cur = currency(o, "currency")?;
            let mut p = p(PaymentKind::Purchase, order);
            p.amount = Some(match at(o, "amount_received") {
                Some(_) => minor(o, "amount_received", cur)?,
                None => minor(o, "amount", cur)?,
            });
            p.linked(link(at(o, "metadata")))
        }
        "invoice.paid" => {
            let cur = currency(o, "currency")?;
            let amount = minor(o, "amount_paid", cur)?;
            if amount.minor == 0 {
                return Ok(Vec::new()); // a trial or fully discounted invoice
            }
            let mut p = p(PaymentKind::Purchase, need_text(o, "id")?);
            p.amount = Some(amount);
            p.product = text(o, "lines.data.0.description");
            p.linked(link(at(o, "metadata")))
                .linked(link(at(o, "subscription_details.metadata")))
                .linked(link(at(o, "parent.subscription_details.metadata")))
        }
        "charge.refunded" => {
            let order = text(o, "invoice")
                .or_else(|| text(o, "payment_intent"))
                .unwrap_or(need_text(o, "id")?);
            let cur = currency(o, "currency")?;
            let total = minor(o, "amount_refunded", cur)?;
            let latest = at(o, "refunds.data")
                .and_then(Value::as_array)
                .and_then(|r| r.first());
            let mut p = p(PaymentKind::Refund, order);
            p.refund_id = latest.and_then(|r| text(r, "id"));
            p.amount = Some(match latest {
                Some(r) if at(r, "amount").is_some() => minor(r, "amount", cur)?,
                _ => total,
            });
            p.refunded_total = Some(total);
            p.linked(link(at(o, "metadata")))
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![out])
}

fn lemonsqueezy(v: &Value) -> Result<Vec<Payment>, WebhookError> {
    let event = need_text(v, "meta.event_name")?;
    let d = at(v, "data").ok_or_else(|| WebhookError::field("data", "is required"))?;
    let a =
        at(d, "attributes").ok_or_else(|| WebhookError::field("data.attributes", "is required"))?;
    let data_id = need_text(d, "id")?;
    let meta_link = link(at(v, "meta.custom_data"));
    let order_for = |d: &Value| -> String {
        if text(d, "type").as_deref() == Some("subscription-invoices") {
            format!("subscription-invoice:{data_id}")
        } else {
            data_id.clone()
        }
    };
    let cur = || currency(a, "currency");
    // Lemon Squeezy sends no event id: the event name and resource make one.
    let event_id = format!("{event}:{}", order_for(d));
    let p = |kind| {
        let mut p = Payment::new(Provider::LemonSqueezy, event_id.clone(), kind, order_for(d));
        p.customer_id = text(a, "customer_id");
        p.product = text(a, "first_order_item.product_name");
        p.linked(meta_link.clone())
    };
    let out = match event.as_str() {
        "order_created" => {
            if text(a, "status").as_deref() != Some("paid") {
                return Ok(Vec::new());
            }
            let mut p = p(PaymentKind::Purchase);
            p.amount = Some(minor(a, "total", cur()?)?);
            p.timestamp = iso(a, "created_at");
            p
        }
        "subscription_payment_success" => {
            // The first payment of a subscription is also an order (order_created).
            if text(a, "billing_reason").as_deref() == Some("initial") {
                return Ok(Vec::new());
            }
            let mut p = p(PaymentKind::Purchase);
            p.amount = Some(minor(a, "total", cur()?)?);
            p.timestamp = iso(a, "created_at");
            p
        }
        "order_refunded" | "subscription_payment_refunded" => {
            let mut p = p(PaymentKind::Refund);
            let total = minor(a, "refunded_amount", cur()?)?;
            p.amount = Some(total);
            p.refunded_total = Some(total);
            p.timestamp = iso(a, "refunded_at").or_else(|| iso(a, "updated_at"));
            p
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![out])
}

fn polar(headers: &Headers, v: &Value) -> Result<Vec<Payment>, WebhookError> {
    let event = need_text(v, "type")?;
    let d = at(v, "data").ok_or_else(|| WebhookError::field("data", "is required"))?;
    let event_id = headers
        .get("webhook-id")
        .map(str::to_owned)
        .ok_or(WebhookError::MissingHeader("webhook-id"))?;
    let ts = iso(v, "timestamp");
    let p = |kind, order: String| {
        let mut p = Payment::new(Provider::Polar, event_id.clone(), kind, order);
        p.timestamp = ts;
        p.customer_id = text(d, "customer_id");
        p
    };
    let out = match event.as_str() {
        "order.paid" => {
            let cur = currency(d, "currency")?;
            let mut p = p(PaymentKind::Purchase, need_text(d, "id")?);
            p.amount = Some(minor(d, "total_amount", cur)?);
            p.product = text(d, "product.name");
            p.linked(link(at(d, "metadata")))
        }
        "order.refunded" => {
            let cur = currency(d, "currency")?;
            let mut p = p(PaymentKind::Refund, need_text(d, "id")?);
            let total = minor(d, "refunded_amount", cur)?;
            p.amount = Some(total);
            p.refunded_total = Some(total);
            p.linked(link(at(d, "metadata")))
        }
        "refund.created" => {
            let cur = currency(d, "currency")?;
            let mut p = p(PaymentKind::Refund, need_text(d, "order_id")?);
            p.refund_id = text(d, "id");
            p.amount = Some(minor(d, "amount", cur)?);
            p
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![out])
}

fn shopify(headers: &Headers, v: &Value) -> Result<Vec<Payment>, WebhookError> {
    let topic = headers
        .get("shopify-topic")
        .or_else(|| headers.get("X-Shopify-Topic"))
        .ok_or(WebhookError::MissingHeader("X-Shopify-Topic"))?;
    let event_id = [
        "shopify-event-id",
        "X-Shopify-Event-Id",
        "X-Shopify-Webhook-Id",
    ]
    .iter()
    .find_map(|h| headers.get(h))
    .map(str::to_owned)
    .ok_or(WebhookError::MissingHeader("X-Shopify-Webhook-Id"))?;
    // Old fixtures wrap the resource ({"order": {...}}); webhook bodies do not.
    let o = match topic {
        "orders/paid" => at(v, "order").unwrap_or(v),
        _ => at(v, "refund").unwrap_or(v),
    };
    let out = match topic {
        "orders/paid" => {
            let cur = currency(o, "currency")?;
            let mut p = Payment::new(
                Provider::Shopify,
                event_id,
                PaymentKind::Purchase,
                need_text(o, "id")?,
            );
            p.amount = Some(decimal(o, "total_price", cur)?);
            p.timestamp = iso(o, "processed_at").or_else(|| iso(o, "created_at"));
            p.customer_id = text(o, "customer.id");
            p.product = text(o, "line_items.0.title");
            let attrs = at(o, "note_attributes").and_then(Value::as_array);
            let attr = |name: &str| {
                attrs.and_then(|a| {
                    a.iter()
                        .find(|x| text(x, "name").as_deref() == Some(name))
                        .and_then(|x| text(x, "value"))
                })
            };
            p.visitor_id = attr("beacon_visitor_id");
            p.session_id = attr("beacon_session_id");
            p
        }
        "refunds/create" => {
            let mut p = Payment::new(
                Provider::Shopify,
                event_id,
                PaymentKind::Refund,
                need_text(o, "order_id")?,
            );
            p.refund_id = text(o, "id");
            p.timestamp = iso(o, "processed_at").or_else(|| iso(o, "created_at"));
            let txs = at(o, "transactions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut sum: Option<Money> = None;
            for (i, t) in txs.iter().enumerate() {
                if text(t, "kind").as_deref() != Some("refund")
                    || matches!(text(t, "status").as_deref(), Some("failure" | "error"))
                {
                    continue;
                }
                let cur = currency(t, "currency")?;
                let m = decimal(t, "amount", cur).map_err(|_| {
                    WebhookError::field(
                        &format!("transactions.{i}.amount"),
                        "must be a decimal amount",
                    )
                })?;
                sum = match sum {
                    None => Some(m),
                    Some(s) if s.currency == m.currency => Some(Money {
                        minor: s.minor + m.minor,
                        currency: s.currency,
                    }),
                    Some(_) => {
                        return Err(WebhookError::field(
                            &format!("transactions.{i}.currency"),
                            "differs from the refund's other transactions",
                        ))
                    }
                };
            }
            // A refund that gives no money back (a restock only) changes no revenue.
            let Some(sum) = sum else {
                return Ok(Vec::new());
            };
            p.amount = Some(sum);
            p
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![out])
}
