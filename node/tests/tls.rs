//! Mutual TLS with tonic: a real server on loopback serves a valid child and refuses clients
//! without a certificate, of another CA or revoked (on their first call); a renewed server
//! certificate is served without a restart; a client refuses a server naming another node;
//! authorisation is a table over the sample topology.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};
use yimen_core::division::DivisionCode;
use yimen_core::topology::Topology;
use yimen_node::pki::{self, Dept, KeyFiles, OperatorName, PeerId, RevokeTarget, TrustDomain};
use yimen_node::tls::{self, Action, ReloadingServerConfig, TlsFiles};
use yimen_proto::pb::admin_client::AdminClient;
use yimen_proto::pb::admin_server::{Admin, AdminServer};
use yimen_proto::pb::{DescribeReply, DescribeRequest};

const TD: &str = pki::DEFAULT_TRUST_DOMAIN;
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(SystemTime::now())
}

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn node(id: &str) -> PeerId {
    PeerId::node(TrustDomain::default_domain(), code(id))
}

fn station(county: &str, dept: &str) -> PeerId {
    PeerId::station(
        TrustDomain::default_domain(),
        code(county),
        Dept::parse(dept).unwrap(),
    )
    .unwrap()
}

fn operator(id: &str, name: &str) -> PeerId {
    PeerId::operator(
        TrustDomain::default_domain(),
        code(id),
        OperatorName::parse(name).unwrap(),
    )
}

fn cert_path(dir: &Path, peer: &PeerId) -> PathBuf {
    dir.join(format!("{}.crt", peer.file_stem()))
}

/// Key, CSR and certificate for `peer` in `dir`, signed by the CA in `ca`.
fn enrol(ca: &Path, dir: &Path, peer: &PeerId) -> TlsFiles {
    pki::init_key(dir, peer).unwrap();
    let keys = KeyFiles::for_peer(dir, peer);
    pki::sign(ca, &keys.csr, &cert_path(dir, peer), 30, now()).unwrap();
    TlsFiles {
        cert: cert_path(dir, peer),
        key: keys.key,
        ca: ca.join(pki::CA_CERT_FILE),
        crl: Some(ca.join(pki::CA_CRL_FILE)),
    }
}

/// Answers `Describe` with the caller's identity as the identity layer saw it.
struct EchoPeer;

#[tonic::async_trait]
impl Admin for EchoPeer {
    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeReply>, Status> {
        let peer = tls::authenticated_peer(&request)?;
        Ok(Response::new(DescribeReply {
            node_id: peer.to_string(),
            ..Default::default()
        }))
    }
}

/// A tonic server with mTLS on 127.0.0.1:0; it stops when the test's runtime ends.
async fn serve(config: &ReloadingServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tls::incoming(listener, config);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AdminServer::with_interceptor(EchoPeer, tls::identify))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

/// Every message of an error and its sources.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut at = e.source();
    while let Some(source) = at {
        out.push_str(" / ");
        out.push_str(&source.to_string());
        at = source.source();
    }
    out
}

