//! The Yimen certificate authority and peer keys: one function per operation of the admin
//! tools (`init_ca`, `init_key`, `sign`, `revoke`, `reissue_crl`), each taking paths and the
//! current time, and `peer_id_of` for the TLS layer.
//!
//! A CA directory holds:
//!
//! * `ca.key`: the CA's ECDSA P-256 private key (PKCS#8 PEM, mode 0600);
//! * `ca.crt`: the self-signed CA certificate (PEM); its one URI SAN is the trust domain's own
//!   id (`spiffe://yimen.local`), which is how `sign` learns the trust domain;
//! * `ca.crl`: the revocation list (PEM X.509 CRL v2 signed by the CA, CRL number incremented
//!   on every re-issue). It is the only record of revocations: `revoke` reads it back, adds
//!   serials and signs a new one. rustls' `WebPkiClientVerifier::builder(..).with_crls(..)`
//!   consumes it; verifiers reload it the way they reload certificates;
//! * `issued/<serial>.pem`: every certificate issued, named by its serial in lowercase hex.
//!   A serial is taken by creating its file (`create_new`), so two concurrent `sign`s never
//!   share one; leaf serials start at 2 (the CA's own is 1);
//! * `ca.lock`: present only while `revoke`/`reissue_crl` rewrite the CRL.
//!
//! Invariants: a private key is written once, with mode 0600, and never read by another
//! operation than the one signing with it (`sign` takes only the CSR); the CA signs only
//! identities of its own trust domain, copied from a CSR whose signature verified and that
//! carries exactly one SAN; the CA decides every other field (subject, usages, validity), never
//! the CSR; no certificate outlives the CA; files other tools read (certificate, CRL) are
//! replaced by rename, never rewritten in place.

pub mod identity;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::{fmt, process};

use chrono::{DateTime, Utc};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, CertificateSigningRequestDer,
};
use time::OffsetDateTime;
use yimen_core::division::DivisionCode;

pub use identity::{
    DEFAULT_TRUST_DOMAIN, Dept, IdentityError, OperatorName, PeerId, PeerKind, TrustDomain,
    peer_id_of,
};

/// File names inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_CRL_FILE: &str = "ca.crl";
pub const ISSUED_DIR: &str = "issued";
const LOCK_FILE: &str = "ca.lock";

/// Life of a CA: ten years, long enough that re-keying the province is a planned event.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Longest leaf validity `sign` accepts: five years (villages may renew rarely); never beyond
/// the CA anyway.
pub const LEAF_VALIDITY_DAYS_MAX: u32 = 1830;
/// `nextUpdate` of each CRL. rustls ignores it unless the verifier opts into
/// `enforce_revocation_expiration`; run `reissue_crl` before it passes if one does.
pub const CRL_VALIDITY_DAYS: i64 = 365;
/// Certificates start this long before `now`, so a box whose clock is a little behind the
/// CA's accepts a certificate just issued.
pub const BACKDATE_SECS: i64 = 300;
/// Largest CSR or certificate file read: far above any real one, bounds a mistaken path.
const SMALL_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Largest CRL read: about 300k revoked serials.
const CRL_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Serial of the CA certificate; leaves count up from the next one.
const CA_SERIAL: u64 = 1;
/// Attempts to take a fresh serial when concurrent `sign`s race for the same one.
const SERIAL_ATTEMPTS_MAX: usize = 64;

