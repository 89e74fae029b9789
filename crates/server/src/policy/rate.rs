//! Token-bucket rate limits and daily quotas, kept in memory per process. A restart forgets
//! them; sharing limits across replicas is deliberately out of scope.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// Buckets or counters tracked at most; beyond this the oldest-looking entry is evicted so a
/// flood of distinct keys cannot grow memory without bound.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Token buckets of one capacity and refill rate, one per key.
#[derive(Debug)]
pub struct TokenBuckets {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    /// `capacity` tokens (the burst), refilled at `per_second`.
    pub fn new(capacity: u32, per_second: f64) -> Self {
        TokenBuckets {
            capacity: f64::from(capacity.max(1)),
            per_second: per_second.max(f64::MIN_POSITIVE),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `n` per minute with a burst of `n`, as in the reference.
    pub fn per_minute(n: u32) -> Self {
        Self::new(n, f64::from(n) / 60.0)
    }

    /// `n` per second with a burst of `n`.
    pub fn per_second(n: u32) -> Self {
        Self::new(n, f64::from(n))
    }

    /// Takes one token for `key`; when empty, returns the seconds until one is available.
    pub fn try_take(&self, key: &str) -> Result<(), f64> {
        self.try_take_at(key, Instant::now())
    }

    /// Returns the token a refused request took for `key` (never past the capacity).
    pub fn give_back(&self, key: &str) {
        if let Some(bucket) = self.buckets.lock().get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.capacity);
        }
    }

    fn try_take_at(&self, key: &str, now: Instant) -> Result<(), f64> {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // Full buckets carry no information; drop one of them (or any) to make room.
            let victim = buckets
                .iter()
                .find(|(_, b)| b.tokens >= self.capacity)
                .or_else(|| buckets.iter().next())
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                buckets.remove(&victim);
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.capacity,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - bucket.tokens) / self.per_second)
        }
    }
}

/// Per-key counters that reset at each UTC midnight.
#[derive(Debug, Default)]
pub struct DailyQuotas {
    counters: Mutex<HashMap<String, (i64, u64)>>,
}

fn utc_day(now: chrono::DateTime<chrono::Utc>) -> i64 {
    now.timestamp().div_euclid(86_400)
}

fn seconds_to_midnight(now: chrono::DateTime<chrono::Utc>) -> f64 {
    86_400.0 - now.timestamp().rem_euclid(86_400) as f64
}

impl DailyQuotas {
    /// Counts one use of `key` against `limit`; when spent, returns the seconds until the
    /// next UTC day.
    pub fn try_acquire(&self, key: &str, limit: u64) -> Result<(), f64> {
        let now = chrono::Utc::now();
        let today = utc_day(now);
        let mut counters = self.counters.lock();
        if counters.len() >= MAX_KEYS && !counters.contains_key(key) {
            counters.retain(|_, (day, _)| *day == today);
        }
        let entry = counters.entry(key.to_string()).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        if entry.1 >= limit {
            return Err(seconds_to_midnight(now));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Gives back a use taken by [`DailyQuotas::try_acquire`] whose operation failed, so only
    /// successful operations count (as in the reference).
    pub fn release(&self, key: &str) {
        let today = utc_day(chrono::Utc::now());
        if let Some(entry) = self.counters.lock().get_mut(key) {
            if entry.0 == today {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refills_at_its_rate() {
        let buckets = TokenBuckets::new(2, 1.0);
        let t0 = Instant::now();
        assert!(buckets.try_take_at("k", t0).is_ok());
        assert!(buckets.try_take_at("k", t0).is_ok());
        let wait = buckets.try_take_at("k", t0).expect_err("empty");
        assert!((wait - 1.0).abs() < 1e-6, "{wait}");
        assert!(
            buckets.try_take_at("other", t0).is_ok(),
            "keys are independent"
        );
        assert!(buckets
            .try_take_at("k", t0 + Duration::from_millis(1001))
            .is_ok());
    }

    #[test]
    fn quota_counts_per_key_and_release_gives_back() {
        let quotas = DailyQuotas::default();
        assert!(quotas.try_acquire("a", 2).is_ok());
        assert!(quotas.try_acquire("a", 2).is_ok());
        let retry = quotas.try_acquire("a", 2).expect_err("spent");
        assert!(retry > 0.0 && retry <= 86_400.0);
        quotas.release("a");
        assert!(quotas.try_acquire("a", 2).is_ok());
        assert!(quotas.try_acquire("b", 2).is_ok());
    }
}
