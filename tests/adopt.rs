//! Adopting a fleet another tool made: the database django-tenants itself created and
//! migrated (`tests/fixtures/django-tenants/fleet.sql`, restored as it is), taken over
//! with `tenant adopt`, baselined from each schema's own `django_migrations`, then migrated.

use std::process::Command;

use crate::support::{PluginDir, Run, TestDb, pg_bin, repo_root};
use wasmig::Exit;

const DJANGO_APP_PASSWORD: &str = "django-app-pw";
const TENANTS: [&str; 6] = ["acme", "globex", "hooli", "initech", "lagging", "umbrella"];
const APPS: &[&str] = &["carriers", "customers", "suppliers", "finance"];
const APPS_NEXT: &[&str] = &["carriers", "customers", "suppliers", "finance_next"];
/// The tenants of django-tenants' own registry, with their primary domains.
const FROM_QUERY: &str = "SELECT c.schema_name, c.name, d.domain FROM public.tenants_client c JOIN public.tenants_domain d ON d.tenant_id = c.id AND d.is_primary ORDER BY c.schema_name";

/// A database restored from the fixture as django-tenants left it (owned by `django_app`, as
/// the original was), with wasmig initialised on it and `public` as the shared schema.
fn django_fleet(label: &str) -> (TestDb, PluginDir) {
    let db = restored(label);
    let plugins = PluginDir::new(APPS);
    db.wasmig(plugins.path(), &wasmig_args(&["init"]))
        .expect(Exit::Ok);
    (db, plugins)
}

/// A database restored from the fixture as django-tenants left it, wasmig not initialised.
fn restored(label: &str) -> TestDb {
    let db = TestDb::new(label);
    // Roles are cluster-wide and tests run in parallel: whoever comes first creates it.
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE django_app LOGIN PASSWORD '{DJANGO_APP_PASSWORD}';
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    ));
    db.exec(&format!("ALTER DATABASE {} OWNER TO django_app", db.name));
    let file = repo_root().join("tests/fixtures/django-tenants/fleet.sql");
    assert!(file.exists(), "the fixture {} is missing", file.display());
    let out = Command::new(pg_bin("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(&file)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "restoring the fixture failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

/// `args` with the settings every command of a django-tenants fleet uses.
fn wasmig_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--shared-schema", "public", "--app-role", "django_app"];
    all.extend_from_slice(args);
    all
}

/// Objects in `schema` that its wasmig role does not own (relations, routines, types).
fn foreign_objects(db: &TestDb, schema: &str) -> i64 {
    db.scalar_i64(&format!(
        "WITH r AS (SELECT role_name FROM wasmig.managed_schema WHERE schema_name = '{schema}')
         SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = '{schema}' AND pg_get_userbyid(c.relowner) <> (SELECT role_name FROM r))
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = '{schema}' AND pg_get_userbyid(p.proowner) <> (SELECT role_name FROM r))
              + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                  WHERE n.nspname = '{schema}' AND pg_get_userbyid(t.typowner) <> (SELECT role_name FROM r))"
    ))
}

