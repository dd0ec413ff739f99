//! The checker against mutated copies of the current listing: each mutation of the snapshot
//! text must be reported, naming the element. Mutations edit lines by prefix, so the table
//! keeps working as the contract grows.

// Helpers outside #[test] functions may panic too: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use yimen_proto::compat::{self, Report, STALE_MESSAGE, Snapshot};

/// The current listing, rendered.
fn current_text() -> String {
    compat::compiled().unwrap().render()
}

/// Replaces the line starting with `prefix ` (exactly one must exist) by `f(line)`.
fn edit_line(text: &str, prefix: &str, f: impl Fn(&str) -> String) -> String {
    let wanted = format!("{prefix} ");
    let hits = text.lines().filter(|l| l.starts_with(&wanted)).count();
    assert_eq!(hits, 1, "exactly one line starts with {wanted:?}");
    text.lines()
        .map(|l| {
            if l.starts_with(&wanted) {
                f(l)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces the `index`-th whitespace-separated token of the line starting with `prefix `.
fn set_token(text: &str, prefix: &str, index: usize, value: &str) -> String {
    edit_line(text, prefix, |l| {
        let mut tokens: Vec<&str> = l.split_whitespace().collect();
        assert!(index < tokens.len(), "{l}: no token {index}");
        tokens[index] = value;
        tokens.join(" ")
    })
}

fn remove_line(text: &str, prefix: &str) -> String {
    edit_line(text, prefix, |_| String::new())
}

fn add_line(text: &str, line: &str) -> String {
    format!("{text}\n{line}\n")
}

fn report_for(snapshot_text: &str) -> Report {
    let snapshot = Snapshot::parse(snapshot_text).unwrap();
    compat::check(&snapshot, &compat::compiled().unwrap())
}

const CASE_SEQ: &str = "field yimen.v1.EventEnvelope.case_seq";
const DESCRIBE: &str = "method yimen.v1.Admin.Describe";

#[test]
fn unchanged_snapshot_is_same() {
    assert_eq!(report_for(&current_text()), Report::Same);
}

#[test]
fn each_breaking_mutation_is_reported_by_name() {
    type Mutation = fn(&str) -> String;
    let table: &[(&str, Mutation, &[&str])] = &[
        (
            "field renumbered",
            |t| set_token(t, CASE_SEQ, 2, "30"),
            &["field yimen.v1.EventEnvelope.case_seq", "renumbered", "30"],
        ),
        (
            "same number, other name",
            |t| set_token(t, CASE_SEQ, 1, "yimen.v1.EventEnvelope.case_sequence"),
            &[
                "yimen.v1.EventEnvelope.case_sequence",
                "renumbered",
                "case_seq",
            ],
        ),
        (
            "field retyped",
            |t| set_token(t, CASE_SEQ, 3, "string"),
            &["yimen.v1.EventEnvelope.case_seq", "retyped", "string"],
        ),
        (
            "field retyped to another message",
            |t| {
                set_token(
                    t,
                    "field yimen.v1.EventEnvelope.audience",
                    4,
                    ".yimen.v1.EventId",
                )
            },
            &[
                "yimen.v1.EventEnvelope.audience",
                "retyped",
                ".yimen.v1.EventId",
            ],
        ),
        (
            "cardinality changed",
            |t| set_token(t, "field yimen.v1.Audience.members", 4, "optional"),
            &["yimen.v1.Audience.members", "retyped", "label"],
        ),
        (
            "presence changed",
            |t| set_token(t, "field yimen.v1.ItemVersion.legal_basis", 4, "optional"),
            &[
                "yimen.v1.ItemVersion.legal_basis",
                "retyped",
                "proto3_optional",
            ],
        ),
        (
            "oneof membership changed",
            |t| {
                edit_line(t, "field yimen.v1.TimeLimit.working_days", |l| {
                    l.replace(" oneof=kind", "")
                })
            },
            &["yimen.v1.TimeLimit.working_days", "retyped", "oneof"],
        ),
        (
            "field removed",
            |t| add_line(t, "field yimen.v1.EventEnvelope.ghost 99 string optional"),
            &["yimen.v1.EventEnvelope.ghost", "removed"],
        ),
        (
            "message removed",
            |t| add_line(t, "message yimen.v1.Ghost"),
            &["message yimen.v1.Ghost", "removed"],
        ),
        (
            "enum value removed",
            |t| add_line(t, "value yimen.v1.EventType.EVENT_TYPE_GHOST 99"),
            &["yimen.v1.EventType.EVENT_TYPE_GHOST", "removed"],
        ),
        (
            "enum value renumbered",
            |t| {
                set_token(
                    t,
                    "value yimen.v1.EventType.EVENT_TYPE_CATALOG_REVISION",
                    2,
                    "7",
                )
            },
            &[
                "yimen.v1.EventType.EVENT_TYPE_CATALOG_REVISION",
                "renumbered",
            ],
        ),
        (
            "method retyped",
            |t| set_token(t, DESCRIBE, 4, ".yimen.v1.DescribeRequest"),
            &[
                "method yimen.v1.Admin.Describe",
                "retyped",
                "DescribeRequest",
            ],
        ),
        (
            "method streaming changed",
            |t| edit_line(t, DESCRIBE, |l| l.replace("-> ", "-> stream ")),
            &["method yimen.v1.Admin.Describe", "retyped", "stream"],
        ),
        (
            "method removed",
            |t| add_line(t, "method yimen.v1.Admin.Ghost .yimen.v1.A -> .yimen.v1.B"),
            &["method yimen.v1.Admin.Ghost", "removed"],
        ),
        (
            "service removed",
            |t| add_line(t, "service yimen.v1.Ghost"),
            &["service yimen.v1.Ghost", "removed"],
        ),
    ];
    for (what, mutate, needles) in table {
        let report = report_for(&mutate(&current_text()));
        let Report::Incompatible { problems } = &report else {
            panic!("{what}: expected incompatible, got {report}");
        };
        assert_eq!(problems.len(), 1, "{what}: {report}");
        let text = report.to_string();
        for needle in *needles {
            assert!(text.contains(needle), "{what}: {needle:?} not in\n{text}");
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = set_token(&current_text(), CASE_SEQ, 2, "30");
    let text = set_token(&text, DESCRIBE, 4, ".yimen.v1.DescribeRequest");
    let text = add_line(&text, "message yimen.v1.Ghost");
    let Report::Incompatible { problems } = report_for(&text) else {
        panic!("expected incompatible");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn an_addition_is_compatible_but_stale() {
    // The snapshot has one field fewer than the compiled set: the compiled set adds it.
    let text = remove_line(&current_text(), "field yimen.v1.EventEnvelope.author");
    let report = report_for(&text);
    let Report::Stale { additions } = &report else {
        panic!("expected stale, got {report}");
    };
    assert_eq!(
        additions,
        &["field yimen.v1.EventEnvelope.author 9 string optional"]
    );
    assert!(report.is_compatible());
    let message = report.to_string();
    assert!(message.starts_with(STALE_MESSAGE), "{message}");
    assert!(message.contains("compatible, snapshot stale"));
    assert!(message.contains("yimen.v1.EventEnvelope.author"));
}

#[test]
fn a_new_message_is_stale_with_all_its_lines() {
    let mut text = current_text();
    for prefix in [
        "message yimen.v1.TimeLimit",
        "oneof yimen.v1.TimeLimit.kind",
        "field yimen.v1.TimeLimit.immediate",
        "field yimen.v1.TimeLimit.working_days",
    ] {
        text = text
            .lines()
            .filter(|l| *l != prefix && !l.starts_with(&format!("{prefix} ")))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let Report::Stale { additions } = report_for(&text) else {
        panic!("expected stale");
    };
    assert_eq!(additions.len(), 4, "{additions:?}");
}
