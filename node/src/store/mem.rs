//! The in-memory model of the store, for tests and the deterministic simulation.
//!
//! It keeps what was applied (visible to reads at once) apart from what was synced (what
//! survives a simulated power loss, [`MemStore::crash`]): the durable state is the applied
//! one with `undo` rolled back, so `sync` costs the changes since the last sync, not the
//! store's size. The epoch likewise: `set_epoch` changes the applied one, `sync` makes it
//! the durable one. It stores values with the same checksum framing as sled, so injected
//! corruption ([`MemStore::corrupt_value`]) is caught the same way, and refuses the same
//! reserved keys.
//!
//! Handles are cheap clones of one shared state: a test keeps one while the code under test
//! owns another. `crash` and `reopen` hand out a new state; every older handle then fails
//! with `Engine` ("used after a simulated crash or reopen"), which catches a simulation that
//! keeps using a dead node's store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::sled_store::{check_batch, frame_value, unframe_value};
use super::{Batch, Epoch, FORMAT_VERSION, Mark, Op, Opened, Store, StoreError};

/// The `path` in this store's errors.
const MEM_PATH: &str = "memory";

/// The in-memory [`Store`].
#[derive(Clone)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
}

struct State {
    /// Keys to framed values, as applied (read-your-writes).
    applied: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For each key changed since the last sync, its durable (framed) value, `None` if it
    /// had none: rolling these back onto `applied` gives the durable state.
    undo: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The mark recorded by the last sync.
    mark: Option<Mark>,
    /// The epoch as set (reported by a clean reopen).
    epoch: Epoch,
    /// The epoch as of the last sync (what survives a crash).
    synced_epoch: Epoch,
    /// The format the "disk" claims; see [`MemStore::set_format`].
    format: u32,
    /// Set on a state superseded by `crash` or `reopen`.
    closed: bool,
}

impl MemStore {
    /// A new, empty store with this epoch.
    pub fn new(new_epoch: Epoch) -> (MemStore, Opened) {
        let state = State {
            applied: BTreeMap::new(),
            undo: BTreeMap::new(),
            mark: None,
            epoch: new_epoch,
            synced_epoch: new_epoch,
            format: FORMAT_VERSION,
            closed: false,
        };
        let opened = Opened {
            epoch: new_epoch,
            mark: None,
            created: true,
        };
        (MemStore::from_state(state), opened)
    }

    /// The store as it is after power loss and a restart: only what was synced, and the
    /// synced epoch and mark. The caller drops its old handles (they fail from now on).
    ///
    /// Panics if this handle was already crashed or reopened: a simulation bug.
    pub fn crash(&self) -> (MemStore, Opened) {
        let mut old = self.lock();
        assert!(
            !old.closed,
            "crash() on a store handle already crashed or reopened"
        );
        let mut state = old.take();
        for (key, durable) in std::mem::take(&mut state.undo) {
            match durable {
                Some(value) => state.applied.insert(key, value),
                None => state.applied.remove(&key),
            };
        }
        state.epoch = state.synced_epoch;
        drop(old);
        let opened = Opened {
            epoch: state.epoch,
            mark: state.mark,
            created: false,
        };
        (MemStore::from_state(state), opened)
    }

    /// The store after a clean close and reopen: everything applied is still there (a clean
    /// close loses nothing, though unsynced writes stay undurable), an unsynced epoch too;
    /// the mark is the synced one. Refuses a newer format, like sled's open.
    pub fn reopen(&self) -> Result<(MemStore, Opened), StoreError> {
        let mut old = self.open_state()?;
        if old.format > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: MEM_PATH.to_owned(),
                found: old.format,
                supported: FORMAT_VERSION,
            });
        }
        let state = old.take();
        drop(old);
        let opened = Opened {
            epoch: state.epoch,
            mark: state.mark,
            created: false,
        };
        Ok((MemStore::from_state(state), opened))
    }

    /// Flips a byte of the value stored under `key` (applied and durable), as a bad disk
    /// would; the next read of it is `Corrupt`. Returns whether the key was there.
    pub fn corrupt_value(&self, key: &[u8]) -> bool {
        let mut state = self.lock();
        let mut found = false;
        let flip = |value: &mut Vec<u8>| {
            if let Some(last) = value.last_mut() {
                *last ^= 0x5a;
            }
        };
        if let Some(value) = state.applied.get_mut(key) {
            flip(value);
            found = true;
        }
        if let Some(Some(value)) = state.undo.get_mut(key) {
            flip(value);
            found = true;
        }
        found
    }

    /// Sets the format version the "disk" claims; the next `reopen` checks it.
    pub fn set_format(&self, format: u32) {
        self.lock().format = format;
    }

    /// Number of entries as applied (a convenience for tests and the simulation).
    pub fn len(&self) -> usize {
        self.lock().applied.len()
    }

    /// Whether no entry is applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn from_state(state: State) -> MemStore {
        MemStore {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain maps, consistent between statements: a panic elsewhere cannot
        // leave it half-updated in a way a later test must not see.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open_state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.lock();
        if state.closed {
            return Err(StoreError::Engine {
                path: MEM_PATH.to_owned(),
                detail: "store handle used after a simulated crash or reopen".to_owned(),
            });
        }
        Ok(state)
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.open_state()?;
        match state.applied.get(key) {
            Some(framed) => unframe_value(MEM_PATH, key, framed).map(Some),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let state = self.open_state()?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let range = state.applied.range::<[u8], _>((start, Bound::Unbounded));
        for (key, framed) in range {
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.clone(), unframe_value(MEM_PATH, key, framed)?));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let state = self.open_state()?;
        let end = match prefix_end(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let found = state
            .applied
            .range::<[u8], _>((Bound::Included(prefix), end.as_ref().map(Vec::as_slice)))
            .next_back();
        match found {
            Some((key, framed)) => Ok(Some((key.clone(), unframe_value(MEM_PATH, key, framed)?))),
            None => Ok(None),
        }
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut state = self.open_state()?;
        check_batch(MEM_PATH, batch)?;
        for op in &batch.ops {
            let (key, new) = match op {
                Op::Put(key, value) => (key, Some(frame_value(value))),
                Op::Delete(key) => (key, None),
            };
            let old = match new {
                Some(framed) => state.applied.insert(key.clone(), framed),
                None => state.applied.remove(key),
            };
            // Only the first change since the sync knows the durable value.
            state.undo.entry(key.clone()).or_insert(old);
        }
        Ok(())
    }

    fn sync(&self, mark: Mark) -> Result<(), StoreError> {
        let mut state = self.open_state()?;
        state.undo.clear();
        state.synced_epoch = state.epoch;
        state.mark = Some(mark);
        Ok(())
    }

    fn set_epoch(&self, epoch: Epoch) -> Result<(), StoreError> {
        self.open_state()?.epoch = epoch;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let state = self.open_state()?;
        let bytes: usize = state.applied.iter().map(|(k, v)| k.len() + v.len()).sum();
        Ok(bytes as u64)
    }
}

impl State {
    /// Moves the state out for a new handle, leaving this one closed.
    fn take(&mut self) -> State {
        let state = State {
            applied: std::mem::take(&mut self.applied),
            undo: std::mem::take(&mut self.undo),
            mark: self.mark,
            epoch: self.epoch,
            synced_epoch: self.synced_epoch,
            format: self.format,
            closed: false,
        };
        self.closed = true;
        state
    }
}

/// The least key greater than every key starting with `prefix`; `None` if there is none
/// (the prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
