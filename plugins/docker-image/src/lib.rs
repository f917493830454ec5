//! `docker-image`: the guide's "To Upgrade the Docker Image" on every DEA,
//! through each DEA's own Docker engine. `status` shows the image behind
//! `stackato/stack-alsek:latest`, its age and the running containers on
//! other images; `upgrade` builds `upgrade-YYYY-MM-DD` FROM latest with
//! the guide's RUN steps (no build cache), keeps the previous latest as
//! `pre-upgrade-YYYY-MM-DD` and tags the new image latest, one DEA at a
//! time; an on-failure phase retags the DEAs already done back, and
//! `rollback` does the same later. Apps are never restarted here: the
//! guide says their owners restart them through the platform, and "Do not
//! run the docker restart command".

use serde::{Deserialize, Serialize};
use stackato::{from_json, to_json};
use stackhost_sdk::docker::{self, Container, Image};
use stackhost_sdk::prelude::*;
use std::collections::HashMap;

struct DockerImage;

const REPO: &str = "stackato/stack-alsek";
const LATEST: &str = "stackato/stack-alsek:latest";

/// The guide's Dockerfile, after its `FROM stackato/stack-alsek:latest`.
const GUIDE_STEPS: &[&str] = &[
    "apt-get update",
    "unattended-upgrades -d",
    "apt-get clean && apt-get autoremove",
];

const RESTART_ADVICE: &str = "app owners (or an administrator) must restart them through the \
    management console or the stackato client; do not run docker restart";

/// What every step of an upgrade or rollback carries.
#[derive(Debug, Serialize, Deserialize)]
struct Params {
    tag: Option<String>,
    run: Vec<String>,
    /// `--push REGISTRY`: the first DEA builds and pushes there, the
    /// others pull from it.
    #[serde(default)]
    registry: Option<String>,
}

/// What an upgrade step did on its node (its outcome's data), read back
/// by the on-failure phase.
#[derive(Debug, Serialize, Deserialize)]
struct Upgraded {
    tag: String,
    image: String,
    previous: String,
    pre_tag: String,
    stale: Vec<Stale>,
}

/// A running container on an image other than latest.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stale {
    name: String,
    image: String,
    /// The image's tags, if it still has any.
    tags: Vec<String>,
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn now() -> i64 {
    stackhost_sdk::clock::now() as i64
}

fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Running containers whose image is not `image`.
fn stale(containers: &[Container], images: &[Image], image: &str) -> Vec<Stale> {
    let tags: HashMap<&str, &Vec<String>> =
        images.iter().map(|i| (i.id.as_str(), &i.tags)).collect();
    containers
        .iter()
        .filter(|c| c.state == "running" && c.image != image)
        .map(|c| Stale {
            name: c.name.clone(),
            image: c.image.clone(),
            tags: tags
                .get(c.image.as_str())
                .map(|t| t.to_vec())
                .unwrap_or_default(),
        })
        .collect()
}

fn stale_text(stale: &[Stale]) -> String {
    let names: Vec<String> = stale
        .iter()
        .map(|s| match s.tags.first() {
            Some(t) => format!("{} ({t})", s.name),
            None => format!("{} ({})", s.name, short(&s.image)),
        })
        .collect();
    format!(
        "{} running container(s) on an older image: {}; {RESTART_ADVICE}",
        stale.len(),
        names.join(", ")
    )
}

#[derive(Debug, Serialize)]
struct Status {
    latest: Option<LatestImage>,
    upgrade_tags: Vec<String>,
    pre_upgrade_tags: Vec<String>,
    stale: Vec<Stale>,
}

#[derive(Debug, Serialize)]
struct LatestImage {
    id: String,
    tags: Vec<String>,
    created: i64,
    age_seconds: i64,
}

/// Tags of `REPO` on the node, `TAG` only, that start with `prefix`.
fn tags_with(images: &[Image], prefix: &str) -> Vec<String> {
    let mut tags: Vec<String> = images
        .iter()
        .flat_map(|i| i.tags.iter())
        .filter_map(|t| t.strip_prefix(REPO)?.strip_prefix(':'))
        .filter(|t| t.starts_with(prefix))
        .map(String::from)
        .collect();
    tags.sort();
    tags
}

