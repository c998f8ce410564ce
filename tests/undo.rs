//! Undo by run and ledger commands over many schemas: `revert --run N` reverts exactly what
//! a run applied, after checking every step in every schema; `repair` over a selection
//! lists old -> new per schema and wants `--yes`.

use crate::support::Fleet;
use wasmig::Exit;

const WORKLOAD: &[&str] = &["carriers", "customers", "suppliers", "finance"];
const NEXT: &[&str] = &["carriers", "customers", "suppliers", "finance_next"];
const STEP_4: &str = "0004_invoice_external_ref_and_more";

#[test]
fn revert_by_run_undoes_what_a_partial_run_applied_and_refuses_what_it_cannot_undo() {
    let (db, plugins) = Fleet::new("revert_run")
        .plugins(WORKLOAD)
        .shared_first()
        .tenants(&["r1", "r2", "r3"])
        .build();
    let p = plugins.path();
    let external_ref = |t: &str| {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_schema = '{t}' AND table_name = 'finance_invoice' AND column_name = 'external_ref'"
        ))
    };
    // The run that applies 0004 fails in r3, where the column is already there.
    db.exec("ALTER TABLE r3.finance_invoice ADD COLUMN external_ref text");
    plugins.set(NEXT);
    let partial = db
        .wasmig(p, &["migrate", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.migrate/1");
    let run = partial["run_id"].as_i64().expect("run_id").to_string();
    assert_eq!(external_ref("r1"), 1);
    let first = db
        .scalar_i64(
            "SELECT run_id FROM wasmig.ledger WHERE schema_name = 'r1' AND plugin = 'finance' AND step_id = '0001_initial'",
        )
        .to_string();

    // The first run's steps cannot be undone: irreversible ones, and 0004 was applied on
    // top of them by a later run. Every problem is listed, nothing changes anywhere.
    let before = db.ledger_dump();
    let refused = db
        .wasmig(p, &["revert", "--run", &first, "--yes"])
        .expect(Exit::Problems);
    assert!(
        refused.stderr.contains("error: schema `r1`: step `0003_invoice_paid_at_invoiceline_tax_rate_and_more` of plugin `finance` is irreversible")
            && refused.stderr.contains(&format!("error: schema `r2`: step `{STEP_4}` of plugin `finance` was applied on top of run {first}'s steps by a later run, {run}; revert run {run} first"))
            && refused.stderr.contains("nothing was reverted"),
        "{}",
        refused.stderr
    );
    assert_eq!(db.ledger_dump(), before, "nothing changed");
    assert_eq!(external_ref("r1"), 1);

    // Unconfirmed, nothing happens either.
    db.wasmig(p, &["revert", "--run", &run]).expect(Exit::Error);
    assert_eq!(db.ledger_dump(), before);

    // The partial run: 0004 goes in r1 and r2; r3, where it failed, is not touched.
    let undo = db
        .wasmig(p, &["revert", "--run", &run, "--yes"])
        .expect(Exit::Ok);
    for t in ["r1", "r2"] {
        assert!(
            undo.stdout
                .contains(&format!("{t}: reverted finance/{STEP_4}")),
            "{}",
            undo.stdout
        );
        assert_eq!(external_ref(t), 0, "{t}");
    }
    assert!(
        undo.stdout.contains("reverted 2 step(s) in 2 schema(s)"),
        "{}",
        undo.stdout
    );
    assert_eq!(external_ref("r3"), 1, "r3's own column stays");
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM wasmig.ledger WHERE step_id = '{STEP_4}'"
        )),
        0
    );
    // Done once: nothing left to revert; a run that does not exist is refused.
    let again = db
        .wasmig(p, &["revert", "--run", &run, "--yes"])
        .expect(Exit::Ok);
    assert!(
        again.stdout.contains("nothing to revert"),
        "{}",
        again.stdout
    );
    let missing = db
        .wasmig(p, &["revert", "--run", "99999", "--yes"])
        .expect(Exit::Error);
    assert!(
        missing.stderr.contains("there is no run 99999"),
        "{}",
        missing.stderr
    );
    // And migrate brings it back where it can.
    db.exec("ALTER TABLE r3.finance_invoice DROP COLUMN external_ref");
    db.wasmig(p, &["migrate"]).expect(Exit::Ok);
    assert_eq!(
        external_ref("r1") + external_ref("r2") + external_ref("r3"),
        3
    );
}

