//! Arrays on huge pages, as `AtomicMap`'s tables are, for the bench's bare tables and the
//! examples that measure slot layouts (which include this file by path). With 4 KiB pages
//! nearly every lookup in a large table also misses the TLB, so a bare table on them would
//! pay for what `AtomicMap` does not. This file depends on nothing else in the crate.

/// The smallest page the kernel maps in; writing one byte of each maps the whole array.
const PAGE: usize = 4096;
const HUGE_PAGE: usize = 2 << 20;

/// `len` (at least one) values whose bytes are all zero, backed by huge pages where the kernel
/// has them. The array comes zeroed and unmapped from the OS; each page is written once now,
/// as `AtomicMap` does for a table it is about to fill, so that no timed operation maps a
/// page in.
///
/// # Safety
///
/// All-zero bytes must be a valid `T` (as for atomic integers and structs of them).
pub unsafe fn zeroed_array<T>(len: usize) -> Box<[T]> {
    assert!(
        size_of::<T>() > 0,
        "an array of zero-sized values needs no memory"
    );
    let len = len.max(1);
    let layout = std::alloc::Layout::array::<T>(len).expect("an array that fits in memory");
    // SAFETY: the layout's size is not zero (at least one value of non-zero size).
    let memory = unsafe { std::alloc::alloc_zeroed(layout) };
    if memory.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    advise_huge_pages(memory, layout.size());
    for offset in (0..layout.size()).step_by(PAGE) {
        // SAFETY: `offset` is inside the block just allocated, which nothing else references
        // yet; writing the zero it already holds only makes the kernel map the page in. A
        // volatile write, since a plain one of a known value could be dropped.
        unsafe { memory.add(offset).write_volatile(0) };
    }
    // SAFETY: `memory` holds `len` values of `T` laid out as an array, every byte zero, which
    // the caller guarantees is a valid `T`; the block comes from the global allocator with the
    // layout `Box` frees it with (`Layout::array::<T>(len)`).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(memory.cast::<T>(), len)) }
}

/// Asks the kernel to back the 2 MiB-aligned part of `[start, start + len)` with huge pages,
/// as `AtomicMap` does for its tables. Only a hint: where it fails nothing changes.
fn advise_huge_pages(start: *mut u8, len: usize) {
    let first = (start as usize).next_multiple_of(HUGE_PAGE);
    let end = (start as usize + len) / HUGE_PAGE * HUGE_PAGE;
    #[cfg(target_os = "linux")]
    if end > first {
        // SAFETY: the range lies inside an allocation the caller owns; MADV_HUGEPAGE changes
        // only how the kernel backs it, never its contents or validity.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (first, end);
}
