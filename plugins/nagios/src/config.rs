//! The Nagios object configuration the plugin writes, generated from the
//! inventory: what each node is checked for, the values allowed into it
//! (anything else is refused before a byte is written, so an inventory
//! value can never add a directive of its own), and the text of each file.

use serde::{Deserialize, Serialize};
use stackhost_sdk::nodes::InventoryNode;
use stackhost_sdk::{Error, Result};
use std::collections::BTreeMap;

/// The Stackato controller's API port (cloud_controller behind the
/// router listens there on Stackato 3.x/4.x nodes).
pub const CONTROLLER_API_PORT: u16 = 9022;

/// The SSH port a local node (reached without SSH, so with no port in the
/// inventory) is checked on.
const LOCAL_SSH_PORT: u16 = 22;

/// One node as the configuration describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub hostname: Option<String>,
    pub ssh_port: u16,
    pub roles: Vec<String>,
}

/// One service check of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub description: &'static str,
    pub check_command: String,
}

/// Which object templates the hosts and services `use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Templates {
    /// `generic-host` / `generic-service` from Debian's
    /// /etc/nagios4/objects/templates.cfg, which nagios.cfg includes.
    Debian,
    /// Our own, in templates.cfg beside the rest, for a nagios.cfg that
    /// does not include Debian's.
    Own,
}

impl Templates {
    fn host(self) -> &'static str {
        match self {
            Templates::Debian => "generic-host",
            Templates::Own => "stackhost-host",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Templates::Debian => "generic-service",
            Templates::Own => "stackhost-service",
        }
    }

    /// What each host sets beyond its template. Debian's `generic-host`
    /// leaves out what a host needs to be checked at all (its own
    /// `linux-server` adds it); `24x7` and `admins` are what Debian's
    /// `generic-service` already uses.
    fn host_settings(self) -> Vec<(&'static str, String)> {
        match self {
            Templates::Debian => vec![
                ("check_period", "24x7".into()),
                ("check_interval", "5".into()),
                ("retry_interval", "1".into()),
                ("max_check_attempts", "10".into()),
                ("notification_interval", "120".into()),
                ("contact_groups", "admins".into()),
            ],
            Templates::Own => Vec::new(),
        }
    }
}

/// Characters that end a Nagios directive or object (`;` and `#` start a
/// comment, a newline a new directive, braces an object) or a C string.
const BREAKS_OUT: &[char] = &['\n', '\r', ';', '#', '{', '}', '\0'];

/// Refuse a value that could not be written into a directive as it is.
/// Beyond what would break out of a directive, only letters, digits and
/// `-`, `_`, `.`, `:` are let through: these values also land in object
/// names (where Nagios forbids `` `~!$%^&*|'"<>?,()= ``) and in
/// `$HOSTADDRESS$`, which Nagios pastes into a shell command line.
fn check_value(node: &str, field: &str, value: &str) -> Result<()> {
    let shown = value.escape_default();
    let why = if value.is_empty() {
        "is empty".to_string()
    } else if value.trim() != value {
        "has leading or trailing white space".to_string()
    } else if value.contains(BREAKS_OUT) {
        "holds a newline, `;`, `#`, `{`, `}` or NUL, which would break out of a Nagios directive"
            .to_string()
    } else if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:".contains(*c)))
    {
        format!(
            "holds `{}`; Nagios object names and addresses here take only letters, digits, `-`, `_`, `.` and `:`",
            c.escape_default()
        )
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "node `{node}`: {field} `{shown}` {why}; fix the inventory (nothing was written)"
    )))
}

/// Every node of the inventory as a Nagios host, each value checked.
pub fn hosts(inventory: &[InventoryNode]) -> Result<Vec<Host>> {
    inventory
        .iter()
        .map(|n| {
            check_value(&n.name, "name", &n.name)?;
            check_value(&n.name, "address", &n.address)?;
            if let Some(h) = &n.hostname {
                check_value(&n.name, "hostname", h)?;
            }
            for role in &n.roles {
                check_value(&n.name, "role", role)?;
            }
            Ok(Host {
                name: n.name.clone(),
                address: n.address.clone(),
                hostname: n.hostname.clone(),
                ssh_port: if n.is_local || n.port == 0 {
                    LOCAL_SSH_PORT
                } else {
                    n.port
                },
                roles: n.roles.clone(),
            })
        })
        .collect()
}

