//! Bench (not a test): `exec true` on 100, 500 and 1,000 real SSH
//! endpoints (20 containers, each with sshd on 50 ports; `tests/cluster
//! up-many`), stackhost against `parallel-ssh -p 100` on the same
//! endpoints in the same run, and Ansible (`-f 100`) at 100 only. Prints
//! the median times, the ratios, the marginal cost per node, stackhost's
//! peak RSS and open descriptors, and its handshake times per node.
//!
//! Needs dockerd, pssh (apt-get install pssh) and ansible-core (pip
//! install ansible-core). Run with
//! `cargo bench -p stackhost --bench thousand`.

#[path = "../support/mod.rs"]
mod support;

use stackhost::cluster::ssh::HANDSHAKES;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 3;
const CONTAINERS: usize = 20;
const PORTS: usize = 50;

/// One finished run of a command: wall time, peak RSS (KiB) and the most
/// descriptors it had open at once (sampled every 10 ms).
struct Sample {
    took: Duration,
    max_rss_kib: i64,
    max_fds: usize,
    stdout: Vec<u8>,
}

fn measure(cmd: &mut Command) -> Sample {
    let out = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(out.reopen().unwrap())
        .stderr(std::process::Stdio::null());
    let start = Instant::now();
    let child = cmd.spawn().expect("command starts");
    let pid = child.id() as libc::pid_t;
    let fd_dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut max_fds = 0;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own child; status and usage are valid
        // pointers for the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if let Ok(entries) = std::fs::read_dir(&fd_dir) {
            max_fds = max_fds.max(entries.count());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    std::mem::forget(child); // reaped by wait4 above
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (wait status {status})"
    );
    Sample {
        took,
        max_rss_kib: usage.ru_maxrss,
        max_fds,
        stdout: std::fs::read(out.path()).unwrap(),
    }
}

fn median(samples: &mut [Sample]) -> &Sample {
    samples.sort_by_key(|s| s.took);
    &samples[samples.len() / 2]
}

struct Endpoint {
    name: String,
    address: String,
    port: u16,
}

/// The endpoints of the inventory `tests/cluster up-many` wrote.
fn endpoints(inventory: &Path) -> Vec<Endpoint> {
    let text = std::fs::read_to_string(inventory).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| Endpoint {
            name: n["name"].as_str().unwrap().into(),
            address: n["address"].as_str().unwrap().into(),
            port: n["port"].as_integer().unwrap() as u16,
        })
        .collect()
}

