//! One link with real processes: the township is the `yimen-hub` binary, killed and
//! restarted; the village runs in this process on its own sled directory; certificates come
//! from the PKI commands.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use yimen_proto::pb;

/// Cases accepted while the township is down arrive when it comes up; the links show
/// `connected` on both sides with no lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_accepted_while_the_township_is_down_arrive_when_it_comes_up() {
    let d = Deployment::new();
    let (township_cfg, village_cfg) = d.township_and_village();

    // First contact: a new village waits for its parent before it numbers anything.
    let township = Hub::start(&township_cfg, "township-1").await;
    let village = Village::start(&village_cfg).await.unwrap();
    let mut clerk = village.clerk().await;
    eventually(
        "the village's first refill",
        Duration::from_secs(30),
        || {
            let v = &village;
            async move {
                (link_state(&v.links().await, TOWNSHIP).as_deref() == Some("connected"))
                    .then_some(())
            }
        },
    )
    .await;
    let first = eventually("the village accepts", Duration::from_secs(30), || {
        let mut c = clerk.clone();
        async move {
            c.apply(senior_application(0))
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    })
    .await;
    assert!(matches!(
        first.outcome,
        Some(yimen_proto::pb::apply_reply::Outcome::Accepted(_))
    ));

    township.kill();
    let mut accepted = accept(&mut clerk, 5).await;
    accepted.push(numbers(&mut clerk).await[0].clone());
    accepted.sort();

    let township = Hub::start(&township_cfg, "township-2").await;
    let mut t = township.clerk().await;
    let held = eventually("the cases at the township", Duration::from_secs(30), || {
        let mut t = t.clone();
        let want = accepted.clone();
        async move {
            let have = numbers(&mut t).await;
            (have == want).then_some(have)
        }
    })
    .await;
    assert_eq!(held.len(), 6);
    let links = township.links();
    assert_eq!(
        link_state(&links, VILLAGE).as_deref(),
        Some("connected"),
        "{links}"
    );
    let _ = &mut t;
    village.stop().await;
}

/// Cases accepted at the village during the township's catch-up window: more than two full
/// batches (`BATCH_EVENTS_MAX` 512), so the township holds some but not all of them between
/// two group commits.
const CATCH_UP_CASES: usize = 1536;

/// How long after the first batch is seen at the township it is killed, per attempt.
const KILL_DELAYS: [Duration; 3] = [
    Duration::from_millis(40),
    Duration::from_millis(15),
    Duration::ZERO,
];

/// A township and a village that has had its first contact (refilled, numbering).
async fn linked(d: &Deployment) -> (PathBuf, PathBuf, Hub, Village, String) {
    let (township_cfg, village_cfg) = d.township_and_village();
    let township = Hub::start(&township_cfg, "township-1").await;
    let village = Village::start(&village_cfg).await.unwrap();
    let (first, _) = accept_when_whole(village.admin, Duration::from_secs(30)).await;
    let t = township.clerk().await;
    eventually(
        "the first case at the township",
        Duration::from_secs(30),
        || {
            let mut t = t.clone();
            let first = first.clone();
            async move { has_case(&mut t, &first).await.then_some(()) }
        },
    )
    .await;
    (township_cfg, village_cfg, township, village, first)
}

