//! SIGINT and SIGTERM. A command that changes schemas step by step (migrate, tenant create,
//! verify --fix, revert, restore) stops cleanly on the first signal: it starts no new schema
//! or step, lets the running steps finish (each is bounded by its step deadline, after which
//! it rolls back), records the run as `interrupted` with its counts, prints the summary and
//! exits 130 (SIGINT) or 143 (SIGTERM). A second signal stops the process at once: the server
//! rolls back the open transactions of the sessions that close with it, and the run shows as
//! `abandoned` with the counts its ledger and failure rows give. Any other command
//! stops at the first signal (it holds nothing that needs finishing).
//!
//! Signals are received on a thread of their own, so a second Ctrl-C works even while the
//! main thread is busy (compiling a plugin, running a step).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// The signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// How many [`CleanStop`]s live: a command that stops cleanly is running while it is not 0
/// (they nest: `serve` holds one, and each heal run inside it another).
static CLEAN_STOP: AtomicUsize = AtomicUsize::new(0);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// A signal that stopped (or is stopping) the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// `kill`, a container or service manager stopping wasmig.
    Term,
}

impl Signal {
    /// Its name, as operators know it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
        }
    }

    /// The exit code a shell gives a process this signal ended: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Int => 128 + SIGINT as u8,
            Signal::Term => 128 + SIGTERM as u8,
        }
    }

    fn from_number(n: i32) -> Option<Signal> {
        match n {
            SIGINT => Some(Signal::Int),
            SIGTERM => Some(Signal::Term),
            _ => None,
        }
    }
}

/// Starts listening for SIGINT and SIGTERM. Call once, early in `main`.
pub fn install() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered here, before the thread starts, so that no signal falls between.
    let (mut int, mut term) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("wasmig-signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    let sig = tokio::select! {
                        _ = int.recv() => Signal::Int,
                        _ = term.recv() => Signal::Term,
                    };
                    on_signal(sig);
                }
            });
        })?;
    Ok(())
}

fn on_signal(sig: Signal) {
    let first = RECEIVED
        .compare_exchange(
            0,
            match sig {
                Signal::Int => SIGINT,
                Signal::Term => SIGTERM,
            },
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok();
    if !first {
        crate::errln!(
            "wasmig: {} again: stopping now; the steps still running roll back",
            sig.name()
        );
        std::process::exit(i32::from(sig.exit_code()));
    }
    if CLEAN_STOP.load(Ordering::SeqCst) == 0 {
        crate::errln!("wasmig: {}: stopped", sig.name());
        std::process::exit(i32::from(sig.exit_code()));
    }
    crate::errln!(
        "wasmig: {}: starting no new schema or step; waiting for the running steps to finish (send it again to stop at once)",
        sig.name()
    );
}

/// The first signal received, if any.
pub fn received() -> Option<Signal> {
    Signal::from_number(RECEIVED.load(Ordering::SeqCst))
}

/// While this lives, the first signal asks the command to stop cleanly instead of ending the
/// process.
#[derive(Debug)]
pub struct CleanStop(());

impl CleanStop {
    /// Marks the start of work that must be stopped cleanly.
    pub fn begin() -> CleanStop {
        CLEAN_STOP.fetch_add(1, Ordering::SeqCst);
        CleanStop(())
    }
}

impl Drop for CleanStop {
    fn drop(&mut self) {
        CLEAN_STOP.fetch_sub(1, Ordering::SeqCst);
    }
}
