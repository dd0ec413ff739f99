//! Authorisation: a pure function of (peer, action, this node, topology).
//!
//! Invariants: nothing here reads a certificate, the clock or the disk; the only way to get an
//! [`Authorized`] is [`authorize`]; everything not allowed by a rule below is refused with a
//! reason.

use yimen_core::catalog::NodeId;
use yimen_core::division::Tier;
use yimen_core::topology::Topology;

use crate::pki::{PeerId, PeerKind};

/// What a peer asks to do on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the replication stream (a child dialling its parent).
    Replicate,
    /// Use the desk of a township or county hub: a station for its department, an operator
    /// of the hub without one.
    Desk { department: Option<String> },
    /// Take a county decision (release or void a quarantined case, reassign a lost
    /// custodian's cases): operators of a county hub only.
    CountyDecision,
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
    #[error("{peer} may not use a department's desk: only the department's station does")]
    DeskNotStation { peer: PeerId },
    #[error("{peer} may not use the desk: nodes replicate, people and stations use desks")]
    DeskNode { peer: PeerId },
    #[error("{peer} may not use the desk of node {me}: it operates another node")]
    DeskOtherOperator { peer: PeerId, me: NodeId },
    #[error("{peer} may not use the desk of node {me}: a village node has no desk")]
    DeskNotHub { peer: PeerId, me: NodeId },
    #[error("{peer} may not take county decisions at node {me}: only operators of a county hub do")]
    DecisionNotCountyOperator { peer: PeerId, me: NodeId },
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
            Refused::DeskNotStation { peer } => {
                format!("{peer} 不是该部门的站所,不能办理部门业务")
            }
            Refused::DeskNode { peer } => {
                format!("{peer} 是节点证书,窗口服务须用站所或操作员证书")
            }
            Refused::DeskOtherOperator { peer, me } => {
                format!("{peer} 是其他节点的操作员,不能使用节点 {me} 的窗口服务")
            }
            Refused::DeskNotHub { peer, me } => {
                format!("节点 {me} 是村(社区)节点,没有审核窗口,{peer} 不能使用")
            }
            Refused::DecisionNotCountyOperator { peer, me } => {
                format!("{peer} 不是县级节点 {me} 的操作员,不能作出县级处置决定")
            }
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
/// * `Desk`: the peer is a station of county `me`, asking for its own department; or an
///   operator of `me`, asking for no department, when `me` is a hub (township or above);
/// * `CountyDecision`: the peer is an operator of `me`, and `me` is a county;
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
        // Only a station acts for a department.
        (
            Action::Desk {
                department: Some(_),
            },
            _,
        ) => {
            return Err(Refused::DeskNotStation { peer: refused_peer });
        }
        (Action::Desk { department: None }, PeerKind::Operator { id, .. }) => {
            if *id != me {
                return Err(Refused::DeskOtherOperator {
                    peer: refused_peer,
                    me,
                });
            }
            if me.tier() == Tier::Village {
                return Err(Refused::DeskNotHub {
                    peer: refused_peer,
                    me,
                });
            }
        }
        (Action::Desk { department: None }, PeerKind::Node { .. }) => {
            return Err(Refused::DeskNode { peer: refused_peer });
        }
        (Action::CountyDecision, PeerKind::Operator { id, .. })
            if *id == me && me.tier() == Tier::County => {}
        (Action::CountyDecision, _) => {
            return Err(Refused::DecisionNotCountyOperator {
                peer: refused_peer,
                me,
            });
        }
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

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;
    use crate::pki::{Dept, OperatorName, TrustDomain};

    fn code(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    fn station(county: &str, dept: &str) -> PeerId {
        PeerId::station(
            TrustDomain::default_domain(),
            code(county),
            Dept::parse(dept).unwrap(),
        )
        .unwrap()
    }

    fn operator(id: &str, name: &str) -> PeerId {
        PeerId::operator(
            TrustDomain::default_domain(),
            code(id),
            OperatorName::parse(name).unwrap(),
        )
    }

    fn node(id: &str) -> PeerId {
        PeerId::node(TrustDomain::default_domain(), code(id))
    }

    fn desk(d: Option<&str>) -> Action {
        Action::Desk {
            department: d.map(str::to_owned),
        }
    }

    const COUNTY: &str = "430421000000";
    const YANPI: &str = "430421105000";
    const HEQUAN: &str = "430421105204";

    /// Runs a table of (peer, action, me, Ok or the refusal variant's name): a proof names
    /// the peer and action asked for; a refusal names the peer and explains itself in Chinese.
    fn check(table: Vec<(PeerId, Action, &str, Result<(), &str>)>) {
        let topology = Topology::sample_hengyang();
        for (peer, action, me, expected) in table {
            let got = authorize(&peer, &action, code(me), &topology);
            match (&got, expected) {
                (Ok(proof), Ok(())) => {
                    assert_eq!(proof.peer(), &peer);
                    assert_eq!(proof.action(), &action);
                }
                (Err(refused), Err(variant)) => {
                    let debug = format!("{refused:?}");
                    assert!(
                        debug.starts_with(&format!("{variant} ")),
                        "{peer} {action:?} at {me}: expected {variant}, got {debug}"
                    );
                    assert!(refused.to_string().contains(&peer.to_string()));
                    assert!(
                        refused
                            .reason_zh()
                            .chars()
                            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
                    );
                    let status = tonic::Status::from(refused.clone());
                    assert_eq!(status.code(), tonic::Code::PermissionDenied);
                }
                _ => panic!("{peer} {action:?} at {me}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn desk_stations_act_for_their_own_department_at_their_own_county() {
        check(vec![
            (station(COUNTY, "ybj"), desk(Some("ybj")), COUNTY, Ok(())),
            (station(COUNTY, "mzj"), desk(Some("mzj")), COUNTY, Ok(())),
            (
                station(COUNTY, "ybj"),
                desk(Some("mzj")),
                COUNTY,
                Err("DeskOtherDepartment"),
            ),
            (
                station(COUNTY, "ybj"),
                desk(None),
                COUNTY,
                Err("DeskNoDepartment"),
            ),
            // A county's station at one of its townships, or at another county.
            (
                station(COUNTY, "ybj"),
                desk(Some("ybj")),
                YANPI,
                Err("DeskOtherCounty"),
            ),
            (
                station("430422000000", "ybj"),
                desk(Some("ybj")),
                COUNTY,
                Err("DeskOtherCounty"),
            ),
        ]);
    }

    #[test]
    fn desk_operators_of_this_hub_act_without_a_department() {
        check(vec![
            (operator(YANPI, "wang.li"), desk(None), YANPI, Ok(())),
            (operator(COUNTY, "li.ming"), desk(None), COUNTY, Ok(())),
            // Another hub's operator, a township operator at the county, and the reverse.
            (
                operator("430421100000", "wang.li"),
                desk(None),
                YANPI,
                Err("DeskOtherOperator"),
            ),
            (
                operator(YANPI, "wang.li"),
                desk(None),
                COUNTY,
                Err("DeskOtherOperator"),
            ),
            (
                operator(COUNTY, "li.ming"),
                desk(None),
                YANPI,
                Err("DeskOtherOperator"),
            ),
            // Only a station acts for a department, whoever else asks.
            (
                operator(COUNTY, "li.ming"),
                desk(Some("ybj")),
                COUNTY,
                Err("DeskNotStation"),
            ),
            (
                node(COUNTY),
                desk(Some("ybj")),
                COUNTY,
                Err("DeskNotStation"),
            ),
            // Nodes replicate; they do not use desks, not even their own.
            (node(YANPI), desk(None), YANPI, Err("DeskNode")),
            (node(HEQUAN), desk(None), YANPI, Err("DeskNode")),
            // A village has no desk, even for its own operator.
            (
                operator(HEQUAN, "zhang.san"),
                desk(None),
                HEQUAN,
                Err("DeskNotHub"),
            ),
        ]);
    }

    #[test]
    fn county_decisions_are_for_operators_of_a_county_hub() {
        check(vec![
            (
                operator(COUNTY, "li.ming"),
                Action::CountyDecision,
                COUNTY,
                Ok(()),
            ),
            (
                operator(YANPI, "wang.li"),
                Action::CountyDecision,
                YANPI,
                Err("DecisionNotCountyOperator"),
            ),
            (
                operator(YANPI, "wang.li"),
                Action::CountyDecision,
                COUNTY,
                Err("DecisionNotCountyOperator"),
            ),
            (
                station(COUNTY, "ybj"),
                Action::CountyDecision,
                COUNTY,
                Err("DecisionNotCountyOperator"),
            ),
            (
                node(COUNTY),
                Action::CountyDecision,
                COUNTY,
                Err("DecisionNotCountyOperator"),
            ),
        ]);
    }
}
