//! `beacon`: the reference server and command line (contract section 1).

/// mimalloc: glibc's allocator spent a quarter of an import in malloc and free
/// (consolidation of freed chunks across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commit;
mod http;
mod pipeline;

use beacon_core::{
    Analytics, Clock, ConfigStore, EraseScope, EventStore, Funnel, GoalsRequest, Hit, IngestMode,
    PreparedEvents, Query, Site, SystemClock, Tz, ValidationContext,
};
use beacon_enrich::{flat_json, Enricher, GeoDatabases, GeoKind};
use beacon_storage_sqlite::SqliteStore;
use clap::{Parser, Subcommand, ValueEnum};
use pipeline::{Pipeline, Stores};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "beacon",
    version,
    about = "Web analytics you embed: server and command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Ndjson,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP server.
    Serve {
        #[arg(long, default_value = "./beacon-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// Proxies whose X-Forwarded-For is believed.
        #[arg(long = "trusted-proxy")]
        trusted_proxies: Vec<std::net::IpAddr>,
        #[arg(long)]
        geoip_city: Option<PathBuf>,
        #[arg(long)]
        geoip_asn: Option<PathBuf>,
        /// Requests waiting to be committed before new ones are answered 503.
        #[arg(long, default_value_t = 4096)]
        queue: usize,
        /// Most visitors whose open sessions are kept in memory; past it, those
        /// soonest to expire are forgotten (every 10 s).
        #[arg(long, default_value_t = pipeline::MAX_SESSION_VISITORS)]
        session_visitors: usize,
        /// Seconds a read (query, funnel, goals, realtime) may take before it is
        /// stopped and answered 503.
        #[arg(long, default_value_t = 10.0)]
        read_budget: f64,
        /// Reads running at once (default: one per core).
        #[arg(long)]
        read_slots: Option<usize>,
        /// Connections open at once; past it, new ones are closed.
        #[arg(long, default_value_t = 10_000)]
        max_connections: usize,
        /// Seconds a client may take to send a request's headers before its
        /// connection is closed.
        #[arg(long, default_value_t = 10.0)]
        header_read_timeout: f64,
    },
    /// Imports hits (one per line) through the live pipeline.
    Import {
        #[arg(long, default_value = "./beacon-data")]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "ndjson")]
        format: Format,
        /// Site for lines that name none; created (UTC) if missing.
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        geoip_city: Option<PathBuf>,
        #[arg(long)]
        geoip_asn: Option<PathBuf>,
        /// A file, or - for standard input.
        file: String,
    },
    /// Answers a query (contract section 4); prints the response JSON.
    Query {
        #[arg(long, default_value = "./beacon-data")]
        data_dir: PathBuf,
        /// The query JSON, or - for standard input.
        json: String,
    },
    /// Answers a funnel (contract section 5); prints the response JSON.
    Funnel {
        #[arg(long, default_value = "./beacon-data")]
        data_dir: PathBuf,
        /// The funnel JSON, or - for standard input.
        json: String,
    },
    /// Counts goal conversions: `{"site", "date_range", "goals": [{"name", "page"|"event"|"attribute", "value"}]}`.
    Goals {
        #[arg(long, default_value = "./beacon-data")]
        data_dir: PathBuf,
        /// The goals JSON, or - for standard input.
        json: String,
    },
    /// Manages payment-provider webhook secrets (stripe, lemonsqueezy, polar, shopify).
    Webhooks {
        #[arg(long, default_value = "./beacon-data", global = true)]
        data_dir: PathBuf,
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Enriches hits from standard input into flat JSON lines on standard output.
    Enrich {
        #[arg(long)]
        geoip_city: Option<PathBuf>,
        #[arg(long)]
        geoip_asn: Option<PathBuf>,
    },
    /// Manages sites.
    Sites {
        #[arg(long, default_value = "./beacon-data", global = true)]
        data_dir: PathBuf,
        #[command(subcommand)]
        action: SitesAction,
    },
    /// Erases a visitor's events, or all of a site's (GDPR).
    Erase {
        #[arg(long, default_value = "./beacon-data")]
        data_dir: PathBuf,
        #[arg(long)]
        site: String,
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        visitor: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum SitesAction {
    /// Adds (or updates) a site.
    Add {
        name: String,
        #[arg(long, default_value = "UTC")]
        timezone: String,
        #[arg(long, default_value_t = 30)]
        session_timeout_minutes: u32,
        #[arg(long)]
        store_ip: bool,
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// Lists sites as JSON lines.
    List,
    /// Removes a site and its events.
    Remove { name: String },
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Sets the signing secret for a provider's webhooks to a site; they are then
    /// accepted at POST /api/v1/webhooks/<provider>/<site>.
    Add {
        site: String,
        provider: String,
        /// The secret as the provider shows it; read from this environment variable
        /// when it starts with `env:` (`env:STRIPE_WEBHOOK_SECRET`).
        #[arg(long)]
        secret: String,
    },
    /// Lists (site, provider) pairs with a secret, as JSON lines (never the secret).
    List,
    /// Removes a provider's secret from a site.
    Remove { site: String, provider: String },
}

/// A failure the CLI reports: a message and an exit code.
struct Fail(u8, String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(1, e.to_string())
    }
}

/// A failed write to standard output: a reader that went away (`| head`) ends the
/// command quietly, with no panic.
fn stdout_failed(e: std::io::Error) -> Fail {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Fail(0, String::new())
    } else {
        Fail(1, format!("standard output: {e}"))
    }
}

/// Writes one line to standard output.
fn out(line: impl std::fmt::Display) -> Result<(), Fail> {
    writeln!(std::io::stdout().lock(), "{line}").map_err(stdout_failed)
}

/// A parsed request, or the contract's `{"error"}` on stdout and exit code 2.
fn parsed<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, Fail> {
    r.map_err(|e| {
        // Failing already: a closed standard output changes nothing.
        let _ = out(json!({ "error": e.to_string() }));
        Fail(2, format!("invalid {what}: {e}"))
    })
}

/// Prints an answer's JSON, or the contract's `{"error"}` with exit code 2.
fn answer<E: std::fmt::Display>(r: Result<Value, E>) -> Result<(), Fail> {
    match r {
        Ok(v) => out(v),
        Err(e) => {
            let _ = out(json!({ "error": e.to_string() }));
            Err(Fail(2, e.to_string()))
        }
    }
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("beacon: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("beacon: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn geo(city: Option<&Path>, asn: Option<&Path>) -> Result<GeoDatabases, Fail> {
    let mut g = GeoDatabases::new();
    if let Some(p) = city {
        g = g
            .with(GeoKind::Location, p)
            .map_err(|e| usage(e.to_string()))?;
    }
    if let Some(p) = asn {
        g = g.with(GeoKind::Asn, p).map_err(|e| usage(e.to_string()))?;
    }
    Ok(g)
}

fn read_arg(arg: &str) -> Result<String, Fail> {
    if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| usage(format!("stdin: {e}")))?;
        Ok(s)
    } else {
        Ok(arg.to_owned())
    }
}

/// The embedded store in `dir`, which must exist already (commands that only read
/// or change what is there never create one): exit code 2 otherwise.
async fn open_existing(dir: &Path) -> Result<(Arc<SqliteStore>, Stores), Fail> {
    if !dir.join("beacon.sqlite").is_file() {
        return Err(usage(format!(
            "--data-dir: no store at {} (`beacon sites add` or `beacon import` make one)",
            dir.display()
        )));
    }
    open(dir).await
}

/// The embedded store in `dir`, as the traits the pipeline and requests use.
async fn open(dir: &Path) -> Result<(Arc<SqliteStore>, Stores), Fail> {
    // A store that cannot be read is an unusable argument (exit 2), not a failure.
    let store = Arc::new(SqliteStore::open(dir).await.map_err(|e| match e {
        beacon_core::StoreError::Corrupt { .. } => usage(e.to_string()),
        e => Fail(1, e.to_string()),
    })?);
    let stores = Stores {
        events: Arc::clone(&store) as Arc<dyn EventStore>,
        config: Arc::clone(&store) as Arc<dyn ConfigStore>,
    };
    Ok((store, stores))
}

/// The live server's housekeeping: idle session state is forgotten every 10 s;
/// every 10 minutes today's and tomorrow's salts are made ahead, salts before
/// yesterday are forgotten (a visitor cannot be linked across days), and webhook
/// delivery ids older than a week are forgotten.
pub(crate) async fn upkeep(pipeline: Arc<Pipeline>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        let now = pipeline.now();
        if let Err(e) = pipeline.sessions.evict_idle(now.timestamp_millis()).await {
            tracing::warn!(error = %e, "evicting idle sessions failed");
        }
        if ticks % 60 == 0 {
            let today = now.date_naive();
            let yesterday = today.pred_opt().unwrap_or(today);
            for day in [today, today.succ_opt().unwrap_or(today)] {
                if let Err(e) = pipeline.salts.salt_for(day).await {
                    tracing::warn!(error = %e, %day, "making a salt failed");
                }
            }
            if let Err(e) = pipeline.salts.forget_before(yesterday).await {
                tracing::warn!(error = %e, "forgetting old salts failed");
            }
            let week_ago = now - chrono::Duration::days(7);
            if let Err(e) = pipeline.config.forget_deliveries_before(week_ago).await {
                tracing::warn!(error = %e, "forgetting old delivery ids failed");
            }
        }
        ticks += 1;
    }
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            trusted_proxies,
            geoip_city,
            geoip_asn,
            queue,
            session_visitors,
            read_budget,
            read_slots,
            max_connections,
            header_read_timeout,
        } => {
            let enricher = Enricher::builder()
                .geo(geo(geoip_city.as_deref(), geoip_asn.as_deref())?)
                .build()?;
            let (store, stores) = open(&data_dir).await?;
            let pipeline = Arc::new(Pipeline::live(
                stores,
                Arc::new(enricher),
                clock,
                session_visitors,
            ));
            let addr: std::net::SocketAddr = listen
                .parse()
                .map_err(|e| usage(format!("--listen {listen:?}: {e}")))?;
            let seconds = |flag: &str, s: f64| {
                if s.is_finite() && s > 0.0 {
                    Ok(std::time::Duration::from_secs_f64(s.min(3600.0)))
                } else {
                    Err(usage(format!(
                        "--{flag}: must be a positive number of seconds"
                    )))
                }
            };
            let read_budget = seconds("read-budget", read_budget)?;
            let header_read_timeout = seconds("header-read-timeout", header_read_timeout)?;
            let options = http::Options {
                addr,
                trusted_proxies,
                queue: queue.max(1),
                read_budget,
                read_slots: read_slots
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                max_connections,
                header_read_timeout,
            };
            http::serve(pipeline, options).await?;
            store.close().await;
            Ok(())
        }
        Command::Import {
            data_dir,
            format,
            site,
            geoip_city,
            geoip_asn,
            file,
        } => {
            let mut size = 0;
            let reader: Box<dyn BufRead + Send> = if file == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                let f = std::fs::File::open(&file).map_err(|e| usage(format!("{file}: {e}")))?;
                size = f.metadata().map_or(0, |m| m.len());
                Box::new(std::io::BufReader::new(f))
            };
            // At most one visitor per line, and a hit's line is rarely under 256 bytes;
            // the sessions' map is sized for that up front (growing it step by step
            // was a twentieth of an import's time), within a bound on what it may cost.
            let expected_visitors = usize::try_from(size / 256).map_or(0, |n| n.min(2_000_000));
            let enricher = Enricher::builder()
                .geo(geo(geoip_city.as_deref(), geoip_asn.as_deref())?)
                .build()?;
            let (store, stores) = open(&data_dir).await?;
            if let Some(s) = &site {
                let s = s.to_ascii_lowercase();
                if store.site(&s).await?.is_none() {
                    store.put_site(Site::new(s)).await?;
                }
            }
            let pipeline = Arc::new(Pipeline::import(
                stores,
                Arc::new(enricher),
                clock,
                expected_visitors,
            ));
            let (imported, rejected) = import(pipeline, reader, format, site).await?;
            store.close().await;
            out(format_args!("imported {imported}, rejected {rejected}"))?;
            Ok(())
        }
        Command::Query { data_dir, json } => {
            let query = parsed(Query::from_json(&read_arg(&json)?), "query")?;
            let (store, _) = open_existing(&data_dir).await?;
            let started = std::time::Instant::now();
            let result = Analytics::new(&*store, &*store)
                .query(&query, clock.now())
                .await;
            answer(result.map(|r| r.to_json(started.elapsed().as_millis() as u64)))
        }
        Command::Funnel { data_dir, json } => {
            let f = parsed(Funnel::from_json(&read_arg(&json)?), "funnel")?;
            let (store, _) = open_existing(&data_dir).await?;
            answer(
                Analytics::new(&*store, &*store)
                    .funnel(&f, clock.now())
                    .await
                    .map(|r| r.to_json()),
            )
        }
        Command::Enrich {
            geoip_city,
            geoip_asn,
        } => {
            let enricher = Enricher::builder()
                .geo(geo(geoip_city.as_deref(), geoip_asn.as_deref())?)
                .build()?;
            let ctx = ValidationContext {
                now: clock.now(),
                mode: IngestMode::Import {
                    max_future: chrono::Duration::days(36_500),
                },
                limits: Default::default(),
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|e| usage(format!("stdin: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                let value = match Hit::from_json(line.as_bytes()).and_then(|mut h| {
                    h.timestamp.get_or_insert_with(|| ctx.now.to_rfc3339());
                    h.validate(&ctx, Some("unknown.site"))
                }) {
                    Ok(v) => flat_json(&enricher.enrich_hit(v, &Site::new("unknown.site"))),
                    Err(e) => json!({ "error": e.to_string() }),
                };
                writeln!(out, "{value}").map_err(stdout_failed)?;
            }
            out.flush().map_err(stdout_failed)?;
            Ok(())
        }
        Command::Sites { data_dir, action } => {
            // Adding a site makes a store; listing and removing read one.
            let (store, _) = match action {
                SitesAction::Add { .. } => open(&data_dir).await?,
                _ => open_existing(&data_dir).await?,
            };
            match action {
                SitesAction::Add {
                    name,
                    timezone,
                    session_timeout_minutes,
                    store_ip,
                    currency,
                } => {
                    let tz: Tz = timezone.parse().map_err(|_| {
                        usage(format!("--timezone: {timezone:?} is not an IANA time zone"))
                    })?;
                    let currency = beacon_core::Currency::parse(&currency).ok_or_else(|| {
                        usage(format!("--currency: {currency:?} is not an ISO 4217 code"))
                    })?;
                    let mut site = Site::new(name.to_ascii_lowercase())
                        .with_timezone(tz)
                        .with_currency(currency);
                    site.session_timeout_secs = session_timeout_minutes.saturating_mul(60);
                    site.store_ip = store_ip;
                    store
                        .put_site(site)
                        .await
                        .map_err(|e| usage(e.to_string()))?;
                }
                SitesAction::List => {
                    for s in store.sites().await? {
                        out(serde_json::to_string(&s)?)?;
                    }
                }
                SitesAction::Remove { name } => {
                    let name = name.to_ascii_lowercase();
                    if !store.remove_site(&name).await? {
                        return Err(usage(format!("no site {name:?}")));
                    }
                    store.erase(&name, EraseScope::All).await?;
                }
            }
            store.close().await;
            Ok(())
        }
        Command::Goals { data_dir, json } => {
            let req = parsed(GoalsRequest::from_json(&read_arg(&json)?), "goals request")?;
            let (store, _) = open_existing(&data_dir).await?;
            answer(
                Analytics::new(&*store, &*store)
                    .goals(&req, clock.now())
                    .await
                    .map(|r| r.to_json()),
            )
        }
        Command::Webhooks { data_dir, action } => {
            let (store, _) = open_existing(&data_dir).await?;
            let provider_of = |p: &str| {
                beacon_attribution::Provider::parse(p).ok_or_else(|| {
                    usage(format!(
                        "provider: {p:?} is not stripe, lemonsqueezy, polar or shopify"
                    ))
                })
            };
            match action {
                WebhooksAction::Add {
                    site,
                    provider,
                    secret,
                } => {
                    let provider = provider_of(&provider)?;
                    let site = site.to_ascii_lowercase();
                    if store.site(&site).await?.is_none() {
                        return Err(usage(format!("site: unknown site {site:?}")));
                    }
                    let secret = match secret.strip_prefix("env:") {
                        Some(var) => std::env::var(var).map_err(|_| {
                            usage(format!("--secret: environment variable {var} is not set"))
                        })?,
                        None => secret,
                    };
                    if secret.is_empty() {
                        return Err(usage("--secret: must not be empty"));
                    }
                    store
                        .put_webhook_secret(&site, provider.as_str(), &secret)
                        .await?;
                }
                WebhooksAction::List => {
                    for (site, provider) in store.webhook_providers().await? {
                        out(json!({ "site": site, "provider": provider }))?;
                    }
                }
                WebhooksAction::Remove { site, provider } => {
                    let provider = provider_of(&provider)?;
                    if !store
                        .remove_webhook_secret(&site.to_ascii_lowercase(), provider.as_str())
                        .await?
                    {
                        return Err(usage(format!("no {provider} secret for {site:?}")));
                    }
                }
            }
            store.close().await;
            Ok(())
        }
        Command::Erase {
            data_dir,
            site,
            visitor,
            all,
        } => {
            let (store, _) = open_existing(&data_dir).await?;
            let site = site.to_ascii_lowercase();
            if store.site(&site).await?.is_none() {
                return Err(usage(format!("--site: unknown site {site:?}")));
            }
            let scope = match (visitor, all) {
                (Some(v), false) => EraseScope::Visitor(v),
                _ => EraseScope::All,
            };
            let n = store.erase(&site, scope).await?;
            store.close().await;
            out(format_args!("erased {n} events"))?;
            Ok(())
        }
    }
}

