//! Mutual TLS and link status with real processes: the township is the `yimen-hub` binary,
//! the village runs in this process on its own sled directory, certificates come from the
//! PKI commands. Raw clients dial the township's replication port to see what it refuses on
//! the first call; a loopback proxy makes the village's link go silent.

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

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use yimen_core::link::handshake::VERSIONS;
use yimen_core::link::{ErrorCode, Frame, Hello};
use yimen_node::pki::PeerId;
use yimen_node::tls;
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;
use yimen_proto::pb::replication_client::ReplicationClient;

use common::*;

/// How often the township looks at its TLS files in these tests (`tls_check_secs`).
const TLS_CHECK: Duration = Duration::from_secs(1);
const TOWNSHIP_EXTRA: &str = "tls_check_secs = 1\n";
/// Past the township's next look at its files.
const AFTER_TLS_CHECK: Duration = TLS_CHECK.saturating_add(Duration::from_millis(300));
/// The village's stall time in the stall test (`stall_after_secs`).
const STALL_AFTER: Duration = Duration::from_secs(2);
/// Longest wait for a link to come up or for cases to arrive.
const ARRIVE: Duration = Duration::from_secs(20);

// ----- Raw replication clients -----

/// How a first call ended without a first frame.
#[derive(Debug)]
struct Refusal {
    /// `connect`, `call` or `first message`.
    stage: &'static str,
    /// The gRPC code when the refusal was a status.
    code: Option<tonic::Code>,
    /// The error and all its sources.
    text: String,
}

/// A raw `Replication/Link` call that got its first frame; holding it keeps the stream open.
struct RawLink {
    first: Frame,
    _out: mpsc::Sender<pb::LinkFrame>,
    _inbound: Streaming<pb::LinkFrame>,
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" <- ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn status_refusal(stage: &'static str, status: &tonic::Status) -> Refusal {
    Refusal {
        stage,
        code: Some(status.code()),
        text: chain(status),
    }
}

fn unix_ms() -> u64 {
    u64::try_from(unix_now()).unwrap() * 1000
}

fn hello(node: &str) -> pb::LinkFrame {
    pb::LinkFrame::from(&Frame::Hello(Hello {
        versions: VERSIONS,
        node: node.to_owned(),
        epoch: 1,
        clock_ms: unix_ms(),
        cursor: None,
        refill: false,
    }))
}

/// Dials the township's replication port at `addr` with `config`, calls `Replication/Link`
/// with a Hello naming `node`, and reads the first response message. Every step is bounded.
async fn first_call(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    node: &str,
) -> Result<RawLink, Refusal> {
    let server = node_peer(TOWNSHIP);
    let channel: Channel = tokio::time::timeout(
        CALL_TIMEOUT,
        tls::connect(addr, config, tls::server_name_for(&server, addr)),
    )
    .await
    .expect("connect timed out")
    .map_err(|e| Refusal {
        stage: "connect",
        code: None,
        text: chain(&e),
    })?;
    let mut client = ReplicationClient::new(channel);
    let (out, rx) = mpsc::channel(4);
    out.send(hello(node)).await.unwrap();
    let response = tokio::time::timeout(CALL_TIMEOUT, client.link(ReceiverStream::new(rx)))
        .await
        .expect("the call timed out")
        .map_err(|s| status_refusal("call", &s))?;
    let mut inbound = response.into_inner();
    let message = tokio::time::timeout(CALL_TIMEOUT, inbound.message())
        .await
        .expect("the first message timed out")
        .map_err(|s| status_refusal("first message", &s))?;
    let Some(message) = message else {
        return Err(Refusal {
            stage: "first message",
            code: None,
            text: "the stream ended without a frame".to_owned(),
        });
    };
    Ok(RawLink {
        first: Frame::try_from(message).unwrap(),
        _out: out,
        _inbound: inbound,
    })
}

/// A first call that must be refused; returns the refusal.
async fn refused(
    what: &str,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    node: &str,
) -> Refusal {
    let started = Instant::now();
    match first_call(addr, config, node).await {
        Ok(link) => panic!("{what}: accepted, first frame {}", link.first.kind()),
        Err(r) => {
            eprintln!(
                "{what}: refused at {} in {:?}: {:?} {}",
                r.stage,
                started.elapsed(),
                r.code,
                r.text
            );
            r
        }
    }
}

