//! What a new operator runs into: passwords never printed, network waits bounded, the
//! database named before anything happens, files holding data private, a closed pipe,
//! names that match nothing, destructive commands that ask first, Ctrl-C.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Fleet, PluginDir, Run, TestDb, wasmig_command};
use wasmig::Exit;

const SECRET: &str = "s3cretPW";

/// `wasmig` with no database settings at all (no DATABASE_URL, no PG*, no config file).
fn bare(args: &[&str]) -> Command {
    let mut c = wasmig_command("", std::path::Path::new("/nonexistent"), args);
    c.env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .env_remove("PGPASSWORD")
        .env_remove("PGCONNECT_TIMEOUT")
        .env_remove("WASMIG_CONFIG")
        .env_remove("WASMIG_ENV")
        .current_dir(std::env::temp_dir());
    c
}

fn run(mut c: Command, args: &[&str]) -> Run {
    Run::from(c.output().expect("run wasmig"), args)
}

#[test]
fn a_malformed_url_never_prints_its_password_whatever_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = [
        format!("postgres//u:{SECRET}@localhost/db"),
        format!("postgresql:/u:{SECRET}@localhost:notaport/db"),
        format!("postgres://u:{SECRET}@localhost:99999/db"),
        format!("host=localhost port=x password={SECRET}"),
        format!("host=localhost port=x password='{SECRET} x'"),
    ];
    for url in &bad {
        // From the flag, DATABASE_URL, and the config file (directly and through ${VAR}).
        let config = dir.path().join("wasmig.toml");
        std::fs::write(
            &config,
            "[env.prod]\ndatabase_url = \"${PROD_URL}\"\n[env.dev]\ndatabase_url = '''".to_owned()
                + url
                + "'''\n",
        )
        .expect("write config");
        let mut cases: Vec<(&str, Command)> = Vec::new();
        let mut c = bare(&["--database-url", url, "tenant", "list"]);
        c.current_dir(dir.path());
        cases.push(("--database-url", c));
        let mut c = bare(&["tenant", "list"]);
        c.env("DATABASE_URL", url);
        cases.push(("DATABASE_URL", c));
        let mut c = bare(&[
            "--config",
            config.to_str().expect("utf8"),
            "--env",
            "dev",
            "tenant",
            "list",
        ]);
        c.current_dir(dir.path());
        cases.push(("the config file", c));
        let mut c = bare(&[
            "--config",
            config.to_str().expect("utf8"),
            "--env",
            "prod",
            "tenant",
            "list",
        ]);
        c.env("PROD_URL", url);
        cases.push(("the config file", c));
        for (source, c) in cases {
            let r = run(c, &["tenant", "list"]).expect(Exit::Error);
            let all = format!("{}{}", r.stdout, r.stderr);
            assert!(!all.contains(SECRET), "{source}: password printed:\n{all}");
            assert!(all.contains("***"), "{source}: {all}");
            assert!(all.contains(&format!("(from {source})")), "{source}: {all}");
        }
    }
    // The PG* variables: a bad PGPORT with a password set.
    let mut c = bare(&["tenant", "list"]);
    c.env("PGHOST", "localhost")
        .env("PGPORT", "nope")
        .env("PGPASSWORD", SECRET);
    let r = run(c, &["tenant", "list"]).expect(Exit::Error);
    assert!(
        r.stderr.contains("invalid PGPORT") && !r.stderr.contains(SECRET),
        "{}",
        r.stderr
    );
}

/// A listener that accepts connections and never says a word.
fn silent_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepting = l.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in accepting.incoming().flatten() {
            held.push(s);
        }
    });
    (l, port)
}

