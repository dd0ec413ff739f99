//! The `yimen-node` command line: argument parsing and rendering; each command calls the
//! library or the node's clerk API. Text for people is Chinese; `--json` prints one JSON
//! document for scripts.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use chrono::{Datelike, NaiveDate};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use yimen_core::calendar::Calendar;
use yimen_core::walkthrough;
use yimen_proto::pb;
use yimen_proto::pb::clerk_client::ClerkClient;

use crate::clock::SystemClock;
use crate::config::NodeConfig;

/// Where client commands find the node unless told.
pub const NODE_DEFAULT: &str = "http://127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "yimen-node",
    version,
    about = "Yimen village node (一门 村(社区)便民服务中心节点)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every client command.
#[derive(Debug, Args, Clone)]
pub struct Client {
    /// The node's clerk API.
    #[arg(long, env = "YIMEN_NODE", default_value = NODE_DEFAULT, global = true)]
    pub node: String,
    /// Print one JSON document instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The clerk acting (首问责任人); recorded on every event.
    #[arg(long, env = "YIMEN_OPERATOR", global = true, default_value = "")]
    pub operator: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a node: open its store and serve the clerk API until SIGINT/SIGTERM.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Make this node's key and certificate signing request on this box (the key never
    /// leaves it); have the county sign the request with `yimen-hub pki sign`.
    Init {
        /// The node's id: the 12-digit division code it is commissioned with.
        #[arg(long)]
        id: String,
        /// Where the key and request are written.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long = "trust-domain", default_value = crate::pki::DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
    /// Run both sample guides through the core alone on a fixed date and print every event
    /// and state (单节点演示).
    Walkthrough {
        /// The date the cases are accepted on (Beijing time).
        #[arg(long, default_value = walkthrough::DEFAULT_DATE, value_parser = parse_date)]
        date: NaiveDate,
        /// Print one JSON document instead of the Chinese story.
        #[arg(long)]
        json: bool,
    },
    /// Working-day arithmetic on the node's calendar (or the built-in one).
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// Put a copy of a store in place (the node stopped, the broken store moved aside); at
    /// its next start the node takes a new epoch and, with a parent, waits to be refilled.
    Restore {
        /// The copy (a store directory; its `.hwm` sibling is copied too if present).
        #[arg(long)]
        from: PathBuf,
        /// Where the node's store goes (must not exist).
        #[arg(long)]
        store: PathBuf,
    },
    /// Dump a stopped node's store (any tier): events, cases, link cursors. Reads only.
    Inspect {
        /// The store directory, or a node's data folder holding `store/` (the node must be
        /// stopped).
        #[arg(long)]
        store: PathBuf,
        /// Print one JSON document instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Every link of the node (to its parent, from its children): state, lag, last success.
    Links {
        #[command(flatten)]
        client: Client,
    },
    /// The guide of an item (办事指南); without an item, the list of items.
    Guide {
        item: Option<String>,
        #[command(flatten)]
        client: Client,
    },
    /// Intake: prints the acceptance slip (受理单) or the one-time notice (一次性告知书).
    Apply {
        #[arg(long)]
        item: String,
        #[arg(long = "id-number")]
        id_number: String,
        #[arg(long)]
        name: String,
        /// Registered household division code (户籍所在地), from the household register.
        #[arg(long)]
        household: String,
        /// A declared status: dibao (低保), wubao (五保), disabled (残疾). Repeatable.
        #[arg(long = "status")]
        statuses: Vec<String>,
        /// A material code presented (see `guide`). Repeatable.
        #[arg(long = "material")]
        materials: Vec<String>,
        /// The helper acting for the applicant (代办).
        #[arg(long)]
        helper: Option<String>,
        /// The helper's relation to the applicant.
        #[arg(long, default_value = "")]
        relation: String,
        #[command(flatten)]
        client: Client,
    },
    /// The village's pre-check (初审).
    Precheck {
        case: String,
        #[arg(long, default_value = "")]
        opinion: String,
        #[command(flatten)]
        client: Client,
    },
    /// 转报: hand the case to the next custodian (from the topology unless --to).
    Forward {
        case: String,
        /// NODE or NODE/DEPT.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        client: Client,
    },
    /// Material arrived for a case held here.
    Supplement {
        case: String,
        #[arg(long = "material", required = true)]
        materials: Vec<String>,
        #[command(flatten)]
        client: Client,
    },
    /// 协办: contribute an opinion to a case held elsewhere.
    Assist {
        case: String,
        #[arg(long)]
        opinion: String,
        #[command(flatten)]
        client: Client,
    },
    /// 即办 completion, or the village's final step.
    Complete {
        case: String,
        #[arg(long)]
        result: String,
        #[command(flatten)]
        client: Client,
    },
    /// Correct a clerk's typo in an earlier event; the original is kept.
    Correct {
        case: String,
        /// The event corrected (its sequence number, see `status`).
        #[arg(long)]
        of: u64,
        #[arg(long = "applicant-name", group = "what")]
        applicant_name: Option<String>,
        #[arg(long, group = "what")]
        opinion: Option<String>,
        #[arg(long, group = "what")]
        helper: Option<String>,
        #[arg(long, default_value = "")]
        relation: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: Client,
    },
    /// Relay an applicant's request to the custodian: withdrawal, supplement or objection.
    Request {
        case: String,
        #[arg(long, group = "kind")]
        withdraw: Option<String>,
        #[arg(long = "supplement", group = "kind", num_args = 1..)]
        supplement: Vec<String>,
        #[arg(long, group = "kind")]
        objection: Option<String>,
        #[command(flatten)]
        client: Client,
    },
    /// Requests from other nodes waiting for this village's decision (it holds the case).
    Requests {
        #[command(flatten)]
        client: Client,
    },
    /// Decide a pending request: `--accept` makes it the case's event, `--decline` records
    /// the reason.
    DecideRequest {
        #[command(flatten)]
        decision: RequestDecision,
        #[command(flatten)]
        client: Client,
    },
    /// The applicant's evaluation: 1 非常满意 … 5 非常不满意.
    Evaluate {
        case: String,
        #[arg(long)]
        satisfaction: u32,
        #[command(flatten)]
        client: Client,
    },
    /// One case with its whole history.
    Status {
        case: String,
        #[command(flatten)]
        client: Client,
    },
    /// Cases by status, deadline, or overdue.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        overdue: bool,
        #[arg(long = "due-by", value_parser = parse_date)]
        due_by: Option<NaiveDate>,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        client: Client,
    },
    /// The register (登记簿) of a day (default: today).
    Register {
        #[arg(long, value_parser = parse_date)]
        day: Option<NaiveDate>,
        #[command(flatten)]
        client: Client,
    },
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Prints the date N working days after --from, alone on one line.
    Add {
        #[arg(long, value_parser = parse_date)]
        from: NaiveDate,
        #[arg(long = "working-days")]
        working_days: u32,
        /// Ask this running node for its current calendar; without it, the built-in one.
        #[arg(long)]
        node: Option<String>,
    },
    /// The calendar's version and years.
    Show {
        #[arg(long)]
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("expected a date as YYYY-MM-DD (日期格式应为 YYYY-MM-DD): {e}"))
}

/// An error already explained to the user; the binary exits non-zero without more text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

fn pb_date(d: NaiveDate) -> pb::Date {
    pb::Date {
        year: d.year(),
        month: d.month(),
        day: d.day(),
    }
}

/// A wire date as YYYY-MM-DD; empty when absent or invalid.
pub fn from_pb_date(d: Option<&pb::Date>) -> String {
    d.and_then(|d| NaiveDate::from_ymd_opt(d.year, d.month, d.day))
        .map(|d| d.to_string())
        .unwrap_or_default()
}

async fn connect(addr: &str) -> anyhow::Result<ClerkClient<tonic::transport::Channel>> {
    let addr = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    ClerkClient::connect(addr.clone()).await.map_err(|e| {
        anyhow!("cannot reach the node at {addr} (无法连接节点，请确认节点已启动): {e}")
    })
}

/// A gRPC status as the clerk reads it.
fn refused(s: tonic::Status) -> anyhow::Error {
    anyhow!(Reported(format!("{}（{:?}）", s.message(), s.code())))
}

/// Runs a parsed command line, writing to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Walkthrough { date, json } => {
            let story =
                walkthrough::run(date).with_context(|| format!("walk-through on {date}"))?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &story)?;
                writeln!(out)?;
            } else {
                out.write_all(walkthrough::render_zh(&story).as_bytes())?;
            }
            Ok(())
        }
        Command::Serve { config } => serve(&config, "yimen-node"),
        Command::Restore { from, store } => {
            let bytes = crate::server::restore(&from, &store)
                .map_err(|e| anyhow!(Reported(format!("restore: {e}"))))?;
            writeln!(
                out,
                "已将 {} 恢复到 {}（{bytes} 字节）。节点下次启动时将启用新纪元，并在连通上级后补齐数据，补齐前不受理新办件。",
                from.display(),
                store.display()
            )?;
            Ok(())
        }
        Command::Inspect { store, json } => {
            let dump = crate::register::inspect(&store)
                .map_err(|e| anyhow!(Reported(format!("inspect: {e}"))))?;
            if json {
                return emit_json(out, &dump);
            }
            let count = |k: &str| dump[k].as_array().map_or(0, Vec::len);
            writeln!(
                out,
                "节点 {}：事件 {} 条，办件 {} 件，链路游标 {} 个，隔离办件 {} 件{}",
                dump["node"].as_str().unwrap_or("?"),
                count("events"),
                count("cases"),
                count("cursors"),
                count("quarantined"),
                if dump["refilling"] == true {
                    "（正在从上级恢复）"
                } else {
                    ""
                }
            )?;
            for c in dump["cases"].as_array().into_iter().flatten() {
                writeln!(
                    out,
                    "{}  {}  {}  承办 {}",
                    c["number"].as_str().unwrap_or(""),
                    c["item"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                    c["custodian"].as_str().unwrap_or("")
                )?;
            }
            Ok(())
        }
        Command::Init {
            id,
            dir,
            trust_domain,
        } => {
            let (peer, files) = crate::pki::init_identity(&dir, &trust_domain, Some(&id), None)
                .map_err(|e| anyhow!(Reported(e)))?;
            out.write_all(crate::pki::init_report(&peer, &files).as_bytes())?;
            Ok(())
        }
        other => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(client_command(other, out))
        }
    }
}

