#define _GNU_SOURCE
#include "CKernels.h"
#include <immintrin.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The engine's compute threads: a fixed pool that runs one fork-join job at a time.
 *
 * A job is `parts` calls of fn(ctx, part); the submitting thread takes parts too, from the same
 * counter, so the job finishes even if no pool thread wakes in time (a busy machine). A pool
 * thread joins a job by raising `active` and leaves by lowering it; the submitter closes the job
 * when its parts are all taken and waits only for the threads that joined. A thread that arrives
 * after the close sees `open` = 0 and touches nothing. Posting a job allocates nothing — the
 * reason this replaces GCD's concurrentPerform, which allocates a block per call. Pool threads
 * spin briefly for the next job (the step loop posts thousands per second), then sleep on a
 * futex. While a job runs the pool is busy: a job posted meanwhile (nested in a part, or from
 * another thread) runs all its parts on its own thread. */

enum { MAX_WORKERS = 255, SPIN_PAUSES = 4000 };

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static int worker_count;                       /* pool threads started (grows only) */
static _Atomic unsigned job_generation;        /* bumped to post a job */
static _Atomic int job_open;                   /* the job's fields are set and parts may be taken */
static _Atomic int active;                     /* pool threads inside the job */
static _Atomic int sleeping;                   /* pool threads asleep on the futex */
static atelier_part_fn job_fn;
static void *job_ctx;
static long job_parts;
static int job_workers;                        /* pool threads that take parts of this job */
static _Atomic long next_part;

static void run_parts(void) {
    long p;
    while ((p = atomic_fetch_add(&next_part, 1)) < job_parts) job_fn(job_ctx, p);
}

static void *worker_main(void *arg) {
    int index = (int)(long)arg;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&job_generation)) == seen) {
            if (++spins < SPIN_PAUSES) { _mm_pause(); continue; }
            atomic_fetch_add(&sleeping, 1);
            syscall(SYS_futex, &job_generation, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            atomic_fetch_sub(&sleeping, 1);
        }
        seen = g;
        atomic_fetch_add(&active, 1);
        /* open only once the fields are set, and they stay set until `active` drops to 0 */
        if (atomic_load(&job_open) && index < job_workers) run_parts();
        atomic_fetch_sub(&active, 1);
    }
    return NULL;
}

void atelier_parallel_for(long parts, int threads, atelier_part_fn fn, void *ctx) {
    if (parts <= 1 || threads <= 1 || pthread_mutex_trylock(&submit_lock) != 0) {
        for (long p = 0; p < parts; p++) fn(ctx, p);
        return;
    }
    int wanted = threads - 1 < MAX_WORKERS ? threads - 1 : MAX_WORKERS;
    while (worker_count < wanted) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 8 << 20);
        int started = pthread_create(&t, &attr, worker_main, (void *)(long)worker_count) == 0;
        pthread_attr_destroy(&attr);
        if (!started) break;
        pthread_detach(t);
        worker_count++;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_parts = parts;
    job_workers = wanted < worker_count ? wanted : worker_count;
    atomic_store(&next_part, 0);
    atomic_store(&job_open, 1);
    atomic_fetch_add(&job_generation, 1);
    if (atomic_load(&sleeping) > 0) syscall(SYS_futex, &job_generation, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    run_parts();
    atomic_store(&job_open, 0);
    int spins = 0;
    while (atomic_load(&active) > 0) {
        if (++spins < SPIN_PAUSES) _mm_pause(); else sched_yield();
    }
    pthread_mutex_unlock(&submit_lock);
}

/* atelier_gemm_split: one GEMM's output in parts of whole tiles, on the pool. */
struct gemm_job {
    int wide, trans_a, trans_b, by_rows;
    long m, n, k, lda, ldb, ldc, per;
    float alpha, beta;
    const float *a, *b;
    float *c;
};

static void gemm_part(void *ctx, long p) {
    const struct gemm_job *j = ctx;
    long lo = p * j->per, end = j->by_rows ? j->m : j->n;
    long hi = lo + j->per < end ? lo + j->per : end;
    if (lo >= hi) return;
    if (j->by_rows) {
        /* rows lo..<hi of C come from rows lo..<hi of op(A) */
        const float *a = j->trans_a ? j->a + lo : j->a + lo * j->lda;
        atelier_gemm(j->wide, j->trans_a, j->trans_b, hi - lo, j->n, j->k, j->alpha, a, j->lda, j->b, j->ldb,
                     j->beta, j->c + lo * j->ldc, j->ldc);
    } else {
        const float *b = j->trans_b ? j->b + lo * j->ldb : j->b + lo;
        atelier_gemm(j->wide, j->trans_a, j->trans_b, j->m, hi - lo, j->k, j->alpha, j->a, j->lda, b, j->ldb,
                     j->beta, j->c + lo, j->ldc);
    }
}

void atelier_gemm_split(long parts, int threads, int by_rows, long per, int wide, int trans_a, int trans_b,
                        long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc) {
    struct gemm_job j = {wide, trans_a, trans_b, by_rows, m, n, k, lda, ldb, ldc, per, alpha, beta, a, b, c};
    atelier_parallel_for(parts, threads, gemm_part, &j);
}

#include <malloc.h>

void atelier_release_free_heap(void) { malloc_trim(0); }
