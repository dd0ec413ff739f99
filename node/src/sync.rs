//! The sync driver: the IO shell of the link protocol (`yimen_core::link`). A child dials one
//! bidirectional `Replication.Link` stream to its parent over mutual TLS and keeps it up with
//! capped, jittered backoff; a parent serves one stream per child. Each connection runs the
//! core's handshake, then a `Sender` for its outgoing stream and a `Receiver` for its incoming
//! one; the node thread reads outboxes and applies received events (group commit, fsync)
//! before the receiver acknowledges them.
//!
//! Invariants:
//! * Acknowledged means durable: a `Receiver` learns a position is persisted only from the
//!   node thread's reply, which comes after the group commit covering it.
//! * Senders send durable events only (the outbox read stops at the last synced position).
//! * A parent accepts only its own children (`tls::authorize` on the certificate's identity,
//!   and the `Hello` must name that same node); a child dials only the parent the topology
//!   names (the client config checks the server's identity).
//! * Every wait is bounded: handshakes (the call's answer and the first frame) by
//!   `HANDSHAKE_TIMEOUT_MS`, dials (TCP, TLS and the server's first bytes) by
//!   `tls::HANDSHAKE_TIMEOUT`, dead connections by HTTP/2 keepalive; link state changes are
//!   logged at `info`.
//! * A connection never blocks on a full queue (network or node thread): it keeps reading the
//!   peer, publishing its status every `STATUS_EVERY` (so a peer that stops reading shows
//!   `stalled` after `stall_after_ms`) and watching for shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

use yimen_core::catalog::NodeId;
use yimen_core::link::{
    self, BackoffPolicy, ChildHandshake, EventId, Frame, Hello, Limits, Link, LinkState,
    LinkStatus, ParentHandshake, Persist, Receiver, Sender,
};
use yimen_proto::pb;
use yimen_proto::pb::replication_client::ReplicationClient;

use crate::clock::Clock;
use crate::node::{LinkOp, LinkOpError, LinkReply, NodeHandle};
use crate::pki::PeerId;
use crate::tls::{self, Action, TlsFiles};
use yimen_core::link::handshake::{HANDSHAKE_TIMEOUT_MS, VERSIONS};

/// How often a connection refreshes its status (stall detection, lag).
pub const STATUS_EVERY: Duration = Duration::from_millis(500);
/// HTTP/2 keepalive: a ping this often on an idle connection...
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// ...and the connection is dead if its answer takes longer than this.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a parent waits to queue the `Error` frame that ends a child's link.
const LAST_FRAME_WAIT: Duration = Duration::from_secs(1);
/// Frames queued for the network per connection: bounded, so a slow link pushes back.
const OUTGOING_FRAMES_MAX: usize = 16;
/// Persists queued for the node thread per connection (each up to a batch).
const PERSISTS_QUEUED_MAX: usize = 8;

/// Which side of a link the peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Parent,
    Child,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Parent => "parent",
            Direction::Child => "child",
        }
    }
}

/// One link as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkEntry {
    pub direction: Direction,
    pub status: LinkStatus,
}

/// The status of every link of a node, for `LinkAdmin.Links` and the log.
#[derive(Debug, Default)]
pub struct LinkBoard {
    links: Mutex<BTreeMap<NodeId, LinkEntry>>,
}

/// The name of a state, for logs and the admin API.
pub fn state_name(state: &LinkState) -> &'static str {
    match state {
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Stalled => "stalled",
        LinkState::BackingOff { .. } => "backing_off",
        LinkState::Disconnected => "disconnected",
    }
}

impl LinkBoard {
    /// Records a link's status; a change of state is logged at `info`.
    pub fn publish(&self, peer: NodeId, direction: Direction, status: LinkStatus) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let before = links.insert(peer, LinkEntry { direction, status });
        let was = before.map(|b| state_name(&b.status.state));
        let now = state_name(&status.state);
        if was != Some(now) {
            tracing::info!(
                %peer,
                direction = direction.as_str(),
                from = was.unwrap_or("none"),
                to = now,
                lag_events = status.lag_events,
                "link state"
            );
        }
    }

    /// Every link: the parent first, then children by id.
    pub fn snapshot(&self) -> Vec<(NodeId, LinkEntry)> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(NodeId, LinkEntry)> = links.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort_by_key(|(peer, e)| (e.direction, *peer));
        all
    }
}

