//! Exec grants by argument prefix (fixture `argv-grants`), on the local
//! node: a read-only prefix runs for real while planning and under
//! `--dry-run`, a mutating prefix is recorded under `--dry-run` and runs
//! otherwise, the longest matching prefix decides, any other argv of the
//! same program is refused naming the grant, and the operator sees the
//! patterns and a warning for a whole-program grant that amounts to root.
//!
//! The fixture's grant: programs `touch -m`, `date`, `docker`; read-only
//! `ls -d`, `date -u`.

mod support;

use support::{Sandbox, only_step, plain, scratch_rw, wasm};

const GRANTS: &str = "(exec grants: touch -m {args...}, date {args...}, docker {args...}, ls -d {args...} (read-only), date -u {args...} (read-only))";

/// The grant as `plugin info` and the install prompt show it: every
/// argv prefix takes any further arguments, so each is flagged as root.
const REQUEST: &str = "equivalent to root on the node:
  ! exec     ls -d {args...}: any arguments (an argv prefix: it takes any further arguments) — runs what the tests tell it to, inside argument prefixes
  ! exec     date -u {args...}: any arguments (an argv prefix: it takes any further arguments) — runs what the tests tell it to, inside argument prefixes
  ! exec     touch -m {args...}: any arguments (an argv prefix: it takes any further arguments) — runs what the tests tell it to, inside argument prefixes
  ! exec     date {args...}: any arguments (an argv prefix: it takes any further arguments) — runs what the tests tell it to, inside argument prefixes
  ! exec     docker {args...}: any arguments (an argv prefix: it takes any further arguments) — runs what the tests tell it to, inside argument prefixes
";

const ROOT_WARNING: &str = "warning: `docker {args...}` is equivalent to root on the node: any arguments (an argv prefix: it takes any further arguments)";

/// `text` with every line indented by `indent`.
fn indented(text: &str, indent: &str) -> String {
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    s.install("argv-grants");
    s
}

/// `run argv-grants ARGS --json`: (exit code, step status, step message,
/// the step's recorded mutations).
fn step(s: &Sandbox, args: &[&str]) -> (i32, String, String, serde_json::Value) {
    let mut all = vec!["argv-grants"];
    all.extend_from_slice(args);
    let (code, report) = s.report(&all);
    let (status, message) = only_step(&report);
    (
        code,
        status,
        message,
        report["phases"][0]["steps"][0]["mutations"].clone(),
    )
}

/// The denial of `args`, which must fail its step with permission-denied.
fn denied(s: &Sandbox, args: &[&str]) -> String {
    let (code, status, message, _) = step(s, args);
    assert_eq!((code, status.as_str()), (3, "failed"), "{message}");
    assert!(message.starts_with("permission denied: "), "{message}");
    message
}

#[test]
fn a_read_only_prefix_runs_while_planning_and_under_dry_run() {
    let s = sandbox();
    let dir = scratch_rw();
    let d = dir.path().to_str().unwrap();
    for dry_run in [false, true] {
        let mut args = vec!["plan-exec"];
        if dry_run {
            args.push("--dry-run");
        }
        args.extend(["--", "ls", "-d", d]);
        let (code, status, message, mutations) = step(&s, &args);
        assert_eq!((code, status.as_str()), (0, "ok"), "{message}");
        assert_eq!(message, format!("planned: {d}\n"));
        assert_eq!(mutations, serde_json::json!([]));
    }
    let (code, _, message, mutations) = step(&s, &["exec", "--dry-run", "--", "ls", "-d", d]);
    assert_eq!((code, message), (0, format!("{d}\n")));
    assert_eq!(mutations, serde_json::json!([]));
    // `date -u` is read-only although `date` whole is mutating: the longer
    // prefix decides, so it runs for real under --dry-run.
    let (code, _, message, mutations) = step(&s, &["exec", "--dry-run", "--", "date", "-u", "+%Y"]);
    assert_eq!(code, 0);
    let year = message.trim();
    assert!(
        year.len() == 4 && year.chars().all(|c| c.is_ascii_digit()),
        "{message:?}"
    );
    assert_eq!(mutations, serde_json::json!([]));
}

#[test]
fn a_mutating_prefix_is_recorded_under_dry_run_and_runs_otherwise() {
    let s = sandbox();
    let dir = scratch_rw();
    let file = dir.path().join("touched");
    let f = file.to_str().unwrap();
    let (code, status, message, mutations) =
        step(&s, &["exec", "--dry-run", "--", "touch", "-m", f]);
    assert_eq!(
        (code, status.as_str(), message.as_str()),
        (0, "ok", "recorded")
    );
    assert_eq!(
        mutations,
        serde_json::json!([{ "node": "local", "call": "exec", "detail": format!("touch -m {f}") }])
    );
    assert!(!file.exists(), "a dry run ran touch");
    let (code, status, message, mutations) = step(&s, &["exec", "--", "touch", "-m", f]);
    assert_eq!((code, status.as_str(), message.as_str()), (0, "ok", ""));
    assert_eq!(mutations, serde_json::json!([]));
    assert!(file.is_file(), "touch -m did not run");
    // `date` with anything but `-u` first matches only the whole,
    // mutating `date`: recorded under --dry-run.
    let (code, _, message, mutations) = step(&s, &["exec", "--dry-run", "--", "date", "+%Y"]);
    assert_eq!((code, message.as_str()), (0, "recorded"));
    assert_eq!(
        mutations,
        serde_json::json!([{ "node": "local", "call": "exec", "detail": "date +%Y" }])
    );
    // A mutating call while planning is refused, prefix or not.
    let (code, report) = s.report(&["argv-grants", "plan-exec", "--", "touch", "-m", f]);
    assert_eq!(code, 3, "{report:#}");
    assert!(
        report["plan_error"].as_str().unwrap_or_default().contains(
            "a plan may only read (make changes in a step), so `exec touch` on local is not allowed"
        ),
        "{report:#}"
    );
}

