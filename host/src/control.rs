//! The control schema `wasmig`: schema registry, ledger, run history, failures, step grants,
//! the secret that derives schema-role passwords, and the advisory locks. Every function here
//! runs on the operator's connection, except [`RECORD_STEP_SQL`], which a schema role calls
//! inside its step transaction.
//!
//! Architecture invariant: a schema role can add a ledger row only through
//! `wasmig.record_step`, and only with a one-time token the host created for exactly that
//! schema, plugin, step and checksum; it can read, change or delete nothing here.

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::db::PgError;
use crate::db::quote::{ident, literal};
use crate::names::SchemaName;
use crate::plan::{LedgerEntry, Scope};

/// Version of the control schema layout this host creates and understands.
pub const CONTROL_VERSION: i32 = 3;

/// Advisory-lock class for wasmig (first key of the two-key form).
const LOCK_CLASS: i32 = 0x5741_534d; // "WASM"
/// First key of the advisory lock a runner holds on its own run for as long as it runs
/// (second key: the run id's low 31 bits). No such lock, no runner: a run without an end
/// whose lock is gone is shown as `abandoned`, not `running`.
const RUN_LOCK_CLASS: i32 = 0x5741_5352; // "WASR"
/// Lock key for control-schema DDL and registry changes.
const REGISTRY_LOCK: i32 = 0;

const CONTROL_DDL: &str = r#"
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
CREATE OR REPLACE VIEW wasmig.tenant AS
    SELECT schema_name, display_name AS name, domain, role_name, created_at
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
    action text NOT NULL DEFAULT 'apply' CHECK (action IN ('apply', 'revert')),
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
-- Which step a schema-role session is running, with which tier: written by `begin_step`
-- inside the step's transaction (so a rollback removes it) and removed by `record_step`;
-- the object guard reads it. Unlogged: it never needs to outlive a step.
CREATE UNLOGGED TABLE IF NOT EXISTS wasmig.active_step (
    pid int PRIMARY KEY,
    -- The transaction `begin_step` ran in, and when the session started: a row is the
    -- session's own only if it was written in this transaction or by this very session.
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
-- What a step left outside its schema, if anything, named for the error: a large object
-- (which belongs to no schema and would survive `tenant drop`) owned by the step's role or
-- by a role it is a member of, or any object owned by such a role (a tenant may `SET ROLE`
-- to the tenant group and create as it). Called inside the step's transaction, so what it
-- finds is rolled back with the step.
CREATE OR REPLACE FUNCTION wasmig_api.leftover() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    found_one text;
BEGIN
    -- PL/pgSQL rather than SQL: its plans are kept for the session, not made per call.
    SELECT format('large object %s (owned by role %s)', lo.oid, lo.lomowner::regrole) INTO found_one
      FROM pg_catalog.pg_largeobject_metadata lo
     WHERE lo.lomowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user)
        OR lo.lomowner IN (SELECT m.roleid FROM pg_catalog.pg_auth_members m
                            WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
     LIMIT 1;
    IF found_one IS NULL THEN
        SELECT format('%s (owned by role %s)',
                      pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), d.refobjid::regrole)
          INTO found_one
          FROM pg_catalog.pg_shdepend d
         WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND d.deptype = 'o'
           AND d.refobjid IN (SELECT m.roleid FROM pg_catalog.pg_auth_members m
                               WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))
           AND d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
         LIMIT 1;
    END IF;
    RETURN found_one;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.leftover() FROM PUBLIC;
