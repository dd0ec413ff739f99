//! The clerk gRPC service: wire requests to clerk operations, replies to views, and errors to
//! gRPC statuses — in one place, with deliberate codes and Chinese messages a clerk can act on.
//!
//! Invariants: no handler panics on any input; personal data leaves only inside the replies
//! the clerk asked for (views mask it; the slip and notice name the applicant); logs carry
//! case numbers, never ID numbers or names.

use std::sync::Arc;

use chrono::NaiveDate;
use tonic::{Request, Response, Status};

use yimen_core::calendar::CalendarError;
use yimen_core::case::{Case, CaseError, CaseEvent};
use yimen_core::catalog::ItemVersion;
use yimen_core::numbering::NumberingError;
use yimen_proto::pb;
use yimen_proto::pb::clerk_server::Clerk;

use crate::clock::Clock;
use crate::node::{
    ApplicantInput, ClerkError, ClerkOp, ClerkReply, CorrectionInput, DeskActor, DeskOp, DeskReply,
    NodeHandle, RelayKind,
};
use crate::print;
use crate::register::DayEntry;
use crate::store::StoreError;

/// The clerk service of one node.
#[derive(Clone)]
pub struct ClerkService {
    node: NodeHandle,
    /// The node's name, printed on slips and notices ("河泉村便民服务中心").
    name: String,
    clock: Arc<dyn Clock>,
}

impl ClerkService {
    pub fn new(node: NodeHandle, name: String, clock: Arc<dyn Clock>) -> ClerkService {
        ClerkService { node, name, clock }
    }

    async fn call(&self, op: ClerkOp) -> Result<ClerkReply, Status> {
        self.node.call(op).await.map_err(status)
    }

    fn today(&self) -> NaiveDate {
        self.clock.beijing().date()
    }

    fn case_reply(&self, reply: ClerkReply) -> Result<Response<pb::CaseReply>, Status> {
        match reply {
            ClerkReply::Case(c) => Ok(Response::new(pb::CaseReply {
                case: Some(case_view(&c, self.today())),
            })),
            other => Err(unexpected(&other)),
        }
    }
}

/// Maps an operation's failure to a gRPC status: the code says what kind of failure, the
/// message says in Chinese what the clerk can do.
pub fn status(e: ClerkError) -> Status {
    use tonic::Code;
    let code = match &e {
        ClerkError::NotFound(_) => Code::NotFound,
        ClerkError::Invalid { .. } => Code::InvalidArgument,
        ClerkError::Case(c) => match c {
            CaseError::Invalid { .. } | CaseError::OtherCase { .. } | CaseError::NotAcceptance => {
                Code::InvalidArgument
            }
            CaseError::TooManyEvents => Code::ResourceExhausted,
            _ => Code::FailedPrecondition,
        },
        ClerkError::Numbering(n) => match n {
            NumberingError::DayFull { .. } => Code::ResourceExhausted,
            NumberingError::ClockBehind { .. } => Code::FailedPrecondition,
            _ => Code::InvalidArgument,
        },
        ClerkError::Routing(_) => Code::FailedPrecondition,
        ClerkError::Calendar(c) => match c {
            CalendarError::MissingYear { .. } => Code::OutOfRange,
            _ => Code::InvalidArgument,
        },
        ClerkError::Register(r) => match r {
            crate::register::RegisterError::Store(StoreError::Corrupt { .. })
            | crate::register::RegisterError::Decode { .. } => Code::DataLoss,
            _ => Code::Unavailable,
        },
        ClerkError::Stopped(_) | ClerkError::Refilling => Code::Unavailable,
        ClerkError::Held { .. } => Code::FailedPrecondition,
    };
    if matches!(code, Code::Unavailable | Code::DataLoss | Code::Internal) {
        tracing::error!(error = %e, "clerk operation failed");
    } else {
        tracing::debug!(error = %e, "clerk operation refused");
    }
    Status::new(code, e.reason_zh())
}

fn unexpected(reply: &ClerkReply) -> Status {
    tracing::error!(reply = ?std::mem::discriminant(reply), "unexpected reply kind");
    Status::internal("节点内部错误：意外的应答类型")
}

