//! The columnar table of one site: dictionary-encoded columns, rows kept ordered by
//! (visitor, time, id) after a build, and sessions derived as their own columns.

use super::ids::Ids;
use super::narrow::Narrow;
use super::snapshot::{check, corrupt, Dec, Enc};
use crate::error::StoreError;
use crate::event::{BotInfo, DeviceType, Event, EventKind, VisitorType};
use crate::hash::{FastBuild, FastHasher, IdentityBuild};
use crate::money::Money;
use crate::text::Text;
use std::collections::HashMap;
use std::hash::Hasher;

/// Value id of a missing value in every dictionary.
pub(crate) const NULL: u32 = 0;

/// A string dictionary: id 0 is "missing", ids from 1 are strings in first-seen order.
/// Strings live once, concatenated in an arena; the index holds ids alone, hashed by
/// their string (5 bytes a slot; a map from the hash to the id took 13).
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    arena: String,
    /// End offset of string `id` in `arena` (start = previous end).
    ends: Vec<u32>,
    by_str: hashbrown::HashTable<u32>,
}

/// String `id` (not [`NULL`]) of a dictionary's arena and ends.
fn entry<'a>(arena: &'a str, ends: &[u32], id: u32) -> &'a str {
    let i = id as usize - 1;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &arena[start..ends[i] as usize]
}

fn hash_str(s: &str) -> u64 {
    let mut h = FastHasher::default();
    h.write(s.as_bytes());
    h.write_usize(s.len());
    mix(h.finish())
}

/// A final avalanche, so that every bit of the key matters to the map's bucket.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The index hash of an event id (ids are random, or hashes themselves).
fn hash_id(id: u128) -> u64 {
    mix((id as u64) ^ ((id >> 64) as u64).rotate_left(29))
}

/// One hash over a tuple of optional strings (missing and empty differ).
fn fingerprint(fields: &[Option<&str>]) -> u64 {
    let mut h = FastHasher::default();
    for f in fields {
        match f {
            Some(s) => {
                h.write(s.as_bytes());
                h.write_usize(s.len());
            }
            None => h.write_u64(u64::MAX),
        }
    }
    mix(h.finish())
}

impl Interner {
    /// Makes room for `additional` more strings.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.ends.reserve(additional);
        let (arena, ends) = (&self.arena, &self.ends);
        self.by_str
            .reserve(additional, |&o| hash_str(entry(arena, ends, o)));
        self.arena.reserve(additional * 16);
    }

    pub(crate) fn id(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return NULL };
        if let Some(id) = self.lookup(s) {
            return id;
        }
        self.arena.push_str(s);
        self.ends
            .push(u32::try_from(self.arena.len()).expect("dictionary under 4 GiB"));
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 distinct values");
        self.index(id, false);
        id
    }

    /// Indexes string `id` (in the arena already); when `check`, `false` (and not
    /// indexed) if an equal string is indexed already.
    fn index(&mut self, id: u32, check: bool) -> bool {
        let (arena, ends) = (&self.arena, &self.ends);
        let s = entry(arena, ends, id);
        let h = hash_str(s);
        if check
            && self
                .by_str
                .find(h, |&o| entry(arena, ends, o) == s)
                .is_some()
        {
            return false;
        }
        self.by_str
            .insert_unique(h, id, |&o| hash_str(entry(arena, ends, o)));
        true
    }
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.by_str
            .find(hash_str(s), |&o| entry(&self.arena, &self.ends, o) == s)
            .copied()
    }
    pub(crate) fn get(&self, id: u32) -> Option<&str> {
        (id != NULL).then(|| entry(&self.arena, &self.ends, id))
    }
    /// Size of the id space, the missing value included.
    pub(crate) fn space(&self) -> usize {
        self.ends.len() + 1
    }
    fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * 4 + self.by_str.capacity() * (4 + 1)
    }
}

/// A dictionary of fixed-size tuples of value ids.
#[derive(Debug, Default, Clone)]
pub(crate) struct TupleInterner<const N: usize> {
    map: HashMap<[u32; N], u32, FastBuild>,
    pub(crate) values: Vec<[u32; N]>,
}

impl<const N: usize> TupleInterner<N> {
    fn id(&mut self, t: [u32; N]) -> u32 {
        if let Some(&id) = self.map.get(&t) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct tuples");
        self.values.push(t);
        self.map.insert(t, id);
        id
    }
    fn heap_bytes(&self) -> usize {
        self.values.capacity() * 4 * N + self.map.capacity() * (4 * N + 4 + 8)
    }
}

/// Positions in the client tuple.
pub(crate) mod client {
    pub(crate) const DEVICE: usize = 0;
    pub(crate) const BROWSER: usize = 1;
    pub(crate) const OS: usize = 2;
    pub(crate) const COUNTRY: usize = 3;
    pub(crate) const REGION: usize = 4;
    pub(crate) const CITY: usize = 5;
    pub(crate) const COMPANY: usize = 6;
    pub(crate) const VISITOR_TYPE: usize = 7;
    /// The bot reason's id (NULL when not a bot).
    pub(crate) const BOT: usize = 8;
    /// Host of the page URL (per event, but nearly always one per site, so interned here).
    pub(crate) const HOST: usize = 9;
    pub(crate) const N: usize = 10;
}