#[test]
fn the_same_program_with_other_arguments_is_refused_naming_the_grant() {
    let s = sandbox();
    let dir = scratch_rw();
    let d = dir.path().to_str().unwrap();
    let m = denied(&s, &["exec", "--", "ls", "-l", d]);
    assert_eq!(
        m,
        format!(
            "permission denied: `ls -l {d}` is not in the exec grant: no granted pattern \
             matches it, argument for argument and as that user {GRANTS}"
        )
    );
    // No arguments at all, or the prefix's argument later on, is no match.
    let m = denied(&s, &["exec", "ls"]);
    assert!(m.contains(&format!("`ls` is not in the exec grant: no granted pattern matches it, argument for argument and as that user {GRANTS}")), "{m}");
    let m = denied(&s, &["exec", "--", "ls", d, "-d"]);
    assert!(
        m.contains(&format!("`ls {d} -d` is not in the exec grant")),
        "{m}"
    );
    // A path to a granted program is a different program.
    let m = denied(&s, &["exec", "--", "/bin/ls", "-d", d]);
    assert!(
        m.contains(&format!("`/bin/ls -d {d}` is not in the exec grant")),
        "{m}"
    );
    // Words are quoted as a shell would read them.
    let m = denied(&s, &["exec", "--", "ls", "-l", "a b", "it's"]);
    assert!(
        m.contains(r#"`ls -l 'a b' 'it'\''s'` is not in the exec grant"#),
        "{m}"
    );
    // The mutating prefix guards its program too: `touch` without `-m`
    // does not run.
    let file = dir.path().join("not-touched");
    let f = file.to_str().unwrap();
    let m = denied(&s, &["exec", "--", "touch", f]);
    assert!(
        m.contains(&format!("`touch {f}` is not in the exec grant")),
        "{m}"
    );
    let m = denied(&s, &["exec", "--", "touch", "-c", "-m", f]);
    assert!(
        m.contains(&format!("`touch -c -m {f}` is not in the exec grant")),
        "{m}"
    );
    assert!(!file.exists(), "a refused touch ran");
    // While planning, the refusal fails the plan with the same text.
    let (code, report) = s.report(&["argv-grants", "plan-exec", "--", "ls", "-la", d]);
    assert_eq!(code, 3, "{report:#}");
    assert!(
        report["plan_error"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(
                "permission denied: `ls -la {d}` is not in the exec grant: no granted pattern \
                 matches it, argument for argument and as that user {GRANTS}"
            )),
        "{report:#}"
    );
}

#[test]
fn plugin_info_shows_the_patterns_and_the_root_warning() {
    let s = Sandbox::new();
    let path = wasm("argv-grants");
    let out = s.run(&["plugin", "install", "--yes", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{ROOT_WARNING} (plugin `argv-grants`)\n")),
        "{stderr}"
    );
    let info = s.ok(&["plugin", "info", "argv-grants"]);
    assert!(
        info.contains(&format!(
            "  requested:\n{}  granted:     exec\n",
            indented(REQUEST, "    ")
        )),
        "{info}"
    );
    // Granted without a prompt by --grant: the same warning.
    let s = Sandbox::new();
    let out = s.run(&[
        "plugin",
        "install",
        "--grant",
        "exec",
        path.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(ROOT_WARNING));
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["plugin", "info", "argv-grants", "--json"])).unwrap();
    assert_eq!(
        json["record"]["grant"]["capabilities"]["exec"]["programs"],
        serde_json::json!([["touch", "-m"], "date", "docker"])
    );
}

#[test]
fn the_install_prompt_shows_the_patterns_and_the_root_warning() {
    let s = Sandbox::new();
    // A pseudo-terminal, so it asks; the answer is yes.
    let out = s.install_on_terminal(&wasm("argv-grants"), "y");
    let text = plain(&String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"));
    assert!(
        text.contains(&format!(
            "argv-grants 0.1.0 requests:\n{}  grant exec? [y/N] ",
            indented(REQUEST, "  ")
        )),
        "{text}"
    );
    assert!(
        text.contains("installed plugin argv-grants 0.1.0"),
        "{text}"
    );
    assert!(
        s.ok(&["plugin", "info", "argv-grants"])
            .contains("granted:     exec")
    );
}
