#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! One conformance suite for both stores (`SledStore`, `MemStore`), plus the faults only a
//! real disk has (sled): flipped bytes in its log, a truncated log, a torn or garbled
//! high-water mark, an engine panic on open.
//!
//! Each `suite_*` function is generic over the store; the harness knows how to make a fresh
//! store, reopen it after a clean close, reopen it after a crash (sled: dropped without
//! sync, which may or may not keep unsynced writes; the model: loses exactly them), corrupt a
//! stored value, and make its format newer.

use std::fs;
use std::path::{Path, PathBuf};

use yimen_node::store::mem::MemStore;
use yimen_node::store::sled_store::{
    BATCH_JOURNAL_KEY, EPOCH_KEY, FORMAT_KEY, HWM_SLOT_LEN, HWM_SLOT_STRIDE, SledOptions,
    SledStore, journal_record,
};
use yimen_node::store::{Batch, Epoch, FORMAT_VERSION, Mark, Opened, Store, StoreError};

const EPOCH: Epoch = Epoch(0x0123_4567_89ab_cdef);

type Reopen<S> = Box<dyn FnMut(S) -> Result<(S, Opened), StoreError>>;
type Corrupt<S> = Box<dyn FnMut(S, &[u8]) -> S>;
type SetFormat<S> = Box<dyn FnMut(S, u32) -> Result<(S, Opened), StoreError>>;

struct Harness<S: Store> {
    store: Option<S>,
    opened: Opened,
    /// After a clean close (sled: drop, which flushes without fsync; model: as is).
    reopen_clean: Reopen<S>,
    /// After power loss (sled: drop without sync; model: only what was synced).
    reopen_crash: Reopen<S>,
    /// Whether a crash loses exactly the unsynced writes (the model) or may keep some (sled).
    crash_loses_unsynced: bool,
    /// Flips a byte of the stored value under a key, by whatever means the backend allows.
    corrupt_value: Corrupt<S>,
    /// Records a format version on "disk" and reopens.
    set_format: SetFormat<S>,
    _dir: Option<tempfile::TempDir>,
}

impl<S: Store> Harness<S> {
    fn s(&self) -> &S {
        self.store.as_ref().expect("store is open")
    }

    fn reopen_clean(&mut self) -> Opened {
        let store = self.store.take().expect("store is open");
        let (store, opened) = (self.reopen_clean)(store).expect("reopen after clean close");
        self.store = Some(store);
        opened
    }

    fn reopen_crash(&mut self) -> Opened {
        let store = self.store.take().expect("store is open");
        let (store, opened) = (self.reopen_crash)(store).expect("reopen after crash");
        self.store = Some(store);
        opened
    }

    fn put(&self, key: &[u8], value: &[u8]) {
        let mut batch = Batch::default();
        batch.put(key, value);
        self.s().apply(&batch).unwrap();
    }

    fn delete(&self, key: &[u8]) {
        let mut batch = Batch::default();
        batch.delete(key);
        self.s().apply(&batch).unwrap();
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.s().get(key).unwrap()
    }

    fn keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
        let entries = self.s().scan(prefix, after, limit).unwrap();
        for (key, value) in &entries {
            assert_eq!(value, &value_for(key), "value of {key:?} in scan");
        }
        entries.into_iter().map(|(k, _)| k).collect()
    }
}

/// Values derived from keys, so a scan can check each one.
fn value_for(key: &[u8]) -> Vec<u8> {
    let mut v = b"v:".to_vec();
    v.extend_from_slice(key);
    v
}

fn mark(position: u64) -> Mark {
    mark_in(EPOCH, position)
}

