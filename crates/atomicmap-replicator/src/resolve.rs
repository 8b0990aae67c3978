//! Stage 3, the conflict resolver: decides what a change does to the replica's record of its
//! key.
//!
//! A replica may see the changes of several sources (several tasks), and duplicates of any of
//! them, in any interleaving. A resolver is correct when the final records do not depend on
//! that interleaving: it must be commutative, associative and idempotent over the changes of
//! a key. The three here are:
//!
//! | resolver | record | merge | a duplicate |
//! |---|---|---|---|
//! | [`LastWriterWins`] | the value (or tombstone) of the largest version | keep the larger `(time, node)` | same version, skipped |
//! | [`GCounter`] | per-node counts | per node, the larger count | same or lower count, skipped |
//! | [`FnResolver`] | whatever the closure keeps | the closure | the closure's business |

use atomicmap::Version;

use crate::codec::Change;

/// What a replica holds for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The value, or `None` for a tombstone: a removal is remembered with its version, so an
    /// older insert arriving later cannot bring the key back.
    pub value: Option<Vec<u8>>,
    /// The version that produced this record (for merges, the largest one merged).
    pub version: Version,
    /// Wall-clock expiry set by a TTL transform (unix milliseconds).
    pub expires_at_ms: Option<u64>,
}

/// A resolver's verdict on one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Replace the key's record with this one.
    Apply(Record),
    /// The change is already reflected (a duplicate) or loses to the current record.
    Skip,
}

/// Stage 3 of the pipeline. See the [module docs](self) for what "correct" means.
pub trait Resolver: Send + Sync + 'static {
    /// What `incoming` does to `current` (the key's record, if the replica has one).
    fn resolve(&self, current: Option<&Record>, incoming: &Change) -> Outcome;
}

/// Last writer wins by hybrid logical clock; equal times are ordered by node id, so two
/// sources can never tie.
#[derive(Clone, Copy, Debug, Default)]
pub struct LastWriterWins;

impl Resolver for LastWriterWins {
    fn resolve(&self, current: Option<&Record>, incoming: &Change) -> Outcome {
        match current {
            Some(current) if current.version >= incoming.version => Outcome::Skip,
            _ => Outcome::Apply(Record {
                value: incoming.value.clone(),
                version: incoming.version,
                expires_at_ms: incoming.expires_at_ms,
            }),
        }
    }
}

/// A grow-only counter CRDT.
///
/// Each source keeps, under the key, its own count as a `u64` (8 bytes, little endian) and
/// only ever increments it; the source's node id comes from the change's version. A replica
/// keeps every node's latest count (merged by max, so a duplicate or an old change cannot
/// count twice) and the total is their sum: see [`GCounter::total`]. Removals and values that
/// are not 8 bytes are not counter changes and are skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct GCounter;

/// Bytes per node in a G-Counter record: node `u16`, count `u64`.
const GCOUNTER_SLOT: usize = 10;

impl GCounter {
    /// The per-node counts of a record's value, sorted by node. `None` when the bytes are not
    /// a G-Counter record.
    pub fn counts(value: &[u8]) -> Option<Vec<(u16, u64)>> {
        if !value.len().is_multiple_of(GCOUNTER_SLOT) {
            return None;
        }
        value
            .chunks_exact(GCOUNTER_SLOT)
            .map(|slot| {
                let node = u16::from_le_bytes([slot[0], slot[1]]);
                let count = u64::from_le_bytes(slot[2..].try_into().ok()?);
                Some((node, count))
            })
            .collect()
    }

    /// The counter's value: the sum of every node's count.
    pub fn total(value: &[u8]) -> Option<u64> {
        Self::counts(value).map(|counts| counts.iter().map(|&(_, count)| count).sum())
    }

