//! A raw village against real processes: the township (and the county above it) is the
//! `yimen-hub` binary on its own store, certificates come from the PKI commands, and the test
//! dials the township's replication port itself with the village's certificate and speaks the
//! link protocol frame by frame. As a NEWER village it offers protocol versions and writes
//! events of a payload schema and an event type this build does not know (DESIGN.md "Events:
//! one log, routed on a tree": the protocol version is negotiated when a link opens; hubs
//! route, store and forward on the envelope alone and carry payloads they cannot read); as a
//! BROKEN one it writes a case event that fails a domain check (DESIGN.md "When an event is
//! refused": quarantine, the county's alarm and decisions) and a revision it may not author
//! (kept and relayed, not applied; the alarm reaches the county).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use yimen_core::link::handshake::{PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
use yimen_node::register::PAYLOAD_SCHEMA_VERSION;
use yimen_node::tls;
use yimen_proto::pb;
use yimen_proto::pb::link_frame::Frame as F;
use yimen_proto::pb::replication_client::ReplicationClient;

use common::*;

/// Longest wait for a link to come up, a log line to appear or events to be relayed.
const ARRIVE: Duration = Duration::from_secs(30);
/// The newest protocol version the newer village speaks: well above this build's.
const NEWER_MAX: u32 = PROTOCOL_VERSION_MAX + 6;
/// An event type no build knows yet: in the case-event range (100-199), unassigned.
const UNKNOWN_TYPE: i32 = 150;
/// A top-level `Event` field number the newer village's schema has and this build's lacks.
const NEWER_EVENT_FIELD: u32 = 1000;

// ----- The raw replication client: a newer village -----

/// A `Replication/Link` stream opened with a hello; frames are sent and read one by one.
struct RawLink {
    out: mpsc::Sender<pb::LinkFrame>,
    inbound: Streaming<pb::LinkFrame>,
}

fn frame(f: F) -> pb::LinkFrame {
    pb::LinkFrame { frame: Some(f) }
}

fn unix_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The newer village's hello: its versions and epoch, no cursor of the down stream (it holds
/// nothing of the township), no refill.
fn hello(min: u32, max: u32, epoch: u64) -> pb::LinkHello {
    pb::LinkHello {
        versions: Some(pb::LinkVersions { min, max }),
        node: VILLAGE.to_owned(),
        epoch,
        clock_ms: unix_ms(),
        cursor: None,
        refill: false,
    }
}

impl RawLink {
    /// Dials the township at `addr` over mTLS with `config` (the village's certificate,
    /// expecting the township's), calls `Replication/Link` and sends `hello`. Bounded.
    async fn open(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        hello: pb::LinkHello,
    ) -> RawLink {
        let server = node_peer(TOWNSHIP);
        let channel = tokio::time::timeout(
            CALL_TIMEOUT,
            tls::connect(addr, config, tls::server_name_for(&server, addr)),
        )
        .await
        .expect("the dial timed out")
        .unwrap_or_else(|e| panic!("the dial failed: {e}"));
        let mut client = ReplicationClient::new(channel);
        let (out, rx) = mpsc::channel(16);
        out.send(frame(F::Hello(hello))).await.unwrap();
        let inbound = tokio::time::timeout(CALL_TIMEOUT, client.link(ReceiverStream::new(rx)))
            .await
            .expect("the call timed out")
            .unwrap_or_else(|s| panic!("the call was refused: {s}"))
            .into_inner();
        RawLink { out, inbound }
    }

    /// The next frame, `Ok(None)` when the stream ended cleanly, `Err` when it ended with a
    /// status; panics after `CALL_TIMEOUT` without any of these.
    async fn next(&mut self, what: &str) -> Result<Option<F>, tonic::Status> {
        let message = tokio::time::timeout(CALL_TIMEOUT, self.inbound.message())
            .await
            .unwrap_or_else(|_| panic!("nothing within {CALL_TIMEOUT:?} while waiting for {what}"));
        message.map(|m| m.map(|f| f.frame.expect("a frame without a kind")))
    }