-- Refuses to record a step whose transaction is not the one its SQL ran in (a statement
-- that ended it would otherwise have its work recorded as if atomic), or that left objects
-- outside its schema.
CREATE OR REPLACE FUNCTION wasmig_api.check_step(p_xid text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    left_behind text;
BEGIN
    IF p_xid IS NOT NULL AND p_xid <> pg_catalog.txid_current()::text THEN
        RAISE EXCEPTION 'wasmig: the step''s transaction ended before the step was recorded'
            USING ERRCODE = '25000';
    END IF;
    left_behind := wasmig_api.leftover();
    IF left_behind IS NOT NULL THEN
        RAISE EXCEPTION 'wasmig: the step left % outside its schema', left_behind
            USING ERRCODE = '42501',
                  HINT = 'plugins may create objects only in their own schema; large objects and objects owned by other roles are refused';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.check_step(text) FROM PUBLIC;
-- Opens a step for the object guard: the grant's tier becomes the session's until the step
-- is recorded or rolled back. Needs the step's one-time token, which only the host knows, so
-- a plugin cannot take another step's tier. A NULL token only closes the open step.
CREATE OR REPLACE FUNCTION wasmig_api.begin_step(p_token bytea) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    g_tier text;
    g_plugin text;
    g_step text;
    g_schema text;
    g_temp bigint;
BEGIN
    -- A NULL token closes the open step and changes nothing else; the warm-up of a fresh
    -- session calls it so, which plans every statement below off the step's path.
    DELETE FROM wasmig.active_step WHERE pid = pg_catalog.pg_backend_pid();
    SELECT tier, plugin, step_id, schema_name, temp_limit_kb
      INTO g_tier, g_plugin, g_step, g_schema, g_temp
      FROM wasmig.step_grant
     WHERE token_hash = sha256(p_token) AND role_name = session_user
       AND expires_at > clock_timestamp();
    IF NOT FOUND AND p_token IS NOT NULL THEN
        PERFORM wasmig_api.no_valid_grant();
    END IF;
    INSERT INTO wasmig.active_step (pid, txid, backend_start, role_name, role_oid, schema_name,
                                    home_nsp, shared_nsp, tier, plugin, step_id)
    SELECT pg_catalog.pg_backend_pid(), pg_catalog.txid_current(), b.backend_start, session_user,
           (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user), g_schema,
           (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = g_schema),
           (SELECT n.oid FROM wasmig.managed_schema m
              JOIN pg_catalog.pg_namespace n ON n.nspname = m.schema_name
             WHERE m.scope = 'shared' LIMIT 1),
           g_tier, g_plugin, g_step
      FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) b
     WHERE g_tier IS NOT NULL;
    IF g_tier IS NULL THEN
        RETURN;
    END IF;
    -- The step's own temp_file_limit (its plugin's `max_temp_mb`), for the session, so that
    -- it holds for a non-transactional step too; otherwise the role's own. Only a superuser
    -- may set it (this function runs as its owner, the operator); the role cannot raise it,
    -- and its `RESET ALL` goes back to the role's limit, never above.
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        IF g_temp IS NOT NULL THEN
            PERFORM pg_catalog.set_config('temp_file_limit', g_temp || 'kB', false);
        ELSE
            RESET temp_file_limit;
        END IF;
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.begin_step(bytea) FROM PUBLIC;
-- Consumes the one-time grant and writes the ledger row from the grant's own fields.
-- PL/pgSQL with a generic plan: planned once per session (by the warm-up call below, off the
-- step's path), then each call only executes.
DROP FUNCTION IF EXISTS wasmig_api.record_step(bytea, double precision);
CREATE OR REPLACE FUNCTION wasmig_api.record_step(p_token bytea, p_duration_ms double precision, p_xid text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    recorded bigint;
BEGIN
    -- A NULL token matches no grant and records nothing: a fresh session calls it so to
    -- plan the statements below (and the step check's) before its first step.
    PERFORM wasmig_api.check_step(p_xid);
    WITH g AS (
        DELETE FROM wasmig.step_grant
         WHERE token_hash = sha256(p_token)
           AND role_name = session_user
           AND action = 'apply'
           AND expires_at > clock_timestamp()
        RETURNING *
    )
    INSERT INTO wasmig.ledger (schema_name, plugin, step_id, checksum, artifact_checksum,
                               plugin_version, applied_at, duration_ms, run_id, mac)
    SELECT schema_name, plugin, step_id, checksum, artifact_checksum, plugin_version,
           clock_timestamp(), p_duration_ms, run_id, mac
    FROM g;
    GET DIAGNOSTICS recorded = ROW_COUNT;
    IF recorded <> 1 AND p_token IS NOT NULL THEN
        PERFORM wasmig_api.no_valid_grant();
    END IF;
    DELETE FROM wasmig.active_step WHERE pid = pg_catalog.pg_backend_pid();
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.no_valid_grant() FROM PUBLIC;
-- The revert counterpart: consumes a revert grant and removes that step's ledger row.
DROP FUNCTION IF EXISTS wasmig_api.unrecord_step(bytea);
CREATE OR REPLACE FUNCTION wasmig_api.unrecord_step(p_token bytea, p_xid text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    removed bigint;
BEGIN
    PERFORM wasmig_api.check_step(p_xid);
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
    DELETE FROM wasmig.active_step WHERE pid = pg_catalog.pg_backend_pid();
END
$fn$;
REVOKE ALL ON FUNCTION wasmig_api.unrecord_step(bytea, text) FROM PUBLIC;
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
    a record;
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
BEGIN
    SELECT s.* INTO a FROM wasmig.active_step s
     WHERE s.pid = pg_catalog.pg_backend_pid() AND s.role_name = session_user;
    stepping := FOUND;
    -- A row written by this very transaction is this step's (a transactional step's row is
    -- never committed); a committed one (non-transactional step) must be this session's, not
    -- a session that ended and whose pid was reused.
    IF stepping AND a.txid <> pg_catalog.txid_current() THEN
        stepping := a.backend_start = (SELECT b.backend_start
                                         FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) b);
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
    FOR o IN SELECT DISTINCT c.classid, c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c LOOP
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
            RAISE EXCEPTION 'wasmig: plugin `%` (step `%`) has the `schema` capability: %', a.plugin, a.step_id, bad
                USING ERRCODE = '42501',
                      HINT = format('if you have reviewed it, trust it for full rights: --trust %s', a.plugin);
        END IF;
    END LOOP;
END
$fn$;
INSERT INTO wasmig.meta (key, value) VALUES ('control_version', '3')
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"#;

/// The functions of `wasmig_api` a schema role may call.
const FUNCTIONS_OF_SCHEMA_ROLES: &str = "wasmig_api.begin_step(bytea), wasmig_api.record_step(bytea, double precision, text), wasmig_api.unrecord_step(bytea, text), wasmig_api.run_script(text)";

/// The call a schema role makes, inside its step transaction, to record the step.
pub const RECORD_STEP_SQL: &str = "SELECT wasmig_api.record_step($1, $2, $3)";

/// How a transactional step's script is sent: one statement, the script a bound parameter.
pub const RUN_SCRIPT_SQL: &str = "SELECT wasmig_api.run_script($1)";

/// Run once on a fresh schema-role session, before its first step: plans and runs
/// `begin_step` and `record_step` (with its step check) with a token that matches nothing
/// and compiles `run_script`, so the catalog
/// lookups of a new backend happen while another schema is being migrated rather than
/// inside the step's transaction. Changes nothing.
pub const WARM_UP_SQL: &str = "SELECT wasmig_api.begin_step(NULL); SELECT wasmig_api.record_step(NULL, 0, NULL); SELECT wasmig_api.run_script('SELECT 1')";

/// Errors at the control-schema boundary.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A server error while doing `what`.
    #[error("{what}: {error}")]
    Pg {
        /// What wasmig was doing.
        what: String,
        /// What the server said.
        error: PgError,
    },
    /// `wasmig init` has not run on this database.
    #[error("the control schema `wasmig` does not exist in this database; run `wasmig init` first")]
    NotInitialised,
    /// The control schema is newer than this host.
    #[error(
        "the control schema is version {found}, newer than this wasmig understands ({CONTROL_VERSION}); upgrade wasmig"
    )]
    TooNew {
        /// Version found.
        found: i32,
    },
    /// The control schema was created by an older wasmig.
    #[error(
        "the control schema is version {found}, older than this wasmig uses ({CONTROL_VERSION}); run `wasmig init` to upgrade it (idempotent)"
    )]
    TooOld {
        /// Version found.
        found: i32,
    },
    /// A role wasmig wants to create already exists and is not its own.
    #[error(
        "role `{role}` already exists and is not managed by wasmig for schema `{schema}`; drop or rename that role, or choose another schema name"
    )]
    RoleTaken {
        /// The role.
        role: String,
        /// The schema it was meant for.
        schema: String,
    },
    /// A schema exists but wasmig does not manage it.
    #[error(
        "schema `{0}` already exists but is not registered with wasmig; wasmig manages only schemas it created (drop it or pick another name)"
    )]
    SchemaTaken(String),
    /// A tenant name that is the shared schema.
    #[error("`{0}` is the shared schema, not a tenant")]
    SharedNotTenant(String),
    /// No such tenant.
    #[error("tenant `{0}` is not registered (see `wasmig tenant list`)")]
    UnknownTenant(String),
}

fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ControlError {
    let what = what.into();
    move |e| ControlError::Pg {
        what,
        error: e.into(),
    }
}

