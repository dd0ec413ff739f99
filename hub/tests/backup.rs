//! The root's backup and restore with real processes: a township hub as the root (the real
//! `yimen-hub` binary) with a village below (in this process). `yimen-hub backup` copies the
//! running root's store while the village accepts cases; more cases and events follow,
//! among them events written at the root (cases handed to it: its receipt, and its handing
//! them back); the root is killed, restored with `yimen-hub restore` and started: it takes a
//! new epoch, and the village re-sends its tail and the events the root wrote after the
//! backup, which only the village still holds. Checked from the stopped stores through
//! `yimen_node::register::inspect` (the code `yimen-node inspect` runs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use common::*;
use yimen_proto::pb;

/// Longest wait for replication to settle.
const SETTLE: Duration = Duration::from_secs(90);

/// Accepts cases at `addr` one after another until `stop`; returns their numbers.
fn accept_until(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut c = clerk(addr).await;
        let mut numbers = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            numbers.extend(accept(&mut c, 1).await);
            count.fetch_add(1, Ordering::SeqCst);
        }
        numbers
    })
}

/// A stopped store's dump.
fn dump(store: &Path) -> Value {
    yimen_node::register::inspect(store).unwrap()
}

/// Every event identity of a dump, `"origin"/"epoch"/seq`, in log order.
fn identities(dump: &Value) -> Vec<String> {
    dump["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}/{}/{}", e["origin"], e["epoch"], e["seq"]))
        .collect()
}