/// What a link task needs of its node.
#[derive(Clone)]
pub struct LinkContext {
    pub node: NodeHandle,
    pub clock: Arc<dyn Clock>,
    pub board: Arc<LinkBoard>,
    pub limits: Limits,
    pub stall_after_ms: u64,
    pub backoff: BackoffPolicy,
}

impl LinkContext {
    /// Link timers (backoff, stall, last success) run on the box's real clock, not on the
    /// injected domain clock, which a test or the demo may hold still or speed up.
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// The domain clock, for the clock offset the handshake reports.
    fn domain_ms(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp_millis()).unwrap_or(0)
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("dial failed: {0}")]
    Dial(String),
    #[error("the peer refused the call: {0}")]
    Refused(Status),
    #[error("the peer closed the stream")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
    /// The handshake failed and its own error frame (with its own code, such as VERSION) was
    /// already sent: nothing more is sent.
    #[error("handshake: {0}")]
    Handshake(String),
    #[error("the store took a new epoch; reconnecting")]
    NewEpoch,
    #[error(transparent)]
    Node(#[from] LinkOpError),
    #[error("the node is shutting down")]
    Shutdown,
}

fn reply_mismatch(what: &str) -> ConnError {
    ConnError::Protocol(format!(
        "the node thread answered {what} with something else"
    ))
}

/// A fresh jitter value: the clock's nanoseconds mixed with the process id (no RNG crate).
fn jitter() -> u64 {
    crate::server::new_epoch().wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The child's side: dials `addr` (the parent, which must present `parent_id`'s certificate)
