//! Routing of cases on the node tree: who is competent for a step (同城通办: the household's
//! home side decides, wherever the case was accepted), and how a 转报 handoff travels (up to the
//! lowest common ancestor, then down).
//!
//! Invariants: routing reads only the topology table and the catalog step; it never guesses a
//! node (a code no node serves is `Unserved`, a code served twice is a `Topology` error); a
//! path always starts at `from`, ends at `to` and passes their lowest common ancestor once.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::{DeptKey, ItemVersion, NodeId, Step};
use crate::division::{DivisionCode, DivisionError, Tier};
use crate::topology::{Topology, TopologyError};

/// The one `(node, department)` that may change a case (DESIGN.md "Custody").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Custodian {
    pub node: NodeId,
    /// The department acting at the node; `None` is the node's own desk.
    pub department: Option<DeptKey>,
}

impl std::str::FromStr for Custodian {
    type Err = DivisionError;

    /// `NODE` or `NODE/DEPT`, as `Display` writes it.
    fn from_str(s: &str) -> Result<Custodian, DivisionError> {
        let (node, department) = match s.split_once('/') {
            Some((node, dept)) => (node, Some(DeptKey(dept.trim().to_owned()))),
            None => (s, None),
        };
        Ok(Custodian {
            node: DivisionCode::parse(node.trim())?,
            department: department.filter(|d| !d.0.is_empty()),
        })
    }
}

impl fmt::Display for Custodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.department {
            Some(dept) => write!(f, "{}/{dept}", self.node),
            None => write!(f, "{}", self.node),
        }
    }
}

/// Why a case could not be routed. Messages are English (logs); `reason_zh` is for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("no {tier} node serves division code {code}: the case cannot be routed")]
    Unserved { code: DivisionCode, tier: Tier },
    /// The table itself is wrong (e.g. a code served twice at one tier): routing never guesses.
    #[error("the topology cannot route: {0}")]
    Topology(TopologyError),
    #[error("nodes {from} and {to} have no common ancestor in the topology")]
    NoCommonAncestor { from: NodeId, to: NodeId },
    #[error("node {0} is not in the topology")]
    UnknownNode(NodeId),
    #[error("accepting node {0} is not a village node")]
    NotAVillage(NodeId),
    #[error("step {index} is out of range: the item has {steps} steps")]
    StepOutOfRange { index: usize, steps: usize },
}

impl RoutingError {
    /// A sentence a clerk can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            RoutingError::Unserved { code, tier } => format!(
                "拓扑表中没有服务代码{code}的{}节点，也没有能转送到该处的共同上级，本件无法转报；请核对户籍所在地代码，或请上级更新拓扑表",
                tier.name_zh()
            ),
            RoutingError::Topology(e) => format!("拓扑表有误，无法确定办理地：{}", e.reason_zh()),
            RoutingError::NoCommonAncestor { from, to } => {
                format!("节点{from}与{to}在拓扑表中没有共同上级，办件无法转送，请上级更正拓扑表")
            }
            RoutingError::UnknownNode(id) => {
                format!("拓扑表中没有节点{id}，请确认节点编码或更新拓扑表")
            }
            RoutingError::NotAVillage(id) => {
                format!("节点{id}不是村（社区）便民服务中心，不能作为受理地")
            }
            RoutingError::StepOutOfRange { index, steps } => format!(
                "办事程序只有{steps}个环节，没有第{}个环节，请核对事项版本",
                index.saturating_add(1)
            ),
        }
    }
}

impl From<TopologyError> for RoutingError {
    fn from(e: TopologyError) -> RoutingError {
        match e {
            TopologyError::Unserved { code, tier } => RoutingError::Unserved { code, tier },
            TopologyError::UnknownNode { id } => RoutingError::UnknownNode(id),
            other => RoutingError::Topology(other),
        }
    }
}

