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
use yimen_node::node::{ApplicantInput, ClerkOp, ClerkReply, Node, RelayKind};
use yimen_node::register::{ReceiveError, Received, Recovery, Register};
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

/// What a node sends `peer` and the peer makes of it, through the node thread's link
/// operation (receipts included).
fn deliver(
    from: &mut Node<MemStore>,
    from_id: &str,
    to: &mut Node<MemStore>,
    to_id: &str,
) -> Received {
    use yimen_node::node::{LinkOp, LinkReply};
    let after = to
        .register
        .cursor(id(from_id))
        .unwrap()
        .map_or(0, |c| c.position);
    let events = from
        .register
        .outbox(id(to_id), after + 1, false, 10_000, u64::MAX)
        .unwrap();
    if events.is_empty() {
        return Received::default();
    }
    let cursor = cursor_of(&events, from.register.epoch.0);
    let reply = to
        .handle_link(LinkOp::Receive {
            peer: id(from_id),
            events,
            cursor,
        })
        .unwrap();
    let LinkReply::Received(received) = reply else {
        panic!("not received: {reply:?}");
    };
    to.sync().unwrap();
    received
}

/// 同城通办: a village of 演陂镇 accepts 医疗救助 for a resident of 西渡镇 and forwards it to
/// 西渡镇 for review. The case goes up to the county (the common ancestor) and down to 西渡镇,
/// which never saw its beginning: the county copies the history to it, 西渡镇 signs for the
/// case (签收) and the receipt travels back to the accepting village.
#[test]
fn a_handoff_across_townships_carries_the_history_and_the_receipt_comes_back() {
    const T1: &str = TOWNSHIP;
    const T2: &str = "430421100000";
    const RESIDENT_VILLAGE: &str = "430421100201";
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let (mut t1, _) = open(T1, 8, Recovery::Stop);
    let (mut county, _) = open(COUNTY, 9, Recovery::Stop);
    let (mut t2, _) = open(T2, 10, Recovery::Stop);

    let number = forwarded_medical_aid(&mut village, RESIDENT_VILLAGE);
    let case: yimen_core::numbering::CaseNumber = number.parse().unwrap();
    let forwarded = village.register.case(&case).unwrap().unwrap();
    assert_eq!(
        forwarded.custodian.node.to_string(),
        T2,
        "routed to the resident's township"
    );

    deliver(&mut village, VILLAGE, &mut t1, T1);
    deliver(&mut t1, T1, &mut county, COUNTY);
    // 西渡镇 gets the forward and, copied by the county, the two events before it.
    let to_t2 = outbox(&county, T2, false);
    assert_eq!(to_t2.len(), 3, "the forward and the case's history");
    deliver(&mut county, COUNTY, &mut t2, T2);
    let at_t2 = t2
        .register
        .case(&case)
        .unwrap()
        .expect("西渡镇 holds the case");
    assert!(at_t2.received, "西渡镇 signed for the case");
    assert_eq!(at_t2.custodian.node.to_string(), T2);
    // The receipt travels back: 西渡镇 → county → 演陂镇 → the village.
    deliver(&mut t2, T2, &mut county, COUNTY);
    deliver(&mut county, COUNTY, &mut t1, T1);
    deliver(&mut t1, T1, &mut village, VILLAGE);
    let back = village.register.case(&case).unwrap().unwrap();
    assert!(back.received, "the accepting village sees the receipt");
    assert_eq!(back.last_seq(), 4);
    // Least knowledge: 演陂镇's other villages hold nothing of it.
    assert!(outbox(&t1, "430421105200", false).is_empty());
}