/// A mark written under `epoch`.
fn mark_in(epoch: Epoch, position: u64) -> Mark {
    let mut digest = [0u8; 32];
    for (i, b) in digest.iter_mut().enumerate() {
        *b = (position as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    Mark {
        epoch: epoch.0,
        position,
        digest,
    }
}

/// The epoch the suites move a store to.
const NEXT_EPOCH: Epoch = Epoch(0x0fed_cba9_8765_4321);

// ---- harnesses ------------------------------------------------------------------------

fn sled_options() -> SledOptions {
    SledOptions {
        cache_capacity_bytes: 4 * 1024 * 1024,
        new_epoch: EPOCH.0,
    }
}

/// How long a reopen waits for the file lock of a handle just dropped: sled's flusher thread
/// holds the database (and its lock) a moment after the last handle goes.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `open` until it does not fail on sled's file lock, for at most `LOCK_WAIT`.
fn past_lock<T, E: std::fmt::Display>(open: impl Fn() -> Result<T, E>) -> Result<T, E> {
    let until = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn sled_open(dir: &Path) -> Result<(SledStore, Opened), StoreError> {
    past_lock(|| SledStore::open(dir, &sled_options()))
}

/// A raw sled handle on a closed store's directory, for writing what our API refuses.
fn raw_sled(dir: &Path) -> sled::Db {
    past_lock(|| sled::Config::new().path(dir).open()).unwrap()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = crc32fast::hash(payload).to_le_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn sled_harness() -> Harness<SledStore> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (store, opened) = sled_open(&dir).unwrap();
    let d1 = dir.clone();
    let d2 = dir.clone();
    let d3 = dir.clone();
    let d4 = dir.clone();
    Harness {
        store: Some(store),
        opened,
        reopen_clean: Box::new(move |s| {
            drop(s);
            sled_open(&d1)
        }),
        reopen_crash: Box::new(move |s| {
            // The closest a test process gets: no sync. sled flushes on drop (no fsync), so
            // unsynced writes usually survive; only synced ones are asserted.
            drop(s);
            sled_open(&d2)
        }),
        crash_loses_unsynced: false,
        corrupt_value: Box::new(move |s, key| {
            drop(s);
            {
                let db = raw_sled(&d3);
                let mut value = db.get(key).unwrap().expect("key to corrupt").to_vec();
                let last = value.len() - 1;
                value[last] ^= 0x5a;
                db.insert(key, value).unwrap();
                db.flush().unwrap();
            }
            sled_open(&d3).unwrap().0
        }),
        set_format: Box::new(move |s, format| {
            drop(s);
            {
                let db = raw_sled(&d4);
                db.insert(FORMAT_KEY, framed(&format.to_le_bytes()))
                    .unwrap();
                db.flush().unwrap();
            }
            sled_open(&d4)
        }),
        _dir: Some(tmp),
    }
}

fn mem_harness() -> Harness<MemStore> {
    let (store, opened) = MemStore::new(EPOCH);
    Harness {
        store: Some(store),
        opened,
        reopen_clean: Box::new(|s: MemStore| s.reopen()),
        reopen_crash: Box::new(|s: MemStore| Ok(s.crash())),
        crash_loses_unsynced: true,
        corrupt_value: Box::new(|s: MemStore, key| {
            assert!(s.corrupt_value(key), "key to corrupt");
            s
        }),
        set_format: Box::new(|s: MemStore, format| {
            s.set_format(format);
            s.reopen()
        }),
        _dir: None,
    }
}

macro_rules! conformance {
    ($($suite:ident),* $(,)?) => {
        mod sled_conformance {
            $(#[test] fn $suite() { super::$suite(&mut super::sled_harness()); })*
        }
        mod mem_conformance {
            $(#[test] fn $suite() { super::$suite(&mut super::mem_harness()); })*
        }
    };
}

conformance!(
    suite_new_store,
    suite_get_put_delete,
    suite_scan,
    suite_last,
    suite_batch_atomicity,
    suite_reserved_keys,
    suite_synced_survives,
    suite_mark_survives,
    suite_new_epoch_survives_sync,
    suite_unsynced_epoch_and_crash,
    suite_newer_format,
    suite_corrupt_value,
    suite_size,
    suite_readers_never_see_half_a_batch,
);

// ---- the suite ------------------------------------------------------------------------

fn suite_new_store<S: Store>(h: &mut Harness<S>) {
    assert_eq!(
        h.opened,
        Opened {
            epoch: EPOCH,
            mark: None,
            created: true
        }
    );
    assert_eq!(h.s().scan(b"", None, 100).unwrap(), vec![]);
    assert_eq!(h.s().last(b"").unwrap(), None);
    let opened = h.reopen_clean();
    assert_eq!(
        opened,
        Opened {
            epoch: EPOCH,
            mark: None,
            created: false
        }
    );
}

fn suite_get_put_delete<S: Store>(h: &mut Harness<S>) {
    assert_eq!(h.get(b"a"), None);
    h.put(b"a", b"1");
    h.put(b"b", b"");
    assert_eq!(h.get(b"a"), Some(b"1".to_vec()));
    assert_eq!(h.get(b"b"), Some(vec![]), "an empty value is a value");
    h.put(b"a", b"2");
    assert_eq!(h.get(b"a"), Some(b"2".to_vec()), "overwrite");
    h.delete(b"a");
    assert_eq!(h.get(b"a"), None);
    h.delete(b"never-there");
    let big = vec![0xabu8; 64 * 1024];
    h.put(b"big", &big);
    assert_eq!(h.get(b"big"), Some(big));
    let binary_key = [0xffu8, 0, 1, 2];
    h.put(&binary_key, b"bin");
    assert_eq!(h.get(&binary_key), Some(b"bin".to_vec()));
}

fn suite_scan<S: Store>(h: &mut Harness<S>) {
    let keys: Vec<Vec<u8>> = (1..=10)
        .map(|i| format!("ev/{i:04}").into_bytes())
        .chain([
            b"e".to_vec(),
            b"ev".to_vec(),
            b"ex/1".to_vec(),
            b"f/1".to_vec(),
        ])
        .collect();
    let mut batch = Batch::default();
    for k in keys.iter().rev() {
        batch.put(k.clone(), value_for(k));
    }
    h.s().apply(&batch).unwrap();

    let ev = |i: usize| format!("ev/{i:04}").into_bytes();
    let all_ev: Vec<Vec<u8>> = (1..=10).map(ev).collect();
    assert_eq!(h.keys(b"ev/", None, 100), all_ev, "prefix, in key order");
    assert_eq!(h.keys(b"ev/", None, 3), all_ev[..3].to_vec(), "limit");
    assert_eq!(
        h.keys(b"ev/", Some(&ev(3)), 100),
        all_ev[3..].to_vec(),
        "after"
    );
    assert_eq!(
        h.keys(b"ev/", Some(&ev(3)), 2),
        all_ev[3..5].to_vec(),
        "after and limit"
    );
    assert_eq!(
        h.keys(b"ev/", Some(b"ev/0003x"), 100),
        all_ev[3..].to_vec(),
        "after a key that is not there"
    );
    assert_eq!(h.keys(b"ev/", Some(&ev(10)), 100), Vec::<Vec<u8>>::new());
    assert_eq!(
        h.keys(b"ev/", Some(b"a"), 2),
        all_ev[..2].to_vec(),
        "after before the prefix"
    );
    assert_eq!(h.keys(b"ev/", Some(b"z"), 100), Vec::<Vec<u8>>::new());
    assert_eq!(h.keys(b"ev/", None, 0), Vec::<Vec<u8>>::new(), "limit 0");
    assert_eq!(h.keys(b"nothing", None, 100), Vec::<Vec<u8>>::new());
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        h.keys(b"", None, 100),
        sorted,
        "everything, and nothing else"
    );
    assert_eq!(h.keys(b"e", None, 100), sorted[..sorted.len() - 1].to_vec());
    // Paging through with `after` visits every key once.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = h.keys(b"", after.as_deref(), 4);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, sorted);
}

fn suite_last<S: Store>(h: &mut Harness<S>) {
    assert_eq!(h.s().last(b"ev/").unwrap(), None);
    for i in [3u32, 1, 2] {
        let k = format!("ev/{i:04}").into_bytes();
        h.put(&k, &value_for(&k));
    }
    h.put(b"ew", b"x");
    h.put(b"eu", b"y");
    h.put(&[0xff, 0xff], b"top");
    let last = |h: &Harness<S>, p: &[u8]| h.s().last(p).unwrap().map(|(k, _)| k);
    assert_eq!(
        h.s().last(b"ev/").unwrap(),
        Some((b"ev/0003".to_vec(), value_for(b"ev/0003")))
    );
    assert_eq!(last(h, b"e"), Some(b"ew".to_vec()));
    assert_eq!(last(h, b""), Some(vec![0xff, 0xff]));
    assert_eq!(last(h, &[0xff]), Some(vec![0xff, 0xff]));
    assert_eq!(last(h, b"zz"), None);
    assert_eq!(last(h, b"ev/0003"), Some(b"ev/0003".to_vec()));
    h.delete(b"ev/0003");
    assert_eq!(last(h, b"ev/"), Some(b"ev/0002".to_vec()));
}

fn suite_batch_atomicity<S: Store>(h: &mut Harness<S>) {
    const N: usize = 500;
    let key = |i: usize| format!("b/{i:05}").into_bytes();
    h.put(b"doomed", b"x");
    let mut batch = Batch::default();
    for i in 0..N {
        batch.put(key(i), value_for(&key(i)));
    }
    batch.delete(b"doomed".to_vec());
    batch.put(b"twice".to_vec(), b"first".to_vec());
    batch.put(b"twice".to_vec(), b"second".to_vec());
    batch.put(b"gone".to_vec(), b"x".to_vec());
    batch.delete(b"gone".to_vec());
    h.s().apply(&batch).unwrap();
    assert_eq!(h.keys(b"b/", None, usize::MAX).len(), N);
    assert_eq!(h.get(b"doomed"), None);
    assert_eq!(h.get(b"twice"), Some(b"second".to_vec()), "later op wins");
    assert_eq!(h.get(b"gone"), None);

    h.s().sync(mark(1)).unwrap();
    h.reopen_crash();
    assert_eq!(h.keys(b"b/", None, usize::MAX).len(), N, "synced batch");

    // An unsynced batch is wholly there or wholly gone after a crash.
    let key2 = |i: usize| format!("c/{i:05}").into_bytes();
    let mut batch = Batch::default();
    for i in 0..N {
        batch.put(key2(i), value_for(&key2(i)));
    }
    for i in 0..N / 2 {
        batch.delete(key(i));
    }
    h.s().apply(&batch).unwrap();
    h.reopen_crash();
    let new = h.keys(b"c/", None, usize::MAX).len();
    let old = h.keys(b"b/", None, usize::MAX).len();
    assert!(
        (new, old) == (0, N) || (new, old) == (N, N / 2),
        "batch torn by a crash: {new} new keys, {old} old keys"
    );
    if h.crash_loses_unsynced {
        assert_eq!((new, old), (0, N), "the model loses unsynced batches");
    }
}

fn suite_reserved_keys<S: Store>(h: &mut Harness<S>) {
    let mut batch = Batch::default();
    batch.put(b"ok".to_vec(), b"1".to_vec());
    batch.put(FORMAT_KEY.to_vec(), b"sneaky".to_vec());
    let refused = h.s().apply(&batch);
    assert!(
        matches!(refused, Err(StoreError::Engine { .. })),
        "{refused:?}"
    );
    assert_eq!(h.get(b"ok"), None, "a refused batch applies nothing");
    assert_eq!(h.get(FORMAT_KEY), None, "meta records are not readable");
    assert_eq!(h.get(EPOCH_KEY), None);
    assert_eq!(h.s().scan(b"\x00", None, 100).unwrap(), vec![]);
    assert_eq!(h.s().last(b"\x00").unwrap(), None);
    let mut batch = Batch::default();
    batch.delete(EPOCH_KEY.to_vec());
    assert!(h.s().apply(&batch).is_err());
    let opened = h.reopen_clean();
    assert_eq!(opened.epoch, EPOCH);
}

fn suite_synced_survives<S: Store>(h: &mut Harness<S>) {
    h.put(b"k1", b"synced");
    h.put(b"k2", b"synced");
    h.s().sync(mark(7)).unwrap();
    h.put(b"k1", b"unsynced");
    h.delete(b"k2");
    h.put(b"k3", b"unsynced");
    assert_eq!(h.get(b"k1"), Some(b"unsynced".to_vec()), "read your writes");

    let opened = h.reopen_clean();
    assert_eq!(opened.epoch, EPOCH);
    assert!(!opened.created);
    assert_eq!(opened.mark, Some(mark(7)));
    assert_eq!(
        h.get(b"k1"),
        Some(b"unsynced".to_vec()),
        "a clean close keeps applied writes"
    );
    assert_eq!(h.get(b"k2"), None);
    assert_eq!(h.get(b"k3"), Some(b"unsynced".to_vec()));

    h.s().sync(mark(8)).unwrap();
    h.put(b"k4", b"unsynced");
    h.delete(b"k1");
    let opened = h.reopen_crash();
    assert_eq!(opened.epoch, EPOCH);
    assert_eq!(opened.mark, Some(mark(8)));
    assert_eq!(h.get(b"k3"), Some(b"unsynced".to_vec()), "synced by mark 8");
    if h.crash_loses_unsynced {
        assert_eq!(h.get(b"k1"), Some(b"unsynced".to_vec()), "delete undone");
        assert_eq!(h.get(b"k4"), None, "unsynced put lost");
    } else {
        // Either state is allowed, but never anything else.
        assert!(matches!(h.get(b"k1").as_deref(), None | Some(b"unsynced")));
        assert!(matches!(h.get(b"k4").as_deref(), None | Some(b"unsynced")));
    }
    assert_eq!(h.get(b"k2"), None);
}

fn suite_mark_survives<S: Store>(h: &mut Harness<S>) {
    // Enough syncs to use both mark slots several times, with odd and even counts.
    for syncs in [1u64, 2, 3] {
        for i in 0..syncs {
            let position = syncs * 10 + i;
            h.put(format!("ev/{position}").as_bytes(), b"e");
            h.s().sync(mark(position)).unwrap();
        }
        let expected = Some(mark(syncs * 10 + syncs - 1));
        assert_eq!(h.reopen_clean().mark, expected, "after {syncs} syncs");
        assert_eq!(h.reopen_crash().mark, expected, "after {syncs} syncs");
        assert_eq!(h.reopen_clean().mark, expected, "reopen does not move it");
    }
    // A sync with nothing new still records the mark it is given.
    h.s().sync(mark(99)).unwrap();
    assert_eq!(h.reopen_crash().mark, Some(mark(99)));
}

fn suite_new_epoch_survives_sync<S: Store>(h: &mut Harness<S>) {
    h.put(b"ev/1", b"e");
    h.s().sync(mark(1)).unwrap();
    h.s().set_epoch(NEXT_EPOCH).unwrap();
    h.put(b"ev/2", b"e");
    h.s().sync(mark_in(NEXT_EPOCH, 2)).unwrap();
    let expected = Opened {
        epoch: NEXT_EPOCH,
        mark: Some(mark_in(NEXT_EPOCH, 2)),
        created: false,
    };
    assert_eq!(h.reopen_crash(), expected, "synced epoch survives a crash");
    assert_eq!(h.reopen_clean(), expected);
    assert_eq!(h.get(b"ev/2"), Some(b"e".to_vec()));
    assert_eq!(h.get(EPOCH_KEY), None, "the epoch record stays hidden");
    assert_eq!(h.s().scan(b"", None, 100).unwrap().len(), 2);
    // Taken again, with nothing else applied since the last sync.
    let third = Epoch(NEXT_EPOCH.0 + 1);
    h.s().set_epoch(third).unwrap();
    h.s().sync(mark_in(third, 2)).unwrap();
    let opened = h.reopen_crash();
    assert_eq!(opened.epoch, third);
    assert_eq!(opened.mark, Some(mark_in(third, 2)));
}

fn suite_unsynced_epoch_and_crash<S: Store>(h: &mut Harness<S>) {
    h.put(b"ev/1", b"e");
    h.s().sync(mark(1)).unwrap();
    h.s().set_epoch(NEXT_EPOCH).unwrap();
    let opened = h.reopen_crash();
    assert_eq!(opened.mark, Some(mark(1)), "the mark of the last sync");
    assert!(!opened.created);
    if h.crash_loses_unsynced {
        assert_eq!(opened.epoch, EPOCH, "the model loses an unsynced epoch");
    } else {
        // sled may keep an unsynced write; never anything but the old or the new epoch.
        assert!(
            opened.epoch == EPOCH || opened.epoch == NEXT_EPOCH,
            "{opened:?}"
        );
    }
    // Taken again and synced: durable whatever the crash kept.
    h.s().set_epoch(NEXT_EPOCH).unwrap();
    h.s().sync(mark_in(NEXT_EPOCH, 1)).unwrap();
    let opened = h.reopen_crash();
    assert_eq!(opened.epoch, NEXT_EPOCH);
    assert_eq!(opened.mark, Some(mark_in(NEXT_EPOCH, 1)));
    assert_eq!(h.get(b"ev/1"), Some(b"e".to_vec()));
}

fn suite_newer_format<S: Store>(h: &mut Harness<S>) {
    h.put(b"k", b"v");
    h.s().sync(mark(1)).unwrap();
    let store = h.store.take().unwrap();
    match (h.set_format)(store, FORMAT_VERSION + 1) {
        Err(e @ StoreError::NewerFormat { .. }) => {
            let StoreError::NewerFormat {
                found, supported, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
            assert!(e.reason_zh().contains("升级"), "{}", e.reason_zh());
        }
        Err(other) => panic!("expected NewerFormat, got {other}"),
        Ok(_) => panic!("a newer format opened"),
    }
}

fn suite_corrupt_value<S: Store>(h: &mut Harness<S>) {
    h.put(b"a", b"fine");
    h.put(b"b", b"will rot");
    h.put(b"c", b"fine");
    h.s().sync(mark(3)).unwrap();
    let store = h.store.take().unwrap();
    h.store = Some((h.corrupt_value)(store, b"b"));
    assert!(is_corrupt(h.s().get(b"b")));
    assert!(is_corrupt(h.s().scan(b"", None, 10)));
    assert!(is_corrupt(h.s().scan(b"b", None, 10)));
    assert!(is_corrupt(h.s().last(b"b")));
    assert_eq!(
        h.get(b"a"),
        Some(b"fine".to_vec()),
        "other values still read"
    );
    assert_eq!(h.get(b"c"), Some(b"fine".to_vec()));
    assert_eq!(h.s().scan(b"c", None, 10).unwrap().len(), 1);
    assert_eq!(h.s().scan(b"", None, 1).unwrap().len(), 1, "stops before b");
    // Overwriting the rotten value heals it.
    h.put(b"b", b"new");
    assert_eq!(h.get(b"b"), Some(b"new".to_vec()));
}

/// Whether `r` is `Corrupt` naming key `b` (0x62).
fn is_corrupt<T>(r: Result<T, StoreError>) -> bool {
    match r {
        Err(StoreError::Corrupt { detail, .. }) => {
            assert!(
                detail.contains("62"),
                "detail names the key in hex: {detail}"
            );
            true
        }
        _ => false,
    }
}

fn suite_size<S: Store>(h: &mut Harness<S>) {
    let before = h.s().size_on_disk().unwrap();
    let mut batch = Batch::default();
    for i in 0..200u32 {
        batch.put(format!("s/{i}").into_bytes(), vec![i as u8; 1000]);
    }
    h.s().apply(&batch).unwrap();
    h.s().sync(mark(1)).unwrap();
    let after = h.s().size_on_disk().unwrap();
    assert!(
        after >= before + 100_000,
        "size grew from {before} to {after}"
    );
}

fn suite_readers_never_see_half_a_batch<S: Store + Sync>(h: &mut Harness<S>) {
    const BATCHES: u32 = 300;
    let store = h.s();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let entries = store.scan(b"p/", None, 10).unwrap();
                let values: Vec<&Vec<u8>> = entries.iter().map(|(_, v)| v).collect();
                assert!(
                    values.is_empty()
                        || (values.len() == 3 && values.iter().all(|v| *v == values[0])),
                    "a reader saw half a batch: {entries:?}"
                );
                reads += 1;
            }
            reads
        });
        for i in 0..BATCHES {
            let mut batch = Batch::default();
            for k in ["p/a", "p/b", "p/c"] {
                batch.put(k.as_bytes().to_vec(), i.to_le_bytes().to_vec());
            }
            store.apply(&batch).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(h.get(b"p/c"), Some((BATCHES - 1).to_le_bytes().to_vec()));
}

// ---- the model only ---------------------------------------------------------------------

#[test]
fn mem_old_handles_fail_after_crash() {
    let (store, _) = MemStore::new(EPOCH);
    let keep = store.clone();
    let mut batch = Batch::default();
    batch.put(b"k".to_vec(), b"v".to_vec());
    store.apply(&batch).unwrap();
    assert_eq!(keep.get(b"k").unwrap(), Some(b"v".to_vec()), "shared state");
    let (restarted, opened) = keep.crash();
    assert_eq!(opened.mark, None);
    assert!(matches!(store.get(b"k"), Err(StoreError::Engine { .. })));
    assert!(store.apply(&batch).is_err());
    assert!(store.sync(mark(1)).is_err());
    assert!(store.set_epoch(NEXT_EPOCH).is_err());
    assert_eq!(restarted.get(b"k").unwrap(), None);
}

/// A clean reopen keeps an unsynced epoch as it keeps unsynced writes; a crash after it
/// loses both.
#[test]
fn mem_unsynced_epoch_kept_by_clean_reopen_lost_by_crash() {
    let (store, _) = MemStore::new(EPOCH);
    store.sync(mark(0)).unwrap();
    store.set_epoch(NEXT_EPOCH).unwrap();
    let (store, opened) = store.reopen().unwrap();
    assert_eq!(opened.epoch, NEXT_EPOCH);
    assert_eq!(opened.mark, Some(mark(0)));
    let (_, opened) = store.crash();
    assert_eq!(opened.epoch, EPOCH);
    assert_eq!(opened.mark, Some(mark(0)));
}

// ---- sled on a real disk -------------------------------------------------------------

struct SledDir {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl SledDir {
    fn new() -> SledDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        SledDir { _tmp: tmp, dir }
    }

    fn hwm(&self) -> PathBuf {
        SledStore::hwm_path(&self.dir).unwrap()
    }

    /// A store holding `n` synced entries `k/<i>` → `value_for`, closed.
    fn with_synced(n: u32, last_mark: Mark) -> SledDir {
        let d = SledDir::new();
        let (store, _) = sled_open(&d.dir).unwrap();
        for i in 0..n {
            let k = format!("k/{i:04}").into_bytes();
            let mut batch = Batch::default();
            batch.put(k.clone(), value_for(&k));
            store.apply(&batch).unwrap();
            store.sync(mark(u64::from(i))).unwrap();
        }
        store.sync(last_mark).unwrap();
        drop(store);
        d
    }
}

fn corrupt_detail(r: Result<(SledStore, Opened), StoreError>) -> String {
    match r {
        Err(StoreError::Corrupt { detail, .. }) => detail,
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, opened)) => panic!("opened: {opened:?}"),
    }
}

/// A `.hwm` slot as the layout in `sled_store`'s docs describes it: generation and mark.
fn read_slot(slot: &[u8]) -> (u64, Option<Mark>) {
    assert_eq!(slot.len(), HWM_SLOT_LEN);
    assert_eq!(&slot[0..4], b"YHWM");
    let crc = u32::from_le_bytes(slot[64..68].try_into().unwrap());
    assert_eq!(crc, crc32fast::hash(&slot[..64]), "slot checksum");
    assert_eq!(&slot[13..16], &[0, 0, 0]);
    let u64_at = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().unwrap());
    let mark = match slot[12] {
        0 => {
            assert!(
                slot[16..64].iter().all(|b| *b == 0),
                "an empty slot is zeros"
            );
            None
        }
        1 => Some(Mark {
            epoch: u64_at(16),
            position: u64_at(24),
            digest: slot[32..64].try_into().unwrap(),
        }),
        other => panic!("has_mark byte {other}"),
    };
    (u64_at(4), mark)
}