fn status(node: &Node) -> Result<Outcome> {
    let images = docker::list_images(node)?;
    let containers = docker::list_containers(node)?;
    let latest = match docker::inspect_image(node, LATEST) {
        Ok(i) => Some(i),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let st = Status {
        latest: latest.as_ref().map(|i| LatestImage {
            id: i.id.clone(),
            tags: i.tags.clone(),
            created: i.created,
            age_seconds: now() - i.created,
        }),
        upgrade_tags: tags_with(&images, "upgrade-"),
        pre_upgrade_tags: tags_with(&images, "pre-"),
        stale: latest
            .as_ref()
            .map(|l| stale(&containers, &images, &l.id))
            .unwrap_or_default(),
    };
    let mut parts = Vec::new();
    match &st.latest {
        None => parts.push(format!("no {LATEST} on this DEA")),
        Some(l) => {
            let other: Vec<&str> = l
                .tags
                .iter()
                .filter(|t| t.as_str() != LATEST)
                .map(String::as_str)
                .collect();
            parts.push(format!(
                "latest {}{}, {} old",
                short(&l.id),
                if other.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", other.join(", "))
                },
                age(l.age_seconds)
            ));
        }
    }
    if !st.pre_upgrade_tags.is_empty() {
        parts.push(format!("kept: {}", st.pre_upgrade_tags.join(", ")));
    }
    if st.stale.is_empty() {
        parts.push("every running container uses latest".into());
    } else {
        parts.push(stale_text(&st.stale));
    }
    Ok(Outcome::ok(parts.join("; ")).with_data(to_json(&st)?))
}

/// `--registry-user` and `--registry-password` (a secret), both or neither.
fn auth(inv: &Invocation) -> Result<Option<docker::RegistryAuth>> {
    match (inv.value("registry-user"), inv.value("registry-password")) {
        (Some(user), Some(password)) => Ok(Some(docker::RegistryAuth {
            username: user.to_string(),
            password: password.to_string(),
        })),
        (None, None) => Ok(None),
        _ => bail!("give both --registry-user and --registry-password, or neither"),
    }
}

/// Build (and push, with `--push`), or pull what the first DEA pushed.
fn upgrade(inv: &Invocation, node: &Node, params: &Params, pull: bool) -> Result<Outcome> {
    let tag = params.tag.clone().unwrap_or_default();
    let new = format!("{REPO}:{tag}");
    let pre_tag = format!("pre-{tag}");
    let pre = format!("{REPO}:{pre_tag}");
    let current = match docker::inspect_image(node, LATEST) {
        Ok(i) => i,
        Err(Error::NotFound(_)) => bail!("there is no {LATEST} on {} to upgrade from", node.name()),
        Err(e) => return Err(e),
    };
    // Idempotent: this upgrade already made latest.
    if current.tags.iter().any(|t| t == &new) {
        return Ok(Outcome::ok(format!(
            "latest is already {tag} ({})",
            short(&current.id)
        )));
    }
    // The image to return to: kept once, so a second attempt after a
    // failure does not overwrite it with a half-done latest.
    let kept = match docker::inspect_image(node, &pre) {
        Ok(i) => i.id,
        Err(Error::NotFound(_)) => {
            docker::tag(node, LATEST, &pre)?;
            current.id.clone()
        }
        Err(e) => return Err(e),
    };
    let auth = auth(inv)?;
    let remote = params
        .registry
        .as_ref()
        .map(|r| format!("{r}/{REPO}:{tag}"));
    let id = match &remote {
        Some(remote) if pull => {
            let id = docker::pull(node, remote, auth.as_ref())?;
            docker::tag(node, remote, &new)?;
            id
        }
        Some(remote) => {
            let id = docker::build(node, LATEST, &params.run, &new)?;
            docker::tag(node, &new, remote)?;
            docker::push(node, remote, auth.as_ref())?;
            id
        }
        None => docker::build(node, LATEST, &params.run, &new)?,
    };
    docker::tag(node, &new, LATEST)?;
    let how = match (&params.registry, pull) {
        (Some(r), true) => format!("pulled from {r}"),
        (Some(r), false) => format!("built FROM latest and pushed to {r}"),
        (None, _) => "built FROM latest".to_string(),
    };
    let (image, stale) = if inv.dry_run() {
        (String::new(), Vec::new())
    } else {
        let images = docker::list_images(node)?;
        let containers = docker::list_containers(node)?;
        (id.clone(), stale(&containers, &images, &id))
    };
    let mut message = if inv.dry_run() {
        format!(
            "would keep latest ({}) as {pre_tag}, make {tag} ({how}, {} RUN step(s)) and tag it latest",
            short(&current.id),
            params.run.len()
        )
    } else {
        format!(
            "{tag} ({}) {how}; kept the previous latest ({}) as {pre_tag}; latest -> {tag}",
            short(&id),
            short(&current.id)
        )
    };
    if !stale.is_empty() {
        message.push_str("; ");
        message.push_str(&stale_text(&stale));
    }
    let data = Upgraded {
        tag,
        image,
        previous: kept,
        pre_tag,
        stale,
    };
    Ok(Outcome::changed(message).with_data(to_json(&data)?))
}

