//! The two New Relic agents `newrelic` manages, and their config files:
//! today's infrastructure agent (`newrelic-infra`, YAML in
//! /etc/newrelic-infra.yml) and the guide's older Server Monitor
//! (`newrelic-sysmond`, `key=value` lines in /etc/newrelic/nrsysmond.cfg).
//! Every value is written so that it cannot end its line or add a key.

use stackhost_sdk::{Error, Result};

/// How an agent's config file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `key: "value"` with YAML double-quoted scalars.
    Yaml,
    /// `key=value`, one per line, no quoting (nrsysmond.cfg).
    KeyValue,
}

/// One agent: its package, its SysV/systemd service, its config file.
#[derive(Debug, PartialEq, Eq)]
pub struct Agent {
    pub package: &'static str,
    pub service: &'static str,
    pub config: &'static str,
    pub format: Format,
    /// The config is written after the package is installed: nrsysmond
    /// ships its config as a dpkg conffile, and one already on disk would
    /// stop the install at dpkg's conffile question. The infrastructure
    /// agent wants its config before it is installed, as New Relic's
    /// instructions say.
    pub config_after_package: bool,
}

pub const INFRA: Agent = Agent {
    package: "newrelic-infra",
    service: "newrelic-infra",
    config: "/etc/newrelic-infra.yml",
    format: Format::Yaml,
    config_after_package: false,
};

pub const SYSMOND: Agent = Agent {
    package: "newrelic-sysmond",
    service: "newrelic-sysmond",
    config: "/etc/newrelic/nrsysmond.cfg",
    format: Format::KeyValue,
    config_after_package: true,
};

pub const ALL: [&Agent; 2] = [&INFRA, &SYSMOND];

/// The agent whose package is `name`.
pub fn by_package(name: &str) -> Option<&'static Agent> {
    ALL.into_iter().find(|a| a.package == name)
}

/// What goes into an agent's config for one node.
pub struct Settings<'a> {
    pub license_key: &'a str,
    pub display_name: &'a str,
    pub proxy: Option<&'a str>,
    pub node: &'a str,
    pub roles: &'a [String],
}

const HEADER: &str = "# Written by `stackhost run newrelic install`; the license key is secret.\n";

/// A YAML double-quoted scalar: everything outside printable ASCII, and
/// `"` and `\`, escaped, so no value can end its line or open another key.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A `key=value` value: nrsysmond.cfg has no quoting, so a value with a
/// control character (a line break) is refused. The license key is named,
/// never shown.
fn plain<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if value.chars().any(char::is_control) {
        return Err(Error::plugin(format!(
            "the {what} holds a line break or another control character, which nrsysmond.cfg cannot hold"
        )));
    }
    Ok(value)
}

/// A `labels=` part: `;` separates labels and `:` type from value.
fn label<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if value.contains([';', ':']) {
        return Err(Error::plugin(format!(
            "the {what} `{value}` holds `;` or `:`, which nrsysmond's labels= cannot hold"
        )));
    }
    plain(what, value)
}

impl Agent {
    /// The config file for one node.
    pub fn render(&self, s: &Settings) -> Result<String> {
        let mut out = String::from(HEADER);
        match self.format {
            Format::Yaml => {
                out.push_str(&format!("license_key: {}\n", quoted(s.license_key)));
                out.push_str(&format!("display_name: {}\n", quoted(s.display_name)));
                if let Some(p) = s.proxy {
                    out.push_str(&format!("proxy: {}\n", quoted(p)));
                }
                out.push_str("custom_attributes:\n");
                out.push_str(&format!("  stackhost_node: {}\n", quoted(s.node)));
                out.push_str(&format!(
                    "  stackhost_roles: {}\n",
                    quoted(&s.roles.join(","))
                ));
            }
            Format::KeyValue => {
                out.push_str(&format!(
                    "license_key={}\n",
                    plain("license key", s.license_key)?
                ));
                out.push_str(&format!(
                    "hostname={}\n",
                    plain("display name", s.display_name)?
                ));
                if let Some(p) = s.proxy {
                    out.push_str(&format!("proxy={}\n", plain("proxy", p)?));
                }
                let roles = s
                    .roles
                    .iter()
                    .map(|r| label("role", r))
                    .collect::<Result<Vec<_>>>()?;
                out.push_str(&format!(
                    "labels=stackhost_node:{};stackhost_roles:{}\n",
                    label("node name", s.node)?,
                    roles.join(",")
                ));
            }
        }
        Ok(out)
    }

    /// The value of setting `key` (`license_key`, `proxy`) in a config
    /// file of this agent, unquoted.
    pub fn value(&self, text: &str, key: &str) -> Option<String> {
        match self.format {
            Format::Yaml => text.lines().find_map(|l| {
                let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
                Some(
                    v.trim_matches('"')
                        .replace("\\\"", "\"")
                        .replace("\\\\", "\\"),
                )
            }),
            Format::KeyValue => text
                .lines()
                .find_map(|l| Some(l.strip_prefix(key)?.strip_prefix('=')?.trim().to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings<'a>(key: &'a str, roles: &'a [String]) -> Settings<'a> {
        Settings {
            license_key: key,
            display_name: "dea-1",
            proxy: Some("http://p:3128"),
            node: "dea-1",
            roles,
        }
    }

    #[test]
    fn the_yaml_config_quotes_every_value_so_none_can_add_a_key() {
        let roles = ["dea".to_string(), "router".to_string()];
        let c = INFRA
            .render(&settings("k\"ey\nproxy: evil", &roles))
            .unwrap();
        assert_eq!(
            c,
            "# Written by `stackhost run newrelic install`; the license key is secret.\n\
             license_key: \"k\\\"ey\\U0000000aproxy: evil\"\n\
             display_name: \"dea-1\"\n\
             proxy: \"http://p:3128\"\n\
             custom_attributes:\n  stackhost_node: \"dea-1\"\n  stackhost_roles: \"dea,router\"\n"
        );
        assert_eq!(c.lines().filter(|l| l.starts_with("proxy:")).count(), 1);
        assert_eq!(INFRA.value(&c, "proxy").as_deref(), Some("http://p:3128"));
        assert_eq!(INFRA.value(&c, "display_name").as_deref(), Some("dea-1"));
    }

    #[test]
    fn the_sysmond_config_is_key_value_lines_and_refuses_a_line_break() {
        let roles = ["dea".to_string(), "router".to_string()];
        let c = SYSMOND.render(&settings("NRAK-1", &roles)).unwrap();
        assert_eq!(
            c,
            "# Written by `stackhost run newrelic install`; the license key is secret.\n\
             license_key=NRAK-1\n\
             hostname=dea-1\n\
             proxy=http://p:3128\n\
             labels=stackhost_node:dea-1;stackhost_roles:dea,router\n"
        );
        assert_eq!(SYSMOND.value(&c, "license_key").as_deref(), Some("NRAK-1"));
        assert_eq!(SYSMOND.value(&c, "proxy").as_deref(), Some("http://p:3128"));
        let err = SYSMOND
            .render(&settings("NRAK-1\nproxy=evil", &roles))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the license key holds a line break or another control character, which nrsysmond.cfg cannot hold"
        );
        assert!(!err.contains("NRAK"));
        let bad = ["a;b".to_string()];
        assert!(SYSMOND.render(&settings("k", &bad)).is_err());
    }
}
