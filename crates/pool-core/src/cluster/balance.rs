//! How a checkout picks among the endpoints that may serve it.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// How a checkout picks among the endpoints in rotation that may serve it.
/// Whatever the strategy, an endpoint whose pool is full (a checkout would
/// queue) is passed over while another has room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest checkouts held now.
    LeastConnections,
    /// Any, uniformly.
    Random,
    /// Power of two choices: of two picked at random, the one with the
    /// lower average checkout-to-release time (failures count as 1 s; the
    /// cluster's refresh probes add samples, so a recovered endpoint wins
    /// traffic back) times the checkouts it holds.
    Health,
}

/// What balancing reads of an endpoint.
pub(crate) struct Load {
    pub(crate) in_use: usize,
    pub(crate) ewma_ns: u64,
}

/// A set of endpoints by position: bit `i` is endpoint `i` (a cluster has
/// at most [`MAX_ENDPOINTS`]).
pub(crate) type Set = u64;

/// The most endpoints a cluster takes (a checkout's sets are one word).
pub(crate) const MAX_ENDPOINTS: usize = Set::BITS as usize;

/// The position of the `k`-th member of `set` (`k < set.count_ones()`).
fn nth(mut set: Set, k: u32) -> usize {
    for _ in 0..k {
        set &= set - 1;
    }
    set.trailing_zeros() as usize
}

impl Balance {
    /// The endpoint of `candidates` to use; `load` reads an endpoint's
    /// counters. `candidates` is never empty.
    pub(crate) fn pick(
        self,
        candidates: Set,
        turn: &AtomicUsize,
        load: impl Fn(usize) -> Load,
    ) -> usize {
        let n = candidates.count_ones();
        if n == 1 {
            return candidates.trailing_zeros() as usize;
        }
        let turn_k = || (turn.fetch_add(1, Ordering::Relaxed) % n as usize) as u32;
        match self {
            Self::RoundRobin => nth(candidates, turn_k()),
            Self::Random => nth(candidates, fastrand::u32(..n)),
            Self::LeastConnections => {
                // Start the scan at a rotating member so ties spread.
                let start = turn_k();
                (0..n)
                    .map(|k| nth(candidates, (start + k) % n))
                    .min_by_key(|&i| load(i).in_use)
                    .unwrap_or_else(|| nth(candidates, start))
            }
            Self::Health => {
                let a = fastrand::u32(..n);
                let b = (a + 1 + fastrand::u32(..n - 1)) % n;
                let (a, b) = (nth(candidates, a), nth(candidates, b));
                let score = |i: usize| {
                    let l = load(i);
                    // An endpoint never measured scores as the best, so it
                    // gets traffic and a measurement.
                    u128::from(l.ewma_ns) * (l.in_use as u128 + 1)
                };
                if score(b) < score(a) { b } else { a }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(balance: Balance, loads: &[(usize, u64)], rounds: usize) -> Vec<usize> {
        let turn = AtomicUsize::new(0);
        let candidates: Set = (1 << loads.len()) - 1;
        let mut seen = vec![0; loads.len()];
        for _ in 0..rounds {
            let i = balance.pick(candidates, &turn, |e| Load {
                in_use: loads[e].0,
                ewma_ns: loads[e].1,
            });
            seen[i] += 1;
        }
        seen
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        assert_eq!(counts(Balance::RoundRobin, &[(0, 0); 3], 9), [3, 3, 3]);
    }

    #[test]
    fn picks_stay_within_the_set() {
        let turn = AtomicUsize::new(0);
        let set: Set = 0b1010_0100 | 1 << 63;
        for balance in [
            Balance::RoundRobin,
            Balance::Random,
            Balance::LeastConnections,
            Balance::Health,
        ] {
            let mut seen: Set = 0;
            for _ in 0..400 {
                let idle = |_| Load {
                    in_use: 0,
                    ewma_ns: 0,
                };
                seen |= 1 << balance.pick(set, &turn, idle);
            }
            assert_eq!(seen, set, "{balance:?}");
        }
    }

    #[test]
    fn least_connections_avoids_the_busy_one_and_spreads_ties() {
        let seen = counts(Balance::LeastConnections, &[(5, 0), (1, 0), (1, 0)], 100);
        assert_eq!(seen[0], 0);
        assert!(seen[1] >= 33 && seen[2] >= 33, "{seen:?}");
    }

    #[test]
    fn random_reaches_every_endpoint() {
        let seen = counts(Balance::Random, &[(0, 0); 4], 400);
        assert!(seen.iter().all(|&c| c > 40), "{seen:?}");
    }

    #[test]
    fn health_prefers_the_fast() {
        // 1 ms against 100 ms: two choices never pick the slow one when
        // the fast one is among them; with two endpoints that is always.
        // (The cluster's refresh probes every endpoint, so a slow one's
        // average recovers without traffic.)
        let seen = counts(Balance::Health, &[(0, 100_000_000), (0, 1_000_000)], 200);
        assert_eq!(seen, [0, 200]);
        // Of three, the slowest would need to be drawn twice, which two
        // distinct choices never are.
        let seen = counts(
            Balance::Health,
            &[(0, 100_000_000), (0, 1_000_000), (0, 2_000_000)],
            300,
        );
        assert_eq!(seen[0], 0, "{seen:?}");
        assert!(seen[2] > 0, "the second best still gets some: {seen:?}");
    }
}
