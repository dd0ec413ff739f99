//! Wire <-> domain conversions: round trips, a table of malformed messages (each error names
//! the field), and random bytes that must never panic.

// Helpers outside #[test] functions may panic too: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use proptest::prelude::*;
use yimen_core::calendar::{Calendar, CalendarYear};
use yimen_core::catalog::{
    CaseType, Condition, ConditionRule, Department, DeptKey, Fee, ItemCode, ItemType, ItemVersion,
    Material, MaterialCode, MaterialRequirement, NoticeRule, ServerType, Service, Step, StepAction,
    StepCode, TimeLimit, UseLevel,
};
use yimen_core::division::{DivisionCode, Tier};
use yimen_core::person::Status;
use yimen_core::topology::{Topology, TopologyNode};
use yimen_proto::convert::{WireError, check_envelope, decode_payload, encode_payload};
use yimen_proto::pb;

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// 最低生活保障审批 as the county publishes it: every kind of condition, a one-of material
/// group, steps at three tiers with a notice step.
fn item() -> ItemVersion {
    let material = |c: &str, name: &str, originals, copies| Material {
        code: MaterialCode(c.to_owned()),
        name: name.to_owned(),
        originals,
        copies,
    };
    let step = |c: &str, name: &str, tier, department: Option<&str>, action, limit| Step {
        code: StepCode(c.to_owned()),
        name: name.to_owned(),
        tier,
        department: department.map(|d| DeptKey(d.to_owned())),
        action,
        limit,
        notice: None,
    };
    let mut notice = step(
        "S4",
        "村级公示",
        Tier::Village,
        None,
        StepAction::Notice,
        None,
    );
    notice.notice = Some(NoticeRule {
        working_days: 7,
        counts_toward_limit: false,
    });
    ItemVersion {
        owner: code("430421000000"),
        code: ItemCode("000705001000-430421-mzj-05".to_owned()),
        version: 3,
        name: "最低生活保障审批".to_owned(),
        catalog_code: "000705001000".to_owned(),
        handle_item_code: String::new(),
        item_type: ItemType::Benefit,
        use_level: UseLevel::County,
        department: Department {
            key: DeptKey("mzj".to_owned()),
            name: "衡阳县民政局".to_owned(),
            credit_code: Some("11430421006123456X".to_owned()),
        },
        statutory_limit: TimeLimit::WorkingDays(30),
        committed_limit: TimeLimit::WorkingDays(20),
        case_type: CaseType::Committed,
        server_type: ServerType::NATURAL_PERSON,
        conditions: vec![
            Condition {
                code: "C1".to_owned(),
                text: "户籍在本县".to_owned(),
                rule: ConditionRule::HouseholdInJurisdiction,
            },
            Condition {
                code: "C2".to_owned(),
                text: "年满18周岁".to_owned(),
                rule: ConditionRule::MinimumAge { years: 18 },
            },
            Condition {
                code: "C3".to_owned(),
                text: "低保或五保人员".to_owned(),
                rule: ConditionRule::AnyStatus {
                    statuses: BTreeSet::from([Status::Dibao, Status::Wubao]),
                },
            },
        ],
        materials: vec![
            MaterialRequirement {
                code: MaterialCode("M1".to_owned()),
                name: "居民身份证".to_owned(),
                required: true,
                options: vec![material("M1", "居民身份证", 1, 1)],
            },
            MaterialRequirement {
                code: MaterialCode("G1".to_owned()),
                name: "低保证或五保证复印件".to_owned(),
                required: false,
                options: vec![
                    material("M2", "低保证", 0, 1),
                    material("M3", "五保证", 0, 1),
                ],
            },
        ],
        steps: vec![
            step(
                "S1",
                "受理",
                Tier::Village,
                None,
                StepAction::Accept,
                Some(TimeLimit::Immediate),
            ),
            step(
                "S2",
                "乡镇审核",
                Tier::Township,
                None,
                StepAction::Review,
                Some(TimeLimit::WorkingDays(10)),
            ),
            step(
                "S3",
                "县级审批",
                Tier::County,
                Some("mzj"),
                StepAction::Approve,
                Some(TimeLimit::WorkingDays(10)),
            ),
            notice,
        ],
        fee: Fee::free(),
        service: Service {
            place: "河泉村便民服务中心".to_owned(),
            hours: "工作日 8:30-17:30".to_owned(),
            hotline: "0734-12345".to_owned(),
            supervision_phone: "0734-12340".to_owned(),
        },
        legal_basis: Some("《社会救助暂行办法》".to_owned()),
    }
}