#[test]
fn a_server_that_never_answers_is_given_up_on_after_connect_timeout() {
    let (_l, port) = silent_listener();
    let url = format!("postgres://u:{SECRET}@127.0.0.1:{port}/db");
    for (args, env, secs, origin) in [
        (
            vec!["tenant", "list"],
            vec![("DATABASE_URL", format!("{url}?connect_timeout=2"))],
            2,
            "connect_timeout",
        ),
        (
            vec!["health"],
            vec![
                ("DATABASE_URL", url.clone()),
                ("PGCONNECT_TIMEOUT", "3".into()),
            ],
            3,
            "PGCONNECT_TIMEOUT",
        ),
        (
            vec!["history"],
            vec![
                ("PGHOST", "127.0.0.1".into()),
                ("PGPORT", port.to_string()),
                ("PGUSER", "u".into()),
                ("PGCONNECT_TIMEOUT", "2".into()),
            ],
            2,
            "PGCONNECT_TIMEOUT",
        ),
        // libpq's minimum: 1 counts as 2.
        (
            vec!["init"],
            vec![("DATABASE_URL", format!("{url}?connect_timeout=1"))],
            2,
            "connect_timeout",
        ),
    ] {
        let mut c = bare(&args);
        c.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let r = run(c, &args).expect(Exit::Error);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(secs) && took < Duration::from_secs(secs + 5),
            "{args:?}: gave up after {took:?}, expected about {secs} s"
        );
        // `health` reports an unreachable database as its document on stdout; the others
        // as an error on stderr. Either way the reason is said, and no password.
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(
            said.contains(&format!("no answer within {secs} s ({origin})")),
            "{args:?}: {said}"
        );
        assert!(!said.contains(SECRET), "{said}");
    }
    // Without either setting the default bounds it too; "wait forever" is refused up front.
    let mut c = bare(&["tenant", "list"]);
    c.env("DATABASE_URL", &url).env("PGCONNECT_TIMEOUT", "0");
    let r = run(c, &["tenant", "list"]).expect(Exit::Error);
    assert!(
        r.stderr.contains("invalid PGCONNECT_TIMEOUT") && r.stderr.contains("wait forever"),
        "{}",
        r.stderr
    );
    let mut c = bare(&["tenant", "list"]);
    c.env("DATABASE_URL", &url);
    let started = Instant::now();
    let r = run(c, &["tenant", "list"]).expect(Exit::Error);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        r.stderr
            .contains("no answer within 10 s (wasmig's default connect timeout)"),
        "{}",
        r.stderr
    );
}

fn demo(label: &str) -> (TestDb, PluginDir) {
    Fleet::new(label)
        .plugins(&["notes_v1"])
        .tenants(&["t1", "t2", "t3"])
        .build()
}

