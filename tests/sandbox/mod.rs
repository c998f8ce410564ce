//! The hostile suite: every attack is a real plugin step (plugins/test-fixtures/hostile) run
//! against the real sandbox. Each must fail with a clear error and leave the victim tenant,
//! the shared schema, the ledger and the roles byte-for-byte unchanged, while the host keeps
//! migrating the other tenants of the same run.

use crate::support::{ADMIN_USER, PluginDir, Run, TestDb};
use wasmig::Exit;

struct Arena {
    db: TestDb,
    plugins: PluginDir,
}

impl Arena {
    fn new(label: &str) -> Arena {
        Arena::with(label, "hostile")
    }

    /// An arena whose attacks run in `hostile` (transactional step) or `hostile_nontx`.
    fn with(label: &str, hostile: &str) -> Arena {
        let db = TestDb::new(label);
        let plugins = PluginDir::new(&["reference", "notes_v1", hostile]);
        db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
        db.wasmig(plugins.path(), &["migrate", "--shared"])
            .expect(Exit::Ok);
        let a = Arena { db, plugins };
        a.tenant("vic", "none", "");
        // `hostile_full` needs `full`: it runs (its `none` attack, in the victim) only trusted.
        let trust: &[&str] = if hostile == "hostile_full" {
            &["--trust", "reference,hostile"]
        } else {
            &[]
        };
        a.db.wasmig(
            a.plugins.path(),
            &[&["migrate", "--schema", "vic"][..], trust].concat(),
        )
        .expect(Exit::Ok);
        a.db.exec("INSERT INTO vic.notes (title) VALUES ('the victim''s data')");
        a
    }

    fn role(&self, schema: &str) -> String {
        format!("{}_{schema}", self.db.name)
    }

    /// Creates a tenant (without migrating it) and writes the attack it will run.
    fn tenant(&self, schema: &str, attack: &str, target: &str) {
        self.db
            .wasmig(
                self.plugins.path(),
                &["tenant", "create", schema, "--no-migrate"],
            )
            .expect(Exit::Ok);
        self.db.exec(&format!(
            "SET ROLE \"{role}\"; CREATE TABLE {schema}.attack_plan (attack text, target text);
             INSERT INTO {schema}.attack_plan VALUES ('{attack}', '{target}'); RESET ROLE;",
            role = self.role(schema)
        ));
    }

    /// Everything an attack must not change, as text.
    fn snapshot(&self) -> String {
        let q = |sql: &str| self.db.scalar_text(sql).unwrap_or_default();
        let our_roles = format!("{}\\_%", self.db.name);
        [
            q("SELECT string_agg(row_to_json(n)::text, ',' ORDER BY id) FROM vic.notes n"),
            q("SELECT string_agg(row_to_json(c)::text, ',' ORDER BY code) FROM shared.currency c"),
            q("SELECT string_agg(row_to_json(c)::text, ',' ORDER BY code) FROM shared.country c"),
            q("SELECT string_agg(row_to_json(l)::text, E'\\n' ORDER BY schema_name, plugin, step_id)
               FROM wasmig.ledger l WHERE schema_name NOT IN ('att', 'by')"),
            q("SELECT string_agg(row_to_json(m)::text, ',' ORDER BY schema_name) FROM wasmig.managed_schema m"),
            q(&format!(
                // Any role may change its own password, so the attacker's is left out.
                "SELECT string_agg(format('%s %s %s %s %s %s', rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls,
                                          CASE WHEN rolname = '{att}' THEN '' ELSE rolpassword END), ',' ORDER BY rolname)
                 FROM pg_authid WHERE rolname LIKE '{our_roles}' OR rolname = 'evil'",
                att = self.role("att")
            )),
            q("SELECT string_agg(format('%s.%s', table_schema, table_name), ',' ORDER BY 1)
               FROM information_schema.tables WHERE table_schema IN ('vic', 'shared', 'public')"),
            q("SELECT count(*)::text FROM pg_largeobject_metadata"),
            q("SELECT coalesce(string_agg(extname, ','), '') FROM pg_extension WHERE extname <> 'plpgsql'"),
        ]
        .join("\n")
    }

    /// Runs `attack` in a fresh tenant `att` next to a fresh bystander `by`; checks that
    /// nothing else changed and that the bystander was migrated by the same run.
    fn attack(&self, attack: &str, target: &str, extra: &[&str], code: Exit) -> Run {
        self.attack_env(attack, target, extra, &[], code)
    }

    /// [`Arena::attack`] with extra environment variables for `wasmig`.
    fn attack_env(
        &self,
        attack: &str,
        target: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        code: Exit,
    ) -> Run {
        self.tenant("att", attack, target);
        self.tenant("by", "none", "");
        let before = self.snapshot();
        let mut args = vec!["migrate"];
        args.extend_from_slice(extra);
        let out = self
            .db
            .wasmig_command(self.plugins.path(), &args)
            .envs(env.iter().copied())
            .output()
            .expect("run wasmig");
        let run = Run::from(out, &args).expect(code);
        assert_eq!(
            self.snapshot(),
            before,
            "attack `{attack}` changed something outside its schema"
        );
        assert!(
            self.db.table_exists("by", "behaved"),
            "the bystander must still be migrated"
        );
        if code != Exit::Ok {
            assert_eq!(
                self.db
                    .scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'att'"),
                0,
                "a failed attack records nothing"
            );
            assert!(!std::path::Path::new("/tmp/wasmig-pwned").exists());
        }
        run
    }
}

/// The debug-build test hook that lets transaction control past the host's text filter, so
/// that the server-side check is what stops it.
const SKIP_TEXT_FILTER: (&str, &str) = ("WASMIG_TEST_SKIP_TEXT_FILTER", "1");

/// The attacker's error line in the run summary.
fn att_error(run: &Run) -> String {
    run.stderr
        .lines()
        .find(|l| l.contains("schema `att`"))
        .unwrap_or_else(|| panic!("no error line for `att`:\n{}", run.stderr))
        .to_owned()
}

#[track_caller]
fn fails_with(attack: &str, target: &str, extra: &[&str], expected: &str) {
    fails_in("hostile", attack, target, extra, expected);
}

