//! This machine as runs and locks name it: its host name, the user the
//! host runs as, and whether a process on it is still alive.

/// This machine's host name, as runs and locks record it.
pub fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Whether process `pid` exists on this machine.
pub fn alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means it exists but is another user's.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// The user the host runs as (the local node's user).
pub fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let uid = rustix::process::getuid();
            if uid.is_root() {
                "root".into()
            } else {
                uid.as_raw().to_string()
            }
        })
}

pub mod reaper;