/// The checks of one host: SSH on its port, then one per port its roles
/// serve, each once.
pub fn services(host: &Host) -> Vec<Service> {
    let mut out = vec![Service {
        description: "SSH",
        check_command: format!("stackhost_check_ssh!{}", host.ssh_port),
    }];
    for role in &host.roles {
        let checks: &[(&str, &str, u16)] = match role.as_str() {
            "router" => &[
                ("HTTP", "stackhost_check_http", 80),
                ("HTTPS", "stackhost_check_https", 443),
            ],
            "controller" => &[("Controller API", "stackhost_check_tcp", CONTROLLER_API_PORT)],
            "postgresql" => &[("PostgreSQL", "stackhost_check_tcp", 5432)],
            "mysql" => &[("MySQL", "stackhost_check_tcp", 3306)],
            _ => &[],
        };
        for (description, command, port) in checks {
            if !out.iter().any(|s| s.description == *description) {
                out.push(Service {
                    description,
                    check_command: format!("{command}!{port}"),
                });
            }
        }
    }
    out
}

const HEADER: &str = "# Written by `stackhost run nagios config` from the cluster's inventory;\n\
                      # changes made here are overwritten by the next run.\n";

fn object(kind: &str, directives: &[(&str, String)]) -> String {
    let mut s = format!("define {kind} {{\n");
    for (key, value) in directives {
        s.push_str(&format!("    {key:<24}{value}\n"));
    }
    s.push_str("}\n\n");
    s
}

fn commands() -> String {
    let mut s = format!(
        "{HEADER}# Our own commands, so the checks do not depend on what other packages define.\n\n"
    );
    for (name, line) in [
        (
            "stackhost_check_ssh",
            "$USER1$/check_ssh -p $ARG1$ $HOSTADDRESS$",
        ),
        (
            "stackhost_check_tcp",
            "$USER1$/check_tcp -H $HOSTADDRESS$ -p $ARG1$",
        ),
        (
            "stackhost_check_http",
            "$USER1$/check_http -I $HOSTADDRESS$ -p $ARG1$",
        ),
        (
            "stackhost_check_https",
            "$USER1$/check_http -I $HOSTADDRESS$ -p $ARG1$ -S",
        ),
    ] {
        s.push_str(&object(
            "command",
            &[("command_name", name.into()), ("command_line", line.into())],
        ));
    }
    s
}

fn own_templates() -> String {
    let mut s = format!(
        "{HEADER}# nagios.cfg does not include Debian's objects/templates.cfg, so the hosts\n\
         # and services use these templates instead.\n\n"
    );
    s.push_str(&object(
        "timeperiod",
        &[
            ("timeperiod_name", "stackhost-24x7".into()),
            ("alias", "always".into()),
            ("sunday", "00:00-24:00".into()),
            ("monday", "00:00-24:00".into()),
            ("tuesday", "00:00-24:00".into()),
            ("wednesday", "00:00-24:00".into()),
            ("thursday", "00:00-24:00".into()),
            ("friday", "00:00-24:00".into()),
            ("saturday", "00:00-24:00".into()),
        ],
    ));
    s.push_str(&object(
        "host",
        &[
            ("name", "stackhost-host".into()),
            ("check_period", "stackhost-24x7".into()),
            ("check_interval", "5".into()),
            ("retry_interval", "1".into()),
            ("max_check_attempts", "10".into()),
            ("notification_period", "stackhost-24x7".into()),
            ("notification_interval", "120".into()),
            ("register", "0".into()),
        ],
    ));
    s.push_str(&object(
        "service",
        &[
            ("name", "stackhost-service".into()),
            ("check_period", "stackhost-24x7".into()),
            ("check_interval", "5".into()),
            ("retry_interval", "1".into()),
            ("max_check_attempts", "3".into()),
            ("notification_period", "stackhost-24x7".into()),
            ("notification_interval", "60".into()),
            ("register", "0".into()),
        ],
    ));
    s
}

fn host_alias(h: &Host) -> String {
    let mut alias = format!("Stackato node {}: {}", h.name, h.roles.join(" "));
    if let Some(hostname) = &h.hostname {
        alias.push_str(&format!(" (hostname {hostname})"));
    }
    alias
}

