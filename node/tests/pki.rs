//! The CA and peer keys: identities parse and print back, CSRs are signed only for one
//! identity of the CA's trust domain, revocations land in the signed CRL, and the files make a
//! working mutual-TLS pair with rustls (ring) in which revoked, expired and foreign clients are
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::string::Ia5String;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use x509_parser::extensions::GeneralName;
use yimen_core::division::DivisionCode;
use yimen_node::pki::{
    self, CaFiles, Dept, IdentityError, KeyFiles, OperatorName, PeerId, PeerKind, PkiError,
    RevokeTarget, Serial, TrustDomain,
};

const TD: &str = pki::DEFAULT_TRUST_DOMAIN;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
}

fn td() -> TrustDomain {
    TrustDomain::default_domain()
}

fn code(s: &str) -> DivisionCode {
    DivisionCode::parse(s).unwrap()
}

fn node(id: &str) -> PeerId {
    PeerId::node(td(), code(id))
}

fn station(county: &str, dept: &str) -> PeerId {
    PeerId::station(td(), code(county), Dept::parse(dept).unwrap()).unwrap()
}

fn operator(id: &str, name: &str) -> PeerId {
    PeerId::operator(td(), code(id), OperatorName::parse(name).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn crl_serials(ca: &Path) -> (u64, Vec<u64>) {
    let der = CertificateRevocationListDer::from_pem_file(ca.join(pki::CA_CRL_FILE)).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let number = crl.crl_number().unwrap().to_u64_digits();
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| {
            let d = r.user_certificate.to_u64_digits();
            assert!(d.len() <= 1);
            d.first().copied().unwrap_or(0)
        })
        .collect();
    (number.first().copied().unwrap_or(0), serials)
}

/// Makes a key and CSR for `peer` in `dir` and has the CA sign it; returns the cert path.
fn enrol(ca: &Path, dir: &Path, peer: &PeerId, days: u32, now: DateTime<Utc>) -> KeyFiles {
    pki::init_key(dir, peer).unwrap();
    let files = KeyFiles::for_peer(dir, peer);
    let cert = dir.join(format!("{}.crt", peer.file_stem()));
    let signed = pki::sign(ca, &files.csr, &cert, days, now).unwrap();
    assert_eq!(&signed, peer);
    files
}

fn cert_path(dir: &Path, peer: &PeerId) -> std::path::PathBuf {
    dir.join(format!("{}.crt", peer.file_stem()))
}

/// A CSR written by hand (not by `init_key`) with the given SANs.
fn custom_csr(dir: &Path, name: &str, sans: Vec<SanType>) -> std::path::PathBuf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let csr = params.serialize_request(&key).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, csr.pem().unwrap()).unwrap();
    path
}

fn uri(s: &str) -> SanType {
    SanType::URI(Ia5String::try_from(s).unwrap())
}

