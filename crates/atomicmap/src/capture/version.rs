//! Versions and the hybrid logical clock that hands them out.
//!
//! A [`Version`] is a hybrid logical clock (HLC) reading plus the node that took it. The
//! reading packs wall-clock milliseconds since the Unix epoch into its top 48 bits and a
//! logical counter into the low 16 (the wall clock is read coarsely, see `wall_clock_ms`), so versions track real time closely (last-writer-wins
//! between processes picks the write that really was later, up to clock skew) while staying
//! strictly increasing on one node even when the wall clock stalls or steps back: the clock
//! never returns a reading at or below one it returned or observed before. The node id breaks
//! ties between processes, so two nodes never produce equal versions.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sync::{AtomicU64, Ordering};

/// Bits of an HLC reading that hold the logical counter.
const LOGICAL_BITS: u32 = 16;

/// The version of one committed mutation: an HLC reading and the node that made it.
///
/// Ordered by reading, then node: unique across every map that uses a distinct node id, and
/// comparable between processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    time: u64,
    node: u16,
}

impl Version {
    /// Below every version a clock hands out: the version of "never written".
    pub const ZERO: Version = Version { time: 0, node: 0 };

    /// A version from its parts, e.g. decoded from a replication message.
    pub const fn new(time: u64, node: u16) -> Self {
        Version { time, node }
    }

    /// The HLC reading: `(unix milliseconds << 16) | logical counter`.
    pub const fn time(self) -> u64 {
        self.time
    }

    /// The node that made this version.
    pub const fn node(self) -> u16 {
        self.node
    }

    /// The wall-clock part of the reading, in milliseconds since the Unix epoch.
    pub const fn physical_ms(self) -> u64 {
        self.time >> LOGICAL_BITS
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}@{}",
            self.physical_ms(),
            self.time & ((1 << LOGICAL_BITS) - 1),
            self.node
        )
    }
}

/// A hybrid logical clock for one node: every [`tick`](Self::tick) is above every earlier
/// tick and every [`observe`](Self::observe)d version, and close to the wall clock.
///
/// One atomic read-modify-write per tick; ticks from many threads never repeat.
#[derive(Debug)]
pub struct HybridClock {
    /// The highest reading handed out or observed.
    last: AtomicU64,
    node: u16,
}

impl HybridClock {
    /// A clock for `node`; give each process that shares versions its own node id.
    pub fn new(node: u16) -> Self {
        HybridClock {
            last: AtomicU64::new(0),
            node,
        }
    }

    /// This clock's node id.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// A new version, above every version this clock handed out or observed.
    pub fn tick(&self) -> Version {
        let wall = wall_clock_reading();
        // Relaxed suffices: uniqueness and monotonicity come from the RMW's total order on
        // `last`; the callers order their commits by their own locks.
        let mut previous = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(previous + 1);
            match self.last.compare_exchange_weak(
                previous,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Version {
                        time: next,
                        node: self.node,
                    }
                }
                Err(current) => previous = current,
            }
        }
    }

    /// Moves the clock past `seen` (a version received from another node), so that every
    /// later tick orders after it: the HLC receive rule.
    pub fn observe(&self, seen: Version) {
        self.last.fetch_max(seen.time, Ordering::Relaxed);
    }

    /// The highest version handed out or observed so far (no tick).
    pub fn current(&self) -> Version {
        Version {
            time: self.last.load(Ordering::Relaxed),
            node: self.node,
        }
    }
}

/// The wall clock as an HLC reading with a zero logical part. A clock before 1970 reads as 0,
/// which the logical counter then carries.
fn wall_clock_reading() -> u64 {
    wall_clock_ms() << LOGICAL_BITS
}

/// Milliseconds since the Unix epoch from the kernel's coarse real-time clock: its resolution
/// is the scheduler tick (1 to 4 ms), which the logical counter makes up for, and reading it
/// is a few loads. The precise clock (`SystemTime::now`) reads the time-stamp counter behind
/// a serialising instruction: a tick per write then stops the CPU from overlapping one
/// operation's cache misses with the next, which cost 150 ns per write in a 1M-key map.
#[cfg(all(target_os = "linux", not(miri)))]
fn wall_clock_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which points to a live,
    // writable timespec for the duration of the call.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if status != 0 {
        return precise_wall_clock_ms();
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let millis = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000;
    seconds * 1_000 + millis
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn wall_clock_ms() -> u64 {
    precise_wall_clock_ms()
}

fn precise_wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase_and_track_the_wall_clock() {
        let clock = HybridClock::new(3);
        let first = clock.tick();
        let second = clock.tick();
        assert!(second > first);
        assert_eq!(first.node(), 3);
        let wall_ms = wall_clock_reading() >> LOGICAL_BITS;
        assert!(wall_ms.abs_diff(second.physical_ms()) < 60_000);
    }

    #[test]
    fn an_observed_future_version_moves_the_clock_past_it() {
        let clock = HybridClock::new(1);
        let future = Version::new(wall_clock_reading() + (3_600_000 << LOGICAL_BITS), 9);
        clock.observe(future);
        let next = clock.tick();
        assert!(next.time() > future.time());
        assert!(next > future);
    }

    #[test]
    fn node_breaks_ties_between_equal_readings() {
        assert!(Version::new(5, 2) > Version::new(5, 1));
        assert!(Version::new(6, 0) > Version::new(5, 9));
        assert_eq!(Version::new(5 << LOGICAL_BITS | 3, 7).to_string(), "5.3@7");
    }
}
