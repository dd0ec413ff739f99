//! The demo, as a newcomer runs it, checked from the stores it leaves: `yimen-hub demo --keep
//! DIR --json`, then every kept store read through the node library's `inspect` (the code
//! `yimen-node inspect` runs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn the_demo_runs_and_every_store_agrees_with_it() {
    let keep = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
        .args(["demo", "--json", "--keep"])
        .arg(keep.path())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        elapsed < Duration::from_secs(180),
        "the demo took {elapsed:?}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Every kept store, read independently.
    let dumps = yimen_hub::demo::inspect_kept(keep.path()).unwrap();
    assert_eq!(dumps.len(), 6);
    // A node's kept folder is read too (its store is `store/` inside it).
    for id in dumps.keys().copied() {
        let from_folder = yimen_node::register::inspect(&keep.path().join(id)).unwrap();
        assert_eq!(from_folder["cases"], dumps[id]["cases"], "{id}");
    }
    let not_a_store = yimen_node::register::inspect(keep.path()).unwrap_err();
    assert!(
        matches!(not_a_store, yimen_node::register::InspectError::Missing(_)),
        "{not_a_store}"
    );

    // The JSON document reports what the stores hold.
    for id in dumps.keys().copied() {
        let reported: BTreeSet<String> = doc["nodes"][id]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["number"].as_str().unwrap().to_owned())
            .collect();
        let stored: BTreeSet<String> = dumps[id]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["number"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(reported, stored, "{id}");
    }

    // DESIGN.md's invariants at every store (least knowledge, one identity per case
    // sequence, agreement at the same sequence), by the demo's own checker.
    let problems = yimen_hub::demo::invariant_problems(&dumps);
    assert!(problems.is_empty(), "{problems:#?}");
    // The checker is not vacuous: a village holding another village's case is caught.
    let mut leaked = dumps.clone();
    let foreign = dumps["430421105200"]["cases"][0].clone();
    leaked.get_mut("430421105204").unwrap()["cases"]
        .as_array_mut()
        .unwrap()
        .push(foreign);
    assert!(
        yimen_hub::demo::invariant_problems(&leaked)
            .iter()
            .any(|p| p.contains("least knowledge")),
        "the checker must catch a leak"
    );

    // The stories' cases are where the demo says they are.
    let case_at = |node: &str, number: &str| -> Value {
        dumps[node]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["number"] == number)
            .cloned()
            .unwrap_or_else(|| panic!("{number} not at {node}"))
    };
    let senior = doc["flows"]["senior_card"]["number"].as_str().unwrap();
    assert_eq!(case_at("430421105204", senior)["status"], "completed");
    for flow in ["medical_aid", "handle_anywhere"] {
        let number = doc["flows"][flow]["number"].as_str().unwrap();
        let village = doc["flows"][flow]["accepted_at"].as_str().unwrap();
        let c = case_at(village, number);
        assert_eq!(c["status"], "completed", "{flow}: {c}");
        assert_eq!(c["custodian"], village, "{flow}: {c}");
    }
}
