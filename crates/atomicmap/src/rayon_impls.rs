//! Rayon integration, behind the `rayon` feature (described in the crate docs), built only on
//! the maps' public operations.

use std::hash::{BuildHasher, Hash};

use rayon::iter::{FromParallelIterator, IntoParallelIterator, ParallelExtend, ParallelIterator};

use crate::{AtomicMap, AtomicSet, MapSnapshot, ReadMostlyMap, ShardedMap};

/// The owned forms of a collection whose shared reference already extends in parallel:
/// `ParallelExtend` through `&*self`, and `FromParallelIterator` as an empty collection with
/// the default hasher, then extended. `extend` and `collect` are the bounds of each.
macro_rules! owned_forms_through_shared {
    ($collection:ident<$($param:ident),+>, $item:ty,
     extend: [$($extend:tt)+], collect: [$($collect:tt)+] $(,)?) => {
        impl<$($param),+> ParallelExtend<$item> for $collection<$($param),+>
        where
            $($extend)+
        {
            fn par_extend<I>(&mut self, items: I)
            where
                I: IntoParallelIterator<Item = $item>,
            {
                (&*self).par_extend(items);
            }
        }

        impl<$($param),+> FromParallelIterator<$item> for $collection<$($param),+>
        where
            $($collect)+
        {
            fn from_par_iter<I>(items: I) -> Self
            where
                I: IntoParallelIterator<Item = $item>,
            {
                let mut collection = $collection::with_hasher(S::default());
                collection.par_extend(items);
                collection
            }
        }
    };
}

/// Splits the entries of a snapshot over rayon's threads. The snapshot's storage (one table,
/// a `ShardedMap`'s shards, or an `RcuMap`'s trie) is walked once, on the calling thread, to
/// gather a reference to each entry (16 bytes an entry); the parallel work then splits that
/// list evenly however the entries were stored.
impl<'a, K, V, S> IntoParallelIterator for &'a MapSnapshot<K, V, S>
where
    K: Sync,
    V: Sync,
{
    type Iter = rayon::vec::IntoIter<(&'a K, &'a V)>;
    type Item = (&'a K, &'a V);

    fn into_par_iter(self) -> Self::Iter {
        self.iter().collect::<Vec<_>>().into_par_iter()
    }
}

/// Inserts from rayon's threads, each insert pinning on its own so that no thread holds back
/// reclamation for longer than one insert.
impl<K, V, S> ParallelExtend<(K, V)> for &AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Sync,
{
    fn par_extend<I>(&mut self, entries: I)
    where
        I: IntoParallelIterator<Item = (K, V)>,
    {
        let map: &AtomicMap<K, V, S> = self;
        entries.into_par_iter().for_each(|(key, value)| {
            map.pin().insert(key, value);
        });
    }
}

owned_forms_through_shared!(
    AtomicMap<K, V, S>, (K, V),
    extend: [K: Hash + Eq + Send + Sync + 'static, V: Send + Sync + 'static, S: BuildHasher + Sync],
    collect: [K: Hash + Eq + Send + Sync + 'static, V: Send + Sync + 'static, S: BuildHasher + Default + Sync],
);

/// Inserts from rayon's threads; each insert takes only its key's shard lock, so threads
/// inserting into different shards do not wait for each other.
impl<K, V, S> ParallelExtend<(K, V)> for &ShardedMap<K, V, S>
where
    K: Hash + Eq + Send + Sync,
    V: Send + Sync,
    S: BuildHasher + Sync,
{
    fn par_extend<I>(&mut self, entries: I)
    where
        I: IntoParallelIterator<Item = (K, V)>,
    {
        let map: &ShardedMap<K, V, S> = self;
        entries.into_par_iter().for_each(|(key, value)| {
            map.insert(key, value);
        });
    }
}

owned_forms_through_shared!(
    ShardedMap<K, V, S>, (K, V),
    extend: [K: Hash + Eq + Send + Sync, V: Send + Sync, S: BuildHasher + Sync],
    collect: [K: Hash + Eq + Send + Sync, V: Send + Sync, S: BuildHasher + Clone + Default + Sync],
);

/// Stores from rayon's threads. A key new to the map takes the map's one mutex (as Go's
/// `Store` does), so filling a `ReadMostlyMap` with new keys is no faster in parallel than
/// with `Extend`; it is offered so that a parallel pipeline can collect into any map.
impl<K, V, S> ParallelExtend<(K, V)> for &ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    fn par_extend<I>(&mut self, entries: I)
    where
        I: IntoParallelIterator<Item = (K, V)>,
    {
        let map: &ReadMostlyMap<K, V, S> = self;
        entries.into_par_iter().for_each(|(key, value)| {
            map.store(key, value);
        });
    }
}

owned_forms_through_shared!(
    ReadMostlyMap<K, V, S>, (K, V),
    extend: [K: Hash + Eq + Clone + Send + Sync, V: Send + Sync, S: BuildHasher + Clone + Send + Sync],
    collect: [K: Hash + Eq + Clone + Send + Sync, V: Send + Sync, S: BuildHasher + Clone + Default + Send + Sync],
);

impl<T, S> ParallelExtend<T> for &AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + 'static,
    S: BuildHasher + Sync,
{
    fn par_extend<I>(&mut self, elements: I)
    where
        I: IntoParallelIterator<Item = T>,
    {
        let set: &AtomicSet<T, S> = self;
        elements.into_par_iter().for_each(|element| {
            set.insert(element);
        });
    }
}

owned_forms_through_shared!(
    AtomicSet<T, S>, T,
    extend: [T: Hash + Eq + Send + Sync + 'static, S: BuildHasher + Sync],
    collect: [T: Hash + Eq + Send + Sync + 'static, S: BuildHasher + Default + Sync],
);
