//! Stored batches: events of one site from one commit, in columns under zstd
//! ([`crate::columns`]); older stores' MessagePack and JSON-line batches under LZ4
//! are read too. And the SQL that writes, rewrites and remembers them.

use crate::columns::BatchWriter;
use beacon_core::{Event, EventKind, StoreError};
use sqlx::Row;
use std::collections::HashSet;

/// The most events in one stored batch. A batch's dictionaries hold each visitor
/// and session id once: batches of 16,384 rather than 4,096 realistic events (an
/// import's chunks) held 1.9 B/event less, most visitors' events of a visit falling
/// into one batch.
pub const BATCH: usize = 16384;

/// The codec of the batches written.
pub(crate) const CODEC: &str = "columns+zstd";

/// The codec of earlier versions (MessagePack maps under LZ4): still read.
pub(crate) const MSGPACK_CODEC: &str = "msgpack+lz4";

/// The codec earlier versions wrote: still read.
pub(crate) const JSON_CODEC: &str = "ndjson+lz4";

/// Maps an error of `operation` into a store error: a database that is busy
/// (locked by another process past the busy timeout) or full is unavailable, to be
/// retried, not failed; anything else is the backend's failure.
pub(crate) fn failed<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |e| {
        let transient = (&e as &dyn std::error::Error)
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| match e {
                sqlx::Error::Database(d) => d.code(),
                _ => None,
            })
            .is_some_and(|code| {
                // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL and their extended codes.
                let primary = code.parse::<i64>().unwrap_or(0) & 0xff;
                matches!(primary, 5 | 6 | 13)
            });
        if transient {
            StoreError::unavailable(operation, RETRY_AFTER, e)
        } else {
            StoreError::backend(operation, e)
        }
    }
}

/// How long a caller waits before retrying when the database is busy or full.
pub(crate) const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// A stored batch that cannot be read.
fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

pub(crate) type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

/// Purchases and refunds: their ids may be derived from a provider's order.
pub(crate) fn is_payment(e: &Event) -> bool {
    matches!(e.kind, EventKind::Purchase | EventKind::Refund)
}

/// Records the (site, id) of purchases and refunds; returns `events` without the
/// payments stored before (or earlier in `events`): a provider's redelivery, or
/// another notification of the same order, is one purchase. Ids recorded by older
/// versions (`payment_ids`, without the site) still count, when that table exists.
pub(crate) async fn remember_payments<'e>(
    tx: &mut Tx<'_>,
    events: &[&'e Event],
) -> Result<Vec<&'e Event>, StoreError> {
    let keyed: Vec<&Event> = events.iter().copied().filter(|e| is_payment(e)).collect();
    if keyed.is_empty() {
        return Ok(events.to_vec());
    }
    let legacy =
        sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'payment_ids'")
            .fetch_optional(&mut **tx)
            .await
            .map_err(failed("record payment ids"))?
            .is_some();
    let mut new_keys: HashSet<(&str, uuid::Uuid)> = HashSet::with_capacity(keyed.len());
    for chunk in keyed.chunks(400) {
        let mut known: HashSet<uuid::Uuid> = HashSet::new();
        if legacy {
            let mut sql = String::from("SELECT id FROM payment_ids WHERE id IN (?");
            sql.push_str(&", ?".repeat(chunk.len() - 1));
            sql.push(')');
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q.bind(e.id.as_bytes().to_vec());
            }
            for row in q
                .fetch_all(&mut **tx)
                .await
                .map_err(failed("record payment ids"))?
            {
                if let Ok(id) = uuid::Uuid::from_slice(&row.get::<Vec<u8>, _>(0)) {
                    known.insert(id);
                }
            }
        }
        let fresh: Vec<&&Event> = chunk.iter().filter(|e| !known.contains(&e.id)).collect();
        if fresh.is_empty() {
            continue;
        }
        let mut sql = String::from("INSERT OR IGNORE INTO payments (site, id) VALUES (?, ?)");
        sql.push_str(&", (?, ?)".repeat(fresh.len() - 1));
        sql.push_str(" RETURNING site, id");
        let mut q = sqlx::query(&sql);
        for e in &fresh {
            q = q.bind(e.site.as_str()).bind(e.id.as_bytes().to_vec());
        }
        let rows = q
            .fetch_all(&mut **tx)
            .await
            .map_err(failed("record payment ids"))?;
        for row in rows {
            let (site, id): (String, Vec<u8>) = (row.get(0), row.get(1));
            if let (Some(e), Ok(id)) = (
                fresh.iter().find(|e| e.site == site),
                uuid::Uuid::from_slice(&id),
            ) {
                new_keys.insert((e.site.as_str(), id));
            }
        }
    }
    // A new key is kept once: its first event in `events`.
    Ok(events
        .iter()
        .copied()
        .filter(|e| !is_payment(e) || new_keys.remove(&(e.site.as_str(), e.id)))
        .collect())
}

/// A batch in its stored form.
#[derive(Debug)]
pub(crate) struct StoredBatch {
    pub(crate) site: String,
    pub(crate) events: usize,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) body: Vec<u8>,
}

