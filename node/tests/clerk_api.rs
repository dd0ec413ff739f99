//! The clerk API over real gRPC, in-process: a sled store in a temp dir, `server::run` on
//! `127.0.0.1:0`, a manual clock at Beijing 2026-09-24 09:00. The village side of a case
//! (accept, pre-check, 转报 and what custody forbids afterwards, requests to the custodian),
//! 即办 with evaluation and correction, listings and the register, the error table (codes
//! and Chinese messages), durability across a restart, and numbering that only acceptances
//! consume.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use yimen_node::clock::ManualClock;
use yimen_node::config::NodeConfig;
use yimen_node::server::{self, StartError};
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;

const VILLAGE: &str = "430421105204";
/// 演陂镇, the township of 河泉村.
const TOWNSHIP: &str = "430421105000";
/// 西渡镇, the township of a resident of 西渡镇示范村 applying at 河泉村 (同城通办).
const XIDU: &str = "430421100000";
const SENIOR_CARD: &str = "430421-MZ-0001";
const MEDICAL_AID: &str = "430421-YB-0001";
const CLERK: &str = "王芳";
/// Bound on any one call or stop: a hang is a failure, not a stuck test.
const BOUND: Duration = Duration::from_secs(10);

fn beijing(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn date(y: i32, m: u32, d: u32) -> pb::Date {
    pb::Date {
        year: y,
        month: m,
        day: d,
    }
}

fn start_clock() -> ManualClock {
    ManualClock::at_beijing(beijing("2026-09-24 09:00"))
}

/// A node served in-process until `stop`.
struct Node {
    client: ClerkClient<Channel>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartError>>,
}

impl Node {
    /// Serves the node whose store is `<dir>/store`, on a fresh loopback port.
    async fn start(dir: &Path, clock: &ManualClock) -> Node {
        let config = NodeConfig::parse(
            &format!("id = \"{VILLAGE}\"\nname = \"河泉村便民服务中心\"\ncache_mib = 4\n"),
            dir,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(
            config,
            listener,
            Arc::new(clock.clone()),
            async {
                let _ = stopped.await;
            },
        ));
        let client = tokio::time::timeout(BOUND, ClerkClient::connect(format!("http://{addr}")))
            .await
            .expect("connect timed out")
            .unwrap();
        Node {
            client,
            shutdown,
            task,
        }
    }

    /// Shuts the server down through its oneshot and waits until the node thread has ended.
    async fn stop(self) {
        let Node {
            client,
            shutdown,
            task,
        } = self;
        drop(client);
        shutdown.send(()).unwrap();
        let ended = tokio::time::timeout(BOUND, task)
            .await
            .expect("the server did not stop")
            .unwrap();
        if let Err(e) = ended {
            panic!("the server failed: {e}");
        }
    }
}

/// Bounds a call and unwraps the transport layer.
async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(BOUND, call)
        .await
        .expect("call timed out")
        .map(tonic::Response::into_inner)
}

/// Asserts a refusal with `code` whose message contains `phrase`; returns the message.
#[track_caller]
fn refused<T: std::fmt::Debug>(got: Result<T, Status>, code: Code, phrase: &str) -> String {
    match got {
        Ok(v) => panic!("expected {code:?} ({phrase}), got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(phrase),
                "{code:?}: message {:?} lacks {phrase:?}",
                s.message()
            );
            s.message().to_owned()
        }
    }
}

fn senior() -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: CLERK.to_owned(),
        item_code: SENIOR_CARD.to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "11010519491231002X".to_owned(),
            name: "张桂英".to_owned(),
            household: VILLAGE.to_owned(),
            statuses: Vec::new(),
        }),
        materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
        helper: None,
    }
}

fn medical(household: &str) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: CLERK.to_owned(),
        item_code: MEDICAL_AID.to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "430421199001011233".to_owned(),
            name: "李四".to_owned(),
            household: household.to_owned(),
            statuses: vec!["dibao".to_owned()],
        }),
        materials: vec!["zyfp".to_owned(), "xnhpj".to_owned(), "dbz".to_owned()],
        helper: None,
    }
}

/// Applies; panics unless accepted. Returns the slip's case and text.
async fn accept(c: &mut ClerkClient<Channel>, r: pb::ApplyRequest) -> (pb::CaseView, String) {
    let reply = bounded(c.apply(r)).await.unwrap();
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => (slip.case.unwrap(), slip.text_zh),
        other => panic!("expected an acceptance, got {other:?}"),
    }
}