/// The on-failure phase: put latest back on the nodes this run upgraded.
fn restore(node: &Node) -> Result<Outcome> {
    let done = run::outcomes(Some(node.name()))
        .into_iter()
        .rev()
        .find(|r| r.phase.starts_with("upgrade") && r.changed());
    let Some(done) = done else {
        return Ok(Outcome::skipped(
            "not upgraded by this run: nothing to restore",
        ));
    };
    let up: Upgraded = from_json(
        done.data.as_deref().unwrap_or(""),
        "the upgrade step's data",
    )?;
    retag_previous(node, &up.pre_tag, &up.previous)
}

/// Tag `REPO:pre_tag` latest unless latest is `previous` already.
fn retag_previous(node: &Node, pre_tag: &str, previous: &str) -> Result<Outcome> {
    let latest = docker::inspect_image(node, LATEST)?;
    if latest.id == previous {
        return Ok(Outcome::ok(format!(
            "latest is already the image kept as {pre_tag} ({})",
            short(previous)
        )));
    }
    docker::tag(node, &format!("{REPO}:{pre_tag}"), LATEST)?;
    Ok(Outcome::changed(format!(
        "latest -> {pre_tag} ({}) again, was {}",
        short(previous),
        short(&latest.id)
    )))
}

fn rollback(node: &Node, params: &Params) -> Result<Outcome> {
    let images = docker::list_images(node)?;
    let pre_tag = match &params.tag {
        Some(t) => format!("pre-{t}"),
        None => match tags_with(&images, "pre-").pop() {
            Some(t) => t,
            None => bail!(
                "no pre-upgrade tag of {REPO} on {}: nothing to roll back to",
                node.name()
            ),
        },
    };
    let kept = match docker::inspect_image(node, &format!("{REPO}:{pre_tag}")) {
        Ok(i) => i,
        Err(Error::NotFound(_)) => bail!("there is no {REPO}:{pre_tag} on {}", node.name()),
        Err(e) => return Err(e),
    };
    retag_previous(node, &pre_tag, &kept.id)
}

/// `prune --keep N`: drop the names of older upgrades (`upgrade-X` and
/// its `pre-upgrade-X`), newest N upgrades kept by the time their image
/// was built; a name whose image is latest or is used by any container
/// (running or not) stays.
fn prune(node: &Node, keep: usize) -> Result<Outcome> {
    let images = docker::list_images(node)?;
    let containers = docker::list_containers(node)?;
    let latest = docker::inspect_image(node, LATEST)?.id;
    let created: HashMap<String, (i64, String)> = images
        .iter()
        .flat_map(|i| {
            i.tags
                .iter()
                .map(move |t| (t.clone(), (i.created, i.id.clone())))
        })
        .collect();
    // An upgrade by its tag, from `upgrade-X` or a lone `pre-upgrade-X`
    // (a run that failed before building); the one latest is on first,
    // then by its image's time (one-second resolution: a tie goes by
    // name), a lone `pre-` as the oldest.
    let mut upgrades: Vec<(bool, i64, String)> = tags_with(&images, "upgrade-")
        .into_iter()
        .chain(
            tags_with(&images, "pre-upgrade-")
                .into_iter()
                .filter_map(|t| t.strip_prefix("pre-").map(String::from)),
        )
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .map(|t| {
            let image = created.get(&format!("{REPO}:{t}"));
            let is_latest = image.is_some_and(|(_, id)| *id == latest);
            (is_latest, image.map_or(i64::MIN, |(c, _)| *c), t)
        })
        .collect();
    upgrades.sort_by(|a, b| b.cmp(a));
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for (_, _, tag) in upgrades.iter().skip(keep) {
        for name in [format!("{REPO}:{tag}"), format!("{REPO}:pre-{tag}")] {
            let Some((_, id)) = created.get(&name) else {
                continue;
            };
            let short_name = name.trim_start_matches(&format!("{REPO}:")).to_string();
            if *id == latest {
                kept.push(format!("{short_name} (latest)"));
            } else if let Some(c) = containers.iter().find(|c| &c.image == id) {
                kept.push(format!("{short_name} (used by {})", c.name));
            } else {
                docker::remove_image(node, &name)?;
                removed.push(short_name);
            }
        }
    }
    let mut parts = vec![if removed.is_empty() {
        "nothing to prune".to_string()
    } else {
        format!("removed {}", removed.join(", "))
    }];
    if !kept.is_empty() {
        parts.push(format!("kept {}", kept.join(", ")));
    }
    let message = parts.join("; ");
    Ok(if removed.is_empty() {
        Outcome::ok(message)
    } else {
        Outcome::changed(message)
    })
}