/// The built-in functions every role but the operator and the application role loses:
/// advisory locks (any role may otherwise take any key, so a tenant could hold wasmig's own
/// schema locks, whose keys are predictable, or fill the server's shared lock table until no
/// one can connect) and the relation-size functions (each opens and locks any relation by
/// oid, every tenant's included, so one query could fill the lock table too, and they tell
/// every tenant how big the others are). Function privileges are per database, so only this
/// database changes.
const REVOKED_FUNCTIONS: &str = "SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pg_catalog'::regnamespace
                AND (p.proname LIKE 'pg\\_%advisory\\_%lock%'
                     OR p.proname IN ('pg_relation_size', 'pg_total_relation_size',
                                      'pg_table_size', 'pg_indexes_size'))";

/// Revokes [`REVOKED_FUNCTIONS`] from `PUBLIC` and grants them to `grantee` (SQL: a quoted
/// role, or `CURRENT_USER`).
fn revoke_functions_sql(grantee: &str) -> String {
    format!(
        "DO $revoke$ DECLARE f regprocedure; BEGIN
           FOR f IN {REVOKED_FUNCTIONS} LOOP
             EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
             EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {grantee}', f);
           END LOOP;
         END $revoke$;"
    )
}

/// Creates or upgrades the control schema (idempotent, safe to run concurrently).
/// `app_role` keeps the use of advisory locks and relation sizes, which every other role
/// loses.
pub async fn init(client: &mut Client, app_role: Option<&str>) -> Result<(), ControlError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| ControlError::Pg {
        what: "generating the control secret".into(),
        error: PgError {
            sqlstate: None,
            message: e.to_string(),
            detail: None,
            hint: None,
        },
    })?;
    let tx = client.transaction().await.map_err(pg("starting init"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &REGISTRY_LOCK],
    )
    .await
    .map_err(pg("locking the registry"))?;
    if let Some(found) = control_version_in(&tx).await?
        && found > CONTROL_VERSION
    {
        return Err(ControlError::TooNew { found });
    }
    tx.batch_execute(CONTROL_DDL)
        .await
        .map_err(pg("creating the control schema `wasmig`"))?;
    // The secret is bound, never spliced into SQL text (which drivers and servers may log).
    tx.execute(
        "INSERT INTO wasmig.secret (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        &[&&key[..]],
    )
    .await
    .map_err(pg("storing the control secret"))?;
    // Roles created before a function existed get EXECUTE on it now.
    let roles: Vec<String> = tx
        .query("SELECT role_name FROM wasmig.managed_schema", &[])
        .await
        .map_err(pg("reading the schema registry"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for role in roles {
        tx.batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION {FUNCTIONS_OF_SCHEMA_ROLES} TO {}",
            ident(&role)
        ))
        .await
        .map_err(pg(format!("granting role `{role}` the ledger functions")))?;
    }
    if operator_is_superuser(&tx).await? {
        tx.batch_execute(
            "DROP EVENT TRIGGER IF EXISTS wasmig_guard_tenant_ddl;
             CREATE EVENT TRIGGER wasmig_guard_tenant_ddl ON ddl_command_start
                 WHEN TAG IN ('GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES')
                 EXECUTE FUNCTION wasmig.guard_tenant_ddl();
             DROP EVENT TRIGGER IF EXISTS wasmig_guard_tenant_objects;
             CREATE EVENT TRIGGER wasmig_guard_tenant_objects ON ddl_command_end
                 EXECUTE FUNCTION wasmig.guard_tenant_objects();",
        )
        .await
        .map_err(pg("installing the tenant DDL guard"))?;
        tx.batch_execute(&revoke_functions_sql("CURRENT_USER"))
            .await
            .map_err(pg(
                "taking advisory locks and relation sizes away from tenant roles",
            ))?;
        if let Some(app) = app_role {
            tx.batch_execute(&revoke_functions_sql(&ident(app).replace('%', "%%")))
                .await
                .map_err(pg(format!(
                    "letting the application role `{app}` keep advisory locks and relation sizes"
                )))?;
        }
    } else {
        tracing::warn!(
            "the operator role is not a superuser: the event trigger that stops tenant plugins from granting privileges was not installed, tenant roles can take advisory locks (including wasmig's own schema locks), and their temporary files are not capped; run `wasmig init` as a superuser to enforce these"
        );
    }
    tx.commit().await.map_err(pg("committing init"))?;
    Ok(())
}

