//! The topology (拓扑表): which node serves which division codes at each tier, versioned and
//! authored at the root. Code prefixes give the default table; merges and moves are new
//! versions, never new identities.
//!
//! Invariants: every node but the root has a parent in the table, at a tier above it (any
//! number of tiers: a village may hang under a county when no township node exists); a
//! division code is served by at most one node at each tier; lookups never guess: a code no
//! node serves is an error naming it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::NodeId;
use crate::division::{DivisionCode, Tier};

/// One node of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyNode {
    pub id: NodeId,
    pub tier: Tier,
    pub parent: Option<NodeId>,
    pub name: String,
    /// Division codes this node currently serves (itself by default; merged units too). A
    /// node serves each listed code and everything below it, unless a deeper listed code is
    /// served by another node of the same tier.
    pub serves: Vec<DivisionCode>,
}

/// A version of the topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub version: u32,
    /// Vintage of the division-code table the codes come from ("NBS 2023").
    pub vintage: String,
    pub nodes: BTreeMap<NodeId, TopologyNode>,
}

/// Vintage of the division codes in the sample fixtures.
pub const SAMPLE_VINTAGE: &str = "NBS 2023";

/// Why a topology lookup or table was refused. Messages are English (logs); `reason_zh` is
/// for clerks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("node {id} is not in the topology")]
    UnknownNode { id: NodeId },
    #[error("the topology has no nodes")]
    Empty,
    #[error("node {id} is listed twice")]
    DuplicateNode { id: NodeId },
    #[error("the entry filed under {key} describes node {id}")]
    KeyMismatch { key: NodeId, id: NodeId },
    #[error("node {node} is marked {tier} but its code is a {code_tier} code")]
    TierMismatch {
        node: NodeId,
        tier: Tier,
        code_tier: Tier,
    },
    #[error("node {node} names parent {parent}, which is not in the topology")]
    MissingParent { node: NodeId, parent: NodeId },
    #[error("node {node} ({tier}) has parent {parent} ({parent_tier}), which is not above it")]
    ParentNotAbove {
        node: NodeId,
        tier: Tier,
        parent: NodeId,
        parent_tier: Tier,
    },
    #[error("the topology has two roots, {first} and {second}")]
    TwoRoots { first: NodeId, second: NodeId },
    #[error("the topology has no root: every node names a parent")]
    NoRoot,
    #[error("the parent links through node {node} form a cycle")]
    Cycle { node: NodeId },
    #[error("node {node} ({tier}) serves {code}, a code above its own tier")]
    ServesAbove {
        node: NodeId,
        tier: Tier,
        code: DivisionCode,
    },
    #[error("code {code} is served at {tier} tier by two nodes, {first} and {second}")]
    ServedTwice {
        code: DivisionCode,
        tier: Tier,
        first: NodeId,
        second: NodeId,
    },
    #[error(
        "node {node} serves {code}, which at {tier} tier routes to {} while its parent chain passes {}",
        show(*.serving),
        show(*.ancestor)
    )]
    RouteMismatch {
        node: NodeId,
        code: DivisionCode,
        tier: Tier,
        /// The node of `tier` that `serving` picks for `code`.
        serving: Option<NodeId>,
        /// The node of `tier` on `node`'s path to the root.
        ancestor: Option<NodeId>,
    },
    #[error("no {tier} node serves code {code}")]
    Unserved { code: DivisionCode, tier: Tier },
    #[error(
        "topology revision version {revision} is not greater than the current version {current}"
    )]
    VersionNotIncreasing { current: u32, revision: u32 },
}

fn show(id: Option<NodeId>) -> String {
    id.map_or_else(|| "no node".to_owned(), |id| id.to_string())
}

fn show_zh(id: Option<NodeId>) -> String {
    id.map_or_else(|| "无节点".to_owned(), |id| id.to_string())
}