/// [`fails_with`] with the attacks built into `crate_file` (`hostile_full` declares that it
/// needs the `full` tier, so it runs with a schema owner's rights once trusted).
fn fails_in(crate_file: &str, attack: &str, target: &str, extra: &[&str], expected: &str) {
    let a = Arena::with(attack, crate_file);
    let target = target.replace("$vic", "vic").replace("$admin", ADMIN_USER);
    let run = a.attack(attack, &target, extra, Exit::Problems);
    let line = att_error(&run);
    assert!(
        line.contains("plugin `hostile`, step `0001_attack`"),
        "{line}"
    );
    assert!(
        line.contains(expected),
        "attack `{attack}`: expected `{expected}` in:\n{line}"
    );
}

#[test]
fn reset_role_then_write_elsewhere() {
    fails_with(
        "reset_role",
        "$vic",
        &[],
        "permission denied for schema vic",
    );
}

#[test]
fn set_role_to_the_operator() {
    fails_with("set_role", "$admin", &[], "permission denied to set role");
}

#[test]
fn set_session_authorization() {
    fails_with(
        "set_session_authorization",
        "$admin",
        &[],
        "permission denied to set session authorization",
    );
}

#[test]
fn set_config_role() {
    fails_with(
        "set_config_role",
        "$admin",
        &[],
        "permission denied to set role",
    );
}

#[test]
fn set_config_search_path_then_write() {
    fails_with(
        "set_config_search_path",
        "$vic",
        &[],
        "relation \"notes\" does not exist",
    );
}

#[test]
fn read_another_tenant() {
    fails_with(
        "read_other",
        "$vic",
        &[],
        "permission denied for schema vic",
    );
}

#[test]
fn write_another_tenant() {
    fails_with(
        "write_other",
        "$vic",
        &[],
        "permission denied for schema vic",
    );
}

#[test]
fn write_the_shared_schema() {
    fails_with(
        "write_shared",
        "shared",
        &[],
        "permission denied for table currency",
    );
}

#[test]
fn lock_a_shared_table() {
    fails_with(
        "lock_shared",
        "shared",
        &[],
        "permission denied for table currency",
    );
}

#[test]
fn read_the_control_schema() {
    fails_with(
        "read_wasmig",
        "",
        &[],
        "permission denied for schema wasmig",
    );
}

#[test]
fn forge_a_ledger_row() {
    fails_with(
        "forge_ledger",
        "",
        &[],
        "permission denied for schema wasmig",
    );
}

#[test]
fn forge_a_step_grant() {
    fails_with("forge_record_step", "", &[], "no valid step grant");
}