/// Positions in the acquisition tuple.
pub(crate) mod acq {
    pub(crate) const SOURCE: usize = 0;
    pub(crate) const REFERRER: usize = 1;
    pub(crate) const CHANNEL: usize = 2;
    pub(crate) const UTM_SOURCE: usize = 3;
    pub(crate) const UTM_MEDIUM: usize = 4;
    pub(crate) const UTM_CAMPAIGN: usize = 5;
    pub(crate) const UTM_CONTENT: usize = 6;
    pub(crate) const UTM_TERM: usize = 7;
    pub(crate) const N: usize = 8;
}

/// Engagement figures, compact: `u32::MAX` / `u8::MAX` mean "not reported". Packed:
/// 5 bytes, not 8 (its fields are only ever read by value).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
pub(crate) struct Engaged {
    time_ms: u32,
    scroll: u8,
}

const _: () = assert!(size_of::<Engaged>() == 5);

/// Commerce and properties, which few events carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rich {
    revenue: Option<Money>,
    goal_value: Option<Money>,
    order_id: Option<Box<str>>,
    /// (name id, value id) in the strings dictionary.
    props: Box<[(u32, u32)]>,
    engaged: Option<Engaged>,
}

/// A view of a row's optional facts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extra<'a> {
    pub(crate) revenue: Option<Money>,
    pub(crate) goal_value: Option<Money>,
    pub(crate) order_id: Option<&'a str>,
    pub(crate) props: &'a [(u32, u32)],
    pub(crate) time_ms: Option<u64>,
    pub(crate) scroll: Option<u8>,
}

/// `extra` column values: 0 none; top bit set: index into `rich`; else index + 1 into `engaged`.
const RICH: u32 = 1 << 31;

/// A derived session: a run of rows of one visitor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sess {
    pub(crate) first: u32,
    pub(crate) len: u32,
    /// Pageviews in the low 28 bits (saturating); bit 31 marks a goal, purchase or
    /// custom event, bit 30 a row classified as a bot, bit 29 a first row classified
    /// as a bot, bit 28 the visitor's first session.
    flags_and_pageviews: u32,
    /// Path id of the last pageview (NULL without one).
    pub(crate) exit_path: u32,
}

const INTERACTION: u32 = 1 << 31;
const BOT_ROWS: u32 = 1 << 30;
const BOT_FIRST: u32 = 1 << 29;
const NEW_VISITOR: u32 = 1 << 28;
const PAGEVIEWS: u32 = NEW_VISITOR - 1;

impl Sess {
    pub(crate) fn pageviews(&self) -> u32 {
        self.flags_and_pageviews & PAGEVIEWS
    }
    /// Whether the session holds a goal, purchase or custom event.
    pub(crate) fn has_interaction(&self) -> bool {
        self.flags_and_pageviews & INTERACTION != 0
    }
    /// Whether the session's first row is classified as a bot (then its visit does
    /// not count without bots), without reading the rows.
    pub(crate) fn first_is_bot(&self) -> bool {
        self.flags_and_pageviews & BOT_FIRST != 0
    }
    /// Whether this is the first session of its visitor (sessions are ordered by
    /// visitor), without reading the rows.
    pub(crate) fn starts_visitor(&self) -> bool {
        self.flags_and_pageviews & NEW_VISITOR != 0
    }
    /// Whether some row of the session is classified as a bot.
    pub(crate) fn has_bot_rows(&self) -> bool {
        self.flags_and_pageviews & BOT_ROWS != 0
    }
    pub(crate) fn rows(&self) -> std::ops::Range<usize> {
        self.first as usize..(self.first + self.len) as usize
    }
    pub(crate) fn is_bounce(&self) -> bool {
        self.flags_and_pageviews & (INTERACTION | PAGEVIEWS) == 1
    }
}

/// One site's events.
#[derive(Debug, Default, Clone)]
pub(crate) struct SiteTable {
    pub(crate) visitors: Interner,
    pub(crate) paths: Interner,
    pub(crate) names: Interner,
    pub(crate) strings: Interner,
    pub(crate) clients: TupleInterner<{ client::N }>,
    pub(crate) acqs: TupleInterner<{ acq::N }>,
    /// Fingerprint of a tuple's raw strings → its id (verified before use).
    client_memo: HashMap<u64, u32, IdentityBuild>,
    acq_memo: HashMap<u64, u32, IdentityBuild>,
    engaged: Vec<Engaged>,
    rich: Vec<Rich>,

    pub(crate) ts: Vec<i64>,
    ids: Ids,
    /// Rows by event id (the nil id is not indexed): what makes appends idempotent.
    by_id: hashbrown::HashTable<u32>,
    pub(crate) visitor: Vec<u32>,
    pub(crate) kind: Vec<EventKind>,
    pub(crate) name: Narrow,
    pub(crate) path: Narrow,
    pub(crate) client: Narrow,
    pub(crate) acq: Narrow,
    /// See [`RICH`].
    pub(crate) extra: Vec<u32>,

    /// Rows `..sorted` are ordered by (visitor, ts, id); later rows are newly appended.
    sorted: usize,
    /// Derived sessions; valid when `built`.
    pub(crate) sessions: Vec<Sess>,
    /// First and last instants of the rows; valid when `built`.
    bounds: Option<(i64, i64)>,
    built: bool,
    timeout_ms: i64,
}