impl TopologyError {
    /// A sentence a clerk can act on.
    pub fn reason_zh(&self) -> String {
        match self {
            TopologyError::UnknownNode { id } => {
                format!("拓扑表中没有节点{id}，请确认节点编码或更新拓扑表")
            }
            TopologyError::Empty => "拓扑表为空，请加载拓扑表".to_owned(),
            TopologyError::DuplicateNode { id } => {
                format!("节点{id}在拓扑表中重复出现，请删除重复项")
            }
            TopologyError::KeyMismatch { key, id } => {
                format!("拓扑表中登记为{key}的条目实际是节点{id}，请核对拓扑表")
            }
            TopologyError::TierMismatch {
                node,
                tier,
                code_tier,
            } => format!(
                "节点{node}被标为{}，但其代码属于{}，请核对层级",
                tier.name_zh(),
                code_tier.name_zh()
            ),
            TopologyError::MissingParent { node, parent } => {
                format!("节点{node}的上级{parent}不在拓扑表中，请补充上级节点或更正上级")
            }
            TopologyError::ParentNotAbove {
                node,
                tier,
                parent,
                parent_tier,
            } => format!(
                "节点{node}（{}）的上级{parent}（{}）层级不高于它，请更正上级",
                tier.name_zh(),
                parent_tier.name_zh()
            ),
            TopologyError::TwoRoots { first, second } => {
                format!("拓扑表有两个根节点{first}和{second}，请为其中一个指定上级")
            }
            TopologyError::NoRoot => "拓扑表没有根节点，请指定一个没有上级的节点".to_owned(),
            TopologyError::Cycle { node } => {
                format!("经过节点{node}的上级关系形成循环，请更正上级")
            }
            TopologyError::ServesAbove { node, tier, code } => format!(
                "节点{node}（{}）服务的代码{code}高于其层级，请更正服务范围",
                tier.name_zh()
            ),
            TopologyError::ServedTwice {
                code,
                tier,
                first,
                second,
            } => format!(
                "代码{code}在{}同时由{first}和{second}服务，请只保留一个",
                tier.name_zh()
            ),
            TopologyError::RouteMismatch {
                node,
                code,
                tier,
                serving,
                ancestor,
            } => format!(
                "节点{node}服务的代码{code}在{}由{}服务，但其上级链经过{}，请更正服务范围或上级",
                tier.name_zh(),
                show_zh(*serving),
                show_zh(*ancestor)
            ),
            TopologyError::Unserved { code, tier } => format!(
                "没有{}节点服务代码{code}，请确认代码或更新拓扑表",
                tier.name_zh()
            ),
            TopologyError::VersionNotIncreasing { current, revision } => {
                format!("拓扑表修订版本号{revision}不大于当前版本{current}，请使用更新的拓扑表")
            }
        }
    }
}

/// (tier, served code) → the nodes of that tier listing the code.
type ServeIndex = BTreeMap<(Tier, DivisionCode), Vec<NodeId>>;

/// The sample county: 衡阳县 with two townships (DOMAIN.md "Division codes").
const SAMPLE_COUNTY: [(&str, &str); 7] = [
    ("430421000000", "衡阳县"),
    ("430421105000", "演陂镇"),
    ("430421100000", "西渡镇"),
    ("430421105204", "河泉村"),
    ("430421105200", "黄石村"),
    ("430421105001", "车站社区"),
    // DOMAIN.md does not list the villages of 西渡镇: code and name are a fixture, not a
    // real village.
    ("430421100201", "西渡镇示范村"),
];

/// Added by the city sample above and beside the county.
const SAMPLE_CITY_EXTRA: [(&str, &str); 4] = [
    ("430400000000", "衡阳市"),
    ("430422000000", "衡南县"),
    ("430422001000", "云集街道"),
    // Fixture name: DOMAIN.md does not list the communities of 云集街道.
    ("430422001001", "云集街道示范社区"),
];

impl Topology {
    /// The default table derived from codes: each node's tier is its code's tier, its parent
    /// the nearest ancestor code in the list, and it serves its own code. Exactly one node
    /// (the root) may have no ancestor in the list.
    pub fn from_codes(
        version: u32,
        vintage: &str,
        nodes: &[(NodeId, &str)],
    ) -> Result<Topology, TopologyError> {
        if nodes.is_empty() {
            return Err(TopologyError::Empty);
        }
        let mut ids = BTreeSet::new();
        for (id, _) in nodes {
            if !ids.insert(*id) {
                return Err(TopologyError::DuplicateNode { id: *id });
            }
        }
        let mut table = BTreeMap::new();
        let mut root: Option<NodeId> = None;
        for &(id, name) in nodes {
            let parent = id.ancestors().find(|a| ids.contains(a));
            if parent.is_none() {
                if let Some(first) = root {
                    return Err(TopologyError::TwoRoots {
                        first: first.min(id),
                        second: first.max(id),
                    });
                }
                root = Some(id);
            }
            let node = TopologyNode {
                id,
                tier: id.tier(),
                parent,
                name: name.to_owned(),
                serves: vec![id],
            };
            table.insert(id, node);
        }
        let topology = Topology {
            version,
            vintage: vintage.to_owned(),
            nodes: table,
        };
        // Valid by construction; checked anyway so a bug here cannot hand out a bad table.
        if let Err(problems) = topology.validate()
            && let Some(first) = problems.into_iter().next()
        {
            return Err(first);
        }
        Ok(topology)
    }