/// Why a PKI operation failed. Messages are English and name the file involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("a CA already exists in {dir} ({file} is present); refusing to overwrite it")]
    CaExists { dir: PathBuf, file: PathBuf },
    #[error("no CA in {dir}: {file} is missing (initialise the CA first)")]
    CaMissing { dir: PathBuf, file: PathBuf },
    #[error("{path} already exists; refusing to overwrite a private key or CSR")]
    KeyExists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than {max} bytes; not a {what}")]
    TooLarge {
        path: PathBuf,
        max: u64,
        what: &'static str,
    },
    #[error("{path}: not a usable {what}: {reason}")]
    BadFile {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path}: certificate signing request refused: {reason}")]
    Csr { path: PathBuf, reason: String },
    #[error(
        "{path}: certificate signing request refused: it must carry exactly one subject \
         alternative name, a Yimen identity URI; it carries {sans:?}"
    )]
    CsrSans { path: PathBuf, sans: Vec<String> },
    #[error("{path}: certificate signing request refused: {source}")]
    CsrIdentity {
        path: PathBuf,
        #[source]
        source: IdentityError,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{dir}: {CA_KEY_FILE} does not match the public key of {CA_CERT_FILE}")]
    CaKeyMismatch { dir: PathBuf },
    #[error("the CA expired at {not_after}; it cannot sign or revoke any more")]
    CaExpired { not_after: String },
    #[error("validity of {days} days refused: must be 1-{LEAF_VALIDITY_DAYS_MAX}")]
    Validity { days: u32 },
    #[error("time {now} cannot be put in a certificate")]
    Time { now: DateTime<Utc> },
    #[error("{what}: {source}")]
    Rcgen {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{dir}: no free serial after {SERIAL_ATTEMPTS_MAX} attempts")]
    SerialsExhausted { dir: PathBuf },
    #[error("serial {serial} was not issued by the CA in {dir}")]
    UnknownSerial { serial: Serial, dir: PathBuf },
    #[error("serial {serial} is already revoked")]
    AlreadyRevoked { serial: Serial },
    #[error("{peer} has no unexpired certificate that is not already revoked")]
    NothingToRevoke { peer: PeerId },
    #[error("{path} exists: another CA operation is running (remove it if a crashed one left it)")]
    Locked { path: PathBuf },
}

/// The files `init_ca` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub crl: PathBuf,
}

impl CaFiles {
    /// The paths of the CA files in `dir` (whether or not they exist).
    pub fn in_dir(dir: &Path) -> CaFiles {
        CaFiles {
            dir: dir.to_path_buf(),
            key: dir.join(CA_KEY_FILE),
            cert: dir.join(CA_CERT_FILE),
            crl: dir.join(CA_CRL_FILE),
        }
    }
}

/// Where `init_key` puts a peer's key and CSR: `<dir>/<stem>.key`, `<dir>/<stem>.csr` with the
/// stem from [`PeerId::file_stem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFiles {
    pub key: PathBuf,
    pub csr: PathBuf,
}

impl KeyFiles {
    pub fn for_peer(dir: &Path, peer: &PeerId) -> KeyFiles {
        let stem = peer.file_stem();
        KeyFiles {
            key: dir.join(format!("{stem}.key")),
            csr: dir.join(format!("{stem}.csr")),
        }
    }
}

/// A certificate serial issued by our CA. Shown in lowercase hex of even length (`02`, `1f`,
/// `0100`); parsed from hex with or without `0x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(pub u64);

impl Serial {
    fn to_rcgen(self) -> SerialNumber {
        let bytes = self.0.to_be_bytes();
        let first = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        SerialNumber::from_slice(&bytes[first..])
    }

    fn from_be_bytes(bytes: &[u8]) -> Option<Serial> {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let significant = &bytes[first..];
        (significant.len() <= 8).then(|| {
            Serial(
                significant
                    .iter()
                    .fold(0, |acc, b| acc << 8 | u64::from(*b)),
            )
        })
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:x}", self.0);
        if hex.len() % 2 == 1 {
            write!(f, "0{hex}")
        } else {
            f.write_str(&hex)
        }
    }
}

impl FromStr for Serial {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("0x").unwrap_or(s);
        u64::from_str_radix(hex, 16)
            .ok()
            .filter(|_| !hex.is_empty() && !hex.starts_with('+'))
            .map(Serial)
            .ok_or_else(|| format!("serial {s:?} is not a hexadecimal number of at most 16 digits"))
    }
}

/// What `revoke` revokes: every current certificate of an identity, or one serial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    Peer(PeerId),
    Serial(Serial),
}

impl FromStr for RevokeTarget {
    type Err = String;
    /// `spiffe://...` is an identity (any trust domain; `revoke` checks it); anything else a
    /// hexadecimal serial.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("spiffe://") {
            PeerId::parse_any(s)
                .map(RevokeTarget::Peer)
                .map_err(|e| e.to_string())
        } else {
            s.parse().map(RevokeTarget::Serial)
        }
    }
}

