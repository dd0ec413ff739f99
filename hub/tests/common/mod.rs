//! A deployment on loopback for the link tests and the catch-up bench (`benches/catchup.rs`
//! includes this file by path): the CA and certificates made by the PKI commands
//! (`yimen-hub pki …`, `yimen-hub init`; the village's key by the node library's
//! `init_identity`, the code `yimen-node init` runs), the township as the real `yimen-hub`
//! binary, the village in this process through `yimen_node::server::run` on its own sled
//! directory.

#![allow(
    dead_code,
    reason = "each test file, and the bench, uses part of the harness"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;

use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;

pub const COUNTY: &str = "430421000000";
pub const TOWNSHIP: &str = "430421105000";
pub const VILLAGE: &str = "430421105204";
pub const OTHER_VILLAGE: &str = "430421100201";
/// Longest wait for a process to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `yimen-hub` with `args` in `cwd`; panics with its output unless it succeeds.
pub fn hub_ok(args: &[&str], cwd: &Path) -> String {
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

/// A free loopback port for a hub's listen address, below the kernel's ephemeral range so
/// that no other socket of this process takes it before the hub binds it (the demo's
/// `free_addr`).
pub fn free_addr() -> SocketAddr {
    yimen_hub::demo::free_addr().unwrap()
}

/// The CA and one signed identity per box, in a temporary folder.
pub struct Deployment {
    pub root: tempfile::TempDir,
}

/// One box's certificate files.
#[derive(Clone, Debug)]
pub struct Identity {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub csr: PathBuf,
}

fn find(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
}

impl Deployment {
    /// `yimen-hub pki init --dir ca`.
    pub fn new() -> Deployment {
        let root = tempfile::tempdir().unwrap();
        hub_ok(&["pki", "init", "--dir", "ca"], root.path());
        Deployment { root }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.path().join("ca")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join("ca.crt")
    }

    pub fn ca_crl(&self) -> PathBuf {
        self.ca_dir().join("ca.crl")
    }

    /// A hub's key and request by `yimen-hub init --id`, signed by `yimen-hub pki sign`.
    pub fn hub_identity(&self, id: &str) -> Identity {
        let dir = self.path().join(format!("keys-{id}"));
        hub_ok(
            &["init", "--id", id, "--dir", dir.to_str().unwrap()],
            self.path(),
        );
        self.sign(&dir, id, 365)
    }

    /// A village's key and request by the node library (what `yimen-node init --id` runs),
    /// signed by `yimen-hub pki sign`.
    pub fn node_identity(&self, id: &str) -> Identity {
        let dir = self.path().join(format!("keys-{id}"));
        yimen_node::pki::init_identity(&dir, yimen_node::pki::DEFAULT_TRUST_DOMAIN, Some(id), None)
            .unwrap();
        self.sign(&dir, id, 365)
    }

    /// Signs the request in `dir` again (a renewal), writing `<dir>/<id>.crt`.
    pub fn sign(&self, dir: &Path, id: &str, days: u32) -> Identity {
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
                &days.to_string(),
            ],
            self.path(),
        );
        Identity {
            dir: dir.to_owned(),
            key: find(dir, "key"),
            cert,
            csr,
        }
    }

    /// `yimen-hub pki revoke <id>`.
    pub fn revoke(&self, id: &str) {
        hub_ok(
            &["pki", "revoke", "--ca", self.ca_dir().to_str().unwrap(), id],
            self.path(),
        );
    }

    /// A config file for a box: its id, store, loopback clerk API, TLS files, and the optional
    /// parent address and children's listener.
    pub fn config(
        &self,
        id: &str,
        identity: &Identity,
        parent: Option<SocketAddr>,
        listen: Option<SocketAddr>,
        extra: &str,
    ) -> PathBuf {
        let dir = self.path().join(format!("box-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!(
            "id = \"{id}\"\nstore = \"store\"\nclerk_listen = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\ncrl = \"{}\"\n",
            identity.cert.display(),
            identity.key.display(),
            self.ca_cert().display(),
            self.ca_crl().display(),
        );
        if let Some(p) = parent {
            text.push_str(&format!("parent = \"{p}\"\n"));
        }
        if let Some(l) = listen {
            text.push_str(&format!("listen = \"{l}\"\n"));
        }
        text.push_str(extra);
        let path = dir.join("node.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Deployment {
    /// The township (serving children on a free loopback port) and the village below it,
    /// each with its key made and signed: their config files, the village dialling the
    /// township directly.
    pub fn township_and_village(&self) -> (PathBuf, PathBuf) {
        let township_id = self.hub_identity(TOWNSHIP);
        let village_id = self.node_identity(VILLAGE);
        let listen = free_addr();
        (
            self.config(TOWNSHIP, &township_id, None, Some(listen), ""),
            self.config(VILLAGE, &village_id, Some(listen), None, ""),
        )
    }
}

/// The store directory of a box's config.
pub fn store_of(config: &Path) -> PathBuf {
    config.parent().unwrap().join("store")
}

/// A running `yimen-hub serve`; SIGKILLed and reaped on drop.
pub struct Hub {
    child: Child,
    pub admin: SocketAddr,
    pub stderr_path: PathBuf,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    /// Starts `yimen-hub serve --config <config>` and waits for its ready line.
    pub async fn start(config: &Path, log_name: &str) -> Hub {
        Hub::start_with_args(config, log_name, &[]).await
    }

    pub fn stderr(&self) -> String {
        read(&self.stderr_path)
    }

    /// The process id (for its figures in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM (a graceful stop), then wait; SIGKILL (on drop) if it does not end in time.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                eprintln!("the hub ignored SIGTERM; killing it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `yimen-hub links --json` against this hub.
    pub fn links(&self) -> Value {
        let out = hub_ok(
            &["links", "--json", "--hub", &self.admin.to_string()],
            Path::new("."),
        );
        serde_json::from_str(&out).unwrap()
    }

    pub async fn clerk(&self) -> ClerkClient<Channel> {
        clerk(self.admin).await
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

pub async fn clerk(addr: SocketAddr) -> ClerkClient<Channel> {
    tokio::time::timeout(CALL_TIMEOUT, ClerkClient::connect(format!("http://{addr}")))
        .await
        .unwrap()
        .unwrap()
}

/// A village running in this process on its own sled directory.
pub struct Village {
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Village {
    /// Runs `yimen_node::server::run` on the config; waits until it answers.
    pub async fn start(config: &Path) -> Result<Village, String> {
        Village::start_with_clock(config, Arc::new(yimen_node::clock::SystemClock)).await
    }

    /// `start`, the node reading `clock` (a `ManualClock` the caller moves, say).
    pub async fn start_with_clock(
        config: &Path,
        clock: Arc<dyn yimen_node::clock::Clock>,
    ) -> Result<Village, String> {
        let config = yimen_node::config::NodeConfig::load(config).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            yimen_node::server::run(config, listener, clock, async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if task.is_finished() {
                return Err(task.await.unwrap().err().unwrap_or_default());
            }
            if let Ok(Ok(mut c)) = tokio::time::timeout(
                Duration::from_secs(2),
                ClerkClient::connect(format!("http://{admin}")),
            )
            .await
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
        Ok(Village {
            admin,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub async fn clerk(&self) -> ClerkClient<Channel> {
        clerk(self.admin).await
    }

    /// The village's links, as `yimen-node links --json` prints them (same library code).
    pub async fn links(&self) -> Value {
        let mut out = Vec::new();
        yimen_node::cli::links(&self.admin.to_string(), true, &mut out)
            .await
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// Graceful stop; waits for the node to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("the village did not stop")
                .unwrap()
                .unwrap();
        }
    }
}

/// The state of the one link of `links` with `peer`.
pub fn link_state(links: &Value, peer: &str) -> Option<String> {
    links["links"]
        .as_array()?
        .iter()
        .find(|l| l["peer"] == peer)
        .map(|l| l["state"].as_str().unwrap_or_default().to_owned())
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A complete 老年优待证 application by a resident of the village, accepted at once.
pub fn senior_application(n: usize) -> pb::ApplyRequest {
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

/// The number of the case an application made; panics unless it was accepted.
pub fn accepted_number(reply: pb::ApplyReply) -> String {
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => slip.case.unwrap().number,
        other => panic!("not accepted: {other:?}"),
    }
}

/// Accepts `n` cases at a clerk API; returns their numbers.
pub async fn accept(client: &mut ClerkClient<Channel>, n: usize) -> Vec<String> {
    let mut numbers = Vec::with_capacity(n);
    for i in 0..n {
        let reply = tokio::time::timeout(CALL_TIMEOUT, client.apply(senior_application(i)))
            .await
            .expect("apply timed out")
            .unwrap_or_else(|s| panic!("apply refused: {s}"))
            .into_inner();
        numbers.push(accepted_number(reply));
    }
    numbers
}

/// Every case number a node holds (its clerk API's list).
pub async fn numbers(client: &mut ClerkClient<Channel>) -> Vec<String> {
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        client.list_cases(pb::ListCasesRequest::default()),
    )
    .await
    .expect("list timed out")
    .unwrap()
    .into_inner();
    let mut n: Vec<String> = reply.cases.into_iter().map(|c| c.number).collect();
    n.sort();
    n
}

// ----- TLS test helpers (tests/link_tls.rs) -----

impl Deployment {
    /// A second, unrelated CA by `yimen-hub pki init --dir <name>`; returns its folder.
    pub fn other_ca(&self, name: &str) -> PathBuf {
        hub_ok(&["pki", "init", "--dir", name], self.path());
        self.path().join(name)
    }

    /// A village's key and request in `<root>/<dir_name>` (made like `node_identity`),
    /// signed by the CA in `ca_dir` for `days`.
    pub fn node_identity_signed_by(
        &self,
        id: &str,
        dir_name: &str,
        ca_dir: &Path,
        days: u32,
    ) -> Identity {
        let dir = self.path().join(dir_name);
        yimen_node::pki::init_identity(&dir, yimen_node::pki::DEFAULT_TRUST_DOMAIN, Some(id), None)
            .unwrap();
        let csr = find(&dir, "csr");
        let cert = dir.join(format!("{id}.crt"));
        hub_ok(
            &[
                "pki",
                "sign",
                "--ca",
                ca_dir.to_str().unwrap(),
                "--csr",
                csr.to_str().unwrap(),
                "--out",
                cert.to_str().unwrap(),
                "--days",
                &days.to_string(),
            ],
            self.path(),
        );
        Identity {
            key: find(&dir, "key"),
            dir,
            cert,
            csr,
        }
    }

    /// `yimen-hub pki revoke <serial>`: one certificate, by its serial in hex.
    pub fn revoke_serial(&self, serial: &str) {
        hub_ok(
            &[
                "pki",
                "revoke",
                "--ca",
                self.ca_dir().to_str().unwrap(),
                serial,
            ],
            self.path(),
        );
    }

    /// The TLS files a box with `identity` uses: its certificate and key, this deployment's
    /// CA and CRL.
    pub fn tls_files(&self, identity: &Identity) -> yimen_node::tls::TlsFiles {
        yimen_node::tls::TlsFiles {
            cert: identity.cert.clone(),
            key: identity.key.clone(),
            ca: self.ca_cert(),
            crl: Some(self.ca_crl()),
        }
    }
}

/// The identity of node `id` in the default trust domain.
pub fn node_peer(id: &str) -> yimen_node::pki::PeerId {
    yimen_node::pki::PeerId::node(
        yimen_node::pki::TrustDomain::parse(yimen_node::pki::DEFAULT_TRUST_DOMAIN).unwrap(),
        yimen_core::division::DivisionCode::parse(id).unwrap(),
    )
}

/// The DER of the (first) certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap_or_else(|| panic!("no certificate in {}", path.display()))
        .unwrap()
        .to_vec()
}

/// What a test compares between two issues of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// Lowercase hex, as `yimen-hub pki revoke` takes it.
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

pub fn cert_facts(der: &[u8]) -> CertFacts {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let raw = cert.tbs_certificate.raw_serial();
    let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len() - 1);
    let serial: String = raw[first..].iter().map(|b| format!("{b:02x}")).collect();
    CertFacts {
        serial,
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A loopback TCP proxy to `target` that forwards both ways, counting what it forwards, and
/// can be told to stop forwarding (its sockets stay open and unread, like a link whose carrier
/// went silent), to resume, and to cut every open connection. Dropping it closes everything.
pub struct Proxy {
    pub addr: SocketAddr,
    forwarding: tokio::sync::watch::Sender<bool>,
    generation: tokio::sync::watch::Sender<u64>,
    counts: Arc<ProxyCounts>,
    task: tokio::task::JoinHandle<()>,
}

/// What a `Proxy` has done so far.
#[derive(Default)]
struct ProxyCounts {
    /// Connections accepted.
    accepted: AtomicUsize,
    /// Connections that reached the target (only these are forwarded).
    forwarded: AtomicUsize,
    /// Connections closed unforwarded: the target did not answer.
    refused: AtomicUsize,
    /// When the last forwarded connection reached the target.
    last_forwarded_at: Mutex<Option<Instant>>,
    /// Bytes forwarded from the client to the target.
    up: AtomicU64,
    /// Bytes forwarded from the target to the client.
    down: AtomicU64,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (forwarding, forwarding_rx) = tokio::sync::watch::channel(true);
        let (generation, generation_rx) = tokio::sync::watch::channel(0u64);
        let counts = Arc::new(ProxyCounts::default());
        let counter = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                counter.accepted.fetch_add(1, Ordering::SeqCst);
                let counts = counter.clone();
                let forwarding = forwarding_rx.clone();
                let mut generation = generation_rx.clone();
                generation.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(Ok(outbound)) =
                        tokio::time::timeout(CALL_TIMEOUT, tokio::net::TcpStream::connect(target))
                            .await
                    else {
                        counts.refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    // Forward each read at once, as a direct connection would deliver it.
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    counts.forwarded.fetch_add(1, Ordering::SeqCst);
                    *counts.last_forwarded_at.lock().unwrap() = Some(Instant::now());
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    // Either direction ending, or a cut, closes both sockets.
                    tokio::select! {
                        () = pump(ri, wo, forwarding.clone(), &counts.up) => {}
                        () = pump(ro, wi, forwarding, &counts.down) => {}
                        _ = generation.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            forwarding,
            generation,
            counts,
            task,
        }
    }

    /// Stop forwarding in both directions; sockets stay open, nothing more is read.
    pub fn pause(&self) {
        self.forwarding.send_replace(false);
    }

    pub fn resume(&self) {
        self.forwarding.send_replace(true);
    }

    /// Close every connection open now (new ones are accepted as usual).
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Connections that reached the target so far.
    pub fn forwarded(&self) -> usize {
        self.counts.forwarded.load(Ordering::SeqCst)
    }

    /// Connections closed so far without reaching the target (it did not answer).
    pub fn refused(&self) -> usize {
        self.counts.refused.load(Ordering::SeqCst)
    }

    /// When the last forwarded connection reached the target.
    pub fn last_forwarded_at(&self) -> Option<Instant> {
        *self.counts.last_forwarded_at.lock().unwrap()
    }

    /// Bytes forwarded so far: client → target, target → client.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counts.up.load(Ordering::Relaxed),
            self.counts.down.load(Ordering::Relaxed),
        )
    }
}

/// Copies `from` to `to` while forwarding is on, adding what it wrote to `count`; ends at EOF
/// or an error.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut forwarding: tokio::sync::watch::Receiver<bool>,
    count: &AtomicU64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if forwarding.wait_for(|f| *f).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = forwarding.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        // Paused between the read and the write: hold the bytes until resumed.
        if forwarding.wait_for(|f| *f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

// ----- Restore helpers: stores replaced while a box is stopped -----

/// Accepts `n` cases at a clerk API with `workers` calls in flight (group commit covers
/// them); returns their numbers in acceptance order.
pub async fn accept_concurrently(addr: SocketAddr, n: usize, workers: usize) -> Vec<String> {
    let client = clerk(addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mut c = client.clone();
        let share = n / workers + usize::from(w < n % workers);
        tasks.spawn(async move { accept(&mut c, share).await });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }
    all.sort();
    assert_eq!(all.len(), n);
    all
}

/// Whether a node's clerk API finds the case (`NotFound` is no; any other error fails).
pub async fn has_case(client: &mut ClerkClient<Channel>, number: &str) -> bool {
    let reply = tokio::time::timeout(
        CALL_TIMEOUT,
        client.get_case(pb::GetCaseRequest {
            case_number: number.to_owned(),
        }),
    )
    .await
    .expect("get_case timed out");
    match reply {
        Ok(_) => true,
        Err(s) if s.code() == tonic::Code::NotFound => false,
        Err(s) => panic!("get_case {number}: {s}"),
    }
}

/// Applies once more until the node stops refusing with `Unavailable` (a node being refilled
/// numbers nothing); returns the new case's number and how many refusals came first.
pub async fn accept_when_whole(addr: SocketAddr, limit: Duration) -> (String, usize) {
    let mut c = clerk(addr).await;
    let deadline = Instant::now() + limit;
    let mut refused = 0;
    loop {
        let reply = tokio::time::timeout(CALL_TIMEOUT, c.apply(senior_application(9999)))
            .await
            .expect("apply timed out");
        match reply {
            Ok(r) => return (accepted_number(r.into_inner()), refused),
            Err(s) if s.code() == tonic::Code::Unavailable => refused += 1,
            Err(s) => panic!("apply refused: {s}"),
        }
        assert!(
            Instant::now() < deadline,
            "the node still refuses to number after {limit:?} ({refused} refusals)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `.hwm` file beside a box's store.
pub fn mark_of(config: &Path) -> PathBuf {
    config.parent().unwrap().join("store.hwm")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Copies a stopped box's store directory and its `.hwm` into `to` (a backup).
pub fn backup_store(config: &Path, to: &Path) {
    copy_dir(&store_of(config), &to.join("store"));
    std::fs::copy(mark_of(config), to.join("store.hwm")).unwrap();
}

/// Deletes a stopped box's store directory, and its `.hwm` too when `with_mark`.
pub fn remove_store(config: &Path, with_mark: bool) {
    std::fs::remove_dir_all(store_of(config)).unwrap();
    if with_mark {
        std::fs::remove_file(mark_of(config)).unwrap();
    }
}

/// Replaces a stopped box's store directory by the backup's, and its `.hwm` too when
/// `with_mark` (else the current mark stays, ahead of the restored store).
pub fn restore_store(backup: &Path, config: &Path, with_mark: bool) {
    std::fs::remove_dir_all(store_of(config)).unwrap();
    copy_dir(&backup.join("store"), &store_of(config));
    if with_mark {
        std::fs::copy(backup.join("store.hwm"), mark_of(config)).unwrap();
    }
}

/// A stopped box's register, opened by the node library; it stops (`Recovery::Stop`)
/// rather than take a new epoch, so reading changes nothing the box would notice.
pub fn open_register(
    config: &Path,
    id: &str,
) -> yimen_node::register::Register<yimen_node::store::sled_store::SledStore> {
    use yimen_node::store::sled_store::{SledOptions, SledStore};
    let node: yimen_core::catalog::NodeId = id.parse().unwrap();
    let (store, opened) = SledStore::open(&store_of(config), &SledOptions::default()).unwrap();
    yimen_node::register::Register::open(
        store,
        opened,
        node,
        yimen_node::server::bootstrap(node),
        yimen_node::register::Recovery::Stop,
    )
    .unwrap()
}

/// The identities of the events of a register's outbox for `peer`, refill-only entries
/// included, in position order.
pub fn outbox_ids(
    register: &yimen_node::register::Register<yimen_node::store::sled_store::SledStore>,
    peer: &str,
) -> Vec<yimen_core::link::EventId> {
    let peer = peer.parse().unwrap();
    register
        .outbox(peer, 1, true, 1_000_000, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

// ----- Desk helpers (tests/desk.rs) -----

impl Hub {
    /// `start`, with more arguments after `serve --config <config>` (e.g.
    /// `--clock-offset-secs N`, a hub restarted "days later").
    pub async fn start_with_args(config: &Path, log_name: &str, args: &[&str]) -> Hub {
        let stderr_path = config.parent().unwrap().join(format!("{log_name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_yimen-hub"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        // Reads the ready line, then keeps draining stdout so the hub never blocks on it.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.split(" serving the clerk API on ").nth(1)
                    && let Ok(addr) = addr.trim().parse()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let admin = loop {
            if let Ok(addr) = rx.try_recv() {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the hub exited ({status}) before it was ready: {}",
                    read(&stderr_path)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not start in time: {}",
                read(&stderr_path)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Hub {
            child,
            admin,
            stderr_path,
        }
    }
}

/// Longest wait for a desk's view of a case to change (a handoff crossing links, a timer).
pub const DESK_WAIT: Duration = Duration::from_secs(60);

/// A desk's certificate files and the hub it dials.
pub struct Desk {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub crl: PathBuf,
    pub hub: std::net::SocketAddr,
}

impl Desk {
    /// `yimen-hub init <who> --dir <dir>`, signed by `yimen-hub pki sign`.
    pub fn new(d: &Deployment, who: &[&str], dir_name: &str, hub: std::net::SocketAddr) -> Desk {
        let dir = d.path().join(dir_name);
        let mut args = vec!["init"];
        args.extend_from_slice(who);
        args.extend_from_slice(&["--dir", dir.to_str().unwrap()]);
        hub_ok(&args, d.path());
        let identity = d.sign(&dir, dir_name, 365);
        Desk {
            cert: identity.cert,
            key: identity.key,
            ca: d.ca_cert(),
            crl: d.ca_crl(),
            hub,
        }
    }

    /// `yimen-hub desk` dialling this desk's hub with its certificate.
    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_yimen-hub"));
        c.arg("desk")
            .args(["--hub", &self.hub.to_string()])
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .arg("--ca")
            .arg(&self.ca);
        c
    }

    /// Runs `yimen-hub desk … --json <args>`: the JSON document on success; on failure the
    /// `error` document printed and stderr.
    pub fn run(&self, args: &[&str]) -> Result<Value, (Value, String)> {
        let out = self
            .command()
            .arg("--crl")
            .arg(&self.crl)
            .arg("--json")
            .args(args)
            .env_remove("YIMEN_OPERATOR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let doc: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        if out.status.success() {
            assert!(!doc.is_null(), "desk {args:?}: no JSON on stdout: {stdout}");
            Ok(doc)
        } else {
            Err((doc, stderr))
        }
    }

    /// Runs `yimen-hub desk <args>` for people (no `--json`); its stdout.
    pub fn text(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert!(out.status.success(), "desk {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> Value {
        self.run(args)
            .unwrap_or_else(|(doc, stderr)| panic!("desk {args:?} refused: {doc} {stderr}"))
    }

    /// Polls `show` until `check` accepts the case.
    pub async fn wait_for(&self, what: &str, case: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, DESK_WAIT, || {
            let shown = self.run(&["show", case]).ok();
            let found = shown.filter(|v| check(&v["case"]));
            async move { found }
        })
        .await
    }
}