#[test]
fn as_many_jobs_as_schemas_run_them_all_at_once() {
    // A worker keeps the logins (and the lock) of the next schemas under way, but never the
    // schemas another worker would otherwise have nothing to do without.
    let a = Arena::new("jobs_spread");
    let schemas = ["j1", "j2", "j3"];
    for s in schemas {
        a.tenant(s, "pg_sleep", "");
    }
    let mut child =
        a.db.wasmig_command(
            a.plugins.path(),
            &[
                "-q",
                "migrate",
                "--jobs",
                "3",
                "--step-timeout",
                "60s",
                "--schema",
                "j1",
                "--schema",
                "j2",
                "--schema",
                "j3",
            ],
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn wasmig");
    let sleeping = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
           AND query LIKE 'SELECT pg_sleep(600)%' AND usename LIKE '{}\\_j_'",
        a.db.name
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut most = 0;
    while most < 3 && std::time::Instant::now() < deadline {
        most = most.max(a.db.scalar_i64(&sleeping));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // End the sleeps (each schema's, as they come); the steps fail and wasmig exits.
    let status = loop {
        a.db.exec(&format!(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE usename LIKE '{}\\_j_'",
            a.db.name
        ));
        if let Some(status) = child.try_wait().expect("wasmig status") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(Exit::Problems as i32),
        "the three steps failed (cancelled)"
    );
    assert_eq!(most, 3, "all three schemas ran at the same time");
}

#[test]
fn the_warm_up_call_records_nothing_and_a_bad_token_still_fails() {
    // A fresh schema-role session calls `record_step(NULL, 0, NULL)` to plan it ahead of its first
    // step; a plugin can make the same call. It must change nothing and open no way around
    // the token.
    let a = Arena::new("warm_up");
    let before = a.snapshot();
    let ledger = a.db.ledger_dump();
    let grants = a.db.scalar_i64("SELECT count(*) FROM wasmig.step_grant");
    a.db.exec(&format!(
        "SET SESSION AUTHORIZATION \"{}\"; SELECT wasmig_api.record_step(NULL, 0, NULL);
         SELECT wasmig_api.run_script('SELECT 1'); RESET SESSION AUTHORIZATION;",
        a.role("vic")
    ));
    assert_eq!(a.snapshot(), before);
    assert_eq!(a.db.ledger_dump(), ledger);
    assert_eq!(
        a.db.scalar_i64("SELECT count(*) FROM wasmig.step_grant"),
        grants
    );
    let refused = a.db.rt_exec(&format!(
        "SET SESSION AUTHORIZATION \"{}\"; SELECT wasmig_api.record_step('\\x00', 0, NULL);",
        a.role("vic")
    ));
    a.db.exec("RESET SESSION AUTHORIZATION");
    let e = refused.expect_err("a token that matches no grant is refused");
    assert!(e.contains("no valid step grant"), "{e}");
    assert_eq!(a.db.ledger_dump(), ledger);
}

#[test]
fn security_definer_function() {
    fails_with(
        "security_definer",
        "$vic",
        &[],
        "permission denied for schema vic",
    );
}

#[test]
fn do_block() {
    fails_with("do_block", "$vic", &[], "permission denied for schema vic");
}

#[test]
fn create_extension() {
    fails_with(
        "create_extension",
        "",
        &[],
        "permission denied to create extension",
    );
}

#[test]
fn dblink() {
    fails_with("dblink", "$admin", &[], "does not exist");
}

#[test]
fn pg_read_file() {
    fails_with(
        "pg_read_file",
        "",
        &[],
        "permission denied for function pg_read_file",
    );
}

#[test]
fn copy_to_program() {
    fails_with("copy_program", "", &[], "pg_execute_server_program");
}

#[test]
fn lo_import() {
    fails_with(
        "lo_import",
        "",
        &[],
        "permission denied for function lo_import",
    );
}

#[test]
fn alter_role() {
    // Refused before the server (a role's attributes outlive the step); past that, the
    // server refuses SUPERUSER to a role without it.
    fails_with(
        "alter_role",
        "",
        &[],
        "`ALTER ROLE` is not allowed in a step",
    );
    let a = Arena::new("alter_role_server");
    let run = a.attack_env("alter_role", "", &[], &[SKIP_TEXT_FILTER], Exit::Problems);
    assert!(att_error(&run).contains("superuser"), "{}", run.stderr);
}

#[test]
fn create_role() {
    fails_with(
        "create_role",
        "",
        &[],
        "must be superuser to create superusers",
    );
}

#[test]
fn grant_to_others() {
    fails_with(
        "grant_to_others",
        "public",
        &[],
        "GRANT is not allowed in a tenant plugin step",
    );
}

#[test]
fn commit_inside_a_step_keeps_it_atomic() {
    fails_with("commit", "", &[], "`COMMIT` is not allowed in a step");
}

#[test]
fn commit_inside_a_script_keeps_it_atomic() {
    let a = Arena::new("commit_script");
    let run = a.attack("commit_in_script", "", &[], Exit::Problems);
    assert!(att_error(&run).contains("`COMMIT` is not allowed in a step"));
    assert!(
        !a.db.table_exists("att", "leaked"),
        "nothing before the COMMIT may stay"
    );
}

#[test]
fn begin_and_rollback_inside_a_step() {
    fails_with("begin", "", &[], "`BEGIN` is not allowed in a step");
    fails_with("rollback", "", &[], "`ROLLBACK` is not allowed in a step");
}

#[test]
fn commit_smuggled_past_the_splitter_is_refused_by_the_server() {
    for attack in ["commit_smuggled_backslash", "commit_smuggled_dollar"] {
        refused_and_nothing_leaked(
            attack,
            &[
                "not allowed in a step",
                "EXECUTE of transaction commands is not implemented",
            ],
        );
    }
}

#[test]
fn commit_inside_a_do_block() {
    let a = Arena::new("commit_do");
    let run = a.attack("commit_in_do", "", &[], Exit::Problems);
    assert!(
        att_error(&run).contains("invalid transaction termination"),
        "{}",
        run.stderr
    );
    assert!(!a.db.table_exists("att", "leaked"));
}

#[test]
fn long_pg_sleep_is_stopped_at_the_step_deadline() {
    let started = std::time::Instant::now();
    fails_with(
        "pg_sleep",
        "",
        &["--step-timeout", "2s"],
        "time limit of 2s",
    );
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn pg_sleep_after_disabling_statement_timeout_is_still_stopped() {
    fails_with(
        "pg_sleep_no_timeout",
        "",
        &["--step-timeout", "2s"],
        "time limit of 2s",
    );
}

#[test]
fn guest_infinite_loop() {
    fails_with(
        "infinite_loop",
        "",
        &["--step-timeout", "2s"],
        "exceeded its time limit of 2s and was stopped",
    );
}

#[test]
fn guest_memory_bomb() {
    fails_with(
        "memory_bomb",
        "",
        &["--plugin-limit", "hostile:memory_mb=32"],
        "memory limit of 32 MiB",
    );
}

#[test]
fn huge_query_result() {
    fails_with(
        "huge_result",
        "",
        &["--plugin-limit", "hostile:max_result_bytes=1000000"],
        "larger than 1000000 bytes",
    );
}

#[test]
fn statement_flood() {
    fails_with(
        "statement_flood",
        "",
        &["--plugin-limit", "hostile:max_statements=100"],
        "more than 100 statements",
    );
}

#[test]
fn guest_panic_is_reported_once_with_its_message() {
    let a = Arena::new("panic");
    let run = a.attack("panic", "", &[], Exit::Problems);
    let line = att_error(&run);
    assert!(line.contains("hostile plugin panics on purpose"), "{line}");
    assert_eq!(
        run.stderr.matches("panics on purpose").count(),
        1,
        "the panic is printed once:\n{}",
        run.stderr
    );
    // Advice a plugin cannot follow is not passed on.
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{}", run.stderr);
}

#[test]
fn log_flood_is_truncated_and_never_floods_the_host() {
    let a = Arena::new("log_flood");
    // The step itself is harmless apart from its output, so it applies.
    let run = a.attack("log_flood", "", &[], Exit::Ok);
    assert!(a.db.table_exists("att", "flooded"));
    assert!(
        run.stderr.len() < 4 << 20,
        "host output must stay bounded: {} bytes",
        run.stderr.len()
    );
    assert!(
        run.stderr.contains("log limit reached"),
        "log truncation is announced"
    );
    assert!(
        run.stderr.contains("dropped (output limit)"),
        "stdout/stderr truncation is announced"
    );
}

#[test]
fn a_plugin_changing_its_own_role_is_refused_and_the_role_restored() {
    // A role's password and settings outlive the step (a known password would let the
    // plugin's author log in outside any step; a raised work_mem would hold for every later
    // session of the tenant). In a transactional step the change rolls back with the refusal.
    for attack in ["change_own_password", "change_own_settings"] {
        let a = Arena::new(attack);
        let run = a.attack(attack, "", &[], Exit::Problems);
        assert!(
            att_error(&run).contains("changed its own role"),
            "{attack}: {}",
            run.stderr
        );
    }
    // In a non-transactional step it was committed before the check: the operator's session
    // restores the role's password and settings, so the next run logs in at once.
    for attack in ["change_own_password", "change_own_settings"] {
        let a = Arena::with(&format!("{attack}_nontx"), "hostile_nontx");
        let run = a.attack(attack, "", &[], Exit::Problems);
        assert!(
            att_error(&run).contains("changed its own role"),
            "{attack}: {}",
            run.stderr
        );
        let config =
            a.db.scalar_text(&format!(
                "SELECT array_to_string(rolconfig, ',') FROM pg_roles WHERE rolname = '{}'",
                a.role("att")
            ))
            .unwrap_or_default();
        assert!(!config.contains("work_mem"), "{config}");
        a.plugins.set(&["reference", "notes_v2_added"]);
        let next = a.db.wasmig(a.plugins.path(), &["migrate"]).expect(Exit::Ok);
        assert!(
            !next.stderr.contains("refused its password"),
            "{}",
            next.stderr
        );
        assert!(a.db.table_exists("att", "note_tags"));
    }
}

#[test]
fn a_forged_ledger_row_is_reported_and_refuses_the_schema() {
    let a = Arena::new("forged");
    // Someone with database access (not a plugin: plugins cannot) adds a ledger row.
    a.db.exec(
        "INSERT INTO wasmig.ledger (schema_name, plugin, step_id, checksum, artifact_checksum, plugin_version, applied_at, duration_ms, mac)
         VALUES ('vic', 'notes', '0003_tags_unique_titles', 'x', 'x', 'x', now(), 0, 'not-a-mac')",
    );
    let status =
        a.db.wasmig(a.plugins.path(), &["status", "--json"])
            .expect(Exit::Ok)
            .doc("wasmig.status/1");
    let vic = status["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .find(|s| s["schema"] == "vic")
        .expect("vic")
        .clone();
    assert_eq!(
        vic["forged"],
        serde_json::json!([{"plugin": "notes", "step": "0003_tags_unique_titles"}])
    );
    let run =
        a.db.wasmig(a.plugins.path(), &["migrate"])
            .expect(Exit::Problems);
    assert!(
        run.stderr
            .contains("ledger row `notes/0003_tags_unique_titles` was not written by wasmig"),
        "{}",
        run.stderr
    );
}

#[test]
fn schema_roles_have_no_privileges_beyond_their_schema() {
    let a = Arena::new("roles");
    let role = a.role("vic");
    let row = &a.db.query(&format!(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolconnlimit, rolconfig::text
         FROM pg_roles WHERE rolname = '{role}'"
    ))[0];
    assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1) && !row.get::<_, bool>(2));
    assert!(!row.get::<_, bool>(3) && !row.get::<_, bool>(4));
    assert_eq!(row.get::<_, i32>(5), 4);
    let config: String = row.get(6);
    for setting in [
        "search_path=vic",
        "statement_timeout=",
        "lock_timeout=",
        "idle_in_transaction_session_timeout=",
    ] {
        assert!(config.contains(setting), "{setting} in {config}");
    }
    // Member of exactly one role: the tenant group, which holds only SELECT grants (on what
    // shared plugins grant it) and the use of the ledger functions in `wasmig_api`.
    let groups: Vec<String> =
        a.db.query(&format!(
            "SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = '{role}'"
        ))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(groups, [format!("{}_wasmig_tenants", a.db.name)]);
    let can = |obj: &str, privilege: &str| {
        a.db.query(&format!(
            "SELECT has_table_privilege('{role}', '{obj}', '{privilege}')"
        ))[0]
            .get::<_, bool>(0)
    };
    assert!(
        can("shared.currency", "SELECT"),
        "shared plugins granted read access"
    );
    assert!(!can("shared.currency", "INSERT"));
    assert!(!can("wasmig.ledger", "SELECT"));
    assert!(!can("wasmig.secret", "SELECT"));
}

#[test]
fn the_application_role_gets_privileges_on_plugin_objects() {
    let db = TestDb::new("approle");
    db.exec("CREATE ROLE app_user_approle LOGIN");
    let plugins = PluginDir::new(&["notes_v1"]);
    db.wasmig(plugins.path(), &["init", "--app-role", "app_user_approle"])
        .expect(Exit::Ok);
    db.wasmig(
        plugins.path(),
        &["tenant", "create", "ap", "--app-role", "app_user_approle"],
    )
    .expect(Exit::Ok);
    plugins.set(&["notes_v2_added"]);
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    for (table, privilege) in [
        ("ap.notes", "INSERT"),
        ("ap.notes", "SELECT"),
        ("ap.note_tags", "UPDATE"),
    ] {
        let ok: bool = db.query(&format!(
            "SELECT has_table_privilege('app_user_approle', '{table}', '{privilege}')"
        ))[0]
            .get(0);
        assert!(ok, "app role lacks {privilege} on {table}");
    }
    let bad = db
        .wasmig(
            plugins.path(),
            &["tenant", "create", "ap2", "--app-role", "no_such_role"],
        )
        .expect(Exit::Error);
    assert!(
        bad.stderr.contains("role `no_such_role` does not exist"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_carriage_return_does_not_hide_transaction_control() {
    // PostgreSQL ends a `--` comment at a carriage return: so does the host's filter.
    for attack in ["commit_cr", "prepare_transaction_cr"] {
        refused_and_nothing_leaked(attack, &["is not allowed in a step"]);
    }
}

/// Runs `attack`, checks that its error line holds one of `expected` and that the table it
/// created before its transaction-control statement was not committed.
#[track_caller]
fn refused_and_nothing_leaked(attack: &str, expected: &[&str]) {
    let a = Arena::new(attack);
    let run = a.attack(attack, "", &[], Exit::Problems);
    let line = att_error(&run);
    assert!(
        expected.iter().any(|e| line.contains(e)),
        "{attack}: {line}"
    );
    assert!(
        !a.db.table_exists("att", "leaked"),
        "{attack}: nothing may be committed"
    );
}

#[test]
fn a_statement_that_ends_the_step_transaction_is_caught_by_the_server_side_check() {
    // With the host's text filter off, each of these reaches the server. The transaction id
    // the host reads after every statement catches every one, whatever the text, and the step
    // fails although the plugin swallowed every error.
    for (attack, statement) in [
        ("end_transaction", "COMMIT"),
        ("end_transaction", "COMMIT AND CHAIN"),
        ("end_transaction", "ROLLBACK AND CHAIN"),
        ("end_transaction", "END"),
        ("end_transaction_query", "COMMIT"),
    ] {
        let a = Arena::new("end_tx");
        let run = a.attack_env(attack, statement, &[], &[SKIP_TEXT_FILTER], Exit::Problems);
        let line = att_error(&run);
        assert!(
            line.contains("ended the step's transaction"),
            "{statement}: {line}"
        );
        assert!(
            !a.db.table_exists("att", "leaked_after"),
            "{statement}: nothing runs after the transaction is gone"
        );
        assert_eq!(
            a.db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'att'"),
            0,
            "{statement}: the step is not recorded"
        );
        assert!(a.db.table_exists("by", "behaved"));
        assert_eq!(a.db.scalar_i64("SELECT count(*) FROM pg_prepared_xacts"), 0);
    }
}

/// Nothing in `text` that a terminal would act on: no escape, no carriage return, and no
/// line that imitates a run summary.
#[track_caller]
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}'),
        "{what}: raw ESC in output:\n{text}"
    );
    assert!(
        !text.contains('\r'),
        "{what}: raw carriage return in output"
    );
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("run 99:")),
        "{what}: a forged summary line:\n{text}"
    );
}