fn main() {
    for tool in ["parallel-ssh", "ansible", "docker"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!(
                "thousand bench: `{tool}` is missing (apt-get install pssh docker.io; pip install ansible-core)"
            );
            std::process::exit(1);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("sh-many-{}", std::process::id());
    let up = Command::new(support::repo().join("tests/cluster"))
        .args([
            "up-many",
            &CONTAINERS.to_string(),
            &PORTS.to_string(),
            &name,
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let _down = Down(name.clone());
    let key = dir.path().join("id_ed25519");
    let known_hosts = dir.path().join("known_hosts");
    let all = endpoints(&dir.path().join("inventory.toml"));
    let s = support::Sandbox::new();
    s.install("probe");

    println!(
        "exec true on N SSH endpoints ({CONTAINERS} containers x {PORTS} sshd ports), median of {RUNS} runs"
    );
    let mut rows = Vec::new();
    for n in [100usize, 500, 1000] {
        // The first n endpoints, spread over every container.
        let picked: Vec<&Endpoint> = (0..n)
            .map(|i| &all[(i % CONTAINERS) * PORTS + i / CONTAINERS])
            .collect();
        let inventory = dir.path().join(format!("inventory-{n}.toml"));
        let text: String = picked
            .iter()
            .map(|e| {
                format!(
                    "[[node]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\nuser = \"root\"\nidentity = \"{}\"\nroles = [\"dea\"]\n\n",
                    e.name,
                    e.address,
                    e.port,
                    key.display()
                )
            })
            .collect();
        std::fs::write(&inventory, text).unwrap();
        let hosts = dir.path().join(format!("pssh-{n}.hosts"));
        let text: String = picked
            .iter()
            .map(|e| format!("{}:{}\n", e.address, e.port))
            .collect();
        std::fs::write(&hosts, text).unwrap();

        let ours = stackhost(&s, n, &inventory, &known_hosts, HANDSHAKES);
        let (handshakes, firsts, totals) = (&ours.handshakes, &ours.firsts, &ours.totals);
        let ours = &ours.sample;

        let mut pssh: Vec<Sample> = (0..RUNS)
            .map(|_| {
                measure(
                    Command::new("parallel-ssh")
                        .arg("-h")
                        .arg(&hosts)
                        .args(["-l", "root", "-p", "100", "-t", "0", "-x"])
                        .arg(format!(
                            "-i {} -o UserKnownHostsFile={} -o BatchMode=yes",
                            key.display(),
                            known_hosts.display()
                        ))
                        .arg("true"),
                )
            })
            .collect();
        let pssh = median(&mut pssh);
        println!(
            "{n:>5} endpoints: stackhost {:>7.2} s (peak RSS {:>4} MiB, {:>4} fds; per node p50/p90: handshake {:.0}/{:.0} ms, \
             first byte {:.0}/{:.0} ms, total {:.0}/{:.0} ms) | parallel-ssh -p 100 {:>7.2} s ({:.2}x stackhost's time)",
            ours.took.as_secs_f64(),
            ours.max_rss_kib / 1024,
            ours.max_fds,
            pct(handshakes, 50),
            pct(handshakes, 90),
            pct(firsts, 50),
            pct(firsts, 90),
            pct(totals, 50),
            pct(totals, 90),
            pssh.took.as_secs_f64(),
            pssh.took.as_secs_f64() / ours.took.as_secs_f64(),
        );
        if n == 100 {
            let ini = dir.path().join("ansible-100.ini");
            let lines: String = picked
                .iter()
                .map(|e| {
                    format!(
                        "{} ansible_host={} ansible_port={} ansible_user=root ansible_ssh_private_key_file={} \
                         ansible_ssh_common_args='-o UserKnownHostsFile={}' ansible_python_interpreter=/usr/bin/python3\n",
                        e.name,
                        e.address,
                        e.port,
                        key.display(),
                        known_hosts.display()
                    )
                })
                .collect();
            std::fs::write(&ini, format!("[all]\n{lines}")).unwrap();
            let mut ansible: Vec<Sample> = (0..RUNS)
                .map(|_| {
                    measure(
                        Command::new("ansible")
                            .args(["all", "-i"])
                            .arg(&ini)
                            .args(["-m", "command", "-a", "true", "-f", "100"]),
                    )
                })
                .collect();
            let ansible = median(&mut ansible);
            println!(
                "{n:>5} endpoints: ansible -f 100 {:>7.2} s ({:.2}x stackhost's time)",
                ansible.took.as_secs_f64(),
                ansible.took.as_secs_f64() / ours.took.as_secs_f64()
            );
        }
        rows.push((n, ours.took, pssh.took));
    }
    // The handshake bound at 1,000 endpoints: where it stops paying on
    // this machine (client and every sshd share its two cores).
    let inventory = dir.path().join("inventory-1000.toml");
    for slots in [16, 64, 256] {
        let r = stackhost(&s, 1000, &inventory, &known_hosts, slots);
        println!(
            " 1000 endpoints, --max-handshakes {slots:>3}: {:>6.2} s (peak RSS {:>4} MiB, {:>4} fds; per node p50/p90: \
             handshake {:.0}/{:.0} ms, first byte {:.0}/{:.0} ms)",
            r.sample.took.as_secs_f64(),
            r.sample.max_rss_kib / 1024,
            r.sample.max_fds,
            pct(&r.handshakes, 50),
            pct(&r.handshakes, 90),
            pct(&r.firsts, 50),
            pct(&r.firsts, 90),
        );
    }
    let marginal = |i: usize, j: usize| {
        let (a, b) = (&rows[i], &rows[j]);
        let nodes = (b.0 - a.0) as f64;
        (
            (b.1.as_secs_f64() - a.1.as_secs_f64()) * 1e3 / nodes,
            (b.2.as_secs_f64() - a.2.as_secs_f64()) * 1e3 / nodes,
        )
    };
    let (ours, pssh) = marginal(0, 2);
    println!(
        "marginal cost per node from 100 to 1000: stackhost {ours:.1} ms | parallel-ssh {pssh:.1} ms"
    );
}

/// Nearest-rank percentile `p` of sorted `v`.
fn pct(v: &[f64], p: usize) -> f64 {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

/// stackhost's median run of `exec true` on the `n` endpoints of
/// `inventory`, with its per-node figures (sorted).
struct Ours {
    sample: Sample,
    handshakes: Vec<f64>,
    firsts: Vec<f64>,
    totals: Vec<f64>,
}

fn stackhost(
    s: &support::Sandbox,
    n: usize,
    inventory: &Path,
    known_hosts: &Path,
    slots: usize,
) -> Ours {
    let mut runs: Vec<Sample> = (0..RUNS)
        .map(|_| {
            measure(
                Command::new(env!("CARGO_BIN_EXE_stackhost"))
                    .args(["run", "probe", "exec", "--json", "--quiet"])
                    .arg("--max-in-flight")
                    .arg(n.to_string())
                    .arg("--max-handshakes")
                    .arg(slots.to_string())
                    .arg("--inventory")
                    .arg(inventory)
                    .arg("--known-hosts")
                    .arg(known_hosts)
                    .arg("true")
                    .env("STACKHOST_HOME", s.home.path()),
            )
        })
        .collect();
    runs.sort_by_key(|s| s.took);
    let sample = runs.swap_remove(runs.len() / 2);
    let report: serde_json::Value = serde_json::from_slice(&sample.stdout).unwrap();
    let steps = report["report"]["phases"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), n);
    assert!(steps.iter().all(|s| s["status"] == "ok"), "{report:#}");
    let sorted = |key: &str| {
        let mut v: Vec<f64> = steps.iter().filter_map(|s| s[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    Ours {
        handshakes: sorted("handshake_ms"),
        firsts: sorted("first_byte_ms"),
        totals: sorted("duration_ms"),
        sample,
    }
}

/// Removes the containers when the bench ends, also on a panic.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(support::repo().join("tests/cluster"))
            .args(["down", &self.0])
            .output();
    }
}
