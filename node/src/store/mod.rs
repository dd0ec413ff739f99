//! The node's store, behind a narrow key-value trait with two implementations: sled (the
//! deployed store) and an in-memory model that loses unsynced writes on a simulated crash (for
//! the deterministic simulation). One conformance suite (`tests/store_conformance.rs`) runs
//! against both.
//!
//! Invariants:
//! * `apply` is atomic: a batch is wholly visible or not at all, also after a crash.
//! * Nothing applied is durable until `sync` returns; `sync` flushes and fsyncs, then
//!   records the high-water mark beside the store (fsynced too).
//! * The store has an epoch, made when it was created and replaced by `set_epoch`; a new
//!   epoch is, like applied data, durable only once a `sync` returns, and the mark that sync
//!   records carries it. A crash before that sync may reopen with the old epoch (the model
//!   always does; sled may have kept the unsynced write) and finds the old mark.
//! * The mark outlives the store's files: a store created beside a mark left by a lost one
//!   opens as new (`Opened::created`) with that mark (`Opened::mark`), and the mark stays as
//!   it was until the first sync. Whether such a store may serve is the caller's decision.
//! * Every stored value carries our own checksum, checked on every read; a mismatch is
//!   `StoreError::Corrupt`, never a silent wrong value.
//! * Opening checks the format version and refuses a newer or corrupt store with a clear
//!   error, never a panic (even when sled itself panics on open).

pub mod mem;
pub mod sled_store;

use std::fmt;

/// Version of the on-disk layout of keys and values. A store written by a newer version is
/// refused at open.
pub const FORMAT_VERSION: u32 = 1;

/// One change of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Changes applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(key.into(), value.into()));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The high-water mark: store epoch, position and digest of the last acknowledged event,
/// kept outside the store and compared after it opens (sled can open "cleanly" with
/// acknowledged data gone: DEPENDENCIES.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// The store epoch ([`Epoch`]'s number) the mark was written under.
    pub epoch: u64,
    pub position: u64,
    pub digest: [u8; 32],
}

/// The store's identity, made when it was created: a replaced store never reuses event ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What opening a store found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub epoch: Epoch,
    /// The mark recorded by the last sync; `None` for a new store, unless the store was
    /// created beside the mark of a lost one (then that mark, with `created` set).
    pub mark: Option<Mark>,
    /// Whether the store was created by this open (it holds no data).
    pub created: bool,
}

/// Operating errors of a store. `Display` is English for the log; `reason_zh` is for the
/// clerk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store at {path} is corrupt: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("store at {path} has format version {found}, newer than this program's {supported}")]
    NewerFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "store at {path} is behind its high-water mark: last acknowledged event {mark_position}, store holds {store_position}"
    )]
    BehindMark {
        path: String,
        mark_position: u64,
        store_position: u64,
    },
    #[error("store at {path}: the database engine failed: {detail}")]
    Engine { path: String, detail: String },
}

impl StoreError {
    /// A sentence for the clerk, in Chinese.
    pub fn reason_zh(&self) -> String {
        match self {
            StoreError::Io { .. } => "本机数据存储读写失败，请检查磁盘空间和权限后重试".to_owned(),
            StoreError::Corrupt { .. } => {
                "本机数据存储已损坏，节点已停止以免丢失数据；请联系乡镇管理员从上级节点恢复".to_owned()
            }
            StoreError::NewerFormat { .. } => {
                "本机数据由更新版本的软件写入，请升级本机软件后再启动".to_owned()
            }
            StoreError::BehindMark { .. } => {
                "本机数据缺少已确认的记录（可能是断电或磁盘故障），节点已停止；请联系乡镇管理员从上级节点恢复"
                    .to_owned()
            }
            StoreError::Engine { .. } => "数据库引擎故障，请联系管理员".to_owned(),
        }
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The narrow store interface the shell uses.
pub trait Store: Send + 'static {
    /// The value under `key`, checksum verified.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries whose key starts with `prefix`, in key order, starting after `after` if given,
    /// at most `limit`.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
    /// The last entry (greatest key) with this prefix.
    fn last(&self, prefix: &[u8]) -> Result<Option<Entry>, StoreError>;
    /// Applies a batch atomically. Not durable until `sync`.
    fn apply(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Makes everything applied so far durable, then records `mark` durably beside it.
    fn sync(&self, mark: Mark) -> Result<(), StoreError>;
    /// Records a new epoch for the store (the node takes one when its store is behind what
    /// it or a peer saw). Like `apply`, not durable until the next `sync`, whose mark then
    /// carries the new epoch; a reopen after a crash before that sync finds the old epoch
    /// (sled: may find it, as it may keep other unsynced writes; the model always does).
    fn set_epoch(&self, epoch: Epoch) -> Result<(), StoreError>;
    /// Bytes the store occupies on disk (or in memory, for the model).
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}