/// The custodian competent for `step` of a case accepted at `accepting` for a household
/// registered at `household` (同城通办). Village-tier steps stay at the accepting village;
/// every other tier goes to the node of that tier serving the household, with the step's
/// department. The target must be reachable from `accepting` through a common ancestor.
pub fn competent(
    topology: &Topology,
    step: &Step,
    accepting: NodeId,
    household: DivisionCode,
) -> Result<Custodian, RoutingError> {
    let accepting_node = topology
        .node(accepting)
        .ok_or(RoutingError::UnknownNode(accepting))?;
    if accepting_node.tier != Tier::Village {
        return Err(RoutingError::NotAVillage(accepting));
    }
    let node = if step.tier == Tier::Village {
        accepting
    } else {
        topology.serving(household, step.tier)?
    };
    if topology.lowest_common_ancestor(accepting, node).is_none() {
        return Err(RoutingError::NoCommonAncestor {
            from: accepting,
            to: node,
        });
    }
    Ok(Custodian {
        node,
        department: step.department.clone(),
    })
}

/// `competent` for the step at `index` of `item`'s process.
pub fn competent_at(
    topology: &Topology,
    item: &ItemVersion,
    index: usize,
    accepting: NodeId,
    household: DivisionCode,
) -> Result<Custodian, RoutingError> {
    let step = item.steps.get(index).ok_or(RoutingError::StepOutOfRange {
        index,
        steps: item.steps.len(),
    })?;
    competent(topology, step, accepting, household)
}

/// The village node serving the household, if the topology has one.
pub fn home_village(topology: &Topology, household: DivisionCode) -> Option<NodeId> {
    topology.serving(household, Tier::Village).ok()
}

/// The nodes a handoff from `from` to `to` passes: up to their lowest common ancestor and down,
/// both ends included (`[from]` when `from == to`).
pub fn path(topology: &Topology, from: NodeId, to: NodeId) -> Result<Vec<NodeId>, RoutingError> {
    let up = topology.path_to_root(from);
    if up.is_empty() {
        return Err(RoutingError::UnknownNode(from));
    }
    let down = topology.path_to_root(to);
    if down.is_empty() {
        return Err(RoutingError::UnknownNode(to));
    }
    let lca = topology
        .lowest_common_ancestor(from, to)
        .ok_or(RoutingError::NoCommonAncestor { from, to })?;
    // Up from `from` to the ancestor, then down: `to`'s path to the root, cut and reversed.
    let mut out: Vec<NodeId> = up.into_iter().take_while(|id| *id != lca).collect();
    out.push(lca);
    let mut descent: Vec<NodeId> = down.into_iter().take_while(|id| *id != lca).collect();
    descent.reverse();
    out.extend(descent);
    Ok(out)
}

/// One step of a handoff, seen from the node holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Hop {
    /// The handoff has arrived.
    Here,
    /// Send it to the parent.
    Up(NodeId),
    /// Send it to this child.
    Down(NodeId),
}

