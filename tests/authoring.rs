//! The plugin author's kit: the README's walkthrough run as written (new, build, inspect,
//! check, migrate, drift, diff, repair, a repeatable seed), and the offline commands
//! `plugin inspect` and `plugin check` on real components, good and bad.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{PluginDir, TestDb, built_plugins, repo_root, server};
use wasmig::Exit;

/// The shell blocks between the walkthrough markers of README.md, in order.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("the walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("the walkthrough end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[start..end].lines() {
        match line.trim_end() {
            "```sh" => in_block = true,
            "```" if in_block => in_block = false,
            l if in_block => {
                script.push_str(l);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(script.contains("wasmig new"), "{script}");
    script
}

/// `wasmig` with no database and nothing from the developer's wasmig settings.
fn offline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .env_remove("PGDATABASE")
        .env_remove("WASMIG_PLUGINS")
        .env_remove("WASMIG_CONFIG")
        .env("WASMIG_CACHE_DIR", server().dir.join("compile-cache"))
        .output()
        .expect("run wasmig")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    let db = TestDb::new("walkthrough");
    // Builds the SDK's dependencies for wasm32-wasip2 in plugins/target first; the
    // walkthrough's crates build against the same target directory, offline.
    let release = built_plugins();
    let target_dir: PathBuf = release
        .ancestors()
        .nth(2)
        .expect("plugins/target")
        .to_owned();
    let work = tempfile::tempdir().expect("tempdir");
    let bin = Path::new(env!("CARGO_BIN_EXE_wasmig"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(work.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("DATABASE_URL", &db.url)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_NET_OFFLINE", "true")
        .env("WASMIG_CACHE_DIR", server().dir.join("compile-cache"))
        .env_remove("WASMIG_PLUGINS")
        .env_remove("WASMIG_CONFIG")
        .env_remove("WASMIG_TRUSTED")
        .env_remove("RUSTFLAGS")
        .env_remove("PGHOST")
        .output()
        .expect("run the walkthrough");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "the walkthrough failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // The tenant was created and migrated from the scaffold and the added step.
    assert!(db.table_exists("acme", "inventory"));
    // Editing an applied step was refused, pointing to the diff, shown as a diff, and
    // accepted by repair.
    assert!(stdout.contains("refused: exit 1"), "{stdout}");
    assert!(
        stderr.contains("see what changed with `wasmig diff --schema acme --plugin inventory`"),
        "{stderr}"
    );
    assert!(
        stdout.contains("-ALTER TABLE inventory ADD COLUMN sku text;")
            && stdout.contains("+ALTER TABLE inventory ADD COLUMN sku varchar(32);"),
        "{stdout}"
    );
    assert!(
        stdout.contains("`inventory/0002_item_sku` checksum "),
        "{stdout}"
    );
    // The repeatable seed ran (its query_scalar read the rows back), then ran again with the
    // new unit.
    assert!(stderr.contains("3 units"), "{stderr}");
    assert!(
        stdout.contains("inventory-units/0001_units: changed, will re-run"),
        "{stdout}"
    );
    assert_eq!(
        db.scalar_text("SELECT string_agg(code, ',' ORDER BY code) FROM acme.unit")
            .as_deref(),
        Some("kg,m,pc")
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.ledger WHERE plugin = 'inventory-units' AND schema_name = 'acme'"
        ),
        1,
        "one ledger row, rewritten by the re-run"
    );
    // The text of each applied SQL step is kept once, not once per tenant.
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.step_text WHERE plugin = 'inventory' AND step_id = '0001_create_inventory'"
        ),
        1
    );
    // A SQL-only plugin built with the scaffolded profile is small.
    let size = std::fs::metadata(work.path().join("wasmig-plugins/inventory.wasm"))
        .expect("the built component")
        .len();
    eprintln!("inventory.wasm: {size} bytes");
    assert!(size <= 100 * 1024, "{size} bytes");
}