#[test]
fn plugin_text_cannot_forge_the_operators_screen() {
    for attack in ["forge_output", "forge_raise", "forge_panic"] {
        let a = Arena::new(attack);
        let run = a.attack(attack, "", &[], Exit::Problems);
        assert_inert(attack, &run.stdout);
        assert_inert(attack, &run.stderr);
        let line = att_error(&run);
        assert!(
            line.contains("\\x1b[2K"),
            "{attack}: escape shown visibly: {line}"
        );
        // What status shows from the stored failure is inert too.
        let status = a.db.wasmig(a.plugins.path(), &["status"]).expect(Exit::Ok);
        assert_inert(attack, &status.stdout);
        assert_inert(attack, &status.stderr);
        let json =
            a.db.wasmig(a.plugins.path(), &["status", "--json"])
                .expect(Exit::Ok);
        assert_inert(attack, &json.stdout);
    }
    // Log lines and the plugin's stdout/stderr come out one per message, escapes visible.
    let a = Arena::new("forge_lines");
    let run = a.attack("forge_output", "", &["-v"], Exit::Problems);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("[hostile@att]") && l.contains("\\n\\x1b[1A")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_huge_error_is_capped_in_output_and_storage() {
    for attack in ["huge_error", "huge_raise"] {
        let a = Arena::new(attack);
        let run = a.attack(attack, "", &[], Exit::Problems);
        assert!(
            run.stdout.len() + run.stderr.len() < 64 << 10,
            "{attack}: {} bytes of output",
            run.stdout.len() + run.stderr.len()
        );
        assert!(
            att_error(&run).contains("more bytes)"),
            "{attack}: the cut is said"
        );
        let stored = a.db.scalar_i64(
            "SELECT max(length(message))::bigint FROM wasmig.failure WHERE schema_name = 'att'",
        );
        assert!(
            stored > 0 && stored < 4096,
            "{attack}: stored {stored} chars"
        );
    }
}

#[test]
fn result_size_counts_what_the_host_holds_not_wire_bytes() {
    // 12,000 rows of 1,600 NULLs are ~0 bytes of cell data on the wire; 4,000 numerics of a
    // few bytes each decode to 131,001 characters. Both pass a wire-byte count.
    for attack in ["wide_nulls", "numeric_amplification"] {
        fails_with(
            attack,
            "",
            &[],
            "once decoded, the limit per query (max_result_bytes)",
        );
    }
}

#[test]
fn nothing_is_left_outside_the_schema() {
    // A large object belongs to no schema and survives `tenant drop`; one given to, or made
    // as, the tenant group is readable by every tenant. A superuser `init` takes the
    // functions that create them away from tenant roles, whatever the plugin's capability.
    for attack in [
        "large_object",
        "large_object_to_group",
        "large_object_as_group",
    ] {
        fails_in(
            "hostile_full",
            attack,
            "",
            &["--trust", "reference,hostile"],
            "permission denied for function lo_",
        );
        fails_with(attack, "", &[], "permission denied for function lo_");
    }
}

#[test]
fn without_a_superuser_init_a_large_object_left_behind_is_refused_and_removed() {
    // An operator that is not a superuser cannot revoke the large-object functions: the step
    // check inside the step's transaction refuses what a trusted plugin left outside its
    // schema, and what a non-transactional step left (committed before its check) is removed
    // by the operator's session, never blamed on the next tenant.
    let db = TestDb::new("lo_no_super");
    let (_, url) = db.non_superuser_operator();
    let plugins = PluginDir::new(&["hostile_full", "hostile_nontx"]);
    let run = |args: &[&str]| {
        let out = crate::support::wasmig_command(&url, plugins.path(), args)
            .output()
            .expect("run wasmig");
        Run::from(out, args)
    };
    run(&["init"]).expect(Exit::Ok);
    let trust = ["--trust", "hostile,hostile-nontx"];
    for (schema, plugin, attack) in [
        ("a1", "hostile", "large_object"),
        ("a2", "hostile", "large_object_as_group"),
        ("a3", "hostile-nontx", "large_object_as_group"),
        ("a4", "hostile-nontx", "large_object"),
    ] {
        run(&["tenant", "create", schema, "--no-migrate"]).expect(Exit::Ok);
        db.exec(&format!(
            "SET ROLE \"{db}_{schema}\"; CREATE TABLE {schema}.attack_plan (attack text, target text);
             INSERT INTO {schema}.attack_plan VALUES ('{attack}', ''); RESET ROLE;",
            db = db.name
        ));
        let out = run(&[
            &["migrate", "--schema", schema, "--plugin", plugin][..],
            &trust,
        ]
        .concat())
        .expect(Exit::Problems);
        assert!(out.stderr.contains("outside its schema"), "{}", out.stderr);
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_largeobject_metadata"),
        0,
        "the refused steps left no large object"
    );
    // A fresh tenant's first step is not blamed for anything another tenant left.
    run(&["tenant", "create", "fresh", "--no-migrate"]).expect(Exit::Ok);
    db.exec(&format!(
        "SET ROLE \"{db}_fresh\"; CREATE TABLE fresh.attack_plan (attack text, target text);
         INSERT INTO fresh.attack_plan VALUES ('none', ''); RESET ROLE;",
        db = db.name
    ));
    run(&[
        &["migrate", "--schema", "fresh", "--plugin", "hostile"][..],
        &trust,
    ]
    .concat())
    .expect(Exit::Ok);
}

#[test]
fn tenant_drop_leaves_nothing_owned_behind() {
    let a = Arena::new("drop_clean");
    a.attack("none", "", &[], Exit::Ok);
    let role = a.role("att");
    a.db.wasmig(a.plugins.path(), &["tenant", "drop", "att", "--yes"])
        .expect(Exit::Ok);
    assert_eq!(
        a.db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
        )),
        0
    );
    let group = format!("{}_wasmig_tenants", a.db.name);
    assert_eq!(
        a.db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_shdepend d JOIN pg_roles g ON g.oid = d.refobjid
              WHERE g.rolname = '{group}' AND d.deptype = 'o'"
        )),
        0,
        "the tenant group owns nothing"
    );
}

