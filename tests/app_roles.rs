//! Per-tenant application roles (`init --tenant-app-roles`): whatever the object guard
//! misses, what a tenant planted runs, for an application that switches role when it switches
//! tenant, with that tenant's rights alone. Each attack here is planted directly as the
//! attacker's role (as a guard gap would let it through), then run by the application.

use crate::support::{Fleet, PluginDir, TestDb};
use wasmig::Exit;

const APP_PASSWORD: &str = "app-pw";

/// A fleet with tenant application roles on, the application role `app_<db>`, a victim
/// `vic` whose customers' e-mails the application wrote, an attacker `att`, and a secret
/// shared table tenants were not granted.
fn fleet(label: &str) -> (TestDb, PluginDir, String) {
    let (db, plugins) = Fleet::new(label)
        .plugins(&["reference", "notes_v1"])
        .build();
    let app = format!("app_{}", db.name);
    db.exec(&format!(
        "CREATE ROLE \"{app}\" LOGIN PASSWORD '{APP_PASSWORD}'"
    ));
    db.wasmig(
        plugins.path(),
        &with_app(&app, &["init", "--tenant-app-roles"]),
    )
    .expect(Exit::Ok);
    db.wasmig(plugins.path(), &with_app(&app, &["migrate", "--shared"]))
        .expect(Exit::Ok);
    db.wasmig(
        plugins.path(),
        &with_app(&app, &["tenant", "create", "vic", "att"]),
    )
    .expect(Exit::Ok);
    db.exec(&format!(
        "INSERT INTO vic.notes (title) SELECT 'victim-' || g || '@example.com' FROM generate_series(1, 40) g;
         ANALYZE vic.notes;
         CREATE TABLE shared.secret (v text); INSERT INTO shared.secret VALUES ('shared-secret-row');
         GRANT SELECT, INSERT ON shared.secret, shared.currency TO \"{app}\";"
    ));
    (db, plugins, app)
}

/// `args` after `--app-role app`.
fn with_app<'a>(app: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--app-role", app];
    all.extend_from_slice(args);
    all
}

/// Plants `sql` in the attacker's schema as its own role (what a gap in the object guard
/// would let a plugin leave there).
fn plant(db: &TestDb, sql: &str) {
    db.exec(&format!(
        "SET ROLE \"{}_att\"; SET search_path = att; {sql}; RESET ROLE; RESET search_path;",
        db.name
    ));
}

