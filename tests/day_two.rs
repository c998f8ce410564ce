//! Day two: what an operator's monitoring and repair see and do. The shared schema is part of
//! the fleet: every check, count, metric and fix covers it, and says which schema.

use crate::support::Fleet;
use wasmig::Exit;

#[test]
fn pending_shared_schema_work_is_seen_by_every_check_and_fixed_by_verify_fix() {
    let (db, plugins) = Fleet::new("shared_pending")
        .plugins(&["reference", "notes_v1"])
        .shared_first()
        .tenants(&["s1", "s2"])
        .build();
    plugins.set(&["reference_next", "notes_v1"]);
    let p = plugins.path();

    let verify = db.wasmig(p, &["verify"]).expect(Exit::Problems);
    assert!(
        verify
            .stdout
            .contains("shared schema shared: 1 pending (reference/0004_currency_symbol)"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("2 tenant(s): 2 ok"),
        "{}",
        verify.stdout
    );
    let doc = db
        .wasmig(p, &["verify", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.verify/1");
    assert_eq!(doc["shared"]["schema"], "shared");
    assert_eq!(
        doc["shared"]["pending"],
        serde_json::json!([{"plugin": "reference", "step": "0004_currency_symbol"}])
    );

    let health = db
        .wasmig(p, &["health", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.health/1");
    assert_eq!(health["healthy"], false);
    assert_eq!(health["pending_count"], 1);
    assert_eq!(health["shared_pending_count"], 1);
    assert!(
        health["problems"][0]
            .as_str()
            .expect("a problem")
            .contains("1 of them in the shared schema `shared`"),
        "{health}"
    );

    let metrics = db.wasmig(p, &["metrics"]).expect(Exit::Ok).stdout;
    for line in ["wasmig_pending_steps 1", "wasmig_shared_pending_steps 1"] {
        assert!(
            metrics.lines().any(|l| l == line),
            "`{line}` in:\n{metrics}"
        );
    }

    // The fix applies it (the shared plugin is trusted), and every check is quiet again.
    db.wasmig(p, &["verify", "--fix"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_schema = 'shared' AND table_name = 'currency' AND column_name = 'symbol'"
        ),
        1
    );
    db.wasmig(p, &["health"]).expect(Exit::Ok);
    // Only some tenants asked for: the shared schema is left out, as before.
    let one = db
        .wasmig(p, &["-q", "verify", "--tenant", "s1"])
        .expect(Exit::Ok);
    assert_eq!(one.stdout.trim(), "1 tenant(s): 1 ok, 0 with issues");
}

#[test]
fn every_json_command_writes_exactly_one_document_to_stdout() {
    let (db, plugins) = Fleet::new("json_only")
        .plugins(&["reference", "notes_v1"])
        .shared_first()
        .tenants(&["j1", "j2"])
        .build();
    plugins.set(&["reference_next", "notes_v2_added"]);
    let p = plugins.path();
    for args in [
        &["status", "--json"][..],
        &["verify", "--json"],
        &["migrate", "--dry-run", "--json"],
        &["health", "--json"],
        &["metrics", "--format", "json"],
        &["tenant", "list", "--json"],
        &["verify", "--fix", "--json"],
        &["-q", "verify", "--fix", "--json"],
        &["history", "--json"],
        &["verify", "--structure", "--json"],
        &["migrate", "--json"],
    ] {
        let run = db.wasmig(p, args);
        assert!(run.code == 0 || run.code == 1, "{args:?}: {}", run.stderr);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not one JSON document ({e}):\n{}",
                run.stdout
            )
        });
        assert!(doc["format"].is_string(), "{args:?}: {doc}");
    }
}

#[test]
fn metrics_and_health_say_when_the_database_cannot_be_read() {
    // A port nothing listens on: the database is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://nobody:pw@127.0.0.1:{port}/db");
    let plugins = crate::support::PluginDir::new(&[]);
    let file = plugins.path().join("wasmig.prom");
    std::fs::write(&file, "wasmig_up 1\nwasmig_pending_steps 0\n").expect("an old file");
    let run = |args: &[&str]| {
        let out = crate::support::wasmig_command(&url, plugins.path(), args)
            .output()
            .expect("run wasmig");
        crate::support::Run::from(out, args)
    };
    run(&["metrics", "--output", file.to_str().expect("utf8")]).expect(Exit::Error);
    let written = std::fs::read_to_string(&file).expect("the file");
    assert!(written.lines().any(|l| l == "wasmig_up 0"), "{written}");
    assert!(
        !written.contains("wasmig_pending_steps"),
        "no stale gauge: {written}"
    );
    let health = run(&["health", "--json"]).expect(Exit::Error);
    let doc = health.doc("wasmig.health/1");
    assert_eq!(doc["healthy"], false);
    assert_eq!(doc["reachable"], false);
    assert!(
        doc["problems"][0]
            .as_str()
            .expect("why")
            .contains("cannot be reached")
    );
    for field in [
        "tenant_count",
        "pending_count",
        "drift_count",
        "locks",
        "last_run",
    ] {
        assert!(doc.get(field).is_some(), "{field} in {doc}");
    }
}

#[test]
fn an_untrusted_shared_plugin_is_a_problem_for_monitoring_not_a_blackout() {
    let (db, plugins) = Fleet::new("untrusted_shared")
        .plugins(&["reference", "notes_v1"])
        .shared_first()
        .tenants(&["u1"])
        .build();
    let p = plugins.path();
    let untrusted = |args: &[&str]| {
        let out = db
            .wasmig_command(p, args)
            .env("WASMIG_TRUSTED", "")
            .output()
            .expect("run wasmig");
        crate::support::Run::from(out, args)
    };
    let not_trusted = "plugin `reference` (";
    let status = untrusted(&["status"]).expect(Exit::Ok);
    assert!(status.stderr.contains(not_trusted), "{}", status.stderr);
    assert!(status.stdout.contains("u1"), "{}", status.stdout);
    let verify = untrusted(&["verify"]).expect(Exit::Problems);
    assert!(verify.stdout.contains(not_trusted), "{}", verify.stdout);
    let health = untrusted(&["health", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.health/1");
    assert!(
        health["problems"][0]
            .as_str()
            .expect("a problem")
            .contains("not trusted")
    );
    let metrics = untrusted(&["metrics"]).expect(Exit::Ok).stdout;
    assert!(
        metrics.lines().any(|l| l == "wasmig_plugin_problems 1"),
        "{metrics}"
    );
    // A command that would run it still refuses.
    let migrate = untrusted(&["migrate"]).expect(Exit::Error);
    assert!(
        migrate.stderr.contains("is not trusted"),
        "{}",
        migrate.stderr
    );
}

#[test]
fn trust_on_the_command_line_adds_to_the_config_file_unless_told_otherwise() {
    let (db, plugins) = Fleet::new("trust_adds")
        .plugins(&["reference", "notes_v1"])
        .shared_first()
        .tenants(&["a1"])
        .build();
    plugins.set(&["reference_next", "notes_v1"]);
    let config = plugins.path().join("wasmig.toml");
    std::fs::write(&config, "[defaults]\ntrusted = [\"reference\"]\n").expect("config");
    let cfg = config.to_str().expect("utf8");
    let run = |args: &[&str]| {
        let out = db
            .wasmig_command(plugins.path(), args)
            .env_remove("WASMIG_TRUSTED")
            .output()
            .expect("run wasmig");
        crate::support::Run::from(out, args)
    };
    // `--trust notes` keeps the file's `reference`.
    run(&["--config", cfg, "--trust", "notes", "migrate", "--dry-run"]).expect(Exit::Ok);
    // `--trust-only` makes the given list the whole of it.
    let only = run(&[
        "--config",
        cfg,
        "--trust-only",
        "--trust",
        "notes",
        "migrate",
        "--dry-run",
    ])
    .expect(Exit::Error);
    assert!(only.stderr.contains("is not trusted"), "{}", only.stderr);
}

#[test]
fn a_failure_clears_when_its_step_is_gone_or_an_operator_resolves_it() {
    let (db, plugins) = Fleet::new("failures_clear")
        .plugins(&["notes_v1"])
        .tenants(&["f1", "f2"])
        .build();
    // Duplicate titles make notes 0003 (a unique constraint) fail in f1.
    db.exec("INSERT INTO f1.notes (title) VALUES ('same'), ('same')");
    plugins.set(&["notes_v2_added"]);
    let p = plugins.path();
    let run = db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    // PostgreSQL gives no position for this DDL error; the name it quotes stands once in
    // the script, so the failing line is shown with a caret under it.
    let caret = run
        .stderr
        .lines()
        .skip_while(|l| {
            !(l.contains("LINE 3: ") && l.contains("ADD CONSTRAINT \"notes_title_key\""))
        })
        .nth(1)
        .unwrap_or_else(|| panic!("no caret line:\n{}", run.stderr));
    assert_eq!(
        caret.trim_start().len(),
        1,
        "a caret under the name: {caret:?}\n{}",
        run.stderr
    );
    let failed = |db: &crate::support::TestDb| {
        db.wasmig(p, &["health", "--json"]).doc("wasmig.health/1")["failed_schema_count"]
            .as_i64()
            .expect("a count")
    };
    assert_eq!(failed(&db), 1);

    // The failing step is taken out of its plugin: nothing can run it again, so its failure
    // no longer counts, and the fleet is healthy.
    plugins.set(&["notes_v1"]);
    assert_eq!(failed(&db), 0);
    db.wasmig(p, &["verify"]).expect(Exit::Ok);
    db.wasmig(p, &["health"]).expect(Exit::Ok);

    // Back, and failing again: an operator resolves it, with a reason, recorded as a run.
    plugins.set(&["notes_v2_added"]);
    db.wasmig(p, &["migrate", "--schema", "f1"])
        .expect(Exit::Problems);
    assert_eq!(failed(&db), 1);
    let resolved = db
        .wasmig(
            p,
            &[
                "resolve",
                "--schema",
                "f1",
                "--reason",
                "titles to be deduplicated by support",
            ],
        )
        .expect(Exit::Ok);
    // Both failures of f1 (the first run's, which counted again once its step was back, and
    // this one) are resolved.
    assert!(
        resolved.stdout.contains("f1: 2 failure(s) resolved"),
        "{}",
        resolved.stdout
    );
    assert_eq!(failed(&db), 0);
    assert_eq!(
        db.scalar_text(
            "SELECT resolution FROM wasmig.failure WHERE schema_name = 'f1' AND resolved_at IS NOT NULL LIMIT 1"
        )
        .as_deref(),
        Some("titles to be deduplicated by support")
    );
    let history = db.wasmig(p, &["history"]).expect(Exit::Ok).stdout;
    assert!(history.contains("resolve"), "{history}");
    // Several schemas need --yes.
    db.wasmig(p, &["resolve", "--all-tenants", "--reason", "x"])
        .expect(Exit::Error);
}

#[test]
fn an_edited_step_is_held_for_the_whole_fleet_until_reviewed() {
    let (db, plugins) = Fleet::new("edited_held")
        .plugins(&["notes_v1"])
        .tenants(&["d1", "d2", "d3"])
        .build();
    let p = plugins.path();
    db.wasmig(p, &["tenant", "create", "--no-migrate", "d4"])
        .expect(Exit::Ok);
    // Step 0002 is edited after d1..d3 applied it.
    plugins.set(&["notes_v2_edited"]);
    let run = db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    // d4 never ran it: it does not get the edited text while the others are refused.
    assert!(!db.table_exists("d4", "notes"), "the fleet must not split");
    assert!(
        run.stderr.contains("step `0002_note_body` of plugin `notes` was changed after it was applied (drift in 3 schema(s): d1, d2, d3)"),
        "{}",
        run.stderr
    );
    // The drift is said once for the three schemas, not three times.
    assert_eq!(
        run.stderr
            .matches("applied step changed (recorded checksum")
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("3 schemas (d1, d2, d3) refused"),
        "{}",
        run.stderr
    );
    // Accepting it says it changed the record only, and points to the structure check.
    let repaired = db
        .wasmig(
            p,
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
        .expect(Exit::Problems);
    assert!(
        repaired.stderr.contains("repair changed only the record")
            && repaired.stderr.contains("wasmig verify --structure"),
        "{}",
        repaired.stderr
    );
    db.wasmig(p, &["migrate"]).expect(Exit::Ok);
    assert!(db.table_exists("d4", "notes"));
}

#[test]
fn a_hold_keeps_a_restored_tenant_where_it_is_until_released() {
    let (db, plugins) = Fleet::new("holds")
        .plugins(&["notes_v1"])
        .tenants(&["h1", "h2"])
        .build();
    let p = plugins.path();
    let ledger_rows = |t: &str| {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM wasmig.ledger WHERE schema_name = '{t}'"
        ))
    };
    let failed = || {
        db.wasmig(p, &["health", "--json"]).doc("wasmig.health/1")["failed_schema_count"]
            .as_i64()
            .expect("a count")
    };
    // 0003 fails in h1 first (duplicate titles), then succeeds once the data is fixed, with a
    // backup taken before it.
    db.exec("INSERT INTO h1.notes (title) VALUES ('same'), ('same')");
    plugins.set(&["notes_v2_added"]);
    db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    db.exec("DELETE FROM h1.notes WHERE id = (SELECT max(id) FROM h1.notes)");
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("b");
    let backups = backups.to_str().expect("utf8");
    db.wasmig(p, &["migrate", "--schema", "h1", "--backup-dir", backups])
        .expect(Exit::Ok);
    assert_eq!(ledger_rows("h1"), 3);
    assert_eq!(failed(), 0);
    let dump = std::fs::read_dir(backups)
        .expect("backups")
        .map(|e| e.expect("entry").path())
        .find(|f| f.extension().is_some_and(|e| e == "dump"))
        .expect("a dump");
    let dump = dump.to_str().expect("utf8");

    // A restore without --hold says that the next fix would undo it; the failure the later
    // success answered does not come back with the restored ledger.
    let restored = db
        .wasmig(p, &["restore", dump, "--schema", "h1", "--yes"])
        .expect(Exit::Ok);
    assert!(
        restored.stderr.contains("wasmig hold --schema h1 --reason"),
        "{}",
        restored.stderr
    );
    assert_eq!(ledger_rows("h1"), 2);
    assert_eq!(
        failed(),
        0,
        "a restore must not bring back an answered failure"
    );

    // Held: verify --fix and migrate leave it where it is, and every check shows the hold
    // without calling it a problem.
    db.wasmig(
        p,
        &[
            "hold",
            "--schema",
            "h1",
            "--reason",
            "customer stays on 0002",
        ],
    )
    .expect(Exit::Ok);
    let fixed = db.wasmig(p, &["verify", "--fix"]).expect(Exit::Ok);
    assert!(
        fixed.stdout.contains("1 schema(s) held"),
        "{}",
        fixed.stdout
    );
    assert!(
        fixed.stdout.contains("h1: held: customer stays on 0002"),
        "{}",
        fixed.stdout
    );
    let run = db.wasmig(p, &["migrate"]).expect(Exit::Ok);
    assert!(
        run.stderr
            .contains("held: 1 schema(s), 1 step(s) not applied: h1 (customer stays on 0002)"),
        "{}",
        run.stderr
    );
    assert_eq!(ledger_rows("h1"), 2);
    let status = db
        .wasmig(p, &["status", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    let h1 = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "h1")
        .expect("h1")
        .clone();
    assert_eq!(h1["holds"][0]["reason"], "customer stays on 0002");
    assert_eq!(h1["pending"], serde_json::json!([]));
    assert_eq!(
        h1["held"],
        serde_json::json!([{"plugin": "notes", "step": "0003_tags_unique_titles"}])
    );
    let health = db
        .wasmig(p, &["health", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.health/1");
    assert_eq!(health["healthy"], true);
    assert_eq!(health["held_schema_count"], 1);
    assert_eq!(health["held_step_count"], 1);
    let metrics = db.wasmig(p, &["metrics"]).expect(Exit::Ok).stdout;
    assert!(metrics.contains("\nwasmig_held_schemas 1\n"), "{metrics}");
    assert!(metrics.contains("\nwasmig_held_steps 1\n"), "{metrics}");
    assert!(metrics.contains("\nwasmig_pending_steps 0\n"), "{metrics}");

    // A hold on a plugin no one loaded would hold nothing: refused.
    let typo = db
        .wasmig(
            p,
            &[
                "hold", "--schema", "h2", "--plugin", "nots", "--reason", "x",
            ],
        )
        .expect(Exit::Error);
    assert!(typo.stderr.contains("nots"), "{}", typo.stderr);

    // Released, the next run applies it; both are in the history.
    let released = db
        .wasmig(p, &["release", "--schema", "h1"])
        .expect(Exit::Ok);
    assert!(
        released.stdout.contains("h1: 1 hold(s) released"),
        "{}",
        released.stdout
    );
    db.wasmig(p, &["migrate"]).expect(Exit::Ok);
    assert_eq!(ledger_rows("h1"), 3);
    let history = db.wasmig(p, &["history"]).expect(Exit::Ok).stdout;
    assert!(
        history.contains("hold") && history.contains("release"),
        "{history}"
    );

    // `restore --hold` holds the schema in the same command.
    db.wasmig(
        p,
        &[
            "restore",
            dump,
            "--schema",
            "h1",
            "--hold",
            "rolled back",
            "--yes",
        ],
    )
    .expect(Exit::Ok);
    db.wasmig(p, &["verify", "--fix"]).expect(Exit::Ok);
    assert_eq!(ledger_rows("h1"), 2);
}

#[test]
fn revert_with_hold_keeps_the_reverted_steps_from_coming_back() {
    let (db, plugins) = Fleet::new("revert_hold")
        .plugins(&["carriers", "customers", "suppliers", "finance"])
        .shared_first()
        .tenants(&["v1", "v2"])
        .build();
    let p = plugins.path();
    plugins.set(&["carriers", "customers", "suppliers", "finance_next"]);
    let run = db
        .wasmig(p, &["migrate", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.migrate/1")["run_id"]
        .as_i64()
        .expect("run_id")
        .to_string();
    let applied = |t: &str| {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM wasmig.ledger WHERE schema_name = '{t}' AND run_id = {run}"
        ))
    };
    assert_eq!(applied("v1"), 1);
    db.wasmig(
        p,
        &[
            "revert",
            "--run",
            &run,
            "--schema",
            "v1",
            "--hold",
            "invoice refs wrong",
            "--yes",
        ],
    )
    .expect(Exit::Ok);
    assert_eq!(applied("v1"), 0);
    db.wasmig(p, &["verify", "--fix"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'v1' AND plugin = 'finance' AND step_id LIKE '0004%'"
        ),
        0,
        "a held schema is not fixed"
    );
    // Without --hold the command says how to keep it.
    let plain = db
        .wasmig(p, &["revert", "--run", &run, "--schema", "v2", "--yes"])
        .expect(Exit::Ok);
    assert!(
        plain.stderr.contains("wasmig hold --schema v2"),
        "{}",
        plain.stderr
    );
}

#[test]
fn every_command_that_applies_steps_backs_up_from_flags_or_config_and_keeps_dumps_for_days() {
    let (db, plugins) = Fleet::new("backups_everywhere")
        .plugins(&["reference", "notes_v1"])
        .shared_first()
        .tenants(&["k1", "k2"])
        .build();
    let p = plugins.path();
    let dir = tempfile::tempdir().expect("tempdir");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir(&dumps).expect("dumps");
    // An old dump of k1 (with its ledger rows), an old one of a schema long dropped (the
    // newest of its schema: kept), and a file that is not wasmig's.
    for f in [
        "k1-20200101T000000000000Z.dump",
        "k1-20200101T000000000000Z.ledger.json",
        "gone-20200101T000000000000Z.dump",
        "notes.txt",
    ] {
        std::fs::write(dumps.join(f), "x").expect("plant");
    }
    let config = dir.path().join("wasmig.toml");
    std::fs::write(
        &config,
        "[defaults]\nbackup_dir = \"dumps\"\nbackup_keep_days = 7\n",
    )
    .expect("config");
    let cfg = config.to_str().expect("utf8");
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(&dumps)
            .expect("dumps")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };

    // The shared schema and both tenants have a step pending: `verify --fix` dumps each of
    // them first (the config's directory), then prunes.
    plugins.set(&["reference_next", "notes_v2_added"]);
    let fixed = db
        .wasmig(p, &["--config", cfg, "verify", "--fix"])
        .expect(Exit::Ok);
    let now = files();
    for schema in ["shared", "k1", "k2"] {
        assert!(
            now.iter().any(|f| f.starts_with(&format!("{schema}-"))
                && f.ends_with(".dump")
                && !f.contains("2020")),
            "no dump of {schema}: {now:?}"
        );
    }
    assert!(
        !now.contains(&"k1-20200101T000000000000Z.dump".to_owned()),
        "{now:?}"
    );
    assert!(
        !now.contains(&"k1-20200101T000000000000Z.ledger.json".to_owned()),
        "{now:?}"
    );
    assert!(
        now.contains(&"gone-20200101T000000000000Z.dump".to_owned()),
        "{now:?}"
    );
    assert!(now.contains(&"notes.txt".to_owned()), "{now:?}");
    assert!(
        fixed
            .stderr
            .contains("backups: 1 dump(s) older than 7 day(s) removed"),
        "{}",
        fixed.stderr
    );

    // `--no-backup` overrides the config; `tenant create` of a new tenant follows it too.
    let before = files().len();
    db.wasmig(
        p,
        &["--config", cfg, "tenant", "create", "k3", "--no-backup"],
    )
    .expect(Exit::Ok);
    assert_eq!(files().len(), before);
    db.wasmig(p, &["--config", cfg, "tenant", "create", "k4"])
        .expect(Exit::Ok);
    assert!(
        files().iter().any(|f| f.starts_with("k4-")),
        "{:?}",
        files()
    );

    // Flags without their command, or days without a directory, are refused with the fix.
    let plain = db
        .wasmig(p, &["verify", "--backup-dir", "x"])
        .expect(Exit::Error);
    assert!(
        plain.stderr.contains("apply to `verify --fix`"),
        "{}",
        plain.stderr
    );
    let nowhere = db
        .wasmig(p, &["migrate", "--backup-keep-days", "3"])
        .expect(Exit::Error);
    assert!(
        nowhere.stderr.contains("no backup directory"),
        "{}",
        nowhere.stderr
    );
}

#[test]
fn creating_an_existing_tenant_converges_its_name_and_domain_and_says_what_changed() {
    let (db, plugins) = Fleet::new("tenant_converges")
        .plugins(&["notes_v1"])
        .tenants::<&str>(&[])
        .build();
    let p = plugins.path();
    let create = |args: &[&str]| {
        let mut all = vec!["tenant", "create", "acme"];
        all.extend_from_slice(args);
        db.wasmig(p, &all).expect(Exit::Ok).stdout
    };
    let first = create(&["--name", "Acme", "--domain", "acme.example.com"]);
    assert!(first.contains("tenant `acme` created"), "{first}");
    let same = create(&["--domain", "acme.example.com"]);
    assert!(
        same.contains("already exists") && same.contains("nothing changed"),
        "{same}"
    );
    let moved = create(&["--domain", "acme.example.org", "--name", "Acme Inc"]);
    assert!(
        moved.contains(
            "changed name `Acme` -> `Acme Inc`, domain `acme.example.com` -> `acme.example.org`"
        ),
        "{moved}"
    );
    let list = db
        .wasmig(p, &["tenant", "list", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.tenants/1");
    let acme = &list["tenants"][0];
    assert_eq!(acme["name"], "Acme Inc");
    assert_eq!(acme["domain"], "acme.example.org");
    // What is not given stays.
    create(&[]);
    assert_eq!(
        db.scalar_text("SELECT domain FROM wasmig.managed_schema WHERE schema_name = 'acme'")
            .as_deref(),
        Some("acme.example.org")
    );
}