/// The township is SIGKILLed while it holds part of the village's backlog, in the middle of
/// receiving the rest; restarted, it ends with exactly the village's events: every case,
/// each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn township_killed_during_catch_up_ends_with_exactly_the_villages_cases() {
    let started = Instant::now();
    let d = Deployment::new();
    let (township_cfg, village_cfg, township, village, _) = linked(&d).await;
    township.kill();
    let scratch = d.path().join("at-kill");
    // The kill must land after the first batch is durable and before the last is: probes
    // find the moment, a copy of the killed store proves it; a kill that missed the window
    // is tried again with a new backlog and a shorter delay (at most three times).
    let mut backlog = Vec::new();
    let mut attempts = 0;
    let (before, at_kill) = loop {
        attempts += 1;
        assert!(
            attempts <= KILL_DELAYS.len(),
            "every kill missed the catch-up window"
        );
        let before = 1 + backlog.len() as u64;
        let fresh = accept_concurrently(village.admin, CATCH_UP_CASES, 8).await;
        let first = fresh[0].clone();
        backlog.extend(fresh);
        let township = Hub::start(&township_cfg, &format!("township-kill-{attempts}")).await;
        let mut t = township.clerk().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if has_case(&mut t, &first).await {
                // The first batch is durable; a receive of the next one is under way (each
                // takes 100 ms or more in a debug build): kill in the middle of it.
                tokio::time::sleep(KILL_DELAYS[attempts - 1]).await;
                break;
            }
            assert!(Instant::now() < deadline, "no catch-up in time");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        township.kill();
        let _ = std::fs::remove_dir_all(&scratch);
        backup_store(&township_cfg, &scratch);
        // `open_register` takes a config path and opens the `store` beside it: the copy's.
        let at_kill = open_register(&scratch.join("node.toml"), TOWNSHIP).last_position();
        if before < at_kill && at_kill < 1 + backlog.len() as u64 {
            break (before, at_kill);
        }
        eprintln!("kill {attempts} missed the window: {at_kill} events held, {before} before");
    };
    eprintln!(
        "killed holding {} of {} new events (mid-batch: {}) at {:?}",
        at_kill - before,
        1 + backlog.len() as u64 - before,
        (at_kill - before) % yimen_core::link::BATCH_EVENTS_MAX as u64 != 0,
        started.elapsed()
    );

    let township = Hub::start(&township_cfg, "township-after").await;
    let t = township.clerk().await;
    let last = backlog[backlog.len() - 1].clone();
    eventually(
        "the whole backlog at the township",
        Duration::from_secs(60),
        || {
            let mut t = t.clone();
            let last = last.clone();
            async move { has_case(&mut t, &last).await.then_some(()) }
        },
    )
    .await;
    township.kill();
    village.stop().await;
    eprintln!("caught up at {:?}", started.elapsed());

    // Every event the village wrote is at the township once, and nothing else is.
    let v = open_register(&village_cfg, VILLAGE);
    let mut written = outbox_ids(&v, TOWNSHIP);
    assert_eq!(written.len(), 1 + backlog.len(), "the village's own events");
    let mut tw = open_register(&township_cfg, TOWNSHIP);
    assert_eq!(
        tw.last_position(),
        written.len() as u64,
        "the township's log holds each of the village's events once, and nothing else"
    );
    let mut held = outbox_ids(&tw, VILLAGE);
    written.sort();
    held.sort();
    assert_eq!(held, written);
    // Each logged event changed its case: none is logged with its case state lost.
    for n in &backlog {
        let number = n.parse::<yimen_core::numbering::CaseNumber>().unwrap();
        assert!(
            tw.case(&number).unwrap().is_some(),
            "case {n}: its event is in the township's log, the case is not in its register"
        );
    }
}

/// How a stopped box's store is replaced.
#[derive(Clone, Copy, Debug)]
enum Replace {
    /// The store directory deleted; its `.hwm` too, or kept beside the new empty store.
    Empty { with_mark: bool },
    /// The store directory replaced by an older copy; with the copy's `.hwm`, or beside the
    /// current (newer) one.
    Older { with_mark: bool },
    /// The operator's way: the broken store moved aside, the copy (with its own `.hwm`) put
    /// in place by `yimen-node restore` (`yimen_node::server::restore`), which marks it
    /// restored, so it takes a new epoch at its first start, before the first handshake.
    Restore,
}

impl Replace {
    const ALL: [Replace; 5] = [
        Replace::Empty { with_mark: true },
        Replace::Empty { with_mark: false },
        Replace::Older { with_mark: false },
        Replace::Older { with_mark: true },
        Replace::Restore,
    ];

    fn apply(self, config: &Path, backup: &Path) {
        match self {
            Replace::Empty { with_mark } => remove_store(config, with_mark),
            Replace::Older { with_mark } => restore_store(backup, config, with_mark),
            Replace::Restore => {
                let store = store_of(config);
                let aside = store.with_file_name("store.broken");
                let _ = std::fs::remove_dir_all(&aside);
                std::fs::rename(&store, &aside).unwrap();
                yimen_node::server::restore(&backup.join("store"), &store).unwrap();
                assert!(yimen_node::server::restored_marker(&store).exists());
            }
        }
    }
}

/// Waits until a node's clerk API lists exactly `want` (sorted).
async fn holds_exactly(addr: std::net::SocketAddr, want: &[String], what: &str) {
    let c = clerk(addr).await;
    let mut want = want.to_vec();
    want.sort();
    eventually(what, Duration::from_secs(60), || {
        let mut c = c.clone();
        let want = want.clone();
        async move { (numbers(&mut c).await == want).then_some(()) }
    })
    .await;
}

