//! The hostile suite's third pass: views that would read as whoever queries them,
//! transaction control spelt past a first-keyword filter, what one backend may allocate,
//! temporary files across parallel workers, catalog text against the write bound, the one-time
//! token, code that would run after the step's checks, types the host's driver cannot resolve,
//! server messages a plugin makes huge, and text that would reach the operator raw. Each attack
//! is a real plugin step next to a victim and a bystander (see [`super::Arena`]).

use super::{Arena, SKIP_TEXT_FILTER, att_error, fails_in, fails_with, refused_and_nothing_leaked};
use crate::support::{PluginDir, Run, TestDb};
use wasmig::Exit;

#[test]
fn a_view_that_would_read_as_whoever_queries_it_is_refused() {
    // System views filter what they show by the privileges of the reader: read by the
    // application (which can read every tenant), a tenant's view over one would show other
    // tenants' data. Whatever the query's shape, what the view reads is read from the
    // dependencies the server recorded for it.
    for attack in [
        "view_pg_stats",
        "view_pg_stat_activity",
        "view_information_schema",
        "view_in_subquery",
        "view_in_cte",
        "view_replaced",
        "matview_pg_stats",
    ] {
        fails_with(
            attack,
            "",
            &[],
            "which is neither in schema att nor a shared table granted to tenants",
        );
    }
    for attack in [
        "view_invoker_shared",
        "view_alter_invoker",
        "view_alter_table_invoker",
    ] {
        fails_with(attack, "shared", &[], "security_invoker");
    }
}

#[test]
fn a_view_of_a_shared_table_granted_to_tenants_reads_and_writes_as_the_tenant() {
    // Allowed: the view reads as its owner, the tenant's role, which may read the shared
    // table and nothing more. Through it the application can read, but not write, the shared
    // table, although the application itself may write it.
    let a = Arena::new("view_granted");
    a.attack("view_granted_shared", "shared", &[], Exit::Ok);
    a.db.exec(
        "CREATE ROLE app_view_granted LOGIN PASSWORD 'app';
         GRANT USAGE ON SCHEMA att, shared TO app_view_granted;
         GRANT ALL ON ALL TABLES IN SCHEMA shared TO app_view_granted;
         GRANT ALL ON att.money TO app_view_granted;",
    );
    let app = a.db.session_as("app_view_granted", "app");
    assert!(app.scalar_i64("SELECT count(*) FROM att.money") > 0);
    let write = app.exec("INSERT INTO att.money VALUES ('XXX', 'Pwned', 2)");
    let e = write.expect_err("the view writes as its owner, which may only read");
    assert!(e.contains("permission denied for table currency"), "{e}");
}

#[test]
fn transaction_control_never_reaches_the_server_however_it_is_spelt() {
    // Classified by PostgreSQL's own parser: empty statements, comments and `AND CHAIN`
    // change nothing, in `execute`, `query` and scripts alike.
    for attack in [
        "commit_empty_statement",
        "commit_and_chain_commented",
        "end_in_query",
        "commit_in_batch_piece",
        "prepare_as_group",
    ] {
        refused_and_nothing_leaked(attack, &["is not allowed in a step"]);
    }
}

#[test]
fn a_prepared_transaction_is_rolled_back_by_its_id_whoever_it_was_prepared_as() {
    // Past the parser (switched off here), `PREPARE TRANSACTION` as the tenant group would
    // detach the step's transaction with its locks. It is found by the transaction id the
    // step opened, not by its owner, and rolled back; no lock stays.
    let a = Arena::new("prepared_group");
    a.attack_env(
        "prepare_as_group",
        "",
        &[],
        &[SKIP_TEXT_FILTER],
        Exit::Problems,
    );
    assert_eq!(
        a.db.scalar_i64("SELECT count(*) FROM pg_prepared_xacts"),
        0,
        "no prepared transaction is left"
    );
    assert!(!a.db.table_exists("att", "leaked"));
    // The next shared migration takes its locks as usual.
    a.db.wasmig(a.plugins.path(), &["migrate", "--shared"])
        .expect(Exit::Ok);
}

