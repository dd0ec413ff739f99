//! `yimen-hub backup` and `yimen-hub restore`: the root hub has no parent to refill it, so it
//! is restored from a backup (docs/protocol.md "Epochs and restore").
//!
//! Invariants: the backup is made by the running hub itself (its node thread, the store's one
//! writer, after a group commit: `yimen_node::backup`), never by copying files of an open
//! store; restore is the node's (`yimen_node::server::restore`), so a restored hub takes a new
//! epoch at its next start and its children re-send their tails and the root-written events
//! they hold.

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use yimen_node::cli::Reported;

/// `yimen-hub backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the copy goes: a directory that must not exist yet (its parent must), on the
    /// hub's own box; its high-water mark goes beside it (`<out>.hwm`).
    #[arg(long)]
    pub out: PathBuf,
    /// The hub's clerk/admin API (loopback).
    #[arg(long, env = "YIMEN_HUB", default_value = yimen_node::cli::NODE_DEFAULT)]
    pub hub: String,
}

/// `yimen-hub restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The copy (a directory written by `yimen-hub backup`; its `.hwm` sibling is copied too).
    #[arg(long)]
    pub from: PathBuf,
    /// Where the hub's store goes (must not exist: stop the hub, move the old one aside).
    #[arg(long)]
    pub store: PathBuf,
}

/// Asks the running hub for a consistent copy of its store.
pub fn backup(args: BackupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = rt.block_on(yimen_node::backup::request(&args.hub, &args.out))?;
    writeln!(
        out,
        "已将枢纽数据备份到 {}：{} 条记录，{} 字节，最后事件位置 {}，纪元 {:016x}；备份期间暂停受理 {} 毫秒。",
        reply.out, reply.entries, reply.bytes, reply.position, reply.epoch, reply.paused_ms
    )?;
    writeln!(
        out,
        "backed up to {} ({} entries, {} bytes, last position {}, epoch {:016x}, paused {} ms)",
        reply.out, reply.entries, reply.bytes, reply.position, reply.epoch, reply.paused_ms
    )?;
    Ok(())
}

/// Puts a backup in place as the hub's store (the hub stopped).
pub fn restore(args: RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let bytes = yimen_node::server::restore(&args.from, &args.store)
        .map_err(|e| anyhow!(Reported(format!("restore: {e}"))))?;
    writeln!(
        out,
        "已将 {} 恢复到 {}（{bytes} 字节）。枢纽下次启动时将启用新纪元，下级节点连通后会补发备份之后的数据。",
        args.from.display(),
        args.store.display()
    )?;
    Ok(())
}
