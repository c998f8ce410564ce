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
