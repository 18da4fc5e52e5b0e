//! Key ownership: a ketama consistent-hash ring ([`pingora_ketama`], the
//! libmemcached/nginx-compatible continuum) over the cluster's members.
//!
//! ketama places servers by address; members here are placed by their node id (each
//! id maps to a synthetic address derived from its hash), so a node keeps its keys
//! when its address changes and every node builds the same ring from the same ids.

use pingora_ketama::{Bucket, Continuum};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node id (`--node-id`).
    pub id: String,
    /// Base URL of its public listener (`http://HOST:PORT`).
    pub url: String,
}

/// The ring for one view of the membership; rebuilt (not edited) when it changes.
pub struct Ring {
    continuum: Continuum,
    members: Vec<Member>,
    by_point: HashMap<SocketAddr, usize>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("members", &self.members).finish_non_exhaustive()
    }
}

/// The synthetic ketama address of a node id.
fn point(id: &str) -> SocketAddr {
    let h = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(h)), (h >> 64) as u16)
}

impl Ring {
    /// A ring over `members` (duplicate ids: the first is kept); order does not matter.
    pub fn new(mut members: Vec<Member>) -> Ring {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        let buckets: Vec<Bucket> = members.iter().map(|m| Bucket::new(point(&m.id), 1)).collect();
        let by_point = members.iter().enumerate().map(|(i, m)| (point(&m.id), i)).collect();
        Ring { continuum: Continuum::new(&buckets), members, by_point }
    }

    /// The member owning `key` (the cache key's hash bytes), None for an empty ring.
    pub fn owner(&self, key: &[u8]) -> Option<&Member> {
        let addr = self.continuum.node(key)?;
        self.by_point.get(&addr).and_then(|&i| self.members.get(i))
    }

    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str]) -> Vec<Member> {
        ids.iter().map(|id| Member { id: (*id).into(), url: format!("http://{id}") }).collect()
    }

    #[test]
    fn every_node_builds_the_same_ring_whatever_the_order() {
        let a = Ring::new(members(&["a", "b", "c"]));
        let b = Ring::new(members(&["c", "a", "b", "a"]));
        for i in 0..1000u32 {
            let k = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()).to_le_bytes();
            assert_eq!(a.owner(&k).map(|m| &m.id), b.owner(&k).map(|m| &m.id));
        }
    }

    /// Keys spread over the nodes, and losing a node moves only that node's keys.
    #[test]
    fn losing_a_node_moves_only_its_keys() {
        let three = Ring::new(members(&["n1", "n2", "n3"]));
        let two = Ring::new(members(&["n1", "n3"]));
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for i in 0..30_000u32 {
            let k = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()).to_le_bytes();
            let before = three.owner(&k).unwrap().id.clone();
            let after = two.owner(&k).unwrap().id.clone();
            if before != "n2" {
                assert_eq!(before, after, "a key of a surviving node moved");
            }
            *per_node.entry(before).or_default() += 1;
        }
        for (node, n) in per_node {
            assert!((6_000..14_000).contains(&n), "{node} owns {n} of 30000");
        }
        assert!(Ring::new(Vec::new()).owner(b"k").is_none());
    }
}
