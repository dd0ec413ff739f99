//! The deployed store: sled 0.34 in one directory, plus a high-water-mark file beside it.
//!
//! Layout:
//! * `<dir>/` is sled's (`db`, `conf`, `snap.*`, `blobs/`). One sled tree (the default one)
//!   holds everything.
//! * Keys are stored as given. Keys under [`META_PREFIX`] are ours ([`FORMAT_KEY`],
//!   [`EPOCH_KEY`], [`BATCH_JOURNAL_KEY`]): `apply` refuses them and reads never return them.
//! * Every value is framed `[crc32 of payload, 4 bytes LE][payload]` and checked on every
//!   read ([`frame_value`], [`unframe_value`]); the model (`mem.rs`) uses the same framing.
//! * `<dir>.hwm` (a sibling, e.g. `/var/lib/yimen/store.hwm`) holds the high-water mark in two
//!   slots, at offsets 0 and [`HWM_SLOT_STRIDE`], each [`HWM_SLOT_LEN`] bytes:
//!   `magic "YHWM" | generation u64 LE | has_mark u8 | 3 zero bytes | epoch u64 LE |
//!   position u64 LE | digest 32 bytes | crc32 LE of the preceding 64 bytes` (a slot without
//!   a mark has zeros from `has_mark` to the checksum). A sync overwrites the older slot in
//!   place (`pwrite` + `fdatasync` on a file kept open) and bumps the generation; open takes
//!   the valid slot with the greater generation. A torn write can only spoil the slot being
//!   written, and the other still holds the previous mark, which the data already covered; a
//!   file with no valid slot (garbled, truncated, emptied) is `Corrupt`.
//! * The mark file outlives the store: when `<dir>/` holds no store (lost, emptied) but
//!   `<dir>.hwm` records a mark, open creates a fresh store (new epoch, `created: true`) and
//!   reports that mark in [`Opened::mark`], leaving the file as it is; the caller decides
//!   (stop the node, or take the empty store as a replacement to refill). The first sync
//!   overwrites the older slot with the next generation, as for any store; a crash before it
//!   reopens an existing, empty store beside the old mark.
//! * [`Store::set_epoch`] is a plain insert of [`EPOCH_KEY`] (a one-op batch): made durable
//!   by the next sync's flush and fdatasync, before that sync's mark (which carries the new
//!   epoch) is written.
//!
//! Atomic batches without sled's `apply_batch`: in sled 0.34 every `apply_batch` (and every
//! transaction) first rolls the IO buffer, i.e. a `pwrite` + `sync_file_range` that waits for
//! the device, per batch; a group commit of ten intakes would cost ten device writes before
//! its one fsync. So a batch of more than one op is written as: the whole batch as one record
//! under [`BATCH_JOURNAL_KEY`] ([`journal_record`]), then its ops as plain inserts/removes,
//! then the journal record's removal, all under our own write lock (readers take the read
//! lock, so no reader sees half a batch). sled recovers a prefix of its log (it stops at the
//! first torn record), so after a crash either the journal record is absent and nothing of
//! the batch survived, or it is present and `open` re-applies it (puts and deletes are
//! idempotent) and removes it, or the batch is complete. A one-op batch is a plain
//! insert/remove. An engine error in the middle of a batch fails the handle: reopen.
//!
//! Durability: sled 0.34's `flush()` only issues `sync_file_range` (DEPENDENCIES.md), so
//! `sync` is: fsync any new blob files (rare: only values over ~128 KiB), `flush()`, then
//! `fdatasync` of `<dir>/db` (covers its length too), then the mark slot write +
//! `fdatasync`. That is three fsync-family syscalls per sync in the common case (measured
//! with strace: 100 syncs of 10 three-op batches made 200 `fdatasync` and 103
//! `sync_file_range`): sled's `sync_file_range` (a writeback, no device cache flush), ours on
//! `db`, ours on the mark. Directory entries (`db`,
//! `conf`, `snap.*`, `blobs/`, the store directory and `.hwm` themselves) are fsynced at open,
//! which is also the only time sled 0.34 writes a snapshot.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use super::{Batch, Epoch, FORMAT_VERSION, Mark, Op, Opened, Store, StoreError};