/// One chunk of prepared lines: its sequence number, the events (encoded for
/// storage), and the rejected lines' messages.
type Prepared = (u64, PreparedEvents, Vec<String>);

/// A line as read: NDJSON bytes (checked and parsed by a worker), or a CSV record
/// already parsed; with the bytes its event id is derived from.
enum Raw {
    Json(Vec<u8>),
    Parsed(Box<Result<Hit, beacon_core::ValidationError>>, Vec<u8>),
}

impl Raw {
    /// The line's hit, or why it is not one.
    fn hit(self) -> (Result<Hit, beacon_core::ValidationError>, Vec<u8>) {
        match self {
            Raw::Json(bytes) => {
                let hit = match std::str::from_utf8(&bytes) {
                    Ok(text) => Hit::from_json(text.as_bytes()),
                    Err(e) => Err(beacon_core::ValidationError::new(
                        "hit",
                        format!("is not valid UTF-8 (at byte {})", e.valid_up_to()),
                    )),
                };
                (hit, bytes)
            }
            Raw::Parsed(hit, bytes) => (*hit, bytes),
        }
    }
}

/// Reads lines into chunks on this thread; a worker per core parses, validates,
/// enriches, identifies and encodes whole chunks, and sends them (numbered, for the
/// committer to keep their order) to the committer.
fn produce(
    pipeline: &Pipeline,
    runtime: &tokio::runtime::Handle,
    reader: Box<dyn BufRead + Send>,
    format: Format,
    site: Option<&str>,
    tx: tokio::sync::mpsc::Sender<Result<Prepared, Fail>>,
) {
    const CHUNK: usize = 4096;
    let ctx = ValidationContext::import(pipeline.now());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (work, jobs) = std::sync::mpsc::sync_channel::<(u64, Vec<(u64, Raw)>)>(threads);
    let jobs = std::sync::Mutex::new(jobs);
    let prepare = |lines: Vec<(u64, Raw)>| -> Result<(PreparedEvents, Vec<String>), Fail> {
        // One trip into the runtime per chunk, not per line.
        let (events, errors) = runtime.block_on(async {
            let (mut events, mut errors) = (Vec::with_capacity(lines.len()), Vec::new());
            let mut sites = std::collections::HashMap::new();
            for (line_no, raw) in lines {
                let (parsed, bytes) = raw.hit();
                let id = pipeline::EventId::Line(line_no, &bytes);
                let prepared = match parsed {
                    Ok(h) => pipeline.prepare(h, &ctx, site, None, id, &mut sites).await,
                    Err(e) => Err(e.into()),
                };
                match prepared {
                    Ok(e) => events.push(e),
                    // The store failing is no fault of the line: the import stops.
                    Err(pipeline::Rejection::Store(e)) => {
                        return Err(Fail(1, format!("import failed: {e}")))
                    }
                    Err(e) => errors.push(format!("line {line_no}: {e}")),
                }
            }
            Ok((events, errors))
        })?;
        let encoded = pipeline
            .events
            .prepare(events)
            .map_err(|e| Fail(1, format!("import failed: {e}")))?;
        Ok((encoded, errors))
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (jobs, tx, prepare) = (&jobs, &tx, &prepare);
            s.spawn(move || loop {
                let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((seq, lines)) = job else { break };
                let done = prepare(lines).map(|(events, errors)| (seq, events, errors));
                if tx.blocking_send(done).is_err() {
                    break;
                }
            });
        }
        let mut seq = 0u64;
        let mut send = |chunk: Vec<(u64, Raw)>| {
            let sent = work.send((seq, chunk)).is_ok();
            seq += 1;
            sent
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        match format {
            Format::Ndjson => {
                // Bytes, not text: a line that is not UTF-8 is a rejected line.
                let mut reader = reader;
                let mut line_no = 0u64;
                loop {
                    let mut line = Vec::new();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(Fail(
                                1,
                                format!("reading line {}: {e}", line_no + 1),
                            )));
                            return;
                        }
                    }
                    line_no += 1;
                    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        line.pop();
                    }
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    chunk.push((line_no, Raw::Json(line)));
                    if chunk.len() >= CHUNK && !send(std::mem::take(&mut chunk)) {
                        return;
                    }
                }
            }
            Format::Csv => {
                let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
                let headers = match r.headers() {
                    Ok(h) => h.clone(),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(usage(format!("csv header: {e}"))));
                        return;
                    }
                };
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
                                .map_err(|e| {
                                    beacon_core::ValidationError::new(
                                        "hit",
                                        format!("is not valid UTF-8 ({e})"),
                                    )
                                })
                                .and_then(|rec| Hit::from_fields(headers.iter().zip(rec.iter())));
                            (hit, bytes)
                        }
                        Err(e) => (
                            Err(beacon_core::ValidationError::new("hit", e.to_string())),
                            Vec::new(),
                        ),
                    };
                    chunk.push((line_no, Raw::Parsed(Box::new(parsed), bytes)));
                    if chunk.len() >= CHUNK && !send(std::mem::take(&mut chunk)) {
                        return;
                    }
                }
            }
        }
        if !chunk.is_empty() {
            send(chunk);
        }
        // Dropping the sender (on return) ends the workers once the queue is empty.
        drop(work);
    });
}

