//! Catch-up of one link, printed (not asserted): a village holding 10,000 events its township
//! has not seen, and the time and wire bytes until the township holds them all durably.
//!
//! `cargo bench -p yimen-hub --bench catchup`
//!
//! One run on loopback, the real deployment: a CA and certificates made by the PKI commands
//! (`yimen-hub pki init`, `yimen-hub init --id`, `yimen-hub pki sign`; the village's key by
//! `yimen_node::pki::init_identity`, what `yimen-node init` runs), mutual TLS, gzip, sled with
//! its fsyncs on both sides. The township is the real `yimen-hub serve` binary (Cargo builds
//! it for benches and names it in `CARGO_BIN_EXE_yimen-hub`); the village runs in this process
//! through `yimen_node::server::run`, its parent address pointing at the harness's TCP proxy
//! (which counts the bytes it forwards each way) in front of the township's replication
//! listener.
//!
//! Steps: first contact (a new village numbers nothing before its parent answered), the
//! township stopped, 10,000 senior-card acceptances at the village from [`CLIENTS`] clerk
//! clients, the township started again; then the clock runs until the township holds all
//! 10,000 durably. The village's clock is a manual one: a day allows 9,999 case numbers, so
//! the acceptances are dated over two past days, and the clock is set back to the real time
//! before the township returns (the handshake compares clocks).
//!
//! "Durably at the township" is seen two ways, polled every [`POLL_EVERY`]: the village's link
//! to the township shows `connected` with lag 0 in `LinkAdmin.Links` (lag counts outbox
//! events after the last acknowledged position, and the township acknowledges only after its
//! group commit and fsync); and the township's clerk API answers `GetCase` for the last
//! number accepted (the link delivers and applies in log order, and a clerk reply leaves only
//! after the sync covering what it read). Afterwards every one of the 10,000 numbers is
//! looked up at the township with `GetCase` (listings cap at 1,000 entries).
//!
//! The deployment, the township process, the village, the proxy and the application are the
//! link tests' harness, `hub/tests/common/mod.rs`, included here by path.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a panic is a failure"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use yimen_node::clock::{Clock, ManualClock, SystemClock};
use yimen_proto::pb;
use yimen_proto::pb::link_admin_client::LinkAdminClient;

use common::{
    CALL_TIMEOUT, Deployment, Hub, Proxy, READY_TIMEOUT, TOWNSHIP, VILLAGE, Village,
    accepted_number, clerk, eventually, free_addr, senior_application,
};

/// Events waiting at the village when the township returns.
const EVENTS: usize = 10_000;
/// Acceptances dated on each of two past days (a day allows 9,999 numbers).
const PER_DAY: usize = EVENTS / 2;
/// Concurrent clerk clients feeding the village.
const CLIENTS: usize = 16;
/// Concurrent clients checking the township afterwards.
const CHECKERS: usize = 8;
/// How often the catch-up is polled.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// The link status refresh of the sync driver (`yimen_node::sync::STATUS_EVERY`).
const STATUS_EVERY: Duration = yimen_node::sync::STATUS_EVERY;
/// Longest wait for the catch-up (the village's redial backoff is capped at 60 s).
const CATCHUP_LIMIT: Duration = Duration::from_secs(300);
/// Longest wait for the fill.
const FILL_LIMIT: Duration = Duration::from_secs(600);
const RESULTS: &str = "/work/shared/peers/RESULTS.md";

// ----- Figures from /proc -----

