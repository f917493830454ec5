//! Bench (not a test): `exec true` on 5, 20 and 50 container nodes over
//! SSH, stackhost against `ansible all -m command -a true -f 50` and
//! Debian's `parallel-ssh`, on the same nodes in the same run. Prints the
//! median times, the ratios, and time(50)/time(5) for each tool.
//!
//! Needs dockerd, ansible-core (pip install ansible-core) and pssh
//! (apt-get install pssh). Run with
//! `cargo bench -p stackhost --bench fanout`.

#[path = "../support/mod.rs"]
mod support;

#[path = "../support/cluster.rs"]
mod cluster;

use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn median(mut cmd: impl FnMut() -> Command) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let mut c = cmd();
            let start = Instant::now();
            let out = c.output().expect("command runs");
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "{c:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    for tool in ["ansible", "parallel-ssh", "docker"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!(
                "fanout bench: `{tool}` is missing (pip install ansible-core; apt-get install pssh docker.io)"
            );
            std::process::exit(1);
        }
    }
    let s = support::Sandbox::new();
    s.install("probe");
    let mut rows = Vec::new();
    for n in [5usize, 20, 50] {
        let c = cluster::TestCluster::up(n, "sh-bench");
        let inv = c.path("inventory.toml");
        let kh = c.path("known_hosts");
        let key = c.path("id_ed25519");
        let text = std::fs::read_to_string(&inv).unwrap();
        let ports: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("port = "))
            .map(str::to_string)
            .collect();
        let ansible_inv = c.path("ansible.ini");
        let lines: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "n{i} ansible_host=127.0.0.1 ansible_port={p} ansible_user=root ansible_ssh_private_key_file={} \
                     ansible_ssh_common_args='-o UserKnownHostsFile={}' ansible_python_interpreter=/usr/bin/python3\n",
                    key.display(),
                    kh.display()
                )
            })
            .collect();
        std::fs::write(&ansible_inv, format!("[all]\n{lines}")).unwrap();
        let pssh_hosts = c.path("pssh.hosts");
        std::fs::write(
            &pssh_hosts,
            ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}\n"))
                .collect::<String>(),
        )
        .unwrap();

        let stackhost = median(|| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_stackhost"));
            cmd.args(c.args(&["run", "probe", "exec", "--max-in-flight", "50", "true"]))
                .env("STACKHOST_HOME", s.home.path());
            cmd
        });
        let ansible = median(|| {
            let mut cmd = Command::new("ansible");
            cmd.args(["all", "-i"])
                .arg(&ansible_inv)
                .args(["-m", "command", "-a", "true", "-f", "50"]);
            cmd
        });
        let pssh = median(|| {
            let mut cmd = Command::new("parallel-ssh");
            cmd.arg("-h")
                .arg(&pssh_hosts)
                .args(["-l", "root", "-p", "50", "-x"]);
            cmd.arg(format!(
                "-i {} -o UserKnownHostsFile={} -o BatchMode=yes",
                key.display(),
                kh.display()
            ));
            cmd.arg("true");
            cmd
        });
        println!(
            "{n:>3} nodes: stackhost {:>8.1} ms | ansible {:>8.1} ms ({:.1}x stackhost) | parallel-ssh {:>8.1} ms ({:.1}x stackhost)",
            stackhost.as_secs_f64() * 1e3,
            ansible.as_secs_f64() * 1e3,
            ansible.as_secs_f64() / stackhost.as_secs_f64(),
            pssh.as_secs_f64() * 1e3,
            pssh.as_secs_f64() / stackhost.as_secs_f64(),
        );
        rows.push((n, stackhost, ansible, pssh));
    }
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let scale = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
    println!(
        "time(50)/time(5): stackhost {:.2} | ansible {:.2} | parallel-ssh {:.2}   (median of {RUNS} runs each)",
        scale(first.1, last.1),
        scale(first.2, last.2),
        scale(first.3, last.3)
    );
}
