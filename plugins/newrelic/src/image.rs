//! `newrelic image`: the guide's optional step, the agent package
//! installed into the app base image (`stackato/stack-alsek:latest`) on
//! each DEA, so app containers carry the agent. It is a build FROM latest
//! with RUN steps (the APT source and key when given, `apt-get install`),
//! labelled with the package; the previous latest is kept as
//! `pre-TAG`, and an on-failure phase puts it back on the DEAs done.
//!
//! No license key goes into the image: anyone who can pull an image can
//! read its layers. Containers get the key at run time (the agent reads
//! `NRIA_LICENSE_KEY`; nrsysmond its config, mounted).

use serde::{Deserialize, Serialize};
use stackato::{from_json, to_json};
use stackhost_sdk::docker::{self, BuildOptions};
use stackhost_sdk::prelude::*;

const REPO: &str = "stackato/stack-alsek";
const LATEST: &str = "stackato/stack-alsek:latest";
/// The label that says which agent an image carries.
pub const LABEL: &str = "com.stackhost.newrelic";

/// What one DEA's step did, for the on-failure phase.
#[derive(Debug, Serialize, Deserialize)]
struct Imaged {
    tag: String,
    image: String,
    previous: String,
    pre_tag: String,
}

/// Standard base64 (with padding), for the key written by a RUN step.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `s` in single quotes for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The RUN steps that put `package` into the image: its APT source and
/// signing key first when given (the same files `install` writes on a
/// node), then the install, then apt's caches dropped.
pub fn steps(package: &str, source: Option<&str>, key: Option<&[u8]>) -> Vec<String> {
    let mut steps = Vec::new();
    if let Some(key) = key {
        steps.push(format!(
            "mkdir -p /etc/apt/keyrings && echo {} | base64 -d > {}",
            base64(key),
            crate::apt::KEYRING
        ));
    }
    if let Some(line) = source {
        steps.push(format!("echo {} > {}", quote(line), crate::SOURCE));
    }
    steps.push("apt-get update".into());
    steps.push(format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {package}"
    ));
    steps.push("apt-get clean".into());
    steps
}

/// `newrelic image` on one DEA.
pub fn image(
    inv: &Invocation,
    node: &Node,
    package: &str,
    source: Option<&str>,
    key: Option<&[u8]>,
) -> Result<Outcome> {
    let tag = match inv.value("tag") {
        Some(t) => t.to_string(),
        None => format!(
            "newrelic-{}",
            &stackhost_sdk::clock::utc_stamp(stackhost_sdk::clock::now())[..8]
        ),
    };
    let new = format!("{REPO}:{tag}");
    let pre_tag = format!("pre-{tag}");
    let pre = format!("{REPO}:{pre_tag}");
    let current = match docker::inspect_image(node, LATEST) {
        Ok(i) => i,
        Err(Error::NotFound(_)) => bail!(
            "there is no {LATEST} on {} to add the agent to",
            node.name()
        ),
        Err(e) => return Err(e),
    };
    let has = current
        .labels
        .iter()
        .any(|(k, v)| k == LABEL && v == package);
    if has {
        return Ok(Outcome::ok(format!(
            "latest ({}) already has {package}",
            short(&current.id)
        )));
    }
    // Kept once, so a second attempt after a failure keeps the original.
    let previous = match docker::inspect_image(node, &pre) {
        Ok(i) => i.id,
        Err(Error::NotFound(_)) => {
            docker::tag(node, LATEST, &pre)?;
            current.id.clone()
        }
        Err(e) => return Err(e),
    };
    let options = BuildOptions {
        labels: vec![(LABEL.to_string(), package.to_string())],
        ..BuildOptions::default()
    };
    let run = steps(package, source, key);
    let id = docker::build_with(node, LATEST, &run, &new, &options)?;
    docker::tag(node, &new, LATEST)?;
    let message = if inv.dry_run() {
        format!(
            "would keep latest ({}) as {pre_tag}, build {tag} FROM latest with {package} \
             ({} RUN steps) and tag it latest",
            short(&current.id),
            run.len()
        )
    } else {
        format!(
            "{tag} ({}) has {package}; kept the previous latest ({}) as {pre_tag}; latest -> \
             {tag}. The image holds no license key: give it to containers at run time",
            short(&id),
            short(&current.id)
        )
    };
    let data = Imaged {
        tag,
        image: id,
        previous,
        pre_tag,
    };
    let data = to_json(&data)?;
    Ok(Outcome::changed(message).with_data(data))
}

/// The on-failure phase: latest back to what it was on the DEAs this run
/// changed.
pub fn restore(node: &Node) -> Result<Outcome> {
    let done = stackhost_sdk::run::outcomes(Some(node.name()))
        .into_iter()
        .rev()
        .find(|r| r.phase == "image" && r.changed());
    let Some(done) = done else {
        return Ok(Outcome::skipped(
            "not changed by this run: nothing to restore",
        ));
    };
    let imaged: Imaged = from_json(done.data.as_deref().unwrap_or(""), "the image step's data")?;
    let latest = docker::inspect_image(node, LATEST)?;
    if latest.id == imaged.previous {
        return Ok(Outcome::ok("latest is the previous image already"));
    }
    docker::tag(node, &format!("{REPO}:{}", imaged.pre_tag), LATEST)?;
    Ok(Outcome::changed(format!(
        "latest back to {} ({})",
        imaged.pre_tag,
        short(&imaged.previous)
    )))
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn the_steps_quote_the_source_and_carry_no_secret() {
        let s = steps(
            "newrelic-infra",
            Some("deb [signed-by=/etc/apt/keyrings/newrelic.gpg] https://x/apt it's main"),
            Some(b"\x99\x01"),
        );
        assert_eq!(
            s[0],
            "mkdir -p /etc/apt/keyrings && echo mQE= | base64 -d > /etc/apt/keyrings/newrelic.gpg"
        );
        assert_eq!(
            s[1],
            "echo 'deb [signed-by=/etc/apt/keyrings/newrelic.gpg] https://x/apt it'\\''s main' > \
             /etc/apt/sources.list.d/newrelic-infra.list"
        );
        assert_eq!(
            &s[2..],
            [
                "apt-get update",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends newrelic-infra",
                "apt-get clean"
            ]
        );
    }
}
