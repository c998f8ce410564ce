//! `wasmig history`: past runs with who, where, when, arguments, duration, outcome, counts.

use anyhow::Result;

use super::Settings;
use crate::Exit;
use crate::control;

/// Prints the newest `limit` runs.
pub async fn history(s: &Settings, json: bool, limit: i64) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let runs = control::runs(&client, limit).await?;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        crate::outln!("no runs recorded yet");
        return Ok(Exit::Ok);
    }
    crate::outln!(
        "{:>6}  {:<20}  {:>9}  {:<8}  {:>7}  {:>6}  {:<24}  COMMAND",
        "RUN",
        "STARTED",
        "DURATION",
        "OUTCOME",
        "APPLIED",
        "FAILED",
        "WHO@WHERE"
    );
    for r in runs {
        crate::outln!(
            "{:>6}  {:<20}  {:>9}  {:<8}  {:>7}  {:>6}  {:<24}  {}",
            r.run_id,
            r.started_at,
            match (r.duration_s, &r.outcome) {
                (Some(d), _) => format!("{d:.2}s"),
                (None, None) => "running".into(),
                (None, Some(_)) => "-".into(),
            },
            r.outcome.as_deref().unwrap_or("-"),
            r.applied
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            r.failed
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            format!(
                "{}@{}",
                r.os_user.as_deref().unwrap_or("?"),
                r.hostname.as_deref().unwrap_or("?")
            ),
            r.arguments
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(Exit::Ok)
}

/// `a` as a POSIX shell word: unchanged when it needs no quoting, else in single quotes, so
/// the line can be pasted back into a shell. Made inert: arguments are shown, never obeyed.
fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    let quoted = if plain {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    };
    // Text with control characters cannot be pasted back anyway: show it escaped.
    match crate::text::check_manifest_text(&quoted, 400) {
        Ok(()) => quoted,
        Err(_) => crate::text::inert(&quoted, 400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(super::shell_quote("--schema"), "--schema");
        assert_eq!(super::shell_quote("a b"), "'a b'");
        assert_eq!(super::shell_quote(""), "''");
        assert_eq!(super::shell_quote("it's"), "'it'\\''s'");
        assert_eq!(super::shell_quote("a\u{1b}[2K"), "'a\\x1b[2K'");
    }
}