fn case_numbers(dump: &Value) -> Vec<String> {
    dump["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["number"].as_str().unwrap().to_owned())
        .collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

async fn case_view(
    client: &mut pb::clerk_client::ClerkClient<tonic::transport::Channel>,
    number: &str,
) -> Option<pb::CaseView> {
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        client.get_case(pb::GetCaseRequest {
            case_number: number.to_owned(),
        }),
    )
    .await
    .expect("get_case timed out");
    match reply {
        Ok(r) => r.into_inner().case,
        Err(s) if s.code() == tonic::Code::NotFound => None,
        Err(s) => panic!("get_case {number}: {s}"),
    }
}

/// Waits until the node at `addr` holds every case of `numbers`.
async fn holds_all(addr: SocketAddr, numbers: &[String], what: &str) {
    eventually(what, SETTLE, || {
        let numbers = numbers.to_vec();
        async move {
            let mut c = clerk(addr).await;
            for n in &numbers {
                if !has_case(&mut c, n).await {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
}

/// Hands a village case to the root and back (转报): the village forwards it, the root signs
/// for it by itself and forwards it back, the village signs for it. The receipt and the
/// handing back are written at the root.
async fn round_trip(village: SocketAddr, root: SocketAddr, number: &str) {
    let forward = |to: &str, reason: &str| pb::ForwardRequest {
        operator: "测试员".to_owned(),
        case_number: number.to_owned(),
        to_node: to.to_owned(),
        to_department: String::new(),
        reason: reason.to_owned(),
    };
    clerk(village)
        .await
        .forward(forward(TOWNSHIP, "请乡镇审核"))
        .await
        .unwrap_or_else(|s| panic!("forward {number} to the root: {s}"));
    held_by(root, TOWNSHIP, number).await;
    clerk(root)
        .await
        .forward(forward(VILLAGE, "审核完毕，退回村办理"))
        .await
        .unwrap_or_else(|s| panic!("forward {number} back from the root: {s}"));
    held_by(village, VILLAGE, number).await;
}

/// Waits until the node at `addr` holds case `number` with custodian `custodian`, signed for.
async fn held_by(addr: SocketAddr, custodian: &str, number: &str) {
    eventually(
        &format!("{number} held and signed for by {custodian}"),
        SETTLE,
        || async move {
            let mut c = clerk(addr).await;
            let view = case_view(&mut c, number).await?;
            (view.custodian == custodian && view.received).then_some(())
        },
    )
    .await;
}

/// Waits until the node at `addr` shows case `number` in `status`.
async fn shows_status(addr: SocketAddr, number: &str, status: &str) {
    eventually(&format!("{number} {status}"), SETTLE, || async move {
        let mut c = clerk(addr).await;
        let view = case_view(&mut c, number).await?;
        (view.status == status).then_some(())
    })
    .await;
}

/// A case of a dump, by number.
fn case_of(dump: &Value, number: &str) -> Value {
    dump["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["number"] == number)
        .cloned()
        .unwrap_or_else(|| panic!("no case {number}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_root_is_refilled() {
    let d = Deployment::new();
    let (township_cfg, village_cfg) = d.township_and_village();

    let hub = Hub::start(&township_cfg, "township-1").await;
    let village = Village::start(&village_cfg).await.unwrap();
    let mut at_village = village.clerk().await;

    // Before the backup: cases of the village, one of them handed to the root and back.
    // (A new village numbers nothing until its first handshake with its parent.)
    let (first, _) = accept_when_whole(village.admin, SETTLE).await;
    let mut cases = vec![first];
    cases.extend(accept(&mut at_village, 4).await);
    round_trip(village.admin, hub.admin, &cases[0]).await;

    // The backup, taken while the village accepts.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let busy = accept_until(village.admin, stop.clone(), accepted.clone());
    eventually("accepting under way", SETTLE, || {
        let ok = accepted.load(Ordering::SeqCst) >= 3;
        async move { ok.then_some(()) }
    })
    .await;
    let backup_dir = d.path().join("backup-root");
    let backed_up = {
        let (out, admin, cwd) = (
            backup_dir.to_str().unwrap().to_owned(),
            hub.admin.to_string(),
            d.path().to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            hub_ok(&["backup", "--out", &out, "--hub", &admin], &cwd)
        })
        .await
        .unwrap()
    };
    assert!(backed_up.contains("backed up to"), "{backed_up}");
    let at_backup = accepted.load(Ordering::SeqCst);
    eventually("accepting after the backup", SETTLE, || {
        let ok = accepted.load(Ordering::SeqCst) >= at_backup + 2;
        async move { ok.then_some(()) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    cases.extend(busy.await.unwrap());
    assert!(
        backup_dir.join("db").is_file() && backup_dir.with_extension("hwm").is_file(),
        "the backup is a store with its mark beside it"
    );
    // A backup never overwrites.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
        .args([
            "backup",
            "--out",
            backup_dir.to_str().unwrap(),
            "--hub",
            &hub.admin.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a second backup into the same place is refused"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // After the backup: more cases, and more events written at the root: two cases handed to
    // it and back; the village then completes one of them.
    cases.extend(accept(&mut at_village, 5).await);
    let handled = [cases[1].clone(), cases[2].clone()];
    for n in &handled {
        round_trip(village.admin, hub.admin, n).await;
    }
    let completed = at_village
        .complete(pb::CompleteRequest {
            operator: "测试员".to_owned(),
            case_number: handled[0].clone(),
            result: "已办结，发放老年优待证".to_owned(),
        })
        .await
        .unwrap_or_else(|s| panic!("complete at the village: {s}"))
        .into_inner()
        .case
        .unwrap();
    assert_eq!(completed.status, "completed");
    cases.sort();
    holds_all(hub.admin, &cases, "the root to hold the village's cases").await;
    shows_status(hub.admin, &handled[0], "completed").await;

    // The root dies.
    hub.kill();
    let root_store = store_of(&township_cfg);
    let before = dump(&root_store);
    let before_ids = identities(&before);
    let before_epoch = before["store_epoch"].as_str().unwrap().to_owned();
    let before_cases = set(&case_numbers(&before));
    for n in &cases {
        assert!(before_cases.contains(n), "the root held {n} before it died");
    }

    // Restored from the backup (the dead store moved aside first).
    std::fs::rename(&root_store, d.path().join("dead-store")).unwrap();
    std::fs::rename(mark_of(&township_cfg), d.path().join("dead-store.hwm")).unwrap();
    let restored = hub_ok(
        &[
            "restore",
            "--from",
            backup_dir.to_str().unwrap(),
            "--store",
            root_store.to_str().unwrap(),
        ],
        d.path(),
    );
    assert!(restored.contains("恢复到"), "{restored}");
    let backup = dump(&root_store);
    let backup_ids = set(&identities(&backup));
    assert_eq!(
        backup["store_epoch"].as_str().unwrap(),
        before_epoch,
        "the backup is of the root's epoch"
    );
    // The backup lacks what came after it: cases and events of the village, and events the
    // root wrote.
    let lost: Vec<&String> = before_ids
        .iter()
        .filter(|id| !backup_ids.contains(*id))
        .collect();
    assert!(
        lost.iter()
            .any(|id| id.starts_with(&format!("\"{TOWNSHIP}\""))),
        "the root wrote events after the backup: {lost:?}"
    );
    assert!(
        lost.iter()
            .any(|id| id.starts_with(&format!("\"{VILLAGE}\""))),
        "the village wrote events after the backup: {lost:?}"
    );
    let backup_cases = set(&case_numbers(&backup));
    assert!(
        cases.iter().any(|n| !backup_cases.contains(n)),
        "some cases are newer than the backup"
    );

    // Started again: a new epoch, and the village refills it.
    let hub = Hub::start(&township_cfg, "township-2").await;
    holds_all(
        hub.admin,
        &cases,
        "the restored root to hold the village's cases",
    )
    .await;
    shows_status(hub.admin, &handled[0], "completed").await;
    // Cases are not all: wait until the village's up stream is acknowledged to its end, then
    // compare the events themselves in the stopped stores.
    eventually("the village's link to settle", SETTLE, || {
        let village = &village;
        async move {
            let links = village.links().await;
            let parent = links["links"]
                .as_array()?
                .iter()
                .find(|l| l["peer"] == TOWNSHIP)?
                .clone();
            (parent["state"] == "connected" && parent["lag_events"] == 0).then_some(())
        }
    })
    .await;
    village.stop().await;
    let log = hub.stderr();
    hub.kill();
    assert!(
        log.contains("restored from a copy"),
        "the root knew it was restored: {log}"
    );

    let after = dump(&root_store);
    let after_ids = identities(&after);
    let after_set = set(&after_ids);
    assert_eq!(
        after_set.len(),
        after_ids.len(),
        "no event is stored twice at the root"
    );
    let missing: Vec<&String> = before_ids
        .iter()
        .filter(|id| !after_set.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "the restored root lacks events it had before it died: {missing:?}"
    );
    assert_ne!(
        after["store_epoch"].as_str().unwrap(),
        before_epoch,
        "the restored root took a new epoch"
    );
    assert_eq!(after["refilling"], false);
    let after_cases = case_numbers(&after);
    assert_eq!(
        set(&after_cases).len(),
        after_cases.len(),
        "no case is stored twice at the root"
    );
    let village_dump = dump(&store_of(&village_cfg));
    let after_cases = set(&after_cases);
    for n in case_numbers(&village_dump).iter().chain(&cases) {
        assert!(after_cases.contains(n), "the restored root holds case {n}");
    }
    // Each case as the root had it before it died: every event of it (the root's own part,
    // written after the backup, given back by the village), custody and status.
    for n in &cases {
        let (was, is) = (case_of(&before, n), case_of(&after, n));
        assert_eq!(
            is["case_seq"], was["case_seq"],
            "{n}: every event of the case"
        );
        assert_eq!(is["custodian"], was["custodian"], "{n}");
        assert_eq!(is["status"], was["status"], "{n}");
    }
    assert_eq!(case_of(&after, &handled[0])["status"], "completed");
    assert_eq!(case_of(&after, &handled[1])["custodian"], VILLAGE);
    // Nothing duplicated at the village either (the root re-sent its whole stream).
    let village_ids = identities(&village_dump);
    assert_eq!(set(&village_ids).len(), village_ids.len());
}