#[test]
fn tenants_cannot_take_advisory_locks() {
    // wasmig's runner locks are advisory locks with predictable keys, and every advisory lock
    // takes a slot of the server's shared lock table: tenant roles may take none.
    for attack in ["advisory_locks", "advisory_lock_shared"] {
        fails_with(attack, "", &[], "permission denied for function pg_");
    }
}

#[test]
fn tenant_sessions_have_a_temp_file_limit() {
    let a = Arena::new("temp_limit");
    let config =
        a.db.scalar_text(&format!(
            "SELECT rolconfig::text FROM pg_roles WHERE rolname = '{}'",
            a.role("vic")
        ))
        .unwrap_or_default();
    assert!(config.contains("temp_file_limit=1048576kB"), "{config}");
}

#[test]
fn planted_code_is_refused_for_a_migration_with_the_schema_capability() {
    // Each of these would run as the application role when it touches the attacker's
    // tables (or as the app through its search_path); the server's object guard refuses
    // them whatever SQL text built them.
    for (attack, expected) in [
        ("plant_trigger", "CREATE FUNCTION is not allowed"),
        ("plant_rule", "CREATE RULE is not allowed"),
        ("plant_policy", "CREATE POLICY is not allowed"),
        ("plant_default", "calls query_to_xml"),
        ("plant_check", "calls pg_notify"),
        ("plant_domain", "calls set_config"),
        ("plant_alter_default", "calls nextval(regclass)"),
        ("plant_view", "calls query_to_xml"),
        ("plant_shadow_view", "is named like shared.currency"),
        ("plant_shadow_table", "is named like shared.country"),
        ("plant_lower_varchar", "CREATE FUNCTION is not allowed"),
        ("plant_operator", "CREATE OPERATOR is not allowed"),
        ("plant_in_do", "CREATE FUNCTION is not allowed"),
        ("plant_stable_default", "calls pg_stat_get_backend_activity"),
    ] {
        let target =
            if attack.contains("default") || attack.contains("view") || attack == "plant_trigger" {
                "vic"
            } else {
                ""
            };
        fails_with(attack, target, &[], expected);
    }
}