/// Creates a CA in `dir` (created if missing): key, self-signed certificate for
/// `trust_domain`, an empty signed CRL and the `issued/` directory. Refuses if any CA file
/// is already there.
pub fn init_ca(dir: &Path, trust_domain: &str, now: DateTime<Utc>) -> Result<CaFiles, PkiError> {
    let trust_domain = TrustDomain::parse(trust_domain)?;
    let files = CaFiles::in_dir(dir);
    for file in [&files.key, &files.cert, &files.crl] {
        if file.exists() {
            return Err(PkiError::CaExists {
                dir: dir.to_path_buf(),
                file: file.clone(),
            });
        }
    }
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let issued = dir.join(ISSUED_DIR);
    fs::create_dir_all(&issued).map_err(io_at(&issued))?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("CA key"))?;
    let at = to_time(now)?;
    let mut params = CertificateParams::default();
    params.key_identifier_method = KeyIdMethod::Sha256;
    // A name of its own per CA (the key's id in it): verifiers find a certificate's CA, and
    // a CRL's, by name, so two CAs named alike would be tried with each other's keys.
    let key_id_hex: String = params
        .key_identifier(&key)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    params.distinguished_name = distinguished_name(&format!("Yimen CA {key_id_hex}"));
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, trust_domain.as_str());
    params.subject_alt_names = vec![SanType::URI(ia5(&trust_domain.uri())?)];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(Serial(CA_SERIAL).to_rcgen());
    params.not_before = at - time::Duration::seconds(BACKDATE_SECS);
    params.not_after = at + time::Duration::days(CA_VALIDITY_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("CA certificate"))?;

    // The key first, with create_new: of two concurrent inits exactly one gets past here.
    write_new_private(&files.key, key.serialize_pem().as_bytes()).map_err(|e| match e {
        PkiError::KeyExists { path } => PkiError::CaExists {
            dir: dir.to_path_buf(),
            file: path,
        },
        other => other,
    })?;
    write_atomic(&files.cert, cert.pem().as_bytes())?;
    let issuer = Issuer::new(params, key);
    let crl = CrlState {
        number: 1,
        revoked: Vec::new(),
    };
    write_crl(&files.crl, &crl, &issuer, at)?;
    Ok(files)
}