#[test]
fn settings_that_size_a_backends_memory_and_notifications_are_refused() {
    for (attack, expected) in [
        (
            "set_work_mem",
            "setting `work_mem` is not allowed in a step",
        ),
        (
            "set_config_hash_mem",
            "setting `hash_mem_multiplier` is not allowed in a step",
        ),
        ("notify_flood", "`pg_notify` is not allowed in a step"),
        ("notify_statement", "`NOTIFY` is not allowed in a step"),
    ] {
        fails_with(attack, "", &[], expected);
    }
}

#[test]
fn a_backend_a_plugin_makes_allocate_without_bound_ends_in_an_error_not_a_crash() {
    // What the parser cannot see (notifications from inside a DO block) is bounded by the
    // server's per-process address-space cap, as README recommends: the backend's allocation
    // fails, the step fails, and the server and every other session go on.
    let a = Arena::new("memory_do");
    let run = a.attack("memory_do_notify", "", &[], Exit::Problems);
    let line = att_error(&run);
    assert!(line.contains("out of memory"), "{line}");
    assert_eq!(a.db.scalar_i64("SELECT 1::bigint"), 1, "the server is up");
}

#[test]
fn a_steps_temporary_files_are_bounded_across_its_parallel_workers() {
    // PostgreSQL bounds temporary files per process, and one query may start up to
    // max_worker_processes parallel workers with the session's limit each: the step's budget
    // is shared among all of them, so together they stay within max_temp_mb.
    let a = Arena::new("temp_parallel");
    let workers =
        a.db.scalar_i64("SELECT current_setting('max_worker_processes')::bigint");
    let run = a.attack(
        "temp_parallel",
        "",
        &["--plugin-limit", "hostile:max_temp_mb=40"],
        Exit::Problems,
    );
    let per_process = 40 * 1024 / (1 + workers);
    let line = att_error(&run);
    assert!(
        line.contains(&format!("temp_file_limit ({per_process}kB)")),
        "{line}"
    );
}

#[test]
fn catalog_text_a_step_stores_counts_against_its_write_bound() {
    let limit = ["--plugin-limit", "hostile:max_write_mb=5"];
    // One comment: at most 64 KiB.
    fails_with(
        "comment_huge",
        "",
        &limit,
        "a step may store at most 64 KiB in one comment",
    );
    // Many smaller ones (each replacing the last, each leaving its old version behind until
    // vacuum): counted as written.
    fails_with(
        "comment_many",
        "",
        &limit,
        "more than its limit of 5 MiB (max_write_mb)",
    );
    // An expression (a view's definition) of more than 1 MiB.
    fails_with(
        "view_huge_definition",
        "",
        &limit,
        "a step may store at most 1 MiB in one",
    );
}

#[test]
fn the_one_time_token_is_in_no_query_text_a_plugin_can_read() {
    // The plugin looks for its token in the text of the statement running it: it is not
    // there (tokens travel as bound parameters), so its begin_step call only closes its own
    // step, and the step is refused before its ledger row.
    fails_with(
        "token_from_query",
        "",
        &[],
        "the step closed its own step record",
    );
}

#[test]
fn a_grant_opens_one_step_once() {
    // Whoever holds a token (here the test) can open its step once; a second call, which
    // would restart the step's write bound, is refused.
    let a = Arena::new("begin_once");
    let role = a.role("vic");
    a.db.exec(&format!(
        "INSERT INTO wasmig.step_grant (token_hash, role_name, schema_name, plugin, step_id, checksum,
                                        artifact_checksum, plugin_version, run_id, mac, tier,
                                        write_limit, expires_at)
         VALUES (sha256('\\x0102'), '{role}', 'vic', 'notes', 'x', 'c', 'a', 'v', 0, 'm', 'schema',
                 1048576, now() + interval '1 hour')"
    ));
    a.db.rt_exec(&format!(
        "SET SESSION AUTHORIZATION \"{role}\"; BEGIN; SELECT wasmig_api.begin_step('\\x0102')"
    ))
    .expect("the first call opens the step");
    let again =
        a.db.rt_exec("SELECT wasmig_api.begin_step('\\x0102')")
            .expect_err("a second call is refused");
    assert!(again.contains("no valid step grant"), "{again}");
    a.db.exec("ROLLBACK; RESET SESSION AUTHORIZATION");
}