/// A hub that speaks payload schema version 1 relays, stores and serves byte for byte the
/// events of a newer schema its peers use, and routes events of a type it does not know by
/// their envelope alone; neither changes its case state.
#[test]
fn newer_schemas_and_unknown_types_are_relayed_byte_for_byte_by_envelope() {
    use prost::Message;
    use yimen_proto::pb;
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let number = apply(&mut village, "代办");
    let known = outbox(&village, TOWNSHIP, false);
    let mut events = known.clone();
    // Two events a newer village would write: a case event of schema version 2, and an
    // event of a type this build does not know (150: a future case-event kind).
    for (seq, (kind, schema)) in [(2u64, (100, 2u32)), (3, (150, 1))] {
        let wire = pb::Event {
            envelope: Some(pb::EventEnvelope {
                id: Some(pb::EventId {
                    origin: VILLAGE.to_owned(),
                    epoch: 7,
                    seq,
                }),
                case_id: number.clone(),
                case_seq: seq,
                r#type: kind,
                schema_version: schema,
                audience: Some(pb::Audience {
                    subtree: String::new(),
                    members: vec![VILLAGE.to_owned(), TOWNSHIP.to_owned()],
                }),
                signature: None,
                materials: Vec::new(),
                author: "新版本".to_owned(),
            }),
            payload: vec![0xde, 0xad, 0xbe, 0xef, seq as u8],
        }
        .encode_to_vec();
        events.push(WireEvent {
            id: yimen_core::link::EventId {
                origin: VILLAGE.to_owned(),
                epoch: 7,
                seq,
            },
            position: 10 + seq,
            digest: *blake3::hash(&wire).as_bytes(),
            bytes: wire,
        });
    }
    let (mut township, _) = open(TOWNSHIP, 9, Recovery::Stop);
    let r = township
        .register
        .receive(id(VILLAGE), events.clone(), cursor_of(&events, 7))
        .unwrap();
    assert_eq!((r.stored, r.quarantined), (3, 0), "{r:?}");
    township.sync().unwrap();
    let case = township
        .register
        .case(&number.parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        case.last_seq(),
        1,
        "events it cannot read change nothing here"
    );
    // Up to the county, byte for byte, by the envelope alone.
    let relayed = outbox(&township, COUNTY, false);
    assert_eq!(relayed.len(), 3);
    for (sent, got) in events.iter().zip(&relayed) {
        assert_eq!(sent.bytes, got.bytes);
        assert_eq!(sent.id, got.id);
        assert_eq!(sent.digest, got.digest);
    }
}

/// A county operator at the county's own desk.
/// `operator` at the desk of `node` (no department).
fn desk(node: &str, operator: &str) -> yimen_node::node::DeskActor {
    yimen_node::node::DeskActor {
        custodian: yimen_node::node::DeskActor::custodian_of(id(node), None),
        operator: operator.to_owned(),
    }
}

fn county_desk() -> yimen_node::node::DeskActor {
    desk(COUNTY, "县级管理员")
}

/// A 医疗救助 case accepted at the village for a resident of `household`, pre-checked and
/// forwarded to the competent township (同城通办 when `household` is another township's).
fn forwarded_medical_aid(village: &mut Node<MemStore>, household: &str) -> String {
    let number = accepted_medical_aid(village, household);
    precheck_and_forward(village, &number);
    number
}

/// A 医疗救助 case accepted at the village for a 低保 resident of `household`.
fn accepted_medical_aid(village: &mut Node<MemStore>, household: &str) -> String {
    let reply = village
        .handle(ClerkOp::Apply {
            operator: "测试员".to_owned(),
            item_code: "430421-YB-0001".to_owned(),
            applicant: ApplicantInput {
                id_number: "11010519491231002X".to_owned(),
                name: "张桂英".to_owned(),
                household: household.to_owned(),
                statuses: vec!["dibao".to_owned()],
            },
            materials: vec!["zyfp".to_owned(), "xnhpj".to_owned(), "dbz".to_owned()],
            helper: None,
        })
        .unwrap();
    village.sync().unwrap();
    match reply {
        ClerkReply::Accepted(case, _) => case.number.to_string(),
        other => panic!("not accepted: {other:?}"),
    }
}

/// The village's 初审 and 转报 to the competent township.
fn precheck_and_forward(village: &mut Node<MemStore>, number: &str) {
    for op in [
        ClerkOp::Precheck {
            operator: "测试员".to_owned(),
            case: number.to_owned(),
            opinion: "材料齐全".to_owned(),
        },
        ClerkOp::Forward {
            operator: "测试员".to_owned(),
            case: number.to_owned(),
            to: None,
            reason: "转乡镇审核".to_owned(),
        },
    ] {
        village.handle(op).unwrap();
    }
    village.sync().unwrap();
}