#[test]
fn peer_id_parse_table() {
    let long_dept = "d".repeat(33);
    let long_name = "n".repeat(65);
    let ok_name = "n".repeat(64);
    // (uri, Ok(()) for a round trip, or Err(the error variant's name)).
    let table: Vec<(String, Result<(), &str>)> = vec![
        ("spiffe://yimen.local/node/430421105204".into(), Ok(())),
        ("spiffe://yimen.local/node/430421000000".into(), Ok(())),
        ("spiffe://yimen.local/node/430421105000".into(), Ok(())),
        (
            "spiffe://yimen.local/station/430421000000/ybj".into(),
            Ok(()),
        ),
        (
            "spiffe://yimen.local/station/430421000000/gov-1".into(),
            Ok(()),
        ),
        (
            "spiffe://yimen.local/operator/430421105204/wang.li".into(),
            Ok(()),
        ),
        (
            "spiffe://yimen.local/operator/430421000000/a_b-c.9".into(),
            Ok(()),
        ),
        (
            format!("spiffe://yimen.local/operator/430421105204/{ok_name}"),
            Ok(()),
        ),
        ("".into(), Err("Scheme")),
        (
            "https://yimen.local/node/430421105204".into(),
            Err("Scheme"),
        ),
        (
            "SPIFFE://yimen.local/node/430421105204".into(),
            Err("Scheme"),
        ),
        (
            "spiffe://other.example/node/430421105204".into(),
            Err("WrongTrustDomain"),
        ),
        (
            "spiffe://Yimen.local/node/430421105204".into(),
            Err("TrustDomain"),
        ),
        (
            "spiffe://yimen.local:443/node/430421105204".into(),
            Err("TrustDomain"),
        ),
        (
            "spiffe://admin@yimen.local/node/430421105204".into(),
            Err("TrustDomain"),
        ),
        ("spiffe:///node/430421105204".into(), Err("TrustDomain")),
        ("spiffe://yimen.local".into(), Err("Path")),
        ("spiffe://yimen.local/".into(), Err("Path")),
        ("spiffe://yimen.local/node".into(), Err("Path")),
        (
            "spiffe://yimen.local/node/430421105204/".into(),
            Err("Path"),
        ),
        (
            "spiffe://yimen.local//node/430421105204".into(),
            Err("Path"),
        ),
        (
            "spiffe://yimen.local/node/430421105204?x=1".into(),
            Err("Path"),
        ),
        (
            "spiffe://yimen.local/node/430421105204#f".into(),
            Err("Path"),
        ),
        ("spiffe://yimen.local/node/%34%33".into(), Err("Path")),
        (
            "spiffe://yimen.local/village/430421105204".into(),
            Err("Path"),
        ),
        (
            "spiffe://yimen.local/station/430421000000".into(),
            Err("Path"),
        ),
        (
            "spiffe://yimen.local/node/43042110520".into(),
            Err("Division"),
        ),
        (
            "spiffe://yimen.local/node/43042110520X".into(),
            Err("Division"),
        ),
        (
            "spiffe://yimen.local/node/990421105204".into(),
            Err("Division"),
        ),
        (
            "spiffe://yimen.local/node/430400105204".into(),
            Err("Division"),
        ),
        (
            "spiffe://yimen.local/station/430421105204/ybj".into(),
            Err("StationNotCounty"),
        ),
        (
            "spiffe://yimen.local/station/430400000000/ybj".into(),
            Err("StationNotCounty"),
        ),
        (
            "spiffe://yimen.local/station/430421000000/YBJ".into(),
            Err("Dept"),
        ),
        (
            "spiffe://yimen.local/station/430421000000/y_b".into(),
            Err("Dept"),
        ),
        (
            "spiffe://yimen.local/station/430421000000/".into(),
            Err("Dept"),
        ),
        (
            format!("spiffe://yimen.local/station/430421000000/{long_dept}"),
            Err("Dept"),
        ),
        (
            "spiffe://yimen.local/operator/430421105204/Wang".into(),
            Err("OperatorName"),
        ),
        (
            "spiffe://yimen.local/operator/430421105204/wang li".into(),
            Err("OperatorName"),
        ),
        (
            format!("spiffe://yimen.local/operator/430421105204/{long_name}"),
            Err("OperatorName"),
        ),
    ];
    for (uri, expect) in table {
        let got = PeerId::parse(&uri, TD);
        match (expect, got) {
            (Ok(()), Ok(id)) => {
                assert_eq!(id.to_string(), uri, "round trip of {uri}");
                assert_eq!(id.trust_domain().as_str(), TD);
            }
            (Err(variant), Err(e)) => {
                let debug = format!("{e:?}");
                assert!(
                    debug.starts_with(&format!("{variant} "))
                        || debug.starts_with(&format!("{variant}(")),
                    "{uri}: expected {variant}, got {debug}"
                );
                assert!(!e.to_string().is_empty());
            }
            (expect, got) => panic!("{uri}: expected {expect:?}, got {got:?}"),
        }
    }
}

#[test]
fn peer_id_kinds_and_other_trust_domains() {
    let id = PeerId::parse("spiffe://yimen.local/station/430421000000/ybj", TD).unwrap();
    assert_eq!(
        id.kind(),
        &PeerKind::Station {
            county: code("430421000000"),
            dept: Dept::parse("ybj").unwrap()
        }
    );
    assert_eq!(id.division(), code("430421000000"));
    assert_eq!(
        id.dns_name().unwrap(),
        "ybj.430421000000.station.yimen.local"
    );
    assert_eq!(
        node("430421105204").dns_name().unwrap(),
        "430421105204.node.yimen.local"
    );
    assert_eq!(operator("430421105204", "wang.li").dns_name(), None);
    // Another, well-formed trust domain parses with parse_any and its own expectation.
    let other = PeerId::parse_any("spiffe://prov.example/node/430421105204").unwrap();
    assert_eq!(other.trust_domain().as_str(), "prov.example");
    assert_eq!(
        PeerId::parse(&other.to_string(), "prov.example").unwrap(),
        other
    );
    let err = PeerId::parse(&other.to_string(), TD).unwrap_err();
    assert!(err.to_string().contains("prov.example"), "{err}");
    assert!(err.to_string().contains("yimen.local"), "{err}");
    // The division error keeps the core's reason.
    let err = PeerId::parse("spiffe://yimen.local/node/43042110520X", TD).unwrap_err();
    assert!(matches!(err, IdentityError::Division { .. }));
    assert!(err.to_string().contains("43042110520X"), "{err}");
}

