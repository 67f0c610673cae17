//! A map kept as one sorted `Vec`, with the part of `BTreeMap`'s API the presence set uses.
//!
//! The browser client's presence set uses it in place of `BTreeMap`: lookups are binary
//! searches, and its code is a fraction of the B-tree's, which matters for the download. An
//! insert or remove in the middle moves the entries after it; values are boxed so that an entry
//! is a key and a pointer, and a client following thousands of members moves little. The hub,
//! whose channels may hold tens of thousands of members, keeps the B-tree.

use crate::prelude::*;
use core::ops::RangeFrom;

/// A map as a `Vec` of entries sorted by key.
#[derive(Clone, Debug)]
pub(super) struct SortedMap<K, V> {
    entries: Vec<(K, Box<V>)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    fn find(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// The value for `key`.
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &*self.entries[i].1)
    }

    /// The value for `key`, to change.
    pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut *self.entries[i].1)
    }

    /// Sets the value for `key`, returning the one it replaced.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(core::mem::replace(&mut *self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, Box::new(value)));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        self.find(key).ok().map(|i| *self.entries.remove(i).1)
    }

    /// Keeps the entries for which `f` returns true, in order.
    pub(super) fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| f(k, v));
    }

    /// The entries from `range.start` on, in key order.
    pub(super) fn range(&self, range: RangeFrom<K>) -> impl Iterator<Item = (&K, &V)> + '_ {
        let start = self.find(&range.start).unwrap_or_else(|i| i);
        self.entries[start..].iter().map(|(k, v)| (k, &**v))
    }
}

impl<K, V> SortedMap<K, V> {
    /// How many entries there are.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The values, in key order.
    pub(super) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.entries.iter().map(|(_, v)| &**v)
    }

    /// The values, in key order, to change.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|(_, v)| &mut **v)
    }

    /// The values, in key order, consuming the map.
    pub(super) fn into_values(self) -> impl Iterator<Item = V> {
        self.entries.into_iter().map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use alloc::collections::BTreeMap;

    /// A small deterministic generator (xorshift), so that a failure can be replayed.
    fn rng(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |bound| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        }
    }

    /// Every operation the presence set uses, at random, against `BTreeMap` as the model.
    #[test]
    fn behaves_as_a_btree_map() {
        for seed in 1..=200u64 {
            let mut next = rng(seed);
            let mut ours = SortedMap::<u64, u64>::default();
            let mut model = BTreeMap::<u64, u64>::new();
            for step in 0..300 {
                let key = next(40);
                let value = next(1000);
                match next(7) {
                    0 | 1 => assert_eq!(ours.insert(key, value), model.insert(key, value)),
                    2 => assert_eq!(ours.remove(&key), model.remove(&key)),
                    3 => {
                        if let Some(v) = ours.get_mut(&key) {
                            *v += 1;
                        }
                        if let Some(v) = model.get_mut(&key) {
                            *v += 1;
                        }
                    }
                    4 => {
                        ours.retain(|k, v| (k + *v) % 5 != 0);
                        model.retain(|k, v| (k + *v) % 5 != 0);
                    }
                    5 => {
                        ours.values_mut().for_each(|v| *v = (*v * 3) % 1000);
                        model.values_mut().for_each(|v| *v = (*v * 3) % 1000);
                    }
                    _ => {
                        let a: Vec<_> = ours.range(key..).map(|(k, v)| (*k, *v)).collect();
                        let b: Vec<_> = model.range(key..).map(|(k, v)| (*k, *v)).collect();
                        assert_eq!(a, b, "seed {seed} step {step}: range from {key}");
                    }
                }
                assert_eq!(ours.get(&key), model.get(&key), "seed {seed} step {step}");
                assert_eq!(ours.len(), model.len(), "seed {seed} step {step}");
            }
            let a: Vec<_> = ours.values().copied().collect();
            let b: Vec<_> = model.values().copied().collect();
            assert_eq!(a, b, "seed {seed}");
            assert_eq!(ours.into_values().collect::<Vec<_>>(), b, "seed {seed}");
        }
    }
}