/// A TLS-level refusal: the dial fails (`tls::connect` waits for the server's first bytes)
/// with the server's TLS alert named, before any gRPC call.
fn assert_tls_refusal(what: &str, r: &Refusal, alert: &str) {
    assert_eq!(
        (r.stage, r.code),
        ("connect", None),
        "{what}: not refused at the dial: {r:?}"
    );
    assert!(
        r.text.contains(alert),
        "{what}: the error does not name {alert}: {r:?}"
    );
}

/// A client configuration without a certificate that trusts the deployment's CA.
fn no_certificate_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let provider = tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(cert_der(ca)))
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// The certificate the server at `addr` presents to a new TLS connection made with
/// `config` (which verifies it: CA, CRL, identity). Every connection is a full handshake:
/// the server resumes no session.
async fn presented(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server: &PeerId,
) -> Vec<u8> {
    let tcp = tokio::time::timeout(CALL_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let stream = tokio::time::timeout(
        CALL_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(tls::server_name_for(server, addr), tcp),
    )
    .await
    .unwrap()
    .unwrap();
    let tls = stream.get_ref().1;
    assert_eq!(
        tls.handshake_kind(),
        Some(rustls::HandshakeKind::Full),
        "a resumed session skips the certificate checks"
    );
    tls.peer_certificates().unwrap()[0].to_vec()
}

/// `yimen-hub serve` prints its ready line before it binds the children's listener: wait
/// until the listener takes connections.
async fn wait_listening(addr: SocketAddr) {
    eventually("the replication listener", READY_TIMEOUT, || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
}

// ----- Helpers over the village and the township -----

/// The village's link to the township: (state, lag in events).
async fn parent_link(village: &Village) -> (String, u64) {
    let links = village.links().await;
    let link = links["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["peer"] == TOWNSHIP)
        .cloned();
    link.map_or_else(
        || ("none".to_owned(), 0),
        |l| {
            (
                l["state"].as_str().unwrap().to_owned(),
                l["lag_events"].as_u64().unwrap(),
            )
        },
    )
}

/// Waits until the village's link is connected with nothing unacknowledged.
async fn until_caught_up(village: &Village, what: &str) {
    eventually(what, ARRIVE, || async move {
        let (state, lag) = parent_link(village).await;
        (state == "connected" && lag == 0).then_some(())
    })
    .await;
}

/// The village's first case: a new village waits for its parent's refill before it numbers
/// anything, so the first accept is retried.
async fn first_case(village: &Village, clerk: &ClerkClient<Channel>) -> String {
    eventually("the village's link", ARRIVE, || async move {
        (parent_link(village).await.0 == "connected").then_some(())
    })
    .await;
    let reply = eventually("the village accepts", ARRIVE, || {
        let mut c = clerk.clone();
        async move {
            c.apply(senior_application(0))
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    })
    .await;
    match reply.outcome {
        Some(pb::apply_reply::Outcome::Accepted(slip)) => slip.case.unwrap().number,
        other => panic!("not accepted: {other:?}"),
    }
}

/// Waits until the township holds exactly `want` (any order).
async fn until_township_holds(township: &ClerkClient<Channel>, want: &[String], what: &str) {
    let mut want = want.to_vec();
    want.sort();
    let want = &want;
    eventually(what, ARRIVE, || {
        let mut t = township.clone();
        async move { (numbers(&mut t).await == *want).then_some(()) }
    })
    .await;
}

// ----- The tests -----

/// The township refuses, at the dial or the first `Replication/Link` call, a client without a
/// certificate, one certified by another CA, a properly certified village that is not its
/// child, and (after the revocation list changed) a revoked child, each with an error naming
/// the cause; it refuses a Hello naming another node than the certificate; its own child
/// gets a Welcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_township_refuses_strangers_on_the_first_call_and_welcomes_its_child() {
    let d = Deployment::new();
    let township_id = d.hub_identity(TOWNSHIP);
    let village_id = d.node_identity(VILLAGE);
    let other_village_id = d.node_identity(OTHER_VILLAGE);
    let other_ca = d.other_ca("ca-other");
    let forged = d.node_identity_signed_by(VILLAGE, "keys-forged", &other_ca, 365);
    let listen = free_addr();
    let township_cfg = d.config(TOWNSHIP, &township_id, None, Some(listen), TOWNSHIP_EXTRA);
    let township = Hub::start(&township_cfg, "township").await;
    wait_listening(listen).await;
    let server = node_peer(TOWNSHIP);
    let own = tls::client_config(&d.tls_files(&village_id), &server).unwrap();

    // Its own child is welcomed, and the township shows the link.
    let link = first_call(listen, own.clone(), VILLAGE)
        .await
        .unwrap_or_else(|r| panic!("the own child was refused: {r:?}"));
    assert!(
        matches!(link.first, Frame::Welcome(_)),
        "first frame {}",
        link.first.kind()
    );
    eventually("the township shows its child", ARRIVE, || {
        let t = &township;
        async move { (link_state(&t.links(), VILLAGE).as_deref() == Some("connected")).then_some(()) }
    })
    .await;
    drop(link);

    // No certificate: the township's alert (TLS 1.3 asks for one) fails the dial, which
    // waits for the server's first bytes.
    let r = refused(
        "no certificate",
        listen,
        no_certificate_config(&d.ca_cert()),
        VILLAGE,
    )
    .await;
    assert_tls_refusal("no certificate", &r, "CertificateRequired");

    // The right identity, certified by another CA (the client trusts the real CA, so the
    // refusal is the township's).
    let forged_files = yimen_node::tls::TlsFiles {
        ca: d.ca_cert(),
        crl: Some(d.ca_crl()),
        ..d.tls_files(&forged)
    };
    let r = refused(
        "another CA",
        listen,
        tls::client_config(&forged_files, &server).unwrap(),
        VILLAGE,
    )
    .await;
    assert_tls_refusal("another CA", &r, "UnknownCA");

    // A properly certified village of another township: TLS passes, the service refuses.
    let other = tls::client_config(&d.tls_files(&other_village_id), &server).unwrap();
    let r = refused("another village", listen, other, OTHER_VILLAGE).await;
    assert_eq!(r.code, Some(tonic::Code::PermissionDenied), "{r:?}");
    assert!(
        r.text.contains(OTHER_VILLAGE)
            && r.text.contains("its parent is 430421100000, not this node"),
        "{r:?}"
    );

    // Its own child's certificate with a Hello naming another node: an Error frame first.
    let link = first_call(listen, own.clone(), OTHER_VILLAGE)
        .await
        .unwrap();
    match &link.first {
        Frame::Error(e) => {
            assert_eq!(e.code, ErrorCode::Protocol, "{e:?}");
            assert!(
                e.detail.contains(&format!(
                    "the hello names node {OTHER_VILLAGE}, but the certificate is node {VILLAGE}"
                )),
                "{e:?}"
            );
        }
        other => panic!("a Hello naming another node got {}", other.kind()),
    }
    drop(link);

    // Revoked: the same certificate that was welcomed above is refused on the first
    // connection after the township's next look at its files; with the same client
    // configuration, which would resume its earlier TLS session (and skip the certificate
    // check) if the township offered resumption.
    d.revoke(VILLAGE);
    tokio::time::sleep(AFTER_TLS_CHECK).await;
    let r = refused("revoked", listen, own, VILLAGE).await;
    assert_tls_refusal("revoked", &r, "CertificateRevoked");

    let log = township.stderr();
    assert!(
        log.contains("TLS certificate, CA or CRL reloaded"),
        "the township did not log the reload:\n{log}"
    );
}

/// The township (looking at its TLS files every second) and the village linked to it
/// through a counting proxy.
struct Proxied {
    township: Hub,
    proxy: Proxy,
    village: Village,
    township_id: Identity,
    village_id: Identity,
    listen: SocketAddr,
}

impl Proxied {
    async fn start(d: &Deployment) -> Proxied {
        Proxied::start_with(d, "").await
    }

    /// With `village_extra` in the village's config.
    async fn start_with(d: &Deployment, village_extra: &str) -> Proxied {
        let township_id = d.hub_identity(TOWNSHIP);
        let village_id = d.node_identity(VILLAGE);
        let listen = free_addr();
        let township_cfg = d.config(TOWNSHIP, &township_id, None, Some(listen), TOWNSHIP_EXTRA);
        let township = Hub::start(&township_cfg, "township").await;
        wait_listening(listen).await;
        let proxy = Proxy::start(listen).await;
        let village_cfg = d.config(VILLAGE, &village_id, Some(proxy.addr), None, village_extra);
        let village = Village::start(&village_cfg).await.unwrap();
        Proxied {
            township,
            proxy,
            village,
            township_id,
            village_id,
            listen,
        }
    }
}

/// The township's certificate renewed in place (same path, other validity) is presented to
/// the first new connection after its next look at its files, without a restart, while the
/// open link goes on; the village's certificate renewed in place (and the old one revoked)
/// is used at its next dial, so its cases keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_used_without_a_restart() {
    let d = Deployment::new();
    let Proxied {
        township,
        proxy,
        village,
        township_id,
        village_id,
        listen,
    } = Proxied::start(&d).await;
    let mut clerk = village.clerk().await;
    let t = township.clerk().await;
    let mut sent = vec![first_case(&village, &clerk).await];
    until_township_holds(&t, &sent, "the first case at the township").await;

    // The township's certificate.
    let server = node_peer(TOWNSHIP);
    let village_files = d.tls_files(&village_id);
    let client = tls::client_config(&village_files, &server).unwrap();
    let before = cert_der(&township_id.cert);
    assert_eq!(presented(listen, client.clone(), &server).await, before);
    // Twice with one client configuration: the second is not resumed either.
    assert_eq!(presented(listen, client.clone(), &server).await, before);
    let old = cert_facts(&before);
    d.sign(&township_id.dir, TOWNSHIP, 30);
    let after = cert_der(&township_id.cert);
    let new = cert_facts(&after);
    assert_ne!(new.serial, old.serial);
    assert!(
        new.not_after < old.not_after - 300 * 86_400,
        "{old:?} -> {new:?}"
    );
    assert!(
        (new.not_after - unix_now() - 30 * 86_400).abs() < 86_400,
        "{new:?}"
    );
    tokio::time::sleep(AFTER_TLS_CHECK).await;
    let seen = presented(listen, client, &server).await;
    assert_eq!(
        cert_facts(&seen),
        new,
        "a new connection got the old certificate"
    );
    assert_eq!(seen, after);
    // The open link was not disturbed.
    sent.extend(accept(&mut clerk, 1).await);
    until_township_holds(&t, &sent, "a case over the open link").await;

    // The village's certificate: renewed in place, the old one revoked.
    let old_client_copy = d.path().join("village-old.crt");
    std::fs::copy(&village_id.cert, &old_client_copy).unwrap();
    let old_client = cert_facts(&cert_der(&village_id.cert));
    d.sign(&village_id.dir, VILLAGE, 30);
    let new_client = cert_facts(&cert_der(&village_id.cert));
    assert_ne!(new_client.serial, old_client.serial);
    d.revoke_serial(&old_client.serial);
    tokio::time::sleep(AFTER_TLS_CHECK).await;
    // Force a new dial: only a connection made with the renewed certificate can carry cases
    // now.
    let dials = proxy.accepted();
    proxy.cut();
    sent.extend(accept(&mut clerk, 2).await);
    until_township_holds(&t, &sent, "cases after the village's renewal").await;
    assert!(proxy.accepted() > dials, "the village did not dial again");
    until_caught_up(&village, "the village's link after its renewal").await;
    let old_files = yimen_node::tls::TlsFiles {
        cert: old_client_copy,
        ..d.tls_files(&village_id)
    };
    let r = refused(
        "the village's old certificate",
        listen,
        tls::client_config(&old_files, &server).unwrap(),
        VILLAGE,
    )
    .await;
    assert_tls_refusal("the village's old certificate", &r, "CertificateRevoked");
    village.stop().await;
}

/// A link whose proxy stops forwarding (sockets open) shows `stalled` on the village within
/// the stall time, long before HTTP/2 keepalive could end the connection; when forwarding
/// resumes it shows `connected` and the cases arrive. Stalled again, the connection is cut:
/// the village dials again and re-sends what was lost in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_shows_stalled_then_recovers() {
    let d = Deployment::new();
    let township_id = d.hub_identity(TOWNSHIP);
    let village_id = d.node_identity(VILLAGE);
    let listen = free_addr();
    let township_cfg = d.config(TOWNSHIP, &township_id, None, Some(listen), "");
    let township = Hub::start(&township_cfg, "township").await;
    wait_listening(listen).await;
    let proxy = Proxy::start(listen).await;
    let village_cfg = d.config(
        VILLAGE,
        &village_id,
        Some(proxy.addr),
        None,
        &format!("stall_after_secs = {}\n", STALL_AFTER.as_secs()),
    );
    let village = Village::start(&village_cfg).await.unwrap();
    let mut clerk = village.clerk().await;
    let t = township.clerk().await;
    let mut sent = vec![first_case(&village, &clerk).await];
    until_township_holds(&t, &sent, "the first case at the township").await;
    until_caught_up(&village, "the village's link").await;

    for round in ["resume", "cut"] {
        proxy.pause();
        let paused_at = Instant::now();
        let waiting = accept(&mut clerk, 5).await;
        // Not stalled before the stall time.
        let (state, lag) = parent_link(&village).await;
        if paused_at.elapsed() < STALL_AFTER - Duration::from_millis(300) {
            assert_eq!(state, "connected", "{round}: stalled too early (lag {lag})");
        }
        let lag = eventually("stalled", STALL_AFTER * 5, || {
            let v = &village;
            async move {
                let (state, lag) = parent_link(v).await;
                (state == "stalled").then_some(lag)
            }
        })
        .await;
        let stalled_after = paused_at.elapsed();
        eprintln!("{round}: stalled after {stalled_after:?} with {lag} events lagging");
        assert!(stalled_after >= STALL_AFTER, "{round}: {stalled_after:?}");
        assert!(
            stalled_after < yimen_node::sync::KEEPALIVE_INTERVAL,
            "{round}: {stalled_after:?}"
        );
        assert!(lag >= 5, "{round}: lag {lag}");
        assert_eq!(numbers(&mut t.clone()).await, {
            let mut s = sent.clone();
            s.sort();
            s
        });
        match round {
            "resume" => proxy.resume(),
            _ => {
                proxy.cut();
                proxy.resume();
            }
        }
        let recovered_at = Instant::now();
        sent.extend(waiting);
        until_township_holds(&t, &sent, "the cases after the stall").await;
        until_caught_up(&village, "the village's link after the stall").await;
        eprintln!("{round}: recovered in {:?}", recovered_at.elapsed());
    }
    assert_eq!(
        link_state(&township.links(), VILLAGE).as_deref(),
        Some("connected")
    );
    village.stop().await;
}

/// The village's link goes down, it dials again (through the proxy, which counts `dials`
/// before the cut) and every dial is refused: the link stays down.
async fn stays_cut(village: &Village, proxy: &Proxy, dials: usize) {
    eventually("the village's link down", ARRIVE, || async move {
        (parent_link(village).await.0 != "connected").then_some(())
    })
    .await;
    eventually("a dial after the cut", ARRIVE, || {
        let n = proxy.accepted();
        async move { (n > dials).then_some(()) }
    })
    .await;
    tokio::time::sleep(AFTER_TLS_CHECK).await;
    assert_ne!(parent_link(village).await.0, "connected");
}

/// A child revoked while its link is open is cut off at the township's next look at its
/// revocation list, not only at its next dial, and its dials are refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_linked_child_cuts_its_open_link() {
    let d = Deployment::new();
    let Proxied {
        township,
        proxy,
        village,
        ..
    } = Proxied::start(&d).await;
    let clerk = village.clerk().await;
    let t = township.clerk().await;
    let first = first_case(&village, &clerk).await;
    until_township_holds(&t, &[first], "the first case at the township").await;
    let dials = proxy.accepted();

    d.revoke(VILLAGE);
    eventually("the open link cut", ARRIVE, || {
        let log = township.stderr();
        async move { log.contains("its open link is cut").then_some(()) }
    })
    .await;
    stays_cut(&village, &proxy, dials).await;
    village.stop().await;
}

/// A village whose parent is revoked while their link is open (a stolen township box) leaves
/// it at its next look at the revocation list, and does not link to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_village_leaves_an_open_link_to_a_revoked_parent() {
    let d = Deployment::new();
    let Proxied {
        township,
        proxy,
        village,
        ..
    } = Proxied::start_with(&d, TOWNSHIP_EXTRA).await;
    let clerk = village.clerk().await;
    let t = township.clerk().await;
    let first = first_case(&village, &clerk).await;
    until_township_holds(&t, &[first], "the first case at the township").await;
    until_caught_up(&village, "the village's link").await;
    let dials = proxy.accepted();

    d.revoke(TOWNSHIP);
    stays_cut(&village, &proxy, dials).await;
    // The township did not cut it: it was the village's own decision.
    assert!(!township.stderr().contains("its open link is cut"));
    village.stop().await;
}
