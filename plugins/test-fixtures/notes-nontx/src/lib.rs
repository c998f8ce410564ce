//! Test fixture: `notes` with a third step that runs outside a transaction (an index on
//! titles), so that a lock conflict in it is not tried again.
#[path = "../../notes.rs"]
mod notes;

use wasmig_sdk::Step;

fn plugin() -> wasmig_sdk::Plugin {
    notes::v1().step(
        Step::sql(
            "0003_title_index",
            "Index note titles, outside a transaction",
            "CREATE INDEX IF NOT EXISTS notes_title_idx ON notes (title)",
        )
        .non_transactional(),
    )
}

wasmig_sdk::export_plugin!(plugin);
