//! `yimen-hub desk`: the desk of a township or county hub from a reviewer's or station's
//! box. It dials the hub's TLS listener with the desk's own certificate (a station's, or an
//! operator's made by `yimen-hub init --operator`); the hub learns who acts from that
//! certificate. Each command prints Chinese for people, or one JSON document with `--json`.
//!
//! Invariants: the desk never dials in plaintext; it accepts only the hub its certificate
//! belongs to (or the one `--hub-id` names); a refusal exits non-zero with the hub's Chinese
//! message (and, with `--json`, an `error` document on stdout).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tonic::transport::Channel;

use yimen_core::division::DivisionError;
use yimen_core::routing::Custodian;
use yimen_node::cli::{Reported, case_json};
use yimen_node::pki::{self, PeerId};
use yimen_node::tls::{self, TlsFiles};
use yimen_proto::pb;
use yimen_proto::pb::desk_client::DeskClient;

/// How the desk reaches its hub.
#[derive(Debug, Args, Clone)]
pub struct DeskArgs {
    /// The hub's TLS listener (its `listen` address), e.g. 10.0.0.5:7443.
    #[arg(long, env = "YIMEN_DESK_HUB", global = true, default_value = "")]
    pub hub: String,
    /// This desk's certificate (a station's or an operator's).
    #[arg(long, env = "YIMEN_DESK_CERT", global = true)]
    pub cert: Option<PathBuf>,
    #[arg(long, env = "YIMEN_DESK_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// The deployment's CA certificate.
    #[arg(long, env = "YIMEN_DESK_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// The CA's revocation list (a revoked hub is refused).
    #[arg(long, env = "YIMEN_DESK_CRL", global = true)]
    pub crl: Option<PathBuf>,
    /// The hub's node id, when it is not the one the certificate names (a station's county,
    /// an operator's node).
    #[arg(long = "hub-id", global = true)]
    pub hub_id: Option<String>,
    /// The person acting (首问责任制): required for a station; an operator certificate names
    /// its holder.
    #[arg(long, env = "YIMEN_OPERATOR", global = true, default_value = "")]
    pub operator: String,
    /// Print one JSON document instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: DeskCommand,
}

