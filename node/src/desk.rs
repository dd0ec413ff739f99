//! The desk gRPC service of a township or county hub, and the custodian's timers.
//!
//! The service is served on the hub's children's listener (mutual TLS) behind the identity
//! layer; every call is authorised from the caller's certificate: a station acts as
//! `(county, its department)`, an operator of the hub as the hub's own desk. Requests map to
//! node-thread desk operations; failures become gRPC statuses in one place
//! (`crate::clerk::status`), with Chinese messages a reviewer can act on.
//!
//! The timers run on every node: each pass ends the 公示 that have run their course (and hands
//! the case on), confirms provisional deadlines the calendar now covers, and logs deadlines
//! that are near or past (once per case and due date).
//!
//! Invariants: no handler panics on any input; no call is served without an [`Authorized`]
//! proof for it; who acts comes from the certificate, never from the request; the service
//! is never offered in plaintext (only [`crate::server`]'s TLS listener adds it); logs carry
//! case numbers, never applicant data.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use yimen_core::case::{Case, Due, Verdict};
use yimen_core::catalog::{ItemVersion, NodeId, StepAction};
use yimen_core::numbering::CaseNumber;
use yimen_core::routing::Custodian;
use yimen_core::topology::Topology;
use yimen_proto::pb;
use yimen_proto::pb::desk_server::Desk;

use crate::clerk::{case_view, status};
use crate::clock::Clock;
use crate::node::{
    DeskActor, DeskOp, DeskReply, DeskScope, InTransit, LinkOp, LinkReply, NodeHandle, PendingCase,
};
use crate::pki::{PeerId, PeerKind};
use crate::tls::{self, Action, Authorized};

/// How often the custodian's timers run (the first pass runs at start).
pub const TIMER_EVERY: Duration = Duration::from_secs(60);
/// A handoff not signed for after this long is listed by `transit` unless told otherwise
/// (a day: a hub's link may be down overnight without anything being wrong).
pub const TRANSIT_AFTER_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// Longest wait `transit` accepts (a year): beyond that the question is a typo.
pub const TRANSIT_AFTER_MAX: Duration = Duration::from_secs(366 * 24 * 3600);
/// (case, due date) pairs the timers remember having logged; beyond this they start over
/// (and log each once more).
pub const DEADLINES_LOGGED_MAX: usize = 10_000;

/// Who calls, once authorised: the custodian they act as, what they may see, and the person
/// named by an operator certificate.
#[derive(Clone, Debug)]
struct Caller {
    custodian: Custodian,
    scope: DeskScope,
    /// An operator certificate's holder; `None` for a station (the request names the person).
    person: Option<String>,
}

impl Caller {
    /// Only an authorisation proof makes a caller.
    fn of(proof: &Authorized, me: NodeId) -> Result<Caller, Status> {
        match proof.peer().kind() {
            PeerKind::Station { dept, .. } => {
                let custodian = DeskActor::custodian_of(me, Some(dept.as_str()));
                Ok(Caller {
                    scope: DeskScope::Custodian(custodian.clone()),
                    custodian,
                    person: None,
                })
            }
            PeerKind::Operator { name, .. } => Ok(Caller {
                custodian: DeskActor::custodian_of(me, None),
                scope: DeskScope::Node,
                person: Some(name.as_str().to_owned()),
            }),
            // `authorize` gives a node no desk proof; were it to, the desk would still refuse.
            PeerKind::Node { .. } => Err(Status::permission_denied(
                "节点证书不能使用窗口服务，请使用站所或操作员证书",
            )),
        }
    }

    /// The person acting: an operator certificate's holder (a different name in the request
    /// is refused), or the name a station gives.
    fn actor(&self, requested: &str) -> Result<DeskActor, Status> {
        let requested = requested.trim();
        let operator = match &self.person {
            Some(holder) if !requested.is_empty() && requested != holder => {
                return Err(Status::invalid_argument(format!(
                    "经办人“{requested}”与证书持有人“{holder}”不符；操作员证书只能以本人名义办理"
                )));
            }
            Some(holder) => holder.clone(),
            None => requested.to_owned(),
        };
        Ok(DeskActor {
            custodian: self.custodian.clone(),
            operator,
        })
    }
}

/// The desk service of one hub.
#[derive(Clone)]
pub struct DeskService {
    node: NodeHandle,
    me: NodeId,
    clock: Arc<dyn Clock>,
    /// The hub's TLS files: the CA certificate and CRL prove a lost custodian revoked.
    files: Option<tls::TlsFiles>,
}

