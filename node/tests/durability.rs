//! Durability of `yimen-node serve`, as a real process on loopback:
//!
//! 1. SIGKILL at random moments while applications stream in: every acknowledged case is
//!    there after the restart, unaltered, listed once, and numbers are never reused.
//! 2. Group commit: 1,000 intakes from 50 concurrent clients cost at most 200 fsyncs
//!    (counted with strace, minus a start-and-stop baseline).
//! 3. A corrupt store (truncated, a flipped header byte, a flipped byte in a case value, a
//!    newer format) is refused with a clear error, or served with every acknowledged case
//!    intact; never served with one missing or altered, never a panic.
//!
//! `YIMEN_SOAK_ROUNDS` (default 3) sets the kill rounds, `YIMEN_SOAK_SEED` replays the kill
//! delays of an earlier run (the seed is printed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use yimen_node::register::LIST_MAX;
use yimen_node::store::FORMAT_VERSION;
use yimen_node::store::sled_store::{FORMAT_KEY, frame_value};
use yimen_proto::pb;

use common::{NodeDir, accepted, apply_accepted, get_case, list_all, senior_application};

/// Clients applying concurrently while the node is killed.
const KILL_CLIENTS: usize = 8;
/// Bounds on the random delay before the SIGKILL, in milliseconds.
const KILL_DELAY_MS: (u64, u64) = (200, 1500);
/// Bound on the clients' ending after the kill, and on one round's checks.
const ROUND_LIMIT: Duration = Duration::from_secs(60);
/// Bound on the final check, which reads every acknowledged case (a soak makes thousands).
const FINAL_LIMIT: Duration = Duration::from_secs(300);
/// Concurrent readers checking acknowledged cases.
const READERS: usize = 16;
/// Older acknowledged cases read back each round besides the last round's, sampled (the
/// final check reads them all; reading all every round would make a soak quadratic).
const OLDER_SAMPLE: usize = 256;

/// SplitMix64: a seeded generator for the kill delays, so a failing run replays.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant here).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?}: {e}")),
    )
}

/// A view as compared across restarts: `overdue` depends on the day it is asked.
fn comparable(view: &pb::CaseView) -> pb::CaseView {
    pb::CaseView {
        overdue: false,
        ..view.clone()
    }
}

fn rethrow(e: tokio::task::JoinError) -> ! {
    match e.try_into_panic() {
        Ok(payload) => std::panic::resume_unwind(payload),
        Err(e) => panic!("task failed: {e}"),
    }
}

/// The cases of `read` (acknowledged numbers) are served unaltered; the listing over all
/// statuses holds each number once, in order, and every acknowledged number within its
/// window, unaltered.
async fn check_acknowledged(
    node: &common::Node,
    acked: &BTreeMap<String, pb::CaseView>,
    read: &[String],
) {
    let all: Vec<(String, pb::CaseView)> =
        read.iter().map(|n| (n.clone(), acked[n].clone())).collect();
    let chunk = all.len().div_ceil(READERS).max(1);
    let mut readers = JoinSet::new();
    for part in all.chunks(chunk) {
        let part = part.to_vec();
        let mut client = node.client().await;
        readers.spawn(async move {
            for (number, before) in part {
                let now = get_case(&mut client, &number).await.unwrap_or_else(|s| {
                    panic!("acknowledged case {number} is not served after the restart: {s}")
                });
                assert_eq!(
                    comparable(&now),
                    comparable(&before),
                    "acknowledged case {number} changed across the restart"
                );
            }
        });
    }
    while let Some(done) = readers.join_next().await {
        done.unwrap_or_else(|e| rethrow(e));
    }

    let mut client = node.client().await;
    let listed = list_all(&mut client).await;
    let numbers: Vec<&str> = listed.iter().map(|c| c.number.as_str()).collect();
    if let Some(w) = numbers.windows(2).find(|w| w[0] >= w[1]) {
        panic!(
            "the listing repeats or disorders case numbers: {} then {}",
            w[0], w[1]
        );
    }
    assert!(
        listed.len() <= LIST_MAX,
        "listing longer than LIST_MAX: {}",
        listed.len()
    );
    let listed_set: BTreeSet<&str> = numbers.iter().copied().collect();
    // Below the cap the listing is complete; at the cap it is the first LIST_MAX numbers.
    let window_end = if listed.len() < LIST_MAX {
        assert!(
            listed.len() >= acked.len(),
            "{} cases listed, {} acknowledged",
            listed.len(),
            acked.len()
        );
        None
    } else {
        numbers.last().copied()
    };
    for number in acked.keys() {
        if window_end.is_none_or(|end| number.as_str() <= end) {
            assert!(
                listed_set.contains(number.as_str()),
                "acknowledged case {number} is missing from the listing"
            );
        }
    }
    for view in &listed {
        if let Some(before) = acked.get(&view.number) {
            assert_eq!(
                comparable(view),
                comparable(before),
                "listed case {} differs from its acknowledgement",
                view.number
            );
        }
    }
}