async fn get(c: &mut ClerkClient<Channel>, number: &str) -> Result<pb::CaseView, Status> {
    bounded(c.get_case(pb::GetCaseRequest {
        case_number: number.to_owned(),
    }))
    .await
    .map(|r| r.case.unwrap())
}

fn step(number: &str) -> pb::StepRequest {
    pb::StepRequest {
        operator: CLERK.to_owned(),
        case_number: number.to_owned(),
        opinion: "材料齐全，情况属实".to_owned(),
    }
}

fn forward(number: &str) -> pb::ForwardRequest {
    pb::ForwardRequest {
        operator: CLERK.to_owned(),
        case_number: number.to_owned(),
        to_node: String::new(),
        to_department: String::new(),
        reason: String::new(),
    }
}

fn complete(number: &str) -> pb::CompleteRequest {
    pb::CompleteRequest {
        operator: CLERK.to_owned(),
        case_number: number.to_owned(),
        result: "已发放老年优待证".to_owned(),
    }
}

fn evaluate(number: &str, satisfaction: u32) -> pb::EvaluateRequest {
    pb::EvaluateRequest {
        operator: CLERK.to_owned(),
        case_number: number.to_owned(),
        satisfaction,
    }
}

fn withdraw(number: &str) -> pb::RelayRequest {
    pb::RelayRequest {
        operator: CLERK.to_owned(),
        case_number: number.to_owned(),
        kind: Some(pb::relay_request::Kind::WithdrawalReason(
            "申请人主动撤回".to_owned(),
        )),
    }
}

fn kinds(case: &pb::CaseView) -> Vec<&str> {
    case.events.iter().map(|e| e.kind.as_str()).collect()
}

fn numbers(cases: &[pb::CaseView]) -> Vec<&str> {
    cases.iter().map(|c| c.number.as_str()).collect()
}

