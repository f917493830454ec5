//! The `roles` plugin on a three-node container cluster whose role
//! services are real init scripts (start-stop-daemon, tests/cluster):
//! status per node, a dry run that stops nothing, stop in kato's three
//! phases (data services last), start in the reverse order, one role on
//! the node that holds it, restart, and the refusals.

mod support;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::TestCluster;
use serde_json::Value;
use support::{Sandbox, refs};

/// Node `i`'s role services as `ROLE STATE` pairs, from the init scripts
/// themselves.
fn states(c: &TestCluster, i: usize, roles: &[&str]) -> Vec<String> {
    roles
        .iter()
        .map(|r| {
            let state = c
                .sh(
                    i,
                    &format!("/etc/init.d/stackato-{r} status && echo running || echo stopped"),
                )
                .trim()
                .to_string();
            format!("{r} {state}")
        })
        .collect()
}

/// A step as (node, status, message).
type StepView = (String, String, String);

/// Each phase's name and its steps.
fn phases(r: &Value) -> Vec<(String, Vec<StepView>)> {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let steps = p["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["node"].as_str().unwrap().to_string(),
                        s["status"].as_str().unwrap().to_string(),
                        s["message"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (p["name"].as_str().unwrap().to_string(), steps)
        })
        .collect()
}

const NODE1: &[&str] = &["core", "controller", "postgresql"];
const NODE2: &[&str] = &["router", "dea"];
const NODE3: &[&str] = &["dea", "filesystem"];

#[test]
fn status_stop_start_and_restart_across_three_nodes_in_katos_order() {
    let c = TestCluster::up(3, "sh-roles");
    c.remove_at_exit();
    let s = Sandbox::new();
    s.install("roles");
    let run = |args: &[&str]| {
        let mut all = vec!["roles"];
        all.extend_from_slice(args);
        s.report(&refs(&c.args(&all)))
    };
    let (n1, n2, n3) = (c.node(1), c.node(2), c.node(3));

    // status: every role of every node, as text and as data.
    let (code, r) = run(&["status"]);
    assert_eq!(code, 0, "{r:#}");
    let p = phases(&r);
    assert_eq!(p.len(), 1);
    let mut got: Vec<(String, String)> = p[0]
        .1
        .iter()
        .map(|(n, _, m)| (n.clone(), m.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                n1.clone(),
                "core running, controller running, postgresql running".to_string()
            ),
            (n2.clone(), "router running, dea running".to_string()),
            (n3.clone(), "dea running, filesystem running".to_string()),
        ]
    );
    let step = &r["phases"][0]["steps"][0];
    assert_eq!(step["data"][0]["state"], "running", "{step:#}");

    // A dry run says what it would stop and stops nothing.
    let (code, r) = run(&["stop", "--dry-run"]);
    assert_eq!(code, 0, "{r:#}");
    let p = phases(&r);
    assert!(
        p[0].1
            .iter()
            .all(|(_, _, m)| m.starts_with("would have stopped")),
        "{p:?}"
    );
    assert_eq!(
        states(&c, 1, NODE1),
        ["core running", "controller running", "postgresql running"]
    );

    // stop: the app-facing roles, then the controller and core, then the
    // data services, each phase on every node that has such roles.
    let (code, r) = run(&["stop"]);
    assert_eq!(code, 0, "{r:#}");
    let p = phases(&r);
    let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "stop roles",
            "stop the controller and core",
            "stop data services"
        ]
    );
    let mut first: Vec<(String, String)> = p[0]
        .1
        .iter()
        .map(|(n, _, m)| (n.clone(), m.clone()))
        .collect();
    first.sort();
    assert_eq!(
        first,
        vec![
            (n2.clone(), "stopped router, dea".to_string()),
            (n3.clone(), "stopped dea".to_string()),
        ]
    );
    assert_eq!(
        p[1].1,
        vec![(
            n1.clone(),
            "changed".into(),
            "stopped core, controller".into()
        )]
    );
    let mut data: Vec<(String, String)> = p[2]
        .1
        .iter()
        .map(|(n, _, m)| (n.clone(), m.clone()))
        .collect();
    data.sort();
    assert_eq!(
        data,
        vec![
            (n1.clone(), "stopped postgresql".to_string()),
            (n3.clone(), "stopped filesystem".to_string()),
        ]
    );
    assert_eq!(
        states(&c, 1, NODE1),
        ["core stopped", "controller stopped", "postgresql stopped"]
    );
    assert_eq!(states(&c, 2, NODE2), ["router stopped", "dea stopped"]);
    assert_eq!(states(&c, 3, NODE3), ["dea stopped", "filesystem stopped"]);

    // Stopping again changes nothing, and says so.
    let (code, r) = run(&["stop"]);
    assert_eq!(code, 0, "{r:#}");
    for (_, steps) in phases(&r) {
        for (_, status, message) in steps {
            assert_eq!(status, "ok");
            assert!(message.starts_with("already stopped: "), "{message}");
        }
    }

    // One role: only the node that holds it has a step.
    let (code, r) = run(&["start", "postgresql"]);
    assert_eq!(code, 0, "{r:#}");
    let p = phases(&r);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, "start data services");
    assert_eq!(
        p[0].1,
        vec![(n1.clone(), "changed".into(), "started postgresql".into())]
    );
    assert_eq!(
        states(&c, 1, NODE1),
        ["core stopped", "controller stopped", "postgresql running"]
    );

    // start: the reverse order; what already runs is left as it is.
    let (code, r) = run(&["start"]);
    assert_eq!(code, 0, "{r:#}");
    let p = phases(&r);
    let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "start data services",
            "start the controller and core",
            "start roles"
        ]
    );
    assert!(
        p[0].1.contains(&(
            n1.clone(),
            "ok".into(),
            "already started: postgresql".into()
        )),
        "{p:?}"
    );
    assert_eq!(
        states(&c, 1, NODE1),
        ["core running", "controller running", "postgresql running"]
    );
    assert_eq!(states(&c, 2, NODE2), ["router running", "dea running"]);
    assert_eq!(states(&c, 3, NODE3), ["dea running", "filesystem running"]);

    // restart: stop phases, then start phases; the service has a new PID.
    let pid = |c: &TestCluster| c.sh(2, "cat /run/stackato-dea.pid").trim().to_string();
    let before = pid(&c);
    let (code, r) = run(&["restart", "dea"]);
    assert_eq!(code, 0, "{r:#}");
    let names: Vec<String> = phases(&r).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["stop roles", "start roles"]);
    assert_ne!(pid(&c), before);
    assert_eq!(states(&c, 2, NODE2), ["router running", "dea running"]);

    // A role no selected node holds is a usage error; nothing runs.
    let out = s.fails(2, &refs(&c.args(&["run", "roles", "stop", "mysql"])));
    assert!(
        out.contains("no selected node holds the role `mysql` (the selected nodes hold: controller, core, dea, filesystem, postgresql, router)"),
        "{out}"
    );
    assert_eq!(
        states(&c, 1, NODE1),
        ["core running", "controller running", "postgresql running"]
    );
}
