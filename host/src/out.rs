//! Writing to stdout and stderr the way command-line tools do: a reader that went away
//! (`wasmig status | head -1`) ends the output quietly instead of panicking, and any other
//! write failure (a full disk behind `> file`) is reported once and fails the command.
//! Every line wasmig prints goes through [`outln!`](crate::outln), [`out!`](crate::out) or
//! [`errln!`](crate::errln), and on its way every character that could change how a terminal
//! shows the text (escape sequences, carriage returns, bidirectional overrides) becomes a
//! visible escape ([`crate::text::terminal_safe`]): whatever a plugin, a file name or a
//! server message put in an error chain or a report, it cannot forge what the operator reads.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
static STDOUT_DIVERTED: AtomicBool = AtomicBool::new(false);

/// While `divert` is on, what would go to stdout goes to stderr: a command whose stdout is
/// one JSON document (`verify --fix --json`) runs another's human report (the fix's run
/// summary) where people still read it, without breaking the document.
pub fn divert_stdout_to_stderr(divert: bool) {
    STDOUT_DIVERTED.store(divert, Ordering::Relaxed);
}

/// Writes to stdout; after the reader closed the pipe, writes nothing more.
pub fn stdout(args: std::fmt::Arguments<'_>) {
    if STDOUT_DIVERTED.load(Ordering::Relaxed) {
        stderr(args);
        return;
    }
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let text = args.to_string();
    let text = crate::text::terminal_safe(&text, crate::text::Breaks::Keep);
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            stderr(format_args!("error: cannot write to stdout: {e}\n"));
        }
    }
}

/// Writes to stderr; a closed stderr is ignored (there is nowhere left to say so).
pub fn stderr(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let text = crate::text::terminal_safe(&text, crate::text::Breaks::Keep);
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes()).and_then(|()| e.flush());
}

/// Whether writing to stdout failed for a reason other than a closed pipe: the output the
/// command owed was not delivered, so it must not exit 0.
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// `println!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}