#[test]
fn init_ca_makes_key_cert_and_empty_crl_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let files = pki::init_ca(&ca, TD, t0()).unwrap();
    assert_eq!(files, CaFiles::in_dir(&ca));
    assert_eq!(mode(&files.key), 0o600);
    assert!(ca.join(pki::ISSUED_DIR).is_dir());

    let der = cert_der(&files.cert);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(cert.is_ca());
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        sans.value.general_names,
        vec![GeneralName::URI("spiffe://yimen.local")]
    );
    let not_after = cert.validity().not_after.timestamp();
    assert_eq!(
        not_after,
        (t0() + Duration::days(pki::CA_VALIDITY_DAYS)).timestamp()
    );
    // The CA certificate is no peer.
    assert!(pki::peer_id_of(&der).is_err());

    assert_eq!(crl_serials(&ca), (1, vec![]));

    let err = pki::init_ca(&ca, TD, t0()).unwrap_err();
    assert!(matches!(err, PkiError::CaExists { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    // Nothing was touched.
    assert_eq!(cert_der(&files.cert), der);

    let err = pki::init_ca(&tmp.path().join("bad"), "Yimen.Local", t0()).unwrap_err();
    assert!(
        matches!(err, PkiError::Identity(IdentityError::TrustDomain { .. })),
        "{err:?}"
    );
}

#[test]
fn node_station_and_operator_csrs_are_signed_for_their_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    pki::init_ca(&ca, TD, t0()).unwrap();
    let ca_der = cert_der(&ca.join(pki::CA_CERT_FILE));
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();

    let peers = [
        node("430421105204"),
        station("430421000000", "ybj"),
        operator("430421105204", "wang.li"),
    ];
    let mut serials = Vec::new();
    for peer in &peers {
        let dir = tmp.path().join(peer.file_stem());
        let files = enrol(&ca, &dir, peer, 365, t0());
        assert_eq!(mode(&files.key), 0o600, "{}", files.key.display());
        let csr = std::fs::read_to_string(&files.csr).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        // The CA never sees the key: the CSR holds no private key material.
        assert!(!csr.contains("PRIVATE KEY"));

        let der = cert_der(&cert_path(&dir, peer));
        assert_eq!(&pki::peer_id_of(&der).unwrap(), peer);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
        let names = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        let dns: Vec<_> = names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(dns, peer.dns_name().into_iter().collect::<Vec<_>>());
        assert_eq!(
            cert.validity().not_after.timestamp(),
            (t0() + Duration::days(365)).timestamp()
        );
        assert!(cert.validity().not_before.timestamp() < t0().timestamp());
        // The public key is the one made on the box.
        let key = KeyPair::from_pem(&std::fs::read_to_string(&files.key).unwrap()).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );

        let serial = Serial(cert.serial.to_u64_digits()[0]);
        assert!(
            ca.join(pki::ISSUED_DIR)
                .join(format!("{serial}.pem"))
                .is_file()
        );
        serials.push(serial);
    }
    assert_eq!(serials, vec![Serial(2), Serial(3), Serial(4)]);

    // Signing the same CSR again gives a new serial; the key files are not made twice.
    let peer = &peers[0];
    let dir = tmp.path().join(peer.file_stem());
    let files = KeyFiles::for_peer(&dir, peer);
    let again = dir.join("again.crt");
    pki::sign(&ca, &files.csr, &again, 30, t0()).unwrap();
    let der = cert_der(&again);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.serial.to_u64_digits(), vec![5]);
    let err = pki::init_key(&dir, peer).unwrap_err();
    assert!(matches!(err, PkiError::KeyExists { .. }), "{err:?}");
}