/// Keys we reserve for the store's own records. Sorted first (`\x00`), hidden from reads.
pub const META_PREFIX: &[u8] = b"\x00meta/";
/// `FORMAT_VERSION` as a framed `u32` LE.
pub const FORMAT_KEY: &[u8] = b"\x00meta/format";
/// The store's epoch as a framed `u64` LE.
pub const EPOCH_KEY: &[u8] = b"\x00meta/epoch";
/// The multi-op batch being applied, as a [`journal_record`]; absent between batches.
pub const BATCH_JOURNAL_KEY: &[u8] = b"\x00meta/batch";

/// Bytes of one high-water-mark slot.
pub const HWM_SLOT_LEN: usize = 68;
/// Offset of the second slot: a different 4 KiB block from the first, so a torn block write
/// cannot spoil both.
pub const HWM_SLOT_STRIDE: usize = 4096;
const HWM_MAGIC: &[u8; 4] = b"YHWM";
/// Offset of a slot's checksum, which covers the bytes before it.
const HWM_SLOT_CRC_AT: usize = HWM_SLOT_LEN - 4;
const HWM_FILE_LEN: usize = HWM_SLOT_STRIDE + HWM_SLOT_LEN;

/// Bytes of the checksum in front of every stored value.
const VALUE_CRC_LEN: usize = 4;
/// Key bytes shown (in hex) in an error.
const ERROR_KEY_BYTES_MAX: usize = 24;

/// How to open a [`SledStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page-cache budget (its own default is 1 GiB, far too much for a village box).
    pub cache_capacity_bytes: u64,
    /// The epoch given to a store created by this open; ignored when the store exists.
    /// 0 means "derive one from the time and the process id" (the shell passes a real one).
    pub new_epoch: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity_bytes: 16 * 1024 * 1024,
            new_epoch: 0,
        }
    }
}

/// The sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    dir: PathBuf,
    /// `<dir>/db`, sled's log, kept open for the fsync that sled's `flush` leaves out.
    data_file: File,
    /// Readers share it; `apply` takes it alone, so no reader sees half a batch.
    batch_lock: RwLock<()>,
    /// Set when an engine error struck in the middle of a batch: the handle may show half of
    /// it, so every later call fails; reopening completes the batch from its journal record.
    broken: Mutex<Option<String>>,
    sync_state: Mutex<SyncState>,
}

struct SyncState {
    hwm: HwmFile,
    /// Blob files already fsynced (sled writes them once, never fsyncs them).
    synced_blobs: BTreeSet<OsString>,
    /// Set when a sync failed: after a failed fsync the page cache's state is unknown, so no
    /// later sync may claim durability (the store must be reopened).
    failed: Option<String>,
}

