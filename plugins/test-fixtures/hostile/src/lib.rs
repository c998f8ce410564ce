//! Test fixture: a plugin that attacks its host. Its one step reads which attack to run from
//! `attack_plan (attack text, target text)` in its own schema (written by the test), so each
//! attack is real plugin code running under the real sandbox. `none` behaves.
use wasmig_sdk::{Db, Error, Plugin, code_step, export_plugin};

fn plan(db: &Db) -> Result<(String, String), Error> {
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

fn attack(db: &Db, name: &str, t: &str) -> Result<(), Error> {
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
                "SELECT wasmig_api.record_step(decode(repeat('00', 32), 'hex'), 1)",
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
        other => Err(Error::msg(format!("unknown attack `{other}`"))),
    }
}

fn plugin() -> Plugin {
    Plugin::migration("hostile").step(code_step!("0001_attack", "Attack the host", |db| {
        let (name, target) = plan(db)?;
        attack(db, &name, &target)
    }))
}

export_plugin!(plugin);