/// Where a handoff at `at` bound for `to` goes next.
pub fn next_hop(topology: &Topology, at: NodeId, to: NodeId) -> Result<Hop, RoutingError> {
    let route = path(topology, at, to)?;
    let Some(&next) = route.get(1) else {
        return Ok(Hop::Here);
    };
    let parent = topology.node(at).and_then(|n| n.parent);
    if parent == Some(next) {
        Ok(Hop::Up(next))
    } else {
        Ok(Hop::Down(next))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;
    use crate::catalog::StepAction;
    use crate::sample::{self, SampleOptions};

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    fn custodian(s: &str) -> Custodian {
        s.parse().unwrap()
    }

    /// 河泉村 in 演陂镇, where the case is accepted.
    const HEQUAN: &str = "430421105204";
    /// The 西渡镇 fixture village: the household's registration.
    const XIDU_VILLAGE: &str = "430421100201";
    /// A 衡南县 community.
    const HENGNAN: &str = "430422001001";

    /// A sample topology constructor.
    type Sample = fn() -> Topology;
    /// (topology, household, home village).
    type HomeCase = (Sample, &'static str, Option<&'static str>);
    /// (topology, from, to, path).
    type PathCase = (
        Sample,
        &'static str,
        &'static str,
        Result<&'static [&'static str], RoutingError>,
    );
    /// (topology, at, to, next hop).
    type HopCase = (
        Sample,
        &'static str,
        &'static str,
        Result<Hop, RoutingError>,
    );

    /// (name, topology, accepting, household, custodian per step of 医疗救助 by step code).
    type CompetentCase = (
        &'static str,
        Sample,
        &'static str,
        &'static str,
        [(&'static str, Result<&'static str, &'static str>); 6],
    );

    #[test]
    fn competent_follows_the_household_for_every_medical_aid_step() {
        let cases: &[CompetentCase] = &[
            (
                "同城通办 within the county: 演陂镇 accepts for 西渡镇",
                Topology::sample_hengyang,
                HEQUAN,
                XIDU_VILLAGE,
                [
                    ("cs", Ok(HEQUAN)),
                    ("sh", Ok("430421100000")),
                    ("gs", Ok("430421100000")),
                    ("sp", Ok("430421000000/ybj")),
                    ("ff", Ok("430421000000/ybj")),
                    ("bj", Ok(HEQUAN)),
                ],
            ),
            (
                "home case: 河泉村 accepts for its own household",
                Topology::sample_hengyang,
                HEQUAN,
                HEQUAN,
                [
                    ("cs", Ok(HEQUAN)),
                    ("sh", Ok("430421105000")),
                    ("gs", Ok("430421105000")),
                    ("sp", Ok("430421000000/ybj")),
                    ("ff", Ok("430421000000/ybj")),
                    ("bj", Ok(HEQUAN)),
                ],
            ),
            (
                "same case with the city on top",
                Topology::sample_hengyang_city,
                HEQUAN,
                XIDU_VILLAGE,
                [
                    ("cs", Ok(HEQUAN)),
                    ("sh", Ok("430421100000")),
                    ("gs", Ok("430421100000")),
                    ("sp", Ok("430421000000/ybj")),
                    ("ff", Ok("430421000000/ybj")),
                    ("bj", Ok(HEQUAN)),
                ],
            ),
            (
                "衡南县 resident, city topology: 衡南县's township and county decide",
                Topology::sample_hengyang_city,
                HEQUAN,
                HENGNAN,
                [
                    ("cs", Ok(HEQUAN)),
                    ("sh", Ok("430422001000")),
                    ("gs", Ok("430422001000")),
                    ("sp", Ok("430422000000/ybj")),
                    ("ff", Ok("430422000000/ybj")),
                    ("bj", Ok(HEQUAN)),
                ],
            ),
            (
                "衡南县 resident, county-only topology: nobody serves the home side",
                Topology::sample_hengyang,
                HEQUAN,
                HENGNAN,
                [
                    ("cs", Ok(HEQUAN)),
                    (
                        "sh",
                        Err("no township node serves division code 430422001001"),
                    ),
                    (
                        "gs",
                        Err("no township node serves division code 430422001001"),
                    ),
                    (
                        "sp",
                        Err("no county node serves division code 430422001001"),
                    ),
                    (
                        "ff",
                        Err("no county node serves division code 430422001001"),
                    ),
                    ("bj", Ok(HEQUAN)),
                ],
            ),
        ];
        let item = sample::medical_aid(SampleOptions::default());
        for (name, topology, accepting, household, expect) in cases {
            let topology = topology();
            let codes: Vec<&str> = item.steps.iter().map(|s| s.code.0.as_str()).collect();
            let expected_codes: Vec<&str> = expect.iter().map(|(c, _)| *c).collect();
            assert_eq!(codes, expected_codes, "{name}: steps of the sample item");
            for (index, (step, (step_code, want))) in item.steps.iter().zip(expect).enumerate() {
                let got = competent(&topology, step, code(accepting), code(household));
                let via_index =
                    competent_at(&topology, &item, index, code(accepting), code(household));
                assert_eq!(got, via_index, "{name} {step_code}");
                match (got, want) {
                    (Ok(c), Ok(want)) => assert_eq!(c, custodian(want), "{name} {step_code}"),
                    (Err(e), Err(needle)) => {
                        assert!(e.to_string().contains(needle), "{name} {step_code}: {e}");
                        assert!(
                            matches!(e, RoutingError::Unserved { .. }),
                            "{name} {step_code}: {e:?}"
                        );
                        let zh = e.reason_zh();
                        assert!(zh.contains("无法转报"), "{name} {step_code}: {zh}");
                        assert!(zh.contains(household), "{name} {step_code}: {zh}");
                    }
                    (got, want) => panic!("{name} {step_code}: expected {want:?}, got {got:?}"),
                }
            }
        }
    }

    #[test]
    fn competent_refuses_bad_inputs() {
        let item = sample::medical_aid(SampleOptions::default());
        let review = &item.steps[1];
        assert_eq!(review.action, StepAction::Review);
        let cases: &[(&str, &str, usize, RoutingError)] = &[
            (
                "430421105000",
                HEQUAN,
                1,
                RoutingError::NotAVillage(code("430421105000")),
            ),
            (
                "430421000000",
                HEQUAN,
                0,
                RoutingError::NotAVillage(code("430421000000")),
            ),
            (
                "430421105299",
                HEQUAN,
                1,
                RoutingError::UnknownNode(code("430421105299")),
            ),
            (
                HEQUAN,
                HEQUAN,
                6,
                RoutingError::StepOutOfRange { index: 6, steps: 6 },
            ),
            (
                HEQUAN,
                "440100000000",
                3,
                RoutingError::Unserved {
                    code: code("440100000000"),
                    tier: Tier::County,
                },
            ),
        ];
        let topology = Topology::sample_hengyang();
        for (accepting, household, index, want) in cases {
            let got = competent_at(&topology, &item, *index, code(accepting), code(household));
            assert_eq!(got.as_ref(), Err(want), "{accepting} {household} {index}");
            assert!(!want.reason_zh().is_empty());
        }
    }

    #[test]
    fn competent_needs_a_common_ancestor() {
        // Two roots: an invalid table, but routing must answer rather than guess.
        let mut topology = Topology::sample_hengyang_city();
        let city = code("430400000000");
        topology.nodes.remove(&city);
        for node in topology.nodes.values_mut() {
            if node.parent == Some(city) {
                node.parent = None;
            }
        }
        let item = sample::medical_aid(SampleOptions::default());
        let got = competent(&topology, &item.steps[1], code(HEQUAN), code(HENGNAN));
        let want = RoutingError::NoCommonAncestor {
            from: code(HEQUAN),
            to: code("430422001000"),
        };
        assert_eq!(got, Err(want.clone()));
        assert!(want.reason_zh().contains("没有共同上级"));
        assert_eq!(
            path(&topology, code(HEQUAN), code(HENGNAN)),
            Err(RoutingError::NoCommonAncestor {
                from: code(HEQUAN),
                to: code(HENGNAN)
            })
        );
    }

    #[test]
    fn home_village_table() {
        let cases: &[HomeCase] = &[
            (Topology::sample_hengyang, HEQUAN, Some(HEQUAN)),
            (Topology::sample_hengyang, XIDU_VILLAGE, Some(XIDU_VILLAGE)),
            (Topology::sample_hengyang, "430421105209", None),
            (Topology::sample_hengyang, HENGNAN, None),
            (Topology::sample_hengyang_city, HENGNAN, Some(HENGNAN)),
            (Topology::sample_hengyang, "430421105000", None),
        ];
        for (topology, household, want) in cases {
            assert_eq!(
                home_village(&topology(), code(household)),
                want.map(code),
                "{household}"
            );
        }
    }

    #[test]
    fn path_table() {
        let cases: &[PathCase] = &[
            (Topology::sample_hengyang, HEQUAN, HEQUAN, Ok(&[HEQUAN])),
            (
                Topology::sample_hengyang,
                HEQUAN,
                "430421105000",
                Ok(&[HEQUAN, "430421105000"]),
            ),
            (
                Topology::sample_hengyang,
                HEQUAN,
                "430421105200",
                Ok(&[HEQUAN, "430421105000", "430421105200"]),
            ),
            (
                Topology::sample_hengyang,
                HEQUAN,
                "430421100000",
                Ok(&[HEQUAN, "430421105000", "430421000000", "430421100000"]),
            ),
            (
                Topology::sample_hengyang,
                "430421000000",
                XIDU_VILLAGE,
                Ok(&["430421000000", "430421100000", XIDU_VILLAGE]),
            ),
            (
                Topology::sample_hengyang,
                "430421100000",
                HEQUAN,
                Ok(&["430421100000", "430421000000", "430421105000", HEQUAN]),
            ),
            (
                Topology::sample_hengyang_city,
                HEQUAN,
                "430422001000",
                Ok(&[
                    HEQUAN,
                    "430421105000",
                    "430421000000",
                    "430400000000",
                    "430422000000",
                    "430422001000",
                ]),
            ),
            (
                Topology::sample_hengyang,
                HEQUAN,
                "430422001000",
                Err(RoutingError::UnknownNode(code("430422001000"))),
            ),
            (
                Topology::sample_hengyang,
                "430422001000",
                HEQUAN,
                Err(RoutingError::UnknownNode(code("430422001000"))),
            ),
        ];
        for (topology, from, to, want) in cases {
            let got = path(&topology(), code(from), code(to));
            let want = want
                .clone()
                .map(|ids| ids.iter().map(|s| code(s)).collect::<Vec<_>>());
            assert_eq!(got, want, "{from} -> {to}");
        }
    }

    #[test]
    fn hengnan_review_path_passes_the_city() {
        let topology = Topology::sample_hengyang_city();
        let item = sample::medical_aid(SampleOptions::default());
        let review = competent(&topology, &item.steps[1], code(HEQUAN), code(HENGNAN)).unwrap();
        assert_eq!(review, custodian("430422001000"));
        let route = path(&topology, code(HEQUAN), review.node).unwrap();
        assert!(route.contains(&code("430400000000")), "{route:?}");
    }

    #[test]
    fn next_hop_table() {
        let cases: &[HopCase] = &[
            (Topology::sample_hengyang, HEQUAN, HEQUAN, Ok(Hop::Here)),
            (
                Topology::sample_hengyang,
                HEQUAN,
                "430421100000",
                Ok(Hop::Up(code("430421105000"))),
            ),
            (
                Topology::sample_hengyang,
                "430421105000",
                "430421100000",
                Ok(Hop::Up(code("430421000000"))),
            ),
            (
                Topology::sample_hengyang,
                "430421000000",
                XIDU_VILLAGE,
                Ok(Hop::Down(code("430421100000"))),
            ),
            (
                Topology::sample_hengyang,
                "430421100000",
                XIDU_VILLAGE,
                Ok(Hop::Down(code(XIDU_VILLAGE))),
            ),
            (
                Topology::sample_hengyang,
                "430421105000",
                HEQUAN,
                Ok(Hop::Down(code(HEQUAN))),
            ),
            (
                Topology::sample_hengyang_city,
                "430421000000",
                "430422001000",
                Ok(Hop::Up(code("430400000000"))),
            ),
            (
                Topology::sample_hengyang_city,
                "430400000000",
                "430422001000",
                Ok(Hop::Down(code("430422000000"))),
            ),
            (
                Topology::sample_hengyang,
                "430421000000",
                "430400000000",
                Err(RoutingError::UnknownNode(code("430400000000"))),
            ),
            (
                Topology::sample_hengyang,
                "430421105299",
                HEQUAN,
                Err(RoutingError::UnknownNode(code("430421105299"))),
            ),
        ];
        for (topology, at, to, want) in cases {
            assert_eq!(
                next_hop(&topology(), code(at), code(to)),
                *want,
                "{at} -> {to}"
            );
        }
    }

    #[test]
    fn next_hops_walk_the_path() {
        let topology = Topology::sample_hengyang_city();
        let ids: Vec<NodeId> = topology.nodes.keys().copied().collect();
        for &from in &ids {
            for &to in &ids {
                let route = path(&topology, from, to).unwrap();
                let mut walked = vec![from];
                let mut at = from;
                // The tree has 11 nodes; a longer walk is a routing loop.
                for _ in 0..ids.len() {
                    match next_hop(&topology, at, to).unwrap() {
                        Hop::Here => break,
                        Hop::Up(n) | Hop::Down(n) => at = n,
                    }
                    walked.push(at);
                }
                assert_eq!(walked, route, "{from} -> {to}");
                assert_eq!(route.first(), Some(&from));
                assert_eq!(route.last(), Some(&to));
            }
        }
    }

    #[test]
    fn custodian_display_and_order() {
        let cases = [
            (custodian("430421000000/ybj"), "430421000000/ybj"),
            (custodian(HEQUAN), HEQUAN),
        ];
        for (c, want) in cases {
            assert_eq!(c.to_string(), want);
        }
        assert!(custodian(HEQUAN) < custodian("430421105204/ybj"));
    }
}