impl SledStore {
    /// Opens the store in `dir`, creating it if `dir` holds no store yet.
    ///
    /// Refuses a store of a newer format (`NewerFormat`), one whose meta records, values or
    /// high-water mark are unreadable (`Corrupt`), and one on which sled itself panics
    /// (`Corrupt`, with the panic message). Comparing the mark with the store's contents is
    /// the caller's job, also for a store created by this open beside the mark of a lost one
    /// (`created: true` with `mark: Some(_)`; see the module docs).
    pub fn open(dir: &Path, options: &SledOptions) -> Result<(SledStore, Opened), StoreError> {
        let hwm_path = hwm_path(dir)?;
        let existed = dir.join("db").exists();
        let db = open_sled(dir, options)?;
        let data_file = File::open(dir.join("db")).map_err(|e| io_err(&dir.join("db"), e))?;
        // sled created or renamed entries (db, conf, snap.*, blobs) without fsyncing their
        // directories; a fresh store's directory entry itself lives in the parent.
        fsync_dir(dir)?;
        fsync_dir(&dir.join("blobs"))?;
        if !existed {
            fsync_dir(parent_dir(dir))?;
        }

        let path = dir.display().to_string();
        let stored_format = read_meta(&db, dir, FORMAT_KEY)?;
        let (epoch, created, hwm, mark) = match stored_format {
            Some(bytes) => {
                let found = decode_u32(&bytes).ok_or_else(|| StoreError::Corrupt {
                    path: path.clone(),
                    detail: format!("format record has {} bytes, expected 4", bytes.len()),
                })?;
                if found > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found < FORMAT_VERSION {
                    return Err(StoreError::Corrupt {
                        path,
                        detail: format!("unknown format version {found}"),
                    });
                }
                let epoch = read_meta(&db, dir, EPOCH_KEY)?
                    .as_deref()
                    .and_then(decode_u64)
                    .ok_or_else(|| StoreError::Corrupt {
                        path: path.clone(),
                        detail: "epoch record missing or unreadable".to_owned(),
                    })?;
                replay_journal(&db, dir)?;
                let (hwm, mark) = match HwmFile::open(&hwm_path)? {
                    Some(found) => found,
                    None if has_user_data(&db, dir)? => {
                        return Err(StoreError::Corrupt {
                            path,
                            detail: format!(
                                "high-water mark missing ({}) for a store that holds data",
                                hwm_path.display()
                            ),
                        });
                    }
                    // Crashed between writing the meta records and creating the mark file.
                    None => (HwmFile::create(&hwm_path)?, None),
                };
                (Epoch(epoch), false, hwm, mark)
            }
            None => {
                if has_user_data(&db, dir)? {
                    return Err(StoreError::Corrupt {
                        path,
                        detail: "format record missing from a store that holds data".to_owned(),
                    });
                }
                // An empty store beside a mark: the store's files were lost or replaced. The
                // store is created afresh, the mark reported and kept as it is (the next sync
                // continues its generations): the caller stops the node or refills the store.
                let old = match HwmFile::open(&hwm_path)? {
                    Some((hwm, Some(old))) => Some((hwm, old)),
                    // No mark yet: the file is rewritten below, as for a first open.
                    Some((_, None)) | None => None,
                };
                let epoch = match options.new_epoch {
                    0 => derive_epoch(),
                    given => given,
                };
                let mut batch = sled::Batch::default();
                batch.insert(FORMAT_KEY, frame_value(&FORMAT_VERSION.to_le_bytes()));
                batch.insert(EPOCH_KEY, frame_value(&epoch.to_le_bytes()));
                db.apply_batch(batch).map_err(|e| sled_err(dir, e))?;
                db.flush().map_err(|e| sled_err(dir, e))?;
                data_file
                    .sync_data()
                    .map_err(|e| io_err(&dir.join("db"), e))?;
                match old {
                    Some((hwm, old)) => (Epoch(epoch), true, hwm, Some(old)),
                    None => (Epoch(epoch), true, HwmFile::create(&hwm_path)?, None),
                }
            }
        };
        let store = SledStore {
            db,
            dir: dir.to_owned(),
            data_file,
            batch_lock: RwLock::new(()),
            broken: Mutex::new(None),
            sync_state: Mutex::new(SyncState {
                hwm,
                // Blobs present at open may never have been fsynced: the first sync does.
                synced_blobs: BTreeSet::new(),
                failed: None,
            }),
        };
        let opened = Opened {
            epoch,
            mark,
            created,
        };
        Ok((store, opened))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the high-water mark of the store in `dir` lives: `<dir>.hwm`.
    pub fn hwm_path(dir: &Path) -> Result<PathBuf, StoreError> {
        hwm_path(dir)
    }

    fn path_string(&self) -> String {
        self.dir.display().to_string()
    }

    /// The read side of the batch lock, or the error that broke this handle.
    fn read_lock(&self) -> Result<RwLockReadGuard<'_, ()>, StoreError> {
        let guard = self
            .batch_lock
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_broken()?;
        Ok(guard)
    }

    fn check_broken(&self) -> Result<(), StoreError> {
        let broken = self.broken.lock().unwrap_or_else(PoisonError::into_inner);
        match &*broken {
            Some(cause) => Err(StoreError::Engine {
                path: self.path_string(),
                detail: format!(
                    "a batch failed half-applied ({cause}); reopen the store to complete it"
                ),
            }),
            None => Ok(()),
        }
    }

