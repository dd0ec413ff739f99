//! The node's configuration file (TOML). Only the node id is required; everything else has a
//! documented default fit for a small village box.
//!
//! ```toml
//! # The node's identity: the 12-digit division code it was commissioned with.
//! id = "430421105204"
//! # Printed on slips and notices. Default: "<id> 便民服务中心".
//! name = "河泉村便民服务中心"
//! # Where the store lives, relative to this file. Default: "store".
//! store = "store"
//! # The clerk API; plaintext, so loopback only. Default: "127.0.0.1:7070".
//! clerk_listen = "127.0.0.1:7070"
//! # The parent hub's replication address, dialled over mutual TLS; the parent's identity
//! # comes from the topology. Optional (a node without one keeps its cases to itself).
//! # parent = "127.0.0.1:7443"
//! # Where this node serves its children's links (hubs), over mutual TLS. Optional.
//! # listen = "0.0.0.0:7443"
//! # Certificates for the links: required with `parent` or `listen`. `crl` is the CA's
//! # revocation list, reloaded like the certificates.
//! # cert = "430421105204.crt"
//! # key = "430421105204.key"
//! # ca = "ca.crt"
//! # crl = "ca.crl"
//! # A link with unacknowledged events and no acknowledgement for this long shows
//! # `stalled`. Default: 120.
//! # stall_after_secs = 120
//! # How often, at most, a server looks at its cert, key, ca and crl files again (on a new
//! # connection): a renewed certificate or a new revocation list takes effect on the first
//! # connection after this many seconds. Connections already open are not re-checked.
//! # Default: 10.
//! # tls_check_secs = 10
//! # How often the custodian's timers run (公示 ends, deadline confirmations and warnings).
//! # Default: 60.
//! # desk_timer_secs = 60
//! # sled's page cache, in MiB. Default: 8 (peak resident memory stays under 64 MiB with
//! # 100,000 cases held; see `cargo bench -p yimen-node --bench footprint`).
//! cache_mib = 8
//! ```
//!
//! Invariants: an unknown key is an error (a typo never silently falls back to a default);
//! a non-loopback clerk address is refused (the clerk API is plaintext).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use yimen_core::catalog::NodeId;
use yimen_core::division::DivisionCode;

/// Default clerk address.
pub const CLERK_LISTEN_DEFAULT: &str = "127.0.0.1:7070";
/// Default sled cache: enough for the open cases of a village, small for a cheap box.
pub const CACHE_MIB_DEFAULT: u64 = 8;
/// Largest cache accepted: beyond this a typo (GiB for MiB) would starve the box.
pub const CACHE_MIB_MAX: u64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: String,
    name: Option<String>,
    store: Option<PathBuf>,
    clerk_listen: Option<String>,
    parent: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    crl: Option<PathBuf>,
    listen: Option<String>,
    stall_after_secs: Option<u64>,
    tls_check_secs: Option<u64>,
    desk_timer_secs: Option<u64>,
    cache_mib: Option<u64>,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub name: String,
    pub store: PathBuf,
    pub clerk_listen: SocketAddr,
    pub parent: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    /// Where children's links are served (hubs).
    pub listen: Option<SocketAddr>,
    pub stall_after_ms: u64,
    /// How often, at most, the link server re-reads its TLS files (`tls_check_secs`).
    pub tls_check_every: Duration,
    /// How often the custodian's timers run (`desk_timer_secs`).
    pub desk_timer_every: Duration,
    pub cache_bytes: u64,
}

/// Default stall time of a link.
pub const STALL_AFTER_SECS_DEFAULT: u64 = 120;
/// Default interval between looks at the TLS files (`tls::CHECK_EVERY_DEFAULT`).
pub const TLS_CHECK_SECS_DEFAULT: u64 = crate::tls::CHECK_EVERY_DEFAULT.as_secs();
/// Longest interval accepted: a revocation must not wait longer than a day.
pub const TLS_CHECK_SECS_MAX: u64 = 86_400;