#[test]
fn every_command_names_its_database_and_says_what_it_overrode() {
    let (db, plugins) = demo("banner");
    let p = plugins.path();
    let shown = db
        .url
        .replace(&format!(":{}@", crate::support::ADMIN_PASSWORD), "@");
    for args in [
        &["status"][..],
        &["tenant", "list"],
        &["migrate"],
        &["health"],
        &["history"],
        &["verify"],
    ] {
        let r = db.wasmig(p, args);
        let first = r.stderr.lines().next().unwrap_or("");
        assert_eq!(
            first,
            format!("wasmig: database {shown} (from DATABASE_URL)"),
            "{args:?}"
        );
        assert_eq!(
            r.stderr.matches("wasmig: database").count(),
            1,
            "{args:?}: once"
        );
        assert!(
            !r.stdout.contains("wasmig: database"),
            "{args:?}: not on stdout"
        );
    }
    // --json keeps stdout pure JSON; -q keeps the banner off.
    let r = db.wasmig(p, &["status", "--json"]).expect(Exit::Ok);
    r.doc("wasmig.status/1");
    assert!(r.stderr.contains("wasmig: database"), "{}", r.stderr);
    let r = db.wasmig(p, &["-q", "status"]).expect(Exit::Ok);
    assert!(!r.stderr.contains("wasmig: database"), "{}", r.stderr);

    // A config file beside the command wins over DATABASE_URL: both are said.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("wasmig.toml"),
        format!(
            "default_env = \"dev\"\n[env.dev]\ndatabase_url = \"{}\"\n[env.prod]\ndatabase_url = \"postgres://app:${{PROD_PW}}@db.internal/app\"\n",
            db.url
        ),
    )
    .expect("config");
    let mut c = db.wasmig_command(p, &["status"]);
    c.current_dir(dir.path())
        .env("DATABASE_URL", "postgres://other@elsewhere/db")
        .env("PGHOST", "elsewhere");
    // The prod environment's ${PROD_PW} is not set: dev, the one used, must not care.
    let r = run(c, &["status"]).expect(Exit::Ok);
    assert!(
        r.stderr.contains(&format!(
            "wasmig: database {shown} (environment `dev` of wasmig.toml)"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("wasmig: note: DATABASE_URL and PGHOST are set but not used: the config file comes first"),
        "{}",
        r.stderr
    );
    // --database-url wins over a config environment whose ${VAR} is unset.
    let mut c = db.wasmig_command(p, &["--env", "prod", "--database-url", &db.url, "status"]);
    c.current_dir(dir.path());
    let r = run(c, &["status"]).expect(Exit::Ok);
    assert!(
        r.stderr
            .contains("(from --database-url; environment `prod`)"),
        "{}",
        r.stderr
    );
    // Used, the unset variable is an error naming it and the line.
    let mut c = db.wasmig_command(p, &["--env", "prod", "status"]);
    c.current_dir(dir.path()).env_remove("PROD_PW");
    let r = run(c, &["status"]).expect(Exit::Error);
    assert!(
        r.stderr.contains("line 5") && r.stderr.contains("${PROD_PW}"),
        "{}",
        r.stderr
    );
}

#[test]
fn backups_are_private_files_in_a_private_directory() {
    let (db, plugins) = demo("modes");
    plugins.add_file("carriers");
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("nested/backups");
    db.wasmig(
        plugins.path(),
        &["migrate", "--backup-dir", backups.to_str().expect("utf8")],
    )
    .expect(Exit::Ok);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&backups), 0o700);
    let files: Vec<_> = std::fs::read_dir(&backups)
        .expect("read")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        files.len(),
        6,
        "a dump and a ledger sidecar per tenant, nothing else: {files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // The metrics file is for a collector running as another user: readable, written whole.
    let prom = dir.path().join("wasmig.prom");
    db.wasmig(
        plugins.path(),
        &["metrics", "--output", prom.to_str().expect("utf8")],
    )
    .expect(Exit::Ok);
    assert_eq!(mode(&prom), 0o644);
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("read").count(),
        2,
        "no temporary file left"
    );
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let (db, plugins) = demo("pipe");
    for args in [
        &["status"][..],
        &["tenant", "list"],
        &["history"],
        &["status", "--json"],
        &["health"],
        &["migrate"],
        &["--help"],
    ] {
        // A reader that is already gone, as with `| head -0`: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = db
            .wasmig_command(plugins.path(), args)
            .stdout(writer)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            [Some(Exit::Ok as i32), Some(Exit::Problems as i32)].contains(&out.status.code()),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

#[test]
fn names_that_match_no_loaded_plugin_are_refused_from_flags_and_warned_about_from_the_environment()
{
    let (db, plugins) = demo("names");
    let p = plugins.path();
    for (args, said) in [
        (
            &["--trust", "notes-v", "status"][..],
            "`--trust notes-v` names no loaded plugin",
        ),
        (
            &["--plugin-limit", "nope:memory_mb=1", "status"],
            "`--plugin-limit nope` names no loaded plugin",
        ),
        (
            &["--grant", "nope=schema", "migrate"],
            "`--grant nope` names no loaded plugin",
        ),
        (
            &["migrate", "--plugin", "nope"],
            "`--plugin nope` names no loaded plugin",
        ),
        (
            &["revert", "--schema", "t1", "--plugin", "nope", "--yes"],
            "`--plugin nope` names no loaded plugin",
        ),
        (&["pin", "nope"], "`pin nope` names no loaded plugin"),
    ] {
        let r = db.wasmig(p, args).expect(Exit::Error);
        assert!(r.stderr.contains(said), "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("notes"),
            "{args:?}: lists the loaded plugins: {}",
            r.stderr
        );
    }
    let r = db
        .wasmig(p, &["--trust", "note", "status"])
        .expect(Exit::Error);
    assert!(r.stderr.contains("did you mean `notes`?"), "{}", r.stderr);
    // The same names from environment variables or the config file only warn (such settings
    // serve runs over other plugin directories too), and the command goes on.
    let mut c = db.wasmig_command(p, &["status"]);
    c.env("WASMIG_TRUSTED", "nope")
        .env("WASMIG_GRANTS", "nope2=data");
    let r = run(c, &["status"]).expect(Exit::Ok);
    assert!(
        r.stderr
            .contains("`nope` in WASMIG_TRUSTED names no loaded plugin"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`nope2` in WASMIG_GRANTS names no loaded plugin"),
        "{}",
        r.stderr
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("wasmig.toml"),
        format!(
            "[defaults]\ndatabase_url = \"{}\"\n[defaults.limits.nope3]\nmemory_mb = 8\n",
            db.url
        ),
    )
    .expect("config");
    let mut c = db.wasmig_command(p, &["status"]);
    c.current_dir(dir.path());
    let r = run(c, &["status"]).expect(Exit::Ok);
    assert!(
        r.stderr
            .contains("`nope3` (`limits` in wasmig.toml) names no loaded plugin"),
        "{}",
        r.stderr
    );
}

#[test]
fn destructive_commands_ask_for_yes_and_change_nothing_without_it() {
    let (db, plugins) = demo("yes");
    let p = plugins.path();
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = dir.path().join("b");
    db.wasmig(
        p,
        &["migrate", "--backup-dir", backups.to_str().expect("utf8")],
    )
    .expect(Exit::Ok);
    // Nothing was pending, so no dump: make one by adding a plugin.
    plugins.add_file("carriers");
    db.wasmig(
        p,
        &[
            "migrate",
            "--schema",
            "t1",
            "--backup-dir",
            backups.to_str().expect("utf8"),
        ],
    )
    .expect(Exit::Ok);
    let dump = std::fs::read_dir(&backups)
        .expect("backups")
        .map(|e| e.expect("entry").path())
        .find(|f| f.extension().is_some_and(|x| x == "dump"))
        .expect("a dump");
    let ledger = db.ledger_dump();
    for args in [
        vec!["restore", dump.to_str().expect("utf8"), "--schema", "t1"],
        vec!["revert", "--schema", "t1", "--plugin", "carriers"],
        vec!["tenant", "drop", "t1"],
    ] {
        let r = db.wasmig(p, &args).expect(Exit::Error);
        assert!(
            r.stderr
                .contains("nothing was changed: add --yes to confirm"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(db.ledger_dump(), ledger);
    assert!(db.table_exists("t1", "carriers_carrier"));
    db.wasmig(
        p,
        &[
            "restore",
            dump.to_str().expect("utf8"),
            "--schema",
            "t1",
            "--yes",
        ],
    )
    .expect(Exit::Ok);
    assert!(
        !db.table_exists("t1", "carriers_carrier"),
        "restored to before carriers"
    );
}

/// 30 tenants of the `slow` plugin, none migrated yet.
fn slow_fleet(label: &str) -> (TestDb, PluginDir) {
    let names: Vec<String> = (0..30).map(|i| format!("t{i:02}")).collect();
    Fleet::new(label)
        .plugins(&["slow"])
        .tenants(&names)
        .unmigrated()
        .build()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Starts `wasmig -j 2 migrate` and waits until its first schema is done.
fn start_and_wait_for_progress(db: &TestDb, plugins: &PluginDir) -> std::process::Child {
    let child = db
        .wasmig_command(plugins.path(), &["-j", "2", "migrate"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE step_id = '0002_done'") == 0 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn history_json(db: &TestDb, plugins: &PluginDir) -> serde_json::Value {
    db.wasmig(plugins.path(), &["history", "--json", "--limit", "1"])
        .expect(Exit::Ok)
        .doc("wasmig.history/1")["runs"][0]
        .clone()
}

/// Every tenant's ledger agrees with its tables: a step is recorded exactly when it ran.
fn assert_ledger_matches_tables(db: &TestDb) {
    let mismatched = db.scalar_i64(
        "SELECT count(*) FROM wasmig.tenant t
         WHERE (SELECT count(*) FROM pg_tables WHERE schemaname = t.schema_name AND tablename = 'slow_done')
            <> (SELECT count(*) FROM wasmig.ledger l WHERE l.schema_name = t.schema_name AND l.step_id = '0002_done')",
    );
    assert_eq!(mismatched, 0);
}

#[test]
fn sigint_and_sigterm_mid_run_finish_the_running_steps_and_record_the_run_as_interrupted() {
    for (sig, code) in [("INT", Exit::Interrupted), ("TERM", Exit::Terminated)] {
        let (db, plugins) = slow_fleet(&format!("sig{}", sig.to_lowercase()));
        let child = start_and_wait_for_progress(&db, &plugins);
        signal(child.id(), sig);
        let out = child.wait_with_output().expect("wait");
        let run = Run::from(out, &["-j", "2", "migrate"]);
        assert_eq!(run.code, code as i32, "SIG{sig}");
        assert!(
            run.stdout.contains(&format!("INTERRUPTED by SIG{sig}")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("not started (SIG"), "{}", run.stdout);
        assert!(
            run.stderr.contains("the run was interrupted before"),
            "{}",
            run.stderr
        );
        let done = db.scalar_i64("SELECT count(*) FROM wasmig.ledger");
        assert!(done > 0 && done < 60, "some but not all steps ran: {done}");
        assert_ledger_matches_tables(&db);
        let h = history_json(&db, &plugins);
        assert_eq!(h["outcome"], "interrupted", "{h}");
        assert_eq!(h["applied_count"].as_i64(), Some(done), "{h}");
        assert_eq!(
            db.advisory_locks_after_wasmig_left(),
            0,
            "no lock left behind"
        );
        // A rerun finishes the job.
        db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
        assert_eq!(db.scalar_i64("SELECT count(*) FROM wasmig.ledger"), 60);
    }
}

#[test]
fn a_second_signal_stops_at_once_and_a_dead_runner_is_shown_as_abandoned() {
    let (db, plugins) = slow_fleet("sig_twice");
    // Later naps last 30 s: the first signal would wait for them.
    let child = start_and_wait_for_progress(&db, &plugins);
    db.exec(&format!(
        "ALTER DATABASE {} SET wasmig_test.nap = '30'",
        db.name
    ));
    // Let the running workers reach a long nap.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.scalar_i64("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND now() - query_start > interval '1 second'") == 0 {
        assert!(Instant::now() < deadline, "no long nap started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = db.scalar_i64("SELECT count(*) FROM wasmig.ledger");
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    signal(child.id(), "INT");
    let out = child.wait_with_output().expect("wait");
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "stopped at once: {:?}",
        second.elapsed()
    );
    let run = Run::from(out, &["migrate"]);
    assert_eq!(run.code, Exit::Interrupted as i32);
    assert!(
        run.stderr.contains("SIGINT again: stopping now"),
        "{}",
        run.stderr
    );
    // The naps in flight rolled back: nothing was recorded after the signals.
    assert_eq!(db.advisory_locks_after_wasmig_left(), 0);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM wasmig.ledger"), before);
    assert_ledger_matches_tables(&db);
    // The run recorded no end, and its runner is provably gone (its run lock went with its
    // session): abandoned, not running.
    let h = history_json(&db, &plugins);
    assert_eq!(h["outcome"], "abandoned", "{h}");
    let text = db
        .wasmig(plugins.path(), &["history"])
        .expect(Exit::Ok)
        .stdout;
    assert!(
        text.contains("abandoned") && !text.contains("running"),
        "{text}"
    );
}

#[test]
fn a_killed_runner_is_shown_as_abandoned_and_a_live_one_as_running() {
    let (db, plugins) = slow_fleet("sigkill");
    let mut child = start_and_wait_for_progress(&db, &plugins);
    // While it runs: running.
    let h = history_json(&db, &plugins);
    assert!(h["outcome"].is_null(), "{h}");
    let text = db
        .wasmig(plugins.path(), &["history"])
        .expect(Exit::Ok)
        .stdout;
    assert!(text.contains("running"), "{text}");
    // The schema locks it holds are shown as what they are: a server process and the
    // application_name its session set (any session may set any name).
    let health = db
        .wasmig(plugins.path(), &["health"])
        .expect(Exit::Problems)
        .stdout;
    assert!(
        health.contains("held by server process") && health.contains("(application_name `wasmig`)"),
        "{health}"
    );
    assert!(
        health.contains("last run:        1 `migrate`") && health.contains(": running"),
        "{health}"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert_eq!(db.advisory_locks_after_wasmig_left(), 0);
    let h = history_json(&db, &plugins);
    assert_eq!(h["outcome"], "abandoned", "{h}");
    let health = db
        .wasmig(plugins.path(), &["health"])
        .expect(Exit::Problems)
        .stdout;
    assert!(health.contains("ended `abandoned`"), "{health}");
}

/// Every float in `v` has at most three decimals.
fn assert_no_float_noise(what: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().expect("f64");
            assert_eq!((x * 1000.0).round() / 1000.0, x, "{what}: {x}");
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| assert_no_float_noise(what, x)),
        serde_json::Value::Object(o) => o.values().for_each(|x| assert_no_float_noise(what, x)),
        _ => {}
    }
}

#[test]
fn history_names_the_user_and_quotes_arguments_and_json_floats_carry_no_noise() {
    let (db, plugins) = demo("history");
    plugins.add_file("carriers");
    let mut c = db.wasmig_command(
        plugins.path(),
        &["migrate", "--plugin", "carriers", "--json"],
    );
    c.env_remove("USER").env_remove("LOGNAME");
    let r = run(c, &["migrate"]).expect(Exit::Ok);
    assert_no_float_noise("migrate --json", &r.doc("wasmig.migrate/1"));
    let me = Command::new("id").arg("-un").output().expect("id");
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    let h = history_json(&db, &plugins);
    assert_eq!(h["os_user"], me.as_str(), "{h}");
    assert_no_float_noise("history --json", &h);
    db.wasmig(
        plugins.path(),
        &["tenant", "create", "t4", "--name", "Acme & Co's"],
    )
    .expect(Exit::Ok);
    let text = db
        .wasmig(plugins.path(), &["history"])
        .expect(Exit::Ok)
        .stdout;
    assert!(
        text.contains(r#"tenant create t4 --name 'Acme & Co'\''s'"#),
        "{text}"
    );
    let health = db
        .wasmig(plugins.path(), &["health", "--json"])
        .expect(Exit::Ok)
        .doc("wasmig.health/1");
    assert_no_float_noise("health --json", &health);
    let metrics = db
        .wasmig(plugins.path(), &["metrics", "--format", "json"])
        .expect(Exit::Ok)
        .doc("wasmig.metrics/1");
    assert_no_float_noise("metrics --format json", &metrics);
}
