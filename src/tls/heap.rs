//! BoringSSL's heap on the process's allocator.
//!
//! BoringSSL calls `malloc`/`free` of the C library unless the program defines
//! `OPENSSL_memory_alloc`, `OPENSSL_memory_free` and `OPENSSL_memory_get_size` (weak symbols in
//! `crypto/mem.cc`). A handshake allocates and frees a few hundred small blocks (the
//! connection, its handshake state, the peer's certificates parsed, the session and its ticket),
//! and glibc's allocator took about 7 % of the server's CPU per full handshake (`perf record`,
//! perf/RESULTS.md). [`boringssl_heap!`] defines them on the functions here, which hand the
//! blocks to Rust's global allocator: mimalloc in the `certgate` binary, the one the rest of
//! the proxy already uses.
//!
//! What BoringSSL's own `free` guarantees is kept: every block is zeroed before it is given
//! back (keys, secrets and plaintext must not outlive their owner in freed memory). A block
//! carries its size in a 16-byte header, as BoringSSL's own does, for `free` and `realloc`.
//! Nothing here calls into BoringSSL, allocates through it or takes a lock of its own, as
//! BoringSSL requires of these functions.

use std::alloc::{alloc as raw_alloc, dealloc, Layout};
use std::ffi::c_void;
use std::ptr::null_mut;

/// Bytes in front of each block: its size and [`MAGIC`], keeping the block 16-byte aligned (as
/// `malloc`'s blocks are, which BoringSSL assumes).
const HEADER: usize = 16;

/// The header's second word, by which [`in_use`] recognises a block made here.
const MAGIC: usize = 0x6365_7274_6761_7465; // "certgate"

/// Defines BoringSSL's three allocation hooks (`OPENSSL_memory_alloc`, `_free`, `_get_size`)
/// on [`alloc`], [`free`] and [`size`]. Invoked once, by a program (the `certgate` binary,
/// the CI workloads): the library itself does not define them, since a test program links two
/// copies of it (through `certgate-tools`) and the symbols must be unique.
#[macro_export]
macro_rules! boringssl_heap {
    () => {
        /// BoringSSL's allocation hook: [`certgate::tls::heap::alloc`].
        #[no_mangle]
        pub extern "C" fn OPENSSL_memory_alloc(size: usize) -> *mut ::std::ffi::c_void {
            $crate::tls::heap::alloc(size)
        }

        /// BoringSSL's free hook: [`certgate::tls::heap::free`].
        ///
        /// # Safety
        /// As [`certgate::tls::heap::free`].
        #[no_mangle]
        pub unsafe extern "C" fn OPENSSL_memory_free(ptr: *mut ::std::ffi::c_void) {
            // SAFETY: BoringSSL passes a live block of OPENSSL_memory_alloc, never null.
            unsafe { $crate::tls::heap::free(ptr) }
        }

        /// BoringSSL's size hook: [`certgate::tls::heap::size`].
        ///
        /// # Safety
        /// As [`certgate::tls::heap::size`].
        #[no_mangle]
        pub unsafe extern "C" fn OPENSSL_memory_get_size(ptr: *mut ::std::ffi::c_void) -> usize {
            // SAFETY: as above.
            unsafe { $crate::tls::heap::size(ptr) }
        }
    };
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// A block of `size` bytes for BoringSSL, 16-byte aligned; null when out of memory.
pub fn alloc(size: usize) -> *mut c_void {
    let Some(layout) = layout(size) else {
        return null_mut();
    };
    // SAFETY: the layout's size is at least HEADER, never zero.
    let base = unsafe { raw_alloc(layout) };
    if base.is_null() {
        return null_mut();
    }
    // SAFETY: the block is HEADER + size bytes, 16-byte aligned: the header holds two usize
    // and the caller's part starts HEADER bytes in.
    unsafe {
        base.cast::<usize>().write(size);
        base.cast::<usize>().add(1).write(MAGIC);
        base.add(HEADER).cast()
    }
}

/// Zeroes a block of [`alloc`], header included, and frees it.
///
/// # Safety
/// `ptr` is a live, non-null block returned by [`alloc`].
pub unsafe fn free(ptr: *mut c_void) {
    // SAFETY: per the contract, the header precedes `ptr` in the same allocation.
    unsafe {
        let base = ptr.cast::<u8>().sub(HEADER);
        let size = base.cast::<usize>().read();
        std::ptr::write_bytes(base, 0, size + HEADER);
        // The zeroes must reach memory although the block is freed next: the pointer escapes
        // into an opaque barrier, so the stores cannot be dropped as dead (as OPENSSL_cleanse).
        std::hint::black_box(base);
        if let Some(layout) = layout(size) {
            dealloc(base, layout);
        }
    }
}

/// The size a block of [`alloc`] was asked with.
///
/// # Safety
/// As [`free`].
pub unsafe fn size(ptr: *mut c_void) -> usize {
    // SAFETY: per the contract, the header precedes `ptr` in the same allocation.
    unsafe { ptr.cast::<u8>().sub(HEADER).cast::<usize>().read() }
}

/// Whether BoringSSL allocates through [`alloc`] in this program ([`boringssl_heap!`] was
/// invoked and linked). The binary checks it at start.
pub fn in_use() -> bool {
    // SAFETY: a plain allocation of BoringSSL's and its release. The word read just before
    // the block is inside the allocation either way: the second header word here, BoringSSL's
    // own size prefix otherwise.
    unsafe {
        let p = boring_sys::OPENSSL_malloc(24);
        if p.is_null() {
            return false;
        }
        let ours = p.cast::<usize>().sub(1).read() == MAGIC;
        boring_sys::OPENSSL_free(p);
        ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's own tests do not install the hooks (see `boringssl_heap!`): BoringSSL
    // uses the C library's malloc here, and `in_use` must say so. The binary and the CI
    // workloads assert the opposite at start (`ci_workloads` panics if it is false).
    #[test]
    fn not_in_use_without_the_hooks() {
        assert!(!in_use());
    }

    #[test]
    fn blocks_keep_their_size_alignment_and_header() {
        for n in [0usize, 1, 15, 16, 17, 1000, 70_000] {
            let p = alloc(n).cast::<u8>();
            assert!(!p.is_null());
            assert_eq!(p as usize % 16, 0, "{n}");
            // SAFETY: `n` bytes were just allocated at `p`.
            unsafe {
                std::ptr::write_bytes(p, 0xA5, n);
                assert_eq!(size(p.cast()), n);
                assert_eq!(p.cast::<usize>().sub(1).read(), MAGIC);
                free(p.cast());
            }
        }
    }

    #[test]
    fn huge_requests_fail_instead_of_wrapping() {
        assert!(alloc(usize::MAX).is_null());
        assert!(alloc(usize::MAX - 8).is_null());
    }
}
