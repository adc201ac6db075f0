//! `beacon`: the reference server and command line (contract section 1).

/// mimalloc: glibc's allocator spent a quarter of an import in malloc and free
/// (consolidation of freed chunks across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod config;
mod http;
mod openapi;
mod outgoing;

use beacon_core::{
    Agency, Analytics, ApiToken, Clock, ConfigStore, EraseScope, EventStore, Funnel, GoalsRequest,
    Hit, HookEvent, ImportError, ImportFormat, IngestMode, Note, OsRandom, Pipeline, Query, Reach,
    Role, Scope, Site, SystemClock, TrustedProxies, Tz, User, ValidationContext, Webhook,
    WebhookPolicy, MAX_SESSION_VISITORS, OWNER_AGENCY,
};
use beacon_enrich::{flat_json, Enricher, GeoDatabases, GeoKind};
use beacon_storage_sqlite::SqliteStore;
use clap::{Parser, Subcommand, ValueEnum};
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
    /// Runs the HTTP server. Every setting comes from its flag, else its `BEACON_*`
    /// environment variable, else the `--config` file (TOML, the flags' names with
    /// underscores), else the default.
    Serve {
        /// A TOML file of settings (`listen = "0.0.0.0:8000"`, `queue = 4096`, ...).
        #[arg(long, env = "BEACON_CONFIG")]
        config: Option<PathBuf>,
        /// [default: ./beacon-data]
        #[arg(long, env = "BEACON_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// [default: 127.0.0.1:8000]
        #[arg(long, env = "BEACON_LISTEN")]
        listen: Option<String>,
        /// Proxies whose X-Forwarded-For is believed (repeat the flag; comma-separated
        /// in BEACON_TRUSTED_PROXIES).
        #[arg(
            long = "trusted-proxy",
            env = "BEACON_TRUSTED_PROXIES",
            value_delimiter = ','
        )]
        trusted_proxies: Vec<std::net::IpAddr>,
        #[arg(long, env = "BEACON_GEOIP_CITY")]
        geoip_city: Option<PathBuf>,
        #[arg(long, env = "BEACON_GEOIP_ASN")]
        geoip_asn: Option<PathBuf>,
        /// Requests waiting to be committed before new ones are answered 503
        /// [default: 4096].
        #[arg(long, env = "BEACON_QUEUE")]
        queue: Option<usize>,
        /// Most visitors whose open sessions are kept in memory; past it, those
        /// soonest to expire are forgotten (every 10 s) [default: 1000000].
        #[arg(long, env = "BEACON_SESSION_VISITORS")]
        session_visitors: Option<usize>,
        /// Seconds a read (query, funnel, goals, realtime) may take before it is
        /// stopped and answered 503 [default: 10].
        #[arg(long, env = "BEACON_READ_BUDGET")]
        read_budget: Option<f64>,
        /// Reads running at once [default: one per core].
        #[arg(long, env = "BEACON_READ_SLOTS")]
        read_slots: Option<usize>,
        /// Connections open at once; past it, new ones are closed [default: 10000].
        #[arg(long, env = "BEACON_MAX_CONNECTIONS")]
        max_connections: Option<usize>,
        /// Seconds a client may take to send a request's headers before its
        /// connection is closed [default: 10].
        #[arg(long, env = "BEACON_HEADER_READ_TIMEOUT")]
        header_read_timeout: Option<f64>,
        /// Pages on any host may send any site's hits (by default a page's Origin,
        /// else its Referer, must be one of the site's hosts; server-side calls
        /// without either, or with a write token, are always taken).
        #[arg(long, env = "BEACON_ANY_ORIGIN")]
        any_origin: bool,
        /// Outgoing webhooks may reach loopback, private and link-local addresses
        /// (refused by default: a site's owner could otherwise make the server call
        /// into its own network).
        #[arg(long, env = "BEACON_WEBHOOKS_ALLOW_PRIVATE")]
        webhooks_allow_private: bool,
        /// Seconds before a failed webhook delivery is tried again; doubled after
        /// each failure, at most an hour [default: 10].
        #[arg(long, env = "BEACON_WEBHOOK_RETRY_BASE")]
        webhook_retry_base: Option<f64>,
    },
    /// Imports hits (one per line) through the live pipeline.
    Import {
        #[command(flatten)]
        data: DataDir,
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
        #[command(flatten)]
        data: DataDir,
        /// The query JSON, or - for standard input.
        json: String,
    },
    /// Answers a funnel (contract section 5); prints the response JSON.
    Funnel {
        #[command(flatten)]
        data: DataDir,
        /// The funnel JSON, or - for standard input.
        json: String,
    },
    /// Counts goal conversions: `{"site", "date_range", "goals": [{"name", "page"|"event"|"attribute", "value"}]}`.
    Goals {
        #[command(flatten)]
        data: DataDir,
        /// The goals JSON, or - for standard input.
        json: String,
    },
    /// Manages outgoing webhooks: a site's endpoints told of visitor.created,
    /// goal.completed and purchase.created, each delivery signed.
    Hooks {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Prints the OpenAPI 3.1 document of the HTTP API (as `GET /api/openapi.json`).
    Openapi,
    /// Manages payment-provider webhook secrets (stripe, lemonsqueezy, polar, shopify).
    Webhooks {
        #[command(flatten)]
        data: DataDir,
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
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        action: SitesAction,
    },
    /// Manages agencies: accounts that own sites.
    Agencies {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        action: AgenciesAction,
    },
    /// Manages API tokens (`Authorization: Bearer` for /api/v1).
    Tokens {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        action: TokensAction,
    },
    /// Manages dashboard users (log in at POST /api/v1/login).
    Users {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Shares a site read-only at an unguessable address; prints its path
    /// (`/share/<slug>`).
    Share {
        #[command(flatten)]
        data: DataDir,
        /// The site (not with --list or --revoke).
        #[arg(required_unless_present_any = ["list", "revoke"])]
        site: Option<String>,
        /// A password the page asks for (at least 10 characters; `env:NAME` reads it
        /// from the environment).
        #[arg(long)]
        password: Option<String>,
        /// Lists the shares as JSON lines.
        #[arg(long, conflicts_with_all = ["site", "revoke", "password"])]
        list: bool,
        /// Revokes the share with this slug.
        #[arg(long, conflicts_with_all = ["site", "password"])]
        revoke: Option<String>,
    },
    /// Erases every site's events older than its retention now (the server does
    /// it every hour); prints what each site lost as JSON lines.
    Retention {
        #[command(flatten)]
        data: DataDir,
    },
    /// Manages timeline notes.
    Notes {
        #[command(flatten)]
        data: DataDir,
        #[command(subcommand)]
        action: NotesAction,
    },
    /// Erases a visitor's events, or all of a site's (GDPR).
    Erase {
        #[command(flatten)]
        data: DataDir,
        #[arg(long)]
        site: String,
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        visitor: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

/// The embedded store's directory, as every command but `serve` takes it (`serve`
/// also reads it from `--config`).
#[derive(clap::Args)]
struct DataDir {
    #[arg(
        long,
        default_value = "./beacon-data",
        global = true,
        env = "BEACON_DATA_DIR"
    )]
    data_dir: PathBuf,
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
        /// The agency that owns it (default: the owner agency).
        #[arg(long)]
        agency: Option<String>,
        /// Days of events kept (30 to 1830; default 730).
        #[arg(long, default_value_t = 730)]
        retention_days: u32,
    },
    /// Lists sites as JSON lines.
    List,
    /// Removes a site and its events.
    Remove { name: String },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Adds (or replaces) a user.
    Add {
        email: String,
        /// Their agency (default: the owner agency).
        #[arg(long)]
        agency: Option<String>,
        /// `admin`, `user` or `viewer`.
        #[arg(long, default_value = "admin")]
        role: String,
        /// At least 10 characters; read from an environment variable when it starts
        /// with `env:` (`env:BEACON_PASSWORD`).
        #[arg(long)]
        password: String,
    },
    /// Lists users as JSON lines (never a password).
    List,
    /// Removes a user and ends their sessions.
    Remove { email: String },
}