/// Makes a peer's private key (ECDSA P-256, `<stem>.key`, mode 0600) and a CSR for `peer`
/// (`<stem>.csr`, PEM, one URI SAN) in `dir` (created if missing); paths from
/// [`KeyFiles::for_peer`]. The key stays here: only the CSR goes to the CA. Refuses to
/// overwrite either file.
pub fn init_key(dir: &Path, peer: &PeerId) -> Result<(), PkiError> {
    let files = KeyFiles::for_peer(dir, peer);
    for path in [&files.key, &files.csr] {
        if path.exists() {
            return Err(PkiError::KeyExists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("peer key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&peer.division().to_string());
    params.subject_alt_names = vec![SanType::URI(ia5(&peer.uri())?)];
    let csr = params
        .serialize_request(&key)
        .map_err(rcgen_err("certificate signing request"))?;
    let csr_pem = csr
        .pem()
        .map_err(rcgen_err("certificate signing request"))?;
    write_new_private(&files.key, key.serialize_pem().as_bytes())?;
    write_new(&files.csr, csr_pem.as_bytes())?;
    Ok(())
}

/// Issues a certificate for the identity in the CSR at `csr_path`, valid from `now` (less
/// [`BACKDATE_SECS`]) for `validity_days` but never beyond the CA, writes it (PEM) to
/// `out_cert` and to `issued/<serial>.pem`, and returns the identity. The CSR's signature
/// must verify and it must carry exactly one SAN: a URI of the CA's trust domain. The
/// certificate gets that URI, a DNS SAN from [`PeerId::dns_name`] (nodes, stations), client
/// and server auth usages and a fresh serial.
pub fn sign(
    ca_dir: &Path,
    csr_path: &Path,
    out_cert: &Path,
    validity_days: u32,
    now: DateTime<Utc>,
) -> Result<PeerId, PkiError> {
    if !(1..=LEAF_VALIDITY_DAYS_MAX).contains(&validity_days) {
        return Err(PkiError::Validity {
            days: validity_days,
        });
    }
    let ca = Ca::load(ca_dir)?;
    let at = to_time(now)?;
    ca.check_alive(at)?;

    let csr_bytes = read_limited(
        csr_path,
        SMALL_FILE_BYTES_MAX,
        "certificate signing request",
    )?;
    let csr_der =
        CertificateSigningRequestDer::from_pem_slice(&csr_bytes).map_err(|e| PkiError::Csr {
            path: csr_path.to_path_buf(),
            reason: format!("no PEM CERTIFICATE REQUEST: {e}"),
        })?;
    let csr = CertificateSigningRequestParams::from_der(&csr_der).map_err(|e| PkiError::Csr {
        path: csr_path.to_path_buf(),
        reason: match e {
            rcgen::Error::InvalidCertificationRequestSignature => {
                "its signature does not verify".to_owned()
            }
            rcgen::Error::UnsupportedExtension => {
                "it requests an extension the CA does not accept".to_owned()
            }
            other => other.to_string(),
        },
    })?;
    let uri = match csr.params.subject_alt_names.as_slice() {
        [SanType::URI(uri)] => uri.as_str().to_owned(),
        sans => {
            return Err(PkiError::CsrSans {
                path: csr_path.to_path_buf(),
                sans: sans.iter().map(describe_san).collect(),
            });
        }
    };
    let peer =
        PeerId::parse(&uri, ca.trust_domain.as_str()).map_err(|source| PkiError::CsrIdentity {
            path: csr_path.to_path_buf(),
            source,
        })?;

    let not_after = (at + time::Duration::days(i64::from(validity_days))).min(ca.not_after);
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&peer.division().to_string());
    params.subject_alt_names = vec![SanType::URI(ia5(&peer.uri())?)];
    if let Some(dns) = peer.dns_name() {
        params.subject_alt_names.push(SanType::DnsName(ia5(&dns)?));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = at - time::Duration::seconds(BACKDATE_SECS);
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;

    let (serial, issued_path) = take_serial(ca_dir)?;
    let signed = (|| {
        params.serial_number = Some(serial.to_rcgen());
        let cert = params
            .signed_by(&csr.public_key, &ca.issuer)
            .map_err(rcgen_err("certificate"))?;
        // Check the identity on what we are about to hand out, not on what we meant to.
        let back = peer_id_of(cert.der())?;
        assert_eq!(back, peer, "issued certificate names another identity");
        let pem = cert.pem();
        write_existing(&issued_path, pem.as_bytes())?;
        write_atomic(out_cert, pem.as_bytes())
    })();
    if let Err(e) = signed {
        // Give the serial back only if nothing was recorded under it.
        if fs::metadata(&issued_path).is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&issued_path);
        }
        return Err(e);
    }
    Ok(peer)
}

/// Revokes `target` and re-issues the CRL: one serial issued by this CA, or every
/// certificate of an identity that is still valid at `now` and not yet revoked. Returns the
/// serials added. Verifiers pick the new `ca.crl` up when they reload.
pub fn revoke(
    ca_dir: &Path,
    target: &RevokeTarget,
    now: DateTime<Utc>,
) -> Result<Vec<Serial>, PkiError> {
    let ca = Ca::load(ca_dir)?;
    let at = to_time(now)?;
    ca.check_alive(at)?;
    let _lock = CaLock::take(ca_dir)?;
    let crl_path = ca_dir.join(CA_CRL_FILE);
    let mut crl = read_crl(&crl_path)?;
    let is_revoked = |s: Serial| crl.revoked.iter().any(|r| r.serial == s);

    let serials = match target {
        RevokeTarget::Serial(serial) => {
            let path = issued_path(ca_dir, *serial);
            if !path.is_file() {
                return Err(PkiError::UnknownSerial {
                    serial: *serial,
                    dir: ca_dir.to_path_buf(),
                });
            }
            if is_revoked(*serial) {
                return Err(PkiError::AlreadyRevoked { serial: *serial });
            }
            vec![*serial]
        }
        RevokeTarget::Peer(peer) => {
            if peer.trust_domain() != &ca.trust_domain {
                return Err(IdentityError::WrongTrustDomain {
                    uri: peer.uri(),
                    expected: ca.trust_domain.to_string(),
                    found: peer.trust_domain().to_string(),
                }
                .into());
            }
            let mut found = Vec::new();
            for issued in list_issued(ca_dir)? {
                if issued.peer == *peer && issued.not_after > at && !is_revoked(issued.serial) {
                    found.push(issued.serial);
                }
            }
            if found.is_empty() {
                return Err(PkiError::NothingToRevoke { peer: peer.clone() });
            }
            found
        }
    };
    for serial in &serials {
        crl.revoked.push(RevokedEntry {
            serial: *serial,
            at,
        });
    }
    crl.number += 1;
    write_crl(&crl_path, &crl, &ca.issuer, at)?;
    Ok(serials)
}

/// Signs the CRL again with the same entries, a new number and a `nextUpdate` of
/// [`CRL_VALIDITY_DAYS`] from `now`.
pub fn reissue_crl(ca_dir: &Path, now: DateTime<Utc>) -> Result<(), PkiError> {
    let ca = Ca::load(ca_dir)?;
    let at = to_time(now)?;
    ca.check_alive(at)?;
    let _lock = CaLock::take(ca_dir)?;
    let crl_path = ca_dir.join(CA_CRL_FILE);
    let mut crl = read_crl(&crl_path)?;
    crl.number += 1;
    write_crl(&crl_path, &crl, &ca.issuer, at)
}

/// The serial of a certificate (DER), if it parses and fits 64 bits.
pub fn serial_of(der: &[u8]) -> Option<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Serial::from_be_bytes(cert.raw_serial()).map(|s| s.0)
}

/// The serials listed in the CRL at `crl_path`.
pub fn revoked_serials(crl_path: &Path) -> Result<Vec<Serial>, PkiError> {
    Ok(read_crl(crl_path)?
        .revoked
        .into_iter()
        .map(|r| r.serial)
        .collect())
}

/// Checks that `certs` (DER) prove `peer` revoked: at least one, each issued by the CA of
/// `ca_cert` (PEM) to `peer` and listed in the CRL at `crl`. Returns their serials. This is
/// the county's check before it reassigns a lost custodian's cases (DESIGN.md "Custody").
pub fn check_revoked(
    ca_cert: &Path,
    crl: &Path,
    peer: &PeerId,
    certs: &[Vec<u8>],
) -> Result<Vec<Serial>, String> {
    if certs.is_empty() {
        return Err(format!(
            "no certificate of {peer} was given: the county reassigns only after revocation"
        ));
    }
    let ca_pem =
        read_limited(ca_cert, SMALL_FILE_BYTES_MAX, "CA certificate").map_err(|e| e.to_string())?;
    let ca_der = CertificateDer::from_pem_slice(&ca_pem)
        .map_err(|e| format!("{}: {e}", ca_cert.display()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| format!("{}: {e}", ca_cert.display()))?;
    let revoked = revoked_serials(crl).map_err(|e| e.to_string())?;
    let mut serials = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let n = i + 1;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate {n} does not parse: {e}"))?;
        if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
            return Err(format!(
                "certificate {n} was not issued by this deployment's CA"
            ));
        }
        let named = peer_id_of(der).map_err(|e| format!("certificate {n}: {e}"))?;
        if named != *peer {
            return Err(format!("certificate {n} names {named}, not {peer}"));
        }
        let serial = Serial::from_be_bytes(cert.raw_serial())
            .ok_or_else(|| format!("certificate {n} has a serial longer than 64 bits"))?;
        if !revoked.contains(&serial) {
            return Err(format!(
                "certificate {n} of {peer} (serial {serial}) is not revoked: revoke it first (yimen-hub pki revoke)"
            ));
        }
        serials.push(serial);
    }
    Ok(serials)
}

