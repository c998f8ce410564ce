//! What the server allows a run: how many more sessions it and this database accept.

use tokio_postgres::Client;

use super::{ControlError, pg};

/// How many more sessions the server and this database accept now, with why: the server's
/// `max_connections` less the slots reserved for superusers (unless the operator is one) and
/// the sessions open, and the database's `CONNECTION LIMIT` less its sessions.
pub async fn free_connections(client: &Client) -> Result<(usize, String), ControlError> {
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::int,
                    CASE WHEN r.rolsuper THEN 0
                         ELSE current_setting('superuser_reserved_connections')::int END,
                    (SELECT count(*)::int FROM pg_catalog.pg_stat_activity
                      WHERE backend_type = 'client backend'),
                    d.datconnlimit,
                    (SELECT count(*)::int FROM pg_catalog.pg_stat_activity s
                      WHERE s.datid = d.oid AND s.backend_type = 'client backend')
               FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
              WHERE r.rolname = current_user AND d.datname = current_database()",
            &[],
        )
        .await
        .map_err(pg("reading the server's connection limits"))?;
    let (max, reserved, open, db_limit, db_open): (i32, i32, i32, i32, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let server = (max - reserved - open).max(0);
    let mut why = format!(
        "max_connections {max}, {reserved} reserved for superusers, {open} open: {server} free"
    );
    let mut free = server;
    if db_limit >= 0 {
        let db_free = (db_limit - db_open).max(0);
        why.push_str(&format!(
            "; this database's CONNECTION LIMIT {db_limit}, {db_open} open: {db_free} free"
        ));
        free = free.min(db_free);
    }
    Ok((usize::try_from(free).unwrap_or(0), why))
}
