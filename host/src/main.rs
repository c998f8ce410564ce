//! The `wasmig` binary: parse arguments, set up logging, run, map the result to an exit code.

use std::process::ExitCode;

use wasmig::{Exit, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    wasmig::logging::init(std::env::var("WASMIG_LOG").ok().as_deref(), level);
    if let Err(e) = wasmig::interrupt::install() {
        wasmig::errln!("error: cannot listen for SIGINT and SIGTERM: {e}");
        return ExitCode::from(Exit::Error as u8);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            wasmig::errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Error as u8);
        }
    };
    // The one place the process's arguments and environment are read; operations get them.
    let process = wasmig::Invocation {
        args: std::env::args().skip(1).collect(),
        // Variables that are not UTF-8 are left out (none of wasmig's are).
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let json = cli.command.wants_json();
    let result = runtime.block_on(wasmig::run(cli, &process));
    wasmig::report_peak_memory_for_tests();
    match result {
        // Output the command owed that could not be written is a failure, not a success.
        Ok(_) if wasmig::out::stdout_failed() => ExitCode::from(Exit::Error as u8),
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            wasmig::report_error(&e, json);
            ExitCode::from(Exit::Error as u8)
        }
    }
}