/// The identity whose certificates a custodian acts with: a station for a department, the
/// node itself for its own desk.
pub fn custodian_peer(
    trust_domain: &TrustDomain,
    custodian: &yimen_core::routing::Custodian,
) -> Result<PeerId, IdentityError> {
    match &custodian.department {
        Some(dept) => PeerId::station(trust_domain.clone(), custodian.node, Dept::parse(&dept.0)?),
        None => Ok(PeerId::node(trust_domain.clone(), custodian.node)),
    }
}

/// The certificates the CA in `ca_dir` issued to `peer` (DER, from `issued/`), revoked or
/// not: what `yimen-hub desk reassign --ca DIR` sends as proof of revocation.
pub fn issued_to(ca_dir: &Path, peer: &PeerId) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut out = Vec::new();
    for (_, path) in issued_serials(ca_dir)? {
        let bytes = read_limited(&path, SMALL_FILE_BYTES_MAX, "certificate")?;
        if bytes.is_empty() {
            continue;
        }
        let der = CertificateDer::from_pem_slice(&bytes).map_err(|e| PkiError::BadFile {
            path: path.clone(),
            what: "issued certificate",
            reason: e.to_string(),
        })?;
        if peer_id_of(&der).is_ok_and(|p| p == *peer) {
            out.push(der.to_vec());
        }
    }
    Ok(out)
}

