//! Peer identities: the SPIFFE-style URIs our certificates carry in their one URI SAN.
//!
//! Invariants: a `PeerId` is always well formed (validated at parse or construction, never
//! after); `PeerId::parse_any(&id.to_string()) == Ok(id)` for every value; the trust domain
//! and every path segment are lowercase ASCII, so the URI has exactly one spelling.

use std::fmt;
use std::str::FromStr;

use yimen_core::division::{DivisionCode, DivisionError, Tier};

/// The trust domain of a Yimen deployment unless its configuration names another.
pub const DEFAULT_TRUST_DOMAIN: &str = "yimen.local";

/// URI scheme of every identity.
const SCHEME: &str = "spiffe://";
/// Longest trust domain: a DNS name (it also ends the DNS SAN we derive from the identity).
const TRUST_DOMAIN_CHARS_MAX: usize = 253;
/// Longest department key of a station.
const DEPT_CHARS_MAX: usize = 32;
/// Longest operator name.
const OPERATOR_NAME_CHARS_MAX: usize = 64;

/// Why an identity URI or certificate was refused. Messages are English (logs, admin tools).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity {uri:?} must start with {SCHEME:?}")]
    Scheme { uri: String },
    #[error(
        "identity {uri:?}: trust domain {trust_domain:?} must be 1-{TRUST_DOMAIN_CHARS_MAX} \
         characters of dot-separated labels of [a-z0-9-] (no port, user or upper case)"
    )]
    TrustDomain { uri: String, trust_domain: String },
    #[error("identity {uri:?} belongs to trust domain {found:?}, expected {expected:?}")]
    WrongTrustDomain {
        uri: String,
        expected: String,
        found: String,
    },
    #[error(
        "identity {uri:?}: path must be /node/<id>, /station/<county-id>/<dept> or \
         /operator/<id>/<name> (no query, fragment, empty segment or trailing slash)"
    )]
    Path { uri: String },
    #[error("identity {uri:?}: {source}")]
    Division {
        uri: String,
        #[source]
        source: DivisionError,
    },
    #[error("identity {uri:?}: station code {code} is a {tier} code, expected a county code")]
    StationNotCounty {
        uri: String,
        code: String,
        tier: Tier,
    },
    #[error("department {dept:?} must be 1-{DEPT_CHARS_MAX} characters [a-z0-9-]")]
    Dept { dept: String },
    #[error("operator name {name:?} must be 1-{OPERATOR_NAME_CHARS_MAX} characters [a-z0-9._-]")]
    OperatorName { name: String },
    #[error("certificate could not be parsed: {reason}")]
    Certificate { reason: String },
    #[error("certificate has no URI subject alternative name (no Yimen identity)")]
    NoUriSan,
    #[error("certificate has {count} URI subject alternative names, expected exactly one")]
    UriSanCount { count: usize },
}