/// Both slots of a `.hwm` file.
fn read_slots(bytes: &[u8]) -> [(u64, Option<Mark>); 2] {
    [
        read_slot(&bytes[..HWM_SLOT_LEN]),
        read_slot(&bytes[HWM_SLOT_STRIDE..HWM_SLOT_STRIDE + HWM_SLOT_LEN]),
    ]
}

#[test]
fn sled_hwm_is_a_sibling_file() {
    let d = SledDir::with_synced(1, mark(5));
    assert_eq!(d.hwm(), d.dir.with_file_name("store.hwm"));
    let bytes = fs::read(d.hwm()).unwrap();
    assert_eq!(HWM_SLOT_LEN, 68);
    assert_eq!(bytes.len(), HWM_SLOT_STRIDE + HWM_SLOT_LEN);
    // Syncs with marks 0 (the loop) then 5: generation 1 at HWM_SLOT_STRIDE, 2 at 0.
    assert_eq!(read_slots(&bytes), [(2, Some(mark(5))), (1, Some(mark(0)))]);
    let fresh = SledDir::new();
    drop(sled_open(&fresh.dir).unwrap());
    let bytes = fs::read(fresh.hwm()).unwrap();
    assert_eq!(read_slots(&bytes), [(0, None), (0, None)]);
    assert!(SledStore::hwm_path(Path::new("/")).is_err());
    assert_eq!(
        SledStore::hwm_path(Path::new("/var/lib/yimen/store/")).unwrap(),
        Path::new("/var/lib/yimen/store.hwm")
    );
}

