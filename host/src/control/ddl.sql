CREATE SCHEMA IF NOT EXISTS wasmig;
REVOKE ALL ON SCHEMA wasmig FROM PUBLIC;
CREATE TABLE IF NOT EXISTS wasmig.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS wasmig.secret (
    id int PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL CHECK (length(key) = 32)
);
CREATE TABLE IF NOT EXISTS wasmig.managed_schema (
    schema_name text PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('shared', 'tenant')),
    role_name text NOT NULL UNIQUE,
    display_name text,
    domain text,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The shared schema, found by every step's `begin_step` without reading every tenant's row.
CREATE INDEX IF NOT EXISTS managed_schema_shared ON wasmig.managed_schema (scope)
    WHERE scope = 'shared';
-- Tenant labels (`wasmig tenant label`), a JSON object of strings: `labels->>'region'`.
ALTER TABLE wasmig.managed_schema
    ADD COLUMN IF NOT EXISTS labels jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(labels) = 'object');
-- The tenant's own application role (`init --tenant-app-roles`): the application's data
-- rights on this schema alone, which the application role may `SET ROLE` to.
ALTER TABLE wasmig.managed_schema ADD COLUMN IF NOT EXISTS app_role text;
CREATE OR REPLACE VIEW wasmig.tenant AS
    SELECT schema_name, display_name AS name, domain, role_name, created_at, labels
    FROM wasmig.managed_schema WHERE scope = 'tenant';
CREATE TABLE IF NOT EXISTS wasmig.run (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command text NOT NULL,
    arguments jsonb NOT NULL DEFAULT '[]',
    os_user text,
    hostname text,
    db_user text NOT NULL DEFAULT current_user,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome text,
    applied int,
    failed int
);
CREATE TABLE IF NOT EXISTS wasmig.ledger (
    schema_name text NOT NULL,
    plugin text NOT NULL,
    step_id text NOT NULL,
    checksum text NOT NULL,
    artifact_checksum text NOT NULL,
    plugin_version text NOT NULL,
    applied_at timestamptz NOT NULL,
    duration_ms double precision NOT NULL,
    -- Informational, no foreign key: a key check would lock the run row from every step's
    -- transaction (contention across jobs, and a cold trigger plan in every new session).
    run_id bigint,
    mac text NOT NULL,
    PRIMARY KEY (schema_name, plugin, step_id)
);
-- Version 1 had that key. Checked first: an ALTER TABLE would lock the ledger against every
-- running step even when there is nothing to drop.
DO $upgrade$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                WHERE conrelid = 'wasmig.ledger'::regclass AND conname = 'ledger_run_id_fkey') THEN
        ALTER TABLE wasmig.ledger DROP CONSTRAINT ledger_run_id_fkey;
    END IF;
END
$upgrade$;
CREATE TABLE IF NOT EXISTS wasmig.failure (
    run_id bigint REFERENCES wasmig.run (run_id),
    schema_name text NOT NULL,
    plugin text NOT NULL,
    step_id text NOT NULL,
    sqlstate text,
    message text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS failure_schema_idx ON wasmig.failure (schema_name, failed_at);
-- A failure an operator resolved (`wasmig resolve`): when, by whom (run), and why.
ALTER TABLE wasmig.failure ADD COLUMN IF NOT EXISTS resolved_at timestamptz,
                           ADD COLUMN IF NOT EXISTS resolved_run bigint,
                           ADD COLUMN IF NOT EXISTS resolution text;
-- An operator's hold (`wasmig hold`): the schema (only `plugin`'s steps there, when not '')
-- stays where it is until released; `migrate` and `verify --fix` plan around it.
CREATE TABLE IF NOT EXISTS wasmig.hold (
    schema_name text NOT NULL,
    plugin text NOT NULL DEFAULT '',
    reason text NOT NULL,
    held_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    run_id bigint,
    PRIMARY KEY (schema_name, plugin)
);
-- What each schema a run worked on came to (`wasmig history --run N`), written at its end;
-- schemas that were already up to date are not listed.
CREATE TABLE IF NOT EXISTS wasmig.run_schema (
    run_id bigint NOT NULL,
    schema_name text NOT NULL,
    outcome text NOT NULL,
    retries int NOT NULL DEFAULT 0,
    duration_ms double precision NOT NULL,
    PRIMARY KEY (run_id, schema_name)
);
CREATE TABLE IF NOT EXISTS wasmig.step_grant (
    token_hash bytea PRIMARY KEY,
    role_name text NOT NULL,
    schema_name text NOT NULL,
    plugin text NOT NULL,
    step_id text NOT NULL,
    checksum text NOT NULL,
    artifact_checksum text NOT NULL,
    plugin_version text NOT NULL,
    run_id bigint NOT NULL,
    mac text NOT NULL,
    action text NOT NULL DEFAULT 'apply' CHECK (action IN ('apply', 'revert', 'rerun')),
    expires_at timestamptz NOT NULL
);
-- Databases initialised by an earlier build lack the column (checked first, as above).
DO $upgrade$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                    WHERE attrelid = 'wasmig.step_grant'::regclass AND attname = 'action'
                      AND NOT attisdropped) THEN
        ALTER TABLE wasmig.step_grant ADD COLUMN action text NOT NULL DEFAULT 'apply'
            CHECK (action IN ('apply', 'revert'));
    END IF;
END
$upgrade$;
-- Version 6 adds `rerun` (a repeatable seed step run again; its ledger row is rewritten).
DO $upgrade$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                WHERE conrelid = 'wasmig.step_grant'::regclass
                  AND conname = 'step_grant_action_check'
                  AND pg_catalog.pg_get_constraintdef(oid) NOT LIKE '%rerun%') THEN
        ALTER TABLE wasmig.step_grant DROP CONSTRAINT step_grant_action_check;
        ALTER TABLE wasmig.step_grant ADD CONSTRAINT step_grant_action_check
            CHECK (action IN ('apply', 'revert', 'rerun'));
    END IF;
