//! The desk with real processes: the county and the township are `yimen-hub` binaries, the
//! village runs in this process; a 医疗救助 case goes from township review to disbursement
//! through `yimen-hub desk … --json` alone, as the township's reviewer (an operator
//! certificate made by `yimen-hub init --operator`) and as the county's 医保局 station (a
//! station certificate made by `yimen-hub init --station`).
//!
//! The case reaches the township from the village and the county from the township by the
//! cross-tier handoffs (转报 over the links, 签收 on arrival); the 公示 ends by the township's
//! timer once the township, restarted "30 days later" (`serve --clock-offset-secs`), finds it
//! has run its course.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;

use common::*;
use yimen_proto::pb;

/// How far ahead the boxes run after the township's restart: past any 公示 of 7 working days.
const LATER_SECS: i64 = 30 * 24 * 3600;
/// Longest wait for a handoff to cross a link (or a restarted hub's timer to act).
const HANDOFF_WAIT: Duration = Duration::from_secs(60);

/// The system clock, ahead by an offset the test moves (the in-process village's clock).
#[derive(Clone, Debug, Default)]
struct Ahead(Arc<AtomicI64>);

impl yimen_node::clock::Clock for Ahead {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        yimen_node::clock::SystemClock.now()
            + chrono::Duration::seconds(self.0.load(Ordering::SeqCst))
    }
}

/// The kinds of a case's events, in order.
fn kinds(case: &Value) -> Vec<String> {
    case["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// A complete 医疗救助 application by a 低保 resident of the village.
fn medical_aid_application() -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: "村办事员".to_owned(),
        item_code: "430421-YB-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "430421199001011233".to_owned(),
            name: "王秀兰".to_owned(),
            household: VILLAGE.to_owned(),
            statuses: vec!["dibao".to_owned()],
        }),
        materials: vec!["zyfp".to_owned(), "xnhpj".to_owned(), "dbz".to_owned()],
        helper: None,
    }
}

/// The county and the township (each serving its children) and the village below them:
/// their config files and listeners.
struct Tiers {
    county_cfg: PathBuf,
    township_cfg: PathBuf,
    village_cfg: PathBuf,
    county_listen: std::net::SocketAddr,
    township_listen: std::net::SocketAddr,
}

impl Tiers {
    fn new(d: &Deployment) -> Tiers {
        let county_id = d.hub_identity(COUNTY);
        let township_id = d.hub_identity(TOWNSHIP);
        let village_id = d.node_identity(VILLAGE);
        let county_listen = free_addr();
        let township_listen = free_addr();
        Tiers {
            county_cfg: d.config(COUNTY, &county_id, None, Some(county_listen), ""),
            township_cfg: d.config(
                TOWNSHIP,
                &township_id,
                Some(county_listen),
                Some(township_listen),
                "",
            ),
            village_cfg: d.config(VILLAGE, &village_id, Some(township_listen), None, ""),
            county_listen,
            township_listen,
        }
    }
}

