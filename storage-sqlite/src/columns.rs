//! The `columns+zstd` batch codec: a batch's events field by field, each field's
//! values together (a column), in a zstd frame.
//!
//! MessagePack maps under LZ4 cost 75 B/event on disk: every event repeated every
//! field name, and LZ4 finds little in rows of mixed fields. A column holds values
//! of one kind side by side: strings through a dictionary of the batch, times as
//! differences from the event before, the URL as what follows its host and path,
//! and zstd then compresses the whole.
//!
//! Layout of the uncompressed bytes: a format byte ([`FORMAT`]), the event count,
//! then one column per field in [`columns!`]'s order and those [`Derived`] writes
//! from them (the id's UUIDv7 time part as its difference from the event's time,
//! the client's time as its difference from the event's, the session id only when
//! it is not the visitor's one before, the URL after its host and path), each its
//! byte length, its dictionary (a count, then each entry's length and bytes) and
//! its values. Counts, lengths and numbers are LEB128 varints (signed ones
//! zigzagged). The stored body is the uncompressed size (u32,
//! little-endian) and the zstd frame, with its content checksum.
//!
//! Every length is checked against what is left, every dictionary index against
//! the dictionary, and every column must be read to its end: a damaged batch is an
//! error naming what is wrong, never a panic.

use beacon_core::{
    BotInfo, Currency, DeviceType, Event, EventKind, Money, StoreError, Text, VisitorType,
};
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;

/// The first byte of a batch in this codec (its version).
const FORMAT: u8 = 1;

/// The zstd level. On realistic batches level 1 took 117 ns/event for 31.5 B/event;
/// level 3 saved 0.5 B/event for 25% more time, level 9 1.6 B/event for 5 times.
const LEVEL: i32 = 1;

/// The largest uncompressed batch read back (a batch is at most [`crate::BATCH`]
/// events, each bounded by the ingest limits).
const MAX_SIZE: usize = 1 << 30;

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "a columns+zstd batch".into(),
        detail: detail.to_string(),
    }
}

/// Writes one column: its dictionary (strings met so far, in order) and values.
///
/// A writer owns its dictionary's strings (copied once each, when new), so that it
/// borrows no event: a batch is written event by event as the events are made,
/// while they are still in the cache, and a writer is kept from batch to batch with
/// its buffers (fresh ones regrow and fault their pages in again, batch after
/// batch).
#[derive(Default)]
struct W {
    values: Vec<u8>,
    /// The dictionary's strings end to end, and where each ends.
    arena: String,
    ends: Vec<u32>,
    /// Indexes of the dictionary by their strings' hash (foldhash: some 20 strings
    /// an event are looked up, SipHash is slower).
    dict: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// The index last looked up: neighbours often repeat a value.
    last: Option<u32>,
    entries: Vec<u8>,
    /// The last time written (milliseconds), for differences.
    prev: i64,
}

/// Dictionary string `i` of `arena` and `ends`.
fn dict_entry<'a>(arena: &'a str, ends: &[u32], i: u32) -> &'a str {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &arena[start..ends[i] as usize]
}

impl W {
    /// Empties the writer for the next batch, keeping its buffers.
    fn clear(&mut self) {
        self.values.clear();
        self.arena.clear();
        self.ends.clear();
        self.dict.clear();
        self.last = None;
        self.entries.clear();
        self.prev = 0;
    }
    fn varint(&mut self, v: u128) {
        push_varint(&mut self.values, v);
    }
    fn signed(&mut self, v: i128) {
        self.varint(zigzag(v));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.values.extend_from_slice(b);
    }
    /// The dictionary index of `s` (adding it when new). An entry is its length
    /// doubled, plus one when it is lowercase hexadecimal (a visitor id, a hash) and
    /// stored in half the bytes, then its bytes.
    fn index(&mut self, s: &str) -> u32 {
        let (arena, ends, hasher) = (&self.arena, &self.ends, &self.hasher);
        if let Some(i) = self.last {
            if dict_entry(arena, ends, i) == s {
                return i;
            }
        }
        let next = ends.len() as u32;
        let found = self.dict.entry(
            hasher.hash_one(s),
            |&i| dict_entry(arena, ends, i) == s,
            |&i| hasher.hash_one(dict_entry(arena, ends, i)),
        );
        let i = match found {
            hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(next);
                self.arena.push_str(s);
                self.ends.push(
                    u32::try_from(self.arena.len()).expect("a column's dictionary under 4 GiB"),
                );
                if is_hex(s) {
                    push_varint(&mut self.entries, (s.len() as u128) << 1 | 1);
                    self.entries.extend(hex_bytes(s));
                } else {
                    push_varint(&mut self.entries, (s.len() as u128) << 1);
                    self.entries.extend_from_slice(s.as_bytes());
                }
                next
            }
        };
        self.last = Some(i);
        i
    }
    fn string(&mut self, s: &str) {
        let i = self.index(s);
        self.varint(u128::from(i));
    }
    fn optional(&mut self, s: Option<&str>) {
        match s {
            None => self.varint(0),
            Some(s) => {
                let i = self.index(s);
                self.varint(u128::from(i) + 1);
            }
        }
    }
    /// A time as the difference in milliseconds from the one before, then what is
    /// below a millisecond (see [`millis`]).
    fn time(&mut self, t: &DateTime<Utc>) {
        let (ms, sub) = millis(t);
        self.signed(i128::from(ms) - i128::from(self.prev));
        self.prev = ms;
        self.varint(u128::from(sub));
    }
    /// Writes the column into `out`: its length, dictionary and values.
    fn finish(&self, out: &mut Vec<u8>) {
        let mut head = Vec::new();
        push_varint(&mut head, self.ends.len() as u128);
        push_varint(
            out,
            (head.len() + self.entries.len() + self.values.len()) as u128,
        );
        out.extend_from_slice(&head);
        out.extend_from_slice(&self.entries);
        out.extend_from_slice(&self.values);
    }
}