#[test]
fn no_plugin_code_runs_after_the_checks() {
    // A cursor held open would run its query at COMMIT, after the checks: cursors are closed
    // before them, so its query never runs.
    let a = Arena::new("held_cursor");
    a.attack("cursor_with_hold", "", &[], Exit::Ok);
    assert_eq!(
        a.db.scalar_text("SELECT is_called::text FROM att.held"),
        Some("false".into()),
        "the held cursor's query never ran"
    );
}

#[test]
fn a_type_nested_deeper_than_the_driver_resolves_is_refused_in_every_tier() {
    // The host's driver looks a type up recursively when a statement returns it: thousands
    // of nested domains would overflow the stack of the step's call and end the process for
    // every tenant. No tier may create one.
    for attack in [
        "deep_domains",
        "deep_composites",
        "deep_tables",
        "deep_graft",
    ] {
        fails_with(attack, "", &[], "levels deep");
        fails_in(
            "hostile_full",
            attack,
            "",
            &["--trust", "reference,hostile"],
            "levels deep",
        );
    }
}

#[test]
fn an_enum_the_driver_would_read_whole_is_bounded() {
    fails_with("huge_enum", "", &[], "has more than 10000 labels");
}

#[test]
fn catalog_rows_and_statistics_targets_count_against_the_write_bound() {
    // 60 empty tables of 1,600 columns are no file space and 96,000 rows of pg_attribute.
    fails_with(
        "wide_tables",
        "",
        &["--plugin-limit", "hostile:max_write_mb=5"],
        "more than its limit of 5 MiB (max_write_mb)",
    );
    fails_with(
        "statistics_target",
        "",
        &[],
        "has a statistics target above 1000",
    );
}

#[test]
fn copy_and_alter_role_are_refused_before_the_server() {
    fails_with(
        "copy_out",
        "",
        &[],
        "`COPY` to or from the client is not allowed",
    );
    fails_with(
        "alter_role_statement",
        "",
        &[],
        "`ALTER ROLE` is not allowed in a step",
    );
}

#[test]
fn a_non_transactional_scripts_results_are_never_collected() {
    // 40 rows of 60 MB each: read and dropped one by one, never held together.
    let a = Arena::with("nontx_rows", "hostile_nontx");
    let run = a.attack_env(
        "nontx_big_rows",
        "",
        &[],
        &[("WASMIG_TEST_PEAK_MEMORY", "1")],
        Exit::Ok,
    );
    let kb = peak_kb(&run);
    assert!(kb < 600 * 1024, "the host peaked at {kb} kB");
}

/// The peak memory `wasmig` reports with `WASMIG_TEST_PEAK_MEMORY` (debug builds).
fn peak_kb(run: &Run) -> u64 {
    run.stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak memory: "))
        .and_then(|v| v.trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line:\n{}", run.stderr))
}

#[test]
fn server_messages_a_plugin_makes_huge_are_cut_before_the_host_holds_them() {
    // A baseline run of the same arena, then each attack: the host's peak memory may not grow
    // with the message's size (270 MB of error fields, a 100 MB statement quoted back, 300 MB
    // of notices, a 200 MB row).
    let peak = [("WASMIG_TEST_PEAK_MEMORY", "1")];
    let base = {
        let a = Arena::new("huge_base");
        peak_kb(&a.attack_env("none", "", &[], &peak, Exit::Ok))
    };
    for (attack, expected) in [
        ("huge_raise_fields", "MMMM"),
        ("huge_syntax_error", "syntax error at end of input"),
        ("huge_row", "max_result_bytes"),
    ] {
        let a = Arena::new(attack);
        let run = a.attack_env(attack, "", &[], &peak, Exit::Problems);
        assert!(
            att_error(&run).contains(expected),
            "{attack}: {}",
            att_error(&run)
        );
        let kb = peak_kb(&run);
        // The 100 MB statement is in the plugin's memory, lifted into the host once and sent
        // from the driver's growing buffer: a few copies, bounded by the plugin's memory limit,
        // and none for the error (the caret line is cut from the statement in place; keeping
        // the statement and its characters for it took 5 more).
        let allowed = if attack == "huge_syntax_error" {
            5 * 110 * 1024
        } else {
            64 * 1024
        };
        assert!(
            kb < base + allowed,
            "{attack}: the host peaked at {kb} kB against {base} kB for a quiet run"
        );
    }
    let a = Arena::new("notice_flood");
    let run = a.attack_env(
        "notice_flood",
        "",
        &[],
        &[peak[0], ("WASMIG_LOG", "debug")],
        Exit::Ok,
    );
    let kb = peak_kb(&run);
    assert!(kb < base + 64 * 1024, "notices: {kb} kB against {base} kB");
    // Each notice was logged inert on one line, cut.
    let notices: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("server notice"))
        .collect();
    assert!(!notices.is_empty());
    assert!(
        notices.iter().all(|l| l.len() < 400 && l.contains("n\\nn")),
        "{:?}",
        &notices[..1]
    );
}

