//! The wasmig benchmark: one command (`scripts/bench`, or
//! `cargo run --release -p wasmig --example bench -- [--quick] [--reps N]` after building
//! the plugins).
//!
//! It starts its own PostgreSQL with PostgreSQL's default durability (fsync on), and measures,
//! side by side in one run, wasmig against the lower bound of sending the same SQL directly
//! (no WebAssembly, no ledger, one connection per job):
//! 1. the reference workload (12 migrations) into N fresh tenants, N in {100, 1000}, jobs 1, 2;
//! 2. one pending step (finance 0004) on all N tenants; with each, the server's CPU time per
//!    tenant, and the fleet-scale gate: at 1,000 tenants (jobs 2) it may be at most 1.15x what
//!    it is at 100 (the bench fails otherwise; `--quick` runs this case too);
//! 3. no-op `migrate`, `verify` and `status` over 10,000 tenants x 12 steps, and
//!    `verify --structure` over 10,000 tenants holding the workload's objects (against
//!    `status` and `pg_dump --schema-only` of the same database; `--only structure` runs
//!    just this case);
//! 4. peak RSS of the host per case, and `status` cold start with a warm compile cache;
//! 5. instantiation + one `apply` call per step, in process.
//!
//! Disk sync latency here drifts for minutes at a time, so A/B runs are interleaved (the order
//! flips from run to run), each timed run starts after a `CHECKPOINT`, and sides are compared
//! as ratios of medians. Creating a file can also cost 30x its normal time for minutes after
//! many files were deleted (ext4 without a journal skips recently freed inodes one by one), and
//! every table and index is a file: so no database is dropped until the end, and before each
//! timed run the harness times file creation in the server's file system and waits until it
//! is back to normal (the figure is kept per case as `fs_create_us`). Results: a table on stdout and `target/bench/results.json`
//! (format `wasmig-bench/1`: stable, so runs can be compared across changes).
//!
//! To compare a change with what came before, build the earlier commit's binary and name it
//! in `WASMIG_BENCH_BEFORE`: the workload cases then also run that binary, interleaved with
//! the current one on a database of its own, and report `before s` and `wasmig / before`.

#[path = "../../tests/support/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio_postgres::NoTls;

const WORKLOAD_PLUGINS: &[&str] = &["carriers", "customers", "suppliers", "finance"];
/// The 12 migrations in apply order: (app, file).
const APPS: &[&str] = &["carriers", "customers", "suppliers", "finance"];

struct Bench {
    server: pg::Server,
    root: PathBuf,
    wasmig: PathBuf,
    /// An earlier build to compare with (`WASMIG_BENCH_BEFORE`).
    before: Option<PathBuf>,
    wasm_dir: PathBuf,
    work: tempdir::Dir,
    rows: Vec<ResultRow>,
    db_seq: usize,
    probe_seq: u64,
    fs_normal_us: f64,
}

