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
//! through `yimen_node::server::run`, its parent address pointing at a byte-counting TCP proxy
//! written here, in front of the township's replication listener.
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
//! The harness pieces (deployment, township process) are copied from
//! `hub/tests/common/mod.rs`, which a bench cannot import and which others edit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a panic is a failure"
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use yimen_node::clock::{Clock, ManualClock, SystemClock};
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;
use yimen_proto::pb::link_admin_client::LinkAdminClient;

const TOWNSHIP: &str = "430421105000";
const VILLAGE: &str = "430421105204";
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
/// Longest wait for a process or a link to come up.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for one call.
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// Longest wait for the catch-up (the village's redial backoff is capped at 60 s).
const CATCHUP_LIMIT: Duration = Duration::from_secs(300);
/// Longest wait for the fill.
const FILL_LIMIT: Duration = Duration::from_secs(600);
const RESULTS: &str = "/work/shared/peers/RESULTS.md";

// ----- Deployment (after hub/tests/common/mod.rs) -----

/// Runs `yimen-hub` with `args` in `cwd`; panics with its output unless it succeeds.
fn hub_ok(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "yimen-hub {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn find(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
}

/// The CA and signed identities in a temporary folder.
struct Deployment {
    root: tempfile::TempDir,
}

struct Identity {
    cert: PathBuf,
    key: PathBuf,
}