/// A time as Unix milliseconds and the rest: the nanoseconds below the millisecond,
/// doubled, plus one in a leap second (chrono's nanoseconds past 10^9).
fn millis(t: &DateTime<Utc>) -> (i64, u32) {
    let nanos = t.timestamp_subsec_nanos();
    let (leap, nanos) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    let ms = t.timestamp() * 1000 + i64::from(nanos / 1_000_000);
    (ms, (nanos % 1_000_000) * 2 + leap)
}

/// The time [`millis`] gave `(ms, sub)` for.
fn from_millis(ms: i64, sub: u32) -> Option<DateTime<Utc>> {
    if sub >= 2_000_000 {
        return None;
    }
    let nanos =
        u32::try_from(ms.rem_euclid(1000)).ok()? * 1_000_000 + sub / 2 + (sub & 1) * 1_000_000_000;
    DateTime::from_timestamp(ms.div_euclid(1000), nanos)
}

/// The bytes a batch holding string `s` (as a dictionary entry) contains once
/// decompressed: a batch without them holds no event with that value.
pub(crate) fn needle(s: &str) -> Vec<u8> {
    if is_hex(s) {
        hex_bytes(s).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

/// The bytes of lowercase hexadecimal `s`, two digits each.
fn hex_bytes(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
}

/// Whether `s` is written as bytes of two hexadecimal digits each: an even number
/// of lowercase digits, at least two.
fn is_hex(s: &str) -> bool {
    s.len() >= 2
        && s.len() % 2 == 0
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn nibble(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A signed number as an unsigned one, small either side of zero.
fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

/// The number [`zigzag`] gave `z` for.
fn unzigzag(z: u128) -> i128 {
    (z >> 1) as i128 ^ -((z & 1) as i128)
}

fn push_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one column written by [`W`].
struct R<'a> {
    bytes: &'a [u8],
    at: usize,
    dict: Vec<Cow<'a, str>>,
    texts: Vec<Option<Text>>,
    prev: i64,
    field: &'static str,
}

impl<'a> R<'a> {
    /// A reader of `bytes` (no dictionary), for `field`.
    fn over(bytes: &'a [u8], field: &'static str) -> Self {
        R {
            bytes,
            at: 0,
            dict: Vec::new(),
            texts: Vec::new(),
            prev: 0,
            field,
        }
    }

    /// The column of `field` at the start of `input`, which moves past it.
    fn new(input: &mut &'a [u8], field: &'static str) -> Result<Self, StoreError> {
        let mut outer = R::over(input, field);
        let len = outer.length()?;
        let start = outer.at;
        let bytes = &input[start..start + len];
        *input = &input[start + len..];
        let mut r = R::over(bytes, field);
        let entries = r.length()?;
        // Each entry takes at least its length byte.
        if entries > r.bytes.len() - r.at {
            return Err(r.error("more dictionary entries than bytes"));
        }
        r.dict.reserve(entries);
        for _ in 0..entries {
            let head = r.varint()?;
            let (len, hex) = (head >> 1, head & 1 == 1);
            let stored = if hex { len / 2 } else { len };
            let n = usize::try_from(stored)
                .ok()
                .filter(|&n| n <= r.bytes.len() - r.at)
                .ok_or_else(|| r.error(format!("an entry of {len} bytes past the end")))?;
            let b = &r.bytes[r.at..r.at + n];
            r.at += n;
            let s = if hex {
                if len % 2 == 1 {
                    return Err(r.error("an odd number of hexadecimal digits"));
                }
                let mut s = String::with_capacity(2 * n);
                for &x in b {
                    s.push(char::from(HEX[usize::from(x >> 4)]));
                    s.push(char::from(HEX[usize::from(x & 15)]));
                }
                Cow::Owned(s)
            } else {
                Cow::Borrowed(
                    std::str::from_utf8(b)
                        .map_err(|e| r.error(format!("a dictionary entry is not UTF-8: {e}")))?,
                )
            };
            r.dict.push(s);
        }
        r.texts = vec![None; entries];
        Ok(r)
    }
    fn error(&self, detail: impl std::fmt::Display) -> StoreError {
        corrupt(format!("column {}: {detail}", self.field))
    }
    fn varint(&mut self) -> Result<u128, StoreError> {
        let mut v = 0u128;
        for shift in (0..128).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(self.error("cut short"));
            };
            self.at += 1;
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error("a number longer than 128 bits"))
    }
    fn signed(&mut self) -> Result<i128, StoreError> {
        Ok(unzigzag(self.varint()?))
    }
    /// A length or count that fits in what is left.
    fn length(&mut self) -> Result<usize, StoreError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.at)
            .ok_or_else(|| self.error(format!("length {n} past the end")))
    }
    fn small<T: TryFrom<u128>>(&mut self, what: &str) -> Result<T, StoreError> {
        let v = self.varint()?;
        T::try_from(v).map_err(|_| self.error(format!("{what} {v} out of range")))
    }
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let b = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or_else(|| self.error("cut short"))?;
        self.at += N;
        Ok(b.try_into().unwrap_or([0; N]))
    }
    /// Dictionary entry `i`, checked.
    fn entry(&self, i: u128) -> Result<usize, StoreError> {
        usize::try_from(i)
            .ok()
            .filter(|&i| i < self.dict.len())
            .ok_or_else(|| self.error(format!("index {i} past the dictionary")))
    }
    /// The entry the next value names.
    fn index(&mut self) -> Result<usize, StoreError> {
        let i = self.varint()?;
        self.entry(i)
    }
    /// The entry the next value names, if any (0 for none).
    fn optional(&mut self) -> Result<Option<usize>, StoreError> {
        match self.varint()? {
            0 => Ok(None),
            i => self.entry(i - 1).map(Some),
        }
    }
    fn string(&mut self) -> Result<String, StoreError> {
        let i = self.index()?;
        Ok(self.dict[i].clone().into_owned())
    }
    fn text(&mut self) -> Result<Option<Text>, StoreError> {
        let Some(i) = self.optional()? else {
            return Ok(None);
        };
        if self.texts[i].is_none() {
            self.texts[i] = Some(Text::from(&*self.dict[i]));
        }
        Ok(self.texts[i].clone())
    }
    fn time(&mut self) -> Result<DateTime<Utc>, StoreError> {
        let ms = i128::from(self.prev) + self.signed()?;
        let sub: u32 = self.small("nanoseconds")?;
        let ms = i64::try_from(ms).map_err(|_| self.error("a time out of range"))?;
        self.prev = ms;
        from_millis(ms, sub).ok_or_else(|| self.error("a time out of range"))
    }
    fn flag(&mut self) -> Result<bool, StoreError> {
        match self.bytes::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.error(format!("flag {b}"))),
        }
    }
    fn done(&self) -> Result<(), StoreError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error("bytes left after its values"))
        }
    }
}

