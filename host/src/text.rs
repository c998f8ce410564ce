//! Making text that a plugin controls inert before a person sees it or wasmig stores it:
//! log messages, stdout/stderr, step errors, panic messages and SQL error text (a plugin can
//! `RAISE EXCEPTION` anything). Control characters, ANSI escape sequences, line breaks and
//! bidirectional overrides are shown as visible escapes, so such text stays on its own line
//! and cannot erase, recolour, hide or imitate wasmig's own output; long text is cut to a
//! cap with the number of bytes left out. Pure.

use std::fmt::Write as _;

/// The most characters of a step's error message that wasmig shows or stores.
pub const MAX_ERROR_CHARS: usize = 2000;
/// The most characters of one plugin log line (or stdout/stderr line) that wasmig shows.
pub const MAX_LOG_LINE_CHARS: usize = 2000;

/// Whether `c` could change how a terminal shows the text around it.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidirectional marks, embeddings, overrides and isolates (Trojan Source).
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators, zero-width and other invisible formatting
            // characters, the BOM, interlinear annotations, tag characters.
            | '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200d}' | '\u{feff}'
            | '\u{00ad}' | '\u{180e}' | '\u{2060}'..='\u{2064}' | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
            // The rest of Unicode's format characters (Cf), and fillers that show as nothing.
            | '\u{0600}'..='\u{0605}' | '\u{06dd}' | '\u{070f}' | '\u{08e2}'
            | '\u{206a}'..='\u{206f}' | '\u{180b}'..='\u{180f}' | '\u{fe00}'..='\u{fe0f}'
            | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}'
            | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
        )
}

/// What [`terminal_safe`] does with line breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaks {
    /// `\n` (and `\t`) stay: wasmig's own multi-line output.
    Keep,
    /// Every line break is escaped but a final one: a log record stays on its line.
    Escape,
}

