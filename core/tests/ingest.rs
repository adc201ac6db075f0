//! The ingest pipeline through its public API: batches, back-pressure, shutdown,
//! a store that is down, the tracker (exactly once, the same errors as HTTP
//! ingest), and the importer.

use async_trait::async_trait;
use beacon_core::backend::{AppendReport, EventBatches, ScanRequest};
use beacon_core::{
    EraseScope, Event, EventStore, Hit, ImportFormat, IngestError, MemoryStore, Origin, Pipeline,
    Shape, Site, StoreError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const SITE: &str = "example.com";

fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.put_site_sync(Site::new(SITE)).unwrap();
    store
}

async fn stored(store: &dyn EventStore) -> u64 {
    store.stats().await.unwrap().events.unwrap()
}

fn hit(visitor: &str) -> Hit {
    Hit {
        site: Some(SITE.into()),
        kind: Some("pageview".into()),
        url: Some("https://example.com/".into()),
        visitor_id: Some(visitor.into()),
        ..Hit::default()
    }
}

/// What [`Gated`] does on its next appends.
#[derive(Default)]
struct Faults {
    /// Appends that fail (the store is down) before any succeeds.
    down: AtomicUsize,
    /// Appends that store the events and then fail (the answer is lost).
    lose_answer: AtomicUsize,
}

/// An event store in front of a [`MemoryStore`] whose appends wait for a permit
/// (when gated) and fail as [`Faults`] says.
struct Gated {
    inner: Arc<MemoryStore>,
    gate: Option<Arc<Semaphore>>,
    entered: Arc<Semaphore>,
    faults: Faults,
    appends: AtomicUsize,
    /// Each append's size, and each `reserve` hint.
    sizes: std::sync::Mutex<Vec<usize>>,
    reserved: std::sync::Mutex<Vec<(String, usize)>>,
}

impl Gated {
    fn new(inner: Arc<MemoryStore>, gated: bool) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gate: gated.then(|| Arc::new(Semaphore::new(0))),
            entered: Arc::new(Semaphore::new(0)),
            faults: Faults::default(),
            appends: AtomicUsize::new(0),
            sizes: Default::default(),
            reserved: Default::default(),
        })
    }

    fn open(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    fn pipeline(self: &Arc<Self>, queue: usize) -> Pipeline {
        Pipeline::builder_with(
            Arc::clone(self) as Arc<dyn EventStore>,
            Arc::clone(&self.inner) as Arc<dyn beacon_core::ConfigStore>,
        )
        .queue(queue)
        .build()
        .unwrap()
    }
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl EventStore for Gated {
    async fn append(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.sizes.lock().unwrap().push(events.len());
        self.entered.add_permits(1);
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        if take(&self.faults.down) {
            return Err(StoreError::unavailable(
                "append",
                Duration::from_secs(3),
                "disk full",
            ));
        }
        let report = self.inner.append(events).await?;
        if take(&self.faults.lose_answer) {
            return Err(StoreError::backend("append", "connection reset"));
        }
        Ok(report)
    }

    async fn scan(&self, req: &ScanRequest) -> Result<EventBatches<'_>, StoreError> {
        self.inner.scan(req).await
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        self.inner.erase(site, scope).await
    }

    async fn stats(&self) -> Result<beacon_core::backend::StoreStats, StoreError> {
        self.inner.stats().await
    }

    fn reserve(&self, site: &str, additional: usize) {
        self.reserved
            .lock()
            .unwrap()
            .push((site.to_owned(), additional));
        self.inner.reserve(site, additional);
    }
}

