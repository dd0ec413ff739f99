//! Case events of a newer payload schema than this build reads (DESIGN.md "Events": hubs
//! carry payloads they cannot read). Such an event is stored, relayed and held like any other;
//! the case's state here stops before it, the case is marked (`ns/<case>`: its sequence and
//! schema) so desks and clerks see why, and its later events wait behind it. At the next
//! start of an upgraded build the held events apply.
//!
//! Invariants: nothing of a newer payload is interpreted; the mark exists exactly while the
//! case's next event here is one this build cannot read.

use yimen_core::numbering::CaseNumber;

use super::{Register, RegisterError, decode, encode, key};
use crate::store::{Batch, Store};

fn newer_key(case: &CaseNumber) -> Vec<u8> {
    key::join(&[key::NEWER, case.to_string().as_bytes()])
}

impl<S: Store> Register<S> {
    /// The case's next event here is of a newer payload schema: (its case sequence, schema).
    pub fn newer_schema_of(&self, case: &CaseNumber) -> Result<Option<(u64, u32)>, RegisterError> {
        self.store
            .get(&newer_key(case))?
            .map(|b| decode("newer-schema mark", &b))
            .transpose()
    }

    /// `apply_held` stopped before event `seq` of `case`, of payload `schema`: mark the case
    /// (into `b`), once.
    pub(super) fn wait_for_newer_software(
        &mut self,
        b: &mut Batch,
        case: &CaseNumber,
        seq: u64,
        schema: u32,
    ) -> Result<(), RegisterError> {
        if self.newer_schema_of(case)? == Some((seq, schema)) {
            return Ok(());
        }
        tracing::info!(%case, seq, schema, readable = self.readable_schema, "a case event of a newer payload schema: kept and relayed; this node's view of the case waits for an upgrade");
        b.put(newer_key(case), encode(&(seq, schema)));
        Ok(())
    }

    /// Applies the held events of every marked case as far as this build reads them (run at
    /// open: after an upgrade they apply). An event that fails a domain check quarantines its
    /// case (logged; the alarm is raised when the case's next event arrives).
    pub fn catch_up_newer(&mut self) -> Result<(), RegisterError> {
        let marked = self.store.scan(key::NEWER, None, usize::MAX)?;
        for (k, _) in marked {
            let Ok(case) = CaseNumber::parse(&String::from_utf8_lossy(&k[key::NEWER.len()..]))
            else {
                continue;
            };
            let before = self.case(&case)?;
            let mut b = Batch::default();
            b.delete(k);
            let (after, failed) = self.apply_held(&mut b, &case, before.clone())?;
            if let Some((_, why)) = failed {
                self.quarantine_ops(&mut b, &case, why)?;
            }
            self.store.apply(&b)?;
            self.unsynced_writes = true;
            let before_seq = before.as_ref().map(|c| c.last_seq());
            if let Some(after) = after.filter(|a| Some(a.last_seq()) != before_seq) {
                tracing::info!(%case, seq = after.last_seq(), "events of a newer schema applied after an upgrade");
                self.cache(after);
            }
        }
        Ok(())
    }

    /// Plays a build that reads payload schemas up to `schema` (tests only: an older hub, or
    /// the same hub after an upgrade, with `catch_up_newer`).
    #[doc(hidden)]
    pub fn set_readable_schema_for_tests(&mut self, schema: u32) {
        self.readable_schema = schema;
    }
}
