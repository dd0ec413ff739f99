//! Footprint of a village node, printed (not asserted): peak resident memory of the serving
//! process after a workload, the store's size on disk with N cases, the time from spawning
//! `yimen-node serve` to its first answered call, and the intake rates seen.
//!
//! `cargo bench -p yimen-node --bench footprint`; `YIMEN_FOOTPRINT_CASES` sets N (default
//! 100,000).
//!
//! Case numbers allow 9,999 acceptances per node and day, and the binary reads the system
//! clock, so N cases cannot go through one running binary in one day. The store is filled
//! through the entry point the binary itself calls (`server::run`: real gRPC on loopback,
//! real sled with its fsyncs), in this process, with a manual clock that moves one day per
//! [`CASES_PER_DAY`] cases and ends yesterday. Then the real binary is started on that store:
//! its startup, a workload of intakes today plus listings and reads, and its peak memory are
//! measured on that process alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a panic is a failure"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use yimen_node::clock::{Clock, ManualClock, SystemClock};
use yimen_node::config::NodeConfig;
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;

const NODE_ID: &str = "430421105204";
const CASES_DEFAULT: usize = 100_000;
/// Acceptances per simulated day while filling (the numbering allows 9,999).
const CASES_PER_DAY: usize = 9_000;
/// Concurrent clients feeding intakes.
const CLIENTS: usize = 32;
/// Intakes today on the real process (bounded by the day's numbers).
const WORKLOAD_INTAKES: usize = 5_000;
/// Reads of filled cases on the real process.
const WORKLOAD_READS: usize = 2_000;
/// Listings over all statuses on the real process.
const WORKLOAD_LISTS: usize = 20;
/// Sequential calls timed on one client.
const LATENCY_CALLS: u32 = 100;
const PROGRESS_EVERY: usize = 10_000;
const START_LIMIT: Duration = Duration::from_secs(60);

const RSS_TARGET_MIB: f64 = 64.0;
const FIRST_ANSWER_TARGET: Duration = Duration::from_secs(1);

fn application(helper: &str) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: "测试员".to_owned(),
        item_code: "430421-MZ-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "11010519491231002X".to_owned(),
            name: "张桂英".to_owned(),
            household: NODE_ID.to_owned(),
            statuses: Vec::new(),
        }),
        materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
        helper: Some(pb::HelperInput {
            name: helper.to_owned(),
            relation: "子女".to_owned(),
        }),
    }
}

async fn connect(addr: &str) -> ClerkClient<Channel> {
    ClerkClient::connect(format!("http://{addr}"))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// `count` acceptances from [`CLIENTS`] clients; progress on stderr every
/// [`PROGRESS_EVERY`] of `done`. Returns the numbers.
async fn feed(addr: &str, count: usize, done: &Arc<AtomicUsize>, total: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let mut client = connect(addr).await;
        let next = next.clone();
        let done = done.clone();
        clients.spawn(async move {
            let mut numbers = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let reply = client
                    .apply(application("王小明"))
                    .await
                    .unwrap_or_else(|s| panic!("apply refused: {s}"))
                    .into_inner();
                let Some(pb::apply_reply::Outcome::Accepted(slip)) = reply.outcome else {
                    panic!("not accepted: {reply:?}");
                };
                numbers.push(slip.case.unwrap().number);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(PROGRESS_EVERY) {
                    eprintln!("  {n} / {total} cases");
                }
            }
            numbers
        });
    }
    let mut numbers = Vec::with_capacity(count);
    while let Some(part) = clients.join_next().await {
        numbers.extend(part.unwrap());
    }
    numbers
}

/// Bytes under `path` (a file or a folder, recursively).
fn disk_size(path: &Path) -> u64 {
    let meta = std::fs::metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| disk_size(&e.unwrap().path()))
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!("id = \"{NODE_ID}\"\nclerk_listen = \"127.0.0.1:0\"\nstore = \"store\"\n"),
    )
    .unwrap();
    path
}