fn calendar() -> Calendar {
    let y2026 = CalendarYear {
        year: 2026,
        days_off: BTreeSet::from([date(2026, 1, 1), date(2026, 10, 1), date(2026, 10, 2)]),
        working_weekends: BTreeSet::from([date(2026, 1, 4), date(2026, 9, 27)]),
        source: "国办发明电〔2025〕7号".to_owned(),
    };
    let y2025 = CalendarYear {
        year: 2025,
        days_off: BTreeSet::from([date(2025, 5, 1)]),
        working_weekends: BTreeSet::from([date(2025, 4, 27)]),
        source: "国办发明电〔2024〕12号".to_owned(),
    };
    Calendar {
        version: 2,
        years: BTreeMap::from([(2025, y2025), (2026, y2026)]),
    }
}

fn topology() -> Topology {
    let node = |id: &str, tier, parent: Option<&str>, name: &str, serves: &[&str]| TopologyNode {
        id: code(id),
        tier,
        parent: parent.map(code),
        name: name.to_owned(),
        serves: serves.iter().copied().map(code).collect(),
    };
    let nodes = [
        node(
            "430421000000",
            Tier::County,
            None,
            "衡阳县",
            &["430421000000"],
        ),
        node(
            "430421105000",
            Tier::Township,
            Some("430421000000"),
            "演陂镇",
            &["430421105000"],
        ),
        node(
            "430421105204",
            Tier::Village,
            Some("430421105000"),
            "河泉村",
            &["430421105204", "430421105209"],
        ),
    ];
    Topology {
        version: 1,
        vintage: "NBS 2023".to_owned(),
        nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
    }
}

#[test]
fn item_version_round_trips() {
    // The core's sample catalog, then the hand-built item (a credit code, a legal basis,
    // every kind of condition in one item, a department on a step).
    for original in yimen_core::sample::items().into_iter().chain([item()]) {
        let wire = pb::CatalogRevision::from(original.clone());
        let bytes = encode_payload(&wire);
        let decoded: pb::CatalogRevision = decode_payload(&bytes, "catalog revision").unwrap();
        assert_eq!(
            ItemVersion::try_from(decoded).unwrap(),
            original,
            "{}",
            original.name
        );
    }

    let mut immediate = item();
    immediate.statutory_limit = TimeLimit::Immediate;
    immediate.department.credit_code = None;
    immediate.legal_basis = None;
    let wire = pb::ItemVersion::from(immediate.clone());
    assert_eq!(ItemVersion::try_from(wire).unwrap(), immediate);
}

#[test]
fn calendar_round_trips() {
    // The core's built-in calendar, then the hand-built one (another version and years).
    for original in [Calendar::builtin(), calendar()] {
        let bytes = encode_payload(&pb::CalendarRevision::from(original.clone()));
        let decoded: pb::CalendarRevision = decode_payload(&bytes, "calendar revision").unwrap();
        assert_eq!(Calendar::try_from(decoded).unwrap(), original);
    }
}

#[test]
fn topology_round_trips() {
    let original = topology();
    let bytes = encode_payload(&pb::TopologyRevision::from(original.clone()));
    let decoded: pb::TopologyRevision = decode_payload(&bytes, "topology revision").unwrap();
    assert_eq!(Topology::try_from(decoded).unwrap(), original);
}

fn wire_item() -> pb::CatalogRevision {
    item().into()
}

fn item_of(w: &mut pb::CatalogRevision) -> &mut pb::ItemVersion {
    w.item.as_mut().unwrap()
}

/// Expected error: the field path and a fragment of the message.
fn expect(got: Result<impl std::fmt::Debug, WireError>, what: &str, field: &str, needle: &str) {
    let err = match got {
        Ok(v) => panic!("{what}: accepted {v:?}"),
        Err(e) => e,
    };
    assert_eq!(err.field(), field, "{what}: {err}");
    assert!(
        err.to_string().contains(needle),
        "{what}: {needle:?} not in {err}"
    );
}

