//! Test fixture: steps that take a while, so that a test can stop a run in the middle. The
//! first step sleeps `wasmig_test.nap` seconds (0.3 unless the test sets it on the
//! database); the second records that the first finished.
use wasmig_sdk::Plugin;

fn plugin() -> Plugin {
    Plugin::migration("slow")
        .sql(
            "0001_nap",
            "Sleep a while",
            "SELECT pg_sleep(coalesce(nullif(current_setting('wasmig_test.nap', true), ''), '0.3')::float8)",
        )
        .sql(
            "0002_done",
            "Record that the nap finished",
            "CREATE TABLE slow_done (id int)",
        )
}

wasmig_sdk::export_plugin!(plugin);