async fn control_version_in(
    c: &impl tokio_postgres::GenericClient,
) -> Result<Option<i32>, ControlError> {
    let row = c
        .query_one("SELECT to_regclass('wasmig.meta') IS NOT NULL", &[])
        .await
        .map_err(pg("reading the control schema version"))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let v = c
        .query_opt(
            "SELECT value FROM wasmig.meta WHERE key = 'control_version'",
            &[],
        )
        .await
        .map_err(pg("reading the control schema version"))?;
    Ok(v.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

/// Fails unless the control schema exists and is a version this host understands.
pub async fn check_initialised(client: &Client) -> Result<(), ControlError> {
    match control_version_in(client).await? {
        None => Err(ControlError::NotInitialised),
        Some(v) if v > CONTROL_VERSION => Err(ControlError::TooNew { found: v }),
        Some(v) if v < CONTROL_VERSION => Err(ControlError::TooOld { found: v }),
        Some(_) => Ok(()),
    }
}

/// A schema wasmig manages.
#[derive(Debug, Clone, Serialize)]
pub struct ManagedSchema {
    /// Schema name.
    pub schema: SchemaName,
    /// Shared or tenant.
    pub scope: Scope,
    /// Its own role.
    pub role: String,
    /// Display name (tenants).
    pub name: Option<String>,
    /// Domain (tenants).
    pub domain: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// All managed schemas, shared first, then tenants by name.
pub async fn list_schemas(client: &Client) -> Result<Vec<ManagedSchema>, ControlError> {
    let rows = client
        .query(
            "SELECT schema_name, scope, role_name, display_name, domain,
                    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM wasmig.managed_schema ORDER BY scope = 'tenant', schema_name",
            &[],
        )
        .await
        .map_err(pg("reading the schema registry"))?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let scope: String = r.get(1);
            Ok(ManagedSchema {
                schema: SchemaName::parse_shared(&name).map_err(|e| ControlError::Pg {
                    what: "reading the schema registry".into(),
                    error: PgError {
                        sqlstate: None,
                        message: e.to_string(),
                        detail: None,
                        hint: None,
                    },
                })?,
                scope: if scope == "shared" {
                    Scope::Shared
                } else {
                    Scope::Tenant
                },
                role: r.get(2),
                name: r.get(3),
                domain: r.get(4),
                created_at: r.get(5),
            })
        })
        .collect()
}

/// The whole ledger in one query, grouped by schema; each row's MAC is checked with the
/// control secret, so rows not written through a host-issued grant are marked forged.
pub async fn read_ledger(
    client: &Client,
    schema: Option<&SchemaName>,
    secret: &[u8; 32],
) -> Result<HashMap<String, Vec<LedgerEntry>>, ControlError> {
    let rows = client
        .query(
            "SELECT schema_name, plugin, step_id, checksum, artifact_checksum, plugin_version, mac
             FROM wasmig.ledger
             WHERE $1::text IS NULL OR schema_name = $1
             ORDER BY schema_name, applied_at, plugin, step_id",
            &[&schema.map(SchemaName::as_str)],
        )
        .await
        .map_err(pg("reading the ledger"))?;
    let mut out: HashMap<String, Vec<LedgerEntry>> = HashMap::new();
    for r in rows {
        let schema_name: String = r.get(0);
        let entry = ledger_entry(&r, 1, &schema_name, secret);
        out.entry(schema_name).or_default().push(entry);
    }
    Ok(out)
}

/// Reads `plugin, step_id, checksum, artifact_checksum, plugin_version, mac` starting at
/// column `at` and verifies the MAC.
fn ledger_entry(
    r: &tokio_postgres::Row,
    at: usize,
    schema: &str,
    secret: &[u8; 32],
) -> LedgerEntry {
    let fields = LedgerMacFields {
        schema,
        plugin: r.get(at),
        step_id: r.get(at + 1),
        checksum: r.get(at + 2),
        artifact_checksum: r.get(at + 3),
        plugin_version: r.get(at + 4),
    };
    let mac: &str = r.get(at + 5);
    LedgerEntry {
        authentic: crate::secret::ledger_mac(secret, &fields) == mac,
        plugin: fields.plugin.to_owned(),
        step_id: fields.step_id.to_owned(),
        checksum: fields.checksum.to_owned(),
    }
}

/// In one round trip: tries the schema's session-level advisory lock and, if it was free,
/// reads the schema's ledger under it. `None` when another runner holds the schema.
pub async fn try_lock_and_read(
    client: &Client,
    schema: &SchemaName,
    secret: &[u8; 32],
) -> Result<Option<Vec<LedgerEntry>>, ControlError> {
    // Typed parameters: one round trip (no separate prepare).
    let rows = client
        .query_typed(
            "WITH lock AS (SELECT pg_try_advisory_lock($1, $2) AS got)
             SELECT lock.got, l.plugin, l.step_id, l.checksum, l.artifact_checksum, l.plugin_version, l.mac
             FROM lock LEFT JOIN wasmig.ledger l ON lock.got AND l.schema_name = $3
             ORDER BY l.applied_at, l.plugin, l.step_id",
            &[
                (&LOCK_CLASS, Type::INT4),
                (&schema_lock_key(schema), Type::INT4),
                (&schema.as_str(), Type::TEXT),
            ],
        )
        .await
        .map_err(pg(format!("locking schema `{schema}`")))?;
    if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .filter(|r| r.get::<_, Option<&str>>(1).is_some())
            .map(|r| ledger_entry(r, 1, schema.as_str(), secret))
            .collect(),
    ))
}

/// Releases the schema's lock (no write, so no commit to wait for).
pub async fn release_schema(client: &Client, schema: &SchemaName) -> Result<(), ControlError> {
    client
        .query_typed(
            "SELECT pg_advisory_unlock($1, $2)",
            &[
                (&LOCK_CLASS, Type::INT4),
                (&schema_lock_key(schema), Type::INT4),
            ],
        )
        .await
        .map_err(pg(format!("releasing schema `{schema}`")))?;
    Ok(())
}

/// Records steps as applied without running them (`wasmig baseline`): operator-written
/// ledger rows with valid MACs; rows already present are left alone. Returns how many were
/// added.
pub async fn baseline_rows(
    client: &Client,
    run_id: i64,
    schema: &SchemaName,
    grants: &[StepGrant],
) -> Result<u64, ControlError> {
    let col = |f: fn(&StepGrant) -> &str| grants.iter().map(f).collect::<Vec<&str>>();
    client
        .execute(
            "INSERT INTO wasmig.ledger (schema_name, plugin, step_id, checksum, artifact_checksum,
                                        plugin_version, applied_at, duration_ms, run_id, mac)
             SELECT $1, p, s, c, a, v, clock_timestamp(), 0, $2, m
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                  AS u(p, s, c, a, v, m)
             ON CONFLICT (schema_name, plugin, step_id) DO NOTHING",
            &[
                &schema.as_str(),
                &run_id,
                &col(|g| &g.plugin),
                &col(|g| &g.step_id),
                &col(|g| &g.checksum),
                &col(|g| &g.artifact_checksum),
                &col(|g| &g.plugin_version),
                &col(|g| &g.mac),
            ],
        )
        .await
        .map_err(pg(format!("recording a baseline in `{schema}`")))
}

/// Rewrites one ledger row with the current checksum (`wasmig repair`); returns the old
/// checksum, or `None` if the step is not recorded.
pub async fn repair_row(
    client: &Client,
    schema: &SchemaName,
    g: &StepGrant,
) -> Result<Option<String>, ControlError> {
    let row = client
        .query_opt(
            "UPDATE wasmig.ledger AS l
                SET checksum = $4, artifact_checksum = $5, plugin_version = $6, mac = $7
               FROM (SELECT checksum AS old FROM wasmig.ledger
                      WHERE schema_name = $1 AND plugin = $2 AND step_id = $3 FOR UPDATE) o
              WHERE l.schema_name = $1 AND l.plugin = $2 AND l.step_id = $3
             RETURNING o.old",
            &[
                &schema.as_str(),
                &g.plugin,
                &g.step_id,
                &g.checksum,
                &g.artifact_checksum,
                &g.plugin_version,
                &g.mac,
            ],
        )
        .await
        .map_err(pg(format!("repairing a ledger row of `{schema}`")))?;
    Ok(row.map(|r| r.get(0)))
}

/// Ends the sessions of tenant roles that hold locks on relations of the shared schema
/// (a tenant step reading a shared table keeps its lock until it commits): the shared
/// schema's migration goes first. Returns how many sessions were ended.
pub async fn end_tenant_sessions_locking(
    client: &Client,
    shared: &SchemaName,
) -> Result<i64, ControlError> {
    Ok(client
        .query_one(
            "SELECT count(pg_catalog.pg_terminate_backend(a.pid))
               FROM pg_catalog.pg_stat_activity a
              WHERE a.usename IN (SELECT role_name FROM wasmig.managed_schema WHERE scope = 'tenant')
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                              JOIN pg_catalog.pg_class c ON c.oid = l.relation
                             WHERE l.pid = a.pid AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                                    WHERE datname = pg_catalog.current_database())
                               AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1))",
            &[&shared.as_str()],
        )
        .await
        .map_err(pg(format!(
            "ending tenant sessions that hold locks in the shared schema `{shared}`"
        )))?
        .get(0))
}

