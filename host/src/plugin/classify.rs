//! What a plugin statement is, as PostgreSQL's own parser reads it (libpg_query, through the
//! `pg_query` crate), decided before the statement reaches the server: exactly one statement,
//! and not one of the kinds a step may not send (transaction control, settings that raise
//! what one backend may allocate, notifications).
//!
//! A statement up to [`PARSE_LIMIT`] bytes is parsed whole. A longer one is judged by its
//! first keyword, found by skipping what PostgreSQL's lexer skips before a statement
//! (whitespace, `--` and nested `/* */` comments, empty statements): every kind refused here
//! starts with one of a few keywords, and the server itself refuses a second command in an
//! extended-protocol statement. Parsing a very long statement would cost the host memory in
//! proportion to it (a 10 MB `INSERT` parses into more than a gigabyte of tree).

use pg_query::NodeEnum;
use pg_query::protobuf::TransactionStmtKind;

/// The longest statement parsed whole.
pub(crate) const PARSE_LIMIT: usize = 64 * 1024;

/// Settings a session may raise that size what one backend allocates (memory per sort or
/// hash, temporary buffers, decoding) or how many processes one query starts (each with its
/// own memory and its own `temp_file_limit`). PostgreSQL has no limit on a session's memory.
const SIZING_SETTINGS: &[&str] = &[
    "work_mem",
    "hash_mem_multiplier",
    "maintenance_work_mem",
    "temp_buffers",
    "logical_decoding_work_mem",
    "max_parallel_workers",
    "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers",
];

/// The longest script split by the parser; a longer one is split by the host's own splitter
/// (`db::quote::split_statements`), which follows the same quoting and comment rules.
pub(crate) const SPLIT_LIMIT: usize = 1024 * 1024;

/// A script's statements, as the parser splits it when it can (a script with a syntax error
/// is split by the host's splitter, and the server reports the error).
pub(crate) fn split(script: &str) -> Vec<&str> {
    if script.len() <= SPLIT_LIMIT
        && let Ok(pieces) = pg_query::split_with_parser(script)
    {
        return pieces
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
    }
    crate::db::quote::split_statements(script)
}

/// Why the statement may not be sent in a step, or `None` when it may.
pub(crate) fn refusal(statement: &str) -> Option<String> {
    if statement.len() <= PARSE_LIMIT
        && let Ok(parsed) = pg_query::parse(statement, pg_query::ParserOptions::DEFAULT)
    {
        let stmts = &parsed.protobuf.stmts;
        if stmts.len() != 1 {
            return Some(format!(
                "a statement must be exactly one SQL command; this holds {}{}",
                stmts.len(),
                if stmts.is_empty() {
                    " (nothing but whitespace, comments or `;`)"
                } else {
                    "; send them one by one, or as a script with `batch`"
                }
            ));
        }
        let node = stmts[0].stmt.as_ref().and_then(|n| n.node.as_ref());
        return node.and_then(|n| refused_node(n, &parsed.protobuf));
    }
    // Longer (or not valid SQL to this parser, in which case the server will say why): by
    // the first keyword, exactly as the lexer finds it.
    let keyword = first_keyword(statement);
    let long = statement.len() > PARSE_LIMIT;
    match keyword.as_str() {
        "ABORT" | "BEGIN" | "COMMIT" | "END" | "RELEASE" | "ROLLBACK" | "SAVEPOINT" | "START" => {
            Some(transaction_control(&keyword))
        }
        // `PREPARE TRANSACTION` or a prepared statement: not told apart without parsing.
        "PREPARE" | "SET" | "RESET" | "NOTIFY" | "COPY" if long || keyword == "PREPARE" => {
            Some(format!(
                "a `{keyword}` statement that is longer than {} KiB or not valid SQL is not allowed in a step",
                PARSE_LIMIT / 1024
            ))
        }
        _ => None,
    }
}

fn transaction_control(what: &str) -> String {
    format!(
        "`{what}` is not allowed in a step: wasmig runs every step in its own transaction and records it in the same one"
    )
}