mod tempdir {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!("wasmig-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("bench work dir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct ResultRow {
    case: String,
    tenants: usize,
    jobs: usize,
    /// Median wall seconds of wasmig.
    wasmig_s: f64,
    /// Median wall seconds of the direct-SQL lower bound (absent where none applies).
    direct_s: Option<f64>,
    /// wasmig / direct, medians of interleaved runs.
    ratio: Option<f64>,
    /// Median wall seconds of direct SQL with one fresh login per tenant.
    direct_login_s: Option<f64>,
    /// wasmig / direct with one login per tenant.
    ratio_login: Option<f64>,
    /// Median wall seconds of the `WASMIG_BENCH_BEFORE` binary (an earlier build), if given.
    before_s: Option<f64>,
    /// wasmig / before, medians of interleaved runs.
    ratio_before: Option<f64>,
    /// Server CPU time (every PostgreSQL process, the run's backends included) per tenant,
    /// milliseconds, median: wasmig's run.
    wasmig_server_ms_per_tenant: Option<f64>,
    /// The same for direct SQL with one fresh login per tenant.
    login_server_ms_per_tenant: Option<f64>,
    /// Peak RSS of the wasmig process, MiB.
    wasmig_peak_rss_mib: f64,
    runs: usize,
    /// The slowest file creation timed just before one of this case's runs, microseconds.
    fs_create_us: f64,
    note: String,
}

#[derive(Serialize)]
struct Output<'a> {
    format: &'static str,
    postgres: String,
    durability: &'static str,
    cpus: usize,
    results: &'a [ResultRow],
    instantiate_apply_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Timed {
    secs: f64,
    rss_mib: f64,
    stdout: String,
    stderr: String,
}

impl Bench {
    fn new() -> Result<Bench> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("repo root")?
            .to_owned();
        let wasmig = root.join("target/release/wasmig");
        if !wasmig.exists() {
            bail!(
                "{} is missing: run `cargo build --release -p wasmig` (scripts/bench does)",
                wasmig.display()
            );
        }
        let wasm_dir = root.join("plugins/target/wasm32-wasip2/release");
        if !wasm_dir.join("finance_next.wasm").exists() {
            bail!("plugins are not built: run scripts/bench (it builds them)");
        }
        let before = std::env::var_os("WASMIG_BENCH_BEFORE").map(PathBuf::from);
        if let Some(b) = &before
            && !b.exists()
        {
            bail!(
                "WASMIG_BENCH_BEFORE names {}, which does not exist",
                b.display()
            );
        }
        eprintln!("starting PostgreSQL with default durability (fsync on) ...");
        let server = pg::Server::start(pg::Durability::Default);
        Ok(Bench {
            server,
            root,
            wasmig,
            before,
            wasm_dir,
            work: tempdir::Dir::new(),
            rows: Vec::new(),
            db_seq: 0,
            probe_seq: 0,
            fs_normal_us: 40.0,
        })
    }

    fn plugin_dir(&self, name: &str, plugins: &[&str]) -> Result<PathBuf> {
        let dir = self.work.path().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for p in plugins {
            std::fs::copy(
                self.wasm_dir.join(format!("{p}.wasm")),
                dir.join(format!("{p}.wasm")),
            )
            .with_context(|| format!("copy {p}.wasm"))?;
        }
        Ok(dir)
    }

    async fn new_db(&mut self, label: &str) -> Result<String> {
        self.db_seq += 1;
        let name = format!("b{}_{label}", self.db_seq);
        let c = connect(&self.server.url("postgres")).await?;
        c.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        Ok(name)
    }

    /// Flushes dirty buffers before a timed run, so it does not pay for the previous one's.
    async fn checkpoint(&self) -> Result<()> {
        connect(&self.server.url("postgres"))
            .await?
            .batch_execute("CHECKPOINT")
            .await?;
        Ok(())
    }

    /// Microseconds to create one file next to the server's data directory (median of five
    /// rounds of 100 files, kept until the end so the probe deletes nothing itself).
    fn fs_create_us(&mut self) -> Result<f64> {
        let dir = self.work.path().join("fs-probe");
        std::fs::create_dir_all(&dir)?;
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..100 {
                self.probe_seq += 1;
                std::fs::File::create(dir.join(self.probe_seq.to_string()))?;
            }
            rounds.push(started.elapsed().as_secs_f64() * 1e6 / 100.0);
        }
        Ok(median(rounds))
    }

    /// Before a timed run: a checkpoint, so the run does not pay for the previous one's dirty
    /// buffers, and a file system whose file creation is back to normal speed. Normal starts
    /// at 40 us; a file system that stays slower for six minutes (longer than ext4 remembers
    /// freed inodes) is taken as slow by nature, and its level becomes the new normal, so
    /// the bench waits once, not before every run. Returns the last probe.
    async fn settle(&mut self) -> Result<f64> {
        let started = Instant::now();
        let mut us = self.fs_create_us()?;
        while us > self.fs_normal_us {
            if started.elapsed() > Duration::from_secs(360) {
                self.fs_normal_us = us * 1.5;
                eprintln!(
                    "  file creation stays at {us:.0} us: taken as this file system's normal"
                );
                break;
            }
            eprintln!(
                "  file creation takes {us:.0} us (normal: under {:.0}); files were deleted recently, waiting",
                self.fs_normal_us
            );
            tokio::time::sleep(Duration::from_secs(15)).await;
            us = self.fs_create_us()?;
        }
        self.checkpoint().await?;
        Ok(us)
    }

    /// CPU time PostgreSQL has used so far, milliseconds: the postmaster's own and that of the
    /// children it reaped (every backend that ended), plus its children alive now (the
    /// checkpointer, the WAL writer, ...). Read from /proc; taken once the measured run's
    /// backends have exited (see [`Bench::server_cpu_after`]).
    fn server_cpu_ms(&self) -> Result<f64> {
        let pid_file = self.server.dir.join("data/postmaster.pid");
        let pm: u32 = std::fs::read_to_string(&pid_file)?
            .lines()
            .next()
            .context("postmaster.pid is empty")?
            .trim()
            .parse()?;
        let ticks = |stat: &str, own_only: bool| -> Option<(u32, f64)> {
            // Fields after the command name in parentheses: state is field 3.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = f.get(1)?.parse().ok()?;
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime 14, stime 15, cutime 16, cstime 17 (1-based over the whole line).
            let own = n(11) + n(12);
            Some((ppid, if own_only { own } else { own + n(13) + n(14) }))
        };
        let mut total = ticks(&std::fs::read_to_string(format!("/proc/{pm}/stat"))?, false)
            .map_or(0.0, |(_, t)| t);
        for e in std::fs::read_dir("/proc")? {
            let e = e?;
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                && let Some((ppid, t)) = ticks(&stat, true)
                && ppid == pm
            {
                total += t;
            }
        }
        // Clock ticks are 10 ms on Linux (USER_HZ = 100).
        Ok(total * 10.0)
    }