impl SiteTable {
    pub(crate) fn new(timeout_ms: i64) -> Self {
        Self {
            timeout_ms,
            ..Self::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ts.len()
    }

    /// The event id of row `r`.
    #[inline]
    pub(crate) fn id(&self, r: usize) -> u128 {
        self.ids.get(r, self.ts[r])
    }

    /// Makes room for `additional` more rows (and as many visitors, at most).
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.ts.reserve(additional);
        self.ids.reserve(additional);
        self.visitor.reserve(additional);
        self.kind.reserve(additional);
        self.name.reserve(additional);
        self.path.reserve(additional);
        self.client.reserve(additional);
        self.acq.reserve(additional);
        self.extra.reserve(additional);
        self.visitors.reserve(additional / 4);
        let (ids, ts) = (&self.ids, &self.ts);
        self.by_id.reserve(additional, |&r| {
            hash_id(ids.get(r as usize, ts[r as usize]))
        });
    }

    pub(crate) fn set_timeout(&mut self, timeout_ms: i64) {
        if timeout_ms != self.timeout_ms {
            self.timeout_ms = timeout_ms;
            self.built = false;
        }
    }

    /// Interns a tuple of strings through its fingerprint memo: one hash for the
    /// common case of a tuple seen before, one string compare per field to be exact.
    fn tuple<const N: usize>(
        strings: &mut Interner,
        tuples: &mut TupleInterner<N>,
        memo: &mut HashMap<u64, u32, IdentityBuild>,
        fields: [Option<&str>; N],
    ) -> u32 {
        let fp = fingerprint(&fields);
        if let Some(&id) = memo.get(&fp) {
            let known = tuples.values[id as usize];
            if fields.iter().zip(known).all(|(f, v)| strings.get(v) == *f) {
                return id;
            }
        }
        let ids = fields.map(|f| strings.id(f));
        let id = tuples.id(ids);
        memo.insert(fp, id);
        id
    }

    /// Whether the table holds an event with this id (the nil id never counts).
    pub(crate) fn holds(&self, id: u128) -> bool {
        id != 0
            && self
                .by_id
                .find(hash_id(id), |&r| self.id(r as usize) == id)
                .is_some()
    }

    /// Reads what [`SiteTable::push`] of `e` will read first (the id index's slot,
    /// the visitor's dictionary entry), so that a run's cache misses overlap:
    /// called for a few events before they are pushed, their loads are independent
    /// of each other, where each push's own loads wait on the one before.
    #[inline]
    pub(crate) fn warm(&self, e: &Event) -> u64 {
        let id = e.id.as_u128();
        let held = self
            .by_id
            .find(hash_id(id), |&r| self.id(r as usize) == id)
            .map_or(0, |&r| u64::from(r));
        let visitor = self.visitors.lookup(&e.identity.visitor_id).unwrap_or(0);
        held ^ u64::from(visitor)
    }

    /// Adds an event; `false` (and nothing added) when its id is held already.
    pub(crate) fn push(&mut self, e: &Event) -> bool {
        let id = e.id.as_u128();
        if id != 0 {
            // One probe both finds a held id and, when there is none, the slot for it.
            let row = u32::try_from(self.len()).expect("fewer than 2^32 rows");
            let (ids, ts) = (&self.ids, &self.ts);
            match self.by_id.entry(
                hash_id(id),
                |&r| ids.get(r as usize, ts[r as usize]) == id,
                |&r| hash_id(ids.get(r as usize, ts[r as usize])),
            ) {
                hashbrown::hash_table::Entry::Occupied(_) => return false,
                hashbrown::hash_table::Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
        }
        let a = &e.acquisition;
        let client_id = Self::tuple(
            &mut self.strings,
            &mut self.clients,
            &mut self.client_memo,
            [
                e.device.device_type.map(|d| d.as_str()),
                e.device.browser.as_deref(),
                e.device.os.as_deref(),
                e.location.country.as_deref(),
                e.location.region.as_deref(),
                e.location.city.as_deref(),
                e.network.company.name.as_deref(),
                e.network.visitor_type.map(|v| v.as_str()),
                e.bot.as_ref().map(|b| b.reason.as_str()),
                Some(&e.page.host),
            ],
        );
        let acq_id = Self::tuple(
            &mut self.strings,
            &mut self.acqs,
            &mut self.acq_memo,
            [
                a.source.as_deref(),
                e.page.referrer.as_deref(),
                a.channel.as_deref(),
                a.utm.source.as_deref(),
                a.utm.medium.as_deref(),
                a.utm.campaign.as_deref(),
                a.utm.content.as_deref(),
                a.utm.term.as_deref(),
            ],
        );
        let s = &mut self.strings;
        let engaged =
            (e.engagement.time_ms.is_some() || e.engagement.scroll_depth.is_some()).then(|| {
                Engaged {
                    time_ms: e
                        .engagement
                        .time_ms
                        .map_or(u32::MAX, |t| u32::try_from(t).unwrap_or(u32::MAX - 1)),
                    scroll: e.engagement.scroll_depth.unwrap_or(u8::MAX),
                }
            });
        let rich = e.commerce.revenue.is_some()
            || e.commerce.goal_value.is_some()
            || e.commerce.order_id.is_some()
            || !e.props.is_empty();
        let extra = if rich {
            let props = e
                .props
                .iter()
                .map(|(k, v)| (s.id(Some(k)), s.id(Some(v))))
                .collect();
            self.rich.push(Rich {
                revenue: e.commerce.revenue,
                goal_value: e.commerce.goal_value,
                order_id: e.commerce.order_id.as_deref().map(Into::into),
                props,
                engaged,
            });
            RICH | u32::try_from(self.rich.len() - 1)
                .ok()
                .filter(|i| i & RICH == 0)
                .expect("fewer than 2^31 rich events")
        } else if let Some(g) = engaged {
            self.engaged.push(g);
            u32::try_from(self.engaged.len())
                .ok()
                .filter(|i| i & RICH == 0)
                .expect("fewer than 2^31 engagement events")
        } else {
            0
        };
        let ms = e.timestamp.timestamp_millis();
        self.ts.push(ms);
        self.ids.push(e.id.as_u128(), ms);
        self.visitor
            .push(self.visitors.id(Some(&e.identity.visitor_id)));
        self.kind.push(e.kind);
        self.name.push(self.names.id(e.name.as_deref()));
        self.path.push(self.paths.id(Some(&e.page.path)));
        self.client.push(client_id);
        self.acq.push(acq_id);
        self.extra.push(extra);
        self.built = false;
        true
    }

    #[inline(always)]
    pub(crate) fn extra(&self, r: usize) -> Option<Extra<'_>> {
        let engaged = |g: Engaged| {
            (
                (g.time_ms != u32::MAX).then_some(u64::from(g.time_ms)),
                (g.scroll != u8::MAX).then_some(g.scroll),
            )
        };
        match self.extra[r] {
            0 => None,
            i if i & RICH != 0 => {
                let x = &self.rich[(i & !RICH) as usize];
                let (time_ms, scroll) = x.engaged.map_or((None, None), engaged);
                Some(Extra {
                    revenue: x.revenue,
                    goal_value: x.goal_value,
                    order_id: x.order_id.as_deref(),
                    props: &x.props,
                    time_ms,
                    scroll,
                })
            }
            i => {
                let (time_ms, scroll) = engaged(self.engaged[i as usize - 1]);
                Some(Extra {
                    revenue: None,
                    goal_value: None,
                    order_id: None,
                    props: &[],
                    time_ms,
                    scroll,
                })
            }
        }
    }