/// Serves a node or hub from its config file until SIGINT/SIGTERM; `program` names it in
/// the ready line.
pub fn serve(config: &std::path::Path, program: &str) -> anyhow::Result<()> {
    serve_with_clock(config, program, Arc::new(SystemClock))
}

/// [`serve`] on the given clock (tests and training: `yimen-hub serve --clock-offset-secs`).
pub fn serve_with_clock(
    config: &std::path::Path,
    program: &str,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<()> {
    let config = NodeConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.clerk_listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.clerk_listen))?;
        let addr = listener.local_addr()?;
        // The store opens (with every integrity check) before the node says it is ready.
        let opened = crate::server::open(&config, clock.clone())
            .map_err(|e| anyhow!(Reported(format!("{e}\n{}", e.reason_zh()))))?;

        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        let id = config.id;
        // The one line scripts and tests wait for, once every listener is bound.
        let ready = move || println!("{program} {id} serving the clerk API on {addr}");
        crate::server::serve_notify(&config, opened, listener, clock, shutdown, ready)
            .await
            .map_err(|e| anyhow!(Reported(format!("{e}\n{}", e.reason_zh()))))
    })
}

/// A link state (`LinkView.state`) as clerks read it.
pub fn link_state_zh(state: &str) -> &str {
    match state {
        "connecting" => "连接中",
        "connected" => "已连接",
        "stalled" => "停滞（对方长时间未确认）",
        "backing_off" => "等待重连",
        "disconnected" => "未连接",
        other => other,
    }
}