/// Encodes `events` as batches of one site each, in their order.
pub(crate) fn encode_batches(events: &[&Event]) -> Result<Vec<StoredBatch>, StoreError> {
    let mut builder = BatchBuilder::default();
    for e in events {
        builder.put(e)?;
    }
    builder.finish()
}

/// Batches written event by event as the events come: a batch open for each site,
/// sealed when it holds [`BATCH`] events or at [`BatchBuilder::finish`]. The batches
/// are those [`encode_batches`] makes of the same events: each site's in order of
/// its first event, its events in their order, [`BATCH`] a batch.
#[derive(Default)]
pub(crate) struct BatchBuilder {
    /// Sites in order of their first event, each with its open batch.
    open: Vec<(String, BatchWriter)>,
    /// The site (index into `open`) of the event before.
    last: usize,
    /// Sealed batches, each with its site's index.
    sealed: Vec<(usize, StoredBatch)>,
    /// Events put.
    events: usize,
}

impl BatchBuilder {
    /// Adds event `e` to its site's open batch.
    pub(crate) fn put(&mut self, e: &Event) -> Result<(), StoreError> {
        let i = match self.open.get(self.last) {
            Some((site, _)) if *site == e.site => self.last,
            _ => match self.open.iter().position(|(site, _)| *site == e.site) {
                Some(i) => i,
                None => {
                    self.open.push((e.site.clone(), BatchWriter::take()));
                    self.open.len() - 1
                }
            },
        };
        self.last = i;
        self.events += 1;
        let (site, writer) = &mut self.open[i];
        writer.put(e);
        if writer.len() == BATCH {
            let batch = seal(site, writer)?;
            self.sealed.push((i, batch));
        }
        Ok(())
    }

    /// Events put so far.
    pub(crate) fn len(&self) -> usize {
        self.events
    }

    /// Every batch, the open ones sealed.
    pub(crate) fn finish(mut self) -> Result<Vec<StoredBatch>, StoreError> {
        for (i, (site, writer)) in self.open.iter_mut().enumerate() {
            if writer.len() > 0 {
                let batch = seal(site, writer)?;
                self.sealed.push((i, batch));
            }
        }
        for (_, writer) in self.open {
            writer.give_back();
        }
        // Stable: a site's batches stay in their order.
        self.sealed.sort_by_key(|(i, _)| *i);
        Ok(self.sealed.into_iter().map(|(_, b)| b).collect())
    }
}

/// The batch `writer` holds, of `site`; the writer is emptied.
fn seal(site: &str, writer: &mut BatchWriter) -> Result<StoredBatch, StoreError> {
    let events = writer.len();
    let (min_ts, max_ts) = writer.span();
    Ok(StoredBatch {
        site: site.to_owned(),
        events,
        min_ts,
        max_ts,
        body: writer.finish()?,
    })
}

pub(crate) async fn write_batches(
    tx: &mut Tx<'_>,
    batches: &[StoredBatch],
) -> Result<(), StoreError> {
    for b in batches {
        sqlx::query("INSERT INTO batches (site, events, codec, body, min_ts, max_ts) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&b.site)
            .bind(b.events as i64)
            .bind(CODEC)
            .bind(&b.body)
            .bind(b.min_ts)
            .bind(b.max_ts)
            .execute(&mut **tx)
            .await
            .map_err(failed("insert events"))?;
    }
    Ok(())
}

/// Rewrites the site's batches that hold events of `visitor`, without them. A batch
/// whose text does not contain the visitor's id is not decoded.
pub(crate) async fn erase_visitor(
    tx: &mut Tx<'_>,
    site: &str,
    visitor: &str,
) -> Result<(), StoreError> {
    let finders = visitor_needles(visitor)?;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT id, codec, body FROM batches WHERE site = ? AND id > ? ORDER BY id LIMIT 64",
        )
        .bind(site)
        .bind(after)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed("erase"))?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for row in &rows {
            let (batch, codec, body): (i64, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
            let bytes = decompress(&codec, &body)?;
            let finder = match codec.as_str() {
                JSON_CODEC => &finders.0,
                MSGPACK_CODEC => &finders.1,
                _ => &finders.2,
            };
            if finder.find(&bytes).is_none() {
                continue;
            }
            let events = decode_events(&codec, &bytes, 0, site)?;
            let kept: Vec<&Event> = events
                .iter()
                .filter(|e| e.identity.visitor_id != visitor)
                .collect();
            if kept.len() == events.len() {
                continue;
            }
            rewrite_batch(tx, batch, &kept).await?;
        }
    }
    Ok(())
}

/// Keeps only `kept` of batch `batch` (deleting it when none is left).
async fn rewrite_batch(tx: &mut Tx<'_>, batch: i64, kept: &[&Event]) -> Result<(), StoreError> {
    let q = if kept.is_empty() {
        sqlx::query("DELETE FROM batches WHERE id = ?").bind(batch)
    } else {
        let times = kept.iter().map(|e| e.timestamp.timestamp_millis());
        let (lo, hi) = (times.clone().min(), times.max());
        sqlx::query(
            "UPDATE batches SET events = ?, codec = ?, body = ?, min_ts = ?, max_ts = ? WHERE id = ?",
        )
        .bind(kept.len() as i64)
        .bind(CODEC)
        .bind(encode_batch(kept)?)
        .bind(lo)
        .bind(hi)
        .bind(batch)
    };
    q.execute(&mut **tx).await.map_err(failed("erase"))?;
    Ok(())
}