    #[inline(always)]
    pub(crate) fn client_field(&self, r: usize, field: usize) -> u32 {
        self.clients.values[self.client.get(r) as usize][field]
    }

    #[inline(always)]
    pub(crate) fn acq_field(&self, r: usize, field: usize) -> u32 {
        self.acqs.values[self.acq.get(r) as usize][field]
    }

    #[inline(always)]
    pub(crate) fn is_bot(&self, r: usize) -> bool {
        self.client_field(r, client::BOT) != NULL
    }

    /// The canonical order's key of row `r`.
    pub(crate) fn key(&self, r: usize) -> (u32, i64, u128) {
        (self.visitor[r], self.ts[r], self.id(r))
    }

    /// The first row of a built table whose key is not before `key`.
    pub(crate) fn lower_bound(&self, key: (u32, i64, u128)) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether rows are ordered and sessions derived with `timeout_ms`.
    pub(crate) fn is_ready(&self, timeout_ms: i64) -> bool {
        self.built && self.timeout_ms == timeout_ms
    }

    /// Orders new rows into place and derives sessions, if anything changed.
    pub(crate) fn build(&mut self) {
        if self.built {
            return;
        }
        let n = self.len();
        if self.sorted < n {
            let mut tail: Vec<u32> = (self.sorted as u32..n as u32).collect();
            tail.sort_unstable_by_key(|&r| self.key(r as usize));
            let mut perm: Vec<u32> = Vec::with_capacity(n);
            let (mut i, mut j) = (0usize, 0usize);
            while i < self.sorted || j < tail.len() {
                let take_main = j == tail.len()
                    || (i < self.sorted && self.key(i) <= self.key(tail[j] as usize));
                if take_main {
                    perm.push(i as u32);
                    i += 1;
                } else {
                    perm.push(tail[j]);
                    j += 1;
                }
            }
            let already_ordered = perm.iter().enumerate().all(|(k, &p)| p as usize == k);
            if !already_ordered {
                self.apply(&perm);
                self.renumber_extras();
            }
            self.sorted = n;
        }
        self.derive_sessions();
        self.bounds = self
            .sessions
            .iter()
            .map(|s| self.span(s))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        self.shrink();
        self.built = true;
    }

    /// The first and last instants of the rows, ms (`None` when empty): kept by
    /// [`SiteTable::build`], read from the rows otherwise.
    pub(crate) fn bounds(&self) -> Option<(i64, i64)> {
        if self.built {
            self.bounds
        } else {
            self.extent()
        }
    }

    /// Gives back the growth slack of the columns.
    fn shrink(&mut self) {
        self.ts.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.visitor.shrink_to_fit();
        self.kind.shrink_to_fit();
        self.name.shrink_to_fit();
        self.path.shrink_to_fit();
        self.client.shrink_to_fit();
        self.acq.shrink_to_fit();
        self.extra.shrink_to_fit();
        self.engaged.shrink_to_fit();
        self.rich.shrink_to_fit();
        self.sessions.shrink_to_fit();
    }

    /// Reorders (or, with fewer rows, keeps a subset of) the rows: row `k` becomes
    /// old row `perm[k]`. Ids in the index must all be of rows in `perm`.
    fn apply(&mut self, perm: &[u32]) {
        fn permute<T: Copy>(col: &mut Vec<T>, perm: &[u32]) {
            let out: Vec<T> = perm.iter().map(|&p| col[p as usize]).collect();
            *col = out;
        }
        permute(&mut self.ts, perm);
        self.ids.permute(perm);
        permute(&mut self.visitor, perm);
        permute(&mut self.kind, perm);
        self.name.permute(perm);
        self.path.permute(perm);
        self.client.permute(perm);
        self.acq.permute(perm);
        permute(&mut self.extra, perm);
        // Rows moved: the id index follows them.
        let mut moved_to = vec![0u32; perm.iter().map(|&p| p as usize + 1).max().unwrap_or(0)];
        for (to, &from) in perm.iter().enumerate() {
            moved_to[from as usize] = to as u32;
        }
        for r in self.by_id.iter_mut() {
            *r = moved_to[*r as usize];
        }
    }