#[test]
fn sled_garbled_or_truncated_hwm_is_corrupt() {
    let d = SledDir::with_synced(2, mark(5));
    let good = fs::read(d.hwm()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", good[..20].to_vec()),
        ("garbled", good.iter().map(|b| b ^ 0xff).collect()),
        ("zeroed", vec![0; good.len()]),
        ("both slots bit-flipped", {
            let mut g = good.clone();
            g[20] ^= 1;
            g[HWM_SLOT_STRIDE + 20] ^= 1;
            g
        }),
    ];
    for (name, bytes) in cases {
        fs::write(d.hwm(), &bytes).unwrap();
        let detail = corrupt_detail(sled_open(&d.dir));
        assert!(detail.contains("high-water mark"), "{name}: {detail}");
    }
    fs::write(d.hwm(), &good).unwrap();
    assert_eq!(sled_open(&d.dir).unwrap().1.mark, Some(mark(5)));
}

#[test]
fn sled_torn_newest_slot_falls_back_to_the_previous_mark() {
    // Syncs with marks 0, 1 (the loop) then 5: generations 1, 2, 3; 3 lives in the slot at
    // HWM_SLOT_STRIDE, 2 (mark 1) at 0.
    let d = SledDir::with_synced(2, mark(5));
    let mut bytes = fs::read(d.hwm()).unwrap();
    bytes[HWM_SLOT_STRIDE + 30] ^= 0x10;
    fs::write(d.hwm(), &bytes).unwrap();
    let (store, opened) = sled_open(&d.dir).unwrap();
    assert_eq!(opened.mark, Some(mark(1)), "the mark before the torn write");
    // The next sync (generation 3 again) rewrites the torn slot, not the survivor.
    store.sync(mark(6)).unwrap();
    drop(store);
    let after = fs::read(d.hwm()).unwrap();
    assert_eq!(
        after[..HWM_SLOT_LEN],
        bytes[..HWM_SLOT_LEN],
        "survivor kept"
    );
    assert_eq!(sled_open(&d.dir).unwrap().1.mark, Some(mark(6)));
}

