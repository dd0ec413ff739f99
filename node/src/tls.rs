//! Mutual TLS between nodes: a reloading server configuration, a client configuration that
//! pins the parent's identity, the tonic plumbing that carries the peer's certificate to a
//! layer turning it into a [`PeerId`], and authorisation ([`authorize`]).
//!
//! tonic 0.14's own `ServerTlsConfig` takes only an identity and a CA (no CRL, no custom
//! verifier, no reload), so we serve with our own `rustls::ServerConfig` through
//! [`incoming`] and `Server::serve_with_incoming`, and dial with [`connect`].
//!
//! Reload: the server configuration is built once; its certificate resolver and client
//! verifier read the current material (certificate and key, CA, CRL) from a shared slot. On a
//! new connection, at most once per `check_every`, the files' metadata (mtime, length, inode)
//! are compared with the last load; when any changed the files are read, and when their
//! content changed new material is built and swapped in. [`ReloadingServerConfig::reload`]
//! does the same at once. A reload that fails (key not matching the certificate, unreadable
//! file, a certificate naming another identity) keeps the old material and is retried.
//!
//! Invariants: ring is the only crypto provider; client certificates are required and checked
//! (CA, CRL) on every connection: the server resumes no session; a node's identity does not
//! change across reloads; handlers see a [`PeerId`] (inside [`Authenticated`]), never a raw
//! certificate.

mod authz;

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use authz::{Action, Authorized, Refused, authorize};

use crate::pki::{IdentityError, PeerId, peer_id_of};

/// How often, at most, a server looks at its files again (on new connections).
pub const CHECK_EVERY_DEFAULT: Duration = Duration::from_secs(10);
/// A TLS handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// gRPC runs over HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";
/// Accepted connections waiting for tonic to take them.
const ACCEPT_QUEUE: usize = 64;
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The rustls crypto provider of every Yimen TLS configuration: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files of one side of a mutual-TLS connection (all PEM): its own certificate chain and
/// key, the CA certificate(s) it trusts for peers, and optionally the CA's CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [&self.cert, &self.key, &self.ca]
            .into_iter()
            .chain(self.crl.as_ref())
            .map(PathBuf::as_path)
    }
}

/// Why a TLS configuration could not be built or a connection not made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a usable {what}: {reason}")]
    BadFile {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{cert} does not match the private key {key}: {reason}")]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{cert}: {source}")]
    Identity {
        cert: PathBuf,
        #[source]
        source: IdentityError,
    },
    #[error("{cert} names {found}, but this node is {expected}; refusing to change identity")]
    IdentityChanged {
        cert: PathBuf,
        expected: Box<PeerId>,
        found: Box<PeerId>,
    },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate verifier from {ca}: {reason}")]
    Verifier { ca: PathBuf, reason: String },
}

/// The server presented a certificate of another identity than the one dialled.
#[derive(thiserror::Error)]
#[error("the server presented {presented}, expected {expected}")]
pub struct UnexpectedPeer {
    pub expected: PeerId,
    pub presented: PeerId,
}

/// rustls shows a certificate error's cause with `Debug`: make that readable.
impl std::fmt::Debug for UnexpectedPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnexpectedPeer({self})")
    }
}

// ----- Loading -----

/// What the files held at one load.
#[derive(Debug)]
struct Material {
    identity: PeerId,
    key: Arc<CertifiedKey>,
    verifier: Arc<dyn ClientCertVerifier>,
    digest: blake3::Hash,
}