#[test]
fn certificates_never_outlive_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    pki::init_ca(&ca, TD, t0()).unwrap();
    let late = t0() + Duration::days(pki::CA_VALIDITY_DAYS - 10);
    let peer = node("430421105204");
    enrol(&ca, tmp.path(), &peer, 365, late);
    let der = cert_der(&cert_path(tmp.path(), &peer));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.validity().not_after.timestamp(),
        (t0() + Duration::days(pki::CA_VALIDITY_DAYS)).timestamp()
    );

    let files = KeyFiles::for_peer(tmp.path(), &peer);
    let out = tmp.path().join("x.crt");
    let after = t0() + Duration::days(pki::CA_VALIDITY_DAYS + 1);
    let err = pki::sign(&ca, &files.csr, &out, 30, after).unwrap_err();
    assert!(matches!(err, PkiError::CaExpired { .. }), "{err:?}");
    for days in [0, pki::LEAF_VALIDITY_DAYS_MAX + 1] {
        let err = pki::sign(&ca, &files.csr, &out, days, t0()).unwrap_err();
        assert!(matches!(err, PkiError::Validity { .. }), "{err:?}");
    }
    assert!(!out.exists());
}

#[test]
fn csrs_without_exactly_one_yimen_identity_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    pki::init_ca(&ca, TD, t0()).unwrap();
    let out = tmp.path().join("out.crt");
    let d = tmp.path();

    let two = custom_csr(
        d,
        "two.csr",
        vec![
            uri("spiffe://yimen.local/node/430421105204"),
            uri("spiffe://yimen.local/node/430421105205"),
        ],
    );
    let err = pki::sign(&ca, &two, &out, 30, t0()).unwrap_err();
    assert!(
        matches!(&err, PkiError::CsrSans { sans, .. } if sans.len() == 2),
        "{err:?}"
    );
    assert!(err.to_string().contains("exactly one"), "{err}");
    assert!(err.to_string().contains("two.csr"), "{err}");

    let with_dns = custom_csr(
        d,
        "dns.csr",
        vec![
            uri("spiffe://yimen.local/node/430421105204"),
            SanType::DnsName(Ia5String::try_from("evil.example").unwrap()),
        ],
    );
    let err = pki::sign(&ca, &with_dns, &out, 30, t0()).unwrap_err();
    assert!(err.to_string().contains("DNS:evil.example"), "{err}");

    let none = custom_csr(d, "none.csr", vec![]);
    let err = pki::sign(&ca, &none, &out, 30, t0()).unwrap_err();
    assert!(
        matches!(&err, PkiError::CsrSans { sans, .. } if sans.is_empty()),
        "{err:?}"
    );

    // A well-formed identity of another trust domain, made by init_key itself.
    let foreign = PeerId::node(
        TrustDomain::parse("other.example").unwrap(),
        code("430421105204"),
    );
    pki::init_key(d, &foreign).unwrap();
    let csr = KeyFiles::for_peer(d, &foreign).csr;
    let err = pki::sign(&ca, &csr, &out, 30, t0()).unwrap_err();
    assert!(
        matches!(
            &err,
            PkiError::CsrIdentity {
                source: IdentityError::WrongTrustDomain { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("other.example"), "{err}");

    let bad_code = custom_csr(
        d,
        "code.csr",
        vec![uri("spiffe://yimen.local/node/43042110520X")],
    );
    let err = pki::sign(&ca, &bad_code, &out, 30, t0()).unwrap_err();
    assert!(
        matches!(
            &err,
            PkiError::CsrIdentity {
                source: IdentityError::Division { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("non-digit"), "{err}");

    let not_spiffe = custom_csr(
        d,
        "https.csr",
        vec![uri("https://yimen.local/node/430421105204")],
    );
    let err = pki::sign(&ca, &not_spiffe, &out, 30, t0()).unwrap_err();
    assert!(matches!(&err, PkiError::CsrIdentity { .. }), "{err:?}");

    // A CSR whose signature does not match its content.
    let good = custom_csr(
        d,
        "good.csr",
        vec![uri("spiffe://yimen.local/node/430421105204")],
    );
    let pem = std::fs::read_to_string(&good).unwrap();
    let mut der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let tampered = d.join("tampered.csr");
    let p = pem_encode("CERTIFICATE REQUEST", &der);
    std::fs::write(&tampered, p).unwrap();
    let err = pki::sign(&ca, &tampered, &out, 30, t0()).unwrap_err();
    assert!(matches!(&err, PkiError::Csr { .. }), "{err:?}");

    let garbage = d.join("garbage.csr");
    std::fs::write(&garbage, "hello").unwrap();
    let err = pki::sign(&ca, &garbage, &out, 30, t0()).unwrap_err();
    assert!(matches!(&err, PkiError::Csr { .. }), "{err:?}");

    // Nothing was issued and no serial was used up.
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(ca.join(pki::ISSUED_DIR)).unwrap().count(),
        0
    );
    pki::sign(&ca, &good, &out, 30, t0()).unwrap();
    assert!(ca.join(pki::ISSUED_DIR).join("02.pem").is_file());
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    // Minimal base64 so the test needs no extra crate.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn signing_without_a_ca_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let peer = node("430421105204");
    pki::init_key(tmp.path(), &peer).unwrap();
    let csr = KeyFiles::for_peer(tmp.path(), &peer).csr;
    let missing = tmp.path().join("no-ca");
    let err = pki::sign(&missing, &csr, &tmp.path().join("x.crt"), 30, t0()).unwrap_err();
    assert!(matches!(err, PkiError::CaMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no CA in") && msg.contains("no-ca"), "{msg}");
    let err = pki::revoke(&missing, &RevokeTarget::Serial(Serial(2)), t0()).unwrap_err();
    assert!(matches!(err, PkiError::CaMissing { .. }), "{err:?}");
}

#[test]
fn revocation_lists_the_serials_in_a_signed_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    pki::init_ca(&ca, TD, t0()).unwrap();
    let a = node("430421105204");
    let b = station("430421000000", "ybj");
    let files_a = enrol(&ca, &tmp.path().join("a"), &a, 365, t0()); // serial 02
    enrol(&ca, &tmp.path().join("b"), &b, 365, t0()); // serial 03
    // A renewal of a (04) and an old certificate of a that has expired (05).
    pki::sign(&ca, &files_a.csr, &tmp.path().join("a2.crt"), 365, t0()).unwrap();
    let past = t0() - Duration::days(100);
    pki::sign(&ca, &files_a.csr, &tmp.path().join("a0.crt"), 30, past).unwrap();

    let later = t0() + Duration::days(1);
    let revoked = pki::revoke(&ca, &RevokeTarget::Peer(a.clone()), later).unwrap();
    assert_eq!(revoked, vec![Serial(2), Serial(4)]);
    assert_eq!(crl_serials(&ca), (2, vec![2, 4]));
    assert_eq!(
        pki::revoked_serials(&ca.join(pki::CA_CRL_FILE)).unwrap(),
        vec![Serial(2), Serial(4)]
    );

    // The CRL is the CA's: its signature verifies with the CA key.
    let crl_der = CertificateRevocationListDer::from_pem_file(ca.join(pki::CA_CRL_FILE)).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl_der).unwrap();
    let ca_der = cert_der(&ca.join(pki::CA_CERT_FILE));
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(crl.verify_signature(ca_cert.public_key()).is_ok());
    assert_eq!(crl.issuer(), ca_cert.subject());
    let entry = crl.iter_revoked_certificates().next().unwrap();
    assert_eq!(entry.revocation_date.timestamp(), later.timestamp());

    let err = pki::revoke(&ca, &RevokeTarget::Peer(a.clone()), later).unwrap_err();
    assert!(matches!(err, PkiError::NothingToRevoke { .. }), "{err:?}");
    let err = pki::revoke(&ca, &RevokeTarget::Serial(Serial(2)), later).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyRevoked { .. }), "{err:?}");
    let err = pki::revoke(&ca, &RevokeTarget::Serial(Serial(0x99)), later).unwrap_err();
    assert!(matches!(err, PkiError::UnknownSerial { .. }), "{err:?}");
    assert!(err.to_string().contains("serial 99"), "{err}");

    // By serial, parsed the way an admin types it.
    let target: RevokeTarget = "0x03".parse().unwrap();
    assert_eq!(pki::revoke(&ca, &target, later).unwrap(), vec![Serial(3)]);
    assert_eq!(crl_serials(&ca), (3, vec![2, 4, 3]));

    // Re-issuing keeps the entries and moves the number on.
    pki::reissue_crl(&ca, later + Duration::days(200)).unwrap();
    assert_eq!(crl_serials(&ca), (4, vec![2, 4, 3]));
    assert!(!ca.join("ca.lock").exists());

    let target: RevokeTarget = b.to_string().parse().unwrap();
    assert_eq!(target, RevokeTarget::Peer(b));
    assert!("xyz".parse::<RevokeTarget>().is_err());
    assert!(
        "spiffe://yimen.local/node/1"
            .parse::<RevokeTarget>()
            .is_err()
    );
}

// ----- A real handshake: rustls (ring) over loopback with the files above. -----

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(SystemTime::now())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain_and_key(
    dir: &Path,
    peer: &PeerId,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let files = KeyFiles::for_peer(dir, peer);
    let chain = CertificateDer::pem_file_iter(cert_path(dir, peer))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (chain, PrivateKeyDer::from_pem_file(&files.key).unwrap())
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der(&ca.join(pki::CA_CERT_FILE))).unwrap();
    Arc::new(roots)
}

fn server_config(ca: &Path, dir: &Path, peer: &PeerId) -> Arc<rustls::ServerConfig> {
    let crl = CertificateRevocationListDer::from_pem_file(ca.join(pki::CA_CRL_FILE)).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
            .with_crls([crl])
            .build()
            .unwrap();
    let (chain, key) = chain_and_key(dir, peer);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

fn client_config(ca: &Path, dir: &Path, peer: &PeerId) -> Arc<rustls::ClientConfig> {
    let (chain, key) = chain_and_key(dir, peer);
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// Bounds each side of a loopback handshake; a hang is a failure, not a stuck test run.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// One connection: the server accepts, reads "ping", answers "pong" and reports the client's
/// PeerId; the client sends "ping" and expects "pong".
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> (Result<PeerId, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .ok_or("no client certificate")?;
        let peer = pki::peer_id_of(&certs[0]).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        // With TLS 1.3 the client may finish before the server refuses its certificate:
        // the refusal arrives on the first read, so the client must make a real exchange.
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"pong" {
            return Err(format!("unexpected reply {buf:?}"));
        }
        Ok(())
    };
    let client_result = tokio::time::timeout(HANDSHAKE_TIMEOUT, client_result)
        .await
        .expect("client side hung");
    let server_result = tokio::time::timeout(HANDSHAKE_TIMEOUT, server_task)
        .await
        .expect("server side hung")
        .unwrap();
    (server_result, client_result)
}

#[tokio::test]
async fn mutual_tls_accepts_valid_peers_and_refuses_revoked_expired_and_foreign_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let now = now();
    // The CA is older than the expired client's certificate.
    pki::init_ca(&ca, TD, now - Duration::days(400)).unwrap();

    let hub = node("430421000000");
    let village = node("430421105204");
    let clerk = operator("430421105204", "wang.li");
    let revoked = node("430421105205");
    let expired = node("430421105206");
    let dir = tmp.path().join("boxes");
    for peer in [&hub, &village, &clerk, &revoked] {
        enrol(&ca, &dir, peer, 30, now);
    }
    enrol(&ca, &dir, &expired, 30, now - Duration::days(300));
    pki::revoke(&ca, &RevokeTarget::Peer(revoked.clone()), now).unwrap();

    // A second CA of the same trust domain, and a client it signed.
    let other_ca = tmp.path().join("other-ca");
    pki::init_ca(&other_ca, TD, now).unwrap();
    let other_dir = tmp.path().join("other");
    enrol(&other_ca, &other_dir, &village, 30, now);

    let hub_name = hub.dns_name().unwrap();
    let server = server_config(&ca, &dir, &hub);

    for good in [&village, &clerk] {
        let (s, c) = handshake(server.clone(), client_config(&ca, &dir, good), &hub_name).await;
        assert_eq!(s.as_ref(), Ok(good), "server side for {good}");
        assert_eq!(c, Ok(()), "client side for {good}");
    }

    let cases = [
        (client_config(&ca, &dir, &revoked), "revoked"),
        (client_config(&ca, &dir, &expired), "expired"),
        // Trusts our CA, but holds a certificate of the other one.
        (client_config(&ca, &other_dir, &village), "unknownissuer"),
    ];
    for (client, why) in cases {
        let (s, c) = handshake(server.clone(), client, &hub_name).await;
        let err = s.expect_err("server must refuse the client");
        assert!(
            err.to_lowercase().contains(why),
            "expected {why}, got {err}"
        );
        assert!(c.is_err(), "the client must see the refusal ({why})");
    }

    // The client checks the server too: the hub's certificate is not valid for another name,
    // and a client trusting only the other CA refuses the hub.
    let (_, c) = handshake(
        server.clone(),
        client_config(&ca, &dir, &village),
        &village.dns_name().unwrap(),
    )
    .await;
    let err = c.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    let (_, c) = handshake(
        server.clone(),
        client_config(&other_ca, &other_dir, &village),
        &hub_name,
    )
    .await;
    let err = c.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}