/// The generated configuration: each file of the directory with its
/// content, or `None` where the file must not exist.
pub fn render(hosts: &[Host], templates: Templates) -> Vec<(&'static str, Option<String>)> {
    let mut host_cfg = format!(
        "{HEADER}# One host per inventory node. Host checks use SSH on the node's port\n\
         # rather than ping, which nodes and containers often do not answer.\n\n"
    );
    for h in hosts {
        let mut directives = vec![
            ("use", templates.host().into()),
            ("host_name", h.name.clone()),
            ("alias", host_alias(h)),
            ("address", h.address.clone()),
            (
                "check_command",
                format!("stackhost_check_ssh!{}", h.ssh_port),
            ),
        ];
        directives.extend(templates.host_settings());
        host_cfg.push_str(&object("host", &directives));
    }

    let mut by_role: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in hosts {
        for role in &h.roles {
            let members = by_role.entry(role).or_default();
            if !members.contains(&h.name.as_str()) {
                members.push(&h.name);
            }
        }
    }
    let mut group_cfg = format!("{HEADER}# One hostgroup per role.\n\n");
    for (role, members) in &by_role {
        group_cfg.push_str(&object(
            "hostgroup",
            &[
                ("hostgroup_name", format!("stackato-{role}")),
                ("alias", format!("Stackato {role} nodes")),
                ("members", members.join(",")),
            ],
        ));
    }

    let mut service_cfg = format!(
        "{HEADER}# Per node: SSH on its port; routers HTTP 80 and HTTPS 443; controllers\n\
         # the API port {CONTROLLER_API_PORT}; postgresql 5432; mysql 3306.\n\n"
    );
    for h in hosts {
        for s in services(h) {
            service_cfg.push_str(&object(
                "service",
                &[
                    ("use", templates.service().into()),
                    ("host_name", h.name.clone()),
                    ("service_description", s.description.into()),
                    ("check_command", s.check_command),
                ],
            ));
        }
    }

    let templates_cfg = (templates == Templates::Own).then(own_templates);
    vec![
        ("commands.cfg", Some(commands())),
        ("templates.cfg", templates_cfg),
        ("hosts.cfg", Some(host_cfg)),
        ("hostgroups.cfg", Some(group_cfg)),
        ("services.cfg", Some(service_cfg)),
    ]
}

/// What nagios.cfg says that matters here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MainConfig {
    pub cfg_files: Vec<String>,
    pub cfg_dirs: Vec<String>,
    pub lock_file: Option<String>,
}

impl MainConfig {
    pub fn parse(text: &str) -> MainConfig {
        let mut out = MainConfig::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "cfg_file" => out.cfg_files.push(value),
                "cfg_dir" => out.cfg_dirs.push(value),
                "lock_file" => out.lock_file = Some(value),
                _ => {}
            }
        }
        out
    }

    /// Whether Nagios reads the files in `dir` (a `cfg_dir` is read with
    /// its subdirectories).
    pub fn reads_dir(&self, dir: &str) -> bool {
        self.cfg_dirs.iter().any(|d| {
            let d = d.trim_end_matches('/');
            dir == d || dir.starts_with(&format!("{d}/"))
        })
    }
}

/// Whether a templates file defines both templates the Debian mode uses.
pub fn defines_debian_templates(text: &str) -> bool {
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("name"))
                .then(|| words.next())
                .flatten()
        })
        .collect();
    names.contains(&"generic-host") && names.contains(&"generic-service")
}