impl NodeConfig {
    /// The TLS files of the links, when configured.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.cert.clone()?,
            key: self.key.clone()?,
            ca: self.ca.clone()?,
            crl: self.crl.clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl NodeConfig {
    /// Reads and checks a config file; relative paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        NodeConfig::parse(&text, base).map_err(|detail| ConfigError::Invalid {
            path: path.display().to_string(),
            detail,
        })
    }

    /// Parses config text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        let id = DivisionCode::parse(raw.id.trim()).map_err(|e| format!("id: {e}"))?;
        let clerk_listen: SocketAddr = raw
            .clerk_listen
            .as_deref()
            .unwrap_or(CLERK_LISTEN_DEFAULT)
            .parse()
            .map_err(|e| format!("clerk_listen: {e}"))?;
        if !clerk_listen.ip().is_loopback() {
            return Err(format!(
                "clerk_listen: {clerk_listen} is not a loopback address; the clerk API is plaintext and listens on loopback only"
            ));
        }
        let cache_mib = raw.cache_mib.unwrap_or(CACHE_MIB_DEFAULT);
        if cache_mib == 0 || cache_mib > CACHE_MIB_MAX {
            return Err(format!(
                "cache_mib: {cache_mib} is outside 1..={CACHE_MIB_MAX}"
            ));
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let parent = match raw.parent.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => {
                let p = p.strip_prefix("https://").unwrap_or(p);
                p.parse::<SocketAddr>().map_err(|e| {
                    format!("parent: {p:?} is not an address like 127.0.0.1:7443: {e}")
                })?;
                Some(p.to_owned())
            }
        };
        let listen = raw
            .listen
            .as_deref()
            .map(|l| {
                l.trim()
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("listen: {l:?}: {e}"))
            })
            .transpose()?;
        let has_tls = raw.cert.is_some() && raw.key.is_some() && raw.ca.is_some();
        if (parent.is_some() || listen.is_some()) && !has_tls {
            return Err(
                "parent/listen: links run over mutual TLS only; set cert, key and ca too"
                    .to_owned(),
            );
        }
        let stall_after_secs = raw.stall_after_secs.unwrap_or(STALL_AFTER_SECS_DEFAULT);
        if stall_after_secs == 0 {
            return Err("stall_after_secs: must be at least 1".to_owned());
        }
        let tls_check_secs = raw.tls_check_secs.unwrap_or(TLS_CHECK_SECS_DEFAULT);
        if tls_check_secs == 0 || tls_check_secs > TLS_CHECK_SECS_MAX {
            return Err(format!(
                "tls_check_secs: {tls_check_secs} is outside 1..={TLS_CHECK_SECS_MAX}"
            ));
        }
        let desk_timer_secs = raw
            .desk_timer_secs
            .unwrap_or(crate::desk::TIMER_EVERY.as_secs());
        if !(1..=86_400).contains(&desk_timer_secs) {
            return Err(format!(
                "desk_timer_secs: {desk_timer_secs} is outside 1..=86400"
            ));
        }
        Ok(NodeConfig {
            id,
            desk_timer_every: Duration::from_secs(desk_timer_secs),
            name: raw
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("{id} 便民服务中心")),
            store: resolve(raw.store.unwrap_or_else(|| PathBuf::from("store"))),
            clerk_listen,
            parent,
            cert: raw.cert.map(resolve),
            key: raw.key.map(resolve),
            ca: raw.ca.map(resolve),
            crl: raw.crl.map(resolve),
            listen,
            stall_after_ms: stall_after_secs * 1000,
            tls_check_every: Duration::from_secs(tls_check_secs),
            cache_bytes: cache_mib * 1024 * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let base = Path::new("/etc/yimen");
        let ok = NodeConfig::parse("id = \"430421105204\"", base).unwrap();
        assert_eq!(ok.store, PathBuf::from("/etc/yimen/store"));
        assert_eq!(ok.clerk_listen.to_string(), CLERK_LISTEN_DEFAULT);
        assert_eq!(ok.cache_bytes, 8 * 1024 * 1024);
        assert_eq!(ok.tls_check_every, crate::tls::CHECK_EVERY_DEFAULT);
        let quick = NodeConfig::parse("id = \"430421105204\"\ntls_check_secs = 1", base).unwrap();
        assert_eq!(quick.tls_check_every, Duration::from_secs(1));
        let cases = [
            ("", "missing field `id`"),
            ("id = \"430421000204\"", "id:"),
            (
                "id = \"430421105204\"\nclerk_listen = \"0.0.0.0:7070\"",
                "not a loopback",
            ),
            ("id = \"430421105204\"\ncache_mib = 0", "cache_mib"),
            (
                "id = \"430421105204\"\ntls_check_secs = 0",
                "tls_check_secs",
            ),
            (
                "id = \"430421105204\"\nstroe = \"x\"",
                "unknown field `stroe`",
            ),
        ];
        for (text, needle) in cases {
            let err = NodeConfig::parse(text, base).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