#[derive(Debug, Subcommand, Clone)]
pub enum DeskCommand {
    /// The cases at this desk (handed to it or signed for), earliest deadline first.
    Pending {
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// One case with its whole history.
    Show { case: String },
    /// 审核 (township): the review step; the case then goes on to its next step.
    Review {
        case: String,
        #[arg(long, default_value = "")]
        opinion: String,
    },
    /// 公示: start the notice at the resident's home village; the hub's timer ends it.
    Notice { case: String },
    /// 审批 (county station).
    Approve {
        case: String,
        #[arg(long, default_value = "")]
        opinion: String,
    },
    /// 不予批准 / 不予办理: the case ends refused.
    Refuse {
        case: String,
        #[arg(long)]
        reason: String,
    },
    /// 发放 (county station); the case then goes back to the village for 办结.
    Disburse {
        case: String,
        #[arg(long, default_value = "")]
        opinion: String,
    },
    /// 退回补正: back to the accepting village, naming everything missing at once.
    Return {
        case: String,
        /// Something to supplement (repeat for each).
        #[arg(long = "missing", required = true)]
        missing: Vec<String>,
        #[arg(long)]
        reason: String,
    },
    /// 延长审批: lengthen the deadline by approved working days.
    Extend {
        case: String,
        #[arg(long)]
        days: u32,
        #[arg(long)]
        reason: String,
        #[arg(long = "approved-by")]
        approved_by: String,
    },
    /// Quarantined cases and revisions refused below; `release` or `void` a case (county
    /// operators).
    Quarantine {
        #[command(subcommand)]
        command: Option<QuarantineCommand>,
    },
    /// Hand a lost custodian's cases to another (county operators, after revocation).
    Reassign {
        /// The lost custodian: NODE or NODE/DEPT.
        #[arg(long)]
        from: String,
        /// The new custodian: NODE or NODE/DEPT.
        #[arg(long)]
        to: String,
        /// One case only (default: every case the lost custodian holds).
        #[arg(long)]
        case: Option<String>,
        #[arg(long)]
        reason: String,
        /// The CA directory: the lost custodian's certificates in its `issued/` are sent as
        /// proof that they are revoked (the hub checks them against its CRL).
        #[arg(long = "ca-dir")]
        ca_dir: PathBuf,
    },
    /// Requests from other nodes (撤回, 补充材料, 公示异议, 协办意见) waiting for this desk.
    Requests {
        /// Most requests listed (default: the hub's limit).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Decide a pending request: `--accept` makes it the case's event, `--decline` records
    /// the reason.
    DecideRequest {
        #[command(flatten)]
        decision: yimen_node::cli::RequestDecision,
    },
    /// Cases handed off and not signed for since longer than a set time.
    Transit {
        /// In hours (default: the hub's, 24).
        #[arg(long = "older-than-hours", conflicts_with = "older_than_secs")]
        older_than_hours: Option<u64>,
        #[arg(long = "older-than-secs")]
        older_than_secs: Option<u64>,
    },
}

#[derive(Debug, Subcommand, Clone)]
pub enum QuarantineCommand {
    /// The quarantined cases (the default).
    List,
    /// Release a quarantined case: its held events apply again.
    Release {
        case: String,
        #[arg(long)]
        reason: String,
    },
    /// Void a quarantined case.
    Void {
        case: String,
        #[arg(long)]
        reason: String,
    },
}

/// Runs one desk command, printing to `out`. With `--json` a failure prints an `error`
/// document too: the hub's gRPC code and Chinese message, or code `Client` when the desk
/// could not ask (files, address, connection).
pub async fn run(args: DeskArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let json_errors = args.json;
    match command(args, out).await {
        Err(e) if json_errors => {
            let (code, message) = match e.downcast_ref::<StatusError>() {
                Some(status) => (
                    format!("{:?}", status.0.code()),
                    status.0.message().to_owned(),
                ),
                None => ("Client".to_owned(), e.to_string()),
            };
            emit(out, &json!({"error": {"code": code, "message": message}}))?;
            Err(e)
        }
        other => other,
    }
}

/// A refusal from the hub.
#[derive(Debug, thiserror::Error)]
#[error("{}（{:?}）", .0.message(), .0.code())]
struct StatusError(tonic::Status);

fn refused(s: tonic::Status) -> anyhow::Error {
    anyhow!(StatusError(s))
}

async fn connect(args: &DeskArgs) -> anyhow::Result<DeskClient<Channel>> {
    let missing = |what: &str| {
        anyhow!(Reported(format!(
            "desk: --{what} is required (请指定窗口证书文件 --cert、--key 和 CA 证书 --ca)"
        )))
    };
    let files = TlsFiles {
        cert: args.cert.clone().ok_or_else(|| missing("cert"))?,
        key: args.key.clone().ok_or_else(|| missing("key"))?,
        ca: args.ca.clone().ok_or_else(|| missing("ca"))?,
        crl: args.crl.clone(),
    };
    if args.hub.trim().is_empty() {
        return Err(anyhow!(Reported(
            "desk: --hub ADDR is required: the hub's TLS listener (请指定枢纽地址 --hub)"
                .to_owned()
        )));
    }
    let me = pki::peer_id_of_pem_file(&files.cert).map_err(|e| anyhow!(Reported(e)))?;
    let hub_id = match &args.hub_id {
        Some(id) => yimen_core::division::DivisionCode::parse(id.trim())
            .map_err(|e| anyhow!(Reported(format!("--hub-id: {e}"))))?,
        None => me.division(),
    };
    let hub = PeerId::node(me.trust_domain().clone(), hub_id);
    let addr = resolve(args.hub.trim()).await?;
    let config = tls::client_config(&files, &hub).map_err(|e| anyhow!(Reported(e.to_string())))?;
    let channel = tls::connect(addr, config, tls::server_name_for(&hub, addr))
        .await
        .map_err(|e| {
            anyhow!(Reported(format!(
                "cannot reach the hub {hub} at {addr} (无法连接枢纽，请确认地址、证书与网络): {e}"
            )))
        })?;
    Ok(DeskClient::new(channel))
}

async fn resolve(hub: &str) -> anyhow::Result<SocketAddr> {
    let hub = hub.strip_prefix("https://").unwrap_or(hub);
    if let Ok(addr) = hub.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(hub)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            anyhow!(Reported(format!(
                "--hub {hub:?}: not an address (地址无效)"
            )))
        })
}