impl DeskService {
    pub fn new(
        node: NodeHandle,
        clock: Arc<dyn Clock>,
        files: Option<tls::TlsFiles>,
    ) -> DeskService {
        let me = node.id;
        DeskService {
            node,
            me,
            clock,
            files,
        }
    }

    async fn topology(&self) -> Result<Topology, Status> {
        match self.node.link(LinkOp::Topology).await {
            Ok(LinkReply::Topology(t)) => Ok(*t),
            Ok(_) => Err(Status::internal("节点内部错误：意外的应答类型")),
            Err(e) => {
                tracing::error!(error = %e, "desk: the node thread did not answer");
                Err(Status::unavailable(
                    "本机节点服务不可用，请稍后再试或联系管理员",
                ))
            }
        }
    }

    /// Authorises the caller for `action` (made from its identity).
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        action: impl FnOnce(&PeerId) -> Action,
    ) -> Result<Authorized, Status> {
        let peer = tls::authenticated_peer(request)?.clone();
        let action = action(&peer);
        let topology = self.topology().await?;
        tls::authorize(&peer, &action, self.me, &topology).map_err(|refused| {
            tracing::info!(%peer, reason = %refused, "desk call refused");
            Status::permission_denied(refused.reason_zh())
        })
    }

    /// Authorises a desk call: a station for its certificate's department, anyone else for
    /// the hub's own desk.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let proof = self
            .authorize(request, |peer| Action::Desk {
                department: match peer.kind() {
                    PeerKind::Station { dept, .. } => Some(dept.as_str().to_owned()),
                    _ => None,
                },
            })
            .await?;
        Caller::of(&proof, self.me)
    }

    async fn call(&self, op: DeskOp) -> Result<DeskReply, Status> {
        self.node.desk(op).await.map_err(status)
    }

    async fn case_op(
        &self,
        caller: &Caller,
        op: DeskOp,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        match self.call(op).await? {
            DeskReply::Case {
                case,
                item,
                forwarded_to,
                received_here,
                hold,
            } => {
                let mut view = self.view(&case, &item);
                set_hold(&mut view, hold);
                if let Some(to) = &forwarded_to {
                    tracing::info!(case = %case.number, desk = %caller.custodian, %to, "handed on after a desk step");
                }
                Ok(Response::new(pb::DeskCaseReply {
                    case: Some(view),
                    forwarded_to: forwarded_to.map(|c| c.to_string()).unwrap_or_default(),
                    received_here,
                    desk: caller.custodian.to_string(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    /// A case as a desk sees it: the clerk's view with the next step named.
    fn view(&self, case: &Case, item: &ItemVersion) -> pb::CaseView {
        let mut v = case_view(case, self.clock.beijing().date());
        v.next_step = case
            .next_step(&yimen_core::case::Rules { item })
            .map(|s| s.name.clone())
            .unwrap_or_default();
        v
    }
}

/// The requests waiting at `desk`, as the desk and the clerk show them.
pub fn requests_reply(
    desk: &Custodian,
    requests: &[yimen_core::case::Request],
) -> pb::RequestsReply {
    pb::RequestsReply {
        desk: desk.to_string(),
        requests: requests
            .iter()
            .map(|q| pb::PendingRequestView {
                case_number: q.case.to_string(),
                request_id: q.id.to_string(),
                from: q.from.to_string(),
                kind: q.kind.as_str().to_owned(),
                text_zh: q.kind.describe_zh(),
                at: q.at.format("%Y-%m-%d %H:%M").to_string(),
                operator: q.operator.clone(),
            })
            .collect(),
    }
}

/// Marks a case view quarantined or void.
pub fn set_hold(view: &mut pb::CaseView, hold: Option<crate::node::Hold>) {
    if let Some(h) = hold {
        view.hold = h.kind.as_str().to_owned();
        view.hold_reason = h.reason;
    }
}

/// A list's limit: 0 is the hub's own.
pub fn list_limit(asked: u32) -> usize {
    match usize::try_from(asked).unwrap_or(usize::MAX) {
        0 => crate::node::DESK_CASES_MAX,
        n => n,
    }
}

fn unexpected() -> Status {
    tracing::error!("desk: unexpected reply kind");
    Status::internal("节点内部错误：意外的应答类型")
}

/// The names `pending` gives what is due.
fn due_name(d: &Due) -> &'static str {
    match d {
        Due::EndNotice { .. } => "notice_ended",
        Due::ConfirmDeadline { .. } => "deadline_confirmable",
        Due::DeadlineApproaching { .. } => "deadline_approaching",
        Due::Overdue { .. } => "overdue",
    }
}

fn pending_view(p: &PendingCase, today: chrono::NaiveDate) -> pb::PendingCase {
    let mut case = case_view(&p.case, today);
    case.events.clear();
    let mut due: Vec<String> = p.due.iter().map(|d| due_name(d).to_owned()).collect();
    if !p.case.received {
        due.push("not_received".to_owned());
    }
    pb::PendingCase {
        case: Some(case),
        next_step_code: p.next.as_ref().map(|(c, _)| c.clone()).unwrap_or_default(),
        next_action: p
            .next
            .as_ref()
            .map(|(_, a)| a.as_str().to_owned())
            .unwrap_or_default(),
        due,
        notice_ends: p
            .case
            .notice_ends
            .map(|d| d.to_string())
            .unwrap_or_default(),
    }
}

fn transit_view(t: &InTransit) -> pb::TransitCase {
    pb::TransitCase {
        case_number: t.number.to_string(),
        item_name: t.item_name.clone(),
        from: t.from.to_string(),
        to: t.to.to_string(),
        since: t.since.format("%Y-%m-%d %H:%M").to_string(),
        waited_secs: t.waited.as_secs(),
    }
}

#[tonic::async_trait]
impl Desk for DeskService {
    async fn pending(
        &self,
        r: Request<pb::PendingRequest>,
    ) -> Result<Response<pb::PendingReply>, Status> {
        let caller = self.caller(&r).await?;
        let limit = list_limit(r.get_ref().limit);
        match self
            .call(DeskOp::Pending {
                desk: caller.custodian.clone(),
                limit,
            })
            .await?
        {
            DeskReply::Pending(cases) => {
                let today = self.clock.beijing().date();
                Ok(Response::new(pb::PendingReply {
                    desk: caller.custodian.to_string(),
                    cases: cases.iter().map(|p| pending_view(p, today)).collect(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn show(
        &self,
        r: Request<pb::ShowRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let case = r.into_inner().case_number;
        let op = DeskOp::Show {
            scope: caller.scope.clone(),
            case,
        };
        self.case_op(&caller, op).await
    }

    async fn review(
        &self,
        r: Request<pb::DeskStepRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        self.step(r, StepAction::Review).await
    }

    async fn notice(
        &self,
        r: Request<pb::NoticeRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let r = r.into_inner();
        let op = DeskOp::Notice {
            actor: caller.actor(&r.operator)?,
            case: r.case_number,
        };
        self.case_op(&caller, op).await
    }

    async fn approve(
        &self,
        r: Request<pb::DeskStepRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        self.step(r, StepAction::Approve).await
    }

    async fn refuse(
        &self,
        r: Request<pb::RefuseRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let r = r.into_inner();
        let op = DeskOp::Refuse {
            actor: caller.actor(&r.operator)?,
            case: r.case_number,
            reason: r.reason,
        };
        self.case_op(&caller, op).await
    }

    async fn disburse(
        &self,
        r: Request<pb::DeskStepRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        self.step(r, StepAction::Disburse).await
    }

    async fn return_for_supplement(
        &self,
        r: Request<pb::ReturnRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let r = r.into_inner();
        let op = DeskOp::Return {
            actor: caller.actor(&r.operator)?,
            case: r.case_number,
            missing: r.missing,
            reason: r.reason,
        };
        self.case_op(&caller, op).await
    }

    async fn extend(
        &self,
        r: Request<pb::ExtendRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let r = r.into_inner();
        let op = DeskOp::Extend {
            actor: caller.actor(&r.operator)?,
            case: r.case_number,
            working_days: r.working_days,
            reason: r.reason,
            approved_by: r.approved_by,
        };
        self.case_op(&caller, op).await
    }

    async fn list_quarantined(
        &self,
        r: Request<pb::ListQuarantinedRequest>,
    ) -> Result<Response<pb::ListQuarantinedReply>, Status> {
        let _caller = self.caller(&r).await?;
        match self.call(DeskOp::Quarantined).await? {
            DeskReply::Quarantined(cases, revisions) => {
                Ok(Response::new(pb::ListQuarantinedReply {
                    cases: cases
                        .into_iter()
                        .map(|(case_number, reason)| pb::QuarantinedCase {
                            case_number,
                            reason,
                        })
                        .collect(),
                    refused_revisions: revisions
                        .into_iter()
                        .map(|a| pb::RefusedRevision {
                            node: a.node.to_string(),
                            revision: format!(
                                "{}-{:016x}-{}",
                                a.revision.origin, a.revision.epoch, a.revision.seq
                            ),
                            kind: a.kind,
                            reason: a.reason,
                            at: a.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        })
                        .collect(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn decide_quarantine(
        &self,
        r: Request<pb::DecideQuarantineRequest>,
    ) -> Result<Response<pb::DecideQuarantineReply>, Status> {
        let proof = self.authorize(&r, |_| Action::CountyDecision).await?;
        let actor = Caller::of(&proof, self.me)?.actor(&r.get_ref().operator)?;
        let r = r.into_inner();
        let verdict = match pb::QuarantineDecision::try_from(r.decision) {
            Ok(pb::QuarantineDecision::Release) => Verdict::Release,
            Ok(pb::QuarantineDecision::Void) => Verdict::Void,
            _ => {
                return Err(Status::invalid_argument(
                    "处置决定应为解除隔离（release）或作废（void）",
                ));
            }
        };
        let op = DeskOp::Decide {
            actor,
            case: r.case_number,
            verdict,
            reason: r.reason,
        };
        match self.call(op).await? {
            DeskReply::Decided {
                case,
                verdict,
                state,
                quarantined_again,
            } => {
                let status = state
                    .as_ref()
                    .map(|c| {
                        format!(
                            "，办件状态：{}，当前办理人：{}",
                            c.status.name_zh(),
                            c.custodian
                        )
                    })
                    .unwrap_or_default();
                let text_zh = match (verdict, quarantined_again) {
                    (Verdict::Void, _) => format!("办件{case}已作废，决定已发往各相关节点"),
                    (Verdict::Release, false) => {
                        format!("办件{case}已解除隔离，暂存的事件已重新办理{status}")
                    }
                    (Verdict::Release, true) => format!(
                        "办件{case}已解除隔离，但暂存的事件仍未通过校验，已再次隔离{status}"
                    ),
                };
                Ok(Response::new(pb::DecideQuarantineReply {
                    case_number: case.to_string(),
                    decision: r.decision,
                    text_zh,
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn reassign(
        &self,
        r: Request<pb::ReassignRequest>,
    ) -> Result<Response<pb::ReassignReply>, Status> {
        let proof = self.authorize(&r, |_| Action::CountyDecision).await?;
        let actor = Caller::of(&proof, self.me)?.actor(&r.get_ref().operator)?;
        let r = r.into_inner();
        let mut parsed = Vec::with_capacity(2);
        for (field, value) in [("原办理人", &r.from), ("新办理人", &r.to)] {
            parsed.push(value.trim().parse::<Custodian>().map_err(|e| {
                Status::invalid_argument(format!("{field}“{value}”无效：{}", e.reason_zh()))
            })?);
        }
        let (from, to) = (parsed.remove(0), parsed.remove(0));
        let case = Some(r.case_number.trim().to_owned()).filter(|c| !c.is_empty());
        if let Some(c) = &case {
            CaseNumber::parse(c)
                .map_err(|e| Status::invalid_argument(format!("办件编号：{}", e.reason_zh())))?;
        }
        self.check_revoked(proof.peer(), &from, &r.revoked_certificates)?;
        let op = DeskOp::Reassign {
            actor,
            from: from.clone(),
            to: to.clone(),
            case,
            reason: r.reason,
        };
        match self.call(op).await? {
            DeskReply::Reassigned(cases) => Ok(Response::new(pb::ReassignReply {
                text_zh: format!("已将{}件办件由{from}改派至{to}", cases.len()),
                case_numbers: cases.iter().map(ToString::to_string).collect(),
            })),
            _ => Err(unexpected()),
        }
    }

    async fn requests(
        &self,
        r: Request<pb::RequestsRequest>,
    ) -> Result<Response<pb::RequestsReply>, Status> {
        let caller = self.caller(&r).await?;
        let op = DeskOp::Requests {
            desk: caller.custodian.clone(),
            limit: list_limit(r.get_ref().limit),
        };
        match self.call(op).await? {
            DeskReply::Requests(requests) => {
                Ok(Response::new(requests_reply(&caller.custodian, &requests)))
            }
            _ => Err(unexpected()),
        }
    }

    async fn decide_request(
        &self,
        r: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let r = r.into_inner();
        let op = DeskOp::DecideRequest {
            actor: caller.actor(&r.operator)?,
            case: r.case_number,
            request: r.request_id,
            accept: r.accept,
            reason: r.reason,
        };
        self.case_op(&caller, op).await
    }

    async fn transit(
        &self,
        r: Request<pb::TransitRequest>,
    ) -> Result<Response<pb::TransitReply>, Status> {
        let caller = self.caller(&r).await?;
        let older_than = match r.get_ref().older_than_secs {
            0 => TRANSIT_AFTER_DEFAULT,
            s => Duration::from_secs(s),
        };
        if older_than > TRANSIT_AFTER_MAX {
            return Err(Status::invalid_argument(format!(
                "在途时长不能超过{}天",
                TRANSIT_AFTER_MAX.as_secs() / 86_400
            )));
        }
        // A station supervises what is handed to it; the hub's operators, the whole subtree.
        let op = DeskOp::Transit {
            scope: caller.scope.clone(),
            older_than,
        };
        match self.call(op).await? {
            DeskReply::Transit(cases) => Ok(Response::new(pb::TransitReply {
                older_than_secs: older_than.as_secs(),
                cases: cases.iter().map(transit_view).collect(),
            })),
            _ => Err(unexpected()),
        }
    }
}

impl DeskService {
    async fn step(
        &self,
        r: Request<pb::DeskStepRequest>,
        action: StepAction,
    ) -> Result<Response<pb::DeskCaseReply>, Status> {
        let caller = self.caller(&r).await?;
        let r = r.into_inner();
        let op = DeskOp::Step {
            actor: caller.actor(&r.operator)?,
            case: r.case_number,
            action,
            opinion: r.opinion,
        };
        self.case_op(&caller, op).await
    }
}

impl DeskService {
    /// The county reassigns only after revocation: `certs` must be the lost custodian's
    /// certificates, issued by this deployment's CA and listed in this hub's CRL.
    fn check_revoked(
        &self,
        caller: &PeerId,
        from: &Custodian,
        certs: &[Vec<u8>],
    ) -> Result<(), Status> {
        let Some((ca, crl)) = self
            .files
            .as_ref()
            .and_then(|f| f.crl.as_ref().map(|crl| (f.ca.clone(), crl.clone())))
        else {
            return Err(Status::failed_precondition(
                "本节点未配置证书吊销列表（crl），无法确认原办理人已被吊销，不能改派",
            ));
        };
        let lost = crate::pki::custodian_peer(caller.trust_domain(), from)
            .map_err(|e| Status::invalid_argument(format!("原办理人“{from}”无效：{e}")))?;
        match crate::pki::check_revoked(&ca, &crl, &lost, certs) {
            Ok(serials) => {
                tracing::info!(%lost, revoked = serials.len(), "lost custodian's revocation checked");
                Ok(())
            }
            Err(why) => {
                tracing::info!(%lost, why, "reassignment refused: revocation not proven");
                Err(Status::failed_precondition(format!(
                    "原办理人{from}的证书未被证明已吊销，不能改派（{why}）；请先吊销其证书，再以 --ca 指定证书颁发机构目录重试"
                )))
            }
        }
    }
}

/// Runs the custodian's timers every `every` (the first pass at once) until `stop` turns
/// true. A failed pass is logged and retried at the next; approaching and past deadlines are
/// logged once per case and due date.
pub async fn run_timers(
    node: NodeHandle,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut logged: HashSet<(CaseNumber, chrono::NaiveDate)> = HashSet::new();
    loop {
        if *stop.borrow() {
            return;
        }
        match node.desk(DeskOp::Tick).await {
            Ok(DeskReply::Ticked(report)) => {
                for (case, to) in &report.notices_ended {
                    match to {
                        Some(to) => tracing::info!(%case, %to, "公示 ended; handed on"),
                        None => tracing::info!(%case, "公示 ended; the case waits at the desk"),
                    }
                }
                for case in &report.confirmed {
                    tracing::info!(%case, "provisional deadline confirmed");
                }
                for (case, why) in &report.failed {
                    tracing::warn!(%case, error = %why, "timer could not act on a case");
                }
                if logged.len() > DEADLINES_LOGGED_MAX {
                    logged.clear();
                }
                for (case, due) in &report.overdue {
                    if logged.insert((*case, *due)) {
                        tracing::warn!(%case, %due, "case overdue");
                    }
                }
                for (case, due) in &report.approaching {
                    if logged.insert((*case, *due)) {
                        tracing::info!(%case, %due, "deadline approaching");
                    }
                }
            }
            Ok(_) => tracing::error!("timer: unexpected reply kind"),
            Err(e) => tracing::warn!(error = %e, "timer pass failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