/// Connects (a fresh connection) and makes one call: the caller's identity as the server saw
/// it, or every message of the error.
async fn describe(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server: &PeerId,
) -> Result<String, String> {
    let call = async {
        let channel = tls::connect(addr, config, tls::server_name_for(server, addr))
            .await
            .map_err(|e| chain(&e))?;
        let reply = AdminClient::new(channel)
            .describe(DescribeRequest {})
            .await
            .map_err(|e| format!("{e} / {}", chain(&e)))?;
        Ok(reply.into_inner().node_id)
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .expect("call hung")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    ca: PathBuf,
    hub: PeerId,
    hub_files: TlsFiles,
    village: TlsFiles,
    other_village: TlsFiles,
    station: TlsFiles,
    foreign: TlsFiles,
    revoked: TlsFiles,
    revoked_peer: PeerId,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    pki::init_ca(&ca, TD, now()).unwrap();
    let dir = tmp.path().join("boxes");
    let hub = node("430421105000");
    let revoked_peer = node("430421105200");
    let hub_files = enrol(&ca, &dir, &hub);
    let village = enrol(&ca, &dir, &node("430421105204"));
    let other_village = enrol(&ca, &dir, &node("430421100201"));
    let station = enrol(&ca, &dir, &station("430421000000", "ybj"));
    let revoked = enrol(&ca, &dir, &revoked_peer);

    // Another CA of the same trust domain signs a certificate for our village; the client
    // still trusts our CA.
    let other_ca = tmp.path().join("other-ca");
    pki::init_ca(&other_ca, TD, now()).unwrap();
    let mut foreign = enrol(&other_ca, &tmp.path().join("other"), &node("430421105204"));
    foreign.ca = ca.join(pki::CA_CERT_FILE);
    foreign.crl = Some(ca.join(pki::CA_CRL_FILE));
    Fixture {
        _tmp: tmp,
        ca,
        hub,
        hub_files,
        village,
        other_village,
        station,
        foreign,
        revoked,
        revoked_peer,
    }
}

#[tokio::test]
async fn valid_clients_are_served_and_bad_ones_refused_on_their_first_call() {
    let f = fixture();
    let server =
        ReloadingServerConfig::new(f.hub_files.clone(), Duration::from_secs(3600)).unwrap();
    assert_eq!(server.identity(), f.hub);
    let addr = serve(&server).await;
    let client = |files: &TlsFiles| tls::client_config(files, &f.hub).unwrap();

    // The child, and a station: the server sees their identities (authorisation is separate).
    for (files, id) in [
        (&f.village, "spiffe://yimen.local/node/430421105204"),
        (&f.station, "spiffe://yimen.local/station/430421000000/ybj"),
        (&f.revoked, "spiffe://yimen.local/node/430421105200"),
    ] {
        assert_eq!(
            describe(addr, client(files), &f.hub).await,
            Ok(id.to_owned())
        );
    }

    // No client certificate at all (trusting our CA).
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&f.hub_files.ca).unwrap())
        .unwrap();
    let mut anonymous = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let err = describe(addr, Arc::new(anonymous), &f.hub)
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificaterequired"), "{err}");

    // A certificate of another CA.
    let err = describe(addr, client(&f.foreign), &f.hub)
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("unknownca"), "{err}");

    // Revoked while the server runs: refused once the server reloads its CRL.
    pki::revoke(&f.ca, &RevokeTarget::Peer(f.revoked_peer.clone()), now()).unwrap();
    assert!(server.reload().unwrap(), "the new CRL must be picked up");
    assert!(!server.reload().unwrap(), "nothing changed since");
    let err = describe(addr, client(&f.revoked), &f.hub)
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("revoked"), "{err}");
    // Others are still served.
    assert!(describe(addr, client(&f.village), &f.hub).await.is_ok());
}

/// The serial of the certificate the server presents on a fresh connection.
async fn served_serial(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    hub: &PeerId,
) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(tls::server_name_for(hub, addr), tcp)
        .await
        .unwrap();
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    serial_of(&cert)
}

fn serial_of(cert: &[u8]) -> Vec<u8> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
    parsed.raw_serial().to_vec()
}

#[tokio::test]
async fn a_certificate_renewed_in_place_is_served_without_a_restart() {
    let f = fixture();
    // Look at the files on every new connection.
    let server = ReloadingServerConfig::new(f.hub_files.clone(), Duration::ZERO).unwrap();
    let addr = serve(&server).await;
    let client = || tls::client_config(&f.village, &f.hub).unwrap();

    let first = served_serial(addr, client(), &f.hub).await;
    assert_eq!(
        first,
        serial_of(&CertificateDer::from_pem_file(&f.hub_files.cert).unwrap())
    );

    // Renew: same key, same CSR, same path, a new serial.
    let keys = KeyFiles::for_peer(f.hub_files.key.parent().unwrap(), &f.hub);
    pki::sign(&f.ca, &keys.csr, &f.hub_files.cert, 30, now()).unwrap();
    let renewed = serial_of(&CertificateDer::from_pem_file(&f.hub_files.cert).unwrap());
    assert_ne!(first, renewed);

    assert_eq!(served_serial(addr, client(), &f.hub).await, renewed);
    assert_eq!(
        describe(addr, client(), &f.hub).await,
        Ok("spiffe://yimen.local/node/430421105204".to_owned())
    );
    // Already loaded by the connection above.
    assert!(!server.reload().unwrap());
}