#[test]
fn malformed_catalog_revisions_name_the_field() {
    type Mutation = fn(&mut pb::CatalogRevision);
    let table: &[(&str, Mutation, &str, &str)] = &[
        (
            "bad owner",
            |w| item_of(w).owner = "43042110520x".to_owned(),
            "item.owner",
            "non-digit",
        ),
        ("no item", |w| w.item = None, "item", "missing"),
        (
            "missing department",
            |w| item_of(w).department = None,
            "item.department",
            "missing",
        ),
        (
            "unknown tier",
            |w| item_of(w).steps[2].tier = "town".to_owned(),
            "item.steps[2].tier",
            "unknown tier \"town\"",
        ),
        (
            "unknown step action",
            |w| item_of(w).steps[1].action = "stamp".to_owned(),
            "item.steps[1].action",
            "unknown step action \"stamp\"",
        ),
        (
            "limit of 70000 days",
            |w| {
                item_of(w).committed_limit = Some(pb::TimeLimit {
                    kind: Some(pb::time_limit::Kind::WorkingDays(70_000)),
                })
            },
            "item.committed_limit.working_days",
            "70000",
        ),
        (
            "step limit of 1001 days",
            |w| {
                item_of(w).steps[0].limit = Some(pb::TimeLimit {
                    kind: Some(pb::time_limit::Kind::WorkingDays(1001)),
                })
            },
            "item.steps[0].limit.working_days",
            "1001",
        ),
        (
            "time limit without a kind",
            |w| item_of(w).statutory_limit = Some(pb::TimeLimit { kind: None }),
            "item.statutory_limit.kind",
            "missing",
        ),
        (
            "immediate false",
            |w| {
                item_of(w).statutory_limit = Some(pb::TimeLimit {
                    kind: Some(pb::time_limit::Kind::Immediate(false)),
                })
            },
            "item.statutory_limit.immediate",
            "false",
        ),
        (
            "unknown item type",
            |w| item_of(w).item_type = "11".to_owned(),
            "item.item_type",
            "unknown item type",
        ),
        (
            "unknown use level",
            |w| item_of(w).use_level = 8,
            "item.use_level",
            "unknown use level 8",
        ),
        (
            "unknown case type",
            |w| item_of(w).case_type = 3,
            "item.case_type",
            "unknown case type 3",
        ),
        (
            "server type beyond u8",
            |w| item_of(w).server_type = 256,
            "item.server_type",
            "out of range",
        ),
        (
            "code too long",
            |w| item_of(w).code = "x".repeat(51),
            "item.code",
            "51 characters",
        ),
        (
            "empty code",
            |w| item_of(w).code = String::new(),
            "item.code",
            "empty",
        ),
        (
            "name too long",
            |w| item_of(w).name = "事".repeat(201),
            "item.name",
            "201 characters",
        ),
        (
            "material copies beyond u8",
            |w| item_of(w).materials[1].options[0].copies = 300,
            "item.materials[1].options[0].copies",
            "out of range",
        ),
        (
            "minimum age beyond u8",
            |w| {
                item_of(w).conditions[1].rule =
                    Some(pb::condition::Rule::MinimumAge(pb::condition::MinimumAge {
                        years: 1000,
                    }))
            },
            "item.conditions[1].minimum_age.years",
            "out of range",
        ),
        (
            "unknown status",
            |w| {
                item_of(w).conditions[2].rule =
                    Some(pb::condition::Rule::AnyStatus(pb::condition::AnyStatus {
                        statuses: vec!["dibao".to_owned(), "rich".to_owned()],
                    }))
            },
            "item.conditions[2].any_status.statuses[1]",
            "unknown status \"rich\"",
        ),
        (
            "condition without a rule",
            |w| item_of(w).conditions[0].rule = None,
            "item.conditions[0].rule",
            "missing",
        ),
        (
            "notice of 2000 days",
            |w| {
                item_of(w).steps[3].notice = Some(pb::NoticeRule {
                    working_days: 2000,
                    counts_toward_limit: false,
                })
            },
            "item.steps[3].notice.working_days",
            "2000",
        ),
        (
            "bad credit code",
            |w| item_of(w).department.as_mut().unwrap().credit_code = Some("123".to_owned()),
            "item.department.credit_code",
            "\"123\"",
        ),
        (
            "missing fee",
            |w| item_of(w).fee = None,
            "item.fee",
            "missing",
        ),
        (
            "missing service",
            |w| item_of(w).service = None,
            "item.service",
            "missing",
        ),
    ];
    for (what, mutate, field, needle) in table {
        let mut wire = wire_item();
        mutate(&mut wire);
        expect(ItemVersion::try_from(wire), what, field, needle);
    }
}

