//! The attacks of the hostile fixtures (`hostile`, and `hostile-nontx` which runs them in a
//! non-transactional step). A step reads which attack to run from `attack_plan (attack text,
//! target text)` in its own schema (written by the test), so each attack is real plugin code
//! running under the real sandbox. `none` behaves.
use wasmig_sdk::{Db, Error};

/// The attack the test wrote into the tenant's `attack_plan`, and its target.
pub fn plan(db: &Db) -> Result<(String, String), Error> {
    let rows = db.query(
        "SELECT attack, coalesce(target, '') AS target FROM attack_plan",
        &[],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| Error::msg("attack_plan is empty"))?;
    Ok((row.get("attack")?, row.get("target")?))
}

fn sql(db: &Db, script: &str) -> Result<(), Error> {
    db.batch(script)
}

/// Runs the named attack against target `t`.
pub fn attack(db: &Db, name: &str, t: &str) -> Result<(), Error> {
    match name {
        "none" => sql(db, "CREATE TABLE behaved (id int)"),
        // Role and session escapes.
        "reset_role" => sql(
            db,
            &format!("RESET ROLE; INSERT INTO {t}.notes (title) VALUES ('pwned')"),
        ),
        "set_role" => sql(db, &format!("SET ROLE {t}")),
        "set_session_authorization" => sql(db, &format!("SET SESSION AUTHORIZATION {t}")),
        "set_config_role" => db
            .query(&format!("SELECT set_config('role', '{t}', false)"), &[])
            .map(drop),
        "set_config_search_path" => sql(
            db,
            &format!(
                "SELECT set_config('search_path', '{t}', false); INSERT INTO notes (title) VALUES ('pwned')"
            ),
        ),
        // Other schemas.
        "read_other" => db.query(&format!("SELECT * FROM {t}.notes"), &[]).map(drop),
        "write_other" => sql(
            db,
            &format!("INSERT INTO {t}.notes (title) VALUES ('pwned')"),
        ),
        "write_shared" => sql(
            db,
            &format!("INSERT INTO {t}.currency VALUES ('XXX', 'Pwned', 2)"),
        ),
        "lock_shared" => sql(
            db,
            &format!("LOCK TABLE {t}.currency IN ACCESS EXCLUSIVE MODE"),
        ),
        "read_wasmig" => db.query("SELECT * FROM wasmig.secret", &[]).map(drop),
        "forge_ledger" => sql(
            db,
            "INSERT INTO wasmig.ledger (schema_name, plugin, step_id, checksum, artifact_checksum, plugin_version, applied_at, duration_ms, mac) \
             VALUES (current_schema(), 'notes', '0003_fake', 'x', 'x', 'x', now(), 0, 'x')",
        ),
        "forge_record_step" => db
            .query(
                "SELECT wasmig_api.record_step(decode(repeat('00', 32), 'hex'), 1, NULL)",
                &[],
            )
            .map(drop),
        // Privilege tricks.
        "security_definer" => sql(
            db,
            &format!(
                "CREATE FUNCTION steal() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM {t}.notes $$; SELECT steal()"
            ),
        ),
        "do_block" => sql(
            db,
            &format!(
                "DO $$ BEGIN EXECUTE 'INSERT INTO {t}.notes (title) VALUES (''pwned'')'; END $$"
            ),
        ),
        "create_extension" => sql(db, "CREATE EXTENSION dblink"),
        "dblink" => db
            .query(
                &format!(
                    "SELECT dblink_exec('dbname=postgres user={t}', 'CREATE ROLE evil SUPERUSER')"
                ),
                &[],
            )
            .map(drop),
        "pg_read_file" => db
            .query("SELECT pg_read_file('/etc/passwd')", &[])
            .map(drop),
        "copy_program" => sql(db, "COPY (SELECT 1) TO PROGRAM 'touch /tmp/wasmig-pwned'"),
        "lo_import" => db.query("SELECT lo_import('/etc/passwd')", &[]).map(drop),
        "alter_role" => sql(db, "ALTER ROLE CURRENT_USER SUPERUSER"),
        "create_role" => sql(db, "CREATE ROLE evil LOGIN SUPERUSER PASSWORD 'evil'"),
        "grant_to_others" => sql(db, &format!("GRANT SELECT ON attack_plan TO {t}")),
        "change_own_settings" => sql(
            db,
            "DO $$ BEGIN EXECUTE format('ALTER ROLE %I SET work_mem = %L', current_user, '64GB'); END $$",
        ),
        "change_own_password" => sql(
            db,
            "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'pwned'); END $$",
        ),
        // Transaction control.
        "commit" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.execute("COMMIT", &[]).map(drop)
        }
        "commit_in_script" => sql(
            db,
            "CREATE TABLE leaked (id int); COMMIT; CREATE TABLE leaked_after (id int)",
        ),
        "begin" => sql(db, "BEGIN"),
        "rollback" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.execute("ROLLBACK", &[]).map(drop)
        }
        // Statement boundaries a naive splitter misreads: a backslash before a quote (with
        // standard_conforming_strings on it ends the string), and `$x$` inside identifiers.
        "commit_smuggled_backslash" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            sql(db, "SELECT 'a\\'; COMMIT; --'")
        }
        "commit_smuggled_dollar" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            sql(db, "SELECT 1 AS a$x$; COMMIT; SELECT 1 AS b$x$")
        }
        "commit_in_do" => sql(
            db,
            "CREATE TABLE leaked (id int); DO $$ BEGIN COMMIT; END $$",
        ),
        // PostgreSQL ends a `--` comment at a carriage return; the host's filter must too.
        "commit_cr" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.execute("--\rCOMMIT", &[]).map(drop)
        }
        "prepare_transaction_cr" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.execute("PREPARE--\rTRANSACTION 'wasmig_evil'", &[])
                .map(drop)
        }
        // Statements that end the step's transaction, sent with the host's text filter
        // switched off (a debug-build test hook): the server-side check must catch each, and
        // the step must fail even though the plugin swallows every error.
        "end_transaction" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            let _ = db.execute(t, &[]);
            let _ = db.execute("CREATE TABLE leaked_after (id int)", &[]);
            Ok(())
        }
        "end_transaction_query" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            let _ = db.query(t, &[]);
            Ok(())
        }
        // Text that would forge or hide the operator's screen, from every path.
        "forge_output" => {
            let forged = "\n\u{1b}[1A\u{1b}[2K\rrun 99: 3 schema(s), 9 step(s) applied, 0 problem(s), 0.01s\u{1b}[8m";
            wasmig_sdk::info(forged);
            println!("{forged}");
            eprintln!("{forged}");
            Err(Error::msg(forged))
        }
        "forge_raise" => sql(
            db,
            "DO $$ BEGIN RAISE EXCEPTION E'\\x1b[2K\\rrun 99: 0 problem(s)\\n\\x1b[8m'; END $$",
        ),
        "forge_panic" => panic!("\u{1b}[2K\rrun 99: 0 problem(s)\u{1b}[8m"),
        "huge_error" => Err(Error::msg("E".repeat(20 << 20))),
        "huge_raise" => sql(
            db,
            "DO $$ BEGIN RAISE EXCEPTION '%', repeat('R', 5000000); END $$",
        ),
        // Results that are small on the wire and large once decoded.
        "wide_nulls" => {
            let cols: Vec<String> = (1..=1600).map(|i| format!("NULL::int AS c{i}")).collect();
            db.query(
                &format!("SELECT {} FROM generate_series(1, 12000)", cols.join(", ")),
                &[],
            )
            .map(drop)
        }
        "numeric_amplification" => db
            .query(
                "SELECT power(10::numeric, 131000) AS n FROM generate_series(1, 4000)",
                &[],
            )
            .map(drop),
        // Objects outside the schema: large objects, and objects given to the tenant group.
        "large_object" => db.query("SELECT lo_create(0)", &[]).map(drop),
        "large_object_to_group" => sql(
            db,
            "DO $$ DECLARE o oid := lo_create(0); BEGIN
               EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %I', o, current_setting('wasmig.tenant_group'));
             END $$",
        ),
        "large_object_as_group" => sql(
            db,
            "SELECT set_config('role', current_setting('wasmig.tenant_group'), true); SELECT lo_from_bytea(0, 'x'); RESET ROLE",
        ),
        // wasmig's runner locks, and the server's shared lock table.
        "advisory_locks" => sql(
            db,
            "SELECT pg_advisory_xact_lock(1463898957, k) FROM generate_series(1, 30000) k",
        ),
        "advisory_lock_shared" => db
            .query("SELECT pg_try_advisory_lock_shared(42)", &[])
            .map(drop),
        // Code planted in the tenant schema that would run as whoever touches it (the
        // application role, with every tenant's privileges). A migration has the `schema`
        // capability unless trusted: the server's object guard refuses each.
        "plant_trigger" => sql(
            db,
            &format!(
                "CREATE TABLE bait (id int);
                 CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $f$
                   BEGIN INSERT INTO bait SELECT count(*) FROM {t}.notes; RETURN NEW; END $f$;
                 CREATE TRIGGER steal BEFORE INSERT ON bait FOR EACH ROW EXECUTE FUNCTION steal()"
            ),
        ),
        "plant_rule" => sql(
            db,
            "CREATE TABLE bait (id int); CREATE RULE r AS ON INSERT TO bait DO ALSO NOTIFY app_channel",
        ),
        "plant_policy" => sql(
            db,
            "CREATE TABLE bait (id int); ALTER TABLE bait ENABLE ROW LEVEL SECURITY;
             CREATE POLICY p ON bait USING (pg_notify('app_channel', 'x') IS NULL)",
        ),
        "plant_default" => sql(
            db,
            &format!(
                "CREATE TABLE bait (id int, loot text DEFAULT query_to_xml('SELECT * FROM {t}.notes', true, true, '')::text)"
            ),
        ),
        "plant_check" => sql(
            db,
            "CREATE TABLE bait (id int CHECK (pg_notify('app_channel', 'x') IS NULL))",
        ),
        "plant_domain" => sql(
            db,
            "CREATE DOMAIN bait_d AS int CHECK (set_config('role', 'x', true) IS NOT NULL)",
        ),
        "plant_alter_default" => sql(
            db,
            &format!(
                "CREATE TABLE bait (id int); ALTER TABLE bait ALTER COLUMN id SET DEFAULT nextval(('{t}.notes' || '_id_seq')::regclass)"
            ),
        ),
        "plant_view" => sql(
            db,
            &format!(
                "CREATE VIEW bait AS SELECT query_to_xml('SELECT * FROM {t}.notes', true, true, '') AS loot"
            ),
        ),
        "plant_shadow_view" => sql(
            db,
            "CREATE VIEW currency AS SELECT 'XXX'::text AS code, 'Forged'::text AS name, 2 AS decimals",
        ),
        "plant_shadow_table" => sql(db, "CREATE TABLE country (code text, name text)"),
        "plant_lower_varchar" => sql(
            db,
            "CREATE FUNCTION lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT ''pwned''::text'",
        ),
        "plant_operator" => sql(
            db,
            "CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = texteq)",
        ),
        "plant_in_do" => sql(
            db,
            "DO $$ BEGIN EXECUTE 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS ''SELECT 1'''; END $$",
        ),
        // What a plugin with the `schema` capability may create: plain tables, identity and
        // serial columns, built-in defaults and checks, indexes, views, types.
        "allowed_schema" => sql(
            db,
            "CREATE TABLE item (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, s serial,
                                name text NOT NULL DEFAULT '' CHECK (length(name) < 100),
                                at timestamptz DEFAULT now(), u uuid DEFAULT gen_random_uuid());
             CREATE INDEX item_name ON item (lower(name)) WHERE name <> '';
             CREATE VIEW item_names AS SELECT id, upper(name) AS name FROM item;
             CREATE TYPE mood AS ENUM ('ok', 'meh'); CREATE DOMAIN positive AS int CHECK (VALUE > 0);
             CREATE TABLE behaved (id int)",
        ),
        // Fill the server's shared lock table: every table created in one transaction holds
        // locks until it ends.
        "many_locks" => sql(
            db,
            "DO $$ BEGIN FOR i IN 1..3000 LOOP EXECUTE format('CREATE TABLE hoard_%s (id int)', i); END LOOP;
                 PERFORM pg_sleep(30); END $$",
        ),
        // Builtins that are stable rather than immutable read what the session running them
        // sees: as a default, the application's other sessions' queries.
        "plant_stable_default" => sql(
            db,
            "CREATE TABLE bait (id int, loot text DEFAULT pg_stat_get_backend_activity(1))",
        ),
        // Session state left for the next plugin's step on the same connection: a temporary
        // table (first on the search path) and a role. The first plugin to run leaves them; a
        // later one that finds either records it in a real table.
        "carry_over" => {
            let rows = db.query(
                "SELECT to_regclass('pg_temp.marker') IS NOT NULL AS temp,
                        current_user <> session_user AS role",
                &[],
            )?;
            let row = rows.first().ok_or_else(|| Error::msg("no row"))?;
            let (temp, role): (bool, bool) = (row.get("temp")?, row.get("role")?);
            if temp || role {
                sql(db, "RESET ROLE; CREATE TABLE carried_over (id int)")
            } else {
                sql(
                    db,
                    "CREATE TEMP TABLE marker (x int);
                     SELECT set_config('role', current_setting('wasmig.tenant_group'), false)",
                )
            }
        }
        // Temporary files: a sort far larger than its work_mem.
        "temp_flood" => sql(
            db,
            // The default work_mem (4 MB) is far below what this sort needs: it spills.
            "SELECT count(*) FROM (SELECT g, md5(g::text) FROM generate_series(1, 300000) g ORDER BY 2 DESC) s",
        ),
        // Disk: bytes written to the schema (the write bound, `max_write_mb`). One statement
        // (checked before the ledger row), many statements into an existing table and into
        // a large object (checked between statements), a temporary table.
        "write_big_table" => sql(
            db,
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g + 1)::text) AS pad
               FROM generate_series(1, 200000) g",
        ),
        "write_many_rows" => {
            for _ in 0..5000 {
                db.execute(
                    "INSERT INTO attack_plan (attack, target)
                     SELECT 'pad', string_agg(md5(random()::text), '') FROM generate_series(1, 2000)",
                    &[],
                )?;
            }
            Ok(())
        }
        "write_large_object" => {
            let rows = db.query("SELECT lo_create(0)::int8 AS lo", &[])?;
            let lo: i64 = rows.first().ok_or_else(|| Error::msg("no row"))?.get("lo")?;
            for i in 0..5000i64 {
                db.execute(
                    "SELECT lo_put($1::oid, $2 * 64000, decode(string_agg(md5(random()::text), ''), 'hex'))
                       FROM generate_series(1, 4000)",
                    &[&lo, &i],
                )?;
            }
            Ok(())
        }
        // Close its own step record first, which held the start of the write bound.
        "write_after_closing_step" => sql(
            db,
            "SELECT wasmig_api.begin_step(NULL);
             INSERT INTO attack_plan (attack, target)
             SELECT 'pad', md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 200000) g",
        ),
        "write_temp_table" => sql(
            db,
            "CREATE TEMP TABLE scratch AS SELECT g, md5(g::text) || md5((g + 1)::text) AS pad
               FROM generate_series(1, 200000) g",
        ),
        // Time and resources.
        "pg_sleep" => db.query("SELECT pg_sleep(600)", &[]).map(drop),
        "pg_sleep_no_timeout" => sql(db, "SET statement_timeout = 0; SELECT pg_sleep(600)"),
        "infinite_loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "memory_bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![7u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "huge_result" => db
            .query(
                "SELECT repeat('x', 100000) FROM generate_series(1, 1000)",
                &[],
            )
            .map(drop),
        "statement_flood" => loop {
            db.execute("SELECT 1", &[])?;
        },
        "log_flood" => {
            let line = "flood ".repeat(170);
            for i in 0..20_000 {
                wasmig_sdk::info(&format!("{i} {line}"));
                println!("{i} {line}");
                eprintln!("{i} {line}");
            }
            sql(db, "CREATE TABLE flooded (id int)")
        }
        "panic" => panic!("hostile plugin panics on purpose"),
        // Not attacks: mistakes, for the error the operator reads (line, caret, detail).
        "syntax_error" => sql(
            db,
            "CREATE TABLE fine (id int);\nCREATE TABLE broken ((id int);\nCREATE TABLE never (id int);",
        ),
        "syntax_error_query" => db.query("SELECT 1,\n       2 +", &[]).map(drop),
        "detail_error" => sql(
            db,
            "CREATE TABLE uniq (id int PRIMARY KEY); INSERT INTO uniq VALUES (1), (1);",
        ),
        // Third pass. Views that would read with the rights of whoever queries them.
        "view_pg_stats" => sql(
            db,
            "CREATE TABLE customer (email text); ALTER TABLE customer RENAME TO customer_old;
             CREATE VIEW customer AS SELECT most_common_vals::text AS email FROM pg_catalog.pg_stats",
        ),
        "view_pg_stat_activity" => sql(
            db,
            "CREATE VIEW customer AS SELECT query AS email FROM pg_catalog.pg_stat_activity",
        ),
        "view_information_schema" => sql(
            db,
            "CREATE VIEW customer AS SELECT table_name::text AS email FROM information_schema.tables",
        ),
        "view_in_subquery" => sql(
            db,
            "CREATE VIEW customer AS SELECT (SELECT max(query) FROM pg_stat_activity) AS email",
        ),
        "view_in_cte" => sql(
            db,
            "CREATE VIEW customer AS WITH a AS (SELECT usename::text AS u FROM pg_stat_activity) SELECT u AS email FROM a",
        ),
        "view_replaced" => sql(
            db,
            "CREATE TABLE customer_base (email text);
             CREATE VIEW customer AS SELECT email FROM customer_base;
             CREATE OR REPLACE VIEW customer AS SELECT query AS email FROM pg_stat_activity",
        ),
        "matview_pg_stats" => sql(
            db,
            "CREATE MATERIALIZED VIEW customer AS SELECT most_common_vals::text AS email FROM pg_stats",
        ),
        "view_invoker_shared" => sql(
            db,
            &format!("CREATE VIEW customer WITH (security_invoker = true) AS SELECT * FROM {t}.currency"),
        ),
        "view_alter_invoker" => sql(
            db,
            "CREATE TABLE customer_base (email text);
             CREATE VIEW customer AS SELECT email FROM customer_base;
             ALTER VIEW customer SET (security_invoker = on)",
        ),
        "view_alter_table_invoker" => sql(
            db,
            "CREATE TABLE customer_base (email text);
             CREATE VIEW customer AS SELECT email FROM customer_base;
             ALTER TABLE customer SET (security_invoker = 1)",
        ),
        // Allowed: a shared table granted to tenants, read as the tenant.
        "view_granted_shared" => sql(
            db,
            &format!("CREATE VIEW money AS SELECT * FROM {t}.currency"),
        ),
        // Transaction control spelt past a first-keyword filter.
        "commit_empty_statement" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.execute(";COMMIT", &[]).map(drop)
        }
        "commit_and_chain_commented" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.execute("/* x */ ;; -- y\n COMMIT AND CHAIN", &[])
                .map(drop)
        }
        "end_in_query" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.query(";END", &[]).map(drop)
        }
        "commit_in_batch_piece" => sql(db, "CREATE TABLE leaked (id int);\n;COMMIT;"),
        "prepare_as_group" => {
            sql(db, "CREATE TABLE leaked (id int)")?;
            db.query(
                "SELECT set_config('role', current_setting('wasmig.tenant_group'), false)",
                &[],
            )?;
            db.execute(";PREPARE TRANSACTION 'wasmig_evil'", &[])
                .map(drop)
        }
        // What one backend may allocate, and what it holds until commit.
        "set_work_mem" => db.execute("SET LOCAL work_mem = '64GB'", &[]).map(drop),
        "set_config_hash_mem" => db
            .query("SELECT set_config('hash_mem_multiplier', '1000', true)", &[])
            .map(drop),
        "notify_flood" => db
            .query(
                "SELECT pg_notify('c', g::text) FROM generate_series(1, 700000) g",
                &[],
            )
            .map(drop),
        "notify_statement" => db.execute("NOTIFY c, 'x'", &[]).map(drop),
        "memory_do_notify" => sql(
            db,
            "DO $$ BEGIN FOR i IN 1..400000 LOOP
               EXECUTE format('NOTIFY c, %L', i::text || repeat('n', 7000));
             END LOOP; END $$",
        ),
        // Temporary files: many parallel workers, each with the session's temp_file_limit.
        "temp_parallel" => sql(
            db,
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g + 1)::text) AS pad
               FROM generate_series(1, 400000) g;
             ANALYZE big;
             DO $$ BEGIN
               SET LOCAL max_parallel_workers_per_gather = 4;
               SET LOCAL parallel_setup_cost = 0;
               SET LOCAL parallel_tuple_cost = 0;
               SET LOCAL min_parallel_table_scan_size = 0;
               SET LOCAL work_mem = '64kB';
               PERFORM count(*) FROM (SELECT * FROM big ORDER BY pad DESC) s;
             END $$",
        ),
        // The write bound: catalog text is written too.
        "comment_huge" => sql(
            db,
            "DO $$ BEGIN EXECUTE format('COMMENT ON TABLE attack_plan IS %L', repeat('c', 40000000)); END $$",
        ),
        "comment_many" => sql(
            db,
            "CREATE TABLE commented (id int);
             DO $$ BEGIN FOR i IN 1..200 LOOP
               EXECUTE format('COMMENT ON TABLE commented IS %L', i::text || repeat('c', 60000));
             END LOOP; END $$",
        ),
        "view_huge_definition" => sql(
            db,
            "DO $$ BEGIN EXECUTE format('CREATE VIEW wide AS SELECT %L AS v', repeat('v', 3000000)); END $$",
        ),
        // The one-time token: never in a query text the plugin can read.
        "token_from_query" => sql(
            db,
            "SELECT wasmig_api.begin_step(decode(substring(current_query() from '[0-9a-f]{64}'), 'hex'))",
        ),
        // Code that would run at COMMIT, after the checks.
        "cursor_with_hold" => sql(
            db,
            "CREATE SEQUENCE held;
             DECLARE c CURSOR WITH HOLD FOR SELECT nextval('held') FROM generate_series(1, 100000)",
        ),
        // Types nested deeper than the host's driver can resolve.
        "deep_domains" => sql(
            db,
            "CREATE DOMAIN d0 AS int;
             DO $$ BEGIN FOR i IN 1..200 LOOP
               EXECUTE format('CREATE DOMAIN d%s AS d%s[]', i, i - 1);
             END LOOP; END $$;
             SELECT NULL::d200",
        ),
        "deep_composites" => sql(
            db,
            "CREATE TYPE c0 AS (x int);
             DO $$ BEGIN FOR i IN 1..200 LOOP
               EXECUTE format('CREATE TYPE c%s AS (x c%s)', i, i - 1);
             END LOOP; END $$;
             SELECT NULL::c200",
        ),
        // Two chains each allowed, then the bottom of one given a column of the other's top:
        // the types above it are now nested far deeper than the type that changed.
        "deep_graft" => sql(
            db,
            "CREATE TYPE leaf0 AS (x int);
             CREATE TYPE b0 AS (x int);
             DO $$ BEGIN FOR i IN 1..14 LOOP
               EXECUTE format('CREATE TYPE a%s AS (x %s)', i, CASE WHEN i = 1 THEN 'leaf0' ELSE 'a' || (i - 1) END);
               EXECUTE format('CREATE TYPE b%s AS (x b%s)', i, i - 1);
             END LOOP; END $$;
             ALTER TYPE leaf0 ADD ATTRIBUTE y b14;
             SELECT NULL::a14",
        ),
        // An enum with more labels than the driver should read.
        "huge_enum" => sql(
            db,
            "DO $$ BEGIN EXECUTE 'CREATE TYPE big AS ENUM (' ||
               (SELECT string_agg(quote_literal('l' || g), ',') FROM generate_series(1, 20000) g) || ')'; END $$;
             SELECT NULL::big",
        ),
        // Catalog rows that take no file space: 1,600-column empty tables.
        "wide_tables" => sql(
            db,
            "DO $$ BEGIN FOR t IN 1..60 LOOP
               EXECUTE 'CREATE TABLE wide' || t || ' (' ||
                 (SELECT string_agg('c' || g || ' int', ',') FROM generate_series(1, 1600) g) || ')';
             END LOOP; END $$",
        ),
        "statistics_target" => sql(
            db,
            "CREATE TABLE statted (v text); ALTER TABLE statted ALTER COLUMN v SET STATISTICS 10000",
        ),
        "copy_out" => db.execute("COPY (SELECT 1) TO STDOUT", &[]).map(drop),
        "alter_role_statement" => db
            .execute("ALTER ROLE CURRENT_USER SET work_mem = '64GB'", &[])
            .map(drop),
        "nontx_big_rows" => sql(
            db,
            "SELECT repeat('x', 60000000) FROM generate_series(1, 40)",
        ),
        "deep_tables" => sql(
            db,
            "CREATE TABLE t0 (x int);
             DO $$ BEGIN FOR i IN 1..200 LOOP
               EXECUTE format('CREATE TABLE t%s (x t%s)', i, i - 1);
             END LOOP; END $$;
             SELECT NULL::t200",
        ),
        // Error and notice text the server sends: each field a plugin can make huge.
        "huge_raise_fields" => sql(
            db,
            "DO $$ BEGIN RAISE EXCEPTION '%', repeat('M', 90000000)
               USING DETAIL = repeat('D', 90000000), HINT = repeat('H', 90000000); END $$",
        ),
        "huge_syntax_error" => {
            let mut statement = String::with_capacity((100 << 20) + 16);
            statement.push_str("SELECT 1");
            statement.extend(std::iter::repeat_n(' ', 100 << 20));
            statement.push_str(" +");
            db.execute(&statement, &[]).map(drop)
        }
        "notice_flood" => sql(
            db,
            "DO $$ BEGIN FOR i IN 1..300 LOOP RAISE NOTICE '%', repeat(E'n\\n', 500000); END LOOP; END $$;
             CREATE TABLE noticed (id int)",
        ),
        "huge_row" => db
            .query("SELECT repeat('x', 200000000)", &[])
            .map(drop),
        other => Err(Error::msg(format!("unknown attack `{other}`"))),
    }
}