/// The `Error:` lines of `nagios4 -v` output, or its last lines if it has
/// none.
pub fn checker_errors(output: &str) -> String {
    let errors: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Error:"))
        .collect();
    if errors.is_empty() {
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    } else {
        errors.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, address: &str, port: u16, roles: &[&str]) -> InventoryNode {
        InventoryNode {
            name: name.into(),
            address: address.into(),
            hostname: None,
            port,
            user: "root".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            is_local: false,
            selected: true,
            http_proxy: None,
            https_proxy: None,
        }
    }

    fn file<'a>(files: &'a [(&str, Option<String>)], name: &str) -> Option<&'a str> {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, c)| c.as_deref())
    }

    #[test]
    fn every_node_becomes_a_host_with_its_checks_and_groups() {
        let mut core = node("core", "10.0.0.10", 22, &["core", "nagios", "controller"]);
        core.hostname = Some("core-1.example.internal".into());
        let inv = [
            core,
            node("r1", "10.0.0.11", 2222, &["router"]),
            node("db", "10.0.0.12", 22, &["postgresql", "mysql"]),
        ];
        let hosts = hosts(&inv).unwrap();
        let files = render(&hosts, Templates::Debian);
        assert_eq!(file(&files, "templates.cfg"), None);
        let h = file(&files, "hosts.cfg").unwrap();
        assert!(h.contains("    host_name               r1\n"), "{h}");
        assert!(h.contains("    address                 10.0.0.11\n"), "{h}");
        assert!(
            h.contains(
                "    alias                   Stackato node core: core nagios controller (hostname core-1.example.internal)\n"
            ),
            "{h}"
        );
        assert!(
            h.contains("    check_command           stackhost_check_ssh!2222\n"),
            "{h}"
        );
        assert!(h.contains("    use                     generic-host\n"));
        let g = file(&files, "hostgroups.cfg").unwrap();
        assert!(
            g.contains("    hostgroup_name          stackato-router\n    alias                   Stackato router nodes\n    members                 r1\n"),
            "{g}"
        );
        assert!(g.contains("stackato-nagios"));
        let s = file(&files, "services.cfg").unwrap();
        for (host, check) in [
            ("core", "stackhost_check_ssh!22"),
            ("core", "stackhost_check_tcp!9022"),
            ("r1", "stackhost_check_ssh!2222"),
            ("r1", "stackhost_check_http!80"),
            ("r1", "stackhost_check_https!443"),
            ("db", "stackhost_check_tcp!5432"),
            ("db", "stackhost_check_tcp!3306"),
        ] {
            assert!(
                s.contains(&format!(
                    "    host_name               {host}\n    service_description"
                )) && s.contains(&format!("    check_command           {check}\n")),
                "{host} {check}: {s}"
            );
        }
        assert_eq!(s.matches("define service {").count(), 8);
        let c = file(&files, "commands.cfg").unwrap();
        assert!(c.contains("$USER1$/check_ssh -p $ARG1$ $HOSTADDRESS$"));
    }

    #[test]
    fn own_templates_when_debian_templates_are_not_included() {
        let hosts = hosts(&[node("a", "10.0.0.1", 22, &["core"])]).unwrap();
        let files = render(&hosts, Templates::Own);
        let t = file(&files, "templates.cfg").unwrap();
        assert!(t.contains("name                    stackhost-host\n"));
        assert!(
            file(&files, "hosts.cfg")
                .unwrap()
                .contains("use                     stackhost-host\n")
        );
        assert!(
            file(&files, "services.cfg")
                .unwrap()
                .contains("use                     stackhost-service\n")
        );
    }

    #[test]
    fn a_local_node_is_checked_on_port_22() {
        let mut local = node("here", "127.0.0.1", 0, &["core"]);
        local.is_local = true;
        assert_eq!(hosts(&[local]).unwrap()[0].ssh_port, 22);
    }

    #[test]
    fn values_that_would_break_out_are_refused_naming_node_and_field() {
        let cases = [
            (
                node("n", "10.0.0.1", 22, &["router\n}\ndefine command {"]),
                "node `n`: role `router\\n}\\ndefine command {` holds a newline, `;`, `#`, `{`, `}` or NUL, which would break out of a Nagios directive",
            ),
            (
                node("n", "10.0.0.1;x", 22, &["core"]),
                "node `n`: address `10.0.0.1;x` holds a newline",
            ),
            (
                node("n", " 10.0.0.1", 22, &["core"]),
                "node `n`: address ` 10.0.0.1` has leading or trailing white space",
            ),
            (
                node("n", "$(reboot)", 22, &["core"]),
                "node `n`: address `$(reboot)` holds `$`",
            ),
            (
                node("n", "10.0.0.1", 22, &["db#1"]),
                "node `n`: role `db#1` holds a newline",
            ),
        ];
        for (n, want) in cases {
            let err = hosts(&[n]).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{err:?}");
            assert!(err.to_string().starts_with(want), "{err}\nwant: {want}");
            assert!(
                err.to_string()
                    .ends_with("fix the inventory (nothing was written)")
            );
        }
        let mut n = node("n", "10.0.0.1", 22, &["core"]);
        n.hostname = Some("a\0b".into());
        assert!(
            hosts(&[n])
                .unwrap_err()
                .to_string()
                .contains("hostname `a\\u{0}b`")
        );
    }

    #[test]
    fn nagios_cfg_includes_and_lock_file() {
        let cfg = MainConfig::parse(
            "# cfg_dir=/nope\nlock_file=/run/nagios4/nagios4.pid\ncfg_file=/etc/nagios4/objects/templates.cfg\ncfg_dir=/etc/nagios4/conf.d\n",
        );
        assert_eq!(cfg.lock_file.as_deref(), Some("/run/nagios4/nagios4.pid"));
        assert!(cfg.reads_dir("/etc/nagios4/conf.d/stackhost"));
        assert!(
            !MainConfig::parse("cfg_dir=/etc/nagios4/conf")
                .reads_dir("/etc/nagios4/conf.d/stackhost")
        );
        assert!(!cfg.reads_dir("/nope"));
        assert!(defines_debian_templates(
            "define host {\n  name  generic-host\n}\ndefine service{\n\tname\tgeneric-service\n}\n"
        ));
        assert!(!defines_debian_templates("name generic-host\n"));
    }

    #[test]
    fn checker_errors_are_the_error_lines() {
        let out = "Reading configuration data...\n   Read main config file okay...\nError: Could not find any host matching 'x'\n   Error processing object config files!\n\n***> One or more problems\n";
        assert_eq!(
            checker_errors(out),
            "Error: Could not find any host matching 'x'"
        );
        assert_eq!(checker_errors("a\nb\n"), "a\nb");
    }
}
