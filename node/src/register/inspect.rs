//! An independent dump of a stopped node's store, any tier: what `yimen-node inspect --store
//! DIR --json` prints, so anyone can check what a node or the demo claims.
//!
//! Invariants: reads only (never creates, repairs or syncs a store; a missing directory is an
//! error); decodes events from their stored bytes, not from the case state; prints no
//! applicant's ID number or name (cases show number, item, status and custodian only).

use std::path::Path;

use prost::Message;
use serde_json::{Value, json};

use yimen_core::case::Case;
use yimen_core::link::Cursor;
use yimen_proto::pb;

use super::{RegisterError, decode, key, position_of};
use crate::store::Store;
use crate::store::sled_store::{SledOptions, SledStore};

/// Everything listed in one dump is bounded by this many entries per section.
pub const INSPECT_MAX: usize = 1_000_000;

/// Why a store could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}: no store there (give a node's store folder, or its data folder holding store/)")]
    Missing(String),
    #[error(transparent)]
    Register(#[from] RegisterError),
}

impl From<crate::store::StoreError> for InspectError {
    fn from(e: crate::store::StoreError) -> Self {
        InspectError::Register(e.into())
    }
}

/// The dump of the sled store in `dir`, or in `dir/store` when `dir` is a node's data folder
/// (as the demo's `--keep` leaves them). The node must be stopped: sled locks its files.
pub fn inspect(dir: &Path) -> Result<Value, InspectError> {
    let is_store = |d: &Path| d.join("db").is_file();
    let nested = dir.join("store");
    let dir = match (is_store(dir), is_store(&nested)) {
        (true, _) => dir,
        (false, true) => nested.as_path(),
        (false, false) => return Err(InspectError::Missing(dir.display().to_string())),
    };
    let (store, opened) = SledStore::open(dir, &SledOptions::default())?;
    let mut dump = inspect_store(&store)?;
    dump["store_epoch"] = json!(format!("{:016x}", opened.epoch.0));
    dump["mark"] = json!(opened.mark.map(|m| json!({
        "epoch": format!("{:016x}", m.epoch),
        "position": m.position,
        "digest": hex(&m.digest),
    })));
    Ok(dump)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The dump of any store (the model too).
pub fn inspect_store<S: Store>(store: &S) -> Result<Value, InspectError> {
    let node = store
        .get(key::NODE)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut events = Vec::new();
    for (k, v) in store.scan(key::EVENT, None, INSPECT_MAX)? {
        let position = position_of(&k)?;
        let digest = hex(blake3::hash(&v).as_bytes());
        let entry = match pb::Event::decode(v.as_slice()) {
            Ok(e) => {
                let env = e.envelope.unwrap_or_default();
                let id = env.id.unwrap_or_default();
                let audience = env.audience.unwrap_or_default();
                json!({
                    "position": position,
                    "origin": id.origin,
                    "epoch": format!("{:016x}", id.epoch),
                    "seq": id.seq,
                    "case": env.case_id,
                    "case_seq": env.case_seq,
                    "type": env.r#type,
                    "schema_version": env.schema_version,
                    "audience": audience.members,
                    // Catalog, calendar and topology revisions: the author's subtree.
                    "audience_subtree": (!audience.subtree.is_empty()).then_some(audience.subtree),
                    "bytes": v.len(),
                    "digest": digest,
                })
            }
            Err(e) => json!({
                "position": position,
                "bytes": v.len(),
                "digest": digest,
                "undecodable": e.to_string(),
            }),
        };
        events.push(entry);
    }
    let mut cases = Vec::new();
    for (_, v) in store.scan(key::CASE, None, INSPECT_MAX)? {
        let case: Case = decode("case", &v)?;
        cases.push(json!({
            "number": case.number.to_string(),
            "item": case.acceptance.item.code.to_string(),
            "item_version": case.acceptance.item.version,
            "status": case.status.as_str(),
            "custodian": case.custodian.to_string(),
            "accepted_by": case.accepted_by.to_string(),
            "case_seq": case.last_seq(),
            "audience": case.audience.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }));
    }
    let mut cursors = Vec::new();
    for (k, v) in store.scan(key::CURSOR, None, INSPECT_MAX)? {
        let peer = String::from_utf8_lossy(&k[key::CURSOR.len()..]).into_owned();
        let c: Cursor = decode("link cursor", &v)?;
        cursors.push(json!({
            "peer": peer,
            "epoch": format!("{:016x}", c.epoch),
            "position": c.position,
            "digest": hex(&c.digest),
        }));
    }
    let numbers = |prefix: &[u8]| -> Result<Vec<String>, InspectError> {
        Ok(store
            .scan(prefix, None, INSPECT_MAX)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    };
    let quarantined = numbers(key::QUARANTINE)?;
    let voided = numbers(key::VOID)?;
    let mut refused_revisions = Vec::new();
    for (_, v) in store.scan(key::REVISION_ALARM, None, INSPECT_MAX)? {
        let a: yimen_core::case::RevisionAlarm = decode("revision alarm", &v)?;
        refused_revisions.push(json!({
            "node": a.node.to_string(),
            "origin": a.revision.origin,
            "epoch": format!("{:016x}", a.revision.epoch),
            "seq": a.revision.seq,
            "kind": a.kind,
            "reason": a.reason,
        }));
    }
    let refill: bool = match store.get(key::REFILL)? {
        Some(b) => decode("refill flag", &b)?,
        None => false,
    };
    Ok(json!({
        "node": node,
        "refilling": refill,
        "events": events,
        "cases": cases,
        "cursors": cursors,
        "quarantined": quarantined,
        "voided": voided,
        "refused_revisions": refused_revisions,
    }))
}
