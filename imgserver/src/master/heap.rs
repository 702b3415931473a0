//! Handing the master's freed heap back to the kernel.
//!
//! Trust boundary: none (the master's own allocator). glibc returns freed memory to the
//! kernel only from the top of the heap, so after many connections close, a few live
//! allocations above them keep their freed state resident; `malloc_trim` releases every free
//! page wherever it sits. The only C call made for it, hence its own small file.
#![allow(unsafe_code)]

/// Releases the heap's free pages to the kernel (glibc's `malloc_trim(0)`).
pub fn trim() {
    // SAFETY: malloc_trim takes no pointer and only gives free heap pages back to the kernel
    // (it frees no allocation and moves none); glibc takes its own arena locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