    /// Renumbers the rich and engagement entries in row order (and drops those of
    /// removed rows): a scan in row order then reads them in order too, not at
    /// random (a cache miss per purchase was a fifth of an attribution query).
    fn renumber_extras(&mut self) {
        let (mut next_rich, mut next_engaged) = (0u32, 1u32);
        let in_order = self.rich.len() + self.engaged.len()
            == self.extra.iter().filter(|&&x| x != 0).count()
            && self.extra.iter().all(|&x| match x {
                0 => true,
                i if i & RICH != 0 => {
                    next_rich += 1;
                    i & !RICH == next_rich - 1
                }
                i => {
                    next_engaged += 1;
                    i == next_engaged - 1
                }
            });
        if in_order {
            return;
        }
        let mut old_rich: Vec<Option<Rich>> = std::mem::take(&mut self.rich)
            .into_iter()
            .map(Some)
            .collect();
        let old_engaged = std::mem::take(&mut self.engaged);
        let mut rich = Vec::with_capacity(old_rich.len());
        let mut engaged = Vec::with_capacity(old_engaged.len());
        for x in &mut self.extra {
            match *x {
                0 => {}
                i if i & RICH != 0 => {
                    if let Some(entry) = old_rich
                        .get_mut((i & !RICH) as usize)
                        .and_then(Option::take)
                    {
                        rich.push(entry);
                        *x = RICH | (rich.len() - 1) as u32;
                    } else {
                        *x = 0;
                    }
                }
                i => match old_engaged.get(i as usize - 1) {
                    Some(&g) => {
                        engaged.push(g);
                        *x = engaged.len() as u32;
                    }
                    None => *x = 0,
                },
            }
        }
        self.rich = rich;
        self.engaged = engaged;
    }

    fn derive_sessions(&mut self) {
        let mut sessions: Vec<Sess> = Vec::with_capacity(self.sessions.len().max(self.len() / 4));
        for r in 0..self.len() {
            let new_visitor = r == 0 || self.visitor[r] != self.visitor[r - 1];
            let bot = self.clients.values[self.client.get(r) as usize][client::BOT] != NULL;
            if new_visitor || self.ts[r] - self.ts[r - 1] > self.timeout_ms {
                let mut flags = 0;
                if new_visitor {
                    flags |= NEW_VISITOR;
                }
                if bot {
                    flags |= BOT_FIRST;
                }
                sessions.push(Sess {
                    first: r as u32,
                    len: 0,
                    flags_and_pageviews: flags,
                    exit_path: NULL,
                });
            }
            let s = sessions.last_mut().expect("row 0 starts a session");
            s.len += 1;
            match self.kind[r] {
                EventKind::Pageview => {
                    if s.pageviews() < PAGEVIEWS {
                        s.flags_and_pageviews += 1;
                    }
                    s.exit_path = self.path.get(r);
                }
                k if k.is_interaction() => s.flags_and_pageviews |= INTERACTION,
                _ => {}
            }
            if bot {
                s.flags_and_pageviews |= BOT_ROWS;
            }
        }
        self.sessions = sessions;
    }

    /// Keeps only rows for which `keep` is true; returns how many were removed.
    pub(crate) fn retain_rows(&mut self, keep: impl Fn(&Self, usize) -> bool) -> u64 {
        let kept: Vec<bool> = (0..self.len()).map(|r| keep(self, r)).collect();
        let perm: Vec<u32> = (0..self.len() as u32)
            .filter(|&r| kept[r as usize])
            .collect();
        let removed = (self.len() - perm.len()) as u64;
        if removed > 0 {
            // Removing rows keeps the relative order, so sorted rows stay sorted.
            let sorted_kept = perm.iter().filter(|&&p| (p as usize) < self.sorted).count();
            // Forget the removed rows' ids first: the index then follows `apply`.
            for r in (0..self.len() as u32).filter(|&r| !kept[r as usize]) {
                let id = self.id(r as usize);
                if let Ok(entry) = self.by_id.find_entry(hash_id(id), |&x| x == r) {
                    entry.remove();
                }
            }
            self.apply(&perm);
            self.renumber_extras();
            self.sorted = sorted_kept;
            self.built = false;
        }
        removed
    }

