//! `wasmig diff`: each changed step once, with the schemas that have it and a unified diff of
//! its SQL text (applied, then now), computed within a time limit and cut to a number of
//! lines. The text comes from plugins, so every line is shown inert; `wasmig.diff/1` in
//! `--json` (where JSON's own escaping keeps it inert).

use serde::Serialize;

use super::{Output, print_document};
use crate::names::SchemaName;
use crate::ops::diff::StepChange;
use crate::text::inert;

/// Schemas named per change in text (all in `--json`).
const NAMED: usize = 5;

#[derive(Serialize)]
struct ChangeJson<'a> {
    plugin: &'a str,
    step: &'a str,
    /// `drift` (refused) or `rerun` (a repeatable seed step that will run again).
    change: &'static str,
    recorded: &'a str,
    current: &'a str,
    schema_count: usize,
    schemas: Vec<&'a str>,
    /// The unified diff, or `null` when one side's text is not known.
    diff: Option<String>,
    /// Why there is no diff.
    note: Option<&'static str>,
}

#[derive(Serialize)]
struct DiffJson<'a> {
    change_count: usize,
    changes: Vec<ChangeJson<'a>>,
}

/// Why a change cannot be shown as a diff, if it cannot.
fn no_diff_note(c: &StepChange) -> Option<&'static str> {
    match (&c.applied_sql, &c.current_sql) {
        (_, None) => Some(
            "a code step: its source is not kept; compare the plugin's source history (its fingerprint covers the code and the values it declares)",
        ),
        (None, Some(_)) => Some(
            "the text it was applied with is not on record (applied before wasmig kept step texts, or by a plugin built for WIT before 0.3.0)",
        ),
        (Some(_), Some(_)) => None,
    }
}

/// How long computing one diff may take before the closest diff found so far is shown.
const DIFF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most lines of one diff shown.
const MAX_DIFF_LINES: usize = 400;

/// The unified diff of a change (applied, then now), at most [`MAX_DIFF_LINES`] lines.
fn unified(c: &StepChange) -> Option<String> {
    let (old, new) = (c.applied_sql.as_deref()?, c.current_sql.as_deref()?);
    let diff = similar::TextDiff::configure()
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("applied ({})", short(&c.recorded)),
            &format!("now ({})", short(&c.current)),
        )
        .to_string();
    let total = text.lines().count();
    let mut shown: Vec<&str> = text.lines().take(MAX_DIFF_LINES).collect();
    let more = format!(
        "... {} more line(s) of the diff not shown",
        total.saturating_sub(MAX_DIFF_LINES)
    );
    if total > MAX_DIFF_LINES {
        shown.push(&more);
    }
    Some(shown.join("\n"))
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

fn named(schemas: &[SchemaName]) -> String {
    let names: Vec<&str> = schemas.iter().map(SchemaName::as_str).collect();
    super::first_names(&names, NAMED)
}

/// Prints the changes (or that there are none).
pub fn print_diff(changes: &[StepChange], out: Output) {
    if out.json() {
        let changes = changes
            .iter()
            .map(|c| ChangeJson {
                plugin: &c.plugin,
                step: &c.step,
                change: if c.rerun { "rerun" } else { "drift" },
                recorded: &c.recorded,
                current: &c.current,
                schema_count: c.schemas.len(),
                schemas: c.schemas.iter().map(SchemaName::as_str).collect(),
                // JSON escapes control characters itself.
                diff: unified(c),
                note: no_diff_note(c),
            })
            .collect::<Vec<_>>();
        print_document(
            "wasmig.diff/1",
            DiffJson {
                change_count: changes.len(),
                changes,
            },
        );
        return;
    }
    if changes.is_empty() {
        crate::outln!("no applied step differs from the loaded plugins");
        return;
    }
    for c in changes {
        crate::outln!(
            "{}/{} in {} schema(s) ({}): {}",
            c.plugin,
            c.step,
            c.schemas.len(),
            named(&c.schemas),
            if c.rerun {
                "changed, will re-run (a repeatable seed step)"
            } else {
                "changed after it was applied (drift: refused until restored or repaired)"
            }
        );
        match (unified(c), no_diff_note(c)) {
            // Plugin text, made inert line by line (no escape sequences, no forged lines).
            (Some(d), _) => {
                for line in d.lines() {
                    crate::outln!("{}", inert(line, 2000));
                }
            }
            (None, Some(note)) => crate::outln!("  ({note})"),
            (None, None) => {}
        }
    }
}