#[tokio::test]
async fn a_reload_that_would_change_identity_or_break_the_key_keeps_the_old_material() {
    let f = fixture();
    let server =
        ReloadingServerConfig::new(f.hub_files.clone(), Duration::from_secs(3600)).unwrap();
    // Another node's certificate copied over the hub's: refused (and the key does not match).
    std::fs::copy(&f.other_village.cert, &f.hub_files.cert).unwrap();
    assert!(server.reload().is_err());
    assert_eq!(server.identity(), f.hub);
    let addr = serve(&server).await;
    assert!(
        describe(
            addr,
            tls::client_config(&f.village, &f.hub).unwrap(),
            &f.hub
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn a_client_refuses_a_server_naming_another_node() {
    let f = fixture();
    let server =
        ReloadingServerConfig::new(f.hub_files.clone(), Duration::from_secs(3600)).unwrap();
    let addr = serve(&server).await;
    // The village of 西渡镇 expects its own township, 430421100000, at this address.
    let expected = node("430421100000");
    let config = tls::client_config(&f.other_village, &expected).unwrap();
    let err = describe(addr, config, &expected).await.unwrap_err();
    assert!(
        err.contains(
            "the server presented spiffe://yimen.local/node/430421105000, \
             expected spiffe://yimen.local/node/430421100000"
        ),
        "{err}"
    );
}

#[test]
fn authorize_table() {
    let topology = Topology::sample_hengyang();
    let county = code("430421000000");
    let yanpi = code("430421105000");
    let desk = |d: Option<&str>| Action::Desk {
        department: d.map(str::to_owned),
    };
    // (peer, action, me, Ok or the refusal variant).
    let table: Vec<(PeerId, Action, DivisionCode, Result<(), &str>)> = vec![
        // Replication: a parent accepts only its own children.
        (node("430421105204"), Action::Replicate, yanpi, Ok(())),
        (node("430421105001"), Action::Replicate, yanpi, Ok(())),
        (node("430421105000"), Action::Replicate, county, Ok(())),
        (
            node("430421100201"),
            Action::Replicate,
            yanpi,
            Err("NotMyChild"),
        ),
        (
            node("430421105204"),
            Action::Replicate,
            county,
            Err("NotMyChild"),
        ),
        (
            node("430421000000"),
            Action::Replicate,
            yanpi,
            Err("NotMyChild"),
        ),
        (
            node("430421105000"),
            Action::Replicate,
            yanpi,
            Err("NotMyChild"),
        ),
        (
            node("430421105299"),
            Action::Replicate,
            yanpi,
            Err("UnknownNode"),
        ),
        (
            station("430421000000", "ybj"),
            Action::Replicate,
            county,
            Err("ReplicateNotNode"),
        ),
        (
            operator("430421105000", "wang.li"),
            Action::Replicate,
            yanpi,
            Err("ReplicateNotNode"),
        ),
        // Desk: a station, its own department, at its own county.
        (
            station("430421000000", "ybj"),
            desk(Some("ybj")),
            county,
            Ok(()),
        ),
        (
            station("430421000000", "ybj"),
            desk(Some("mz")),
            county,
            Err("DeskOtherDepartment"),
        ),
        (
            station("430421000000", "ybj"),
            desk(None),
            county,
            Err("DeskNoDepartment"),
        ),
        (
            station("430421000000", "ybj"),
            desk(Some("ybj")),
            yanpi,
            Err("DeskOtherCounty"),
        ),
        (
            station("430422000000", "ybj"),
            desk(Some("ybj")),
            county,
            Err("DeskOtherCounty"),
        ),
        (
            node("430421000000"),
            desk(Some("ybj")),
            county,
            Err("DeskNotStation"),
        ),
        (
            operator("430421000000", "li"),
            desk(Some("ybj")),
            county,
            Err("DeskNotStation"),
        ),
        // Admin: operators of this node only.
        (
            operator("430421105000", "wang.li"),
            Action::Admin,
            yanpi,
            Ok(()),
        ),
        (
            operator("430421105204", "wang.li"),
            Action::Admin,
            yanpi,
            Err("AdminNotOperator"),
        ),
        (
            operator("430421000000", "wang.li"),
            Action::Admin,
            yanpi,
            Err("AdminNotOperator"),
        ),
        (
            node("430421105000"),
            Action::Admin,
            yanpi,
            Err("AdminNotOperator"),
        ),
        (
            station("430421000000", "ybj"),
            Action::Admin,
            county,
            Err("AdminNotOperator"),
        ),
    ];
    for (peer, action, me, expected) in table {
        let got = tls::authorize(&peer, &action, me, &topology);
        match (&got, expected) {
            (Ok(proof), Ok(())) => {
                assert_eq!(proof.peer(), &peer);
                assert_eq!(proof.action(), &action);
            }
            (Err(refused), Err(variant)) => {
                assert!(
                    format!("{refused:?}").starts_with(variant),
                    "{peer} {action:?} at {me}: expected {variant}, got {refused:?}"
                );
                assert!(refused.to_string().contains(&peer.to_string()), "{refused}");
                assert!(
                    refused
                        .reason_zh()
                        .chars()
                        .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                    "{}",
                    refused.reason_zh()
                );
                let status = Status::from(refused.clone());
                assert_eq!(status.code(), tonic::Code::PermissionDenied);
            }
            _ => panic!("{peer} {action:?} at {me}: expected {expected:?}, got {got:?}"),
        }
    }
}
