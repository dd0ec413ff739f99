//! The compiled contract against the recorded snapshot `descriptors.txt`: a removed,
//! renumbered or retyped element fails (every problem listed); an unrecorded addition fails as
//! stale. With `YIMEN_UPDATE_DESCRIPTORS=1` a compatible change is recorded; an incompatible
//! one is refused all the same.

// Helpers outside #[test] functions may panic too: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;

use yimen_proto::compat::{self, Report, Snapshot};

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("descriptors.txt")
}

#[test]
fn compiled_contract_matches_the_snapshot() {
    let compiled = compat::compiled().expect("DESCRIPTOR_SET decodes");
    let path = snapshot_path();
    let update = std::env::var(compat::UPDATE_ENV).is_ok_and(|v| v == "1");

    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && update => {
            fs::write(&path, compiled.render()).expect("write descriptors.txt");
            return;
        }
        Err(e) => panic!(
            "cannot read {}: {e}; run with {}=1 to create it",
            path.display(),
            compat::UPDATE_ENV
        ),
    };
    let recorded = Snapshot::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    match compat::check(&recorded, &compiled) {
        report @ Report::Incompatible { .. } => {
            let refusal = if update {
                "\n(snapshot NOT updated: incompatible changes are never recorded)"
            } else {
                ""
            };
            panic!("{report}{refusal}");
        }
        report @ Report::Stale { .. } if !update => panic!("{report}"),
        Report::Stale { .. } | Report::Same if update => {
            fs::write(&path, compiled.render()).expect("write descriptors.txt");
        }
        Report::Stale { .. } | Report::Same => assert_eq!(
            text,
            compiled.render(),
            "{} is not in canonical form; rerun with {}=1 to rewrite it",
            path.display(),
            compat::UPDATE_ENV
        ),
    }
}