    /// Rebuilds an event from the columns (the fields this engine keeps).
    pub(crate) fn event(&self, site: &str, r: usize) -> Event {
        let mut e = Event {
            id: uuid::Uuid::from_u128(self.id(r)),
            site: site.to_owned(),
            kind: self.kind[r],
            name: self.names.get(self.name.get(r)).map(str::to_owned),
            timestamp: chrono::DateTime::from_timestamp_millis(self.ts[r]).unwrap_or_default(),
            ..Event::default()
        };
        let st = |id: u32| self.strings.get(id).map(str::to_owned);
        let tx = |id: u32| self.strings.get(id).map(Text::from);
        e.identity.visitor_id = self
            .visitors
            .get(self.visitor[r])
            .unwrap_or_default()
            .to_owned();
        e.page.path = self
            .paths
            .get(self.path.get(r))
            .unwrap_or_default()
            .to_owned();
        let c = self.clients.values[self.client.get(r) as usize];
        e.page.host = st(c[client::HOST]).unwrap_or_default();
        e.page.url = format!("https://{}{}", e.page.host, e.page.path);
        e.device.device_type = self.strings.get(c[client::DEVICE]).map(|d| match d {
            "desktop" => DeviceType::Desktop,
            "mobile" => DeviceType::Mobile,
            "tablet" => DeviceType::Tablet,
            "tv" => DeviceType::Tv,
            "console" => DeviceType::Console,
            "bot" => DeviceType::Bot,
            _ => DeviceType::Unknown,
        });
        e.device.browser = tx(c[client::BROWSER]);
        e.device.os = tx(c[client::OS]);
        e.location.country = tx(c[client::COUNTRY]);
        e.location.region = tx(c[client::REGION]);
        e.location.city = tx(c[client::CITY]);
        e.network.company.name = tx(c[client::COMPANY]);
        e.network.visitor_type = self
            .strings
            .get(c[client::VISITOR_TYPE])
            .and_then(|v| match v {
                "business" => Some(VisitorType::Business),
                "consumer" => Some(VisitorType::Consumer),
                "hosting" => Some(VisitorType::Hosting),
                "bot" => Some(VisitorType::Bot),
                "privacy" => Some(VisitorType::Privacy),
                _ => None,
            });
        e.bot = tx(c[client::BOT]).map(|reason| BotInfo { reason });
        let a = self.acqs.values[self.acq.get(r) as usize];
        e.acquisition.source = tx(a[acq::SOURCE]);
        e.page.referrer = st(a[acq::REFERRER]);
        e.acquisition.channel = tx(a[acq::CHANNEL]);
        e.acquisition.utm.source = tx(a[acq::UTM_SOURCE]);
        e.acquisition.utm.medium = tx(a[acq::UTM_MEDIUM]);
        e.acquisition.utm.campaign = tx(a[acq::UTM_CAMPAIGN]);
        e.acquisition.utm.content = tx(a[acq::UTM_CONTENT]);
        e.acquisition.utm.term = tx(a[acq::UTM_TERM]);
        if let Some(x) = self.extra(r) {
            e.commerce.revenue = x.revenue;
            e.commerce.goal_value = x.goal_value;
            e.commerce.order_id = x.order_id.map(str::to_owned);
            e.engagement.time_ms = x.time_ms;
            e.engagement.scroll_depth = x.scroll;
            e.props = x
                .props
                .iter()
                .filter_map(|(k, v)| Some((st(*k)?, st(*v)?)))
                .collect();
        }
        e
    }

    /// Heap bytes held by this table (columns, dictionaries, sessions).
    pub(crate) fn heap_bytes(&self) -> usize {
        let cols = self.ts.capacity() * 8
            + self.ids.heap_bytes()
            + (self.visitor.capacity() + self.extra.capacity()) * 4
            + self.name.heap_bytes()
            + self.path.heap_bytes()
            + self.client.heap_bytes()
            + self.acq.heap_bytes()
            + self.kind.capacity();
        let extras: usize = self.engaged.capacity() * size_of::<Engaged>()
            + self.rich.capacity() * size_of::<Rich>()
            + self
                .rich
                .iter()
                .map(|x| x.props.len() * 8 + x.order_id.as_ref().map_or(0, |o| o.len()))
                .sum::<usize>();
        cols + extras
            + self.sessions.capacity() * size_of::<Sess>()
            + self.visitors.heap_bytes()
            + self.paths.heap_bytes()
            + self.names.heap_bytes()
            + self.strings.heap_bytes()
            + self.clients.heap_bytes()
            + self.acqs.heap_bytes()
            + (self.client_memo.capacity() + self.acq_memo.capacity()) * 13
            // 4 bytes and a control byte per bucket, buckets at most 7/8 full.
            + self.by_id.capacity() * 5 * 8 / 7
    }

    /// The first and last instants held, ms.
    pub(crate) fn extent(&self) -> Option<(i64, i64)> {
        let lo = self.ts.iter().min()?;
        let hi = self.ts.iter().max()?;
        Some((*lo, *hi))
    }

    /// The session's bounds and rows: first instant, last instant.
    pub(crate) fn span(&self, s: &Sess) -> (i64, i64) {
        (
            self.ts[s.first as usize],
            self.ts[(s.first + s.len - 1) as usize],
        )
    }
}

/// A rich row's values as a snapshot holds them.
#[derive(serde::Serialize, serde::Deserialize)]
struct RichSnapshot {
    revenue: Option<Money>,
    goal_value: Option<Money>,
    order_id: Option<String>,
    props: Vec<(u32, u32)>,
    engaged: Option<(u32, u8)>,
}

impl Interner {
    fn write_to(&self, e: &mut Enc<'_>) -> Result<(), StoreError> {
        e.bytes(self.arena.as_bytes())?;
        e.slice(&self.ends)
    }

    /// Reads what `write_to` wrote and indexes the strings again.
    fn read_from(d: &mut Dec<'_>) -> Result<Self, StoreError> {
        let arena = d.string()?;
        let ends: Vec<u32> = d.slice()?;
        let mut start = 0usize;
        for &end in &ends {
            let end = end as usize;
            check(
                end >= start && end <= arena.len() && arena.is_char_boundary(end),
                "a dictionary's string bounds are out of order",
            )?;
            start = end;
        }
        u32::try_from(ends.len()).map_err(corrupt)?;
        let n = ends.len();
        let mut dict = Self {
            arena,
            ends,
            by_str: hashbrown::HashTable::with_capacity(n),
        };
        for id in 1..=n as u32 {
            check(dict.index(id, true), "a dictionary holds a string twice")?;
        }
        Ok(dict)
    }
}

