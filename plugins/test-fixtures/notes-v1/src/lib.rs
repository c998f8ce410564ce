//! Test fixture: the `notes` plugin as first released (two steps).
#[path = "../../notes.rs"]
mod notes;

wasmig_sdk::export_plugin!(notes::v1);
