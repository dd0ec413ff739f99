//! Backups of a running node's store (`yimen-hub backup`): the root hub has no parent to
//! refill it, so it is restored from one (docs/protocol.md "Epochs and restore").
//!
//! How: the node thread (the store's one writer) makes everything applied durable, then,
//! before it takes its next operation, copies every key and value through the `Store` trait
//! into a fresh sled store (`SledStore::open` of a new directory, one `apply` per entry), and
//! `sync`s it with the mark of the source's last event, under the source's epoch. Not a copy
//! of sled's files: sled 0.34 offers no online backup (its maintainer points to
//! `Db::export`/`import`), and a file copy of an open sled is a crash image, which sled can
//! open "cleanly" with data gone (DEPENDENCIES.md). Going through our own store also checks
//! every value's checksum on the way and compacts the copy.
//!
//! Invariants:
//! * Consistent: nothing is applied to the source while it is copied (the node thread is
//!   paused; clerks and links queue behind it), and the copy holds exactly the durable state
//!   at one point, with a mark naming its last event.
//! * All or nothing: the copy is built under `<out>.partial` (and `<out>.partial.hwm`) and
//!   renamed to `<out>` (and `<out>.hwm`) once synced; `<out>` appears only when complete
//!   (the mark is renamed first, the directory last, then their parent is fsynced). A failed
//!   copy removes its partial files and leaves the node serving.
//! * Never overwrites: `out`, `<out>.hwm` and any leftover partial must not exist.
//! * A failure writing the copy never stops the node; only a failed sync of the source does
//!   (as for any group commit: the group's own sync fails too).

use std::path::{Path, PathBuf};
use std::time::Instant;

use tonic::{Request, Response, Status};

use yimen_proto::pb;

use crate::node::{LinkOp, LinkOpError, LinkReply, NodeHandle};
use crate::register::Register;
use crate::store::sled_store::{SledOptions, SledStore};
use crate::store::{Batch, Mark, Store, StoreError};