fn params(inv: &Invocation) -> Result<Params> {
    let tag = match inv.value("tag") {
        Some(t) => t.to_string(),
        None => format!(
            "upgrade-{}",
            stackhost_sdk::clock::utc_date(stackhost_sdk::clock::now())
        ),
    };
    let run: Vec<String> = if inv.values("run").is_empty() {
        GUIDE_STEPS.iter().map(|s| s.to_string()).collect()
    } else {
        inv.values("run").to_vec()
    };
    Ok(Params {
        tag: Some(tag),
        run,
        registry: inv
            .value("push")
            .map(|r| r.trim_end_matches('/').to_string()),
    })
}

impl Plugin for DockerImage {
    fn plan(inv: &Invocation) -> Result<Plan> {
        let name = inv.command();
        if !["status", "upgrade", "rollback", "prune"].contains(&name) {
            return Err(inv.unknown_command());
        }
        let deas: Vec<Node> = nodes::all()
            .into_iter()
            .filter(|n| n.has_role("dea"))
            .collect();
        ensure!(
            !deas.is_empty(),
            "no DEA node is selected (the base image lives on DEAs)"
        );
        let payload = match name {
            "upgrade" => to_json(&params(inv)?)?,
            "prune" => {
                let keep = inv.require("keep")?;
                if keep.parse::<usize>().is_err() {
                    usage!("--keep takes a number, not `{keep}`");
                }
                keep.to_string()
            }
            "rollback" => to_json(&Params {
                tag: inv.value("tag").map(String::from),
                run: vec![],
                registry: None,
            })?,
            _ => String::new(),
        };
        if name == "upgrade" && inv.value("push").is_some() {
            // Built once, on the first DEA, and pushed; the others pull it
            // in a later phase, so they wait for the push whatever
            // --serial says.
            let (first, rest) = deas.split_first().expect("a DEA");
            let pulls = rest.iter().fold(Phase::new("upgrade-pull"), |p, n| {
                p.step(n, "upgrade-pull", payload.clone())
            });
            let restore = deas
                .iter()
                .fold(Phase::new("restore").on_failure(), |p, n| {
                    p.step(n, "restore", "")
                });
            return Ok(Plan::new()
                .phase(Phase::new("upgrade").step(first, "upgrade", payload))
                .phase(pulls)
                .phase(restore));
        }
        let phase = deas
            .iter()
            .fold(Phase::new(name), |p, n| p.step(n, name, payload.clone()));
        let mut plan = Plan::new().phase(phase);
        if name == "upgrade" {
            let restore = deas
                .iter()
                .fold(Phase::new("restore").on_failure(), |p, n| {
                    p.step(n, "restore", "")
                });
            plan = plan.phase(restore);
        }
        Ok(plan)
    }

    fn apply(inv: &Invocation, step: &Step) -> Result<Outcome> {
        let node = step.node();
        let params = || -> Result<Params> { from_json(step.payload(), "the step's payload") };
        match step.name() {
            "status" => status(&node),
            "upgrade" => upgrade(inv, &node, &params()?, false),
            "upgrade-pull" => upgrade(inv, &node, &params()?, true),
            "restore" => restore(&node),
            "rollback" => rollback(&node, &params()?),
            "prune" => prune(&node, step.payload().parse().unwrap_or(usize::MAX)),
            other => bail!("unknown step `{other}`"),
        }
    }
}

export_plugin!(DockerImage);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_containers_are_running_ones_on_other_images() {
        let c = |name: &str, image: &str, state: &str| Container {
            id: name.into(),
            name: name.into(),
            image: image.into(),
            state: state.into(),
        };
        let images = vec![Image {
            id: "sha256:old".into(),
            tags: vec!["stackato/stack-alsek:pre-upgrade-1".into()],
            created: 0,
            size: 0,
        }];
        let s = stale(
            &[
                c("a", "sha256:new", "running"),
                c("b", "sha256:old", "running"),
                c("c", "sha256:old", "exited"),
            ],
            &images,
            "sha256:new",
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "b");
        assert_eq!(s[0].tags, ["stackato/stack-alsek:pre-upgrade-1"]);
        assert!(stale_text(&s).contains("do not run docker restart"));
    }
}
