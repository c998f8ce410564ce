//! Fleet scale: the server work of one step must not grow with the number of tenants the
//! database holds. Measured in buffers (shared blocks hit or read, from `pg_stat_statements`:
//! a top-level statement's counters include everything it ran inside, the `wasmig_api`
//! functions and the object guard's event trigger among them), never in wall time.

use crate::support::{PluginDir, TestDb};
use wasmig::Exit;

/// Tables each filler tenant's role owns: a fleet of `n` tenants holds `n * FILLER_TABLES`
/// relations (each with its row type, array type and owner dependency), like a real fleet.
const FILLER_TABLES: usize = 25;

/// Shared blocks the statements of the tenant role of `target` ran, hit or read, while
/// `wasmig migrate --schema target` applied its two steps (`notes`), in a database that
/// holds `fleet` other tenants, each owning [`FILLER_TABLES`] tables.
fn blocks_of_one_tenant(label: &str, fleet: usize) -> i64 {
    let db = TestDb::new(label);
    let plugins = PluginDir::new(&["notes_v1"]);
    db.exec("CREATE EXTENSION pg_stat_statements");
    db.wasmig(plugins.path(), &["init"]).expect(Exit::Ok);
    let names: Vec<String> = (0..fleet).map(|i| format!("f{i:04}")).collect();
    for chunk in names.chunks(100) {
        let mut args = vec!["tenant", "create", "--no-migrate"];
        args.extend(chunk.iter().map(String::as_str));
        db.wasmig(plugins.path(), &args).expect(Exit::Ok);
    }
    // The fillers' objects, created as their own roles (cheaply: plain SQL, one batch each).
    for name in &names {
        let role = format!("{}_{name}", db.name);
        let tables: String = (0..FILLER_TABLES)
            .map(|t| {
                format!(
                    "CREATE TABLE {name}.t{t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);"
                )
            })
            .collect();
        db.exec(&format!("SET ROLE \"{role}\"; {tables} RESET ROLE;"));
    }
    db.wasmig(
        plugins.path(),
        &["tenant", "create", "--no-migrate", "target"],
    )
    .expect(Exit::Ok);
    let role = format!("{}_target", db.name);
    db.exec("SELECT pg_stat_statements_reset()");
    db.wasmig(plugins.path(), &["migrate", "--schema", "target"])
        .expect(Exit::Ok);
    assert!(db.table_exists("target", "notes"));
    // The role's backends have exited (the run is over), so their counters are in. Nested
    // statements (inside functions, with `track = all`) have rows of their own, counted in
    // their top-level statement's too.
    let total = db.scalar_i64(&format!(
        "SELECT coalesce(sum(shared_blks_hit + shared_blks_read), 0)::bigint
           FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
          WHERE r.rolname = '{role}' AND s.toplevel
            AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ));
    // Where it went, for the failure message.
    let top = db.query(
        "SELECT (shared_blks_hit + shared_blks_read)::bigint, calls, toplevel, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
           FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY 1 DESC LIMIT 12",
    );
    for r in top {
        let (blocks, calls, toplevel, query): (i64, i64, bool, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        eprintln!("  {label}: {blocks:>8} blocks {calls:>4} calls top={toplevel} {query}");
    }
    total
}

#[test]
fn one_tenants_steps_cost_the_same_server_work_beside_300_tenants_as_beside_5() {
    let small = blocks_of_one_tenant("scale_small", 5);
    let large = blocks_of_one_tenant("scale_large", 300);
    eprintln!(
        "shared blocks of one tenant's two steps: {small} beside 5 tenants, {large} beside 300"
    );
    assert!(small > 0, "pg_stat_statements saw the tenant's statements");
    // B-tree lookups get a level deeper as catalogs grow; anything that scans what other
    // tenants own grows with the fleet (60x the tenants here).
    assert!(
        large as f64 <= small as f64 * 1.15 + 50.0,
        "one tenant's steps read {large} blocks beside 300 tenants, {small} beside 5: per-step work grows with the fleet"
    );
}
