//! Output: every human line and table, and every JSON document, made from the values the
//! operations return. Nothing here decides anything or touches the database.
//!
//! One JSON vocabulary (README, "JSON output"): every document is an object whose `format`
//! names its kind and version (`wasmig.status/1`); a step is `{plugin, step}`; a failure is
//! `{plugin, step, sqlstate, message}`; counts end in `_count`; durations are seconds and end
//! in `_seconds`; floats carry at most three decimals.

mod author;
mod diff;
mod fleet;
mod history;
pub mod notes;
mod progress;
mod rollout;
mod run;
mod status;
mod structure;
mod summary;
mod window;

pub use author::{print_checked, print_inspected};
pub use diff::print_diff;
pub use fleet::{
    HealCounters, Health, Metrics, history_json, metrics_json, print_health, print_history,
    print_tenants, prometheus, prometheus_down,
};
pub use history::{print_run_detail, run_detail_json};
pub use progress::Progress;
pub use rollout::{wave_gate, wave_pause, wave_start};
pub use run::{
    applied_steps, applied_steps_of, print_plan, print_revert, print_run_summary, schema_line,
};
pub use status::{SchemaStatus, print_status, print_verify, status_json};
pub use structure::print_structure;
pub use summary::{State, Summary, summarise, what_is_wrong};
pub use window::{Report, print_report, report_section};

use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Lines and tables for people.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

impl Output {
    /// `--json` given or not.
    pub fn from_json_flag(json: bool) -> Output {
        if json { Output::Json } else { Output::Text }
    }

    fn json(self) -> bool {
        self == Output::Json
    }
}

/// A measured float with at most three decimals: `3.663`, not `3.662799999999999` (binary
/// noise no reader wants, and that hides the real precision).
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Seconds, rounded, from a duration.
fn seconds(d: std::time::Duration) -> f64 {
    round3(d.as_secs_f64())
}

/// A JSON document: `format` first, then the document's own fields.
#[derive(Serialize)]
struct Doc<'a, T: Serialize> {
    format: &'a str,
    #[serde(flatten)]
    body: T,
}

/// The text of a JSON document of kind `format` (e.g. `wasmig.status/1`).
fn document<T: Serialize>(format: &str, body: T) -> String {
    // Serialising plain data (strings, numbers, vectors) into memory cannot fail.
    crate::text::json_safe(serde_json::to_string_pretty(&Doc { format, body }).unwrap_or_default())
}

/// The text of a JSON document of kind `format`, for callers outside `report` (`serve`).
pub fn json_document<T: Serialize>(format: &str, body: T) -> String {
    document(format, body)
}

/// Prints a JSON document on stdout.
fn print_document<T: Serialize>(format: &str, body: T) {
    crate::outln!("{}", document(format, body));
}

/// "a, b, c and 4 more": the first `shown` of `names`, and how many were left out.
fn first_names(names: &[&str], shown: usize) -> String {
    let mut out = names[..names.len().min(shown)].join(", ");
    if names.len() > shown {
        out.push_str(&format!(" and {} more", names.len() - shown));
    }
    out
}

/// A step failure in every document that has one.
#[derive(Serialize)]
struct FailureJson<'a> {
    plugin: &'a str,
    step: &'a str,
    sqlstate: Option<&'a str>,
    message: &'a str,
}

/// With `--json`, a command that fails prints this on stdout (its text is on stderr too):
/// `{"format": "wasmig.error/1", "error": {"message", "sqlstate"}, "exit_code"}`.
pub fn print_error_json(message: &str, sqlstate: Option<&str>, exit_code: i32) {
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        message: &'a str,
        sqlstate: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        error: ErrorJson<'a>,
        exit_code: i32,
    }
    print_document(
        "wasmig.error/1",
        Body {
            error: ErrorJson { message, sqlstate },
            exit_code,
        },
    );
}

/// ` (SQLSTATE 42P07)`, or nothing.
fn sqlstate_note(s: Option<&str>) -> String {
    s.map(|s| format!(" (SQLSTATE {s})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_their_format_first_and_floats_carry_three_decimals() {
        #[derive(Serialize)]
        struct B {
            took_seconds: f64,
        }
        let text = document(
            "wasmig.test/1",
            B {
                took_seconds: round3(3.662_799_999_999_999),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["format"], "wasmig.test/1");
        assert_eq!(v["took_seconds"], 3.663);
        assert!(text.trim_start().starts_with("{\n  \"format\""), "{text}");
    }
}