impl<const N: usize> TupleInterner<N> {
    fn write_to(&self, e: &mut Enc<'_>) -> Result<(), StoreError> {
        let flat: Vec<u32> = self.values.iter().flatten().copied().collect();
        e.slice(&flat)
    }

    /// Reads what `write_to` wrote; every value id must be one of `space`.
    fn read_from(d: &mut Dec<'_>, space: usize) -> Result<Self, StoreError> {
        let flat: Vec<u32> = d.slice()?;
        check(flat.len() % N == 0, "a tuple dictionary is cut short")?;
        check(
            flat.iter().all(|&v| (v as usize) < space),
            "a tuple names a value that is not in the dictionary",
        )?;
        let mut t = Self::default();
        for chunk in flat.chunks_exact(N) {
            let mut tuple = [NULL; N];
            tuple.copy_from_slice(chunk);
            let id = u32::try_from(t.values.len()).map_err(corrupt)?;
            t.values.push(tuple);
            t.map.insert(tuple, id);
        }
        Ok(t)
    }
}

impl SiteTable {
    /// Writes the table (dictionaries, columns, the build state; not the indexes,
    /// which `read_from` rebuilds).
    pub(crate) fn write_to(&self, e: &mut Enc<'_>) -> Result<(), StoreError> {
        e.put(self.timeout_ms)?;
        e.len(self.sorted)?;
        for dict in [&self.visitors, &self.paths, &self.names, &self.strings] {
            dict.write_to(e)?;
        }
        self.clients.write_to(e)?;
        self.acqs.write_to(e)?;
        let times: Vec<u32> = self.engaged.iter().map(|g| g.time_ms).collect();
        let scrolls: Vec<u8> = self.engaged.iter().map(|g| g.scroll).collect();
        e.slice(&times)?;
        e.slice(&scrolls)?;
        let rich: Vec<RichSnapshot> = self
            .rich
            .iter()
            .map(|x| RichSnapshot {
                revenue: x.revenue,
                goal_value: x.goal_value,
                order_id: x.order_id.as_deref().map(str::to_owned),
                props: x.props.to_vec(),
                engaged: x.engaged.map(|g| (g.time_ms, g.scroll)),
            })
            .collect();
        e.json(&rich)?;
        // Rows are ordered by visitor and time: times and visitors as differences from
        // the row before leave the compressor runs of small numbers, and read back in
        // place. Ids as [`Ids`] holds them (their time part from the time column).
        let mut before = 0i64;
        let ts: Vec<u64> = self
            .ts
            .iter()
            .map(|&t| zigzag(t.wrapping_sub(std::mem::replace(&mut before, t))))
            .collect();
        e.planes(&ts)?;
        let (low, mid, odd) = self.ids.parts();
        e.slice(low)?;
        e.slice(mid)?;
        e.slice(odd)?;
        let kinds: Vec<u8> = self.kind.iter().map(|&k| kind_index(k)).collect();
        e.slice(&kinds)?;
        let mut before = 0u32;
        let visitor: Vec<u32> = self
            .visitor
            .iter()
            .map(|&v| v.wrapping_sub(std::mem::replace(&mut before, v)))
            .collect();
        e.planes(&visitor)?;
        for col in [&self.name, &self.path, &self.client, &self.acq] {
            e.planes(&col.to_vec())?;
        }
        e.slice(&self.extra)?;
        Ok(())
    }

