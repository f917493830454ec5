//! Bench (not a test): what the sandbox costs on a remote node. Each fs
//! call over SSH is one channel running `stackhost-agent`, which opens
//! the path beneath the pinned grant root. Measured on one container node
//! in the same run:
//!
//! - per-call time of `fs.read` of a 4 KiB file (a plugin reading it 201
//!   times, less a run reading it once, over 200), against OpenSSH reading
//!   it with `cat` over one multiplexed connection (ControlMaster), the
//!   cheapest per-call peer;
//! - the agent's first use on a node (copy and digest check) against a
//!   run where it is already there.
//!
//! Needs dockerd and the node image (tests/run builds it). Run with
//! `cargo bench -p stackhost --bench fs_remote`.

#[path = "../support/mod.rs"]
mod support;

#[path = "../support/cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;
const CALLS: usize = 200;
const FILE: &str = "/tmp/stackhost-hostile/rw/small";

fn time(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("command runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let c = cluster::TestCluster::up(1, "sh-fsbench");
    let s = support::Sandbox::new();
    s.install("hostile");
    c.sh(
        1,
        &format!("mkdir -p /tmp/stackhost-hostile/rw && head -c 4096 /dev/urandom > {FILE}"),
    );
    let stackhost = |reads: usize| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackhost"));
        cmd.args(c.args(&[
            "run",
            "hostile",
            "do",
            "read-loop",
            FILE,
            &reads.to_string(),
            "-",
        ]))
        .env("STACKHOST_HOME", s.home.path());
        cmd
    };

    // The agent's first use on the node, then with it in place.
    let first = time(stackhost(1));
    let cached = median((0..RUNS).map(|_| time(stackhost(1))).collect());
    let agent = std::fs::metadata(
        std::path::Path::new(env!("CARGO_BIN_EXE_stackhost")).with_file_name("stackhost-agent"),
    )
    .map(|m| m.len())
    .unwrap_or(0);

    // Per call: the difference between reading 1 + CALLS times and once.
    let many = median((0..RUNS).map(|_| time(stackhost(CALLS + 1))).collect());
    let per_call = many.saturating_sub(cached) / CALLS as u32;

    // OpenSSH over one multiplexed connection.
    let inventory = std::fs::read_to_string(c.path("inventory.toml")).unwrap();
    let port = inventory
        .lines()
        .find_map(|l| l.strip_prefix("port = "))
        .expect("a port in the inventory")
        .to_string();
    let sock = c.path("ctl.sock");
    let ssh = |extra: &[&str]| {
        let mut cmd = Command::new("ssh");
        cmd.args(["-p", &port, "-i"])
            .arg(c.path("id_ed25519"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                c.path("known_hosts").display()
            ))
            .args(["-o", "BatchMode=yes", "-S"])
            .arg(&sock)
            .args(extra)
            .arg("root@127.0.0.1");
        cmd
    };
    time({
        let mut m = ssh(&["-M", "-f", "-N"]);
        m.stdout(std::process::Stdio::null());
        m
    });
    let openssh = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..CALLS {
                    let mut cmd = ssh(&[]);
                    cmd.args(["cat", FILE]);
                    time(cmd);
                }
                start.elapsed() / CALLS as u32
            })
            .collect(),
    );
    let _ = ssh(&["-O", "exit"]).output();

    println!(
        "fs.read of 4 KiB over SSH: stackhost {:.2} ms/call (agent, beneath the pinned root) | \
         OpenSSH `cat` over a ControlMaster connection {:.2} ms/call ({:.2}x stackhost)   \
         (median of {RUNS} runs of {CALLS} calls)",
        ms(per_call),
        ms(openssh),
        openssh.as_secs_f64() / per_call.as_secs_f64().max(1e-9)
    );
    println!(
        "agent on a node: first run {:.1} ms (copies {:.1} MiB and checks its sha256) | later runs {:.1} ms (digest check only)",
        ms(first),
        agent as f64 / (1 << 20) as f64,
        ms(cached)
    );
}
