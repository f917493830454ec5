//! The inventory as an operator starts one: `inventory init` writes the
//! README's commented example, `inventory check` reads it back node by
//! node or names what is wrong; without an inventory, `node local` gives
//! this machine its roles, and runs and `--nodes role:R` follow them.

mod support;

use support::{Sandbox, only_step};

/// `stackhost ARGS` with the local user pinned, so lines naming it are exact.
fn run_as_op(s: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = s.run_env(args, &[("USER", "op")]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_the_readme_example_and_check_lists_its_nodes() {
    let s = Sandbox::new();
    let default = s.home.path().join("config/inventory.toml");
    let out = s.ok(&["inventory", "init"]);
    assert_eq!(
        out,
        format!(
            "wrote an example inventory to {}\nRuns now take their nodes from it: replace the \
             example nodes with your cluster's, then check it with `stackhost inventory check`.\n",
            default.display()
        )
    );
    let written = std::fs::read_to_string(&default).expect("init wrote the default inventory");
    let readme = std::fs::read_to_string(support::repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```toml\n{written}```\n")),
        "README.md shows a different example than `inventory init` writes:\n{written}"
    );

    let (code, stdout, stderr) = run_as_op(&s, &["inventory", "check"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "NODE   ADDRESS         USER      ROLES                           HOSTNAME\n\
             core   this machine    op        core,controller,primary,router  core-1.example.internal\n\
             db     10.0.0.11:22    stackato  postgresql,filesystem           db-1.example.internal\n\
             dea-1  10.0.0.21:22    stackato  dea                             -\n\
             dea-2  10.0.0.22:2222  root      dea                             -\n\
             {}: valid, 4 nodes\n",
            default.display()
        )
    );

    // Runs read it too.
    assert_eq!(
        s.ok(&["node", "list"]),
        "127.0.0.1 core controller primary router (core)\n\
         10.0.0.11 postgresql filesystem (db)\n\
         10.0.0.21 dea (dea-1)\n\
         10.0.0.22 dea (dea-2)\n"
    );

    // --out writes elsewhere, and check takes that file.
    let out_file = s.home.path().join("elsewhere/cluster.toml");
    let out_arg = out_file.to_str().unwrap();
    let out = s.ok(&["inventory", "init", "--out", out_arg]);
    assert_eq!(
        out,
        format!(
            "wrote an example inventory to {out_arg}\nReplace the example nodes with your \
             cluster's, check it with `stackhost inventory check {out_arg}`, and use it with \
             --inventory {out_arg}.\n"
        )
    );
    let (code, stdout, _) = run_as_op(&s, &["inventory", "check", out_arg]);
    assert_eq!(code, 0);
    assert!(
        stdout.ends_with(&format!("{out_arg}: valid, 4 nodes\n")),
        "{stdout}"
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let s = Sandbox::new();
    let path = s.home.path().join("mine.toml");
    let mine = "[[node]]\nname = \"dea-1\"\naddress = \"10.0.0.21\"\nroles = [\"dea\"]\n";
    std::fs::write(&path, mine).unwrap();
    let p = path.to_str().unwrap();
    let err = s.fails(1, &["inventory", "init", "--out", p]);
    assert_eq!(
        err,
        format!(
            "error: {p} already exists; not overwriting it (--force replaces it with the \
             example)\n"
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), mine, "untouched");

    s.ok(&["inventory", "init", "--out", p, "--force"]);
    let (code, stdout, _) = run_as_op(&s, &["inventory", "check", p]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("\ndea-1  10.0.0.21:22    stackato  dea                             -\n"),
        "{stdout}"
    );
}

#[test]
fn check_names_what_is_wrong() {
    let s = Sandbox::new();
    let path = s.home.path().join("bad.toml");
    let p = path.to_str().unwrap();
    for (text, problem) in [
        (
            "[[node]]\nname = \"dea-1\"\nroles = [\"dea\"]\n",
            "node `dea-1` has no address (or `local = true`)",
        ),
        (
            "[[node]]\nname = \"db\"\naddress = \"10.0.0.11\"\nroles = [\"postgresql,dea\"]\n",
            "node `db` has a malformed role `postgresql,dea` (a role is not empty and holds no \
             `,`, `:` or space)",
        ),
        (
            "[[node]]\nname = \"core\"\nlocal = true\nhostname = \"core_1\"\n",
            "node `core` has a malformed hostname `core_1` (letters, digits, `-` and `.`, at \
             most 253 characters)",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = s.fails(1, &["inventory", "check", p]);
        assert_eq!(
            err,
            format!("error: the inventory {p} is not valid: {problem}\n"),
            "{text}"
        );
    }

    // A TOML error names the field, with its line.
    std::fs::write(
        &path,
        "[[node]]\nname = \"a\"\nlocal = true\nrole = [\"dea\"]\n",
    )
    .unwrap();
    let err = s.fails(1, &["inventory", "check", p]);
    assert!(
        err.starts_with(&format!(
            "error: the inventory {p} is not valid: TOML parse error at line 4"
        )),
        "{err}"
    );
    assert!(
        err.contains("unknown field `role`, expected one of"),
        "{err}"
    );

    // No inventory at all: say what that means and how to write one.
    let err = s.fails(1, &["inventory", "check"]);
    assert_eq!(
        err,
        format!(
            "error: there is no inventory at {}: runs work on this machine alone (`stackhost \
             node list` shows it); write one with `stackhost inventory init`\n",
            s.home.path().join("config/inventory.toml").display()
        )
    );
}

#[test]
fn local_node_roles_without_an_inventory() {
    let s = Sandbox::new();
    s.install("hello");
    assert_eq!(s.ok(&["node", "list"]), "127.0.0.1 core (local)\n");
    assert_eq!(
        s.ok(&["node", "local"]),
        "local node roles: core (the default; set others with `stackhost node local --roles \
         ROLE,...`)\n"
    );
    let err = s.fails(1, &["run", "hello", "info", "--nodes", "role:postgresql"]);
    assert!(
        err.contains("node selector `role:postgresql` matches no node (nodes: local)"),
        "{err}"
    );

    let file = s.home.path().join("config/local-node.toml");
    let out = s.ok(&[
        "node",
        "local",
        "--roles",
        "core,controller,postgresql,filesystem",
    ]);
    assert_eq!(
        out,
        format!(
            "local node roles: core,controller,postgresql,filesystem (saved in {})\n",
            file.display()
        )
    );
    assert_eq!(
        s.ok(&["node", "local"]),
        format!(
            "local node roles: core,controller,postgresql,filesystem (from {})\n",
            file.display()
        )
    );
    assert_eq!(
        s.ok(&["node", "list"]),
        "127.0.0.1 core controller postgresql filesystem (local)\n"
    );

    // A run still works on the local node, and picks it by a stored role.
    for args in [
        &["hello", "info"][..],
        &["hello", "info", "--nodes", "role:postgresql"][..],
    ] {
        let (code, report) = s.report(args);
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report["phases"][0]["steps"][0]["node"], "local");
        let (status, message) = only_step(&report);
        assert_eq!(status, "ok", "{message}");
    }

    // A malformed role is refused and leaves the stored roles alone.
    for (roles, problem) in [
        (
            "core, dea",
            "malformed role ` dea`: a role is not empty and holds no `,`, `:` or space",
        ),
        (
            "core,",
            "malformed role ``: a role is not empty and holds no `,`, `:` or space",
        ),
        (
            "role:dea",
            "malformed role `role:dea`: a role is not empty and holds no `,`, `:` or space",
        ),
        (
            "",
            "no role given; to go back to the default `core`, use --reset",
        ),
    ] {
        let err = s.fails(1, &["node", "local", "--roles", roles]);
        assert_eq!(err, format!("error: {problem}\n"), "--roles {roles:?}");
    }
    assert_eq!(
        s.ok(&["node", "list"]),
        "127.0.0.1 core controller postgresql filesystem (local)\n"
    );

    // An inventory replaces the local node; `node local` says so.
    s.ok(&["inventory", "init"]);
    let out = s.run(&["node", "local"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "note: runs take their nodes from the inventory {}; these roles apply only when \
             there is none\n",
            s.home.path().join("config/inventory.toml").display()
        )
    );
    std::fs::remove_file(s.home.path().join("config/inventory.toml")).unwrap();

    // --reset goes back to `core`.
    assert_eq!(
        s.ok(&["node", "local", "--reset"]),
        format!(
            "local node roles: core (the default; removed {})\n",
            file.display()
        )
    );
    assert!(!file.exists());
    assert_eq!(s.ok(&["node", "list"]), "127.0.0.1 core (local)\n");
    assert_eq!(
        s.ok(&["node", "local", "--reset"]),
        "local node roles: core (the default; none were stored)\n"
    );
    let err = s.fails(2, &["node", "local", "--roles", "dea", "--reset"]);
    assert!(
        err.contains("error: the argument '--roles <ROLE,...>' cannot be used with '--reset'"),
        "{err}"
    );
}

#[test]
fn help_explains_with_examples() {
    let s = Sandbox::new();
    let help = s.ok(&["inventory", "--help"]);
    assert!(
        help.starts_with("Write an example inventory, or check one and list its nodes\n"),
        "{help}"
    );
    let init = s.ok(&["inventory", "init", "--help"]);
    assert!(
        init.starts_with("Write a commented example inventory to edit into your cluster's\n"),
        "{init}"
    );
    assert!(
        init.contains(
            "Examples:\n  stackhost inventory init\n  stackhost inventory init --out cluster.toml\n"
        ),
        "{init}"
    );
    let check = s.ok(&["inventory", "check", "--help"]);
    assert!(
        check.contains(
            "Examples:\n  stackhost inventory check\n  stackhost inventory check cluster.toml\n"
        ),
        "{check}"
    );
    let local = s.ok(&["node", "local", "--help"]);
    assert!(
        local.contains(
            "Examples:\n  stackhost node local\n  stackhost node local --roles \
             core,controller,postgresql,filesystem\n  stackhost node local --reset\n"
        ),
        "{local}"
    );
}
