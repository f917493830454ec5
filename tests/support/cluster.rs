//! A test cluster of Debian containers (tests/cluster), private to one test
//! and removed when dropped.

#![allow(dead_code)] // each test binary and bench uses a different part

use std::path::PathBuf;
use std::process::Command;

pub struct TestCluster {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Start `n` nodes named `<tag>-<pid>-1..n`.
    pub fn up(n: usize, tag: &str) -> TestCluster {
        TestCluster::up_with_env(n, tag, &[])
    }

    /// [`TestCluster::up`] with environment for tests/cluster:
    /// `STACKHOST_NODE_IMAGE`, `STACKHOST_CLUSTER_RUN_ARGS_<i>` (`docker
    /// run` arguments for node i: a capability, a volume).
    pub fn up_with_env(n: usize, tag: &str, env: &[(&str, &str)]) -> TestCluster {
        let name = format!("{tag}-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(crate::support::repo().join("tests/cluster"))
            .args(["up", &n.to_string(), &name])
            .arg(dir.path())
            .envs(env.iter().copied())
            .output()
            .expect("tests/cluster runs");
        // Constructed before the check, so a failed `up` still removes
        // the nodes it started.
        let cluster = TestCluster { name, dir };
        assert!(
            out.status.success(),
            "tests/cluster up failed (is dockerd running? .ci/run starts it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// Remove this cluster's nodes when the test binary exits: for a
    /// cluster kept in a static, which is never dropped.
    pub fn remove_at_exit(&self) {
        static NAMES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        static REGISTER: std::sync::Once = std::sync::Once::new();
        extern "C" fn down() {
            let names = NAMES.lock().map(|n| n.clone()).unwrap_or_default();
            for name in names {
                let _ = Command::new(crate::support::repo().join("tests/cluster"))
                    .args(["down", &name])
                    .output();
            }
        }
        NAMES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.name.clone());
        // SAFETY: registers a plain function to run at exit, once.
        REGISTER.call_once(|| unsafe {
            libc::atexit(down);
        });
    }

    pub fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.name)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `args` with the cluster's inventory and known_hosts after the
    /// command.
    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let flags = [
            "--inventory".to_string(),
            self.path("inventory.toml").display().to_string(),
            "--known-hosts".to_string(),
            self.path("known_hosts").display().to_string(),
        ];
        crate::support::with_flags(args, &flags)
    }

    /// Run `docker ARGS`, expecting success; returns stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("docker runs");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Node `i`'s address on the Docker bridge (how nodes reach each other).
    pub fn bridge_ip(&self, i: usize) -> String {
        self.docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.node(i),
        ])
        .trim()
        .to_string()
    }

    /// Run a shell command on node `i` through docker (not through stackhost).
    pub fn sh(&self, i: usize, script: &str) -> String {
        self.docker(&["exec", &self.node(i), "sh", "-c", script])
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = Command::new(crate::support::repo().join("tests/cluster"))
            .args(["down", &self.name])
            .output();
    }
}

/// A filesystem image loop-mounted on this machine (made with `truncate`
/// and `mkfs.TYPE`), to bind into a node container: the test machine's
/// kernel has btrfs qgroups, and a container cannot loop-mount by itself.
/// Needs root. Dropping it unmounts it (the loop device goes with it,
/// `mount -o loop` sets autoclear) and removes the image.
pub struct LoopFs {
    pub dir: tempfile::TempDir,
}

impl LoopFs {
    /// A `size` (`300M`) filesystem of type `fstype` (`btrfs`, `ext4`).
    pub fn new(fstype: &str, size: &str) -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("stackhost-loopfs-")
            .tempdir_in("/var/tmp")
            .expect("temp dir in /var/tmp");
        let img = dir.path().join("image");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let run = |program: &str, args: &[&std::ffi::OsStr]| {
            let out = Command::new(program)
                .args(args)
                .output()
                .unwrap_or_else(|e| {
                    panic!("{program} runs (is it installed? tests/run installs it): {e}")
                });
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run("truncate", &["-s".as_ref(), size.as_ref(), img.as_os_str()]);
        run(&format!("mkfs.{fstype}"), &["-q".as_ref(), img.as_os_str()]);
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                img.as_os_str(),
                mnt.as_os_str(),
            ],
        );
        LoopFs { dir }
    }

    /// Where it is mounted on this machine.
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Its loop device (`/dev/loop3`), for `docker run --device` when a
    /// node's quota tools need the device node.
    pub fn device(&self) -> String {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(self.mnt())
            .output()
            .expect("findmnt runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt()).output();
    }
}