    /// Reads what `write_to` wrote, checks that every id it holds is in range, rebuilds
    /// the indexes and derives sessions: the table is ready for requests.
    pub(crate) fn read_from(d: &mut Dec<'_>) -> Result<Self, StoreError> {
        let timeout_ms: i64 = d.get()?;
        let sorted = d.len()?;
        let visitors = Interner::read_from(d)?;
        let paths = Interner::read_from(d)?;
        let names = Interner::read_from(d)?;
        let strings = Interner::read_from(d)?;
        let clients = TupleInterner::<{ client::N }>::read_from(d, strings.space())?;
        let acqs = TupleInterner::<{ acq::N }>::read_from(d, strings.space())?;
        let times: Vec<u32> = d.slice()?;
        let scrolls: Vec<u8> = d.slice()?;
        check(
            times.len() == scrolls.len(),
            "engagement columns differ in length",
        )?;
        let engaged: Vec<Engaged> = times
            .into_iter()
            .zip(scrolls)
            .map(|(time_ms, scroll)| Engaged { time_ms, scroll })
            .collect();
        let rich: Vec<RichSnapshot> = d.json()?;
        let space = strings.space();
        check(
            rich.iter()
                .flat_map(|x| &x.props)
                .all(|&(k, v)| (k as usize) < space && (v as usize) < space),
            "a property names a value that is not in the dictionary",
        )?;
        let rich: Vec<Rich> = rich
            .into_iter()
            .map(|x| Rich {
                revenue: x.revenue,
                goal_value: x.goal_value,
                order_id: x.order_id.map(Into::into),
                props: x.props.into(),
                engaged: x
                    .engaged
                    .map(|(time_ms, scroll)| Engaged { time_ms, scroll }),
            })
            .collect();
        let mut ts: Vec<i64> = d.planes()?;
        let mut before = 0i64;
        for t in &mut ts {
            before = before.wrapping_add(unzigzag(*t as u64));
            *t = before;
        }
        let (low, mid, odd) = (d.slice()?, d.slice()?, d.slice()?);
        let ids = Ids::from_parts(low, mid, odd, ts.len())
            .ok_or_else(|| corrupt("id columns differ in length or range"))?;
        let kinds: Vec<u8> = d.slice()?;
        let kind = kinds
            .into_iter()
            .map(|k| EventKind::ALL.get(k as usize).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("an event kind is unknown"))?;
        let mut cols: Vec<Vec<u32>> = Vec::with_capacity(6);
        // Visitors, names, paths, clients and acquisitions in byte planes; extras not.
        for _ in 0..5 {
            cols.push(d.planes()?);
        }
        cols.push(d.slice()?);
        let n = ts.len();
        check(
            u32::try_from(n).is_ok(),
            "it holds more rows than a table can",
        )?;
        check(
            kind.len() == n && cols.iter().all(|c| c.len() == n),
            "columns differ in length",
        )?;
        check(sorted <= n, "more rows are said ordered than it holds")?;
        let [mut visitor, name, path, client, acq, extra]: [Vec<u32>; 6] = cols
            .try_into()
            .map_err(|_| corrupt("columns are missing"))?;
        let mut before = 0u32;
        for v in &mut visitor {
            before = before.wrapping_add(*v);
            *v = before;
        }
        let within = |col: &[u32], space: usize| col.iter().all(|&v| (v as usize) < space);
        check(
            visitor.iter().all(|&v| v != NULL) && within(&visitor, visitors.space()),
            "a row's visitor is not in the dictionary",
        )?;
        check(
            within(&path, paths.space()) && within(&name, names.space()),
            "a row's path or name is not in the dictionary",
        )?;
        check(
            within(&client, clients.values.len()) && within(&acq, acqs.values.len()),
            "a row's client or acquisition is not in the dictionary",
        )?;
        check(
            extra.iter().all(|&x| match x {
                0 => true,
                i if i & RICH != 0 => ((i & !RICH) as usize) < rich.len(),
                i => (i as usize) <= engaged.len(),
            }),
            "a row's extra values are missing",
        )?;
        let mut t = Self {
            visitors,
            paths,
            names,
            strings,
            clients,
            acqs,
            engaged,
            rich,
            ts,
            ids,
            visitor,
            kind,
            name: Narrow::from_vec(name),
            path: Narrow::from_vec(path),
            client: Narrow::from_vec(client),
            acq: Narrow::from_vec(acq),
            extra,
            sorted,
            timeout_ms,
            ..Self::default()
        };
        check(
            (1..sorted).all(|r| t.key(r - 1) <= t.key(r)),
            "rows said ordered are not",
        )?;
        t.index_ids()?;
        t.renumber_extras();
        t.client_memo = Self::memo(&t.strings, &t.clients);
        t.acq_memo = Self::memo(&t.strings, &t.acqs);
        t.build();
        Ok(t)
    }

    /// The fingerprint memo of a tuple dictionary, as interning built it.
    fn memo<const N: usize>(
        strings: &Interner,
        tuples: &TupleInterner<N>,
    ) -> HashMap<u64, u32, IdentityBuild> {
        let mut memo =
            HashMap::with_capacity_and_hasher(tuples.values.len(), IdentityBuild::default());
        for (id, tuple) in tuples.values.iter().enumerate() {
            memo.insert(fingerprint(&tuple.map(|v| strings.get(v))), id as u32);
        }
        memo
    }

    /// Indexes the rows by event id; an id held twice is an error.
    fn index_ids(&mut self) -> Result<(), StoreError> {
        let id = |r: usize| self.id(r);
        let mut index = hashbrown::HashTable::with_capacity(self.len());
        for row in 0..self.len() {
            let rid = id(row);
            if rid == 0 {
                continue;
            }
            let h = hash_id(rid);
            check(
                index.find(h, |&r: &u32| id(r as usize) == rid).is_none(),
                "an event id is held twice",
            )?;
            index.insert_unique(h, row as u32, |&r| hash_id(id(r as usize)));
        }
        self.by_id = index;
        Ok(())
    }
}

/// An event kind's position in [`EventKind::ALL`].
fn kind_index(k: EventKind) -> u8 {
    EventKind::ALL.iter().position(|&x| x == k).unwrap_or(0) as u8
}

/// A signed number as an unsigned one, small either side of zero.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The number [`zigzag`] gave `z` for.
fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(arena: &str, ends: &[u32]) -> Result<Interner, StoreError> {
        let mut out = Vec::new();
        let mut e = Enc::new(&mut out);
        e.bytes(arena.as_bytes()).expect("bytes");
        e.slice(ends).expect("ends");
        e.finish().expect("finish");
        let mut r = &out[..];
        Interner::read_from(&mut Dec::new(&mut r))
    }

    #[test]
    fn a_dictionary_reads_back_and_one_holding_a_string_twice_is_corrupt() {
        let mut d = Interner::default();
        let ids: Vec<u32> = ["a", "", "héllo", "a"]
            .iter()
            .map(|s| d.id(Some(s)))
            .collect();
        assert_eq!(ids, [1, 2, 3, 1]);
        assert_eq!(d.id(None), NULL);
        let back = read_back(&d.arena, &d.ends).expect("read back");
        assert_eq!(
            [back.lookup("a"), back.lookup(""), back.lookup("héllo")],
            [Some(1), Some(2), Some(3)]
        );
        assert_eq!([back.get(2), back.get(NULL)], [Some(""), None]);
        assert_eq!(back.lookup("b"), None);
        assert!(read_back("aa", &[1, 2]).is_err(), "a string held twice");
        assert!(read_back("ab", &[2, 1]).is_err(), "bounds out of order");
        assert!(read_back("é", &[1]).is_err(), "a bound inside a character");
    }
}