/// until `shutdown` flips, with capped exponential backoff and jitter.
pub async fn run_parent_link(
    ctx: LinkContext,
    files: TlsFiles,
    me: NodeId,
    parent: PeerId,
    addr: SocketAddr,
    mut revoked: tls::RevokedSerials,
    mut shutdown: watch::Receiver<bool>,
) {
    let parent_id = parent.division();
    let mut link = Link::new(ctx.backoff, ctx.stall_after_ms);
    let mut sender = Sender::new(ctx.limits);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = ctx.now_ms();
        if !link.poll_dial(now) {
            let status = link.status(&sender, now);
            let wait = match status.state {
                LinkState::BackingOff { retry_at_ms } => retry_at_ms.saturating_sub(now),
                _ => 100,
            };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        link.handle_connecting();
        ctx.board
            .publish(parent_id, Direction::Parent, link.status(&sender, now));
        let result = dial_and_run(
            &ctx,
            &files,
            me,
            &parent,
            addr,
            &mut link,
            &mut sender,
            &mut revoked,
            &mut shutdown,
        )
        .await;
        sender.handle_disconnected();
        match result {
            Err(ConnError::Shutdown) | Ok(()) => return,
            Err(ConnError::NewEpoch) => {
                tracing::info!(%parent_id, "reconnecting at once after a new epoch");
                link.handle_failure(ctx.now_ms(), 0);
                link = Link::new(ctx.backoff, ctx.stall_after_ms);
            }
            Err(e) => {
                let retry = link.handle_failure(ctx.now_ms(), jitter());
                tracing::info!(%parent_id, error = %e, retry_in_ms = retry.saturating_sub(ctx.now_ms()), "link to the parent failed");
            }
        }
        ctx.board.publish(
            parent_id,
            Direction::Parent,
            link.status(&sender, ctx.now_ms()),
        );
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the pieces of one dial"
)]
async fn dial_and_run(
    ctx: &LinkContext,
    files: &TlsFiles,
    me: NodeId,
    parent: &PeerId,
    addr: SocketAddr,
    link: &mut Link,
    sender: &mut Sender,
    revoked: &mut tls::RevokedSerials,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let parent_id = parent.division();
    // Read the files at every dial: a renewed certificate is used without a restart.
    let (config, parent_serial) =
        tls::client_config_seeing(files, parent).map_err(|e| ConnError::Dial(e.to_string()))?;
    // Bounded by the TLS handshake timeout; a refusal names the server's alert.
    let channel = tokio::select! {
        c = tls::connect(addr, config, tls::server_name_for(parent, addr)) => c,
        _ = shutdown.changed() => return Err(ConnError::Shutdown),
    }
    .map_err(|e| ConnError::Dial(format!("{addr}: {}", error_chain(&e))))?;
    let mut client = ReplicationClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let LinkReply::State(state) = ctx.node.link(LinkOp::State { peer: parent_id }).await? else {
        return Err(reply_mismatch("State"));
    };
    let hello = Hello {
        versions: VERSIONS,
        node: me.to_string(),
        epoch: state.epoch,
        clock_ms: ctx.domain_ms(),
        cursor: state.cursor,
        refill: state.refill,
    };
    let mut hs =
        ChildHandshake::new(hello, ctx.now_ms()).map_err(|e| ConnError::Protocol(e.to_string()))?;
    let (out_tx, out_rx) = mpsc::channel::<pb::LinkFrame>(OUTGOING_FRAMES_MAX);
    if let Some(f) = hs.poll_transmit() {
        out_tx
            .send(pb::LinkFrame::from(&f))
            .await
            .map_err(|_| ConnError::Closed)?;
    }
    // The call's answer (headers) within the handshake timeout too: a connection that went
    // silent after the TLS handshake must not hold the dialer until HTTP/2 keepalive ends it.
    let call = tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
        client.link(ReceiverStream::new(out_rx)),
    );
    let response = tokio::select! {
        r = call => r.map_err(|_| ConnError::Protocol("the parent did not answer the call in time".to_owned()))?,
        _ = shutdown.changed() => return Err(ConnError::Shutdown),
    }
    .map_err(ConnError::Refused)?;
    let mut inbound = response.into_inner();
    let first = next_frame(&mut inbound, shutdown).await?;
    let agreed = match hs.handle_frame(first) {
        Ok(a) => a,
        Err(link::HandshakeError::Refused {
            code: link::ErrorCode::NewEpoch,
            ..
        }) => return Err(ConnError::NewEpoch),
        Err(e) => return Err(ConnError::Protocol(e.to_string())),
    };
    if agreed.clock_warning() {
        tracing::warn!(%parent_id, offset_ms = agreed.clock_offset_ms, "this node's clock is off from its parent's: check the time (case numbers and deadlines use Beijing dates)");
    }
    let resume = match ctx
        .node
        .link(LinkOp::Resume {
            peer: parent_id,
            stated: agreed.stated,
        })
        .await?
    {
        LinkReply::Resume(r) => r,
        LinkReply::NewEpoch(_) => return Err(ConnError::NewEpoch),
        _ => return Err(reply_mismatch("Resume")),
    };
    sender
        .handle_connected(state.epoch, &resume)
        .map_err(|_| ConnError::NewEpoch)?;
    let receiver = Receiver::new(ctx.limits, agreed.parent_epoch, state.cursor.as_ref());
    let refill_target = state.refill.then_some(agreed.parent_log_position);
    if refill_target.is_some_and(|t| t <= receiver.durable_position()) {
        ctx.node.link(LinkOp::RefillDone).await?;
    }
    link.handle_handshake(ctx.now_ms(), agreed.version);
    // The up stream includes "refill only" entries (this subtree's events the parent sent
    // back, and every event received from the parent) when the parent may lack some:
    // * it lost what it had of this node's stream (no cursor, or one of an older epoch of
    //   this node: `FromStart`): send it everything again;
    // * its store is new or restored: its epoch (the Welcome's) differs from the epoch of this
    //   node's cursor of its stream. A root restored from a backup gets back, after the
    //   position it states, the events it wrote after the backup that only its children hold
    //   (it held every earlier one: its cursor of this stream is in the same backup).
    // The decision holds for later connections, until the parent's resume position passes
    // this node's outbox end at the decision. It is kept in the store (`LinkOp::RefillOwed`,
    // durable before the first batch): a connection cut meanwhile, or a restart, finds the
    // cursor already of the new epoch and would otherwise skip the rest.
    let parent_new = state.cursor.is_some_and(|c| c.epoch != agreed.parent_epoch);
    let mut owed = state.refill_owed;
    if matches!(resume, link::Resume::FromStart) || parent_new {
        owed = Some(owed.map_or(state.outbox_end, |e| e.max(state.outbox_end)));
    }
    if let (Some(end), link::Resume::From(next)) = (owed, &resume)
        && *next > end
    {
        owed = None;
    }
    if owed != state.refill_owed {
        match ctx
            .node
            .link(LinkOp::RefillOwed {
                peer: parent_id,
                owed,
            })
            .await?
        {
            LinkReply::Done => {}
            _ => return Err(reply_mismatch("RefillOwed")),
        }
    }
    let out_refill = owed.is_some();
    tracing::info!(%parent_id, version = agreed.version, resume = ?resume, refill = state.refill, out_refill, "connected to the parent");
    let conn = Conn {
        ctx,
        peer: parent_id,
        direction: Direction::Parent,
        out_refill,
        refill_target,
    };
    // A parent whose certificate is revoked while the link is open (a stolen box) is left.
    tokio::select! {
        r = conn.run(link, sender, receiver, inbound, out_tx, shutdown) => r,
        () = revoked.listed(parent_serial.get()) => {
            tracing::warn!(%parent_id, "the parent's certificate was revoked: the open link is cut");
            Err(ConnError::Protocol("the parent's certificate is revoked".to_owned()))
        }
    }
}

