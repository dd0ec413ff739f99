//! Authoring with real processes: the county and the township are `yimen-hub serve`, the
//! village runs in this process; revisions are published with `yimen-hub author` from the
//! documented example files (docs/authoring/) and reach the village through the township.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde_json::Value;

use common::*;
use yimen_node::clock::{Clock, ManualClock, SystemClock};
use yimen_proto::pb;

/// Longest wait for a revision to cross two links.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The operator named on every revision here.
const OPERATOR: &str = "县政务服务中心 李四";

/// A documented example file.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/authoring")
        .join(name)
}

/// `yimen-hub author KIND FILE --hub HUB --operator OPERATOR [extra…]`: exit success and
/// stdout.
fn author(hub: &Hub, kind: &str, file: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
        .args(["author", kind])
        .arg(file)
        .args(["--hub", &hub.admin.to_string(), "--operator", OPERATOR])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    if !out.status.success() {
        eprintln!(
            "yimen-hub author {kind} failed\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), stdout)
}

/// 衡阳县 → 演陂镇 → 河泉村: the county and the township as `yimen-hub serve`, the village in
/// this process on `clock`, numbering (whole after its first refill).
struct County {
    county: Hub,
    township: Hub,
    village: Village,
    village_cfg: PathBuf,
    // Last: the certificates and stores outlive the processes using them.
    _d: Deployment,
}

impl County {
    async fn start(clock: Arc<dyn Clock>) -> County {
        let d = Deployment::new();
        let county_listen = free_addr();
        let township_listen = free_addr();
        let county_cfg = d.config(
            COUNTY,
            &d.hub_identity(COUNTY),
            None,
            Some(county_listen),
            "",
        );
        let township_cfg = d.config(
            TOWNSHIP,
            &d.hub_identity(TOWNSHIP),
            Some(county_listen),
            Some(township_listen),
            "",
        );
        // The village's timers run every second: a deadline is confirmed soon after the
        // calendar that covers it arrives.
        let village_cfg = d.config(
            VILLAGE,
            &d.node_identity(VILLAGE),
            Some(township_listen),
            None,
            "desk_timer_secs = 1\n",
        );
        let county = Hub::start(&county_cfg, "county").await;
        let township = Hub::start(&township_cfg, "township").await;
        let village = Village::start_with_clock(&village_cfg, clock)
            .await
            .unwrap();
        County {
            county,
            township,
            village,
            village_cfg,
            _d: d,
        }
    }
}

/// A 医疗救助 application by a 低保 resident of the village with `materials`.
fn medical_aid(materials: &[&str]) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: "测试员".to_owned(),
        item_code: "430421-YB-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "11010519491231002X".to_owned(),
            name: "张桂英".to_owned(),
            household: VILLAGE.to_owned(),
            statuses: vec!["dibao".to_owned()],
        }),
        materials: materials.iter().map(|m| (*m).to_owned()).collect(),
        helper: None,
    }
}

/// Applies until the village numbers (it waits for its first refill); the accepted case.
async fn accept_at(village: &Village, request: pb::ApplyRequest) -> pb::CaseView {
    let reply = eventually("the village accepts", ARRIVAL_TIMEOUT, || {
        let request = request.clone();
        async move {
            let mut c = village.clerk().await;
            match c.apply(request).await {
                Ok(r) => Some(r.into_inner()),
                Err(s) if s.code() == tonic::Code::Unavailable => None,
                Err(s) => panic!("apply refused: {s}"),
            }
        }
    })
    .await;
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => slip.case.unwrap(),
        other => panic!("not accepted: {other:?}"),
    }
}

async fn calendar_years(addr: std::net::SocketAddr) -> (u32, Vec<i32>) {
    let r = clerk(addr)
        .await
        .get_calendar(pb::GetCalendarRequest {})
        .await
        .unwrap()
        .into_inner();
    (r.version, r.years.iter().map(|y| y.year).collect())
}

