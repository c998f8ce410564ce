//! The command line's own checks: clap's consistency, help layout, every command parsing.

use clap::{CommandFactory, Parser};

#[test]
fn cli_definition_is_consistent() {
    super::Cli::command().debug_assert();
}

#[test]
fn a_commands_help_lists_its_own_options_first_then_the_global_groups() {
    for sub in ["migrate", "status", "restore", "history"] {
        let mut cmd = super::Cli::command();
        cmd.build();
        let help = cmd
            .find_subcommand_mut(sub)
            .expect("subcommand")
            .render_help()
            .to_string();
        let at = |needle: &str| {
            help.find(needle)
                .unwrap_or_else(|| panic!("{sub}: no `{needle}` in:\n{help}"))
        };
        let order = [
            at("Options:"),
            at("Connection:"),
            at("Plugins:"),
            at("Limits:"),
            at("Output:"),
        ];
        assert!(order.is_sorted(), "{sub}: {order:?}\n{help}");
        // Every global option sits under its group, none among the command's own.
        let own = &help[order[0]..order[1]];
        for global in [
            "--database-url",
            "--plugins",
            "--trust",
            "--step-timeout",
            "--quiet",
        ] {
            assert!(
                !own.contains(global),
                "{sub}: {global} among the command's options"
            );
        }
    }
}

#[test]
fn adopt_and_baseline_refuse_contradictory_selections() {
    for argv in [
        &["wasmig", "tenant", "adopt", "acme", "--shared"][..],
        &[
            "wasmig",
            "tenant",
            "adopt",
            "acme",
            "--from-query",
            "SELECT 1",
        ],
        &[
            "wasmig",
            "baseline",
            "--schema",
            "a",
            "--all-tenants",
            "--from-django",
        ],
        &[
            "wasmig",
            "baseline",
            "--schema",
            "a",
            "--plugin",
            "p",
            "--from-django",
        ],
        &["wasmig", "baseline", "--schema", "a"],
        &["wasmig", "baseline", "--plugin", "p", "--to", "1"],
    ] {
        assert!(
            super::Cli::try_parse_from(argv).is_err(),
            "{argv:?} should be refused"
        );
    }
}

#[test]
fn every_command_parses_into_its_options() {
    // Long: a table of command lines, one per command and form.
    // Field ids shared between global and command options only fail at parse time.
    for argv in [
        &["wasmig", "init"][..],
        &[
            "wasmig",
            "--plugins",
            "p",
            "migrate",
            "--plugin",
            "a",
            "--plugin",
            "b",
            "--schema",
            "s",
            "--dry-run",
        ],
        &["wasmig", "migrate", "--shared", "--json"],
        &[
            "wasmig",
            "status",
            "--json",
            "--trust",
            "a,b",
            "--plugin-limit",
            "a:memory_mb=4",
        ],
        &[
            "wasmig",
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme",
            "--domain",
            "a.example",
            "--no-migrate",
        ],
        &["wasmig", "tenant", "list", "--json"],
        &["wasmig", "tenant", "drop", "acme", "--yes"],
        &["wasmig", "pin", "a", "b", "--lock-file", "x.lock"],
        &["wasmig", "wait", "--timeout", "5s"],
        &["wasmig", "migrate", "--backup-dir", "b"],
        &["wasmig", "restore", "b/x.dump", "--schema", "x", "--yes"],
        &["wasmig", "--config", "w.toml", "--env", "prod", "status"],
        &[
            "wasmig", "revert", "--schema", "a", "--plugin", "p", "--to", "0001", "--yes",
        ],
        &[
            "wasmig", "baseline", "--schema", "a", "--plugin", "p", "--to", "0001",
        ],
        &[
            "wasmig", "repair", "--schema", "a", "--plugin", "p", "--step", "0001",
        ],
        &["wasmig", "health", "--json"],
        &[
            "wasmig",
            "tenant",
            "adopt",
            "acme",
            "--name",
            "Acme",
            "--dry-run",
        ],
        &["wasmig", "tenant", "adopt", "--from-query", "SELECT 1"],
        &["wasmig", "tenant", "adopt", "--shared"],
        &[
            "wasmig",
            "baseline",
            "--all-tenants",
            "--from-django",
            "--map",
            "billing=finance",
            "--yes",
        ],
        &[
            "wasmig",
            "baseline",
            "--schema",
            "a",
            "--schema",
            "b",
            "--from-django",
        ],
        &[
            "wasmig", "metrics", "--format", "json", "--output", "m.prom",
        ],
        &["wasmig", "history", "--json", "--limit", "3"],
    ] {
        super::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
}

#[test]
fn the_plugin_limit_keys_are_one_list_in_help_errors_and_readme() {
    let help = super::Cli::command().render_help().to_string();
    let readme = include_str!("../../../README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `--plugin-limit PLUGIN:KEY=VALUE`"))
        .expect("README's --plugin-limit row");
    let err = crate::config::LimitOverride::parse("p:nope=1")
        .expect_err("unknown key")
        .to_string();
    for (key, _) in crate::config::LIMIT_KEYS {
        assert!(help.contains(key), "--help lacks `{key}`");
        assert!(
            row.contains(&format!("`{key}`")),
            "README lacks `{key}`: {row}"
        );
        assert!(err.contains(key), "the error lacks `{key}`: {err}");
    }
}
