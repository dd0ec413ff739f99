//! The register's side of replication on the model store: routing into outboxes, receiving
//! byte for byte with deduplication, per-case hold-back, refusal of a corrupted batch, and the
//! refill of a village whose store was replaced.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::sync::Arc;

use chrono::NaiveDate;

use yimen_core::catalog::NodeId;
use yimen_core::division::DivisionCode;
use yimen_core::link::{Cursor, WireEvent};
use yimen_node::clock::ManualClock;
use yimen_node::node::{ApplicantInput, ClerkOp, ClerkReply, Node};
use yimen_node::register::{ReceiveError, Recovery, Register};
use yimen_node::server::bootstrap;
use yimen_node::store::Epoch;
use yimen_node::store::mem::MemStore;

const VILLAGE: &str = "430421105204";
const TOWNSHIP: &str = "430421105000";
const COUNTY: &str = "430421000000";

fn id(s: &str) -> NodeId {
    DivisionCode::parse(s).unwrap()
}

fn open(node: &str, epoch: u64, recovery: Recovery) -> (Node<MemStore>, ()) {
    let (store, opened) = MemStore::new(Epoch(epoch));
    let reg = Register::open(store, opened, id(node), bootstrap(id(node)), recovery).unwrap();
    let clock = Arc::new(ManualClock::at_beijing(
        NaiveDate::from_ymd_opt(2026, 3, 2)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap(),
    ));
    (Node::new(reg, clock), ())
}

fn apply(node: &mut Node<MemStore>, helper: &str) -> String {
    let reply = node
        .handle(ClerkOp::Apply {
            operator: "测试员".to_owned(),
            item_code: "430421-MZ-0001".to_owned(),
            applicant: ApplicantInput {
                id_number: "11010519491231002X".to_owned(),
                name: "张桂英".to_owned(),
                household: VILLAGE.to_owned(),
                statuses: Vec::new(),
            },
            materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
            helper: Some((helper.to_owned(), "子女".to_owned())),
        })
        .unwrap();
    node.sync().unwrap();
    match reply {
        ClerkReply::Accepted(case, _) => case.number.to_string(),
        other => panic!("not accepted: {other:?}"),
    }
}

fn outbox(node: &Node<MemStore>, peer: &str, refill: bool) -> Vec<WireEvent> {
    node.register
        .outbox(id(peer), 1, refill, 10_000, u64::MAX)
        .unwrap()
}

fn cursor_of(events: &[WireEvent], epoch: u64) -> Cursor {
    let last = events.last().unwrap();
    Cursor {
        epoch,
        position: last.position,
        digest: last.digest,
    }
}

#[test]
fn a_villages_events_go_up_once_and_come_back_only_on_refill() {
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let numbers: Vec<String> = (0..3)
        .map(|i| apply(&mut village, &format!("代办{i}")))
        .collect();
    let up = outbox(&village, TOWNSHIP, false);
    assert_eq!(up.len(), 3, "every event of the village goes to its parent");
    assert!(up.iter().all(|e| e.id.origin == VILLAGE && e.id.epoch == 7));
    assert_eq!(
        up.iter().map(|e| e.id.seq).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "origin sequences count the village's own events"
    );

    let (mut township, _) = open(TOWNSHIP, 9, Recovery::Stop);
    let r = township
        .register
        .receive(id(VILLAGE), up.clone(), cursor_of(&up, 7))
        .unwrap();
    assert_eq!(
        (r.stored, r.duplicates, r.held, r.quarantined),
        (3, 0, 0, 0)
    );
    township.sync().unwrap();
    // Sent again (a reconnect after a lost acknowledgement): dropped by identity.
    let again = township
        .register
        .receive(id(VILLAGE), up.clone(), cursor_of(&up, 7))
        .unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 3));
    township.sync().unwrap();
    for n in &numbers {
        let case = township
            .register
            .case(&n.parse().unwrap())
            .unwrap()
            .expect("the township holds the case");
        assert_eq!(case.number.to_string(), *n);
    }
    // Up to the county (authored in the township's subtree), byte for byte.
    let to_county = outbox(&township, COUNTY, false);
    assert_eq!(to_county.len(), 3);
    for (a, b) in up.iter().zip(&to_county) {
        assert_eq!(a.bytes, b.bytes, "relayed byte for byte");
        assert_eq!(a.id, b.id);
    }
    // Not back down to the village that sent them, except when it is being refilled.
    assert!(outbox(&township, VILLAGE, false).is_empty());
    assert_eq!(outbox(&township, VILLAGE, true).len(), 3);
    assert_eq!(
        township.register.cursor(id(VILLAGE)).unwrap(),
        Some(cursor_of(&up, 7))
    );
}

