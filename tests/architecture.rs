//! Keeps the dependency direction of the workspace: the model knows no HTTP framework, no SQL and no
//! OpenAPI; the controllers never reach around the model into persistence; persistence serves no HTTP.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Every package reachable from `package` through normal (non-dev) dependencies.
fn normal_dependencies(metadata: &serde_json::Value, package: &str) -> BTreeSet<String> {
    let packages = metadata["packages"].as_array().unwrap();
    let name_of: HashMap<&str, &str> = packages
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("package {package} not in the workspace"))["id"]
        .as_str()
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(name_of[dep_id].to_owned()) {
                stack.push(dep_id);
            }
        }
    }
    seen
}

#[test]
fn layers_depend_only_inwards() {
    let output = Command::new(env!("CARGO"))
        // Not offline: metadata wants every platform's crates, which a build for this one never fetched.
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let forbidden: [(&str, &[&str]); 3] = [
        (
            "ipfs-stream-model",
            &[
                "actix-web",
                "actix-ws",
                "sqlx",
                "utoipa",
                "reqwest",
                "ipfs-stream-persistence",
                "ipfs-stream-controllers",
            ],
        ),
        ("ipfs-stream-controllers", &["ipfs-stream-persistence", "sqlx"]),
        (
            "ipfs-stream-persistence",
            &["actix-web", "actix-ws", "utoipa", "ipfs-stream-controllers"],
        ),
    ];
    for (package, banned) in forbidden {
        let deps = normal_dependencies(&metadata, package);
        for name in banned {
            assert!(
                !deps.contains(*name),
                "{package} must not depend on {name}, even indirectly"
            );
        }
    }
    // The rule has teeth: the server does see everything.
    let server = normal_dependencies(&metadata, "ipfs-stream");
    assert!(server.contains("sqlx") && server.contains("actix-web") && server.contains("ipfs-stream-model"));
}
