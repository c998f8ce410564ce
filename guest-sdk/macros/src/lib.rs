//! `sql_dir!`: a folder of SQL files as a plugin's ordered steps, read at compile time. Use
//! it through `wasmig_sdk::sql_dir!` (this crate is an implementation detail of the SDK).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proc_macro::TokenStream;

/// The longest step id the host accepts (its `names::MAX_STEP_ID_BYTES`).
const MAX_STEP_ID_BYTES: usize = 128;

/// The longest description the host accepts.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// `sql_dir!("sql")`: every `NNNN_name.sql` of the folder (relative to the crate's
/// `Cargo.toml`) as a `[wasmig_sdk::Step; N]`, ordered by file name; `NNNN_name.revert.sql`
/// beside one is its revert. See `wasmig_sdk::sql_dir!` for the rules.
#[proc_macro]
pub fn sql_dir(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(code) => code
            .parse()
            .unwrap_or_else(|e| error(&format!("sql_dir!: {e}"))),
        Err(message) => error(&message),
    }
}

fn error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?})")
        .parse()
        .unwrap_or_default()
}

/// The folder named by the one string literal of the input.
fn folder(input: TokenStream) -> Result<PathBuf, String> {
    let tokens: Vec<_> = input.into_iter().collect();
    let [proc_macro::TokenTree::Literal(lit)] = &tokens[..] else {
        return Err("sql_dir! takes one string literal: the folder, e.g. sql_dir!(\"sql\")".into());
    };
    let text = lit.to_string();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('\\'))
        .ok_or_else(|| {
            "sql_dir! takes a plain string literal, e.g. sql_dir!(\"sql\")".to_owned()
        })?;
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .map_err(|_| "sql_dir!: CARGO_MANIFEST_DIR is not set (build with cargo)".to_owned())?;
    Ok(Path::new(&root).join(inner))
}

/// One step's files.
#[derive(Default)]
struct Files {
    up: Option<PathBuf>,
    revert: Option<PathBuf>,
}

fn expand(input: TokenStream) -> Result<String, String> {
    let dir = folder(input)?;
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "sql_dir!: cannot read the folder `{}`: {e} (the path is relative to the crate's Cargo.toml)",
            dir.display()
        )
    })?;
    let mut steps: BTreeMap<String, Files> = BTreeMap::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("sql_dir!: reading `{}`: {e}", dir.display()))?
            .path();
        let Some(file) = path.file_name() else {
            continue;
        };
        let Some(name) = file.to_str().map(str::to_owned) else {
            if file.to_string_lossy().to_lowercase().ends_with(".sql") {
                return Err(format!(
                    "sql_dir!: `{}` is not named in UTF-8; a step file is named `NNNN_name.sql`",
                    path.display()
                ));
            }
            continue;
        };
        let Some(stem) = name.strip_suffix(".sql") else {
            if name.to_lowercase().ends_with(".sql") {
                return Err(format!(
                    "sql_dir!: `{name}` ends in another case than `.sql`; rename it `….sql` (or it is not a step)"
                ));
            }
            continue;
        };
        let (id, is_revert) = match stem.strip_suffix(".revert") {
            Some(id) => (id, true),
            None => (stem, false),
        };
        check_id(id, &name)?;
        let files = steps.entry(id.to_owned()).or_default();
        if is_revert {
            files.revert = Some(path);
        } else {
            files.up = Some(path);
        }
    }
    if steps.is_empty() {
        return Err(format!(
            "sql_dir!: `{}` holds no `NNNN_name.sql` file",
            dir.display()
        ));
    }
    // One width of numbers per folder: `9_x` and `10_y` would sort 10 first.
    let widths: BTreeMap<usize, &str> = steps
        .keys()
        .map(|id| (id.split('_').next().unwrap_or_default().len(), id.as_str()))
        .collect();
    if widths.len() > 1 {
        let names: Vec<String> = widths.values().map(|id| format!("`{id}.sql`")).collect();
        return Err(format!(
            "sql_dir!: {} number their steps with different widths, so file-name order is not step order; give every number the same digits (0009, 0010)",
            names.join(" and ")
        ));
    }
    let mut numbers: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = String::from("[");
    for (id, files) in &steps {
        let number = id.split('_').next().unwrap_or_default();
        if let Some(other) = numbers.insert(number, id) {
            return Err(format!(
                "sql_dir!: `{other}.sql` and `{id}.sql` share the number {number}; the order of steps must be unambiguous: renumber one"
            ));
        }
        let Some(up) = &files.up else {
            return Err(format!(
                "sql_dir!: `{id}.revert.sql` has no `{id}.sql` to revert"
            ));
        };
        let text = std::fs::read_to_string(up)
            .map_err(|e| format!("sql_dir!: cannot read `{}`: {e}", up.display()))?;
        let description = describe(id, &text);
        let utf8 = |p: &Path| {
            p.to_str().map(str::to_owned).ok_or_else(|| {
                format!(
                    "sql_dir!: the path `{}` is not UTF-8, which include_str! needs",
                    p.display()
                )
            })
        };
        out.push_str(&format!(
            "::wasmig_sdk::Step::sql({id:?}, {description:?}, ::core::include_str!({:?}))",
            utf8(up)?
        ));
        if let Some(revert) = &files.revert {
            out.push_str(&format!(
                ".revert_sql(::core::include_str!({:?}))",
                utf8(revert)?
            ));
        }
        out.push(',');
    }
    out.push(']');
    Ok(out)
}

/// `NNNN_name`: digits, `_`, then letters, digits and `_`; what the host accepts as an id.
fn check_id(id: &str, file: &str) -> Result<(), String> {
    let (number, name) = id.split_once('_').unwrap_or((id, ""));
    let ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && id.len() <= MAX_STEP_ID_BYTES;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sql_dir!: `{file}` is not named `NNNN_name.sql` (digits, `_`, then lowercase letters, digits and `_`; at most {MAX_STEP_ID_BYTES} bytes before `.sql`): the step id is the file name"
        ))
    }
}

/// The text of the file's first `--` comment line that says something, with " (and more)"
/// when later comment lines say more (e.g. the headers Django's `sqlmigrate` writes before
/// each operation), else the file name's words ("0002_add_email" -> "Add email").
fn describe(id: &str, sql: &str) -> String {
    let said: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("--"))
        .map(str::trim)
        .filter(|l| l.chars().any(char::is_alphanumeric))
        .collect();
    let leading = sql
        .lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .filter_map(|l| l.strip_prefix("--"))
        .map(str::trim)
        .find(|l| l.chars().any(char::is_alphanumeric));
    let text = match leading {
        Some(first) if said.len() > 1 => format!("{first} (and more)"),
        Some(first) => first.to_owned(),
        None => {
            let words = id.split_once('_').map_or(id, |(_, n)| n).replace('_', " ");
            let mut chars = words.chars();
            chars
                .next()
                .map(|f| f.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    };
    let printable: String = text.chars().filter(|c| !c.is_control()).collect();
    printable.chars().take(MAX_DESCRIPTION_CHARS).collect()
}