/// Whether the operator role is a superuser.
pub async fn operator_is_superuser(
    client: &impl tokio_postgres::GenericClient,
) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(pg("reading the operator role"))?
        .get(0))
}

/// Whether the object guard event trigger (installed by a superuser `init`) is enabled.
pub async fn object_guard_installed(client: &Client) -> Result<bool, ControlError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger
                             WHERE evtname = 'wasmig_guard_tenant_objects' AND evtenabled <> 'D')",
            &[],
        )
        .await
        .map_err(pg("checking the object guard"))?
        .get(0))
}

/// Removes grants that expired (left by a runner that died).
pub async fn clear_expired_grants(client: &Client) -> Result<(), ControlError> {
    client
        .execute(
            "DELETE FROM wasmig.step_grant WHERE expires_at < clock_timestamp()",
            &[],
        )
        .await
        .map_err(pg("clearing expired step grants"))?;
    Ok(())
}

/// The ledger fields a MAC covers.
pub struct LedgerMacFields<'a> {
    /// Schema.
    pub schema: &'a str,
    /// Plugin.
    pub plugin: &'a str,
    /// Step id.
    pub step_id: &'a str,
    /// Step checksum.
    pub checksum: &'a str,
    /// Artifact checksum.
    pub artifact_checksum: &'a str,
    /// Plugin version.
    pub plugin_version: &'a str,
}

/// The most recent failure per schema: (plugin, step, sqlstate, message).
pub async fn last_failures(
    client: &Client,
) -> Result<HashMap<String, (String, String, Option<String>, String)>, ControlError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (f.schema_name) f.schema_name, f.plugin, f.step_id, f.sqlstate, f.message
             FROM wasmig.failure f
             WHERE NOT EXISTS (SELECT 1 FROM wasmig.ledger l WHERE l.schema_name = f.schema_name
                               AND l.plugin = f.plugin AND l.step_id = f.step_id)
             ORDER BY f.schema_name, f.failed_at DESC",
            &[],
        )
        .await
        .map_err(pg("reading failures"))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect())
}

/// Starts a run record; returns its id.
pub async fn start_run(
    client: &Client,
    command: &str,
    args: &[String],
) -> Result<i64, ControlError> {
    let os_user = os_user();
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned());
    // Arguments are kept for `wasmig history`; a URL among them loses its password.
    let args: Vec<String> = args.iter().map(|a| crate::db::connect::redact(a)).collect();
    let args = serde_json::to_string(&args).unwrap_or_else(|_| "[]".into());
    // The run's lock is taken by the statement that inserts it: once the row is visible,
    // its runner holds the lock.
    let row = client
        .query_one(
            "WITH r AS (INSERT INTO wasmig.run (command, arguments, os_user, hostname)
                        VALUES ($1, $2::text::jsonb, $3, $4) RETURNING run_id)
             SELECT run_id, pg_catalog.pg_advisory_lock($5, (run_id % 2147483648)::int4)::text
             FROM r",
            &[&command, &args, &os_user, &host, &RUN_LOCK_CLASS],
        )
        .await
        .map_err(pg("recording the run"))?;
    Ok(row.get(0))
}

/// The name of the user running wasmig: `USER` / `LOGNAME`, else the account of the process's
/// uid in `/etc/passwd` (containers and CI often set neither variable), else `uid N`.
fn os_user() -> Option<String> {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
    {
        return Some(u);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    Some(
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == uid)
            .map_or_else(|| format!("uid {uid}"), |f| f[0].to_owned()),
    )
}

/// One row of the run history.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: i64,
    /// Command (`migrate`, `tenant create`, ...).
    pub command: String,
    /// Arguments as given (URLs redacted).
    pub arguments: Vec<String>,
    /// OS user.
    pub os_user: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Database role.
    pub db_user: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Start, Unix seconds.
    #[serde(serialize_with = "crate::report::round3")]
    pub started_epoch_s: f64,
    /// Duration in seconds, if finished.
    #[serde(serialize_with = "crate::report::round3_opt")]
    pub duration_s: Option<f64>,
    /// `ok`, `failed`, `interrupted` (stopped by a signal), `abandoned` (its runner is gone
    /// without recording an end: killed, or the machine lost power), or absent while running.
    pub outcome: Option<String>,
    /// Steps applied.
    pub applied: Option<i32>,
    /// Schemas with problems.
    pub failed: Option<i32>,
}

/// The newest `limit` runs, newest first.
pub async fn runs(client: &Client, limit: i64) -> Result<Vec<RunRecord>, ControlError> {
    let rows = client
        .query(
            "SELECT run_id, command, arguments::text, os_user, hostname, db_user,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    extract(epoch FROM started_at)::float8,
                    extract(epoch FROM finished_at - started_at)::float8,
                    CASE WHEN outcome IS NOT NULL THEN outcome
                         WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                                      WHERE l.locktype = 'advisory' AND l.granted
                                        AND l.classid::int4 = $2 AND l.objsubid = 2
                                        AND l.objid::int8 = run_id % 2147483648
                                        AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                          WHERE datname = current_database()))
                         THEN NULL
                         ELSE 'abandoned' END,
                    applied, failed
             FROM wasmig.run ORDER BY run_id DESC LIMIT $1",
            &[&limit, &RUN_LOCK_CLASS],
        )
        .await
        .map_err(pg("reading the run history"))?;
    Ok(rows
        .iter()
        .map(|r| RunRecord {
            run_id: r.get(0),
            command: r.get(1),
            arguments: serde_json::from_str(r.get::<_, &str>(2)).unwrap_or_default(),
            os_user: r.get(3),
            hostname: r.get(4),
            db_user: r.get(5),
            started_at: r.get(6),
            started_epoch_s: r.get(7),
            duration_s: r.get(8),
            outcome: r.get(9),
            applied: r.get(10),
            failed: r.get(11),
        })
        .collect())
}

/// `server_version`.
pub async fn server_version(client: &Client) -> Result<String, ControlError> {
    Ok(client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(pg("reading the server version"))?
        .get(0))
}

/// The control schema's version, `None` if `wasmig init` never ran.
pub async fn control_version(client: &Client) -> Result<Option<i32>, ControlError> {
    control_version_in(client).await
}