/// Metadata of one file, to notice a change without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamps(files: &TlsFiles) -> Vec<Option<Stamp>> {
    files
        .paths()
        .map(|p| {
            fs::metadata(p).ok().map(|m| Stamp {
                modified: m.modified().ok(),
                len: m.len(),
                inode: m.ino(),
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(
    path: &Path,
    bytes: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::BadFile {
        path: path.to_path_buf(),
        what,
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM CERTIFICATE in it".to_owned()));
    }
    Ok(certs)
}

fn roots(path: &Path, bytes: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, bytes, "CA certificate")? {
        roots.add(cert).map_err(|e| TlsError::BadFile {
            path: path.to_path_buf(),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

fn crls(
    path: Option<&Path>,
    bytes: Option<&[u8]>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let (Some(path), Some(bytes)) = (path, bytes) else {
        return Ok(Vec::new());
    };
    CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadFile {
            path: path.to_path_buf(),
            what: "CRL",
            reason: e.to_string(),
        })
}

/// The contents of the files of a [`TlsFiles`].
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
    crl: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        Ok(Contents {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            ca: read(&files.ca)?,
            crl: files.crl.as_deref().map(read).transpose()?,
        })
    }

    fn digest(&self) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new();
        for part in [&self.cert, &self.key, &self.ca]
            .into_iter()
            .chain(self.crl.as_ref())
        {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize()
    }

    /// This side's certificate chain and key, checked to belong together; and its identity.
    fn certified_key(
        &self,
        files: &TlsFiles,
        provider: &CryptoProvider,
    ) -> Result<(CertifiedKey, PeerId), TlsError> {
        let chain = certs(&files.cert, &self.cert, "certificate")?;
        let identity = peer_id_of(&chain[0]).map_err(|source| TlsError::Identity {
            cert: files.cert.clone(),
            source,
        })?;
        let bad_key = |reason: String| TlsError::BadFile {
            path: files.key.clone(),
            what: "private key",
            reason,
        };
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| bad_key(e.to_string()))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| bad_key(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified.keys_match().map_err(|e| TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
        Ok((certified, identity))
    }

    fn material(
        &self,
        files: &TlsFiles,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Material, TlsError> {
        let (key, identity) = self.certified_key(files, provider)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(
            roots(&files.ca, &self.ca)?,
            provider.clone(),
        )
        .with_crls(crls(files.crl.as_deref(), self.crl.as_deref())?)
        .build()
        .map_err(|e| TlsError::Verifier {
            ca: files.ca.clone(),
            reason: e.to_string(),
        })?;
        Ok(Material {
            identity,
            key: Arc::new(key),
            verifier,
            digest: self.digest(),
        })
    }
}

// ----- Server -----

/// The slot the resolver and verifier read, and what decides when to refill it.
struct Reloader {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    check_every: Duration,
    current: RwLock<Arc<Material>>,
    /// When the files were last looked at, and their metadata at the last successful load.
    checked: Mutex<(Instant, Vec<Option<Stamp>>)>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("files", &self.files)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    fn current(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files and swaps in new material if their content changed. Stamps are taken
    /// before reading, so a change during the read is seen again at the next check.
    fn reload_with(&self, checked: &mut (Instant, Vec<Option<Stamp>>)) -> Result<bool, TlsError> {
        let stamps = stamps(&self.files);
        checked.0 = Instant::now();
        let contents = Contents::read(&self.files)?;
        let current = self.current();
        if contents.digest() == current.digest {
            checked.1 = stamps;
            return Ok(false);
        }
        let material = contents.material(&self.files, &self.provider)?;
        if material.identity != current.identity {
            return Err(TlsError::IdentityChanged {
                cert: self.files.cert.clone(),
                expected: Box::new(current.identity.clone()),
                found: Box::new(material.identity),
            });
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(material);
        checked.1 = stamps;
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate, CA or CRL reloaded");
        Ok(true)
    }

    /// On a new connection: looks at the files' metadata if `check_every` has passed, and
    /// reloads when it changed. Never blocks a handshake behind another one's check.
    fn maybe_reload(&self) {
        let Ok(mut checked) = self.checked.try_lock() else {
            return;
        };
        if checked.0.elapsed() < self.check_every {
            return;
        }
        checked.0 = Instant::now();
        if stamps(&self.files) == checked.1 {
            return;
        }
        if let Err(e) = self.reload_with(&mut checked) {
            tracing::warn!(error = %e, "TLS files changed but could not be loaded; keeping the previous ones");
        }
    }
}

#[derive(Debug)]
struct CertResolver(Arc<Reloader>);

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.maybe_reload();
        Some(self.0.current().key.clone())
    }
}

/// Requires a client certificate and delegates to the current `WebPkiClientVerifier`.
#[derive(Debug)]
struct ClientVerifier(Arc<Reloader>);

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the inner verifier's subjects cannot be lent out from behind the lock, and
    /// our clients hold one certificate each.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().verifier.supported_verify_schemes()
    }
}

/// A `rustls::ServerConfig` (ring, client certificates required, CRL checked, ALPN `h2`)
/// whose certificate, CA and CRL follow the files without a restart.
#[derive(Clone, Debug)]
pub struct ReloadingServerConfig {
    reloader: Arc<Reloader>,
    config: Arc<rustls::ServerConfig>,
}

impl ReloadingServerConfig {
    /// Loads `files` (all must be usable now) and builds the configuration; afterwards the
    /// files are looked at again at most once per `check_every`, on new connections.
    pub fn new(files: TlsFiles, check_every: Duration) -> Result<ReloadingServerConfig, TlsError> {
        let provider = provider();
        let stamps = stamps(&files);
        let material = Contents::read(&files)?.material(&files, &provider)?;
        let reloader = Arc::new(Reloader {
            files,
            provider: provider.clone(),
            check_every,
            current: RwLock::new(Arc::new(material)),
            checked: Mutex::new((Instant::now(), stamps)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(ClientVerifier(reloader.clone())))
            .with_cert_resolver(Arc::new(CertResolver(reloader.clone())));
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        // No session resumption: a resumed TLS 1.3 session skips both the client-certificate
        // check (a revoked certificate would keep connecting on its ticket) and the
        // certificate resolver (where a reload is noticed). Links are long-lived, so a full
        // handshake per connection costs nothing that matters.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(ReloadingServerConfig {
            reloader,
            config: Arc::new(config),
        })
    }

    /// The configuration to hand to a `TlsAcceptor`; it stays valid across reloads.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Reads the files now; `Ok(true)` when new material is in use, `Ok(false)` when the
    /// content had not changed. On error the previous material stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut checked = self
            .reloader
            .checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.reloader.reload_with(&mut checked)
    }

    /// This server's identity (the URI SAN of its certificate).
    pub fn identity(&self) -> PeerId {
        self.reloader.current().identity.clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.reloader.files
    }
}

/// What tonic puts in each request's extensions for a connection from [`incoming`].
#[derive(Clone, Debug)]
pub struct TlsConnectInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, end entity first, as verified by the handshake.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// A server-side TLS connection handed to tonic.
#[derive(Debug)]
pub struct TlsIo {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TlsConnectInfo,
}

impl Connected for TlsIo {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The TLS connections accepted on `listener`, for `Server::serve_with_incoming`. Each
/// handshake runs in its own task (bounded by [`HANDSHAKE_TIMEOUT`]); refused handshakes are
/// logged and dropped, never passed on. The accept loop ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: &ReloadingServerConfig,
) -> ReceiverStream<Result<TlsIo, io::Error>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config.config());
    let (tx, rx) = tokio::sync::mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            // Small frames (acks, credits) must not wait on Nagle and delayed ACKs.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(inner)) => {
                        let peer_certs = inner
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| Arc::new(c.to_vec()));
                        let info = TlsConnectInfo {
                            remote_addr: Some(remote),
                            peer_certs,
                        };
                        let _ = tx.send(Ok(TlsIo { inner, info })).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

// ----- The identity layer -----

/// Proof that the connection's client certificate (verified by the handshake) names `peer`.
/// Only [`identify`] builds one; it lives in request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    peer: PeerId,
}