/// `links`: the node's link status from its `LinkAdmin` service at `addr`.
pub async fn links(addr: &str, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let mut c = pb::link_admin_client::LinkAdminClient::connect(url.clone())
        .await
        .map_err(|e| {
            anyhow!("cannot reach the node at {url} (无法连接节点，请确认节点已启动): {e}")
        })?;
    let links = c
        .links(pb::LinksRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .links;
    if json {
        let v: Vec<Value> = links
            .iter()
            .map(|l| {
                json!({
                    "peer": l.peer,
                    "direction": l.direction,
                    "state": l.state,
                    "lag_events": l.lag_events,
                    "lag_bytes": l.lag_bytes,
                    "last_success_unix_ms": l.last_success_unix_ms,
                    "retry_at_unix_ms": l.retry_at_unix_ms,
                    "protocol_version": (l.protocol_version > 0).then_some(l.protocol_version),
                })
            })
            .collect();
        return emit_json(out, &json!({ "links": v }));
    }
    if links.is_empty() {
        writeln!(out, "本节点没有同步链路（未配置上级，也没有下级连入）")?;
    }
    for l in &links {
        let direction = if l.direction == "parent" {
            "上级"
        } else {
            "下级"
        };
        let state = link_state_zh(&l.state);
        let last = chrono::DateTime::from_timestamp_millis(l.last_success_unix_ms)
            .filter(|_| l.last_success_unix_ms > 0)
            .map_or_else(
                || "从未".to_owned(),
                |t| {
                    // Beijing time (UTC+8), as clerks read every time.
                    (t.naive_utc() + chrono::Duration::hours(8))
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                },
            );
        let version = if l.protocol_version > 0 {
            format!("  协议 v{}", l.protocol_version)
        } else {
            String::new()
        };
        writeln!(
            out,
            "{direction} {}  {state}  待送 {} 件 / {} 字节  最近成功 {last}{version}",
            l.peer, l.lag_events, l.lag_bytes
        )?;
    }
    Ok(())
}

async fn client_command(command: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        Command::Links { client } => links(&client.node, client.json, out).await,
        Command::Calendar { command } => calendar(command, out).await,
        Command::Guide { item, client } => {
            let mut c = connect(&client.node).await?;
            match item {
                None => {
                    let items = c
                        .list_items(pb::ListItemsRequest {})
                        .await
                        .map_err(refused)?
                        .into_inner()
                        .items;
                    if client.json {
                        let v: Vec<Value> = items.iter().map(item_json).collect();
                        emit_json(out, &json!({ "items": v }))
                    } else {
                        for i in &items {
                            writeln!(
                                out,
                                "{}  {}（第{}版，{}）",
                                i.code, i.name, i.version, i.limit_zh
                            )?;
                        }
                        Ok(())
                    }
                }
                Some(code) => {
                    let r = c
                        .get_guide(pb::GetGuideRequest { item_code: code })
                        .await
                        .map_err(refused)?
                        .into_inner();
                    if client.json {
                        emit_json(
                            out,
                            &json!({ "item": r.item.as_ref().map(item_json), "text_zh": r.text_zh }),
                        )
                    } else {
                        Ok(out.write_all(r.text_zh.as_bytes())?)
                    }
                }
            }
        }
        Command::Apply {
            item,
            id_number,
            name,
            household,
            statuses,
            materials,
            helper,
            relation,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let reply = c
                .apply(pb::ApplyRequest {
                    operator: client.operator.clone(),
                    item_code: item,
                    applicant: Some(pb::ApplicantInput {
                        id_number,
                        name,
                        household,
                        statuses,
                    }),
                    materials,
                    helper: helper.map(|name| pb::HelperInput { name, relation }),
                })
                .await
                .map_err(refused)?
                .into_inner();
            match reply.outcome {
                Some(pb::apply_reply::Outcome::Accepted(slip)) => {
                    if client.json {
                        emit_json(
                            out,
                            &json!({
                                "outcome": "accepted",
                                "case": slip.case.as_ref().map(case_json),
                                "slip_zh": slip.text_zh,
                            }),
                        )
                    } else {
                        Ok(out.write_all(slip.text_zh.as_bytes())?)
                    }
                }
                Some(pb::apply_reply::Outcome::Incomplete(notice)) => {
                    if client.json {
                        emit_json(
                            out,
                            &json!({
                                "outcome": "incomplete",
                                "problems_zh": notice.lines_zh,
                                "notice_zh": notice.text_zh,
                            }),
                        )
                    } else {
                        Ok(out.write_all(notice.text_zh.as_bytes())?)
                    }
                }
                None => Err(anyhow!("the node sent an empty answer")),
            }
        }
        Command::Precheck {
            case,
            opinion,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .precheck(pb::StepRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    opinion,
                })
                .await;
            show_case(out, &client, r)
        }
        Command::Forward {
            case,
            to,
            reason,
            client,
        } => {
            let (to_node, to_department) = match to {
                None => (String::new(), String::new()),
                Some(t) => match t.split_once('/') {
                    Some((n, d)) => (n.to_owned(), d.to_owned()),
                    None => (t, String::new()),
                },
            };
            let mut c = connect(&client.node).await?;
            let r = c
                .forward(pb::ForwardRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    to_node,
                    to_department,
                    reason,
                })
                .await;
            show_case(out, &client, r)
        }
        Command::Supplement {
            case,
            materials,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .supplement(pb::SupplementRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    materials,
                })
                .await;
            show_case(out, &client, r)
        }
        Command::Assist {
            case,
            opinion,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .assist(pb::AssistRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    opinion,
                })
                .await;
            show_request(out, &client, r)
        }
        Command::Complete {
            case,
            result,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .complete(pb::CompleteRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    result,
                })
                .await;
            show_case(out, &client, r)
        }
        Command::Correct {
            case,
            of,
            applicant_name,
            opinion,
            helper,
            relation,
            reason,
            client,
        } => {
            use pb::correct_request::Correction as C;
            let correction = match (applicant_name, opinion, helper) {
                (Some(n), _, _) => C::ApplicantName(n),
                (_, Some(o), _) => C::Opinion(o),
                (_, _, Some(h)) => C::Helper(pb::HelperInput { name: h, relation }),
                _ => {
                    return Err(anyhow!(
                        "say what to correct: --applicant-name, --opinion or --helper (请说明更正项目)"
                    ));
                }
            };
            let mut c = connect(&client.node).await?;
            let r = c
                .correct(pb::CorrectRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    of_seq: of,
                    correction: Some(correction),
                    reason,
                })
                .await;
            show_case(out, &client, r)
        }
        Command::Request {
            case,
            withdraw,
            supplement,
            objection,
            client,
        } => {
            use pb::relay_request::Kind as K;
            let kind = match (withdraw, objection) {
                (Some(w), _) => K::WithdrawalReason(w),
                (_, Some(o)) => K::Objection(o),
                _ if !supplement.is_empty() => {
                    K::Supplement(pb::MaterialList { codes: supplement })
                }
                _ => {
                    return Err(anyhow!(
                        "say what is asked: --withdraw, --supplement or --objection (请说明申请类别)"
                    ));
                }
            };
            let mut c = connect(&client.node).await?;
            let r = c
                .relay_request(pb::RelayRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    kind: Some(kind),
                })
                .await;
            show_request(out, &client, r)
        }
        Command::Requests { client } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .list_requests(pb::RequestsRequest { limit: 0 })
                .await
                .map_err(refused)?
                .into_inner();
            if client.json {
                emit_json(out, &requests_json(&r))
            } else {
                Ok(out.write_all(requests_text(&r).as_bytes())?)
            }
        }
        Command::DecideRequest { decision, client } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .decide_request(decision.into_request(client.operator.clone()))
                .await;
            show_case(out, &client, r)
        }
        Command::Evaluate {
            case,
            satisfaction,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .evaluate(pb::EvaluateRequest {
                    operator: client.operator.clone(),
                    case_number: case,
                    satisfaction,
                })
                .await;
            show_case(out, &client, r)
        }
        Command::Status { case, client } => {
            let mut c = connect(&client.node).await?;
            let r = c.get_case(pb::GetCaseRequest { case_number: case }).await;
            show_case(out, &client, r)
        }
        Command::List {
            status,
            overdue,
            due_by,
            limit,
            client,
        } => {
            let mut c = connect(&client.node).await?;
            let cases = c
                .list_cases(pb::ListCasesRequest {
                    status: status.unwrap_or_default(),
                    overdue_only: overdue,
                    due_by: due_by.map(pb_date),
                    limit,
                })
                .await
                .map_err(refused)?
                .into_inner()
                .cases;
            if client.json {
                let v: Vec<Value> = cases.iter().map(case_json).collect();
                emit_json(out, &json!({ "cases": v }))
            } else {
                if cases.is_empty() {
                    writeln!(out, "（无）")?;
                }
                for c in &cases {
                    writeln!(
                        out,
                        "{}  {}  {}  期限{}{}  办理人{}",
                        c.number,
                        c.item_name,
                        c.status_zh,
                        from_pb_date(c.deadline.as_ref()),
                        if c.overdue { "（已逾期）" } else { "" },
                        c.custodian
                    )?;
                }
                Ok(())
            }
        }
        Command::Register { day, client } => {
            let mut c = connect(&client.node).await?;
            let r = c
                .register(pb::RegisterRequest {
                    day: day.map(pb_date),
                })
                .await
                .map_err(refused)?
                .into_inner();
            if client.json {
                let v: Vec<Value> = r
                    .entries
                    .iter()
                    .zip(&r.case_numbers)
                    .map(|(e, n)| {
                        let mut v = event_json(e);
                        v["case"] = json!(n);
                        v
                    })
                    .collect();
                emit_json(out, &json!({ "entries": v }))
            } else {
                for (e, n) in r.entries.iter().zip(&r.case_numbers) {
                    writeln!(
                        out,
                        "{} {} [{}] {}（{}）",
                        e.at, n, e.seq, e.text_zh, e.operator
                    )?;
                }
                Ok(())
            }
        }
        Command::Serve { .. }
        | Command::Walkthrough { .. }
        | Command::Init { .. }
        | Command::Inspect { .. }
        | Command::Restore { .. } => Ok(()),
    }
}