END
$upgrade$;
-- The SQL text of each SQL step a command is about to record, once per distinct checksum
-- (10,000 tenants on the same step store it once), written by the operator before the run:
-- what `wasmig diff` compares with what the loaded plugin says now. The host keeps a text
-- only when the step's fingerprint covers it.
CREATE TABLE IF NOT EXISTS wasmig.step_text (
    checksum text PRIMARY KEY,
    plugin text NOT NULL,
    step_id text NOT NULL,
    sql text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The capability tier a step runs with (what the operator granted its plugin), and its own
-- temp_file_limit (the plugin's `max_temp_mb`), set by `begin_step`.
DO $upgrade$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                    WHERE attrelid = 'wasmig.step_grant'::regclass AND attname = 'tier'
                      AND NOT attisdropped) THEN
        ALTER TABLE wasmig.step_grant
            ADD COLUMN tier text NOT NULL DEFAULT 'full' CHECK (tier IN ('data', 'schema', 'full')),
            ADD COLUMN IF NOT EXISTS temp_limit_kb bigint;
    END IF;
END
$upgrade$;
-- The most bytes a step may grow its schema by (its plugin's `max_write_mb`), checked by
-- `wasmig.enforce_write_limit`.
ALTER TABLE wasmig.step_grant ADD COLUMN IF NOT EXISTS write_limit bigint;
-- The step a schema-role session is running, with its tier and write bound: written by
-- `begin_step`, read by the object guard and the step checks. One row per session (`pid`, and
-- `backend_start` against a reused pid), kept when the step closes (`open = false`) with the
-- schema's size at its end, which the session's next step starts its write bound from.
-- Unlogged: it never needs to outlive the server.
CREATE UNLOGGED TABLE IF NOT EXISTS wasmig.active_step (
    pid int PRIMARY KEY,
    txid bigint NOT NULL,
    backend_start timestamptz NOT NULL,
    role_name text NOT NULL,
    role_oid oid NOT NULL,
    schema_name text NOT NULL,
    home_nsp oid NOT NULL,
    shared_nsp oid,
    tier text NOT NULL,
    plugin text NOT NULL,
    step_id text NOT NULL
);
-- The step's write bound: the schema's bytes when it began, and the most it may add.
ALTER TABLE wasmig.active_step ADD COLUMN IF NOT EXISTS start_bytes bigint,
                               ADD COLUMN IF NOT EXISTS write_limit bigint;
-- Version 7: rows outlive their step (`open`), carry the size at the step's end
-- (`end_bytes`), count the catalog text the step stored (`catalog_bytes`: comments, view
-- definitions, defaults; not in the schema's files) and remember what the role's groups, and
-- the role outside its schema, owned when the step began (`owned_before`), so a step is
-- blamed only for what it created.
ALTER TABLE wasmig.active_step ADD COLUMN IF NOT EXISTS open boolean NOT NULL DEFAULT true,
                               ADD COLUMN IF NOT EXISTS end_bytes bigint,
                               ADD COLUMN IF NOT EXISTS catalog_bytes bigint NOT NULL DEFAULT 0,
                               ADD COLUMN IF NOT EXISTS group_oids oid[],
                               ADD COLUMN IF NOT EXISTS owned_before oid[];
-- Version 7: the step role's password and settings when the step began (`wasmig.role_state`):
-- `ALTER ROLE` on itself would outlive the step.
ALTER TABLE wasmig.active_step ADD COLUMN IF NOT EXISTS role_state text;
-- A grant opens one step, once (`begin_step`): a plugin that learnt its token cannot restart
-- its step's write bound. Rolled back with the step's transaction, so a retry may open it.
ALTER TABLE wasmig.step_grant ADD COLUMN IF NOT EXISTS begun boolean NOT NULL DEFAULT false;
-- A schema role being restored by `wasmig restore` (pg_restore logs in as it, outside any
-- step): the object guard lets its DDL through until the restore ends or the row expires.
CREATE TABLE IF NOT EXISTS wasmig.restoring (
    role_name text PRIMARY KEY,
    -- sha256 of the nonce the restore passes to pg_restore's session (`wasmig.restore_nonce`).
    nonce_hash bytea NOT NULL,
    expires_at timestamptz NOT NULL
);
-- The only thing schema roles may use: a schema of its own, holding one function.
CREATE SCHEMA IF NOT EXISTS wasmig_api;
REVOKE ALL ON SCHEMA wasmig_api FROM PUBLIC;
-- Raises the refusal; plpgsql, so only the failure path pays for compiling it.
CREATE OR REPLACE FUNCTION wasmig_api.no_valid_grant() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'wasmig: no valid step grant for this token and role'
        USING ERRCODE = '42501';
END
$fn$;
-- The calling session's open step, if it has one (a row left by an earlier session with the
-- same pid is not it). Every per-step function finds the step through this one lookup by
-- primary key.
DROP FUNCTION IF EXISTS wasmig_api.require_step_record();
DROP FUNCTION IF EXISTS wasmig_api.leftover();
DROP FUNCTION IF EXISTS wasmig_api.check_step(text);
DROP FUNCTION IF EXISTS wasmig.enforce_write_limit();
CREATE OR REPLACE FUNCTION wasmig.my_step() RETURNS wasmig.active_step
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s wasmig.active_step;
BEGIN
    -- PL/pgSQL rather than SQL: the plan is kept for the session (a SQL function with a SET
    -- clause is planned at every call, and this one runs once per DDL command).
    SELECT a.* INTO s FROM wasmig.active_step a
     WHERE a.pid = pg_catalog.pg_backend_pid() AND a.open
       AND a.backend_start = (SELECT b.backend_start
                                FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) b);
    RETURN s;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.my_step() FROM PUBLIC;
-- What the roles `p_roles` (a step's role and its groups) own in this database that is not
-- the step role's own object in its schema: large objects (which belong to no schema and
-- would survive `tenant drop`) and anything a group owns. Looked up through
-- `pg_shdepend`'s reference index, one role at a time: the cost is what these roles own,
-- never what the fleet owns.
CREATE OR REPLACE FUNCTION wasmig.owned_outside(p_role oid, p_roles oid[]) RETURNS oid[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    RETURN (
    SELECT coalesce(array_agg(d.objid), '{}')
      FROM pg_catalog.pg_shdepend d
     WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND d.refobjid = ANY (p_roles)
       AND d.deptype = 'o'
       -- Compared as a number, so no plan can take the database's own index (which lists
       -- every object of the fleet) instead of the owner's.
       AND d.dbid::int8 = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())::int8
       AND (d.refobjid <> p_role OR d.classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass));
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.owned_outside(oid, oid[]) FROM PUBLIC;
-- What the open step `s` left outside its schema that was not there when it began, named for
-- the error, or NULL. Inside a transactional step's transaction, so it is rolled back with it.
CREATE OR REPLACE FUNCTION wasmig.leftover(s wasmig.active_step) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    RETURN (
    SELECT format('%s (owned by role %s)',
                  pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), d.refobjid::regrole)
      FROM pg_catalog.pg_shdepend d
     WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND d.refobjid = ANY (s.role_oid || s.group_oids)
       AND d.deptype = 'o'
       AND d.dbid::int8 = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())::int8
       AND (d.refobjid <> s.role_oid OR d.classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass)
       AND d.objid <> ALL (coalesce(s.owned_before, '{}'))
     LIMIT 1);
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.leftover(wasmig.active_step) FROM PUBLIC;
-- Refuses a step that grew its schema, with the catalog text it stored, by more than its write
-- limit since it began (SQLSTATE 53400, which the host reports as the limit). Returns the
-- schema's size now (NULL when the bound is not measured).
CREATE OR REPLACE FUNCTION wasmig.enforce_write_limit(s wasmig.active_step) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    now_bytes bigint;
    grown bigint;
BEGIN
    IF s.start_bytes IS NULL OR s.write_limit IS NULL THEN
        RETURN NULL;
    END IF;
    now_bytes := wasmig.schema_bytes(s.home_nsp, s.role_oid);
    grown := now_bytes + s.catalog_bytes - s.start_bytes;
    IF grown > s.write_limit THEN
        RAISE EXCEPTION 'wasmig: step `%` of plugin `%` grew its schema by % MiB, more than its limit of % MiB (max_write_mb)',
                        s.step_id, s.plugin, grown / 1048576, s.write_limit / 1048576
            USING ERRCODE = '53400',
                  HINT = format('if the step must write that much, raise its limit: --plugin-limit %s:max_write_mb=N (or `limits` in wasmig.toml)', s.plugin);
    END IF;
    RETURN now_bytes;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.enforce_write_limit(wasmig.active_step) FROM PUBLIC;
