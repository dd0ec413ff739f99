//! The deployment's PKI from the command line, as an operator runs it: the county makes the
//! CA, each box makes its own key and signing request, the county signs and revokes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::path::Path;
use std::process::{Command, Output};

fn hub(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(out: Output, needle: &str) {
    assert!(!out.status.success(), "expected a refusal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn ca_keys_on_the_box_signing_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(hub(&["pki", "init", "--dir", "ca"], d));
    refused(hub(&["pki", "init", "--dir", "ca"], d), "ca");

    // The township hub and the 医保局 station make their keys where they live.
    let township = ok(hub(
        &["init", "--id", "430421105000", "--dir", "township"],
        d,
    ));
    assert!(
        township.contains("spiffe://yimen.local/node/430421105000"),
        "{township}"
    );
    let station = ok(hub(
        &["init", "--station", "430421000000/ybj", "--dir", "station"],
        d,
    ));
    assert!(
        station.contains("spiffe://yimen.local/station/430421000000/ybj"),
        "{station}"
    );

    let csr = |dir: &str| {
        std::fs::read_dir(d.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "csr"))
            .unwrap()
    };
    let township_csr = csr("township");
    let signed = ok(hub(
        &[
            "pki",
            "sign",
            "--ca",
            "ca",
            "--csr",
            township_csr.to_str().unwrap(),
            "--out",
            "township.crt",
        ],
        d,
    ));
    assert!(signed.contains("430421105000"), "{signed}");
    assert!(d.join("township.crt").exists());

    // Revoking by the bare node id updates the revocation list.
    let revoked = ok(hub(&["pki", "revoke", "--ca", "ca", "430421105000"], d));
    assert!(revoked.contains("revoked serial"), "{revoked}");
    refused(
        hub(&["pki", "revoke", "--ca", "ca", "430421105000"], d),
        "430421105000",
    );
}

#[test]
fn clear_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    refused(
        hub(&["init", "--id", "430421000204", "--dir", "x"], d),
        "430421000204",
    );
    refused(
        hub(&["init", "--station", "430421105000/ybj", "--dir", "x"], d),
        "county",
    );
    refused(hub(&["init", "--dir", "x"], d), "--id");
    std::fs::write(d.join("some.csr"), "not a request").unwrap();
    refused(
        hub(
            &[
                "pki", "sign", "--ca", "missing", "--csr", "some.csr", "--out", "x.crt",
            ],
            d,
        ),
        "missing",
    );
}