    /// Sends a frame; false if the township has closed the stream.
    async fn send(&self, f: F) -> bool {
        self.out.send(frame(f)).await.is_ok()
    }

    /// Sends the events `bytes` (own sequence numbers and positions from 1) as the first batch
    /// of `epoch` and waits for the township's acknowledgement of the last (given only once
    /// durable; credit and down-stream frames may come first).
    async fn send_acked(&mut self, epoch: u64, bytes: &[&[u8]]) -> pb::LinkAck {
        let events: Vec<pb::LinkEvent> = (1..)
            .zip(bytes)
            .map(|(n, b)| link_event(epoch, n, n, b))
            .collect();
        let last = events.last().map_or(0, |e| e.position);
        assert!(
            self.send(F::Batch(pb::LinkBatch {
                epoch,
                after: 0,
                events,
            }))
            .await,
            "the township closed the stream"
        );
        loop {
            match self.next("the acknowledgement").await {
                Ok(Some(F::Ack(a))) if a.position >= last => return a,
                Ok(Some(F::Error(e))) => panic!("the township ended the link: {e:?}"),
                Ok(Some(_)) => {}
                other => panic!("the stream ended before the acknowledgement: {other:?}"),
            }
        }
    }
}

/// The county and the township as real processes, the township linked to the county and
/// listening for its children; the village's identity for the raw client.
struct Tiers {
    county: Hub,
    township: Hub,
    county_cfg: std::path::PathBuf,
    township_cfg: std::path::PathBuf,
    county_listen: SocketAddr,
    township_listen: SocketAddr,
    village_id: Identity,
}

impl Tiers {
    async fn start(d: &Deployment) -> Tiers {
        let county_id = d.hub_identity(COUNTY);
        let township_id = d.hub_identity(TOWNSHIP);
        let village_id = d.node_identity(VILLAGE);
        let county_listen = free_addr();
        let township_listen = free_addr();
        let county_cfg = d.config(COUNTY, &county_id, None, Some(county_listen), "");
        let township_cfg = d.config(
            TOWNSHIP,
            &township_id,
            Some(county_listen),
            Some(township_listen),
            "",
        );
        let county = Hub::start(&county_cfg, "county").await;
        let township = Hub::start(&township_cfg, "township").await;
        wait_listening(township_listen).await;
        eventually("the township's link to the county", ARRIVE, || {
            let links = township.links();
            async move {
                (link_state(&links, COUNTY).as_deref() == Some("connected")).then_some(())
            }
        })
        .await;
        Tiers {
            county,
            township,
            county_cfg,
            township_cfg,
            county_listen,
            township_listen,
            village_id,
        }
    }
}

/// The kind of a frame, for messages.
fn kind(f: &F) -> &'static str {
    match f {
        F::Hello(_) => "hello",
        F::Welcome(_) => "welcome",
        F::Batch(_) => "batch",
        F::Ack(_) => "ack",
        F::Credit(_) => "credit",
        F::Error(_) => "error",
    }
}

/// `yimen-hub serve` prints its ready line before it binds the children's listener: wait
/// until the listener takes connections.
async fn wait_listening(addr: SocketAddr) {
    eventually("the replication listener", READY_TIMEOUT, || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
}

// ----- Events of the newer village, encoded by hand where this build has no type -----

/// `value` as a protobuf varint.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).unwrap() | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).unwrap());
}

/// A length-delimited protobuf field (wire type 2).
fn bytes_field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(number) << 3 | 2, &mut out);
    varint(u64::try_from(bytes.len()).unwrap(), &mut out);
    out.extend_from_slice(bytes);
    out
}

/// One event of the newer village, as its store holds it: `pb::Event` bytes, plus `extra`
/// bytes of fields this build's schema lacks (appended fields merge into the message).
fn event_bytes(envelope: pb::EventEnvelope, payload: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut bytes = yimen_proto::convert::encode_payload(&pb::Event {
        envelope: Some(envelope),
        payload: payload.to_vec(),
    });
    bytes.extend_from_slice(extra);
    bytes
}

fn event_id(epoch: u64, seq: u64) -> pb::EventId {
    pb::EventId {
        origin: VILLAGE.to_owned(),
        epoch,
        seq,
    }
}

