//! The `notes` test plugin as first released; the fixtures build variants on top of it.
use wasmig_sdk::Plugin;

#[allow(dead_code)]
pub fn v1() -> Plugin {
    Plugin::migration("notes")
        .sql(
            "0001_notes",
            "Create notes",
            include_str!("notes-sql/0001_notes.sql"),
        )
        .sql(
            "0002_note_body",
            "Add a body to notes",
            include_str!("notes-sql/0002_note_body.sql"),
        )
}
