//! The `ssh-keys` plugin: the operations guide's "passwordless SSH".
//! `distribute` authorizes the core node's public key for root (or, with
//! `--user stackato`, for the stackato account) on every node (and, with
//! `--self`, each node's own key on itself);
//! `disable-passwords` turns password logins off on a node only once key
//! login is proven there, validating sshd's configuration before reloading.
//! Privileged programs run as root (through sudo when the node's login user
//! is not root); file edits need the inventory's `sudo = true` for such a
//! login.

use stackato::read_optional;
use stackhost_sdk::prelude::*;

struct SshKeys;

const SSH_DIR: &str = "/root/.ssh";
const AUTHORIZED: &str = "/root/.ssh/authorized_keys";
const DROP_IN: &str = "/etc/ssh/sshd_config.d/50-stackhost-no-passwords.conf";

/// The account whose keys `distribute` handles: root, or `stackato`, the
/// account the guide (`ssh-copy-id stackato@...`) and kato use.
#[derive(Clone, Copy, PartialEq)]
enum Account {
    Root,
    Stackato,
}

impl Account {
    fn of(inv: &Invocation) -> Result<Account> {
        match inv.value("user").unwrap_or("root") {
            "root" => Ok(Account::Root),
            "stackato" => Ok(Account::Stackato),
            other => usage!("--user is `root` or `stackato`, not `{other}`"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Account::Root => "root",
            Account::Stackato => "stackato",
        }
    }

    fn ssh_dir(self) -> &'static str {
        match self {
            Account::Root => SSH_DIR,
            Account::Stackato => "/home/stackato/.ssh",
        }
    }

    /// The key files looked for on the core node, in order.
    fn default_keys(self) -> Vec<String> {
        ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
            .iter()
            .map(|k| format!("{}/{k}", self.ssh_dir()))
            .collect()
    }
}

/// The type and base64 of a public key line; comments do not matter.
fn key_id(line: &str) -> Option<(String, String)> {
    let mut words = line.split_whitespace();
    let (kind, blob) = (words.next()?, words.next()?);
    let is_key = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p));
    is_key.then(|| (kind.to_string(), blob.to_string()))
}

/// Add `key` to the account's authorized_keys on `node`; true when it
/// changed. The stackato account's files are read and written by programs
/// running as stackato, never by root in a directory another user owns.
fn authorize(node: &Node, account: Account, key: &str) -> Result<bool> {
    let wanted =
        key_id(key).ok_or_else(|| Error::plugin(format!("`{key}` is not an SSH public key")))?;
    if account == Account::Stackato {
        return authorize_as_stackato(node, &wanted, key);
    }
    let current = read_optional(node, AUTHORIZED)?.unwrap_or_default();
    if current.lines().filter_map(key_id).any(|k| k == wanted) {
        return Ok(false);
    }
    node.mkdir_all(SSH_DIR)?;
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(key.trim());
    text.push('\n');
    node.write_with_mode(AUTHORIZED, text, 0o600)?;
    Ok(true)
}

const STACKATO_SSH: &str = "/home/stackato/.ssh";
const STACKATO_AUTHORIZED: &str = "/home/stackato/.ssh/authorized_keys";

fn as_stackato(program: &str) -> Command {
    Command::new(program).user("stackato").env("LANG", "C")
}

fn authorize_as_stackato(node: &Node, wanted: &(String, String), key: &str) -> Result<bool> {
    let passwd = node.read_to_string("/etc/passwd")?;
    ensure!(
        passwd.lines().any(|l| l.starts_with("stackato:")),
        "node {} has no stackato account (not in /etc/passwd)",
        node.name()
    );
    let read = node.run(as_stackato("cat").arg(STACKATO_AUTHORIZED))?;
    let current = if read.success() {
        read.stdout_str().into_owned()
    } else {
        String::new()
    };
    if current.lines().filter_map(key_id).any(|k| k == *wanted) {
        return Ok(false);
    }
    node.run(as_stackato("mkdir").args(["-p", "-m", "700", STACKATO_SSH]))?
        .check()?;
    let mut line = String::new();
    if !current.is_empty() && !current.ends_with('\n') {
        line.push('\n');
    }
    line.push_str(key.trim());
    line.push('\n');
    node.run(
        as_stackato("tee")
            .args(["-a", STACKATO_AUTHORIZED])
            .stdin(line.into_bytes()),
    )?
    .check()?;
    node.run(as_stackato("chmod").args(["600", STACKATO_AUTHORIZED]))?
        .check()?;
    Ok(true)
}

/// The core node's public key: `--key`, or the first default of the
/// account that exists.
fn core_key(inv: &Invocation, account: Account) -> Result<(Node, String)> {
    let core = nodes::with_role("core").into_iter().next().ok_or_else(|| {
        Error::plugin("no node with the `core` role is selected; its key is the one distributed (add it to --nodes)")
    })?;
    if account == Account::Stackato {
        return stackato_core_key(&core);
    }
    let defaults = account.default_keys();
    let candidates: Vec<&str> = match inv.value("key") {
        Some(k) => vec![k],
        None => defaults.iter().map(String::as_str).collect(),
    };
    for path in &candidates {
        if let Some(text) = read_optional(&core, path)? {
            let line = text
                .lines()
                .find(|l| key_id(l).is_some())
                .map(str::to_string);
            return line.map(|l| (core.clone(), l)).ok_or_else(|| {
                Error::plugin(format!("{path} on {} holds no public key", core.name()))
            });
        }
    }
    bail!(
        "the core node {} has no public key at {} (make one with ssh-keygen, or pass --key)",
        core.name(),
        candidates.join(", ")
    )
}