#[test]
fn plugin_inspect_shows_what_the_host_reads_and_the_ledger_records() {
    let plugins = PluginDir::new(&["carriers", "finance_next"]);
    let file = plugins.path().join("finance_next.wasm");
    let out = offline(&["plugin", "inspect", file.to_str().expect("utf-8"), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["format"], "wasmig.plugin/1");
    assert_eq!(doc["name"], "finance");
    assert_eq!(doc["wit_version"], "0.3.0");
    assert_eq!(doc["kind"], "migration");
    assert_eq!(
        doc["requires"],
        serde_json::json!(["customers", "suppliers"])
    );
    let steps = doc["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[2]["reversible"], false);
    assert_eq!(steps[3]["id"], "0004_invoice_external_ref_and_more");
    assert_eq!(steps[3]["reversible"], true, "0004 has a revert file");
    assert!(
        doc["imports"]
            .as_array()
            .is_some_and(|i| i.iter().any(|n| n == "wasmig:plugin/sql@0.1.0"))
    );
    let bytes = std::fs::read(&file).expect("read");
    assert_eq!(doc["size_bytes"], bytes.len());
    assert_eq!(
        doc["artifact_blake3"],
        blake3::hash(&bytes).to_hex().as_str()
    );
    // `sql_dir!` gives each file exactly the fingerprint `Step::sql` gives its text: the
    // example plugins kept their checksums when they moved to it.
    let sql_dir = repo_root().join("plugins/finance/sql");
    for (i, step) in steps.iter().take(3).enumerate() {
        let id = step["id"].as_str().expect("id");
        let text = std::fs::read_to_string(sql_dir.join(format!("{id}.sql"))).expect("sql file");
        assert_eq!(
            step["fingerprint"].as_str(),
            Some(wasmig_sdk::fingerprint("sql", &text).as_str()),
            "step {i}"
        );
    }
    // The checksum it shows is the one a migration records.
    let db = TestDb::new("inspect");
    let p = plugins.path();
    plugins.set(&["carriers"]);
    db.wasmig(p, &["init"]).expect(Exit::Ok);
    db.wasmig(p, &["tenant", "create", "t1"]).expect(Exit::Ok);
    let carriers = offline(&[
        "plugin",
        "inspect",
        p.join("carriers.wasm").to_str().expect("utf-8"),
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&carriers.stdout).expect("json");
    assert_eq!(
        db.scalar_text(
            "SELECT checksum FROM wasmig.ledger WHERE schema_name = 't1' AND step_id = '0001_initial'"
        )
        .as_deref(),
        doc["steps"][0]["checksum"].as_str()
    );
    // Text for people names the file's plugin when the file is named otherwise.
    let renamed = p.join("my_carriers.wasm");
    std::fs::copy(p.join("carriers.wasm"), &renamed).expect("copy");
    let out = offline(&["plugin", "inspect", renamed.to_str().expect("utf-8")]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("plugin     carriers 0.1.0")
            && shown.contains("commands want the plugin name, `carriers`"),
        "{shown}"
    );
    // A command given the file's name where it wants the plugin's is told the right name.
    plugins.set(&["carriers", "hostile_nontx"]);
    let run = db
        .wasmig(p, &["migrate", "--dry-run", "--plugin", "hostile_nontx"])
        .expect(Exit::Error);
    assert!(
        run.stderr
            .contains("the plugin is named `hostile-nontx`; use that name"),
        "{}",
        run.stderr
    );
    // Not a plugin: refused, naming the file and what is wrong.
    let junk = p.join("junk.wasm");
    std::fs::write(&junk, b"not wasm").expect("write");
    let out = offline(&["plugin", "inspect", junk.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("junk.wasm` is not a WebAssembly file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn plugin_check_lists_every_problem_of_a_directory() {
    let good = PluginDir::new(&["carriers", "customers", "suppliers", "finance"]);
    let out = offline(&["plugin", "check", good.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("4 plugin file(s) in"),
        "{}",
        text(&out.stdout)
    );
    // A bad manifest, a requirement nobody provides, and the good ones: every problem is
    // listed, and the good files are still reported.
    let bad = PluginDir::new(&["carriers", "bad_manifest", "unknown_requires"]);
    let out = offline(&[
        "plugin",
        "check",
        bad.path().to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["plugin_count"], 3);
    assert_eq!(doc["problem_count"], 2, "{doc}");
    let plugins = doc["plugins"].as_array().expect("plugins");
    assert!(
        plugins.iter().any(|p| p["valid"] == false
            && p["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("bad_manifest.wasm"))),
        "{doc}"
    );
    assert!(
        doc["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("which is not in the plugins directory")),
        "{doc}"
    );
    // Plugins that require each other.
    let cycle = PluginDir::new(&["cycle_a", "cycle_b"]);
    let out = offline(&["plugin", "check", cycle.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("in a cycle"),
        "{}",
        text(&out.stderr)
    );
    // No such directory: exit 2, naming it and what to do.
    let out = offline(&["plugin", "check", "/nonexistent/plugins"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/plugins")
            && text(&out.stderr).contains("wasmig build"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn new_and_build_refuse_what_would_not_work_and_say_what_to_do() {
    let release = built_plugins();
    let target_dir = release
        .ancestors()
        .nth(2)
        .expect("plugins/target")
        .to_owned();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().to_str().expect("utf-8");
    // A name that is not a plugin name; an SDK path that is not the SDK.
    let out = offline(&["new", "Bad Name", "--dir", dir]);
    assert_eq!(out.status.code(), Some(2));
    let out = offline(&["new", "notes", "--dir", dir, "--sdk", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not the wasmig SDK"),
        "{}",
        text(&out.stderr)
    );
    assert!(!work.path().join("notes").exists(), "nothing was written");
    // A crate whose sql/ holds a file that is not a step: the build fails at compile time,
    // naming the file.
    let out = offline(&["new", "notes", "--dir", dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = offline(&["new", "notes", "--dir", dir]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing folder is not overwritten"
    );
    std::fs::write(work.path().join("notes/sql/notes.sql"), "SELECT 1;").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["build", "notes", "--out", "built"])
        .current_dir(work.path())
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run wasmig build");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("`notes.sql` is not named `NNNN_name.sql`")
            && err.contains("building `notes` failed"),
        "{err}"
    );
    assert!(!work.path().join("built/notes.wasm").exists());
    // The target missing (as rustup reports it): said, with the command that installs it.
    let fake = work.path().join("fake-bin");
    std::fs::create_dir_all(&fake).expect("mkdir");
    let rustup = fake.join("rustup");
    std::fs::write(&rustup, "#!/bin/sh\necho x86_64-unknown-linux-gnu\n").expect("write");
    std::fs::set_permissions(&rustup, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::remove_file(work.path().join("notes/sql/notes.sql")).expect("rm");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmig"))
        .args(["build", "notes"])
        .current_dir(work.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                fake.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("run wasmig build");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("install it with `rustup target add wasm32-wasip2`"),
        "{}",
        text(&out.stderr)
    );
    // Not a crate at all.
    let out = offline(&["build", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no Cargo.toml"),
        "{}",
        text(&out.stderr)
    );
}
