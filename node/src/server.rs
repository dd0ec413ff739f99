//! Starting and stopping a node: open the store (with every integrity check), start the node
//! thread, serve the clerk API on a listener until a shutdown future resolves.
//!
//! Invariants: a store that is corrupt, newer, or behind its high-water mark stops the start
//! with a clear error (English for the log, Chinese for the clerk), never a panic; the library
//! entry point takes its listener and shutdown future, so tests can run it in-process.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use yimen_core::calendar::Calendar;
use yimen_core::catalog::{Catalog, NodeId};
use yimen_core::topology::Topology;
use yimen_core::{sample, topology};
use yimen_proto::pb::clerk_server::ClerkServer;

use crate::clerk::ClerkService;
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::node::{self, Node, NodeHandle};
use crate::register::{Bootstrap, Recovery, Register, RegisterError};
use crate::store::sled_store::{SledOptions, SledStore};
use crate::sync::{LinkAdminService, LinkBoard, LinkContext, ReplicationService};
use crate::tls::{self, ReloadingServerConfig};
use yimen_core::link::{BackoffPolicy, Limits};
use yimen_proto::pb::link_admin_server::LinkAdminServer;
use yimen_proto::pb::replication_server::ReplicationServer;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("cannot start the node thread: {0}")]
    Thread(std::io::Error),
    #[error("serving failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("link TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("links: {0}")]
    Links(String),
}

impl StartError {
    pub fn reason_zh(&self) -> String {
        match self {
            StartError::Register(e) => e.reason_zh(),
            StartError::Thread(_) | StartError::Transport(_) => {
                "节点服务启动失败，请查看日志或联系管理员".to_owned()
            }
            StartError::Tls(_) => {
                "同步链路的证书或密钥无法使用，请检查配置中的 cert、key、ca 文件".to_owned()
            }
            StartError::Links(_) => {
                "同步链路配置有误，请检查配置文件中的 parent 和 listen".to_owned()
            }
        }
    }
}

/// The topology a new store starts with, until the parent sends the authored one: the
/// sample county when this node is in it, else the node under its own ancestors.
pub fn bootstrap_topology(id: NodeId) -> Topology {
    let sample = Topology::sample_hengyang();
    if sample.node(id).is_some() {
        return sample;
    }
    let mut chain: Vec<(NodeId, String)> = id
        .ancestors()
        .filter(|c| c.tier() >= yimen_core::division::Tier::County)
        .map(|c| (c, c.to_string()))
        .collect();
    chain.push((id, id.to_string()));
    let named: Vec<(NodeId, &str)> = chain.iter().map(|(c, n)| (*c, n.as_str())).collect();
    Topology::from_codes(1, topology::SAMPLE_VINTAGE, &named).unwrap_or(sample)
}

/// What a new store starts with: the built-in calendar, the bootstrap topology and the
/// sample catalog (the seed's two guides).
pub fn bootstrap(id: NodeId) -> Bootstrap {
    let mut catalog = Catalog::default();
    for item in sample::items() {
        // The sample items are valid (their own tests say so); a failure would leave the
        // catalog without them, which the clerk sees as "item not found".
        let _ = catalog.apply(item.owner, item);
    }
    Bootstrap {
        calendar: Calendar::builtin(),
        topology: bootstrap_topology(id),
        catalog,
    }
}

/// A fresh epoch for a store created now: the time in nanoseconds mixed with the process id,
/// so two stores made in the same nanosecond on one box still differ.
pub fn new_epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 48)).max(1)
}

/// Opens the node's sled store and register, and starts the node thread.
pub fn open(
    config: &NodeConfig,
    clock: Arc<dyn Clock>,
) -> Result<(NodeHandle, std::thread::JoinHandle<()>), StartError> {
    let recovery = if config.parent.is_some() || config.listen.is_some() {
        Recovery::Refill {
            fresh_epoch: new_epoch(),
            from_parent: config.parent.is_some(),
        }
    } else {
        Recovery::Stop
    };
    open_at(
        &config.store,
        config.id,
        config.cache_bytes,
        clock,
        recovery,
    )
}

