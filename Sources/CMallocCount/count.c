#include "CMallocCount.h"
#include <errno.h>
#include <execinfo.h>
#include <stddef.h>
#include <unistd.h>

/* glibc's allocator under its internal names (exported by libc.so.6) */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static unsigned long calls;

static int backtraces;
static _Thread_local int writing_backtrace;

void atelier_malloc_backtraces(int on) { __atomic_store_n(&backtraces, on, __ATOMIC_RELAXED); }

/* backtrace() allocates once (loading the unwinder): the flag keeps that call from recursing */
__attribute__((noinline)) static void write_backtrace(void) {
    writing_backtrace = 1;
    void *frames[16];
    int n = backtrace(frames, 16);
    if (write(2, "@@malloc\n", 9) == 9) backtrace_symbols_fd(frames + 2, n - 2, 2);
    writing_backtrace = 0;
}

static inline void count_call(void) {
    __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&backtraces, __ATOMIC_RELAXED) && !writing_backtrace) write_backtrace();
}

unsigned long atelier_malloc_calls(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }

void *malloc(size_t size) {
    count_call();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    count_call();
    return __libc_calloc(count, size);
}

void *realloc(void *p, size_t size) {
    count_call();
    return __libc_realloc(p, size);
}

void *memalign(size_t alignment, size_t size) {
    count_call();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_call();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    count_call();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL && size != 0) return ENOMEM;
    *out = p;
    return 0;
}
