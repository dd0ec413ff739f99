//! An in-process county over real tonic and mutual TLS on 127.0.0.1: the demo's flows (a
//! 老年优待证 case at the counter, 医疗救助 through every tier with a return for supplement and
//! a cut link, 同城通办 across townships), then DESIGN.md's invariants checked at every node
//! from the stores themselves, least knowledge included.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_in_process_keeps_every_invariant() {
    let keep = tempfile::tempdir().unwrap();
    yimen_hub::demo::run(yimen_hub::demo::Options {
        date: chrono::NaiveDate::from_ymd_opt(2026, 12, 28).unwrap(),
        json: true,
        keep: Some(keep.path().to_owned()),
    })
    .await
    .unwrap();
    let dumps = yimen_hub::demo::inspect_kept(keep.path()).unwrap();
    assert_eq!(dumps.len(), 6);
    let problems = yimen_hub::demo::invariant_problems(&dumps);
    assert!(problems.is_empty(), "{problems:#?}");
    // Every node took part: each holds events, and no store is being refilled.
    for (id, d) in &dumps {
        assert!(
            !d["events"].as_array().unwrap().is_empty(),
            "{id} holds no events"
        );
        assert_eq!(d["refilling"], false, "{id}");
    }
    // 西渡镇示范村 sees only the case of its resident (its 公示 was delivered there).
    let home = dumps["430421100201"]["cases"].as_array().unwrap();
    assert_eq!(home.len(), 1, "{home:?}");
    assert_eq!(home[0]["accepted_by"], "430421105200");
}
