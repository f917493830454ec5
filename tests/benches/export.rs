//! Bench (not a test): exporting a tree into an artifact with stackhost
//! (a node's `tar -c` streamed through the host: member parsing, sha256 per
//! item, multi-threaded zstd, atomic write) against `tar -czf` and
//! `tar -I 'zstd -T0' -cf` on the same tree in the same run, at about
//! 0.25 GB and 1 GB, and on a tree of 100,000 small files. Prints median
//! times, throughput, ratios, output sizes and the stackhost process's
//! peak RSS at each size (it must stay flat: bytes stream in bounded
//! chunks).
//!
//! The trees (many small files plus a few large ones; half of the bytes
//! incompressible, like zipped droplets, half text) are generated once
//! under /var/tmp/stackhost-bench. Run with
//! `cargo bench -p stackhost --bench export`.
//!
//! The remote case packs the same trees from a node container over SSH,
//! against `ssh node tar -c | zstd -T0` on the same node in the same run.

#[path = "../support/mod.rs"]
mod support;

#[path = "../support/cluster.rs"]
mod cluster;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROOT: &str = "/var/tmp/stackhost-bench";
/// Rounds per tree size (each runs every zstd contender once).
const RUNS: usize = 5;

/// xorshift64*: deterministic, fast filler.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut Vec<u8>, len: usize) {
        buf.clear();
        const WORDS: &[&str] = &[
            "droplet",
            "staging",
            "router",
            "controller",
            "dea",
            "app",
            "log",
            "error",
            "ok",
            "GET",
            "/v2/apps",
            "200",
            "stackato",
        ];
        let random = len / 2;
        while buf.len() < random {
            buf.extend_from_slice(&self.next().to_le_bytes());
        }
        buf.truncate(random);
        while buf.len() < len {
            let n = self.next();
            let w = WORDS[(n % WORDS.len() as u64) as usize];
            let _ = write!(buf, "{w} {} ", n >> 40);
        }
        buf.truncate(len);
    }
}

/// Make (once) a tree of about `bytes`: 55% in files of 1–64 KiB, 45% in
/// four large files.
fn tree(bytes: u64) -> PathBuf {
    let dir = Path::new(ROOT).join(format!("tree-{}m", bytes >> 20));
    let done = dir.join(".complete");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = Rng(0x5eed ^ bytes);
    let mut buf = Vec::new();
    let small_budget = bytes * 55 / 100;
    let (mut written, mut i) = (0u64, 0u64);
    while written < small_budget {
        let len = 1024 + (rng.next() % (63 * 1024)) as usize;
        let sub = dir.join(format!("apps/{:03}/{:02}", i / 1000, i % 97));
        std::fs::create_dir_all(&sub).unwrap();
        rng.fill(&mut buf, len);
        std::fs::write(sub.join(format!("f{i}.dat")), &buf).unwrap();
        written += len as u64;
        i += 1;
    }
    let large = (bytes - written) / 4;
    std::fs::create_dir_all(dir.join("droplets")).unwrap();
    for n in 0..4 {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("droplets/big{n}.tgz"))).unwrap(),
        );
        let mut left = large;
        while left > 0 {
            let len = left.min(1 << 20) as usize;
            rng.fill(&mut buf, len);
            f.write_all(&buf).unwrap();
            left -= len as u64;
        }
    }
    std::fs::write(&done, b"").unwrap();
    dir
}

