//! Test fixture: `notes` with a third step that runs outside a transaction (an index on
//! titles), so that a lock conflict in it is not tried again; and a fourth, a code step that
//! uses the SDK's one-row queries and logs what they found.
#[path = "../../notes.rs"]
mod notes;

use wasmig_sdk::{Error, Step, code_step};

fn plugin() -> wasmig_sdk::Plugin {
    notes::v1()
        .step(
            Step::sql(
                "0003_title_index",
                "Index note titles, outside a transaction",
                "CREATE INDEX IF NOT EXISTS notes_title_idx ON notes (title)",
            )
            .non_transactional(),
        )
        .step(code_step!("0004_count_notes", "Count the notes", |db| {
            let n: i64 = db.query_one("SELECT count(*) AS n FROM notes", &[])?.get("n")?;
            let missing = db.query_opt("SELECT 1 AS x FROM notes WHERE title = $1", &[&"no such"])?;
            if missing.is_some() {
                return Err(Error::msg("query_opt found a row that is not there"));
            }
            if db.query_opt("SELECT 1 AS x FROM generate_series(1, 2)", &[]).is_ok() {
                return Err(Error::msg("query_opt took two rows"));
            }
            let again: i64 = db.query_scalar("SELECT count(*) FROM notes", &[])?;
            wasmig_sdk::trace("counted");
            wasmig_sdk::info(&format!("query_one counted {n} notes, query_scalar {again}"));
            Ok(())
        }))
}

wasmig_sdk::export_plugin!(plugin);
