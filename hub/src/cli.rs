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
        #[arg(long)]
        station: Option<String>,
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
        Command::Serve { config } => yimen_node::cli::serve(&config, "yimen-hub")?,
        Command::Links { hub, json } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(yimen_node::cli::links(&hub, json, out))?;
        }
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
            dir,
            trust_domain,
        } => {
            let (peer, files) =
                pki::init_identity(&dir, &trust_domain, id.as_deref(), station.as_deref())
                    .map_err(fail)?;
            out.write_all(pki::init_report(&peer, &files).as_bytes())?;
        }
    }
    Ok(())
}
