//! `wasmig serve`, tested with the real programs: the server binary against a real
//! PostgreSQL, a real Prometheus server scraping it (its HTTP API asked for a wasmig series),
//! `promtool` on every exposition and on the shipped rules, and a real headless Chromium
//! rendering the dashboard.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Fleet, PluginDir, TestDb};
use wasmig::Exit;

/// A `wasmig serve` running in the background, killed when dropped.
struct Served {
    child: Child,
    base: String,
    /// What it printed after its first line, once it exited.
    rest: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    /// Starts `wasmig serve --listen 127.0.0.1:0 ARGS` and reads the address it bound from
    /// its first line.
    fn start(db: &TestDb, plugins: &PluginDir, args: &[&str]) -> Served {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = db
            .wasmig_command(plugins.path(), &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wasmig serve");
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut first).expect("read serve's first line");
        // The rest of its output (heal runs) is drained so it never blocks on a full pipe.
        let rest = std::thread::spawn(move || {
            let mut all = String::new();
            let mut line = String::new();
            while out.read_line(&mut line).is_ok_and(|n| n > 0) {
                eprint!("serve: {line}");
                all.push_str(&line);
                line.clear();
            }
            all
        });
        let base = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_else(|| panic!("serve did not say where it listens: {first:?}"));
        Served {
            child,
            base,
            rest: Some(rest),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        get(&format!("{}{path}", self.base))
    }

    /// SIGTERM, then the exit code within a bound; the server must have stopped cleanly
    /// (said so), not been ended by the signal.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("wait") {
                let said = self
                    .rest
                    .take()
                    .map(|t| t.join().expect("output"))
                    .unwrap_or_default();
                assert!(
                    said.contains("wasmig serve: stopping"),
                    "serve did not stop cleanly:\n{said}"
                );
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`: status and body (any status, no error for 503).
fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .expect("body");
    (status, body)
}

/// Polls `f` every 200 ms until it holds or `secs` pass.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {secs} s");
}

/// A program the tests need, or a failure saying what to install (never a silent skip).
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed: the serve tests need Debian's `{package}` package (`.ci/run` installs it: apt-get install {package})"
    );
}

fn promtool_check(text: &str, what: &str) {
    let mut child = Command::new(program("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on {what}:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

#[test]
fn probes_metrics_and_the_json_api_follow_the_fleet_and_sigterm_stops_the_server() {
    let (db, plugins) = Fleet::new("serve_api")
        .plugins(&["notes_v1"])
        .tenants(&["s1", "s2"])
        .build();
    let served = Served::start(&db, &plugins, &["--cache-for", "0s"]);
    assert_eq!(served.get("/livez"), (200, "ok\n".into()));
    // A page elsewhere that rebinds its name to 127.0.0.1 gets nothing.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let rebound = agent
        .get(format!("{}/api/status", served.base))
        .header("Host", "attacker.example:9187")
        .call()
        .expect("GET with another Host");
    assert_eq!(rebound.status().as_u16(), 421);
    let (code, ready) = served.get("/readyz");
    assert_eq!(code, 200, "{ready}");
    assert!(ready.contains("\"ready\": true"), "{ready}");

    let (code, metrics) = served.get("/metrics");
    assert_eq!(code, 200);
    for line in [
        "wasmig_up 1",
        "wasmig_tenants 2",
        "wasmig_pending_steps 0",
        "wasmig_plugin_schemas{plugin=\"notes\",state=\"up_to_date\"} 2",
        "wasmig_plugin_schemas{plugin=\"notes\",state=\"drifted\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("wasmig_build_info{version=\""),
        "{metrics}"
    );
    promtool_check(&metrics, "/metrics");
    let cli = db
        .wasmig(plugins.path(), &["metrics", "--format", "prometheus"])
        .expect(Exit::Ok)
        .stdout;
    promtool_check(&cli, "metrics --format prometheus");

    let (code, status) = served.get("/api/status");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(doc["format"], "wasmig.status/1");
    assert_eq!(doc["schemas"].as_array().expect("schemas").len(), 3);
    let up_to_date = doc["summary"]["state_counts"]
        .as_array()
        .expect("state counts")
        .iter()
        .find(|c| c["state"] == "up_to_date")
        .expect("up_to_date")["schema_count"]
        .clone();
    assert_eq!(up_to_date, 3);
    let (_, history) = served.get("/api/history");
    let history: serde_json::Value = serde_json::from_str(&history).expect("history JSON");
    let run = history["runs"][0]["run_id"].as_i64().expect("a run");
    let (code, detail) = served.get(&format!("/api/runs/{run}"));
    assert_eq!(code, 200, "{detail}");
    assert!(detail.contains("\"format\": \"wasmig.run/1\""), "{detail}");
    assert_eq!(served.get("/api/runs/999999").0, 404);

    // An applied step edited: not ready (503, with the reason), until the change is accepted.
    plugins.set(&["notes_v2_edited"]);
    let (code, why) = served.get("/readyz");
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("changed since applied"), "{why}");
    let (_, verbose) = served.get("/readyz?verbose");
    assert!(
        verbose.contains("[+]database ok") && verbose.contains("[-]drift failed"),
        "{verbose}"
    );
    db.wasmig(
        plugins.path(),
        &[
            "repair",
            "--all-tenants",
            "--plugin",
            "notes",
            "--step",
            "0002_note_body",
            "--yes",
        ],
    )
    .expect(Exit::Ok);
    let (code, ready) = served.get("/readyz");
    assert_eq!(code, 200, "{ready}");

    // The server never wrote: no run of its own.
    let runs = db.scalar_i64("SELECT count(*) FROM wasmig.run WHERE command LIKE 'serve%'");
    assert_eq!(runs, 0);
    assert_eq!(served.terminate(), Some(143));
}

#[test]
fn a_heal_schedule_applies_a_newly_pending_step_without_anyone_running_migrate() {
    let (db, plugins) = Fleet::new("serve_heal")
        .plugins(&["notes_v1"])
        .tenants(&["h1", "h2"])
        .build();
    let served = Served::start(&db, &plugins, &["--heal-every", "1s", "--cache-for", "0s"]);
    plugins.set(&["notes_v2_added"]);
    eventually(60, "the heal applies 0003 in both tenants", || {
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.ledger WHERE step_id = '0003_tags_unique_titles'",
        ) == 2
    });
    assert!(db.table_exists("h1", "note_tags"));
    let heals = db.scalar_i64(
        "SELECT count(*) FROM wasmig.run WHERE command = 'serve --heal-every' AND outcome = 'ok'",
    );
    assert!(heals >= 1, "heal runs are recorded as such");
    eventually(30, "the heal counters", || {
        let (_, m) = served.get("/metrics");
        m.lines()
            .find_map(|l| l.strip_prefix("wasmig_heal_runs_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
            && m.contains("wasmig_last_successful_heal_timestamp_seconds ")
    });
    assert_eq!(served.terminate(), Some(143));
}

#[test]
fn a_real_prometheus_scrapes_the_fleet_and_the_shipped_rules_pass_their_tests() {
    let (db, plugins) = Fleet::new("serve_prom")
        .plugins(&["notes_v1"])
        .tenants(&["p1", "p2", "p3"])
        .build();
    let served = Served::start(&db, &plugins, &["--cache-for", "1s"]);
    let target = served.base.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: wasmig\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("prometheus config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut prom = Command::new(program("prometheus", "prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(&mut prom);
    let query = |q: &str| -> Option<String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut r = agent
            .get(format!("http://127.0.0.1:{port}/api/v1/query"))
            .query("query", q)
            .call()
            .ok()?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    };
    eventually(90, "Prometheus has scraped wasmig_tenants", || {
        query("wasmig_tenants").as_deref() == Some("3")
    });
    assert_eq!(
        query("wasmig_plugin_schemas{plugin=\"notes\",state=\"up_to_date\"}").as_deref(),
        Some("3")
    );
    assert_eq!(query("up{job=\"wasmig\"}").as_deref(), Some("1"));

    // The shipped rules, with their own unit tests.
    let rules = repo().join("contrib/prometheus");
    let out = Command::new(program("promtool", "prometheus"))
        .args(["test", "rules", "wasmig-rules.test.yml"])
        .current_dir(&rules)
        .output()
        .expect("promtool test rules");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(program("promtool", "prometheus"))
        .args(["check", "rules", "wasmig-rules.yml"])
        .current_dir(&rules)
        .output()
        .expect("promtool check rules");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_dashboard_renders_the_fleet_in_a_real_browser_and_escapes_what_tenants_named() {
    let (db, plugins) = Fleet::new("serve_browser")
        .plugins(&["notes_v1"])
        .tenants(&["b1", "b2", "b3", "b4"])
        .build();
    // One tenant drifted (its step edited after it applied it), one held with a reason
    // that looks like markup.
    db.exec("UPDATE wasmig.ledger SET checksum = repeat('0', 64) WHERE schema_name = 'b3' AND step_id = '0002_note_body'");
    db.wasmig(
        plugins.path(),
        &["hold", "--schema", "b4", "--reason", "<b>owner asked</b>"],
    )
    .expect(Exit::Ok);
    let served = Served::start(&db, &plugins, &["--cache-for", "0s"]);
    let chromium = program("chromium", "chromium");
    let profile = tempfile::tempdir().expect("profile");
    let browse = |extra: &[String]| {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("{}/", served.base))
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = browse(&["--dump-dom".to_owned()]);
    // A ledger row changed by hand does not verify: b3 counts as forged.
    for needle in [
        "id=\"schema-count\">5<",
        "id=\"count-forged\">1<",
        "id=\"count-held\">1<",
        "id=\"count-up_to_date\">3<",
        ">b3<",
        "&lt;b&gt;owner asked&lt;/b&gt;",
        "id=\"runs-chart\"",
    ] {
        assert!(
            dom.contains(needle),
            "no `{needle}` in the rendered page:\n{dom}"
        );
    }
    assert!(
        !dom.contains("<b>owner asked</b>"),
        "tenant text became markup"
    );
    assert!(!dom.contains("<script"), "the page runs no script");
    // A screenshot for people to look at.
    let shot = repo().join("target/dashboard.png");
    std::fs::create_dir_all(shot.parent().expect("target")).expect("target dir");
    browse(&[format!("--screenshot={}", shot.display())]);
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
    // The filter and the run page.
    let (_, forged) = served.get("/?state=forged");
    assert!(
        forged.contains("id=\"schema-matches\">1 schema(s) match"),
        "{forged}"
    );
    let (code, run) = served.get("/runs/1");
    assert_eq!(code, 200);
    assert!(run.contains("Run 1"), "{run}");
}

#[test]
fn status_summarises_a_fleet_above_fifty_schemas_and_filters_it() {
    let names: Vec<String> = (0..55).map(|i| format!("t{i:02}")).collect();
    let (db, plugins) = Fleet::new("status_summary")
        .plugins(&["notes_v1"])
        .tenants(&names)
        .build();
    let p = plugins.path();
    let status = |args: &[&str]| {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        db.wasmig(p, &all).expect(Exit::Ok).stdout
    };
    let all_done = status(&[]);
    assert!(
        all_done.starts_with("56 schema(s): 56 up to date, 0 pending"),
        "{all_done}"
    );
    assert!(
        all_done.lines().any(|l| l.starts_with("notes")
            && l.contains("0002_note_body (latest)")
            && l.ends_with(" 55")),
        "{all_done}"
    );
    plugins.set(&["notes_v2_added"]);
    db.exec("UPDATE wasmig.ledger SET checksum = repeat('0', 64) WHERE schema_name = 't07' AND step_id = '0001_notes'");
    let behind = status(&[]);
    assert!(
        behind.starts_with(
            "56 schema(s): 1 up to date, 54 pending, 0 held, 0 failed, 0 drifted, 1 forged"
        ),
        "{behind}"
    );
    // Worst first, 20 by default.
    assert!(
        behind.contains("not up to date (20 of 55; --limit N shows more, --all every schema):"),
        "{behind}"
    );
    let first = behind
        .lines()
        .skip_while(|l| !l.starts_with("not up to date"))
        .nth(1)
        .expect("an outlier");
    assert!(first.contains("t07") && first.contains("forged"), "{first}");
    // Every schema with --all; two named ones as rows.
    assert_eq!(
        status(&["--all"])
            .lines()
            .filter(|l| l.starts_with('t'))
            .count(),
        55
    );
    let two = status(&["--schema", "t03", "--schema", "t04"]);
    assert!(two.starts_with("SCHEMA"), "{two}");
    assert_eq!(
        two.lines().filter(|l| l.starts_with("t0")).count(),
        2,
        "{two}"
    );
    // JSON: the summary always, the rows only when listed.
    let doc: serde_json::Value =
        serde_json::from_str(&status(&["--json", "--problems", "--limit", "5"]))
            .expect("status JSON");
    assert_eq!(doc["summary"]["outlier_count"], 55);
    assert_eq!(
        doc["summary"]["outliers"]
            .as_array()
            .expect("outliers")
            .len(),
        5
    );
    assert_eq!(
        doc["summary"]["state_counts"][3],
        serde_json::json!({"state": "pending", "schema_count": 54})
    );
    assert!(doc.get("schemas").is_none(), "{doc}");
    let listed: serde_json::Value =
        serde_json::from_str(&status(&["--json", "--all"])).expect("status JSON");
    assert_eq!(listed["schemas"].as_array().expect("schemas").len(), 56);
    let unknown = db
        .wasmig(p, &["status", "--plugin", "nots"])
        .expect(Exit::Error);
    assert!(
        unknown.stderr.contains("`--plugin nots`"),
        "{}",
        unknown.stderr
    );
}

/// A local webhook: accepts connections, answers 200, and hands each request's body over.
fn webhook() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("webhook");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (port, rx)
}

#[test]
fn a_failed_run_is_notified_and_an_unreachable_webhook_does_not_fail_the_run() {
    let (db, plugins) = Fleet::new("notify")
        .plugins(&["notes_v1"])
        .tenants(&["n1", "n2"])
        .build();
    db.exec("INSERT INTO n1.notes (title) VALUES ('same'), ('same')");
    plugins.set(&["notes_v2_added"]);
    let (port, bodies) = webhook();
    let url = format!("http://127.0.0.1:{port}/hooks/T0/SECRET-TOKEN");
    let run = db
        .wasmig(plugins.path(), &["migrate", "--notify", &url])
        .expect(Exit::Problems);
    let body = bodies
        .recv_timeout(Duration::from_secs(20))
        .expect("a notification");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("notification JSON");
    let text = doc["text"].as_str().expect("text");
    assert!(
        text.contains("ended failed") && text.contains("(n1)"),
        "{text}"
    );
    assert_eq!(doc["run"]["format"], "wasmig.run/1");
    let n1 = doc["run"]["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "n1")
        .expect("n1");
    assert_eq!(n1["failures"][0]["step"], "0003_tags_unique_titles");
    assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
    // The run's recorded arguments (history, the API) keep only the webhook's host.
    let history = db
        .wasmig(plugins.path(), &["history", "--json"])
        .expect(Exit::Ok)
        .stdout;
    assert!(!history.contains("SECRET"), "{history}");
    assert!(history.contains("http://127.0.0.1:"), "{history}");

    // Nobody listening (the config file's URL this time): said, bounded, and the run's own
    // exit code stands (n1 fails again).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let config = tempfile::tempdir().expect("config dir");
    let file = config.path().join("wasmig.toml");
    std::fs::write(
        &file,
        format!("[defaults]\nnotify = \"http://127.0.0.1:{dead}/${{HOOK_PATH}}\"\n"),
    )
    .expect("config");
    let started = Instant::now();
    let out = db
        .wasmig_command(
            plugins.path(),
            &["--config", file.to_str().expect("utf8"), "verify", "--fix"],
        )
        .env("HOOK_PATH", "SECRET-PATH")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the notification to http://127.0.0.1:")
            && stderr.contains("was not delivered after 3 attempts"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRET-PATH"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // A run that ends ok notifies nobody.
    db.exec("DELETE FROM n1.notes WHERE id = (SELECT max(id) FROM n1.notes)");
    db.wasmig(plugins.path(), &["migrate", "--notify", &url])
        .expect(Exit::Ok);
    assert!(bodies.recv_timeout(Duration::from_secs(2)).is_err());
}

#[test]
fn a_report_compares_a_window_with_the_one_before_and_metrics_cover_a_window() {
    let (db, plugins) = Fleet::new("report")
        .plugins(&["notes_v1"])
        .tenants(&["r1", "r2"])
        .build();
    let p = plugins.path();
    db.exec("INSERT INTO r1.notes (title) VALUES ('same'), ('same')");
    plugins.set(&["notes_v2_added"]);
    db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    let runs = db.scalar_i64("SELECT count(*) FROM wasmig.run");
    let text = db
        .wasmig(p, &["report", "--since", "1d"])
        .expect(Exit::Ok)
        .stdout;
    assert!(
        text.contains(&format!("runs: {runs} (previous 0, up)")),
        "{text}"
    );
    assert!(
        text.contains("notes/0003_tags_unique_titles (SQLSTATE 23505) x1 in 1 schema(s): could not create unique index"),
        "{text}"
    );
    assert!(
        text.contains("slowest schemas:") && text.contains("r2"),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_str(
        &db.wasmig(p, &["report", "--since", "24h", "--json"])
            .expect(Exit::Ok)
            .stdout,
    )
    .expect("report JSON");
    assert_eq!(doc["format"], "wasmig.report/1");
    assert_eq!(doc["current"]["failure_count"], 1);
    assert_eq!(doc["current"]["runs"]["failed"], 1);
    assert_eq!(doc["previous"]["run_count"], 0);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("weekly.html");
    db.wasmig(p, &["report", "--html", file.to_str().expect("utf8")])
        .expect(Exit::Ok);
    let html = std::fs::read_to_string(&file).expect("the report");
    assert!(
        html.contains("id=\"report\"") && html.contains(">r1<"),
        "{html}"
    );
    assert!(
        !html.contains("href=\"/runs/"),
        "no link to a page a file does not have"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );

    let m = db
        .wasmig(p, &["metrics", "--window", "24h"])
        .expect(Exit::Ok)
        .stdout;
    for line in [
        "wasmig_window_seconds 86400",
        "wasmig_window_runs{outcome=\"failed\"} 1",
        "wasmig_window_failed_steps 1",
    ] {
        assert!(m.lines().any(|l| l == line), "no `{line}` in:\n{m}");
    }
    promtool_check(&m, "metrics --window 24h");
    let bad = db
        .wasmig(p, &["report", "--since", "0d"])
        .expect(Exit::Error);
    assert!(
        bad.stderr.contains("--since: invalid window `0d`"),
        "{}",
        bad.stderr
    );
}