/// The township's store is emptied (with or without its `.hwm`) or replaced by an older copy
/// (with its own `.hwm` or beside the newer one) while it is down; cases accepted meanwhile
/// and before all reach it again from the village, each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn township_store_emptied_or_restored_is_refilled_from_the_village() {
    let started = Instant::now();
    let d = Deployment::new();
    let (township_cfg, village_cfg, township, village, first) = linked(&d).await;
    let mut vc = village.clerk().await;
    let mut all = vec![first];
    all.extend(accept(&mut vc, 20).await);
    holds_exactly(township.admin, &all, "the first cases at the township").await;
    township.kill();
    let backup = d.path().join("township-backup");
    backup_store(&township_cfg, &backup);

    for (round, replace) in Replace::ALL.into_iter().enumerate() {
        replace.apply(&township_cfg, &backup);
        // The village keeps working while the township is down.
        all.extend(accept(&mut vc, 10).await);
        let township = Hub::start(&township_cfg, &format!("township-{round}")).await;
        holds_exactly(
            township.admin,
            &all,
            &format!("every case at the township after {replace:?}"),
        )
        .await;
        eprintln!("{replace:?}: refilled at {:?}", started.elapsed());
        township.kill();
    }
    village.stop().await;

    // Each of the village's events is in the township's log once, and nothing else is.
    let mut written = outbox_ids(&open_register(&village_cfg, VILLAGE), TOWNSHIP);
    assert_eq!(written.len(), all.len());
    let tw = open_register(&township_cfg, TOWNSHIP);
    assert_eq!(tw.last_position(), written.len() as u64);
    let mut held = outbox_ids(&tw, VILLAGE);
    written.sort();
    held.sort();
    assert_eq!(held, written);
}

/// The village's store is emptied (with or without its `.hwm`) or replaced by an older copy
/// (beside the newer `.hwm`, or with its own) while it is stopped: each time it gets every
/// case back from the township, numbers nothing until then, numbers the next case above
/// every earlier one, and writes it in a new epoch above every epoch it used (no event
/// identity reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn village_store_emptied_or_restored_is_refilled_in_a_new_epoch() {
    let started = Instant::now();
    let d = Deployment::new();
    let (_, village_cfg, township, village, first) = linked(&d).await;
    let mut all = vec![first];
    all.extend(accept(&mut village.clerk().await, 20).await);
    holds_exactly(township.admin, &all, "the first cases at the township").await;
    village.stop().await;
    let backup = d.path().join("village-backup");
    backup_store(&village_cfg, &backup);
    // More cases after the backup: the older copy lacks them.
    let village = Village::start(&village_cfg).await.unwrap();
    all.extend(accept(&mut village.clerk().await, 10).await);
    holds_exactly(township.admin, &all, "the later cases at the township").await;
    village.stop().await;

    // Every event identity the village has written so far.
    let mut written: BTreeSet<yimen_core::link::EventId> = BTreeSet::new();
    for replace in Replace::ALL {
        written.extend(outbox_ids(&open_register(&village_cfg, VILLAGE), TOWNSHIP));
        replace.apply(&village_cfg, &backup);
        let village = Village::start(&village_cfg).await.unwrap();
        if let Replace::Older { with_mark: true } = replace {
            // A copy that came with its own `.hwm` is consistent: the village cannot tell it
            // is behind until the township states a cursor beyond it at the first handshake
            // (then it takes a new epoch and asks for a refill). A case accepted before that
            // handshake would repeat a number and an event identity, so the clerk waits for
            // the link here.
            eventually("the village's link up", Duration::from_secs(30), || {
                let v = &village;
                async move {
                    (link_state(&v.links().await, TOWNSHIP).as_deref() == Some("connected"))
                        .then_some(())
                }
            })
            .await;
        }
        let (next, refused) = accept_when_whole(village.admin, Duration::from_secs(60)).await;
        eprintln!(
            "{replace:?}: whole again after {refused} refusals at {:?}",
            started.elapsed()
        );
        let newest = all.iter().max().unwrap();
        assert!(
            next.parse::<yimen_core::numbering::CaseNumber>().unwrap()
                > newest.parse::<yimen_core::numbering::CaseNumber>().unwrap(),
            "after {replace:?} the village numbered {next}, not above {newest}"
        );
        all.push(next);
        holds_exactly(
            village.admin,
            &all,
            &format!("every case back at the village after {replace:?}"),
        )
        .await;
        holds_exactly(township.admin, &all, "the new case at the township").await;
        village.stop().await;

        let v = open_register(&village_cfg, VILLAGE);
        for id in &written {
            assert!(
                v.holds(id).unwrap(),
                "after {replace:?} the village lacks its event {id:?}"
            );
        }
        let fresh: Vec<_> = outbox_ids(&v, TOWNSHIP)
            .into_iter()
            .filter(|id| !written.contains(id))
            .collect();
        assert_eq!(
            fresh.len(),
            1,
            "after {replace:?}: one new event, under an identity never used: {fresh:?}"
        );
        let used = written.iter().map(|id| id.epoch).max().unwrap();
        assert!(
            fresh[0].epoch > used && fresh[0].epoch == v.epoch.0,
            "after {replace:?} the new event's epoch {:x} is not a new one above {used:x}",
            fresh[0].epoch
        );
    }
    township.kill();
}