#[test]
fn revert_of_a_plugin_and_repair_work_over_a_selection_of_tenants() {
    let (db, plugins) = Fleet::new("many_ledger")
        .plugins(&["notes_v1"])
        .tenants(&["a1", "a2", "b1"])
        .build();
    let p = plugins.path();
    db.wasmig(p, &["tenant", "label", "a1", "a2", "group=a"])
        .expect(Exit::Ok);
    plugins.set(&["notes_v2_edited"]);
    db.wasmig(p, &["migrate"]).expect(Exit::Problems);
    // The SQL of each applied step is kept once, not once per tenant; a refused run records
    // nothing, so it keeps no new text.
    let texts = |step: &str| {
        db.scalar_i64(&format!(
            "SELECT count(*) FROM wasmig.step_text WHERE plugin = 'notes' AND step_id = '{step}'"
        ))
    };
    assert_eq!((texts("0001_notes"), texts("0002_note_body")), (1, 1));

    // More than one schema wants --yes; nothing is repaired without it.
    let repair = |extra: &[&str]| {
        let mut args = vec![
            "repair",
            "--where",
            "group=a",
            "--plugin",
            "notes",
            "--step",
            "0002_note_body",
        ];
        args.extend(extra);
        db.wasmig(p, &args)
    };
    let before = db.ledger_dump();
    let unconfirmed = repair(&[]).expect(Exit::Error);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(db.ledger_dump(), before);
    let run = repair(&["--yes"]).expect(Exit::Ok);
    for t in ["a1", "a2"] {
        assert!(
            run.stdout.lines().any(|l| l
                .starts_with(&format!("{t}: `notes/0002_note_body` checksum "))
                && l.contains(" -> ")),
            "{}",
            run.stdout
        );
    }
    assert!(
        !run.stdout.lines().any(|l| l.starts_with("b1")),
        "{}",
        run.stdout
    );
    // The repaired step's new text is kept beside the one it was applied with.
    assert_eq!(texts("0002_note_body"), 2);
    db.wasmig(p, &["verify", "--where", "group=a"])
        .expect(Exit::Ok);
    db.wasmig(p, &["verify", "--tenant", "b1"])
        .expect(Exit::Problems);
    let none = db
        .wasmig(
            p,
            &[
                "repair",
                "--where",
                "group=zzz",
                "--plugin",
                "notes",
                "--step",
                "0002_note_body",
                "--yes",
            ],
        )
        .expect(Exit::Problems);
    assert!(none.stderr.contains("group=zzz"), "{}", none.stderr);

    // A plugin revert over a selection is checked in every schema first: notes declares no
    // revert, so nothing changes anywhere, and each schema is named.
    let before = db.ledger_dump();
    let refused = db
        .wasmig(
            p,
            &["revert", "--all-tenants", "--plugin", "notes", "--yes"],
        )
        .expect(Exit::Problems);
    for t in ["a1", "a2"] {
        assert!(
            refused.stderr.contains(&format!(
                "error: schema `{t}`: step `0002_note_body` of plugin `notes` is irreversible"
            )),
            "{}",
            refused.stderr
        );
    }
    assert!(
        refused.stderr.contains("error: schema `b1`: step `0002_note_body` of plugin `notes` was applied with other content"),
        "{}",
        refused.stderr
    );
    assert_eq!(db.ledger_dump(), before);
    let unnamed = db
        .wasmig(p, &["revert", "--plugin", "notes", "--yes"])
        .expect(Exit::Error);
    assert!(
        unnamed.stderr.contains("--all-tenants"),
        "{}",
        unnamed.stderr
    );
}
