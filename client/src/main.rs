//! `portrait`: the command-line tool of Portrait. See `portrait --help`, and the [`cli`] module
//! for the structure and the exit-code contract.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