/// A case's status and history as a node's clerk API shows it.
async fn case_view(addr: std::net::SocketAddr, number: &str) -> pb::CaseView {
    clerk(addr)
        .await
        .get_case(pb::GetCaseRequest {
            case_number: number.to_owned(),
        })
        .await
        .unwrap_or_else(|s| panic!("get_case {number}: {s}"))
        .into_inner()
        .case
        .unwrap()
}

fn withdrawal(case: &str) -> pb::RelayRequest {
    pb::RelayRequest {
        operator: "测试员".to_owned(),
        case_number: case.to_owned(),
        kind: Some(pb::relay_request::Kind::WithdrawalReason(
            "申请人撤回".to_owned(),
        )),
    }
}

fn completion(case: &str, result: &str) -> pb::CompleteRequest {
    pb::CompleteRequest {
        operator: "测试员".to_owned(),
        case_number: case.to_owned(),
        result: result.to_owned(),
    }
}

/// A village restored from an older copy while its township is down waits for its refill:
/// it writes nothing on a case its copy shows in an older state (its parent holds later
/// events of it), numbers nothing, and raises no request; refilled, it holds the township's
/// history of its cases and issues neither a case number nor a request id twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn village_restored_while_the_township_is_down_writes_nothing_until_refilled() {
    let d = Deployment::new();
    let (township_cfg, village_cfg, township, village, first) = linked(&d).await;
    village.stop().await;
    let backup = d.path().join("village-backup");
    backup_store(&village_cfg, &backup);

    // After the backup: the first case is completed; a second one is accepted and withdrawn
    // at the applicant's request (a request id of the village's).
    let village = Village::start(&village_cfg).await.unwrap();
    let mut vc = village.clerk().await;
    vc.complete(completion(&first, "准予办理")).await.unwrap();
    let second = accept(&mut vc, 1).await.remove(0);
    let request = vc
        .relay_request(withdrawal(&second))
        .await
        .unwrap()
        .into_inner();
    assert!(request.decided_here);
    let first_request = request.request_id;
    eventually(
        "both cases settled at the township",
        Duration::from_secs(30),
        || {
            let (f, s) = (first.clone(), second.clone());
            let addr = township.admin;
            async move {
                let mut t = clerk(addr).await;
                let done = has_case(&mut t, &s).await
                    && case_view(addr, &f).await.status == "completed"
                    && case_view(addr, &s).await.status == "withdrawn";
                done.then_some(())
            }
        },
    )
    .await;
    village.stop().await;
    township.kill();

    // The older copy beside the newer mark: the village takes a new epoch and waits for its
    // parent, which is down.
    restore_store(&backup, &village_cfg, false);
    let village = Village::start(&village_cfg).await.unwrap();
    let mut vc = village.clerk().await;
    assert_eq!(case_view(village.admin, &first).await.status, "processing");
    let refused = vc
        .complete(completion(&first, "另一结果"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    let refused = vc.relay_request(withdrawal(&first)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    let refused = vc.apply(senior_application(1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");

    // The township back: the village gets the later history of its cases.
    let township = Hub::start(&township_cfg, "township-2").await;
    let (third, _) = accept_when_whole(village.admin, Duration::from_secs(60)).await;
    assert!(third > second, "{third} is not above {second}");
    for case in [&first, &second] {
        assert_eq!(
            case_view(village.admin, case).await,
            case_view(township.admin, case).await,
            "case {case} at the village and at the township"
        );
    }
    let request = vc
        .relay_request(withdrawal(&third))
        .await
        .unwrap()
        .into_inner();
    let seq = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    assert!(
        seq(&request.request_id) > seq(&first_request),
        "request id {} issued again after the restore (the first was {first_request})",
        request.request_id
    );
    holds_exactly(
        township.admin,
        &[first.clone(), second.clone(), third.clone()],
        "the third case at the township",
    )
    .await;
    village.stop().await;
    township.kill();
}

/// The village's store is emptied and refilled, then the township (the root here) loses its
/// store: the village holds every case, the ones it got back from the township included, and
/// the township must get them all again from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn township_emptied_after_the_villages_refill_gets_every_case_back() {
    let d = Deployment::new();
    let (township_cfg, village_cfg, township, village, first) = linked(&d).await;
    let mut all = vec![first];
    all.extend(accept(&mut village.clerk().await, 5).await);
    holds_exactly(township.admin, &all, "the cases at the township").await;
    village.stop().await;
    remove_store(&village_cfg, true);
    let village = Village::start(&village_cfg).await.unwrap();
    let (next, _) = accept_when_whole(village.admin, Duration::from_secs(30)).await;
    all.push(next);
    holds_exactly(village.admin, &all, "every case back at the village").await;
    holds_exactly(township.admin, &all, "the new case at the township").await;
    township.kill();
    remove_store(&township_cfg, true);
    let township = Hub::start(&township_cfg, "township-2").await;
    holds_exactly(township.admin, &all, "every case at the emptied township").await;
    village.stop().await;
    township.kill();
}