async fn command(args: DeskArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut c = connect(&args).await?;
    let operator = args.operator.clone();
    let json = args.json;
    let step = |case: String, opinion: String| pb::DeskStepRequest {
        operator: operator.clone(),
        case_number: case,
        opinion,
    };
    let reply = match args.command {
        DeskCommand::Pending { limit } => {
            let r = c
                .pending(pb::PendingRequest { limit })
                .await
                .map_err(refused)?
                .into_inner();
            return if json {
                emit(out, &pending_json(&r))
            } else {
                Ok(out.write_all(pending_text(&r).as_bytes())?)
            };
        }
        DeskCommand::Show { case } => c.show(pb::ShowRequest { case_number: case }).await,
        DeskCommand::Review { case, opinion } => c.review(step(case, opinion)).await,
        DeskCommand::Notice { case } => {
            c.notice(pb::NoticeRequest {
                operator: operator.clone(),
                case_number: case,
            })
            .await
        }
        DeskCommand::Approve { case, opinion } => c.approve(step(case, opinion)).await,
        DeskCommand::Refuse { case, reason } => {
            c.refuse(pb::RefuseRequest {
                operator: operator.clone(),
                case_number: case,
                reason,
            })
            .await
        }
        DeskCommand::Disburse { case, opinion } => c.disburse(step(case, opinion)).await,
        DeskCommand::Return {
            case,
            missing,
            reason,
        } => {
            c.return_for_supplement(pb::ReturnRequest {
                operator: operator.clone(),
                case_number: case,
                missing,
                reason,
            })
            .await
        }
        DeskCommand::Extend {
            case,
            days,
            reason,
            approved_by,
        } => {
            c.extend(pb::ExtendRequest {
                operator: operator.clone(),
                case_number: case,
                working_days: days,
                reason,
                approved_by,
            })
            .await
        }
        DeskCommand::Quarantine { command } => {
            return quarantine(&mut c, command, &operator, json, out).await;
        }
        DeskCommand::Reassign {
            from,
            to,
            case,
            reason,
            ca_dir,
        } => {
            let lost: Custodian = from
                .trim()
                .parse()
                .map_err(|e: DivisionError| anyhow!(Reported(format!("--from {from:?}: {e}"))))?;
            let me = args
                .cert
                .as_deref()
                .map(pki::peer_id_of_pem_file)
                .transpose()
                .map_err(|e| anyhow!(Reported(e)))?
                .ok_or_else(|| anyhow!(Reported("desk: --cert is required".to_owned())))?;
            let peer = pki::custodian_peer(me.trust_domain(), &lost)
                .map_err(|e| anyhow!(Reported(format!("--from {from:?}: {e}"))))?;
            let certs =
                pki::issued_to(&ca_dir, &peer).map_err(|e| anyhow!(Reported(e.to_string())))?;
            let r = c
                .reassign(pb::ReassignRequest {
                    operator: operator.clone(),
                    from,
                    to,
                    case_number: case.unwrap_or_default(),
                    reason,
                    revoked_certificates: certs,
                })
                .await
                .map_err(refused)?
                .into_inner();
            return if json {
                emit(
                    out,
                    &json!({"case_numbers": r.case_numbers, "text_zh": r.text_zh}),
                )
            } else {
                writeln!(out, "{}", r.text_zh)?;
                Ok(())
            };
        }
        DeskCommand::Requests { limit } => {
            let r = c
                .requests(pb::RequestsRequest { limit })
                .await
                .map_err(refused)?
                .into_inner();
            return if json {
                emit(out, &yimen_node::cli::requests_json(&r))
            } else {
                Ok(out.write_all(yimen_node::cli::requests_text(&r).as_bytes())?)
            };
        }
        DeskCommand::DecideRequest { decision } => {
            c.decide_request(decision.into_request(operator.clone()))
                .await
        }
        DeskCommand::Transit {
            older_than_hours,
            older_than_secs,
        } => {
            let secs = older_than_secs
                .or(older_than_hours.map(|h| h.saturating_mul(3600)))
                .unwrap_or(0);
            let r = c
                .transit(pb::TransitRequest {
                    older_than_secs: secs,
                })
                .await
                .map_err(refused)?
                .into_inner();
            return if json {
                emit(out, &transit_json(&r))
            } else {
                Ok(out.write_all(transit_text(&r).as_bytes())?)
            };
        }
    };
    let r = reply.map_err(refused)?.into_inner();
    if json {
        emit(out, &case_reply_json(&r))
    } else {
        Ok(out.write_all(case_reply_text(&r).as_bytes())?)
    }
}