/// An error and its sources, for the log: tonic's transport error hides the cause (a TLS
/// alert) in its sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// The next frame of a stream, within the handshake timeout.
async fn next_frame(
    inbound: &mut Streaming<pb::LinkFrame>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Frame, ConnError> {
    let wait = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let message = tokio::select! {
        m = tokio::time::timeout(wait, inbound.message()) => m,
        _ = shutdown.changed() => return Err(ConnError::Shutdown),
    };
    match message {
        Err(_) => Err(ConnError::Protocol("no handshake frame in time".to_owned())),
        Ok(Err(status)) => Err(ConnError::Refused(status)),
        Ok(Ok(None)) => Err(ConnError::Closed),
        Ok(Ok(Some(f))) => Frame::try_from(f).map_err(|e| ConnError::Protocol(e.to_string())),
    }
}

/// One connection after its handshake: the same on both sides.
struct Conn<'a> {
    ctx: &'a LinkContext,
    peer: NodeId,
    direction: Direction,
    /// Whether our sender includes "refill only" outbox entries (the peer is a child being
    /// refilled).
    out_refill: bool,
    /// For a child being refilled: the parent's outbox end at the handshake.
    refill_target: Option<u64>,
}

impl Conn<'_> {
    async fn run(
        mut self,
        link: &mut Link,
        sender: &mut Sender,
        mut receiver: Receiver,
        mut inbound: Streaming<pb::LinkFrame>,
        out: mpsc::Sender<pb::LinkFrame>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ConnError> {
        let ctx = self.ctx;
        let peer = self.peer;
        let mut durable = ctx.node.durable.clone();
        let (persist_tx, mut persist_rx) = mpsc::channel::<Persist>(PERSISTS_QUEUED_MAX);
        let (done_tx, mut done_rx) = mpsc::channel::<Result<u64, LinkOpError>>(PERSISTS_QUEUED_MAX);
        let node = ctx.node.clone();
        // The persister: one receive at a time, in order, each answered after its group
        // commit.
        let persister = tokio::spawn(async move {
            while let Some(p) = persist_rx.recv().await {
                let position = p.cursor.position;
                let result = node
                    .link(LinkOp::Receive {
                        peer,
                        events: p.events,
                        cursor: p.cursor,
                    })
                    .await
                    .map(|_| position);
                let failed = result.is_err();
                if done_tx.send(result).await.is_err() || failed {
                    return;
                }
            }
        });
        let _abort = AbortOnDrop(persister);
        let mut tick = tokio::time::interval(STATUS_EVERY);
        let nothing_seen = BTreeSet::<EventId>::new();
        // The next frame for the network and the next persist for the node thread, held here
        // until their queue has room. The loop never blocks on a full queue: it keeps reading
        // the peer (a peer blocked on sending to us would otherwise never read our frames:
        // a deadlock nothing ends, since HTTP/2 pings are still answered), publishing the
        // status (a link whose peer stopped reading is exactly the stall to show) and
        // watching for shutdown. What it reads is bounded by the credit it granted.
        let mut next_frame: Option<pb::LinkFrame> = None;
        let mut next_persist: Option<Persist> = None;
        let mut skip: Option<(u64, u64)> = None;
        loop {
            // Read the outbox while the sender wants more.
            while let Some(from) = sender.poll_need_outbox() {
                // After an empty read, the next one for the same position starts where that
                // one stopped examining (skipped "refill only" entries are not scanned again).
                let scan_from = match skip {
                    Some((f, scanned)) if f == from => scanned.saturating_add(1).max(from),
                    _ => from,
                };
                let reply = ctx
                    .node
                    .link(LinkOp::Outbox {
                        peer,
                        from: scan_from,
                        refill: self.out_refill,
                        max_events: ctx.limits.batch_events_max,
                        max_bytes: ctx.limits.batch_bytes_max,
                    })
                    .await?;
                let LinkReply::Outbox(entries, scanned) = reply else {
                    return Err(reply_mismatch("Outbox"));
                };
                skip = entries.is_empty().then_some((from, scanned));
                sender
                    .handle_outbox(from, entries, ctx.now_ms())
                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
            }
            // Acknowledgements and credit go before batches.
            if next_frame.is_none() {
                next_frame = receiver
                    .poll_transmit()
                    .or_else(|| sender.poll_transmit())
                    .map(|f| pb::LinkFrame::from(&f));
            }
            if next_persist.is_none() {
                next_persist = receiver.poll_persist();
            }
            tokio::select! {
                permit = out.reserve(), if next_frame.is_some() => {
                    let permit = permit.map_err(|_| ConnError::Closed)?;
                    if let Some(f) = next_frame.take() {
                        permit.send(f);
                    }
                }
                permit = persist_tx.reserve(), if next_persist.is_some() => {
                    let permit = permit.map_err(|_| ConnError::Closed)?;
                    if let Some(p) = next_persist.take() {
                        permit.send(p);
                    }
                }
                message = inbound.message() => {
                    let frame = match message {
                        Ok(Some(f)) => Frame::try_from(f).map_err(|e| ConnError::Protocol(e.to_string()))?,
                        Ok(None) => return Err(ConnError::Closed),
                        Err(status) => return Err(ConnError::Refused(status)),
                    };
                    let now = ctx.now_ms();
                    match frame {
                        Frame::Batch(b) => {
                            receiver
                                .handle_batch(b, &nothing_seen, now)
                                .map_err(|e| ConnError::Protocol(e.to_string()))?;
                        }
                        Frame::Ack(_) | Frame::Credit(_) => sender
                            .handle_frame(frame, now)
                            .map_err(|e| ConnError::Protocol(e.to_string()))?,
                        Frame::Error(e) if e.code == link::ErrorCode::NewEpoch => {
                            return Err(ConnError::NewEpoch);
                        }
                        Frame::Error(e) => {
                            return Err(ConnError::Protocol(format!("the peer ended the link: {:?}: {}", e.code, e.detail)));
                        }
                        other => {
                            return Err(ConnError::Protocol(format!("unexpected {} frame", other.kind())));
                        }
                    }
                }
                done = done_rx.recv() => {
                    let position = done.ok_or(ConnError::Closed)??;
                    receiver
                        .handle_persisted(position)
                        .map_err(|e| ConnError::Protocol(e.to_string()))?;
                    if let Some(target) = self.refill_target
                        && position >= target
                    {
                        ctx.node.link(LinkOp::RefillDone).await?;
                        self.refill_target = None;
                    }
                }
                changed = durable.changed() => {
                    if changed.is_err() {
                        return Err(ConnError::Shutdown);
                    }
                    sender.handle_appended();
                }
                _ = tick.tick() => self.publish(link, sender).await,
                _ = shutdown.changed() => return Err(ConnError::Shutdown),
            }
        }
    }

    /// Publishes the link's status; its lag includes what the sender has not read yet.
    async fn publish(&self, link: &Link, sender: &Sender) {
        let ctx = self.ctx;
        let mut status = link.status(sender, ctx.now_ms());
        if let Ok(LinkReply::Lag(events, bytes)) = ctx
            .node
            .link(LinkOp::Lag {
                peer: self.peer,
                after: sender.acked_position(),
                refill: self.out_refill,
            })
            .await
        {
            status.lag_events = events;
            status.lag_bytes = bytes;
        }
        ctx.board.publish(self.peer, self.direction, status);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ----- The parent's side -----

/// The `Replication` service of a parent: one stream per child.
#[derive(Clone)]
pub struct ReplicationService {
    ctx: LinkContext,
    me: NodeId,
    shutdown: watch::Receiver<bool>,
    /// A child whose certificate is revoked while its link is open is cut off.
    revoked: tls::RevokedSerials,
}

impl ReplicationService {
    pub fn new(
        ctx: LinkContext,
        me: NodeId,
        shutdown: watch::Receiver<bool>,
        revoked: tls::RevokedSerials,
    ) -> Self {
        ReplicationService {
            ctx,
            me,
            shutdown,
            revoked,
        }
    }
}

/// The frames a parent sends a child.
type Outgoing = pb::LinkFrame;

#[tonic::async_trait]
impl pb::replication_server::Replication for ReplicationService {
    type LinkStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::LinkFrame, Status>> + Send + 'static>,
    >;

    async fn link(
        &self,
        request: Request<Streaming<pb::LinkFrame>>,
    ) -> Result<Response<Self::LinkStream>, Status> {
        let peer = tls::authenticated_peer(&request)?.clone();
        let topology = match self.ctx.node.link(LinkOp::Topology).await {
            Ok(LinkReply::Topology(t)) => t,
            _ => return Err(Status::unavailable("the node is stopping")),
        };
        if let Err(refused) = tls::authorize(&peer, &Action::Replicate, self.me, &topology) {
            tracing::info!(%peer, reason = %refused, "replication refused");
            return Err(refused.into());
        }
        let child = peer.division();
        let serial = tls::peer_serial(&request);
        let mut revoked = self.revoked.clone();
        let inbound = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(OUTGOING_FRAMES_MAX);
        let ctx = self.ctx.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut link = Link::new(ctx.backoff, ctx.stall_after_ms);
            let mut sender = Sender::new(ctx.limits);
            link.handle_connecting();
            ctx.board
                .publish(child, Direction::Child, link.status(&sender, ctx.now_ms()));
            let result = tokio::select! {
                r = serve_child(
                    &ctx,
                    child,
                    inbound,
                    &out_tx,
                    &mut link,
                    &mut sender,
                    &mut shutdown,
                ) => r,
                () = revoked.listed(serial) => {
                    tracing::warn!(%child, "the child's certificate was revoked: its open link is cut");
                    Err(ConnError::Protocol("the certificate of this node is revoked".to_owned()))
                }
            };
            let last = match &result {
                Err(ConnError::NewEpoch) => Some(Frame::Error(link::ErrorFrame::new(
                    link::ErrorCode::NewEpoch,
                    "the parent took a new epoch",
                ))),
                Err(ConnError::Protocol(detail)) => Some(Frame::Error(link::ErrorFrame::new(
                    link::ErrorCode::Protocol,
                    detail.clone(),
                ))),
                _ => None,
            };
            if let Some(f) = last {
                // Bounded: a child that stopped reading does not get it, and the task ends.
                let _ = tokio::time::timeout(LAST_FRAME_WAIT, out_tx.send(pb::LinkFrame::from(&f)))
                    .await;
            }
            if let Err(e) = result {
                tracing::info!(%child, error = %e, "link from a child ended");
            }
            sender.handle_disconnected();
            link.handle_disconnected();
            ctx.board
                .publish(child, Direction::Child, link.status(&sender, ctx.now_ms()));
        });
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            ReceiverStream::new(out_rx),
            Ok,
        ))))
    }
}