/// Erases the events of `site` before `ms` (Unix milliseconds): whole batches by
/// their newest event, and the older part of batches that straddle it.
pub(crate) async fn erase_before(tx: &mut Tx<'_>, site: &str, ms: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM batches WHERE site = ? AND max_ts < ?")
        .bind(site)
        .bind(ms)
        .execute(&mut **tx)
        .await
        .map_err(failed("erase"))?;
    let rows = sqlx::query("SELECT id, codec, body FROM batches WHERE site = ? AND min_ts < ?")
        .bind(site)
        .bind(ms)
        .fetch_all(&mut **tx)
        .await
        .map_err(failed("erase"))?;
    for row in &rows {
        let (batch, codec, body): (i64, String, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
        let events = decode_events(&codec, &decompress(&codec, &body)?, 0, site)?;
        let kept: Vec<&Event> = events
            .iter()
            .filter(|e| e.timestamp.timestamp_millis() >= ms)
            .collect();
        rewrite_batch(tx, batch, &kept).await?;
    }
    Ok(())
}

/// What a batch holding events of `visitor` contains, in each codec: the field and
/// its value as the JSON and MessagePack codecs write them (both write the shortest
/// form), and the id as the columns codec's dictionary holds it; a batch
/// without the bytes holds none of the visitor's events.
fn visitor_needles(
    visitor: &str,
) -> Result<
    (
        memchr::memmem::Finder<'static>,
        memchr::memmem::Finder<'static>,
        memchr::memmem::Finder<'static>,
    ),
    StoreError,
> {
    let id = serde_json::to_string(visitor).map_err(failed("erase"))?;
    let json = format!("\"visitor_id\":{id}").into_bytes();
    let mut packed = Vec::new();
    rmp_serde::encode::write(&mut packed, "visitor_id").map_err(failed("erase"))?;
    rmp_serde::encode::write(&mut packed, visitor).map_err(failed("erase"))?;
    Ok((
        memchr::memmem::Finder::new(&json).into_owned(),
        memchr::memmem::Finder::new(&packed).into_owned(),
        memchr::memmem::Finder::new(&crate::columns::needle(visitor)).into_owned(),
    ))
}

/// The events (all of one site) in the codec written, [`CODEC`].
pub(crate) fn encode_batch(events: &[&Event]) -> Result<Vec<u8>, StoreError> {
    crate::columns::encode(events)
}

/// The events as MessagePack maps one after another, LZ4-compressed, behind the
/// uncompressed size (little-endian `u32`, as `lz4_flex::decompress_size_prepended`
/// reads it): the codec of earlier versions, written by tests only.
#[cfg(test)]
pub(crate) fn encode_msgpack(events: &[&Event]) -> Result<Vec<u8>, StoreError> {
    let mut text = Vec::new();
    for e in events {
        rmp_serde::encode::write_named(&mut text, e).map_err(failed("encode event"))?;
    }
    Ok(lz4_flex::compress_prepend_size(&text))
}

/// The uncompressed bytes of a batch's body in `codec`.
pub(crate) fn decompress(codec: &str, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    match codec {
        CODEC => crate::columns::decompress(body),
        MSGPACK_CODEC | JSON_CODEC => {
            lz4_flex::decompress_size_prepended(body).map_err(|e| corrupt("a batch", e))
        }
        _ => Err(corrupt("a batch", format!("unknown codec {codec:?}"))),
    }
}

/// Decodes a batch of `site` of (about) `count` events.
pub(crate) fn decode_batch(
    codec: &str,
    body: &[u8],
    count: usize,
    site: &str,
) -> Result<Vec<Event>, StoreError> {
    decode_events(codec, &decompress(codec, body)?, count, site)
}

/// Decodes a decompressed batch of `codec` (of `site`: the columns codec does not
/// repeat it per event).
pub(crate) fn decode_events(
    codec: &str,
    bytes: &[u8],
    count: usize,
    site: &str,
) -> Result<Vec<Event>, StoreError> {
    if codec == CODEC {
        return crate::columns::decode(bytes, site);
    }
    if codec == JSON_CODEC {
        return decode_lines(bytes, count);
    }
    let mut events = Vec::with_capacity(count);
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    while de.position() < bytes.len() as u64 {
        events.push(
            serde::Deserialize::deserialize(&mut de)
                .map_err(|e| corrupt("an event of a batch", e))?,
        );
    }
    Ok(events)
}

/// Decodes a decompressed batch.
fn decode_lines(bytes: &[u8], count: usize) -> Result<Vec<Event>, StoreError> {
    // One UTF-8 check for the batch, not one per string.
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt("a batch of JSON lines", e))?;
    let mut events = Vec::with_capacity(count);
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        events.push(serde_json::from_str(line).map_err(|e| corrupt("an event of a batch", e))?);
    }
    Ok(events)
}
