//! Collections for the handful of entries a connection holds (its channels, its members): a
//! vector searched linearly. A `BTreeMap`'s first node costs hundreds of bytes, and an idle hub
//! holds tens of thousands of connections.

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

/// A set of (channel, client id) pairs, for a few entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct PairSet(Vec<(Arc<str>, Arc<str>)>);

impl PairSet {
    pub(crate) fn insert(&mut self, pair: (Arc<str>, Arc<str>)) {
        if !self.0.contains(&pair) {
            push_tight(&mut self.0, pair);
        }
    }

    pub(crate) fn remove(&mut self, pair: &(Arc<str>, Arc<str>)) {
        if let Some(at) = self.0.iter().position(|p| p == pair) {
            self.0.swap_remove(at);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Arc<str>, Arc<str>)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(set.0.capacity(), 1);
        for i in 0..5 {
            map.insert(Arc::from(format!("c{i}")), i);
        }
        assert_eq!((map.0.len(), map.0.capacity()), (6, 8));
    }
}
