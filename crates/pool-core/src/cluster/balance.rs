//! How a checkout picks among the endpoints that may serve it.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// How a checkout picks among the endpoints in rotation that may serve it.
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

impl Balance {
    /// The position in `candidates` to use; `load` reads an endpoint's
    /// counters. `candidates` is never empty.
    pub(crate) fn pick(
        self,
        candidates: &[usize],
        turn: &AtomicUsize,
        load: impl Fn(usize) -> Load,
    ) -> usize {
        let n = candidates.len();
        if n == 1 {
            return 0;
        }
        match self {
            Self::RoundRobin => turn.fetch_add(1, Ordering::Relaxed) % n,
            Self::Random => fastrand::usize(..n),
            Self::LeastConnections => {
                // Start the scan at a rotating offset so ties spread.
                let start = turn.fetch_add(1, Ordering::Relaxed) % n;
                (0..n)
                    .map(|i| (start + i) % n)
                    .min_by_key(|&i| load(candidates[i]).in_use)
                    .unwrap_or(start)
            }
            Self::Health => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let score = |i: usize| {
                    let l = load(candidates[i]);
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
        let candidates: Vec<usize> = (0..loads.len()).collect();
        let mut seen = vec![0; loads.len()];
        for _ in 0..rounds {
            let i = balance.pick(&candidates, &turn, |e| Load {
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
