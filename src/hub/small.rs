//! Collections for the handful of entries a connection holds (its channels, its members): a
//! vector searched linearly. A `BTreeMap`'s first node costs hundreds of bytes, and an idle hub
//! holds tens of thousands of connections.

use std::collections::BTreeSet;
use std::sync::Arc;

/// Pushes, growing the vector to exactly what it holds, then doubling: most connections hold
/// one channel and one member, where `Vec`'s first growth would reserve four.
fn push_tight<T>(items: &mut Vec<T>, item: T) {
    if items.len() == items.capacity() {
        items.reserve_exact(items.len().max(1));
    }
    items.push(item);
}

/// A map from channel names, for a few entries.
#[derive(Clone, Debug)]
pub(crate) struct NameMap<V>(Vec<(Arc<str>, V)>);

impl<V> Default for NameMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> NameMap<V> {
    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        self.0
            .iter_mut()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }

    pub(crate) fn insert(&mut self, name: Arc<str>, value: V) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => push_tight(&mut self.0, (name, value)),
        }
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<V> {
        let at = self.0.iter().position(|(k, _)| &**k == name)?;
        Some(self.0.swap_remove(at).1)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(k, _)| k)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut V)> {
        self.0.iter_mut().map(|(k, v)| (&*k, v))
    }
}

impl<V> FromIterator<(Arc<str>, V)> for NameMap<V> {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, V)>>(items: I) -> Self {
        let mut map = Self::default();
        for (k, v) in items {
            map.insert(k, v);
        }
        map
    }
}

/// A (channel, client id) pair.
pub(crate) type Pair = (Arc<str>, Arc<str>);

/// A set of (channel, client id) pairs: a vector while it holds a few (a connection's own
/// members), a B-tree beyond [`FEW`] (a server entering members for many clients), where a
/// vector's linear search would make entering and leaving them all quadratic.
#[derive(Clone, Debug)]
pub(crate) enum PairSet {
    Few(Vec<Pair>),
    Many(BTreeSet<Pair>),
}

/// The most pairs a [`PairSet`] holds in a vector.
const FEW: usize = 32;

impl Default for PairSet {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl PairSet {
    pub(crate) fn insert(&mut self, pair: Pair) {
        match self {
            Self::Few(pairs) if pairs.contains(&pair) => {}
            Self::Few(pairs) if pairs.len() < FEW => push_tight(pairs, pair),
            Self::Few(pairs) => {
                let mut many: BTreeSet<Pair> = pairs.drain(..).collect();
                many.insert(pair);
                *self = Self::Many(many);
            }
            Self::Many(pairs) => {
                pairs.insert(pair);
            }
        }
    }

    pub(crate) fn remove(&mut self, pair: &Pair) {
        match self {
            Self::Few(pairs) => {
                if let Some(at) = pairs.iter().position(|p| p == pair) {
                    pairs.swap_remove(at);
                }
            }
            Self::Many(pairs) => {
                pairs.remove(pair);
            }
        }
    }

    /// Removes the pairs of one channel, or all of them, in one pass, returning them.
    pub(crate) fn take_channel(&mut self, channel: Option<&str>) -> Vec<Pair> {
        let Some(name) = channel else {
            return match std::mem::take(self) {
                Self::Few(pairs) => pairs,
                Self::Many(pairs) => pairs.into_iter().collect(),
            };
        };
        let mut taken = Vec::new();
        let mut keep = |p: &Pair| {
            let of_channel = &*p.0 == name;
            if of_channel {
                taken.push(p.clone());
            }
            !of_channel
        };
        match self {
            Self::Few(pairs) => pairs.retain(|p| keep(p)),
            Self::Many(pairs) => pairs.retain(|p| keep(p)),
        }
        taken
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Few(pairs) => pairs.is_empty(),
            Self::Many(pairs) => pairs.is_empty(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(pairs) => pairs.len(),
            Self::Many(pairs) => pairs.len(),
        }
    }

    pub(crate) fn contains(&self, pair: &Pair) -> bool {
        match self {
            Self::Few(pairs) => pairs.contains(pair),
            Self::Many(pairs) => pairs.contains(pair),
        }
    }