    fn apply_locked(&self, batch: &Batch) -> Result<(), StoreError> {
        match batch.ops.as_slice() {
            [] => Ok(()),
            [op] => apply_op(&self.db, &self.dir, op),
            ops => {
                self.db
                    .insert(BATCH_JOURNAL_KEY, journal_record(batch))
                    .map_err(|e| sled_err(&self.dir, e))?;
                for op in ops {
                    apply_op(&self.db, &self.dir, op)?;
                }
                self.db
                    .remove(BATCH_JOURNAL_KEY)
                    .map_err(|e| sled_err(&self.dir, e))?;
                Ok(())
            }
        }
    }

    fn lock_sync(&self) -> MutexGuard<'_, SyncState> {
        // The state is an open file, a generation bumped only after a successful write, and
        // a set of names: a panic elsewhere cannot leave it inconsistent.
        self.sync_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sync_locked(&self, state: &mut SyncState, mark: Mark) -> Result<(), StoreError> {
        // No batch is half-applied while we flush, and no blob appears between our listing
        // of them and the flush that makes sled's log point at it. Held for the flush only
        // (a pwrite and sync_file_range), not for the fsyncs.
        let batches_paused = self.read_lock()?;
        // Blobs first: sled's log may point at them once flushed.
        let blobs_dir = self.dir.join("blobs");
        let present = list_blobs(&self.dir)?;
        let mut new_blob = false;
        for name in present.difference(&state.synced_blobs) {
            let path = blobs_dir.join(name);
            match File::open(&path) {
                Ok(f) => f.sync_all().map_err(|e| io_err(&path, e))?,
                // Collected by sled meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, e)),
            }
            new_blob = true;
        }
        if new_blob {
            fsync_dir(&blobs_dir)?;
        }
        state.synced_blobs = present;

        self.db.flush().map_err(|e| sled_err(&self.dir, e))?;
        drop(batches_paused);
        self.data_file
            .sync_data()
            .map_err(|e| io_err(&self.dir.join("db"), e))?;
        state.hwm.write(mark)
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _read = self.read_lock()?;
        if is_meta(key) {
            return Ok(None);
        }
        match self.db.get(key).map_err(|e| sled_err(&self.dir, e))? {
            Some(framed) => unframe_value(&self.path_string(), key, &framed).map(Some),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let _read = self.read_lock()?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let path = self.path_string();
        for entry in self.db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, framed) = entry.map_err(|e| sled_err(&self.dir, e))?;
            if !key.starts_with(prefix) {
                break;
            }
            if is_meta(&key) {
                continue;
            }
            let value = unframe_value(&path, &key, &framed)?;
            out.push((key.to_vec(), value));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let _read = self.read_lock()?;
        for entry in self.db.scan_prefix(prefix).rev() {
            let (key, framed) = entry.map_err(|e| sled_err(&self.dir, e))?;
            if is_meta(&key) {
                continue;
            }
            let value = unframe_value(&self.path_string(), &key, &framed)?;
            return Ok(Some((key.to_vec(), value)));
        }
        Ok(None)
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        check_batch(&self.path_string(), batch)?;
        let _write = self
            .batch_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_broken()?;
        let result = self.apply_locked(batch);
        if let Err(e) = &result
            && batch.ops.len() > 1
        {
            *self.broken.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }
        result
    }

    fn sync(&self, mark: Mark) -> Result<(), StoreError> {
        let mut state = self.lock_sync();
        if let Some(earlier) = &state.failed {
            return Err(StoreError::Io {
                path: self.path_string(),
                source: io::Error::other(format!(
                    "an earlier sync failed ({earlier}); reopen the store"
                )),
            });
        }
        let result = self.sync_locked(&mut state, mark);
        if let Err(e) = &result {
            state.failed = Some(e.to_string());
        }
        result
    }

    fn set_epoch(&self, epoch: Epoch) -> Result<(), StoreError> {
        let _write = self
            .batch_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_broken()?;
        self.db
            .insert(EPOCH_KEY, frame_value(&epoch.0.to_le_bytes()))
            .map(drop)
            .map_err(|e| sled_err(&self.dir, e))
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        dir_size(&self.dir)
    }
}