#[test]
fn sled_missing_hwm_with_data_is_corrupt() {
    let d = SledDir::with_synced(1, mark(5));
    fs::remove_file(d.hwm()).unwrap();
    let detail = corrupt_detail(sled_open(&d.dir));
    assert!(detail.contains("high-water mark missing"), "{detail}");
}

#[test]
fn sled_missing_hwm_without_data_is_recreated() {
    let d = SledDir::new();
    drop(sled_open(&d.dir).unwrap());
    fs::remove_file(d.hwm()).unwrap();
    let (_, opened) = sled_open(&d.dir).unwrap();
    assert_eq!(
        opened,
        Opened {
            epoch: EPOCH,
            mark: None,
            created: false
        }
    );
    assert!(d.hwm().exists());
}

/// The store's directory is lost, its mark kept: open creates a fresh store and reports the
/// mark (the register decides); the mark file is left as it is until the first sync, which
/// continues its generations.
#[test]
fn sled_lost_store_beside_a_mark_opens_fresh_with_that_mark() {
    let d = SledDir::with_synced(1, mark(5));
    let old_file = fs::read(d.hwm()).unwrap();
    fs::remove_dir_all(&d.dir).unwrap();
    let fresh = SledOptions {
        new_epoch: NEXT_EPOCH.0,
        ..sled_options()
    };
    let (store, opened) = SledStore::open(&d.dir, &fresh).unwrap();
    assert_eq!(
        opened,
        Opened {
            epoch: NEXT_EPOCH,
            mark: Some(mark(5)),
            created: true
        }
    );
    assert_eq!(store.scan(b"", None, 10).unwrap(), vec![]);
    assert_eq!(fs::read(d.hwm()).unwrap(), old_file, "mark file untouched");

    // A crash before the first sync: an existing, empty store beside the old mark.
    drop(store);
    let (store, opened) = sled_open(&d.dir).unwrap();
    assert_eq!(
        opened,
        Opened {
            epoch: NEXT_EPOCH,
            mark: Some(mark(5)),
            created: false
        }
    );
    assert_eq!(fs::read(d.hwm()).unwrap(), old_file, "mark file untouched");

    // Refilled and synced: the new mark, in the next generation (3, the slot at
    // HWM_SLOT_STRIDE), the old mark (generation 2) kept in the other slot.
    let mut batch = Batch::default();
    batch.put(b"k/0000".to_vec(), value_for(b"k/0000"));
    store.apply(&batch).unwrap();
    store.sync(mark_in(NEXT_EPOCH, 1)).unwrap();
    drop(store);
    let bytes = fs::read(d.hwm()).unwrap();
    assert_eq!(
        read_slots(&bytes),
        [(2, Some(mark(5))), (3, Some(mark_in(NEXT_EPOCH, 1)))]
    );
    let (store, opened) = sled_open(&d.dir).unwrap();
    assert_eq!(
        opened,
        Opened {
            epoch: NEXT_EPOCH,
            mark: Some(mark_in(NEXT_EPOCH, 1)),
            created: false
        }
    );
    assert_eq!(store.get(b"k/0000").unwrap(), Some(value_for(b"k/0000")));
}