#[test]
fn malformed_calendars_name_the_field() {
    type Mutation = fn(&mut pb::CalendarRevision);
    let table: &[(&str, Mutation, &str, &str)] = &[
        (
            "bad date 2026-02-30",
            |w| {
                w.years[1].days_off[0] = pb::Date {
                    year: 2026,
                    month: 2,
                    day: 30,
                }
            },
            "years[1].days_off[0]",
            "2026-02-30 is not a calendar date",
        ),
        (
            "month 13",
            |w| {
                w.years[0].working_weekends[0] = pb::Date {
                    year: 2025,
                    month: 13,
                    day: 1,
                }
            },
            "years[0].working_weekends[0]",
            "not a calendar date",
        ),
        (
            "date outside its year",
            |w| {
                w.years[1].days_off[0] = pb::Date {
                    year: 2027,
                    month: 1,
                    day: 1,
                }
            },
            "years[1].days_off[0]",
            "outside year 2026",
        ),
        (
            "working weekend on a weekday",
            |w| {
                w.years[1].working_weekends[0] = pb::Date {
                    year: 2026,
                    month: 1,
                    day: 5,
                }
            },
            "years[1].working_weekends[0]",
            "not a Saturday or Sunday",
        ),
        (
            "year twice",
            |w| {
                let again = w.years[0].clone();
                w.years.push(again);
            },
            "years[2].year",
            "appears twice",
        ),
    ];
    for (what, mutate, field, needle) in table {
        let mut wire = pb::CalendarRevision::from(calendar());
        mutate(&mut wire);
        expect(Calendar::try_from(wire), what, field, needle);
    }
}

#[test]
fn malformed_topologies_name_the_field() {
    type Mutation = fn(&mut pb::TopologyRevision);
    let table: &[(&str, Mutation, &str, &str)] = &[
        (
            "bad division code",
            |w| w.nodes[2].serves[1] = "430421105400".to_owned(),
            "nodes[2].serves[1]",
            "village part 400",
        ),
        (
            "bad parent",
            |w| w.nodes[1].parent = "4304".to_owned(),
            "nodes[1].parent",
            "exactly 12",
        ),
        (
            "unknown tier",
            |w| w.nodes[0].tier = "town".to_owned(),
            "nodes[0].tier",
            "unknown tier \"town\"",
        ),
        (
            "node twice",
            |w| {
                let again = w.nodes[0].clone();
                w.nodes.push(again);
            },
            "nodes[3].id",
            "appears twice",
        ),
    ];
    for (what, mutate, field, needle) in table {
        let mut wire = pb::TopologyRevision::from(topology());
        mutate(&mut wire);
        expect(Topology::try_from(wire), what, field, needle);
    }
}

fn envelope() -> pb::EventEnvelope {
    pb::EventEnvelope {
        id: Some(pb::EventId {
            origin: "430421105204".to_owned(),
            epoch: 1,
            seq: 42,
        }),
        case_id: "430421105204202611010001".to_owned(),
        case_seq: 1,
        // A case event type this build does not know (100 is EVENT_TYPE_CASE_EVENT).
        r#type: 150,
        schema_version: 1,
        audience: Some(pb::Audience {
            subtree: String::new(),
            members: vec!["430421105204".to_owned(), "430421000000".to_owned()],
        }),
        signature: None,
        materials: vec![pb::MaterialRef {
            blake3: vec![7; 32],
            size: 1234,
            media_type: "image/jpeg".to_owned(),
        }],
        author: "clerk-li".to_owned(),
    }
}