/// A field's type, as one column writes and reads it.
trait Column: Sized {
    fn put(w: &mut W, v: &Self);
    fn take(r: &mut R<'_>) -> Result<Self, StoreError>;
}

impl Column for String {
    fn put(w: &mut W, v: &Self) {
        w.string(v);
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        r.string()
    }
}

impl Column for Option<String> {
    fn put(w: &mut W, v: &Self) {
        w.optional(v.as_deref());
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        Ok(r.optional()?.map(|i| r.dict[i].clone().into_owned()))
    }
}

impl Column for Option<Text> {
    fn put(w: &mut W, v: &Self) {
        w.optional(v.as_deref());
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        r.text()
    }
}

impl Column for Option<BotInfo> {
    fn put(w: &mut W, v: &Self) {
        w.optional(v.as_ref().map(|b| b.reason.as_str()));
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        Ok(r.text()?.map(|reason| BotInfo { reason }))
    }
}

impl Column for DateTime<Utc> {
    fn put(w: &mut W, v: &Self) {
        w.time(v);
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        r.time()
    }
}

macro_rules! optional_unsigned {
    ($($t:ty),*) => {$(
        impl Column for Option<$t> {
            fn put(w: &mut W, v: &Self) {
                w.varint(v.map_or(0, |v| u128::from(v) + 1));
            }
            fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
                match r.varint()? {
                    0 => Ok(None),
                    v => <$t>::try_from(v - 1)
                        .map(Some)
                        .map_err(|_| r.error(format!("{} out of range", v - 1))),
                }
            }
        }
    )*};
}
optional_unsigned!(u8, u32, u64);

