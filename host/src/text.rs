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
        )
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
    const WINDOW: usize = 60;
    let chars: Vec<char> = statement.chars().collect();
    let at = usize::try_from(position).ok()?.checked_sub(1)?;
    if at > chars.len() {
        return None;
    }
    let line_start = chars[..at]
        .iter()
        .rposition(|&c| c == '\n')
        .map_or(0, |i| i + 1);
    let line_end = chars[at..]
        .iter()
        .position(|&c| c == '\n' || c == '\r')
        .map_or(chars.len(), |i| at + i);
    let line_no = chars[..line_start].iter().filter(|&&c| c == '\n').count() + 1;
    let from = line_start.max(at.saturating_sub(WINDOW / 2));
    let to = line_end.min(from + WINDOW);
    let part = |a: usize, b: usize| inert(&chars[a..b].iter().collect::<String>(), WINDOW * 2);
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