/// A payload that no schema-1 message decodes: its first byte is a protobuf tag of field
/// number 0, which is invalid.
const NEWER_PAYLOAD: &[u8] = b"\x00\x02case event payload, schema 2: unreadable to schema 1\xff";
const UNKNOWN_PAYLOAD: &[u8] = b"\x00\x96an event kind this build has never heard of";

/// The first event of case `number` at payload schema `PAYLOAD_SCHEMA_VERSION + 1`, with an
/// `Event` field this build's schema lacks.
fn newer_case_event(epoch: u64, seq: u64, number: &str) -> Vec<u8> {
    case_event(
        epoch,
        seq,
        number,
        PAYLOAD_SCHEMA_VERSION + 1,
        &bytes_field(NEWER_EVENT_FIELD, b"a field of the newer schema"),
    )
}

/// The first event of case `number` at payload `schema`, with a payload no schema-1 message
/// decodes and `extra` bytes after the `Event`'s fields.
fn case_event(epoch: u64, seq: u64, number: &str, schema: u32, extra: &[u8]) -> Vec<u8> {
    event_bytes(
        pb::EventEnvelope {
            id: Some(event_id(epoch, seq)),
            case_id: number.to_owned(),
            case_seq: 1,
            r#type: pb::EventType::CaseEvent as i32,
            schema_version: schema,
            audience: Some(pb::Audience {
                subtree: String::new(),
                members: vec![VILLAGE.to_owned()],
            }),
            author: "村办事员".to_owned(),
            ..Default::default()
        },
        NEWER_PAYLOAD,
        extra,
    )
}

/// An event of a type this build does not know, to the village's subtree.
fn unknown_type_event(epoch: u64, seq: u64) -> Vec<u8> {
    event_bytes(
        pb::EventEnvelope {
            id: Some(event_id(epoch, seq)),
            r#type: UNKNOWN_TYPE,
            schema_version: 1,
            audience: Some(pb::Audience {
                subtree: VILLAGE.to_owned(),
                members: Vec::new(),
            }),
            ..Default::default()
        },
        UNKNOWN_PAYLOAD,
        &[],
    )
}

fn link_event(epoch: u64, seq: u64, position: u64, bytes: &[u8]) -> pb::LinkEvent {
    pb::LinkEvent {
        id: Some(event_id(epoch, seq)),
        position,
        digest: blake3(bytes).to_vec(),
        event: bytes.to_vec(),
    }
}

