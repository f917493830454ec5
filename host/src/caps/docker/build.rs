//! `docker.build` / `build-with`: a Dockerfile of `FROM` and exec-form
//! `RUN` steps, sent as a one-file build context; inputs capped, the base
//! image checked to be on the node (a build never pulls unless the grant
//! allows it), the log streamed to the progress display.

use super::host::{engine, engine_error, engine_text, granted};
use super::scope::{self, shown};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::docker::{BuildOptions, BuildSource};
use crate::caps::ctx::CapView;
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use std::collections::HashMap;

/// At most this many `RUN` steps in one build.
pub const MAX_STEPS: usize = 64;
/// At most this many bytes in one `RUN` step.
pub const MAX_STEP: usize = 8 << 10;
/// At most this many labels, and as many build args.
pub const MAX_PAIRS: usize = 32;
/// Longest label or build-arg key, and value.
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 4 << 10;
/// Build-log lines kept for the error of a failed build.
const TAIL_LINES: usize = 8;

/// Check label or build-arg pairs: count, sizes, no NUL, no empty key.
fn check_pairs(
    what: &str,
    pairs: &[(String, String)],
) -> Result<HashMap<String, String>, WitError> {
    if pairs.len() > MAX_PAIRS {
        return Err(WitError::InvalidArgument(format!(
            "{} {what} given; a build takes at most {MAX_PAIRS}",
            pairs.len()
        )));
    }
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return Err(WitError::InvalidArgument(format!(
                "{what} `{}`: a key is 1 to {MAX_KEY} bytes and a value at most {MAX_VALUE}",
                shown(k)
            )));
        }
        if k.contains('\0') || v.contains('\0') || k.chars().any(char::is_control) {
            return Err(WitError::InvalidArgument(format!(
                "{what} `{}` has a NUL or control character in it",
                shown(k)
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// A Dockerfile of `FROM` and exec-form `RUN` steps: each step is a JSON
/// string (`RUN ["/bin/sh","-c","..."]`), so a newline or a backslash in
/// a step cannot start another instruction.
fn dockerfile(from: &str, run: &[String]) -> String {
    let mut f = format!("FROM {from}\n");
    for step in run {
        let json = serde_json::to_string(&["/bin/sh", "-c", step.as_str()])
            .unwrap_or_else(|_| "[]".into());
        f.push_str("RUN ");
        f.push_str(&json);
        f.push('\n');
    }
    f
}

/// A build context holding only `Dockerfile`.
fn context(dockerfile: &str) -> Result<Vec<u8>, WitError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .and_then(|_| tar.into_inner())
        .map_err(|e| WitError::Failed(format!("build context: {e}")))
}

// Long because it is one stream from the engine (context sent, progress
// lines, errors, the image id) read in order; split, its state would be
// handed from piece to piece.
pub(super) async fn build(
    view: &CapView<'_>,
    node: String,
    source: BuildSource,
    tag: String,
    options: BuildOptions,
) -> Result<String, WitError> {
    let node = granted(view, &node, "build")?;
    let steps = match source {
        BuildSource::Steps(s) => s,
        BuildSource::ContextDir(_) => {
            return Err(WitError::Unsupported(
                "docker build from a context directory is not built into this host yet; \
                 give FROM/RUN steps"
                    .into(),
            ));
        }
    };
    let grant = &view.call.grant;
    let target = scope::check_image(grant, "build", &tag)?;
    let from = scope::check_image(grant, "build (FROM)", &steps.from)?;
    if options.pull {
        scope::check_operation(grant, &node.info, "pull")?;
    }
    if steps.run.len() > MAX_STEPS {
        return Err(WitError::InvalidArgument(format!(
            "{} RUN steps given; a build takes at most {MAX_STEPS}",
            steps.run.len()
        )));
    }
    for (i, step) in steps.run.iter().enumerate() {
        if step.len() > MAX_STEP {
            return Err(WitError::InvalidArgument(format!(
                "RUN step {} is {} bytes; a step is at most {MAX_STEP}",
                i + 1,
                step.len()
            )));
        }
        if step.trim().is_empty() || step.contains('\0') {
            return Err(WitError::InvalidArgument(format!(
                "RUN step {} is empty or holds a NUL byte",
                i + 1
            )));
        }
    }
    let labels = check_pairs("label", &options.labels)?;
    let build_args = check_pairs("build arg", &options.build_args)?;
    let name = node.info.name.clone();
    view.call
        .refuse_mutation(&name, &format!("docker build {target}"))?;
    let docker = engine(view, &node)?;
    if !options.pull {
        // The classic builder pulls a missing base image by itself; without
        // the `pull` operation that must not happen.
        match docker.inspect_image(&from).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(WitError::NotFound(format!(
                    "base image `{from}` is not on node {name}; a build does not pull it \
                     (that needs docker operation `pull` and the build option `pull`)"
                )));
            }
            Err(e) => return Err(engine_error(&name, "build", e)),
        }
    }
    let file = dockerfile(&from, &steps.run);
    if view.call.dry_run {
        let mut detail = format!(
            "build {target} FROM {from}, {} RUN step(s){}{}",
            steps.run.len(),
            if options.no_cache { ", no cache" } else { "" },
            if options.pull { ", pull" } else { "" },
        );
        for step in &steps.run {
            detail.push_str(&format!("; RUN {}", shown(step)));
        }
        view.call.record(&name, "docker", detail);
        return Ok(String::new());
    }
    let body = context(&file)?;
    let build_options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(target.clone()),
        nocache: options.no_cache,
        pull: options.pull.then(|| "1".to_string()),
        rm: true,
        forcerm: true,
        labels: Some(labels),
        buildargs: Some(build_args),
        ..Default::default()
    };
    let progress = view.call.progress.clone();
    let mut lines = crate::text::LineSplitter::new();
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut keep = |line: &str| {
        if let Some(p) = &progress {
            p.line(line);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    };
    let mut id = None;
    let mut failure = None;
    {
        let mut stream =
            docker.build_image(build_options, None, Some(bollard::body_full(body.into())));
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream {
                        lines.feed(s.as_bytes(), &mut keep);
                    }
                    if let Some(d) = info.error_detail {
                        failure = Some(d.message.unwrap_or_default());
                    }
                    if let Some(aux) = info.aux.and_then(|a| a.id) {
                        id = Some(aux);
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    failure = Some(error);
                    break;
                }
                Err(e) => return Err(engine_error(&name, "build", e)),
            }
        }
    }
    lines.finish(&mut keep);
    if let Some(why) = failure {
        let tail: Vec<String> = tail.iter().map(|l| engine_text(l)).collect();
        return Err(WitError::Failed(format!(
            "docker build of {target} on node {name} failed: {}; last lines of the log: {}",
            engine_text(&why),
            tail.join(" | ")
        )));
    }
    match id {
        Some(id) => Ok(id),
        // Older engines only name the image in the log; ask for it.
        None => docker
            .inspect_image(&target)
            .await
            .map(|i| i.id.unwrap_or_default())
            .map_err(|e| engine_error(&name, "build", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_steps_cannot_add_instructions() {
        let f = dockerfile("a:latest", &["echo hi\nFROM evil\\".into()]);
        assert_eq!(f.lines().count(), 2, "{f}");
        assert!(
            f.contains(r#"RUN ["/bin/sh","-c","echo hi\nFROM evil\\"]"#),
            "{f}"
        );
    }
}
