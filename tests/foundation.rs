//! The foundation: init, tenants, migrate, rerun, new steps, drift, failures, concurrency,
//! bad names, bad manifests.

use crate::support::{Fleet, PluginDir, TestDb, WORKLOAD};
use wasmig::Exit;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn setup_workload(label: &str) -> (TestDb, PluginDir) {
    let (db, plugins) = Fleet::new(label).plugins(WORKLOAD).shared_first().build();
    for t in TENANTS {
        db.wasmig(
            plugins.path(),
            &["tenant", "create", t, "--name", &t.to_uppercase()],
        )
        .expect(Exit::Ok);
    }
    (db, plugins)
}

#[test]
fn fresh_init_shared_and_three_tenants() {
    let (db, plugins) = setup_workload("fresh");
    // Shared schema: the reference plugin's table and rows.
    assert!(db.table_exists("shared", "currency"));
    assert_eq!(db.scalar_i64("SELECT count(*) FROM shared.country"), 8);
    for t in TENANTS {
        for table in [
            "carriers_carrier",
            "customers_order",
            "suppliers_product",
            "finance_invoice",
        ] {
            assert!(db.table_exists(t, table), "{t}.{table} missing");
        }
        // Seed data, written by the seed plugin after the migrations.
        assert_eq!(
            db.scalar_i64(&format!("SELECT count(*) FROM {t}.customers_customer")),
            3
        );
        assert_eq!(
            db.scalar_i64(&format!("SELECT count(*) FROM {t}.carriers_carrier")),
            2
        );
        // 12 workload migrations + 2 seed steps.
        assert_eq!(
            db.scalar_i64(&format!(
                "SELECT count(*) FROM wasmig.ledger WHERE schema_name = '{t}'"
            )),
            14
        );
        // The plugin's SQL ran as the schema's own role, not as the operator.
        let owners = db.query(&format!(
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = '{t}'"
        ));
        assert_eq!(owners.len(), 1);
        let owner: String = owners[0].get(0);
        assert_eq!(owner, format!("{}_{t}", db.name));
    }
    // Order: shared first, then within a tenant carriers before customers before finance,
    // and the seed last.
    let order: Vec<String> = db
        .query("SELECT plugin FROM wasmig.ledger WHERE schema_name = 'acme' ORDER BY applied_at")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let pos = |p: &str| order.iter().position(|x| x == p).expect("plugin in ledger");
    assert!(pos("carriers") < pos("customers"));
    assert!(pos("customers") < pos("finance") && pos("suppliers") < pos("finance"));
    assert_eq!(order.last().map(String::as_str), Some("demo-seed"));

    let status = db
        .wasmig(plugins.path(), &["status", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    let schemas = status["schemas"].as_array().expect("schemas");
    assert_eq!(schemas.len(), 4);
    for s in schemas {
        assert_eq!(s["pending"].as_array().map(Vec::len), Some(0), "{s}");
        assert_eq!(s["drift"].as_array().map(Vec::len), Some(0), "{s}");
    }
    let list = db
        .wasmig(plugins.path(), &["tenant", "list", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.tenants/1");
    assert_eq!(list["tenant_count"], TENANTS.len());
    let names: Vec<&str> = list["tenants"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["schema"].as_str().expect("schema"))
        .collect();
    assert_eq!(names, TENANTS);
}

#[test]
fn rerun_changes_nothing() {
    let (db, plugins) = setup_workload("rerun");
    let before = db.ledger_dump();
    let customers_before = db.scalar_i64("SELECT count(*) FROM globex.customers_customer");
    let run = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert!(run.stdout.contains("0 step(s) applied"), "{}", run.stdout);
    // And the tenants' seeds ran again through tenant create: still idempotent.
    db.wasmig(plugins.path(), &["tenant", "create", "globex"])
        .expect(Exit::Ok);
    assert_eq!(
        db.ledger_dump(),
        before,
        "the ledger must be byte-identical after a rerun"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM globex.customers_customer"),
        customers_before
    );
    let dry = db
        .wasmig(plugins.path(), &["migrate", "--dry-run"])
        .expect(Exit::Ok);
    assert!(
        dry.stdout.contains("0 step(s) would be applied"),
        "{}",
        dry.stdout
    );
}

fn notes_fleet(label: &str, tenants: &[&str]) -> (TestDb, PluginDir) {
    Fleet::new(label)
        .plugins(&["notes_v1"])
        .tenants(tenants)
        .build()
}

#[test]
fn adding_a_step_applies_only_it() {
    let (db, plugins) = notes_fleet("added", &["a1", "a2"]);
    let before = db.ledger_dump();
    plugins.set(&["notes_v2_added"]);
    let dry = db
        .wasmig(plugins.path(), &["migrate", "--dry-run", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.plan/1");
    assert_eq!(dry["pending_count"], 2, "{dry}");
    for s in dry["schemas"].as_array().expect("plan") {
        let pending = s["pending"].as_array().expect("pending");
        let expected = if s["scope"] == "shared" { 0 } else { 1 };
        assert_eq!(pending.len(), expected, "{s}");
    }
    assert_eq!(db.ledger_dump(), before, "--dry-run changes nothing");
    let run = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert!(run.stdout.contains("2 step(s) applied"), "{}", run.stdout);
    for t in ["a1", "a2"] {
        assert!(db.table_exists(t, "note_tags"));
        let steps: Vec<String> = db
            .query(&format!(
                "SELECT step_id FROM wasmig.ledger WHERE schema_name = '{t}' ORDER BY applied_at"
            ))
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            steps,
            ["0001_notes", "0002_note_body", "0003_tags_unique_titles"]
        );
    }
    // The rows of the earlier steps are untouched.
    let after = db.ledger_dump();
    for line in before.lines() {
        assert!(after.contains(line), "ledger row changed: {line}");
    }
}

#[test]
fn editing_an_applied_step_is_refused_as_drift() {
    let (db, plugins) = notes_fleet("drift", &["d1", "d2"]);
    let before = db.ledger_dump();
    plugins.set(&["notes_v2_edited"]);
    // A tenant created after the edit has never applied the old step: it is held with the
    // rest of the fleet: the edited text is applied nowhere until a person reviews it, and
    // like a drifted schema it runs nothing meanwhile (a held schema is refused whole).
    db.wasmig(plugins.path(), &["tenant", "create", "d3", "--no-migrate"])
        .expect(Exit::Ok);
    let run = db
        .wasmig(plugins.path(), &["migrate"])
        .expect(Exit::Problems);
    // The drifted schemas are named once, on one line, with both checksums.
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("schemas (d1, d2) refused"))
        .unwrap_or_else(|| panic!("no grouped refusal:\n{}", run.stderr));
    assert!(
        line.contains("plugin `notes`") && line.contains("step `0002_note_body`"),
        "{line}"
    );
    assert!(
        line.contains("recorded checksum") && line.contains("current"),
        "{line}"
    );
    for t in ["d1", "d2"] {
        // Untouched: the column keeps its original type.
        let ty = db.scalar_text(&format!(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = '{t}' AND table_name = 'notes' AND column_name = 'body'"
        ));
        assert_eq!(ty.as_deref(), Some("text"));
    }
    let after = db.ledger_dump();
    for line in before.lines() {
        assert!(
            after.contains(line),
            "a drifted schema's ledger row changed: {line}"
        );
    }
    assert!(
        run.stderr.contains(
            "schema `d3`: step `0002_note_body` of plugin `notes` was changed after it was applied"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'd3'"),
        0,
        "d3 is held whole"
    );
    let status = db
        .wasmig(plugins.path(), &["status", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    let d1 = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "d1")
        .expect("d1")
        .clone();
    assert_eq!(d1["drift"][0]["step"], "0002_note_body");
}

#[test]
fn a_failing_step_rolls_back_alone_and_other_tenants_complete() {
    let (db, plugins) = notes_fleet("failing", &["f1", "f2", "f3"]);
    // f2 has duplicate titles, so adding a unique constraint fails there.
    db.exec("INSERT INTO f2.notes (title) VALUES ('same'), ('same')");
    plugins.set(&["notes_v2_added"]);
    let run = db
        .wasmig(plugins.path(), &["migrate"])
        .expect(Exit::Problems);
    assert!(
        run.stderr.contains(
            "schema `f2`, plugin `notes`, step `0003_tags_unique_titles` failed and was rolled back"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("SQLSTATE 23505"), "{}", run.stderr);
    // Rolled back entirely: the first statement of the step (CREATE TABLE note_tags) is gone too.
    assert!(!db.table_exists("f2", "note_tags"));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'f2' AND step_id = '0003_tags_unique_titles'"),
        0
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.step_grant"),
        0,
        "no grant left behind"
    );
    for t in ["f1", "f3"] {
        assert!(db.table_exists(t, "note_tags"), "{t} must complete");
    }
    let failure = db.scalar_text("SELECT sqlstate FROM wasmig.failure WHERE schema_name = 'f2'");
    assert_eq!(failure.as_deref(), Some("23505"));
    let status = db.wasmig(plugins.path(), &["status"]).expect(Exit::Ok);
    assert!(
        status
            .stdout
            .contains("last failure: notes/0003_tags_unique_titles"),
        "{}",
        status.stdout
    );
    // Fix the data, rerun: f2 completes and the rest is untouched.
    db.exec("DELETE FROM f2.notes WHERE id = (SELECT max(id) FROM f2.notes)");
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert!(db.table_exists("f2", "note_tags"));
}

#[test]
fn two_concurrent_runners_apply_every_step_exactly_once() {
    let db = TestDb::new("concurrent");
    let plugins = PluginDir::new(WORKLOAD);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    let tenants: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for t in &tenants {
        db.wasmig(plugins.path(), &["tenant", "create", t, "--no-migrate"])
            .expect(Exit::Ok);
    }
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wasmig"))
            .args(["migrate", "--jobs", "2"])
            .env("DATABASE_URL", &db.url)
            .env("WASMIG_PLUGINS", plugins.path())
            .env("WASMIG_TRUSTED", "reference")
            .output()
            .expect("spawn wasmig")
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().expect("runner a"), b.join().expect("runner b"))
    });
    for (name, out) in [("a", &a), ("b", &b)] {
        assert!(
            out.status.success(),
            "runner {name} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // 8 tenants x 14 steps + 3 shared steps, each exactly once (the ledger's primary key
    // would have failed a runner on a second apply), split between the two runs.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger"),
        8 * 14 + 3
    );
    assert_eq!(
        db.scalar_i64("SELECT sum(applied) FROM wasmig.run WHERE command = 'migrate'"),
        8 * 14 + 3
    );
    assert_eq!(
        db.advisory_locks_after_wasmig_left(),
        0,
        "no stale advisory lock"
    );
}

#[test]
fn tenant_create_twice_is_fine() {
    let (db, plugins) = notes_fleet("twice", &["tw"]);
    let before = db.ledger_dump();
    let run = db
        .wasmig(
            plugins.path(),
            &["tenant", "create", "tw", "--name", "Again"],
        )
        .expect(Exit::Ok);
    assert!(run.stdout.contains("already exists"), "{}", run.stdout);
    assert_eq!(db.ledger_dump(), before);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM wasmig.tenant"), 1);
    // Dropping needs --yes, then removes schema, role and ledger rows.
    db.wasmig(plugins.path(), &["tenant", "drop", "tw"])
        .expect(Exit::Error);
    db.wasmig(plugins.path(), &["tenant", "drop", "tw", "--yes"])
        .expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'tw'"),
        0
    );
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{}_tw'",
            db.name
        )),
        0
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'tw'"),
        0
    );
}