/// Five chunks and a bit: the workers refill the buffers of committed chunks, and
/// the store hears how many lines are still to come once the first is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_commits_each_line_once_and_tells_the_store_what_is_coming() {
    const CHUNK: usize = 16_384;
    let n = 5 * CHUNK + 7;
    let path = std::env::temp_dir().join(format!("beacon-import-{}.ndjson", std::process::id()));
    let mut file = String::new();
    for i in 0..n {
        file.push_str(&format!(
            r#"{{"site":"example.com","type":"pageview","url":"https://example.com/p/{i}","visitor_id":"v{}","timestamp":"2026-01-01T10:{:02}:{:02}.{:03}Z"}}"#,
            i % 500,
            i / 60_000 % 60,
            i / 1000 % 60,
            i % 1000
        ));
        file.push('\n');
    }
    std::fs::write(&path, &file).unwrap();
    let gated = Gated::new(store(), false);
    let pipeline = gated.pipeline(4096);
    let report = pipeline.importer().run_file(&path).await.unwrap();
    assert_eq!((report.imported, report.rejected), (n as u64, 0));
    {
        // A buffer refilled without being emptied would hand earlier lines over
        // again: chunks past their size, and more events appended than lines.
        let appends = gated.sizes.lock().unwrap();
        assert!(appends.iter().all(|&a| a <= CHUNK), "{appends:?}");
        assert_eq!(appends.iter().sum::<usize>(), n, "{appends:?}");
        // Every line is the same length give or take a few bytes: the estimate is
        // within two percent of the lines after the first chunk.
        let reserved = gated.reserved.lock().unwrap();
        assert_eq!(reserved.len(), 1, "{reserved:?}");
        let (site, rest) = &reserved[0];
        assert_eq!(site, SITE);
        let want = (n - CHUNK) as f64;
        assert!(
            (*rest as f64 - want).abs() < want / 50.0,
            "{rest} for {want}"
        );
    }
    assert_eq!(stored(gated.inner.as_ref()).await, n as u64);
    // Read again through the page cache: every line is there, whole, and held.
    let again = pipeline
        .importer()
        .direct_reads(false)
        .run_file(&path)
        .await
        .unwrap();
    assert_eq!((again.imported, again.rejected), (0, 0));
    std::fs::remove_file(&path).unwrap();
    pipeline.shutdown().await;
}

#[tokio::test]
async fn a_batch_with_a_bad_hit_stores_nothing_and_names_the_hit() {
    let store = store();
    let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
    let body = br#"[{"site":"example.com","type":"pageview","url":"https://example.com/","visitor_id":"a"},
                    {"site":"example.com","type":"pageview","url":"ftp://x","visitor_id":"a"}]"#;
    let err = pipeline
        .ingest_json(body, Shape::Batch, None)
        .await
        .unwrap_err();
    assert!(err.is_client_error());
    assert!(
        err.to_string()
            .starts_with("[1].url: must be an absolute http(s) URL"),
        "{err}"
    );
    assert_eq!(stored(store.as_ref()).await, 0);

    let good = br#"[{"site":"example.com","type":"pageview","url":"https://example.com/","visitor_id":"a"}]"#;
    let report = pipeline
        .ingest_json(good, Shape::Batch, None)
        .await
        .unwrap();
    assert_eq!((report.accepted, report.stored), (1, 1));
    assert_eq!(stored(store.as_ref()).await, 1);
    pipeline.shutdown().await;
}

#[tokio::test]
async fn an_unknown_site_and_bad_json_are_client_errors_naming_the_field() {
    let pipeline = Pipeline::builder(store()).build().unwrap();
    let mut h = hit("a");
    h.site = Some("nope.example".into());
    let err = pipeline.ingest(h, None).await.unwrap_err();
    assert!(matches!(err, IngestError::UnknownSite { .. }), "{err:?}");
    assert!(err.is_client_error());

    let err = pipeline
        .ingest_json(b"{", Shape::One, None)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("body: must be JSON"), "{err}");
    let err = pipeline
        .ingest_json(b"{}", Shape::Batch, None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "body: must be a JSON array of hits");
    let mut big = String::from("[");
    for i in 0..=beacon_core::MAX_BATCH {
        if i > 0 {
            big.push(',');
        }
        big.push_str("{}");
    }
    big.push(']');
    let err = pipeline
        .ingest_json(big.as_bytes(), Shape::Batch, None)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "body: at most 1000 hits per batch");
    pipeline.shutdown().await;
}

#[tokio::test]
async fn building_outside_a_runtime_is_an_error() {
    let result = std::thread::spawn(|| Pipeline::builder(store()).build().map(|_| ()))
        .join()
        .unwrap();
    assert!(matches!(result, Err(IngestError::NoRuntime)));
}