impl Authenticated {
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }
}

/// The identity in the connection's client certificate, or `Status::unauthenticated`.
pub fn peer_of_connection<T>(request: &Request<T>) -> Result<PeerId, Status> {
    let info = request
        .extensions()
        .get::<TlsConnectInfo>()
        .ok_or_else(|| Status::unauthenticated("not a mutual-TLS connection"))?;
    let end_entity = info
        .peer_certs
        .as_ref()
        .and_then(|certs| certs.first())
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    peer_id_of(end_entity).map_err(|e| {
        Status::unauthenticated(format!(
            "the client certificate names no Yimen identity: {e}"
        ))
    })
}

/// The serial of the connection's client certificate, if it has one.
pub fn peer_serial<T>(request: &Request<T>) -> Option<u64> {
    let info = request.extensions().get::<TlsConnectInfo>()?;
    let end_entity = info.peer_certs.as_ref()?.first()?;
    crate::pki::serial_of(end_entity)
}

/// The serials a CRL file lists, read again whenever the file changes (looked at every
/// `every`): open connections are checked against it, so a revoked peer's open link ends too
/// (new connections are refused by the handshake itself).
#[derive(Clone, Debug)]
pub struct RevokedSerials(tokio::sync::watch::Receiver<Arc<std::collections::BTreeSet<u64>>>);