impl Column for bool {
    fn put(w: &mut W, v: &Self) {
        w.bytes(&[u8::from(*v)]);
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        r.flag()
    }
}

macro_rules! optional_float {
    ($($t:ty => $bits:ty),*) => {$(
        impl Column for Option<$t> {
            fn put(w: &mut W, v: &Self) {
                match v {
                    None => w.bytes(&[0]),
                    Some(f) => {
                        w.bytes(&[1]);
                        w.bytes(&f.to_bits().to_le_bytes());
                    }
                }
            }
            fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
                Ok(if r.flag()? {
                    Some(<$t>::from_bits(<$bits>::from_le_bytes(r.bytes()?)))
                } else {
                    None
                })
            }
        }
    )*};
}
optional_float!(f64 => u64, f32 => u32);

impl Column for Option<(u32, u32)> {
    fn put(w: &mut W, v: &Self) {
        match v {
            None => w.bytes(&[0]),
            Some((a, b)) => {
                w.bytes(&[1]);
                w.varint(u128::from(*a));
                w.varint(u128::from(*b));
            }
        }
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        Ok(if r.flag()? {
            Some((r.small("a width")?, r.small("a height")?))
        } else {
            None
        })
    }
}

impl Column for Option<IpAddr> {
    fn put(w: &mut W, v: &Self) {
        match v {
            None => w.bytes(&[0]),
            Some(IpAddr::V4(a)) => {
                w.bytes(&[4]);
                w.bytes(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                w.bytes(&[6]);
                w.bytes(&a.octets());
            }
        }
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        match r.bytes::<1>()?[0] {
            0 => Ok(None),
            4 => Ok(Some(IpAddr::from(r.bytes::<4>()?))),
            6 => Ok(Some(IpAddr::from(r.bytes::<16>()?))),
            b => Err(r.error(format!("address family {b}"))),
        }
    }
}

impl Column for EventKind {
    fn put(w: &mut W, v: &Self) {
        w.string(v.as_str());
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        let i = r.index()?;
        let s = &r.dict[i];
        EventKind::parse(s).ok_or_else(|| r.error(format!("unknown kind {s:?}")))
    }
}

/// Optional enums stored by their JSON name (`as_str`, read back with `parse`).
macro_rules! optional_named {
    ($($t:ty => $what:literal),*) => {$(
        impl Column for Option<$t> {
            fn put(w: &mut W, v: &Self) {
                w.optional(v.map(|d| d.as_str()));
            }
            fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
                r.optional()?
                    .map(|i| {
                        let s = &r.dict[i];
                        <$t>::parse(s)
                            .ok_or_else(|| r.error(format!(concat!("unknown ", $what, " {:?}"), s)))
                    })
                    .transpose()
            }
        }
    )*};
}
optional_named!(DeviceType => "device", VisitorType => "visitor type");

impl Column for Option<Money> {
    fn put(w: &mut W, v: &Self) {
        match v {
            None => w.bytes(&[0]),
            Some(m) => {
                w.bytes(&[1]);
                w.signed(i128::from(m.minor));
                w.string(m.currency.code());
            }
        }
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        if !r.flag()? {
            return Ok(None);
        }
        let minor = i64::try_from(r.signed()?).map_err(|_| r.error("an amount out of range"))?;
        let i = r.index()?;
        let code = &r.dict[i];
        let currency =
            Currency::parse(code).ok_or_else(|| r.error(format!("unknown currency {code:?}")))?;
        Ok(Some(Money { minor, currency }))
    }
}