/// DESIGN.md "When an event is refused": a case whose event fails a domain check at the
/// township (here its item version is unknown there) is quarantined, its events are held
/// rather than dropped, and an alarm goes up to the county and to the accepting village,
/// which stops acting on it. Once the cause is gone, the county's release applies the held
/// events (the township signs for the case); two events claiming one case sequence quarantine
/// the case too, and the county's void is final.
/// `event` under another identity (`edit` changes it, in the envelope too) at `position` of
/// its sender's stream: its bytes and digest made again.
fn rewritten(
    event: &WireEvent,
    position: u64,
    edit: impl Fn(&mut yimen_core::link::EventId),
) -> WireEvent {
    let mut wire =
        <yimen_proto::pb::Event as prost::Message>::decode(event.bytes.as_slice()).unwrap();
    let mut id = event.id.clone();
    edit(&mut id);
    let envelope_id = wire.envelope.as_mut().unwrap().id.as_mut().unwrap();
    envelope_id.origin = id.origin.clone();
    envelope_id.seq = id.seq;
    let bytes = prost::Message::encode_to_vec(&wire);
    WireEvent {
        id,
        position,
        digest: *blake3::hash(&bytes).as_bytes(),
        bytes,
    }
}

/// `event` alone received by `to` from `from` (sender epoch `epoch`).
fn receive_one(
    to: &mut Node<MemStore>,
    from: &str,
    event: WireEvent,
    epoch: u64,
) -> yimen_node::node::LinkReply {
    let cursor = cursor_of(std::slice::from_ref(&event), epoch);
    to.handle_link(yimen_node::node::LinkOp::Receive {
        peer: id(from),
        events: vec![event],
        cursor,
    })
    .unwrap()
}