/// `read_bytes`/`write_bytes` (block IO) and `syscw` of process `pid`, from /proc.
fn proc_io(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((
        field("read_bytes:")?,
        field("write_bytes:")?,
        field("syscw:")?,
    ))
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time (user + system, in ticks) of a `/proc/.../stat` file, and its thread name.
fn stat_cpu(path: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_owned();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// CPU ticks of a process and of its thread(s) whose name starts with `thread`.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    process: u64,
    thread: u64,
}

fn cpu_of(pid: &str, thread: &str) -> Cpu {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let process = stat_cpu(&base.join("stat")).map_or(0, |(_, t)| t);
    let thread = std::fs::read_dir(base.join("task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| stat_cpu(&t.path().join("stat")))
                .filter(|(name, _)| name.starts_with(thread))
                .map(|(_, t)| t)
                .sum()
        })
        .unwrap_or(0);
    Cpu { process, thread }
}

// ----- Clients -----

async fn link_admin(addr: SocketAddr) -> LinkAdminClient<Channel> {
    tokio::time::timeout(
        CALL_TIMEOUT,
        LinkAdminClient::connect(format!("http://{addr}")),
    )
    .await
    .expect("connect timed out")
    .unwrap()
}

/// The link with `peer` as `LinkAdmin.Links` shows it.
async fn link_view(client: &mut LinkAdminClient<Channel>, peer: &str) -> Option<pb::LinkView> {
    let reply = tokio::time::timeout(CALL_TIMEOUT, client.links(pb::LinksRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    reply.links.into_iter().find(|l| l.peer == peer)
}

/// `count` acceptances from [`CLIENTS`] clients; returns the numbers.
async fn feed(addr: SocketAddr, count: usize, offset: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let mut client = clerk(addr).await;
        let next = next.clone();
        clients.spawn(async move {
            let mut numbers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return numbers;
                }
                let reply = tokio::time::timeout(
                    CALL_TIMEOUT,
                    client.apply(senior_application(offset + i)),
                )
                .await
                .expect("apply timed out")
                .unwrap_or_else(|s| panic!("apply refused: {s}"))
                .into_inner();
                numbers.push(accepted_number(reply));
            }
        });
    }
    let mut numbers = Vec::with_capacity(count);
    while let Some(part) = clients.join_next().await {
        numbers.extend(part.unwrap());
    }
    numbers
}

/// 09:00 Beijing on `day`.
fn at_nine(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_time(NaiveTime::from_hms_opt(9, 0, 0).unwrap())
        .and_utc()
        - chrono::Duration::hours(8)
}