#[derive(Subcommand)]
enum NotesAction {
    /// Adds a note to a site's timeline; prints it as JSON.
    Add {
        site: String,
        /// The day (YYYY-MM-DD).
        #[arg(long)]
        date: chrono::NaiveDate,
        #[arg(long)]
        text: String,
        /// A tag (repeat the flag for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Lists a site's notes as JSON lines, by date.
    List { site: String },
    /// Removes a note.
    Remove { site: String, id: String },
}

/// An agency's plan and retention, as `agencies add` and `agencies set` take them.
#[derive(clap::Args)]
struct PlanArgs {
    /// The plan's name [default: unlimited].
    #[arg(long)]
    plan: Option<String>,
    /// The most sites the agency may have.
    #[arg(long)]
    max_sites: Option<u32>,
    /// The most events its sites may take in a calendar month (UTC) over live ingest.
    #[arg(long)]
    monthly_events: Option<u64>,
    /// The most days any of its sites keeps events (30 to 1830; a site keeps the
    /// shorter of its own retention and this).
    #[arg(long)]
    retention_days: Option<u32>,
}

impl PlanArgs {
    fn apply(self, a: &mut Agency) {
        if let Some(p) = self.plan {
            a.plan.name = p;
        }
        if self.max_sites.is_some() {
            a.plan.max_sites = self.max_sites;
        }
        if self.monthly_events.is_some() {
            a.plan.monthly_events = self.monthly_events;
        }
        if self.retention_days.is_some() {
            a.retention_days = self.retention_days;
        }
    }
}

#[derive(Subcommand)]
enum AgenciesAction {
    /// Adds an agency.
    Add {
        name: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Changes an agency's plan or retention.
    Set {
        name: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Lists agencies as JSON lines.
    List,
    /// Removes an agency with everything it has: its sites and their events,
    /// users, tokens, shares, notes and webhooks.
    Remove {
        name: String,
        /// Confirms the removal (required: it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum HooksAction {
    /// Adds an outgoing webhook to a site; prints it with its signing secret, once.
    Add {
        site: String,
        url: String,
        /// Comma-separated: visitor.created, goal.completed, purchase.created
        /// [default: all].
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Allows a loopback or private target (as `serve --webhooks-allow-private`).
        #[arg(long)]
        allow_private: bool,
    },
    /// Lists outgoing webhooks as JSON lines (never their secrets).
    List {
        #[arg(long)]
        site: Option<String>,
    },
    /// Re-enables a webhook (clears its failure count).
    Enable { id: String },
    /// Removes a webhook.
    Remove { id: String },
}

#[derive(Subcommand)]
enum TokensAction {
    /// Makes a token and prints it once, on standard output.
    Create {
        /// Every site of this agency.
        #[arg(long, conflicts_with = "site", required_unless_present = "site")]
        agency: Option<String>,
        /// This site only.
        #[arg(long)]
        site: Option<String>,
        /// `read` (queries) or `write` (also server-side ingest and configuration).
        #[arg(long)]
        scope: String,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Lists tokens as JSON lines (prefix, agency, reach, scope, dates; never a secret).
    List,
    /// Revokes the token whose secret starts `bk_<PREFIX>`.
    Revoke { prefix: String },
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
async fn open_existing(dir: &Path) -> Result<Arc<SqliteStore>, Fail> {
    if !dir.join("beacon.sqlite").is_file() {
        return Err(usage(format!(
            "--data-dir: no store at {} (`beacon sites add` or `beacon import` make one)",
            dir.display()
        )));
    }
    open(dir).await
}

/// The embedded store in `dir`.
/// A store with no token yet (a first run): the owner agency and a token over it,
/// printed once with how to use it.
async fn first_run(
    store: &dyn ConfigStore,
    now: chrono::DateTime<chrono::Utc>,
    addr: std::net::SocketAddr,
) -> Result<(), Fail> {
    if !store.tokens().await?.is_empty() {
        return Ok(());
    }
    let agency = owner_agency(store, now).await?;
    let issued = ApiToken::issue(&OsRandom, now, &agency, Reach::Agency, Scope::Write, None);
    store.put_token(&issued.token).await?;
    let secret = &issued.secret;
    // The dashboard's login: an admin of the owner agency, with a random password
    // shown once (a later `beacon users add` with the same address replaces it).
    let mut login = String::new();
    if store.users().await?.is_empty() {
        let mut bytes = [0u8; 10];
        beacon_core::RandomSource::fill(&OsRandom, &mut bytes);
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let user = User::new(OWNER_EMAIL, &agency, Role::Admin, &password, &OsRandom, now)?;
        store.put_user(&user).await?;
        login = format!(
            "\nthe dashboard: open http://{addr}/ and log in as {OWNER_EMAIL} with the password {password}\n\
             (shown once; `beacon users add {OWNER_EMAIL} --role admin --password env:PASSWORD` sets another)\n"
        );
    }
    out(format!(
        "first run: made the owner agency and an API token for it (shown once; \
         `beacon tokens create` makes more, `beacon tokens revoke {}` ends this one):\n\n  {secret}\n\n\
         curl -H 'Authorization: Bearer {secret}' -X POST http://{addr}/api/v1/query \\\n  \
         -d '{{\"site\":\"example.com\",\"metrics\":[\"visitors\"]}}'\n{login}",
        issued.token.prefix
    ))
}

/// The address of the admin the first run makes.
const OWNER_EMAIL: &str = "owner@beacon.local";

/// The owner agency, created when missing (a single-user install's sites are its).
async fn owner_agency(
    store: &dyn ConfigStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Fail> {
    if store.agency(OWNER_AGENCY).await?.is_none() {
        store.put_agency(Agency::new(OWNER_AGENCY, now)).await?;
    }
    Ok(OWNER_AGENCY.to_owned())
}

async fn open(dir: &Path) -> Result<Arc<SqliteStore>, Fail> {
    // A store that cannot be read is an unusable argument (exit 2), not a failure.
    Ok(Arc::new(SqliteStore::open(dir).await.map_err(
        |e| match e {
            beacon_core::StoreError::Corrupt { .. } => usage(e.to_string()),
            e => Fail(1, e.to_string()),
        },
    )?))
}

/// Seconds from a flag: positive, at most an hour.
fn seconds(flag: &str, s: f64) -> Result<std::time::Duration, Fail> {
    if s.is_finite() && s > 0.0 {
        Ok(std::time::Duration::from_secs_f64(s.min(3600.0)))
    } else {
        Err(usage(format!(
            "--{flag}: must be a positive number of seconds"
        )))
    }
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Serve {
            config,
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
            any_origin,
            webhooks_allow_private,
            webhook_retry_base,
        } => {
            let file = match &config {
                Some(path) => config::FileConfig::load(path).map_err(usage)?,
                None => config::FileConfig::default(),
            };
            let data_dir = data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./beacon-data"));
            let listen = listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
            let trusted_proxies = if trusted_proxies.is_empty() {
                file.trusted_proxies.unwrap_or_default()
            } else {
                trusted_proxies
            };
            let geoip_city = geoip_city.or(file.geoip_city);
            let geoip_asn = geoip_asn.or(file.geoip_asn);
            let enricher = Enricher::builder()
                .geo(geo(geoip_city.as_deref(), geoip_asn.as_deref())?)
                .build()?;
            let addr: std::net::SocketAddr = listen
                .parse()
                .map_err(|e| usage(format!("--listen {listen:?}: {e}")))?;
            let read_budget = read_budget.or(file.read_budget).unwrap_or(10.0);
            let header_read_timeout = header_read_timeout
                .or(file.header_read_timeout)
                .unwrap_or(10.0);
            let options = http::Options {
                addr,
                trusted_proxies: TrustedProxies::new(trusted_proxies),
                read_budget: seconds("read-budget", read_budget)?,
                read_slots: read_slots
                    .or(file.read_slots)
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                max_connections: max_connections.or(file.max_connections).unwrap_or(10_000),
                header_read_timeout: seconds("header-read-timeout", header_read_timeout)?,
                any_origin: any_origin || file.any_origin.unwrap_or(false),
            };
            let webhooks = WebhookPolicy {
                allow_private: webhooks_allow_private
                    || file.webhooks_allow_private.unwrap_or(false),
                base_delay: seconds(
                    "webhook-retry-base",
                    webhook_retry_base
                        .or(file.webhook_retry_base)
                        .unwrap_or(10.0),
                )?,
                ..WebhookPolicy::default()
            };
            let store = open(&data_dir).await?;
            first_run(store.as_ref(), clock.now(), addr).await?;
            let pipeline = Pipeline::builder(Arc::clone(&store))
                .enricher(enricher)
                .clock(clock)
                .webhooks(Arc::new(outgoing::HttpTransport), webhooks)
                .queue(queue.or(file.queue).unwrap_or(4096))
                .session_visitors(
                    session_visitors
                        .or(file.session_visitors)
                        .unwrap_or(MAX_SESSION_VISITORS),
                )
                .build()?;
            http::serve(pipeline, options).await?;
            store.close().await;
            Ok(())
        }
        Command::Import {
            data: DataDir { data_dir },
            format,
            site,
            geoip_city,
            geoip_asn,
            file,
        } => {
            // The file is opened (and sized) by the importer; a missing one is a usage
            // error before anything else is opened.
            if file != "-" {
                std::fs::File::open(&file).map_err(|e| usage(format!("{file}: {e}")))?;
            }
            let enricher = Enricher::builder()
                .geo(geo(geoip_city.as_deref(), geoip_asn.as_deref())?)
                .build()?;
            let store = open(&data_dir).await?;
            let pipeline = Pipeline::builder(Arc::clone(&store))
                .enricher(enricher)
                .clock(clock)
                .upkeep(false)
                .build()?;
            let mut importer = pipeline
                .importer()
                .format(match format {
                    Format::Ndjson => ImportFormat::Ndjson,
                    Format::Csv => ImportFormat::Csv,
                })
                .on_rejected(|r| eprintln!("{r}"));
            if let Some(s) = site {
                importer = importer.site(s).create_site(true);
            }
            let progress = std::io::stderr().is_terminal();
            if progress {
                importer = importer
                    .on_progress(|r| eprint!("\rimported {}, rejected {}", r.imported, r.rejected));
            }
            let report = match file.as_str() {
                "-" => {
                    importer
                        .run(std::io::BufReader::new(std::io::stdin()))
                        .await
                }
                path => importer.run_file(path).await,
            };
            let report = report.map_err(|e| match e {
                ImportError::Header(_) => usage(e.to_string()),
                e => Fail(1, e.to_string()),
            })?;
            if progress {
                eprint!("\r");
            }
            pipeline.shutdown().await;
            store.close().await;
            out(format_args!(
                "imported {}, rejected {}",
                report.imported, report.rejected
            ))?;
            Ok(())
        }
        Command::Query {
            data: DataDir { data_dir },
            json,
        } => {
            let query = parsed(Query::from_json(&read_arg(&json)?), "query")?;
            let store = open_existing(&data_dir).await?;
            let started = std::time::Instant::now();
            let result = Analytics::new(&*store, &*store)
                .query(&query, clock.now())
                .await;
            answer(result.map(|r| r.to_json(started.elapsed().as_millis() as u64)))
        }
        Command::Funnel {
            data: DataDir { data_dir },
            json,
        } => {
            let f = parsed(Funnel::from_json(&read_arg(&json)?), "funnel")?;
            let store = open_existing(&data_dir).await?;
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
        Command::Sites {
            data: DataDir { data_dir },
            action,
        } => {
            // Adding a site makes a store; listing and removing read one.
            let store = match action {
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
                    agency,
                    retention_days,
                } => {
                    let agency = match agency {
                        None => owner_agency(store.as_ref(), clock.now()).await?,
                        Some(a) => {
                            store
                                .agency(&a)
                                .await?
                                .ok_or_else(|| {
                                    usage(format!(
                                        "--agency: no agency {a:?} (beacon agencies add)"
                                    ))
                                })?
                                .name
                        }
                    };
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
                    site.agency = agency;
                    site.retention_days = retention_days;
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
        Command::Goals {
            data: DataDir { data_dir },
            json,
        } => {
            let req = parsed(GoalsRequest::from_json(&read_arg(&json)?), "goals request")?;
            let store = open_existing(&data_dir).await?;
            answer(
                Analytics::new(&*store, &*store)
                    .goals(&req, clock.now())
                    .await
                    .map(|r| r.to_json()),
            )
        }
        Command::Share {
            data: DataDir { data_dir },
            site,
            password,
            list,
            revoke,
        } => {
            if list {
                let store = open_existing(&data_dir).await?;
                for sh in store.shares().await? {
                    out(
                        json!({"path": format!("/share/{}", sh.slug), "site": sh.site,
                               "password": sh.password_hash.is_some(), "revoked": sh.revoked,
                               "created": sh.created}),
                    )?;
                }
                store.close().await;
                return Ok(());
            }
            if let Some(slug) = revoke {
                let store = open_existing(&data_dir).await?;
                let slug = slug.trim_start_matches("/share/");
                let mut sh = store
                    .share(slug)
                    .await?
                    .ok_or_else(|| usage(format!("no share {slug:?}")))?;
                sh.revoked = true;
                store.put_share(&sh).await?;
                store.close().await;
                return Ok(());
            }
            let site = site.unwrap_or_default().to_ascii_lowercase();
            let password = match password.as_deref().map(|p| (p, p.strip_prefix("env:"))) {
                Some((_, Some(var))) => Some(std::env::var(var).map_err(|_| {
                    usage(format!("--password: environment variable {var} is not set"))
                })?),
                Some((p, None)) => Some(p.to_owned()),
                None => None,
            };
            let store = open_existing(&data_dir).await?;
            if store.site(&site).await?.is_none() {
                return Err(usage(format!("site: unknown site {site:?}")));
            }
            let sh = beacon_core::Share::new(site, password.as_deref(), &OsRandom, clock.now())
                .map_err(|e| usage(e.to_string()))?;
            store.put_share(&sh).await?;
            store.close().await;
            out(format!("/share/{}", sh.slug))?;
            Ok(())
        }
        Command::Retention {
            data: DataDir { data_dir },
        } => {
            let store = open_existing(&data_dir).await?;
            let erased =
                beacon_core::apply_retention(store.as_ref(), store.as_ref(), clock.now()).await?;
            let total: u64 = erased.iter().map(|(_, n)| n).sum();
            for (site, n) in erased {
                out(json!({"site": site, "erased": n}))?;
            }
            store.close().await;
            eprintln!("erased {total} events");
            Ok(())
        }
        Command::Users {
            data: DataDir { data_dir },
            action,
        } => {
            match action {
                UsersAction::Add {
                    email,
                    agency,
                    role,
                    password,
                } => {
                    let role = Role::parse(&role).ok_or_else(|| {
                        usage(format!("--role: {role:?} is not admin, user or viewer"))
                    })?;
                    let password = match password.strip_prefix("env:") {
                        Some(var) => std::env::var(var).map_err(|_| {
                            usage(format!("--password: environment variable {var} is not set"))
                        })?,
                        None => password,
                    };
                    let store = open(&data_dir).await?;
                    let agency = match agency {
                        None => owner_agency(store.as_ref(), clock.now()).await?,
                        Some(a) => {
                            store
                                .agency(&a)
                                .await?
                                .ok_or_else(|| usage(format!("--agency: no agency {a:?}")))?
                                .name
                        }
                    };
                    let user = User::new(&email, agency, role, &password, &OsRandom, clock.now())
                        .map_err(|e| usage(e.to_string()))?;
                    store.put_user(&user).await?;
                    store.close().await;
                }
                UsersAction::List => {
                    let store = open_existing(&data_dir).await?;
                    for u in store.users().await? {
                        out(
                            json!({"email": u.email, "agency": u.agency, "role": u.role, "created": u.created}),
                        )?;
                    }
                    store.close().await;
                }
                UsersAction::Remove { email } => {
                    let store = open_existing(&data_dir).await?;
                    if !store.remove_user(&email.to_ascii_lowercase()).await? {
                        return Err(usage(format!("no user {email:?}")));
                    }
                    store.close().await;
                }
            }
            Ok(())
        }
        Command::Notes {
            data: DataDir { data_dir },
            action,
        } => {
            let store = open_existing(&data_dir).await?;
            let known = |s: &str| s.to_ascii_lowercase();
            match action {
                NotesAction::Add {
                    site,
                    date,
                    text,
                    tags,
                } => {
                    let site = store
                        .site(&known(&site))
                        .await?
                        .ok_or_else(|| usage(format!("no site {site:?}")))?;
                    let now = clock.now();
                    let note = Note {
                        id: beacon_core::backend::new_event_id(now, &OsRandom).to_string(),
                        site: site.domain,
                        date,
                        text,
                        tags,
                        created: now,
                        updated: now,
                    };
                    store
                        .put_note(&note)
                        .await
                        .map_err(|e| usage(e.to_string()))?;
                    out(serde_json::to_string(&note)?)?;
                }
                NotesAction::List { site } => {
                    for n in store.notes(&known(&site), None, None).await? {
                        out(serde_json::to_string(&n)?)?;
                    }
                }
                NotesAction::Remove { site, id } => {
                    if !store.remove_note(&known(&site), &id).await? {
                        return Err(usage(format!("no note {id:?} on {site:?}")));
                    }
                }
            }
            store.close().await;
            Ok(())
        }
        Command::Agencies {
            data: DataDir { data_dir },
            action,
        } => {
            match action {
                AgenciesAction::Add { name, plan } => {
                    let store = open(&data_dir).await?;
                    if store.agency(&name).await?.is_some() {
                        return Err(usage(format!("agency {name:?} exists")));
                    }
                    let mut agency = Agency::new(name, clock.now());
                    plan.apply(&mut agency);
                    store
                        .put_agency(agency)
                        .await
                        .map_err(|e| usage(e.to_string()))?;
                    store.close().await;
                }
                AgenciesAction::Set { name, plan } => {
                    let store = open_existing(&data_dir).await?;
                    let mut agency = store
                        .agency(&name)
                        .await?
                        .ok_or_else(|| usage(format!("no agency {name:?}")))?;
                    plan.apply(&mut agency);
                    store
                        .put_agency(agency.clone())
                        .await
                        .map_err(|e| usage(e.to_string()))?;
                    store.close().await;
                    out(serde_json::to_string(&agency)?)?;
                }
                AgenciesAction::Remove { name, yes } => {
                    if !yes {
                        return Err(usage(format!(
                            "removing {name:?} erases its sites' events, users and tokens: add --yes"
                        )));
                    }
                    let store = open_existing(&data_dir).await?;
                    let removed = beacon_core::remove_agency(&*store, &*store, &name)
                        .await?
                        .ok_or_else(|| usage(format!("no agency {name:?}")))?;
                    store.close().await;
                    let sites: Vec<Value> = removed
                        .sites
                        .iter()
                        .map(|(s, n)| json!({"site": s, "erased": n}))
                        .collect();
                    out(
                        json!({"agency": name, "sites": sites, "users": removed.users, "tokens": removed.tokens}),
                    )?;
                }
                AgenciesAction::List => {
                    let store = open_existing(&data_dir).await?;
                    for a in store.agencies().await? {
                        out(serde_json::to_string(&a)?)?;
                    }
                    store.close().await;
                }
            }
            Ok(())
        }
        Command::Tokens {
            data: DataDir { data_dir },
            action,
        } => {
            match action {
                TokensAction::Create {
                    agency,
                    site,
                    scope,
                    expires_days,
                } => {
                    let scope = Scope::parse(&scope)
                        .ok_or_else(|| usage(format!("--scope: {scope:?} is not read or write")))?;
                    let store = open(&data_dir).await?;
                    let (agency, reach) = match (agency, site) {
                        (Some(a), _) => {
                            let known = match store.agency(&a).await? {
                                Some(x) => x.name,
                                None if a == OWNER_AGENCY => {
                                    owner_agency(store.as_ref(), clock.now()).await?
                                }
                                None => return Err(usage(format!("--agency: no agency {a:?}"))),
                            };
                            (known, Reach::Agency)
                        }
                        (None, Some(s)) => {
                            let site = store
                                .site(&s.to_ascii_lowercase())
                                .await?
                                .ok_or_else(|| usage(format!("--site: no site {s:?}")))?;
                            (site.agency.clone(), Reach::Site(site.domain))
                        }
                        (None, None) => return Err(usage("--agency or --site is required")),
                    };
                    let now = clock.now();
                    let expires = expires_days.map(|d| now + chrono::Duration::days(i64::from(d)));
                    let issued = ApiToken::issue(&OsRandom, now, agency, reach, scope, expires);
                    store.put_token(&issued.token).await?;
                    store.close().await;
                    out(&issued.secret)?;
                }
                TokensAction::List => {
                    let store = open_existing(&data_dir).await?;
                    for t in store.tokens().await? {
                        out(json!({
                            "prefix": t.prefix, "agency": t.agency, "reach": t.reach,
                            "scope": t.scope, "created": t.created, "expires": t.expires,
                            "revoked": t.revoked, "last_used": t.last_used, "requests": t.requests,
                        }))?;
                    }
                    store.close().await;
                }
                TokensAction::Revoke { prefix } => {
                    let store = open_existing(&data_dir).await?;
                    let prefix = prefix.trim_start_matches("bk_");
                    if !store.revoke_token(prefix).await? {
                        return Err(usage(format!("no token {prefix:?}")));
                    }
                    store.close().await;
                }
            }
            Ok(())
        }
        Command::Webhooks {
            data: DataDir { data_dir },
            action,
        } => {
            let store = open_existing(&data_dir).await?;
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
        Command::Openapi => {
            out(serde_json::to_string_pretty(&http::openapi_document())?)?;
            Ok(())
        }
        Command::Hooks {
            data: DataDir { data_dir },
            action,
        } => {
            match action {
                HooksAction::Add {
                    site,
                    url,
                    events,
                    allow_private,
                } => {
                    let store = open_existing(&data_dir).await?;
                    let site = site.to_ascii_lowercase();
                    if store.site(&site).await?.is_none() {
                        return Err(usage(format!("unknown site {site:?}")));
                    }
                    let events =
                        HookEvent::parse_list(&events).map_err(|e| usage(e.to_string()))?;
                    let hook =
                        Webhook::new(&site, &url, events, allow_private, &OsRandom, clock.now())
                            .map_err(|e| usage(e.to_string()))?;
                    store.put_webhook(&hook).await?;
                    store.close().await;
                    let mut shown = http::hook_json(&hook);
                    shown["secret"] = hook.secret.into();
                    out(shown)?;
                }
                HooksAction::List { site } => {
                    let store = open_existing(&data_dir).await?;
                    let site = site.map(|s| s.to_ascii_lowercase());
                    for h in store.webhooks(site.as_deref()).await? {
                        out(http::hook_json(&h))?;
                    }
                    store.close().await;
                }
                HooksAction::Enable { id } => {
                    let store = open_existing(&data_dir).await?;
                    let mut hook = store
                        .webhook(&id)
                        .await?
                        .ok_or_else(|| usage(format!("no webhook {id:?}")))?;
                    hook.enabled = true;
                    hook.failure_count = 0;
                    store.put_webhook(&hook).await?;
                    store.close().await;
                }
                HooksAction::Remove { id } => {
                    let store = open_existing(&data_dir).await?;
                    let hook = store
                        .webhook(&id)
                        .await?
                        .ok_or_else(|| usage(format!("no webhook {id:?}")))?;
                    store.remove_webhook(&hook.site, &hook.id).await?;
                    store.close().await;
                }
            }
            Ok(())
        }
        Command::Erase {
            data: DataDir { data_dir },
            site,
            visitor,
            all,
        } => {
            let store = open_existing(&data_dir).await?;
            let site = site.to_ascii_lowercase();
            if store.site(&site).await?.is_none() {
                return Err(usage(format!("--site: unknown site {site:?}")));
            }
            let (scope, visitor) = match (visitor, all) {
                (Some(v), false) => (EraseScope::Visitor(v.clone()), Some(v)),
                _ => (EraseScope::All, None),
            };
            let n = store.erase(&site, scope).await?;
            // Pending webhook deliveries about them go too.
            let deliveries =
                beacon_core::forget_deliveries(&*store, &site, visitor.as_deref()).await?;
            store.close().await;
            if deliveries > 0 {
                eprintln!("dropped {deliveries} pending webhook deliveries");
            }
            out(format_args!("erased {n} events"))?;
            Ok(())
        }
    }
}