async fn item_version(addr: std::net::SocketAddr, code: &str) -> u32 {
    let items = clerk(addr)
        .await
        .list_items(pb::ListItemsRequest {})
        .await
        .unwrap()
        .into_inner()
        .items;
    items.iter().find(|i| i.code == code).unwrap().version
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The Done-when of the tiers issue: a 2027 calendar loaded with `yimen-hub author calendar`
/// at the county reaches the village, after which a provisional deadline is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2027_calendar_authored_at_the_county_reaches_the_village_and_confirms_a_deadline() {
    // Christmas Eve 2026: ten working days reach into 2027, which no node knows yet.
    let clock = ManualClock::at_beijing(day("2026-12-24").and_hms_opt(9, 0, 0).unwrap());
    let c = County::start(Arc::new(clock)).await;
    let case = accept_at(&c.village, medical_aid(&["zyfp", "xnhpj", "dbz"])).await;
    assert!(case.deadline_provisional, "{case:?}");
    let due = case.deadline.unwrap();
    assert_eq!(
        (due.year, due.month, due.day),
        (2027, 1, 7),
        "weekdays only"
    );

    let (ok, out) = author(
        &c.county,
        "calendar",
        &example("calendar.toml"),
        &["--json"],
    );
    assert!(ok, "{out}");
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["outcome"], "published", "{reply}");
    assert_eq!(reply["kind"], "calendar");
    assert_eq!(reply["version"], 2);
    assert_eq!(reply["subtree"], COUNTY);
    assert_eq!(reply["event"]["origin"], COUNTY);

    assert_eq!(
        calendar_years(c.county.admin).await,
        (2, vec![2025, 2026, 2027])
    );
    for (what, addr) in [("township", c.township.admin), ("village", c.village.admin)] {
        eventually(
            &format!("the 2027 calendar at the {what}"),
            ARRIVAL_TIMEOUT,
            || async move {
                (calendar_years(addr).await == (2, vec![2025, 2026, 2027])).then_some(())
            },
        )
        .await;
    }
    // The custodian (the village, which holds the case) confirms the provisional deadline by
    // its own timer, on the calendar that arrived: 2027-01-01 is a day off in the authored
    // year, so the deadline is one working day later than weekdays alone.
    let number = case.number.clone();
    let addr = c.village.admin;
    let confirmed = eventually(
        "the deadline confirmed at the village",
        ARRIVAL_TIMEOUT,
        || {
            let number = number.clone();
            async move {
                let mut clerk = clerk(addr).await;
                let case = clerk
                    .get_case(pb::GetCaseRequest {
                        case_number: number,
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .case?;
                (!case.deadline_provisional).then_some(case)
            }
        },
    )
    .await;
    let due = confirmed.deadline.unwrap();
    assert_eq!((due.year, due.month, due.day), (2027, 1, 8));
    c.village.stop().await;
    let reg = open_register(&c.village_cfg, VILLAGE);
    assert_eq!(reg.calendar.version, 2);
}

/// Never-more at the county: adding a material is refused (every problem, the legal basis
/// named); the documented revision that removes one is published and reaches the village,
/// where the case accepted before keeps version 1 and a new one follows version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_revision_is_held_to_never_more_and_reaches_the_village() {
    let c = County::start(Arc::new(SystemClock)).await;
    let before = accept_at(&c.village, medical_aid(&["zyfp", "xnhpj", "dbz"])).await;
    assert_eq!(before.item_version, 1);

    // The example, plus a required material: an increase without a legal basis.
    let dir = tempfile::tempdir().unwrap();
    let more = dir.path().join("more.toml");
    let text = std::fs::read_to_string(example("catalog.toml")).unwrap();
    let text = text.replacen(
        "# Version 1 also required this group",
        "[[materials]]\ncode = \"sqb\"\nname = \"医疗救助申请表\"\noriginals = 1\n\n# Version 1 also required this group",
        1,
    );
    std::fs::write(&more, text).unwrap();
    let (ok, out) = author(&c.county, "catalog", &more, &[]);
    assert!(!ok, "an increase without a legal basis is refused: {out}");
    assert!(out.contains("修订被拒绝，共1个问题"), "{out}");
    assert!(
        out.contains("[materials] 只减不增：新增申报材料“医疗救助申请表”，且未注明法律依据"),
        "{out}"
    );

    // A file with problems is refused before anything is sent, every problem at once.
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(example("catalog.toml"))
        .unwrap()
        .replace("tier = \"township\"", "tier = \"town\"")
        .replace("use_level = 4", "use_level = 9");
    std::fs::write(&broken, text).unwrap();
    let (ok, out) = author(&c.county, "catalog", &broken, &["--json"]);
    assert!(!ok);
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["outcome"], "invalid_file");
    let fields: Vec<&str> = reply["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["use_level", "steps[1].tier", "steps[2].tier"]);

    // Checked first, then published.
    let (ok, out) = author(
        &c.county,
        "catalog",
        &example("catalog.toml"),
        &["--check", "--json"],
    );
    assert!(ok, "{out}");
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["outcome"], "checked");
    assert_eq!(reply["event"], Value::Null);
    assert_eq!(item_version(c.county.admin, "430421-YB-0001").await, 1);

    let (ok, out) = author(&c.county, "catalog", &example("catalog.toml"), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("事项“医疗救助申请”（430421-YB-0001）第2版已发布，下发至衡阳县（430421000000）所辖全部节点"),
        "{out}"
    );
    // Published once: the same file again is not the next version.
    let (ok, out) = author(&c.county, "catalog", &example("catalog.toml"), &["--json"]);
    assert!(!ok);
    let reply: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["outcome"], "refused");
    assert_eq!(reply["problems"][0]["field"], "version");

    for (what, addr) in [("township", c.township.admin), ("village", c.village.admin)] {
        eventually(
            &format!("version 2 at the {what}"),
            ARRIVAL_TIMEOUT,
            || async move { (item_version(addr, "430421-YB-0001").await == 2).then_some(()) },
        )
        .await;
    }

    // The case accepted before keeps version 1, and goes on under it.
    let mut village = c.village.clerk().await;
    let kept = village
        .get_case(pb::GetCaseRequest {
            case_number: before.number.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(kept.item_version, 1);
    let prechecked = village
        .precheck(pb::StepRequest {
            operator: "测试员".to_owned(),
            case_number: before.number.clone(),
            opinion: "材料齐全".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(prechecked.item_version, 1);
    // A new application follows version 2: the 低保证/五保证 copy is no longer asked for.
    let after = accept_at(&c.village, medical_aid(&["zyfp", "xnhpj"])).await;
    assert_eq!(after.item_version, 2);
}