#[test]
fn log_records_are_one_inert_line_each_and_never_carry_sql_or_tokens() {
    // With the driver's logging asked for in full, its records (which quote statements and
    // their parameters) are still left out, and every record is one line.
    let a = Arena::new("log_records");
    let run = a.attack_env(
        "forge_raise",
        "",
        &[],
        &[("WASMIG_LOG", "trace,tokio_postgres=trace")],
        Exit::Problems,
    );
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
    assert!(
        !run.stderr.contains("begin_step(") && !run.stderr.contains("executing statement"),
        "{}",
        run.stderr
    );
}

#[test]
fn json_documents_carry_no_raw_control_characters() {
    // A step text with C1 controls, NEL, a line separator and a bidirectional override:
    // `diff --json`, like every document, escapes them the JSON way.
    let db = TestDb::new("json_controls");
    let plugins = PluginDir::new(&["notes_v1"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    db.wasmig(plugins.path(), &["tenant", "create", "j1"])
        .expect(Exit::Ok);
    db.exec(
        "UPDATE wasmig.step_text SET sql = sql || E'\\n-- \\u0085 \\u0090 \\u2028 \\u202e \\u001b[2K'",
    );
    plugins.set(&["notes_v2_edited"]);
    let run = db.wasmig(plugins.path(), &["diff", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    assert_eq!(doc["format"], "wasmig.diff/1", "{doc}");
    for c in ['\u{85}', '\u{90}', '\u{2028}', '\u{202e}', '\u{1b}'] {
        assert!(!run.stdout.contains(c), "raw {c:?} in:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("\\u202e"), "{}", run.stdout);
}

#[test]
fn a_components_own_names_cannot_forge_the_operators_screen() {
    // A component whose interface names are escape sequences fails validation, and the
    // validator's message quotes the name: `plugin check` and `status` print it made safe.
    let plugins = PluginDir::new(&[]);
    let bytes = std::fs::read(crate::support::built_plugins().join("notes_v1.wasm"))
        .expect("notes_v1.wasm");
    let forged_name = b"\x1b[2K\r";
    let mut patched = bytes.clone();
    let mut at = 0;
    let mut found = 0;
    while let Some(i) = patched[at..].windows(5).position(|w| w == b"apply") {
        patched[at + i..at + i + 5].copy_from_slice(forged_name);
        at += i + 5;
        found += 1;
    }
    assert!(found > 0, "the component names its `apply` export");
    std::fs::write(plugins.path().join("forged.wasm"), &patched).expect("write");
    let db = TestDb::new("forged_names");
    for args in [&["plugin", "check"][..], &["status"][..]] {
        let run = db.wasmig(plugins.path(), args);
        assert_ne!(run.code, 0, "{args:?}: the component is refused");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains('\u{1b}') && !all.contains('\r'),
            "{args:?}: {all:?}"
        );
        assert!(
            all.contains("\\x1b"),
            "{args:?}: the name is shown escaped: {all}"
        );
    }
}