/// `text` with every character that could change how a terminal shows it (what
/// [`inert`] escapes) replaced by the same visible escape, except line breaks as `breaks`
/// says. Backslashes stay as they are, so text already made inert is unchanged. Every line
/// wasmig writes passes through it (`out.rs`, the log writer).
pub fn terminal_safe(text: &str, breaks: Breaks) -> std::borrow::Cow<'_, str> {
    let last = text.len().saturating_sub(1);
    let keep = |at: usize, c: char| match (breaks, c) {
        (Breaks::Keep, '\n' | '\t') => true,
        (Breaks::Escape, '\n') => at == last,
        (Breaks::Escape, '\t') => true,
        _ => !is_unsafe(c),
    };
    if text.char_indices().all(|(at, c)| keep(at, c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (at, c) in text.char_indices() {
        match c {
            c if keep(at, c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A JSON document with every character that could change how a terminal shows it written as
/// a JSON escape (`\u0085`, `\u202e`, a surrogate pair beyond the first plane), so that no
/// document carries one raw, whatever a plugin put in it. Such characters occur only inside
/// strings (and serde already escapes the C0 controls), so the document means the same.
pub fn json_safe(json: String) -> String {
    // Whitespace between tokens (a pretty document's line breaks and indentation) stays.
    let escape = |c: char| is_unsafe(c) && !matches!(c, '\n' | '\r' | '\t');
    if !json.chars().any(escape) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escape(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` on one line with every unsafe character escaped (`\n`, `\r`, `\t`, `\x1b`,
/// `\u{202e}`, and `\\` for a backslash so an escape cannot be imitated), cut after
/// `max_chars` characters with a note of how many bytes were left out.
pub fn inert(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 32));
    for (shown, (at, c)) in text.char_indices().enumerate() {
        if shown == max_chars {
            let _ = write!(out, "… ({} more bytes)", text.len() - at);
            return out;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The line of `statement` holding character `position` (1-based, PostgreSQL's error
/// position) and a caret under that character, as psql shows them:
///
/// ```text
/// LINE 3: CREATE TABLE t ((
///                         ^
/// ```
///
/// The line is made inert (the statement is plugin text) and, when long, cut to a window
/// around the caret. `None` when the position is outside the statement.
pub fn caret(statement: &str, position: u32) -> Option<String> {
    // Works on the statement in place: it may be a hundred megabytes long, and only the
    // window around the caret is copied.
    const WINDOW: usize = 60;
    let at_char = usize::try_from(position).ok()?.checked_sub(1)?;
    let at = match statement.char_indices().nth(at_char) {
        Some((i, _)) => i,
        None if statement.chars().count() == at_char => statement.len(),
        None => return None,
    };
    let line_start = statement[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = statement[at..]
        .find(['\n', '\r'])
        .map_or(statement.len(), |i| at + i);
    let line_no = statement.as_bytes()[..line_start]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    // Up to half the window before the caret, on its line; then up to the window's end.
    let before_chars = statement[line_start..at].chars().count();
    let skip = before_chars.saturating_sub(WINDOW / 2);
    let from = statement[line_start..at]
        .char_indices()
        .nth(skip)
        .map_or(at, |(i, _)| line_start + i);
    let to = statement[from..line_end]
        .char_indices()
        .nth(WINDOW)
        .map_or(line_end, |(i, _)| from + i);
    let part = |a: usize, b: usize| inert(&statement[a..b], WINDOW * 2);
    let (lead, tail) = (
        if from > line_start { "..." } else { "" },
        if to < line_end { "..." } else { "" },
    );
    let before = part(from, at.min(to));
    let prefix = format!("LINE {line_no}: {lead}");
    Some(format!(
        "{prefix}{before}{}{tail}\n{}^",
        part(at.min(to), to),
        " ".repeat(prefix.chars().count() + before.chars().count())
    ))
}

/// Where in `statement` the object an error message names stands, for the errors PostgreSQL
/// gives no position for (most DDL: `column "asignee" does not exist` from `CREATE INDEX`):
/// the first name the message quotes, found exactly once in the statement as a whole word
/// (ASCII case folded, as unquoted names are). A 1-based character position for [`caret`],
/// or `None` when the name is not there, is there more than once, or the statement is over
/// 1 MiB (never guessed, never a copy of a huge statement).
pub fn locate_named(statement: &str, message: &str) -> Option<u32> {
    const MAX: usize = 1 << 20;
    if statement.len() > MAX {
        return None;
    }
    let name = message.split('"').nth(1).filter(|n| !n.is_empty())?;
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let hay = statement.to_ascii_lowercase();
    let needle = name.to_ascii_lowercase();
    let mut found = hay.match_indices(&needle).filter(|(i, _)| {
        let before = hay[..*i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    });
    let (at, _) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    u32::try_from(statement[..at].chars().count() + 1).ok()
}

/// Why a line of manifest text (a description, a version) is refused, if it is: such text
/// is shown as it is, so it may hold no control characters and must fit `max_chars`.
pub fn check_manifest_text(text: &str, max_chars: usize) -> Result<(), String> {
    if let Some(c) = text.chars().find(|&c| is_unsafe(c)) {
        return Err(format!(
            "contains the control character {}; manifest text must be plain, one line",
            inert(&c.to_string(), 4)
        ));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(format!("is {n} characters long; the limit is {max_chars}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_message_quotes_is_located_once_or_not_at_all() {
        let ddl = "CREATE TABLE t (assignee int);\nCREATE INDEX ON t (Asignee);";
        let at = locate_named(ddl, "column \"asignee\" does not exist").expect("found");
        assert_eq!(
            caret(ddl, at).as_deref(),
            Some("LINE 2: CREATE INDEX ON t (Asignee);\n                           ^")
        );
        // Twice, inside another word only, or not at all: no caret rather than a wrong one.
        assert_eq!(
            locate_named("SELECT a, a FROM t", "column \"a\" does not exist"),
            None
        );
        assert_eq!(
            locate_named("SELECT ab FROM t", "column \"a\" does not exist"),
            None
        );
        assert_eq!(locate_named("SELECT 1", "relation does not exist"), None);
        assert_eq!(locate_named("é \"x\"", "column \"x\""), Some(4));
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(inert("a\nb\rc\td", 100), "a\\nb\\rc\\td");
        assert_eq!(
            inert("\u{1b}[2K\u{1b}[8mhidden", 100),
            "\\x1b[2K\\x1b[8mhidden"
        );
        assert_eq!(inert("x\u{7f}\u{9b}y", 100), "x\\x7f\\x9by");
        assert_eq!(inert("abc\u{202e}def", 100), "abc\\u{202e}def");
        assert_eq!(inert("\u{2028}\u{feff}", 100), "\\u{2028}\\u{feff}");
        assert_eq!(inert("a\u{ad}b\u{e0041}", 100), "a\\xadb\\u{e0041}");
        // A backslash is doubled, so plugin text cannot imitate an escape of ours.
        assert_eq!(inert("\\n", 100), "\\\\n");
        assert_eq!(inert("naïve 日本", 100), "naïve 日本");
    }

    #[test]
    fn long_text_is_cut_with_the_bytes_left_out() {
        let long = "é".repeat(10);
        assert_eq!(inert(&long, 4), "éééé… (12 more bytes)");
        assert_eq!(inert("abc", 3), "abc");
        let flood = "x".repeat(20 << 20);
        assert!(inert(&flood, MAX_ERROR_CHARS).len() < MAX_ERROR_CHARS + 40);
    }

    #[test]
    fn manifest_text_is_plain_and_bounded() {
        assert!(check_manifest_text("Create notes", 100).is_ok());
        assert!(check_manifest_text("", 100).is_ok());
        let e = check_manifest_text("run 1: ok\n0 problem(s)", 100).expect_err("newline");
        assert!(e.contains("\\n"), "{e}");
        assert!(check_manifest_text("\u{1b}[8m", 100).is_err());
        assert!(check_manifest_text("\u{202e}", 100).is_err());
        assert!(check_manifest_text(&"x".repeat(101), 100).is_err());
    }

    #[test]
    fn terminal_safe_text_escapes_what_a_terminal_would_act_on() {
        let t = "run 1: ok\n\u{1b}[2K\rforged \u{85}\u{2028}\u{202e} \\x1b stays\n";
        let kept = terminal_safe(t, Breaks::Keep);
        assert_eq!(
            kept,
            "run 1: ok\n\\x1b[2K\\rforged \\x85\\u{2028}\\u{202e} \\x1b stays\n"
        );
        let record = terminal_safe(t, Breaks::Escape);
        assert!(record.ends_with("stays\n") && record.matches('\n').count() == 1);
        assert!(matches!(
            terminal_safe("plain\n", Breaks::Keep),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_stays_json_without_raw_controls() {
        let doc = serde_json::to_string(
            &serde_json::json!({"t": "a\u{85}b\u{2028}\u{202e}\u{e0041}\u{1b}"}),
        )
        .unwrap();
        let safe = json_safe(doc);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let pretty = serde_json::to_string_pretty(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(json_safe(pretty.clone()), pretty, "layout stays");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["t"], "a\u{85}b\u{2028}\u{202e}\u{e0041}\u{1b}");
    }

    #[test]
    fn caret_points_at_the_character_on_its_line() {
        let sql = "CREATE TABLE a (id int);\nCREATE TABLE b ((\n);";
        let pos = sql.find("((").unwrap() as u32 + 2; // the second `(`, 1-based
        assert_eq!(
            caret(sql, pos).unwrap(),
            "LINE 2: CREATE TABLE b ((\n                        ^"
        );
        // Plugin text is inert, and the caret still lines up under the character.
        let sql = "SELECT '\u{1b}[2K' +";
        let c = caret(sql, sql.chars().count() as u32).unwrap();
        let (line, mark) = c.split_once('\n').unwrap();
        assert!(!line.contains('\u{1b}') && line.ends_with('+'), "{c}");
        assert_eq!(mark.chars().count(), line.chars().count());
        // A long line is cut around the caret.
        let long = format!("SELECT {} FROM", "x, ".repeat(100));
        let c = caret(&long, long.len() as u32 - 3).unwrap();
        assert!(
            c.starts_with("LINE 1: ...") && c.lines().next().unwrap().len() < 80,
            "{c}"
        );
        assert!(caret("SELECT", 0).is_none() && caret("SELECT", 99).is_none());
    }
}