/// The digest a link event carries.
fn blake3(input: &[u8]) -> [u8; 32] {
    *blake3::hash(input).as_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ----- Reading what a hub logged and stored -----

/// The protocol version of each handshake with the village the township logged ("child
/// connected … version=N"), in order.
fn logged_versions(log: &str) -> Vec<String> {
    let child = format!("child={VILLAGE}");
    log.lines()
        .filter(|l| l.contains("child connected") && l.contains(&child))
        .map(|l| {
            l.split_whitespace()
                .find_map(|t| t.strip_prefix("version="))
                .unwrap_or("(none)")
                .to_owned()
        })
        .collect()
}

/// One link of a hub's `links --json`.
fn link_of(links: &Value, peer: &str) -> Option<Value> {
    links["links"]
        .as_array()?
        .iter()
        .find(|l| l["peer"] == peer)
        .cloned()
}

/// The event of the village's `epoch` and `seq` in an inspect dump.
fn stored(dump: &Value, epoch: u64, seq: u64) -> Option<&Value> {
    let epoch = format!("{epoch:016x}");
    dump["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["origin"] == VILLAGE && e["epoch"] == epoch.as_str() && e["seq"] == seq)
}

/// The dump of a stopped box's store, by the code `yimen-node inspect` runs.
fn inspect(config: &Path) -> Value {
    yimen_node::register::inspect(&store_of(config)).unwrap()
}

// ----- The tests -----

/// A link opens at the highest protocol version both ends speak: the township logs version
/// `PROTOCOL_VERSION_MAX` (1) for its own village and both ends report it in `links` (a), and welcomes a newer village offering
/// 1..=7 at that version (b); a village offering only versions above this build's gets an
/// error frame of code VERSION naming both ranges, no welcome, and nothing it sends is
/// stored (c).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_negotiates_highest_shared_version() {
    let started = Instant::now();
    let d = Deployment::new();
    let township_id = d.hub_identity(TOWNSHIP);
    let village_id = d.node_identity(VILLAGE);
    let listen = free_addr();
    let township_cfg = d.config(TOWNSHIP, &township_id, None, Some(listen), "");
    let village_cfg = d.config(VILLAGE, &village_id, Some(listen), None, "");
    let township = Hub::start(&township_cfg, "township").await;
    wait_listening(listen).await;

    // (a) This build's village: both ends speak 1..=1.
    let village = Village::start(&village_cfg).await.unwrap();
    eventually("the village's link up", ARRIVE, || {
        let v = &village;
        async move {
            (link_state(&v.links().await, TOWNSHIP).as_deref() == Some("connected")).then_some(())
        }
    })
    .await;
    let first = eventually("the township logs the handshake", ARRIVE, || {
        let log = township.stderr();
        async move {
            let v = logged_versions(&log);
            (!v.is_empty()).then_some(v)
        }
    })
    .await;
    assert_eq!(first[0], PROTOCOL_VERSION_MAX.to_string(), "{first:?}");
    // Both ends report it in their link status (`links --json`).
    let at_village = link_of(&village.links().await, TOWNSHIP).unwrap();
    assert_eq!(
        at_village["protocol_version"], PROTOCOL_VERSION_MAX,
        "{at_village}"
    );
    let at_township = link_of(&township.links(), VILLAGE).unwrap();
    assert_eq!(
        at_township["protocol_version"], PROTOCOL_VERSION_MAX,
        "{at_township}"
    );
    village.stop().await;
    eventually("the village's link down at the township", ARRIVE, || {
        let links = township.links();
        async move { (link_state(&links, VILLAGE).as_deref() != Some("connected")).then_some(()) }
    })
    .await;
    let handshakes = logged_versions(&township.stderr()).len();
    eprintln!("(a) version {} at {:?}", first[0], started.elapsed());

    let config = tls::client_config(&d.tls_files(&village_id), &node_peer(TOWNSHIP)).unwrap();

    // (b) A newer village offering 1..=7: the township chooses the highest it shares.
    let mut newer = RawLink::open(listen, config.clone(), hello(1, NEWER_MAX, 0x5eed_0001)).await;
    match newer.next("the welcome").await {
        Ok(Some(F::Welcome(w))) => {
            assert_eq!(w.version, PROTOCOL_VERSION_MAX, "{w:?}");
            assert!(w.epoch > 0, "{w:?}");
        }
        other => panic!("the newer village got no welcome: {other:?}"),
    }
    let logged = eventually("the township logs the newer handshake", ARRIVE, || {
        let log = township.stderr();
        async move {
            let v = logged_versions(&log);
            (v.len() > handshakes).then_some(v)
        }
    })
    .await;
    assert_eq!(
        logged[handshakes..],
        [PROTOCOL_VERSION_MAX.to_string()],
        "{logged:?}"
    );
    drop(newer);
    eprintln!("(b) welcomed at {:?}", started.elapsed());

    // (c) A village speaking only versions above this build's.
    const REFUSED_EPOCH: u64 = 0x5eed_0003;
    let (min, max) = (PROTOCOL_VERSION_MAX + 1, NEWER_MAX);
    let mut newest = RawLink::open(listen, config, hello(min, max, REFUSED_EPOCH)).await;
    match newest.next("the refusal").await {
        Ok(Some(F::Error(e))) => {
            assert_eq!(
                e.code,
                pb::LinkErrorCode::Version as i32,
                "not a version error: {e:?}"
            );
            assert_eq!(
                e.detail,
                format!(
                    "no common protocol version: ours [{PROTOCOL_VERSION_MIN}, {PROTOCOL_VERSION_MAX}], theirs [{min}, {max}]"
                )
            );
        }
        other => panic!("the newest village was not refused with an error frame: {other:?}"),
    }
    // What it sends anyway is never taken.
    let bytes = newer_case_event(REFUSED_EPOCH, 1, "430421105204202506010001");
    let _ = newest
        .send(F::Batch(pb::LinkBatch {
            epoch: REFUSED_EPOCH,
            after: 0,
            events: vec![link_event(REFUSED_EPOCH, 1, 1, &bytes)],
        }))
        .await;
    // The stream ends; nothing but error frames comes before its end.
    let mut rest = Vec::new();
    let end = loop {
        match newest.next("the end of the refused stream").await {
            Ok(Some(f)) => {
                assert!(rest.len() < 8, "the refused stream does not end: {rest:?}");
                rest.push(f);
            }
            Ok(None) => break "ended".to_owned(),
            Err(status) => break format!("ended with {status}"),
        }
    };
    eprintln!("(c) after the refusal: {rest:?}, {end}");
    assert!(
        rest.iter().all(|f| matches!(f, F::Error(_))),
        "after the refusal: {:?}",
        rest.iter().map(kind).collect::<Vec<_>>()
    );
    assert_eq!(
        logged_versions(&township.stderr()).len(),
        handshakes + 1,
        "a refused hello is not a handshake"
    );
    drop(newest);

    township.stop().await;
    let dump = inspect(&township_cfg);
    assert!(
        stored(&dump, REFUSED_EPOCH, 1).is_none(),
        "the refused village's event is stored: {}",
        dump["events"]
    );
    let refused_cursor = format!("{REFUSED_EPOCH:016x}");
    assert!(
        dump["cursors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["epoch"] != refused_cursor.as_str()),
        "a cursor of the refused stream: {}",
        dump["cursors"]
    );
    assert!(
        !open_register(&township_cfg, TOWNSHIP)
            .holds(&yimen_core::link::EventId {
                origin: VILLAGE.to_owned(),
                epoch: REFUSED_EPOCH,
                seq: 1,
            })
            .unwrap()
    );
    eprintln!("done at {:?}", started.elapsed());
}

/// The township (a hub of payload schema `PAYLOAD_SCHEMA_VERSION`) takes from a newer village
/// a case event of schema `PAYLOAD_SCHEMA_VERSION + 1` whose payload it cannot read (and
/// whose `Event` has a field its schema lacks) and an event of a type it does not know,
/// acknowledges both once durable, and relays both to the county: each store holds each
/// event byte for byte as the village wrote it, under its envelope (type, schema version,
/// case), and neither hub quarantines the case or makes case state from a payload it cannot
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_relays_newer_schema_and_unknown_type_byte_for_byte() {
    let started = Instant::now();
    let d = Deployment::new();
    let Tiers {
        county,
        township,
        county_cfg,
        township_cfg,
        township_listen,
        village_id,
        ..
    } = Tiers::start(&d).await;
    eprintln!("county and township up at {:?}", started.elapsed());

    const EPOCH: u64 = 0x5eed_0002;
    let number = format!("{VILLAGE}202506010001");
    let case_event = newer_case_event(EPOCH, 1, &number);
    let unknown = unknown_type_event(EPOCH, 2);

    let config = tls::client_config(&d.tls_files(&village_id), &node_peer(TOWNSHIP)).unwrap();
    let mut link = RawLink::open(township_listen, config, hello(1, NEWER_MAX, EPOCH)).await;
    match link.next("the welcome").await {
        Ok(Some(F::Welcome(w))) => {
            assert_eq!(w.version, PROTOCOL_VERSION_MAX, "{w:?}");
            assert_eq!(w.cursor, None, "the township holds nothing of this epoch");
        }
        other => panic!("no welcome: {other:?}"),
    }
    let ack = link.send_acked(EPOCH, &[&case_event, &unknown]).await;
    assert_eq!((ack.epoch, ack.position), (EPOCH, 2));
    let acked_at = unix_ms();
    eprintln!("acknowledged at {:?}", started.elapsed());

    // Relayed: the county acknowledged everything the township has for it, after the
    // village's events were durable at the township.
    eventually("both events at the county", ARRIVE, || {
        let links = township.links();
        async move {
            let l = link_of(&links, COUNTY)?;
            (l["state"] == "connected"
                && l["lag_events"] == 0
                && l["last_success_unix_ms"]
                    .as_i64()
                    .is_some_and(|t| u64::try_from(t).unwrap() > acked_at))
            .then_some(())
        }
    })
    .await;
    eprintln!("relayed at {:?}", started.elapsed());
    drop(link);
    township.stop().await;
    county.stop().await;

    for (what, config, id) in [
        ("township", &township_cfg, TOWNSHIP),
        ("county", &county_cfg, COUNTY),
    ] {
        let dump = inspect(config);
        for (seq, bytes, kind, schema, case) in [
            (
                1,
                &case_event,
                pb::EventType::CaseEvent as i32,
                PAYLOAD_SCHEMA_VERSION + 1,
                number.as_str(),
            ),
            (2, &unknown, UNKNOWN_TYPE, 1, ""),
        ] {
            let e = stored(&dump, EPOCH, seq)
                .unwrap_or_else(|| panic!("the {what} lacks event {seq}: {}", dump["events"]));
            assert_eq!(e["digest"], hex(&blake3(bytes)), "{what}, event {seq}: {e}");
            assert_eq!(e["bytes"], bytes.len(), "{what}, event {seq}: {e}");
            assert_eq!(e["type"], kind, "{what}, event {seq}: {e}");
            assert_eq!(e["schema_version"], schema, "{what}, event {seq}: {e}");
            assert_eq!(e["case"], case, "{what}, event {seq}: {e}");
            if case.is_empty() {
                assert_eq!(e["audience_subtree"], VILLAGE, "{what}, event {seq}: {e}");
            }
            let position = e["position"].as_u64().unwrap();
            let raw = open_register(config, id).raw_event(position).unwrap();
            assert_eq!(
                raw.as_ref(),
                Some(bytes),
                "the {what}'s event {seq} at position {position} is not the village's bytes"
            );
        }
        assert_eq!(
            dump["quarantined"],
            serde_json::json!([]),
            "the {what} quarantined"
        );
        assert!(
            dump["cases"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["number"] != number.as_str()),
            "the {what} made case state from a payload it cannot read: {}",
            dump["cases"]
        );
    }
    eprintln!("done at {:?}", started.elapsed());
}

/// Polls `desk quarantine` at `op` until `check` accepts the listing; returns it.
async fn quarantine_when(op: &Desk, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(what, ARRIVE, || {
        let listed = op.ok(&["quarantine"]);
        let found = check(&listed).then_some(listed);
        async move { found }
    })
    .await
}

/// DESIGN.md "When an event is refused", with real processes: a case event of this build's
/// schema whose payload fails its checks (a broken or compromised village) is kept and
/// relayed, but quarantines the case at the township; the township's alarm reaches the
/// county, whose operator lists it with `yimen-hub desk quarantine`, releases it (the held
/// event fails again: quarantined again) and voids it; the void reaches the township.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_failing_a_domain_check_is_quarantined_and_the_county_decides() {
    let d = Deployment::new();
    let Tiers {
        county,
        township,
        county_cfg,
        township_cfg,
        county_listen,
        township_listen,
        village_id,
    } = Tiers::start(&d).await;
    let county_op = Desk::new(
        &d,
        &["--operator", &format!("{COUNTY}/zhao.liu")],
        "keys-county-operator",
        county_listen,
    );
    let township_op = Desk::new(
        &d,
        &["--operator", &format!("{TOWNSHIP}/wang.li")],
        "keys-township-operator",
        township_listen,
    );

    const EPOCH: u64 = 0x5eed_0003;
    let number = format!("{VILLAGE}202506010001");
    // A case event of this build's own schema whose payload does not decode.
    let broken = case_event(EPOCH, 1, &number, PAYLOAD_SCHEMA_VERSION, &[]);
    let config = tls::client_config(&d.tls_files(&village_id), &node_peer(TOWNSHIP)).unwrap();
    let mut link = RawLink::open(township_listen, config, hello(1, 1, EPOCH)).await;
    assert!(matches!(
        link.next("the welcome").await,
        Ok(Some(F::Welcome(_)))
    ));
    // And a catalog revision a village may not author: kept and relayed, not applied.
    let revision = event_bytes(
        pb::EventEnvelope {
            id: Some(event_id(EPOCH, 2)),
            r#type: pb::EventType::CatalogRevision as i32,
            schema_version: PAYLOAD_SCHEMA_VERSION,
            audience: Some(pb::Audience {
                subtree: VILLAGE.to_owned(),
                members: Vec::new(),
            }),
            author: "村办事员".to_owned(),
            ..Default::default()
        },
        b"not read: the author is refused first",
        &[],
    );
    let ack = link.send_acked(EPOCH, &[&broken, &revision]).await;
    assert_eq!(
        ack.position, 2,
        "the link moves on: the events are acknowledged"
    );

    // The alarm at the county (and the case quarantined at the township).
    let listed = quarantine_when(&county_op, "the alarm at the county", |l| {
        l["quarantined"].as_array().is_some_and(|q| !q.is_empty())
    })
    .await;
    let q = &listed["quarantined"][0];
    assert_eq!(q["case_number"], number.as_str(), "{listed}");
    let reason = q["reason"].as_str().unwrap();
    assert!(
        reason.contains("payload does not decode") || reason.contains("payload fails"),
        "{listed}"
    );
    // The revision alarms are listed beside it: the township and the county each refused
    // the revision (every node checks what it applies).
    let listed = quarantine_when(&county_op, "the revision alarms at the county", |l| {
        l["refused_revisions"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
    })
    .await;
    let refused = listed["refused_revisions"].as_array().unwrap();
    let nodes: Vec<&str> = refused
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, [COUNTY, TOWNSHIP], "{listed}");
    for r in refused {
        assert_eq!(r["kind"], "catalog", "{listed}");
        assert_eq!(
            r["revision"],
            format!("{VILLAGE}-{EPOCH:016x}-2"),
            "{listed}"
        );
        assert!(
            r["reason"].as_str().unwrap().contains("may not author"),
            "{listed}"
        );
    }
    let at_township = township_op.ok(&["quarantine"]);
    assert_eq!(
        at_township["quarantined"][0]["case_number"],
        number.as_str(),
        "{at_township}"
    );
    // Only the county decides.
    let (err, _) = township_op
        .run(&["quarantine", "release", &number, "--reason", "试试"])
        .unwrap_err();
    assert_eq!(err["error"]["code"], "PermissionDenied", "{err}");

    // Released: the held event still fails, so the case is quarantined again.
    let released = county_op.ok(&[
        "quarantine",
        "release",
        &number,
        "--reason",
        "已升级软件，重新校验",
    ]);
    assert_eq!(released["decision"], "release", "{released}");
    assert!(
        released["text_zh"].as_str().unwrap().contains("再次隔离"),
        "{released}"
    );
    // Voided: final, at the county at once and at the township when the decision arrives.
    let voided = county_op.ok(&[
        "quarantine",
        "void",
        &number,
        "--reason",
        "村级数据损坏，作废后重新受理",
    ]);
    assert_eq!(voided["decision"], "void", "{voided}");
    assert_eq!(
        county_op.ok(&["quarantine"])["quarantined"],
        serde_json::json!([])
    );
    quarantine_when(&township_op, "the void at the township", |l| {
        l["quarantined"] == serde_json::json!([])
    })
    .await;
    let (err, _) = county_op
        .run(&["quarantine", "void", &number, "--reason", "再次"])
        .unwrap_err();
    assert_eq!(err["error"]["code"], "NotFound", "{err}");

    drop(link);
    township.stop().await;
    county.stop().await;
    for (what, config) in [("township", &township_cfg), ("county", &county_cfg)] {
        let dump = inspect(config);
        assert_eq!(
            dump["voided"],
            serde_json::json!([number]),
            "{what}: {dump}"
        );
        assert_eq!(dump["quarantined"], serde_json::json!([]), "{what}");
        assert!(
            stored(&dump, EPOCH, 1).is_some(),
            "the {what} keeps the broken event (and relays it)"
        );
    }
}