/// Make (once) a tree of `count` small text files (100-227 bytes, 1,000
/// per directory): per-file costs (open, headers, one sha256 and one
/// manifest entry each) rather than bytes.
fn many_files(count: usize) -> PathBuf {
    let dir = Path::new(ROOT).join(format!("files-{count}"));
    let done = dir.join(".complete");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = Rng(0x5eed_f11e);
    for i in 0..count {
        let sub = dir.join(format!("d{:03}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        let len = 100 + (rng.next() % 128) as usize;
        let line = format!("app-{i} GET /v2/apps 200 ok ").repeat(len / 20 + 1);
        std::fs::write(sub.join(format!("f{i}.log")), &line.as_bytes()[..len]).unwrap();
    }
    std::fs::write(&done, b"").unwrap();
    dir
}

fn du(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Run `cmd`, returning its wall time and its peak RSS in KiB (wait4).
// The child is reaped by wait4, which also reports its rusage.
#[allow(clippy::zombie_processes)]
fn run(mut cmd: Command) -> (Duration, u64) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("command runs");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid for writes.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    (took, usage.ru_maxrss as u64)
}

fn median(mut v: Vec<(Duration, u64)>) -> (Duration, u64) {
    v.sort();
    let rss = v.iter().map(|x| x.1).max().unwrap();
    (v[v.len() / 2].0, rss)
}

fn main() {
    for tool in ["tar", "zstd", "gzip"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("export bench: `{tool}` is missing (apt-get install tar zstd gzip)");
            std::process::exit(1);
        }
    }
    let s = support::Sandbox::new();
    s.install("pack");
    let out_dir = Path::new(ROOT).join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    println!(
        "export bench: median of {RUNS} interleaved rounds (gzip: one run), same tree, same run; RSS is the peak of the process tree"
    );
    println!(
        "{:>10}  {:<26} {:>9} {:>10} {:>9} {:>10} {:>11}",
        "tree", "tool", "time", "MB/s", "vs stackhost", "output", "peak RSS"
    );
    let mut flat = Vec::new();
    let node = cluster::TestCluster::up(1, "sh-export");
    let port = node.docker(&["port", &node.node(1), "22/tcp"]);
    let port = port.trim().rsplit(':').next().unwrap().to_string();
    node.sh(1, &format!("mkdir -p {ROOT}"));
    let trees = [
        (tree(256 << 20), None),
        (tree(1024 << 20), None),
        (many_files(100_000), Some("100k files")),
    ];
    for (dir, named) in trees {
        node.docker(&[
            "cp",
            dir.to_str().unwrap(),
            &format!("{}:{ROOT}/", node.node(1)),
        ]);
        let size = du(&dir);
        let label = named.map_or_else(|| format!("{:.2} GB", size as f64 / 1e9), str::to_string);
        let dest = |name: &str| out_dir.join(name);
        // The four contenders run in turn within each round, so a slow
        // spell of this (shared, two-core) machine falls on all of them
        // alike; gzip, ten times slower, runs once.
        let ours_cmd = || {
            let _ = std::fs::remove_file(dest("stackhost.tar.zst"));
            let mut c = Command::new(env!("CARGO_BIN_EXE_stackhost"));
            c.args(["run", "pack", "pack"])
                .arg(&dir)
                .arg(dest("stackhost.tar.zst"))
                .env("STACKHOST_HOME", s.home.path());
            c
        };
        let peer_cmd = |args: &[&str], file: &str| {
            let _ = std::fs::remove_file(dest(file));
            let mut c = Command::new("tar");
            c.arg("-C").arg(&dir).args(args).arg(dest(file)).arg(".");
            c
        };
        let remote_cmd = || {
            let _ = std::fs::remove_file(dest("remote.tar.zst"));
            let mut c = Command::new(env!("CARGO_BIN_EXE_stackhost"));
            c.args(node.args(&["run", "pack", "pack"]))
                .arg(&dir)
                .arg(dest("remote.tar.zst"))
                .env("STACKHOST_HOME", s.home.path());
            c
        };
        let ssh_cmd = || {
            let _ = std::fs::remove_file(dest("ssh.tar.zst"));
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!(
                "ssh -i {key} -o UserKnownHostsFile={kh} -o BatchMode=yes -p {port} \
                 root@127.0.0.1 tar -C {dir} -c . | zstd -q -T0 -o {out}",
                key = node.path("id_ed25519").display(),
                kh = node.path("known_hosts").display(),
                dir = dir.display(),
                out = dest("ssh.tar.zst").display(),
            ));
            c
        };
        let mut rounds: [Vec<(Duration, u64)>; 4] = Default::default();
        for _ in 0..RUNS {
            rounds[0].push(run(ours_cmd()));
            rounds[1].push(run(peer_cmd(&["-I", "zstd -T0", "-cf"], "peer.tar.zst")));
            rounds[2].push(run(remote_cmd()));
            rounds[3].push(run(ssh_cmd()));
        }
        // Paired by round: the peer's time over stackhost's in the same
        // round (above 1.00x, stackhost was faster).
        let paired = |ours: &[(Duration, u64)], peer: &[(Duration, u64)]| {
            let mut r: Vec<f64> = ours
                .iter()
                .zip(peer)
                .map(|(o, p)| p.0.as_secs_f64() / o.0.as_secs_f64())
                .collect();
            r.sort_by(f64::total_cmp);
            r
        };
        let local_pairs = paired(&rounds[0], &rounds[1]);
        let remote_pairs = paired(&rounds[2], &rounds[3]);
        let [ours, zst, remote, ssh_zst] = rounds.map(median);
        let gz = run(peer_cmd(&["-czf"], "peer.tgz"));
        let out_size = |f: &str| std::fs::metadata(dest(f)).map(|m| m.len()).unwrap_or(0);
        let rows = [
            (
                "stackhost (zstd, sha256)",
                ours,
                out_size("stackhost.tar.zst"),
            ),
            ("tar -czf", gz, out_size("peer.tgz")),
            ("tar -I 'zstd -T0' -cf", zst, out_size("peer.tar.zst")),
            (
                "remote: stackhost over SSH",
                remote,
                out_size("remote.tar.zst"),
            ),
            (
                "remote: ssh tar | zstd -T0",
                ssh_zst,
                out_size("ssh.tar.zst"),
            ),
        ];
        for (tool, (t, rss), out) in rows {
            // Each peer against stackhost on the same path (local or remote).
            let base = if tool.starts_with("remote") {
                remote.0
            } else {
                ours.0
            };
            println!(
                "{label:>10}  {tool:<26} {:>7.2} s {:>10.1} {:>9.2}x {:>7.0} MB {:>8.1} MiB",
                t.as_secs_f64(),
                size as f64 / 1e6 / t.as_secs_f64(),
                t.as_secs_f64() / base.as_secs_f64(),
                out as f64 / 1e6,
                rss as f64 / 1024.0
            );
        }
        let show = |r: &[f64]| {
            format!(
                "median {:.2}x, rounds {}",
                r[r.len() / 2],
                r.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        println!(
            "{label:>10}  per round, the peer's time over stackhost's: local {}; remote {}",
            show(&local_pairs),
            show(&remote_pairs)
        );
        flat.push((label, ours.1, size));
    }
    let (small, large) = (flat[0].1 as f64 / 1024.0, flat[1].1 as f64 / 1024.0);
    let grown = flat[1].2 as f64 / flat[0].2 as f64;
    println!(
        "stackhost peak RSS: {small:.1} MiB at {}, {large:.1} MiB at {}: {:+.1} MiB ({:+.0}%) for a tree {:.1}x larger",
        flat[0].0,
        flat[1].0,
        large - small,
        (large / small - 1.0) * 100.0,
        grown
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
