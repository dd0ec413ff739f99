//! The core stays pure: no IO, clock or randomness crates among its normal dependencies,
//! and no clock reads in its sources (STYLE.md, "Shape of the workspace").

#![allow(
    clippy::unwrap_used,
    reason = "a test: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that do IO, read a clock or draw random numbers.
const FORBIDDEN_CRATES: [&str; 10] = [
    "tokio",
    "sled",
    "tonic",
    "prost",
    "rustls",
    "ring",
    "hyper",
    "rand",
    "getrandom",
    "iana-time-zone",
];

/// Clock reads; time is an input of the core.
const FORBIDDEN_CALLS: [&str; 6] = [
    "Instant::now",
    "SystemTime::now",
    "Utc::now",
    "Local::now",
    "now_utc",
    "Timestamp::now",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Names of crates in a `cargo tree --prefix none --format {p}` listing ("name vX.Y.Z ...").
fn crate_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

fn forbidden_in(names: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = names
        .iter()
        .filter(|n| FORBIDDEN_CRATES.contains(n))
        .map(|n| (*n).to_owned())
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn core_depends_on_nothing_that_does_io() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "yimen-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--offline",
        ])
        .current_dir(crate_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = crate_names(&stdout);
    assert!(
        names.contains(&"yimen-core"),
        "unexpected listing:\n{stdout}"
    );
    assert!(names.contains(&"chrono"), "unexpected listing:\n{stdout}");
    assert_eq!(forbidden_in(&names), Vec::<String>::new(), "{stdout}");
}

#[test]
fn the_crate_check_catches_forbidden_crates() {
    // Guards the check itself: a listing with a forbidden crate must be caught, by exact name.
    let listing = "yimen-core v0.1.0\ntokio v1.54.0\nring v0.17.14\nringbuf v0.3.0\n";
    assert_eq!(forbidden_in(&crate_names(listing)), ["ring", "tokio"]);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn clock_reads(source: &str) -> Vec<&'static str> {
    FORBIDDEN_CALLS
        .iter()
        .copied()
        .filter(|call| source.contains(call))
        .collect()
}

#[test]
fn core_sources_never_read_the_clock() {
    let mut files = Vec::new();
    rust_files(&crate_dir().join("src"), &mut files);
    assert!(files.len() >= 5, "found only {files:?}");
    let offenders: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let reads = clock_reads(&std::fs::read_to_string(f).unwrap());
            (!reads.is_empty()).then(|| format!("{}: {reads:?}", f.display()))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "clock reads in the core: {offenders:#?}"
    );
}

#[test]
fn the_clock_check_catches_each_call() {
    for call in FORBIDDEN_CALLS {
        let source = format!("fn f() {{ let t = chrono::{call}(); }}");
        assert_eq!(clock_reads(&source), [call], "{source}");
    }
    assert!(clock_reads("fn f(now: NaiveDate) {}").is_empty());
}
