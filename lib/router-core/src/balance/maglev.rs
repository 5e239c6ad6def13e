//! Maglev consistent hashing (Eisenbud et al., NSDI 2016).
//!
//! Each endpoint fills slots of a prime-sized lookup table following its own
//! permutation (offset + j·skip), taking turns, so every endpoint owns an
//! almost equal share of slots. When an endpoint leaves, the table is rebuilt
//! and most slots keep their owner: only about 1/N of the keys move, which is
//! what keeps caches and sessions behind a consistent-hash route warm.

use std::hash::{DefaultHasher, Hash, Hasher};

/// A Maglev lookup table over endpoint names.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u32>,
}

/// Table size: a prime much larger than the endpoint count (the paper's M ≫ N).
fn table_size(n: usize) -> usize {
    const PRIMES: [usize; 4] = [2_053, 16_411, 65_537, 262_147];
    PRIMES.into_iter().find(|&p| p >= n * 100).unwrap_or(PRIMES[3])
}

fn hash_with_seed(name: &str, seed: u64) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

impl Maglev {
    pub fn new(names: &[String]) -> Self {
        if names.is_empty() {
            return Self { table: Vec::new() };
        }
        let m = table_size(names.len());
        let perms: Vec<(usize, usize)> = names
            .iter()
            .map(|n| {
                let offset = (hash_with_seed(n, 0xfeed) % m as u64) as usize;
                let skip = (hash_with_seed(n, 0xbeef) % (m as u64 - 1) + 1) as usize;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; names.len()];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perms.iter().enumerate() {
                let mut slot = (offset + next[i] * skip) % m;
                while table[slot] != u32::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % m;
                }
                table[slot] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Self { table }
    }

    /// The endpoint index for `key`.
    pub fn lookup(&self, key: u64) -> Option<usize> {
        self.lookup_with(key, |_| true)
    }

    /// The endpoint index for `key`, probing onward past endpoints `usable`
    /// rejects, so keys of an unhealthy endpoint spread over the others while
    /// every other key stays where it was.
    pub fn lookup_with(&self, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let m = self.table.len();
        let start = (key % m as u64) as usize;
        // Probing a bounded number of slots: beyond that, give up on stickiness rather than spin.
        (0..m.min(4096)).map(|i| self.table[(start + i * 7919) % m] as usize).find(|&i| usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::hash_key;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    #[test]
    fn shares_are_nearly_equal() {
        let m = Maglev::new(&names(10));
        let mut counts = [0usize; 10];
        for slot in &m.table {
            counts[*slot as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= max / 50 + 1, "{counts:?}");
    }

    #[test]
    fn removing_an_endpoint_remaps_only_its_keys() {
        let before_names = names(10);
        let before = Maglev::new(&before_names);
        let mut after_names = before_names.clone();
        let removed = after_names.remove(3);
        let after = Maglev::new(&after_names);
        let keys = 20_000u64;
        let (mut on_removed, mut others_moved) = (0, 0);
        for k in 0..keys {
            let key = hash_key(&k.to_be_bytes());
            let b = &before_names[before.lookup(key).unwrap()];
            let a = &after_names[after.lookup(key).unwrap()];
            if b == &removed {
                on_removed += 1;
            } else if b != a {
                others_moved += 1;
            }
        }
        // About 1/10 of the keys lived on the removed endpoint and had to move;
        // Maglev moves only a small extra share of the others (the paper's
        // "minimal disruption"), far from the ~90% a modulo hash would move.
        let removed_share = on_removed as f64 / keys as f64;
        let extra_share = others_moved as f64 / keys as f64;
        assert!((0.07..0.13).contains(&removed_share), "removed endpoint owned {removed_share}");
        assert!(extra_share < 0.03, "{extra_share} of the other keys moved");
    }

    #[test]
    fn unusable_endpoints_are_probed_past() {
        let m = Maglev::new(&names(3));
        for k in 0..1000u64 {
            let i = m.lookup_with(k, |i| i != 1).unwrap();
            assert_ne!(i, 1);
        }
    }
}
