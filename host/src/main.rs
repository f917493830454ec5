//! The `stackhost` binary: parse the command line, run, print the whole
//! error chain on failure and exit with a documented code.

use std::process::ExitCode;

fn main() -> ExitCode {
    restore_sigpipe();
    raise_open_file_limit();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("STACKHOST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match stackhost::cli::main() {
        Ok(code) => code,
        Err(e) => {
            // Errors can carry a plugin's own text: escape it.
            let shown = |e: &dyn std::fmt::Display| {
                stackhost::text::escape_for_terminal(&e.to_string()).into_owned()
            };
            eprintln!("error: {}", shown(&e));
            // A cause whose text the message already holds is not said again.
            let causes = new_causes(&e);
            for cause in &causes {
                eprintln!("  caused by: {}", shown(cause));
            }
            // Under --json the failure is a document on stdout too, in the
            // envelope every --json run prints.
            if std::env::args()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json")
            {
                let doc = serde_json::json!({
                    "run": null,
                    "status": "error",
                    "report": null,
                    "data": [],
                    "error": e.to_string(),
                    "causes": causes,
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            ExitCode::from(stackhost::cli::EXIT_ERROR)
        }
    }
}

/// A closed pipe (`stackhost plugin list | head`) ends the process quietly,
/// as for other Unix tools. Reports are printed only after a run has
/// finished, so this never cuts a run short.
/// Raise the soft limit on open files to the hard one: a run over a
/// thousand nodes holds a socket per node (the soft limit is often 1024).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit still has the kernel's nr_open above it.
    let want = limit.maximum.unwrap_or(1 << 20);
    if limit.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            },
        );
    }
}

fn restore_sigpipe() {
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; no handler code is installed.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

/// The causes of `e` that say something its message (and the causes
/// before them) did not.
fn new_causes(e: &anyhow::Error) -> Vec<String> {
    let mut said = e.to_string();
    let mut out = Vec::new();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !said.contains(&text) {
            said.push('\n');
            said.push_str(&text);
            out.push(text);
        }
    }
    out
}