#[test]
fn a_quarantined_case_raises_an_alarm_holds_its_events_and_the_county_decides() {
    use yimen_node::node::{ClerkError, DeskOp, DeskReply};
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let (mut county, _) = open(COUNTY, 9, Recovery::Stop);
    // A township whose catalog lacks 医疗救助 (a defect: it should have come down).
    let (store, opened) = MemStore::new(Epoch(8));
    let mut boot = bootstrap(id(TOWNSHIP));
    boot.catalog = yimen_core::catalog::Catalog::default();
    let senior = yimen_core::sample::senior_card(Default::default());
    boot.catalog.apply(senior.owner, senior).unwrap();
    let reg = Register::open(store, opened, id(TOWNSHIP), boot, Recovery::Stop).unwrap();
    let mut township = Node::new(
        reg,
        Arc::new(ManualClock::at_beijing(
            NaiveDate::from_ymd_opt(2026, 3, 2)
                .unwrap()
                .and_hms_opt(9, 0, 0)
                .unwrap(),
        )),
    );

    let number = forwarded_medical_aid(&mut village, VILLAGE);
    let case: yimen_core::numbering::CaseNumber = number.parse().unwrap();
    deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    let quarantined = township.register.quarantined(10).unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].0, number);
    assert!(
        quarantined[0].1.contains("item version unknown here"),
        "{quarantined:?}"
    );
    assert!(township.register.case(&case).unwrap().is_none());
    // The alarm: the township's own event, up to the county and down to the village.
    let up = outbox(&township, COUNTY, false);
    assert_eq!(up.len(), 4, "the village's three events and the alarm");
    let alarm = &up[3];
    assert_eq!(alarm.id.origin, TOWNSHIP);
    assert_eq!(outbox(&township, VILLAGE, false).len(), 1, "the alarm only");

    // A copy claiming another origin (a node alarming for a quarantine not its own) is
    // relayed only: the village does not hold the case for it.
    let claimed = rewritten(alarm, 1, |id| id.origin = T2.to_owned());
    let r = receive_one(&mut village, T2, claimed, 10);
    assert!(
        matches!(r, yimen_node::node::LinkReply::Received(ref r) if r.stored == 1),
        "{r:?}"
    );
    assert!(village.register.quarantine_of(&case).unwrap().is_none());

    // The accepting village hears it and stops acting on the case.
    deliver(&mut township, TOWNSHIP, &mut village, VILLAGE);
    assert!(village.register.quarantine_of(&case).unwrap().is_some());
    let refused = village
        .handle(ClerkOp::Precheck {
            operator: "测试员".to_owned(),
            case: number.clone(),
            opinion: "再次初审".to_owned(),
        })
        .unwrap_err();
    assert!(
        matches!(refused, ClerkError::Held { voided: false, .. }),
        "{refused:?}"
    );
    assert!(
        refused.reason_zh().contains("隔离"),
        "{}",
        refused.reason_zh()
    );
    // Looking it up says so.
    match village
        .handle(ClerkOp::GetCase {
            case: number.clone(),
        })
        .unwrap()
    {
        ClerkReply::Shown(_, Some(hold)) => {
            assert_eq!(hold.kind, yimen_node::node::HoldKind::Quarantined);
            assert!(hold.reason.contains(TOWNSHIP), "{hold:?}");
        }
        other => panic!("not shown as held: {other:?}"),
    }

    // The county applies the case (it knows the item) and lists the alarm.
    deliver(&mut township, TOWNSHIP, &mut county, COUNTY);
    let at_county = county.register.quarantined(10).unwrap();
    assert_eq!(at_county.len(), 1, "{at_county:?}");
    assert!(
        at_county[0].1.contains(TOWNSHIP) && at_county[0].1.contains("(event 1)"),
        "{at_county:?}"
    );
    let DeskReply::Quarantined(listed, _) = county.handle_desk(DeskOp::Quarantined).unwrap() else {
        panic!("not a quarantine list");
    };
    assert_eq!(listed, at_county);
    // Only the county decides, and only on a quarantined case.
    let not_county = township
        .handle_desk(DeskOp::Decide {
            actor: desk(TOWNSHIP, "乡镇管理员"),
            case: number.clone(),
            verdict: yimen_core::case::Verdict::Release,
            reason: "已修复".to_owned(),
        })
        .unwrap_err();
    assert!(matches!(not_county, ClerkError::Case(_)), "{not_county:?}");

    // The cause is gone (the item reaches the township), then the county releases.
    let aid = yimen_core::sample::medical_aid(Default::default());
    township.register.catalog.apply(aid.owner, aid).unwrap();
    let DeskReply::Decided {
        quarantined_again, ..
    } = county
        .handle_desk(DeskOp::Decide {
            actor: county_desk(),
            case: number.clone(),
            verdict: yimen_core::case::Verdict::Release,
            reason: "乡镇事项目录已补齐，解除隔离".to_owned(),
        })
        .unwrap()
    else {
        panic!("not a decision");
    };
    assert!(!quarantined_again);
    county.sync().unwrap();
    assert!(county.register.quarantined(10).unwrap().is_empty());
    deliver(&mut county, COUNTY, &mut township, TOWNSHIP);
    assert!(township.register.quarantined(10).unwrap().is_empty());
    let released = township.register.case(&case).unwrap().unwrap();
    assert_eq!(released.custodian.node.to_string(), TOWNSHIP);
    assert!(
        released.received,
        "the township signed for the released case"
    );
    assert_eq!(released.last_seq(), 4);
    deliver(&mut township, TOWNSHIP, &mut village, VILLAGE);
    assert!(village.register.quarantine_of(&case).unwrap().is_none());
    assert!(village.register.case(&case).unwrap().unwrap().received);

    // A second event claiming case sequence 2 (a new identity): a fork, quarantined.
    let fork = rewritten(&up[1], 50, |id| id.seq = 99);
    let r = receive_one(&mut county, TOWNSHIP, fork, 8);
    let yimen_node::node::LinkReply::Received(r) = r else {
        panic!("not received");
    };
    assert_eq!(
        (r.stored, r.quarantined, r.alarms.len()),
        (1, 1, 1),
        "{r:?}"
    );
    county.sync().unwrap();
    let forked = county.register.quarantined(10).unwrap();
    assert!(
        forked[0]
            .1
            .contains("two different events claim one case sequence"),
        "{forked:?}"
    );

    // Void: final everywhere it arrives.
    let DeskReply::Decided { .. } = county
        .handle_desk(DeskOp::Decide {
            actor: county_desk(),
            case: number.clone(),
            verdict: yimen_core::case::Verdict::Void,
            reason: "数据冲突，作废重办".to_owned(),
        })
        .unwrap()
    else {
        panic!("not a decision");
    };
    county.sync().unwrap();
    assert!(county.register.voided(&case).unwrap().is_some());
    assert!(
        county
            .register
            .cases_by_status(yimen_core::case::CaseStatus::Processing)
            .unwrap()
            .iter()
            .all(|c| c.number != case),
        "a void case is listed open no more"
    );
    assert!(county.register.quarantined(10).unwrap().is_empty());
    deliver(&mut county, COUNTY, &mut township, TOWNSHIP);
    assert!(township.register.voided(&case).unwrap().is_some());
    let after_void = township
        .handle_desk(DeskOp::Step {
            actor: desk(TOWNSHIP, "审核员"),
            case: number.clone(),
            action: yimen_core::catalog::StepAction::Review,
            opinion: "同意".to_owned(),
        })
        .unwrap_err();
    assert!(
        matches!(after_void, ClerkError::Held { voided: true, .. }),
        "{after_void:?}"
    );
    // Deciding again on a void case is refused: it is no longer quarantined.
    let again = county
        .handle_desk(DeskOp::Decide {
            actor: county_desk(),
            case: number,
            verdict: yimen_core::case::Verdict::Release,
            reason: "再议".to_owned(),
        })
        .unwrap_err();
    assert!(matches!(again, ClerkError::NotFound(_)), "{again:?}");
}

