#ifndef ATELIER_CMALLOCCOUNT_H
#define ATELIER_CMALLOCCOUNT_H

/// A malloc counter for `atelier bench`: the executable defines malloc, calloc, realloc,
/// posix_memalign, aligned_alloc and memalign, forwarding to glibc's (__libc_malloc, …) and
/// counting every call, from any thread or library (the Swift runtime's allocations included).
/// Linked into the `atelier` executable only.

/// Allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) so far.
unsigned long atelier_malloc_calls(void);

#endif