/// A trust domain (`yimen.local`): a lowercase DNS name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn parse(s: &str) -> Result<TrustDomain, IdentityError> {
        if is_dns_name(s) {
            Ok(TrustDomain(s.to_owned()))
        } else {
            Err(IdentityError::TrustDomain {
                uri: format!("{SCHEME}{s}"),
                trust_domain: s.to_owned(),
            })
        }
    }

    /// The default trust domain, `yimen.local`.
    pub fn default_domain() -> TrustDomain {
        TrustDomain(DEFAULT_TRUST_DOMAIN.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE id (`spiffe://yimen.local`), carried by the CA certificate.
    pub fn uri(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::parse(s)
    }
}

/// A station's department key (`ybj`): 1-32 characters `[a-z0-9-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dept(String);

impl Dept {
    pub fn parse(s: &str) -> Result<Dept, IdentityError> {
        let ok = (1..=DEPT_CHARS_MAX).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Dept(s.to_owned()))
        } else {
            Err(IdentityError::Dept { dept: s.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Dept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An operator's name (`wang.li`): 1-64 characters `[a-z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn parse(s: &str) -> Result<OperatorName, IdentityError> {
        let ok = (1..=OPERATOR_NAME_CHARS_MAX).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(OperatorName(s.to_owned()))
        } else {
            Err(IdentityError::OperatorName { name: s.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of peer an identity names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    /// A village, township or county node, by the division code it was commissioned with.
    Node { id: DivisionCode },
    /// A county department's station.
    Station { county: DivisionCode, dept: Dept },
    /// A person operating at a unit (admin tools).
    Operator {
        id: DivisionCode,
        name: OperatorName,
    },
}

/// A peer's identity: `spiffe://<trust-domain>/node/<id>`, `.../station/<county-id>/<dept>`
/// or `.../operator/<id>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId {
    trust_domain: TrustDomain,
    kind: PeerKind,
}

impl PeerId {
    pub fn node(trust_domain: TrustDomain, id: DivisionCode) -> PeerId {
        PeerId {
            trust_domain,
            kind: PeerKind::Node { id },
        }
    }

    /// A station identity; `county` must be a county-tier code.
    pub fn station(
        trust_domain: TrustDomain,
        county: DivisionCode,
        dept: Dept,
    ) -> Result<PeerId, IdentityError> {
        let id = PeerId {
            trust_domain,
            kind: PeerKind::Station { county, dept },
        };
        if county.tier() != Tier::County {
            return Err(IdentityError::StationNotCounty {
                uri: id.to_string(),
                code: county.to_string(),
                tier: county.tier(),
            });
        }
        Ok(id)
    }

    pub fn operator(trust_domain: TrustDomain, id: DivisionCode, name: OperatorName) -> PeerId {
        PeerId {
            trust_domain,
            kind: PeerKind::Operator { id, name },
        }
    }

    /// Parses `uri` and requires it to belong to `expected_trust_domain`.
    pub fn parse(uri: &str, expected_trust_domain: &str) -> Result<PeerId, IdentityError> {
        let id = PeerId::parse_any(uri)?;
        if id.trust_domain.as_str() != expected_trust_domain {
            return Err(IdentityError::WrongTrustDomain {
                uri: uri.to_owned(),
                expected: expected_trust_domain.to_owned(),
                found: id.trust_domain.0,
            });
        }
        Ok(id)
    }

    /// Parses `uri` in whatever (well-formed) trust domain it names. Callers that accept
    /// peers must check the trust domain, or have the TLS layer check the issuing CA.
    pub fn parse_any(uri: &str) -> Result<PeerId, IdentityError> {
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityError::Scheme {
                uri: uri.to_owned(),
            })?;
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        let trust_domain = TrustDomain::parse(domain).map_err(|_| IdentityError::TrustDomain {
            uri: uri.to_owned(),
            trust_domain: domain.to_owned(),
        })?;
        let path_error = || IdentityError::Path {
            uri: uri.to_owned(),
        };
        // Query, fragment and percent-encoding would give one identity several spellings.
        if path.contains(['?', '#', '%']) {
            return Err(path_error());
        }
        let segments: Vec<&str> = path.split('/').collect();
        let code = |s: &str| {
            DivisionCode::parse(s).map_err(|source| IdentityError::Division {
                uri: uri.to_owned(),
                source,
            })
        };
        let kind = match segments.as_slice() {
            ["node", id] => PeerKind::Node { id: code(id)? },
            ["station", county, dept] => {
                let county = code(county)?;
                let dept = Dept::parse(dept)?;
                return PeerId::station(trust_domain, county, dept).map_err(|e| match e {
                    IdentityError::StationNotCounty { code, tier, .. } => {
                        IdentityError::StationNotCounty {
                            uri: uri.to_owned(),
                            code,
                            tier,
                        }
                    }
                    other => other,
                });
            }
            ["operator", id, name] => {
                let id = code(id)?;
                let name = OperatorName::parse(name)?;
                PeerKind::Operator { id, name }
            }
            _ => return Err(path_error()),
        };
        Ok(PeerId { trust_domain, kind })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn kind(&self) -> &PeerKind {
        &self.kind
    }

    /// The division code the identity is rooted at (node id, station county, operator unit).
    pub fn division(&self) -> DivisionCode {
        match &self.kind {
            PeerKind::Node { id } | PeerKind::Operator { id, .. } => *id,
            PeerKind::Station { county, .. } => *county,
        }
    }

    /// The identity as a URI (same as `to_string()`).
    pub fn uri(&self) -> String {
        self.to_string()
    }

    /// The DNS name the CA adds as a second SAN to the certificates of peers that serve
    /// (nodes and stations), so stock TLS clients (tonic's `domain_name`) can verify a server:
    /// `<id>.node.<td>`, `<dept>.<county-id>.station.<td>`. Operators only dial: `None`.
    /// Authorisation must still read the URI SAN (`peer_id_of`), never this name.
    pub fn dns_name(&self) -> Option<String> {
        let td = &self.trust_domain;
        let name = match &self.kind {
            PeerKind::Node { id } => format!("{id}.node.{td}"),
            PeerKind::Station { county, dept } => format!("{dept}.{county}.station.{td}"),
            PeerKind::Operator { .. } => return None,
        };
        // A department like `-x` is a valid key but not a DNS label: such a station gets no
        // DNS SAN (its clients must verify it by URI).
        is_dns_name(&name).then_some(name)
    }

    /// File stem for this peer's key and CSR (`node-430421105204`,
    /// `station-430421000000-ybj`, `operator-430421105204-wang.li`).
    pub fn file_stem(&self) -> String {
        match &self.kind {
            PeerKind::Node { id } => format!("node-{id}"),
            PeerKind::Station { county, dept } => format!("station-{county}-{dept}"),
            PeerKind::Operator { id, name } => format!("operator-{id}-{name}"),
        }
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let td = &self.trust_domain;
        match &self.kind {
            PeerKind::Node { id } => write!(f, "{SCHEME}{td}/node/{id}"),
            PeerKind::Station { county, dept } => {
                write!(f, "{SCHEME}{td}/station/{county}/{dept}")
            }
            PeerKind::Operator { id, name } => write!(f, "{SCHEME}{td}/operator/{id}/{name}"),
        }
    }
}

impl FromStr for PeerId {
    type Err = IdentityError;
    /// Same as [`PeerId::parse_any`]: any trust domain.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerId::parse_any(s)
    }
}

/// Reads the one URI SAN of a DER certificate as a `PeerId` (any trust domain: the TLS layer
/// has already checked the issuing CA). Other SAN types (our DNS SAN) are ignored.
pub fn peer_id_of(cert_der: &[u8]) -> Result<PeerId, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| IdentityError::Certificate {
            reason: e.to_string(),
        })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Certificate {
            reason: format!("subject alternative name: {e}"),
        })?
        .ok_or(IdentityError::NoUriSan)?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::NoUriSan),
        [uri] => PeerId::parse_any(uri),
        more => Err(IdentityError::UriSanCount { count: more.len() }),
    }
}

/// Lowercase dot-separated labels of `[a-z0-9-]`, none empty, none starting or ending with
/// `-`, each at most 63 characters.
fn is_dns_name(s: &str) -> bool {
    (1..=TRUST_DOMAIN_CHARS_MAX).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}
