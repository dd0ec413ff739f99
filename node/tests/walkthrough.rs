//! `yimen-node walkthrough --json`, run as a real process: both sample guides go through the
//! core alone and end as the cases issue says.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

use std::process::Command;

use chrono::NaiveDate;
use serde_json::Value;
use yimen_core::calendar::Calendar;

fn walkthrough(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_yimen-node"))
        .arg("walkthrough")
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = walkthrough(args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn date(v: &Value) -> NaiveDate {
    NaiveDate::parse_from_str(&v.as_str().unwrap()[..10], "%Y-%m-%d").unwrap()
}

fn story<'a>(doc: &'a Value, item: &str) -> &'a Value {
    doc["stories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["item"] == item)
        .unwrap_or_else(|| panic!("no story for {item}"))
}

fn kinds(story: &Value) -> Vec<&str> {
    story["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

#[test]
fn senior_card_completes_on_its_acceptance_day() {
    let doc = json(&["--json"]);
    assert_eq!(doc["date"], "2026-09-24");
    let s = story(&doc, "办理老年优待证");
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["accepted_on"], "2026-09-24");
    assert_eq!(s["completed_on"], "2026-09-24");
    assert_eq!(kinds(s), ["accepted", "completed", "evaluated"]);
    assert!(
        s["number"]
            .as_str()
            .unwrap()
            .starts_with("43042110520420260924")
    );
}

#[test]
fn medical_aid_completes_with_one_return_and_a_restarted_clock() {
    let doc = json(&["--json"]);
    let s = story(&doc, "医疗救助申请");
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["returns"], 1);
    let kinds = kinds(s);
    assert_eq!(kinds.iter().filter(|k| **k == "returned").count(), 1);
    assert_eq!(kinds.last(), Some(&"evaluated"));
    // The one-time notice of the first visit lists exactly the three problems.
    assert_eq!(s["notice_zh"].as_array().unwrap().len(), 3);

    let entries = s["entries"].as_array().unwrap();
    let supplemented = entries
        .iter()
        .find(|e| e["kind"] == "supplemented")
        .unwrap();
    let arrived = date(&supplemented["at"]);
    let expected = Calendar::builtin().add_working_days(arrived, 10).unwrap();
    assert_eq!(date(&supplemented["state"]["deadline"]), expected);
    assert!(expected > arrived);
    // The clock restarted: the new deadline is later than the one set at acceptance.
    assert!(expected > date(&entries[0]["state"]["deadline"]));
}

#[test]
fn the_story_is_told_in_chinese_by_default() {
    let out = walkthrough(&[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["一次性告知书", "退回补正", "公示开始", "签收", "办结"] {
        assert!(text.contains(needle), "missing {needle}");
    }
    // Applicants appear masked only.
    assert!(!text.contains("430421199001011233"));
    assert!(!text.contains("李四"));
}

#[test]
fn another_date_is_taken_and_a_bad_one_refused() {
    let doc = json(&["--json", "--date", "2026-12-28"]);
    let s = story(&doc, "医疗救助申请");
    assert_eq!(s["status"], "Completed");
    assert_eq!(s["entries"][0]["state"]["deadline_provisional"], true);

    let out = walkthrough(&["--date", "2026-13-01"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}