#[test]
fn a_case_event_before_its_predecessor_waits_and_a_bad_digest_stores_nothing() {
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let number = apply(&mut village, "代办");
    village
        .handle(ClerkOp::Complete {
            operator: "测试员".to_owned(),
            case: number.clone(),
            result: "当场发证".to_owned(),
        })
        .unwrap();
    village.sync().unwrap();
    let up = outbox(&village, TOWNSHIP, false);
    assert_eq!(up.len(), 2);

    let (mut township, _) = open(TOWNSHIP, 9, Recovery::Stop);
    let mut corrupted = up[1].clone();
    corrupted.bytes.push(0);
    let refused = township
        .register
        .receive(id(VILLAGE), vec![corrupted], cursor_of(&up[1..], 7));
    assert!(
        matches!(refused, Err(ReceiveError::Digest { .. })),
        "{refused:?}"
    );
    assert_eq!(township.register.last_position(), 0, "nothing stored");

    // The second event alone: stored (and relayed) but its case change waits.
    let r = township
        .register
        .receive(id(VILLAGE), vec![up[1].clone()], cursor_of(&up[1..], 7))
        .unwrap();
    assert_eq!((r.stored, r.held), (1, 1));
    assert!(
        township
            .register
            .case(&number.parse().unwrap())
            .unwrap()
            .is_none()
    );
    let r = township
        .register
        .receive(id(VILLAGE), vec![up[0].clone()], cursor_of(&up[..1], 7))
        .unwrap();
    assert_eq!((r.stored, r.held), (1, 0));
    let case = township
        .register
        .case(&number.parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        case.status,
        yimen_core::case::CaseStatus::Completed,
        "the held event applied after its predecessor"
    );
}

#[test]
fn a_new_village_store_numbers_nothing_until_refilled_then_numbers_above_what_it_gets_back() {
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let earlier: Vec<String> = (0..4)
        .map(|i| apply(&mut village, &format!("代办{i}")))
        .collect();
    let up = outbox(&village, TOWNSHIP, false);
    let (mut township, _) = open(TOWNSHIP, 9, Recovery::Stop);
    township
        .register
        .receive(id(VILLAGE), up.clone(), cursor_of(&up, 7))
        .unwrap();
    township.sync().unwrap();

    // The village's box is replaced: a new store beside a configured parent.
    let (mut fresh, _) = open(
        VILLAGE,
        8,
        Recovery::Refill {
            fresh_epoch: 8,
            from_parent: true,
        },
    );
    assert!(fresh.register.refilling());
    let refused = fresh.handle(ClerkOp::Apply {
        operator: "测试员".to_owned(),
        item_code: "430421-MZ-0001".to_owned(),
        applicant: ApplicantInput::default(),
        materials: Vec::new(),
        helper: None,
    });
    assert!(
        matches!(refused, Err(yimen_node::node::ClerkError::Refilling)),
        "{refused:?}"
    );
    // The township's refill: the village's own events come back.
    let back = outbox(&township, VILLAGE, true);
    assert_eq!(back.len(), 4);
    fresh
        .register
        .receive(id(TOWNSHIP), back.clone(), cursor_of(&back, 9))
        .unwrap();
    fresh.register.refill_done().unwrap();
    fresh.sync().unwrap();
    let next = apply(&mut fresh, "代办新");
    assert!(
        earlier.iter().all(|n| *n < next),
        "{next} must be above every earlier number {earlier:?}"
    );
    // The new event has the new epoch and starts its own sequence: no id reused.
    let mine: Vec<WireEvent> = outbox(&fresh, TOWNSHIP, false);
    let newest = mine.last().unwrap();
    assert_eq!((newest.id.epoch, newest.id.seq), (8, 1));
    assert!(up.iter().all(|e| e.id != newest.id));
}