async fn serve_child(
    ctx: &LinkContext,
    child: NodeId,
    mut inbound: Streaming<pb::LinkFrame>,
    out: &mpsc::Sender<Outgoing>,
    link: &mut Link,
    sender: &mut Sender,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let mut hs = ParentHandshake::new(VERSIONS, ctx.domain_ms())
        .map_err(|e| ConnError::Protocol(e.to_string()))?;
    let first = next_frame(&mut inbound, shutdown).await?;
    let accepted = match hs.handle_frame(first, ctx.domain_ms()) {
        Ok(a) => a,
        Err(e) => {
            let Some(f) = hs.poll_transmit() else {
                return Err(ConnError::Protocol(format!("handshake: {e}")));
            };
            let _ = out.send(pb::LinkFrame::from(&f)).await;
            return Err(ConnError::Handshake(e.to_string()));
        }
    };
    if accepted.child != child.to_string() {
        return Err(ConnError::Protocol(format!(
            "the hello names node {}, but the certificate is node {child}",
            accepted.child
        )));
    }
    let resume = match ctx
        .node
        .link(LinkOp::Resume {
            peer: child,
            stated: accepted.stated,
        })
        .await?
    {
        LinkReply::Resume(r) => r,
        LinkReply::NewEpoch(_) => return Err(ConnError::NewEpoch),
        _ => return Err(reply_mismatch("Resume")),
    };
    let LinkReply::State(state) = ctx.node.link(LinkOp::State { peer: child }).await? else {
        return Err(reply_mismatch("State"));
    };
    hs.answer(state.epoch, state.cursor, state.outbox_end)
        .map_err(|e| ConnError::Protocol(e.to_string()))?;
    if let Some(f) = hs.poll_transmit() {
        out.send(pb::LinkFrame::from(&f))
            .await
            .map_err(|_| ConnError::Closed)?;
    }
    sender
        .handle_connected(state.epoch, &resume)
        .map_err(|_| ConnError::NewEpoch)?;
    let receiver = Receiver::new(ctx.limits, accepted.child_epoch, state.cursor.as_ref());
    link.handle_handshake(ctx.now_ms(), accepted.version);
    tracing::info!(%child, version = accepted.version, resume = ?resume, refill = accepted.refill, "child connected");
    if accepted.clock_offset_ms.unsigned_abs() > link::handshake::CLOCK_OFFSET_WARN_MS {
        tracing::warn!(%child, offset_ms = accepted.clock_offset_ms, "a child's clock is off");
    }
    let conn = Conn {
        ctx,
        peer: child,
        direction: Direction::Child,
        out_refill: accepted.refill,
        refill_target: None,
    };
    conn.run(link, sender, receiver, inbound, out.clone(), shutdown)
        .await
}

