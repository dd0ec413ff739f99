//! Authorisation: a pure function of (peer, action, this node, topology).
//!
//! Invariants: nothing here reads a certificate, the clock or the disk; the only way to get an
//! [`Authorized`] is [`authorize`]; everything not allowed by a rule below is refused with a
//! reason.

use yimen_core::catalog::NodeId;
use yimen_core::topology::Topology;

use crate::pki::{PeerId, PeerKind};

/// What a peer asks to do on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the replication stream (a child dialling its parent).
    Replicate,
    /// Use the county desk, for one department.
    Desk { department: Option<String> },
    /// Administer this node.
    Admin,
}

/// Proof that `peer` may do `action` on this node. Only [`authorize`] builds one.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorized {
    peer: PeerId,
    action: Action,
}

impl Authorized {
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    pub fn action(&self) -> &Action {
        &self.action
    }
}

/// Why a peer was refused. Messages are English (logs, `Status`); `reason_zh` is for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{peer} may not replicate: only nodes replicate")]
    ReplicateNotNode { peer: PeerId },
    #[error("{peer} may not replicate with node {me}: it is not in the topology")]
    UnknownNode { peer: PeerId, me: NodeId },
    #[error("{peer} may not replicate with node {me}: its parent is {parent}, not this node")]
    NotMyChild {
        peer: PeerId,
        me: NodeId,
        parent: String,
    },
    #[error("{peer} may not use the desk: only stations do")]
    DeskNotStation { peer: PeerId },
    #[error("{peer} may not use the desk of node {me}: it belongs to county {county}")]
    DeskOtherCounty {
        peer: PeerId,
        me: NodeId,
        county: NodeId,
    },
    #[error("{peer} may not use the desk without naming its department")]
    DeskNoDepartment { peer: PeerId },
    #[error("{peer} may use the desk only for its own department, not for {requested:?}")]
    DeskOtherDepartment { peer: PeerId, requested: String },
    #[error("{peer} may not administer node {me}: only operators of this node may")]
    AdminNotOperator { peer: PeerId, me: NodeId },
}

impl Refused {
    /// The refusal in Chinese, for clerks.
    pub fn reason_zh(&self) -> String {
        match self {
            Refused::ReplicateNotNode { peer } => format!("{peer} 不是节点,不能同步数据"),
            Refused::UnknownNode { peer, me } => {
                format!("{peer} 不在拓扑表中,不能与节点 {me} 同步数据")
            }
            Refused::NotMyChild { peer, me, parent } => {
                format!("{peer} 的上级是 {parent},不是本节点 {me},不能同步数据")
            }
            Refused::DeskNotStation { peer } => format!("{peer} 不是站所,不能使用窗口服务"),
            Refused::DeskOtherCounty { peer, me, county } => {
                format!("站所 {peer} 属于县 {county},不能使用节点 {me} 的窗口服务")
            }
            Refused::DeskNoDepartment { peer } => {
                format!("站所 {peer} 使用窗口服务时必须注明部门")
            }
            Refused::DeskOtherDepartment { peer, requested } => {
                format!("站所 {peer} 只能办理本部门的业务,不能办理 {requested} 的业务")
            }
            Refused::AdminNotOperator { peer, me } => {
                format!("{peer} 不是本节点 {me} 的管理员,不能管理本节点")
            }
        }
    }
}

impl From<Refused> for tonic::Status {
    fn from(refused: Refused) -> tonic::Status {
        tonic::Status::permission_denied(refused.to_string())
    }
}

/// Decides whether `peer` may do `action` on node `me`, reading `topology`:
///
/// * `Replicate`: the peer is a node whose topology parent is `me` (a parent accepts only its
///   own children);
/// * `Desk`: the peer is a station of county `me`, asking for its own department;
/// * `Admin`: the peer is an operator of `me`.
pub fn authorize(
    peer: &PeerId,
    action: &Action,
    me: NodeId,
    topology: &Topology,
) -> Result<Authorized, Refused> {
    let refused_peer = peer.clone();
    match (action, peer.kind()) {
        (Action::Replicate, PeerKind::Node { id }) => {
            let node = topology.node(*id).ok_or(Refused::UnknownNode {
                peer: refused_peer.clone(),
                me,
            })?;
            if node.parent != Some(me) {
                return Err(Refused::NotMyChild {
                    peer: refused_peer,
                    me,
                    parent: node
                        .parent
                        .map_or_else(|| "none (the root)".to_owned(), |p| p.to_string()),
                });
            }
        }
        (Action::Replicate, _) => return Err(Refused::ReplicateNotNode { peer: refused_peer }),
        (Action::Desk { department }, PeerKind::Station { county, dept }) => {
            if *county != me {
                return Err(Refused::DeskOtherCounty {
                    peer: refused_peer,
                    me,
                    county: *county,
                });
            }
            match department {
                None => return Err(Refused::DeskNoDepartment { peer: refused_peer }),
                Some(requested) if requested != dept.as_str() => {
                    return Err(Refused::DeskOtherDepartment {
                        peer: refused_peer,
                        requested: requested.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        (Action::Desk { .. }, _) => return Err(Refused::DeskNotStation { peer: refused_peer }),
        (Action::Admin, PeerKind::Operator { id, .. }) if *id == me => {}
        (Action::Admin, _) => {
            return Err(Refused::AdminNotOperator {
                peer: refused_peer,
                me,
            });
        }
    }
    Ok(Authorized {
        peer: peer.clone(),
        action: action.clone(),
    })
}
