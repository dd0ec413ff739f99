//! `yimen-node init`: the node's key and signing request are made on the box.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn init_makes_a_private_key_and_a_request_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_yimen-node"))
            .args(["init", "--id", "430421105204", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("spiffe://yimen.local/node/430421105204"),
        "{text}"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let key = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "key"))
        .unwrap();
    let csr = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "csr"))
        .unwrap();
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(csr)
            .unwrap()
            .contains("CERTIFICATE REQUEST")
    );
    // A second init never overwrites the key.
    let again = run();
    assert!(!again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("panicked"));
}