#[tokio::test]
async fn a_full_queue_answers_busy_and_loses_nothing_it_took() {
    let gated = Gated::new(store(), true);
    let pipeline = gated.pipeline(1);
    // The writer takes the first commit and waits in the store ...
    let p = pipeline.clone();
    let first = tokio::spawn(async move { p.ingest(hit("a"), None).await });
    gated.entered.acquire().await.unwrap().forget();
    // ... the second fills the queue ...
    let p = pipeline.clone();
    let second = tokio::spawn(async move { p.ingest(hit("b"), None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ... so the third is told at once.
    let third = pipeline.ingest(hit("c"), None).await.unwrap_err();
    assert!(matches!(third, IngestError::Busy), "{third:?}");
    assert!(third.retry_after().is_some());
    assert!(!third.is_client_error());

    gated.open();
    assert_eq!(first.await.unwrap().unwrap().stored, 1);
    assert_eq!(second.await.unwrap().unwrap().stored, 1);
    pipeline.shutdown().await;
    assert_eq!(stored(gated.inner.as_ref()).await, 2);
}

#[tokio::test]
async fn shutdown_stores_every_acknowledged_hit_and_then_refuses() {
    let gated = Gated::new(store(), true);
    let pipeline = gated.pipeline(1000);
    let mut calls = Vec::new();
    for i in 0..200 {
        let p = pipeline.clone();
        calls.push(tokio::spawn(async move {
            p.ingest(hit(&format!("v{}", i % 17)), None).await
        }));
    }
    gated.entered.acquire().await.unwrap().forget();
    let p = pipeline.clone();
    let stopping = tokio::spawn(async move { p.shutdown().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stopping.is_finished(), "shutdown waits for queued commits");
    gated.open();
    stopping.await.unwrap();
    let mut acknowledged = 0;
    for c in calls {
        if c.await.unwrap().is_ok() {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 200);
    assert_eq!(stored(gated.inner.as_ref()).await, 200);
    let err = pipeline.ingest(hit("late"), None).await.unwrap_err();
    assert!(matches!(err, IngestError::ShutDown), "{err:?}");
}

#[tokio::test]
async fn a_store_that_is_down_answers_unavailable_with_retry_after() {
    let gated = Gated::new(store(), false);
    gated.faults.down.store(1, Ordering::SeqCst);
    let pipeline = gated.pipeline(16);
    let err = pipeline.ingest(hit("a"), None).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{err:?}");
    assert!(!err.is_client_error());
    let (why, _) = pipeline.commits_failing().expect("commits are failing");
    assert!(why.contains("disk full"), "{why}");
    // The next commit succeeds and clears it.
    assert_eq!(pipeline.ingest(hit("a"), None).await.unwrap().stored, 1);
    assert!(pipeline.commits_failing().is_none());
    pipeline.shutdown().await;
    assert_eq!(stored(gated.inner.as_ref()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_events_are_stored_exactly_once_though_the_store_fails() {
    let gated = Gated::new(store(), false);
    // The store is down for two appends and loses the answer of two more: the
    // tracker retries the same events, and the store refuses the copies.
    gated.faults.down.store(2, Ordering::SeqCst);
    gated.faults.lose_answer.store(2, Ordering::SeqCst);
    let pipeline = gated.pipeline(64);
    let tracker = pipeline.tracker(SITE).await.unwrap();
    const N: usize = 100_000;
    let mut threads = Vec::new();
    for t in 0..4 {
        let tracker = tracker.clone();
        threads.push(std::thread::spawn(move || {
            let mut busy = 0u64;
            for i in 0..N / 4 {
                let who = tracker.visitor(format!("v{}", i % 1000));
                loop {
                    match who.event("click", [("n", (t * N + i).to_string())]) {
                        Ok(()) => break,
                        Err(IngestError::Busy) => {
                            busy += 1;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            busy
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let report = tracker.shutdown().await;
    assert_eq!(report.tracked, N as u64);
    assert_eq!(report.stored, N as u64, "{report:?}");
    assert_eq!((report.rejected, report.unstored), (0, 0));
    assert_eq!(stored(gated.inner.as_ref()).await, N as u64);
    assert!(gated.appends.load(Ordering::SeqCst) >= 5);
    let err = tracker.visitor("late").goal("x").unwrap_err();
    assert!(matches!(err, IngestError::ShutDown), "{err:?}");
    pipeline.shutdown().await;
}

#[tokio::test]
async fn the_tracker_gives_the_errors_http_ingest_gives() {
    let store = store();
    let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
    let tracker = pipeline.tracker(SITE).await.unwrap();
    let who = tracker.visitor("a");
    let cases: Vec<(Result<(), IngestError>, &str)> = vec![
        (
            who.purchase("o1", "12.5x", "USD"),
            r#"{"site":"example.com","type":"purchase","url":"https://example.com/","visitor_id":"a","order_id":"o1","revenue":{"amount":"12.5x","currency":"USD"}}"#,
        ),
        (
            who.purchase("o1", "12.50", "XYZ"),
            r#"{"site":"example.com","type":"purchase","url":"https://example.com/","visitor_id":"a","order_id":"o1","revenue":{"amount":"12.50","currency":"XYZ"}}"#,
        ),
        (
            who.pageview("not a url"),
            r#"{"site":"example.com","type":"pageview","url":"not a url","visitor_id":"a"}"#,
        ),
        (
            who.event("", [("k", "v")]),
            r#"{"site":"example.com","type":"custom","name":"","url":"https://example.com/","visitor_id":"a","props":{"k":"v"}}"#,
        ),
        (
            tracker.goal("signup"),
            r#"{"site":"example.com","type":"goal","name":"signup","url":"https://example.com/"}"#,
        ),
    ];
    for (tracked, body) in cases {
        let tracked = tracked.expect_err(body).to_string();
        let http = pipeline
            .ingest_json(body.as_bytes(), Shape::One, None)
            .await
            .expect_err(body)
            .to_string();
        assert_eq!(tracked, http, "{body}");
    }
    assert!(pipeline.tracker("nope.example").await.is_err());
    let report = tracker.shutdown().await;
    assert_eq!((report.tracked, report.stored), (0, 0));
    assert_eq!(stored(store.as_ref()).await, 0);
    pipeline.shutdown().await;
}

#[tokio::test]
async fn a_tracker_identifies_request_clients_as_pages_do() {
    let store = store();
    let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
    let tracker = pipeline.tracker(SITE).await.unwrap();
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";
    let origin = |ip: &str| Origin {
        ip: Some(ip.parse().unwrap()),
        user_agent: Some(ua.into()),
        hints: Default::default(),
    };
    let a = tracker.with_origin(origin("203.0.113.7"));
    a.pageview("https://example.com/a").unwrap();
    a.event("signup", [("plan", "pro")]).unwrap();
    tracker
        .with_origin(origin("203.0.113.8"))
        .pageview("https://example.com/b")
        .unwrap();
    // The same client through HTTP ingest.
    pipeline
        .ingest(
            Hit {
                site: Some(SITE.into()),
                kind: Some("pageview".into()),
                url: Some("https://example.com/c".into()),
                ..Hit::default()
            },
            Some(&origin("203.0.113.7")),
        )
        .await
        .unwrap();
    tracker.flush().await.unwrap();
    let q = beacon_core::Query::from_value(&serde_json::json!({
        "site": SITE, "date_range": "all", "metrics": ["visitors", "visits", "pageviews", "events"]
    }))
    .unwrap();
    let result = pipeline
        .analytics()
        .query(&q, pipeline.now())
        .await
        .unwrap();
    let row = result.to_json(0);
    let metrics = &row["results"][0]["metrics"];
    assert_eq!(metrics, &serde_json::json!([2, 2, 3, 4]), "{row}");
    pipeline.shutdown().await;
}

#[tokio::test]
async fn the_importer_reports_rejected_lines_and_a_rerun_stores_nothing_twice() {
    let store = store();
    let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
    let file = concat!(
        r#"{"site":"example.com","type":"pageview","url":"https://example.com/","visitor_id":"a","timestamp":"2026-01-01T10:00:00Z"}"#,
        "\n",
        r#"{"site":"example.com","type":"pageview","url":"https://example.com/","visitor_id":"a"}"#,
        "\n",
        "not json\n",
        r#"{"site":"example.com","type":"pageview","url":"https://example.com/x","visitor_id":"b","timestamp":"2026-01-01T11:00:00Z"}"#,
        "\n",
    );
    for (run, expect_imported) in [(1, 2), (2, 0)] {
        let rejected = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = Arc::clone(&rejected);
        let report = pipeline
            .importer()
            .format(ImportFormat::Ndjson)
            .on_rejected(move |line| r.lock().unwrap().push(line.to_string()))
            .run(std::io::Cursor::new(file.as_bytes().to_vec()))
            .await
            .unwrap();
        assert_eq!(report.imported, expect_imported, "run {run}");
        assert_eq!(report.rejected, 2, "run {run}");
        let rejected = rejected.lock().unwrap();
        assert_eq!(rejected.len(), 2);
        assert!(rejected[0].starts_with("line 2: timestamp"), "{rejected:?}");
        assert!(rejected[1].starts_with("line 3: "), "{rejected:?}");
    }
    assert_eq!(stored(store.as_ref()).await, 2);
    pipeline.shutdown().await;
}

/// One typed tracker call, and the same event as an HTTP hit.
#[derive(Debug, Clone)]
enum Call {
    Pageview(String, Option<String>),
    Event(String, Vec<(String, String)>),
    Goal(String),
    Purchase(String, String, String),
}

fn text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,12}",
        (118usize..124).prop_map(|n| "n".repeat(n)),
        (126usize..131).prop_map(|n| "i".repeat(n)),
        (198usize..203).prop_map(|n| "o".repeat(n)),
        (298usize..303).prop_map(|n| "k".repeat(n)),
        (1998usize..2003).prop_map(|n| "v".repeat(n)),
    ]
}

fn url() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        Just("https://example.com/a?utm_source=x".to_owned()),
        Just("ftp://example.com/".to_owned()),
        Just("not a url".to_owned()),
        Just(String::new()),
        Just("http://".to_owned()),
        (2040usize..2050).prop_map(|n| format!("https://example.com/{}", "p".repeat(n))),
    ]
}

fn call() -> impl proptest::strategy::Strategy<Value = Call> {
    use proptest::prelude::*;
    prop_oneof![
        (url(), proptest::option::of(url())).prop_map(|(u, r)| Call::Pageview(u, r)),
        (text(), proptest::collection::vec((text(), text()), 0..33))
            .prop_map(|(n, p)| Call::Event(n, p)),
        text().prop_map(Call::Goal),
        (
            text(),
            prop_oneof![
                Just("12.50"),
                Just("-1"),
                Just("abc"),
                Just("0.001"),
                Just("1e3"),
                Just("")
            ],
            prop_oneof![Just("USD"), Just("JPY"), Just("XYZ"), Just("usd"), Just("")]
        )
            .prop_map(|(o, a, c)| Call::Purchase(o, a.into(), c.into())),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// A typed tracker call fails exactly when HTTP ingest refuses the same event,
    /// with the same words: the tracker checks on the app's thread by the hit
    /// rules, and a call it takes is never refused later.
    #[test]
    fn typed_calls_and_http_ingest_agree(visitor in text(), user in text(), page in proptest::option::of(url()), c in call()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = store();
            let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
            let tracker = pipeline.tracker(SITE).await.unwrap();
            let mut who = tracker.visitor(visitor.clone()).identify(user.clone());
            if let Some(p) = &page {
                who = who.on_page(p.clone());
            }
            let page_url = page.clone().unwrap_or_else(|| "https://example.com/".into());
            let mut hit = serde_json::json!({"site": SITE, "visitor_id": visitor, "user_id": user, "url": page_url});
            let tracked = match &c {
                Call::Pageview(u, r) => {
                    hit["type"] = "pageview".into();
                    hit["url"] = u.clone().into();
                    if let Some(r) = r {
                        hit["referrer"] = r.clone().into();
                    }
                    who.pageview_from(u, r.as_deref())
                }
                Call::Event(n, props) => {
                    hit["type"] = "custom".into();
                    hit["name"] = n.clone().into();
                    let map: std::collections::BTreeMap<_, _> = props.iter().cloned().collect();
                    hit["props"] = serde_json::to_value(&map).unwrap();
                    who.event(n, map)
                }
                Call::Goal(n) => {
                    hit["type"] = "goal".into();
                    hit["name"] = n.clone().into();
                    who.goal(n)
                }
                Call::Purchase(o, a, cur) => {
                    hit["type"] = "purchase".into();
                    hit["order_id"] = o.clone().into();
                    hit["revenue"] = serde_json::json!({"amount": a, "currency": cur});
                    who.purchase(o, a, cur)
                }
            };
            let http = pipeline
                .ingest_json(hit.to_string().as_bytes(), Shape::One, None)
                .await
                .map(drop);
            assert_eq!(
                tracked.as_ref().map_err(ToString::to_string),
                http.as_ref().map_err(ToString::to_string),
                "{c:?} as {hit}"
            );
            let report = tracker.shutdown().await;
            assert_eq!(report.stored, report.tracked, "{c:?}: {report:?}");
            pipeline.shutdown().await;
        });
    }
}

#[tokio::test]
async fn importing_a_missing_file_names_it() {
    let pipeline = Pipeline::builder(store()).build().unwrap();
    let err = pipeline
        .importer()
        .run_file("/nonexistent/hits.ndjson")
        .await
        .unwrap_err();
    assert!(
        matches!(err, beacon_core::ImportError::Open { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("/nonexistent/hits.ndjson: "),
        "{err}"
    );
    pipeline.shutdown().await;
}