    /// Whether a pair is of this channel: in time logarithmic in the pairs, as the B-tree
    /// orders them by channel first.
    pub(crate) fn has_channel(&self, name: &Arc<str>) -> bool {
        match self {
            Self::Few(pairs) => pairs.iter().any(|p| p.0 == *name),
            Self::Many(pairs) => pairs
                .range((name.clone(), Arc::from(""))..)
                .next()
                .is_some_and(|p| p.0 == *name),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pair> {
        let (few, many) = match self {
            Self::Few(pairs) => (Some(pairs.iter()), None),
            Self::Many(pairs) => (None, Some(pairs.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_tells_whether_it_holds_a_channel_small_or_large() {
        for n in [3, 100] {
            let mut set = PairSet::default();
            for i in 0..n {
                set.insert((
                    Arc::from(format!("c{}", i % 3 * 2)),
                    Arc::from(format!("u{i}")),
                ));
            }
            let has = |name: &str| set.has_channel(&Arc::from(name));
            assert_eq!(
                (
                    has("c0"),
                    has("c2"),
                    has("c4"),
                    has("c1"),
                    has("c"),
                    has("c00")
                ),
                (true, true, true, false, false, false),
                "{n} pairs"
            );
        }
    }

    #[test]
    fn maps_and_sets_behave() {
        let mut map = NameMap::default();
        map.insert(Arc::from("a"), 1);
        map.insert(Arc::from("b"), 2);
        map.insert(Arc::from("a"), 3);
        assert_eq!(
            (map.iter().count(), map.get("a"), map.get("c")),
            (2, Some(&3), None)
        );
        assert_eq!(map.remove("a"), Some(3));
        assert!(map.get("a").is_none() && map.get("b").is_some());
        let mut set = PairSet::default();
        let pair = (Arc::from("room"), Arc::from("alice"));
        set.insert(pair.clone());
        set.insert(pair.clone());
        assert_eq!(set.iter().count(), 1);
        set.remove(&pair);
        assert!(set.is_empty());
    }

    #[test]
    fn one_entry_costs_one_slot_and_growth_doubles() {
        let mut map = NameMap::default();
        map.insert(Arc::from("a"), 1u64);
        assert_eq!(map.0.capacity(), 1);
        let mut set = PairSet::default();
        set.insert((Arc::from("room"), Arc::from("alice")));
        assert!(matches!(&set, PairSet::Few(pairs) if pairs.capacity() == 1));
        for i in 0..5 {
            map.insert(Arc::from(format!("c{i}")), i);
        }
        assert_eq!((map.0.len(), map.0.capacity()), (6, 8));
    }

    #[test]
    fn a_pair_set_grows_into_a_tree_and_agrees_with_a_model_throughout() {
        let mut set = PairSet::default();
        let mut model = BTreeSet::new();
        let pair =
            |c: u64, m: u64| -> Pair { (Arc::from(format!("c{c}")), Arc::from(format!("m{m}"))) };
        // A fixed pseudo-random walk of inserts and removes over 3 channels and 60 members.
        let mut x = 7u64;
        for step in 0..4_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let p = pair((x >> 33) % 3, (x >> 40) % 60);
            if (x >> 20) % 3 == 0 {
                set.remove(&p);
                model.remove(&p);
            } else {
                set.insert(p.clone());
                model.insert(p);
            }
            if step % 500 == 499 {
                let taken = set.take_channel(Some("c1"));
                let expected: Vec<Pair> = model.iter().filter(|p| &*p.0 == "c1").cloned().collect();
                model.retain(|p| &*p.0 != "c1");
                let mut taken_sorted = taken.clone();
                taken_sorted.sort();
                assert_eq!(taken_sorted, expected);
            }
            let mut held: Vec<&Pair> = set.iter().collect();
            held.sort();
            assert_eq!(held, model.iter().collect::<Vec<_>>(), "step {step}");
            assert_eq!(set.is_empty(), model.is_empty());
        }
        assert!(matches!(set, PairSet::Many(_)), "it grew past {FEW}");
        let all = set.take_channel(None);
        assert_eq!(all.len(), model.len());
        assert!(set.is_empty());
    }
}
