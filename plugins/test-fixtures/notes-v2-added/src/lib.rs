//! Test fixture: `notes` with a third step added (tags table + unique titles).
#[path = "../../notes.rs"]
mod notes;

fn plugin() -> wasmig_sdk::Plugin {
    notes::v1().sql(
        "0003_tags_unique_titles",
        "Tags table and unique titles",
        include_str!("../../notes-sql/0003_tags_unique_titles.sql"),
    )
}

wasmig_sdk::export_plugin!(plugin);