/// The CA loaded for signing.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    trust_domain: TrustDomain,
    not_after: OffsetDateTime,
}

impl Ca {
    fn load(dir: &Path) -> Result<Ca, PkiError> {
        let files = CaFiles::in_dir(dir);
        for file in [&files.cert, &files.key, &files.crl] {
            if !file.exists() {
                return Err(PkiError::CaMissing {
                    dir: dir.to_path_buf(),
                    file: file.clone(),
                });
            }
        }
        let bad_cert = |reason: String| PkiError::BadFile {
            path: files.cert.clone(),
            what: "CA certificate",
            reason,
        };
        let cert_bytes = read_limited(&files.cert, SMALL_FILE_BYTES_MAX, "CA certificate")?;
        let cert_der =
            CertificateDer::from_pem_slice(&cert_bytes).map_err(|e| bad_cert(e.to_string()))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad_cert(e.to_string()))?;
        let trust_domain = ca_trust_domain(&parsed).map_err(bad_cert)?;
        let not_after = parsed.validity().not_after.to_datetime();
        let cert_public_key = parsed.public_key().subject_public_key.data.to_vec();

        let key_bytes = read_limited(&files.key, SMALL_FILE_BYTES_MAX, "CA key")?;
        let key_pem = String::from_utf8(key_bytes).map_err(|_| PkiError::BadFile {
            path: files.key.clone(),
            what: "CA key",
            reason: "not UTF-8 PEM".to_owned(),
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadFile {
            path: files.key.clone(),
            what: "CA key",
            reason: e.to_string(),
        })?;
        if key.public_key_raw() != cert_public_key.as_slice() {
            return Err(PkiError::CaKeyMismatch {
                dir: dir.to_path_buf(),
            });
        }
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| bad_cert(e.to_string()))?;
        Ok(Ca {
            issuer,
            trust_domain,
            not_after,
        })
    }

    fn check_alive(&self, at: OffsetDateTime) -> Result<(), PkiError> {
        if at >= self.not_after {
            return Err(PkiError::CaExpired {
                not_after: self.not_after.to_string(),
            });
        }
        Ok(())
    }
}

/// The trust domain named by the CA certificate's one URI SAN (`spiffe://<td>`).
fn ca_trust_domain(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<TrustDomain, String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
        .ok_or("no subject alternative name naming the trust domain")?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(format!("{} URI SANs, expected one", uris.len()));
    };
    let domain = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| format!("URI SAN {uri:?} is not spiffe://<trust-domain>"))?;
    TrustDomain::parse(domain).map_err(|e| e.to_string())
}

/// The revocation list's content, as read back from `ca.crl`.
struct CrlState {
    number: u64,
    revoked: Vec<RevokedEntry>,
}

struct RevokedEntry {
    serial: Serial,
    at: OffsetDateTime,
}

fn read_crl(path: &Path) -> Result<CrlState, PkiError> {
    let bad = |reason: String| PkiError::BadFile {
        path: path.to_path_buf(),
        what: "CRL",
        reason,
    };
    let bytes = read_limited(path, CRL_BYTES_MAX, "CRL")?;
    let der =
        CertificateRevocationListDer::from_pem_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).map_err(|e| bad(e.to_string()))?;
    let number = crl
        .crl_number()
        .and_then(|n| Serial::from_be_bytes(&n.to_bytes_be()))
        .ok_or_else(|| bad("no CRL number of at most 64 bits".to_owned()))?
        .0;
    let mut revoked = Vec::new();
    for entry in crl.iter_revoked_certificates() {
        let serial = Serial::from_be_bytes(&entry.user_certificate.to_bytes_be())
            .ok_or_else(|| bad("a serial longer than 64 bits".to_owned()))?;
        revoked.push(RevokedEntry {
            serial,
            at: entry.revocation_date.to_datetime(),
        });
    }
    Ok(CrlState { number, revoked })
}

