//! `yimen-hub demo`: a whole county on loopback, in this process, with no setup. 衡阳县 (with
//! its 医保局 station), 演陂镇 and 西渡镇, and three villages, each a real node (sled store,
//! tonic services, mutual TLS links with certificates made by the PKI code the `pki`
//! commands run), on a fixed date and a demo clock the story moves forward by hand.
//!
//! Invariants: every event goes through the nodes' public services (clerk API, desk API,
//! links), never into a store directly; every wait is bounded (a step that does not happen
//! in its time fails the demo with a clear message, exit non-zero); the final state is read
//! back from the stopped stores with the same `inspect` as `yimen-node inspect`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::NaiveDate;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use yimen_node::clock::{Clock, ManualClock};
use yimen_node::config::NodeConfig;
use yimen_node::pki;
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;

/// The county of the demo and its hubs and villages (DOMAIN.md's real codes; 西渡镇示范村 is
/// a fixture name).
pub const COUNTY: &str = "430421000000";
pub const YANPI: &str = "430421105000";
pub const XIDU: &str = "430421100000";
pub const HEQUAN: &str = "430421105204";
pub const HUANGSHI: &str = "430421105200";
pub const XIDU_VILLAGE: &str = "430421100201";
/// The 医保局 station of the county.
pub const STATION_DEPT: &str = "ybj";
/// The township reviewers of the demo (operators of their hub).
pub const REVIEWERS: [(&str, &str); 2] = [(YANPI, "zhao.shenhe"), (XIDU, "qian.shenhe")];
/// The 医保局 clerk acting at the station.
pub const STATION_CLERK: &str = "孙医保";
/// The longest any one step of the story may take before the demo gives up.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The demo's options.
#[derive(Clone, Debug)]
pub struct Options {
    pub date: NaiveDate,
    pub json: bool,
    pub keep: Option<PathBuf>,
}

/// One node of the demo county.
struct Box_ {
    id: &'static str,
    name: &'static str,
    parent: Option<&'static str>,
    /// Serves children's links (hubs).
    hub: bool,
}

const BOXES: [Box_; 6] = [
    Box_ {
        id: COUNTY,
        name: "衡阳县",
        parent: None,
        hub: true,
    },
    Box_ {
        id: YANPI,
        name: "演陂镇",
        parent: Some(COUNTY),
        hub: true,
    },
    Box_ {
        id: XIDU,
        name: "西渡镇",
        parent: Some(COUNTY),
        hub: true,
    },
    Box_ {
        id: HEQUAN,
        name: "河泉村",
        parent: Some(YANPI),
        hub: false,
    },
    Box_ {
        id: HUANGSHI,
        name: "黄石村",
        parent: Some(YANPI),
        hub: false,
    },
    Box_ {
        id: XIDU_VILLAGE,
        name: "西渡镇示范村",
        parent: Some(XIDU),
        hub: false,
    },
];

fn name_of(id: &str) -> &'static str {
    BOXES.iter().find(|b| b.id == id).map_or("?", |b| b.name)
}

/// The story as it happens: readable lines with the time since the start, or nothing in
/// JSON mode (the JSON document comes at the end).
pub struct Story {
    started: Instant,
    quiet: bool,
}

impl Story {
    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!(
                "[{:>6.2}s] {}",
                self.started.elapsed().as_secs_f64(),
                line.as_ref()
            );
        }
    }
}

/// A running node of the demo.
struct Running {
    id: &'static str,
    clerk: SocketAddr,
    store: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// A loopback TCP relay in front of a hub's link listener that the demo can cut (it stops
/// forwarding and drops its connections) and restore.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

impl Relay {
    async fn start(to: SocketAddr) -> anyhow::Result<Relay> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the link is cut
                }
                let (c, g) = (c.clone(), g.clone());
                let born = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let alive =
                        move || !c.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == born;
                    let a1 = alive.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while a1() {
                            match tokio::time::timeout(
                                Duration::from_millis(100),
                                ri.read(&mut buf),
                            )
                            .await
                            {
                                Ok(Ok(0) | Err(_)) => break,
                                Ok(Ok(n)) => {
                                    if wo.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                                Err(_) => {}
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while alive() {
                            match tokio::time::timeout(
                                Duration::from_millis(100),
                                ro.read(&mut buf),
                            )
                            .await
                            {
                                Ok(Ok(0) | Err(_)) => break,
                                Ok(Ok(n)) => {
                                    if wi.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                                Err(_) => {}
                            }
                        }
                    };
                    tokio::select! { () = up => {}, () = down => {} }
                });
            }
        });
        Ok(Relay {
            addr,
            cut,
            generation,
        })
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Where [`free_addr`] starts looking: below it lie well-known and registered services.
const FREE_PORT_LOW: u16 = 10_000;