impl RevokedSerials {
    /// Nothing is ever revoked (no CRL configured).
    pub fn none() -> RevokedSerials {
        let (_, rx) = tokio::sync::watch::channel(Arc::default());
        RevokedSerials(rx)
    }

    /// Watches `crl` until `stop` turns true. A CRL that cannot be read keeps the last list
    /// (and is logged): the handshake refuses new connections meanwhile.
    pub fn watch(
        crl: PathBuf,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> RevokedSerials {
        let (tx, rx) = tokio::sync::watch::channel(Arc::default());
        tokio::spawn(async move {
            let mut seen: Option<(SystemTime, u64)> = None;
            loop {
                let stamp = fs::metadata(&crl)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.ino())));
                if stamp.is_some() && stamp != seen {
                    match crate::pki::revoked_serials(&crl) {
                        Ok(serials) => {
                            seen = stamp;
                            let set: std::collections::BTreeSet<u64> =
                                serials.into_iter().map(|s| s.0).collect();
                            tx.send_replace(Arc::new(set));
                        }
                        Err(e) => {
                            tracing::warn!(crl = %crl.display(), error = %e, "the revocation list cannot be read; keeping the last one");
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        RevokedSerials(rx)
    }

    /// Resolves once `serial` is listed (never, for `None` or while it is not).
    pub async fn listed(&mut self, serial: Option<u64>) {
        let Some(serial) = serial else {
            return std::future::pending().await;
        };
        if self.0.wait_for(|set| set.contains(&serial)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The layer: a tonic interceptor (`XServer::with_interceptor(svc, tls::identify)`) that puts
/// an [`Authenticated`] in the request's extensions, or refuses the call.
pub fn identify(mut request: Request<()>) -> Result<Request<()>, Status> {
    let peer = peer_of_connection(&request)?;
    request.extensions_mut().insert(Authenticated { peer });
    Ok(request)
}

/// For handlers: the caller's identity put there by [`identify`].
pub fn authenticated_peer<T>(request: &Request<T>) -> Result<&PeerId, Status> {
    request
        .extensions()
        .get::<Authenticated>()
        .map(Authenticated::peer)
        .ok_or_else(|| Status::unauthenticated("the call did not pass the identity layer"))
}

// ----- Client -----

/// Checks the server's chain with WebPKI (CA, CRL, validity, the DNS name of the expected
/// identity) and that its URI SAN is the expected identity.
#[derive(Debug)]
struct ExpectedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: PeerId,
    /// The serial of the last server certificate verified.
    seen: Arc<Mutex<Option<u64>>>,
}

fn other_error(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

impl ServerCertVerifier for ExpectedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = peer_id_of(end_entity).map_err(other_error)?;
        if presented != self.expected {
            return Err(other_error(UnexpectedPeer {
                expected: self.expected.clone(),
                presented,
            }));
        }
        // The name checked is the expected identity's, whatever address was dialled.
        let name = self
            .expected
            .dns_name()
            .and_then(|n| ServerName::try_from(n).ok())
            .unwrap_or_else(|| server_name.to_owned());
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = crate::pki::serial_of(end_entity);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client configuration (ring, ALPN `h2`) for dialling `expected_server` (a child its
/// parent): presents `files.cert`/`files.key`, accepts only a server certificate of `files.ca`
/// not revoked in `files.crl` whose URI SAN is `expected_server`. The files are read now;
/// build a new one per dial to follow renewals.
pub fn client_config(
    files: &TlsFiles,
    expected_server: &PeerId,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_seeing(files, expected_server).map(|(config, _)| config)
}

/// The serial of the server certificate a client configuration last verified.
#[derive(Clone, Debug, Default)]
pub struct ServerSerial(Arc<Mutex<Option<u64>>>);

impl ServerSerial {
    pub fn get(&self) -> Option<u64> {
        self.0.lock().ok().and_then(|s| *s)
    }
}

/// [`client_config`], and where to read the serial of the server certificate it verified
/// (a child cuts its open link to a parent revoked meanwhile).
pub fn client_config_seeing(
    files: &TlsFiles,
    expected_server: &PeerId,
) -> Result<(Arc<rustls::ClientConfig>, ServerSerial), TlsError> {
    let seen = ServerSerial::default();
    let provider = provider();
    let contents = Contents::read(files)?;
    let (key, _identity) = contents.certified_key(files, &provider)?;
    let inner = WebPkiServerVerifier::builder_with_provider(
        roots(&files.ca, &contents.ca)?,
        provider.clone(),
    )
    .with_crls(crls(files.crl.as_deref(), contents.crl.as_deref())?)
    .build()
    .map_err(|e| TlsError::Verifier {
        ca: files.ca.clone(),
        reason: e.to_string(),
    })?;
    let verifier = ExpectedServerVerifier {
        inner,
        expected: expected_server.clone(),
        seen: seen.0.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(OneClientCert(Arc::new(key))));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((Arc::new(config), seen))
}

/// Always presents the one certificate (our CA issues one per identity).
#[derive(Debug)]
struct OneClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The TLS server name sent when dialling `server`: its DNS name, else the address.
pub fn server_name_for(server: &PeerId, addr: SocketAddr) -> ServerName<'static> {
    server
        .dns_name()
        .and_then(|n| ServerName::try_from(n).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
}

/// A tonic channel to `addr` over TLS with `config` (from [`client_config`], or any rustls
/// client configuration offering ALPN `h2`).
///
/// With TLS 1.3 the client's handshake ends before the server has checked the client's
/// certificate, so a refused client would still "connect" and its first call would fail with
/// whatever hyper makes of the closed connection (often a bare "operation was canceled:
/// connection closed", the server's alert lost). So the dial also waits, within
/// [`HANDSHAKE_TIMEOUT`], for the server's first bytes (an HTTP/2 server sends its SETTINGS
/// at once): a refusal fails the dial with the server's alert (`received fatal alert:
/// CertificateRevoked`, `UnknownCA`, `CertificateRequired`); the bytes read are handed on to
/// HTTP/2 unchanged.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let dial = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        async move {
            let dial = async {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(server_name, tcp).await?;
                AcceptedStream::confirm(tls).await
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial).await {
                Ok(dialled) => dialled.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no TLS connection with {addr} within {HANDSHAKE_TIMEOUT:?}"),
                )),
            }
        }
    });
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(HANDSHAKE_TIMEOUT)
        // A dead link (a 4G modem that lost its carrier) is noticed by HTTP/2 pings.
        .http2_keep_alive_interval(crate::sync::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(crate::sync::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_with_connector(dial)
        .await
}

/// A client's TLS stream once the server has shown it accepted the handshake (it sent its
/// first bytes); those bytes are read again first.
#[derive(Debug)]
struct AcceptedStream<S> {
    head: Vec<u8>,
    read: usize,
    inner: S,
}

/// Bytes read while waiting for the server's first ones: more than an HTTP/2 SETTINGS frame.
const FIRST_READ_BYTES: usize = 4096;

impl<S: AsyncRead + AsyncWrite + Unpin> AcceptedStream<S> {
    /// Waits for the server's first bytes: a TLS alert (the server refused our certificate)
    /// is returned as the error rustls reports, naming the alert.
    async fn confirm(mut inner: S) -> io::Result<AcceptedStream<S>> {
        use tokio::io::AsyncReadExt;
        let mut head = vec![0; FIRST_READ_BYTES];
        let n = inner.read(&mut head).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection right after the TLS handshake",
            ));
        }
        head.truncate(n);
        Ok(AcceptedStream {
            head,
            read: 0,
            inner,
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AcceptedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.read);
            buf.put_slice(&this.head[this.read..this.read + n]);
            this.read += n;
            if this.read == this.head.len() {
                this.head = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AcceptedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