#[test]
fn what_the_schema_capability_allows_runs_no_code_for_the_application() {
    let db = TestDb::new("app_dml");
    let app = format!("app_{}", db.name);
    db.exec(&format!("CREATE ROLE \"{app}\" LOGIN"));
    let plugins = PluginDir::new(&["reference", "notes_v1", "hostile"]);
    let with_app = |args: &[&str]| {
        let mut a = vec!["--app-role", app.as_str()];
        a.extend_from_slice(args);
        db.wasmig(plugins.path(), &a).expect(Exit::Ok)
    };
    with_app(&["init"]);
    with_app(&["migrate", "--shared"]);
    for (schema, attack) in [("vic", "none"), ("att", "allowed_schema")] {
        with_app(&["tenant", "create", schema, "--no-migrate"]);
        db.exec(&format!(
            "SET ROLE \"{db}_{schema}\"; CREATE TABLE {schema}.attack_plan (attack text, target text);
             INSERT INTO {schema}.attack_plan VALUES ('{attack}', ''); RESET ROLE;",
            db = db.name
        ));
    }
    with_app(&["migrate"]);
    db.exec("INSERT INTO vic.notes (title) VALUES ('the victim''s data')");
    let victim = || {
        db.scalar_text("SELECT string_agg(row_to_json(n)::text, ',' ORDER BY id) FROM vic.notes n")
    };
    let before = victim();
    // As the application, with the attacker's schema first on its search_path: ordinary DML
    // on everything the plugin created.
    db.exec(&format!(
        "SET ROLE \"{app}\"; SET search_path = att, shared;
         INSERT INTO item (name) VALUES ('a'), ('b'); UPDATE item SET name = name || 'x';
         SELECT * FROM item_names; SELECT * FROM currency; DELETE FROM item WHERE name = 'ax';
         INSERT INTO behaved VALUES (1); RESET ROLE; RESET search_path;"
    ));
    assert_eq!(
        victim(),
        before,
        "nothing ran with the application's rights"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM att.item"),
        1,
        "the application's own DML worked"
    );
    assert!(db.table_exists("att", "behaved"));
}

#[test]
fn a_plugin_that_cannot_declare_its_tier_runs_with_the_grant_which_the_server_enforces() {
    // `legacy` is built for wasmig:plugin@0.1.0, whose manifest cannot say what it needs: it
    // runs with what the operator granted. Granted `data` (the seeds' default), its harmless
    // `CREATE TABLE` is refused by the server, and the refusal names the grant that would
    // allow it; its default as a migration (`schema`) allows it.
    let a = Arena::new("data_tier");
    a.plugins.set(&["reference", "notes_v1", "legacy_wit"]);
    a.tenant("att", "none", "");
    let run =
        a.db.wasmig(
            a.plugins.path(),
            &["migrate", "--schema", "att", "--grant", "legacy=data"],
        )
        .expect(Exit::Problems);
    let line = att_error(&run);
    assert!(
        line.contains("plugin `legacy`")
            && line.contains("CREATE TABLE is not allowed")
            && line.contains("`data` capability"),
        "{line}"
    );
    assert!(
        run.stderr.contains(
            "  HINT: if you trust it to change the schema, grant it more: --grant legacy=schema"
        ),
        "the fix is named, on the HINT line: {}",
        run.stderr
    );
    assert!(!a.db.table_exists("att", "legacy_note"));
    a.db.wasmig(a.plugins.path(), &["migrate", "--schema", "att"])
        .expect(Exit::Ok);
    assert!(a.db.table_exists("att", "legacy_note"));
    assert!(
        a.db.table_exists("att", "notes"),
        "plugins of the current WIT version ran beside it"
    );
}

