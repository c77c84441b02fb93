//! A small per-thread front for hot keys, read before moka.
//!
//! Why: on a hit, moka's read path (its concurrent hash table, the read
//! record for its eviction policy, its housekeeping check) was a large
//! share of what a hit costs over a bare tonic server, most of it on cache
//! lines both cores write when they read the same popular key. Here
//! each thread keeps the last entries it read, direct-mapped by key: a hit
//! touches no shared line but the entry's own reference count.
//!
//! It never changes an answer: an entry is served from here only while moka
//! still holds it (moka's eviction listener marks entries it drops or
//! replaces as retired) and, as from moka, only while it is servable. Every
//! [`PASS_THROUGH_EVERY`]th read of a slot goes to moka anyway, so that moka
//! still sees the key as popular when it chooses what to evict.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::CacheKey;
use super::entry::Entry;

/// Slots per thread: enough for the few keys a thread sees most.
const SLOTS: usize = 64;

/// One read in this many of a slot goes to moka (see the module comment).
const PASS_THROUGH_EVERY: u32 = 32;

/// Which cache a slot belongs to (a process may hold several: the tests do).
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// A new cache's id.
pub(super) fn new_cache_id() -> u64 {
    NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed)
}

struct Slot {
    cache: u64,
    key: CacheKey,
    entry: Arc<Entry>,
    reads: u32,
}

thread_local! {
    static FRONT: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// The entry this thread last read for `key` of cache `cache`, unless moka
/// has dropped it since or it is moka's turn to see the read.
pub(super) fn get(cache: u64, key: &CacheKey) -> Option<Arc<Entry>> {
    FRONT.with_borrow_mut(|slots| {
        let slot = slots.get_mut(key.slot(SLOTS))?.as_mut()?;
        if slot.cache != cache || slot.key != *key || slot.entry.is_retired() {
            return None;
        }
        slot.reads = slot.reads.wrapping_add(1);
        (slot.reads % PASS_THROUGH_EVERY != 0).then(|| slot.entry.clone())
    })
}

/// Remembers, for this thread, the entry moka returned for `key`.
pub(super) fn put(cache: u64, key: CacheKey, entry: &Arc<Entry>) {
    FRONT.with_borrow_mut(|slots| {
        if slots.is_empty() {
            slots.resize_with(SLOTS, || None);
        }
        slots[key.slot(SLOTS)] = Some(Slot {
            cache,
            key,
            entry: entry.clone(),
            reads: 0,
        });
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::cache::entry::Lifetimes;
    use crate::cache::{CacheSettings, Clock};
    use crate::domain::GetIdOutput;

    fn entry() -> Arc<Entry> {
        let lifetimes = Lifetimes {
            clock: Clock::default(),
            settings: CacheSettings {
                safety_margin: Duration::from_secs(1),
                identity_id_ttl: Duration::from_secs(60),
                ..CacheSettings::default()
            },
        };
        let value = GetIdOutput {
            identity_id: "us-east-1:1".into(),
        };
        Arc::new(lifetimes.entry(value, None).unwrap())
    }

    #[test]
    fn serves_what_moka_still_holds_and_lets_moka_see_some_reads() {
        let (cache, other) = (new_cache_id(), new_cache_id());
        let key = CacheKey::of_bytes([7; 32]);
        assert!(get(cache, &key).is_none(), "nothing read yet");
        let first = entry();
        put(cache, key, &first);
        assert!(Arc::ptr_eq(&get(cache, &key).unwrap(), &first));
        assert!(get(other, &key).is_none(), "another cache's slot");
        let mut same_slot = [7; 32];
        same_slot[31] = 8;
        assert!(get(cache, &CacheKey::of_bytes(same_slot)).is_none());

        // Of PASS_THROUGH_EVERY reads, one goes to moka (one was made above).
        let served = (1..PASS_THROUGH_EVERY)
            .filter(|_| get(cache, &key).is_some())
            .count();
        assert_eq!(served as u32, PASS_THROUGH_EVERY - 2);

        // Once moka drops or replaces it, it is not served.
        first.retired.store(true, Ordering::Release);
        assert!(get(cache, &key).is_none());
        let second = entry();
        put(cache, key, &second);
        assert!(Arc::ptr_eq(&get(cache, &key).unwrap(), &second));
    }
}
