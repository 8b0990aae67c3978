//! Errors shared by every map.

use std::fmt;

/// Why a map could not be created or grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityError {
    /// The requested number of entries needs more slots than a `usize` can count.
    Overflow,
    /// The allocator could not provide the table.
    AllocationFailed,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapacityError::Overflow => f.write_str("requested capacity overflows usize"),
            CapacityError::AllocationFailed => {
                f.write_str("the allocator could not provide the table")
            }
        }
    }
}

impl std::error::Error for CapacityError {}