#[test]
fn a_view_a_tenant_planted_reads_only_that_tenant_through_the_tenant_switch() {
    let (db, _plugins, app) = fleet("approles_views");
    plant(
        &db,
        "CREATE VIEW stats AS SELECT tablename::text, histogram_bounds::text AS vals FROM pg_catalog.pg_stats;
         CREATE VIEW activity AS SELECT query FROM pg_catalog.pg_stat_activity;
         CREATE VIEW secret WITH (security_invoker = true) AS SELECT * FROM shared.secret;
         CREATE VIEW signup WITH (security_invoker = true) AS SELECT * FROM shared.currency",
    );
    // Another session of the application's, busy on the victim.
    let busy = db.session_as(&app, APP_PASSWORD);
    let busy_query = std::thread::spawn(move || {
        busy.exec("SELECT pg_sleep(3), 'victim-busy-query' FROM vic.notes LIMIT 1")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let app_session = db.session_as(&app, APP_PASSWORD);
    let read = |sql: &str| -> Result<String, String> {
        app_session.exec(sql)?;
        Ok(app_session.scalar_text(&format!(
            "SELECT coalesce(string_agg(v::text, ','), '') FROM ({sql}) s(v)"
        )))
    };
    // As the application role itself, the planted views show the victim.
    let before = read("SELECT vals FROM att.stats").expect("read as the application");
    assert!(before.contains("victim-"), "the hazard: {before}");
    let activity = read("SELECT query FROM att.activity").expect("read");
    assert!(activity.contains("victim-busy-query"), "{activity}");
    // Through the tenant switch, only the attacker's own tenant.
    app_session
        .exec("SELECT wasmig_api.use_tenant('att'); SET search_path = att, shared")
        .expect("switch to the attacker's tenant");
    let after = read("SELECT vals FROM stats").expect("read through the switch");
    assert!(!after.contains("victim-"), "{after}");
    let activity = read("SELECT query FROM activity").expect("read");
    assert!(!activity.contains("victim-busy-query"), "{activity}");
    let secret = read("SELECT v FROM secret").expect_err("a shared table tenants may not read");
    assert!(secret.contains("permission denied"), "{secret}");
    let write = app_session
        .exec("INSERT INTO signup VALUES ('XXX', 'Pwned', 2)")
        .expect_err("a shared table tenants may only read");
    assert!(write.contains("permission denied"), "{write}");
    // The tenant's own data is the application's to use, through the same role.
    app_session
        .exec("INSERT INTO notes (title) VALUES ('fine')")
        .expect("the tenant's own table");
    // Back to the shared schema: the application role again.
    app_session
        .exec("SELECT wasmig_api.use_tenant('shared')")
        .expect("switch back");
    assert!(
        read("SELECT v FROM shared.secret")
            .expect("the application itself")
            .contains("shared-secret-row")
    );
    let unknown = app_session
        .exec("SELECT wasmig_api.use_tenant('nope')")
        .expect_err("not a tenant");
    assert!(
        unknown.contains("not a tenant with an application role"),
        "{unknown}"
    );
    busy_query.join().expect("join").expect("busy query");
}

#[test]
fn a_tenant_app_role_has_its_tenants_data_rights_and_goes_with_the_tenant() {
    let (db, plugins, app) = fleet("approles_rights");
    let tapp = db
        .scalar_text("SELECT app_role FROM wasmig.managed_schema WHERE schema_name = 'vic'")
        .expect("vic has an application role");
    for (privilege, table, granted) in [
        ("INSERT", "vic.notes", true),
        ("SELECT", "att.notes", false),
        ("SELECT", "shared.currency", true),
    ] {
        let has: bool = db.query(&format!(
            "SELECT has_table_privilege('{tapp}', '{table}', '{privilege}')"
        ))[0]
            .get(0);
        assert_eq!(has, granted, "{tapp} {privilege} on {table}");
    }
    let member: bool =
        db.query(&format!("SELECT pg_has_role('{app}', '{tapp}', 'MEMBER')"))[0].get(0);
    assert!(member, "the application may SET ROLE to {tapp}");
    db.wasmig(plugins.path(), &["tenant", "drop", "vic", "--yes"])
        .expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{tapp}'"
        )),
        0,
        "dropped with its tenant"
    );
}

#[test]
fn turning_tenant_app_roles_on_gives_existing_tenants_theirs() {
    let (db, plugins) = Fleet::new("approles_later")
        .plugins(&["notes_v1"])
        .tenants(&["t1", "t2"])
        .build();
    let app = format!("app_{}", db.name);
    db.exec(&format!("CREATE ROLE \"{app}\" LOGIN"));
    let refused = db
        .wasmig(plugins.path(), &["init", "--tenant-app-roles"])
        .expect(Exit::Error);
    assert!(refused.stderr.contains("--app-role"), "{}", refused.stderr);
    let run = db
        .wasmig(
            plugins.path(),
            &["init", "--tenant-app-roles", "--app-role", &app],
        )
        .expect(Exit::Ok);
    assert!(
        run.stdout.contains("2 tenant(s) got theirs now"),
        "{}",
        run.stdout
    );
    for t in ["t1", "t2"] {
        let has: bool = db.query(&format!(
            "SELECT has_table_privilege(app_role, '{t}.notes', 'UPDATE') FROM wasmig.managed_schema WHERE schema_name = '{t}'"
        ))[0]
            .get(0);
        assert!(has, "{t}'s application role may update its notes");
    }
}
