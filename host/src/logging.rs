//! The process's log records (`tracing`, and the `log` records of the libraries under it),
//! written to stderr one record per line. Every record passes through
//! [`crate::text::terminal_safe`], so a server notice, a plugin's name or a file name inside
//! one cannot break its line or forge wasmig's output. The database driver's own records
//! below warnings are never shown, whatever `WASMIG_LOG` asks: they quote statements and
//! their parameters, plugin text included.

use std::io;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::text::{Breaks, terminal_safe};

/// Installs the process's logger: `WASMIG_LOG` (an `EnvFilter` directive) if set, else
/// `default` for wasmig's own records and warnings for everything else.
pub fn init(wasmig_log: Option<&str>, default: &str) {
    let mut filter = wasmig_log
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("wasmig={default},warn")));
    if let Ok(quiet_driver) = "tokio_postgres=warn".parse() {
        filter = filter.add_directive(quiet_driver);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(SafeStderr)
        .with_target(false)
        .without_time()
        .init();
}

/// Makes one [`SafeRecord`] per log record.
struct SafeStderr;

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = SafeRecord;

    fn make_writer(&'a self) -> SafeRecord {
        SafeRecord(Vec::new())
    }
}

/// One log record, written made safe when it is complete.
struct SafeRecord(Vec<u8>);

impl io::Write for SafeRecord {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SafeRecord {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        crate::out::stderr(format_args!("{}", terminal_safe(&text, Breaks::Escape)));
    }
}