// ----- The run -----

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn run() {
    let hub_bin = env!("CARGO_BIN_EXE_yimen-hub");
    println!("yimen-hub catch-up: township = the yimen-hub binary {hub_bin}");
    println!("  (CARGO_BIN_EXE_yimen-hub, set by Cargo for benches); village in this process");
    println!("  (yimen_node::server::run); parent address = a byte-counting loopback TCP proxy");

    // Deployment: CA, certificates, configs.
    let d = Deployment::new();
    let township_id = d.hub_identity(TOWNSHIP);
    let village_id = d.node_identity(VILLAGE);
    let listen = free_addr();
    let proxy = Proxy::start(listen).await;
    let township_cfg = d.config(TOWNSHIP, &township_id, None, Some(listen), "");
    let village_cfg = d.config(VILLAGE, &village_id, Some(proxy.addr), None, "");

    // First contact, with the village's clock at the real time.
    let today = SystemClock.beijing().date();
    let day_a = today - chrono::Days::new(2);
    let day_b = today - chrono::Days::new(1);
    let clock = ManualClock::new(SystemClock.now());
    let township = Hub::start(&township_cfg, "township-1").await;
    let village = Village::start_with_clock(&village_cfg, Arc::new(clock.clone()))
        .await
        .expect("the village did not start");
    let mut village_links = link_admin(village.admin).await;
    eventually("the village's first contact", READY_TIMEOUT, || {
        let mut c = village_links.clone();
        async move {
            link_view(&mut c, TOWNSHIP)
                .await
                .filter(|l| l.state == "connected")
        }
    })
    .await;
    clock.set(at_nine(day_a));
    let vclerk = clerk(village.admin).await;
    let first = eventually("the village to accept", READY_TIMEOUT, || {
        let mut c = vclerk.clone();
        async move { c.apply(senior_application(0)).await.ok() }
    })
    .await
    .into_inner();
    let first = accepted_number(first);
    // The township holds it (a board showing lag 0 may predate the acceptance).
    let tclerk = clerk(township.admin).await;
    eventually("the first case at the township", READY_TIMEOUT, || {
        let mut c = tclerk.clone();
        let number = first.clone();
        async move {
            c.get_case(pb::GetCaseRequest {
                case_number: number,
            })
            .await
            .ok()
        }
    })
    .await;
    drop(tclerk);
    eprintln!("first contact done ({first} at the township); stopping the township");

    // The township down; 10,000 acceptances.
    township.stop().await;
    eventually("the village to notice", READY_TIMEOUT, || {
        let mut c = village_links.clone();
        async move {
            link_view(&mut c, TOWNSHIP)
                .await
                .filter(|l| l.state != "connected")
        }
    })
    .await;
    eprintln!("accepting {EVENTS} cases at the village from {CLIENTS} clients…");
    let fill_started = Instant::now();
    let mut numbers = Vec::with_capacity(EVENTS);
    for (i, day) in [day_a, day_b].into_iter().enumerate() {
        clock.set(at_nine(day));
        let part = tokio::time::timeout(FILL_LIMIT, feed(village.admin, PER_DAY, 1 + i * PER_DAY))
            .await
            .expect("the fill took too long");
        numbers.extend(part);
    }
    let fill_time = fill_started.elapsed();
    assert_eq!(numbers.len(), EVENTS);
    numbers.sort();
    let last = numbers.last().unwrap().clone();
    // The handshake compares clocks: back to the real time.
    clock.set(SystemClock.now());
    let (up0, down0) = proxy.bytes();
    let forwarded0 = proxy.forwarded();
    let refused_while_down = proxy.refused();

    // The township returns; the clock runs.
    eprintln!("starting the township; waiting for the catch-up…");
    let spawned = Instant::now();
    let township = Hub::start(&township_cfg, "township-2").await;
    let ready = spawned.elapsed();
    let io_start = proc_io(township.pid());
    let township_pid = township.pid().to_string();
    // Thread names are cut at 15 bytes: "node-4304211050" (township), "node-4304211052".
    let township_cpu0 = cpu_of(&township_pid, &format!("node-{}", &TOWNSHIP[..10]));
    let village_cpu0 = cpu_of("self", &format!("node-{}", &VILLAGE[..10]));
    let mut tclerk = clerk(township.admin).await;
    let mut lag0_at: Option<(Duration, (u64, u64))> = None;
    let mut last_at: Option<(Duration, (u64, u64))> = None;
    let mut first_lag: Option<(u64, u64)> = None;
    let mut max_lag = 0u64;
    let mut township_cpu1 = Cpu::default();
    let mut village_cpu1 = Cpu::default();
    let mut states = Vec::<(Duration, String, u64)>::new();
    // The proxy's count of bytes up, sampled at each poll: when the village had sent what.
    let mut sent = Vec::<(Duration, u64)>::new();
    let deadline = spawned + CATCHUP_LIMIT;
    while lag0_at.is_none() || last_at.is_none() {
        assert!(
            Instant::now() < deadline,
            "no catch-up within {CATCHUP_LIMIT:?}; the village's link: {:?}",
            link_view(&mut village_links, TOWNSHIP).await
        );
        if last_at.is_none()
            && let Ok(Ok(_)) = tokio::time::timeout(
                CALL_TIMEOUT,
                tclerk.get_case(pb::GetCaseRequest {
                    case_number: last.clone(),
                }),
            )
            .await
        {
            last_at = Some((spawned.elapsed(), proxy.bytes()));
            township_cpu1 = cpu_of(&township_pid, &format!("node-{}", &TOWNSHIP[..10]));
            village_cpu1 = cpu_of("self", &format!("node-{}", &VILLAGE[..10]));
        }
        if lag0_at.is_none()
            && let Some(l) = link_view(&mut village_links, TOWNSHIP).await
        {
            if states
                .last()
                .is_none_or(|(_, s, lag)| *s != l.state || *lag != l.lag_events)
            {
                states.push((spawned.elapsed(), l.state.clone(), l.lag_events));
            }
            if l.state == "connected" {
                first_lag.get_or_insert((l.lag_events, l.lag_bytes));
                max_lag = max_lag.max(l.lag_events);
                if l.lag_events == 0 {
                    lag0_at = Some((spawned.elapsed(), proxy.bytes()));
                }
            }
        }
        let up = proxy.bytes().0 - up0;
        if sent.last().is_none_or(|(_, b)| *b != up) {
            sent.push((spawned.elapsed(), up));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let io_end = proc_io(township.pid());
    let linked_at = proxy
        .last_forwarded_at()
        .map(|t| t.saturating_duration_since(spawned))
        .expect("no connection reached the township");
    let connections = proxy.forwarded() - forwarded0;
    let (lag0_time, (up_lag0, down_lag0)) = lag0_at.unwrap();
    let (last_time, (up_last, down_last)) = last_at.unwrap();
    // When the bytes up reached a share of what the catch-up sent (as polled).
    let sent_by = |share: f64| {
        let goal = ((up_last - up0) as f64 * share).ceil() as u64;
        sent.iter()
            .find(|(_, b)| *b >= goal)
            .map_or(f64::NAN, |(t, _)| secs(t.saturating_sub(linked_at)))
    };

    // Double check: every number at the township (GetCase, uncapped), and its view of the link.
    let mut all = numbers.clone();
    all.push(first.clone());
    let all = Arc::new(all);
    let next = Arc::new(AtomicUsize::new(0));
    let mut checkers = JoinSet::new();
    for _ in 0..CHECKERS {
        let mut c = clerk(township.admin).await;
        let (all, next) = (all.clone(), next.clone());
        checkers.spawn(async move {
            let mut found = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(number) = all.get(i) else {
                    return found;
                };
                let got = tokio::time::timeout(
                    CALL_TIMEOUT,
                    c.get_case(pb::GetCaseRequest {
                        case_number: number.clone(),
                    }),
                )
                .await
                .expect("GetCase timed out");
                if got.is_ok() {
                    found += 1;
                }
            }
        });
    }
    let mut found = 0;
    while let Some(n) = checkers.join_next().await {
        found += n.unwrap();
    }
    let listed = tokio::time::timeout(
        CALL_TIMEOUT,
        tclerk.list_cases(pb::ListCasesRequest::default()),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner()
    .cases
    .len();
    let mut township_links = link_admin(township.admin).await;
    let township_view = link_view(&mut township_links, VILLAGE).await;
    let village_view = link_view(&mut village_links, TOWNSHIP).await;
    let (up_end, down_end) = proxy.bytes();

    village.stop().await;
    let stderr_path = township.stderr_path.clone();
    township.stop().await;
    let township_log = std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // ----- Report -----
    let events = EVENTS as f64;
    let per_event = |up: u64, down: u64| (up - up0 + down - down0) as f64 / events;
    println!();
    println!(
        "fill: {EVENTS} acceptances at the village (township down) from {CLIENTS} clients in {:.2} s ({:.0}/s); {refused_while_down} redials refused by the proxy meanwhile",
        secs(fill_time),
        events / secs(fill_time)
    );
    println!(
        "township: spawned → ready line {:.3} s; village's redial reached it at {:.3} s; {connections} connection(s) during the catch-up",
        secs(ready),
        secs(linked_at)
    );
    println!(
        "village link as polled every {} ms (t since spawn, state, lag events):",
        POLL_EVERY.as_millis()
    );
    for (t, s, lag) in &states {
        println!("  {:>8.3} s  {s:<12} lag {lag}", secs(*t));
    }
    println!(
        "  first lag seen while connected: {}; largest: {max_lag} events",
        first_lag.map_or("-".to_owned(), |(e, b)| format!(
            "{e} events, {b} bytes as stored (before gzip)"
        ))
    );
    println!(
        "village → township bytes forwarded, s after the link came up: 50 % by {:.3}, 90 % by {:.3}, 100 % by {:.3}",
        sent_by(0.5),
        sent_by(0.9),
        sent_by(1.0)
    );
    println!();
    println!("{:<62} {:>14}", "figure", "measured");
    let row = |name: &str, value: String| println!("{name:<62} {value:>14}");
    row("events waiting at the village", EVENTS.to_string());
    row(
        "catch-up, link up → township GetCase answers the last number",
        format!("{:.3} s", secs(last_time - linked_at)),
    );
    row(
        "  events/s",
        format!("{:.0}", events / secs(last_time - linked_at)),
    );
    row(
        "catch-up, link up → village link connected, lag 0",
        format!("{:.3} s", secs(lag0_time - linked_at)),
    );
    row(
        "  events/s",
        format!("{:.0}", events / secs(lag0_time - linked_at)),
    );
    row(
        &format!(
            "  (lag is refreshed every {} ms: up to that late)",
            STATUS_EVERY.as_millis()
        ),
        String::new(),
    );
    row(
        "township spawn → last number answered (with redial backoff)",
        format!("{:.3} s", secs(last_time)),
    );
    row(
        "township spawn → lag 0 (with redial backoff)",
        format!("{:.3} s", secs(lag0_time)),
    );
    row(
        "bytes up (village → township), to last number answered",
        (up_last - up0).to_string(),
    );
    row(
        "bytes down (township → village), to last number answered",
        (down_last - down0).to_string(),
    );
    row(
        "bytes per event, both directions, to last number answered",
        format!("{:.1}", per_event(up_last, down_last)),
    );
    row("bytes up, to lag 0", (up_lag0 - up0).to_string());
    row("bytes down, to lag 0", (down_lag0 - down0).to_string());
    row(
        "bytes per event, both directions, to lag 0",
        format!("{:.1}", per_event(up_lag0, down_lag0)),
    );
    row(
        "bytes per event, both directions, at the end of the run",
        format!("{:.1}", per_event(up_end, down_end)),
    );
    row(
        "township holds (GetCase of every number, incl. first contact)",
        format!("{found} / {}", all.len()),
    );
    row("township ListCases (capped at 1,000)", listed.to_string());
    if let (Some((r0, w0, s0)), Some((r1, w1, s1))) = (io_start, io_end) {
        row(
            "township block IO during catch-up: read / written",
            format!("{} / {} KiB", (r1 - r0) / 1024, (w1 - w0) / 1024),
        );
        row(
            "township write-family syscalls during catch-up",
            (s1 - s0).to_string(),
        );
    }
    let ticks = clock_ticks();
    let cpu = |a: u64, b: u64| format!("{:.2} s", (b.saturating_sub(a)) as f64 / ticks);
    row(
        "CPU to last number: township process / its node thread",
        format!(
            "{} / {}",
            cpu(township_cpu0.process, township_cpu1.process),
            cpu(township_cpu0.thread, township_cpu1.thread)
        ),
    );
    row(
        "CPU to last number: bench process* / village node thread",
        format!(
            "{} / {}",
            cpu(village_cpu0.process, village_cpu1.process),
            cpu(village_cpu0.thread, village_cpu1.thread)
        ),
    );
    println!("  * the bench process runs the village, the proxy and the polls");
    let show = |v: Option<pb::LinkView>| {
        v.map_or("none".to_owned(), |l| {
            format!("{} lag {}", l.state, l.lag_events)
        })
    };
    row("village's link at the end", show(village_view));
    row("township's link at the end", show(township_view));
    println!(
        "bytes: counted by the proxy on forwarded connections only (TLS records, HTTP/2 and gRPC"
    );
    println!("framing, gzip, keepalive pings), from the township's start; the fill sent nothing.");
    let warnings = township_log.lines().filter(|l| l.contains("WARN")).count();
    let errors = township_log.lines().filter(|l| l.contains("ERROR")).count();
    println!("township log: {warnings} WARN, {errors} ERROR lines");
    for l in township_log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
    {
        println!("  {l}");
    }

    println!();
    println!("peers, quoted from {RESULTS} (not re-measured; medians [min–max], hop 1 edge→hub,");
    println!("10,000 × 300-byte JSON docs, same 2-vCPU box class, loopback):");
    for line in [
        "PouchDB 9, batch_size 100:      5.64 s [5.13–5.83] = 1,773 docs/s;  536 wire bytes/doc; no fsync per record",
        "PouchDB 9, batch_size 500:      3.50 s [3.46–4.53] = 2,854 docs/s;  516 wire bytes/doc; no fsync per record",
        "NATS 2.9.10, default sync:      0.19 s [0.17–0.23] = 53,464 msgs/s; 450 wire bytes/msg; 0 fsyncs in the run",
        "NATS 2.15.1, default sync:      0.38 s [0.35–0.41] = 26,062 msgs/s; 466 wire bytes/msg; 0 fsyncs in the run",
        "NATS 2.15.1, sync_interval always: 3.25 s [3.02–3.32] = 3,080 msgs/s; 466 wire bytes/msg; 1 fsync per message",
        "disk: 300 B append + fdatasync (python): 3,661–4,239 writes/s",
    ] {
        println!("  {line}");
    }
    println!(
        "  (PouchDB hop 1 request bodies are not compressed; NATS 2.15.1 leafnode compression was"
    );
    println!("  off (s2_uncompressed) in the final runs; NATS bytes are kernel TCP counters)");
}