async fn calendar(command: CalendarCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        CalendarCommand::Add {
            from,
            working_days,
            node,
        } => {
            let date = match node {
                Some(addr) => {
                    let mut c = connect(&addr).await?;
                    let r = c
                        .add_working_days(pb::AddWorkingDaysRequest {
                            from: Some(pb_date(from)),
                            working_days,
                        })
                        .await
                        .map_err(refused)?
                        .into_inner();
                    from_pb_date(r.date.as_ref())
                }
                None => {
                    let cal = Calendar::builtin();
                    eprintln!(
                        "note: no --node given; using the built-in calendar (version {}, years {}) (未指定节点，使用内置工作日历)",
                        cal.version,
                        cal.years
                            .keys()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    cal.add_working_days(from, working_days)
                        .map_err(|e| anyhow!(Reported(format!("{e}\n{}", e.reason_zh()))))?
                        .to_string()
                }
            };
            writeln!(out, "{date}")?;
            Ok(())
        }
        CalendarCommand::Show { node, json } => {
            let (version, years): (u32, Vec<(i32, u32, String)>) = match node {
                Some(addr) => {
                    let mut c = connect(&addr).await?;
                    let r = c
                        .get_calendar(pb::GetCalendarRequest {})
                        .await
                        .map_err(refused)?
                        .into_inner();
                    (
                        r.version,
                        r.years
                            .into_iter()
                            .map(|y| (y.year, y.working_days, y.source))
                            .collect(),
                    )
                }
                None => {
                    let cal = Calendar::builtin();
                    let years = cal
                        .years
                        .values()
                        .map(|y| {
                            (
                                y.year,
                                cal.working_days_in_year(y.year).unwrap_or(0),
                                y.source.clone(),
                            )
                        })
                        .collect();
                    (cal.version, years)
                }
            };
            if json {
                let ys: Vec<Value> = years
                    .iter()
                    .map(|(y, n, s)| json!({"year": y, "working_days": n, "source": s}))
                    .collect();
                emit_json(out, &json!({"version": version, "years": ys}))
            } else {
                writeln!(out, "工作日历版本 {version}")?;
                for (y, n, s) in years {
                    writeln!(out, "  {y}年：{n}个工作日（{s}）")?;
                }
                Ok(())
            }
        }
    }
}