// ----- Link status -----

/// The `LinkAdmin` service: every link's state, lag and last success.
#[derive(Clone)]
pub struct LinkAdminService {
    board: Arc<LinkBoard>,
}

impl LinkAdminService {
    pub fn new(board: Arc<LinkBoard>) -> Self {
        LinkAdminService { board }
    }
}

fn unix_ms(ms: Option<u64>) -> i64 {
    ms.and_then(|m| i64::try_from(m).ok()).unwrap_or(0)
}

#[tonic::async_trait]
impl pb::link_admin_server::LinkAdmin for LinkAdminService {
    async fn links(
        &self,
        _request: Request<pb::LinksRequest>,
    ) -> Result<Response<pb::LinksReply>, Status> {
        let links = self
            .board
            .snapshot()
            .into_iter()
            .map(|(peer, e)| pb::LinkView {
                peer: peer.to_string(),
                direction: e.direction.as_str().to_owned(),
                state: state_name(&e.status.state).to_owned(),
                lag_events: e.status.lag_events,
                lag_bytes: e.status.lag_bytes,
                last_success_unix_ms: unix_ms(e.status.last_success_ms),
                retry_at_unix_ms: match e.status.state {
                    LinkState::BackingOff { retry_at_ms } => unix_ms(Some(retry_at_ms)),
                    _ => 0,
                },
                protocol_version: e.status.version.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::LinksReply { links }))
    }
}