#[test]
fn bad_schema_names_are_refused_with_the_name_and_nothing_is_created() {
    let db = TestDb::new("badnames");
    let plugins = PluginDir::new(&["notes_v1"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    let schemas_before = db.scalar_i64("SELECT count(*) FROM pg_namespace");
    // Roles are cluster-wide and other tests create theirs concurrently: count only ours.
    let our_roles = format!(
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE '{}\\_%'",
        db.name
    );
    let roles_before = db.scalar_i64(&our_roles);
    let long = "a".repeat(64);
    for (name, expect) in [
        ("Acme", "lowercase"),
        ("a\"b", "lowercase"),
        ("pg_x", "reserved"),
        ("public", "reserved"),
        ("information_schema", "reserved"),
        ("wasmig", "reserved"),
        ("shared", "shared schema"),
        (long.as_str(), "64 bytes"),
        ("", "empty"),
    ] {
        let run = db
            .wasmig(plugins.path(), &["tenant", "create", name])
            .expect(Exit::Error);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{first}");
        assert!(first.contains(expect), "{name}: {first}");
        if !name.is_empty() {
            assert!(
                first.contains(&format!("`{name}`")),
                "the error names the schema: {first}"
            );
        }
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_namespace"),
        schemas_before
    );
    assert_eq!(db.scalar_i64(&our_roles), roles_before);
}

#[test]
fn an_invalid_manifest_refuses_the_run_and_applies_nothing() {
    let db = TestDb::new("badmanifest");
    let plugins = PluginDir::new(&["notes_v1", "bad_manifest"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    db.wasmig(plugins.path(), &["tenant", "create", "bm", "--no-migrate"])
        .expect(Exit::Ok);
    let run = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Error);
    assert!(
        run.stderr.contains("bad_manifest.wasm"),
        "names the file: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("declares step `0001_notes` twice"),
        "{}",
        run.stderr
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM wasmig.ledger"), 0);
    assert!(!db.table_exists("bm", "notes"));
}

#[test]
fn migrate_without_init_says_what_to_do() {
    let db = TestDb::new("noinit");
    let plugins = PluginDir::new(&["notes_v1"]);
    let run = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Error);
    assert!(
        run.stderr.contains("run `wasmig init` first"),
        "{}",
        run.stderr
    );
}

#[test]
fn wrong_password_is_reported_without_the_password() {
    let db = TestDb::new("wrongpw");
    let plugins = PluginDir::new(&["notes_v1"]);
    let url = db
        .url
        .replace(crate::support::ADMIN_PASSWORD, "not-the-password-93c1");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["--database-url", &url, "status"])
        .env("WASMIG_PLUGINS", plugins.path())
        .output()
        .expect("run wasmig");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(Exit::Error as i32), "{stderr}");
    assert!(
        stderr.contains("cannot connect to postgres://wasmig_admin@127.0.0.1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password-93c1"), "{stderr}");
}

#[test]
fn ledger_rows_of_removed_plugins_are_reported_not_deleted() {
    let (db, plugins) = notes_fleet("unknown", &["u1"]);
    let before = db.ledger_dump();
    plugins.set(&["reference"]);
    let status = db
        .wasmig(plugins.path(), &["status", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    let u1 = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "u1")
        .expect("u1")
        .clone();
    assert_eq!(
        u1["unknown"],
        serde_json::json!([
            {"plugin": "notes", "step": "0001_notes"},
            {"plugin": "notes", "step": "0002_note_body"}
        ])
    );
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    let after = db.ledger_dump();
    for line in before.lines() {
        assert!(
            after.contains(line),
            "ledger row of a removed plugin was touched: {line}"
        );
    }
}

#[test]
fn compiled_plugins_are_cached_and_a_damaged_cache_entry_is_recompiled() {
    let db = TestDb::new("cache");
    let plugins = PluginDir::new(&["notes_v1", "carriers"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_dir = cache.path().join("wasmig");
    let status = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmig"))
            .args(["status", "--json"])
            .env("DATABASE_URL", &db.url)
            .env("WASMIG_PLUGINS", plugins.path())
            .env("WASMIG_CACHE_DIR", &cache_dir)
            .output()
            .expect("run wasmig");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    status();
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache_dir)
            .expect("cache dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    };
    let files = entries();
    assert_eq!(files.len(), 2, "one compiled artifact per plugin");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cache_dir)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the cache directory is private");
    let before: Vec<_> = files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .expect("meta")
                .modified()
                .expect("mtime")
        })
        .collect();
    status();
    let after: Vec<_> = files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .expect("meta")
                .modified()
                .expect("mtime")
        })
        .collect();
    assert_eq!(before, after, "a warm cache is read, not rewritten");
    // A damaged entry is not trusted: it is compiled again and replaced.
    std::fs::write(&files[0], b"not a compiled component").expect("damage");
    status();
    assert!(
        std::fs::metadata(&files[0]).expect("meta").len() > 1000,
        "recompiled"
    );
}