/// The real binary, serving; SIGKILLed on drop unless stopped.
struct Served {
    child: Child,
    addr: String,
    ready_line: Duration,
    first_answer: Duration,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Spawns `yimen-node serve`, and times the ready line and the first answered call.
    async fn start(dir: &Path) -> Served {
        let config = write_config(dir);
        let stderr = std::fs::File::create(dir.join("node.stderr")).unwrap();
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_yimen-node"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn yimen-node (cargo builds it for benches)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, addr)) = line.split_once("serving the clerk API on ") {
                    let _ = tx.send((addr.trim().to_owned(), spawned.elapsed()));
                }
            }
        });
        let (addr, ready_line) = rx.recv_timeout(START_LIMIT).unwrap_or_else(|_| {
            panic!(
                "no ready line; stderr:\n{}",
                std::fs::read_to_string(dir.join("node.stderr")).unwrap_or_default()
            )
        });
        let first_answer = loop {
            let url = format!("http://{addr}");
            let answered = tokio::time::timeout(Duration::from_millis(500), async move {
                let mut c = ClerkClient::connect(url).await.ok()?;
                c.get_calendar(pb::GetCalendarRequest {}).await.ok()
            })
            .await;
            if let Ok(Some(_)) = answered {
                break spawned.elapsed();
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "yimen-node exited ({status}); stderr:\n{}",
                    std::fs::read_to_string(dir.join("node.stderr")).unwrap_or_default()
                );
            }
            assert!(
                spawned.elapsed() < START_LIMIT,
                "no answer within {START_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        Served {
            child,
            addr,
            ready_line,
            first_answer,
        }
    }

    /// `VmHWM` and `VmRSS` of the process, in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} missing from /proc/<pid>/status"))
                * 1024
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// SIGTERM and wait.
    async fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + START_LIMIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "yimen-node ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Fills a store in `dir/store` with `cases` acceptances through the in-process server on a
/// manual clock ending yesterday; returns the rate and the numbers.
async fn fill(dir: &Path, cases: usize) -> (f64, Vec<String>) {
    let today = SystemClock.beijing().date();
    let days = cases.div_ceil(CASES_PER_DAY);
    let first_day = today - chrono::Days::new(days as u64);
    let at_nine = |d: NaiveDate| d.and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap());
    let clock = ManualClock::at_beijing(at_nine(first_day));
    let config =
        NodeConfig::parse(&std::fs::read_to_string(write_config(dir)).unwrap(), dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(yimen_node::server::run(
        config,
        listener,
        Arc::new(clock.clone()),
        async {
            let _ = stop_rx.await;
        },
    ));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut numbers = Vec::with_capacity(cases);
    for day in 0..days {
        let date = first_day + chrono::Days::new(day as u64);
        clock.set(at_nine(date).and_utc() - chrono::Duration::hours(8));
        let count = CASES_PER_DAY.min(cases - day * CASES_PER_DAY);
        numbers.extend(feed(&addr, count, &done, cases).await);
    }
    let rate = cases as f64 / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    (rate, numbers)
}

fn main() {
    let cases: usize = std::env::var("YIMEN_FOOTPRINT_CASES")
        .ok()
        .map(|v| v.trim().parse().expect("YIMEN_FOOTPRINT_CASES: a number"))
        .unwrap_or(CASES_DEFAULT);
    assert!(cases > 0, "YIMEN_FOOTPRINT_CASES must be positive");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(cases));
}

