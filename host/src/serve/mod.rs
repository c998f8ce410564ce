//! `wasmig serve`: a long-running HTTP server (axum) over the fleet. `/metrics` (Prometheus
//! text), `/livez` and `/readyz` (Kubernetes' probe conventions), `/api/status`,
//! `/api/history` and `/api/runs/N` (the CLI's JSON documents), `/` and `/runs/N` (the
//! dashboard, server-rendered HTML with no external resource). With `--heal-every`, it runs
//! `verify --fix` on that schedule, as runs of its own under the same locks as any runner;
//! without it the server never writes.
//!
//! Every page and endpoint reads one snapshot of the fleet (the status rows, the metrics and
//! the last runs: a bounded number of queries whatever the fleet's size), kept for a few
//! seconds, so a scrape every 15 s costs O(1) queries. The first SIGINT or SIGTERM stops
//! accepting connections, lets a heal under way finish its running steps, and exits.

pub(crate) mod dashboard;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Mutex;

use crate::Exit;
use crate::ops::Settings;
use crate::ops::status::{Collected, Which, collect};
use crate::plan::Selection;
use crate::report::{self, HealCounters, Metrics};

/// Options of `wasmig serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Run `verify --fix` this often (none: never write).
    pub heal_every: Option<Duration>,
    /// How long one read of the fleet serves requests.
    pub cache_for: Duration,
    /// Backups for the heal runs.
    pub backup: Option<crate::backup::Policy>,
    /// Where a heal run that failed is notified.
    pub notify: Option<crate::notify::Notify>,
    /// Host names requests may carry besides the loopback ones (`--allow-host`).
    pub allow_hosts: Vec<String>,
}

/// Requests served at once; more are answered 503 at once (never queued without bound).
const MAX_REQUESTS: usize = 16;
/// Bound on one request, reading the fleet included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one read of the fleet.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Run pages read the database on demand: at most this many at once (each its own
/// connection), so no client can use up the server's connections.
const RUN_READS: usize = 2;

/// One read of the fleet, shared by every request until it is older than `cache_for`.
pub(crate) struct Snapshot {
    /// When it was read.
    pub(crate) read_at: SystemTime,
    /// What was read, or why it could not be.
    pub(crate) fleet: std::result::Result<Fleet, String>,
}

/// The fleet as one read found it.
pub(crate) struct Fleet {
    pub(crate) collected: Collected,
    pub(crate) metrics: Metrics,
    pub(crate) runs: Vec<crate::control::RunRecord>,
    pub(crate) control_version: Option<i32>,
}

struct App {
    settings: Settings,
    options: ServeOptions,
    cache: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    heal: std::sync::Mutex<HealCounters>,
    requests: tokio::sync::Semaphore,
    run_reads: tokio::sync::Semaphore,
}

impl App {
    /// The cached snapshot, or a fresh one when it is older than `cache_for` (one reader at
    /// a time: concurrent requests wait for the same read instead of each reading).
    async fn snapshot(&self) -> Arc<Snapshot> {
        let mut cache = self.cache.lock().await;
        if let Some((at, snap)) = cache.as_ref()
            && at.elapsed() < self.options.cache_for
        {
            return snap.clone();
        }
        let fleet = match tokio::time::timeout(READ_TIMEOUT, read_fleet(&self.settings)).await {
            Ok(read) => read.map_err(|e| format!("{e:#}")),
            Err(_) => Err(format!(
                "the fleet could not be read within {} s",
                READ_TIMEOUT.as_secs()
            )),
        };
        if let Err(e) = &fleet {
            // Said once per read, never with a password (errors carry redacted URLs).
            tracing::warn!("reading the fleet: {e}");
        }
        let snap = Arc::new(Snapshot {
            read_at: SystemTime::now(),
            fleet,
        });
        *cache = Some((Instant::now(), snap.clone()));
        snap
    }

    fn heal_counters(&self) -> Option<HealCounters> {
        self.options
            .heal_every
            .map(|_| self.heal.lock().map(|h| *h).unwrap_or_default())
    }
}

/// Reads the fleet once, as a snapshot (for `wasmig report --html`).
pub(crate) async fn snapshot_now(s: &Settings) -> Snapshot {
    Snapshot {
        read_at: SystemTime::now(),
        fleet: read_fleet(s).await.map_err(|e| format!("{e:#}")),
    }
}

async fn read_fleet(s: &Settings) -> Result<Fleet> {
    let collected = collect(s, Which::All, &Selection::default()).await?;
    let client = s.connect_initialised().await?;
    let metrics = crate::ops::metrics::metrics_of(&collected, &client).await?;
    let runs = crate::control::runs(&client, 200).await?;
    let control_version = crate::control::control_version(&client).await?;
    Ok(Fleet {
        collected,
        metrics,
        runs,
        control_version,
    })
}