fn refused_node(node: &NodeEnum, parsed: &pg_query::protobuf::ParseResult) -> Option<String> {
    match node {
        NodeEnum::TransactionStmt(t) => Some(transaction_control(match t.kind() {
            TransactionStmtKind::TransStmtBegin => "BEGIN",
            TransactionStmtKind::TransStmtStart => "START TRANSACTION",
            TransactionStmtKind::TransStmtCommit => "COMMIT",
            TransactionStmtKind::TransStmtRollback => "ROLLBACK",
            TransactionStmtKind::TransStmtSavepoint => "SAVEPOINT",
            TransactionStmtKind::TransStmtRelease => "RELEASE",
            TransactionStmtKind::TransStmtRollbackTo => "ROLLBACK TO",
            TransactionStmtKind::TransStmtPrepare => "PREPARE TRANSACTION",
            TransactionStmtKind::TransStmtCommitPrepared => "COMMIT PREPARED",
            TransactionStmtKind::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
            TransactionStmtKind::Undefined => "transaction control",
        })),
        NodeEnum::VariableSetStmt(v) if is_sizing(&v.name) => Some(sizing(&v.name)),
        NodeEnum::AlterRoleStmt(_) | NodeEnum::AlterRoleSetStmt(_) => Some(
            "`ALTER ROLE` is not allowed in a step: a role's password and settings outlive the step"
                .to_owned(),
        ),
        NodeEnum::CopyStmt(c) if c.filename.is_empty() && !c.is_program => Some(
            "`COPY` to or from the client is not allowed in a step: use `query` and `execute`"
                .to_owned(),
        ),
        NodeEnum::NotifyStmt(_) => Some(
            "`NOTIFY` is not allowed in a step: notifications are held in the server's memory until the step commits"
                .to_owned(),
        ),
        _ => parsed.nodes().into_iter().find_map(|(n, _, _, _)| match n {
            // `set_config('work_mem', ...)` anywhere in the statement.
            pg_query::NodeRef::FuncCall(f) => {
                let name = f.funcname.last().and_then(|n| match n.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                    _ => None,
                });
                let setting = f.args.first().and_then(|a| match a.node.as_ref() {
                    Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                        Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.as_str()),
                        _ => None,
                    },
                    _ => None,
                });
                match (name, setting) {
                    (Some(n), Some(s)) if n.eq_ignore_ascii_case("set_config") && is_sizing(s) => {
                        Some(sizing(s))
                    }
                    // `pg_notify` is revoked from tenant roles by a superuser `init`; said
                    // here too, with the reason.
                    (Some(n), _) if n.eq_ignore_ascii_case("pg_notify") => Some(
                        "`pg_notify` is not allowed in a step: notifications are held in the server's memory until the step commits"
                            .to_owned(),
                    ),
                    _ => None,
                }
            }
            _ => None,
        }),
    }
}