async fn run(cases: usize) {
    println!("yimen-node footprint: {}", env!("CARGO_BIN_EXE_yimen-node"));

    // 1. Startup on an empty store.
    let empty = tempfile::tempdir().unwrap();
    let served = Served::start(empty.path()).await;
    let (empty_ready, empty_first) = (served.ready_line, served.first_answer);
    served.stop().await;
    println!(
        "empty store: ready line after {} ms, first answer after {} ms",
        empty_ready.as_millis(),
        empty_first.as_millis()
    );

    // 2. Fill a store with `cases` cases.
    let dir = tempfile::tempdir().unwrap();
    eprintln!(
        "filling a store with {cases} cases from {CLIENTS} clients ({CASES_PER_DAY} a day, manual clock)…"
    );
    let (fill_rate, numbers) = fill(dir.path(), cases).await;
    let store = dir.path().join("store");
    let hwm = dir.path().join("store.hwm");
    let filled_size = disk_size(&store) + disk_size(&hwm);
    println!(
        "filled: {cases} cases at {fill_rate:.0} intakes/s; store {:.1} MiB ({:.0} bytes/case)",
        mib(filled_size),
        filled_size as f64 / cases as f64
    );

    // 3. The real binary on the filled store: startup, workload, memory.
    let served = Served::start(dir.path()).await;
    println!(
        "{cases}-case store: ready line after {} ms, first answer after {} ms",
        served.ready_line.as_millis(),
        served.first_answer.as_millis()
    );
    let intakes = WORKLOAD_INTAKES.min(cases);
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let today_numbers = feed(&served.addr, intakes, &done, intakes).await;
    let process_rate = intakes as f64 / started.elapsed().as_secs_f64();
    assert_eq!(today_numbers.len(), intakes);
    let mut client = connect(&served.addr).await;
    let step = (numbers.len() / WORKLOAD_READS).max(1);
    let mut reads = 0;
    for number in numbers.iter().step_by(step) {
        client
            .get_case(pb::GetCaseRequest {
                case_number: number.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("case {number} not served: {s}"));
        reads += 1;
    }
    let mut listed = 0;
    for _ in 0..WORKLOAD_LISTS {
        listed = client
            .list_cases(pb::ListCasesRequest {
                status: String::new(),
                overdue_only: false,
                due_by: None,
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .cases
            .len();
    }
    // One client, calls one after another: the round trip a clerk's terminal sees.
    let started = Instant::now();
    for _ in 0..LATENCY_CALLS {
        client
            .get_calendar(pb::GetCalendarRequest {})
            .await
            .unwrap();
    }
    let calendar_latency = started.elapsed() / LATENCY_CALLS;
    let started = Instant::now();
    for number in numbers.iter().take(LATENCY_CALLS as usize) {
        client
            .get_case(pb::GetCaseRequest {
                case_number: number.clone(),
            })
            .await
            .unwrap();
    }
    let case_latency = started.elapsed() / LATENCY_CALLS.min(numbers.len() as u32);
    let started = Instant::now();
    for _ in 0..LATENCY_CALLS {
        client.apply(application("王小明")).await.unwrap();
    }
    let apply_latency = started.elapsed() / LATENCY_CALLS;
    drop(client);
    let (hwm_bytes, rss_bytes) = served.memory();
    let first_answer = served.first_answer;
    served.stop().await;
    let final_size = disk_size(&store) + disk_size(&hwm);
    println!(
        "workload on the binary: {intakes} intakes at {process_rate:.0}/s, {reads} reads, {WORKLOAD_LISTS} listings of {listed}"
    );

    let ok = |good: bool| if good { "yes" } else { "NO" };
    println!();
    println!(
        "{:<46} {:>14} {:>10} {:>4}",
        "figure", "measured", "target", "met"
    );
    println!(
        "{:<46} {:>10.1} MiB {:>10} {:>4}",
        "peak resident memory (VmHWM), after workload",
        mib(hwm_bytes),
        "< 64 MiB",
        ok(mib(hwm_bytes) < RSS_TARGET_MIB)
    );
    println!(
        "{:<46} {:>10.1} MiB {:>10} {:>4}",
        "resident memory (VmRSS), after workload",
        mib(rss_bytes),
        "",
        ""
    );
    println!(
        "{:<46} {:>10.1} MiB {:>10} {:>4}",
        format!("store on disk, {cases} cases"),
        mib(filled_size),
        "",
        ""
    );
    println!(
        "{:<46} {:>10.1} MiB {:>10} {:>4}",
        format!("store on disk, {} cases", cases + intakes),
        mib(final_size),
        "",
        ""
    );
    println!(
        "{:<46} {:>11} ms {:>10} {:>4}",
        "spawn → first answer, empty store",
        empty_first.as_millis(),
        "< 1 s",
        ok(empty_first < FIRST_ANSWER_TARGET)
    );
    println!(
        "{:<46} {:>11} ms {:>10} {:>4}",
        format!("spawn → first answer, {cases}-case store"),
        first_answer.as_millis(),
        "< 1 s",
        ok(first_answer < FIRST_ANSWER_TARGET)
    );
    println!(
        "{:<46} {:>12.0}/s {:>10} {:>4}",
        format!("intake rate, filling ({CLIENTS} clients, in-process)"),
        fill_rate,
        "",
        ""
    );
    println!(
        "{:<46} {:>12.0}/s {:>10} {:>4}",
        format!("intake rate, binary ({CLIENTS} clients)"),
        process_rate,
        "",
        ""
    );
    for (call, latency) in [
        ("GetCalendar", calendar_latency),
        ("GetCase", case_latency),
        ("Apply", apply_latency),
    ] {
        println!(
            "{:<46} {:>11.1} ms {:>10} {:>4}",
            format!("one client, sequential {call} round trip"),
            latency.as_secs_f64() * 1000.0,
            "",
            ""
        );
    }
}
