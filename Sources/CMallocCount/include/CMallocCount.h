#ifndef ATELIER_CMALLOCCOUNT_H
#define ATELIER_CMALLOCCOUNT_H

/// A malloc counter for `atelier bench`: the executable defines malloc, calloc, realloc,
/// posix_memalign, aligned_alloc and memalign, forwarding to glibc's (__libc_malloc, …) and
/// counting every call, from any thread or library (the Swift runtime's allocations included).
/// Linked into the `atelier` executable only.

/// Allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) so far.
unsigned long atelier_malloc_calls(void);

/// While on, each allocation call writes "@@malloc" and its backtrace (frames as
/// `backtrace_symbols_fd` prints them) to stderr: `bench txt2img --malloc-backtraces` turns it
/// on for one step, and `tools/malloc_sites.py` names the call sites.
void atelier_malloc_backtraces(int on);

#endif