impl Column for BTreeMap<String, String> {
    fn put(w: &mut W, v: &Self) {
        w.varint(v.len() as u128);
        for (k, v) in v {
            w.string(k);
            w.string(v);
        }
    }
    fn take(r: &mut R<'_>) -> Result<Self, StoreError> {
        let n = r.length()?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let k = r.string()?;
            let v = r.string()?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

/// The columns written after [`columns!`]'s, each from fields those hold, and what
/// the session column remembers: each visitor's session id last written.
#[derive(Default)]
struct Derived {
    writers: [W; Derived::COLUMNS],
    /// Each visitor's last session id, by the visitor's index in the visitor
    /// column's dictionary.
    last_session: Vec<Option<u64>>,
}

impl Derived {
    /// How many columns [`Derived::put`] writes.
    const COLUMNS: usize = 4;

    fn clear(&mut self) {
        self.writers.iter_mut().for_each(W::clear);
        self.last_session.clear();
    }

    /// Writes event `e`'s values; `visitor` is its visitor's index in the visitor
    /// column's dictionary.
    fn put(&mut self, e: &Event, visitor: u32) {
        let [w0, w1, w2, w3] = &mut self.writers;
        // The id: its UUIDv7 time part as the difference from the event's time
        // (none when the id was made for it), then its other ten bytes.
        let b = e.id.as_bytes();
        let prefix = b[..6].iter().fold(0i128, |a, &x| a << 8 | i128::from(x));
        let ms = millis(&e.timestamp).0;
        w0.signed(prefix - i128::from(ms));
        w0.bytes(&b[6..]);
        // The client's time, as the difference from the event's.
        match &e.client_timestamp {
            None => w1.varint(0),
            Some(c) => {
                let (client_ms, sub) = millis(c);
                let d = i128::from(client_ms) - i128::from(ms);
                w1.varint(zigzag(d) + 1);
                w1.varint(u128::from(sub));
            }
        }
        // The session id: 0 for none, 1 for the id of the visitor's event before in
        // the batch, else 2 and its bytes.
        match e.identity.session_id {
            None => w2.bytes(&[0]),
            Some(id) => {
                let v = visitor as usize;
                if v >= self.last_session.len() {
                    self.last_session.resize(v + 1, None);
                }
                match self.last_session[v].replace(id) {
                    Some(before) if before == id => w2.bytes(&[1]),
                    _ => {
                        w2.bytes(&[2]);
                        w2.bytes(&id.to_le_bytes());
                    }
                }
            }
        }
        put_url(w3, e);
    }

    /// Writes the columns into `raw`.
    fn finish(&self, raw: &mut Vec<u8>) {
        for w in &self.writers {
            w.finish(raw);
        }
    }

    fn take(events: &mut [Event], input: &mut &[u8]) -> Result<(), StoreError> {
        let mut r = R::new(input, "id")?;
        for e in events.iter_mut() {
            let prefix = i128::from(millis(&e.timestamp).0) + r.signed()?;
            if !(0..1 << 48).contains(&prefix) {
                return Err(r.error(format!("time part {prefix} out of range")));
            }
            let mut b = [0u8; 16];
            b[..6].copy_from_slice(&(prefix as u64).to_be_bytes()[2..]);
            b[6..].copy_from_slice(&r.bytes::<10>()?);
            e.id = uuid::Uuid::from_bytes(b);
        }
        r.done()?;
        let mut r = R::new(input, "client_timestamp")?;
        for e in events.iter_mut() {
            e.client_timestamp = match r.varint()? {
                0 => None,
                v => {
                    let d = unzigzag(v - 1);
                    let ms = i64::try_from(i128::from(millis(&e.timestamp).0) + d)
                        .map_err(|_| r.error("a time out of range"))?;
                    let sub: u32 = r.small("nanoseconds")?;
                    Some(from_millis(ms, sub).ok_or_else(|| r.error("a time out of range"))?)
                }
            };
        }
        r.done()?;
        let mut r = R::new(input, "identity.session_id")?;
        let mut last: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
        for e in events.iter_mut() {
            e.identity.session_id = match r.bytes::<1>()?[0] {
                0 => None,
                1 => Some(
                    last.get(&e.identity.visitor_id)
                        .copied()
                        .ok_or_else(|| r.error("no session before of the visitor"))?,
                ),
                2 => {
                    let id = u64::from_le_bytes(r.bytes()?);
                    last.insert(e.identity.visitor_id.clone(), id);
                    Some(id)
                }
                b => return Err(r.error(format!("session form {b}"))),
            };
        }
        r.done()?;
        let mut r = R::new(input, "page.url")?;
        for e in events.iter_mut() {
            take_url(&mut r, e)?;
        }
        r.done()
    }
}

/// How a page's URL is written: whole (0), or as what follows
/// `https://{host}{path}` (1) or `http://{host}{path}` (2).
fn put_url(w: &mut W, e: &Event) {
    let (host, path) = (e.page.host.as_str(), e.page.path.as_str());
    let after = |scheme: &str| {
        e.page
            .url
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix(host))
            .and_then(|r| r.strip_prefix(path))
    };
    match (after("https://"), after("http://")) {
        (Some(rest), _) => {
            w.bytes(&[1]);
            w.string(rest);
        }
        (None, Some(rest)) => {
            w.bytes(&[2]);
            w.string(rest);
        }
        (None, None) => {
            w.bytes(&[0]);
            w.string(&e.page.url);
        }
    }
}

fn take_url(r: &mut R<'_>, e: &mut Event) -> Result<(), StoreError> {
    let scheme = match r.bytes::<1>()?[0] {
        0 => None,
        1 => Some("https://"),
        2 => Some("http://"),
        b => return Err(r.error(format!("url form {b}"))),
    };
    let i = r.index()?;
    let rest: &str = &r.dict[i];
    e.page.url = match scheme {
        None => rest.to_owned(),
        Some(s) => [s, &e.page.host, &e.page.path, rest].concat(),
    };
    Ok(())
}

/// Every field of [`Event`] but the site (a batch's, stored beside it) and those
/// written after these from other fields ([`Derived`]): the one list both
/// directions follow. A field missing here would not be stored;
/// `every_field_survives_every_codec` fails then.
macro_rules! columns {
    ($apply:ident) => {
        $apply!(
            kind,
            name,
            timestamp,
            identity.visitor_id,
            identity.session_number,
            identity.user_id,
            identity.email_sha256,
            identity.phone_sha256,
            page.host,
            page.path,
            page.title,
            page.referrer,
            page.referrer_domain,
            acquisition.source,
            acquisition.medium,
            acquisition.channel,
            acquisition.utm.source,
            acquisition.utm.medium,
            acquisition.utm.campaign,
            acquisition.utm.content,
            acquisition.utm.term,
            acquisition.click_ids.gclid,
            acquisition.click_ids.fbclid,
            acquisition.click_ids.ttclid,
            acquisition.click_ids.msclkid,
            device.device_type,
            device.brand,
            device.model,
            device.model_code,
            device.browser,
            device.browser_version,
            device.os,
            device.os_version,
            device.screen,
            device.viewport,
            device.pixel_ratio,
            device.language,
            location.country,
            location.region,
            location.city,
            location.postal_code,
            location.latitude,
            location.longitude,
            location.timezone,
            network.ip,
            network.asn,
            network.isp,
            network.organization,
            network.company.name,
            network.company.domain,
            network.company.industry,
            network.company.size,
            network.visitor_type,
            network.is_vpn,
            network.is_proxy,
            network.is_hosting,
            engagement.time_ms,
            engagement.scroll_depth,
            engagement.clicks,
            engagement.form_submits,
            engagement.video_plays,
            engagement.downloads,
            commerce.revenue,
            commerce.order_id,
            commerce.goal_value,
            commerce.refunded_total,
            props,
            bot
        )
    };
}

macro_rules! count_columns {
    ($($($f:ident).+),*) => {
        [$(stringify!($($f).+)),*].len()
    };
}

/// How many columns [`columns!`] names.
const COLUMNS: usize = columns!(count_columns);

/// The place of `identity.visitor_id` in [`columns!`] (a test holds it there).
const VISITOR_COLUMN: usize = 3;

/// A batch being written event by event: a writer per column, each keeping its
/// buffers from one batch to the next.
pub(crate) struct BatchWriter {
    writers: Vec<W>,
    derived: Derived,
    events: usize,
    min_ms: i64,
    max_ms: i64,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter {
            writers: std::iter::repeat_with(W::default).take(COLUMNS).collect(),
            derived: Derived::default(),
            events: 0,
            min_ms: 0,
            max_ms: 0,
        }
    }
}