/// Accepts, pre-checks and forwards a 医疗救助 case of a resident of `household`; checks the
/// slip and that custody went to `township`, not yet signed for. Returns the case number.
async fn medical_forwarded(
    c: &mut ClerkClient<Channel>,
    household: &str,
    township: &str,
) -> String {
    let (case, slip) = accept(c, medical(household)).await;
    let number = case.number.clone();
    assert!(slip.contains(&number), "{slip}");
    assert!(slip.contains("办结期限：2026-10-15"), "{slip}");
    assert_eq!(case.deadline, Some(date(2026, 10, 15)));
    assert_eq!(
        (case.status.as_str(), case.custodian.as_str()),
        ("processing", VILLAGE)
    );

    let pre = bounded(c.precheck(step(&number)))
        .await
        .unwrap()
        .case
        .unwrap();
    assert_eq!(kinds(&pre), ["accepted", "step_done"]);

    let sent = bounded(c.forward(forward(&number)))
        .await
        .unwrap()
        .case
        .unwrap();
    assert_eq!(kinds(&sent), ["accepted", "step_done", "forwarded"]);
    let now = get(c, &number).await.unwrap();
    assert_eq!(now.custodian, township);
    assert!(!now.received, "in transit until the township signs for it");
    assert_eq!(now.status, "processing");
    number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_village_handles_its_side_of_both_items() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let node = Node::start(dir.path(), &clock).await;
    let mut c = node.client.clone();

    // 医疗救助: accepted, pre-checked, forwarded by the topology to the household's township.
    let number = medical_forwarded(&mut c, VILLAGE, TOWNSHIP).await;
    let held = get(&mut c, &number).await.unwrap();

    // The village is no longer custodian: it can neither act again nor finish the case.
    refused(
        bounded(c.forward(forward(&number))).await,
        Code::FailedPrecondition,
        "办理",
    );
    let supplement = pb::SupplementRequest {
        operator: CLERK.to_owned(),
        case_number: number.clone(),
        materials: vec!["czybpj".to_owned()],
    };
    refused(
        bounded(c.supplement(supplement)).await,
        Code::FailedPrecondition,
        "办理",
    );
    refused(
        bounded(c.complete(complete(&number))).await,
        Code::FailedPrecondition,
        "办理",
    );
    assert_eq!(
        get(&mut c, &number).await.unwrap(),
        held,
        "refusals change nothing"
    );

    // Requests go to the custodian; the village decides nothing.
    let relayed = bounded(c.relay_request(withdraw(&number))).await.unwrap();
    assert!(!relayed.decided_here);
    assert_eq!(relayed.addressed_to, TOWNSHIP);
    assert!(
        relayed.request_id.starts_with(VILLAGE),
        "{}",
        relayed.request_id
    );
    let assist = pb::AssistRequest {
        operator: CLERK.to_owned(),
        case_number: number.clone(),
        opinion: "申请人家庭情况属实".to_owned(),
    };
    let assisted = bounded(c.assist(assist)).await.unwrap();
    assert!(!assisted.decided_here);
    assert_eq!(assisted.addressed_to, TOWNSHIP);
    assert_ne!(assisted.request_id, relayed.request_id);
    let after = get(&mut c, &number).await.unwrap();
    assert_eq!(after, held, "a relayed request is not a case event");

    // 同城通办: a resident of 西渡镇 applies at 河泉村; the case goes to 西渡镇.
    medical_forwarded(&mut c, "430421100201", XIDU).await;

    // 老年优待证, 即办: evaluation only after completion, within 1..=5; a correction keeps the
    // original acceptance.
    let (card, _) = accept(&mut c, senior()).await;
    let n = card.number.clone();
    let original = card.events[0].text_zh.clone();
    refused(
        bounded(c.evaluate(evaluate(&n, 1))).await,
        Code::FailedPrecondition,
        "不能进行此操作",
    );
    let correction = pb::CorrectRequest {
        operator: CLERK.to_owned(),
        case_number: n.clone(),
        of_seq: 1,
        correction: Some(pb::correct_request::Correction::ApplicantName(
            "张桂瑛".to_owned(),
        )),
        reason: "姓名录入笔误".to_owned(),
    };
    let corrected = bounded(c.correct(correction)).await.unwrap().case.unwrap();
    assert_eq!(kinds(&corrected), ["accepted", "corrected"]);
    assert_eq!(corrected.events[0].text_zh, original, "the original stays");
    assert_eq!(corrected.events[1].author, VILLAGE);
    assert_eq!(corrected.events[1].operator, CLERK);

    let done = bounded(c.complete(complete(&n)))
        .await
        .unwrap()
        .case
        .unwrap();
    assert_eq!(done.status, "completed");
    for out_of_range in [0, 6] {
        refused(
            bounded(c.evaluate(evaluate(&n, out_of_range))).await,
            Code::InvalidArgument,
            "满意度",
        );
    }
    let rated = bounded(c.evaluate(evaluate(&n, 1)))
        .await
        .unwrap()
        .case
        .unwrap();
    assert_eq!(
        kinds(&rated),
        ["accepted", "corrected", "completed", "evaluated"]
    );
    assert_eq!(rated.events[0].text_zh, original);
    refused(
        bounded(c.evaluate(evaluate(&n, 2))).await,
        Code::FailedPrecondition,
        "不能进行此操作",
    );

    // A withdrawal of a case the village holds is decided here at once.
    let (card, _) = accept(&mut c, senior()).await;
    let withdrawn = bounded(c.relay_request(withdraw(&card.number)))
        .await
        .unwrap();
    assert!(withdrawn.decided_here);
    assert_eq!(withdrawn.addressed_to, VILLAGE);
    assert_eq!(withdrawn.case.unwrap().status, "withdrawn");
    let now = get(&mut c, &card.number).await.unwrap();
    assert_eq!(now.status, "withdrawn");
    assert_eq!(kinds(&now), ["accepted", "withdrawn"]);

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_list_by_status_deadline_and_overdue_and_the_register_keeps_the_day() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let node = Node::start(dir.path(), &clock).await;
    let mut c = node.client.clone();

    // Completed, withdrawn, open 即办 (due today), and 医疗救助 forwarded (due 2026-10-15).
    let done = accept(&mut c, senior()).await.0.number;
    bounded(c.complete(complete(&done))).await.unwrap();
    let gone = accept(&mut c, senior()).await.0.number;
    bounded(c.relay_request(withdraw(&gone))).await.unwrap();
    let open = accept(&mut c, senior()).await.0.number;
    let aid = medical_forwarded(&mut c, VILLAGE, TOWNSHIP).await;

    let lister = c.clone();
    let list = async |status: &str, overdue_only: bool, due_by: Option<pb::Date>| {
        bounded(lister.clone().list_cases(pb::ListCasesRequest {
            status: status.to_owned(),
            overdue_only,
            due_by,
            limit: 0,
        }))
        .await
        .map(|r| r.cases)
    };
    assert_eq!(
        numbers(&list("processing", false, None).await.unwrap()),
        [&open, &aid]
    );
    assert_eq!(
        numbers(&list("completed", false, None).await.unwrap()),
        [&done]
    );
    assert_eq!(
        numbers(&list("withdrawn", false, None).await.unwrap()),
        [&gone]
    );
    assert_eq!(
        numbers(&list("", false, None).await.unwrap()),
        [&done, &gone, &open, &aid]
    );
    assert_eq!(
        numbers(&list("", false, Some(date(2026, 9, 24))).await.unwrap()),
        [&open]
    );
    assert_eq!(
        numbers(&list("", false, Some(date(2026, 10, 14))).await.unwrap()),
        [&open]
    );
    assert_eq!(
        numbers(&list("", false, Some(date(2026, 10, 15))).await.unwrap()),
        [&open, &aid]
    );
    assert!(
        list("", true, None).await.unwrap().is_empty(),
        "nothing overdue today"
    );
    refused(
        list("", false, Some(date(2026, 2, 30))).await,
        Code::InvalidArgument,
        "不是有效日期",
    );
    let msg = refused(
        list("tekun", false, None).await,
        Code::InvalidArgument,
        "状态",
    );
    for known in ["processing", "completed", "withdrawn"] {
        assert!(msg.contains(known), "{msg}");
    }

    // The register of the day: every case event, in order, with its case number.
    let expected = [
        (&done, "accepted"),
        (&done, "completed"),
        (&gone, "accepted"),
        (&gone, "withdrawn"),
        (&open, "accepted"),
        (&aid, "accepted"),
        (&aid, "step_done"),
        (&aid, "forwarded"),
    ];
    let day = bounded(c.register(pb::RegisterRequest {
        day: Some(date(2026, 9, 24)),
    }))
    .await
    .unwrap();
    assert_eq!(day.entries.len(), day.case_numbers.len());
    let got: Vec<(&String, &str)> = day
        .case_numbers
        .iter()
        .zip(&day.entries)
        .map(|(n, e)| (n, e.kind.as_str()))
        .collect();
    assert_eq!(got, expected);
    assert!(day.entries.iter().all(|e| e.at == "2026-09-24 09:00"));
    assert!(
        day.entries[0].text_zh.contains("受理"),
        "{}",
        day.entries[0].text_zh
    );
    let today = bounded(c.register(pb::RegisterRequest { day: None }))
        .await
        .unwrap();
    assert_eq!(today, day, "no day: today's register");

    // On the deadline day nothing new is overdue; the day after, 医疗救助 is.
    clock.set(ManualClock::at_beijing(beijing("2026-10-15 09:00")).now_utc());
    assert_eq!(numbers(&list("", true, None).await.unwrap()), [&open]);
    clock.set(ManualClock::at_beijing(beijing("2026-10-20 09:00")).now_utc());
    let late = list("", true, None).await.unwrap();
    assert_eq!(numbers(&late), [&open, &aid]);
    assert!(late.iter().all(|c| c.overdue));
    let aid_now = list("processing", false, None)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.number == aid)
        .unwrap();
    assert!(aid_now.overdue);
    let done_now = list("completed", false, None).await.unwrap();
    assert!(!done_now[0].overdue, "a completed case is never overdue");
    let empty = bounded(c.register(pb::RegisterRequest { day: None }))
        .await
        .unwrap();
    assert!(empty.entries.is_empty() && empty.case_numbers.is_empty());

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_deliberate_codes_and_chinese_messages() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let node = Node::start(dir.path(), &clock).await;
    let mut c = node.client.clone();

    let with = |f: &dyn Fn(&mut pb::ApplyRequest)| {
        let mut r = senior();
        f(&mut r);
        r
    };
    let bad_check_digit = "110105194912310021";
    let rows: Vec<(&str, pb::ApplyRequest, Code, &str)> = vec![
        (
            "unknown item",
            with(&|r| r.item_code = "430421-XX-9999".to_owned()),
            Code::NotFound,
            "事项",
        ),
        (
            "bad check digit",
            with(&|r| r.applicant.as_mut().unwrap().id_number = bad_check_digit.to_owned()),
            Code::InvalidArgument,
            "身份证号码",
        ),
        (
            "empty name",
            with(&|r| r.applicant.as_mut().unwrap().name = "  ".to_owned()),
            Code::InvalidArgument,
            "申请人姓名",
        ),
        (
            "bad household",
            with(&|r| r.applicant.as_mut().unwrap().household = "430421000204".to_owned()),
            Code::InvalidArgument,
            "行政区划代码",
        ),
        (
            "unknown status",
            with(&|r| r.applicant.as_mut().unwrap().statuses = vec!["tekun".to_owned()]),
            Code::InvalidArgument,
            "身份类别",
        ),
        (
            "no operator",
            with(&|r| r.operator = " ".to_owned()),
            Code::InvalidArgument,
            "经办人",
        ),
    ];
    for (what, request, code, phrase) in rows {
        let got = bounded(c.apply(request)).await;
        let msg = refused(got, code, phrase);
        assert!(!msg.contains(bad_check_digit), "{what}: {msg}");
        assert!(!msg.contains("11010519491231002X"), "{what}: {msg}");
    }

    for (number, code, phrase) in [
        ("12345", Code::InvalidArgument, "办件编号"),
        ("", Code::InvalidArgument, "办件编号"),
        ("430421105204202609240099", Code::NotFound, "办件"),
    ] {
        refused(get(&mut c, number).await, code, phrase);
        refused(bounded(c.precheck(step(number))).await, code, phrase);
    }

    let add = |from: pb::Date, working_days: u32| pb::AddWorkingDaysRequest {
        from: Some(from),
        working_days,
    };
    let ok = bounded(c.add_working_days(add(date(2026, 9, 24), 10)))
        .await
        .unwrap();
    assert_eq!(ok.date, Some(date(2026, 10, 15)));
    assert_eq!(ok.calendar_version, 1);
    refused(
        bounded(c.add_working_days(add(date(2026, 12, 25), 10))).await,
        Code::OutOfRange,
        "2027",
    );
    refused(
        bounded(c.add_working_days(add(date(2026, 13, 1), 1))).await,
        Code::InvalidArgument,
        "不是有效日期",
    );
    refused(
        bounded(c.add_working_days(pb::AddWorkingDaysRequest {
            from: None,
            working_days: 1,
        }))
        .await,
        Code::InvalidArgument,
        "起算日期",
    );

    let cal = bounded(c.get_calendar(pb::GetCalendarRequest {}))
        .await
        .unwrap();
    assert_eq!(cal.version, 1);
    let years: Vec<(i32, u32)> = cal.years.iter().map(|y| (y.year, y.working_days)).collect();
    assert_eq!(years, [(2025, 248), (2026, 248)]);
    assert!(cal.years.iter().all(|y| !y.source.is_empty()));

    // Nothing above was accepted: the first acceptance is number 0001.
    let (case, _) = accept(&mut c, senior()).await;
    assert_eq!(case.number, format!("{VILLAGE}202609240001"));

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_survive_a_restart_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let node = Node::start(dir.path(), &clock).await;
    let mut c = node.client.clone();
    let first = accept(&mut c, senior()).await.0.number;
    let second = medical_forwarded(&mut c, VILLAGE, TOWNSHIP).await;
    // A request decided here (the village holds `first`) still uses up its id.
    let withdrawn = accept(&mut c, senior()).await.0.number;
    let first_request = bounded(c.relay_request(withdraw(&withdrawn)))
        .await
        .unwrap()
        .request_id;
    let before = [
        get(&mut c, &first).await.unwrap(),
        get(&mut c, &second).await.unwrap(),
    ];
    drop(c);
    node.stop().await;

    clock.advance(chrono::Duration::hours(1));
    let node = Node::start(dir.path(), &clock).await;
    let mut c = node.client.clone();
    let after = [
        get(&mut c, &first).await.unwrap(),
        get(&mut c, &second).await.unwrap(),
    ];
    assert_eq!(after, before);
    let (third, _) = accept(&mut c, senior()).await;
    assert_eq!(third.number, format!("{VILLAGE}202609240004"));
    assert_eq!(third.accepted_at, "2026-09-24 10:00");
    // Request ids are never reused across a restart.
    let second_request = bounded(c.relay_request(withdraw(&third.number)))
        .await
        .unwrap()
        .request_id;
    assert_ne!(first_request, second_request);
    drop(c);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_application_numbers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = start_clock();
    let node = Node::start(dir.path(), &clock).await;
    let mut c = node.client.clone();

    let mut lacking = medical(VILLAGE);
    lacking.materials = vec!["zyfp".to_owned()];
    lacking.applicant.as_mut().unwrap().statuses.clear();
    let reply = bounded(c.apply(lacking)).await.unwrap();
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Incomplete(notice)) => {
            assert_eq!(notice.lines_zh.len(), 3, "{:?}", notice.lines_zh);
            assert!(
                notice.text_zh.contains("一次性告知书"),
                "{}",
                notice.text_zh
            );
        }
        other => panic!("expected a one-time notice, got {other:?}"),
    }
    let listed = bounded(c.list_cases(pb::ListCasesRequest::default()))
        .await
        .unwrap();
    assert!(listed.cases.is_empty());
    let day = bounded(c.register(pb::RegisterRequest::default()))
        .await
        .unwrap();
    assert!(day.entries.is_empty());

    let (case, _) = accept(&mut c, senior()).await;
    assert_eq!(case.number, format!("{VILLAGE}202609240001"));
    node.stop().await;
}