/// The stackato account's key on the core node, read as stackato.
fn stackato_core_key(core: &Node) -> Result<(Node, String)> {
    let defaults = Account::Stackato.default_keys();
    for path in &defaults {
        let out = core.run(as_stackato("cat").arg(path.as_str()))?;
        if out.success()
            && let Some(line) = out.stdout_str().lines().find(|l| key_id(l).is_some())
        {
            return Ok((core.clone(), line.to_string()));
        }
    }
    bail!(
        "the stackato account on the core node {} has no public key at {} (make one as stackato with ssh-keygen)",
        core.name(),
        defaults.join(", ")
    )
}

impl Plugin for SshKeys {
    fn plan(inv: &Invocation) -> Result<Plan> {
        match inv.command() {
            "distribute" => {
                let account = Account::of(inv)?;
                if account == Account::Stackato && inv.flag("self") {
                    usage!("--self makes root's own key pair; it does not go with --user stackato");
                }
                if account == Account::Stackato && inv.value("key").is_some() {
                    usage!(
                        "--key names root's key file; with --user stackato the key is the stackato account's own"
                    );
                }
                let (core, key) = core_key(inv, account)?;
                let mut phase = Phase::new("distribute");
                for node in nodes::all().iter().filter(|n| n.name() != core.name()) {
                    phase.push_step(node, "authorize core key", key.clone());
                }
                let mut plan = Plan::new().phase(phase);
                if inv.flag("self") {
                    plan.push(nodes::all().iter().fold(Phase::new("self"), |p, n| {
                        p.step(n, "authorize own key", "")
                    }));
                }
                Ok(plan)
            }
            "disable-passwords" => {
                let phase = nodes::all()
                    .iter()
                    .fold(Phase::new("disable-passwords"), |p, n| {
                        p.step(n, "disable passwords", "")
                    });
                Ok(Plan::new().phase(phase))
            }
            _ => Err(inv.unknown_command()),
        }
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        let node = step.node();
        match (inv.command(), step.name()) {
            ("distribute", "authorize core key") => {
                let account = Account::of(inv)?;
                Ok(if authorize(&node, account, step.payload())? {
                    Outcome::changed(format!(
                        "authorized the core key for {} on {}",
                        account.name(),
                        node.name()
                    ))
                } else {
                    Outcome::ok("core key already authorized")
                })
            }
            ("distribute", "authorize own key") => {
                let mut made = false;
                if !node.exists("/root/.ssh/id_ed25519.pub")? {
                    node.mkdir_all(SSH_DIR)?;
                    node.run(
                        Command::new("ssh-keygen")
                            .args([
                                "-q",
                                "-t",
                                "ed25519",
                                "-N",
                                "",
                                "-f",
                                "/root/.ssh/id_ed25519",
                            ])
                            .user("root"),
                    )?
                    .check()?;
                    made = true;
                }
                if inv.dry_run() && made {
                    return Ok(Outcome::changed("would make a key pair and authorize it"));
                }
                let key = node.read_to_string("/root/.ssh/id_ed25519.pub")?;
                Ok(if authorize(&node, Account::Root, &key)? || made {
                    Outcome::changed("authorized the node's own key on itself")
                } else {
                    Outcome::ok("own key already authorized")
                })
            }
            ("disable-passwords", _) => disable_passwords(&node),
            (command, name) => bail!("unknown step `{name}` of `{command}`"),
        }
    }
}

/// sshd's effective setting `name` (lower case), from `sshd -T`.
fn effective(node: &Node, name: &str) -> Result<Option<String>> {
    let out = node
        .run(Command::new("sshd").arg("-T").user("root"))?
        .check()?;
    Ok(out.stdout_str().lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
    }))
}

fn disable_passwords(node: &Node) -> Result<Outcome> {
    // Proof that key login works here: this very step reached the node over
    // a key-authenticated session, root has authorized keys, and sshd
    // accepts public keys. Without all three, leave passwords alone.
    let keys = read_optional(node, AUTHORIZED)?.unwrap_or_default();
    if !keys.lines().any(|l| key_id(l).is_some()) {
        bail!(
            "root has no authorized keys on {}; run `ssh-keys distribute` first",
            node.name()
        );
    }
    if effective(node, "pubkeyauthentication")?.as_deref() != Some("yes") {
        bail!(
            "sshd on {} does not accept public keys; not disabling passwords",
            node.name()
        );
    }
    if effective(node, "passwordauthentication")?.as_deref() == Some("no") {
        return Ok(Outcome::ok("password authentication is already off"));
    }
    node.write_with_mode(
        DROP_IN,
        "# Written by stackhost ssh-keys disable-passwords.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
        0o644,
    )?;
    let check = node.run(Command::new("sshd").arg("-t").user("root"))?;
    if !check.success() {
        node.remove(DROP_IN)?;
        bail!(
            "sshd rejected the new configuration, which was removed again: {}",
            check.stderr_str().trim()
        );
    }
    reload_sshd(node)?;
    Ok(Outcome::changed(
        "password authentication off; sshd reloaded",
    ))
}

fn reload_sshd(node: &Node) -> Result<()> {
    match read_optional(node, "/run/sshd.pid")? {
        // SIGHUP to the listener only: it re-reads its configuration and
        // leaves running sessions (this one included) alone.
        Some(pid) if !pid.trim().is_empty() => {
            node.run(Command::new("kill").args(["-HUP", pid.trim()]).user("root"))?
                .check()?;
        }
        _ => {
            node.run(
                Command::new("systemctl")
                    .args(["reload", "ssh"])
                    .user("root"),
            )?
            .check()?;
        }
    }
    Ok(())
}

export_plugin!(SshKeys);
