//! `portraitd`: reads its configuration (see `portrait_server::config`), sets up logging and runs
//! the server until SIGINT/SIGTERM. Exits with 0 after a clean shutdown, 2 on a usage error and 1
//! on any other failure, printed as one `error:` line with its causes.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use portrait_server::Config;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: first thing in `main`, before any bitmap exists.
    unsafe { portrait_engine::use_rust_allocator_for_bitmaps() };
    // Usage errors (unknown flags, bad values) print clap's message and exit with 2.
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("invalid log filter {:?}: {e}", config.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Named, so that logs, `top -H` and profiles tell the query workers from the I/O threads
    // (unnamed, they would inherit the name of whichever thread first ran a parallel loop).
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("portraitd-q{i}"))
        .build_global()
        .context("cannot start the query worker threads")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portraitd")
        .build()?
        .block_on(portrait_server::server::run(config))
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}
