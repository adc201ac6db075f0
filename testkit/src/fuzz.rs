//! A mutation fuzzer for the stable toolchain: seed inputs (real hits, queries,
//! webhook bodies, database files) are mutated byte by byte and token by token, and
//! each case runs under `catch_unwind` with a watchdog for hangs. No coverage
//! feedback (cargo-fuzz needs a nightly toolchain this project does not have); the
//! mutations are chosen to reach parsers' edges: JSON tokens, boundary numbers,
//! long and broken strings, invalid UTF-8, splices of two seeds.
//!
//! `BEACON_FUZZ_CASES` sets the cases per target (the tests' default is small, for
//! CI; `scripts/fuzz` runs a million each). A panic or a hang fails the target and
//! leaves its input in `target/fuzz-crashes/`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cases to run per target: `BEACON_FUZZ_CASES`, or `default`.
pub fn cases(default: u64) -> u64 {
    std::env::var("BEACON_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed files of `dir` (every regular file, sorted by name).
pub fn seeds_in(dir: impl Into<PathBuf>) -> Vec<Vec<u8>> {
    let dir = dir.into();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display())))
        .collect()
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The target's name.
    pub target: String,
    /// Cases run.
    pub cases: u64,
    /// Cases that panicked (their inputs are under `target/fuzz-crashes/`).
    pub panics: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// SplitMix64: deterministic from the target's name, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that parsers of JSON, URLs, numbers and dates meet at their edges.
const TOKENS: &[&[u8]] = &[
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-1",
    b"1e308",
    b"-1e308",
    b"1e-400",
    b"18446744073709551616",
    b"9223372036854775807",
    b"0.000000001",
    b"NaN",
    b"\"\"",
    b"[]",
    b"{}",
    b"[[[[[[[[",
    b"]]]]]]]]",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\\",
    b"\"",
    b",",
    b":",
    b"%",
    b"%zz",
    b"%00",
    b"http://",
    b"https://a.b/",
    b"://",
    b"*",
    b"**",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\t\r\n",
    b"2026-02-30T25:61:61Z",
    b"+99999-01-01T00:00:00Z",
    b"2026-03-01",
    b"\"all\"",
    b"\"7d\"",
    b"\"matches\"",
    b"\"time:hour\"",
    b"\"prop:\"",
    b"\"revenue\"",
    b"\"USD\"",
    b"\"XXX\"",
];

/// Scalars that sit on the edges of what parsers and validators accept.
fn edge_scalar(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(16) {
        0 => json!(null),
        1 => json!(rng.below(2) == 0),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e308),
        7 => json!(0.5),
        8 => json!(""),
        9 => json!("x".repeat(1 + rng.below(5000))),
        10 => json!("é☃\u{0}\u{10FFFF}"),
        11 => json!(
            [
                "2026-02-30T25:00:00Z",
                "2026-03-01",
                "9999-12-31T23:59:59Z",
                "0000-01-01T00:00:00Z"
            ][rng.below(4)]
        ),
        12 => {
            json!(["*", "/**", "%zz", "http://x", "a*b*c*", "\\w{20}N", "(", "[a-"][rng.below(8)])
        }
        13 => json!(
            ["day", "7d", "all", "month", "visitors", "revenue", "time:day", "prop:x", "source"]
                [rng.below(9)]
        ),
        14 => json!([]),
        _ => json!({}),
    }
}

/// Edits a string: inserts, deletes or replaces a few characters.
fn edit_string(s: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 => chars.insert(
                at,
                ['%', '*', '/', '\\', '\u{0}', 'é', '?', '#', ' ', '.'][rng.below(10)],
            ),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            _ if at < chars.len() => chars[at] = char::from(b'!' + rng.below(94) as u8),
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Mutates one node of a JSON tree: replaces, removes, duplicates, wraps or edits it.
fn mutate_tree(v: &mut serde_json::Value, rng: &mut Rng, depth: usize) {
    use serde_json::Value;
    // Descend into a child now and then, so every level is reached.
    let descend = depth < 8 && rng.below(3) != 0;
    match v {
        Value::Object(map) if descend && !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.below(map.len()))
                .cloned()
                .unwrap_or_default();
            match rng.below(8) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    let extra = format!("{key}_x");
                    map.insert(extra, edge_scalar(rng));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_tree(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(8) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    for _ in 0..1 + rng.below(60) {
                        items.insert(i, copy.clone());
                    }
                }
                _ => mutate_tree(&mut items[i], rng, depth + 1),
            }
        }
        Value::String(s) if rng.below(2) == 0 => *s = edit_string(s, rng),
        _ => match rng.below(4) {
            0 => *v = Value::Array(vec![v.take()]),
            _ => *v = edge_scalar(rng),
        },
    }
}

fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    if !seeds.is_empty() && rng.below(2) == 0 {
        let seed = &seeds[rng.below(seeds.len())];
        if let Ok(mut tree) = serde_json::from_slice::<serde_json::Value>(seed) {
            // Mostly one edit, so that many inputs stay valid and reach past parsing.
            for _ in 0..1 + usize::from(rng.below(4) == 0) {
                mutate_tree(&mut tree, rng, 0);
            }
            return serde_json::to_vec(&tree).unwrap_or_default();
        }
    }
    if seeds.is_empty() || rng.below(32) == 0 {
        let n = rng.below(256);
        return (0..n).map(|_| rng.next() as u8).collect();
    }
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                data.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                data.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let chunk = data[a..b].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            5 => {
                // Splice in a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(512)).min(other.len());
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[a..b].iter().copied());
                }
            }
            6 => {
                // A long run: strings and numbers past every limit.
                let at = rng.below(len + 1);
                let byte = [b'a', b'9', b'/', b'[', b'{', b'\\', 0xe9][rng.below(7)];
                let n = 1 + rng.below(20_000);
                data.splice(at..at, std::iter::repeat_n(byte, n));
            }
            7 if len > 0 => {
                data.truncate(rng.below(len));
            }
            _ => {
                // Replace a token-sized stretch with a token.
                if len > 0 {
                    let a = rng.below(len);
                    let b = (a + 1 + rng.below(12)).min(len);
                    let t = TOKENS[rng.below(TOKENS.len())];
                    data.splice(a..b, t.iter().copied());
                }
            }
        }
        if data.len() > 1 << 20 {
            data.truncate(1 << 20);
        }
    }
    data
}

/// How long one case may run before it counts as a hang.
const HANG_AFTER: Duration = Duration::from_secs(10);

/// Runs `target` on `cases` inputs mutated from `seeds` (and on each seed first).
/// Panics are caught, counted and saved; a case that runs past [`HANG_AFTER`]
/// aborts the process after saving its input.
pub fn run(name: &str, seeds: &[Vec<u8>], cases: u64, target: impl Fn(&[u8])) -> Report {
    let started = Instant::now();
    let crash_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let case_started = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, case_started, done) = (
            Arc::clone(&current),
            Arc::clone(&case_started),
            Arc::clone(&done),
        );
        let (name, dir) = (name.to_owned(), crash_dir.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let at = case_started.load(Ordering::Relaxed);
                if at != u64::MAX
                    && started.elapsed().as_millis() as u64 > at + HANG_AFTER.as_millis() as u64
                {
                    let input = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let _ = std::fs::create_dir_all(&dir);
                    let path = dir.join(format!("{name}-hang.bin"));
                    let _ = std::fs::write(&path, input);
                    eprintln!(
                        "fuzz {name}: a case ran over {HANG_AFTER:?}; input in {}",
                        path.display()
                    );
                    std::process::abort();
                }
            }
        })
    };
    // Quiet while panics are expected and counted.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }));
    let mut panics = 0u64;
    let mut first_crash = None;
    let total = seeds.len() as u64 + cases;
    for case in 0..total {
        let input = match seeds.get(case as usize) {
            Some(seed) => seed.clone(),
            None => mutate(seeds, &mut rng),
        };
        current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone_from(&input);
        case_started.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| target(&input)));
        case_started.store(u64::MAX, Ordering::Relaxed);
        if outcome.is_err() {
            panics += 1;
            let _ = std::fs::create_dir_all(&crash_dir);
            let path = crash_dir.join(format!("{name}-{case}.bin"));
            let _ = std::fs::write(&path, &input);
            first_crash.get_or_insert(path);
        }
    }
    std::panic::set_hook(hook);
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let report = Report {
        target: name.to_owned(),
        cases: total,
        panics,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "fuzz {name}: {} cases in {:.1} s ({:.0}/s), {} panics{}",
        report.cases,
        report.seconds,
        report.cases as f64 / report.seconds.max(1e-9),
        report.panics,
        first_crash
            .map(|p| format!("; first input in {}", p.display()))
            .unwrap_or_default()
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_caught_counted_and_saved() {
        let seeds = vec![b"{\"a\": [1, 2, 3]}".to_vec()];
        let r = run("selftest", &seeds, 200, |input| {
            assert!(input.len() < 40, "a long input");
        });
        assert_eq!(r.cases, 201);
        assert!(
            r.panics > 0,
            "long inputs were made and their panics caught: {r:?}"
        );
        let crashes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
        assert!(std::fs::read_dir(crashes)
            .expect("crash dir")
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("selftest-"))));
    }

    #[test]
    fn the_same_name_gives_the_same_cases() {
        let seeds = vec![b"[\"x\", {\"k\": null}]".to_vec()];
        let collect = || {
            let seen = std::cell::RefCell::new(Vec::new());
            run("repeat", &seeds, 50, |i| seen.borrow_mut().push(i.to_vec()));
            seen.into_inner()
        };
        assert_eq!(collect(), collect());
    }
}