/// The first port of the kernel's ephemeral range, when it leaves room above
/// [`FREE_PORT_LOW`].
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&p| p > FREE_PORT_LOW + 1_000)
}

/// A loopback address free for a listener whose address is written into a config before it
/// starts (a box's link port). A port the kernel picks for `bind(…:0)` could be picked again
/// for another socket of this process (a proxy, an outgoing connection) before the box binds
/// it: a test once failed with "Address already in use" so. The port is therefore taken
/// below the kernel's ephemeral range (`ip_local_port_range`), where such sockets never land,
/// each port at most once per process, starting at an offset of the process id (another
/// process doing the same starts elsewhere), and only if it is free now. Falls back to a
/// port the kernel picks when the range cannot be read.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    static HANDED: AtomicU64 = AtomicU64::new(0);
    if let Some(high) = ephemeral_low() {
        let span = u64::from(high - FREE_PORT_LOW);
        let start = u64::from(std::process::id()) % span;
        for _ in 0..1_000 {
            let n = HANDED.fetch_add(1, Ordering::Relaxed);
            let Ok(offset) = u16::try_from((start + n) % span) else {
                continue;
            };
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", FREE_PORT_LOW + offset)) {
                return Ok(l.local_addr()?);
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// Certificates for every box and the station, made by the PKI code the `pki` commands run.
struct Pki {
    ca: PathBuf,
    /// (cert, key) by identity: node id, or "station".
    files: BTreeMap<String, (PathBuf, PathBuf)>,
}

fn make_pki(root: &Path) -> anyhow::Result<Pki> {
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let ca = root.join("ca");
    pki::init_ca(&ca, pki::DEFAULT_TRUST_DOMAIN, now).context("demo CA")?;
    let mut files = BTreeMap::new();
    let station = format!("{COUNTY}/{STATION_DEPT}");
    let mut wanted: Vec<(String, Option<&str>, Option<&str>)> = BOXES
        .iter()
        .map(|b| (b.id.to_owned(), Some(b.id), None))
        .collect();
    wanted.push(("station".to_owned(), None, Some(station.as_str())));
    for (hub, reviewer) in REVIEWERS {
        wanted.push((format!("reviewer-{hub}"), None, None));
        let _ = reviewer;
    }
    for (name, id, station) in wanted {
        let dir = root.join("keys").join(&name);
        let made = match name.strip_prefix("reviewer-") {
            Some(hub) => {
                let reviewer = REVIEWERS
                    .iter()
                    .find(|(h, _)| *h == hub)
                    .map_or("审核员", |(_, r)| r);
                pki::init_operator_identity(
                    &dir,
                    pki::DEFAULT_TRUST_DOMAIN,
                    &format!("{hub}/{reviewer}"),
                )
            }
            None => pki::init_identity(&dir, pki::DEFAULT_TRUST_DOMAIN, id, station),
        };
        let (peer, keys) = made.map_err(|e| anyhow!("key for {name}: {e}"))?;
        let cert = dir.join(format!("{}.crt", peer.file_stem()));
        pki::sign(&ca, &keys.csr, &cert, 30, now).with_context(|| format!("signing {name}"))?;
        files.insert(name, (cert, keys.key));
    }
    Ok(Pki { ca, files })
}

async fn clerk(addr: SocketAddr) -> anyhow::Result<ClerkClient<Channel>> {
    ClerkClient::connect(format!("http://{addr}"))
        .await
        .with_context(|| format!("connecting to the clerk API at {addr}"))
}

/// Polls `check` every 50 ms until it yields, or fails naming `what` after [`STEP_TIMEOUT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {STEP_TIMEOUT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A case as a node's clerk API shows it, if it holds the case.
async fn case_at(addr: SocketAddr, number: &str) -> Option<pb::CaseView> {
    let mut c = clerk(addr).await.ok()?;
    c.get_case(pb::GetCaseRequest {
        case_number: number.to_owned(),
    })
    .await
    .ok()?
    .into_inner()
    .case
}

/// The county of the demo, running.
struct County {
    nodes: BTreeMap<&'static str, Running>,
    relay: Relay,
    clock: Arc<ManualClock>,
    story: Story,
    listen: BTreeMap<&'static str, SocketAddr>,
    pki: Pki,
}

impl County {
    fn clerk_of(&self, id: &str) -> SocketAddr {
        self.nodes[id].clerk
    }

    /// The desk of `hub` over mutual TLS, as `who` ("station" or "reviewer-<hub>") with its
    /// certificate, checking the hub is the one dialled.
    async fn desk(
        &self,
        hub: &'static str,
        who: &str,
    ) -> anyhow::Result<pb::desk_client::DeskClient<Channel>> {
        let (cert, key) = self
            .pki
            .files
            .get(who)
            .ok_or_else(|| anyhow!("no certificate for {who}"))?;
        let files = yimen_node::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: self.pki.ca.join(pki::CA_CERT_FILE),
            crl: Some(self.pki.ca.join(pki::CA_CRL_FILE)),
        };
        let td = pki::TrustDomain::parse(pki::DEFAULT_TRUST_DOMAIN).map_err(|e| anyhow!("{e}"))?;
        let id = yimen_core::division::DivisionCode::parse(hub).map_err(|e| anyhow!("{e}"))?;
        let peer = pki::PeerId::node(td, id);
        let config = yimen_node::tls::client_config(&files, &peer)?;
        let addr = self.listen[hub];
        let channel =
            yimen_node::tls::connect(addr, config, yimen_node::tls::server_name_for(&peer, addr))
                .await
                .with_context(|| format!("the desk of {hub}"))?;
        Ok(pb::desk_client::DeskClient::new(channel))
    }

    /// Sets the demo clock (Beijing time); the custodians' timers see it within a second.
    fn set_beijing(&self, at: chrono::NaiveDateTime) {
        self.clock.set(at.and_utc() - chrono::Duration::hours(8));
    }

    /// Waits until `node` holds `number` and `check` accepts what it shows.
    async fn wait_case(
        &self,
        node: &'static str,
        number: &str,
        what: &str,
        check: impl Fn(&pb::CaseView) -> bool,
    ) -> anyhow::Result<pb::CaseView> {
        let addr = self.clerk_of(node);
        let number = number.to_owned();
        until(&format!("{what} at {}", name_of(node)), || {
            let number = number.clone();
            let check = &check;
            async move { case_at(addr, &number).await.filter(|c| check(c)) }
        })
        .await
    }
}

async fn start_node(
    root: &Path,
    b: &Box_,
    pki: &Pki,
    listen: &BTreeMap<&'static str, SocketAddr>,
    parent_addr: Option<SocketAddr>,
    clock: Arc<ManualClock>,
) -> anyhow::Result<Running> {
    let dir = root.join(b.id);
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = &pki.files[b.id];
    let mut text = format!(
        "id = \"{}\"\nname = \"{}便民服务中心\"\nstore = \"store\"\nclerk_listen = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\ncrl = \"{}\"\nstall_after_secs = 3\ndesk_timer_secs = 1\n",
        b.id,
        b.name,
        cert.display(),
        key.display(),
        pki.ca.join(pki::CA_CERT_FILE).display(),
        pki.ca.join(pki::CA_CRL_FILE).display(),
    );
    if let Some(p) = parent_addr {
        text.push_str(&format!("parent = \"{p}\"\n"));
    }
    if b.hub {
        text.push_str(&format!("listen = \"{}\"\n", listen[b.id]));
    }
    let config = NodeConfig::parse(&text, &dir).map_err(|e| anyhow!("config of {}: {e}", b.id))?;
    let store = config.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let clock: Arc<dyn Clock> = clock;
    let task = tokio::spawn(async move {
        let opened = yimen_node::server::open(&config, clock.clone()).map_err(|e| e.to_string())?;
        yimen_node::server::serve_notify(
            &config,
            opened,
            listener,
            clock,
            async {
                let _ = stopped.await;
            },
            move || {
                let _ = ready_tx.send(());
            },
        )
        .await
        .map_err(|e| e.to_string())
    });
    if tokio::time::timeout(STEP_TIMEOUT, ready_rx).await.is_err() {
        bail!("{} did not start", b.id);
    }
    Ok(Running {
        id: b.id,
        clerk: addr,
        store,
        stop: Some(stop),
        task,
    })
}

/// Runs the demo; prints the story (or one JSON document) and returns the exit status.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let temp;
    let root = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let story = Story {
        started,
        quiet: options.json,
    };
    story.say(format!(
        "一门 演示：衡阳县（医保局窗口）、演陂镇、西渡镇和三个村，均在本机回环地址上运行；演示日期 {}",
        options.date
    ));
    let pki = make_pki(&root)?;
    let pki_ref = &pki;
    story.say("证书：县级 CA 已建立，各节点在本机生成密钥，县级签发证书（双向 TLS）");
    let clock = Arc::new(ManualClock::at_beijing(
        options
            .date
            .and_hms_opt(9, 0, 0)
            .ok_or_else(|| anyhow!("bad date"))?,
    ));
    let mut listen = BTreeMap::new();
    for b in BOXES.iter().filter(|b| b.hub) {
        listen.insert(b.id, free_addr()?);
    }
    // 河泉村's link to 演陂镇 goes through a relay the story cuts.
    let relay = Relay::start(listen[YANPI]).await?;
    let mut nodes = BTreeMap::new();
    for b in &BOXES {
        let parent_addr = b.parent.map(|p| {
            if b.id == HEQUAN {
                relay.addr
            } else {
                listen[p]
            }
        });
        let running = start_node(&root, b, pki_ref, &listen, parent_addr, clock.clone()).await?;
        nodes.insert(b.id, running);
    }
    story.say("六个节点已启动，等待各链路连通……");
    let county = County {
        nodes,
        relay,
        clock,
        story,
        listen,
        pki,
    };
    // Every village must have met its parent before it numbers anything.
    for b in BOXES.iter().filter(|b| !b.hub) {
        let addr = county.clerk_of(b.id);
        until(
            &format!("{}'s first contact with its township", b.name),
            || async move {
                let mut c = clerk(addr).await.ok()?;
                c.list_items(pb::ListItemsRequest {}).await.ok()?;
                let links = links_of(addr).await?;
                links
                    .iter()
                    .any(|l| l.direction == "parent" && l.state == "connected")
                    .then_some(())
            },
        )
        .await?;
    }
    county.story.say("所有链路已连通");

    let outcome = flows::run_all(&county).await;
    // Stop every node, then read the stores back.
    let County {
        mut nodes, story, ..
    } = county;
    for running in nodes.values_mut() {
        if let Some(s) = running.stop.take() {
            let _ = s.send(());
        }
    }
    let mut dumps = BTreeMap::new();
    for (id, running) in nodes {
        match tokio::time::timeout(STEP_TIMEOUT, running.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => bail!("{id} ended with an error: {e}"),
            _ => bail!("{id} did not stop"),
        }
        let dump = yimen_node::register::inspect(&running.store)
            .map_err(|e| anyhow!("reading {id}'s store: {e}"))?;
        dumps.insert(running.id, dump);
    }
    let mut flows = outcome?;
    let links = flows
        .as_object_mut()
        .and_then(|o| o.remove("links"))
        .unwrap_or(Value::Null);
    let problems = invariant_problems(&dumps);
    if !problems.is_empty() {
        bail!("the stores break invariants:\n{}", problems.join("\n"));
    }
    let elapsed = started.elapsed();
    if options.json {
        let nodes: Value = dumps
            .iter()
            .map(|(id, d)| {
                (
                    (*id).to_owned(),
                    json!({ "name": name_of(id), "cases": d["cases"], "events": d["events"].as_array().map_or(0, Vec::len) }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        let doc = json!({
            "date": options.date.to_string(),
            "elapsed_secs": elapsed.as_secs_f64(),
            "flows": flows,
            "links": links,
            "nodes": nodes,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        story.say("不变量检查通过：村节点只持有与本村相关的办件；同一办件在各节点的同一序号处状态、承办人一致");
        story.say("各节点最终状态（从已停止的存储中读出，与 yimen-node inspect 相同）：");
        for (id, d) in &dumps {
            println!(
                "  {} {}：事件 {} 条",
                name_of(id),
                id,
                d["events"].as_array().map_or(0, Vec::len)
            );
            for c in d["cases"].as_array().into_iter().flatten() {
                println!(
                    "    {}  {}  {}  承办 {}",
                    c["number"].as_str().unwrap_or(""),
                    c["item"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                    c["custodian"].as_str().unwrap_or("")
                );
            }
        }
        println!("演示完成，用时 {:.1} 秒", elapsed.as_secs_f64());
        if let Some(k) = &options.keep {
            println!("各节点存储保留在 {}/<节点编号>/store", k.display());
        }
    }
    Ok(())
}

/// Every kept store of a demo run with `--keep dir`, read back with `register::inspect` (the
/// code `yimen-node inspect` runs), by node id.
pub fn inspect_kept(dir: &Path) -> anyhow::Result<BTreeMap<&'static str, Value>> {
    BOXES
        .iter()
        .map(|b| {
            let store = dir.join(b.id).join("store");
            yimen_node::register::inspect(&store)
                .map(|d| (b.id, d))
                .map_err(|e| anyhow!("{}: {e}", store.display()))
        })
        .collect()
}

/// A case's status and custodian as one store shows them.
type StateSeen = (String, String);

/// DESIGN.md's invariants, checked on the dumps of stopped stores (`register::inspect`) by
/// node id; every violation is one line in the answer (empty: all hold):
/// * least knowledge: a village holds only cases whose audience names it;
/// * a case's sequence is held once: one event identity per (case, case sequence) per store
///   (history copies for a new audience member repeat the identity, not the sequence);
/// * stores holding a case at the same case sequence agree on its status and custodian.
pub fn invariant_problems(dumps: &BTreeMap<&str, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    let villages: Vec<&str> = BOXES.iter().filter(|b| !b.hub).map(|b| b.id).collect();
    // (case, case sequence) → (status, custodian) → the stores showing it.
    let mut views: BTreeMap<(String, u64), BTreeMap<StateSeen, Vec<&str>>> = BTreeMap::new();
    for (id, d) in dumps {
        let cases = d["cases"].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        for c in cases {
            let number = c["number"].as_str().unwrap_or_default();
            if !seen.insert(number) {
                problems.push(format!("{id} holds case {number} twice"));
            }
            let in_audience = c["audience"]
                .as_array()
                .is_some_and(|a| a.iter().any(|m| m == id));
            if villages.contains(id) && !in_audience {
                problems.push(format!(
                    "least knowledge: village {id} holds case {number}, whose audience does not name it"
                ));
            }
            views
                .entry((
                    number.to_owned(),
                    c["case_seq"].as_u64().unwrap_or_default(),
                ))
                .or_default()
                .entry((
                    c["status"].as_str().unwrap_or_default().to_owned(),
                    c["custodian"].as_str().unwrap_or_default().to_owned(),
                ))
                .or_default()
                .push(id);
        }
        let mut identities: BTreeMap<(&str, u64), std::collections::BTreeSet<String>> =
            BTreeMap::new();
        for e in d["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(case) = e["case"].as_str().filter(|c| !c.is_empty()) {
                identities
                    .entry((case, e["case_seq"].as_u64().unwrap_or_default()))
                    .or_default()
                    .insert(format!("{}/{}/{}", e["origin"], e["epoch"], e["seq"]));
            }
        }
        for ((case, seq), ids) in identities {
            if ids.len() > 1 {
                problems.push(format!(
                    "{id} holds {} identities for {case} #{seq}",
                    ids.len()
                ));
            }
        }
    }
    for ((number, seq), states) in views {
        if states.len() > 1 {
            problems.push(format!("stores disagree on {number} at #{seq}: {states:?}"));
        }
    }
    problems
}

async fn links_of(addr: SocketAddr) -> Option<Vec<pb::LinkView>> {
    let mut c = pb::link_admin_client::LinkAdminClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    Some(c.links(pb::LinksRequest {}).await.ok()?.into_inner().links)
}

mod flows;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    /// Ports handed out for configs lie below the ephemeral range, each once per process.
    #[test]
    fn free_addresses_lie_below_the_ephemeral_range_and_differ() {
        let Some(ephemeral_low) = ephemeral_low() else {
            return;
        };
        let ports: Vec<u16> = (0..20).map(|_| free_addr().unwrap().port()).collect();
        assert!(
            ports
                .iter()
                .all(|&p| (FREE_PORT_LOW..ephemeral_low).contains(&p)),
            "{ports:?} (ephemeral from {ephemeral_low})"
        );
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