impl Deployment {
    fn new() -> Deployment {
        let root = tempfile::tempdir().unwrap();
        hub_ok(&["pki", "init", "--dir", "ca"], root.path());
        Deployment { root }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn ca_dir(&self) -> PathBuf {
        self.path().join("ca")
    }

    /// `yimen-hub init --id`, signed by `yimen-hub pki sign`.
    fn hub_identity(&self, id: &str) -> Identity {
        let dir = self.path().join(format!("keys-{id}"));
        hub_ok(
            &["init", "--id", id, "--dir", dir.to_str().unwrap()],
            self.path(),
        );
        self.sign(&dir, id)
    }

    /// The node library's `init_identity` (what `yimen-node init --id` runs), signed by
    /// `yimen-hub pki sign`.
    fn node_identity(&self, id: &str) -> Identity {
        let dir = self.path().join(format!("keys-{id}"));
        yimen_node::pki::init_identity(&dir, yimen_node::pki::DEFAULT_TRUST_DOMAIN, Some(id), None)
            .unwrap();
        self.sign(&dir, id)
    }

    fn sign(&self, dir: &Path, id: &str) -> Identity {
        let csr = find(dir, "csr");
        let cert = dir.join(format!("{id}.crt"));
        hub_ok(
            &[
                "pki",
                "sign",
                "--ca",
                self.ca_dir().to_str().unwrap(),
                "--csr",
                csr.to_str().unwrap(),
                "--out",
                cert.to_str().unwrap(),
                "--days",
                "30",
            ],
            self.path(),
        );
        Identity {
            key: find(dir, "key"),
            cert,
        }
    }

    /// A box's config file: id, store, loopback clerk API, TLS files, parent or listener.
    fn config(
        &self,
        id: &str,
        identity: &Identity,
        parent: Option<SocketAddr>,
        listen: Option<SocketAddr>,
    ) -> PathBuf {
        let dir = self.path().join(format!("box-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!(
            "id = \"{id}\"\nstore = \"store\"\nclerk_listen = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\ncrl = \"{}\"\n",
            identity.cert.display(),
            identity.key.display(),
            self.ca_dir().join("ca.crt").display(),
            self.ca_dir().join("ca.crl").display(),
        );
        if let Some(p) = parent {
            text.push_str(&format!("parent = \"{p}\"\n"));
        }
        if let Some(l) = listen {
            text.push_str(&format!("listen = \"{l}\"\n"));
        }
        let path = dir.join("node.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

// ----- The township: the real binary -----

/// A running `yimen-hub serve`; SIGKILLed and reaped on drop unless stopped.
struct Township {
    child: Child,
    admin: SocketAddr,
    stderr_path: PathBuf,
}

impl Drop for Township {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Township {
    /// Starts `yimen-hub serve --config <config>` and waits for its ready line.
    async fn start(config: &Path, log_name: &str) -> Township {
        let stderr_path = config.parent().unwrap().join(format!("{log_name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn yimen-hub (cargo builds it for benches)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        // Reads the ready line, then keeps draining stdout so the hub never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.split(" serving the clerk API on ").nth(1)
                    && let Ok(addr) = addr.trim().parse()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let deadline = Instant::now() + READY_LIMIT;
        let admin = loop {
            if let Ok(addr) = rx.try_recv() {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the township exited ({status}) before it was ready: {}",
                    read(&stderr_path)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the township did not start in time: {}",
                read(&stderr_path)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Township {
            child,
            admin,
            stderr_path,
        }
    }

    /// SIGTERM (a graceful stop), then wait; SIGKILL if it does not end in time.
    async fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + READY_LIMIT;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                eprintln!("the township ignored SIGTERM; killing it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `read_bytes`/`write_bytes` (block IO) and `syscw` of the process, from /proc.
    fn io(&self) -> Option<(u64, u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).ok()?;
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
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
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

// ----- The village: in this process -----

struct Village {
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Village {
    async fn start(config: &Path, clock: ManualClock) -> Village {
        let config = yimen_node::config::NodeConfig::load(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let task = tokio::spawn(async move {
            yimen_node::server::run(config, listener, clock, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
        });
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            assert!(!task.is_finished(), "the village ended while starting");
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(2), ClerkClient::connect(url(admin))).await
                && c.list_items(pb::ListItemsRequest {}).await.is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the village did not start in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Village {
            admin,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the village did not stop")
            .unwrap()
            .unwrap();
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

async fn clerk(addr: SocketAddr) -> ClerkClient<Channel> {
    tokio::time::timeout(CALL_LIMIT, ClerkClient::connect(url(addr)))
        .await
        .expect("connect timed out")
        .unwrap()
}

async fn link_admin(addr: SocketAddr) -> LinkAdminClient<Channel> {
    tokio::time::timeout(CALL_LIMIT, LinkAdminClient::connect(url(addr)))
        .await
        .expect("connect timed out")
        .unwrap()
}

/// The link with `peer` as `LinkAdmin.Links` shows it.
async fn link_view(client: &mut LinkAdminClient<Channel>, peer: &str) -> Option<pb::LinkView> {
    let reply = tokio::time::timeout(CALL_LIMIT, client.links(pb::LinksRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    reply.links.into_iter().find(|l| l.peer == peer)
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A complete 老年优待证 application by a resident of the village, accepted at once.
fn senior_application(n: usize) -> pb::ApplyRequest {
    pb::ApplyRequest {
        operator: "测试员".to_owned(),
        item_code: "430421-MZ-0001".to_owned(),
        applicant: Some(pb::ApplicantInput {
            id_number: "11010519491231002X".to_owned(),
            name: "张桂英".to_owned(),
            household: VILLAGE.to_owned(),
            statuses: Vec::new(),
        }),
        materials: vec!["sfzfyj".to_owned(), "zp".to_owned()],
        helper: Some(pb::HelperInput {
            name: format!("代办人{n}"),
            relation: "子女".to_owned(),
        }),
    }
}

fn accepted_number(reply: pb::ApplyReply) -> String {
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => slip.case.unwrap().number,
        other => panic!("not accepted: {other:?}"),
    }
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
                let reply =
                    tokio::time::timeout(CALL_LIMIT, client.apply(senior_application(offset + i)))
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

// ----- The byte-counting proxy -----

/// A loopback TCP proxy in front of `target`, counting the bytes it forwards each way. A
/// connection counts only once the proxy reached the target (while the township is down the
/// village's attempts are closed unforwarded, and count nothing).
struct Proxy {
    addr: SocketAddr,
    /// Village → township.
    up: Arc<AtomicU64>,
    /// Township → village.
    down: Arc<AtomicU64>,
    /// Connections forwarded to the target.
    forwarded: Arc<AtomicU64>,
    /// Connections closed because the target did not answer.
    refused: Arc<AtomicU64>,
    /// When the last forwarded connection was made.
    last_forwarded_at: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, adding what it forwards to `count`; ends at EOF or an error.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let last_forwarded_at = Arc::new(Mutex::new(None));
        let (u, d, f, r, at) = (
            up.clone(),
            down.clone(),
            forwarded.clone(),
            refused.clone(),
            last_forwarded_at.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (u, d, f, r, at) = (u.clone(), d.clone(), f.clone(), r.clone(), at.clone());
                tokio::spawn(async move {
                    let server = match tokio::time::timeout(
                        Duration::from_secs(2),
                        TcpStream::connect(target),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => {
                            r.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    // Forward each read at once, as a direct connection would deliver it.
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    f.fetch_add(1, Ordering::Relaxed);
                    *at.lock().unwrap() = Some(Instant::now());
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let a = tokio::spawn(pump(cr, sw, u));
                    let b = tokio::spawn(pump(sr, cw, d));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Proxy {
            addr,
            up,
            down,
            forwarded,
            refused,
            last_forwarded_at,
            task,
        }
    }

    fn bytes(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
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
    let township_cfg = d.config(TOWNSHIP, &township_id, None, Some(listen));
    let village_cfg = d.config(VILLAGE, &village_id, Some(proxy.addr), None);

    // First contact, with the village's clock at the real time.
    let today = SystemClock.beijing().date();
    let day_a = today - chrono::Days::new(2);
    let day_b = today - chrono::Days::new(1);
    let clock = ManualClock::new(SystemClock.now());
    let township = Township::start(&township_cfg, "township-1").await;
    let village = Village::start(&village_cfg, clock.clone()).await;
    let mut village_links = link_admin(village.admin).await;
    eventually("the village's first contact", READY_LIMIT, || {
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
    let first = eventually("the village to accept", READY_LIMIT, || {
        let mut c = vclerk.clone();
        async move { c.apply(senior_application(0)).await.ok() }
    })
    .await
    .into_inner();
    let first = accepted_number(first);
    // The township holds it (a board showing lag 0 may predate the acceptance).
    let tclerk = clerk(township.admin).await;
    eventually("the first case at the township", READY_LIMIT, || {
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
    eventually("the village to notice", READY_LIMIT, || {
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
    let forwarded0 = proxy.forwarded.load(Ordering::Relaxed);
    let refused_while_down = proxy.refused.load(Ordering::Relaxed);

    // The township returns; the clock runs.
    eprintln!("starting the township; waiting for the catch-up…");
    let spawned = Instant::now();
    let township = Township::start(&township_cfg, "township-2").await;
    let ready = spawned.elapsed();
    let io_start = township.io();
    let township_pid = township.child.id().to_string();
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
                CALL_LIMIT,
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
    let io_end = township.io();
    let linked_at = proxy
        .last_forwarded_at
        .lock()
        .unwrap()
        .map(|t| t.saturating_duration_since(spawned))
        .expect("no connection reached the township");
    let connections = proxy.forwarded.load(Ordering::Relaxed) - forwarded0;
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
                    CALL_LIMIT,
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
        CALL_LIMIT,
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
    let township_log = read(&stderr_path);

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
