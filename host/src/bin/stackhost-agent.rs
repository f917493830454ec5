//! `stackhost-agent`: carries out one sandboxed file operation on a
//! remote node for the host (see `stackhost::sandbox::wire`). The host
//! copies it to the node (checked by digest) and runs it over SSH; it
//! reads one request line and its input on stdin and answers in frames
//! on stdout. Roots are re-opened by their pinned identity on every call.
//!
//! `stackhost-agent reap PROGRAM ARGS...` instead runs a program so that
//! its whole process tree can be killed (see `stackhost::process::reaper`).

use stackhost::sandbox::{Root, wire};
use std::io::{BufReader, Write};
use std::sync::Arc;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "reap") {
        stackhost::process::reaper::run(&args[1..]);
    }
    let mut input = BufReader::with_capacity(wire::FRAME, std::io::stdin().lock());
    let mut output = wire::FrameWriter::new(std::io::stdout().lock());
    let result = wire::read_request(&mut input).and_then(|req| {
        wire::serve(req, &mut input, &mut output, &mut |id| {
            Root::reopen(id).map(Arc::new)
        })
    });
    if output.finish(&result).is_err() {
        // The host went away; nothing is left to tell it.
        let _ = std::io::stderr().write_all(b"stackhost-agent: the host closed the stream\n");
        std::process::exit(1);
    }
}
