//! Rolling out to part of a fleet: tenant labels (set at creation, changed with `tenant
//! label`, shown by `tenant list`, queryable in SQL) and the `--where` selectors of `migrate`,
//! `status`, `verify` and `baseline`.

use crate::support::{Fleet, PluginDir, TestDb};
use wasmig::Exit;

/// The tenants whose ledger records step `step` of `notes`.
fn with_step(db: &TestDb, step: &str) -> Vec<String> {
    db.query(&format!(
        "SELECT schema_name FROM wasmig.ledger WHERE plugin = 'notes' AND step_id = '{step}' ORDER BY 1"
    ))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Four tenants, labelled at creation, nothing migrated.
fn labelled_fleet(label: &str) -> (TestDb, PluginDir) {
    let db = TestDb::new(label);
    let plugins = PluginDir::new(&["notes_v1"]);
    let p = plugins.path();
    db.wasmig(p, &["init"]).expect(Exit::Ok);
    for (tenant, labels) in [
        ("eu1", &["region=eu", "tier=gold"][..]),
        ("eu2", &["region=eu", "tier=free", "beta="][..]),
        ("us1", &["region=us", "tier=gold"][..]),
        ("plain", &[][..]),
    ] {
        let mut args = vec!["tenant", "create", "--no-migrate", tenant];
        for l in labels {
            args.extend(["--label", l]);
        }
        db.wasmig(p, &args).expect(Exit::Ok);
    }
    (db, plugins)
}

#[test]
fn labels_are_set_shown_changed_and_queryable_in_sql() {
    let (db, plugins) = labelled_fleet("labels");
    let p = plugins.path();
    let list = db
        .wasmig(p, &["tenant", "list", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.tenants/1");
    let eu2 = list["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["schema"] == "eu2")
        .expect("eu2")
        .clone();
    assert_eq!(
        eu2["labels"],
        serde_json::json!({"region": "eu", "tier": "free", "beta": ""})
    );
    let text = db.wasmig(p, &["tenant", "list"]).expect(Exit::Ok);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("eu1 ") && l.ends_with("region=eu,tier=gold")),
        "{}",
        text.stdout
    );
    assert_eq!(
        db.scalar_text("SELECT string_agg(schema_name, ',' ORDER BY schema_name) FROM wasmig.tenant WHERE labels->>'region' = 'eu'")
            .as_deref(),
        Some("eu1,eu2")
    );

    // Set, change and remove, on several tenants at once.
    db.wasmig(
        p,
        &[
            "tenant",
            "label",
            "eu1",
            "us1",
            "tier=platinum",
            "wave=1",
            "--remove",
            "beta",
        ],
    )
    .expect(Exit::Ok);
    db.wasmig(p, &["tenant", "label", "eu2", "--remove", "beta"])
        .expect(Exit::Ok);
    let labels = |t: &str| {
        db.scalar_text(&format!(
            "SELECT labels::text FROM wasmig.tenant WHERE schema_name = '{t}'"
        ))
    };
    assert_eq!(
        labels("us1").as_deref(),
        Some(r#"{"tier": "platinum", "wave": "1", "region": "us"}"#)
    );
    assert_eq!(
        labels("eu2").as_deref(),
        Some(r#"{"tier": "free", "region": "eu"}"#)
    );

    // An unknown tenant refuses the whole command: nothing changes, not even the others.
    let before = db.scalar_text(
        "SELECT string_agg(labels::text, ';' ORDER BY schema_name) FROM wasmig.tenant",
    );
    let refused = db
        .wasmig(p, &["tenant", "label", "eu1", "nosuch", "tier=x"])
        .expect(Exit::Error);
    assert!(
        refused.stderr.contains("tenant `nosuch` is not registered"),
        "{}",
        refused.stderr
    );
    // Malformed labels are refused by name before anything connects.
    for (args, says) in [
        (
            &["tenant", "label", "eu1", "Tier=x"][..],
            "label key `Tier` is invalid",
        ),
        (
            &["tenant", "label", "eu1", "tier=a b"][..],
            "label value `a b` is invalid",
        ),
        (
            &["tenant", "label", "eu1"][..],
            "give a KEY=VALUE label to set or a --remove KEY",
        ),
        (
            &["tenant", "create", "x1", "--label", "tier"][..],
            "`tier` is not a label",
        ),
        (
            &["tenant", "create", "x1", "--label", "a=1", "--label", "a=2"][..],
            "label key `a` is given twice",
        ),
    ] {
        let run = db.wasmig(p, args).expect(Exit::Error);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        db.scalar_text(
            "SELECT string_agg(labels::text, ';' ORDER BY schema_name) FROM wasmig.tenant"
        ),
        before
    );
    assert!(
        !db.table_exists("x1", "notes")
            && db.scalar_i64("SELECT count(*) FROM wasmig.tenant WHERE schema_name = 'x1'") == 0
    );
}

#[test]
fn where_picks_tenants_by_label_for_migrate_status_verify_and_baseline() {
    let (db, plugins) = labelled_fleet("where");
    let p = plugins.path();

    // Every term must hold; --schema and --where narrow each other.
    db.wasmig(p, &["migrate", "--where", "region=eu,tier!=free"])
        .expect(Exit::Ok);
    assert_eq!(with_step(&db, "0001_notes"), ["eu1"]);
    db.wasmig(
        p,
        &[
            "migrate",
            "--schema",
            "eu2",
            "--schema",
            "us1",
            "--where",
            "region=eu",
        ],
    )
    .expect(Exit::Ok);
    assert_eq!(with_step(&db, "0001_notes"), ["eu1", "eu2"]);
    db.wasmig(p, &["migrate", "--where", "!region"])
        .expect(Exit::Ok);
    assert_eq!(with_step(&db, "0001_notes"), ["eu1", "eu2", "plain"]);

    // status and verify see only what they pick: us1 is the one tenant still pending.
    let status = db
        .wasmig(p, &["status", "--json", "--where", "tier=gold"])
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    let schemas: Vec<&str> = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .map(|s| s["schema"].as_str().expect("schema"))
        .collect();
    assert_eq!(schemas, ["eu1", "us1"]);
    db.wasmig(p, &["verify", "--where", "region=eu"])
        .expect(Exit::Ok);
    let pending = db
        .wasmig(p, &["verify", "--where", "region"])
        .expect(Exit::Problems);
    assert!(pending.stdout.contains("us1"), "{}", pending.stdout);
    assert!(!pending.stdout.contains("eu1"), "{}", pending.stdout);

    // A selector that picks nothing (an unknown key included) says so and exits 1, changing
    // nothing; a malformed one is refused by name.
    let ledger = db.ledger_dump();
    for args in [
        &["migrate", "--where", "region=mars"][..],
        &["migrate", "--where", "nosuchkey"][..],
        &["status", "--where", "region=mars"][..],
        &["verify", "--where", "region=mars"][..],
        &["verify", "--structure", "--where", "region=mars"][..],
        &[
            "baseline",
            "--where",
            "region=mars",
            "--plugin",
            "notes",
            "--to",
            "0001_notes",
            "--yes",
        ][..],
    ] {
        let run = db.wasmig(p, args).expect(Exit::Problems);
        assert!(
            run.stderr.contains("no tenant matches --where `"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let bad = db
        .wasmig(p, &["migrate", "--where", "region=eu,,tier=gold"])
        .expect(Exit::Error);
    assert!(
        bad.stderr
            .contains("invalid --where: selector `region=eu,,tier=gold` has an empty term"),
        "{}",
        bad.stderr
    );
    assert_eq!(db.ledger_dump(), ledger);

    // baseline --where records in exactly the tenants it picks, and asks for --yes.
    db.wasmig(
        p,
        &[
            "baseline",
            "--where",
            "region=us",
            "--plugin",
            "notes",
            "--to",
            "0001_notes",
        ],
    )
    .expect(Exit::Error);
    db.wasmig(
        p,
        &[
            "baseline",
            "--where",
            "region=us",
            "--plugin",
            "notes",
            "--to",
            "0001_notes",
            "--yes",
        ],
    )
    .expect(Exit::Ok);
    assert_eq!(with_step(&db, "0001_notes"), ["eu1", "eu2", "plain", "us1"]);
    assert!(!db.table_exists("us1", "notes"), "baselined, not run");
}

/// Tenant `t1` migrated with `notes` v1, the next version (whose step needs a lock on `notes`
/// that conflicts with a reader's) in the plugin directory, and an application session
/// reading `notes` in a transaction it keeps open.
fn behind_an_open_read(label: &str) -> (TestDb, PluginDir, crate::support::Session) {
    use crate::support::{ADMIN_PASSWORD, ADMIN_USER};
    let (db, plugins) = Fleet::new(label)
        .plugins(&["notes_v1"])
        .tenants(&["t1"])
        .build();
    plugins.set(&["notes_v2_added"]);
    let holder = db.session_as(ADMIN_USER, ADMIN_PASSWORD);
    holder
        .exec("BEGIN; SELECT count(*) FROM t1.notes")
        .expect("hold the lock");
    (db, plugins, holder)
}

#[test]
fn a_step_behind_the_applications_lock_times_out_retries_and_never_stalls_the_application() {
    use crate::support::{ADMIN_PASSWORD, ADMIN_USER};
    use std::time::{Duration, Instant};
    // The application: one session reads `notes` in a transaction held open for 3 s; another
    // queries the table again and again, timing each query.
    let (db, plugins, holder) = behind_an_open_read("lock_retry");
    let p = plugins.path();
    let holding = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        holder.exec("COMMIT").expect("release");
    });
    let app = db.session_as(ADMIN_USER, ADMIN_PASSWORD);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_app = stop.clone();
    let querying = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut queries = 0;
        while !stop_app.load(std::sync::atomic::Ordering::Relaxed) {
            let started = Instant::now();
            app.exec("SELECT count(*) FROM t1.notes")
                .expect("app query");
            worst = worst.max(started.elapsed());
            queries += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        (worst, queries)
    });

    let run = db
        .wasmig(
            p,
            &[
                "migrate",
                "--json",
                "--lock-timeout",
                "500ms",
                "--retries",
                "8",
            ],
        )
        .expect(Exit::Ok)
        .doc("wasmig.migrate/1");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    holding.join().expect("holder");
    let (worst, queries) = querying.join().expect("app");
    let t1 = run["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "t1")
        .expect("t1")
        .clone();
    assert_eq!(t1["outcome"], "applied", "{t1}");
    let retries = t1["retry_count"].as_u64().expect("retry_count");
    assert!(retries >= 2, "it waited for the lock by retrying: {t1}");
    assert!(db.table_exists("t1", "note_tags"));
    // The run's history keeps the retries.
    let run_id = run["run_id"].as_i64().expect("run_id").to_string();
    let detail = db
        .wasmig(p, &["history", "--run", &run_id, "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.run/1");
    assert_eq!(detail["schemas"][0]["schema"], "t1", "{detail}");
    assert_eq!(detail["schemas"][0]["retry_count"].as_u64(), Some(retries));
    // While the step waited for its lock, the application's queries queued behind it: never
    // for longer than the step's lock timeout (plus scheduling slack).
    assert!(queries > 20, "the application kept querying ({queries})");
    assert!(
        worst < Duration::from_millis(500 + 400),
        "an application query waited {worst:?}"
    );
}

#[test]
fn a_step_that_keeps_meeting_the_lock_fails_after_its_retries_with_nothing_half_applied() {
    let (db, plugins, holder) = behind_an_open_read("lock_give_up");
    let p = plugins.path();
    let run = db
        .wasmig(
            p,
            &[
                "migrate",
                "--json",
                "--lock-timeout",
                "200ms",
                "--retries",
                "2",
            ],
        )
        .expect(Exit::Problems)
        .doc("wasmig.migrate/1");
    let t1 = run["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "t1")
        .expect("t1")
        .clone();
    assert_eq!(t1["outcome"], "failed", "{t1}");
    assert_eq!(t1["retry_count"], 2, "{t1}");
    assert_eq!(t1["failure"]["sqlstate"], "55P03", "{t1}");
    assert!(!db.table_exists("t1", "note_tags"), "nothing half-applied");
    holder.exec("ROLLBACK").expect("release");
}

#[test]
fn jobs_are_lowered_to_fit_the_connection_limit_and_a_run_that_cannot_fit_is_refused() {
    let (db, plugins) = Fleet::new("conn_limit")
        .plugins(&["notes_v1"])
        .tenants(&["t1", "t2", "t3"])
        .unmigrated()
        .build();
    let p = plugins.path();
    // This test's own session and the run's operator session leave 6 of 8: one worker
    // (at most 5 sessions) fits, four do not.
    db.exec(&format!("ALTER DATABASE {} CONNECTION LIMIT 8", db.name));
    let run = db.wasmig(p, &["--jobs", "4", "migrate"]).expect(Exit::Ok);
    assert!(
        run.stderr.contains("note: running 1 job(s) instead of 4")
            && run.stderr.contains("this database's CONNECTION LIMIT 8"),
        "{}",
        run.stderr
    );
    assert_eq!(with_step(&db, "0001_notes"), ["t1", "t2", "t3"]);
    // With 4, not even one worker fits: refused with the numbers, nothing started.
    db.exec(&format!("ALTER DATABASE {} CONNECTION LIMIT 4", db.name));
    plugins.set(&["notes_v2_added"]);
    let refused = db.wasmig(p, &["migrate"]).expect(Exit::Error);
    assert!(
        refused
            .stderr
            .contains("the server accepts too few connections for a run")
            && refused.stderr.contains("a run needs 5 (one worker)"),
        "{}",
        refused.stderr
    );
    assert!(with_step(&db, "0003_tags_unique_titles").is_empty());
    db.exec(&format!("ALTER DATABASE {} CONNECTION LIMIT -1", db.name));
}

#[test]
fn an_identical_failure_in_many_tenants_is_printed_once_with_the_count() {
    let tenants: Vec<String> = (1..=7).map(|i| format!("t{i}")).collect();
    let (db, plugins) = Fleet::new("alike")
        .plugins(&["notes_v1"])
        .tenants(&tenants)
        .build();
    let p = plugins.path();
    // Duplicate titles in six tenants: the unique constraint of the next step fails there,
    // with the same error everywhere; in t7 it fails with another value.
    for t in &tenants[..6] {
        db.exec(&format!(
            "INSERT INTO {t}.notes (title) VALUES ('dup'), ('dup')"
        ));
    }
    db.exec("INSERT INTO t7.notes (title) VALUES ('other'), ('other')");
    plugins.set(&["notes_v2_added"]);
    let run = db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    let grouped: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("failed the same way"))
        .collect();
    assert_eq!(grouped.len(), 1, "{}", run.stderr);
    assert!(
        grouped[0].starts_with("error: 6 schemas (t1, t2, t3, t4, t5 and 1 more): plugin `notes`, step `0003_tags_unique_titles`")
            && grouped[0].contains("(SQLSTATE 23505)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Key (title)=(dup) is duplicated"),
        "the detail is shown once: {}",
        run.stderr
    );
    assert_eq!(
        run.stderr
            .matches("Key (title)=(dup) is duplicated")
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("error: schema `t7`, plugin `notes`, step `0003_tags_unique_titles` failed and was rolled back"),
        "{}",
        run.stderr
    );
    // Each tenant's own line and the JSON keep the per-tenant detail.
    for t in &tenants {
        assert!(
            run.stdout
                .contains(&format!("{t}: FAILED at notes/0003_tags_unique_titles")),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn once_the_failure_budget_is_spent_no_new_tenant_starts_and_a_rerun_goes_on() {
    let tenants: Vec<String> = (1..=10).map(|i| format!("t{i:02}")).collect();
    let (db, plugins) = Fleet::new("budget")
        .plugins(&["notes_v1"])
        .tenants(&tenants)
        .build();
    let p = plugins.path();
    // t02..t05 hold data the next step refuses (duplicate titles).
    for t in &tenants[1..5] {
        db.exec(&format!(
            "INSERT INTO {t}.notes (title) VALUES ('dup'), ('dup')"
        ));
    }
    plugins.set(&["notes_v2_added"]);
    // 10% of the run's 11 schemas (shared and ten tenants): one failure is allowed, the
    // second spends the budget. One job, so the tenants go in order.
    let run = db
        .wasmig(
            p,
            &["--jobs", "1", "migrate", "--json", "--max-failures", "10%"],
        )
        .expect(Exit::Problems)
        .doc("wasmig.migrate/1");
    let outcome = |t: &str| {
        run["schemas"]
            .as_array()
            .expect("schemas")
            .iter()
            .find(|s| s["schema"] == t)
            .map(|s| s["outcome"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(outcome("t01"), "applied");
    assert_eq!(outcome("t02"), "failed");
    assert_eq!(outcome("t03"), "failed");
    for t in &tenants[3..] {
        assert_eq!(outcome(t), "skipped", "{t} was not started");
    }
    assert_eq!(
        with_step(&db, "0003_tags_unique_titles"),
        ["t01"],
        "nothing ran past the budget"
    );
    // In text, the tenants not started are counted once.
    db.exec("DELETE FROM t02.notes; DELETE FROM t03.notes");
    plugins.set(&["notes_v2_added"]);
    let text = db
        .wasmig(p, &["--jobs", "1", "migrate", "--max-failures", "0"])
        .expect(Exit::Problems);
    assert!(
        text.stderr.contains("error: 6 schemas (t05, t06, t07, t08, t09 and 1 more) skipped: not started: more than 0 schema(s) of the run failed (--max-failures)"),
        "{}",
        text.stderr
    );
    // Without a budget the rerun goes on: only the tenants with duplicates stay behind.
    db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    assert_eq!(
        with_step(&db, "0003_tags_unique_titles"),
        ["t01", "t02", "t03", "t06", "t07", "t08", "t09", "t10"]
    );
    let bad = db
        .wasmig(p, &["migrate", "--max-failures", "150%"])
        .expect(Exit::Error);
    assert!(
        bad.stderr.contains("invalid --max-failures `150%`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn history_of_one_run_lists_each_schema_with_its_steps_failures_and_durations() {
    let (db, plugins) = Fleet::new("run_detail")
        .plugins(&["notes_v1"])
        .tenants(&["t1", "t2", "t3"])
        .build();
    let p = plugins.path();
    db.exec("INSERT INTO t2.notes (title) VALUES ('dup'), ('dup')");
    plugins.set(&["notes_v2_added"]);
    let run = db
        .wasmig(p, &["migrate", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.migrate/1");
    let id = run["run_id"].as_i64().expect("run_id").to_string();
    let detail = db
        .wasmig(p, &["history", "--run", &id, "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.run/1");
    assert_eq!(detail["run"]["outcome"], "failed", "{detail}");
    let schemas = detail["schemas"].as_array().expect("schemas");
    let names: Vec<&str> = schemas
        .iter()
        .map(|s| s["schema"].as_str().expect("schema"))
        .collect();
    assert_eq!(
        names,
        ["t1", "t2", "t3"],
        "the up-to-date shared schema is not listed"
    );
    assert_eq!(schemas[0]["outcome"], "applied");
    assert_eq!(schemas[0]["applied"][0]["step"], "0003_tags_unique_titles");
    assert!(
        schemas[0]["applied"][0]["duration_seconds"]
            .as_f64()
            .expect("secs")
            >= 0.0
    );
    assert_eq!(schemas[1]["outcome"], "failed");
    assert_eq!(schemas[1]["applied"].as_array().map(Vec::len), Some(0));
    assert_eq!(schemas[1]["failures"][0]["sqlstate"], "23505");
    let text = db.wasmig(p, &["history", "--run", &id]).expect(Exit::Ok);
    assert!(
        text.stdout.contains("t2: failed (0 step(s)")
            && text
                .stdout
                .contains("  failed notes/0003_tags_unique_titles: could not create unique index")
            && text
                .stdout
                .contains("  applied notes/0003_tags_unique_titles in "),
        "{}",
        text.stdout
    );
    let none = db
        .wasmig(p, &["history", "--run", "999999"])
        .expect(Exit::Error);
    assert!(
        none.stderr.contains("there is no run 999999"),
        "{}",
        none.stderr
    );
}