/// Opens a store and starts the node thread; `recovery` says what a store behind its
/// high-water mark does (stop, or take a new epoch and wait for the parent's refill).
pub fn open_at(
    dir: &Path,
    id: NodeId,
    cache_bytes: u64,
    clock: Arc<dyn Clock>,
    recovery: Recovery,
) -> Result<(NodeHandle, std::thread::JoinHandle<()>), StartError> {
    let options = SledOptions {
        cache_capacity_bytes: cache_bytes,
        new_epoch: new_epoch(),
    };
    let restored = restored_marker(dir);
    let restored = restored.exists().then_some(restored);
    // A store restored from a copy never writes in its old epoch again, whatever its mark
    // says: events of that epoch that no peer saw may survive elsewhere.
    let recovery = match (&restored, recovery) {
        (Some(_), Recovery::Stop) => Recovery::Refill {
            fresh_epoch: new_epoch(),
            from_parent: false,
        },
        (_, r) => r,
    };
    let (store, opened) = SledStore::open(dir, &options).map_err(RegisterError::from)?;
    let mut register = Register::open(store, opened, id, bootstrap(id), recovery)?;
    if let Some(marker) = restored {
        if register.epoch == opened.epoch {
            let needs = yimen_core::link::NeedsNewEpoch::restored(&register, None);
            let from_parent = matches!(
                recovery,
                Recovery::Refill {
                    from_parent: true,
                    ..
                }
            );
            register.take_new_epoch(&needs, new_epoch(), from_parent)?;
        }
        std::fs::remove_file(&marker).map_err(|source| {
            RegisterError::from(crate::store::StoreError::Io {
                path: marker.display().to_string(),
                source,
            })
        })?;
        tracing::warn!(node = %id, epoch = %register.epoch, "opened a store restored from a copy: took a new epoch");
    }
    tracing::info!(node = %id, epoch = %register.epoch, events = register.last_position(), refilling = register.refilling(), "store opened");
    node::spawn(Node::new(register, clock)).map_err(StartError::Thread)
}

/// The file beside a store that says it was restored from a copy (`<dir>.restored`).
pub fn restored_marker(dir: &Path) -> std::path::PathBuf {
    let mut name = dir
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".restored");
    dir.with_file_name(name)
}

/// Puts the copy `from` in place as the store `dir` (which must not exist: move a broken
/// store aside first), with the copy's own high-water mark if it has one, and marks it
/// restored: at its next start the node takes a new epoch before it writes or numbers
/// anything, and (with a parent) waits to be refilled. The node must be stopped.
pub fn restore(from: &Path, dir: &Path) -> Result<u64, String> {
    if !from.join("db").is_file() {
        return Err(format!("{}: not a store (no db file)", from.display()));
    }
    if dir.exists() {
        return Err(format!(
            "{} exists: stop the node and move it aside first (恢复前请先停止节点并将原数据目录移走)",
            dir.display()
        ));
    }
    let mut bytes = 0u64;
    copy_dir(from, dir, &mut bytes).map_err(|e| format!("copying {}: {e}", from.display()))?;
    let from_hwm =
        crate::store::sled_store::SledStore::hwm_path(from).map_err(|e| e.to_string())?;
    let to_hwm = crate::store::sled_store::SledStore::hwm_path(dir).map_err(|e| e.to_string())?;
    if from_hwm.is_file() {
        std::fs::copy(&from_hwm, &to_hwm).map_err(|e| format!("{}: {e}", from_hwm.display()))?;
    }
    let marker = restored_marker(dir);
    std::fs::write(
        &marker,
        b"restored from a copy; the node takes a new epoch at its next start\n",
    )
    .and_then(|()| std::fs::File::open(&marker)?.sync_all())
    .map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(bytes)
}

fn copy_dir(from: &Path, to: &Path, bytes: &mut u64) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target, bytes)?;
        } else {
            *bytes += std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}

/// Runs a node: opens its store, serves the clerk API on `listener` until `shutdown`.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let opened = open(&config, clock.clone())?;
    serve(&config, opened, listener, clock, shutdown).await
}

/// Serves an opened node until `shutdown`: the clerk and link-status APIs on `listener`
/// (loopback), the link to the parent when `parent` is set, children's links on `listen`
/// when set; then stops the links and lets the node thread make its last group durable.
pub async fn serve(
    config: &NodeConfig,
    opened: (NodeHandle, std::thread::JoinHandle<()>),
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    serve_notify(config, opened, listener, clock, shutdown, || {}).await
}