/// Imports lines: chunks are prepared on every core while the previous chunk is
/// committed; every event counted is committed before this returns.
async fn import(
    pipeline: Arc<Pipeline>,
    reader: Box<dyn BufRead + Send>,
    format: Format,
    site: Option<String>,
) -> Result<(u64, u64), Fail> {
    let progress = std::io::stderr().is_terminal();
    let (mut imported, mut rejected) = (0u64, 0u64);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, mut rx) = tokio::sync::mpsc::channel(threads * 2);
    let producer = {
        let pipeline = Arc::clone(&pipeline);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            produce(&pipeline, &runtime, reader, format, site.as_deref(), tx)
        })
    };
    // Chunks arrive in any order; they are committed in the order of the input.
    let mut waiting = std::collections::BTreeMap::new();
    let mut next = 0u64;
    while let Some(prepared) = rx.recv().await {
        let (seq, events, errors) = prepared?;
        waiting.insert(seq, (events, errors));
        while let Some((events, errors)) = waiting.remove(&next) {
            next += 1;
            for e in &errors {
                eprintln!("{e}");
            }
            rejected += errors.len() as u64;
            imported += pipeline.events.append_prepared(events).await?.stored as u64;
            if progress {
                eprint!("\rimported {imported}, rejected {rejected}");
            }
        }
    }
    producer
        .await
        .map_err(|e| Fail(1, format!("import failed: {e}")))?;
    if progress {
        eprint!("\r");
    }
    Ok((imported, rejected))
}