/// `[crc32 of payload, LE][payload]`: how every value is stored.
pub fn frame_value(payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(VALUE_CRC_LEN + payload.len());
    framed.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    framed.extend_from_slice(payload);
    framed
}

/// The payload of a framed value, or `Corrupt` naming the key if the checksum fails.
pub fn unframe_value(path: &str, key: &[u8], framed: &[u8]) -> Result<Vec<u8>, StoreError> {
    let Some((crc, payload)) = framed.split_first_chunk::<VALUE_CRC_LEN>() else {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!(
                "value of key {} has {} bytes, shorter than its checksum",
                key_hex(key),
                framed.len()
            ),
        });
    };
    if u32::from_le_bytes(*crc) != crc32fast::hash(payload) {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("value of key {} fails its checksum", key_hex(key)),
        });
    }
    Ok(payload.to_vec())
}

/// A batch as one framed record: `count u32 LE`, then per op `0u8 | key_len u32 LE | key |
/// value_len u32 LE | value` for a put or `1u8 | key_len u32 LE | key` for a delete.
pub fn journal_record(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(batch.ops.len()).to_le_bytes());
    for op in &batch.ops {
        match op {
            Op::Put(key, value) => {
                out.push(0);
                out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
                out.extend_from_slice(value);
            }
            Op::Delete(key) => {
                out.push(1);
                out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
                out.extend_from_slice(key);
            }
        }
    }
    frame_value(&out)
}

/// Lengths in a journal record are `u32`: a batch, key or value of 4 GiB is a bug upstream.
fn len_u32(len: usize) -> u32 {
    assert!(u32::try_from(len).is_ok(), "batch part of {len} bytes");
    len as u32
}

fn decode_journal(payload: &[u8]) -> Option<Batch> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = input.split_at_checked(n)?;
        *input = rest;
        Some(head)
    }
    fn take_u32(input: &mut &[u8]) -> Option<usize> {
        let bytes = take(input, 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    }
    let mut input = payload;
    let count = take_u32(&mut input)?;
    let mut batch = Batch::default();
    for _ in 0..count {
        let tag = take(&mut input, 1)?[0];
        let key_len = take_u32(&mut input)?;
        let key = take(&mut input, key_len)?.to_vec();
        match tag {
            0 => {
                let value_len = take_u32(&mut input)?;
                batch.put(key, take(&mut input, value_len)?);
            }
            1 => batch.delete(key),
            _ => return None,
        }
    }
    input.is_empty().then_some(batch)
}

/// Completes a batch a crash interrupted (see the module docs).
fn replay_journal(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    let Some(payload) = read_meta(db, dir, BATCH_JOURNAL_KEY)? else {
        return Ok(());
    };
    let batch = decode_journal(&payload).ok_or_else(|| StoreError::Corrupt {
        path: dir.display().to_string(),
        detail: "the journal record of an interrupted batch is malformed".to_owned(),
    })?;
    for op in &batch.ops {
        if is_meta(op_key(op)) {
            return Err(StoreError::Corrupt {
                path: dir.display().to_string(),
                detail: "the journal record of an interrupted batch names a reserved key"
                    .to_owned(),
            });
        }
    }
    for op in &batch.ops {
        apply_op(db, dir, op)?;
    }
    db.remove(BATCH_JOURNAL_KEY).map_err(|e| sled_err(dir, e))?;
    Ok(())
}

fn apply_op(db: &sled::Db, dir: &Path, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::Put(key, value) => db.insert(key.as_slice(), frame_value(value)).map(drop),
        Op::Delete(key) => db.remove(key.as_slice()).map(drop),
    }
    .map_err(|e| sled_err(dir, e))
}

fn op_key(op: &Op) -> &[u8] {
    let (Op::Put(key, _) | Op::Delete(key)) = op;
    key
}