fn write_crl(
    path: &Path,
    crl: &CrlState,
    issuer: &Issuer<'_, KeyPair>,
    at: OffsetDateTime,
) -> Result<(), PkiError> {
    let params = CertificateRevocationListParams {
        this_update: at,
        next_update: at + time::Duration::days(CRL_VALIDITY_DAYS),
        crl_number: Serial(crl.number).to_rcgen(),
        issuing_distribution_point: None,
        revoked_certs: crl
            .revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: r.serial.to_rcgen(),
                revocation_time: r.at,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let signed = params.signed_by(issuer).map_err(rcgen_err("CRL"))?;
    let pem = signed.pem().map_err(rcgen_err("CRL"))?;
    write_atomic(path, pem.as_bytes())?;
    // Read back what verifiers will read.
    let back = read_crl(path)?;
    assert_eq!(back.number, crl.number, "CRL number lost on write");
    assert_eq!(
        back.revoked.len(),
        crl.revoked.len(),
        "CRL entries lost on write"
    );
    Ok(())
}

/// One certificate in `issued/`.
struct Issued {
    serial: Serial,
    peer: PeerId,
    not_after: OffsetDateTime,
}

fn issued_path(ca_dir: &Path, serial: Serial) -> PathBuf {
    ca_dir.join(ISSUED_DIR).join(format!("{serial}.pem"))
}

/// Serials of `issued/`, from the file names.
fn issued_serials(ca_dir: &Path) -> Result<Vec<(Serial, PathBuf)>, PkiError> {
    let dir = ca_dir.join(ISSUED_DIR);
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
        let path = entry.map_err(io_at(&dir))?.path();
        let serial = path
            .extension()
            .filter(|e| *e == "pem")
            .and(path.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<Serial>().ok());
        if let Some(serial) = serial {
            out.push((serial, path));
        }
    }
    out.sort();
    Ok(out)
}

fn list_issued(ca_dir: &Path) -> Result<Vec<Issued>, PkiError> {
    let mut out = Vec::new();
    for (serial, path) in issued_serials(ca_dir)? {
        let bytes = read_limited(&path, SMALL_FILE_BYTES_MAX, "certificate")?;
        if bytes.is_empty() {
            // A serial taken by a `sign` still running (or one that crashed): nothing issued.
            continue;
        }
        let bad = |reason: String| PkiError::BadFile {
            path: path.clone(),
            what: "issued certificate",
            reason,
        };
        let der = CertificateDer::from_pem_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(e.to_string()))?;
        let peer = peer_id_of(&der).map_err(|e| bad(e.to_string()))?;
        out.push(Issued {
            serial,
            peer,
            not_after: cert.validity().not_after.to_datetime(),
        });
    }
    Ok(out)
}

/// Takes the next free serial by creating its (empty) file in `issued/`.
fn take_serial(ca_dir: &Path) -> Result<(Serial, PathBuf), PkiError> {
    let dir = ca_dir.join(ISSUED_DIR);
    fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    let mut next = issued_serials(ca_dir)?
        .last()
        .map_or(CA_SERIAL + 1, |(s, _)| s.0.saturating_add(1))
        .max(CA_SERIAL + 1);
    for _ in 0..SERIAL_ATTEMPTS_MAX {
        let serial = Serial(next);
        let path = issued_path(ca_dir, serial);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok((serial, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => next = next.saturating_add(1),
            Err(e) => return Err(PkiError::Io { path, source: e }),
        }
    }
    Err(PkiError::SerialsExhausted { dir })
}

/// `ca.lock`, removed when dropped.
struct CaLock(PathBuf);

impl CaLock {
    fn take(ca_dir: &Path) -> Result<CaLock, PkiError> {
        let path = ca_dir.join(LOCK_FILE);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                // The pid tells an admin which process to look for before removing it.
                let _ = writeln!(f, "{}", process::id());
                Ok(CaLock(path))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(PkiError::Locked { path }),
            Err(e) => Err(PkiError::Io { path, source: e }),
        }
    }
}

impl Drop for CaLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Yimen");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn describe_san(san: &SanType) -> String {
    match san {
        SanType::URI(u) => format!("URI:{}", u.as_str()),
        SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
        SanType::Rfc822Name(m) => format!("email:{}", m.as_str()),
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        other => format!("{other:?}"),
    }
}

fn ia5(s: &str) -> Result<Ia5String, PkiError> {
    Ia5String::try_from(s).map_err(|e| PkiError::Rcgen {
        what: "subject alternative name",
        source: e,
    })
}

fn to_time(now: DateTime<Utc>) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(now.timestamp()).map_err(|_| PkiError::Time { now })
}