#[test]
fn a_plugin_that_needs_more_than_it_was_granted_is_refused_before_anything_runs() {
    // `hostile_full` declares that it needs `full`; as a tenant migration it is granted
    // `schema` unless trusted by name. Refused before any schema is touched (dry run
    // included), naming the flag that would grant it; a `--grant` of `schema` is not enough.
    let a = Arena::with("needs_more", "hostile_full");
    a.tenant("att", "none", "");
    let ledger = "SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'att'";
    let runs = "SELECT count(*) FROM wasmig.run";
    let runs_before = a.db.scalar_i64(runs);
    for args in [
        &["migrate"][..],
        &["migrate", "--dry-run"],
        &["migrate", "--schema", "att", "--grant", "hostile=schema"],
        &["migrate", "--trust", "reference", "--grant", "hostile=data"],
    ] {
        let run = a.db.wasmig(a.plugins.path(), args).expect(Exit::Error);
        assert!(
            run.stderr
                .contains("plugin `hostile` needs the `full` tier but is granted")
                && run.stderr.contains("--trust hostile"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(a.db.scalar_i64(ledger), 0, "{args:?}: nothing ran");
        assert!(!a.db.table_exists("att", "behaved"), "{args:?}");
    }
    assert_eq!(
        a.db.scalar_i64(runs),
        runs_before,
        "no run was even started"
    );
    // Trusted by name, it runs.
    a.db.wasmig(
        a.plugins.path(),
        &["migrate", "--schema", "att", "--trust", "reference,hostile"],
    )
    .expect(Exit::Ok);
    assert!(a.db.table_exists("att", "behaved"));
}

#[test]
fn a_plugin_runs_with_the_tier_it_declares_even_when_granted_more() {
    // `hostile` declares `schema` (a tenant migration's default). Trusted by name it could
    // have had `full`, but it runs with what it declared: planting a trigger is still
    // refused by the server, for several kinds of planted code.
    for (attack, refused) in [
        ("plant_trigger", "CREATE FUNCTION is not allowed"),
        ("plant_rule", "CREATE RULE is not allowed"),
        ("plant_policy", "CREATE POLICY is not allowed"),
        ("plant_operator", "CREATE OPERATOR is not allowed"),
    ] {
        fails_with(attack, "vic", &["--trust", "reference,hostile"], refused);
    }
}

#[test]
fn trust_grants_full_rights_and_only_then_triggers_are_allowed() {
    let a = Arena::with("full_tier", "hostile_full");
    a.attack(
        "plant_trigger",
        "vic",
        &["--trust", "reference,hostile"],
        Exit::Ok,
    );
    assert!(a.db.table_exists("att", "bait"));
}

#[test]
fn a_schema_role_may_not_change_its_schema_outside_a_step() {
    let a = Arena::new("outside_step");
    let e =
        a.db.rt_exec(&format!(
            "SET SESSION AUTHORIZATION \"{}\"; CREATE TABLE vic.sneaky (id int);",
            a.role("vic")
        ))
        .expect_err("refused");
    a.db.exec("RESET SESSION AUTHORIZATION");
    assert!(e.contains("outside a wasmig step"), "{e}");
}

#[test]
fn a_step_holding_too_many_locks_is_stopped() {
    let a = Arena::new("many_locks");
    let started = std::time::Instant::now();
    let run = a.attack(
        "many_locks",
        "",
        &["--plugin-limit", "hostile:max_locks=200"],
        Exit::Problems,
    );
    let line = att_error(&run);
    assert!(
        line.contains("more than its limit of 200 (max_locks)"),
        "{line}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "stopped long before its sleep ended"
    );
    assert!(!a.db.table_exists("att", "hoard_1"), "rolled back");
    // Everyone else can still connect and work.
    assert_eq!(a.db.scalar_i64("SELECT 1::bigint"), 1);
}

#[test]
fn a_tenant_session_holding_a_shared_lock_does_not_stop_the_shared_migration() {
    let a = Arena::new("shared_first");
    // A session of the victim's own role reads a shared table and keeps its transaction (and
    // its lock) open, as a tenant step of another run would.
    let role = a.role("vic");
    a.db.exec(&format!("ALTER ROLE \"{role}\" PASSWORD 'held'"));
    let holder = a.db.session_as(&role, "held");
    holder
        .exec("BEGIN; SELECT count(*) FROM shared.currency")
        .expect("read a shared table");
    a.plugins.set(&["reference_next", "notes_v1", "hostile"]);
    let run =
        a.db.wasmig(
            a.plugins.path(),
            &["migrate", "--shared", "--lock-timeout", "1s"],
        )
        .expect(Exit::Ok);
    assert!(
        run.stderr
            .contains("ended 1 tenant session(s) holding locks in the shared schema"),
        "{}",
        run.stderr
    );
    assert_eq!(
        a.db.scalar_i64(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_schema = 'shared' AND table_name = 'currency' AND column_name = 'symbol'"
        ),
        1
    );
    assert!(holder.is_closed(), "the tenant session was ended");
}

#[test]
fn without_the_object_guard_limited_tiers_are_refused_not_weakened() {
    // An operator that is not a superuser cannot install the event trigger: a tenant plugin
    // without `full` rights is then refused before anything runs.
    let db = TestDb::new("no_guard");
    let (_, url) = db.non_superuser_operator();
    let plugins = PluginDir::new(&["notes_v1"]);
    let run = |args: &[&str]| {
        let out = crate::support::wasmig_command(&url, plugins.path(), args)
            .output()
            .expect("run wasmig");
        Run::from(out, args)
    };
    let init = run(&["init"]).expect(Exit::Ok);
    assert!(init.stderr.contains("not a superuser"), "{}", init.stderr);
    run(&["tenant", "create", "t1", "--no-migrate"]).expect(Exit::Ok);
    let refused = run(&["migrate"]).expect(Exit::Error);
    assert!(
        refused.stderr.contains("object guard")
            && refused.stderr.contains("`notes` (schema)")
            && refused.stderr.contains("--trust"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger"),
        0,
        "nothing ran"
    );
    // Trusted by name, it runs with full rights.
    run(&["migrate", "--trust", "notes"]).expect(Exit::Ok);
    assert!(db.table_exists("t1", "notes"));
}

#[test]
fn a_step_is_bounded_in_temporary_files() {
    // The schema role's temp_file_limit (1 GiB) is the ceiling; a plugin's `max_temp_mb`
    // lowers it for its steps (shared among the processes one query may use, see
    // `third::a_steps_temporary_files_are_bounded_across_its_parallel_workers`), and the step
    // cannot raise it again.
    fails_with(
        "temp_flood",
        "",
        &["--plugin-limit", "hostile:max_temp_mb=1"],
        "temporary file size exceeds temp_file_limit (",
    );
}

#[test]
fn a_statement_that_opens_a_transaction_in_a_non_transactional_step_is_caught() {
    // In a non-transactional step each statement commits on its own; one that opens a
    // transaction block (past the text filter, switched off here) would make the host's own
    // statements run inside the plugin's transaction. The check after every statement sees it.
    let a = Arena::with("nontx_begin", "hostile_nontx");
    let run = a.attack_env(
        "end_transaction",
        "BEGIN",
        &[],
        &[SKIP_TEXT_FILTER],
        Exit::Problems,
    );
    let line = att_error(&run);
    assert!(line.contains("left a transaction block open"), "{line}");
    assert!(
        !a.db.table_exists("att", "leaked_after"),
        "nothing ran after it"
    );
    assert_eq!(
        a.db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'att'"),
        0
    );
    assert!(a.db.table_exists("by", "behaved"));
    // Without the test hook the filter refuses the same statement before it reaches the
    // server: the plugin swallows that error, no block is opened, and the step goes on.
    let a = Arena::with("nontx_filter", "hostile_nontx");
    let run = a.attack("end_transaction", "BEGIN", &[], Exit::Ok);
    assert!(
        run.stderr.contains("`BEGIN` is not allowed in a step")
            || a.db.table_exists("att", "leaked_after"),
        "{}",
        run.stderr
    );
    assert!(a.db.table_exists("att", "leaked_after"));
    assert_eq!(
        a.db.scalar_i64(
            "SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'att' AND plugin = 'hostile-nontx'"
        ),
        1
    );
}

#[test]
fn nothing_a_step_leaves_in_the_session_reaches_the_next_plugin() {
    // `hostile` and `hostile-nontx` run one after the other on the same tenant session; the
    // first leaves a temporary table and a role, the second would record finding either.
    let db = TestDb::new("carry_over");
    let plugins = PluginDir::new(&["reference", "hostile", "hostile_nontx"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    db.wasmig(plugins.path(), &["tenant", "create", "att", "--no-migrate"])
        .expect(Exit::Ok);
    db.exec(&format!(
        "SET ROLE \"{}_att\"; CREATE TABLE att.attack_plan (attack text, target text);
         INSERT INTO att.attack_plan VALUES ('carry_over', ''); RESET ROLE;",
        db.name
    ));
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'att'"),
        2,
        "both plugins ran"
    );
    assert!(
        !db.table_exists("att", "carried_over"),
        "the second plugin found the first one's temporary table or role"
    );
}

/// The line of `run`'s stderr starting with `LINE` and the caret line under it: the caret
/// must sit under the first character of `at` within that line.
#[track_caller]
fn assert_caret_under(run: &Run, line_no: Option<u32>, at: &str) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.trim_start().starts_with("LINE "))
        .unwrap_or_else(|| panic!("no LINE in:\n{}", run.stderr));
    let (line, caret) = (lines[i], lines[i + 1]);
    if let Some(n) = line_no {
        assert!(
            line.trim_start().starts_with(&format!("LINE {n}: ")),
            "{line}"
        );
    }
    let col = caret
        .find('^')
        .unwrap_or_else(|| panic!("no caret under:\n{line}\n{caret}"));
    assert!(caret[..col].trim().is_empty(), "{caret}");
    assert_eq!(
        line.get(col..col + at.len()),
        Some(at),
        "caret not under `{at}`:\n{line}\n{caret}"
    );
}

#[test]
fn a_syntax_error_in_a_script_shows_its_line_with_a_caret() {
    let a = Arena::new("caret");
    let run = a.attack("syntax_error", "", &[], Exit::Problems);
    assert!(
        att_error(&run).contains("syntax error at or near \"(\""),
        "{}",
        run.stderr
    );
    // Line 2 of the script, the caret under the second `(` (PostgreSQL's error position).
    assert_caret_under(&run, Some(2), "(id int)");
    assert!(
        !a.db.table_exists("att", "fine"),
        "the step rolled back whole"
    );
    // The stored failure keeps the caret block; status shows its first line only.
    assert_eq!(
        a.db.scalar_i64(
            "SELECT count(*) FROM wasmig.failure WHERE schema_name = 'att' AND message LIKE '%LINE 2: %'"
        ),
        1
    );
    let status = a.db.wasmig(a.plugins.path(), &["status"]).expect(Exit::Ok);
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains("last failure"))
        .unwrap_or_else(|| panic!("no last failure in:\n{}", status.stdout));
    assert!(
        line.contains("hostile/0001_attack: syntax error at or near") && !line.contains("LINE"),
        "{line}"
    );
}

#[test]
fn a_syntax_error_in_a_query_shows_its_line_with_a_caret() {
    let a = Arena::new("caret_query");
    let run = a.attack("syntax_error_query", "", &[], Exit::Problems);
    assert!(
        att_error(&run).contains("syntax error at end of input"),
        "{}",
        run.stderr
    );
    assert_caret_under(&run, Some(2), "");
}

#[test]
fn a_syntax_error_in_a_non_transactional_step_shows_its_line_with_a_caret() {
    let a = Arena::with("caret_nontx", "hostile_nontx");
    let run = a.attack("syntax_error", "", &[], Exit::Problems);
    assert!(
        att_error(&run).contains("syntax error at or near \"(\""),
        "{}",
        run.stderr
    );
    assert_caret_under(&run, None, "(id int)");
}

#[test]
fn the_servers_detail_is_shown_on_a_line_of_its_own() {
    let a = Arena::new("detail");
    let run = a.attack("detail_error", "", &[], Exit::Problems);
    assert!(
        att_error(&run).contains("duplicate key value"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.trim_start() == "DETAIL: Key (id)=(1) already exists."),
        "{}",
        run.stderr
    );
}

#[test]
fn plugin_text_cannot_forge_the_caret_lines() {
    // The forged RAISE text holds line breaks and escapes: it stays on the error's own line,
    // and no LINE/caret block appears for an error without a position.
    let a = Arena::new("caret_forge");
    let run = a.attack("forge_raise", "", &[], Exit::Problems);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("LINE ")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_step_is_bounded_in_the_bytes_it_writes() {
    // `max_write_mb` bounds how much a step grows its schema's files (tables, indexes, TOAST,
    // temporary tables, large objects), whatever it writes with: one statement is caught
    // before the ledger row, a stream of statements between them, with full rights too.
    let limit = ["--plugin-limit", "hostile:max_write_mb=5"];
    fails_with(
        "write_big_table",
        "",
        &limit,
        "MiB, more than its limit of 5 MiB (max_write_mb)",
    );
    // Large objects are out of a tenant's reach altogether (`init` revokes their creation).
    fails_with(
        "write_large_object",
        "",
        &limit,
        "permission denied for function lo_",
    );
    fails_with(
        "write_many_rows",
        "",
        &limit,
        "grew its schema by more than its limit of 5 MiB (max_write_mb) and was stopped",
    );
    // Removing its own step record (which holds the bound's start) does not escape it.
    fails_with(
        "write_after_closing_step",
        "",
        &limit,
        "closed its own step record",
    );
    fails_in(
        "hostile_full",
        "write_temp_table",
        "",
        &[&["--trust", "reference,hostile"][..], &limit].concat(),
        "more than its limit of 5 MiB (max_write_mb)",
    );
}

mod third;