/// The village accepts a 医疗救助 application (once its parent has refilled it), pre-checks
/// it and forwards it to the township; its number.
async fn accept_and_forward(
    clerk: &pb::clerk_client::ClerkClient<tonic::transport::Channel>,
) -> String {
    let number = eventually("the village accepts", HANDOFF_WAIT, || {
        let mut c = clerk.clone();
        async move {
            c.apply(medical_aid_application())
                .await
                .ok()
                .map(|r| accepted_number(r.into_inner()))
        }
    })
    .await;
    let mut c = clerk.clone();
    c.precheck(pb::StepRequest {
        operator: "村办事员".to_owned(),
        case_number: number.clone(),
        opinion: "材料齐全，符合低保条件".to_owned(),
    })
    .await
    .unwrap();
    c.forward(pb::ForwardRequest {
        operator: "村办事员".to_owned(),
        case_number: number.clone(),
        reason: "初审通过，转乡镇审核".to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    number
}

/// The village's clerk asks for the case's withdrawal (a request to its custodian).
async fn withdraw(
    clerk: &mut pb::clerk_client::ClerkClient<tonic::transport::Channel>,
    number: &str,
) -> pb::RequestReply {
    clerk
        .relay_request(pb::RelayRequest {
            operator: "村办事员".to_owned(),
            case_number: number.to_owned(),
            kind: Some(pb::relay_request::Kind::WithdrawalReason(
                "申请人考虑撤回".to_owned(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
}

/// From township review to disbursement with `yimen-hub desk … --json` alone: the township's
/// reviewer reviews and starts the 公示; the township's timer ends it and hands the case to
/// the county's 医保局; the station approves and disburses, and the case goes back to the
/// village, which completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medical_aid_case_goes_from_township_review_to_disbursement_by_desk_commands() {
    let d = Deployment::new();
    let Tiers {
        county_cfg,
        township_cfg,
        village_cfg,
        county_listen,
        township_listen,
    } = Tiers::new(&d);

    // The county runs "30 days later" from the start: it acts only after the 公示.
    let later = LATER_SECS.to_string();
    let _county =
        Hub::start_with_args(&county_cfg, "county", &["--clock-offset-secs", &later]).await;
    let township = Hub::start(&township_cfg, "township-1").await;
    let clock = Ahead::default();
    let village = Village::start_with_clock(&village_cfg, Arc::new(clock.clone()))
        .await
        .unwrap();

    let reviewer = Desk::new(
        &d,
        &["--operator", &format!("{TOWNSHIP}/wang.li")],
        "keys-reviewer",
        township_listen,
    );
    let station = Desk::new(
        &d,
        &["--station", &format!("{COUNTY}/ybj")],
        "keys-ybj",
        county_listen,
    );

    // The village accepts (once its parent has refilled it), pre-checks and forwards.
    let clerk = village.clerk().await;
    let mut c = clerk.clone();
    let number = accept_and_forward(&clerk).await;

    // At the township: the case arrives (the reviewer's desk sees it) and waits for review.
    let arrived = reviewer
        .wait_for("the case at the township", &number, |c| {
            c["custodian"] == TOWNSHIP
        })
        .await;
    assert_eq!(arrived["desk"], TOWNSHIP);
    let pending = reviewer.ok(&["pending"]);
    assert_eq!(pending["desk"], TOWNSHIP);
    let mine = pending["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["number"] == number.as_str())
        .unwrap_or_else(|| panic!("not pending at the township: {pending}"));
    assert_eq!(mine["next_action"], "review", "{mine}");
    assert_eq!(mine["next_step"], "sh");

    // A request from the village reaches the reviewer's desk, who declines it with a reason.
    let relayed = withdraw(&mut c, &number).await;
    assert_eq!(relayed.addressed_to, TOWNSHIP);
    let requests = eventually("the request at the township", HANDOFF_WAIT, || {
        let listed = reviewer.ok(&["requests"]);
        async move {
            listed["requests"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                .then_some(listed)
        }
    })
    .await;
    let request = &requests["requests"][0];
    assert_eq!(
        request["request_id"],
        relayed.request_id.as_str(),
        "{requests}"
    );
    assert_eq!(request["kind"], "withdrawal", "{requests}");
    let (err, _) = reviewer
        .run(&["decide-request", &number, &relayed.request_id, "--decline"])
        .unwrap_err();
    assert_eq!(
        err["error"]["code"], "InvalidArgument",
        "a reason is required: {err}"
    );
    let declined = reviewer.ok(&[
        "decide-request",
        &number,
        &relayed.request_id,
        "--decline",
        "--reason",
        "申请人电话确认继续办理",
    ]);
    let events = kinds(&declined["case"]);
    assert!(
        events.ends_with(&["received".to_owned(), "request_declined".to_owned()]),
        "{events:?}"
    );
    assert_eq!(
        reviewer.ok(&["requests"])["requests"],
        serde_json::json!([])
    );

    // The desk is never offered in plaintext: the loopback clerk listener does not serve it.
    let mut plain = pb::desk_client::DeskClient::connect(format!("http://{}", township.admin))
        .await
        .unwrap();
    let refused = plain
        .pending(pb::PendingRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");

    // The station cannot act on a case the township holds: it does not even see it.
    let (err, _) = station
        .run(&["approve", &number, "--operator", "李四"])
        .unwrap_err();
    assert_eq!(err["error"]["code"], "NotFound", "{err}");
    let (err, _) = station.run(&["show", &number]).unwrap_err();
    assert_eq!(err["error"]["code"], "NotFound", "{err}");
    // An operator certificate acts under its holder's name only.
    let (err, _) = reviewer
        .run(&["review", &number, "--operator", "someone.else"])
        .unwrap_err();
    assert_eq!(err["error"]["code"], "InvalidArgument", "{err}");
    // Not the step it is: the next step is the review, not the notice.
    let (err, _) = reviewer.run(&["notice", &number]).unwrap_err();
    assert_eq!(err["error"]["code"], "FailedPrecondition", "{err}");

    // 审核, then 公示 at the home village.
    let reviewed = reviewer.ok(&["review", &number, "--opinion", "审核通过"]);
    assert_eq!(reviewed["case"]["custodian"], TOWNSHIP);
    assert_eq!(reviewed["case"]["status"], "processing");
    assert_eq!(reviewed["case"]["next_step"], "公示");
    assert!(reviewed["forwarded_to"].is_null(), "{reviewed}");
    let noticed = reviewer.ok(&["notice", &number]);
    assert_eq!(noticed["case"]["status"], "in_notice", "{noticed}");
    let events = kinds(&noticed["case"]);
    assert!(events.ends_with(&["step_done".to_owned(), "notice_started".to_owned()]));
    let pending = reviewer.ok(&["pending"]);
    let mine = pending["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["number"] == number.as_str())
        .unwrap()
        .clone();
    assert!(mine["notice_ends"].is_string(), "{mine}");
    // The same, for people.
    let text = reviewer.text(&["pending"]);
    assert!(text.contains(&format!("窗口 {TOWNSHIP}")), "{text}");
    assert!(text.contains(&number) && text.contains("公示中"), "{text}");
    let text = reviewer.text(&["show", &number]);
    assert!(
        text.contains("办理记录") && text.contains("审核通过"),
        "{text}"
    );
    assert!(
        !mine["due"]
            .as_array()
            .unwrap()
            .contains(&"notice_ended".into()),
        "{mine}"
    );

    // 30 days later: the township's timer ends the 公示 and hands the case to the 医保局.
    township.kill();
    clock.0.store(LATER_SECS, Ordering::SeqCst);
    let _township = Hub::start_with_args(
        &township_cfg,
        "township-2",
        &["--clock-offset-secs", &later],
    )
    .await;
    let ybj = format!("{COUNTY}/ybj");
    let at_county = station
        .wait_for("the case at the 医保局", &number, |c| {
            c["custodian"] == ybj.as_str()
        })
        .await;
    let ended = kinds(&at_county["case"])
        .iter()
        .position(|k| k == "notice_ended")
        .unwrap();
    let ended_by = &at_county["case"]["events"][ended]["operator"];
    assert_eq!(ended_by, yimen_node::node::TIMER_OPERATOR);
    let pending = station.ok(&["pending", "--operator", "李四"]);
    assert_eq!(pending["desk"], ybj.as_str());
    let mine = pending["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["number"] == number.as_str())
        .unwrap_or_else(|| panic!("not pending at the station: {pending}"));
    assert_eq!(mine["next_action"], "approve");

    // A station names the person acting.
    let (err, _) = station.run(&["approve", &number]).unwrap_err();
    assert_eq!(err["error"]["code"], "InvalidArgument", "{err}");
    // The township's reviewer has no desk at the county.
    let county_reviewer = Desk {
        hub: county_listen,
        ..reviewer
    };
    let (err, _) = county_reviewer
        .run(&["--hub-id", COUNTY, "pending"])
        .unwrap_err();
    assert_eq!(err["error"]["code"], "PermissionDenied", "{err}");

    // 审批, 延长 (approved), 发放: the case then goes back to the village for 办结.
    let approved = station.ok(&[
        "approve",
        &number,
        "--operator",
        "李四",
        "--opinion",
        "同意救助",
    ]);
    assert_eq!(approved["case"]["custodian"], ybj.as_str());
    assert_eq!(approved["case"]["next_step"], "发放救助资金");
    // The timer ended the notice and handed the case on; the county signed for it (on
    // arrival, or at the station's first act) before approving.
    assert_eq!(
        kinds(&approved["case"])[ended..],
        ["notice_ended", "forwarded", "received", "step_done"].map(str::to_owned),
        "{approved}"
    );
    let before = approved["case"]["deadline"].as_str().unwrap().to_owned();
    let extended = station.ok(&[
        "extend",
        &number,
        "--operator",
        "李四",
        "--days",
        "5",
        "--reason",
        "需核实住院费用",
        "--approved-by",
        "县医保局局长",
    ]);
    assert!(
        extended["case"]["deadline"].as_str().unwrap() > before.as_str(),
        "{extended}"
    );
    let disbursed = station.ok(&[
        "disburse",
        &number,
        "--operator",
        "李四",
        "--opinion",
        "救助资金已发放",
    ]);
    assert_eq!(disbursed["forwarded_to"], VILLAGE, "{disbursed}");
    assert_eq!(disbursed["case"]["custodian"], VILLAGE);
    let events = kinds(&disbursed["case"]);
    let steps: Vec<&str> = disbursed["case"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step_done")
        .map(|e| e["author"].as_str().unwrap())
        .collect();
    assert_eq!(steps, [VILLAGE, TOWNSHIP, ybj.as_str(), ybj.as_str()]);
    assert_eq!(events.last().map(String::as_str), Some("forwarded"));

    // Back at the village: it signs for the case and completes it (办结).
    eventually("the case back at the village", HANDOFF_WAIT, || {
        let mut c = clerk.clone();
        let number = number.clone();
        async move {
            let case = c
                .get_case(pb::GetCaseRequest {
                    case_number: number,
                })
                .await
                .ok()?
                .into_inner()
                .case?;
            (case.custodian == VILLAGE && case.received).then_some(())
        }
    })
    .await;
    let done = c
        .complete(pb::CompleteRequest {
            operator: "村办事员".to_owned(),
            case_number: number.clone(),
            result: "救助资金已到账，告知申请人".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(done.status, "completed");

    // Supervision: nothing is in transit at the county once the village has signed.
    let county_op = Desk::new(
        &d,
        &["--operator", &format!("{COUNTY}/li.ming")],
        "keys-county-op",
        county_listen,
    );
    let transit = county_op.ok(&["transit", "--older-than-secs", "1"]);
    assert_eq!(transit["older_than_secs"], 1);
    assert!(
        !transit["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["case_number"] == number.as_str()),
        "{transit}"
    );
    let quarantined = county_op.ok(&["quarantine"]);
    assert_eq!(quarantined["quarantined"], serde_json::json!([]));
    village.stop().await;
}

/// 改派 with real processes: the county's operator hands a case held by a lost township to
/// the county's own desk with `yimen-hub desk reassign … --ca-dir`; the county refuses while
/// the township's certificate is not revoked, and after `yimen-hub pki revoke` writes the
/// reassignment and signs for the case itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_county_reassigns_a_lost_townships_case_only_after_its_revocation() {
    let d = Deployment::new();
    let Tiers {
        county_cfg,
        township_cfg,
        village_cfg,
        county_listen,
        ..
    } = Tiers::new(&d);
    let _county = Hub::start(&county_cfg, "county").await;
    let _township = Hub::start(&township_cfg, "township").await;
    let village = Village::start(&village_cfg).await.unwrap();
    let county_op = Desk::new(
        &d,
        &["--operator", &format!("{COUNTY}/zhao.liu")],
        "keys-county-operator",
        county_listen,
    );

    let number = accept_and_forward(&village.clerk().await).await;
    // The county sees the case signed for by the township (the receipt went up).
    county_op
        .wait_for("the township's receipt at the county", &number, |c| {
            c["custodian"] == TOWNSHIP && c["received"] == true
        })
        .await;

    // A withdrawal raised while the township holds the case waits at the township; the county
    // relays it. A case the village accepts after it reaches the county behind it (link order).
    let mut c = village.clerk().await;
    let withdrawal = withdraw(&mut c, &number).await;
    assert_eq!(withdrawal.addressed_to, TOWNSHIP);
    let later = accepted_number(c.apply(senior_application(1)).await.unwrap().into_inner());
    county_op
        .wait_for("the village's later case at the county", &later, |_| true)
        .await;

    let ca_dir = d.ca_dir();
    let reassign = [
        "reassign",
        "--from",
        TOWNSHIP,
        "--to",
        COUNTY,
        "--case",
        &number,
        "--reason",
        "乡镇便民服务中心设备被盗",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
    ];
    // The township is not revoked yet: refused, nothing written.
    let (err, _) = county_op.run(&reassign).unwrap_err();
    assert_eq!(err["error"]["code"], "FailedPrecondition", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("吊销"),
        "{err}"
    );
    let shown = county_op.ok(&["show", &number]);
    assert_eq!(shown["case"]["custodian"], TOWNSHIP, "{shown}");

    d.revoke(TOWNSHIP);
    let done = county_op.ok(&reassign);
    assert_eq!(done["case_numbers"], serde_json::json!([number]), "{done}");
    let shown = county_op.ok(&["show", &number]);
    assert_eq!(shown["case"]["custodian"], COUNTY, "{shown}");
    assert_eq!(shown["case"]["received"], true, "the county signed for it");
    let events = kinds(&shown["case"]);
    assert!(
        events.ends_with(&["reassigned".to_owned(), "received".to_owned()]),
        "{events:?}"
    );
    // The withdrawal waiting at the lost township was passed on: it waits at the county now.
    let requests = county_op.ok(&["requests"]);
    assert_eq!(
        requests["requests"][0]["request_id"],
        withdrawal.request_id.as_str(),
        "{requests}"
    );
    // Nothing left to reassign from the lost township.
    let (err, _) = county_op
        .run(&[
            "reassign",
            "--from",
            TOWNSHIP,
            "--to",
            COUNTY,
            "--reason",
            "其余办件",
            "--ca-dir",
            ca_dir.to_str().unwrap(),
        ])
        .unwrap_err();
    assert_eq!(err["error"]["code"], "NotFound", "{err}");
    // Quarantine list at the county: empty, readable.
    let listed = county_op.ok(&["quarantine"]);
    assert_eq!(listed["quarantined"], serde_json::json!([]), "{listed}");
    village.stop().await;
}