-- What a role may change about itself with `ALTER ROLE` (its password, with a superuser owner
-- who may read it, marked `p:`; its settings in every database), as one text to compare.
CREATE OR REPLACE FUNCTION wasmig.role_state(p_role oid, p_with_password boolean) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    pw text := '';
BEGIN
    -- Only a superuser may read pg_authid: without one, the settings alone.
    IF p_with_password THEN
        SELECT coalesce(rolpassword, '') INTO pw FROM pg_catalog.pg_authid WHERE oid = p_role;
    END IF;
    RETURN CASE WHEN p_with_password THEN 'p:' ELSE '' END
        || pg_catalog.md5(pw || '|' || coalesce(
               (SELECT string_agg(setdatabase::text || ':' || setconfig::text, ',' ORDER BY setdatabase)
                  FROM pg_catalog.pg_db_role_setting WHERE setrole = p_role), ''));
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.role_state(oid, boolean) FROM PUBLIC;
-- The checks before a step's ledger write, and its close: the step must still be open (a
-- plugin that closed its own step with `begin_step(NULL)` dropped its bounds), its
-- transaction must be the one its SQL ran in (`p_xid`, when the host knows it), it must have
-- left nothing outside its schema, and it must be within its write bound. The step is then
-- closed, keeping the schema's size for the session's next step.
CREATE OR REPLACE FUNCTION wasmig.close_step(p_xid text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s wasmig.active_step;
    left_behind text;
    size_now bigint;
BEGIN
    s := wasmig.my_step();
    IF s.pid IS NULL THEN
        RAISE EXCEPTION 'wasmig: the step closed its own step record (wasmig_api.begin_step), so its bounds cannot be checked; the step is refused'
            USING ERRCODE = '42501';
    END IF;
    IF p_xid IS NOT NULL AND p_xid <> pg_catalog.txid_current()::text THEN
        RAISE EXCEPTION 'wasmig: the step''s transaction ended before the step was recorded'
            USING ERRCODE = '25000';
    END IF;
    -- A role's password and settings outlive the step: a step may not change them (a
    -- transactional step's change rolls back with it; the operator restores a
    -- non-transactional one's).
    IF s.role_state IS NOT NULL
       AND wasmig.role_state(s.role_oid, s.role_state LIKE 'p:%') <> s.role_state THEN
        RAISE EXCEPTION 'wasmig: the step changed its own role (ALTER ROLE: its password or settings), which would outlive the step'
            USING ERRCODE = '42501';
    END IF;
    left_behind := wasmig.leftover(s);
    IF left_behind IS NOT NULL THEN
        RAISE EXCEPTION 'wasmig: the step left % outside its schema', left_behind
            USING ERRCODE = '42501',
                  HINT = 'plugins may create objects only in their own schema; large objects and objects owned by other roles are refused';
    END IF;
    size_now := wasmig.enforce_write_limit(s);
    UPDATE wasmig.active_step SET open = false, end_bytes = size_now
     WHERE pid = s.pid;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.close_step(text) FROM PUBLIC;
-- The bytes on disk of a schema's relations (tables, indexes, materialized views, sequences
-- and their TOAST), of the calling session's temporary relations, and of the large objects
-- `p_role` owns. Read from the files' sizes (main fork, every 1 GiB segment), never by
-- opening a relation, so it takes no lock; it sees the relations the calling transaction
-- created. Needs a superuser owner (`pg_stat_file`); only SECURITY DEFINER functions of the
-- operator call it.
CREATE OR REPLACE FUNCTION wasmig.file_bytes(p_path text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    total bigint := 0;
    seg int := 0;
    sz bigint;
BEGIN
    LOOP
        sz := (pg_catalog.pg_stat_file(CASE WHEN seg = 0 THEN p_path ELSE p_path || '.' || seg END, true)).size;
        EXIT WHEN sz IS NULL;
        total := total + sz;
        -- A segment below 1 GiB is the last one.
        EXIT WHEN sz < 1073741824;
        seg := seg + 1;
    END LOOP;
    RETURN total;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.file_bytes(text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION wasmig.schema_bytes(p_nsp oid, p_role oid) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
BEGIN
    -- PL/pgSQL rather than SQL: its plan is kept for the session (a SQL function with a SET
    -- clause is planned at every call). The schema's tables, materialized views and
    -- sequences through the dependency each records on its namespace (`pg_depend`'s
    -- reference index), not by scanning `pg_class`, which has no index on the namespace alone
    -- and holds every tenant's relations; then their indexes, TOAST tables and TOAST indexes
    -- by their own indexes. A main file under 1 GiB is read with one `pg_stat_file`; a larger
    -- one segment by segment.
    RETURN (
    WITH own AS (
        SELECT c.oid, c.reltoastrelid FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND d.refobjid IN (p_nsp, pg_catalog.pg_my_temp_schema())
           AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid = 0
           AND c.relnamespace IN (p_nsp, pg_catalog.pg_my_temp_schema())
           AND c.relkind IN ('r', 'm', 'S')
    ), rels AS (
        SELECT oid FROM own
        UNION ALL SELECT reltoastrelid FROM own WHERE reltoastrelid <> 0
        UNION ALL SELECT i.indexrelid FROM pg_catalog.pg_index i JOIN own o ON i.indrelid = o.oid
        UNION ALL SELECT i.indexrelid FROM pg_catalog.pg_index i
                   JOIN own o ON o.reltoastrelid <> 0 AND i.indrelid = o.reltoastrelid
    ), sized AS (
        SELECT f.path, (pg_catalog.pg_stat_file(f.path, true)).size AS size
          FROM (SELECT pg_catalog.pg_relation_filepath(oid) AS path FROM rels) f
         WHERE f.path IS NOT NULL
    )
    SELECT coalesce((SELECT sum(CASE WHEN size >= 1073741824 THEN wasmig.file_bytes(path)
                                     ELSE size END)
                       FROM sized), 0)::bigint
         -- Large objects the role owns, found through its owner dependencies (indexed by
         -- role), not by reading every large object of the database.
         + coalesce((SELECT sum(pg_catalog.octet_length(l.data)) FROM pg_catalog.pg_largeobject l
                      WHERE l.loid IN (SELECT d.objid FROM pg_catalog.pg_shdepend d
                                        WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                                          AND d.refobjid = p_role AND d.deptype = 'o'
                                          AND d.classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass)), 0)::bigint);
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.schema_bytes(oid, oid) FROM PUBLIC;
-- What the host pipelines after a plugin statement now and then: the write bound, checked
-- as the operator (the sizes need `pg_stat_file`).
CREATE OR REPLACE FUNCTION wasmig_api.check_growth() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    s wasmig.active_step := wasmig.my_step();
BEGIN
    IF s.pid IS NOT NULL THEN
        PERFORM wasmig.enforce_write_limit(s);
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.check_growth() FROM PUBLIC;
-- Opens a step for the object guard and the checks: the grant's tier becomes the session's
-- until the step is closed or rolled back. Needs the step's one-time token, which only the
-- host knows (it is sent as a bound parameter, never in a query's text), and opens a grant
-- once. A NULL token closes the session's open step and forgets its size, changing nothing
-- else. Every lookup is by a key of the step's own (token, pid, role, schema name).
CREATE OR REPLACE FUNCTION wasmig_api.begin_step(p_token bytea) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
DECLARE
    g record;
    me_start timestamptz;
    prev record;
    r_oid oid;
    n_oid oid;
    groups oid[];
    start bigint;
    g_super boolean;
BEGIN
    IF p_token IS NULL THEN
        UPDATE wasmig.active_step SET open = false, end_bytes = NULL
         WHERE pid = pg_catalog.pg_backend_pid();
        RETURN;
    END IF;
    -- The write bound and temp_file_limit need a superuser owner (file sizes, a superuser
    -- setting); without one neither is taken (the host says so before the run).
    SELECT rolsuper INTO g_super FROM pg_catalog.pg_roles WHERE rolname = current_user;
    UPDATE wasmig.step_grant SET begun = true
     WHERE token_hash = sha256(p_token) AND role_name = session_user
       AND NOT begun AND expires_at > clock_timestamp()
    RETURNING tier, plugin, step_id, schema_name, temp_limit_kb, write_limit INTO g;
    IF NOT FOUND THEN
        PERFORM wasmig_api.no_valid_grant();
    END IF;
    SELECT b.backend_start INTO me_start
      FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) b;
    SELECT oid INTO r_oid FROM pg_catalog.pg_roles WHERE rolname = session_user;
    SELECT oid INTO n_oid FROM pg_catalog.pg_namespace WHERE nspname = g.schema_name;
    SELECT coalesce(array_agg(m.roleid), '{}') INTO groups
      FROM pg_catalog.pg_auth_members m WHERE m.member = r_oid;
    SELECT s.end_bytes, s.home_nsp INTO prev FROM wasmig.active_step s
     WHERE s.pid = pg_catalog.pg_backend_pid() AND s.backend_start = me_start AND NOT s.open;
    -- The session's previous step ended at a size measured moments ago, in this same
    -- session: that is where this one starts.
    start := CASE WHEN g.write_limit IS NULL OR NOT g_super THEN NULL
                  WHEN prev.end_bytes IS NOT NULL AND prev.home_nsp = n_oid THEN prev.end_bytes
                  ELSE wasmig.schema_bytes(n_oid, r_oid) END;
    INSERT INTO wasmig.active_step AS s
           (pid, txid, backend_start, role_name, role_oid, schema_name, home_nsp, shared_nsp,
            tier, plugin, step_id, start_bytes, write_limit, open, end_bytes, catalog_bytes,
            group_oids, owned_before, role_state)
    VALUES (pg_catalog.pg_backend_pid(), pg_catalog.txid_current(), me_start, session_user,
            r_oid, g.schema_name, n_oid,
            (SELECT sn.oid FROM wasmig.managed_schema m
               JOIN pg_catalog.pg_namespace sn ON sn.nspname = m.schema_name
              WHERE m.scope = 'shared' LIMIT 1),
            g.tier, g.plugin, g.step_id, start, g.write_limit, true, NULL, 0, groups,
            wasmig.owned_outside(r_oid, r_oid || groups), wasmig.role_state(r_oid, g_super))
    ON CONFLICT (pid) DO UPDATE
       SET txid = EXCLUDED.txid, backend_start = EXCLUDED.backend_start,
           role_name = EXCLUDED.role_name, role_oid = EXCLUDED.role_oid,
           schema_name = EXCLUDED.schema_name, home_nsp = EXCLUDED.home_nsp,
           shared_nsp = EXCLUDED.shared_nsp, tier = EXCLUDED.tier, plugin = EXCLUDED.plugin,
           step_id = EXCLUDED.step_id, start_bytes = EXCLUDED.start_bytes,
           write_limit = EXCLUDED.write_limit, open = true, end_bytes = NULL,
           catalog_bytes = 0, group_oids = EXCLUDED.group_oids,
           owned_before = EXCLUDED.owned_before, role_state = EXCLUDED.role_state;
    -- The step's temporary files (its plugin's `max_temp_mb`, else the role's limit), for the
    -- session, so that it holds for a non-transactional step too. PostgreSQL bounds them per
    -- process, and one query may start up to max_worker_processes parallel workers, each with
    -- the session's limit: the step's budget is shared among them all. Only a superuser may
    -- set it (this function runs as its owner, the operator); the role cannot raise it, and
    -- its `RESET ALL` goes back to the role's limit.
    IF g_super THEN
        IF g.temp_limit_kb IS NOT NULL THEN
            PERFORM pg_catalog.set_config('temp_file_limit',
                greatest(g.temp_limit_kb
                         / (1 + pg_catalog.current_setting('max_worker_processes')::int), 64)
                || 'kB', false);
        ELSE
            RESET temp_file_limit;
        END IF;
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.begin_step(bytea) FROM PUBLIC;
-- Consumes the one-time grant and writes the ledger row from the grant's own fields, after
-- the step's checks (`wasmig.close_step`). PL/pgSQL with a generic plan: planned once per
-- session (by the warm-up call, off the step's path), then each call only executes.
DROP FUNCTION IF EXISTS wasmig_api.record_step(bytea, double precision);
CREATE OR REPLACE FUNCTION wasmig_api.record_step(p_token bytea, p_duration_ms double precision, p_xid text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $fn$
DECLARE
    recorded bigint;
    g wasmig.step_grant%ROWTYPE;
BEGIN
    -- A NULL token records nothing: a fresh session calls it so to plan the statements
    -- below before its first step.
    DELETE FROM wasmig.step_grant
     WHERE token_hash = sha256(p_token)
       AND role_name = session_user
       AND action IN ('apply', 'rerun')
       AND expires_at > clock_timestamp()
    RETURNING * INTO g;
    IF g.token_hash IS NULL AND p_token IS NOT NULL THEN
        PERFORM wasmig_api.no_valid_grant();
    END IF;
    -- The checks, in the same transaction as the ledger write (a failure undoes both).
    IF p_token IS NOT NULL THEN
        PERFORM wasmig.close_step(p_xid);
    END IF;
    IF g.action = 'rerun' THEN
        -- A repeatable step run again rewrites its own row: the last checksum, when it
        -- last ran. A row that is gone records nothing, so the step is refused below.
        UPDATE wasmig.ledger
           SET checksum = g.checksum, artifact_checksum = g.artifact_checksum,
               plugin_version = g.plugin_version, applied_at = clock_timestamp(),
               duration_ms = p_duration_ms, run_id = g.run_id, mac = g.mac
         WHERE schema_name = g.schema_name AND plugin = g.plugin AND step_id = g.step_id;
    ELSE
        INSERT INTO wasmig.ledger (schema_name, plugin, step_id, checksum, artifact_checksum,
                                   plugin_version, applied_at, duration_ms, run_id, mac)
        SELECT g.schema_name, g.plugin, g.step_id, g.checksum, g.artifact_checksum,
               g.plugin_version, clock_timestamp(), p_duration_ms, g.run_id, g.mac
         WHERE g.token_hash IS NOT NULL;
    END IF;
    GET DIAGNOSTICS recorded = ROW_COUNT;
    IF recorded <> 1 AND p_token IS NOT NULL THEN
        PERFORM wasmig_api.no_valid_grant();
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.no_valid_grant() FROM PUBLIC;
-- The revert counterpart: consumes a revert grant and removes that step's ledger row.
DROP FUNCTION IF EXISTS wasmig_api.unrecord_step(bytea);
CREATE OR REPLACE FUNCTION wasmig_api.unrecord_step(p_token bytea, p_xid text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
DECLARE
    removed bigint;
BEGIN
    WITH g AS (
        DELETE FROM wasmig.step_grant
         WHERE token_hash = sha256(p_token)
           AND role_name = session_user
           AND action = 'revert'
           AND expires_at > clock_timestamp()
        RETURNING *
    )
    DELETE FROM wasmig.ledger l USING g
     WHERE l.schema_name = g.schema_name AND l.plugin = g.plugin AND l.step_id = g.step_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed <> 1 THEN
        PERFORM wasmig_api.no_valid_grant();
    END IF;
    PERFORM wasmig.close_step(p_xid);
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.unrecord_step(bytea, text) FROM PUBLIC;
-- What a refused step left outside its schema, removed by the operator's session: large
-- objects owned by the schema's role or by a role it belongs to (no tenant may own one, and a
-- non-transactional step's are committed before its check). Returns what it removed, and
-- what it could not remove, described.
CREATE OR REPLACE FUNCTION wasmig.remove_leftovers(p_role text) RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
DECLARE
    r_oid oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = p_role);
    roles oid[];
    lo oid;
    said text[] := '{}';
BEGIN
    IF r_oid IS NULL THEN
        RETURN said;
    END IF;
    roles := r_oid || coalesce((SELECT array_agg(m.roleid) FROM pg_catalog.pg_auth_members m
                                 WHERE m.member = r_oid), '{}');
    FOR lo IN SELECT d.objid FROM pg_catalog.pg_shdepend d
               WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                 AND d.refobjid = ANY (roles) AND d.deptype = 'o'
                 AND d.classid = 'pg_catalog.pg_largeobject'::pg_catalog.regclass
                 AND d.dbid::int8 = (SELECT oid FROM pg_catalog.pg_database
                                      WHERE datname = pg_catalog.current_database())::int8
    LOOP
        BEGIN
            PERFORM pg_catalog.lo_unlink(lo);
            said := said || format('removed large object %s', lo);
        EXCEPTION WHEN OTHERS THEN
            said := said || format('could not remove large object %s: %s', lo, SQLERRM);
        END;
    END LOOP;
    RETURN said;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.remove_leftovers(text) FROM PUBLIC;
-- The application role of tenant `p_schema` (`init --tenant-app-roles`), for the
-- application's tenant switch (`wasmig_api.use_tenant`): '' for the shared schema, NULL for a
-- schema wasmig does not manage as a tenant with such a role.
CREATE OR REPLACE FUNCTION wasmig_api.tenant_app_role(p_schema text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT CASE WHEN m.scope = 'shared' THEN '' ELSE m.app_role END
      FROM wasmig.managed_schema m WHERE m.schema_name = p_schema
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.tenant_app_role(text) FROM PUBLIC;
-- The application's tenant switch: `SET ROLE` to tenant `p_schema`'s application role (the
-- shared schema: back to the application role itself). With its caller's rights, so the
-- server checks that the caller may take that role; whatever the tenant planted (a view, a
-- default, a function) then runs with that tenant's rights alone. Returns the role taken.
CREATE OR REPLACE FUNCTION wasmig_api.use_tenant(p_schema text) RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    r text := wasmig_api.tenant_app_role(p_schema);
BEGIN
    IF r IS NULL THEN
        RAISE EXCEPTION 'wasmig: schema % is not a tenant with an application role of its own', pg_catalog.quote_ident(p_schema)
            USING ERRCODE = '42704',
                  HINT = 'tenants get one when the database was initialised with `wasmig init --tenant-app-roles`';
    END IF;
    PERFORM pg_catalog.set_config('role', CASE WHEN r = '' THEN 'none' ELSE r END, false);
    RETURN r;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.use_tenant(text) FROM PUBLIC;
-- Runs a step's script inside the step's transaction, with the caller's own rights (not a
-- SECURITY DEFINER: it grants nothing a role could not do itself). One statement on the
-- wire however long the script, and PostgreSQL itself refuses COMMIT, ROLLBACK, BEGIN and
-- SAVEPOINT inside it, whatever a client-side splitter makes of the text.
CREATE OR REPLACE FUNCTION wasmig_api.run_script(p_script text) RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    EXECUTE p_script;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.run_script(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wasmig_api.record_step(bytea, double precision, text) FROM PUBLIC;
-- Tenant roles may not hand out privileges (GRANT/REVOKE/default privileges): enforced by an
-- event trigger when the operator can create one (superuser), see `install_guard`.
CREATE OR REPLACE FUNCTION wasmig.guard_tenant_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM wasmig.managed_schema
               WHERE role_name = session_user AND scope = 'tenant') THEN
        RAISE EXCEPTION 'wasmig: % is not allowed in a tenant plugin step', tg_tag
            USING ERRCODE = '42501',
                  HINT = 'tenant plugins may not grant or revoke privileges; the application role gets its privileges from wasmig';
    END IF;
END
$fn$;
-- How deeply a type nests other types (a domain its base type, an array its element, a range
-- its subtype, a composite type its fields), counting only types that are not built in and
-- stopping past 40 levels. Each lookup is by a type's own key.
CREATE OR REPLACE FUNCTION wasmig.type_depth(p_type oid) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    depth int;
BEGIN
    -- PL/pgSQL, so the recursive query is planned once per session.
    WITH RECURSIVE walk(t, depth) AS (
        SELECT p_type, 1
        UNION
        SELECT n.t, w.depth + 1
          FROM walk w
          CROSS JOIN LATERAL (
              SELECT ty.typbasetype AS t FROM pg_catalog.pg_type ty WHERE ty.oid = w.t
              UNION ALL
              SELECT ty.typelem FROM pg_catalog.pg_type ty WHERE ty.oid = w.t
              UNION ALL
              SELECT rg.rngsubtype FROM pg_catalog.pg_range rg WHERE rg.rngtypid = w.t
              UNION ALL
              SELECT rg.rngtypid FROM pg_catalog.pg_range rg WHERE rg.rngmultitypid = w.t
              UNION ALL
              SELECT at.atttypid FROM pg_catalog.pg_type ty
                JOIN pg_catalog.pg_attribute at ON at.attrelid = ty.typrelid
               WHERE ty.oid = w.t AND ty.typrelid <> 0 AND at.attnum > 0 AND NOT at.attisdropped
          ) n
         WHERE w.depth <= 40 AND n.t >= 16384
    )
    SELECT max(walk.depth) INTO depth FROM walk;
    RETURN depth;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.type_depth(oid) FROM PUBLIC;
-- How many types contain `p_type` above it, counting itself (a domain over it, an array or a
-- range of it, a table or composite type with a column of it, and so on up), stopping past 40:
-- a chain is as deep as the longest path through a type, which a change to the type at the
-- bottom of one chain (`ALTER TYPE ... ADD ATTRIBUTE`) lengthens for every type above it.
-- Walked through the dependencies recorded on each type (`pg_depend`'s reference index).
CREATE OR REPLACE FUNCTION wasmig.type_height(p_type oid) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    height int;
BEGIN
    WITH RECURSIVE up(t, height) AS (
        SELECT p_type, 1
        UNION
        SELECT n.t, u.height + 1
          FROM up u
          CROSS JOIN LATERAL (
              SELECT d.objid AS t FROM pg_catalog.pg_depend d
               WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = u.t
                 AND d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
              UNION ALL
              SELECT r.reltype FROM pg_catalog.pg_depend d
                JOIN pg_catalog.pg_class r ON r.oid = d.objid
               WHERE d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = u.t
                 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid > 0
                 AND r.reltype <> 0
          ) n
         WHERE u.height <= 40
    )
    SELECT max(up.height) INTO height FROM up;
    RETURN height;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig.type_height(oid) FROM PUBLIC;
-- The object guard (an event trigger at the end of every DDL command, installed by a
-- superuser `init`): in a step of a tenant plugin with the `data` tier no DDL at all; with the
-- `schema` tier only commands that create no code, and no object whose expressions call a
-- function other than an immutable built-in (and a few others that depend on nothing but
-- time, chance or their arguments; `nextval` of the schema's own sequence only as a column
-- default), no trigger, rule or policy, nothing outside the schema or owned by another role,
-- and no relation or type named like one of the shared schema. It checks what the server
-- created, read from the catalogs, with indexed lookups planned once per session.
CREATE OR REPLACE FUNCTION wasmig.guard_tenant_objects() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    a wasmig.active_step;
    o record;
    -- Scalars, not a record: a record whose row type changes makes PL/pgSQL prepare every
    -- expression that reads it again.
    k_kind text;
    k_nsp oid;
    k_owner oid;
    k_exprs boolean;
    k_shadows boolean;
    k_name text;
    x record;
    stepping boolean;
    bad text;
    -- Catalog text this command stored (expression trees, view definitions, comments, rows
    -- of columns and labels), which counts against the step's write bound: it is not in the
    -- schema's files.
    stored bigint := 0;
    k_rows bigint;
BEGIN
    a := wasmig.my_step();
    stepping := a.pid IS NOT NULL AND a.role_name = session_user;
    -- In every tier, full included: no type nested deeper than the host's driver resolves
    -- (it looks a type up recursively when a statement returns or takes it, so a chain of
    -- thousands of domains would overflow the stack of the step's plugin call).
    IF stepping THEN
        -- Only a type made of types that are not built in can nest at all: the walk runs
        -- for those (a table of built-in column types costs one lookup of its columns).
        SELECT format('%s is nested %s levels deep (domains, arrays, ranges and composite types within each other); at most 16 are allowed',
                      pg_catalog.format_type(t.t, NULL), t.depth) INTO bad
          FROM (SELECT t.t, wasmig.type_depth(t.t) + wasmig.type_height(t.t) - 1 AS depth
                  FROM (SELECT CASE WHEN c.classid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN c.objid
                                    ELSE (SELECT r.reltype FROM pg_catalog.pg_class r WHERE r.oid = c.objid) END AS t
                          FROM pg_catalog.pg_event_trigger_ddl_commands() c
                         WHERE c.classid IN ('pg_catalog.pg_type'::pg_catalog.regclass,
                                             'pg_catalog.pg_class'::pg_catalog.regclass)) t
                 WHERE t.t IS NOT NULL AND t.t <> 0
                   AND EXISTS (SELECT 1 FROM pg_catalog.pg_type ty
                                WHERE ty.oid = t.t
                                  AND (ty.typbasetype >= 16384 OR ty.typelem >= 16384
                                       OR ty.typtype IN ('r', 'm')
                                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute at
                                                   WHERE at.attrelid = ty.typrelid AND at.attnum > 0
                                                     AND at.atttypid >= 16384)))) t
         WHERE t.depth > 16
         LIMIT 1;
        -- The driver reads every label of an enum a statement returns: at most 10,000.
        IF bad IS NULL THEN
            SELECT format('%s has more than 10000 labels', pg_catalog.format_type(c.objid, NULL)) INTO bad
              FROM pg_catalog.pg_event_trigger_ddl_commands() c
             WHERE c.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
               AND (SELECT count(*) FROM (SELECT 1 FROM pg_catalog.pg_enum e
                                           WHERE e.enumtypid = c.objid LIMIT 10001) l) > 10000
             LIMIT 1;
        END IF;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION 'wasmig: plugin `%` (step `%`): %', a.plugin, a.step_id, bad
                USING ERRCODE = '54001';
        END IF;
    END IF;
    IF stepping AND a.tier = 'full' THEN
        RETURN;
    END IF;
    IF NOT stepping THEN
        IF NOT EXISTS (SELECT 1 FROM wasmig.managed_schema WHERE role_name = session_user)
           -- pg_restore started by `wasmig restore` presents the restore's one-time nonce.
           OR EXISTS (SELECT 1 FROM wasmig.restoring rs
                       WHERE rs.role_name = session_user AND rs.expires_at > clock_timestamp()
                         AND rs.nonce_hash = sha256(convert_to(
                               coalesce(current_setting('wasmig.restore_nonce', true), ''), 'UTF8'))) THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'wasmig: % by a schema role outside a wasmig step is not allowed', tg_tag
            USING ERRCODE = '42501';
    END IF;
    IF a.tier = 'data' THEN
        RAISE EXCEPTION 'wasmig: % is not allowed: plugin `%` (step `%`) has the `data` capability, which changes rows but not the schema', tg_tag, a.plugin, a.step_id
            USING ERRCODE = '42501',
                  HINT = format('if you trust it to change the schema, grant it more: --grant %s=schema, or --trust %s for full rights', a.plugin, a.plugin);
    END IF;
    IF tg_tag NOT IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'DROP TABLE',
                      'CREATE INDEX', 'ALTER INDEX', 'DROP INDEX', 'REINDEX',
                      'CREATE SEQUENCE', 'ALTER SEQUENCE', 'DROP SEQUENCE',
                      'CREATE VIEW', 'ALTER VIEW', 'DROP VIEW',
                      'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW',
                      'DROP MATERIALIZED VIEW', 'REFRESH MATERIALIZED VIEW',
                      'CREATE TYPE', 'ALTER TYPE', 'DROP TYPE',
                      'CREATE DOMAIN', 'ALTER DOMAIN', 'DROP DOMAIN',
                      'CREATE STATISTICS', 'ALTER STATISTICS', 'DROP STATISTICS', 'COMMENT',
                      'DROP FUNCTION', 'DROP PROCEDURE', 'DROP TRIGGER', 'DROP RULE', 'DROP POLICY') THEN
        RAISE EXCEPTION 'wasmig: % is not allowed: plugin `%` (step `%`) has the `schema` capability, which creates no code that could run as another role', tg_tag, a.plugin, a.step_id
            USING ERRCODE = '42501',
                  HINT = format('if you have reviewed it, trust it for full rights: --trust %s', a.plugin);
    END IF;
    -- A comment is catalog text of the step's: counted, and at most 64 KiB each.
    IF tg_tag = 'COMMENT' THEN
        SELECT coalesce(sum(pg_catalog.octet_length(de.description)), 0),
               max(CASE WHEN pg_catalog.octet_length(de.description) > 65536
                        THEN format('the comment on %s is %s bytes long; a step may store at most 64 KiB in one comment',
                                    pg_catalog.pg_describe_object(c.classid, c.objid, c.objsubid),
                                    pg_catalog.octet_length(de.description)) END)
          INTO stored, bad
          FROM pg_catalog.pg_event_trigger_ddl_commands() c
          JOIN pg_catalog.pg_description de
            ON de.objoid = c.objid AND de.classoid = c.classid AND de.objsubid = c.objsubid;
    END IF;
    FOR o IN SELECT DISTINCT c.classid, c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
              WHERE bad IS NULL LOOP
        -- Where it lives, who owns it, whether its name shadows one of the shared schema,
        -- and whether it can hold expressions at all.
        IF o.classid = 'pg_catalog.pg_class'::regclass THEN
            SELECT c.relkind::text AS kind, c.relnamespace AS nsp, c.relowner AS owner, c.relname::text AS name,
                   (c.relkind IN ('i', 'I')
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indexrelid = c.oid
                                   AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))) AS exprs,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_class sc
                            WHERE sc.relname = c.relname AND sc.relnamespace = a.shared_nsp)
                   OR EXISTS (SELECT 1 FROM pg_catalog.pg_type st
                               WHERE st.typname = c.relname AND st.typnamespace = a.shared_nsp) AS shadows
              INTO k_kind, k_nsp, k_owner, k_name, k_exprs, k_shadows
              FROM pg_catalog.pg_class c WHERE c.oid = o.objid;
        ELSIF o.classid = 'pg_catalog.pg_type'::regclass THEN
            SELECT 'type ' || t.typtype::text AS kind, t.typnamespace AS nsp, t.typowner AS owner,
                   t.typname::text AS name, false AS exprs,
                   EXISTS (SELECT 1 FROM pg_catalog.pg_class sc
                            WHERE sc.relname = t.typname AND sc.relnamespace = a.shared_nsp)
                   OR EXISTS (SELECT 1 FROM pg_catalog.pg_type st
                               WHERE st.typname = t.typname AND st.typnamespace = a.shared_nsp) AS shadows
              INTO k_kind, k_nsp, k_owner, k_name, k_exprs, k_shadows
              FROM pg_catalog.pg_type t WHERE t.oid = o.objid;
        ELSE
            k_kind := NULL;
        END IF;
        IF k_kind IS NULL THEN
            NULL;
        ELSIF (k_nsp <> a.home_nsp AND k_nsp <> 'pg_toast'::regnamespace
               AND k_nsp <> pg_catalog.pg_my_temp_schema()) OR k_owner <> a.role_oid THEN
            bad := format('%s is outside schema %s or not owned by its role',
                          pg_catalog.pg_describe_object(o.classid, o.objid, 0), a.schema_name);
        ELSIF k_shadows AND k_nsp <> 'pg_toast'::regnamespace THEN
            bad := format('%s is named like %s.%s of the shared schema, which it would shadow on a search_path',
                          pg_catalog.pg_describe_object(o.classid, o.objid, 0), a.shared_nsp::regnamespace, k_name);
        END IF;
        -- The catalog rows an object holds count as written (an empty table of 1,600 columns
        -- is 0 bytes of files and 1,600 rows of pg_attribute), and statistics targets stay
        -- near the default (what ANALYZE keeps per column grows with them, after any check).
        IF bad IS NULL AND k_kind IN ('r', 'p', 'm', 'f', 'v') THEN
            SELECT 256 * count(*),
                   min(CASE WHEN at.attstattarget > 1000
                            THEN format('column %s of %s has a statistics target above 1000',
                                        pg_catalog.quote_ident(at.attname),
                                        pg_catalog.pg_describe_object(o.classid, o.objid, 0)) END)
              INTO k_rows, bad
              FROM pg_catalog.pg_attribute at WHERE at.attrelid = o.objid AND at.attnum > 0;
            stored := stored + k_rows;
        ELSIF bad IS NULL AND k_kind = 'type e' THEN
            stored := stored + 128 * (SELECT count(*) FROM pg_catalog.pg_enum e WHERE e.enumtypid = o.objid);
        END IF;
        IF bad IS NULL AND o.classid = 'pg_catalog.pg_statistic_ext'::regclass THEN
            SELECT CASE WHEN se.stxstattarget > 1000
                        THEN format('statistics object %s has a statistics target above 1000',
                                    pg_catalog.quote_ident(se.stxname))
                        WHEN (SELECT count(*) FROM pg_catalog.pg_statistic_ext s2
                               WHERE s2.stxrelid = se.stxrelid) > 32
                        THEN format('%s has more than 32 statistics objects',
                                    se.stxrelid::pg_catalog.regclass) END
              INTO bad
              FROM pg_catalog.pg_statistic_ext se WHERE se.oid = o.objid;
        END IF;
        -- Sequences, toast tables, enum, composite, base and pseudo types hold no expressions.
        CONTINUE WHEN bad IS NULL AND (k_kind IN ('S', 't', 'type e', 'type c', 'type b', 'type p')
                                       OR (k_kind IN ('i', 'I') AND NOT k_exprs
                                           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                                            WHERE d.classid = o.classid AND d.objid = o.objid
                                                              AND d.refobjid >= 16384
                                                              AND d.refclassid <> 'pg_catalog.pg_class'::regclass)));
        -- Code attached to a table runs as whoever touches it.
        IF bad IS NULL AND k_kind IN ('r', 'p', 'v', 'm', 'f') THEN
            SELECT format('%s is code that would run as whoever touches the table',
                          pg_catalog.pg_describe_object(k.classid, k.oid, 0)) INTO bad
              FROM (SELECT 'pg_catalog.pg_trigger'::regclass AS classid, oid FROM pg_catalog.pg_trigger
                     WHERE tgrelid = o.objid AND NOT tgisinternal
                    UNION ALL
                    SELECT 'pg_catalog.pg_policy'::regclass, oid FROM pg_catalog.pg_policy
                     WHERE polrelid = o.objid
                    UNION ALL
                    SELECT 'pg_catalog.pg_rewrite'::regclass, oid FROM pg_catalog.pg_rewrite
                     WHERE ev_class = o.objid AND rulename <> '_RETURN') k
             LIMIT 1;
        END IF;
        -- A view or materialized view reads as its owner, the step's role: its own schema's
        -- relations, or shared ones that role may read. Anything else (a system view that
        -- filters by who reads it, such as pg_stats or pg_stat_activity; another schema)
        -- would read with the rights of whoever queries it, and so would a view that checks
        -- its tables as the reader (security_invoker), on create or alter alike. Read from
        -- the dependencies the server recorded for the view's rule, not from its text.
        IF bad IS NULL AND k_kind IN ('v', 'm') THEN
            SELECT format('%s checks its tables as whoever queries it (security_invoker); a tenant''s view reads as its owner',
                          pg_catalog.pg_describe_object(o.classid, o.objid, 0)) INTO bad
              FROM pg_catalog.pg_class c, pg_catalog.pg_options_to_table(c.reloptions) opt
             WHERE c.oid = o.objid AND opt.option_name = 'security_invoker'
               AND opt.option_value::boolean;
            IF bad IS NULL THEN
                SELECT format('%s reads %s, which is neither in schema %s nor a shared table granted to tenants (without row security)',
                              pg_catalog.pg_describe_object(o.classid, o.objid, 0),
                              pg_catalog.pg_describe_object('pg_catalog.pg_class'::regclass, r.oid, 0),
                              a.schema_name) INTO bad
                  FROM pg_catalog.pg_rewrite rw
                  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
                                              AND d.objid = rw.oid
                                              AND d.refclassid = 'pg_catalog.pg_class'::regclass
                  JOIN pg_catalog.pg_class r ON r.oid = d.refobjid
                 WHERE rw.ev_class = o.objid
                   AND r.relnamespace <> a.home_nsp
                   -- A shared table (not a view, whose own reads may depend on its reader,
                   -- nor one with row security, whose policies run as the reader).
                   AND NOT (r.relnamespace = a.shared_nsp AND r.relkind IN ('r', 'p', 'm')
                            AND NOT r.relrowsecurity
                            AND pg_catalog.has_table_privilege(a.role_oid, r.oid, 'SELECT'))
                 LIMIT 1;
            END IF;
        END IF;
        -- Every expression the server stored for it or for what hangs on it, and the
        -- functions and operators those call (read from the trees: dependencies on built-in
        -- objects are not recorded in pg_depend; the trees are the server's own, constants in
        -- them are bytes).
        IF bad IS NULL AND (k_kind IN ('r', 'p', 'v', 'm', 'f', 'type d', 'type r')
                            OR (k_kind IN ('i', 'I') AND k_exprs)
                            OR o.classid = 'pg_catalog.pg_statistic_ext'::regclass) THEN
            FOR x IN
                SELECT 'pg_catalog.pg_attrdef'::regclass AS classid, ad.oid, ad.adbin::text AS tree
                  FROM pg_catalog.pg_attrdef ad
                 WHERE k_kind IN ('r', 'p', 'v', 'm', 'f') AND ad.adrelid = o.objid
                UNION ALL
                SELECT 'pg_catalog.pg_constraint'::regclass, co.oid, co.conbin::text
                  FROM pg_catalog.pg_constraint co
                 WHERE k_kind IN ('r', 'p', 'f') AND co.conrelid = o.objid AND co.conbin IS NOT NULL
                UNION ALL
                SELECT 'pg_catalog.pg_constraint'::regclass, co.oid, co.conbin::text
                  FROM pg_catalog.pg_constraint co
                 WHERE k_kind IN ('type d', 'type r') AND co.contypid = o.objid AND co.conbin IS NOT NULL
                UNION ALL
                SELECT 'pg_catalog.pg_class'::regclass, i.indexrelid,
                       coalesce(i.indexprs::text, '') || coalesce(i.indpred::text, '')
                  FROM pg_catalog.pg_index i
                 WHERE ((k_kind IN ('r', 'p', 'm') AND i.indrelid = o.objid)
                        OR (k_kind IN ('i', 'I') AND i.indexrelid = o.objid))
                   AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
                UNION ALL
                SELECT 'pg_catalog.pg_rewrite'::regclass, rw.oid, rw.ev_action::text || coalesce(rw.ev_qual::text, '')
                  FROM pg_catalog.pg_rewrite rw
                 WHERE k_kind IN ('v', 'm') AND rw.ev_class = o.objid
                UNION ALL
                SELECT 'pg_catalog.pg_type'::regclass, ty.oid, ty.typdefaultbin::text
                  FROM pg_catalog.pg_type ty
                 WHERE k_kind IN ('type d', 'type r') AND ty.oid = o.objid AND ty.typdefaultbin IS NOT NULL
                UNION ALL
                SELECT 'pg_catalog.pg_statistic_ext'::regclass, se.oid, se.stxexprs::text
                  FROM pg_catalog.pg_statistic_ext se
                 WHERE ((k_kind IN ('r', 'p', 'm', 'f') AND se.stxrelid = o.objid)
                        OR (o.classid = 'pg_catalog.pg_statistic_ext'::regclass AND se.oid = o.objid))
                   AND se.stxexprs IS NOT NULL
                UNION ALL
                SELECT 'pg_catalog.pg_class'::regclass, pt.partrelid, pt.partexprs::text
                  FROM pg_catalog.pg_partitioned_table pt
                 WHERE k_kind = 'p' AND pt.partrelid = o.objid AND pt.partexprs IS NOT NULL
            LOOP
                stored := stored + coalesce(pg_catalog.octet_length(x.tree), 0);
                IF pg_catalog.octet_length(x.tree) > 1048576 THEN
                    bad := format('%s stores %s bytes of expression; a step may store at most 1 MiB in one',
                                  pg_catalog.pg_describe_object(x.classid, x.oid, 0),
                                  pg_catalog.octet_length(x.tree));
                    EXIT;
                END IF;
                SELECT CASE WHEN c.op >= 16384
                            THEN format('%s uses operator %s, which is not built in',
                                        pg_catalog.pg_describe_object(x.classid, x.oid, 0), c.op::regoperator)
                            ELSE format('%s calls %s, which is not an immutable built-in function (nor one of the few others allowed)',
                                        pg_catalog.pg_describe_object(x.classid, x.oid, 0), p.oid::regprocedure)
                       END INTO bad
                  FROM (SELECT m[1]::oid AS fn, 0::oid AS op
                          FROM pg_catalog.regexp_matches(x.tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid) (\d+)', 'g') m
                        UNION
                        SELECT op.oprcode::oid, op.oid
                          FROM pg_catalog.regexp_matches(x.tree, ':opno (\d+)', 'g') m
                          JOIN pg_catalog.pg_operator op ON op.oid = m[1]::oid) c
                  JOIN pg_catalog.pg_proc p ON p.oid = c.fn
                 WHERE c.op >= 16384
                    OR p.oid >= 16384
                    OR p.proname ~ '_to_xml'
                    -- A stable function can read what the session running it sees (other
                    -- sessions' queries, its settings) and leave it in a tenant's table.
                    OR (p.provolatile <> 'i'
                        AND p.proname NOT IN ('now', 'statement_timestamp', 'transaction_timestamp',
                                              'clock_timestamp', 'timeofday', 'random', 'gen_random_uuid',
                                              'nextval', 'to_char', 'to_timestamp', 'to_date', 'date_trunc',
                                              'date_part', 'extract', 'age', 'timezone', 'date', 'timestamp',
                                              'timestamptz', 'time', 'timetz', 'make_timestamptz',
                                              'date_add', 'date_subtract', 'textanycat', 'anytextcat',
                                              'concat', 'concat_ws', 'format', 'to_json', 'to_jsonb',
                                              'row_to_json', 'array_to_json', 'json_build_object',
                                              'json_build_array', 'jsonb_build_object', 'jsonb_build_array',
                                              'array_to_string'))
                    -- `nextval` only as a column default `nextval('sequence'::regclass)` on a
                    -- sequence of the schema itself (any other would be another tenant's).
                    OR (p.oid = 'pg_catalog.nextval(pg_catalog.regclass)'::regprocedure
                        AND (x.classid <> 'pg_catalog.pg_attrdef'::regclass
                             OR NOT EXISTS (
                                 SELECT 1 FROM pg_catalog.pg_attrdef ad
                                  WHERE ad.oid = x.oid
                                    AND pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ~ '^nextval\(''([^'']|'''')*''::regclass\)$')
                             OR NOT EXISTS (
                                 SELECT 1 FROM pg_catalog.pg_depend q
                                   JOIN pg_catalog.pg_class sq ON sq.oid = q.refobjid
                                  WHERE q.classid = x.classid AND q.objid = x.oid
                                    AND q.refclassid = 'pg_catalog.pg_class'::regclass
                                    AND sq.relkind = 'S' AND sq.relnamespace = a.home_nsp)))
                 LIMIT 1;
                EXIT WHEN bad IS NOT NULL;
            END LOOP;
        END IF;
        -- Whatever the trees hold, a reference to a function, operator, operator class,
        -- collation or text search object that is not built in is always recorded in
        -- pg_depend, by the object or by what hangs on it.
        IF bad IS NULL THEN
            SELECT format('%s uses %s, which is not built in',
                          pg_catalog.pg_describe_object(d.classid, d.objid, 0),
                          pg_catalog.pg_describe_object(d.refclassid, d.refobjid, 0)) INTO bad
              FROM (SELECT o.classid AS classid, o.objid AS objid
                    UNION ALL
                    SELECT h.classid, h.objid FROM pg_catalog.pg_depend h
                     WHERE h.refclassid = o.classid AND h.refobjid = o.objid) s
              JOIN pg_catalog.pg_depend d ON d.classid = s.classid AND d.objid = s.objid
             WHERE d.refobjid >= 16384
               AND d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass,
                                    'pg_catalog.pg_opclass'::regclass, 'pg_catalog.pg_opfamily'::regclass,
                                    'pg_catalog.pg_ts_config'::regclass, 'pg_catalog.pg_ts_dict'::regclass,
                                    'pg_catalog.pg_collation'::regclass)
             LIMIT 1;
        END IF;
        IF bad IS NOT NULL THEN
            EXIT;
        END IF;
    END LOOP;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'wasmig: plugin `%` (step `%`) has the `schema` capability: %', a.plugin, a.step_id, bad
            USING ERRCODE = '42501',
                  HINT = format('if you have reviewed it, trust it for full rights: --trust %s', a.plugin);
    END IF;
    IF stored > 0 THEN
        UPDATE wasmig.active_step SET catalog_bytes = catalog_bytes + stored
         WHERE pid = a.pid;
    END IF;
END
$fn$;
INSERT INTO wasmig.meta (key, value) VALUES ('control_version', '7')
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
