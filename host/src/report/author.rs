//! What `plugin inspect` and `plugin check` print: a component as the host reads it, for
//! people (`wasmig.plugin/1` in `--json`), and the check of a plugins directory
//! (`wasmig.plugin_check/1`). Manifest text is shown inert.

use std::path::Path;

use serde::Serialize;

use super::{Output, print_document};
use crate::ops::author::{Checked, Inspected};
use crate::plan::{Kind, Scope, Tier};
use crate::text::inert;

#[derive(Serialize)]
struct StepJson<'a> {
    id: &'a str,
    description: &'a str,
    transactional: bool,
    /// `null`: the plugin's WIT version does not say.
    reversible: Option<bool>,
    repeatable: bool,
    fingerprint: &'a str,
    /// What the ledger records for the step.
    checksum: &'a str,
    /// Checksums of earlier fingerprints the plugin says are the same content (a ledger row
    /// with one of them is not drift).
    accepted_checksums: &'a [String],
    /// The SQL text of a SQL step, in bytes (`null` for a code step or an older WIT).
    sql_bytes: Option<usize>,
}

#[derive(Serialize)]
struct PluginJson<'a> {
    name: &'a str,
    version: &'a str,
    kind: Kind,
    scope: Scope,
    /// `null`: WIT 0.1.0 cannot declare one.
    needs: Option<Tier>,
    requires: &'a [String],
    wit_version: &'a str,
    file: String,
    size_bytes: u64,
    artifact_blake3: &'a str,
    imports: &'a [String],
    step_count: usize,
    steps: Vec<StepJson<'a>>,
}

impl<'a> PluginJson<'a> {
    fn new(i: &'a Inspected) -> Self {
        let s = &i.spec;
        PluginJson {
            name: &s.name,
            version: &s.version,
            kind: s.kind,
            scope: s.scope,
            needs: s.needs,
            requires: &s.requires,
            wit_version: i.wit_version,
            file: i.path.display().to_string(),
            size_bytes: i.size,
            artifact_blake3: &s.artifact_checksum,
            imports: &i.imports,
            step_count: s.steps.len(),
            steps: s
                .steps
                .iter()
                .map(|st| StepJson {
                    id: &st.id,
                    description: &st.description,
                    transactional: st.transactional,
                    reversible: st.reversible,
                    repeatable: st.repeatable,
                    fingerprint: &st.fingerprint,
                    checksum: &st.checksum,
                    accepted_checksums: &st.accepts,
                    sql_bytes: st.sql.as_ref().map(String::len),
                })
                .collect(),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `wasmig plugin inspect`.
pub fn print_inspected(i: &Inspected, out: Output) {
    if out.json() {
        print_document("wasmig.plugin/1", PluginJson::new(i));
        return;
    }
    let s = &i.spec;
    crate::outln!("plugin     {} {}", s.name, inert(&s.version, 64));
    if let Some(stem) = &i.file_stem {
        crate::outln!(
            "           (the file is `{}.wasm`; commands want the plugin name, `{}`)",
            inert(stem, 100),
            s.name
        );
    }
    crate::outln!("kind       {}", kind(s.kind));
    crate::outln!("scope      {}", s.scope.as_str());
    crate::outln!(
        "needs      {}",
        s.needs.map_or("(not declared: WIT 0.1.0)", |t| t.as_str())
    );
    crate::outln!(
        "requires   {}",
        if s.requires.is_empty() {
            "-".to_owned()
        } else {
            s.requires.join(", ")
        }
    );
    crate::outln!("wit        wasmig:plugin@{}", i.wit_version);
    crate::outln!("file       {} ({} bytes)", i.path.display(), i.size);
    crate::outln!("blake3     {}", s.artifact_checksum);
    crate::outln!("imports    {}", inert(&i.imports.join(", "), 2000));
    crate::outln!("steps      {}", s.steps.len());
    for st in &s.steps {
        crate::outln!("  {}  {}", st.id, inert(&st.description, 300));
        crate::outln!(
            "      transactional {}, reversible {}, repeatable {}",
            yes_no(st.transactional),
            st.reversible.map_or("unknown (WIT before 0.3.0)", yes_no),
            yes_no(st.repeatable)
        );
        crate::outln!("      fingerprint {}", inert(&st.fingerprint, 200));
        crate::outln!("      checksum    {}", st.checksum);
        for a in &st.accepts {
            crate::outln!("      also accepts the earlier checksum {a}");
        }
    }
}

fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Migration => "migration",
        Kind::Seed => "seed",
    }
}

#[derive(Serialize)]
struct CheckedJson<'a> {
    file: String,
    valid: bool,
    plugin: Option<&'a str>,
    problem: Option<&'a str>,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    directory: String,
    plugin_count: usize,
    problem_count: usize,
    plugins: Vec<CheckedJson<'a>>,
    problems: &'a [String],
}

/// `wasmig plugin check`; whether everything is valid.
pub fn print_checked(
    dir: &Path,
    checked: &[Checked],
    set_problems: &[String],
    out: Output,
) -> bool {
    let invalid = checked
        .iter()
        .filter(|c| matches!(c, Checked::Invalid { .. }))
        .count();
    let problems = invalid + set_problems.len();
    if out.json() {
        let plugins = checked
            .iter()
            .map(|c| match c {
                Checked::Valid(i) => CheckedJson {
                    file: i.path.display().to_string(),
                    valid: true,
                    plugin: Some(&i.spec.name),
                    problem: None,
                },
                Checked::Invalid { path, reason } => CheckedJson {
                    file: path.display().to_string(),
                    valid: false,
                    plugin: None,
                    problem: Some(reason),
                },
            })
            .collect();
        print_document(
            "wasmig.plugin_check/1",
            CheckJson {
                directory: dir.display().to_string(),
                plugin_count: checked.len(),
                problem_count: problems,
                plugins,
                problems: set_problems,
            },
        );
        return problems == 0;
    }
    for c in checked {
        match c {
            Checked::Valid(i) => {
                crate::outln!(
                    "ok     {} {} ({}, {}, {} step(s), WIT {})  {}",
                    i.spec.name,
                    inert(&i.spec.version, 64),
                    kind(i.spec.kind),
                    i.spec.scope.as_str(),
                    i.spec.steps.len(),
                    i.wit_version,
                    i.path.display()
                );
                if let Some(stem) = &i.file_stem {
                    crate::outln!(
                        "       note: `{}.wasm` holds plugin `{}`; commands want the plugin name",
                        inert(stem, 100),
                        i.spec.name
                    );
                }
            }
            Checked::Invalid { reason, .. } => crate::errln!("error: {reason}"),
        }
    }
    for p in set_problems {
        crate::errln!("error: {p}");
    }
    crate::outln!(
        "{} plugin file(s) in {}: {}",
        checked.len(),
        dir.display(),
        if problems == 0 {
            "all valid".to_owned()
        } else {
            format!("{problems} problem(s)")
        }
    );
    problems == 0
}