impl BatchWriter {
    /// Adds event `e` to the batch.
    pub(crate) fn put(&mut self, e: &Event) {
        let mut w = self.writers.iter_mut();
        macro_rules! put {
            ($($($f:ident).+),*) => {
                $(
                    if let Some(w) = w.next() {
                        Column::put(w, &e.$($f).+);
                    }
                )*
            };
        }
        columns!(put);
        // The visitor column's writer has just looked the event's visitor up.
        let visitor = self.writers[VISITOR_COLUMN].last.unwrap_or(0);
        self.derived.put(e, visitor);
        let ms = e.timestamp.timestamp_millis();
        if self.events == 0 {
            (self.min_ms, self.max_ms) = (ms, ms);
        } else {
            (self.min_ms, self.max_ms) = (self.min_ms.min(ms), self.max_ms.max(ms));
        }
        self.events += 1;
    }

    /// Events in the batch.
    pub(crate) fn len(&self) -> usize {
        self.events
    }

    /// The earliest and latest event times (milliseconds); zeros for no event.
    pub(crate) fn span(&self) -> (i64, i64) {
        (self.min_ms, self.max_ms)
    }

    /// The batch as a `columns+zstd` body; the writer is emptied for the next one.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, StoreError> {
        PACKER.with_borrow_mut(|packer| {
            let Packer {
                raw,
                compressor,
                packed,
            } = packer;
            raw.clear();
            raw.push(FORMAT);
            push_varint(raw, self.events as u128);
            for w in &self.writers {
                w.finish(raw);
            }
            self.derived.finish(raw);
            self.clear();
            let size = u32::try_from(raw.len())
                .map_err(|e| StoreError::backend("encode a batch over 4 GiB", e))?;
            let compressor = match compressor {
                Some(c) => c,
                None => {
                    let mut c = zstd::bulk::Compressor::new(LEVEL)
                        .map_err(|e| StoreError::backend("compress a batch", e))?;
                    // A damaged frame fails its checksum rather than decoding to other
                    // events.
                    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                        .map_err(|e| StoreError::backend("compress a batch", e))?;
                    compressor.insert(c)
                }
            };
            packed.clear();
            packed.reserve(zstd::zstd_safe::compress_bound(raw.len()));
            compressor
                .compress_to_buffer(&raw[..], packed)
                .map_err(|e| StoreError::backend("compress a batch", e))?;
            let mut body = Vec::with_capacity(4 + packed.len());
            body.extend_from_slice(&size.to_le_bytes());
            body.extend_from_slice(packed);
            Ok(body)
        })
    }

    fn clear(&mut self) {
        self.writers.iter_mut().for_each(W::clear);
        self.derived.clear();
        (self.events, self.min_ms, self.max_ms) = (0, 0, 0);
    }
}