fn date(d: NaiveDate) -> pb::Date {
    use chrono::Datelike;
    pb::Date {
        year: d.year(),
        month: d.month(),
        day: d.day(),
    }
}

fn from_date(field: &'static str, d: Option<pb::Date>) -> Result<Option<NaiveDate>, Status> {
    d.map(|d| {
        NaiveDate::from_ymd_opt(d.year, d.month, d.day).ok_or_else(|| {
            Status::invalid_argument(format!(
                "{field}：{}-{}-{} 不是有效日期",
                d.year, d.month, d.day
            ))
        })
    })
    .transpose()
}

fn item_summary(item: &ItemVersion) -> pb::ItemSummary {
    pb::ItemSummary {
        code: item.code.0.clone(),
        name: item.name.clone(),
        version: item.version,
        owner: item.owner.to_string(),
        limit_zh: item.committed_limit.describe_zh(),
    }
}

/// One event as a clerk sees it (personal data masked by the core's descriptions).
pub fn event_view(e: &CaseEvent) -> pb::CaseEventView {
    pb::CaseEventView {
        seq: e.seq,
        at: e.at.format("%Y-%m-%d %H:%M").to_string(),
        author: e.author.to_string(),
        operator: e.operator.clone(),
        kind: e.body.kind().to_owned(),
        text_zh: e.body.describe_zh(),
    }
}

/// A case as a clerk sees it.
pub fn case_view(c: &Case, today: NaiveDate) -> pb::CaseView {
    let a = &c.acceptance;
    pb::CaseView {
        number: c.number.to_string(),
        item_code: a.item.code.0.clone(),
        item_name: a.item_name.clone(),
        item_version: a.item.version,
        status: c.status.as_str().to_owned(),
        status_zh: c.status.name_zh().to_owned(),
        custodian: c.custodian.to_string(),
        received: c.received,
        deadline: Some(date(c.deadline.due)),
        deadline_provisional: c.deadline.provisional,
        next_step: String::new(),
        applicant_masked: format!("{}（{}）", c.applicant.name, c.applicant.id_number),
        accepted_at: c.accepted_at.format("%Y-%m-%d %H:%M").to_string(),
        overdue: c.is_overdue(today),
        events: c.events.iter().map(event_view).collect(),
        returns: c.returns,
        hold: String::new(),
        hold_reason: String::new(),
    }
}

fn day_entries(entries: &[DayEntry]) -> pb::RegisterReply {
    pb::RegisterReply {
        entries: entries.iter().map(|e| event_view(&e.event)).collect(),
        case_numbers: entries.iter().map(|e| e.event.case.to_string()).collect(),
    }
}

fn helper(h: Option<pb::HelperInput>) -> Option<(String, String)> {
    h.filter(|h| !h.name.trim().is_empty())
        .map(|h| (h.name, h.relation))
}