/// An emptied store directory beside its mark is the same case as a lost one.
#[test]
fn sled_emptied_store_beside_a_mark_opens_fresh_with_that_mark() {
    let d = SledDir::with_synced(2, mark(7));
    for entry in fs::read_dir(&d.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
    let (_, opened) = sled_open(&d.dir).unwrap();
    assert!(opened.created);
    assert_eq!(opened.mark, Some(mark(7)));
}

/// `set_epoch` + sync: the next open reports the new epoch, and the mark carries it.
#[test]
fn sled_new_epoch_is_on_disk_after_sync() {
    let d = SledDir::with_synced(2, mark(2));
    let (store, _) = sled_open(&d.dir).unwrap();
    store.set_epoch(NEXT_EPOCH).unwrap();
    store.sync(mark_in(NEXT_EPOCH, 2)).unwrap();
    drop(store);
    let bytes = fs::read(d.hwm()).unwrap();
    let newest = read_slots(&bytes)
        .into_iter()
        .max_by_key(|(generation, _)| *generation)
        .unwrap();
    assert_eq!(newest.1, Some(mark_in(NEXT_EPOCH, 2)));
    {
        let db = raw_sled(&d.dir);
        let raw = db.get(EPOCH_KEY).unwrap().expect("epoch record");
        assert_eq!(raw.to_vec(), framed(&NEXT_EPOCH.0.to_le_bytes()));
    }
    let (_, opened) = sled_open(&d.dir).unwrap();
    assert_eq!(opened.epoch, NEXT_EPOCH);
    assert_eq!(opened.mark, Some(mark_in(NEXT_EPOCH, 2)));
}

#[test]
fn sled_epoch_is_derived_when_not_given() {
    let d = SledDir::new();
    let (_, opened) = SledStore::open(&d.dir, &SledOptions::default()).unwrap();
    assert_ne!(opened.epoch, Epoch(0));
    assert!(opened.created);
    assert_eq!(
        SledOptions::default().cache_capacity_bytes,
        16 * 1024 * 1024
    );
}

/// A crash in the middle of a multi-op batch: the journal record and the first ops reached
/// the log, the rest did not. Open completes the batch.
#[test]
fn sled_interrupted_batch_is_completed_at_open() {
    let d = SledDir::with_synced(3, mark(3));
    let mut batch = Batch::default();
    for i in 0..10 {
        batch.put(format!("j/{i}").into_bytes(), format!("v{i}").into_bytes());
    }
    batch.delete(b"k/0001".to_vec());
    batch.put(b"k/0002".to_vec(), b"over".to_vec());
    {
        let db = raw_sled(&d.dir);
        db.insert(BATCH_JOURNAL_KEY, journal_record(&batch))
            .unwrap();
        db.insert(b"j/0", framed(b"v0")).unwrap();
        db.insert(b"j/1", framed(b"v1")).unwrap();
        db.flush().unwrap();
    }
    let (store, opened) = sled_open(&d.dir).unwrap();
    assert_eq!(opened.mark, Some(mark(3)));
    let j = store.scan(b"j/", None, 100).unwrap();
    assert_eq!(j.len(), 10, "the whole batch");
    assert_eq!(j[9], (b"j/9".to_vec(), b"v9".to_vec()));
    assert_eq!(store.get(b"k/0001").unwrap(), None);
    assert_eq!(store.get(b"k/0002").unwrap(), Some(b"over".to_vec()));
    assert_eq!(store.get(b"k/0000").unwrap(), Some(value_for(b"k/0000")));
    drop(store);
    let db = raw_sled(&d.dir);
    assert_eq!(db.get(BATCH_JOURNAL_KEY).unwrap(), None, "journal removed");
}

#[test]
fn sled_garbled_batch_journal_is_corrupt() {
    let d = SledDir::with_synced(1, mark(1));
    {
        let db = raw_sled(&d.dir);
        let mut batch = Batch::default();
        batch.put(b"a".to_vec(), b"1".to_vec());
        batch.put(b"b".to_vec(), b"2".to_vec());
        let mut record = journal_record(&batch);
        record[6] ^= 1;
        db.insert(BATCH_JOURNAL_KEY, record).unwrap();
        db.flush().unwrap();
    }
    let detail = corrupt_detail(sled_open(&d.dir));
    assert!(detail.contains("checksum"), "{detail}");
    {
        let db = raw_sled(&d.dir);
        let mut batch = Batch::default();
        batch.put(b"a".to_vec(), b"1".to_vec());
        let record = journal_record(&batch);
        // The checksum right, the contents cut short.
        db.insert(BATCH_JOURNAL_KEY, framed(&record[4..record.len() - 1]))
            .unwrap();
        db.flush().unwrap();
    }
    let detail = corrupt_detail(sled_open(&d.dir));
    assert!(detail.contains("malformed"), "{detail}");
}

/// All byte offsets of `needle` in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn sled_flipped_byte_on_disk_is_never_returned_altered() {
    let marker = b"MARKER-5f2c9e-the-value-that-rots-on-disk".to_vec();
    let d = SledDir::new();
    let (store, _) = sled_open(&d.dir).unwrap();
    let mut batch = Batch::default();
    batch.put(b"before".to_vec(), b"fine".to_vec());
    batch.put(b"rot".to_vec(), marker.clone());
    store.apply(&batch).unwrap();
    store.sync(mark(1)).unwrap();
    drop(store);

    let db_file = d.dir.join("db");
    let mut bytes = fs::read(&db_file).unwrap();
    let at = find_all(&bytes, &marker);
    assert!(!at.is_empty(), "the marker is in sled's log");
    for &i in &at {
        bytes[i + 10] ^= 0x01;
    }
    fs::write(&db_file, &bytes).unwrap();

    match sled_open(&d.dir) {
        Err(StoreError::Corrupt { detail, .. }) => {
            eprintln!("flipped byte: open refused: {detail}")
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((store, opened)) => {
            assert_eq!(opened.mark, Some(mark(1)), "the mark is intact");
            let read = store.get(b"rot");
            eprintln!("flipped byte ({} copies): open ok, read {read:?}", at.len());
            match read {
                Err(StoreError::Corrupt { .. }) | Ok(None) => {}
                Ok(Some(v)) => assert_eq!(v, marker, "altered value returned"),
                Err(other) => panic!("unexpected {other}"),
            }
        }
    }
}

/// Snapshot files sled wrote in `dir` (sled 0.34 writes one when an open advanced the log).
fn snapshots(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect()
}

/// A store with 40 synced entries and mark 40, closed; with `reopens` extra clean reopens
/// (the second open writes sled's first snapshot).
fn synced_40(reopens: usize) -> SledDir {
    let d = SledDir::with_synced(40, mark(40));
    for _ in 0..reopens {
        drop(sled_open(&d.dir).unwrap());
    }
    d
}

/// Truncates sled's log at several lengths, with and without a snapshot. Observed with
/// sled 0.34.7: without a snapshot, open succeeds holding a prefix of the data (sled takes
/// the cut for a torn tail) or, cut before our meta records, finds an empty store beside a
/// mark (a new store, reported with the mark); with a snapshot, open fails with sled's own
/// corruption error. Either way no value comes back altered and the mark survives for the
/// layer above to compare.
#[test]
fn sled_truncated_log_opens_short_or_fails_clearly() {
    for reopens in [0, 2] {
        for cut in [1usize, 100, 1000, 3000, usize::MAX] {
            let d = synced_40(reopens);
            assert_eq!(snapshots(&d.dir).is_empty(), reopens == 0);
            let db_file = d.dir.join("db");
            let full = fs::read(&db_file).unwrap();
            // With a snapshot the log is a whole zero-padded segment: cut from the data's end.
            let data_end = full.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            let keep = data_end.saturating_sub(cut);
            fs::write(&db_file, &full[..keep]).unwrap();
            match sled_open(&d.dir) {
                Err(e) => {
                    eprintln!(
                        "snapshot {}: log cut to {keep}/{}: {e}",
                        reopens > 0,
                        full.len()
                    );
                    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
                }
                Ok((store, opened)) => {
                    assert_eq!(opened.mark, Some(mark(40)), "the mark survives");
                    let mut present = 0;
                    for i in 0..40 {
                        let k = format!("k/{i:04}").into_bytes();
                        match store.get(&k) {
                            Ok(Some(v)) => {
                                assert_eq!(v, value_for(&k), "altered value");
                                present += 1;
                            }
                            Ok(None) | Err(StoreError::Corrupt { .. }) => {}
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                    eprintln!(
                        "snapshot {}: log cut to {keep}/{}: opened, {present}/40 values, mark 40",
                        reopens > 0,
                        full.len()
                    );
                    // A prefix, as after a torn tail: never a hole in the middle.
                    let keys = store.scan(b"k/", None, 100).unwrap();
                    assert_eq!(keys.len(), present);
                    for (i, (k, _)) in keys.iter().enumerate() {
                        assert_eq!(k, format!("k/{i:04}").as_bytes());
                    }
                }
            }
        }
    }
}

/// sled 0.34 panics on open (an assertion in its segment accounting) when its snapshot is
/// damaged in a way its checksum does not catch; we report `Corrupt` instead.
#[test]
fn sled_panic_on_open_is_caught() {
    let d = synced_40(2);
    let snap = snapshots(&d.dir).pop().expect("a snapshot");
    let mut bytes = fs::read(&snap).unwrap();
    // Layout: serialized snapshot | length u64 | crc32 of the serialized part. Byte 2 lies in
    // the stable LSN.
    let body = bytes.len() - 12;
    bytes[2] ^= 0xff;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body + 8..].copy_from_slice(&crc.to_le_bytes());
    fs::write(&snap, &bytes).unwrap();
    let detail = corrupt_detail(sled_open(&d.dir));
    assert!(detail.contains("panicked"), "{detail}");
}