/// [`serve`], calling `ready` once every listener is bound and the parent link started (the
/// moment a binary prints its ready line: children dialling it then find it listening).
pub async fn serve_notify(
    config: &NodeConfig,
    (handle, thread): (NodeHandle, std::thread::JoinHandle<()>),
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
    ready: impl FnOnce() + Send,
) -> Result<(), StartError> {
    let board = Arc::new(LinkBoard::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = LinkContext {
        node: handle.clone(),
        clock: clock.clone(),
        board: board.clone(),
        limits: Limits::DEFAULT,
        stall_after_ms: config.stall_after_ms,
        backoff: BackoffPolicy::DEFAULT,
    };
    let mut tasks = Vec::new();
    let links = start_links(config, &ctx, &stop_rx).await;
    let links = match links {
        Ok(l) => l,
        Err(e) => {
            drop(ctx);
            drop(handle);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            return Err(e);
        }
    };
    tasks.extend(links);
    // The custodian's timers (desk.rs): 公示 ends, deadline confirmations and warnings.
    tasks.push(tokio::spawn(crate::desk::run_timers(
        handle.clone(),
        config.desk_timer_every,
        stop_rx.clone(),
    )));
    ready();
    // Backups of the running store, on the loopback listener like the clerk API.
    let backup = crate::backup::BackupService::new(handle.clone());
    let author = handle.clone();
    let service = ClerkService::new(handle, config.name.clone(), clock);
    let addr = listener.local_addr().ok();
    tracing::info!(node = %config.id, clerk = ?addr, "serving the clerk API");
    let served = tonic::transport::Server::builder()
        .add_service(ClerkServer::new(service))
        .add_service(LinkAdminServer::new(LinkAdminService::new(board)))
        // Authoring (author.rs): revisions published from the hub's own box.
        .add_service(yimen_proto::pb::author_server::AuthorServer::new(
            crate::author::AuthorService::new(author),
        ))
        .add_service(yimen_proto::pb::backup_server::BackupServer::new(backup))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a reply's trailer waits on Nagle and delayed ACKs (~40 ms).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(ctx);
    // The services (and their node handles) are dropped: the node thread ends.
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the node thread ended abnormally");
    }
    tracing::info!(node = %config.id, "stopped");
    served.map_err(StartError::from)
}

/// Starts the parent link and the children's listener, as configured.
async fn start_links(
    config: &NodeConfig,
    ctx: &LinkContext,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StartError> {
    let mut tasks = Vec::new();
    let Some(files) = config.tls_files() else {
        return Ok(tasks);
    };
    if config.parent.is_none() && config.listen.is_none() {
        return Ok(tasks);
    }
    let server_config = ReloadingServerConfig::new(files.clone(), config.tls_check_every)?;
    let me = server_config.identity();
    // One watch of the revocation list for both directions: open links to a peer revoked
    // meanwhile are cut.
    let revoked = match &files.crl {
        Some(crl) => tls::RevokedSerials::watch(crl.clone(), config.tls_check_every, stop.clone()),
        None => tls::RevokedSerials::none(),
    };
    if me.division() != config.id {
        return Err(StartError::Links(format!(
            "the certificate {} names {me}, but this node is {}",
            files.cert.display(),
            config.id
        )));
    }
    if let Some(parent_addr) = &config.parent {
        let addr: std::net::SocketAddr = parent_addr
            .parse()
            .map_err(|e| StartError::Links(format!("parent {parent_addr:?}: {e}")))?;
        let topology = match ctx.node.link(crate::node::LinkOp::Topology).await {
            Ok(crate::node::LinkReply::Topology(t)) => t,
            _ => return Err(StartError::Links("the node thread ended".to_owned())),
        };
        let parent_id = topology
            .node(config.id)
            .and_then(|n| n.parent)
            .ok_or_else(|| {
                StartError::Links(format!(
                    "the topology names no parent for node {}",
                    config.id
                ))
            })?;
        let parent = crate::pki::PeerId::node(me.trust_domain().clone(), parent_id);
        tracing::info!(node = %config.id, %parent, %addr, "linking to the parent");
        tasks.push(tokio::spawn(crate::sync::run_parent_link(
            ctx.clone(),
            files.clone(),
            config.id,
            parent,
            addr,
            revoked.clone(),
            stop.clone(),
        )));
    }
    if let Some(listen) = config.listen {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| StartError::Links(format!("listen {listen}: {e}")))?;
        let local = listener.local_addr().ok();
        let incoming = tls::incoming(listener, &server_config);
        let service = ReplicationService::new(ctx.clone(), config.id, stop.clone(), revoked);
        let replication = ReplicationServer::new(service)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        // The desk (desk.rs) is served on this TLS listener only, authorised per call.
        let desk = yimen_proto::pb::desk_server::DeskServer::new(crate::desk::DeskService::new(
            ctx.node.clone(),
            ctx.clock.clone(),
            Some(files.clone()),
        ));
        let mut stop = stop.clone();
        tracing::info!(node = %config.id, replication = ?local, "serving children's links and the desk");
        tasks.push(tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(crate::sync::KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(crate::sync::KEEPALIVE_TIMEOUT))
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    replication,
                    tls::identify,
                ))
                .add_service(tonic::service::interceptor::InterceptedService::new(
                    desk,
                    tls::identify,
                ))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "serving children's links failed");
            }
        }));
    }
    Ok(tasks)
}