/// A request raised at `node`'s counter by `operator`, made durable; the clerk's reply.
fn relay(node: &mut Node<MemStore>, number: &str, operator: &str, kind: RelayKind) -> ClerkReply {
    let reply = node
        .handle(ClerkOp::Relay {
            operator: operator.to_owned(),
            case: number.to_owned(),
            kind,
        })
        .unwrap();
    node.sync().unwrap();
    reply
}

/// The requests waiting at `desk` on `node`.
fn pending_requests(
    node: &mut Node<MemStore>,
    desk: yimen_core::routing::Custodian,
) -> Vec<yimen_core::case::Request> {
    use yimen_node::node::{DeskOp, DeskReply};
    match node
        .handle_desk(DeskOp::Requests { desk, limit: 10 })
        .unwrap()
    {
        DeskReply::Requests(r) => r,
        other => panic!("not requests: {other:?}"),
    }
}

/// 西渡镇, the second township of the sample topology.
const T2: &str = "430421100000";

/// The village, its township, the county and 西渡镇 on model stores, with a 医疗救助 case
/// forwarded by the village, signed for by the township, and known to the county.
struct FourNodes {
    village: Node<MemStore>,
    township: Node<MemStore>,
    county: Node<MemStore>,
    t2: Node<MemStore>,
    number: String,
    case: yimen_core::numbering::CaseNumber,
}

impl FourNodes {
    fn with_case_signed_at_township() -> FourNodes {
        let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
        let (mut township, _) = open(TOWNSHIP, 8, Recovery::Stop);
        let (mut county, _) = open(COUNTY, 9, Recovery::Stop);
        let (t2, _) = open(T2, 10, Recovery::Stop);
        let number = forwarded_medical_aid(&mut village, VILLAGE);
        let case = number.parse().unwrap();
        deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
        deliver(&mut township, TOWNSHIP, &mut county, COUNTY);
        FourNodes {
            village,
            township,
            county,
            t2,
            number,
            case,
        }
    }
}

