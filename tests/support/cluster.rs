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

    /// [`TestCluster::up`] with environment for tests/cluster
    /// (`STACKHOST_NODE_IMAGE`, `STACKHOST_CLUSTER_RUN_ARGS_<i>`).
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
