//! Test fixture: a manifest the host must refuse (step id `0001_notes` twice).
use wasmig_sdk::Plugin;

fn plugin() -> Plugin {
    Plugin::migration("bad-manifest")
        .sql("0001_notes", "Create notes", "CREATE TABLE notes (id int);")
        .sql(
            "0001_notes",
            "Create notes again",
            "CREATE TABLE notes2 (id int);",
        )
}

wasmig_sdk::export_plugin!(plugin);
