//! A linearizability checker for histories of a register with
//! compare-and-swap, recorded from concurrent clients: Wing and Gong's
//! search with Lowe's memoisation (the algorithm of Knossos and
//! Porcupine). A history is linearizable when every operation can be
//! placed at one instant between its call and its return so that, in that
//! order, each one is what a single register would have done.
//!
//! An operation that never returned (its client gave up, the server
//! died) may have taken effect at any time after its call, or never: it
//! is checked as returning at the end of the history with any output.
//! Keyed stores are checked one key at a time (linearizability is
//! compositional), which keeps each search small.
//!
//! ```
//! use keel_fault::linearizability::{Input, Op, Output, Verdict, check};
//!
//! // A writes 1 (0..10); B reads 1 during it (5..8), then reads 0 after it
//! // ended (12..14): the register went back in time.
//! let history = [
//!     Op::new(0, Some(10), Input::Write(1), Output::Done),
//!     Op::new(5, Some(8), Input::Read, Output::Read(1)),
//!     Op::new(12, Some(14), Input::Read, Output::Read(0)),
//! ];
//! assert_eq!(check(&0, &history, 1_000_000), Verdict::NotLinearizable);
//! assert_eq!(check(&0, &history[..2], 1_000_000), Verdict::Linearizable);
//! ```

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// What an operation asked of the register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input<V> {
    /// Read the value.
    Read,
    /// Set the value.
    Write(V),
    /// Set `new` if the value is `expect`.
    Cas {
        /// The value the caller expects.
        expect: V,
        /// The value to set.
        new: V,
    },
}

/// What the register answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output<V> {
    /// A read's value.
    Read(V),
    /// A write was acknowledged.
    Done,
    /// Whether a compare-and-swap took effect.
    Cas(bool),
    /// No answer: the operation may or may not have taken effect.
    Unknown,
}

/// One operation of a history: when it was called and returned (any
/// monotonic unit; `None`: it never returned), what it asked and what it
/// got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op<V> {
    /// When the client called it.
    pub call: u64,
    /// When the answer came back, if it did.
    pub ret: Option<u64>,
    /// What it asked.
    pub input: Input<V>,
    /// What it got ([`Output::Unknown`] when it never returned).
    pub output: Output<V>,
}

impl<V> Op<V> {
    /// An operation (see the fields).
    pub fn new(call: u64, ret: Option<u64>, input: Input<V>, output: Output<V>) -> Self {
        Self {
            call,
            ret,
            input,
            output,
        }
    }
}

/// The checker's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order explains every answer.
    Linearizable,
    /// No order does: the history shows a bug.
    NotLinearizable,
    /// The search took more steps than allowed (a history with very many
    /// concurrent operations on one key).
    GaveUp,
}

/// The register's state after `input` answered with `output` in `state`,
/// or `None` when a register could not have answered so.
fn step<V: Clone + Eq>(state: &V, input: &Input<V>, output: &Output<V>) -> Option<V> {
    match (input, output) {
        (Input::Read, Output::Read(v)) => (v == state).then(|| state.clone()),
        (Input::Read, Output::Unknown) => Some(state.clone()),
        (Input::Write(v), Output::Done | Output::Unknown) => Some(v.clone()),
        (Input::Cas { expect, new }, Output::Cas(swapped)) => {
            (*swapped == (expect == state)).then(|| if *swapped { new } else { state }.clone())
        }
        (Input::Cas { expect, new }, Output::Unknown) => {
            Some(if expect == state { new } else { state }.clone())
        }
        _ => None,
    }
}

/// A set of operations by position, hashable for the memo.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }

    fn flip(&mut self, i: usize) {
        self.0[i / 64] ^= 1 << (i % 64);
    }
}

