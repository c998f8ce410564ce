//! Lock conflicts with the live application, beyond a plain wait: a deadlock between a step
//! and an application session is resolved by trying the step again, and a step that runs
//! outside a transaction is never tried again (what it did before the failure stays done).

use std::time::{Duration, Instant};

use crate::support::{ADMIN_PASSWORD, ADMIN_USER, Fleet, Session};
use wasmig::Exit;

/// Waits until some session waits for `mode` on `t1.notes`.
fn until_waiting(db: &Session, mode: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 't1' AND c.relname = 'notes' AND l.mode = '{mode}' AND NOT l.granted"
        ));
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no session waited for {mode}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn schema_result(run: &serde_json::Value, schema: &str) -> serde_json::Value {
    run["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == schema)
        .expect("schema in the run")
        .clone()
}

#[test]
fn a_deadlock_between_a_step_and_the_application_is_resolved_by_trying_the_step_again() {
    // The step changes `note_tags` (an access-exclusive lock), then `notes`. The application
    // reads `notes` in an open transaction, so the step waits; then the application reads
    // `note_tags`, which waits for the step: a deadlock. The step waited first, so
    // PostgreSQL's deadlock check (after deadlock_timeout) cancels the step's transaction
    // (40P01); the application's read goes through, and the step, tried again in a new
    // transaction, succeeds.
    let (db, plugins) = Fleet::new("deadlock")
        .plugins(&["notes_v2_added"])
        .tenants(&["t1"])
        .build();
    plugins.set(&["notes_linked"]);
    let app = db.session_as(ADMIN_USER, ADMIN_PASSWORD);
    // Its own deadlock check comes later than the step's, so the step is the one cancelled.
    app.exec("SET deadlock_timeout = '20s'; BEGIN; SELECT count(*) FROM t1.notes")
        .expect("the application reads");
    let watcher = db.session_as(ADMIN_USER, ADMIN_PASSWORD);
    let application = std::thread::spawn(move || {
        until_waiting(&watcher, "AccessExclusiveLock");
        let read = app.exec("SELECT count(*) FROM t1.note_tags");
        let commit = app.exec("COMMIT");
        (read, commit)
    });
    let out = db
        .wasmig(
            plugins.path(),
            &[
                "migrate",
                "--json",
                "--lock-timeout",
                "10s",
                "--retries",
                "3",
            ],
        )
        .expect(Exit::Ok);
    let run = out.doc("wasmig.migrate/1");
    let (read, commit) = application.join().expect("application");
    read.expect("the application's read went through");
    commit.expect("and committed");
    let t1 = schema_result(&run, "t1");
    assert_eq!(t1["outcome"], "applied", "{t1}");
    assert_eq!(t1["retry_count"], 1, "one deadlock, one more attempt: {t1}");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 't1' AND column_name IN ('weight', 'pinned')"
        ),
        2
    );
    // The attempt the deadlock cost is said.
    assert!(
        out.stderr
            .contains("notes/0004_weights_and_pins was rolled back (SQLSTATE 40P01); trying again"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_step_outside_a_transaction_that_meets_a_lock_is_not_tried_again() {
    let (db, plugins) = Fleet::new("nontx_lock")
        .plugins(&["notes_v1"])
        .tenants(&["t1"])
        .build();
    plugins.set(&["notes_nontx"]);
    // An uncommitted insert holds a row-exclusive lock, which CREATE INDEX waits for.
    let app = db.session_as(ADMIN_USER, ADMIN_PASSWORD);
    app.exec("BEGIN; INSERT INTO t1.notes (title) VALUES ('open')")
        .expect("the application writes");
    let run = db
        .wasmig(
            plugins.path(),
            &[
                "migrate",
                "--json",
                "--lock-timeout",
                "200ms",
                "--retries",
                "3",
            ],
        )
        .expect(Exit::Problems)
        .doc("wasmig.migrate/1");
    let t1 = schema_result(&run, "t1");
    assert_eq!(t1["outcome"], "failed", "{t1}");
    assert_eq!(t1["failure"]["sqlstate"], "55P03", "{t1}");
    assert_eq!(
        t1["retry_count"], 0,
        "a step outside a transaction is not retried: {t1}"
    );
    app.exec("ROLLBACK").expect("release");
    let done = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    // The next step, a code step, read the table back with the SDK's one-row queries.
    assert!(
        done.stderr
            .contains("query_one counted 0 notes, query_scalar 0"),
        "{}",
        done.stderr
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_indexes WHERE schemaname = 't1' AND indexname = 'notes_title_idx'"),
        1
    );
}