/// A wasmig advisory lock someone holds.
#[derive(Debug, Clone, Serialize)]
pub struct HeldLock {
    /// The schema it protects (`?` if no registered schema has that key).
    pub schema: String,
    /// Backend holding it.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Seconds since that session last changed state (a lower bound of the hold time for
    /// a session-level lock taken when the schema's work started).
    #[serde(serialize_with = "crate::report::round3")]
    pub held_s: f64,
}

/// wasmig's advisory locks currently held, with their holders.
pub async fn held_locks(
    client: &Client,
    reg: &[ManagedSchema],
) -> Result<Vec<HeldLock>, ControlError> {
    let rows = client
        .query(
            "SELECT l.objid::int4, a.pid, coalesce(a.application_name, ''),
                    extract(epoch FROM clock_timestamp() - coalesce(a.query_start, a.backend_start))::float8
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int4 = $1 AND l.objsubid = 2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&LOCK_CLASS],
        )
        .await
        .map_err(pg("reading advisory locks"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: i32 = r.get(0);
            HeldLock {
                schema: reg
                    .iter()
                    .find(|m| schema_lock_key(&m.schema) == key)
                    .map_or_else(|| "?".to_owned(), |m| m.schema.to_string()),
                pid: r.get(1),
                application_name: r.get(2),
                held_s: r.get(3),
            }
        })
        .collect())
}

/// Summary of applied steps' durations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DurationSummary {
    /// Steps in the ledger.
    pub count: i64,
    /// Sum of durations, ms.
    #[serde(serialize_with = "crate::report::round3")]
    pub sum: f64,
    /// Median, ms.
    #[serde(serialize_with = "crate::report::round3_opt")]
    pub p50: Option<f64>,
    /// 90th percentile, ms.
    #[serde(serialize_with = "crate::report::round3_opt")]
    pub p90: Option<f64>,
    /// 99th percentile, ms.
    #[serde(serialize_with = "crate::report::round3_opt")]
    pub p99: Option<f64>,
}

/// Duration summary over the whole ledger, in one query.
pub async fn step_durations(client: &Client) -> Result<DurationSummary, ControlError> {
    let r = client
        .query_one(
            "SELECT count(*), coalesce(sum(duration_ms), 0)::float8,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)
             FROM wasmig.ledger",
            &[],
        )
        .await
        .map_err(pg("summarising step durations"))?;
    Ok(DurationSummary {
        count: r.get(0),
        sum: r.get(1),
        p50: r.get(2),
        p90: r.get(3),
        p99: r.get(4),
    })
}

/// Closes a run record.
pub async fn finish_run(
    client: &Client,
    run_id: i64,
    outcome: &str,
    applied: i32,
    failed: i32,
) -> Result<(), ControlError> {
    client
        .query_one(
            "WITH done AS (UPDATE wasmig.run SET finished_at = clock_timestamp(), outcome = $2, applied = $3, failed = $4
                           WHERE run_id = $1 RETURNING run_id)
             SELECT pg_catalog.pg_advisory_unlock($5, (run_id % 2147483648)::int4) FROM done",
            &[&run_id, &outcome, &applied, &failed, &RUN_LOCK_CLASS],
        )
        .await
        .map_err(pg("closing the run record"))?;
    Ok(())
}

/// Records a failed step (after its transaction rolled back).
pub async fn record_failure(
    client: &Client,
    run_id: i64,
    schema: &SchemaName,
    plugin: &str,
    step: &str,
    sqlstate: Option<&str>,
    message: &str,
) -> Result<(), ControlError> {
    client
        .execute(
            "INSERT INTO wasmig.failure (run_id, schema_name, plugin, step_id, sqlstate, message)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &run_id,
                &schema.as_str(),
                &plugin,
                &step,
                &sqlstate,
                &message,
            ],
        )
        .await
        .map_err(pg("recording a failure"))?;
    Ok(())
}

/// What the host grants a schema role for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepGrant {
    /// Secret one-time token (the server stores only its sha256).
    pub token: [u8; 32],
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step_id: String,
    /// Step checksum.
    pub checksum: String,
    /// Artifact checksum.
    pub artifact_checksum: String,
    /// Plugin version.
    pub plugin_version: String,
    /// MAC of the ledger row this grant will produce.
    pub mac: String,
    /// `apply` (record the step) or `revert` (remove its row).
    pub action: &'static str,
    /// The capability tier the step runs with.
    pub tier: crate::plan::Tier,
    /// The step's own `temp_file_limit` in kB (the plugin's `max_temp_mb`), if it has one.
    pub temp_limit_kb: Option<i64>,
}

/// Stores one-time grants (for any number of schemas) in one round trip and one commit.
pub async fn insert_grants(
    client: &Client,
    run_id: i64,
    grants: &[(&str, &SchemaName, &StepGrant)],
) -> Result<(), ControlError> {
    if grants.is_empty() {
        return Ok(());
    }
    let tokens: Vec<&[u8]> = grants.iter().map(|(_, _, g)| &g.token[..]).collect();
    let roles: Vec<&str> = grants.iter().map(|(r, _, _)| *r).collect();
    let schemas: Vec<&str> = grants.iter().map(|(_, s, _)| s.as_str()).collect();
    let col =
        |f: fn(&StepGrant) -> &str| grants.iter().map(|(_, _, g)| f(g)).collect::<Vec<&str>>();
    client
        .execute(
            "INSERT INTO wasmig.step_grant (token_hash, role_name, schema_name, plugin, step_id, checksum,
                                            artifact_checksum, plugin_version, run_id, mac, action, tier,
                                            temp_limit_kb, expires_at)
             SELECT sha256(t), r, sc, p, s, c, a, v, $1, m, x, ti, tl, clock_timestamp() + interval '1 day'
             FROM unnest($2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[])
                  AS u(t, r, sc, p, s, c, a, v, m, x, ti, tl)",
            &[
                &run_id,
                &tokens,
                &roles,
                &schemas,
                &col(|g| &g.plugin),
                &col(|g| &g.step_id),
                &col(|g| &g.checksum),
                &col(|g| &g.artifact_checksum),
                &col(|g| &g.plugin_version),
                &col(|g| &g.mac),
                &col(|g| g.action),
                &col(|g| g.tier.as_str()),
                &grants
                    .iter()
                    .map(|(_, _, g)| g.temp_limit_kb)
                    .collect::<Vec<Option<i64>>>(),
            ],
        )
        .await
        .map_err(pg("granting steps"))?;
    Ok(())
}