/// Serves until the first SIGINT or SIGTERM.
pub async fn serve(s: &Settings, o: &ServeOptions) -> Result<Exit> {
    // From here the first signal asks the server to stop cleanly (see `interrupt`).
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .with_context(|| format!("cannot listen on {}", o.listen))?;
    let app = Arc::new(App {
        settings: s.clone(),
        options: o.clone(),
        cache: Mutex::new(None),
        requests: tokio::sync::Semaphore::new(MAX_REQUESTS),
        run_reads: tokio::sync::Semaphore::new(RUN_READS),
        heal: std::sync::Mutex::new(HealCounters {
            interval_seconds: o.heal_every.map_or(0.0, |d| d.as_secs_f64()),
            started_timestamp_seconds: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            ..HealCounters::default()
        }),
    });
    crate::outln!(
        "wasmig serve: listening on http://{}/ (metrics /metrics, probes /livez /readyz){}",
        listener.local_addr().unwrap_or(o.listen),
        o.heal_every.map_or_else(
            || "; read-only (no --heal-every)".to_owned(),
            |d| format!("; healing every {}", humantime(d))
        )
    );
    let router = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(api_status))
        .route("/api/history", get(api_history))
        .route("/api/runs/{id}", get(api_run))
        .route("/", get(dashboard_page))
        .route("/runs/{id}", get(run_page))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app.clone());
    let server = axum::serve(listener, router).with_graceful_shutdown(stopped());
    // The heal runs beside the server on this task; after a signal it starts no new schema
    // and returns once its running steps end.
    let heal = async {
        if let Some(every) = o.heal_every {
            heal_loop(app.clone(), every).await;
        }
    };
    let (served, ()) = tokio::join!(std::future::IntoFuture::into_future(server), heal);
    served.context("serving HTTP")?;
    Ok(crate::interrupt::received().map_or(Exit::Ok, Exit::from_signal))
}

/// Resolves once a signal asked the server to stop.
async fn stopped() {
    while crate::interrupt::received().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::outln!("wasmig serve: stopping");
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Runs `verify --fix` every `every` until a signal: plugins are read afresh each time (a
/// deploy that drops new ones in is picked up), under the same locks as any runner, each a
/// run of its own (`serve --heal-every` in `history`).
async fn heal_loop(app: Arc<App>, every: Duration) {
    loop {
        let wake = tokio::time::Instant::now() + every;
        while tokio::time::Instant::now() < wake {
            if crate::interrupt::received().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200).min(every)).await;
        }
        let o = crate::ops::verify::VerifyOptions {
            fix: true,
            output: report::Output::Text,
            tenants: Vec::new(),
            selector: None,
            selection: Selection::default(),
            backup: app.options.backup.clone(),
            command: "serve --heal-every".into(),
            notify: app.options.notify.clone(),
        };
        let result = crate::ops::verify::verify(&app.settings, &o).await;
        let ok = matches!(result, Ok(Exit::Ok));
        if let Err(e) = &result {
            crate::errln!("heal: {e:#}");
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if let Ok(mut h) = app.heal.lock() {
            h.runs += 1;
            h.last_timestamp_seconds = Some(now);
            if ok {
                h.last_success_timestamp_seconds = Some(now);
            } else {
                h.failures += 1;
            }
        }
        // What the heal changed shows at once.
        *app.cache.lock().await = None;
    }
}

/// Every request: its `Host` is one this server answers to (a page on another site that
/// rebinds its name to 127.0.0.1 is refused), at most [`MAX_REQUESTS`] at once (more get a
/// 503 at once), each bounded by [`REQUEST_TIMEOUT`].
async fn guard(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, app.options.listen, &app.options.allow_hosts) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers to its own address only (see --allow-host)\n",
        )
            .into_response();
    }
    let Ok(_permit) = app.requests.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "busy: too many requests at once\n",
        )
            .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::GATEWAY_TIMEOUT, "the request took too long\n").into_response(),
    }
}