/// Refuses a batch touching reserved keys, before any of it is applied.
pub(crate) fn check_batch(path: &str, batch: &Batch) -> Result<(), StoreError> {
    for op in &batch.ops {
        let key = op_key(op);
        if is_meta(key) {
            return Err(StoreError::Engine {
                path: path.to_owned(),
                detail: format!(
                    "key {} is in the store's reserved prefix; batch refused",
                    key_hex(key)
                ),
            });
        }
    }
    Ok(())
}

pub(crate) fn is_meta(key: &[u8]) -> bool {
    key.starts_with(META_PREFIX)
}

/// A key for an error message: hex, shortened.
pub(crate) fn key_hex(key: &[u8]) -> String {
    let shown = key.len().min(ERROR_KEY_BYTES_MAX);
    let mut s = String::with_capacity(shown * 2 + 16);
    for b in &key[..shown] {
        s.push_str(&format!("{b:02x}"));
    }
    if key.len() > shown {
        s.push_str(&format!("…({} bytes)", key.len()));
    }
    s
}

fn hwm_path(dir: &Path) -> Result<PathBuf, StoreError> {
    let Some(name) = dir.file_name() else {
        return Err(StoreError::Io {
            path: dir.display().to_string(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the store directory needs a name (its high-water mark is <dir>.hwm)",
            ),
        });
    };
    let mut hwm_name = name.to_owned();
    hwm_name.push(".hwm");
    Ok(dir.with_file_name(hwm_name))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn open_sled(dir: &Path, options: &SledOptions) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_capacity_bytes)
        .mode(sled::Mode::LowSpace)
        // Every fsync is ours, made in `sync`.
        .flush_every_ms(None);
    // A handle of this process that was just dropped releases sled's file lock only when
    // sled's background threads let go of it: retry a locked open for a bounded while.
    let mut attempts = 0;
    loop {
        // sled 0.34 panics on some corrupt files instead of returning an error.
        let result = open_sled_once(dir, &config);
        match result {
            Err(StoreError::Io { ref source, .. })
                if source.to_string().contains("could not acquire lock")
                    && attempts < LOCKED_OPEN_RETRIES =>
            {
                attempts += 1;
                std::thread::sleep(LOCKED_OPEN_PAUSE);
            }
            other => return other,
        }
    }
}

/// Retries of an open refused because the store's lock is still held (see `open_sled`):
/// with `LOCKED_OPEN_PAUSE`, about 5 s, far more than a dropped handle takes to let go.
const LOCKED_OPEN_RETRIES: u32 = 100;
const LOCKED_OPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

fn open_sled_once(dir: &Path, config: &sled::Config) -> Result<sled::Db, StoreError> {
    match panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(sled_err(dir, e)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            Err(StoreError::Corrupt {
                path: dir.display().to_string(),
                detail: format!("the database engine panicked while opening: {message}"),
            })
        }
    }
}

fn read_meta(db: &sled::Db, dir: &Path, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match db.get(key).map_err(|e| sled_err(dir, e))? {
        Some(framed) => unframe_value(&dir.display().to_string(), key, &framed).map(Some),
        None => Ok(None),
    }
}

