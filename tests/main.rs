//! Integration tests: the real `wasmig` binary, real plugin components built from
//! `plugins/`, a real PostgreSQL server started by the tests (see `support`).

mod support;

mod adopt;
mod app_roles;
mod authoring;
mod bad_input;
mod conflicts;
mod day_two;
mod foundation;
mod operations;
mod operator;
mod rollout;
mod sandbox;
mod scale;
mod serve;
mod tls;
mod undo;
mod waves;
