//! DNS answers, parsed, kept until their TTL ends: mail-auth's
//! [`ResolverCache`] over a bounded map. A full map drops expired entries
//! first, then everything (the next lookups simply go to DNS again).
//! Errors are never kept here: mail-auth caches only answers it got.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::ResolverCache;

/// One bounded TTL map.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// How many entries are held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        match entries.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let now = Instant::now();
        if valid_until <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_live_until_their_ttl_and_the_map_stays_bounded() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert("a".into(), 1, later);
        cache.insert("gone".into(), 2, Instant::now());
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("gone"), None, "an expired answer is not kept");
        cache.insert("b".into(), 2, later);
        cache.insert("c".into(), 3, later);
        assert!(cache.len() <= 2);
        assert_eq!(cache.get("c"), Some(3));
    }
}
