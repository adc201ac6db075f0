//! The memory snapshot beside the database: `beacon.snapshot`, what
//! [`MemoryStore::write_snapshot`] writes, in a zstd frame with a content checksum,
//! behind a header that says which batches of the log it holds. It is a cache of
//! the log, never the only copy of anything: the store trusts it only while the
//! log's batches up to its last one are what they were when it was written, and
//! loads the log otherwise.

use beacon_core::{MemoryStore, StoreError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const FILE: &str = "beacon.snapshot";
/// Version 1 was an LZ4 frame; version 2, a zstd frame at [`LEVEL`], is 26 B/event
/// rather than 35 (realistic traffic) and reads faster. A version-1 snapshot is not
/// read: the log is loaded and a new snapshot written.
const MAGIC: &[u8; 16] = b"BEACON-SNAPSHOT2";
const LEVEL: i32 = 1;
const HEADER: usize = 16 + 4 * 8;

/// Which batches of the log a snapshot holds: every batch with an id up to
/// `last_batch`, `batches` of them with `events` events in all, written while the
/// log's erase generation was `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Covers {
    pub(crate) last_batch: i64,
    pub(crate) batches: i64,
    pub(crate) events: i64,
    pub(crate) generation: i64,
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{FILE}.tmp"))
}

fn io(operation: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::backend(operation, e)
}

/// The header of the snapshot in `dir`: `None` when there is none, or when it is
/// not a snapshot this version reads.
pub(crate) fn covers(dir: &Path) -> Option<Covers> {
    let mut f = std::fs::File::open(path(dir)).ok()?;
    let mut h = [0u8; HEADER];
    f.read_exact(&mut h).ok()?;
    if &h[..16] != MAGIC {
        return None;
    }
    let field = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[16 + i * 8..24 + i * 8]);
        i64::from_le_bytes(b)
    };
    Some(Covers {
        last_batch: field(0),
        batches: field(1),
        events: field(2),
        generation: field(3),
    })
}

/// Reads the snapshot in `dir` into `memory` (all or nothing); how many events.
pub(crate) fn read(dir: &Path, memory: &MemoryStore) -> Result<u64, StoreError> {
    let mut f = std::fs::File::open(path(dir)).map_err(io("read snapshot"))?;
    let mut h = [0u8; HEADER];
    f.read_exact(&mut h).map_err(io("read snapshot"))?;
    let mut frame =
        zstd::stream::read::Decoder::with_buffer(std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(io("read snapshot"))?;
    memory.read_snapshot(&mut frame)
}

/// Writes `memory` as the snapshot of `dir` holding `covers`: to a temporary file,
/// synced, then renamed over the old one (a crash at any point leaves the old
/// snapshot or the new one, each with its own header). Returns the events written.
pub(crate) fn write(dir: &Path, memory: &MemoryStore, covers: Covers) -> Result<u64, StoreError> {
    let temp = temp_path(dir);
    let file = std::fs::File::create(&temp).map_err(io("write snapshot"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC);
    for v in [
        covers.last_batch,
        covers.batches,
        covers.events,
        covers.generation,
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&h).map_err(io("write snapshot"))?;
    let mut frame = zstd::stream::write::Encoder::new(out, LEVEL).map_err(io("write snapshot"))?;
    frame.include_checksum(true).map_err(io("write snapshot"))?;
    // zstd compresses on worker threads of its own while this one lays out the
    // columns (one frame all the same: any zstd decoder reads it); otherwise the
    // snapshot that ends an import is one core's work while the other idles.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    frame
        .multithread(u32::try_from(workers).unwrap_or(1))
        .map_err(io("write snapshot"))?;
    let events = memory.write_snapshot(&mut frame)?;
    let out = frame.finish().map_err(io("write snapshot"))?;
    let file = out
        .into_inner()
        .map_err(|e| StoreError::backend("write snapshot", e.into_error()))?;
    file.sync_all().map_err(io("write snapshot"))?;
    drop(file);
    std::fs::rename(&temp, path(dir)).map_err(io("write snapshot"))?;
    sync_dir(dir)?;
    Ok(events)
}

/// Removes the snapshot of `dir` (and a temporary one left by a crash), durably.
pub(crate) fn remove(dir: &Path) -> Result<(), StoreError> {
    let mut removed = false;
    for p in [path(dir), temp_path(dir)] {
        match std::fs::remove_file(&p) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::backend("remove snapshot", e)),
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a rename or removal in `dir` durable (a directory is synced on Unix; on
/// other systems the rename is as durable as the system makes it).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync data dir"))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