#[test]
fn a_django_tenants_fleet_is_adopted_baselined_from_its_own_history_and_migrated() {
    let (db, plugins) = django_fleet("django");
    let p = plugins.path();
    let owner_of = |t: &str| {
        db.scalar_text(&format!(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'acme' AND tablename = '{t}'"
        ))
    };

    // A dry run says what would change and changes nothing.
    let dry = db
        .wasmig(
            p,
            &wasmig_args(&["tenant", "adopt", "--from-query", FROM_QUERY, "--dry-run"]),
        )
        .expect(Exit::Ok);
    assert!(
        dry.stdout
            .contains("acme: would create role and registry row, and give"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("table acme.carriers_carrier (owner django_app)"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("nothing was changed"), "{}", dry.stdout);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.managed_schema WHERE scope = 'tenant'"),
        0
    );
    assert_eq!(owner_of("carriers_carrier").as_deref(), Some("django_app"));

    // The shared schema, then every tenant from django-tenants' own registry.
    db.wasmig(p, &wasmig_args(&["tenant", "adopt", "--shared"]))
        .expect(Exit::Ok);
    assert_eq!(
        foreign_objects(&db, "public"),
        0,
        "public is the shared role's"
    );
    // Three schemas at a time, each on its own connection.
    let run = db
        .wasmig(
            p,
            &wasmig_args(&[
                "--jobs",
                "3",
                "tenant",
                "adopt",
                "--from-query",
                FROM_QUERY,
                "--label",
                "origin=django",
            ]),
        )
        .expect(Exit::Ok);
    assert!(
        run.stdout.contains("adopt: 6 schema(s) adopted, 0 refused"),
        "{}",
        run.stdout
    );
    for t in TENANTS {
        assert_eq!(
            foreign_objects(&db, t),
            0,
            "{t}: every object is its role's"
        );
    }
    assert_eq!(
        owner_of("carriers_carrier"),
        Some(format!("{}_acme", db.name))
    );
    let list = db
        .wasmig(p, &wasmig_args(&["tenant", "list", "--json"]))
        .expect(Exit::Ok)
        .doc("wasmig.tenants/1");
    let acme = list["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["schema"] == "acme")
        .expect("acme")
        .clone();
    assert_eq!(acme["name"], "Acme Corporation");
    assert_eq!(acme["domain"], "acme.example.com");
    assert_eq!(acme["labels"], serde_json::json!({"origin": "django"}));

    // Adopting again changes nothing.
    let again = db
        .wasmig(
            p,
            &wasmig_args(&["tenant", "adopt", "--from-query", FROM_QUERY]),
        )
        .expect(Exit::Ok);
    assert!(
        again.stdout.contains("acme: adopted already (role"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("0 object(s) given"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("changed"), "{}", again.stdout);
    // Adopting one schema again with another domain changes it, and says so.
    let moved = db
        .wasmig(
            p,
            &wasmig_args(&["tenant", "adopt", "acme", "--domain", "acme.example.org"]),
        )
        .expect(Exit::Ok);
    assert!(
        moved
            .stdout
            .contains("changed domain `acme.example.com` -> `acme.example.org`"),
        "{}",
        moved.stdout
    );
    assert_eq!(
        db.scalar_text("SELECT domain FROM wasmig.managed_schema WHERE schema_name = 'acme'")
            .as_deref(),
        Some("acme.example.org")
    );

    // Baseline from each schema's own Django history: more than one schema needs --yes.
    db.wasmig(
        p,
        &wasmig_args(&["baseline", "--all-tenants", "--from-django"]),
    )
    .expect(Exit::Error);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM wasmig.ledger"), 0);
    let base = db
        .wasmig(
            p,
            &wasmig_args(&["baseline", "--all-tenants", "--from-django", "--yes"]),
        )
        .expect(Exit::Ok);
    assert!(
        base.stdout.contains("acme: recorded 12 step(s)"),
        "{}",
        base.stdout
    );
    assert!(
        base.stdout.contains("lagging: recorded 11 step(s)")
            && base
                .stdout
                .contains("pending (Django never applied them here): finance/0003_invoice_paid_at_invoiceline_tax_rate_and_more"),
        "{}",
        base.stdout
    );
    assert!(
        base.stdout
            .contains("declared by no loaded plugin (left alone): contenttypes/0001_initial"),
        "{}",
        base.stdout
    );
    let ledger = db.ledger_dump();
    db.wasmig(
        p,
        &wasmig_args(&["baseline", "--all-tenants", "--from-django", "--yes"]),
    )
    .expect(Exit::Ok);
    assert_eq!(
        db.ledger_dump(),
        ledger,
        "a second baseline records nothing"
    );
    // Django built every tenant the same way: one structure per ledger state (lagging,
    // one step behind, is a state of its own).
    let same = db
        .wasmig(p, &wasmig_args(&["verify", "--structure"]))
        .expect(Exit::Ok);
    assert!(
        same.stdout
            .contains("6 tenant(s): 6 share their baseline's structure"),
        "{}",
        same.stdout
    );
    let status = db
        .wasmig(p, &wasmig_args(&["status", "--json"]))
        .expect(Exit::Ok)
        .doc("wasmig.status/1");
    for s in status["schemas"].as_array().expect("schemas") {
        let want = if s["schema"] == "lagging" {
            serde_json::json!([{"plugin": "finance", "step": "0003_invoice_paid_at_invoiceline_tax_rate_and_more"}])
        } else {
            serde_json::json!([])
        };
        assert_eq!(s["pending"], want, "{s}");
    }

    // The next finance release: only what is pending runs, in every tenant.
    plugins.set(APPS_NEXT);
    let run = db.wasmig(p, &wasmig_args(&["migrate"])).expect(Exit::Ok);
    assert!(run.stdout.contains("7 step(s) applied"), "{}", run.stdout);
    for t in TENANTS {
        assert_eq!(
            db.scalar_i64(&format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{t}' AND table_name = 'finance_invoice' AND column_name IN ('external_ref', 'paid_at')"
            )),
            2,
            "{t}"
        );
        assert_eq!(
            foreign_objects(&db, t),
            0,
            "{t}: what the steps made is its role's too"
        );
    }

    // The application keeps working, as its own role.
    let app = db.session_as("django_app", DJANGO_APP_PASSWORD);
    for t in TENANTS {
        app.exec(&format!(
            "SELECT count(*) FROM {t}.carriers_carrier;
             INSERT INTO {t}.django_migrations (app, name, applied) VALUES ('wasmig_test', 'x', now());
             UPDATE {t}.django_migrations SET name = 'y' WHERE app = 'wasmig_test';
             DELETE FROM {t}.django_migrations WHERE app = 'wasmig_test';
             SELECT count(*) FROM {t}.finance_invoice WHERE external_ref IS NULL;"
        ))
        .unwrap_or_else(|e| panic!("{t}: the application role lost a privilege: {e}"));
    }
    app.exec("SELECT count(*) FROM public.tenants_client")
        .unwrap_or_else(|e| panic!("public: {e}"));

    // A hot fix by hand in one tenant is named, column and all.
    let same = db
        .wasmig(p, &wasmig_args(&["verify", "--structure"]))
        .expect(Exit::Ok);
    assert!(
        same.stdout.contains("6 of 6 tenant(s) share"),
        "{}",
        same.stdout
    );
    db.exec(
        "ALTER TABLE hooli.finance_invoice ADD COLUMN hotfix_note varchar(40) NOT NULL DEFAULT ''",
    );
    let drift = db
        .wasmig(p, &wasmig_args(&["verify", "--structure"]))
        .expect(Exit::Problems);
    assert!(
        drift.stdout.contains("hooli differs from acme")
            && drift.stdout.contains(
                "+ column finance_invoice.hotfix_note: character varying(40) not null default ''::character varying"
            ),
        "{}",
        drift.stdout
    );
}

#[test]
fn an_object_wasmig_cannot_move_refuses_only_its_schema_with_the_object_named() {
    let (db, plugins) = django_fleet("django_refuse");
    let p = plugins.path();
    // An operator, owned by the application's role like everything Django made.
    db.exec(
        "SET ROLE django_app;
         CREATE OPERATOR globex.=== (LEFTARG = int4, RIGHTARG = int4, FUNCTION = int4eq);
         RESET ROLE;",
    );
    let run = db
        .wasmig(p, &wasmig_args(&["tenant", "adopt", "acme", "globex"]))
        .expect(Exit::Problems);
    assert!(
        run.stderr
            .contains("schema `globex` was not adopted (nothing in it changed)")
            && run
                .stderr
                .contains("operator globex.===(integer,integer) (owner django_app)"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("acme: adopted (role"), "{}", run.stdout);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.managed_schema WHERE schema_name = 'globex'"),
        0
    );
    assert_eq!(
        db.scalar_text(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'globex' AND tablename = 'carriers_carrier'"
        )
        .as_deref(),
        Some("django_app"),
        "globex is as it was"
    );
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{}_globex'",
            db.name
        )),
        0,
        "no role was left behind"
    );
    // An extension's objects stay the extension's: its schema is refused, the extension named.
    db.exec("CREATE EXTENSION citext SCHEMA hooli");
    let run = db
        .wasmig(p, &wasmig_args(&["tenant", "adopt", "hooli", "initech"]))
        .expect(Exit::Problems);
    assert!(
        run.stderr
            .contains("schema `hooli` was not adopted (nothing in it changed)")
            && run
                .stderr
                .contains("belongs to extension `citext`, which must keep it"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("initech: adopted (role"),
        "{}",
        run.stdout
    );
    // A schema with no Django history is reported, not skipped in silence.
    db.exec("CREATE SCHEMA plain");
    db.wasmig(p, &wasmig_args(&["tenant", "adopt", "plain"]))
        .expect(Exit::Ok);
    let base = db
        .wasmig(
            p,
            &wasmig_args(&["baseline", "--schema", "plain", "--from-django"]),
        )
        .expect(Exit::Problems);
    assert!(
        base.stderr
            .contains("schema `plain`: it has no `django_migrations` table"),
        "{}",
        base.stderr
    );
    // A `django_migrations` that is a view (its query would run as the operator) or that
    // has an inheritance child is not read as Django's history.
    db.exec(
        "CREATE SCHEMA viewy;
         CREATE VIEW viewy.django_migrations AS SELECT 1 AS id, 'carriers'::text AS app, '0001_initial'::text AS name;
         CREATE SCHEMA kids;
         CREATE TABLE kids.django_migrations (id int, app text, name text, applied timestamptz);
         CREATE TABLE kids.extra () INHERITS (kids.django_migrations);
         INSERT INTO kids.extra VALUES (1, 'carriers', '0001_initial', now());",
    );
    db.wasmig(p, &wasmig_args(&["tenant", "adopt", "viewy", "kids"]))
        .expect(Exit::Ok);
    let view = db
        .wasmig(
            p,
            &wasmig_args(&["baseline", "--schema", "viewy", "--from-django"]),
        )
        .expect(Exit::Problems);
    assert!(
        view.stderr
            .contains("it is not an ordinary table (relkind `v`)"),
        "{}",
        view.stderr
    );
    let kids = db
        .wasmig(
            p,
            &wasmig_args(&["baseline", "--schema", "kids", "--from-django"]),
        )
        .expect(Exit::Ok);
    assert!(
        kids.stdout.contains("kids: recorded 0 step(s)"),
        "{}",
        kids.stdout
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.ledger WHERE schema_name = 'kids'"),
        0,
        "rows of an inheritance child are not Django's history"
    );
    // A schema that does not exist is refused, naming it.
    let none = db
        .wasmig(p, &wasmig_args(&["tenant", "adopt", "nosuch"]))
        .expect(Exit::Problems);
    assert!(none.stderr.contains("schema `nosuch`"), "{}", none.stderr);
}

#[test]
fn an_operator_that_does_not_act_for_the_owner_is_told_what_to_grant_and_changes_nothing() {
    // `ALTER ... OWNER` needs the current owner's rights: an operator that is neither a
    // superuser nor a member of django_app is refused per schema, naming the grant to give.
    let db = restored("django_operator");
    let (op, url) = db.non_superuser_operator();
    let plugins = PluginDir::new(APPS);
    // Its own shared schema (`public` is PostgreSQL's, which only the database owner may give).
    let run = |args: &[&str]| {
        let mut all = vec!["--app-role", "django_app"];
        all.extend_from_slice(args);
        let out = crate::support::wasmig_command(&url, plugins.path(), &all)
            .output()
            .expect("run wasmig");
        Run::from(out, args)
    };
    run(&["init"]).expect(Exit::Ok);
    let refused = run(&["tenant", "adopt", "acme", "globex"]).expect(Exit::Problems);
    for schema in ["acme", "globex"] {
        assert!(
            refused.stderr.contains(&format!(
                "adopting schema `{schema}`: the operator role `{op}` cannot change the owner of what `django_app` owns; run as a superuser, or first `GRANT \"django_app\" TO \"{op}\"`"
            )),
            "{}",
            refused.stderr
        );
    }
    assert!(
        refused.stdout.contains("0 schema(s) adopted, 2 refused"),
        "{}",
        refused.stdout
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM wasmig.managed_schema WHERE scope = 'tenant'"),
        0
    );
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('{0}_acme', '{0}_globex')",
            db.name
        )),
        0,
        "no role was left behind"
    );
    // Given the grant it names, the same command adopts both, in parallel; an ordered-set
    // aggregate (whose identity arguments read `x ORDER BY y`) is transferred and granted too.
    db.exec(&format!("GRANT django_app TO \"{op}\""));
    db.exec(
        "CREATE AGGREGATE acme.pct(float8 ORDER BY float8) (sfunc = ordered_set_transition,
             stype = internal, finalfunc = percentile_disc_final, finalfunc_extra);
         ALTER AGGREGATE acme.pct(float8 ORDER BY float8) OWNER TO django_app;",
    );
    let done = run(&["-j", "2", "tenant", "adopt", "acme", "globex"]).expect(Exit::Ok);
    assert!(
        done.stdout.contains("2 schema(s) adopted, 0 refused"),
        "{}",
        done.stdout
    );
    for schema in ["acme", "globex"] {
        assert_eq!(foreign_objects(&db, schema), 0, "{schema}");
    }
    // Transferred (foreign_objects above counts routines) and granted by name.
    assert_eq!(
        db.scalar_text(
            "SELECT array_to_string(proacl, ',') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'acme' AND p.proname = 'pct'"
        )
        .map(|acl| acl.contains("django_app=X/")),
        Some(true)
    );
}

