#include "CKernels.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* A GEMM whose every output element is one chain of fused multiply-adds over k in order:
 * c = fma(a[0] b[0], c0); c = fma(a[1] b[1], c); … with c0 = 0 (beta 0) or beta·C. Blocking,
 * tile shapes, vector width and the split between threads only decide which elements are
 * computed where, never the order of an element's sums, so the AVX2 and AVX-512 kernels and
 * any thread count give the same bits. Layout as BLIS: B packed in KC × NR panels (kept in L1
 * by the micro-kernel's sweep over A), A in MR × KC panels (a block of MC rows in L2). */

enum { KC = 256, NC = 2048, MC_UNITS = 16 };

/* Packed operand buffers, one pair per thread (kept for the thread's life: the engine's compute
 * threads are a fixed pool). */
static _Thread_local float *tls_pack_a, *tls_pack_b;

static float *aligned_floats(long count) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)count * sizeof(float)) != 0) abort();
    return p;
}

static _Thread_local int parallel_region;

int atelier_parallel_region(void) { return parallel_region; }

void atelier_set_parallel_region(int inside) { parallel_region = inside; }

/* element (i, k) of op(A) and (k, j) of op(B) */
#define A_AT(i, k) (trans_a ? a[(long)(k) * lda + (i)] : a[(long)(i) * lda + (k)])
#define B_AT(k, j) (trans_b ? b[(long)(j) * ldb + (k)] : b[(long)(k) * ldb + (j)])

/* A rows [i0, i0 + mc) × k [k0, k0 + kc) into MR-row panels: panel p holds, for each k, its MR
 * values; rows past the edge are zero. alpha is applied here (exact when 1). */
static void pack_a(int mr, int trans_a, const float *a, long lda, long i0, long mc, long k0,
                   long kc, float alpha, float *dst) {
    for (long p = 0; p < mc; p += mr) {
        long rows = mc - p < mr ? mc - p : mr;
        float *d = dst + p * kc;
        if (!trans_a) {
            for (long r = 0; r < rows; r++) {
                const float *src = a + (i0 + p + r) * lda + k0;
                if (alpha == 1.0f)
                    for (long k = 0; k < kc; k++) d[k * mr + r] = src[k];
                else
                    for (long k = 0; k < kc; k++) d[k * mr + r] = alpha * src[k];
            }
        } else {
            for (long k = 0; k < kc; k++) {
                const float *src = a + (k0 + k) * lda + i0 + p;
                for (long r = 0; r < rows; r++) d[k * mr + r] = alpha == 1.0f ? src[r] : alpha * src[r];
            }
        }
        for (long r = rows; r < mr; r++)
            for (long k = 0; k < kc; k++) d[k * mr + r] = 0;
    }
}

/* B k [k0, k0 + kc) × columns [j0, j0 + nc) into NR-column panels: for each k, NR values; columns
 * past the edge are zero. */
static void pack_b(int nr, int trans_b, const float *b, long ldb, long k0, long kc, long j0,
                   long nc, float *dst) {
    for (long p = 0; p < nc; p += nr) {
        long cols = nc - p < nr ? nc - p : nr;
        float *d = dst + p * kc;
        if (!trans_b) {
            for (long k = 0; k < kc; k++) {
                const float *src = b + (k0 + k) * ldb + j0 + p;
                memcpy(d + k * nr, src, (size_t)cols * sizeof(float));
                for (long c = cols; c < nr; c++) d[k * nr + c] = 0;
            }
        } else {
            for (long c = 0; c < cols; c++) {
                const float *src = b + (j0 + p + c) * ldb + k0;
                for (long k = 0; k < kc; k++) d[k * nr + c] = src[k];
            }
            for (long k = 0; k < kc; k++)
                for (long c = cols; c < nr; c++) d[k * nr + c] = 0;
        }
    }
}

/* 12 × 32 tile with 512-bit vectors: 24 accumulators. `c` rows ldc apart; with `load` the chains
 * continue from c, else they start at 0. */
__attribute__((target("avx512f"))) static void kernel_12x32(long kc, const float *ap, const float *bp,
                                                             float *c, long ldc, int load) {
    __m512 acc[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        acc[i][0] = load ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
        acc[i][1] = load ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
    }
    for (long k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) {
            __m512 x = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
        }
        ap += 12;
        bp += 32;
    }
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
    }
}

