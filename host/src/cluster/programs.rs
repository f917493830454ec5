//! Bare program names pinned to absolute paths: the first time a run asks
//! a node for `cat`, the host looks it up there in the fixed
//! [`DEFAULT_PATH`] (never the login's own `PATH`) and runs that file by
//! its absolute path for the rest of the run. A program the lookup does
//! not find is passed on by name, so it fails as it would have (not
//! found, exit 127).

use super::{DEFAULT_PATH, ExecRequest, Node, Transport};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What one node's lookups found during a run.
#[derive(Debug, Default)]
pub struct Programs(Mutex<HashMap<String, Option<String>>>);

/// Print the first `PATH` entry holding an executable file `$1`.
const LOOKUP: &str = r#"IFS=:; for d in $PATH; do if [ -f "$d/$1" ] && [ -x "$d/$1" ]; then printf '%s\n' "$d/$1"; exit 0; fi; done; exit 1"#;

impl Node {
    /// The absolute path `program` runs as on this node: itself when it
    /// has a `/`, else its file in [`DEFAULT_PATH`], looked up once per
    /// run; the name itself when no such file exists.
    pub async fn program_path(&self, program: &str) -> String {
        if program.contains('/') {
            return program.to_string();
        }
        let cached = self
            .programs
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(program)
            .cloned();
        let found = match cached {
            Some(found) => found,
            None => {
                let found = self.look_up(program).await;
                self.programs
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(program.to_string(), found.clone());
                found
            }
        };
        found.unwrap_or_else(|| program.to_string())
    }

    async fn look_up(&self, program: &str) -> Option<String> {
        match &self.transport {
            Transport::Local(_) => DEFAULT_PATH.split(':').find_map(|dir| {
                use std::os::unix::fs::PermissionsExt;
                let path = format!("{dir}/{program}");
                let meta = std::fs::metadata(&path).ok()?;
                (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path)
            }),
            Transport::Ssh(ssh) => {
                let req = ExecRequest {
                    program: "sh".into(),
                    pinned: None,
                    args: vec!["-c".into(), LOOKUP.into(), "sh".into(), program.into()],
                    env: Vec::new(),
                    stdin: None,
                    user: None,
                    cwd: None,
                    timeout: Duration::from_secs(30),
                    live: None,
                };
                let out = ssh.exec(&req).await.ok()?;
                let path = String::from_utf8(out.stdout).ok()?;
                let path = path.strip_suffix('\n')?;
                (out.status == 0
                    && path.starts_with('/')
                    && path.ends_with(&format!("/{program}"))
                    && !path.chars().any(char::is_control))
                .then(|| path.to_string())
            }
        }
    }
}
