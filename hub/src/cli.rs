//! The `yimen-hub` command line: serving a hub (the node shell with children's links), link
//! status, the deployment's PKI (the county keeps the CA) and the hub's own key. Keys are made
//! where they live; only signing requests travel.

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Parser, Subcommand};

use yimen_node::pki::{self, RevokeTarget};

#[derive(Debug, Parser)]
#[command(
    name = "yimen-hub",
    version,
    about = "Yimen township/county hub (一门 乡镇、县级枢纽)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a hub from its config file (the node's format; `listen` serves children's
    /// links, `parent` dials the hub's own parent) until SIGINT/SIGTERM.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Tests and training only: run the hub's clock this many seconds ahead of the box's
        /// (negative: behind), e.g. to let a 公示 run its course. Never in production.
        #[arg(
            long = "clock-offset-secs",
            default_value_t = 0,
            allow_hyphen_values = true
        )]
        clock_offset_secs: i64,
    },
    /// The desk of a township or county hub (审核, 公示, 审批, 发放 …), over mutual TLS with a
    /// station's or operator's certificate.
    Desk(crate::desk::DeskArgs),
    /// A whole county on loopback in this process, no setup: 衡阳县 with its 医保局
    /// station, two townships, three villages; prints the story and each node's final state.
    Demo {
        /// The date the story happens on (Beijing time).
        #[arg(long, default_value = "2026-09-24", value_parser = parse_date)]
        date: chrono::NaiveDate,
        /// Print one JSON document instead of the story.
        #[arg(long)]
        json: bool,
        /// Keep each node's store in DIR/<node id>/store.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Every link of the hub (to its parent, from its children): state, lag, last success.
    Links {
        /// The hub's clerk/admin API (loopback).
        #[arg(long, env = "YIMEN_HUB", default_value = yimen_node::cli::NODE_DEFAULT)]
        hub: String,
        /// Print one JSON document instead of readable text.
        #[arg(long)]
        json: bool,
    },
    /// Publish a catalog, calendar or topology revision from a TOML file (docs/authoring/)
    /// to every node of the hub's subtree; every problem is reported at once.
    Author(crate::author::AuthorArgs),
    /// A consistent copy of the running hub's store (the root has no parent to refill it).
    Backup(crate::backup::BackupArgs),
    /// Put a backup in place as the hub's store (the hub stopped); it takes a new epoch at its
    /// next start and its children re-send what it lacks.
    Restore(crate::backup::RestoreArgs),
    /// The deployment's certificate authority.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Make this hub's (or a county station's) key and signing request on this box.
    Init {
        /// A hub: its 12-digit division code.
        #[arg(long, conflicts_with = "station")]
        id: Option<String>,
        /// A county department's desk: COUNTY/DEPT, e.g. 430421000000/ybj.
        #[arg(long, conflicts_with = "operator")]
        station: Option<String>,
        /// A person operating a hub (its desk; at a county, its decisions): NODE/NAME, e.g.
        /// 430421105000/wang.li.
        #[arg(long, conflicts_with = "id")]
        operator: Option<String>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long = "trust-domain", default_value = pki::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the CA (key, certificate, empty revocation list) in --dir.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long = "trust-domain", default_value = pki::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
    /// Issue a certificate for a signing request; the identity comes from the request.
    Sign {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke an identity's certificates (spiffe://… URI) or one serial (hex).
    Revoke {
        #[arg(long)]
        ca: PathBuf,
        /// A node id (12 digits), a spiffe:// identity, or a serial in hex.
        target: String,
        #[arg(long = "trust-domain", default_value = pki::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("expected a date as YYYY-MM-DD (日期格式应为 YYYY-MM-DD): {e}"))
}

/// An error already explained; the binary exits non-zero.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
}

pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let fail = |e: String| anyhow!(Reported(e));
    match cli.command {
        Command::Serve {
            config,
            clock_offset_secs: 0,
        } => yimen_node::cli::serve(&config, "yimen-hub")?,
        Command::Serve {
            config,
            clock_offset_secs,
        } => {
            let clock = yimen_node::clock::OffsetClock {
                offset: chrono::Duration::seconds(clock_offset_secs),
            };
            yimen_node::cli::serve_with_clock(&config, "yimen-hub", std::sync::Arc::new(clock))?;
        }
        Command::Desk(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(crate::desk::run(args, out))?;
        }
        Command::Demo { date, json, keep } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(crate::demo::run(crate::demo::Options { date, json, keep }))?;
        }
        Command::Links { hub, json } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(yimen_node::cli::links(&hub, json, out))?;
        }
        Command::Author(args) => crate::author::run(args, out)?,
        Command::Backup(args) => crate::backup::backup(args, out)?,
        Command::Restore(args) => crate::backup::restore(args, out)?,
        Command::Pki { command } => match command {
            PkiCommand::Init { dir, trust_domain } => {
                let files =
                    pki::init_ca(&dir, &trust_domain, now()).map_err(|e| fail(e.to_string()))?;
                writeln!(
                    out,
                    "CA created for {trust_domain}: {}",
                    files.cert.display()
                )?;
                writeln!(out, "keep {} on this box only", files.key.display())?;
            }
            PkiCommand::Sign {
                ca,
                csr,
                out: cert,
                days,
            } => {
                let peer =
                    pki::sign(&ca, &csr, &cert, days, now()).map_err(|e| fail(e.to_string()))?;
                writeln!(out, "issued {} for {peer}", cert.display())?;
            }
            PkiCommand::Revoke {
                ca,
                target,
                trust_domain,
            } => {
                // A bare 12-digit id means that node in the deployment's trust domain.
                let target = if target.len() == 12 && target.bytes().all(|b| b.is_ascii_digit()) {
                    format!("spiffe://{trust_domain}/node/{target}")
                } else {
                    target
                };
                let target: RevokeTarget = target.parse().map_err(fail)?;
                let serials = pki::revoke(&ca, &target, now()).map_err(|e| fail(e.to_string()))?;
                let list: Vec<String> = serials.iter().map(ToString::to_string).collect();
                writeln!(
                    out,
                    "revoked serial(s) {}; the revocation list is updated",
                    list.join(", ")
                )?;
            }
        },
        Command::Init {
            id,
            station,
            operator,
            dir,
            trust_domain,
        } => {
            let (peer, files) = match operator {
                Some(operator) => pki::init_operator_identity(&dir, &trust_domain, &operator),
                None => pki::init_identity(&dir, &trust_domain, id.as_deref(), station.as_deref()),
            }
            .map_err(fail)?;
            out.write_all(pki::init_report(&peer, &files).as_bytes())?;
        }
    }
    Ok(())
}