/// One end of an operation in the time-ordered event list.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Checks one register's history, starting from `initial`, in at most
/// `budget` search steps.
pub fn check<V: Clone + Eq + Hash>(initial: &V, history: &[Op<V>], budget: u64) -> Verdict {
    let n = history.len();
    // Events in time order; at equal times calls first (overlapping, the
    // more permissive reading); an operation that never returned ends
    // after everything.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in history.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret.unwrap_or(u64::MAX), true, i));
    }
    events.sort_unstable();
    let list: Vec<Event> = events
        .iter()
        .map(|&(_, is_return, op)| Event {
            op,
            is_call: !is_return,
        })
        .collect();
    // Position of each operation's call and return in `list`.
    let mut call_at = vec![0; n];
    let mut ret_at = vec![0; n];
    for (at, e) in list.iter().enumerate() {
        if e.is_call {
            call_at[e.op] = at;
        } else {
            ret_at[e.op] = at;
        }
    }
    // A doubly linked list over `list` with a head sentinel at len.
    let head = list.len();
    let mut next: Vec<usize> = (1..=list.len()).chain([0]).collect();
    let mut prev: Vec<usize> = std::iter::once(head).chain(0..list.len()).collect();
    next[head] = if list.is_empty() { head } else { 0 };
    if let Some(last) = list.len().checked_sub(1) {
        next[last] = head;
        prev[head] = last;
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, q) = (prev[at], next[at]);
        next[p] = q;
        prev[q] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, at: usize| {
        let (p, q) = (prev[at], next[at]);
        next[p] = at;
        prev[q] = at;
    };

    let mut state = initial.clone();
    let mut done = Bits::new(n);
    let mut seen: HashSet<(Bits, V)> = HashSet::new();
    // Linearized operations and the state before each.
    let mut stack: Vec<(usize, V)> = Vec::new();
    let mut entry = next[head];
    let mut steps = 0_u64;
    while next[head] != head {
        steps += 1;
        if steps > budget {
            return Verdict::GaveUp;
        }
        let e = list[entry];
        if e.is_call {
            let op = &history[e.op];
            if let Some(after) = step(&state, &op.input, &op.output) {
                let mut key = done.clone();
                key.flip(e.op);
                if seen.insert((key.clone(), after.clone())) {
                    stack.push((e.op, std::mem::replace(&mut state, after)));
                    done = key;
                    // Lift the operation out of the list.
                    unlink(&mut next, &mut prev, call_at[e.op]);
                    unlink(&mut next, &mut prev, ret_at[e.op]);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // A return whose operation is not placed: undo the last choice.
            let Some((op, before)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            state = before;
            done.flip(op);
            relink(&mut next, &mut prev, ret_at[op]);
            relink(&mut next, &mut prev, call_at[op]);
            entry = next[call_at[op]];
        }
    }
    Verdict::Linearizable
}

/// Checks a keyed history one key at a time, each key's register starting
/// at `initial`; the first key that is not linearizable (or that the
/// search gave up on) is returned with its verdict.
///
/// # Errors
/// The key whose history is not linearizable, or took the search past
/// `budget` steps, with that verdict.
pub fn check_keyed<K: Clone + Eq + Hash, V: Clone + Eq + Hash>(
    initial: &V,
    history: &[(K, Op<V>)],
    budget: u64,
) -> Result<(), (K, Verdict)> {
    let mut by_key: HashMap<&K, Vec<Op<V>>> = HashMap::new();
    for (key, op) in history {
        by_key.entry(key).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        match check(initial, &ops, budget) {
            Verdict::Linearizable => {}
            other => return Err((key.clone(), other)),
        }
    }
    Ok(())
}

/// Records a keyed history from concurrent clients: each operation is
/// stamped at its call and its return on one monotonic clock.
///
/// ```
/// use keel_fault::linearizability::{Input, Output, Recorder, check_keyed};
///
/// let recorder = Recorder::new();
/// let write = recorder.call("k", Input::Write(1));
/// recorder.ret(write, Output::Done);
/// let read = recorder.call("k", Input::Read);
/// recorder.ret(read, Output::Read(1));
/// let lost = recorder.call("k", Input::Write(2)); // its client died
/// # let _ = lost;
/// assert_eq!(check_keyed(&0, &recorder.history(), 10_000), Ok(()));
/// ```
#[derive(Debug)]
pub struct Recorder<K, V> {
    start: Instant,
    ops: Mutex<Vec<(K, Op<V>)>>,
}

/// An operation called and not yet returned: pass it to
/// [`Recorder::ret`]; one never returned stays open in the history.
#[derive(Debug)]
#[must_use = "an operation never returned counts as one that may have taken effect"]
pub struct Pending(usize);

impl<K: Clone, V: Clone> Recorder<K, V> {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn ops(&self) -> std::sync::MutexGuard<'_, Vec<(K, Op<V>)>> {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes the call of `input` on `key`, now.
    pub fn call(&self, key: K, input: Input<V>) -> Pending {
        let mut ops = self.ops();
        // Stamped under the lock: the order of stamps is the order of
        // entries, whatever the threads.
        let op = Op::new(self.now(), None, input, Output::Unknown);
        ops.push((key, op));
        Pending(ops.len() - 1)
    }

    /// Notes the answer to `pending`, now.
    pub fn ret(&self, pending: Pending, output: Output<V>) {
        let mut ops = self.ops();
        let now = self.now();
        if let Some((_, op)) = ops.get_mut(pending.0) {
            op.ret = Some(now);
            op.output = output;
        }
    }

    /// The history so far.
    pub fn history(&self) -> Vec<(K, Op<V>)> {
        self.ops().clone()
    }
}

impl<K: Clone, V: Clone> Default for Recorder<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1_000_000;

    fn op(call: u64, ret: u64, input: Input<u32>, output: Output<u32>) -> Op<u32> {
        Op::new(call, Some(ret), input, output)
    }

    fn cas(expect: u32, new: u32) -> Input<u32> {
        Input::Cas { expect, new }
    }

    #[test]
    fn a_sequential_history_that_a_register_explains_passes() {
        let h = [
            op(0, 1, Input::Write(1), Output::Done),
            op(2, 3, Input::Read, Output::Read(1)),
            op(4, 5, cas(1, 2), Output::Cas(true)),
            op(6, 7, cas(1, 3), Output::Cas(false)),
            op(8, 9, Input::Read, Output::Read(2)),
        ];
        assert_eq!(check(&0, &h, BUDGET), Verdict::Linearizable);
        assert_eq!(check(&0, &[], BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // The read overlaps both writes: it may see either.
        for seen in [1, 2] {
            let h = [
                op(0, 10, Input::Write(1), Output::Done),
                op(1, 11, Input::Write(2), Output::Done),
                op(2, 12, Input::Read, Output::Read(seen)),
            ];
            assert_eq!(check(&0, &h, BUDGET), Verdict::Linearizable, "{seen}");
        }
    }

    #[test]
    fn a_stale_read_after_a_write_returned_is_rejected() {
        let h = [
            op(0, 1, Input::Write(1), Output::Done),
            op(2, 3, Input::Read, Output::Read(0)),
        ];
        assert_eq!(check(&0, &h, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn two_swaps_from_the_same_value_cannot_both_win() {
        let h = [
            op(0, 5, cas(0, 1), Output::Cas(true)),
            op(1, 6, cas(0, 2), Output::Cas(true)),
        ];
        assert_eq!(check(&0, &h, BUDGET), Verdict::NotLinearizable);
        let one_loses = [
            op(0, 5, cas(0, 1), Output::Cas(true)),
            op(1, 6, cas(0, 2), Output::Cas(false)),
            op(7, 8, Input::Read, Output::Read(1)),
        ];
        assert_eq!(check(&0, &one_loses, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_value_never_written_is_rejected() {
        let h = [op(0, 1, Input::Read, Output::Read(9))];
        assert_eq!(check(&0, &h, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn an_operation_that_never_returned_may_or_may_not_have_taken_effect() {
        let lost = Op::new(0, None, Input::Write(1), Output::Unknown);
        for seen in [0, 1] {
            let h = [lost.clone(), op(5, 6, Input::Read, Output::Read(seen))];
            assert_eq!(check(&0, &h, BUDGET), Verdict::Linearizable, "{seen}");
        }
        // Once seen it cannot be unseen.
        let h = [
            lost,
            op(5, 6, Input::Read, Output::Read(1)),
            op(7, 8, Input::Read, Output::Read(0)),
        ];
        assert_eq!(check(&0, &h, BUDGET), Verdict::NotLinearizable);
    }

    #[test]
    fn keys_are_checked_apart_and_the_broken_one_is_named() {
        let h = [
            ("a", op(0, 1, Input::Write(1), Output::Done)),
            ("b", op(0, 1, Input::Write(1), Output::Done)),
            ("a", op(2, 3, Input::Read, Output::Read(1))),
            ("b", op(2, 3, Input::Read, Output::Read(0))),
        ];
        assert_eq!(
            check_keyed(&0, &h, BUDGET),
            Err(("b", Verdict::NotLinearizable))
        );
        assert_eq!(check_keyed(&0, &h[..3], BUDGET), Ok(()));
    }

    #[test]
    fn a_search_past_its_budget_gives_up() {
        // Many overlapping writes, then a read of a value none wrote.
        let mut h: Vec<Op<u32>> = (0..12)
            .map(|v| op(0, 100, Input::Write(v), Output::Done))
            .collect();
        h.push(op(200, 201, Input::Read, Output::Read(99)));
        assert_eq!(check(&0, &h, 50), Verdict::GaveUp);
        assert_eq!(check(&0, &h, u64::MAX), Verdict::NotLinearizable);
    }

    #[test]
    fn concurrent_clients_of_locked_registers_record_a_linearizable_history() {
        use std::sync::Arc;
        let recorder = Arc::new(Recorder::new());
        let registers: Arc<[Mutex<u32>; 3]> = Arc::new([0, 0, 0].map(Mutex::new));
        let threads: Vec<_> = (0..4_u32)
            .map(|t| {
                let (recorder, registers) = (Arc::clone(&recorder), Arc::clone(&registers));
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(u64::from(t));
                    for _ in 0..200 {
                        let key = rng.usize(..3);
                        let input = match rng.u8(..3) {
                            0 => Input::Read,
                            1 => Input::Write(rng.u32(..4)),
                            _ => cas(rng.u32(..4), rng.u32(..4)),
                        };
                        // Called before the lock, returned after it: the
                        // effect lies between.
                        let pending = recorder.call(key, input.clone());
                        let mut value = registers[key].lock().unwrap();
                        let output = match input {
                            Input::Read => Output::Read(*value),
                            Input::Write(v) => {
                                *value = v;
                                Output::Done
                            }
                            Input::Cas { expect, new } => {
                                let swapped = *value == expect;
                                if swapped {
                                    *value = new;
                                }
                                Output::Cas(swapped)
                            }
                        };
                        drop(value);
                        recorder.ret(pending, output);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let history = recorder.history();
        assert_eq!(history.len(), 800);
        assert_eq!(check_keyed(&0, &history, BUDGET), Ok(()));
    }

    #[test]
    fn concurrent_clients_of_a_register_serving_stale_reads_are_caught() {
        use std::sync::Arc;
        // The register answers reads with the value before the last write:
        // the bug a replica that lags would show.
        let recorder = Arc::new(Recorder::new());
        let register = Arc::new(Mutex::new((0_u32, 0_u32))); // (previous, current)
        let threads: Vec<_> = (1..=2_u32)
            .map(|t| {
                let (recorder, register) = (Arc::clone(&recorder), Arc::clone(&register));
                std::thread::spawn(move || {
                    for n in 0..20 {
                        for v in [t * 1000 + 2 * n, t * 1000 + 2 * n + 1] {
                            let pending = recorder.call("k", Input::Write(v));
                            let mut r = register.lock().unwrap();
                            *r = (r.1, v);
                            drop(r);
                            recorder.ret(pending, Output::Done);
                        }
                        let pending = recorder.call("k", Input::Read);
                        let stale = register.lock().unwrap().0;
                        recorder.ret(pending, Output::Read(stale));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            check_keyed(&0, &recorder.history(), BUDGET),
            Err(("k", Verdict::NotLinearizable))
        );
    }
}