    /// Encodes per-node counts (sorted by node) as a record value.
    pub fn encode(counts: &[(u16, u64)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(counts.len() * GCOUNTER_SLOT);
        for (node, count) in counts {
            out.extend_from_slice(&node.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }
}

impl Resolver for GCounter {
    fn resolve(&self, current: Option<&Record>, incoming: &Change) -> Outcome {
        let Some(Ok(bytes)) = incoming.value.as_deref().map(<[u8; 8]>::try_from) else {
            return Outcome::Skip;
        };
        let count = u64::from_le_bytes(bytes);
        let node = incoming.version.node();
        let mut counts = match current.and_then(|c| c.value.as_deref()) {
            Some(value) => match Self::counts(value) {
                Some(counts) => counts,
                None => return Outcome::Skip,
            },
            None => Vec::new(),
        };
        match counts.binary_search_by_key(&node, |&(n, _)| n) {
            Ok(i) if counts[i].1 >= count => return Outcome::Skip,
            Ok(i) => counts[i].1 = count,
            Err(i) => counts.insert(i, (node, count)),
        }
        let version = current.map_or(incoming.version, |c| c.version.max(incoming.version));
        Outcome::Apply(Record {
            value: Some(Self::encode(&counts)),
            version,
            expires_at_ms: None,
        })
    }
}

/// A resolver written as a closure, for business rules (the seed's "Lua script" case).
pub struct FnResolver<F>(pub F);

impl<F> Resolver for FnResolver<F>
where
    F: Fn(Option<&Record>, &Change) -> Outcome + Send + Sync + 'static,
{
    fn resolve(&self, current: Option<&Record>, incoming: &Change) -> Outcome {
        (self.0)(current, incoming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(resolver: &dyn Resolver, changes: &[Change]) -> Option<Record> {
        let mut record = None;
        for change in changes {
            if let Outcome::Apply(new) = resolver.resolve(record.as_ref(), change) {
                record = Some(new);
            }
        }
        record
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for rest in permutations(n - 1) {
            for i in 0..=rest.len() {
                let mut p = rest.clone();
                p.insert(i, n - 1);
                out.push(p);
            }
        }
        out
    }

    fn converges(resolver: &dyn Resolver, changes: &[Change]) -> Option<Record> {
        // Every order, with every change duplicated, must give the same record.
        let doubled: Vec<Change> = changes.iter().chain(changes).cloned().collect();
        let expected = apply(resolver, changes);
        for order in permutations(doubled.len()) {
            let seen: Vec<Change> = order.iter().map(|&i| doubled[i].clone()).collect();
            assert_eq!(apply(resolver, &seen), expected, "order {order:?}");
        }
        expected
    }

    #[test]
    fn lww_converges_and_ties_break_by_node() {
        let changes = vec![
            Change::upsert("k".into(), b"a".to_vec(), Version::new(5, 1)),
            Change::upsert("k".into(), b"b".to_vec(), Version::new(5, 2)),
            Change::remove("k".into(), Version::new(4, 3)),
        ];
        let record = converges(&LastWriterWins, &changes).unwrap();
        assert_eq!(record.value.as_deref(), Some(&b"b"[..]));
        assert_eq!(record.version, Version::new(5, 2));
    }

    #[test]
    fn lww_tombstone_beats_older_insert() {
        let changes = vec![
            Change::upsert("k".into(), b"a".to_vec(), Version::new(5, 1)),
            Change::remove("k".into(), Version::new(6, 1)),
        ];
        assert_eq!(converges(&LastWriterWins, &changes).unwrap().value, None);
    }

    #[test]
    fn gcounter_counts_each_node_once() {
        let count = |n: u64, node: u16, t: u64| {
            Change::upsert("c".into(), n.to_le_bytes().to_vec(), Version::new(t, node))
        };
        let changes = vec![count(1, 1, 10), count(2, 1, 11), count(5, 2, 9)];
        let record = converges(&GCounter, &changes).unwrap();
        assert_eq!(GCounter::total(record.value.as_deref().unwrap()), Some(7));
        assert_eq!(
            GCounter::counts(record.value.as_deref().unwrap()),
            Some(vec![(1, 2), (2, 5)])
        );
    }

    #[test]
    fn gcounter_skips_what_is_not_a_count() {
        let garbage = Change::upsert("c".into(), b"xyz".to_vec(), Version::new(1, 1));
        assert_eq!(GCounter.resolve(None, &garbage), Outcome::Skip);
        let remove = Change::remove("c".into(), Version::new(2, 1));
        assert_eq!(GCounter.resolve(None, &remove), Outcome::Skip);
    }

    #[test]
    fn closures_resolve() {
        // Business rule: the larger value wins.
        let max = FnResolver(|current: Option<&Record>, incoming: &Change| {
            let better = current.and_then(|c| c.value.as_ref()) < incoming.value.as_ref();
            if better {
                Outcome::Apply(Record {
                    value: incoming.value.clone(),
                    version: incoming.version,
                    expires_at_ms: None,
                })
            } else {
                Outcome::Skip
            }
        });
        let changes = vec![
            Change::upsert("k".into(), b"3".to_vec(), Version::new(1, 1)),
            Change::upsert("k".into(), b"9".to_vec(), Version::new(2, 1)),
            Change::upsert("k".into(), b"5".to_vec(), Version::new(3, 2)),
        ];
        let record = converges(&max, &changes).unwrap();
        assert_eq!(record.value.as_deref(), Some(&b"9"[..]));
    }
}
