//! Log messages for the operator; the host prints them prefixed with the plugin name and
//! schema (`plugin@schema`), bounded in size, made inert. Their text is not part of a code
//! step's fingerprint: rewording a log line is not a change of the step.
//!
//! ```no_run
//! wasmig_sdk::info("seeding units");
//! wasmig_sdk::trace(&format!("{} rows", 3));
//! ```

use crate::bindings::wasmig::plugin0_1_0::log::{Level, log};

/// Logs at trace level (shown with `WASMIG_LOG=trace`).
pub fn trace(message: &str) {
    log(Level::Trace, message);
}
/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}
/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}
/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
