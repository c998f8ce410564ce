//! Test fixture: `notes` whose applied step 0002 was edited afterwards (drift).
use wasmig_sdk::Plugin;

fn plugin() -> Plugin {
    Plugin::migration("notes")
        .sql(
            "0001_notes",
            "Create notes",
            include_str!("../../notes-sql/0001_notes.sql"),
        )
        .sql(
            "0002_note_body",
            "Add a body to notes",
            include_str!("../../notes-sql/0002_note_body_edited.sql"),
        )
}

wasmig_sdk::export_plugin!(plugin);