fn has_user_data(db: &sled::Db, dir: &Path) -> Result<bool, StoreError> {
    for entry in db.iter().keys() {
        let key = entry.map_err(|e| sled_err(dir, e))?;
        if !is_meta(&key) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn decode_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// An epoch for a new store when the caller gave none: distinct across restarts and
/// processes in practice (nanoseconds since 1970 mixed with the pid), never 0.
fn derive_epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos ^ u64::from(std::process::id()).rotate_left(40);
    mixed.max(1)
}

fn list_blobs(dir: &Path) -> Result<BTreeSet<OsString>, StoreError> {
    let blobs = dir.join("blobs");
    let mut names = BTreeSet::new();
    let entries = match fs::read_dir(&blobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(io_err(&blobs, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(&blobs, e))?;
        names.insert(entry.file_name());
    }
    Ok(names)
}

fn dir_size(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| io_err(&path, e))?;
        if meta.is_dir() {
            total += dir_size(&path)?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sled_err(dir: &Path, e: sled::Error) -> StoreError {
    let path = dir.display().to_string();
    match e {
        sled::Error::Io(source) => StoreError::Io { path, source },
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            path,
            detail: format!("the database engine found corruption at {at:?}"),
        },
        other => StoreError::Engine {
            path,
            detail: other.to_string(),
        },
    }
}

/// The open `.hwm` file and the generation of its newest slot.
struct HwmFile {
    file: File,
    path: PathBuf,
    generation: u64,
}

impl HwmFile {
    /// Reads the mark file: `None` if it does not exist, `Corrupt` if no slot is valid.
    fn open(path: &Path) -> Result<Option<(HwmFile, Option<Mark>)>, StoreError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, e)),
        };
        let mut bytes = Vec::with_capacity(HWM_FILE_LEN);
        io::Read::read_to_end(&mut (&file), &mut bytes).map_err(|e| io_err(path, e))?;
        let slots = [0, HWM_SLOT_STRIDE]
            .into_iter()
            .filter_map(|at| bytes.get(at..at + HWM_SLOT_LEN))
            .filter_map(decode_slot);
        let Some((generation, mark)) = slots.max_by_key(|(generation, _)| *generation) else {
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                detail: format!(
                    "high-water mark file ({} bytes) has no slot that passes its checksum: torn or garbled",
                    bytes.len()
                ),
            });
        };
        let hwm = HwmFile {
            file,
            path: path.to_owned(),
            generation,
        };
        Ok(Some((hwm, mark)))
    }

    /// Creates (or replaces) the mark file holding "no mark yet" in both slots: written to a
    /// temporary file, fsynced, renamed over, and the directory fsynced.
    fn create(path: &Path) -> Result<HwmFile, StoreError> {
        let mut bytes = vec![0u8; HWM_FILE_LEN];
        let empty = encode_slot(0, None);
        bytes[..HWM_SLOT_LEN].copy_from_slice(&empty);
        bytes[HWM_SLOT_STRIDE..].copy_from_slice(&empty);
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        file.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        fsync_dir(parent_dir(path))?;
        Ok(HwmFile {
            file,
            path: path.to_owned(),
            generation: 0,
        })
    }

    /// Overwrites the older slot in place and fdatasyncs.
    fn write(&mut self, mark: Mark) -> Result<(), StoreError> {
        let generation = self.generation + 1;
        let offset = if generation.is_multiple_of(2) {
            0
        } else {
            HWM_SLOT_STRIDE
        };
        self.file
            .write_all_at(&encode_slot(generation, Some(mark)), offset as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, e))?;
        self.generation = generation;
        Ok(())
    }
}

fn encode_slot(generation: u64, mark: Option<Mark>) -> [u8; HWM_SLOT_LEN] {
    let mut slot = [0u8; HWM_SLOT_LEN];
    slot[0..4].copy_from_slice(HWM_MAGIC);
    slot[4..12].copy_from_slice(&generation.to_le_bytes());
    if let Some(mark) = mark {
        slot[12] = 1;
        slot[16..24].copy_from_slice(&mark.epoch.to_le_bytes());
        slot[24..32].copy_from_slice(&mark.position.to_le_bytes());
        slot[32..64].copy_from_slice(&mark.digest);
    }
    let crc = crc32fast::hash(&slot[..HWM_SLOT_CRC_AT]);
    slot[HWM_SLOT_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode_slot(slot: &[u8]) -> Option<(u64, Option<Mark>)> {
    let slot: &[u8; HWM_SLOT_LEN] = slot.try_into().ok()?;
    let crc = u32::from_le_bytes(slot[HWM_SLOT_CRC_AT..].try_into().ok()?);
    if &slot[0..4] != HWM_MAGIC || crc != crc32fast::hash(&slot[..HWM_SLOT_CRC_AT]) {
        return None;
    }
    let generation = u64::from_le_bytes(slot[4..12].try_into().ok()?);
    let mark = match slot[12] {
        0 => None,
        1 => Some(Mark {
            epoch: u64::from_le_bytes(slot[16..24].try_into().ok()?),
            position: u64::from_le_bytes(slot[24..32].try_into().ok()?),
            digest: slot[32..64].try_into().ok()?,
        }),
        _ => return None,
    };
    Some((generation, mark))
}
