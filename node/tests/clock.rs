//! Time in the shell comes from one injected clock, in Beijing time; case numbering holds
//! across restarts: a clock set back a day is refused, and numbers never repeat.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::sync::Arc;

use chrono::NaiveDateTime;
use yimen_core::catalog::NodeId;
use yimen_core::division::DivisionCode;
use yimen_node::clock::ManualClock;
use yimen_node::node::{ApplicantInput, ClerkError, ClerkOp, ClerkReply, NodeHandle};
use yimen_node::server;

fn beijing(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn id() -> NodeId {
    DivisionCode::parse("430421105204").unwrap()
}

fn senior() -> ClerkOp {
    ClerkOp::Apply {
        operator: "王芳".to_owned(),
        item_code: "430421-MZ-0001".to_owned(),
        applicant: ApplicantInput {
            id_number: "11010519491231002X".to_owned(),
            name: "张桂英".to_owned(),
            household: "430421105204".to_owned(),
            statuses: Vec::new(),
        },
        materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
        helper: None,
    }
}

async fn accept(node: &NodeHandle) -> Result<String, ClerkError> {
    match node.call(senior()).await? {
        ClerkReply::Accepted(case, _) => Ok(case.number.to_string()),
        other => panic!("expected an acceptance, got {other:?}"),
    }
}

/// Opens the node on `dir` with `clock`, runs `f`, and shuts it down (the thread joins).
async fn with_node<T>(
    dir: &std::path::Path,
    clock: &ManualClock,
    f: impl AsyncFnOnce(&NodeHandle) -> T,
) -> T {
    let (handle, thread) = server::open_at(
        dir,
        id(),
        4 << 20,
        Arc::new(clock.clone()),
        yimen_node::register::Recovery::Stop,
    )
    .unwrap();
    let out = f(&handle).await;
    drop(handle);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn numbering_refuses_a_clock_set_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // 23:30 UTC on the 24th is already the 25th in Beijing.
    let clock = ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-09-24T16:30:00Z")
            .unwrap()
            .to_utc(),
    );
    let first = with_node(&store, &clock, async |n| {
        vec![accept(n).await.unwrap(), accept(n).await.unwrap()]
    })
    .await;
    assert_eq!(
        first,
        ["430421105204202609250001", "430421105204202609250002"]
    );

    // Restarted with the clock a day behind: numbering refuses, nothing is written.
    clock.set(ManualClock::at_beijing(beijing("2026-09-24 10:00")).now_utc());
    let refused = with_node(&store, &clock, async |n| accept(n).await).await;
    match refused {
        Err(ClerkError::Numbering(e)) => {
            assert!(e.reason_zh().contains("时钟"), "{}", e.reason_zh());
        }
        other => panic!("expected a numbering refusal, got {other:?}"),
    }

    // Back on time: numbering resumes above every earlier number.
    clock.set(ManualClock::at_beijing(beijing("2026-09-25 11:00")).now_utc());
    let next = with_node(&store, &clock, async |n| accept(n).await.unwrap()).await;
    assert_eq!(next, "430421105204202609250003");
}