async fn quarantine(
    c: &mut DeskClient<Channel>,
    command: Option<QuarantineCommand>,
    operator: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (case, reason, decision) = match command.unwrap_or(QuarantineCommand::List) {
        QuarantineCommand::List => {
            let r = c
                .list_quarantined(pb::ListQuarantinedRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            if json {
                let cases: Vec<Value> = r
                    .cases
                    .iter()
                    .map(|q| json!({"case_number": q.case_number, "reason": q.reason}))
                    .collect();
                let revisions: Vec<Value> = r
                    .refused_revisions
                    .iter()
                    .map(|a| {
                        json!({
                            "node": a.node,
                            "revision": a.revision,
                            "kind": a.kind,
                            "reason": a.reason,
                            "at": a.at,
                        })
                    })
                    .collect();
                return emit(
                    out,
                    &json!({ "quarantined": cases, "refused_revisions": revisions }),
                );
            }
            if r.cases.is_empty() {
                writeln!(out, "本枢纽没有被隔离的办件。")?;
            }
            for q in &r.cases {
                writeln!(out, "{}  隔离原因：{}", q.case_number, q.reason)?;
            }
            for a in &r.refused_revisions {
                writeln!(
                    out,
                    "节点 {} 拒绝了修订 {}（{}，{}）：{}。该修订在该节点保存并转发，但未生效。",
                    a.node, a.revision, a.kind, a.at, a.reason
                )?;
            }
            return Ok(());
        }
        QuarantineCommand::Release { case, reason } => {
            (case, reason, pb::QuarantineDecision::Release)
        }
        QuarantineCommand::Void { case, reason } => (case, reason, pb::QuarantineDecision::Void),
    };
    let r = c
        .decide_quarantine(pb::DecideQuarantineRequest {
            operator: operator.to_owned(),
            case_number: case,
            decision: decision as i32,
            reason,
        })
        .await
        .map_err(refused)?
        .into_inner();
    if json {
        let decision = match pb::QuarantineDecision::try_from(r.decision) {
            Ok(pb::QuarantineDecision::Release) => "release",
            Ok(pb::QuarantineDecision::Void) => "void",
            _ => "unspecified",
        };
        emit(
            out,
            &json!({"case_number": r.case_number, "decision": decision, "text_zh": r.text_zh}),
        )
    } else {
        writeln!(out, "{}", r.text_zh)?;
        Ok(())
    }
}

fn emit(out: &mut dyn Write, v: &Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn case_reply_json(r: &pb::DeskCaseReply) -> Value {
    let mut case = r.case.as_ref().map(case_json).unwrap_or(Value::Null);
    if let (Some(view), Some(obj)) = (&r.case, case.as_object_mut()) {
        obj.insert("next_step".to_owned(), json!(view.next_step));
    }
    json!({
        "desk": r.desk,
        "case": case,
        "forwarded_to": (!r.forwarded_to.is_empty()).then_some(&r.forwarded_to),
        "received_here": r.received_here,
    })
}

fn case_reply_text(r: &pb::DeskCaseReply) -> String {
    let Some(c) = &r.case else {
        return "枢纽未返回办件。\n".to_owned();
    };
    let mut s = String::new();
    if r.received_here {
        s.push_str(&format!("已签收（{}）。\n", r.desk));
    }
    s.push_str(&yimen_node::cli::case_text(c));
    if !r.forwarded_to.is_empty() {
        s.push_str(&format!("已转报至 {}。\n", r.forwarded_to));
    }
    s
}

fn pending_json(r: &pb::PendingReply) -> Value {
    let cases: Vec<Value> = r
        .cases
        .iter()
        .map(|p| {
            let c = p.case.clone().unwrap_or_default();
            json!({
                "number": c.number,
                "item_code": c.item_code,
                "item_name": c.item_name,
                "status": c.status,
                "status_zh": c.status_zh,
                "custodian": c.custodian,
                "received": c.received,
                "deadline": yimen_node::cli::from_pb_date(c.deadline.as_ref()),
                "deadline_provisional": c.deadline_provisional,
                "overdue": c.overdue,
                "applicant": c.applicant_masked,
                "next_step": p.next_step_code,
                "next_action": p.next_action,
                "notice_ends": (!p.notice_ends.is_empty()).then_some(&p.notice_ends),
                "due": p.due,
            })
        })
        .collect();
    json!({"desk": r.desk, "cases": cases})
}

fn pending_text(r: &pb::PendingReply) -> String {
    let mut s = format!("窗口 {}：待办 {} 件\n", r.desk, r.cases.len());
    for p in &r.cases {
        let c = p.case.clone().unwrap_or_default();
        let due: Vec<&str> = p
            .due
            .iter()
            .map(|d| match d.as_str() {
                "notice_ended" => "公示期满",
                "deadline_approaching" => "临近办结期限",
                "overdue" => "已逾期",
                "deadline_confirmable" => "期限可确认",
                "not_received" => "待签收",
                other => other,
            })
            .collect();
        let action = action_zh(&p.next_action);
        s.push_str(&format!(
            "{}  {}  {}  下一环节：{}  办结期限 {}{}{}\n",
            c.number,
            c.item_name,
            c.status_zh,
            if action.is_empty() { "无" } else { action },
            yimen_node::cli::from_pb_date(c.deadline.as_ref()),
            if p.notice_ends.is_empty() {
                String::new()
            } else {
                format!("  公示至 {}", p.notice_ends)
            },
            if due.is_empty() {
                String::new()
            } else {
                format!("  【{}】", due.join("、"))
            },
        ));
    }
    s
}

fn action_zh(a: &str) -> &str {
    match a {
        "accept" => "受理",
        "pre_check" | "precheck" => "初审",
        "review" => "审核",
        "notice" => "公示",
        "approve" => "审批",
        "disburse" => "发放",
        "complete" => "办结",
        other => other,
    }
}

fn transit_json(r: &pb::TransitReply) -> Value {
    let cases: Vec<Value> = r
        .cases
        .iter()
        .map(|t| {
            json!({
                "case_number": t.case_number,
                "item_name": t.item_name,
                "from": t.from,
                "to": t.to,
                "since": t.since,
                "waited_secs": t.waited_secs,
            })
        })
        .collect();
    json!({"older_than_secs": r.older_than_secs, "cases": cases})
}

fn transit_text(r: &pb::TransitReply) -> String {
    let hours = r.older_than_secs as f64 / 3600.0;
    let mut s = format!(
        "转报后超过 {hours:.1} 小时未签收的办件：{} 件\n",
        r.cases.len()
    );
    for t in &r.cases {
        s.push_str(&format!(
            "{}  {}  {} → {}  {} 起，已 {:.1} 小时\n",
            t.case_number,
            t.item_name,
            t.from,
            t.to,
            t.since,
            t.waited_secs as f64 / 3600.0
        ));
    }
    s
}