/// What one client saw in a kill round.
#[derive(Default)]
struct ClientRun {
    acked: Vec<pb::CaseView>,
    /// An answer other than an acceptance, or an error before the kill.
    unexpected: Option<String>,
    day_full: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_applications_stream_in_loses_no_acknowledged_case() {
    let rounds = env_u64("YIMEN_SOAK_ROUNDS").unwrap_or(3);
    let seed = env_u64("YIMEN_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "kill rounds: {rounds}, {KILL_CLIENTS} clients, seed {seed} (YIMEN_SOAK_SEED={seed} replays the delays)"
    );
    let mut rng = SplitMix64(seed);
    let dir = NodeDir::new();
    let mut acked: BTreeMap<String, pb::CaseView> = BTreeMap::new();
    // Numbers acknowledged in the last round, sorted.
    let mut last_round: Vec<String> = Vec::new();
    for round in 0..rounds {
        // The store must open cleanly after every kill.
        let restart = std::time::Instant::now();
        let node = dir.serve().await;
        let opened = restart.elapsed();
        let mut read = last_round.clone();
        let older: Vec<&String> = acked
            .keys()
            .filter(|n| last_round.binary_search(n).is_err())
            .collect();
        for _ in 0..OLDER_SAMPLE.min(older.len()) {
            read.push(older[rng.between(0, older.len() as u64 - 1) as usize].clone());
        }
        tokio::time::timeout(ROUND_LIMIT, check_acknowledged(&node, &acked, &read))
            .await
            .unwrap_or_else(|_| panic!("round {round}: checks took over {ROUND_LIMIT:?}"));
        let checked = restart.elapsed() - opened;

        let killed = Arc::new(AtomicBool::new(false));
        let mut clients = JoinSet::new();
        for t in 0..KILL_CLIENTS {
            let mut client = node.client().await;
            let killed = killed.clone();
            clients.spawn(async move {
                let mut run = ClientRun::default();
                for i in 0u64.. {
                    if killed.load(Ordering::SeqCst) {
                        break;
                    }
                    let helper = format!("代办{round}-{t}-{i}");
                    match client.apply(senior_application(Some(&helper))).await {
                        Ok(reply) => match accepted(reply.into_inner()) {
                            Some(view) => run.acked.push(view),
                            None => {
                                run.unexpected = Some("a one-time notice".to_owned());
                                break;
                            }
                        },
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            // 9,999 numbers a day: a long soak can use them all.
                            run.day_full = true;
                            break;
                        }
                        Err(s) => {
                            if !killed.load(Ordering::SeqCst) {
                                run.unexpected = Some(format!("before the kill: {s}"));
                            }
                            break;
                        }
                    }
                }
                run
            });
        }
        let delay = rng.between(KILL_DELAY_MS.0, KILL_DELAY_MS.1);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        killed.store(true, Ordering::SeqCst);
        let exit = node.kill();
        assert!(
            !exit.stderr.contains("panicked"),
            "round {round}: the node panicked before the kill:\n{}",
            exit.stderr
        );

        let runs = tokio::time::timeout(ROUND_LIMIT, async {
            let mut runs = Vec::new();
            while let Some(run) = clients.join_next().await {
                runs.push(run.unwrap_or_else(|e| rethrow(e)));
            }
            runs
        })
        .await
        .unwrap_or_else(|_| {
            panic!("round {round}: clients still running {ROUND_LIMIT:?} after the kill")
        });

        let checked_count = read.len();
        let previous_max = acked.keys().next_back().cloned();
        let mut round_numbers = Vec::new();
        let mut day_full = false;
        for run in runs {
            if let Some(what) = run.unexpected {
                panic!("round {round}: a client got {what}");
            }
            day_full |= run.day_full;
            for view in run.acked {
                if let Some(max) = &previous_max {
                    assert!(
                        view.number > *max,
                        "round {round}: number {} not above the last round's {max}: reused",
                        view.number
                    );
                }
                round_numbers.push(view.number.clone());
                let number = view.number.clone();
                assert!(
                    acked.insert(number.clone(), view).is_none(),
                    "round {round}: case number {number} acknowledged twice"
                );
            }
        }
        round_numbers.sort();
        last_round = round_numbers.clone();
        println!(
            "round {round}: served {} ms after restart, {} earlier cases checked in {} ms; killed after {delay} ms; {} acknowledged ({} .. {}){}; {} in total",
            opened.as_millis(),
            checked_count,
            checked.as_millis(),
            round_numbers.len(),
            round_numbers.first().map_or("-", String::as_str),
            round_numbers.last().map_or("-", String::as_str),
            if day_full {
                "; the day's 9,999 numbers are used up"
            } else {
                ""
            },
            acked.len()
        );
    }
    let node = dir.serve().await;
    let all: Vec<String> = acked.keys().cloned().collect();
    tokio::time::timeout(FINAL_LIMIT, check_acknowledged(&node, &acked, &all))
        .await
        .expect("final checks timed out");
    let exit = node.stop().await;
    assert!(exit.status.success(), "graceful stop failed: {exit}");
    println!(
        "after {rounds} kills: all {} acknowledged cases present once and unaltered",
        acked.len()
    );
}

