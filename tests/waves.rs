//! Rolling out in waves: `migrate --waves` and `[[env.NAME.rollout]]`, the checks between
//! waves (failure budget, verify, pause, gate), the wave plan of `--dry-run`, and resuming a
//! stopped rollout by running the same command again.

use crate::support::{Fleet, TestDb};
use wasmig::Exit;

/// The tenants whose ledger records `notes/0003_tags_unique_titles`.
fn with_tags(db: &TestDb) -> Vec<String> {
    db.query(
        "SELECT schema_name FROM wasmig.ledger
          WHERE plugin = 'notes' AND step_id = '0003_tags_unique_titles' ORDER BY 1",
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn a_wave_over_its_failure_budget_stops_the_rollout_and_the_same_command_resumes_it() {
    // 19 tenants and the shared schema: 5% of the run's 20 schemas allows one failure.
    let tenants: Vec<String> = (1..=19).map(|i| format!("t{i:02}")).collect();
    let (db, plugins) = Fleet::new("waves_budget")
        .plugins(&["notes_v1"])
        .tenants(&tenants)
        .build();
    let p = plugins.path();
    // t04 and t05, both in the second wave, hold titles the next step refuses.
    for t in ["t04", "t05"] {
        db.exec(&format!(
            "INSERT INTO {t}.notes (title) VALUES ('dup'), ('dup')"
        ));
    }
    plugins.set(&["notes_v2_added"]);
    let waves = ["--waves", "2,5,rest", "--max-failures", "5%"];

    // The plan, in order, without changing anything.
    let mut args = vec!["migrate", "--dry-run", "--json"];
    args.extend(waves);
    let plan = db.wasmig(p, &args).expect(Exit::Ok).doc("wasmig.plan/1");
    let planned = plan["rollout"]["waves"].as_array().expect("waves").clone();
    assert_eq!(names(&planned[0]), ["t01", "t02"]);
    assert_eq!(names(&planned[1]), ["t03", "t04", "t05", "t06", "t07"]);
    assert_eq!(names(&planned[2]).len(), 12);
    assert_eq!(names(&planned[2])[0], "t08");
    let mut args = vec!["migrate", "--dry-run"];
    args.extend(waves);
    let text = db.wasmig(p, &args).expect(Exit::Ok).stdout;
    assert!(
        text.contains("wave 1: 2 tenant(s): t01, t02")
            && text.contains("wave 2: 5 tenant(s): t03, t04, t05, t06, t07"),
        "{text}"
    );
    assert!(with_tags(&db).is_empty(), "a dry run changes nothing");

    // One job, so that the second wave's tenants go in order: t04 fails (within the
    // budget of one), t05 fails (over it), t06 and t07 are not started, and neither is the
    // third wave: 14 tenants not started.
    let mut args = vec!["--jobs", "1", "migrate"];
    args.extend(waves);
    let run = db.wasmig(p, &args).expect(Exit::Problems);
    assert!(
        run.stderr.contains("rollout stopped after wave 2 of 3: 2 tenant(s) failed, more than the failure budget of 1 (--max-failures); 14 tenant(s) not started"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("wave 1/3 (2): 2 tenant(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(with_tags(&db), ["t01", "t02", "t03"]);

    // The same command again, with the data fixed: the rollout goes on from where it
    // stopped (the tenants done are not dealt again) and completes.
    db.exec("DELETE FROM t04.notes; DELETE FROM t05.notes");
    let mut args = vec!["--jobs", "1", "migrate", "--json"];
    args.extend(waves);
    let doc = db.wasmig(p, &args).expect(Exit::Ok).doc("wasmig.migrate/1");
    let rollout = &doc["rollout"];
    assert_eq!(rollout["stopped"], serde_json::Value::Null, "{rollout}");
    assert_eq!(rollout["not_started_count"], 0, "{rollout}");
    assert_eq!(
        names(&rollout["waves"][0]["schemas"]),
        ["t04", "t05"],
        "the first wave takes the first tenants still pending"
    );
    assert_eq!(with_tags(&db).len(), 19);
    db.wasmig(p, &["verify"]).expect(Exit::Ok);
}

#[test]
fn config_waves_pause_and_run_gates_and_a_failing_gate_stops_the_rollout() {
    // Created in this order: g1, f0, g2, g3, g4 (by name, f0 comes first).
    let (db, plugins) = Fleet::new("waves_gate")
        .plugins(&["notes_v1"])
        .tenants(&["g1"])
        .build();
    let p = plugins.path();
    for (t, tier) in [
        ("f0", "free"),
        ("g2", "gold"),
        ("g3", "gold"),
        ("g4", "free"),
    ] {
        db.wasmig(
            p,
            &["tenant", "create", t, "--label", &format!("tier={tier}")],
        )
        .expect(Exit::Ok);
    }
    plugins.set(&["notes_v2_added"]);
    // The orders: by creation (the default), by name, by a label (tenants without it last).
    let first_two = |order: &str| {
        let doc = db
            .wasmig(
                p,
                &[
                    "migrate",
                    "--dry-run",
                    "--json",
                    "--waves",
                    "2,rest",
                    "--order-by",
                    order,
                ],
            )
            .expect(Exit::Ok)
            .doc("wasmig.plan/1");
        names(&doc["rollout"]["waves"][0])
    };
    assert_eq!(first_two("created"), ["g1", "f0"]);
    assert_eq!(first_two("name"), ["f0", "g1"]);
    assert_eq!(first_two("label:tier"), ["f0", "g4"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let seen = dir.path().join("gate-saw");
    let config = dir.path().join("wasmig.toml");
    // Each gate notes its wave, the wave's tenants (variable and file) and the time.
    let note = format!(
        "echo \"$WASMIG_WAVE:$WASMIG_WAVE_SCHEMAS:$(wc -l < \"$WASMIG_WAVE_SCHEMAS_FILE\"):$(date +%s.%N)\" >> '{}'",
        seen.display()
    );
    let waves = format!(
        "[[env.test.rollout]]\nsize = 1\ngate = '''{note}'''\n\n\
         [[env.test.rollout]]\nsize = \"50%\"\nwhere = \"tier=gold\"\npause = \"1s\"\ngate = '''{note}; exit 7'''\n\n\
         [[env.test.rollout]]\nsize = \"rest\"\n"
    );
    std::fs::write(&config, waves).expect("write config");
    let cfg = config.to_str().expect("utf-8");
    let doc = db
        .wasmig(p, &["--config", cfg, "--env", "test", "migrate", "--json"])
        .expect(Exit::Problems)
        .doc("wasmig.migrate/1");
    let stopped = &doc["rollout"]["stopped"];
    assert_eq!(stopped["wave"], 2, "{stopped}");
    assert_eq!(stopped["reason"], "gate", "{stopped}");
    assert!(
        stopped["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("failed: it exited with 7")),
        "{stopped}"
    );
    // The rest wave (f0 and g4) never started.
    assert_eq!(doc["rollout"]["not_started_count"], 2);
    // Each gate ran once, after its wave, and saw that wave's tenants: the first wave took
    // the oldest tenant; the second, 50% of the five (three) but only gold ones, of which
    // two were left. The second gate ran at least the pause after the first.
    let saw = std::fs::read_to_string(&seen).expect("the gates ran");
    let lines: Vec<Vec<&str>> = saw.lines().map(|l| l.split(':').collect()).collect();
    assert_eq!(lines.len(), 2, "{saw}");
    assert_eq!(lines[0][..3], ["1", "g1", "1"], "{saw}");
    assert_eq!(lines[1][..3], ["2", "g2,g3", "2"], "{saw}");
    let at = |l: &Vec<&str>| l[3].trim().parse::<f64>().expect("time");
    assert!(
        at(&lines[1]) - at(&lines[0]) >= 1.0,
        "the pause was kept: {saw}"
    );
    assert_eq!(with_tags(&db), ["g1", "g2", "g3"]);

    // --waves overrides the file's waves; the last tenants are done.
    db.wasmig(
        p,
        &[
            "--config", cfg, "--env", "test", "migrate", "--waves", "rest",
        ],
    )
    .expect(Exit::Ok);
    assert_eq!(with_tags(&db), ["f0", "g1", "g2", "g3", "g4"]);

    // A wave spec that cannot be is refused before anything runs.
    for (bad, why) in [
        ("rest,1", "make `rest` the last wave"),
        ("0", "is not a count"),
        ("10%%", "is not a count"),
    ] {
        let run = db
            .wasmig(p, &["migrate", "--waves", bad])
            .expect(Exit::Error);
        assert!(run.stderr.contains(why), "{bad}: {}", run.stderr);
    }
    for (text, line, key) in [
        (
            "[[env.test.rollout]]\nsize = \"half\"\n",
            "line 2",
            "env.test.rollout[0].size",
        ),
        (
            "[[env.test.rollout]]\nsize = \"rest\"\n[[env.test.rollout]]\nsize = 1\n",
            "line 2",
            "env.test.rollout[0].size",
        ),
    ] {
        std::fs::write(&config, text).expect("write config");
        let run = db
            .wasmig(p, &["--config", cfg, "--env", "test", "status"])
            .expect(Exit::Error);
        assert!(
            run.stderr.contains(line) && run.stderr.contains(key),
            "{}",
            run.stderr
        );
    }
}