/// 改派: the county hands a lost custodian's case to another township, which signs for it
/// when the county's event arrives; only the county may, and only from the current
/// custodian.
#[test]
fn the_county_reassigns_a_lost_custodians_case_and_the_new_one_signs_for_it() {
    use yimen_node::node::{ClerkError, DeskOp, DeskReply};
    let FourNodes {
        mut village,
        mut township,
        mut county,
        mut t2,
        number,
        case,
    } = FourNodes::with_case_signed_at_township();
    let lost = yimen_node::node::DeskActor::custodian_of(id(TOWNSHIP), None);
    let to = yimen_node::node::DeskActor::custodian_of(id(T2), None);
    let reassign = |actor, from: &yimen_core::routing::Custodian| DeskOp::Reassign {
        actor,
        from: from.clone(),
        to: to.clone(),
        case: Some(number.clone()),
        reason: "演陂镇便民服务中心设备被盗，证书已吊销".to_owned(),
    };
    // Not from the current custodian.
    let wrong = county
        .handle_desk(reassign(county_desk(), &to))
        .unwrap_err();
    assert!(matches!(wrong, ClerkError::Invalid { .. }), "{wrong:?}");
    // Not by a township.
    let by_township = township
        .handle_desk(reassign(desk(TOWNSHIP, "乡镇管理员"), &lost))
        .unwrap_err();
    assert!(
        matches!(by_township, ClerkError::Case(_)),
        "{by_township:?}"
    );

    // A withdrawal raised while the township held the case reaches it and waits there; the
    // county relays it. Then the township is lost with its box.
    let ClerkReply::Request { addressed_to, .. } = relay(
        &mut village,
        &number,
        "测试员",
        RelayKind::Withdrawal {
            reason: "申请人已外出务工".to_owned(),
        },
    ) else {
        panic!("not a request");
    };
    assert_eq!(addressed_to, lost);
    deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    assert_eq!(pending_requests(&mut township, lost.clone()).len(), 1);
    deliver(&mut township, TOWNSHIP, &mut county, COUNTY);

    let DeskReply::Reassigned(done) = county.handle_desk(reassign(county_desk(), &lost)).unwrap()
    else {
        panic!("not reassigned");
    };
    assert_eq!(done, vec![case]);
    county.sync().unwrap();
    let at_county = county.register.case(&case).unwrap().unwrap();
    assert_eq!(at_county.custodian, to);
    assert!(!at_county.received);
    assert!(at_county.audience.contains(&id(T2)));
    // 西渡镇 never held the case: it gets the whole history and signs for it. The county
    // passed on the withdrawal pending at the lost township.
    deliver(&mut county, COUNTY, &mut t2, T2);
    let pending = pending_requests(&mut t2, to.clone());
    assert_eq!(
        pending.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["withdrawal"]
    );
    let at_t2 = t2.register.case(&case).unwrap().unwrap();
    assert_eq!(at_t2.custodian, to);
    assert!(at_t2.received, "the new custodian signed for the case");
    assert_eq!(
        at_t2
            .events
            .iter()
            .map(|e| e.body.kind())
            .collect::<Vec<_>>(),
        [
            "accepted",
            "step_done",
            "forwarded",
            "received",
            "reassigned",
            "received"
        ]
    );

    // A request raised before anyone below heard of it, addressed to the lost township and
    // kept there (it is gone with its box): the county, which reassigned the case, passes it
    // to the new custodian.
    let reply = relay(
        &mut village,
        &number,
        "测试员",
        RelayKind::Objection {
            text: "申请人家庭收入情况有误".to_owned(),
        },
    );
    let ClerkReply::Request { addressed_to, .. } = reply else {
        panic!("not a request: {reply:?}");
    };
    assert_eq!(addressed_to, lost);
    deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    deliver(&mut township, TOWNSHIP, &mut county, COUNTY);
    deliver(&mut county, COUNTY, &mut t2, T2);
    let mut kinds: Vec<_> = pending_requests(&mut t2, to.clone())
        .iter()
        .map(|r| r.kind.as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["objection", "withdrawal"]);
}