    /// Every problem of the table, all at once.
    pub fn validate(&self) -> Result<(), Vec<TopologyError>> {
        if self.nodes.is_empty() {
            return Err(vec![TopologyError::Empty]);
        }
        let mut out = Vec::new();
        let mut roots = Vec::new();
        for (&key, node) in &self.nodes {
            if key != node.id {
                out.push(TopologyError::KeyMismatch { key, id: node.id });
            }
            let code_tier = node.id.tier();
            if node.tier != code_tier {
                out.push(TopologyError::TierMismatch {
                    node: node.id,
                    tier: node.tier,
                    code_tier,
                });
            }
            match node.parent {
                None => roots.push(node.id),
                Some(parent) => match self.nodes.get(&parent) {
                    None => out.push(TopologyError::MissingParent {
                        node: node.id,
                        parent,
                    }),
                    Some(p) if p.tier >= node.tier => out.push(TopologyError::ParentNotAbove {
                        node: node.id,
                        tier: node.tier,
                        parent,
                        parent_tier: p.tier,
                    }),
                    Some(_) => {}
                },
            }
            for &code in &node.serves {
                if code.tier() < node.tier {
                    out.push(TopologyError::ServesAbove {
                        node: node.id,
                        tier: node.tier,
                        code,
                    });
                }
            }
        }
        match roots.as_slice() {
            [] => out.push(TopologyError::NoRoot),
            [first, rest @ ..] => out.extend(rest.iter().map(|&second| TopologyError::TwoRoots {
                first: *first,
                second,
            })),
        }
        out.extend(self.cycles());
        let index = self.serve_index();
        for (&(tier, code), ids) in &index {
            if let [first, rest @ ..] = ids.as_slice() {
                out.extend(rest.iter().map(|&second| TopologyError::ServedTwice {
                    code,
                    tier,
                    first: *first,
                    second,
                }));
            }
        }
        if let [root] = roots.as_slice() {
            out.extend(self.route_mismatches(&index, *root));
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// One `Cycle` per cycle of parent links, naming its smallest node. Each node is walked
    /// once: a walk stops at a node already finished, a missing parent or the root.
    fn cycles(&self) -> Vec<TopologyError> {
        let mut finished: BTreeSet<NodeId> = BTreeSet::new();
        let mut out = Vec::new();
        for &start in self.nodes.keys() {
            let mut walk: Vec<NodeId> = Vec::new();
            let mut on_walk: BTreeSet<NodeId> = BTreeSet::new();
            let mut at = Some(start);
            while let Some(id) = at {
                if finished.contains(&id) || !self.nodes.contains_key(&id) {
                    break;
                }
                if !on_walk.insert(id) {
                    let from = walk.iter().position(|w| *w == id).unwrap_or(0);
                    if let Some(smallest) = walk[from..].iter().min() {
                        out.push(TopologyError::Cycle { node: *smallest });
                    }
                    break;
                }
                walk.push(id);
                at = self.nodes.get(&id).and_then(|n| n.parent);
            }
            finished.extend(walk);
        }
        out
    }

    /// Each code a node serves must route, at every tier present in the table above the
    /// node, to the node of that tier on its own path to the root. Checked only when the
    /// table has one root, for nodes whose path reaches it, and for codes whose lookup is
    /// unambiguous: other problems are reported by their own checks.
    fn route_mismatches(&self, index: &ServeIndex, root: NodeId) -> Vec<TopologyError> {
        let tiers: BTreeSet<Tier> = self.nodes.values().map(|n| n.tier).collect();
        let mut out = Vec::new();
        for node in self.nodes.values() {
            let path = self.path_to_root(node.id);
            if path.last() != Some(&root) {
                continue;
            }
            for &tier in tiers.iter().filter(|t| **t < node.tier) {
                let ancestor = path
                    .iter()
                    .copied()
                    .find(|id| self.nodes.get(id).is_some_and(|n| n.tier == tier));
                for &code in &node.serves {
                    let serving = match Self::serving_in(index, code, tier) {
                        Ok(id) => Some(id),
                        Err(TopologyError::Unserved { .. }) => None,
                        Err(_) => continue,
                    };
                    if serving != ancestor {
                        out.push(TopologyError::RouteMismatch {
                            node: node.id,
                            code,
                            tier,
                            serving,
                            ancestor,
                        });
                    }
                }
            }
        }
        out
    }

    fn serve_index(&self) -> ServeIndex {
        let mut index = ServeIndex::new();
        for node in self.nodes.values() {
            for &code in &node.serves {
                let ids = index.entry((node.tier, code)).or_default();
                if !ids.contains(&node.id) {
                    ids.push(node.id);
                }
            }
        }
        index
    }

    fn serving_in(
        index: &ServeIndex,
        code: DivisionCode,
        tier: Tier,
    ) -> Result<NodeId, TopologyError> {
        // Deepest ancestor-or-self first: a deeper listed code wins over a shallower one.
        for listed in std::iter::once(code).chain(code.ancestors()) {
            match index.get(&(tier, listed)).map(Vec::as_slice) {
                Some([only]) => return Ok(*only),
                Some([first, second, ..]) => {
                    return Err(TopologyError::ServedTwice {
                        code: listed,
                        tier,
                        first: *first,
                        second: *second,
                    });
                }
                Some([]) | None => {}
            }
        }
        Err(TopologyError::Unserved { code, tier })
    }

    /// The node of `tier` serving `code`: among the nodes of that tier, the one listing the
    /// deepest ancestor-or-self of `code`. Never guesses: no such node is `Unserved`, two are
    /// `ServedTwice`.
    pub fn serving(&self, code: DivisionCode, tier: Tier) -> Result<NodeId, TopologyError> {
        Self::serving_in(&self.serve_index(), code, tier)
    }

    pub fn node(&self, id: NodeId) -> Option<&TopologyNode> {
        self.nodes.get(&id)
    }

    /// The node, or `UnknownNode`.
    pub fn require(&self, id: NodeId) -> Result<&TopologyNode, TopologyError> {
        self.nodes.get(&id).ok_or(TopologyError::UnknownNode { id })
    }

    /// The first node without a parent (a valid table has exactly one).
    pub fn root(&self) -> Option<&TopologyNode> {
        self.nodes.values().find(|n| n.parent.is_none())
    }

    /// The nodes whose parent is `id`, in code order.
    pub fn children(&self, id: NodeId) -> impl Iterator<Item = &TopologyNode> + '_ {
        self.nodes.values().filter(move |n| n.parent == Some(id))
    }

    /// `id` and its ancestors by parent links, `id` first, the root last. Empty when `id` is
    /// not in the table; on an invalid table it stops at a missing parent or a cycle.
    pub fn path_to_root(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut seen = BTreeSet::new();
        let mut at = self.nodes.get(&id);
        while let Some(node) = at {
            if !seen.insert(node.id) {
                break;
            }
            path.push(node.id);
            at = node.parent.and_then(|p| self.nodes.get(&p));
        }
        path
    }

    /// Whether `node` is `subtree_root` or lies below it by parent links (not by codes).
    pub fn is_in_subtree(&self, node: NodeId, subtree_root: NodeId) -> bool {
        self.path_to_root(node).contains(&subtree_root)
    }

    /// The lowest node that both `a` and `b` are in the subtree of, by parent links; `None`
    /// when either is unknown or they share no ancestor.
    pub fn lowest_common_ancestor(&self, a: NodeId, b: NodeId) -> Option<NodeId> {
        let above_b: BTreeSet<NodeId> = self.path_to_root(b).into_iter().collect();
        self.path_to_root(a)
            .into_iter()
            .find(|id| above_b.contains(id))
    }

    /// Replaces the table by `revision` when its version is greater and it is valid; every
    /// problem is reported at once.
    pub fn apply(&self, revision: Topology) -> Result<Topology, Vec<TopologyError>> {
        let mut out = Vec::new();
        if revision.version <= self.version {
            out.push(TopologyError::VersionNotIncreasing {
                current: self.version,
                revision: revision.version,
            });
        }
        if let Err(problems) = revision.validate() {
            out.extend(problems);
        }
        if out.is_empty() {
            Ok(revision)
        } else {
            Err(out)
        }
    }

    /// Fixture for tests, the walk-through and the demo: 衡阳县 (root), 演陂镇 with 河泉村,
    /// 黄石村 and 车站社区, 西渡镇 with one fixture village. Version 1, vintage NBS 2023.
    pub fn sample_hengyang() -> Topology {
        Self::sample(&[&SAMPLE_COUNTY])
    }

    /// `sample_hengyang` under a city root 衡阳市, beside 衡南县 with 云集街道 and one fixture
    /// community.
    pub fn sample_hengyang_city() -> Topology {
        Self::sample(&[&SAMPLE_COUNTY, &SAMPLE_CITY_EXTRA])
    }

    #[allow(
        clippy::expect_used,
        reason = "fixed fixture data, checked by the sample tests"
    )]
    fn sample(parts: &[&[(&str, &str)]]) -> Topology {
        let nodes: Vec<(NodeId, &str)> = parts
            .iter()
            .flat_map(|p| p.iter())
            .map(|&(code, name)| {
                // Cannot fail: the fixture codes are constants, parsed by the sample tests.
                let id = DivisionCode::parse(code).expect("fixture codes are valid");
                (id, name)
            })
            .collect();
        // Cannot fail: the fixture has one root and no duplicates (checked by the tests).
        Topology::from_codes(1, SAMPLE_VINTAGE, &nodes).expect("fixture table is valid")
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test that unwraps fails loudly, which is the point"
)]
mod tests {
    use super::*;