/// Entries read from the source per scan.
pub const COPY_PAGE_ENTRIES: usize = 4096;
/// The copy's sled page cache: it is written once, in key order, and closed.
pub const COPY_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    pub out: PathBuf,
    /// The source's epoch (the copy's store epoch and mark carry it).
    pub epoch: u64,
    /// The position of the copy's last event (its mark), 0 if none.
    pub position: u64,
    pub entries: u64,
    pub bytes: u64,
    /// How long the node thread paused for the copy.
    pub paused_ms: u64,
}

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target is refused (relative, exists, no parent); nothing was written.
    #[error("backup target {path}: {reason}")]
    Target { path: String, reason: String },
    /// Reading the source or writing the copy failed; the partial copy was removed.
    #[error("backup: {0}")]
    Store(#[from] StoreError),
    #[error("backup: {0}")]
    Register(#[from] crate::register::RegisterError),
    #[error("backup {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// For the operator, in Chinese.
    pub fn reason_zh(&self) -> String {
        match self {
            BackupError::Target { .. } => {
                "备份目录不可用：须为本机上尚不存在的绝对路径，且其上级目录已存在".to_owned()
            }
            BackupError::Store(_) | BackupError::Register(_) | BackupError::Io { .. } => {
                "备份失败（未完成的副本已删除），请检查备份盘的空间和权限后重试".to_owned()
            }
        }
    }
}

fn target_err(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Target {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> BackupError {
    BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `<out><suffix>`, beside `out`.
fn sibling(out: &Path, suffix: &str) -> Result<PathBuf, BackupError> {
    let name = out
        .file_name()
        .ok_or_else(|| target_err(out, "names no directory"))?;
    let mut name = name.to_owned();
    name.push(suffix);
    Ok(out.with_file_name(name))
}

/// The paths a backup into `out` writes, checked free: (`out`, `<out>.hwm`, partial
/// directory, partial mark).
fn targets(out: &Path) -> Result<[PathBuf; 4], BackupError> {
    if !out.is_absolute() {
        return Err(target_err(
            out,
            "must be absolute (it is written by the node, on its own box)",
        ));
    }
    if !out.parent().is_some_and(Path::is_dir) {
        return Err(target_err(out, "its parent directory does not exist"));
    }
    let paths = [
        out.to_owned(),
        sibling(out, ".hwm")?,
        sibling(out, ".partial")?,
        sibling(out, ".partial.hwm")?,
    ];
    for p in &paths {
        // `symlink_metadata`: a dangling link is in the way too.
        if p.symlink_metadata().is_ok() {
            return Err(target_err(
                out,
                format!(
                    "{} exists (a backup never overwrites; move it aside)",
                    p.display()
                ),
            ));
        }
    }
    Ok(paths)
}

/// Copies every entry of `source` into a new sled store at `out` (absolute, not existing),
/// synced with `mark` under the epoch `mark.epoch`. The caller guarantees nothing writes
/// `source` meanwhile. Returns (entries, bytes).
pub fn export<S: Store>(source: &S, mark: Mark, out: &Path) -> Result<(u64, u64), BackupError> {
    let [out, out_hwm, partial, partial_hwm] = targets(out)?;
    let copied = copy_into(source, mark, &partial);
    let finished = copied.and_then(|counts| {
        // The mark first, the directory last: `out` exists only with its mark beside it.
        std::fs::rename(&partial_hwm, &out_hwm).map_err(|e| io_err(&partial_hwm, e))?;
        std::fs::rename(&partial, &out).map_err(|e| io_err(&partial, e))?;
        let parent = out.parent().unwrap_or(Path::new("/"));
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(parent, e))?;
        Ok(counts)
    });
    if finished.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_file(&partial_hwm);
    }
    finished
}

fn copy_into<S: Store>(source: &S, mark: Mark, dir: &Path) -> Result<(u64, u64), BackupError> {
    let options = SledOptions {
        cache_capacity_bytes: COPY_CACHE_BYTES,
        new_epoch: mark.epoch,
    };
    let (copy, opened) = SledStore::open(dir, &options)?;
    if !opened.created || opened.epoch.0 != mark.epoch {
        return Err(target_err(
            dir,
            "the copy did not open as a new store of the source's epoch",
        ));
    }
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut after: Option<Vec<u8>> = None;
    loop {
        // Every key: the empty prefix (sled's own records are not returned, and the copy has
        // its own). Values come back checksum-verified.
        let page = source.scan(b"", after.as_deref(), COPY_PAGE_ENTRIES)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (key, value) in page {
            entries += 1;
            bytes += (key.len() + value.len()) as u64;
            // One entry a batch: a plain insert (a multi-op batch would journal it twice);
            // the copy is all or nothing by its rename, not by its batches.
            let mut b = Batch::default();
            b.put(key, value);
            copy.apply(&b)?;
        }
    }
    copy.sync(mark)?;
    Ok((entries, bytes))
}

/// A consistent copy of the register's store into `out`: everything applied so far is made
/// durable (a group commit), then copied before the node thread takes its next operation.
/// A failed sync here fails the group's own sync too, which stops the node.
pub fn copy<S: Store>(reg: &mut Register<S>, out: &Path) -> Result<Copied, BackupError> {
    // Refuse a bad target before pausing anything.
    targets(out)?;
    let started = Instant::now();
    reg.sync()?;
    let position = reg.last_position();
    let digest = match position {
        0 => [0; 32],
        p => {
            let raw = reg.raw_event(p)?.ok_or_else(|| {
                BackupError::Store(StoreError::Corrupt {
                    path: format!("node {}", reg.node),
                    detail: format!("event {p} missing from the log"),
                })
            })?;
            *blake3::hash(&raw).as_bytes()
        }
    };
    let mark = Mark {
        epoch: reg.epoch.0,
        position,
        digest,
    };
    let (entries, bytes) = export(reg.store(), mark, out)?;
    let paused_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(node = %reg.node, out = %out.display(), epoch = %reg.epoch, position, entries, bytes, paused_ms, "store backed up");
    Ok(Copied {
        out: out.to_owned(),
        epoch: mark.epoch,
        position,
        entries,
        bytes,
        paused_ms,
    })
}

/// The `Backup` admin service (loopback listener only, like the clerk API).
#[derive(Clone)]
pub struct BackupService {
    node: NodeHandle,
}

impl BackupService {
    pub fn new(node: NodeHandle) -> Self {
        BackupService { node }
    }
}

fn status_of(e: &BackupError) -> Status {
    let text = format!("{e}（{}）", e.reason_zh());
    match e {
        BackupError::Target { .. } => Status::failed_precondition(text),
        _ => Status::internal(text),
    }
}

#[tonic::async_trait]
impl pb::backup_server::Backup for BackupService {
    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupReply>, Status> {
        let out = PathBuf::from(request.into_inner().out);
        // Checked here too, so a bad request never reaches the node thread's queue.
        targets(&out).map_err(|e| status_of(&e))?;
        let reply = self.node.link(LinkOp::Backup { out: out.clone() }).await;
        match reply {
            Ok(LinkReply::Backup(c)) => Ok(Response::new(pb::BackupReply {
                out: c.out.display().to_string(),
                epoch: c.epoch,
                position: c.position,
                entries: c.entries,
                bytes: c.bytes,
                paused_ms: c.paused_ms,
            })),
            Ok(_) => Err(Status::internal("the node thread answered something else")),
            Err(LinkOpError::Backup(e)) => Err(status_of(&e)),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// A backup by the node library in this process (a test or a tool holding the handle).
pub async fn backup(node: &NodeHandle, out: &Path) -> Result<Copied, LinkOpError> {
    match node
        .link(LinkOp::Backup {
            out: out.to_owned(),
        })
        .await?
    {
        LinkReply::Backup(c) => Ok(c),
        _ => Err(LinkOpError::Stopped(
            "the node thread answered something else".to_owned(),
        )),
    }
}

/// `backup`: asks the node whose admin API is at `addr` (loopback) to copy its store into
/// `out` (made absolute against this process's directory: the node writes it, on the same
/// box). What `yimen-hub backup` runs.
pub async fn request(addr: &str, out: &Path) -> anyhow::Result<pb::BackupReply> {
    let out = std::path::absolute(out)
        .map_err(|e| anyhow::anyhow!("backup target {}: {e}", out.display()))?;
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let Some(out) = out.to_str().map(str::to_owned) else {
        anyhow::bail!("backup target {}: not UTF-8", out.display());
    };
    let mut client = pb::backup_client::BackupClient::connect(url.clone())
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot reach the node at {url} (无法连接节点，请确认节点已启动): {e}")
        })?;
    let reply = client
        .backup(pb::BackupRequest { out })
        .await
        .map_err(|s| {
            anyhow::anyhow!(crate::cli::Reported(format!(
                "{}（{:?}）",
                s.message(),
                s.code()
            )))
        })?;
    Ok(reply.into_inner())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure"
)]
mod tests {
    use super::*;
    use crate::store::Epoch;
    use crate::store::mem::MemStore;

    fn source() -> (MemStore, Mark) {
        let (store, _) = MemStore::new(Epoch(7));
        for i in 0u32..10_000 {
            let mut b = Batch::default();
            b.put(
                format!("e/{i:08}").into_bytes(),
                vec![b'x'; (i % 97) as usize],
            );
            store.apply(&b).unwrap();
        }
        let mark = Mark {
            epoch: 7,
            position: 9_999,
            digest: [3; 32],
        };
        store.sync(mark).unwrap();
        (store, mark)
    }

    #[test]
    fn the_copy_is_the_source_with_its_mark_and_epoch() {
        let (store, mark) = source();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy");
        let (entries, _) = export(&store, mark, &out).unwrap();
        assert_eq!(entries, 10_000);
        assert!(!sibling(&out, ".partial").unwrap().exists());
        let (copy, opened) = SledStore::open(&out, &SledOptions::default()).unwrap();
        assert_eq!(opened.epoch, Epoch(7));
        assert_eq!(opened.mark, Some(mark));
        assert!(!opened.created);
        let all = |s: &dyn Fn(Option<&[u8]>) -> Vec<crate::store::Entry>| {
            let mut out = Vec::new();
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = s(after.as_deref());
                let Some((k, _)) = page.last() else { break };
                after = Some(k.clone());
                out.extend(page);
            }
            out
        };
        let from = all(&|a| store.scan(b"", a, 1000).unwrap());
        let to = all(&|a| copy.scan(b"", a, 1000).unwrap());
        assert_eq!(from, to);
    }

    #[test]
    fn a_backup_never_overwrites_and_needs_an_absolute_path() {
        let (store, mark) = source();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy");
        std::fs::write(sibling(&out, ".hwm").unwrap(), b"someone's").unwrap();
        let refused = export(&store, mark, &out).unwrap_err();
        assert!(matches!(refused, BackupError::Target { .. }), "{refused}");
        assert!(!out.exists());
        assert_eq!(
            std::fs::read(sibling(&out, ".hwm").unwrap()).unwrap(),
            b"someone's"
        );
        let relative = export(&store, mark, Path::new("copy")).unwrap_err();
        assert!(matches!(relative, BackupError::Target { .. }), "{relative}");
        let orphan = export(&store, mark, &dir.path().join("no/such/parent")).unwrap_err();
        assert!(matches!(orphan, BackupError::Target { .. }), "{orphan}");
    }
}