#[tonic::async_trait]
impl Clerk for ClerkService {
    async fn list_items(
        &self,
        _: Request<pb::ListItemsRequest>,
    ) -> Result<Response<pb::ListItemsReply>, Status> {
        match self.call(ClerkOp::ListItems).await? {
            ClerkReply::Items(items) => Ok(Response::new(pb::ListItemsReply {
                items: items.iter().map(item_summary).collect(),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_guide(
        &self,
        r: Request<pb::GetGuideRequest>,
    ) -> Result<Response<pb::GuideReply>, Status> {
        let item_code = r.into_inner().item_code;
        match self.call(ClerkOp::Guide { item_code }).await? {
            ClerkReply::Guide(item) => Ok(Response::new(pb::GuideReply {
                item: Some(item_summary(&item)),
                text_zh: print::guide(&item),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn apply(
        &self,
        r: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyReply>, Status> {
        let r = r.into_inner();
        let a = r.applicant.unwrap_or_default();
        let op = ClerkOp::Apply {
            operator: r.operator,
            item_code: r.item_code,
            applicant: ApplicantInput {
                id_number: a.id_number,
                name: a.name,
                household: a.household,
                statuses: a.statuses,
            },
            materials: r.materials,
            helper: helper(r.helper),
        };
        let outcome = match self.call(op).await? {
            ClerkReply::Accepted(case, item) => {
                pb::apply_reply::Outcome::Accepted(pb::AcceptanceSlip {
                    case: Some(case_view(&case, self.today())),
                    text_zh: print::slip(&case, &item, &self.name),
                })
            }
            ClerkReply::Incomplete(report, item) => {
                pb::apply_reply::Outcome::Incomplete(pb::OneTimeNotice {
                    lines_zh: report.lines_zh(),
                    text_zh: print::notice(&report, &item, None, &self.name),
                })
            }
            other => return Err(unexpected(&other)),
        };
        Ok(Response::new(pb::ApplyReply {
            outcome: Some(outcome),
        }))
    }

    async fn precheck(
        &self,
        r: Request<pb::StepRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        let reply = self
            .call(ClerkOp::Precheck {
                operator: r.operator,
                case: r.case_number,
                opinion: r.opinion,
            })
            .await?;
        self.case_reply(reply)
    }

    async fn forward(
        &self,
        r: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        let to = (!r.to_node.trim().is_empty()).then_some((r.to_node, r.to_department));
        let reply = self
            .call(ClerkOp::Forward {
                operator: r.operator,
                case: r.case_number,
                to,
                reason: r.reason,
            })
            .await?;
        self.case_reply(reply)
    }

    async fn supplement(
        &self,
        r: Request<pb::SupplementRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        let reply = self
            .call(ClerkOp::Supplement {
                operator: r.operator,
                case: r.case_number,
                materials: r.materials,
            })
            .await?;
        self.case_reply(reply)
    }

    async fn assist(
        &self,
        r: Request<pb::AssistRequest>,
    ) -> Result<Response<pb::RequestReply>, Status> {
        let r = r.into_inner();
        let reply = self
            .call(ClerkOp::Assist {
                operator: r.operator,
                case: r.case_number,
                opinion: r.opinion,
            })
            .await?;
        self.request_reply(reply)
    }

    async fn complete(
        &self,
        r: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        let reply = self
            .call(ClerkOp::Complete {
                operator: r.operator,
                case: r.case_number,
                result: r.result,
            })
            .await?;
        self.case_reply(reply)
    }

    async fn correct(
        &self,
        r: Request<pb::CorrectRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        use pb::correct_request::Correction as C;
        let correction = match r.correction {
            Some(C::ApplicantName(n)) => CorrectionInput::ApplicantName(n),
            Some(C::Helper(h)) => CorrectionInput::Helper(helper(Some(h))),
            Some(C::Opinion(o)) => CorrectionInput::Opinion(o),
            None => return Err(Status::invalid_argument("更正内容：请说明要更正的项目")),
        };
        let reply = self
            .call(ClerkOp::Correct {
                operator: r.operator,
                case: r.case_number,
                of: r.of_seq,
                correction,
                reason: r.reason,
            })
            .await?;
        self.case_reply(reply)
    }

    async fn relay_request(
        &self,
        r: Request<pb::RelayRequest>,
    ) -> Result<Response<pb::RequestReply>, Status> {
        let r = r.into_inner();
        use pb::relay_request::Kind as K;
        let kind = match r.kind {
            Some(K::WithdrawalReason(reason)) => RelayKind::Withdrawal { reason },
            Some(K::Supplement(list)) => RelayKind::Supplement {
                materials: list.codes,
            },
            Some(K::Objection(text)) => RelayKind::Objection { text },
            None => {
                return Err(Status::invalid_argument(
                    "申请类别：请说明是撤回、补充材料还是异议",
                ));
            }
        };
        let reply = self
            .call(ClerkOp::Relay {
                operator: r.operator,
                case: r.case_number,
                kind,
            })
            .await?;
        self.request_reply(reply)
    }

    async fn list_requests(
        &self,
        r: Request<pb::RequestsRequest>,
    ) -> Result<Response<pb::RequestsReply>, Status> {
        let me = DeskActor::custodian_of(self.node.id, None);
        let op = DeskOp::Requests {
            desk: me.clone(),
            limit: crate::desk::list_limit(r.get_ref().limit),
        };
        match self.node.desk(op).await.map_err(status)? {
            DeskReply::Requests(requests) => {
                Ok(Response::new(crate::desk::requests_reply(&me, &requests)))
            }
            _ => Err(Status::internal("节点内部错误：意外的应答类型")),
        }
    }

    async fn decide_request(
        &self,
        r: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        let op = DeskOp::DecideRequest {
            actor: DeskActor {
                custodian: DeskActor::custodian_of(self.node.id, None),
                operator: r.operator,
            },
            case: r.case_number,
            request: r.request_id,
            accept: r.accept,
            reason: r.reason,
        };
        match self.node.desk(op).await.map_err(status)? {
            DeskReply::Case { case, .. } => Ok(Response::new(pb::CaseReply {
                case: Some(case_view(&case, self.today())),
            })),
            _ => Err(Status::internal("节点内部错误：意外的应答类型")),
        }
    }

    async fn evaluate(
        &self,
        r: Request<pb::EvaluateRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let r = r.into_inner();
        let reply = self
            .call(ClerkOp::Evaluate {
                operator: r.operator,
                case: r.case_number,
                satisfaction: r.satisfaction,
            })
            .await?;
        self.case_reply(reply)
    }

    async fn get_case(
        &self,
        r: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::CaseReply>, Status> {
        let case = r.into_inner().case_number;
        match self.call(ClerkOp::GetCase { case }).await? {
            ClerkReply::Shown(case, hold) => {
                let mut view = case_view(&case, self.today());
                crate::desk::set_hold(&mut view, hold);
                Ok(Response::new(pb::CaseReply { case: Some(view) }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn list_cases(
        &self,
        r: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesReply>, Status> {
        let r = r.into_inner();
        let due_by = from_date("截止日期", r.due_by)?;
        let op = ClerkOp::ListCases {
            status: (!r.status.is_empty()).then_some(r.status),
            overdue_only: r.overdue_only,
            due_by,
        };
        match self.call(op).await? {
            ClerkReply::Cases(cases) => {
                let today = self.today();
                let limit = if r.limit == 0 {
                    usize::MAX
                } else {
                    r.limit as usize
                };
                Ok(Response::new(pb::ListCasesReply {
                    cases: cases
                        .iter()
                        .take(limit)
                        .map(|c| case_view(c, today))
                        .collect(),
                }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn register(
        &self,
        r: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        let day = from_date("日期", r.into_inner().day)?;
        match self.call(ClerkOp::Register { day }).await? {
            ClerkReply::Register(entries) => Ok(Response::new(day_entries(&entries))),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_calendar(
        &self,
        _: Request<pb::GetCalendarRequest>,
    ) -> Result<Response<pb::GetCalendarReply>, Status> {
        match self.call(ClerkOp::Calendar).await? {
            ClerkReply::Calendar(cal) => Ok(Response::new(pb::GetCalendarReply {
                version: cal.version,
                years: cal
                    .years
                    .values()
                    .map(|y| pb::CalendarYearView {
                        year: y.year,
                        working_days: cal.working_days_in_year(y.year).unwrap_or(0),
                        source: y.source.clone(),
                    })
                    .collect(),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn add_working_days(
        &self,
        r: Request<pb::AddWorkingDaysRequest>,
    ) -> Result<Response<pb::AddWorkingDaysReply>, Status> {
        let r = r.into_inner();
        let from = from_date("起算日期", r.from)?
            .ok_or_else(|| Status::invalid_argument("起算日期：不能为空"))?;
        match self
            .call(ClerkOp::AddWorkingDays {
                from,
                working_days: r.working_days,
            })
            .await?
        {
            ClerkReply::Date(d, version) => Ok(Response::new(pb::AddWorkingDaysReply {
                date: Some(date(d)),
                calendar_version: version,
            })),
            other => Err(unexpected(&other)),
        }
    }
}

impl ClerkService {
    fn request_reply(&self, reply: ClerkReply) -> Result<Response<pb::RequestReply>, Status> {
        match reply {
            ClerkReply::Request {
                id,
                addressed_to,
                decided_here,
                case,
            } => Ok(Response::new(pb::RequestReply {
                request_id: format!("{}-{}", id.origin, id.seq),
                addressed_to: addressed_to.to_string(),
                decided_here,
                case: Some(case_view(&case, self.today())),
            })),
            other => Err(unexpected(&other)),
        }
    }
}
