//! `stackhost-agent reap PROGRAM ARGS...`: runs a program so that its
//! whole process tree can be ended, including what it started detached
//! (`setsid`, a double fork), which a process-group kill misses.
//!
//! The reaper makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`),
//! so every orphan among the program's descendants becomes its child
//! rather than init's, and runs the program with the reaper's stdio,
//! environment and process group. Then:
//!
//! - when the program exits, the reaper exits the same way (its status,
//!   or the signal that ended it). Descendants still running are left
//!   alone: that is how an init script's `start` leaves its daemon.
//! - on SIGTERM, SIGHUP or SIGINT (the host's kill on a timeout, a limit
//!   or an interrupt, before its SIGKILL of the group), the reaper kills
//!   every descendant it can see in `/proc` with SIGKILL, until none is
//!   left, and exits from that signal.

use rustix::process::{Pid, Signal, WaitOptions};
use std::collections::HashMap;
use std::ffi::OsString;

/// Run `argv` (the program, then its arguments) as the module says; never
/// returns.
pub fn run(argv: &[OsString]) -> ! {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("stackhost-agent reap: no program given");
        std::process::exit(2);
    };
    let me = rustix::process::getpid();
    if let Err(e) = rustix::process::set_child_subreaper(Some(me)) {
        eprintln!("stackhost-agent reap: cannot become a child subreaper: {e}");
        std::process::exit(2);
    }
    // The signals wait, blocked, until `sigwait` takes them: none can
    // arrive between a check and a wait. The program starts with an empty
    // mask (std resets it in the child), so it sees them as usual.
    // SAFETY: plain sigset and mask calls on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let child = match std::process::Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "stackhost-agent reap: cannot start `{}`: {e}",
                program.to_string_lossy()
            );
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            std::process::exit(code);
        }
    };
    let child = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    loop {
        // Reap whatever ended (the program, or orphans that came here).
        while let Ok(Some((pid, status))) = rustix::process::waitpid(None, WaitOptions::NOHANG) {
            if pid == child {
                if let Some(sig) = status.terminating_signal() {
                    exit_by_signal(sig);
                }
                std::process::exit(status.exit_status().unwrap_or(1));
            }
        }
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the blocked signals in `set`.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            kill_tree(me);
            exit_by_signal(sig);
        }
    }
}

/// SIGKILL every descendant of `me` until none is left alive, reaping
/// them (and the orphans they leave, which come to `me`).
fn kill_tree(me: Pid) {
    loop {
        let alive = descendants(me);
        if alive.is_empty() {
            break;
        }
        for pid in alive {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        while let Ok(Some(_)) = rustix::process::waitpid(None, WaitOptions::NOHANG) {}
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    while rustix::process::waitpid(None, WaitOptions::empty()).is_ok_and(|w| w.is_some()) {}
}

/// The living (not zombie) descendants of `root`, from `/proc`.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid)) = parse_stat(&stat)
            && state != 'Z'
        {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root.as_raw_nonzero().get()];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.extend(Pid::from_raw(c));
            todo.push(c);
        }
    }
    out
}

/// The state and parent of `/proc/PID/stat`: the fields after the
/// command name, which is in parentheses and may hold anything.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether process `pid` has ended (gone, or a zombie not yet reaped).
pub fn done(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())) {
        Ok(stat) => parse_stat(&stat).is_none_or(|(state, _)| state == 'Z'),
        Err(_) => true,
    }
}

/// Exit as if killed by `sig`, so the host reads the same end as without
/// the reaper.
fn exit_by_signal(sig: i32) -> ! {
    // SAFETY: resetting a disposition, unblocking and raising a signal on
    // ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_hostile_command_name() {
        assert_eq!(parse_stat("42 (sleep) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(parse_stat("42 (a) Z 9 (b) R 1 2) S 8 1"), Some(('S', 8)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
