//! Bench (not a test): whole-process wall time of `stackhost run hello
//! info`, with a cold and a warm compile cache, the per-call instantiate
//! time, and the same work done by a plain shell as the peer.
//!
//! Run with `cargo bench -p stackhost --bench run_hello`.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 15;

fn main() {
    let s = support::Sandbox::new();
    s.install("hello");
    let cache = s.home.path().join("cache/compiled");
    let stackhost = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stackhost"));
        c.args(["run", "hello", "info"])
            .env("STACKHOST_HOME", s.home.path());
        if json {
            c.arg("--json");
        }
        c
    };

    let cold = time(RUNS, || {
        let _ = std::fs::remove_dir_all(&cache);
        stackhost(false)
    });
    let warm = time(RUNS, || stackhost(false));
    let peer = time(RUNS, || {
        let mut c = Command::new("sh");
        c.args(["-c", "uname -srm; cat /etc/os-release"]);
        c
    });

    let mut plan_us = Vec::new();
    let mut step_us = Vec::new();
    for _ in 0..RUNS {
        let out = stackhost(true).output().expect("stackhost runs");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
        let r = &json["report"];
        plan_us.push(r["metrics"]["plan_instantiate_us"].as_u64().unwrap());
        step_us.push(
            r["phases"][0]["steps"][0]["instantiate_us"]
                .as_u64()
                .unwrap(),
        );
    }

    println!("stackhost run hello info  ({RUNS} runs each, median [min..max])");
    println!("  cold compile cache : {}", fmt(&cold));
    println!("  warm compile cache : {}", fmt(&warm));
    println!(
        "  peer: sh -c 'uname -srm; cat /etc/os-release' : {}",
        fmt(&peer)
    );
    println!(
        "  ratio warm/peer    : {:.1}x",
        median(&warm).as_secs_f64() / median(&peer).as_secs_f64()
    );
    println!(
        "  ratio cold/warm    : {:.1}x",
        median(&cold).as_secs_f64() / median(&warm).as_secs_f64()
    );
    plan_us.sort_unstable();
    step_us.sort_unstable();
    println!(
        "  instantiate (fresh instance per call): plan median {} µs [min {}], step median {} µs [min {}]",
        plan_us[RUNS / 2],
        plan_us[0],
        step_us[RUNS / 2],
        step_us[0]
    );
}

fn time(n: usize, mut cmd: impl FnMut() -> Command) -> Vec<Duration> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = cmd();
        let start = Instant::now();
        let out = c.output().expect("command runs");
        all.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    all.sort();
    all
}

fn median(d: &[Duration]) -> Duration {
    d[d.len() / 2]
}

fn fmt(d: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:.1} ms [{:.1}..{:.1}]",
        ms(median(d)),
        ms(d[0]),
        ms(d[d.len() - 1])
    )
}