/// Whether a request's `Host` names this server: on a loopback address, the loopback names
/// (with or without the port) and `--allow-host`; elsewhere, any host unless `--allow-host`
/// names some.
fn host_allowed(host: &str, listen: SocketAddr, allowed: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:9187`, `localhost:9187`; a bare IPv6 literal keeps its colons.
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !n.ends_with(':') => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return true;
    }
    if listen.ip().is_loopback() {
        return matches!(name, "localhost" | "127.0.0.1" | "::1")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
    }
    allowed.is_empty()
}

async fn livez() -> &'static str {
    "ok\n"
}

#[derive(serde::Deserialize)]
struct ReadyQuery {
    verbose: Option<String>,
}

/// One readiness check, by name.
#[derive(serde::Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    reason: Option<String>,
}

fn checks(snap: &Snapshot) -> Vec<Check> {
    let check = |name, why: Option<String>| Check {
        name,
        ok: why.is_none(),
        reason: why,
    };
    match &snap.fleet {
        Err(e) => vec![check(
            "database",
            Some(format!("the fleet cannot be read: {e}")),
        )],
        Ok(f) => {
            let m = &f.metrics;
            vec![
                check("database", None),
                check(
                    "control_schema",
                    (f.control_version != Some(crate::CONTROL_VERSION)).then(|| {
                        format!(
                            "the control schema is version {}, this wasmig uses {}: run `wasmig init`",
                            f.control_version.map_or("missing".into(), |v| v.to_string()),
                            crate::CONTROL_VERSION
                        )
                    }),
                ),
                check(
                    "drift",
                    (m.drift_count > 0).then(|| {
                        format!(
                            "{} applied step(s) changed since applied (see `wasmig diff`)",
                            m.drift_count
                        )
                    }),
                ),
                check(
                    "forged",
                    (m.forged_count > 0).then(|| {
                        format!("{} ledger row(s) not written by wasmig", m.forged_count)
                    }),
                ),
            ]
        }
    }
}

async fn readyz(State(app): State<Arc<App>>, Query(q): Query<ReadyQuery>) -> Response {
    let snap = app.snapshot().await;
    let checks = checks(&snap);
    let ready = checks.iter().all(|c| c.ok);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if q.verbose.is_some() {
        let mut text = String::new();
        for c in &checks {
            match &c.reason {
                None => text.push_str(&format!("[+]{} ok\n", c.name)),
                // One line per check, whatever the reason holds.
                Some(why) => text.push_str(&format!(
                    "[-]{} failed: {}\n",
                    c.name,
                    crate::text::inert(why, 2000)
                )),
            }
        }
        text.push_str(if ready {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
        let text = crate::text::terminal_safe(&text, crate::text::Breaks::Keep).into_owned();
        return (code, text).into_response();
    }
    #[derive(serde::Serialize)]
    struct Ready<'a> {
        ready: bool,
        checks: &'a [Check],
    }
    let body = report::json_document(
        "wasmig.readyz/1",
        Ready {
            ready,
            checks: &checks,
        },
    );
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let snap = app.snapshot().await;
    let text = match &snap.fleet {
        Ok(f) => {
            let m = Metrics {
                heal: app.heal_counters(),
                ..f.metrics.clone()
            };
            report::prometheus(&m)
        }
        Err(_) => report::prometheus_down(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unavailable(e: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the fleet cannot be read: {}\n",
            crate::text::inert(e, 2000)
        ),
    )
        .into_response()
}

async fn api_status(State(app): State<Arc<App>>) -> Response {
    let snap = app.snapshot().await;
    match &snap.fleet {
        Ok(f) => {
            let c = &f.collected;
            let summary = report::summarise(&c.specs, &c.rows, &[], 20);
            json(report::status_json(&c.specs, &c.rows, &summary, true))
        }
        Err(e) => unavailable(e),
    }
}

async fn api_history(State(app): State<Arc<App>>) -> Response {
    let snap = app.snapshot().await;
    match &snap.fleet {
        Ok(f) => json(report::history_json(&f.runs)),
        Err(e) => unavailable(e),
    }
}

/// A run's record and what each schema came to, read when asked, at most [`RUN_READS`] at
/// once.
async fn run_detail(
    app: &App,
    id: i64,
) -> Result<Option<(crate::control::RunRecord, Vec<crate::control::RunSchema>)>> {
    let _permit = app.run_reads.acquire().await?;
    let client = app.settings.connect_initialised().await?;
    Ok(crate::control::run_detail(&client, id).await?)
}

async fn api_run(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    match run_detail(&app, id).await {
        Ok(Some((run, schemas))) => json(report::run_detail_json(&run, &schemas)),
        Ok(None) => (StatusCode::NOT_FOUND, format!("no run {id}\n")).into_response(),
        Err(e) => unavailable(&format!("{e:#}")),
    }
}

async fn dashboard_page(
    State(app): State<Arc<App>>,
    Query(q): Query<dashboard::PageQuery>,
) -> Response {
    let snap = app.snapshot().await;
    Html(dashboard::page(
        &snap,
        &q,
        app.heal_counters(),
        dashboard::Render::default(),
    ))
    .into_response()
}

async fn run_page(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Response {
    match run_detail(&app, id).await {
        Ok(Some((run, schemas))) => Html(dashboard::run_page(&run, &schemas)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Html(dashboard::not_found(id))).into_response(),
        Err(e) => unavailable(&format!("{e:#}")),
    }
}