    /// [`Bench::server_cpu_ms`] once no client of database `db` but the bench's own is left
    /// (a backend's CPU is counted when it exits).
    async fn server_cpu_after(&self, db: &str) -> Result<f64> {
        let c = connect(&self.server.url("postgres")).await?;
        for _ in 0..200 {
            let left: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
                    &[&db],
                )
                .await?
                .get(0);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        drop(c);
        self.server_cpu_ms()
    }

    /// Runs wasmig under GNU time to read its peak RSS.
    fn wasmig(&self, db: &str, plugins: &Path, args: &[&str]) -> Result<Timed> {
        self.run_binary(&self.wasmig, db, plugins, args)
    }

    /// [`Bench::wasmig`] with another build of wasmig.
    fn run_binary(&self, bin: &Path, db: &str, plugins: &Path, args: &[&str]) -> Result<Timed> {
        let started = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "wasmig-peak-rss-kb=%M"])
            .arg(bin)
            .args(args)
            .env("DATABASE_URL", self.server.url(db))
            .env("WASMIG_PLUGINS", plugins)
            .env("WASMIG_CACHE_DIR", self.work.path().join("compile-cache"))
            .env("WASMIG_LOCK_FILE", self.work.path().join("no.lock"))
            .output()
            .context("run wasmig under /usr/bin/time (apt-get install time)")?;
        let secs = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let rss_kb: f64 = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("wasmig-peak-rss-kb="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        // `verify` answers 1 when something is pending: that is an answer, not a failure.
        let answered = out.status.success()
            || (args.first() == Some(&"verify") && out.status.code() == Some(1));
        if !answered {
            bail!("wasmig {} failed:\n{stdout}\n{stderr}", args.join(" "));
        }
        Ok(Timed {
            secs,
            rss_mib: rss_kb / 1024.0,
            stdout,
            stderr,
        })
    }

    /// A database with `n` registered tenants (`t00001`...), nothing applied.
    async fn wasmig_db(&mut self, label: &str, n: usize, plugins: &Path) -> Result<String> {
        let bin = self.wasmig.clone();
        self.wasmig_db_of(&bin, label, n, plugins).await
    }

    /// [`Bench::wasmig_db`] set up by the build `bin` (an earlier build's control schema may
    /// be of an older version).
    async fn wasmig_db_of(
        &mut self,
        bin: &Path,
        label: &str,
        n: usize,
        plugins: &Path,
    ) -> Result<String> {
        let db = self.new_db(label).await?;
        self.run_binary(bin, &db, plugins, &["init"])?;
        let names: Vec<String> = (1..=n).map(|i| format!("t{i:05}")).collect();
        for chunk in names.chunks(2000) {
            let mut args = vec!["-q", "tenant", "create", "--no-migrate"];
            args.extend(chunk.iter().map(String::as_str));
            self.run_binary(bin, &db, plugins, &args)?;
        }
        Ok(db)
    }

    /// A database with `n` empty schemas for the direct-SQL lower bound, owned by a login
    /// role whose SCRAM verifier has the same iteration count as wasmig's schema roles, so
    /// the one-login-per-tenant baseline pays for a session, not for a slower handshake.
    /// Returns the database and the URL that logs in as that role.
    async fn direct_db(&mut self, label: &str, n: usize) -> Result<(String, String)> {
        let db = self.new_db(label).await?;
        let c = connect(&self.server.url(&db)).await?;
        let role = format!("{db}_direct");
        let password = "direct-baseline-pw";
        c.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{}'",
            wasmig::secret::scram_verifier(password)
        ))
        .await?;
        let ddl: String = (1..=n)
            .map(|i| format!("CREATE SCHEMA t{i:05} AUTHORIZATION {role};"))
            .collect();
        c.batch_execute(&ddl).await?;
        let url = format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{db}",
            self.server.port
        );
        Ok((db, url))
    }

    /// The lower bound: the same SQL files, one connection per job, each file one simple
    /// query (its own implicit transaction, like wasmig's one transaction per step). With
    /// `per_tenant`, a fresh login per tenant: what wasmig's role-per-tenant sessions cost
    /// before wasmig does anything (a new backend, cold catalog caches).
    async fn direct(
        &self,
        url: &str,
        n: usize,
        jobs: usize,
        scripts: &Arc<Vec<String>>,
        per_tenant: bool,
    ) -> Result<f64> {
        let next = Arc::new(AtomicUsize::new(1));
        let url = url.to_owned();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..jobs {
            let (next, url, scripts) = (next.clone(), url.clone(), scripts.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = connect(&url).await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i > n {
                        return anyhow::Ok(());
                    }
                    if per_tenant {
                        c = connect(&url).await?;
                    }
                    c.batch_execute(&format!("SET search_path TO t{i:05}"))
                        .await?;
                    for s in scripts.iter() {
                        c.batch_execute(s).await?;
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    fn workload_scripts(&self) -> Result<Vec<String>> {
        // The example plugins' own SQL files: the direct-SQL lower bound replays exactly
        // what the plugins run.
        let base = self.root.join("plugins");
        let mut out = Vec::new();
        for app in APPS {
            let dir = base.join(app).join("sql");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("read {}", dir.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()?;
            files.sort();
            for f in files {
                out.push(std::fs::read_to_string(f)?);
            }
        }
        if out.len() != 12 {
            bail!("expected 12 workload migrations, found {}", out.len());
        }
        Ok(out)
    }

    /// Cases 1 and 2 for one (n, jobs): interleaved A/B runs on fresh databases.
    async fn workload_case(&mut self, n: usize, jobs: usize, reps: usize) -> Result<()> {
        let scripts = Arc::new(self.workload_scripts()?);
        let pending = Arc::new(vec![std::fs::read_to_string(
            self.root
                .join("plugins/finance-next/sql/0004_invoice_external_ref_and_more.sql"),
        )?]);
        let jobs_s = jobs.to_string();
        let (mut w_full, mut d_full, mut w_pend, mut d_pend) = (vec![], vec![], vec![], vec![]);
        let (mut l_full, mut l_pend) = (vec![], vec![]);
        let (mut o_full, mut o_pend) = (vec![], vec![]);
        let (mut rss_full, mut rss_pend) = (0f64, 0f64);
        // Server CPU ms of each timed run: wasmig's and login-per-tenant's, full and pending.
        let (mut wcpu_full, mut wcpu_pend, mut lcpu_full, mut lcpu_pend) =
            (vec![], vec![], vec![], vec![]);
        let (mut fs_full, mut fs_pend) = (0f64, 0f64);
        for rep in 0..reps {
            eprintln!("workload: {n} tenants, jobs {jobs}, run {}/{reps}", rep + 1);
            let plugins = self.plugin_dir("workload", WORKLOAD_PLUGINS)?;
            let wdb = self.wasmig_db("w", n, &plugins).await?;
            let (_, durl) = self.direct_db("d", n).await?;
            let (ldb, lurl) = self.direct_db("l", n).await?;
            let odb = match self.before.clone() {
                Some(bin) => Some(self.wasmig_db_of(&bin, "o", n, &plugins).await?),
                None => None,
            };
            let migrate = ["-q", "migrate", "--tenants", "--jobs", &jobs_s];
            let next = self.plugin_dir(
                "workload-next",
                &["carriers", "customers", "suppliers", "finance_next"],
            )?;
            // The full workload, then the pending step; each case in the order A, B, C on even
            // runs and C, B, A on odd ones, and each timed run starts settled (see `settle`), so
            // no side inherits the other's dirty buffers or always goes first.
            for pending_case in [false, true] {
                let reverse = (rep % 2 == 1) != pending_case;
                let order: [char; 4] = if reverse {
                    ['C', 'B', 'O', 'A']
                } else {
                    ['A', 'O', 'B', 'C']
                };
                for side in order {
                    if side == 'O' && odb.is_none() {
                        continue;
                    }
                    let fs = self.settle().await?;
                    let fs_max = if pending_case {
                        &mut fs_pend
                    } else {
                        &mut fs_full
                    };
                    *fs_max = fs_max.max(fs);
                    let cpu_before = self.server_cpu_ms()?;
                    match (side, pending_case) {
                        ('A', false) => {
                            let t = self.wasmig(&wdb, &plugins, &migrate)?;
                            w_full.push(t.secs);
                            rss_full = rss_full.max(t.rss_mib);
                            wcpu_full.push(self.server_cpu_after(&wdb).await? - cpu_before);
                        }
                        ('A', true) => {
                            let t = self.wasmig(&wdb, &next, &migrate)?;
                            w_pend.push(t.secs);
                            rss_pend = rss_pend.max(t.rss_mib);
                            wcpu_pend.push(self.server_cpu_after(&wdb).await? - cpu_before);
                        }
                        ('O', _) => {
                            let (Some(bin), Some(odb)) = (&self.before, &odb) else {
                                continue;
                            };
                            let dir = if pending_case { &next } else { &plugins };
                            let t = self.run_binary(bin, odb, dir, &migrate)?;
                            if pending_case {
                                o_pend.push(t.secs);
                            } else {
                                o_full.push(t.secs);
                            }
                        }
                        ('B', false) => {
                            d_full.push(self.direct(&durl, n, jobs, &scripts, false).await?)
                        }
                        ('B', true) => {
                            d_pend.push(self.direct(&durl, n, jobs, &pending, false).await?)
                        }
                        (_, false) => {
                            l_full.push(self.direct(&lurl, n, jobs, &scripts, true).await?);
                            lcpu_full.push(self.server_cpu_after(&ldb).await? - cpu_before);
                        }
                        (_, true) => {
                            l_pend.push(self.direct(&lurl, n, jobs, &pending, true).await?);
                            lcpu_pend.push(self.server_cpu_after(&ldb).await? - cpu_before);
                        }
                    }
                }
            }
            // The databases stay until the server is removed: dropping them would delete
            // thousands of files and slow down the next run's file creation.
        }
        for (case, w, d, l, o, rss, fs, wcpu, lcpu) in [
            (
                "full workload (12 migrations)",
                w_full,
                d_full,
                l_full,
                o_full,
                rss_full,
                fs_full,
                wcpu_full,
                lcpu_full,
            ),
            (
                "one pending step (finance 0004)",
                w_pend,
                d_pend,
                l_pend,
                o_pend,
                rss_pend,
                fs_pend,
                wcpu_pend,
                lcpu_pend,
            ),
        ] {
            let (wm, dm, lm) = (median(w), median(d), median(l));
            let per_tenant = |v: Vec<f64>| (!v.is_empty()).then(|| median(v) / n as f64);
            let om = (!o.is_empty()).then(|| median(o));
            self.rows.push(ResultRow {
                case: case.into(),
                tenants: n,
                jobs,
                wasmig_s: wm,
                direct_s: Some(dm),
                ratio: Some(wm / dm),
                direct_login_s: Some(lm),
                ratio_login: Some(wm / lm),
                before_s: om,
                ratio_before: om.map(|o| wm / o),
                wasmig_server_ms_per_tenant: per_tenant(wcpu),
                login_server_ms_per_tenant: per_tenant(lcpu),
                wasmig_peak_rss_mib: rss,
                runs: reps,
                fs_create_us: fs,
                note: String::new(),
            });
        }
        Ok(())
    }

    /// Case 3: no-op migrate, verify and status over `n` fully applied tenants.
    async fn fleet_case(&mut self, n: usize, reps: usize) -> Result<()> {
        let plugins = self.plugin_dir("light", &["light"])?;
        eprintln!("no-op fleet: setting up {n} tenants x 12 steps (not timed) ...");
        let setup = Instant::now();
        let db = self.wasmig_db("fleet", n, &plugins).await?;
        self.wasmig(&db, &plugins, &["-q", "migrate", "--jobs", "4"])?;
        let setup_s = setup.elapsed().as_secs_f64();
        let fs = self.settle().await?;
        for (case, args) in [
            ("no-op migrate", &["-q", "migrate"][..]),
            ("verify", &["-q", "verify"][..]),
            ("status", &["status"][..]),
            ("status --all", &["status", "--all"][..]),
        ] {
            let mut secs = vec![];
            let mut rss = 0f64;
            for _ in 0..reps {
                let t = self.wasmig(&db, &plugins, args)?;
                if case == "verify" && !t.stdout.contains(&format!("{n} tenant(s): {n} ok")) {
                    bail!("verify did not find every tenant ok:\n{}", t.stdout);
                }
                secs.push(t.secs);
                rss = rss.max(t.rss_mib);
            }
            self.rows.push(ResultRow {
                case: case.into(),
                tenants: n,
                jobs: 1,
                wasmig_s: median(secs),
                direct_s: None,
                ratio: None,
                direct_login_s: None,
                ratio_login: None,
                before_s: None,
                ratio_before: None,
                wasmig_server_ms_per_tenant: None,
                login_server_ms_per_tenant: None,
                wasmig_peak_rss_mib: rss,
                runs: reps,
                fs_create_us: fs,
                note: format!("{n} tenants x 12 applied steps; setup took {setup_s:.0}s"),
            });
        }
        self.serve_case(&db, &plugins, n, reps)
    }

    /// Case 3c: `wasmig serve` over the same fleet: each page and endpoint timed with a fresh
    /// read of the fleet (`--cache-for 0`), from request to the last byte.
    fn serve_case(&mut self, db: &str, plugins: &Path, n: usize, reps: usize) -> Result<()> {
        use std::io::BufRead as _;
        let mut child = Command::new(&self.wasmig)
            .args(["serve", "--listen", "127.0.0.1:0", "--cache-for", "0"])
            .env("DATABASE_URL", self.server.url(db))
            .env("WASMIG_PLUGINS", plugins)
            .env("WASMIG_CACHE_DIR", self.work.path().join("compile-cache"))
            .env("WASMIG_LOCK_FILE", self.work.path().join("no.lock"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("start wasmig serve")?;
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().context("serve's stdout")?)
            .read_line(&mut first)?;
        let base = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .map(|a| format!("http://{a}"))
            .with_context(|| format!("serve did not say where it listens: {first:?}"));
        let result = base.and_then(|base| {
            for path in ["/", "/metrics", "/api/status", "/readyz"] {
                let mut secs = vec![];
                for _ in 0..reps.max(3) {
                    let started = Instant::now();
                    let mut r = ureq::get(format!("{base}{path}"))
                        .call()
                        .with_context(|| format!("GET {path}"))?;
                    let body = r.body_mut().with_config().limit(1 << 30).read_to_string()?;
                    secs.push(started.elapsed().as_secs_f64());
                    if path == "/" && !body.contains(&format!("id=\"schema-count\">{}<", n + 1)) {
                        bail!("the dashboard does not show {} schemas", n + 1);
                    }
                }
                self.rows.push(ResultRow {
                    case: format!("serve GET {path}"),
                    tenants: n,
                    jobs: 1,
                    wasmig_s: median(secs),
                    direct_s: None,
                    ratio: None,
                    direct_login_s: None,
                    ratio_login: None,
                    before_s: None,
                    ratio_before: None,
                    wasmig_server_ms_per_tenant: None,
                    login_server_ms_per_tenant: None,
                    wasmig_peak_rss_mib: 0.0,
                    runs: reps.max(3),
                    fs_create_us: 0.0,
                    note: "a fresh read of the fleet per request (--cache-for 0), to the last byte"
                        .into(),
                });
            }
            Ok(())
        });
        let _ = child.kill();
        let _ = child.wait();
        result
    }

    /// Case 3b: `verify --structure` over `n` tenants holding the reference workload's
    /// tables (applied directly as the superuser, not timed: the fingerprint reads the
    /// catalogs, not the ledger), against `status` over the same fleet (one read of the
    /// registry and the ledger) and `pg_dump --schema-only` of the same database (what one
    /// would compare by hand), in the same run.
    async fn structure_case(&mut self, n: usize, reps: usize) -> Result<()> {
        let plugins = self.plugin_dir("structure", &["light"])?;
        eprintln!(
            "structure: setting up {n} tenants with the 12-migration workload (not timed) ..."
        );
        let setup = Instant::now();
        let db = self.wasmig_db("structure", n, &plugins).await?;
        let scripts = Arc::new(self.workload_scripts()?);
        self.direct(&self.server.url(&db), n, 2, &scripts, false)
            .await?;
        let setup_s = setup.elapsed().as_secs_f64();
        let fs = self.settle().await?;
        let (mut st, mut base, mut rss) = (vec![], vec![], 0f64);
        for rep in 0..reps {
            eprintln!("structure: run {}/{reps}", rep + 1);
            let t = self.wasmig(&db, &plugins, &["verify", "--structure"])?;
            if !t.stdout.contains(&format!("{n} tenant(s): {n} share")) {
                bail!(
                    "verify --structure did not find every tenant alike:\n{}",
                    t.stdout
                );
            }
            st.push(t.secs);
            rss = rss.max(t.rss_mib);
            base.push(self.wasmig(&db, &plugins, &["status"])?.secs);
        }
        let (st, base) = (median(st), median(base));
        // Said now: a baseline that fails below must not lose the figure.
        eprintln!("structure: verify --structure {st:.3}s, status {base:.3}s (medians of {reps})");
        let dump = Instant::now();
        let out = Command::new(pg::pg_bin("pg_dump"))
            .args([
                "--schema-only",
                "-f",
                "/dev/null",
                "-d",
                &self.server.url(&db),
            ])
            .output()
            .context("run pg_dump")?;
        let dump_s = dump.elapsed().as_secs_f64();
        let dump_s = if out.status.success() {
            eprintln!("structure: pg_dump --schema-only {dump_s:.3}s");
            Some(dump_s)
        } else {
            let why = String::from_utf8_lossy(&out.stderr);
            eprintln!("structure: pg_dump --schema-only failed after {dump_s:.3}s: {why}");
            None
        };
        self.rows.push(ResultRow {
            case: "verify --structure".into(),
            tenants: n,
            // wasmig's default: the fingerprints are read over this many connections.
            jobs: std::thread::available_parallelism()
                .map_or(2, |p| p.get())
                .clamp(2, 8),
            wasmig_s: st,
            direct_s: Some(base),
            ratio: Some(st / base),
            direct_login_s: dump_s,
            ratio_login: dump_s.map(|d| st / d),
            before_s: None,
            ratio_before: None,
            wasmig_server_ms_per_tenant: None,
            login_server_ms_per_tenant: None,
            wasmig_peak_rss_mib: rss,
            runs: reps,
            fs_create_us: fs,
            note: format!(
                "{n} tenants x the workload's objects; baselines: `status` (direct s), one `pg_dump --schema-only` (login s); setup took {setup_s:.0}s"
            ),
        });
        Ok(())
    }

    /// Case 4b: `status` start-up with a warm compile cache, against the time of its queries.
    async fn cold_start_case(&mut self, reps: usize) -> Result<()> {
        let plugins = self.plugin_dir("coldstart", WORKLOAD_PLUGINS)?;
        let db = self.wasmig_db("cold", 1, &plugins).await?;
        self.wasmig(&db, &plugins, &["status"])?; // warms the compile cache
        let fs = self.settle().await?;
        let mut secs = vec![];
        let mut queries = vec![];
        let mut rss = 0f64;
        for _ in 0..reps {
            let t = self.wasmig(&db, &plugins, &["-v", "status"])?;
            secs.push(t.secs);
            rss = rss.max(t.rss_mib);
            let q = t
                .stderr
                .lines()
                .find_map(|l| l.split("database work took ").nth(1))
                .and_then(|v| v.trim_end_matches(" ms").parse::<f64>().ok())
                .context("wasmig -v prints its database time")?;
            queries.push(q / 1000.0);
        }
        let (wall, q) = (median(secs), median(queries));
        self.login_cost(&db, fs).await?;
        self.rows.push(ResultRow {
            case: "status cold start, warm compile cache".into(),
            tenants: 1,
            jobs: 1,
            wasmig_s: wall,
            direct_s: None,
            ratio: None,
            direct_login_s: None,
            ratio_login: None,
            before_s: None,
            ratio_before: None,
            wasmig_server_ms_per_tenant: None,
            login_server_ms_per_tenant: None,
            wasmig_peak_rss_mib: rss,
            runs: reps,
            fs_create_us: fs,
            note: format!(
                "of which connect + queries {:.1} ms; start-up outside the database {:.1} ms",
                q * 1000.0,
                (wall - q) * 1000.0
            ),
        });
        Ok(())
    }
}

impl Bench {
    /// What the security model costs per tenant: a fresh login as a schema role (scram over
    /// TCP, a new backend) plus its first statement, against a statement on a warm session.
    async fn login_cost(&mut self, db: &str, fs_create_us: f64) -> Result<()> {
        let admin = connect(&self.server.url(db)).await?;
        let key: Vec<u8> = admin
            .query_one("SELECT key FROM wasmig.secret", &[])
            .await?
            .get(0);
        let key: [u8; 32] = key.try_into().map_err(|_| anyhow::anyhow!("secret"))?;
        let role: String = admin
            .query_one("SELECT role_name FROM wasmig.tenant LIMIT 1", &[])
            .await?
            .get(0);
        let pw = wasmig::secret::role_password(&key, &role);
        let url = format!("postgres://{role}:{pw}@127.0.0.1:{}/{db}", self.server.port);
        let (mut login, mut warm) = (vec![], vec![]);
        for _ in 0..100 {
            let t = Instant::now();
            let c = connect(&url).await?;
            c.batch_execute("SELECT 1").await?;
            login.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            admin.batch_execute("SELECT 1").await?;
            warm.push(t.elapsed().as_secs_f64());
        }
        let (l, w) = (median(login), median(warm));
        self.rows.push(ResultRow {
            case: "schema-role login + first statement".into(),
            tenants: 1,
            jobs: 1,
            wasmig_s: l,
            direct_s: Some(w),
            ratio: Some(l / w),
            direct_login_s: None,
            ratio_login: None,
                before_s: None,
                ratio_before: None,
            wasmig_server_ms_per_tenant: None,
            login_server_ms_per_tenant: None,
            wasmig_peak_rss_mib: 0.0,
            runs: 100,
            fs_create_us,
            note: "direct = the same statement on a warm session; this is the per-tenant floor of one login per tenant".into(),
        });
        Ok(())
    }
}

/// Case 5: instantiate a plugin from its pre-linked instance and call `apply` once (the step
/// asks for SQL, which this session refuses, so no database time is included).
async fn instantiate_apply_us(wasm: &Path) -> Result<f64> {
    use wasmig::plugin::{Limits, Runtime};
    let rt = Runtime::new(Limits::default()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let plugin = rt.load_file(wasm).await?;
    let limits = Limits::default();
    let run = |n: usize| {
        let (rt, plugin, limits) = (&rt, &plugin, &limits);
        async move {
            let started = Instant::now();
            for _ in 0..n {
                let mut store = rt.store("bench".into(), None, limits);
                let r = plugin
                    .pre
                    .call(&mut store, wasmig::plugin::wit::Export::Apply, "0001")
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
                std::hint::black_box(r.is_err());
            }
            anyhow::Ok(started.elapsed())
        }
    };
    run(200).await?; // warm up
    let mut samples = vec![];
    for _ in 0..5 {
        let d: Duration = run(2000).await?;
        samples.push(d.as_secs_f64() * 1e6 / 2000.0);
    }
    Ok(median(samples))
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(c)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut b = Bench::new()?;
    let version = connect(&b.server.url("postgres"))
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get::<_, String>(0);
    // `--reps N`: runs per workload case (more give steadier medians, e.g. for a
    // before/after comparison).
    let args: Vec<String> = std::env::args().collect();
    let reps_override = match args.iter().position(|a| a == "--reps") {
        Some(i) => Some(
            args.get(i + 1)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .context("--reps needs a whole number of runs, at least 1")?,
        ),
        None => None,
    };
    // `--only structure`: just the structure case (it sets up its own fleet).
    let only_structure = args
        .windows(2)
        .any(|w| w[0] == "--only" && w[1] == "structure");
    // The fleet-scale gate: the workload into 1,000 tenants runs in the quick bench too.
    let sizes: &[(usize, usize)] = if quick {
        &[(100, 1), (1000, 1)]
    } else {
        &[(100, 3), (1000, 2)]
    };
    for &(n, reps) in sizes.iter().filter(|_| !only_structure) {
        let reps = reps_override.unwrap_or(reps);
        let jobs: &[usize] = if quick && n > 100 { &[2] } else { &[1, 2] };
        for &jobs in jobs {
            b.workload_case(n, jobs, reps).await?;
        }
    }
    if !only_structure {
        b.fleet_case(if quick { 1000 } else { 10_000 }, 3).await?;
    }
    b.structure_case(if quick { 1000 } else { 10_000 }, 3)
        .await?;
    if !only_structure {
        b.cold_start_case(10).await?;
    }
    let us = instantiate_apply_us(&b.wasm_dir.join("light.wasm")).await?;

    println!();
    let opt = |v: Option<f64>, p: usize| v.map_or_else(|| "-".to_owned(), |d| format!("{d:.p$}"));
    println!(
        "{:<38} {:>7} {:>4} {:>9} {:>9} {:>6} {:>9} {:>6} {:>9} {:>6} {:>9} {:>9} {:>8} {:>6}  note",
        "case",
        "tenants",
        "jobs",
        "wasmig s",
        "direct s",
        "ratio",
        "login s",
        "ratio",
        "before s",
        "ratio",
        "srv ms/t",
        "login ms/t",
        "RSS MiB",
        "fs us"
    );
    for r in &b.rows {
        println!(
            "{:<38} {:>7} {:>4} {:>9.3} {:>9} {:>6} {:>9} {:>6} {:>9} {:>6} {:>9} {:>9} {:>8.1} {:>6.0}  {}",
            r.case,
            r.tenants,
            r.jobs,
            r.wasmig_s,
            opt(r.direct_s, 3),
            opt(r.ratio, 2),
            opt(r.direct_login_s, 3),
            opt(r.ratio_login, 2),
            opt(r.before_s, 3),
            opt(r.ratio_before, 3),
            opt(r.wasmig_server_ms_per_tenant, 1),
            opt(r.login_server_ms_per_tenant, 1),
            r.wasmig_peak_rss_mib,
            r.fs_create_us,
            r.note
        );
    }
    println!(
        "direct s: the same SQL over one warm connection per job; login s: the same SQL with a fresh login per tenant, the floor of one session per tenant role"
    );
    println!(
        "fs us: the slowest file creation timed before a run of the case (normal here is under 40 us; more means files deleted shortly before slowed the run)"
    );
    println!(
        "srv ms/t: CPU time of every PostgreSQL process during the run, per tenant (median); login ms/t: the same for the login-per-tenant side"
    );
    println!("instantiate + one apply call per step: {us:.1} us (median of 5 x 2000, in process)");
    // The fleet-scale gate: server work per tenant may not grow with the fleet.
    let per_tenant_at = |n: usize| {
        b.rows
            .iter()
            .find(|r| r.case.starts_with("full workload") && r.tenants == n && r.jobs == 2)
            .and_then(|r| r.wasmig_server_ms_per_tenant)
    };
    let gate = match (per_tenant_at(100), per_tenant_at(1000)) {
        (Some(small), Some(large)) => {
            let ratio = large / small;
            let pass = ratio <= 1.15;
            println!(
                "fleet-scale gate: {large:.1} ms of server time per tenant at 1,000 tenants against {small:.1} at 100: {ratio:.2}x (limit 1.15x): {}",
                if pass { "PASS" } else { "FAIL" }
            );
            pass
        }
        _ => true,
    };
    let out = Output {
        format: "wasmig-bench/1",
        postgres: version,
        durability: "PostgreSQL defaults (fsync on, synchronous_commit on)",
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        results: &b.rows,
        instantiate_apply_us: us,
    };
    let dir = b.root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("results.json");
    std::fs::write(&file, serde_json::to_string_pretty(&out)?)?;
    println!("results: {}", file.display());
    drop(b.work);
    if !gate {
        bail!("the fleet-scale gate failed: per-tenant server work grows with the fleet");
    }
    Ok(())
}
