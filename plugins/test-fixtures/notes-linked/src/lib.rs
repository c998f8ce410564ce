//! Test fixture: `notes` with tags, and a fourth step that changes both tables, `note_tags`
//! first: a step that can deadlock with a session using them in the other order.
#[path = "../../notes.rs"]
mod notes;

fn plugin() -> wasmig_sdk::Plugin {
    notes::v1()
        .sql(
            "0003_tags_unique_titles",
            "Tags table and unique titles",
            include_str!("../../notes-sql/0003_tags_unique_titles.sql"),
        )
        .sql(
            "0004_weights_and_pins",
            "Tag weights, then pinned notes",
            "ALTER TABLE note_tags ADD COLUMN weight int;
             ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;",
        )
}

wasmig_sdk::export_plugin!(plugin);
