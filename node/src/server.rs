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
use crate::register::{Bootstrap, Register, RegisterError};
use crate::store::sled_store::{SledOptions, SledStore};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("cannot start the node thread: {0}")]
    Thread(std::io::Error),
    #[error("serving the clerk API failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl StartError {
    pub fn reason_zh(&self) -> String {
        match self {
            StartError::Register(e) => e.reason_zh(),
            StartError::Thread(_) | StartError::Transport(_) => {
                "节点服务启动失败，请查看日志或联系管理员".to_owned()
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
    open_at(&config.store, config.id, config.cache_bytes, clock)
}

pub fn open_at(
    dir: &Path,
    id: NodeId,
    cache_bytes: u64,
    clock: Arc<dyn Clock>,
) -> Result<(NodeHandle, std::thread::JoinHandle<()>), StartError> {
    let options = SledOptions {
        cache_capacity_bytes: cache_bytes,
        new_epoch: new_epoch(),
    };
    let (store, opened) = SledStore::open(dir, &options).map_err(RegisterError::from)?;
    let register = Register::open(store, opened, id, bootstrap(id))?;
    tracing::info!(node = %id, epoch = %register.epoch, events = register.last_position(), "store opened");
    node::spawn(Node::new(register, clock)).map_err(StartError::Thread)
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

/// Serves the clerk API of an opened node on `listener` until `shutdown`, then lets the node
/// thread make its last group durable and end.
pub async fn serve(
    config: &NodeConfig,
    (handle, thread): (NodeHandle, std::thread::JoinHandle<()>),
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let service = ClerkService::new(handle, config.name.clone(), clock);
    let addr = listener.local_addr().ok();
    tracing::info!(node = %config.id, clerk = ?addr, "serving the clerk API");
    let served = tonic::transport::Server::builder()
        .add_service(ClerkServer::new(service))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a reply's trailer waits on Nagle and delayed ACKs (~40 ms).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    // The service (and its node handle) is dropped with the server: the node thread ends.
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("the node thread ended abnormally");
    }
    tracing::info!(node = %config.id, "stopped");
    served.map_err(StartError::from)
}
