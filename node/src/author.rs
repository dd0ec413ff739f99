//! The authoring gRPC service (`Author`), served on the loopback listener beside the clerk
//! API: a revision on the wire becomes the node thread's `Publish` operation, its outcome the
//! reply (`yimen-hub author …` is its client).
//!
//! Invariants: a malformed revision is `InvalidArgument` naming the field path, and nothing is
//! published; a refusal is an answer carrying every problem, never an error; operating errors
//! map to gRPC codes in `clerk::status`, in one place; no handler panics on any input.

use tonic::{Request, Response, Status};

use yimen_core::calendar::Calendar;
use yimen_core::catalog::ItemVersion;
use yimen_core::topology::Topology;
use yimen_proto::convert::WireError;
use yimen_proto::pb;
use yimen_proto::pb::author_server::Author;

use crate::node::{ClerkOp, ClerkReply, NodeHandle};
use crate::register::{Publication, Revision};

/// The authoring service of one node.
#[derive(Clone)]
pub struct AuthorService {
    node: NodeHandle,
}

impl AuthorService {
    pub fn new(node: NodeHandle) -> AuthorService {
        AuthorService { node }
    }
}

fn malformed(what: &str, e: WireError) -> Status {
    Status::invalid_argument(format!("{what}格式有误：{}（{e}）", e.field()))
}

/// A publication as the reply carries it.
pub fn reply(publication: Publication) -> pb::PublishReply {
    let outcome = match publication {
        Publication::Published(p) => pb::publish_reply::Outcome::Published(pb::RevisionPublished {
            kind: p.kind.as_str().to_owned(),
            version: p.version,
            event: p.event.as_ref().map(|(id, _)| pb::EventId {
                origin: id.origin.clone(),
                epoch: id.epoch,
                seq: id.seq,
            }),
            position: p.event.as_ref().map_or(0, |(_, position)| *position),
            subtree: p.subtree.to_string(),
            summary_zh: p.summary_zh,
        }),
        Publication::Refused(problems) => {
            pb::publish_reply::Outcome::Refused(pb::RevisionRefused {
                problems: problems
                    .iter()
                    .map(|p| pb::RevisionProblem {
                        field: p.field(),
                        message_zh: p.reason_zh(),
                    })
                    .collect(),
            })
        }
    };
    pb::PublishReply {
        outcome: Some(outcome),
    }
}

#[tonic::async_trait]
impl Author for AuthorService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishReply>, Status> {
        use pb::publish_request::Revision as Wire;
        let request = request.into_inner();
        let revision = match request.revision {
            None => {
                return Err(Status::invalid_argument(
                    "请求中没有修订内容（应为事项、工作日历或拓扑表之一）",
                ));
            }
            Some(Wire::Catalog(c)) => Revision::Catalog(Box::new(
                ItemVersion::try_from(c).map_err(|e| malformed("事项修订", e))?,
            )),
            Some(Wire::Calendar(c)) => {
                Revision::Calendar(Calendar::try_from(c).map_err(|e| malformed("工作日历修订", e))?)
            }
            Some(Wire::Topology(t)) => {
                Revision::Topology(Topology::try_from(t).map_err(|e| malformed("拓扑表修订", e))?)
            }
        };
        let kind = revision.kind();
        tracing::debug!(
            kind = kind.as_str(),
            check_only = request.check_only,
            "publish"
        );
        let op = ClerkOp::Publish {
            operator: request.operator,
            revision: Box::new(revision),
            check_only: request.check_only,
        };
        match self.node.call(op).await.map_err(crate::clerk::status)? {
            ClerkReply::Publication(p) => Ok(Response::new(reply(*p))),
            other => {
                tracing::error!(reply = ?std::mem::discriminant(&other), "unexpected reply kind");
                Err(Status::internal("节点内部错误：意外的应答类型"))
            }
        }
    }
}
