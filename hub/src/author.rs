//! `yimen-hub author catalog|calendar|topology FILE`: publishes a revision from an authoring
//! file (formats: `format`, examples under `docs/authoring/`, guide `docs/authoring.md`)
//! through the hub's loopback `Author` service. Readable Chinese by default, one JSON
//! document with `--json`.
//!
//! Invariants: a file with problems is refused here with every problem at once and nothing is
//! sent; a revision the hub refuses is shown with every problem the hub found; either refusal
//! exits non-zero, as does anything not published (except `--check` that passes).

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::{Value, json};

use yimen_node::cli::Reported;
use yimen_proto::pb;

pub mod format;

pub use format::FileProblem;

/// What an authoring file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// One version of one item (事项).
    Catalog,
    /// Years of the working-day calendar (工作日历).
    Calendar,
    /// The node table (拓扑表).
    Topology,
}

/// `yimen-hub author`.
#[derive(Debug, clap::Args)]
pub struct AuthorArgs {
    /// What the file holds.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The TOML file (examples: docs/authoring/catalog.toml, calendar.toml, topology.toml).
    pub file: PathBuf,
    /// The hub's clerk/admin API (loopback).
    #[arg(long, env = "YIMEN_HUB", default_value = yimen_node::cli::NODE_DEFAULT)]
    pub hub: String,
    /// Who authors the revision (首问责任制); recorded on the event.
    #[arg(long, env = "YIMEN_OPERATOR", default_value = "")]
    pub operator: String,
    /// Check the revision against the hub and report, publishing nothing.
    #[arg(long)]
    pub check: bool,
    /// Print one JSON document instead of readable text.
    #[arg(long)]
    pub json: bool,
}

/// The revision a file describes, on the wire; or every problem of the file.
pub fn parse(kind: Kind, text: &str) -> Result<pb::publish_request::Revision, Vec<FileProblem>> {
    use pb::publish_request::Revision as Wire;
    Ok(match kind {
        Kind::Catalog => Wire::Catalog(format::catalog(text)?.into()),
        Kind::Calendar => Wire::Calendar(format::calendar(text)?.into()),
        Kind::Topology => Wire::Topology(format::topology(text)?.into()),
    })
}

/// Runs `yimen-hub author`, writing to `out`.
pub fn run(args: AuthorArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| {
        anyhow!(Reported(format!(
            "cannot read {}: {e}（无法读取文件，请检查路径）",
            args.file.display()
        )))
    })?;
    let revision = match parse(args.kind, &text) {
        Ok(r) => r,
        Err(problems) => {
            if args.json {
                emit_json(
                    out,
                    &json!({
                        "outcome": "invalid_file",
                        "file": args.file.display().to_string(),
                        "problems": problems_json(problems.iter().map(|p| (&p.field, &p.message_zh))),
                    }),
                )?;
            } else {
                writeln!(
                    out,
                    "文件 {} 有{}个问题，未提交：",
                    args.file.display(),
                    problems.len()
                )?;
                write_problems(out, problems.iter().map(|p| (&p.field, &p.message_zh)))?;
            }
            return Err(anyhow!(Reported(format!(
                "{}: {} problem(s); nothing was sent",
                args.file.display(),
                problems.len()
            ))));
        }
    };
    let request = pb::PublishRequest {
        operator: args.operator.clone(),
        check_only: args.check,
        revision: Some(revision),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = rt.block_on(publish(&args.hub, request))?;
    match reply.outcome {
        Some(pb::publish_reply::Outcome::Published(p)) => {
            if args.json {
                emit_json(
                    out,
                    &json!({
                        "outcome": if args.check { "checked" } else { "published" },
                        "kind": p.kind,
                        "version": p.version,
                        "event": p.event.as_ref().map(|e| json!({
                            "origin": e.origin,
                            "epoch": format!("{:016x}", e.epoch),
                            "seq": e.seq,
                        })),
                        "position": p.position,
                        "subtree": p.subtree,
                        "summary_zh": p.summary_zh,
                    }),
                )?;
            } else {
                writeln!(out, "{}", p.summary_zh)?;
                if let Some(e) = &p.event {
                    writeln!(
                        out,
                        "事件 {}/{:016x}/{}，本枢纽登记簿第{}条",
                        e.origin, e.epoch, e.seq, p.position
                    )?;
                }
            }
            Ok(())
        }
        Some(pb::publish_reply::Outcome::Refused(r)) => {
            let problems = r.problems.iter().map(|p| (&p.field, &p.message_zh));
            if args.json {
                emit_json(
                    out,
                    &json!({ "outcome": "refused", "problems": problems_json(problems) }),
                )?;
            } else {
                writeln!(
                    out,
                    "修订被拒绝，共{}个问题（未发布任何内容）：",
                    r.problems.len()
                )?;
                write_problems(out, problems)?;
            }
            Err(anyhow!(Reported(format!(
                "the hub refused the revision: {} problem(s)",
                r.problems.len()
            ))))
        }
        None => Err(anyhow!("the hub sent an empty answer")),
    }
}

async fn publish(hub: &str, request: pb::PublishRequest) -> anyhow::Result<pb::PublishReply> {
    let url = if hub.contains("://") {
        hub.to_owned()
    } else {
        format!("http://{hub}")
    };
    let mut client = pb::author_client::AuthorClient::connect(url.clone())
        .await
        .map_err(|e| {
            anyhow!(Reported(format!(
                "cannot reach the hub at {url}: {e}（无法连接枢纽，请确认枢纽已启动）"
            )))
        })?;
    let reply = client
        .publish(request)
        .await
        .map_err(|s| anyhow!(Reported(format!("{}（{:?}）", s.message(), s.code()))))?;
    Ok(reply.into_inner())
}

fn problems_json<'a>(problems: impl Iterator<Item = (&'a String, &'a String)>) -> Value {
    problems
        .map(|(field, message)| json!({ "field": field, "message_zh": message }))
        .collect()
}

fn write_problems<'a>(
    out: &mut dyn Write,
    problems: impl Iterator<Item = (&'a String, &'a String)>,
) -> std::io::Result<()> {
    for (i, (field, message)) in problems.enumerate() {
        if field.is_empty() {
            writeln!(out, "  {}. {message}", i + 1)?;
        } else {
            writeln!(out, "  {}. [{field}] {message}", i + 1)?;
        }
    }
    Ok(())
}

fn emit_json(out: &mut dyn Write, v: &Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}
