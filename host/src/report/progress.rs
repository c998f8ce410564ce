//! The progress of a command over many schemas (`migrate`, `tenant adopt`): on a terminal, a
//! bar with each schema's lines printed above it; otherwise plain lines only (logs, CI), so
//! nothing a pipeline keeps is drawn over.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

/// Where the per-schema lines of a command go while it works through `total` schemas.
pub struct Progress {
    bar: Option<ProgressBar>,
    show: bool,
}

impl Progress {
    /// Lines are printed when `show` (text output, not `--quiet`); the bar is drawn only when
    /// stdout is a terminal and there is more than one schema.
    pub fn new(total: usize, show: bool) -> Progress {
        let bar = (show && std::io::stdout().is_terminal() && total > 1).then(|| {
            let pb = ProgressBar::new(total as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} schemas {elapsed_precise} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        });
        Progress { bar, show }
    }

    /// A line of the result (stdout), when lines are shown.
    pub fn out(&self, line: &str) {
        match &self.bar {
            Some(pb) => pb.println(line),
            None if self.show => crate::outln!("{line}"),
            None => {}
        }
    }

    /// A refusal or error (stderr), always shown.
    pub fn err(&self, line: &str) {
        match &self.bar {
            Some(pb) => pb.println(line),
            None => crate::errln!("{line}"),
        }
    }

    /// One more schema is done.
    pub fn inc(&self) {
        if let Some(pb) = &self.bar {
            pb.inc(1);
        }
    }

    /// Clears the bar (the summary follows).
    pub fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}
