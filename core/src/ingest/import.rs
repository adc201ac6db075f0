//! Imports: lines of hits (NDJSON, or CSV with the `csv` feature) through the same
//! preparation as live ingest, on every core, committed in the order of the input.

use super::input::InputFile;
use super::{import_preparer, EventId, IngestError, Pipeline, Preparer};
use crate::error::{StoreError, ValidationError};
use crate::event::Event;
use crate::hit::{Hit, HitParts, ValidationContext};
use crate::site::Site;
use crate::store::PreparedEvents;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;

/// The format of an import's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportFormat {
    /// One JSON hit per line (contract section 2).
    #[default]
    Ndjson,
    /// A header line of hit field names, then one hit per record (feature `csv`).
    #[cfg(feature = "csv")]
    Csv,
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// Its number, from 1 (for CSV, the line the record starts on).
    pub line: u64,
    /// The rule it broke (`url: is required`).
    pub reason: String,
}

impl std::fmt::Display for RejectedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Events newly stored (a line imported before is not stored again).
    pub imported: u64,
    /// Lines rejected.
    pub rejected: u64,
}

/// Why an import stopped. Everything counted as imported before it stopped is
/// stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The input could not be read.
    #[error("reading line {line}: {source}")]
    Read {
        /// The line being read.
        line: u64,
        /// The reader's error.
        source: std::io::Error,
    },
    /// The CSV header line is unusable.
    #[error("csv header: {0}")]
    Header(String),
    /// The store, configuration or state failed (no fault of the lines).
    #[error("import failed: {0}")]
    Store(#[from] StoreError),
    /// The pipeline failed.
    #[error("import failed: {0}")]
    Ingest(#[from] IngestError),
}

type Callback<T> = Box<dyn FnMut(&T) + Send>;

/// Imports lines of hits; from [`Pipeline::importer`].
///
/// Each line goes through the live pipeline's validation (in import mode: the
/// line's own timestamp, address and agent), enrichment, identification and
/// sessionization. The run has its own daily salts (the same visitor on the same
/// day hashes alike however the lines are ordered, and the salts are forgotten
/// when it ends) and its own session state. Event ids derive from each line, so
/// importing a file again stores none of it twice.
pub struct Importer {
    pipeline: Pipeline,
    format: ImportFormat,
    site: Option<String>,
    create_site: bool,
    expected_visitors: usize,
    input_bytes: u64,
    direct: bool,
    on_rejected: Option<Callback<RejectedLine>>,
    on_progress: Option<Callback<ImportReport>>,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("format", &self.format)
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

/// Lines per chunk: a worker's unit of work, and one append (one stored batch of
/// at most the store's batch size: `beacon-storage-sqlite`'s is 16,384 too).
const CHUNK: usize = 16384;

/// Events a worker hands its store's chunk encoder at a time: a few hundred
/// kilobytes, still in the core's cache.
const PIECE: usize = 256;

/// The most events an import asks the store to make room for at once.
const MAX_RESERVE: u64 = 1 << 28;

impl Importer {
    pub(crate) fn new(pipeline: &Pipeline) -> Self {
        Self {
            pipeline: pipeline.clone(),
            format: ImportFormat::Ndjson,
            site: None,
            create_site: false,
            expected_visitors: 0,
            input_bytes: 0,
            direct: true,
            on_rejected: None,
            on_progress: None,
        }
    }

    /// The lines' format (default NDJSON).
    pub fn format(mut self, format: ImportFormat) -> Self {
        self.format = format;
        self
    }

    /// The site of lines that name none.
    pub fn site(mut self, site: impl Into<String>) -> Self {
        self.site = Some(site.into().to_ascii_lowercase());
        self
    }

    /// Creates the [`Importer::site`] (time zone UTC) when it does not exist.
    pub fn create_site(mut self, create: bool) -> Self {
        self.create_site = create;
        self
    }

    /// Visitors to size the session state for up front (growing it step by step
    /// costs a twentieth of an import's time); at most one per line.
    pub fn expected_visitors(mut self, n: usize) -> Self {
        self.expected_visitors = n;
        self
    }

    /// Sizes the import for an input of `bytes`. The session state: one visitor per
    /// 2 KiB, at most 2 million (a hit's line is some 300 bytes, and realistic
    /// traffic has 4 to 12 lines a visitor; the state grows past the guess, and
    /// sizing it for one visitor a line cost more in fresh pages than growing
    /// saves). The store: once the first chunk of lines is read, the lines the
    /// input holds at that chunk's bytes a line, as an [`EventStore::reserve`]
    /// hint for the chunk's site (by its share of the chunk).
    ///
    /// [`EventStore::reserve`]: crate::backend::EventStore::reserve
    pub fn input_bytes(mut self, bytes: u64) -> Self {
        self.input_bytes = bytes;
        let n = usize::try_from(bytes / 2048).map_or(2_000_000, |n| n.min(2_000_000));
        self.expected_visitors(n)
    }

    /// Whether [`Importer::run_file`] reads the file straight from the device
    /// (`O_DIRECT` on Linux; default `true`) instead of through the page cache.
    /// Direct reads spare the import's cores the kernel's copy of every byte (an
    /// import is bound by its cores; the copy was 8.6% of its CPU time on a virtual
    /// machine), and leave the page cache to the rest of the system. Turn them off
    /// for a file on a device slower than the import (some 100 MB/s; network
    /// disks) that the page cache holds already. Where the file system refuses
    /// them (tmpfs), the file is read as usual.
    pub fn direct_reads(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Called with each rejected line, in the order of the input.
    pub fn on_rejected(mut self, f: impl FnMut(&RejectedLine) + Send + 'static) -> Self {
        self.on_rejected = Some(Box::new(f));
        self
    }

    /// Called after each chunk is committed, with the totals so far.
    pub fn on_progress(mut self, f: impl FnMut(&ImportReport) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Imports the file at `path`, sizing the session state from its length (see
    /// [`Importer::direct_reads`] for how it is read).
    pub async fn run_file(
        mut self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<ImportReport, ImportError> {
        let path = path.as_ref();
        let input = InputFile::open(path, self.direct).map_err(|source| ImportError::Open {
            path: path.to_owned(),
            source,
        })?;
        if self.input_bytes == 0 {
            let len = input.file().metadata().map_or(0, |m| m.len());
            // A session state sized by the caller stays as it is.
            match self.expected_visitors {
                0 => self = self.input_bytes(len),
                _ => self.input_bytes = len,
            }
        }
        self.run(input).await
    }

    /// Imports every line of `reader`; every event counted is committed before
    /// this returns.
    pub async fn run<R: BufRead + Send + 'static>(
        mut self,
        reader: R,
    ) -> Result<ImportReport, ImportError> {
        if let (Some(site), true) = (&self.site, self.create_site) {
            let config = self.pipeline.config();
            if config.site(site).await?.is_none() {
                config.put_site(Site::new(site.clone())).await?;
            }
        }
        let prep = Arc::new(import_preparer(&self.pipeline, self.expected_visitors));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, mut rx) = tokio::sync::mpsc::channel(threads * 2);
        // Committed chunks go back to the workers, who empty and refill them: a
        // chunk's events are tens of megabytes, and faulting in fresh ones was 7.9%
        // of an import (bounded: past it, the committer drops them).
        let (spent, spent_rx) = std::sync::mpsc::sync_channel::<PreparedEvents>(threads * 2 + 2);
        let producer = {
            let prep = Arc::clone(&prep);
            let runtime = self.pipeline.runtime().clone();
            let (format, site, bytes) = (self.format, self.site.clone(), self.input_bytes);
            tokio::task::spawn_blocking(move || {
                produce(
                    &prep,
                    &runtime,
                    reader,
                    (format, site.as_deref(), bytes),
                    threads,
                    (tx, spent_rx),
                )
            })
        };
        let mut report = ImportReport::default();
        // Chunks arrive in any order; they are committed in the order of the input.
        let mut waiting = BTreeMap::new();
        let mut next = 0u64;
        let events = Arc::clone(self.pipeline.events());
        while let Some(prepared) = rx.recv().await {
            let (seq, chunk, rejected) = prepared?;
            waiting.insert(seq, (chunk, rejected));
            while let Some((chunk, rejected)) = waiting.remove(&next) {
                next += 1;
                report.rejected += rejected.len() as u64;
                if let Some(f) = &mut self.on_rejected {
                    rejected.iter().for_each(&mut *f);
                }
                report.imported += events.append_prepared(&chunk).await?.stored as u64;
                let _ = spent.try_send(chunk);
                if let Some(f) = &mut self.on_progress {
                    f(&report);
                }
            }
        }
        producer
            .await
            .map_err(|e| ImportError::Store(StoreError::backend("import", e.to_string())))?;
        Ok(report)
    }
}

/// One chunk of prepared lines: its sequence number, the events (encoded for
/// storage), and the rejected lines.
type Prepared = (u64, PreparedEvents, Vec<RejectedLine>);

/// A line as read: NDJSON bytes (a range of its chunk's text, checked and parsed by
/// a worker), or a record already parsed; with the bytes its event id is derived
/// from.
enum Raw {
    Json(std::ops::Range<usize>),
    #[cfg_attr(not(feature = "csv"), allow(dead_code))]
    Parsed(Box<Result<Hit, ValidationError>>, Vec<u8>),
}

/// Lines read together: the NDJSON lines' bytes in one buffer (one allocation a
/// chunk, not one a line), and each line's number and form.
#[derive(Default)]
struct Chunk {
    text: Vec<u8>,
    lines: Vec<(u64, Raw)>,
}

impl Raw {
    /// The line's hit, or why it is not one; and its bytes.
    fn hit(
        self,
        text: &[u8],
    ) -> (
        Result<HitParts<'_>, ValidationError>,
        std::borrow::Cow<'_, [u8]>,
    ) {
        match self {
            Raw::Json(range) => {
                let bytes = &text[range];
                let hit = match std::str::from_utf8(bytes) {
                    Ok(text) => Hit::parts_from_json_str(text),
                    Err(e) => Err(ValidationError::new(
                        "hit",
                        format!("is not valid UTF-8 (at byte {})", e.valid_up_to()),
                    )),
                };
                (hit, std::borrow::Cow::Borrowed(bytes))
            }
            Raw::Parsed(hit, bytes) => ((*hit).map(HitParts::from), std::borrow::Cow::Owned(bytes)),
        }
    }
}

type Sender = tokio::sync::mpsc::Sender<Result<Prepared, ImportError>>;

/// Reads lines into chunks on this thread; a worker per core parses, validates,
/// enriches, identifies and encodes whole chunks, and sends them (numbered, for
/// the committer to keep their order).
fn produce<R: BufRead>(
    prep: &Preparer,
    runtime: &tokio::runtime::Handle,
    reader: R,
    (format, site, input_bytes): (ImportFormat, Option<&str>, u64),
    threads: usize,
    (tx, spent): (Sender, std::sync::mpsc::Receiver<PreparedEvents>),
) {
    let ctx = ValidationContext::import(prep.clock.now());
    let spent = std::sync::Mutex::new(spent);
    // An emptied buffer of committed events (their strings freed on this worker,
    // not on the committer), or a new one.
    let buffer = |n: usize| -> Vec<Event> {
        let used = spent.lock().unwrap_or_else(|e| e.into_inner()).try_recv();
        match used {
            Ok(used) => {
                let mut events = used.into_parts().0;
                events.clear();
                events
            }
            Err(_) => Vec::with_capacity(n),
        }
    };
    let (work, jobs) = std::sync::mpsc::sync_channel::<(u64, Chunk)>(threads);
    let jobs = std::sync::Mutex::new(jobs);
    // Chunks' buffers go back to the reader once their lines are prepared: a chunk's
    // text is megabytes, and fresh ones cost a page fault every 4 KiB.
    // Bounded: a reader that takes none (CSV) leaves the rest to be dropped.
    let (spare, spares) = std::sync::mpsc::sync_channel::<Chunk>(threads * 2 + 2);
    let prepare =
        |seq: u64, mut chunk: Chunk| -> Result<(PreparedEvents, Vec<RejectedLine>), ImportError> {
            // The text holds the lines without their line ends: one byte a line more.
            let chunk_lines = chunk.lines.len() as u64;
            let chunk_bytes = chunk.text.len() as u64 + chunk_lines;
            // One trip into the runtime per chunk, not per line.
            let prepared = runtime.block_on(async {
                let Chunk { text, lines } = &mut chunk;
                let (mut events, mut rejected) = (buffer(lines.len()), Vec::new());
                let mut sites = HashMap::new();
                // Events go to the store's encoder a piece at a time, while they are
                // still in the cache: encoding the whole chunk at its end read its
                // 20 MB back from memory.
                let mut encoder = prep.events.chunk_encoder();
                let mut encoded = 0;
                for (line, raw) in lines.drain(..) {
                    if let Some(encoder) = &mut encoder {
                        if events.len() - encoded >= PIECE {
                            encoder.add(&events[encoded..])?;
                            encoded = events.len();
                        }
                    }
                    let (parsed, bytes) = raw.hit(text);
                    let prepared = match parsed.and_then(|h| h.validate(&ctx, site)) {
                        Ok(v) => {
                            let id = EventId::Line(line, &bytes);
                            // Nearly every line: no future to build, move and poll.
                            match prep.prepare_now(v, id, &sites, &mut events) {
                                Ok(done) => done,
                                Err(v) => prep.prepare(v, None, id, &mut sites, &mut events).await,
                            }
                        }
                        Err(e) => Err(e.into()),
                    };
                    match prepared {
                        Ok(()) => {}
                        Err(e) if e.is_client_error() => rejected.push(RejectedLine {
                            line,
                            reason: e.to_string(),
                        }),
                        // The store failing is no fault of the line: the import stops.
                        Err(e) => return Err(ImportError::Ingest(e)),
                    }
                }
                if let Some(encoder) = &mut encoder {
                    encoder.add(&events[encoded..])?;
                }
                Ok((events, rejected, encoder))
            });
            chunk.text.clear();
            // When the reader has stopped or has spares enough, the buffers are dropped.
            let _ = spare.try_send(chunk);
            let (events, rejected, encoder) = prepared?;
            // The first chunk is committed before any other: the store makes room for
            // the rest of the input before it takes them.
            if seq == 0 {
                if let Some(first) = events.first() {
                    let share = events.iter().filter(|e| e.site == first.site).count() as u64;
                    let rest = still_to_come(input_bytes, chunk_bytes, chunk_lines, share);
                    if rest > 0 {
                        prep.events
                            .reserve(&first.site, usize::try_from(rest).unwrap_or(0));
                    }
                }
            }
            let prepared = match encoder {
                Some(encoder) => encoder.finish(events)?,
                None => prep.events.prepare(events)?,
            };
            Ok((prepared, rejected))
        };
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (jobs, tx, prepare) = (&jobs, &tx, &prepare);
            s.spawn(move || loop {
                let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((seq, lines)) = job else { break };
                let done = prepare(seq, lines).map(|(events, rejected)| (seq, events, rejected));
                if tx.blocking_send(done).is_err() {
                    break;
                }
            });
        }
        let mut seq = 0u64;
        let mut send = |chunk: Chunk| {
            let sent = work.send((seq, chunk)).is_ok();
            seq += 1;
            sent
        };
        let read = match format {
            ImportFormat::Ndjson => ndjson(reader, &mut send, &spares),
            #[cfg(feature = "csv")]
            ImportFormat::Csv => csv_records(reader, &mut send),
        };
        if let Err(e) = read {
            let _ = tx.blocking_send(Err(e));
        }
        // Dropping the sender ends the workers once the queue is empty.
        drop(work);
    });
}

/// Events of the first chunk's site still to come, as [`Importer::input_bytes`]
/// estimates them: the input's lines at the first chunk's bytes a line, times that
/// site's share of the chunk (`share` of its `chunk_lines`), less the chunk's own;
/// at most [`MAX_RESERVE`], and none for an input the chunk holds whole.
fn still_to_come(input_bytes: u64, chunk_bytes: u64, chunk_lines: u64, share: u64) -> u64 {
    if chunk_bytes == 0 || chunk_lines == 0 || input_bytes <= chunk_bytes {
        return 0;
    }
    let lines = input_bytes.saturating_mul(chunk_lines) / chunk_bytes;
    let expected = lines.saturating_mul(share) / chunk_lines;
    expected.saturating_sub(share).min(MAX_RESERVE)
}

/// Reads NDJSON lines as bytes (a line that is not UTF-8 is a rejected line).
fn ndjson<R: BufRead>(
    mut reader: R,
    send: &mut dyn FnMut(Chunk) -> bool,
    spares: &std::sync::mpsc::Receiver<Chunk>,
) -> Result<(), ImportError> {
    let mut chunk = Chunk::default();
    let mut line_no = 0u64;
    loop {
        let start = chunk.text.len();
        match reader.read_until(b'\n', &mut chunk.text) {
            Ok(0) => break,
            Ok(_) => {}
            Err(source) => {
                return Err(ImportError::Read {
                    line: line_no + 1,
                    source,
                })
            }
        }
        line_no += 1;
        let text = &mut chunk.text;
        while text.len() > start && matches!(text.last(), Some(b'\n' | b'\r')) {
            text.pop();
        }
        if text[start..].iter().all(u8::is_ascii_whitespace) {
            text.truncate(start);
            continue;
        }
        let end = text.len();
        chunk.lines.push((line_no, Raw::Json(start..end)));
        if chunk.lines.len() >= CHUNK {
            let next = spares.try_recv().unwrap_or_else(|_| Chunk {
                text: Vec::with_capacity(end + end / 8),
                lines: Vec::with_capacity(CHUNK),
            });
            let full = std::mem::replace(&mut chunk, next);
            if !send(full) {
                return Ok(());
            }
        }
    }
    if !chunk.lines.is_empty() {
        send(chunk);
    }
    Ok(())
}

/// Reads CSV records: a header of hit field names, then hits.
#[cfg(feature = "csv")]
fn csv_records<R: BufRead>(
    reader: R,
    send: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), ImportError> {
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = r
        .headers()
        .map_err(|e| ImportError::Header(e.to_string()))?
        .clone();
    let mut chunk = Chunk::default();
    let mut last_line = 1u64;
    for rec in r.byte_records() {
        // The line the record starts on (a quoted field may span lines).
        let line_no = match &rec {
            Ok(rec) => rec.position().map(|p| p.line()),
            Err(e) => e.position().map(|p| p.line()),
        }
        .unwrap_or(last_line + 1);
        last_line = line_no;
        let (parsed, bytes) = match rec {
            Ok(rec) => {
                let bytes = rec.as_slice().to_vec();
                let hit = csv::StringRecord::from_byte_record(rec)
                    .map_err(|e| ValidationError::new("hit", format!("is not valid UTF-8 ({e})")))
                    .and_then(|rec| Hit::from_fields(headers.iter().zip(rec.iter())));
                (hit, bytes)
            }
            Err(e) => (Err(ValidationError::new("hit", e.to_string())), Vec::new()),
        };
        chunk
            .lines
            .push((line_no, Raw::Parsed(Box::new(parsed), bytes)));
        if chunk.lines.len() >= CHUNK && !send(std::mem::take(&mut chunk)) {
            return Ok(());
        }
    }
    if !chunk.lines.is_empty() {
        send(chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The import's path without a future gives each hit the event `prepare` gives
    /// it (id, enrichment, visitor, session), and leaves to `prepare` untouched the
    /// hits it cannot answer: an unknown site, no visitor id, a refund.
    #[test]
    fn preparing_now_is_preparing() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let store = Arc::new(crate::MemoryStore::new());
        store.put_site_sync(Site::new("a.test")).expect("site");
        /// Writes what enrichment was told into the event.
        struct Told;
        impl crate::Enrich for Told {
            fn enrich(&self, event: &mut Event, req: &crate::RequestFacts<'_>, site: &Site) {
                event.device.browser = Some(
                    format!(
                        "{:?} {:?} {} {}",
                        req.ip, req.user_agent, req.server_side, site.domain
                    )
                    .into(),
                );
            }
        }
        let _entered = runtime.enter();
        let pipeline = Pipeline::builder(store)
            .enricher(Told)
            .build()
            .expect("pipeline");
        // A fixed clock, after the hits' times.
        let now = "2026-04-01T00:00:00Z".parse().expect("time");
        let ctx = ValidationContext::import(now);
        let page = r#""site":"a.test","type":"pageview","url":"https://a.test/p""#;
        let lines: Vec<String> = [
            format!(r#"{{{page},"visitor_id":"v1","timestamp":"2026-03-01T10:00:00Z"}}"#),
            format!(r#"{{{page},"visitor_id":"v2","timestamp":"2026-03-01T10:01:00Z","referrer":"https://www.google.com/"}}"#),
            r#"{"site":"a.test","type":"goal","goal":"signup","url":"https://a.test/p","visitor_id":"v1","timestamp":"2026-03-01T10:05:00Z"}"#.to_owned(),
            format!(r#"{{{page},"visitor_id":"v1","timestamp":"2026-03-01T12:00:00Z"}}"#),
            format!(r#"{{{page},"ip":"1.2.3.4","user_agent":"Mozilla/5.0","timestamp":"2026-03-01T12:01:00Z"}}"#),
            r#"{"site":"a.test","type":"refund","order_id":"o1","url":"https://a.test/p","visitor_id":"v2","timestamp":"2026-03-01T12:02:00Z"}"#.to_owned(),
            r#"{"site":"unknown.test","type":"pageview","url":"https://unknown.test/p","visitor_id":"v3","timestamp":"2026-03-01T12:03:00Z"}"#.to_owned(),
        ]
        .to_vec();
        let run = |now: bool| {
            let prep = import_preparer(&pipeline, 16);
            let (mut events, mut sites, mut answered) = (Vec::new(), HashMap::new(), 0);
            let mut errors = Vec::new();
            for (n, line) in lines.iter().enumerate() {
                let v = Hit::parts_from_json_str(line)
                    .and_then(|h| h.validate(&ctx, None))
                    .expect("valid");
                let id = EventId::Line(n as u64 + 1, line.as_bytes());
                let done = if now {
                    match prep.prepare_now(v, id, &sites, &mut events) {
                        Ok(done) => {
                            answered += 1;
                            done
                        }
                        Err(v) => {
                            runtime.block_on(prep.prepare(v, None, id, &mut sites, &mut events))
                        }
                    }
                } else {
                    runtime.block_on(prep.prepare(v, None, id, &mut sites, &mut events))
                };
                errors.push(done.is_err());
            }
            (events, errors, answered)
        };
        let (mut awaited, awaited_errors, _) = run(false);
        let (mut now, now_errors, answered) = run(true);
        assert_eq!(now_errors, awaited_errors);
        assert_eq!(
            now_errors.iter().filter(|e| **e).count(),
            1,
            "the unknown site"
        );
        // The cookieless visitor's id hashes with each import's own random salt.
        for events in [&mut awaited, &mut now] {
            let anonymous = &mut events[4].identity;
            assert_eq!(anonymous.visitor_id.len(), 16);
            (anonymous.visitor_id, anonymous.session_id) = (String::new(), None);
        }
        assert_eq!(now, awaited);
        assert_eq!(answered, 3, "the first of the site goes through prepare");
        assert_eq!(
            now[1].device.browser.as_deref(),
            Some("None None true a.test"),
            "enriched, as a server's hit naming its visitor"
        );
        assert_eq!(
            now.iter()
                .map(|e| e.identity.session_number)
                .collect::<Vec<_>>(),
            [Some(1), Some(1), Some(1), Some(2), Some(1), None]
        );
    }

    /// Each line `ndjson` hands on, as (number, text), in order.
    fn read_all(input: &[u8], buffer: usize) -> Vec<(u64, String)> {
        let (_spare, spares) = std::sync::mpsc::sync_channel::<Chunk>(1);
        let mut out = Vec::new();
        let mut send = |chunk: Chunk| {
            assert!(
                chunk.lines.len() <= CHUNK,
                "a chunk holds at most CHUNK lines"
            );
            for (n, raw) in chunk.lines {
                let Raw::Json(range) = raw else {
                    panic!("NDJSON lines are bytes")
                };
                out.push((n, String::from_utf8_lossy(&chunk.text[range]).into_owned()));
            }
            true
        };
        let reader = std::io::BufReader::with_capacity(buffer, input);
        ndjson(reader, &mut send, &spares).expect("read");
        out
    }

    /// The same lines by the plain rule: split at `\n`, trailing `\r`s off, blank
    /// lines skipped, numbered from 1 counting every line.
    fn naive(input: &[u8]) -> Vec<(u64, String)> {
        let text = String::from_utf8_lossy(input);
        let mut lines: Vec<&str> = text.split('\n').collect();
        if text.ends_with('\n') {
            lines.pop();
        }
        lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.trim_end_matches('\r').to_owned()))
            .filter(|(_, l)| !l.trim().is_empty())
            .collect()
    }

    #[test]
    fn the_store_is_told_of_the_lines_still_to_come() {
        // 1 MB of 100-byte lines, the first chunk 100 of them, all of one site.
        assert_eq!(still_to_come(1_000_000, 10_000, 100, 100), 9_900);
        // The site has a quarter of the chunk: a quarter of the input.
        assert_eq!(still_to_come(1_000_000, 10_000, 100, 25), 2_475);
        // Standard input (size unknown), an input the chunk holds whole, no lines.
        assert_eq!(still_to_come(0, 10_000, 100, 100), 0);
        assert_eq!(still_to_come(10_000, 10_000, 100, 100), 0);
        assert_eq!(still_to_come(1_000_000, 0, 0, 0), 0);
        // Never more than the cap, however large the file.
        assert_eq!(still_to_come(u64::MAX, 10, 100, 100), MAX_RESERVE);
    }

    #[test]
    fn ndjson_lines_are_found_across_buffers_and_chunks() {
        let mut big = Vec::new();
        for i in 0..(CHUNK * 2 + 123) {
            match i % 7 {
                0 => big.extend_from_slice(b"\r\n"),
                1 => big.extend_from_slice(b"   \n"),
                2 => big.extend_from_slice(format!("{{\"n\":{i}}}\r\n").as_bytes()),
                _ => big.extend_from_slice(
                    format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 50)).as_bytes(),
                ),
            }
        }
        big.extend_from_slice(b"{\"last\":true}");
        let inputs: [&[u8]; 6] = [b"", b"\n", b"{}", b"{}\n\n{}\r\n", b"\r\r\n{} \r\n", &big];
        for input in inputs {
            let want = naive(input);
            for buffer in [1, 3, 64, 4096, 1 << 20] {
                assert_eq!(read_all(input, buffer), want, "buffer {buffer}");
            }
        }
    }
}