fn is_sizing(name: &str) -> bool {
    SIZING_SETTINGS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

fn sizing(name: &str) -> String {
    format!(
        "setting `{}` is not allowed in a step: it sizes what one server process may allocate, and PostgreSQL has no limit on a session's memory",
        crate::text::inert(name, 64)
    )
}

/// The first keyword of a statement, uppercased, after what PostgreSQL's lexer skips before
/// a statement: whitespace (` \t\n\r\f\v`), `--` comments (to a newline or carriage return),
/// nested `/* */` comments and empty statements (`;`).
pub(crate) fn first_keyword(statement: &str) -> String {
    let b = statement.as_bytes();
    let mut i = 0;
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b | b';') => i += 1,
            Some(b'-') if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            Some(b'/') if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            _ => break,
        }
    }
    b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic() || **c == b'_')
        .map(|c| c.to_ascii_uppercase() as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        refusal(s).is_some()
    }

    #[test]
    fn transaction_control_is_refused_however_it_is_spelt() {
        for s in [
            "COMMIT",
            ";COMMIT",
            "; ;\n/* a /* nested */ comment */ -- x\n COMMIT",
            "commit and chain",
            "END",
            "abort",
            "start transaction isolation level serializable",
            "BEGIN",
            "savepoint a",
            "release a",
            "rollback to a",
            "prepare transaction 'x'",
            "commit prepared 'x'",
            "rollback prepared 'x'",
            "COMMIT;;",
            "COMMIT -- with a comment\n;",
            // PostgreSQL ends a `--` comment at a carriage return too.
            "--\rCOMMIT",
            "-- x\r\nCOMMIT",
            "PREPARE--\rTRANSACTION 'x'",
            "PREPARE/* */TRANSACTION 'x'",
            "\u{c}COMMIT",
        ] {
            assert!(refused(s), "{s:?} was let through");
        }
    }

    #[test]
    fn exactly_one_statement() {
        assert!(refused("SELECT 1; SELECT 2"));
        assert!(refused(""));
        assert!(refused(" ;; -- nothing\n"));
        assert!(!refused("SELECT 1;"));
        assert!(!refused("CREATE TABLE t (x text DEFAULT ';')"));
        // One string to this parser; with `standard_conforming_strings` off the server would
        // see three commands, which it refuses in an extended-protocol statement.
        assert!(!refused("SELECT 'a\\''; COMMIT; SELECT 1 --'"));
    }

    #[test]
    fn ordinary_statements_pass() {
        for s in [
            "SELECT 1",
            "INSERT INTO t VALUES ($1, $2)",
            "PREPARE q AS SELECT 1",
            "SET search_path = x",
            "SET LOCAL statement_timeout = 5",
            "DO $$BEGIN PERFORM 1; END$$",
            "SELECT set_config('search_path', 'x', true)",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
            "LISTEN c",
        ] {
            assert_eq!(refusal(s), None, "{s:?}");
        }
    }

    #[test]
    fn memory_settings_and_notifications_are_refused() {
        for s in [
            "SET work_mem = '64GB'",
            "set local WORK_MEM to '64GB'",
            "SET SESSION hash_mem_multiplier = 1000",
            "RESET maintenance_work_mem",
            "SET max_parallel_workers_per_gather = 8",
            "SELECT set_config('work_mem', '64GB', true)",
            "SELECT 1 FROM t WHERE pg_catalog.set_config('temp_buffers', '1GB', false) IS NOT NULL",
            "NOTIFY c, 'x'",
            "SELECT pg_notify('c', 'x')",
            "ALTER ROLE CURRENT_USER SET work_mem = '64GB'",
            "alter role current_user password 'known'",
            "COPY (SELECT 1) TO STDOUT",
            "COPY t FROM STDIN",
        ] {
            assert!(refused(s), "{s:?} was let through");
        }
    }

    #[test]
    fn long_statements_are_judged_by_their_first_keyword() {
        let values: String = (0..20_000).map(|i| format!("({i}),")).collect();
        let insert = format!("INSERT INTO t VALUES {}(0)", values);
        assert!(insert.len() > PARSE_LIMIT);
        assert!(!refused(&insert));
        let padded = format!(";\n/* {} */ COMMIT", "x".repeat(PARSE_LIMIT));
        assert!(refused(&padded));
        let set = format!("SET search_path = '{}'", "x".repeat(PARSE_LIMIT));
        assert!(refused(&set));
    }

    #[test]
    fn scripts_split_where_the_parser_splits_them() {
        let script = "CREATE TABLE a (x text DEFAULT ';');\n-- c; c\nINSERT INTO a VALUES ($$;$$);\
                      SELECT 'a\\''; COMMIT; SELECT 1 --';\
                      CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;";
        let pieces = split(script);
        assert_eq!(pieces.len(), 4, "{pieces:?}");
        assert!(pieces.iter().all(|p| refusal(p).is_none()), "{pieces:?}");
        assert!(pieces[3].ends_with("END"), "{pieces:?}");
    }

    #[test]
    fn the_first_keyword_skips_what_the_lexer_skips() {
        assert_eq!(
            first_keyword(" \t\r\n\x0c\x0b;;-- c\r/* a /* b */ c */commit"),
            "COMMIT"
        );
        assert_eq!(first_keyword("select"), "SELECT");
        assert_eq!(first_keyword("/* unterminated"), "");
    }
}