fn rcgen_err(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_limited(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, PkiError> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    if bytes.len() as u64 > max {
        return Err(PkiError::TooLarge {
            path: path.to_path_buf(),
            max,
            what,
        });
    }
    Ok(bytes)
}

/// Writes a private key: a new file, mode 0600 from its creation, synced.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with(
        path,
        bytes,
        OpenOptions::new().write(true).create_new(true).mode(0o600),
    )
}

/// Writes a new public file (CSR); refuses to replace one.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with(
        path,
        bytes,
        OpenOptions::new().write(true).create_new(true).mode(0o644),
    )
}

/// Fills a file taken earlier (a serial's placeholder).
fn write_existing(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with(path, bytes, OpenOptions::new().write(true).truncate(true))
}

fn write_with(path: &Path, bytes: &[u8], options: &OpenOptions) -> Result<(), PkiError> {
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            PkiError::KeyExists {
                path: path.to_path_buf(),
            }
        } else {
            PkiError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    file.write_all(bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

/// Replaces `path` by rename so a reader sees the old file or the new one, never half.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let name = path.file_name().ok_or_else(|| PkiError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = write_with(
        &tmp,
        bytes,
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644),
    )
    .and_then(|()| fs::rename(&tmp, path).map_err(io_at(path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// What `init` tells the operator: the identity, where the key stays, what to send.
pub fn init_report(peer: &PeerId, files: &KeyFiles) -> String {
    format!(
        "identity: {peer}\nkey (stays on this box): {}\nsigning request (send to the county): {}\n",
        files.key.display(),
        files.csr.display()
    )
}

/// Makes this box's key and signing request for `--id ID` (a node) or `--station
/// COUNTY/DEPT` (a county department's desk); the command line of both binaries calls it.
/// Returns the identity and the files written.
pub fn init_identity(
    dir: &Path,
    trust_domain: &str,
    id: Option<&str>,
    station: Option<&str>,
) -> Result<(PeerId, KeyFiles), String> {
    let td = TrustDomain::parse(trust_domain).map_err(|e| e.to_string())?;
    let peer = match (id, station) {
        (Some(id), None) => {
            let code = DivisionCode::parse(id.trim()).map_err(|e| format!("--id: {e}"))?;
            PeerId::node(td, code)
        }
        (None, Some(station)) => {
            let (county, dept) = station.split_once('/').ok_or_else(|| {
                format!("--station {station:?}: expected COUNTY/DEPT, e.g. 430421000000/ybj")
            })?;
            let county =
                DivisionCode::parse(county.trim()).map_err(|e| format!("--station: {e}"))?;
            let dept = Dept::parse(dept.trim()).map_err(|e| e.to_string())?;
            PeerId::station(td, county, dept).map_err(|e| e.to_string())?
        }
        _ => return Err("give exactly one of --id ID or --station COUNTY/DEPT".to_owned()),
    };
    init_key(dir, &peer).map_err(|e| e.to_string())?;
    let files = KeyFiles::for_peer(dir, &peer);
    Ok((peer, files))
}

/// Makes this box's key and signing request for `--operator NODE/NAME`: a person operating a
/// hub (its desk, and at a county its decisions on quarantined cases and lost custodians).
pub fn init_operator_identity(
    dir: &Path,
    trust_domain: &str,
    operator: &str,
) -> Result<(PeerId, KeyFiles), String> {
    let td = TrustDomain::parse(trust_domain).map_err(|e| e.to_string())?;
    let (node, name) = operator.split_once('/').ok_or_else(|| {
        format!("--operator {operator:?}: expected NODE/NAME, e.g. 430421105000/wang.li")
    })?;
    let node = DivisionCode::parse(node.trim()).map_err(|e| format!("--operator: {e}"))?;
    let name = OperatorName::parse(name.trim()).map_err(|e| e.to_string())?;
    let peer = PeerId::operator(td, node, name);
    init_key(dir, &peer).map_err(|e| e.to_string())?;
    let files = KeyFiles::for_peer(dir, &peer);
    Ok((peer, files))
}

/// The identity in the (first) certificate of a PEM file: a desk client finds the hub it
/// belongs to from its own certificate.
pub fn peer_id_of_pem_file(path: &Path) -> Result<PeerId, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    peer_id_of(&der).map_err(|e| format!("{}: {e}", path.display()))
}