fn emit_json(out: &mut dyn Write, v: &Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn item_json(i: &pb::ItemSummary) -> Value {
    json!({"code": i.code, "name": i.name, "version": i.version, "owner": i.owner, "limit_zh": i.limit_zh})
}

fn event_json(e: &pb::CaseEventView) -> Value {
    json!({"seq": e.seq, "at": e.at, "author": e.author, "operator": e.operator, "kind": e.kind, "text_zh": e.text_zh})
}

/// A case view as JSON (what `--json` prints; personal data masked).
pub fn case_json(c: &pb::CaseView) -> Value {
    json!({
        "number": c.number,
        "item_code": c.item_code,
        "item_name": c.item_name,
        "item_version": c.item_version,
        "status": c.status,
        "status_zh": c.status_zh,
        "custodian": c.custodian,
        "received": c.received,
        "deadline": from_pb_date(c.deadline.as_ref()),
        "deadline_provisional": c.deadline_provisional,
        "applicant": c.applicant_masked,
        "accepted_at": c.accepted_at,
        "overdue": c.overdue,
        "returns": c.returns,
        "hold": (!c.hold.is_empty()).then_some(&c.hold),
        "hold_reason": (!c.hold.is_empty()).then_some(&c.hold_reason),
        "events": c.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

/// The decision on a pending request, as `yimen-node decide-request` and `yimen-hub desk
/// decide-request` take it.
#[derive(Debug, Clone, clap::Args)]
pub struct RequestDecision {
    pub case: String,
    /// The request's id as `requests` lists it ("430421105204-3").
    pub request: String,
    #[arg(long, conflicts_with = "decline", required_unless_present = "decline")]
    pub accept: bool,
    #[arg(long)]
    pub decline: bool,
    /// Required with --decline.
    #[arg(long, default_value = "")]
    pub reason: String,
}

impl RequestDecision {
    pub fn into_request(self, operator: String) -> pb::DecideRequestRequest {
        pb::DecideRequestRequest {
            operator,
            case_number: self.case,
            request_id: self.request,
            accept: self.accept,
            reason: self.reason,
        }
    }
}

/// Requests waiting for a decision, as `--json` prints them.
pub fn requests_json(r: &pb::RequestsReply) -> Value {
    let requests: Vec<Value> = r
        .requests
        .iter()
        .map(|q| {
            json!({
                "case_number": q.case_number,
                "request_id": q.request_id,
                "from": q.from,
                "kind": q.kind,
                "text_zh": q.text_zh,
                "at": q.at,
                "operator": q.operator,
            })
        })
        .collect();
    json!({"desk": r.desk, "requests": requests})
}

/// Requests waiting for a decision, for people.
pub fn requests_text(r: &pb::RequestsReply) -> String {
    let mut s = format!("窗口 {}：待处理申请 {} 件\n", r.desk, r.requests.len());
    for q in &r.requests {
        s.push_str(&format!(
            "{}  申请 {}  来自 {}（{}，{}）：{}\n",
            q.case_number, q.request_id, q.from, q.operator, q.at, q.text_zh
        ));
    }
    s
}

/// A case as clerks and desks read it: its facts, next step, deadline and history.
pub fn case_text(c: &pb::CaseView) -> String {
    let mut s = format!(
        "办件编号：{}\n事项：{}（{} 第{}版）\n申请人：{}\n状态：{}{}\n办理人：{}{}\n下一环节：{}\n办结期限：{}{}\n",
        c.number,
        c.item_name,
        c.item_code,
        c.item_version,
        c.applicant_masked,
        c.status_zh,
        if c.overdue { "（已逾期）" } else { "" },
        c.custodian,
        if c.received { "" } else { "（待签收）" },
        if c.next_step.is_empty() {
            "无"
        } else {
            &c.next_step
        },
        from_pb_date(c.deadline.as_ref()),
        if c.deadline_provisional {
            "（暂定）"
        } else {
            ""
        },
    );
    match c.hold.as_str() {
        "quarantined" => s.push_str(&format!(
            "已隔离：{}（县级作出处置决定前不能办理）\n",
            c.hold_reason
        )),
        "void" => s.push_str(&format!("已由县级决定作废：{}\n", c.hold_reason)),
        "newer_schema" => s.push_str(&format!("待升级：{}\n", c.hold_reason)),
        _ => {}
    }
    s.push_str("办理记录：\n");
    for e in &c.events {
        s.push_str(&format!(
            "  [{}] {} {} {}（{}）\n",
            e.seq, e.at, e.author, e.text_zh, e.operator
        ));
    }
    s
}

fn show_case(
    out: &mut dyn Write,
    client: &Client,
    r: Result<tonic::Response<pb::CaseReply>, tonic::Status>,
) -> anyhow::Result<()> {
    let case = r
        .map_err(refused)?
        .into_inner()
        .case
        .ok_or_else(|| anyhow!("the node sent an empty answer"))?;
    if client.json {
        emit_json(out, &json!({ "case": case_json(&case) }))
    } else {
        Ok(out.write_all(case_text(&case).as_bytes())?)
    }
}

fn show_request(
    out: &mut dyn Write,
    client: &Client,
    r: Result<tonic::Response<pb::RequestReply>, tonic::Status>,
) -> anyhow::Result<()> {
    let r = r.map_err(refused)?.into_inner();
    if client.json {
        emit_json(
            out,
            &json!({
                "request_id": r.request_id,
                "addressed_to": r.addressed_to,
                "decided_here": r.decided_here,
                "case": r.case.as_ref().map(case_json),
            }),
        )
    } else if r.decided_here {
        writeln!(
            out,
            "申请{}已由本机（办理人）受理并记入办件。",
            r.request_id
        )?;
        Ok(())
    } else {
        writeln!(
            out,
            "申请{}已登记，将转交当前办理人{}（联通后送达）。",
            r.request_id, r.addressed_to
        )?;
        Ok(())
    }
}
