//! Operator workflow: wait, verify (--fix), health, metrics, history, revert, baseline,
//! repair, and crash safety.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Fleet, PluginDir, TestDb, WORKLOAD};
use wasmig::Exit;

fn fleet(label: &str, plugins: &[&str], tenants: &[&str]) -> (TestDb, PluginDir) {
    Fleet::new(label)
        .plugins(plugins)
        .shared_first()
        .tenants(tenants)
        .build()
}

#[test]
fn an_older_control_schema_is_refused_until_init_upgrades_it() {
    let (db, dir) = fleet("old_control", &["notes_v1"], &["acme"]);
    db.exec("UPDATE wasmig.meta SET value = '1' WHERE key = 'control_version'");
    let ledger = db.ledger_dump();
    for args in [&["status"][..], &["migrate"][..]] {
        let run = db.wasmig(dir.path(), args).expect(Exit::Error);
        assert!(
            run.stderr.contains("control schema is version 1")
                && run.stderr.contains("run `wasmig init`"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(db.ledger_dump(), ledger, "nothing was applied");
    db.wasmig(dir.path(), &["init"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_text("SELECT value FROM wasmig.meta WHERE key = 'control_version'"),
        Some(wasmig::CONTROL_VERSION.to_string())
    );
    db.wasmig(dir.path(), &["migrate"]).expect(Exit::Ok);
}

#[test]
fn wait_returns_when_the_database_answers_and_fails_with_the_last_error() {
    let db = TestDb::new("wait");
    let plugins = PluginDir::new(&["notes_v1"]);
    let run = db
        .wasmig(plugins.path(), &["wait", "--timeout", "10s"])
        .expect(Exit::Ok);
    assert!(run.stdout.contains("accepts connections"), "{}", run.stdout);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://nobody:secret-pw@127.0.0.1:{port}/x");
    let started = Instant::now();
    let run = db
        .wasmig(
            plugins.path(),
            &["--database-url", &url, "wait", "--timeout", "1500ms"],
        )
        .expect(Exit::Error);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited"
    );
    assert!(
        run.stderr
            .contains("did not accept connections within 1.5s"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("last error"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret-pw"));
    db.wasmig(plugins.path(), &["wait", "--timeout", "forever"])
        .expect(Exit::Error);
}

#[test]
fn verify_reports_pending_and_drift_and_fix_applies_what_is_pending() {
    let (db, plugins) = fleet("verify", &["notes_v1"], &["v1", "v2"]);
    let ok = db
        .wasmig(plugins.path(), &["verify", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.verify/1");
    assert_eq!(
        (&ok["tenant_count"], &ok["ok_count"], &ok["issue_count"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(2),
            &serde_json::json!(0)
        )
    );
    plugins.set(&["notes_v2_added"]);
    let pending = db
        .wasmig(plugins.path(), &["verify", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.verify/1");
    assert_eq!(pending["issue_count"], 2);
    let v1 = &pending["tenants"][0];
    assert_eq!(v1["schema"], "v1");
    assert_eq!(
        v1["pending"],
        serde_json::json!([{"plugin": "notes", "step": "0003_tags_unique_titles"}])
    );
    assert_eq!(v1["applied_count"], 2);
    assert_eq!(v1["drift"], serde_json::json!([]));
    assert!(v1.get("domain").is_some());
    // Only one tenant, quietly.
    let one = db
        .wasmig(plugins.path(), &["-q", "verify", "--tenant", "v2"])
        .expect(Exit::Problems);
    assert_eq!(one.stdout.trim(), "1 tenant(s): 0 ok, 1 with issues");
    db.wasmig(plugins.path(), &["verify", "--fix"])
        .expect(Exit::Ok);
    assert!(db.table_exists("v1", "note_tags") && db.table_exists("v2", "note_tags"));
    plugins.set(&["notes_v2_edited"]);
    let drift = db
        .wasmig(plugins.path(), &["verify", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.verify/1");
    assert_eq!(drift["tenants"][0]["drift"][0]["step"], "0002_note_body");
    db.wasmig(plugins.path(), &["verify", "--tenant", "nope"])
        .expect(Exit::Error);
}

#[test]
fn health_metrics_and_history() {
    let (db, plugins) = fleet("health", &["notes_v1"], &["h1", "h2"]);
    let h = db
        .wasmig(plugins.path(), &["health", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.health/1");
    assert_eq!(h["healthy"], true);
    assert_eq!(h["tenant_count"], 2);
    assert_eq!(h["control_version"], wasmig::CONTROL_VERSION);
    assert!(h["latency_seconds"].as_f64().expect("latency") > 0.0);
    assert!(
        h["server_version"]
            .as_str()
            .expect("version")
            .starts_with(char::is_numeric)
    );
    assert_eq!(h["last_run"]["outcome"], "ok");
    plugins.set(&["notes_v2_added"]);
    let h = db
        .wasmig(plugins.path(), &["health", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.health/1");
    assert_eq!(h["pending_count"], 2);
    assert!(
        h["problems"][0]
            .as_str()
            .expect("problem")
            .contains("2 step(s) pending")
    );

    let text = db
        .wasmig(plugins.path(), &["metrics"])
        .expect(Exit::Ok)
        .stdout;
    for line in [
        "wasmig_tenants 2",
        "wasmig_tenants_with_pending 2",
        "wasmig_pending_steps 2",
        "wasmig_drifted_steps 0",
        "wasmig_last_run_success 1",
    ] {
        assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");
    }
    assert!(text.contains("# TYPE wasmig_step_duration_seconds summary"));
    assert!(
        text.contains("wasmig_step_duration_seconds_count 4"),
        "{text}"
    );
    let out = plugins.path().join("wasmig.prom");
    db.wasmig(
        plugins.path(),
        &[
            "metrics",
            "--format",
            "json",
            "--output",
            out.to_str().expect("utf8"),
        ],
    )
    .expect(Exit::Ok);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("metrics file")).expect("json");
    assert_eq!(m["format"], "wasmig.metrics/1");
    assert_eq!(m["pending_count"], 2);
    assert_eq!(m["step_duration"]["count"], 4);
    assert!(!out.with_extension("tmp").exists(), "written atomically");

    let url_with_password = db.url.clone();
    db.wasmig(
        plugins.path(),
        &["--database-url", &url_with_password, "migrate"],
    )
    .expect(Exit::Ok);
    let hist = db
        .wasmig(plugins.path(), &["history", "--json", "--limit", "2"])
        .expect(Exit::Ok)
        .doc("wasmig.history/1");
    let runs = hist["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["command"], "migrate");
    assert_eq!(runs[0]["outcome"], "ok");
    assert_eq!(runs[0]["applied_count"], 2);
    let args = runs[0]["arguments"].to_string();
    assert!(
        args.contains("--database-url") && args.contains(":***@"),
        "{args}"
    );
    assert!(!args.contains(crate::support::ADMIN_PASSWORD), "{args}");
    let text = db
        .wasmig(plugins.path(), &["history"])
        .expect(Exit::Ok)
        .stdout;
    assert!(text.contains("RUN") && text.contains("migrate"), "{text}");
}

#[test]
fn revert_runs_revert_steps_newest_first_and_stops_at_an_irreversible_one() {
    let (db, plugins) = fleet(
        "revert",
        &["carriers", "customers", "suppliers", "finance_next"],
        &["r1"],
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'r1' AND column_name = 'external_ref'"),
        1
    );
    // Back to 0003: 0004 is reverted, its ledger row removed in the same transaction.
    let run = db
        .wasmig(
            plugins.path(),
            &[
                "revert",
                "--schema",
                "r1",
                "--plugin",
                "finance",
                "--to",
                "0003_invoice_paid_at_invoiceline_tax_rate_and_more",
                "--yes",
            ],
        )
        .expect(Exit::Ok);
    assert!(
        run.stdout
            .contains("reverted finance/0004_invoice_external_ref_and_more"),
        "{}",
        run.stdout
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'r1' AND column_name = 'external_ref'"),
        0
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'r1' AND plugin = 'finance'"
        ),
        3
    );
    // 0003 has no revert: everything stops there, nothing else changes.
    let before = db.ledger_dump();
    let run = db
        .wasmig(
            plugins.path(),
            &["revert", "--schema", "r1", "--plugin", "finance", "--yes"],
        )
        .expect(Exit::Problems);
    assert!(run.stderr.contains("step `0003_invoice_paid_at_invoiceline_tax_rate_and_more` of plugin `finance` is irreversible"), "{}", run.stderr);
    assert_eq!(db.ledger_dump(), before);
    // A plugin others build on cannot be reverted away from under them.
    let run = db
        .wasmig(
            plugins.path(),
            &["revert", "--schema", "r1", "--plugin", "carriers", "--yes"],
        )
        .expect(Exit::Problems);
    assert!(
        run.stderr.contains("required by") && run.stderr.contains("`customers`"),
        "{}",
        run.stderr
    );
    // migrate brings 0004 back.
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'r1' AND plugin = 'finance'"
        ),
        4
    );
}

#[test]
fn baseline_adopts_a_schema_migrated_by_another_tool() {
    let (db, plugins) = fleet("baseline", &["notes_v1"], &[]);
    db.wasmig(plugins.path(), &["tenant", "create", "old", "--no-migrate"])
        .expect(Exit::Ok);
    // The older tool created the first table itself.
    db.exec(&format!(
        "SET ROLE \"{}_old\"; CREATE TABLE old.notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, title text NOT NULL); RESET ROLE;",
        db.name
    ));
    let run = db
        .wasmig(
            plugins.path(),
            &[
                "baseline",
                "--schema",
                "old",
                "--plugin",
                "notes",
                "--to",
                "0001_notes",
            ],
        )
        .expect(Exit::Ok);
    assert!(run.stdout.contains("recorded 1 step(s)"), "{}", run.stdout);
    let status = db
        .wasmig(plugins.path(), &["status", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    let old = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "old")
        .expect("old")
        .clone();
    assert_eq!(old["applied_count"], 1);
    assert_eq!(old["forged"], serde_json::json!([]));
    assert_eq!(
        old["pending"],
        serde_json::json!([{"plugin": "notes", "step": "0002_note_body"}])
    );
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'old'"),
        2
    );
    db.wasmig(
        plugins.path(),
        &[
            "baseline", "--schema", "old", "--plugin", "notes", "--to", "9999",
        ],
    )
    .expect(Exit::Error);
}

#[test]
fn repair_records_the_current_checksum_after_review() {
    let (db, plugins) = fleet("repair", &["notes_v1"], &["rp"]);
    plugins.set(&["notes_v2_edited"]);
    db.wasmig(plugins.path(), &["migrate"])
        .expect(Exit::Problems);
    let run = db
        .wasmig(
            plugins.path(),
            &[
                "repair",
                "--schema",
                "rp",
                "--plugin",
                "notes",
                "--step",
                "0002_note_body",
            ],
        )
        .expect(Exit::Ok);
    assert!(
        run.stdout.contains("`notes/0002_note_body` checksum ") && run.stdout.contains(" -> "),
        "{}",
        run.stdout
    );
    db.wasmig(plugins.path(), &["verify"]).expect(Exit::Ok);
    db.wasmig(
        plugins.path(),
        &["repair", "--schema", "rp", "--plugin", "notes"],
    )
    .expect(Exit::Error);
    plugins.set(&["notes_v2_added"]);
    let run = db
        .wasmig(
            plugins.path(),
            &[
                "repair",
                "--schema",
                "rp",
                "--plugin",
                "notes",
                "--step",
                "0003_tags_unique_titles",
            ],
        )
        .expect(Exit::Error);
    assert!(run.stderr.contains("not recorded"), "{}", run.stderr);
}

#[test]
fn sigkill_in_the_middle_of_a_fleet_migration_loses_nothing() {
    let db = TestDb::new("sigkill");
    let plugins = PluginDir::new(WORKLOAD);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    let tenants: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
    let mut args = vec!["tenant", "create", "--no-migrate"];
    args.extend(tenants.iter().map(String::as_str));
    db.wasmig(plugins.path(), &args).expect(Exit::Ok);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["-q", "migrate", "--jobs", "2"])
        .env("DATABASE_URL", &db.url)
        .env("WASMIG_PLUGINS", plugins.path())
        .env("WASMIG_TRUSTED", "reference")
        .env(
            "WASMIG_CACHE_DIR",
            crate::support::server().dir.join("compile-cache"),
        )
        .spawn()
        .expect("spawn wasmig");
    // Let it get well into the tenants, then kill it without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name LIKE 'k%'") < 100
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let partial = db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name LIKE 'k%'");
    assert!(partial < 50 * 14, "killed before the end ({partial} steps)");
    // The history shows the dead run as abandoned, with the steps its rows say it applied.
    let shared_rows =
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'shared'");
    let history = db
        .wasmig(plugins.path(), &["history", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.history/1");
    let dead = &history["runs"][0];
    assert_eq!(dead["outcome"], "abandoned", "{dead}");
    assert_eq!(dead["applied_count"], partial + shared_rows, "{dead}");
    // Every recorded step is really applied: the ledger and the schemas agree.
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name LIKE 'k%'"),
        50 * 14
    );
    for t in &tenants {
        assert!(db.table_exists(t, "finance_invoice"), "{t}");
        assert_eq!(
            db.scalar_i64(&format!("SELECT count(*) FROM {t}.customers_customer")),
            3,
            "{t}: seeded exactly once"
        );
    }
    // The run that died is visible as unfinished; no lock is left once its sessions are gone.
    assert!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.run WHERE command = 'migrate' AND finished_at IS NULL"
        ) >= 1
    );
    assert_eq!(
        db.advisory_locks_after_wasmig_left(),
        0,
        "no stale advisory lock"
    );
}

#[test]
fn config_file_environments_interpolation_and_errors() {
    let (db, plugins) = fleet("config", &["notes_v1"], &["c1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = db
        .url
        .replace(crate::support::ADMIN_PASSWORD, "${WASMIG_TEST_PW}");
    let config = dir.path().join("wasmig.toml");
    std::fs::write(
        &config,
        format!(
            "default_env = \"dev\"\n\n[defaults]\njobs = 2\nplugins = \"{plugins}\"\n\n[env.dev]\ndatabase_url = \"postgres://nobody@127.0.0.1:1/none\"\n\n[env.prod]\ndatabase_url = \"{url}\"\nstep_timeout = \"2m\"\n",
            plugins = plugins.path().display()
        ),
    )
    .expect("write config");
    let run = |args: &[&str], pw: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wasmig"));
        c.args(args)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("WASMIG_PLUGINS")
            .env_remove("PGHOST")
            .env(
                "WASMIG_CACHE_DIR",
                crate::support::server().dir.join("compile-cache"),
            );
        match pw {
            Some(p) => c.env("WASMIG_TEST_PW", p),
            None => c.env_remove("WASMIG_TEST_PW"),
        };
        let out = c.output().expect("run wasmig");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // ./wasmig.toml is found in the working directory; --env picks the environment and the
    // password comes from the environment.
    let (code, out, err) = run(
        &["--env", "prod", "verify"],
        Some(crate::support::ADMIN_PASSWORD),
    );
    assert_eq!(code, Some(Exit::Ok as i32), "{out}{err}");
    assert!(out.contains("1 tenant(s): 1 ok"), "{out}");
    // A missing variable names the file, the line and the key, and never the URL's password.
    let (code, _, err) = run(&["--env", "prod", "status"], None);
    assert_eq!(code, Some(Exit::Error as i32));
    assert!(
        err.contains("wasmig.toml`, line 11, `env.prod.database_url`")
            && err.contains("${WASMIG_TEST_PW}"),
        "{err}"
    );
    // Unknown environment.
    let (code, _, err) = run(&["--env", "staging", "status"], Some("x"));
    assert_eq!(code, Some(Exit::Error as i32));
    assert!(
        err.contains("no environment `staging`") && err.contains("dev, prod"),
        "{err}"
    );
    // The default environment (dev) points nowhere: the flag overrides it.
    let (code, out, err) = run(&["--database-url", &db.url, "verify"], None);
    assert_eq!(code, Some(Exit::Ok as i32), "{out}{err}");
    // An unreadable config file.
    let (code, _, err) = run(&["--config", "/nonexistent/wasmig.toml", "status"], None);
    assert_eq!(code, Some(Exit::Error as i32));
    assert!(
        err.contains("cannot read config file `/nonexistent/wasmig.toml`"),
        "{err}"
    );
    // A misspelt key is named with its line.
    std::fs::write(&config, "[defaults]\njbos = 4\n").expect("write config");
    let (code, _, err) = run(&["status"], None);
    assert_eq!(code, Some(Exit::Error as i32));
    assert!(err.contains("line 2") && err.contains("jbos"), "{err}");
}

#[test]
fn backups_are_taken_before_migrating_and_restore_puts_schema_and_ledger_back() {
    let (db, plugins) = fleet("backup", &["notes_v1"], &["b1", "b2"]);
    db.exec("INSERT INTO b1.notes (title) VALUES ('keep me')");
    plugins.set(&["notes_v2_added"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("backups");
    db.wasmig(
        plugins.path(),
        &["migrate", "--backup-dir", backups.to_str().expect("utf8")],
    )
    .expect(Exit::Ok);
    let files: Vec<String> = std::fs::read_dir(&backups)
        .expect("backup dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for t in ["b1", "b2"] {
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("{t}-")) && f.ends_with(".dump")),
            "{files:?}"
        );
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("{t}-")) && f.ends_with(".ledger.json")),
            "{files:?}"
        );
    }
    assert!(db.table_exists("b1", "note_tags"));
    let dump = backups.join(
        files
            .iter()
            .find(|f| f.starts_with("b1-") && f.ends_with(".dump"))
            .expect("b1 dump"),
    );
    db.wasmig(
        plugins.path(),
        &[
            "restore",
            dump.to_str().expect("utf8"),
            "--schema",
            "b1",
            "--yes",
        ],
    )
    .expect(Exit::Ok);
    // Back to the state before the migration: data, structure and ledger.
    assert!(!db.table_exists("b1", "note_tags"));
    assert_eq!(
        db.scalar_text("SELECT title FROM b1.notes").as_deref(),
        Some("keep me")
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'b1'"),
        2
    );
    let owner = db.scalar_text(
        "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'b1' AND tablename = 'notes'",
    );
    assert_eq!(owner, Some(format!("{}_b1", db.name)), "ownership restored");
    let v = db
        .wasmig(plugins.path(), &["verify", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.verify/1");
    assert_eq!(
        v["tenants"][0]["pending"],
        serde_json::json!([{"plugin": "notes", "step": "0003_tags_unique_titles"}])
    );
    assert_eq!(
        v["tenants"][0]["forged"],
        serde_json::json!([]),
        "restored ledger rows still authenticate"
    );
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert!(db.table_exists("b1", "note_tags"));

    // Without pg_dump nothing is applied at all.
    db.wasmig(plugins.path(), &["tenant", "create", "b3", "--no-migrate"])
        .expect(Exit::Ok);
    let out = Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["migrate", "--backup-dir", backups.to_str().expect("utf8")])
        .env("DATABASE_URL", &db.url)
        .env("WASMIG_PLUGINS", plugins.path())
        .env("WASMIG_PG_DUMP", "/nonexistent/pg_dump")
        .output()
        .expect("run wasmig");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(Exit::Error as i32), "{stderr}");
    assert!(stderr.contains("`pg_dump` was not found"), "{stderr}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'b3'"),
        0
    );
}

#[test]
fn a_postgres_restart_mid_run_is_reported_and_a_rerun_finishes() {
    // A server of its own: restarting the shared one would disturb the other tests.
    let srv = crate::support::Server::start(crate::support::Durability::Fast);
    let url = srv.url("postgres");
    let plugins = PluginDir::new(WORKLOAD);
    let wasmig = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wasmig"));
        c.args(args)
            .env("DATABASE_URL", &url)
            .env("WASMIG_PLUGINS", plugins.path())
            .env("WASMIG_TRUSTED", "reference")
            .env(
                "WASMIG_CACHE_DIR",
                crate::support::server().dir.join("compile-cache"),
            );
        c
    };
    let init = wasmig(&["-q", "init"]).output().expect("init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let tenants: Vec<String> = (0..40).map(|i| format!("p{i:02}")).collect();
    let mut create = vec!["-q", "tenant", "create", "--no-migrate"];
    create.extend(tenants.iter().map(String::as_str));
    assert!(wasmig(&create).status().expect("create").success());
    let child = wasmig(&["migrate", "--jobs", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Restart once the run is well under way.
    let admin = || {
        Command::new("psql")
            .args([
                &url,
                "-qAtc",
                "SELECT count(*) FROM wasmig.ledger WHERE schema_name LIKE 'p%'",
            ])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<i64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin() < 60 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    srv.restart();
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(Exit::Problems as i32),
        "the interrupted run reports problems:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("run ") && stdout.contains("problem(s)"),
        "the summary is printed:\n{stdout}"
    );
    // One by one, or (an identical failure in several) once with their names.
    assert!(
        stderr.contains("error: schema `p") || stderr.contains(" schemas (p"),
        "affected tenants are named:\n{stderr}"
    );
    // The rerun finishes every tenant, each step exactly once.
    let rerun = wasmig(&["-q", "migrate"]).output().expect("rerun");
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(admin(), 40 * 14);
}

/// Checks the rules every JSON document follows, wherever a key appears: a step list holds
/// `{plugin, step}` objects, a `_count` is a whole number, a duration is in seconds, and no
/// key uses another unit.
fn assert_vocabulary(what: &str, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                assert!(
                    !k.ends_with("_ms") && !k.ends_with("_s") && k != "results" && k != "totals",
                    "{what}: key `{k}` is not in the vocabulary"
                );
                if k.ends_with("_count") {
                    assert!(x.is_u64() || x.is_null(), "{what}: `{k}` is a count: {x}");
                }
                if k.ends_with("_seconds") {
                    assert!(
                        x.is_number() || x.is_null(),
                        "{what}: `{k}` is seconds: {x}"
                    );
                }
                if ["pending", "applied", "forged", "unknown"].contains(&k.as_str()) {
                    let list = x
                        .as_array()
                        .unwrap_or_else(|| panic!("{what}: `{k}` is a list: {x}"));
                    for s in list {
                        assert!(
                            s["plugin"].is_string() && s["step"].is_string(),
                            "{what}: `{k}` holds steps as {{plugin, step}}: {s}"
                        );
                    }
                }
                if ["failure", "last_failure", "error"].contains(&k.as_str()) && !x.is_null() {
                    assert!(
                        x.get("sqlstate").is_some() && x["message"].is_string(),
                        "{what}: `{k}`: {x}"
                    );
                }
                assert_vocabulary(what, x);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| assert_vocabulary(what, x)),
        _ => {}
    }
}

#[test]
fn every_json_document_names_its_format_and_speaks_one_vocabulary() {
    let (db, plugins) = fleet("vocab", &["notes_v1"], &["j1", "j2"]);
    // j2 cannot take the unique constraint of the next step.
    db.exec("INSERT INTO j2.notes (title) VALUES ('same'), ('same')");
    plugins.set(&["notes_v2_added"]);
    let p = plugins.path();
    let doc = |args: &[&str], exit: Exit, format: &str| {
        let d = db.wasmig(p, args).expect(exit).doc(format);
        assert_vocabulary(&args.join(" "), &d);
        d
    };
    let plan = doc(
        &["migrate", "--dry-run", "--json"],
        Exit::Ok,
        "wasmig.plan/1",
    );
    assert_eq!(plan["pending_count"], 2, "{plan}");
    let planned = &plan["schemas"][1]["pending"][0];
    assert_eq!(planned["step"], "0003_tags_unique_titles", "{plan}");
    assert_eq!(planned["transactional"], true, "{plan}");

    let run = doc(&["migrate", "--json"], Exit::Problems, "wasmig.migrate/1");
    assert_eq!(
        (
            &run["schema_count"],
            &run["applied_count"],
            &run["problem_count"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{run}"
    );
    let by = |name: &str| {
        run["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .find(|s| s["schema"] == name)
            .expect(name)
            .clone()
    };
    let shared = by("shared");
    assert_eq!(shared["outcome"], "up_to_date", "{run}");
    let j1 = by("j1");
    assert_eq!(j1["outcome"], "applied");
    assert_eq!(
        j1["applied"],
        serde_json::json!([{"plugin": "notes", "step": "0003_tags_unique_titles"}])
    );
    assert!(
        j1["failure"].is_null() && j1["duration_seconds"].as_f64().is_some(),
        "{j1}"
    );
    let j2 = by("j2");
    assert_eq!(j2["outcome"], "failed");
    assert_eq!(j2["applied"], serde_json::json!([]));
    assert_eq!(j2["failure"]["plugin"], "notes");
    assert_eq!(j2["failure"]["step"], "0003_tags_unique_titles");
    assert_eq!(j2["failure"]["sqlstate"], "23505", "{j2}");

    let status = doc(&["status", "--json"], Exit::Ok, "wasmig.status/1");
    let s2 = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "j2")
        .expect("j2")
        .clone();
    assert_eq!(s2["applied_count"], 2);
    assert_eq!(s2["last_failure"]["sqlstate"], "23505", "{s2}");
    assert_eq!(
        s2["last_failure"]["step"], "0003_tags_unique_titles",
        "{s2}"
    );
    assert_eq!(status["plugins"][0]["plugin"], "notes", "{status}");
    assert_eq!(status["plugins"][0]["step_count"], 3, "{status}");

    let verify = doc(&["verify", "--json"], Exit::Problems, "wasmig.verify/1");
    assert_eq!(verify["issue_count"], 1, "{verify}");
    // j1 and j2 are at different ledger states (j2's step failed): each is its own norm.
    let structure = doc(
        &["verify", "--structure", "--json"],
        Exit::Ok,
        "wasmig.structure/1",
    );
    assert_eq!(structure["tenant_count"], 2, "{structure}");
    assert_eq!(structure["matching_count"], 2, "{structure}");
    assert_eq!(
        structure["ledger_states"].as_array().map(Vec::len),
        Some(2),
        "{structure}"
    );
    let tenants = doc(&["tenant", "list", "--json"], Exit::Ok, "wasmig.tenants/1");
    assert_eq!(tenants["tenants"][0]["schema"], "j1");
    let health = doc(&["health", "--json"], Exit::Problems, "wasmig.health/1");
    assert_eq!(health["failed_schema_count"], 1, "{health}");
    assert_eq!(health["last_run"]["outcome"], "failed", "{health}");
    let history = doc(&["history", "--json"], Exit::Ok, "wasmig.history/1");
    assert_eq!(history["runs"][0]["problem_count"], 1, "{history}");
    doc(
        &["metrics", "--format", "json", "--window", "24h"],
        Exit::Ok,
        "wasmig.metrics/1",
    );
    let report = doc(&["report", "--json"], Exit::Ok, "wasmig.report/1");
    assert_eq!(report["current"]["failure_count"], 1, "{report}");

    // A failure with --json is a document too, on stdout, with the server's SQLSTATE.
    let bad_password = db.url.replacen(crate::support::ADMIN_PASSWORD, "wrong", 1);
    let err = doc(
        &["--database-url", &bad_password, "status", "--json"],
        Exit::Error,
        "wasmig.error/1",
    );
    assert_eq!(err["error"]["sqlstate"], "28P01", "{err}");
    assert_eq!(err["exit_code"], 2);
    assert!(
        !err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("wrong"),
        "{err}"
    );
    let err = doc(
        &["verify", "--json", "--tenant", "nope"],
        Exit::Error,
        "wasmig.error/1",
    );
    assert!(err["error"]["sqlstate"].is_null(), "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("`nope`"),
        "{err}"
    );
}

/// The text of `verify --structure` for `args`, expecting `exit`.
fn structure(db: &TestDb, plugins: &PluginDir, args: &[&str], exit: Exit) -> String {
    let mut all = vec!["verify", "--structure"];
    all.extend_from_slice(args);
    db.wasmig(plugins.path(), &all).expect(exit).stdout
}

#[test]
fn verify_structure_names_what_a_hand_change_did_to_one_tenant() {
    let tenants = ["ta", "tb", "tc", "td", "te", "tf"];
    let (db, plugins) = fleet("structure", WORKLOAD, &tenants);
    let same = structure(&db, &plugins, &[], Exit::Ok);
    assert!(
        same.contains("6 tenant(s): 6 share their baseline's structure, 0 differ"),
        "{same}"
    );
    // Hand-made changes of several kinds, one tenant each.
    db.exec(
        "ALTER TABLE tb.customers_customer ADD COLUMN hotfix text;
         ALTER TABLE tb.customers_customer ADD COLUMN \"x\x1b[2Jforged\" int;
         DROP INDEX tc.customers_order_carrier_id_8c299315;
         ALTER TABLE td.customers_address ALTER COLUMN city TYPE varchar(120);
         CREATE FUNCTION te.helper() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    );
    let out = structure(&db, &plugins, &[], Exit::Problems);
    for want in [
        "share the structure of ta",
        "tb differs from ta",
        "    + column customers_customer.hotfix: text",
        "tc differs from ta",
        "    - index customers_order_carrier_id_8c299315: CREATE INDEX customers_order_carrier_id_8c299315 ON customers_order USING btree (carrier_id)",
        "    ~ column customers_address.city: character varying(100) not null -> character varying(120) not null",
        "    + function helper(): CREATE OR REPLACE FUNCTION helper()",
        "6 tenant(s): 2 share their baseline's structure, 4 differ, 0 missing",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        !out.contains('\x1b') && out.contains(r#"x\x1b[2Jforged"#),
        "a plugin-made name is shown inert:\n{out}"
    );

    let doc = db
        .wasmig(plugins.path(), &["verify", "--structure", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.structure/1");
    assert_eq!(doc["differing_count"], 4);
    let state = &doc["ledger_states"][0];
    assert_eq!(state["baseline"]["schema"], "ta");
    assert_eq!(state["baseline"]["basis"], "majority");
    assert_eq!(state["matching"], serde_json::json!(["ta", "tf"]));
    let tb = &state["differing"][0];
    assert_eq!(tb["schema"], "tb");
    let hotfix = tb["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .find(|d| d["name"] == "customers_customer.hotfix");
    assert_eq!(
        hotfix,
        Some(
            &serde_json::json!({"change": "extra", "kind": "column", "name": "customers_customer.hotfix", "definition": "text", "baseline_definition": null})
        )
    );

    // Against a reference, everyone else is measured from it: ta lacks tb's column.
    let doc = db
        .wasmig(
            plugins.path(),
            &["verify", "--structure", "--json", "--reference", "tb"],
        )
        .expect(Exit::Problems)
        .doc("wasmig.structure/1");
    assert_eq!(doc["differing_count"], 5);
    let ta = &doc["ledger_states"][0]["differing"][0];
    assert_eq!(ta["schema"], "ta");
    assert!(
        ta["differences"]
            .as_array()
            .expect("differences")
            .iter()
            .any(|d| d["change"] == "missing" && d["name"] == "customers_customer.hotfix"),
        "{ta}"
    );

    // Only some tenants; a tenant at another ledger state is not compared with the
    // reference; a registered schema dropped by hand is missing.
    let one = structure(
        &db,
        &plugins,
        &["--tenant", "tf", "--reference", "ta"],
        Exit::Ok,
    );
    assert!(one.contains("2 tenant(s): 2 share"), "{one}");
    db.wasmig(plugins.path(), &["tenant", "create", "--no-migrate", "tg"])
        .expect(Exit::Ok);
    db.exec("DROP SCHEMA tf CASCADE");
    let out = structure(&db, &plugins, &["--reference", "ta"], Exit::Problems);
    for want in [
        "tf: registered, but its schema does not exist",
        "not compared, at another ledger state than the reference (see `wasmig verify`): tg",
        "7 tenant(s): 1 share their baseline's structure, 4 differ, 1 missing, 1 not compared",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let err = db
        .wasmig(
            plugins.path(),
            &["verify", "--structure", "--reference", "nosuch"],
        )
        .expect(Exit::Error);
    assert!(
        err.stderr.contains("tenant `nosuch` is not registered"),
        "{}",
        err.stderr
    );
    let err = db
        .wasmig(plugins.path(), &["verify", "--structure", "--fix"])
        .expect(Exit::Error);
    assert!(err.stderr.contains("--fix"), "{}", err.stderr);
}

#[test]
fn verify_structure_sees_a_constraint_changed_by_hand_in_what_it_does_not_only_its_name() {
    let (db, plugins) = fleet("structure_constraints", WORKLOAD, &["ua", "ub", "uc", "ud"]);
    // ub: the same foreign key, now cascading; uc: the same key, no longer deferrable; ud: a
    // new check. Each is a change only the constraint's definition shows.
    db.exec(
        "ALTER TABLE ub.carriers_driver DROP CONSTRAINT carriers_driver_carrier_id_fc6c37ba_fk_carriers_carrier_id;
         ALTER TABLE ub.carriers_driver ADD CONSTRAINT carriers_driver_carrier_id_fc6c37ba_fk_carriers_carrier_id
             FOREIGN KEY (carrier_id) REFERENCES ub.carriers_carrier (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
         ALTER TABLE uc.carriers_driver ALTER CONSTRAINT carriers_driver_carrier_id_fc6c37ba_fk_carriers_carrier_id NOT DEFERRABLE;
         ALTER TABLE ud.customers_address ADD CONSTRAINT city_set CHECK (city <> '');",
    );
    let out = structure(&db, &plugins, &[], Exit::Problems);
    for want in [
        "ub differs from ua",
        "    ~ constraint carriers_driver.carriers_driver_carrier_id_fc6c37ba_fk_carriers_carrier_id:",
        "ON DELETE CASCADE",
        "uc differs from ua",
        "ud differs from ua",
        "    + constraint customers_address.city_set: CHECK",
        "4 tenant(s): 1 share their baseline's structure, 3 differ, 0 missing",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}
