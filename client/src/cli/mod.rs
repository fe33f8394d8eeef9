//! The `portrait` command line: argument definitions, the exit-code contract, and the entry point.
//!
//! - [`args`] parses the command line (clap derive);
//! - [`run`] turns a parsed command into client calls;
//! - [`output`] renders results as aligned tables or JSON;
//! - [`progress`] draws a counter on stderr during long exports;
//! - [`load`] runs `portrait load`, `versions` and `drop-version`;
//! - [`realtime`] runs `portrait set`, `clear`, `write` and `admin`.
//!
//! Exit codes: 0 on success, 2 on a usage error (reported by clap), 1 on any other error.
//! Results go to stdout, errors and progress to stderr.

use std::process::ExitCode;

use clap::Parser as _;

pub mod args;
pub mod load;
pub mod output;
pub mod progress;
pub mod realtime;
pub mod run;

pub use args::Cli;

/// Exit code of a successful run (also `--help` and `--version`).
pub const EXIT_OK: u8 = 0;
/// Exit code of a failed run: server, connection or output errors.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a command line that does not parse (clap's convention).
pub const EXIT_USAGE: u8 = 2;

/// Exit code for a command line clap rejected, or for `--help`/`--version`, which clap reports as
/// errors too.
pub fn parse_exit_code(error: &clap::Error) -> u8 {
    if error.use_stderr() {
        EXIT_USAGE
    } else {
        EXIT_OK
    }
}

/// Exit code for the outcome of a parsed command.
pub fn run_exit_code(outcome: &anyhow::Result<()>) -> u8 {
    match outcome {
        Ok(()) => EXIT_OK,
        Err(_) => EXIT_FAILURE,
    }
}

/// Parses the process arguments, runs the command, reports errors on stderr.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Printing help to a closed pipe is not worth reporting.
            let _ = error.print();
            return ExitCode::from(parse_exit_code(&error));
        }
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run::run(&cli)));
    if let Err(error) = &outcome {
        eprint!("{}", output::error_human(error, cli.command.expression()));
    }
    ExitCode::from(run_exit_code(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        let usage = Cli::try_parse_from(["portrait", "count"]).unwrap_err();
        assert_eq!(parse_exit_code(&usage), EXIT_USAGE);
        let unknown = Cli::try_parse_from(["portrait", "frobnicate"]).unwrap_err();
        assert_eq!(parse_exit_code(&unknown), EXIT_USAGE);
        let help = Cli::try_parse_from(["portrait", "--help"]).unwrap_err();
        assert_eq!(parse_exit_code(&help), EXIT_OK);
        let version = Cli::try_parse_from(["portrait", "--version"]).unwrap_err();
        assert_eq!(parse_exit_code(&version), EXIT_OK);
    }

    #[test]
    fn failed_runs_exit_1() {
        assert_eq!(run_exit_code(&Ok(())), EXIT_OK);
        let failure = Err(anyhow::Error::new(portrait_client::Error::Unavailable(
            "down".into(),
        )));
        assert_eq!(run_exit_code(&failure), EXIT_FAILURE);
    }
}