#[test]
fn envelope_checks() {
    // A case event with an event type this build does not know passes: relays carry it.
    check_envelope(&envelope()).unwrap();
    let known = pb::EventEnvelope {
        r#type: pb::EventType::CaseEvent as i32,
        ..envelope()
    };
    check_envelope(&known).unwrap();
    let catalog = pb::EventEnvelope {
        case_id: String::new(),
        case_seq: 0,
        r#type: pb::EventType::CatalogRevision as i32,
        audience: Some(pb::Audience {
            subtree: "430421000000".to_owned(),
            members: vec![],
        }),
        ..envelope()
    };
    check_envelope(&catalog).unwrap();
    // A request names its case outside the case sequence: case_seq 0, and only 0.
    let request = pb::EventEnvelope {
        case_seq: 0,
        r#type: pb::EventType::Request as i32,
        ..envelope()
    };
    check_envelope(&request).unwrap();
    let sequenced_request = pb::EventEnvelope {
        case_seq: 3,
        ..request.clone()
    };
    let e = check_envelope(&sequenced_request).unwrap_err();
    assert_eq!(e.field(), "case_seq");
    let caseless_request = pb::EventEnvelope {
        case_id: String::new(),
        ..request
    };
    assert_eq!(
        check_envelope(&caseless_request).unwrap_err().field(),
        "case_id"
    );

    type Mutation = fn(&mut pb::EventEnvelope);
    let table: &[(&str, Mutation, &str, &str)] = &[
        ("no id", |e| e.id = None, "id", "missing"),
        (
            "bad origin",
            |e| e.id.as_mut().unwrap().origin = "000421105204".to_owned(),
            "id.origin",
            "province",
        ),
        (
            "epoch 0",
            |e| e.id.as_mut().unwrap().epoch = 0,
            "id.epoch",
            "greater than 0",
        ),
        (
            "seq 0",
            |e| e.id.as_mut().unwrap().seq = 0,
            "id.seq",
            "greater than 0",
        ),
        (
            "case without seq",
            |e| e.case_seq = 0,
            "case_seq",
            "case_id is set",
        ),
        (
            "seq without case",
            |e| e.case_id = String::new(),
            "case_seq",
            "case_id is empty",
        ),
        (
            "schema 0",
            |e| e.schema_version = 0,
            "schema_version",
            "greater than 0",
        ),
        ("unspecified type", |e| e.r#type = 0, "type", "UNSPECIFIED"),
        ("no audience", |e| e.audience = None, "audience", "missing"),
        (
            "empty audience",
            |e| e.audience = Some(pb::Audience::default()),
            "audience",
            "neither",
        ),
        (
            "bad member",
            |e| e.audience.as_mut().unwrap().members[1] = "x".to_owned(),
            "audience.members[1]",
            "exactly 12",
        ),
        (
            "short digest",
            |e| e.materials[0].blake3 = vec![1; 31],
            "materials[0].blake3",
            "32 bytes",
        ),
    ];
    for (what, mutate, field, needle) in table {
        let mut e = envelope();
        mutate(&mut e);
        expect(check_envelope(&e), what, field, needle);
    }
}

#[test]
fn garbage_payload_is_an_error() {
    let got = decode_payload::<pb::CatalogRevision>(&[0xff, 0xff, 0xff], "catalog revision");
    expect(got, "garbage", "catalog revision", "cannot decode");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(w) = decode_payload::<pb::CatalogRevision>(&bytes, "catalog revision") {
            let _ = ItemVersion::try_from(w);
        }
        if let Ok(w) = decode_payload::<pb::CalendarRevision>(&bytes, "calendar revision") {
            let _ = Calendar::try_from(w);
        }
        if let Ok(w) = decode_payload::<pb::TopologyRevision>(&bytes, "topology revision") {
            let _ = Topology::try_from(w);
        }
        if let Ok(w) = decode_payload::<pb::Event>(&bytes, "event")
            && let Some(envelope) = &w.envelope {
                let _ = check_envelope(envelope);
            }
    }

    /// Bytes that start as a valid catalog revision and are then corrupted.
    #[test]
    fn corrupted_payloads_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode_payload(&wire_item());
        let at = index.index(bytes.len());
        bytes[at] = byte;
        if let Ok(w) = decode_payload::<pb::CatalogRevision>(&bytes, "catalog revision") {
            let _ = ItemVersion::try_from(w);
        }
    }
}