/// Removes the grants a run issued but did not use (steps not reached, schemas another
/// runner completed first).
pub async fn clear_run_grants(client: &Client, run_id: i64) -> Result<(), ControlError> {
    client
        .execute(
            "DELETE FROM wasmig.step_grant WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(pg("clearing the run's unused step grants"))?;
    Ok(())
}

/// Lock key for one schema (second key of the two-key advisory lock).
pub fn schema_lock_key(schema: &SchemaName) -> i32 {
    let h = blake3::hash(schema.as_str().as_bytes());
    i32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}

/// The secret that derives schema-role passwords.
pub async fn read_secret(client: &Client) -> Result<[u8; 32], ControlError> {
    let row = client
        .query_one("SELECT key FROM wasmig.secret WHERE id = 1", &[])
        .await
        .map_err(pg(
            "reading the control secret (the operator role needs access to `wasmig.secret`)",
        ))?;
    let key: Vec<u8> = row.get(0);
    Ok(key.try_into().unwrap_or([0; 32]))
}

/// The role name for a schema: `<database>_<schema>` when it fits in 63 bytes, otherwise
/// `wasmig_` plus a hash (roles are cluster-wide, so the database name keeps them apart).
pub fn role_name_for(dbname: &str, schema: &SchemaName) -> String {
    let readable = format!("{dbname}_{schema}");
    if readable.len() <= 63
        && readable
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return readable.to_ascii_lowercase();
    }
    let h = blake3::hash(format!("{dbname}\0{schema}").as_bytes());
    format!("wasmig_{}", &h.to_hex()[..24])
}

/// The group role every tenant role belongs to; shared plugins grant it read access to
/// shared tables. Schema names starting with `wasmig` are reserved, so this cannot collide
/// with a schema role.
pub fn tenant_group_for(dbname: &str) -> String {
    let readable = format!("{dbname}_wasmig_tenants");
    if readable.len() <= 63
        && readable
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return readable.to_ascii_lowercase();
    }
    let h = blake3::hash(format!("{dbname}\0wasmig_tenants").as_bytes());
    format!("wasmig_g_{}", &h.to_hex()[..24])
}

/// Server-side limits of schema-role sessions (set on the role and at every connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// `statement_timeout`, milliseconds.
    pub statement_timeout_ms: u64,
    /// `lock_timeout`, milliseconds.
    pub lock_timeout_ms: u64,
    /// `idle_in_transaction_session_timeout`, milliseconds.
    pub idle_in_transaction_ms: u64,
    /// `temp_file_limit`, kB: temporary files (sorts, hashes, temporary tables) one session
    /// of the role may hold. Only a superuser can set it, and the role cannot raise it.
    pub temp_file_limit_kb: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            statement_timeout_ms: 10 * 60 * 1000,
            lock_timeout_ms: 30 * 1000,
            idle_in_transaction_ms: 60 * 1000,
            temp_file_limit_kb: 1 << 20,
        }
    }
}

impl SessionLimits {
    /// Startup options for a schema-role connection (they override role defaults). The
    /// tenant group's name is passed as `wasmig.tenant_group` for shared plugins that grant
    /// tenants read access.
    pub fn startup_options(&self, schema: &SchemaName, tenant_group: &str) -> String {
        format!(
            "-c search_path={schema} -c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={} -c wasmig.tenant_group={tenant_group}",
            self.statement_timeout_ms, self.lock_timeout_ms, self.idle_in_transaction_ms
        )
    }
}

/// Options for [`ensure_schema`].
#[derive(Debug, Clone)]
pub struct EnsureSchema<'a> {
    /// The schema.
    pub schema: &'a SchemaName,
    /// Shared or tenant.
    pub scope: Scope,
    /// Display name (tenants).
    pub name: Option<&'a str>,
    /// Domain (tenants).
    pub domain: Option<&'a str>,
    /// Database name, for the role name.
    pub dbname: &'a str,
    /// Connection limit for the role.
    pub connection_limit: i32,
    /// Role defaults for timeouts.
    pub session: &'a SessionLimits,
    /// Application role that gets data privileges on everything plugins create here.
    pub app_role: Option<&'a str>,
}

/// Whether [`ensure_schema`] created anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// Schema, role and registry row were created.
    Created,
    /// All three already existed.
    Existed,
}

/// Get-or-create a managed schema: its own role (login, no privileges beyond the schema),
/// the schema owned by that role, and the registry row, all in one transaction. The
/// application role's privileges are (re)applied every time.
pub async fn ensure_schema(
    client: &mut Client,
    opts: &EnsureSchema<'_>,
) -> Result<(Ensured, String), ControlError> {
    let schema = opts.schema;
    let what = || format!("creating schema `{schema}`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &REGISTRY_LOCK],
    )
    .await
    .map_err(pg(what()))?;
    let existing = tx
        .query_opt(
            "SELECT role_name, scope FROM wasmig.managed_schema WHERE schema_name = $1",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?;
    let (ensured, role) = if let Some(row) = existing {
        let scope: String = row.get(1);
        if scope == "shared" && opts.scope == Scope::Tenant {
            return Err(ControlError::SharedNotTenant(schema.to_string()));
        }
        (Ensured::Existed, row.get::<_, String>(0))
    } else {
        (Ensured::Created, create_schema_and_role(&tx, opts).await?)
    };
    if let Some(app) = opts.app_role {
        grant_app_role(&tx, schema, &role, app).await?;
    }
    tx.commit().await.map_err(pg(what()))?;
    Ok((ensured, role))
}

async fn create_schema_and_role(
    tx: &tokio_postgres::Transaction<'_>,
    opts: &EnsureSchema<'_>,
) -> Result<String, ControlError> {
    let schema = opts.schema;
    let what = || format!("creating schema `{schema}`");
    let role = role_name_for(opts.dbname, schema);
    let role_exists = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .map_err(pg(what()))?
        .get::<_, bool>(0);
    if role_exists {
        return Err(ControlError::RoleTaken {
            role,
            schema: schema.to_string(),
        });
    }
    let schema_exists = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?
        .get::<_, bool>(0);
    if schema_exists && schema.as_str() != "public" {
        return Err(ControlError::SchemaTaken(schema.to_string()));
    }
    let secret = read_secret_tx(tx).await?;
    let verifier = crate::secret::scram_verifier(&crate::secret::role_password(&secret, &role));
    let group = tenant_group_for(opts.dbname);
    let (r, s, g) = (ident(&role), ident(schema.as_str()), ident(&group));
    let verifier = literal(&verifier).expect("a SCRAM verifier has no NUL");
    let comment = literal(&format!("wasmig: role of schema {schema}")).expect("no NUL");
    let create_schema = if schema_exists {
        format!("ALTER SCHEMA {s} OWNER TO {r};")
    } else {
        format!("CREATE SCHEMA {s} AUTHORIZATION {r};")
    };
    let scope_ddl = match opts.scope {
        // Tenants read the shared schema only where shared plugins grant the group.
        Scope::Tenant => format!("GRANT {g} TO {r};"),
        Scope::Shared => format!("GRANT USAGE ON SCHEMA {s} TO {g};"),
    };
    let sl = opts.session;
    let ddl = format!(
        "CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS
             CONNECTION LIMIT {limit} PASSWORD {verifier};
         COMMENT ON ROLE {r} IS {comment};
         GRANT {r} TO CURRENT_USER;
         {create_schema}
         REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
         ALTER ROLE {r} SET search_path = {s};
         ALTER ROLE {r} SET statement_timeout = {st};
         ALTER ROLE {r} SET lock_timeout = {lt};
         ALTER ROLE {r} SET idle_in_transaction_session_timeout = {it};
         {scope_ddl}
         GRANT USAGE ON SCHEMA wasmig_api TO {r};
         GRANT EXECUTE ON FUNCTION {FUNCTIONS_OF_SCHEMA_ROLES} TO {r};",
        limit = opts.connection_limit,
        st = sl.statement_timeout_ms,
        lt = sl.lock_timeout_ms,
        it = sl.idle_in_transaction_ms,
    );
    tx.batch_execute(&ddl).await.map_err(pg(what()))?;
    if operator_is_superuser(tx).await? {
        tx.batch_execute(&format!(
            "ALTER ROLE {r} SET temp_file_limit = '{}kB'",
            sl.temp_file_limit_kb
        ))
        .await
        .map_err(pg(what()))?;
    }
    tx.execute(
        "INSERT INTO wasmig.managed_schema (schema_name, scope, role_name, display_name, domain)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &schema.as_str(),
            &match opts.scope {
                Scope::Shared => "shared",
                Scope::Tenant => "tenant",
            },
            &role,
            &opts.name,
            &opts.domain,
        ],
    )
    .await
    .map_err(pg(what()))?;
    Ok(role)
}

