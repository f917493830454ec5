//! The `stackhost` binary: parse the command line, run, print the whole
//! error chain on failure and exit with a documented code.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("STACKHOST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match stackhost::cli::main() {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`stackhost plugin list | head`) is not an error.
            if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(stackhost::cli::EXIT_ERROR)
        }
    }
}
