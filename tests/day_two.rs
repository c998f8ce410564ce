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