#[test]
fn adopted_tenants_get_application_roles_of_their_own() {
    // `init --tenant-app-roles`, then adoption: each adopted tenant has its application role,
    // which the application takes with the tenant switch README shows for django-tenants.
    let db = restored("adopt_app_roles");
    let plugins = PluginDir::new(APPS);
    let p = plugins.path();
    db.wasmig(p, &wasmig_args(&["init", "--tenant-app-roles"]))
        .expect(Exit::Ok);
    db.wasmig(p, &wasmig_args(&["tenant", "adopt", "--shared"]))
        .expect(Exit::Ok);
    db.wasmig(
        p,
        &wasmig_args(&["tenant", "adopt", "--from-query", FROM_QUERY]),
    )
    .expect(Exit::Ok);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM wasmig.managed_schema WHERE scope = 'tenant' AND app_role IS NOT NULL"
        ),
        TENANTS.len() as i64
    );
    let app = db.session_as("django_app", DJANGO_APP_PASSWORD);
    app.exec("SELECT wasmig_api.use_tenant('acme'); SET search_path = acme, public")
        .expect("the tenant switch");
    assert!(app.scalar_i64("SELECT count(*) FROM carriers_carrier") > 0);
    let other = app
        .exec("SELECT count(*) FROM globex.carriers_carrier")
        .expect_err("another tenant is out of reach");
    assert!(other.contains("permission denied"), "{other}");
    app.exec("SELECT wasmig_api.use_tenant('public'); SET search_path = public")
        .expect("back to the shared schema");
    assert!(app.scalar_i64("SELECT count(*) FROM globex.carriers_carrier") > 0);
}