// ---------------------------------------------------------------------------------------
// fsync count

const INTAKES: usize = 1000;
const INTAKE_CLIENTS: usize = 50;
const FSYNCS_MAX: u64 = 200;

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The sum of the `calls` column of fsync and fdatasync in `strace -c` output.
fn fsync_calls(summary: &str) -> u64 {
    summary
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            match cols.last() {
                Some(&"fsync") | Some(&"fdatasync") if cols.len() >= 5 => {
                    Some(cols[3].parse::<u64>().unwrap_or_else(|e| {
                        panic!("strace summary line {line:?}: calls {:?}: {e}", cols[3])
                    }))
                }
                _ => None,
            }
        })
        .sum()
}

/// Runs a fresh node under strace, makes `intakes` acceptances from [`INTAKE_CLIENTS`]
/// clients, stops it with SIGTERM, and returns strace's fsync + fdatasync count.
async fn fsyncs_under_strace(intakes: usize) -> u64 {
    let dir = NodeDir::new();
    let summary = dir.root.path().join("strace-summary.txt");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&summary)
        .arg("--")
        // The shell prints its pid, then becomes the node: that pid gets the SIGTERM.
        .args(["sh", "-c", "echo \"pid $$\"; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_yimen-node"))
        .arg("serve")
        .arg("--config")
        .arg(dir.config());
    let node = common::start(cmd, &dir.next_stderr_path())
        .await
        .unwrap_or_else(|e| panic!("the node under strace did not start: {e}"));
    let pid: u32 = node
        .preamble
        .iter()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid line before the ready line: {:?}", node.preamble));

    let mut clients = JoinSet::new();
    for c in 0..INTAKE_CLIENTS {
        let share = intakes / INTAKE_CLIENTS + usize::from(c < intakes % INTAKE_CLIENTS);
        if share == 0 {
            continue;
        }
        let mut client = node.client().await;
        clients.spawn(async move {
            let mut numbers = Vec::with_capacity(share);
            for _ in 0..share {
                numbers.push(
                    apply_accepted(&mut client, senior_application(None))
                        .await
                        .number,
                );
            }
            numbers
        });
    }
    let mut numbers = BTreeSet::new();
    while let Some(done) = clients.join_next().await {
        numbers.extend(done.unwrap_or_else(|e| rethrow(e)));
    }
    assert_eq!(numbers.len(), intakes, "distinct case numbers acknowledged");

    let exit = node.stop_pid(pid).await;
    assert!(
        exit.status.success(),
        "the node under strace did not stop cleanly: {exit}"
    );
    assert!(!exit.stderr.contains("panicked"), "{}", exit.stderr);
    let text = std::fs::read_to_string(&summary)
        .unwrap_or_else(|e| panic!("strace wrote no summary at {}: {e}", summary.display()));
    fsync_calls(&text)
}