    fn code(s: &str) -> DivisionCode {
        DivisionCode::parse(s).unwrap()
    }

    fn codes(list: &[&str]) -> Vec<DivisionCode> {
        list.iter().map(|s| code(s)).collect()
    }

    fn node_mut<'a>(t: &'a mut Topology, id: &str) -> &'a mut TopologyNode {
        t.nodes.get_mut(&code(id)).unwrap()
    }

    /// Version 2 of the county sample: 河泉村 also serves 陇头村 (430421105206).
    fn merged() -> Topology {
        let mut t = Topology::sample_hengyang();
        t.version = 2;
        node_mut(&mut t, "430421105204")
            .serves
            .push(code("430421105206"));
        t
    }

    /// Version 2 of the county sample: 河泉村 moved under 西渡镇 (same identity).
    fn moved() -> Topology {
        let mut t = Topology::sample_hengyang();
        t.version = 2;
        node_mut(&mut t, "430421105204").parent = Some(code("430421100000"));
        node_mut(&mut t, "430421100000")
            .serves
            .push(code("430421105204"));
        t
    }

    #[test]
    fn samples_are_valid_and_shaped() {
        // (topology, root, node count, [(node, parent)])
        let cases = [
            (
                Topology::sample_hengyang(),
                "430421000000",
                7,
                vec![
                    ("430421105000", Some("430421000000")),
                    ("430421100000", Some("430421000000")),
                    ("430421105204", Some("430421105000")),
                    ("430421105200", Some("430421105000")),
                    ("430421105001", Some("430421105000")),
                    ("430421100201", Some("430421100000")),
                    ("430421000000", None),
                ],
            ),
            (
                Topology::sample_hengyang_city(),
                "430400000000",
                11,
                vec![
                    ("430421000000", Some("430400000000")),
                    ("430422000000", Some("430400000000")),
                    ("430422001000", Some("430422000000")),
                    ("430422001001", Some("430422001000")),
                    ("430400000000", None),
                ],
            ),
        ];
        for (t, root, count, parents) in cases {
            assert_eq!(t.validate(), Ok(()));
            assert_eq!((t.version, t.vintage.as_str()), (1, "NBS 2023"));
            assert_eq!(t.root().map(|n| n.id), Some(code(root)));
            assert_eq!(t.nodes.len(), count);
            for (id, parent) in parents {
                let n = t.node(code(id)).unwrap();
                assert_eq!(n.parent, parent.map(code), "{id}");
                assert_eq!(n.tier, code(id).tier());
                assert_eq!(n.serves, vec![code(id)]);
            }
        }
        let t = Topology::sample_hengyang_city();
        let names = [
            ("430421105204", "河泉村"),
            ("430421100201", "西渡镇示范村"),
            ("430422001001", "云集街道示范社区"),
        ];
        for (id, name) in names {
            assert_eq!(t.node(code(id)).map(|n| n.name.as_str()), Some(name));
        }
    }

    #[test]
    fn serving_table() {
        let county = Topology::sample_hengyang();
        let city = Topology::sample_hengyang_city();
        let merged = merged();
        let moved = moved();
        let cases: &[(&Topology, &str, Tier, Option<&str>)] = &[
            (
                &county,
                "430421100201",
                Tier::Township,
                Some("430421100000"),
            ),
            (
                &county,
                "430421100299",
                Tier::Township,
                Some("430421100000"),
            ),
            (&county, "430421100299", Tier::Village, None),
            (&county, "430422001001", Tier::County, None),
            (&county, "430421105204", Tier::Village, Some("430421105204")),
            (
                &county,
                "430421105204",
                Tier::Township,
                Some("430421105000"),
            ),
            (&county, "430421105204", Tier::County, Some("430421000000")),
            (&county, "430421105204", Tier::City, None),
            (&county, "430421000000", Tier::Township, None),
            (&county, "430421105206", Tier::Village, None),
            (&city, "430422001001", Tier::City, Some("430400000000")),
            (&city, "430422001001", Tier::County, Some("430422000000")),
            (&city, "430423000000", Tier::City, Some("430400000000")),
            (&city, "430423000000", Tier::County, None),
            (&city, "430421105206", Tier::Township, Some("430421105000")),
            // Merged village: both codes resolve to 河泉村.
            (&merged, "430421105204", Tier::Village, Some("430421105204")),
            (&merged, "430421105206", Tier::Village, Some("430421105204")),
            (
                &merged,
                "430421105206",
                Tier::Township,
                Some("430421105000"),
            ),
            (&merged, "430421105209", Tier::Village, None),
            // Moved village: the deeper listed code wins over 演陂镇's prefix.
            (&moved, "430421105204", Tier::Township, Some("430421100000")),
            (&moved, "430421105200", Tier::Township, Some("430421105000")),
        ];
        for (t, c, tier, expect) in cases {
            let got = t.serving(code(c), *tier);
            let want = match expect {
                Some(id) => Ok(code(id)),
                None => Err(TopologyError::Unserved {
                    code: code(c),
                    tier: *tier,
                }),
            };
            assert_eq!(got, want, "{c} at {tier}");
        }
    }

    #[test]
    fn merged_village_is_a_valid_revision() {
        let v1 = Topology::sample_hengyang();
        let v2 = v1.apply(merged()).unwrap();
        assert_eq!(v2.version, 2);
        for c in ["430421105204", "430421105206"] {
            assert_eq!(
                v2.serving(code(c), Tier::Village),
                Ok(code("430421105204")),
                "{c}"
            );
        }
        assert_eq!(
            v1.serving(code("430421105206"), Tier::Village),
            Err(TopologyError::Unserved {
                code: code("430421105206"),
                tier: Tier::Village
            })
        );
    }

    #[test]
    fn tree_queries_follow_parent_links() {
        let t = Topology::sample_hengyang_city();
        let moved = moved();
        // lca: (table, a, b, expected)
        let lca: &[(&Topology, &str, &str, Option<&str>)] = &[
            (&t, "430421105204", "430421105200", Some("430421105000")),
            (&t, "430421105204", "430421100201", Some("430421000000")),
            (&t, "430421105204", "430422001001", Some("430400000000")),
            (&t, "430421105204", "430421105000", Some("430421105000")),
            (&t, "430421105204", "430421105204", Some("430421105204")),
            (&t, "430421105204", "430421105206", None), // not a node
            // By links, not codes: the moved village now meets 西渡镇's village at 西渡镇.
            (&moved, "430421105204", "430421100201", Some("430421100000")),
            (&moved, "430421105204", "430421105200", Some("430421000000")),
        ];
        for (table, a, b, expect) in lca {
            let got = table.lowest_common_ancestor(code(a), code(b));
            assert_eq!(got, expect.map(code), "{a} ^ {b}");
            assert_eq!(got, table.lowest_common_ancestor(code(b), code(a)));
        }
        // path_to_root: (table, node, path)
        let paths: &[(&Topology, &str, &[&str])] = &[
            (
                &t,
                "430422001001",
                &[
                    "430422001001",
                    "430422001000",
                    "430422000000",
                    "430400000000",
                ],
            ),
            (&t, "430400000000", &["430400000000"]),
            (&t, "430421105206", &[]),
            (
                &moved,
                "430421105204",
                &["430421105204", "430421100000", "430421000000"],
            ),
        ];
        for (table, id, want) in paths {
            assert_eq!(table.path_to_root(code(id)), codes(want), "{id}");
        }
        // is_in_subtree: (table, node, subtree root, expected)
        let subtree: &[(&Topology, &str, &str, bool)] = &[
            (&t, "430421105204", "430421105000", true),
            (&t, "430421105204", "430400000000", true),
            (&t, "430421105204", "430421105204", true),
            (&t, "430421105204", "430421100000", false),
            (&t, "430421105000", "430421105204", false),
            (&moved, "430421105204", "430421100000", true),
            (&moved, "430421105204", "430421105000", false),
        ];
        for (table, node, root, want) in subtree {
            assert_eq!(
                table.is_in_subtree(code(node), code(root)),
                *want,
                "{node} in {root}"
            );
        }
        // children: (table, node, children in code order)
        let kids: &[(&Topology, &str, &[&str])] = &[
            (
                &t,
                "430421105000",
                &["430421105001", "430421105200", "430421105204"],
            ),
            (&t, "430400000000", &["430421000000", "430422000000"]),
            (&t, "430421105204", &[]),
            (&moved, "430421100000", &["430421100201", "430421105204"]),
        ];
        for (table, id, want) in kids {
            let got: Vec<NodeId> = table.children(code(id)).map(|n| n.id).collect();
            assert_eq!(got, codes(want), "children of {id}");
        }
        assert_eq!(
            t.require(code("430421105206")),
            Err(TopologyError::UnknownNode {
                id: code("430421105206")
            })
        );
    }

    #[test]
    fn from_codes_table() {
        // (codes, expected parents in input order, or the error)
        type Case = (
            &'static [&'static str],
            Result<Vec<Option<&'static str>>, TopologyError>,
        );
        let cases: Vec<Case> = vec![
            (
                &["430421000000", "430421105000", "430421105204"],
                Ok(vec![None, Some("430421000000"), Some("430421105000")]),
            ),
            // No township node: the village hangs under the county.
            (
                &["430421000000", "430421105204", "430421100000"],
                Ok(vec![None, Some("430421000000"), Some("430421000000")]),
            ),
            (&["430421105204"], Ok(vec![None])),
            (&[], Err(TopologyError::Empty)),
            (
                &["430421000000", "430421105000", "430421000000"],
                Err(TopologyError::DuplicateNode {
                    id: code("430421000000"),
                }),
            ),
            (
                &["430422000000", "430421105000", "430421000000"],
                Err(TopologyError::TwoRoots {
                    first: code("430421000000"),
                    second: code("430422000000"),
                }),
            ),
        ];
        for (list, expect) in cases {
            let input: Vec<(NodeId, &str)> = list.iter().map(|c| (code(c), "名")).collect();
            let got = Topology::from_codes(7, "NBS 2023", &input);
            match (got, expect) {
                (Ok(t), Ok(parents)) => {
                    assert_eq!(t.version, 7);
                    for (c, p) in list.iter().zip(parents) {
                        assert_eq!(t.node(code(c)).unwrap().parent, p.map(code), "{c}");
                    }
                }
                (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ()), "{list:?}"),
            }
        }
    }

    #[test]
    fn validate_reports_each_kind() {
        type Edit = fn(&mut Topology);
        let c = code;
        let cases: Vec<(&str, Edit, Vec<TopologyError>)> = vec![
            ("empty", |t| t.nodes.clear(), vec![TopologyError::Empty]),
            (
                "key mismatch",
                |t| {
                    let mut n = t.nodes.remove(&code("430421105001")).unwrap();
                    n.parent = None;
                    n.serves.clear();
                    let mut bad = n.clone();
                    bad.id = code("430421105002");
                    bad.parent = Some(code("430421105000"));
                    t.nodes.insert(code("430421105001"), bad);
                },
                vec![TopologyError::KeyMismatch {
                    key: c("430421105001"),
                    id: c("430421105002"),
                }],
            ),
            (
                "tier mismatch",
                |t| node_mut(t, "430421105200").tier = Tier::Township,
                vec![
                    TopologyError::TierMismatch {
                        node: c("430421105200"),
                        tier: Tier::Township,
                        code_tier: Tier::Village,
                    },
                    TopologyError::ParentNotAbove {
                        node: c("430421105200"),
                        tier: Tier::Township,
                        parent: c("430421105000"),
                        parent_tier: Tier::Township,
                    },
                ],
            ),
            (
                "missing parent",
                |t| node_mut(t, "430421105200").parent = Some(code("430421103000")),
                vec![TopologyError::MissingParent {
                    node: c("430421105200"),
                    parent: c("430421103000"),
                }],
            ),
            (
                "parent not above",
                |t| node_mut(t, "430421105200").parent = Some(code("430421105204")),
                vec![TopologyError::ParentNotAbove {
                    node: c("430421105200"),
                    tier: Tier::Village,
                    parent: c("430421105204"),
                    parent_tier: Tier::Village,
                }],
            ),
            (
                "two roots",
                |t| node_mut(t, "430421100000").parent = None,
                vec![TopologyError::TwoRoots {
                    first: c("430421000000"),
                    second: c("430421100000"),
                }],
            ),
            (
                "cycle",
                |t| {
                    node_mut(t, "430421105000").parent = Some(code("430421105204"));
                },
                vec![
                    TopologyError::ParentNotAbove {
                        node: c("430421105000"),
                        tier: Tier::Township,
                        parent: c("430421105204"),
                        parent_tier: Tier::Village,
                    },
                    TopologyError::Cycle {
                        node: c("430421105000"),
                    },
                ],
            ),
            (
                "no root",
                |t| {
                    node_mut(t, "430421000000").parent = Some(code("430421100000"));
                },
                vec![
                    TopologyError::ParentNotAbove {
                        node: c("430421000000"),
                        tier: Tier::County,
                        parent: c("430421100000"),
                        parent_tier: Tier::Township,
                    },
                    TopologyError::NoRoot,
                    TopologyError::Cycle {
                        node: c("430421000000"),
                    },
                ],
            ),
            (
                "serves above",
                |t| {
                    node_mut(t, "430421105204")
                        .serves
                        .push(code("430421105000"))
                },
                vec![TopologyError::ServesAbove {
                    node: c("430421105204"),
                    tier: Tier::Village,
                    code: c("430421105000"),
                }],
            ),
            (
                "served twice",
                |t| {
                    node_mut(t, "430421105200")
                        .serves
                        .push(code("430421105204"))
                },
                vec![TopologyError::ServedTwice {
                    code: c("430421105204"),
                    tier: Tier::Village,
                    first: c("430421105200"),
                    second: c("430421105204"),
                }],
            ),
            (
                "moved without serving",
                |t| node_mut(t, "430421105204").parent = Some(code("430421100000")),
                vec![TopologyError::RouteMismatch {
                    node: c("430421105204"),
                    code: c("430421105204"),
                    tier: Tier::Township,
                    serving: Some(c("430421105000")),
                    ancestor: Some(c("430421100000")),
                }],
            ),
            (
                "merged code outside the township",
                |t| {
                    node_mut(t, "430421105204")
                        .serves
                        .push(code("430421103201"))
                },
                vec![TopologyError::RouteMismatch {
                    node: c("430421105204"),
                    code: c("430421103201"),
                    tier: Tier::Township,
                    serving: None,
                    ancestor: Some(c("430421105000")),
                }],
            ),
        ];
        for (name, edit, want) in cases {
            let mut t = Topology::sample_hengyang();
            edit(&mut t);
            assert_eq!(t.validate(), Err(want), "{name}");
        }
    }

    #[test]
    fn apply_reports_every_problem() {
        let v1 = Topology::sample_hengyang();
        let mut bad = moved();
        bad.version = 1;
        node_mut(&mut bad, "430421100000").serves.clear();
        let got = v1.apply(bad);
        assert_eq!(
            got,
            Err(vec![
                TopologyError::VersionNotIncreasing {
                    current: 1,
                    revision: 1
                },
                TopologyError::RouteMismatch {
                    node: code("430421100201"),
                    code: code("430421100201"),
                    tier: Tier::Township,
                    serving: None,
                    ancestor: Some(code("430421100000")),
                },
                TopologyError::RouteMismatch {
                    node: code("430421105204"),
                    code: code("430421105204"),
                    tier: Tier::Township,
                    serving: Some(code("430421105000")),
                    ancestor: Some(code("430421100000")),
                },
            ])
        );
        let ok = v1.apply(moved()).unwrap();
        assert_eq!(ok.version, 2);
        assert_eq!(
            ok.apply(moved()),
            Err(vec![TopologyError::VersionNotIncreasing {
                current: 2,
                revision: 2
            }])
        );
    }

    #[test]
    fn every_error_has_messages() {
        let c = code("430421105204");
        let errors = [
            TopologyError::UnknownNode { id: c },
            TopologyError::Empty,
            TopologyError::DuplicateNode { id: c },
            TopologyError::KeyMismatch { key: c, id: c },
            TopologyError::TierMismatch {
                node: c,
                tier: Tier::Township,
                code_tier: Tier::Village,
            },
            TopologyError::MissingParent { node: c, parent: c },
            TopologyError::ParentNotAbove {
                node: c,
                tier: Tier::Village,
                parent: c,
                parent_tier: Tier::Village,
            },
            TopologyError::TwoRoots {
                first: c,
                second: c,
            },
            TopologyError::NoRoot,
            TopologyError::Cycle { node: c },
            TopologyError::ServesAbove {
                node: c,
                tier: Tier::Village,
                code: c,
            },
            TopologyError::ServedTwice {
                code: c,
                tier: Tier::Village,
                first: c,
                second: c,
            },
            TopologyError::RouteMismatch {
                node: c,
                code: c,
                tier: Tier::Township,
                serving: None,
                ancestor: Some(c),
            },
            TopologyError::Unserved {
                code: c,
                tier: Tier::Township,
            },
            TopologyError::VersionNotIncreasing {
                current: 2,
                revision: 1,
            },
        ];
        for e in errors {
            let zh = e.reason_zh();
            assert!(zh.contains('请'), "{e}: {zh}");
            assert!(!e.to_string().contains('请'), "English message: {e}");
        }
        let e = TopologyError::Unserved {
            code: c,
            tier: Tier::Township,
        };
        assert_eq!(e.to_string(), "no township node serves code 430421105204");
        assert!(e.reason_zh().contains("430421105204"));
    }
}