async fn grant_app_role(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &SchemaName,
    role: &str,
    app: &str,
) -> Result<(), ControlError> {
    let what = || format!("granting application role `{app}` on schema `{schema}`");
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&app],
        )
        .await
        .map_err(pg(what()))?
        .get(0);
    if !exists {
        return Err(ControlError::Pg {
            what: what(),
            error: PgError {
                sqlstate: None,
                message: format!(
                    "role `{app}` does not exist; create it or change the application role setting"
                ),
                detail: None,
                hint: None,
            },
        });
    }
    let (r, s, a) = (ident(role), ident(schema.as_str()), ident(app));
    tx.batch_execute(&format!(
        "GRANT USAGE ON SCHEMA {s} TO {a};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {a};
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {a};
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {r} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {r} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {a};
         ALTER DEFAULT PRIVILEGES FOR ROLE {r} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {a};"
    ))
    .await
    .map_err(pg(what()))
}

/// Re-sets a schema role's password to the derived one (a plugin may change its own role's
/// password; PostgreSQL lets any role do that).
pub async fn reset_role_password(
    client: &Client,
    role: &str,
    secret: &[u8; 32],
) -> Result<(), ControlError> {
    let verifier = crate::secret::scram_verifier(&crate::secret::role_password(secret, role));
    let verifier = literal(&verifier).expect("a SCRAM verifier has no NUL");
    client
        .batch_execute(&format!("ALTER ROLE {} PASSWORD {verifier}", ident(role)))
        .await
        .map_err(pg(format!("restoring the password of role `{role}`")))
}

/// Creates the tenant group role if missing (at `init`).
pub async fn ensure_tenant_group(client: &Client, dbname: &str) -> Result<String, ControlError> {
    let group = tenant_group_for(dbname);
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&group],
        )
        .await
        .map_err(pg("reading roles"))?
        .get(0);
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE ROLE {} NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
                ident(&group)
            ))
            .await
            .map_err(pg(format!("creating the tenant group role `{group}`")))?;
    }
    Ok(group)
}

async fn read_secret_tx(tx: &tokio_postgres::Transaction<'_>) -> Result<[u8; 32], ControlError> {
    let row = tx
        .query_one("SELECT key FROM wasmig.secret WHERE id = 1", &[])
        .await
        .map_err(pg("reading the control secret"))?;
    let key: Vec<u8> = row.get(0);
    Ok(key.try_into().unwrap_or([0; 32]))
}

/// Drops a tenant: its schema (CASCADE), its role, its registry row and its ledger rows.
/// Everything the role owned goes with it (`DROP ROLE` fails otherwise, in any database);
/// returns what the tenant group still owns in this database (no step may leave anything
/// owned by it, so anything listed was put there from outside wasmig).
pub async fn drop_tenant(
    client: &mut Client,
    schema: &SchemaName,
    dbname: &str,
) -> Result<Vec<String>, ControlError> {
    let what = || format!("dropping tenant `{schema}`");
    let tx = client.transaction().await.map_err(pg(what()))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &REGISTRY_LOCK],
    )
    .await
    .map_err(pg(what()))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS, &schema_lock_key(schema)],
    )
    .await
    .map_err(pg(what()))?;
    let row = tx
        .query_opt(
            "SELECT role_name FROM wasmig.managed_schema WHERE schema_name = $1 AND scope = 'tenant'",
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?
        .ok_or_else(|| ControlError::UnknownTenant(schema.to_string()))?;
    let role: String = row.get(0);
    let ddl = format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE;
         DROP OWNED BY {r};
         DROP ROLE IF EXISTS {r};",
        s = ident(schema.as_str()),
        r = ident(&role)
    );
    tx.batch_execute(&ddl).await.map_err(pg(what()))?;
    for table in ["ledger", "step_grant", "failure", "managed_schema"] {
        tx.execute(
            &format!("DELETE FROM wasmig.{table} WHERE schema_name = $1"),
            &[&schema.as_str()],
        )
        .await
        .map_err(pg(what()))?;
    }
    let left: Vec<String> = tx
        .query(
            "SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)
               FROM pg_catalog.pg_shdepend d JOIN pg_catalog.pg_roles g ON g.oid = d.refobjid
              WHERE g.rolname = $1 AND d.deptype = 'o'
                AND d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                AND d.dbid = (SELECT oid FROM pg_catalog.pg_database
                               WHERE datname = pg_catalog.current_database())
              ORDER BY 1",
            &[&tenant_group_for(dbname)],
        )
        .await
        .map_err(pg(what()))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await.map_err(pg(what()))?;
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_records_the_current_control_version() {
        assert!(CONTROL_DDL.contains(&format!("('control_version', '{CONTROL_VERSION}')")));
    }
}
