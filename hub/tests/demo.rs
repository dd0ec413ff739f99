//! The demo, as a newcomer runs it, checked from the stores it leaves: `yimen-hub demo --keep
//! DIR --json`, then every kept store read through the node library's `inspect` (the code
//! `yimen-node inspect` runs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const VILLAGES: [&str; 3] = ["430421105204", "430421105200", "430421100201"];
const ALL: [&str; 6] = [
    "430421000000",
    "430421105000",
    "430421100000",
    "430421105204",
    "430421105200",
    "430421100201",
];

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
    let dumps: BTreeMap<&str, Value> = ALL
        .iter()
        .map(|id| {
            let store = keep.path().join(id).join("store");
            (*id, yimen_node::register::inspect(&store).unwrap())
        })
        .collect();

    // The JSON document reports what the stores hold.
    for id in ALL {
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

    // Each case number at most once per store, and only in stores of its audience (or of a
    // hub above an audience member, which supervises its subtree).
    for (id, d) in &dumps {
        let mut seen = BTreeSet::new();
        for c in d["cases"].as_array().unwrap() {
            let number = c["number"].as_str().unwrap();
            assert!(seen.insert(number.to_owned()), "{number} twice at {id}");
            let audience: Vec<&str> = c["audience"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            if VILLAGES.contains(id) {
                assert!(
                    audience.contains(id),
                    "least knowledge: village {id} holds {number} of audience {audience:?}"
                );
            }
        }
        // No event twice at a store, by identity, except history copies made for a new
        // audience member (same identity, later position): a case's sequence is held once.
        let mut by_case: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
        for e in d["events"].as_array().unwrap() {
            if let Some(case) = e["case"].as_str().filter(|c| !c.is_empty()) {
                let id = format!("{}/{}/{}", e["origin"], e["epoch"], e["seq"]);
                by_case
                    .entry((case.to_owned(), e["case_seq"].as_u64().unwrap()))
                    .or_default()
                    .insert(id);
            }
        }
        for ((case, seq), ids) in by_case {
            assert_eq!(
                ids.len(),
                1,
                "{case} #{seq} has {} identities at {id}",
                ids.len()
            );
        }
    }

    // Stores holding a case at the same case sequence agree on its status and custodian.
    let mut views: BTreeMap<(String, u64), BTreeSet<(String, String)>> = BTreeMap::new();
    for d in dumps.values() {
        for c in d["cases"].as_array().unwrap() {
            views
                .entry((
                    c["number"].as_str().unwrap().to_owned(),
                    c["case_seq"].as_u64().unwrap(),
                ))
                .or_default()
                .insert((
                    c["status"].as_str().unwrap().to_owned(),
                    c["custodian"].as_str().unwrap().to_owned(),
                ));
        }
    }
    for ((number, seq), v) in views {
        assert_eq!(v.len(), 1, "{number} at #{seq}: {v:?}");
    }

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