/// DESIGN.md "Custody": a request travels as an event to the custodian the raiser knows; a
/// former custodian that receives it passes it along the custody chain (here the county has
/// reassigned the case to 西渡镇 meanwhile), and the custodian's desk decides it: the accepted
/// withdrawal becomes the case's event and comes back to the village.
#[test]
fn a_request_passes_along_the_custody_chain_and_the_custodian_decides_it() {
    use yimen_node::node::{DeskActor, DeskOp, DeskReply};
    let FourNodes {
        mut village,
        mut township,
        mut county,
        mut t2,
        number,
        case,
    } = FourNodes::with_case_signed_at_township();

    // The resident withdraws at the village, which still thinks the township holds the case.
    let reply = relay(
        &mut village,
        &number,
        "测试员",
        RelayKind::Withdrawal {
            reason: "申请人已外出务工，暂不申请".to_owned(),
        },
    );
    let ClerkReply::Request {
        id: request,
        addressed_to,
        ..
    } = reply
    else {
        panic!("not a request: {reply:?}");
    };
    assert_eq!(addressed_to.node, id(TOWNSHIP));

    // Meanwhile the county hands the case to 西渡镇.
    let t2_desk = DeskActor::custodian_of(id(T2), None);
    let DeskReply::Reassigned(_) = county
        .handle_desk(DeskOp::Reassign {
            actor: county_desk(),
            from: DeskActor::custodian_of(id(TOWNSHIP), None),
            to: t2_desk.clone(),
            case: Some(number.clone()),
            reason: "演陂镇暂停办理".to_owned(),
        })
        .unwrap()
    else {
        panic!("not reassigned");
    };
    county.sync().unwrap();
    deliver(&mut county, COUNTY, &mut township, TOWNSHIP);
    deliver(&mut county, COUNTY, &mut t2, T2);

    // The request reaches the township, which passes it along to 西渡镇 through the county.
    let r = deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    assert_eq!(r.pass_along.len(), 1, "{r:?}");
    assert_eq!(r.requests, 0);
    deliver(&mut township, TOWNSHIP, &mut county, COUNTY);
    let at_county = pending_requests(&mut county, DeskActor::custodian_of(id(COUNTY), None));
    assert!(at_county.is_empty(), "relays keep nothing pending");
    deliver(&mut county, COUNTY, &mut t2, T2);
    let pending = pending_requests(&mut t2, t2_desk.clone());
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, request);
    assert_eq!(pending[0].kind.as_str(), "withdrawal");

    // 西渡镇 accepts it: the case ends withdrawn, and the village learns it.
    let DeskReply::Case {
        case: withdrawn, ..
    } = t2
        .handle_desk(DeskOp::DecideRequest {
            actor: desk(T2, "审核员"),
            case: number.clone(),
            request: request.to_string(),
            accept: true,
            reason: String::new(),
        })
        .unwrap()
    else {
        panic!("not a case");
    };
    t2.sync().unwrap();
    assert_eq!(withdrawn.status, yimen_core::case::CaseStatus::Withdrawn);
    let left = pending_requests(&mut t2, t2_desk);
    assert!(left.is_empty(), "a decided request is no longer pending");
    deliver(&mut t2, T2, &mut county, COUNTY);
    deliver(&mut county, COUNTY, &mut township, TOWNSHIP);
    deliver(&mut township, TOWNSHIP, &mut village, VILLAGE);
    let back = village.register.case(&case).unwrap().unwrap();
    assert_eq!(back.status, yimen_core::case::CaseStatus::Withdrawn);
    assert!(back.decided_requests.contains(&request));
}

/// A request to a village that holds the case (raised at its township's counter): the
/// village's clerk lists it and declines it, with the reason recorded in the case.
#[test]
fn a_village_custodian_decides_a_request_raised_elsewhere() {
    use yimen_node::node::{DeskActor, DeskOp, DeskReply};
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let (mut township, _) = open(TOWNSHIP, 8, Recovery::Stop);
    let number = apply(&mut village, "代办");
    deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    let reply = relay(
        &mut township,
        &number,
        "乡镇窗口",
        RelayKind::Withdrawal {
            reason: "申请人来电要求撤回".to_owned(),
        },
    );
    let ClerkReply::Request {
        id: request,
        addressed_to,
        decided_here,
        ..
    } = reply
    else {
        panic!("not a request: {reply:?}");
    };
    assert_eq!(addressed_to.node, id(VILLAGE));
    assert!(!decided_here);
    deliver(&mut township, TOWNSHIP, &mut village, VILLAGE);
    let me = DeskActor::custodian_of(id(VILLAGE), None);
    let pending = pending_requests(&mut village, me.clone());
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, request);
    // Declining needs a reason.
    let decide = |reason: &str| DeskOp::DecideRequest {
        actor: desk(VILLAGE, "村办事员"),
        case: number.clone(),
        request: request.to_string(),
        accept: false,
        reason: reason.to_owned(),
    };
    assert!(village.handle_desk(decide(" ")).is_err());
    let DeskReply::Case { case, .. } = village
        .handle_desk(decide("申请人本人到场确认不撤回"))
        .unwrap()
    else {
        panic!("not a case");
    };
    assert_eq!(case.events.last().unwrap().body.kind(), "request_declined");
    assert!(case.decided_requests.contains(&request));
}

