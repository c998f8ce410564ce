//! Benchmark fixture: 12 small steps, so that 10,000 tenants can be set up quickly and the
//! no-op paths (`migrate` with nothing pending, `verify`, `status`) are measured at scale.
use wasmig_sdk::Plugin;

const SMALL: &str = "SELECT 1";

fn plugin() -> Plugin {
    let mut p = Plugin::migration("light");
    for id in [
        "0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011",
        "0012",
    ] {
        p = p.sql(id, "A small step", SMALL);
    }
    p
}

wasmig_sdk::export_plugin!(plugin);