/// What an encoding thread keeps between batches: the column bytes, the zstd
/// context and its output.
#[derive(Default)]
struct Packer {
    raw: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    packed: Vec<u8>,
}

thread_local! {
    static PACKER: std::cell::RefCell<Packer> = std::cell::RefCell::new(Packer::default());
    /// Batch writers not in use on this thread, with their buffers.
    static WRITERS: std::cell::RefCell<Vec<BatchWriter>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writers kept per thread: an import's chunk takes one a site it holds.
const KEPT_WRITERS: usize = 8;

impl BatchWriter {
    /// An empty writer: one this thread used before, with its buffers, when there is.
    pub(crate) fn take() -> Self {
        WRITERS.with_borrow_mut(Vec::pop).unwrap_or_default()
    }

    /// Gives an emptied writer back to this thread's writers.
    pub(crate) fn give_back(mut self) {
        self.clear();
        WRITERS.with_borrow_mut(|kept| {
            if kept.len() < KEPT_WRITERS {
                kept.push(self);
            }
        });
    }
}

/// The events (all of one site) as a `columns+zstd` body.
pub(crate) fn encode(events: &[&Event]) -> Result<Vec<u8>, StoreError> {
    if let Some(first) = events.first() {
        if events.iter().any(|e| e.site != first.site) {
            return Err(corrupt("events of more than one site in one batch"));
        }
    }
    let mut writer = BatchWriter::take();
    for e in events {
        writer.put(e);
    }
    let body = writer.finish();
    writer.give_back();
    body
}

/// The uncompressed bytes of a `columns+zstd` body.
pub(crate) fn decompress(body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (size, frame) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("shorter than its size"))?;
    let size = u32::from_le_bytes(*size) as usize;
    if size > MAX_SIZE {
        return Err(corrupt(format!("a size of {size} bytes")));
    }
    let bytes = zstd::bulk::decompress(frame, size).map_err(|e| corrupt(format!("zstd: {e}")))?;
    if bytes.len() != size {
        return Err(corrupt(format!(
            "{} bytes where its size says {size}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes uncompressed `columns+zstd` bytes into events of `site`.
pub(crate) fn decode(bytes: &[u8], site: &str) -> Result<Vec<Event>, StoreError> {
    let (&format, mut input) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    if format != FORMAT {
        return Err(corrupt(format!("format {format}")));
    }
    let mut head = R::over(input, "count");
    let n = head.length()?;
    input = &input[head.at..];
    let mut events = vec![
        Event {
            site: site.to_owned(),
            ..Event::default()
        };
        n
    ];
    macro_rules! take {
        ($($($f:ident).+),*) => {$(
            let mut r = R::new(&mut input, stringify!($($f).+))?;
            for e in &mut events {
                e.$($f).+ = Column::take(&mut r)?;
            }
            r.done()?;
        )*};
    }
    columns!(take);
    Derived::take(&mut events, &mut input)?;
    if !input.is_empty() {
        return Err(corrupt("bytes after the last column"));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    macro_rules! name_columns {
        ($($($f:ident).+),*) => {
            [$(stringify!($($f).+)),*]
        };
    }

    #[test]
    fn the_visitor_column_is_where_the_session_column_looks() {
        let names: [&str; COLUMNS] = columns!(name_columns);
        assert_eq!(
            names[VISITOR_COLUMN].replace(' ', ""),
            "identity.visitor_id"
        );
    }

    fn text() -> impl Strategy<Value = Option<Text>> {
        proptest::option::of("[a-c\u{e9} ]{0,3}".prop_map(|s| Text::from(s.as_str())))
    }

    prop_compose! {
        fn event()(
            id in any::<u128>(),
            kind in 0..EventKind::ALL.len(),
            name in proptest::option::of("[a-z]{0,4}"),
            secs in -62_000_000_000i64..250_000_000_000,
            nanos in prop_oneof![Just(0u32), 0..1_000_000_000u32, Just(1_999_999_999)],
            client in proptest::option::of(-100_000i64..100_000),
            visitor in "[a-fA-F0-9]{0,4}",
            session in proptest::option::of(prop_oneof![0..3u64, any::<u64>()]),
            host in "[a-c]{0,2}\\.test",
            path in "/[a-c/]{0,3}",
            url_form in 0..4u8,
            suffix in "[?#a-c=]{0,4}",
            source in text(),
            device in proptest::option::of(0..DeviceType::ALL.len()),
            visitor_type in proptest::option::of(0..VisitorType::ALL.len()),
            screen in proptest::option::of((any::<u32>(), any::<u32>())),
            ratio in proptest::option::of(any::<f32>().prop_filter("not NaN", |f| !f.is_nan())),
            latitude in proptest::option::of(-90.0f64..90.0),
            ip in proptest::option::of(prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]),
            asn in proptest::option::of(any::<u32>()),
            flags in any::<(bool, bool, bool)>(),
            time_ms in proptest::option::of(any::<u64>()),
            scroll in proptest::option::of(any::<u8>()),
            revenue in proptest::option::of((any::<i64>(), prop_oneof![Just("USD"), Just("JPY"), Just("EUR")])),
            props in proptest::collection::btree_map("[a-c]{0,2}", "[a-c\u{0}]{0,2}", 0..3),
            bot in text(),
        ) -> Event {
            let mut e = Event {
                id: uuid::Uuid::from_u128(id),
                site: "s.test".into(),
                kind: EventKind::ALL[kind],
                name,
                timestamp: DateTime::from_timestamp(secs, nanos).unwrap_or_default(),
                ..Event::default()
            };
            e.client_timestamp = client.and_then(|d| e.timestamp.checked_add_signed(chrono::TimeDelta::milliseconds(d)));
            e.identity.visitor_id = visitor;
            e.identity.session_id = session;
            e.page.url = match url_form {
                0 => format!("https://{host}{path}{suffix}"),
                1 => format!("http://{host}{path}{suffix}"),
                2 => suffix,
                _ => String::new(),
            };
            (e.page.host, e.page.path) = (host, path);
            e.acquisition.utm.source = source;
            e.device.device_type = device.map(|d| DeviceType::ALL[d]);
            e.network.visitor_type = visitor_type.map(|v| VisitorType::ALL[v]);
            (e.device.screen, e.device.pixel_ratio, e.location.latitude) = (screen, ratio, latitude);
            (e.network.ip, e.network.asn) = (ip, asn);
            (e.network.is_vpn, e.network.is_proxy, e.network.is_hosting) = flags;
            (e.engagement.time_ms, e.engagement.scroll_depth) = (time_ms, scroll);
            e.commerce.revenue = revenue.map(|(minor, c)| Money { minor, currency: Currency::parse(c).unwrap_or(Currency::USD) });
            e.props = props;
            e.bot = bot.map(|reason| BotInfo { reason });
            e
        }
    }

    proptest! {
        #[test]
        fn a_batch_reads_back_as_written(events in proptest::collection::vec(event(), 0..40)) {
            let refs: Vec<&Event> = events.iter().collect();
            let body = encode(&refs).expect("encode");
            let back = decode(&decompress(&body).expect("zstd"), "s.test").expect("decode");
            prop_assert_eq!(back, events);
        }

        #[test]
        fn damaged_bytes_are_an_error_or_events_never_a_panic(
            events in proptest::collection::vec(event(), 1..6),
            at in any::<prop::sample::Index>(),
            flip in 1..=255u8,
            cut in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&Event> = events.iter().collect();
            let bytes = decompress(&encode(&refs).expect("encode")).expect("zstd");
            let mut spoiled = bytes.clone();
            spoiled[at.index(bytes.len())] ^= flip;
            let _ = decode(&spoiled, "s.test");
            prop_assert!(decode(&bytes[..cut.index(bytes.len())], "s.test").is_err());
        }
    }
}