/// A custodian that hands a case on with a request undecided sends the request on with it.
#[test]
fn an_undecided_request_follows_the_case_to_its_next_custodian() {
    use yimen_node::node::DeskActor;
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let (mut township, _) = open(TOWNSHIP, 8, Recovery::Stop);
    let number = accepted_medical_aid(&mut village, VILLAGE);
    deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    let ClerkReply::Request { id: request, .. } = relay(
        &mut township,
        &number,
        "乡镇窗口",
        RelayKind::Objection {
            text: "邻居反映申请人已外出".to_owned(),
        },
    ) else {
        panic!("not a request");
    };
    deliver(&mut township, TOWNSHIP, &mut village, VILLAGE);
    let village_desk = DeskActor::custodian_of(id(VILLAGE), None);
    assert_eq!(pending_requests(&mut village, village_desk).len(), 1);

    // The village pre-checks and forwards without deciding it: the request goes along.
    precheck_and_forward(&mut village, &number);
    let case: yimen_core::numbering::CaseNumber = number.parse().unwrap();
    assert_eq!(
        village.register.pending_request(&case, &request).unwrap(),
        None,
        "handed on, no longer pending at the village"
    );
    deliver(&mut village, VILLAGE, &mut township, TOWNSHIP);
    let at_township = pending_requests(&mut township, DeskActor::custodian_of(id(TOWNSHIP), None));
    assert_eq!(at_township.len(), 1, "{at_township:?}");
    assert_eq!(at_township[0].kind.as_str(), "objection");
}

/// A hub that reads payload schema 1 (this build) keeps a case event of schema 2 and the
/// case's later events waiting, relays them all, and shows why the case stops there; the
/// same hub upgraded (a build reading schema 2, played by a test-only setting) applies them
/// at its next start.
#[test]
fn a_newer_schema_case_event_waits_visibly_until_an_upgrade() {
    use prost::Message;
    let (mut village, _) = open(VILLAGE, 7, Recovery::Stop);
    let (mut township, _) = open(TOWNSHIP, 8, Recovery::Stop);
    let number = forwarded_medical_aid(&mut village, VILLAGE);
    let case: yimen_core::numbering::CaseNumber = number.parse().unwrap();
    // The village's three events, its pre-check (case sequence 2) relabelled as schema 2: a
    // newer build's compatible evolution of the payload.
    let mut events = outbox(&village, TOWNSHIP, false);
    assert_eq!(events.len(), 3);
    let mut wire = yimen_proto::pb::Event::decode(events[1].bytes.as_slice()).unwrap();
    let envelope = wire.envelope.as_mut().unwrap();
    assert_eq!(envelope.case_seq, 2);
    envelope.schema_version = yimen_node::register::PAYLOAD_SCHEMA_VERSION + 1;
    events[1].bytes = wire.encode_to_vec();
    events[1].digest = *blake3::hash(&events[1].bytes).as_bytes();
    let r = township
        .register
        .receive(id(VILLAGE), events.clone(), cursor_of(&events, 7))
        .unwrap();
    township.sync().unwrap();
    assert_eq!((r.stored, r.held, r.quarantined), (3, 2, 0), "{r:?}");
    assert_eq!(
        township.register.case(&case).unwrap().unwrap().last_seq(),
        1
    );
    match township
        .handle(ClerkOp::GetCase {
            case: number.clone(),
        })
        .unwrap()
    {
        ClerkReply::Shown(_, Some(hold)) => {
            assert_eq!(hold.kind, yimen_node::node::HoldKind::NewerSchema);
            assert!(hold.reason.contains("第2条"), "{hold:?}");
        }
        other => panic!("not shown waiting: {other:?}"),
    }
    // Relayed byte for byte all the same.
    let relayed = outbox(&township, COUNTY, false);
    assert_eq!(
        relayed.iter().map(|e| &e.bytes).collect::<Vec<_>>(),
        events.iter().map(|e| &e.bytes).collect::<Vec<_>>()
    );

    // Upgraded: the held events apply at the next start.
    township.register.set_readable_schema_for_tests(2);
    township.register.catch_up_newer().unwrap();
    township.sync().unwrap();
    let caught_up = township.register.case(&case).unwrap().unwrap();
    assert_eq!(caught_up.last_seq(), 3);
    assert_eq!(caught_up.custodian.node, id(TOWNSHIP));
    assert_eq!(township.register.newer_schema_of(&case).unwrap(), None);
    // Handed here by the events just applied: the custodian's timer signs for it.
    assert!(!caught_up.received);
    township
        .handle_desk(yimen_node::node::DeskOp::Tick)
        .unwrap();
    township.sync().unwrap();
    let signed = township.register.case(&case).unwrap().unwrap();
    assert!(signed.received);
    assert_eq!(signed.events.last().unwrap().body.kind(), "received");
}
