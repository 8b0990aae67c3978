//! A linearizability checker for single-key map operations, and a recorder of concurrent
//! histories that feeds it.
//!
//! **Recording.** Every operation takes an invocation stamp before it starts and a response
//! stamp after it returns, both from one shared counter incremented with `SeqCst`, so the stamps
//! order the calls as real time does: if `a.response < b.invocation`, `a` returned before `b`
//! was called and any linearization must put `a` first. Overlapping calls may go either way.
//!
//! **Checking.** Each operation touches one key, and operations on different keys commute, so a
//! history is linearizable exactly when its restriction to each key is (P-compositionality,
//! Horn and Kroening 2015). Each key's sub-history is checked against a single-register model
//! (`Option<value>`) with the Wing and Gong search: pick as next linearized operation any
//! pending one that was invoked before every other pending one returned, apply it to the model,
//! and backtrack if its recorded result differs. Lowe's memo of (set linearized, model state)
//! pairs already explored keeps the search from revisiting a state reached in another order.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A value the map is asked to store: unique within a history, so a read can be traced to the
/// write it observed.
pub type Value = u64;

/// One single-key call and its recorded result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `get(key)` returned this.
    Get(Option<Value>),
    /// `insert(key, value)` returned the previous value.
    Insert(Value, Option<Value>),
    /// `remove(key)` returned the removed value.
    Remove(Option<Value>),
    /// `get_or_insert_with(key, || value)` returned the value stored afterwards.
    GetOrInsert(Value, Value),
}

impl Call {
    /// Applies the call to the model's state of its key: the state afterwards if the call's
    /// recorded result is what the model returns from `state`, `None` if it is not.
    fn step(self, state: Option<Value>) -> Option<Option<Value>> {
        match self {
            Call::Get(seen) => (seen == state).then_some(state),
            Call::Insert(value, previous) => (previous == state).then_some(Some(value)),
            Call::Remove(removed) => (removed == state).then_some(None),
            Call::GetOrInsert(offered, stored) => {
                let after = state.unwrap_or(offered);
                (stored == after).then_some(Some(after))
            }
        }
    }
}

/// A completed call with its stamps.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub thread: usize,
    pub key: u64,
    pub call: Call,
    pub invoked: u64,
    pub returned: u64,
}

impl fmt::Display for Event {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "[{:>3}, {:>3}] thread {} key {}: {:?}",
            self.invoked, self.returned, self.thread, self.key, self.call
        )
    }
}

/// The shared counter that stamps calls.
#[derive(Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// Runs `operation`, stamping it before and after.
    pub fn record<T>(
        &self,
        thread: usize,
        key: u64,
        operation: impl FnOnce() -> T,
        to_call: impl FnOnce(T) -> Call,
    ) -> Event {
        let invoked = self.0.fetch_add(1, Ordering::SeqCst);
        let result = operation();
        let returned = self.0.fetch_add(1, Ordering::SeqCst);
        Event {
            thread,
            key,
            call: to_call(result),
            invoked,
            returned,
        }
    }
}

/// Most calls on one key that [`check`] accepts (one bit each in the search's set).
pub const MAX_CALLS_PER_KEY: usize = 64;

/// Checks that `history`, whose keys all start absent, is linearizable; on failure, the key
/// whose sub-history has no linearization, and that sub-history.
pub fn check(history: &[Event]) -> Result<(), String> {
    let mut keys: Vec<u64> = history.iter().map(|event| event.key).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let mut calls: Vec<Event> = history
            .iter()
            .copied()
            .filter(|event| event.key == key)
            .collect();
        assert!(
            calls.len() <= MAX_CALLS_PER_KEY,
            "{} calls on key {key}: the checker takes at most {MAX_CALLS_PER_KEY}",
            calls.len()
        );
        calls.sort_by_key(|event| event.invoked);
        let mut explored = HashSet::new();
        if !linearizable(&calls, 0, None, &mut explored) {
            let listing: Vec<String> = calls.iter().map(Event::to_string).collect();
            return Err(format!(
                "no linearization of the calls on key {key} (from absent):\n  {}",
                listing.join("\n  ")
            ));
        }
    }
    Ok(())
}

/// Whether the calls not in `done` (a bit set over `calls`) can be linearized from `state`.
fn linearizable(
    calls: &[Event],
    done: u64,
    state: Option<Value>,
    explored: &mut HashSet<(u64, Option<Value>)>,
) -> bool {
    let pending = || (0..calls.len()).filter(move |&index| done & (1 << index) == 0);
    let Some(first_return) = pending().map(|index| calls[index].returned).min() else {
        return true;
    };
    pending()
        .filter(|&index| calls[index].invoked < first_return)
        .any(|index| match calls[index].call.step(state) {
            Some(next) => {
                let done = done | (1 << index);
                explored.insert((done, next)) && linearizable(calls, done, next, explored)
            }
            None => false,
        })
}
