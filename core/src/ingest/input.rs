//! An import's input file, read front to back in large blocks straight from the
//! device where the system allows it (`O_DIRECT` on Linux), so that reading costs
//! the import's cores no copy out of the page cache.
//!
//! Why: an import is bound by its cores. Reading a file through the page cache
//! copies every byte in the kernel, and that copy was 8.6% of the CPU samples of
//! an import of realistic hits (on a virtual machine whose page cache is slow to
//! touch); a direct read leaves the copy to the device. Where the file system
//! refuses direct reads (tmpfs) or a read ends off a block boundary, the file is
//! read as usual from that point on, through a handle opened with the direct one
//! (the same file, even if its path has been replaced since).

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes a direct read's buffer, length and offset are aligned to (every Linux
/// block device's logical block size divides it).
const ALIGN: usize = 4096;

/// Bytes read at a time: a few milliseconds of the device, tens of chunks' worth
/// of the import's lines arrive per read.
const BLOCK: usize = 4 << 20;

/// A file read in [`BLOCK`]s; a [`BufRead`] whose buffer is its block.
pub(crate) struct InputFile {
    file: File,
    /// While `file` reads directly: a handle for ordinary reads of the same file.
    plain: Option<File>,
    /// [`BLOCK`] + [`ALIGN`] bytes; the block starts at `start`, aligned.
    buf: Vec<u8>,
    start: usize,
    /// Unread bytes of the block: `buf[start + pos..start + len]`.
    pos: usize,
    len: usize,
    /// File offset of the next read.
    offset: u64,
}

impl InputFile {
    /// Opens `path` for direct reads when `direct` and the system allows them, or
    /// for ordinary ones.
    pub(crate) fn open(path: &Path, direct: bool) -> std::io::Result<Self> {
        let plain = File::open(path)?;
        let (file, plain) = match direct.then(|| open_direct(path)).flatten() {
            Some(file) => (file, Some(plain)),
            None => (plain, None),
        };
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
        Ok(Self {
            file,
            plain,
            buf,
            start,
            pos: 0,
            len: 0,
            offset: 0,
        })
    }

    /// The file, length included (for sizing the import).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Whether reads go straight to the device.
    fn direct(&self) -> bool {
        self.plain.is_some()
    }

    /// Goes on with ordinary reads from the current offset.
    fn fall_back(&mut self) -> std::io::Result<()> {
        if let Some(mut plain) = self.plain.take() {
            plain.seek(SeekFrom::Start(self.offset))?;
            self.file = plain;
        }
        Ok(())
    }

    /// Reads the next block; 0 at the end of the file.
    fn refill(&mut self) -> std::io::Result<usize> {
        loop {
            let block = &mut self.buf[self.start..self.start + BLOCK];
            match self.file.read(block) {
                Ok(n) => {
                    self.offset += n as u64;
                    // A direct read must start on a block boundary: after a short one
                    // (the end of the file, or a file that grows) read as usual.
                    if self.direct() && n % ALIGN != 0 {
                        self.fall_back()?;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if self.direct() && e.kind() == std::io::ErrorKind::InvalidInput => {
                    self.fall_back()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> Option<File> {
    None
}

impl Read for InputFile {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for InputFile {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos == self.len {
            self.pos = 0;
            self.len = self.refill()?;
        }
        Ok(&self.buf[self.start + self.pos..self.start + self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Every byte arrives once and in order, for sizes around the alignment and the
    /// block, whichever way the file system reads.
    #[test]
    fn a_file_reads_back_whole() {
        let dir = std::env::temp_dir().join(format!("beacon-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for size in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            BLOCK - 1,
            BLOCK,
            BLOCK + ALIGN + 7,
            3 * BLOCK + 5,
        ] {
            let path = dir.join(format!("{size}.bin"));
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            File::create(&path).unwrap().write_all(&bytes).unwrap();
            for direct in [true, false] {
                let mut got = Vec::new();
                let mut input = InputFile::open(&path, direct).unwrap();
                input.read_to_end(&mut got).unwrap();
                assert_eq!(got.len(), bytes.len(), "size {size}, direct {direct}");
                assert!(got == bytes, "size {size}, direct {direct}: bytes differ");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Falling back to ordinary reads in the middle of the file loses and repeats
    /// nothing, and goes on in the same file when its path now names another.
    #[test]
    fn falling_back_goes_on_where_the_reads_stopped() {
        let dir = std::env::temp_dir().join(format!("beacon-fall-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        let bytes: Vec<u8> = (0..2 * BLOCK + 5).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut input = InputFile::open(&path, true).unwrap();
        let mut got = input.fill_buf().unwrap().to_vec();
        input.consume(got.len());
        let other = dir.join("other.bin");
        std::fs::write(&other, b"another file").unwrap();
        std::fs::rename(&other, &path).unwrap();
        input.fall_back().unwrap();
        assert!(!input.direct());
        input.read_to_end(&mut got).unwrap();
        assert!(got == bytes, "bytes differ");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Lines split across blocks are read whole by `read_until`.
    #[test]
    fn lines_across_blocks_are_whole() {
        let dir = std::env::temp_dir().join(format!("beacon-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines.ndjson");
        let lines: Vec<String> = (0..600_000).map(|i| format!("{{\"n\":{i}}}")).collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut input = InputFile::open(&path, true).unwrap();
        let mut got = Vec::new();
        let mut line = Vec::new();
        while input.read_until(b'\n', &mut line).unwrap() > 0 {
            got.push(
                String::from_utf8(line.strip_suffix(b"\n").unwrap_or(&line).to_vec()).unwrap(),
            );
            line.clear();
        }
        assert_eq!(got, lines);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
