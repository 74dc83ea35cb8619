//! A discrete-event simulation of the AWS "Exponential Backoff And Jitter"
//! study: N clients each write one row under optimistic concurrency. They
//! arrive within the first millisecond; a write holds the row for a fixed
//! service time; writes that overlap all fail and back off; a client gives
//! up after 50 attempts. Prints, per jitter kind, the total calls, the
//! clients that gave up, and the time until the last write, so that keel's
//! default (full jitter) is shown, not asserted.
//!
//! `cargo run --release -p keel-retry --example contention [clients] [runs]`
#![expect(clippy::print_stdout, reason = "an example prints its results")]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use keel_retry::{Jitter, Schedule};

/// One write to attempt: when, by whom, and how many retries came before.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Attempt {
    at_micros: u64,
    client: usize,
    retry: u32,
}

struct Outcome {
    calls: u64,
    gave_up: u64,
    finished_micros: u64,
}

const MAX_ATTEMPTS: u32 = 50;

/// Runs one contest of `clients` writers; all start at time 0.
fn contest(clients: usize, jitter: Jitter, service: Duration, seed: u64) -> Outcome {
    let schedule = Schedule::new(MAX_ATTEMPTS, Duration::from_millis(5))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter(jitter);
    let service = u64::try_from(service.as_micros()).unwrap_or(u64::MAX);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut previous = vec![schedule.base; clients];
    let mut queue: BinaryHeap<Reverse<Attempt>> = (0..clients)
        .map(|client| {
            let at_micros = rng.u64(0..1000);
            Reverse(Attempt {
                at_micros,
                client,
                retry: 0,
            })
        })
        .collect();
    let (mut calls, mut gave_up, mut finished) = (0, 0, 0);
    while let Some(Reverse(first)) = queue.pop() {
        // Everyone whose write starts while this one holds the row collides with it.
        let mut batch = vec![first];
        while let Some(Reverse(next)) = queue.peek().copied() {
            if next.at_micros >= first.at_micros + service {
                break;
            }
            queue.pop();
            batch.push(next);
        }
        calls += batch.len() as u64;
        if let [winner] = batch.as_slice() {
            finished = finished.max(winner.at_micros + service);
            continue;
        }
        for a in batch {
            let retry = a.retry + 1;
            if retry + 1 >= MAX_ATTEMPTS {
                gave_up += 1;
                finished = finished.max(a.at_micros + service);
                continue;
            }
            let delay = schedule.delay(retry, previous[a.client], &mut rng);
            previous[a.client] = delay;
            let delay = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
            queue.push(Reverse(Attempt {
                at_micros: a.at_micros + delay,
                client: a.client,
                retry,
            }));
        }
    }
    Outcome {
        calls,
        gave_up,
        finished_micros: finished,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let runs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let service = Duration::from_millis(1);
    println!(
        "{clients} clients, one row, {service:?} per write, base 5 ms, cap 10 s; mean of {runs} runs\n"
    );
    println!("| jitter | calls | calls per client | gave up | completion (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, jitter) in [
        ("none", Jitter::None),
        ("equal", Jitter::Equal),
        ("full (keel's default)", Jitter::Full),
        ("decorrelated", Jitter::Decorrelated),
        ("proportional (reference)", Jitter::Proportional),
    ] {
        let (mut calls, mut gave_up, mut micros) = (0u64, 0u64, 0u64);
        for seed in 0..runs {
            let o = contest(clients, jitter, service, seed);
            calls += o.calls;
            gave_up += o.gave_up;
            micros += o.finished_micros;
        }
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let (calls, millis) = (
            calls as f64 / runs as f64,
            micros as f64 / runs as f64 / 1000.0,
        );
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let (per_client, gave_up) = (calls / clients as f64, gave_up as f64 / runs as f64);
        println!("| {name} | {calls:.0} | {per_client:.1} | {gave_up:.1} | {millis:.0} |");
    }
}