#[test]
fn strace_summary_parses() {
    let summary = "% time     seconds  usecs/call     calls    errors syscall\n\
        ------ ----------- ----------- --------- --------- ----------------\n \
        60.19    0.000065          32        42         1 fdatasync\n \
        39.81    0.000043          43         7           fsync\n\
        ------ ----------- ----------- --------- --------- ----------------\n\
        100.00    0.000108          36        49         1 total\n";
    assert_eq!(fsync_calls(summary), 49);
    assert_eq!(fsync_calls(""), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_intakes_from_fifty_clients_share_their_fsyncs() {
    if !strace_available() {
        if std::env::var_os("CI").is_some() {
            panic!("strace is missing and CI is set (.ci/run installs it)");
        }
        println!(
            "SKIPPED thousand_intakes_from_fifty_clients_share_their_fsyncs: strace is not installed (apt-get install -y strace)"
        );
        return;
    }
    let baseline = fsyncs_under_strace(0).await;
    let with_intakes = fsyncs_under_strace(INTAKES).await;
    let attributable = with_intakes.checked_sub(baseline).unwrap_or_else(|| {
        panic!("fewer fsyncs with intakes ({with_intakes}) than without ({baseline})")
    });
    println!("fsync+fdatasync calls, start and stop with no intake (baseline): {baseline}");
    println!("fsync+fdatasync calls, start, {INTAKES} intakes, stop: {with_intakes}");
    println!("fsync+fdatasync calls for {INTAKES} intakes: {attributable}");
    assert!(
        attributable > 0,
        "no fsync attributable to {INTAKES} acknowledged intakes: they were not made durable"
    );
    assert!(
        attributable <= FSYNCS_MAX,
        "{attributable} fsyncs for {INTAKES} intakes from {INTAKE_CLIENTS} clients: group commit is not grouping (at most {FSYNCS_MAX})"
    );
}

// ---------------------------------------------------------------------------------------
// Corruption matrix

/// The helper's name on one case: a byte string found in the store's data file.
const MARKER: &str = "标记代办人甲乙丙丁戊";
/// Words one of which an error about a damaged store names.
const PROBLEM_WORDS: [&str; 5] = ["corrupt", "high-water mark", "newer", "format", "behind"];

fn has_cjk(line: &str) -> bool {
    line.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Creates a store with acknowledged cases, stops the node, damages the store with
/// `corrupt` (which says what it did), and starts again: the node must refuse with a clear
/// error, or serve every acknowledged case unaltered.
async fn corruption_case(name: &str, corrupt: impl FnOnce(&NodeDir) -> String) {
    let dir = NodeDir::new();
    let node = dir.serve().await;
    let mut client = node.client().await;
    let mut numbers = Vec::new();
    for helper in ["代办人一", MARKER, "代办人三"] {
        numbers.push(
            apply_accepted(&mut client, senior_application(Some(helper)))
                .await
                .number,
        );
    }
    let mut before = Vec::new();
    for number in &numbers {
        before.push(get_case(&mut client, number).await.unwrap());
    }
    drop(client);
    let exit = node.stop().await;
    assert!(
        exit.status.success(),
        "{name}: graceful stop failed: {exit}"
    );

    let done = corrupt(&dir);
    match dir.start().await {
        Err(exit) => {
            let problem = exit
                .stderr
                .lines()
                .find(|l| {
                    let l = l.to_lowercase();
                    PROBLEM_WORDS.iter().any(|w| l.contains(w))
                })
                .map(str::to_owned);
            let chinese = exit.stderr.lines().find(|l| has_cjk(l)).map(str::to_owned);
            println!(
                "{name}: {done}; refused to start ({}):\n    {}\n    {}",
                exit.status,
                problem.as_deref().unwrap_or("(no line names the problem)"),
                chinese.as_deref().unwrap_or("(no Chinese line)")
            );
            assert!(
                !exit.stderr.contains("panicked"),
                "{name}: a panic message on stderr:\n{}",
                exit.stderr
            );
            assert!(
                !exit.status.success(),
                "{name}: exited 0 without serving:\n{}",
                exit.stderr
            );
            assert!(
                problem.is_some(),
                "{name}: the error does not name the problem ({PROBLEM_WORDS:?}):\n{}",
                exit.stderr
            );
            assert!(
                chinese.is_some(),
                "{name}: no Chinese line for the clerk:\n{}",
                exit.stderr
            );
        }
        Ok(node) => {
            let mut client = node.client().await;
            for view in &before {
                let now = get_case(&mut client, &view.number)
                    .await
                    .unwrap_or_else(|s| {
                        panic!(
                            "{name}: the node serves, but acknowledged case {} is not served: {s}",
                            view.number
                        )
                    });
                assert_eq!(
                    comparable(&now),
                    comparable(view),
                    "{name}: the node serves an altered case {}",
                    view.number
                );
            }
            let listed: BTreeSet<String> = list_all(&mut client)
                .await
                .into_iter()
                .map(|c| c.number)
                .collect();
            for number in &numbers {
                assert!(
                    listed.contains(number),
                    "{name}: case {number} missing from the listing"
                );
            }
            drop(client);
            let exit = node.stop().await;
            assert!(
                !exit.stderr.contains("panicked"),
                "{name}: a panic message on stderr:\n{}",
                exit.stderr
            );
            println!(
                "{name}: {done}; started and serves all {} acknowledged cases unaltered",
                before.len()
            );
        }
    }
}

/// The control: a clean stop and restart serves every case (the matrix's other branch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_control_untouched() {
    corruption_case("untouched (control)", |_| "nothing changed".to_owned()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_truncated_data_file() {
    corruption_case("truncated db", |dir| {
        let path = dir.data_file();
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len / 2).unwrap();
        file.sync_all().unwrap();
        format!("db cut from {len} to {} bytes", len / 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_flipped_header_byte() {
    corruption_case("flipped header byte", |dir| {
        // sled's first segment header: crc32 (0..4), LSN (4..12), max stable LSN (12..20).
        const AT: usize = 4;
        let path = dir.data_file();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[AT] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        format!("byte {AT} of db (first segment header, its LSN) flipped")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_flipped_byte_in_a_case_value() {
    corruption_case("flipped byte in a case", |dir| {
        // The marker is the helper's name, stored inside the case's value (and its event,
        // and the batch journal record that wrote them): flip a byte in every copy, so the
        // live one is hit whichever it is.
        let path = dir.data_file();
        let mut bytes = std::fs::read(&path).unwrap();
        let marker = MARKER.as_bytes();
        let at: Vec<usize> = bytes
            .windows(marker.len())
            .enumerate()
            .filter(|(_, w)| *w == marker)
            .map(|(i, _)| i)
            .collect();
        assert!(
            !at.is_empty(),
            "the marker is not in {} as plain bytes",
            path.display()
        );
        for i in &at {
            // Inside the name's fourth character: still within the value.
            bytes[i + 10] ^= 0x01;
        }
        std::fs::write(&path, &bytes).unwrap();
        format!(
            "one byte flipped in each of the {} copies of the marker in db (offsets {at:?})",
            at.len()
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_newer_format() {
    corruption_case("newer format", |dir| {
        let newer = FORMAT_VERSION + 1;
        let db = sled::Config::new()
            .path(dir.store())
            .mode(sled::Mode::LowSpace)
            .open()
            .unwrap();
        db.insert(FORMAT_KEY, frame_value(&newer.to_le_bytes()))
            .unwrap();
        db.flush().unwrap();
        drop(db);
        format!("format record rewritten to {newer} (this program: {FORMAT_VERSION})")
    })
    .await;
}