/* 6 × 16 tile with 256-bit vectors: 12 accumulators (the AVX2 machines' kernel). */
__attribute__((target("avx2,fma"))) static void kernel_6x16(long kc, const float *ap, const float *bp,
                                                            float *c, long ldc, int load) {
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        acc[i][0] = load ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
        acc[i][1] = load ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
    }
    for (long k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            __m256 x = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
        }
        ap += 6;
        bp += 16;
    }
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}

void atelier_gemm(int wide, int trans_a, int trans_b, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb, float beta, float *c,
                  long ldc) {
    if (m <= 0 || n <= 0) return;
    if (beta != 0.0f && beta != 1.0f)
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] *= beta;
    if (k <= 0) {
        if (beta == 0.0f)
            for (long i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    const int mr = wide ? 12 : 6, nr = wide ? 32 : 16;
    const long mc_max = (long)mr * MC_UNITS;
    if (tls_pack_a == NULL) {
        tls_pack_a = aligned_floats(12L * MC_UNITS * KC);
        tls_pack_b = aligned_floats((long)KC * NC);
    }
    float *pa = tls_pack_a, *pb = tls_pack_b;
    float edge[12 * 32] = {0};

    for (long j0 = 0; j0 < n; j0 += NC) {
        long nc = n - j0 < NC ? n - j0 : NC;
        for (long k0 = 0; k0 < k; k0 += KC) {
            long kc = k - k0 < KC ? k - k0 : KC;
            int load = k0 > 0 || beta != 0.0f;
            pack_b(nr, trans_b, b, ldb, k0, kc, j0, nc, pb);
            for (long i0 = 0; i0 < m; i0 += mc_max) {
                long mc = m - i0 < mc_max ? m - i0 : mc_max;
                pack_a(mr, trans_a, a, lda, i0, mc, k0, kc, alpha, pa);
                for (long jp = 0; jp < nc; jp += nr) {
                    long cols = nc - jp < nr ? nc - jp : nr;
                    const float *bp = pb + jp * kc;
                    for (long ip = 0; ip < mc; ip += mr) {
                        long rows = mc - ip < mr ? mc - ip : mr;
                        const float *ap = pa + ip * kc;
                        float *ct = c + (i0 + ip) * ldc + j0 + jp;
                        if (rows == mr && cols == nr) {
                            if (wide) kernel_12x32(kc, ap, bp, ct, ldc, load);
                            else kernel_6x16(kc, ap, bp, ct, ldc, load);
                            continue;
                        }
                        /* an edge tile: through a full-size copy */
                        if (load)
                            for (long r = 0; r < rows; r++) memcpy(edge + r * nr, ct + r * ldc, (size_t)cols * sizeof(float));
                        if (wide) kernel_12x32(kc, ap, bp, edge, nr, load);
                        else kernel_6x16(kc, ap, bp, edge, nr, load);
                        for (long r = 0; r < rows; r++) memcpy(ct + r * ldc, edge + r * nr, (size_t)cols * sizeof(float));
                    }
                }
            }
        }
    }
}

/* Per-thread scratch slots for leaf kernels (Winograd's transform rows): kept
 * for the thread's life and grown only when a call needs more, so a step loop allocates nothing.
 * A slot starts at 64 K floats (256 KB), more than the UNet's calls ask at 512², so which thread
 * happens to run which kernel first does not decide whether a later step allocates. */
enum { THREAD_SLOTS = 4, SLOT_START_FLOATS = 1 << 16 };
static _Thread_local float *tls_slot[THREAD_SLOTS];
static _Thread_local long tls_slot_count[THREAD_SLOTS];

float *atelier_thread_scratch(int slot, long count) {
    if (slot < 0 || slot >= THREAD_SLOTS) abort();
    if (count < SLOT_START_FLOATS) count = SLOT_START_FLOATS;
    if (tls_slot_count[slot] < count) {
        free(tls_slot[slot]);
        tls_slot[slot] = aligned_floats(count);
        tls_slot_count[slot] = count;
    }
    return tls_slot[slot];
}
