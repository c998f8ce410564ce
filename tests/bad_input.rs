//! Bad input: every refusal is one clear line naming the thing at fault, exit code 2, and
//! nothing applied.

use std::path::Path;

use crate::support::{PluginDir, Run, TestDb, built_plugins};
use wasmig::Exit;

/// A database with one registered tenant `t` and a plugin directory holding `notes_v1` plus
/// whatever `add` puts there; `migrate` must refuse with `expected` and apply nothing.
fn refused(label: &str, add: impl FnOnce(&Path), expected: &str) -> Run {
    let db = TestDb::new(label);
    let plugins = PluginDir::new(&["notes_v1"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    db.wasmig(plugins.path(), &["tenant", "create", "t", "--no-migrate"])
        .expect(Exit::Ok);
    add(plugins.path());
    let run = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Error);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        // The banner naming the database comes first; the refusal is the one line after it.
        .filter(|l| !l.starts_with("wasmig: database "))
        .collect();
    assert_eq!(lines.len(), 1, "one line:\n{}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(expected),
        "expected `{expected}` in:\n{}",
        lines[0]
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger"),
        0,
        "nothing applied"
    );
    assert!(!db.table_exists("t", "notes"));
    run
}

fn write(name: &str, bytes: &[u8]) -> impl FnOnce(&Path) {
    let (name, bytes) = (name.to_owned(), bytes.to_vec());
    move |dir: &Path| std::fs::write(dir.join(name), bytes).expect("write fixture")
}

fn copy(name: &str) -> impl FnOnce(&Path) {
    let name = name.to_owned();
    move |dir: &Path| {
        std::fs::copy(
            built_plugins().join(format!("{name}.wasm")),
            dir.join(format!("{name}.wasm")),
        )
        .expect("copy fixture");
    }
}

#[test]
fn not_a_file() {
    let run = refused(
        "notafile",
        |d| std::fs::create_dir(d.join("dir.wasm")).expect("mkdir"),
        "not a regular file",
    );
    assert!(run.stderr.contains("dir.wasm"));
}

#[test]
fn empty_file() {
    let run = refused("emptyfile", write("empty.wasm", b""), "the file is empty");
    assert!(run.stderr.contains("empty.wasm"));
}

#[test]
fn random_bytes() {
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    refused(
        "random",
        write("random.wasm", &bytes),
        "random.wasm` is not a WebAssembly file",
    );
}

#[test]
fn a_core_module_instead_of_a_component() {
    refused(
        "core",
        write("core.wasm", b"\0asm\x01\0\0\0"),
        "core.wasm` is a core WebAssembly module, not a component",
    );
}

#[test]
fn a_component_for_another_world() {
    // The smallest valid component: it exports nothing.
    refused(
        "otherworld",
        write("other.wasm", b"\0asm\x0d\0\x01\0"),
        "other.wasm` is a component but not a wasmig plugin",
    );
}

#[test]
fn a_component_for_another_wit_version() {
    refused(
        "witversion",
        copy("future_wit"),
        "was built for wasmig:plugin@9.0.0; this wasmig supports 0.1.0",
    );
}

#[test]
fn duplicate_step_ids() {
    refused(
        "dupids",
        copy("bad_manifest"),
        "declares step `0001_notes` twice",
    );
}

#[test]
fn empty_step_id() {
    refused(
        "emptyid",
        copy("bad_manifest_empty_id"),
        "plugin `empty-id`: step id is empty",
    );
}

#[test]
fn over_long_step_id() {
    refused(
        "longid",
        copy("bad_manifest_long_id"),
        "bytes long; the limit is 128",
    );
}

#[test]
fn a_description_that_would_forge_the_screen() {
    refused(
        "forgeddesc",
        copy("bad_manifest_description"),
        "plugin `forged-description` step `0001_x`: its description contains the control character \\n",
    );
}

#[test]
fn unknown_requirement() {
    refused(
        "unknownreq",
        copy("unknown_requires"),
        "plugin `orphan` requires `no-such-plugin`, which is not in the plugins directory",
    );
}

#[test]
fn dependency_cycle() {
    let both = |d: &Path| {
        copy("cycle_a")(d);
        copy("cycle_b")(d);
    };
    refused(
        "cycle",
        both,
        "plugins require each other in a cycle: cycle-a -> cycle-b -> cycle-a",
    );
}

#[test]
fn an_untrusted_shared_plugin() {
    let db = TestDb::new("untrusted");
    let plugins = PluginDir::new(&["reference"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["migrate"])
        .env("DATABASE_URL", &db.url)
        .env("WASMIG_PLUGINS", plugins.path())
        .env_remove("WASMIG_TRUSTED")
        .output()
        .expect("run wasmig");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(Exit::Error as i32), "{stderr}");
    assert!(
        stderr.contains("plugin `reference`")
            && stderr.contains("is not trusted; review it, then trust it with --trust reference"),
        "{stderr}"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM wasmig.ledger"), 0);
}

#[test]
fn a_changed_pinned_artifact_is_refused_until_re_pinned() {
    let db = TestDb::new("pinned");
    let plugins = PluginDir::new(&["notes_v1"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    db.wasmig(plugins.path(), &["tenant", "create", "p", "--no-migrate"])
        .expect(Exit::Ok);
    let pin = db.wasmig(plugins.path(), &["pin"]).expect(Exit::Ok);
    assert!(pin.stdout.contains("notes: pinned "), "{}", pin.stdout);
    db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Ok);
    let before = db.ledger_dump();
    // The same plugin name, but another artifact.
    plugins.set(&["notes_v2_added"]);
    let run = db.wasmig(plugins.path(), &["migrate"]).expect(Exit::Error);
    assert!(
        run.stderr.contains("plugin `notes`") && run.stderr.contains("wasmig.lock pins"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("run `wasmig pin notes`"),
        "{}",
        run.stderr
    );
    assert_eq!(db.ledger_dump(), before, "nothing applied");
    let repin = db
        .wasmig(plugins.path(), &["pin", "notes"])
        .expect(Exit::Ok);
    assert!(repin.stdout.contains(" -> "), "{}", repin.stdout);
    db.wasmig(plugins.path(), &["--locked", "migrate"])
        .expect(Exit::Ok);
    assert!(db.table_exists("p", "note_tags"));
    // --locked refuses any plugin the lock file does not pin.
    plugins.add_file("hostile");
    let run = db
        .wasmig(plugins.path(), &["--locked", "migrate"])
        .expect(Exit::Error);
    assert!(
        run.stderr.contains("plugin `hostile`") && run.stderr.contains("is not pinned"),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_database_url() {
    let db = TestDb::new("badurl");
    let plugins = PluginDir::new(&["notes_v1"]);
    let run = db
        .wasmig(
            plugins.path(),
            &[
                "--database-url",
                "postgres://u:hunter2@h:notaport/db",
                "status",
            ],
        )
        .expect(Exit::Error);
    assert!(
        run.stderr.starts_with(
            "error: invalid database URL `postgres://u:***@h:notaport/db` (from --database-url)"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"));
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn unreachable_database() {
    let db = TestDb::new("unreachable");
    let plugins = PluginDir::new(&["notes_v1"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // Nothing listens on `port` once the listener above is dropped.
    let url = format!("postgres://someone:pw-123@127.0.0.1:{port}/nowhere");
    let run = db
        .wasmig(plugins.path(), &["--database-url", &url, "status"])
        .expect(Exit::Error);
    assert!(
        run.stderr.contains(&format!(
            "cannot connect to postgres://someone@127.0.0.1:{port}/nowhere"
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pw-123"));
}

#[test]
fn bad_duration() {
    let db = TestDb::new("badduration");
    let plugins = PluginDir::new(&["notes_v1"]);
    let run = db
        .wasmig(plugins.path(), &["--step-timeout", "10parsecs", "status"])
        .expect(Exit::Error);
    assert!(
        run.stderr.contains("invalid --step-timeout")
            && run.stderr.contains("invalid duration `10parsecs`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_damaged_control_secret_is_refused_not_replaced_by_a_stand_in_key() {
    let db = TestDb::new("bad_secret");
    let plugins = PluginDir::new(&["notes_v1"]);
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    db.wasmig(plugins.path(), &["tenant", "create", "t"])
        .expect(Exit::Ok);
    let ledger = db.ledger_dump();
    // The table's CHECK keeps wasmig's own writes right; a hand edit can still get past it.
    db.exec(
        "ALTER TABLE wasmig.secret DROP CONSTRAINT secret_key_check;
         UPDATE wasmig.secret SET key = '\\x0102'::bytea",
    );
    for args in [&["migrate"][..], &["tenant", "create", "u"], &["status"]] {
        let run = db.wasmig(plugins.path(), args).expect(Exit::Error);
        assert!(
            run.stderr
                .contains("the control secret in `wasmig.secret` is 2 bytes long, not 32"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(db.ledger_dump(), ledger);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.tenant WHERE schema_name = 'u'"),
        0
    );
}
