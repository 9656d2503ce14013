#include "CKernels.h"
#include <immintrin.h>
#include <stddef.h>

int atelier_cpu_has_avx512f(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#define HEAD 40

__attribute__((target("avx512f,fma")))
void atelier_attention_scores8_avx512(const float *q, const float *kt, long kt_stride, long keys,
                                      float *s, long s_stride) {
    long j = 0;
    for (; j + 32 <= keys; j += 32) {
        __m512 a[8][2];
        for (int i = 0; i < 8; i++) { a[i][0] = _mm512_setzero_ps(); a[i][1] = _mm512_setzero_ps(); }
        const float *col = kt + j;
        for (int e = 0; e < HEAD; e++) {
            __m512 k0 = _mm512_loadu_ps(col), k1 = _mm512_loadu_ps(col + 16);
            for (int i = 0; i < 8; i++) {
                __m512 x = _mm512_set1_ps(q[i * HEAD + e]);
                a[i][0] = _mm512_fmadd_ps(x, k0, a[i][0]);
                a[i][1] = _mm512_fmadd_ps(x, k1, a[i][1]);
            }
            col += kt_stride;
        }
        for (int i = 0; i < 8; i++) {
            _mm512_storeu_ps(s + i * s_stride + j, a[i][0]);
            _mm512_storeu_ps(s + i * s_stride + j + 16, a[i][1]);
        }
    }
    if (j < keys) {  // a last block of 16 keys
        __m512 a[8];
        for (int i = 0; i < 8; i++) a[i] = _mm512_setzero_ps();
        const float *col = kt + j;
        for (int e = 0; e < HEAD; e++) {
            __m512 k0 = _mm512_loadu_ps(col);
            for (int i = 0; i < 8; i++) a[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i * HEAD + e]), k0, a[i]);
            col += kt_stride;
        }
        for (int i = 0; i < 8; i++) _mm512_storeu_ps(s + i * s_stride + j, a[i]);
    }
}

__attribute__((target("avx512f,fma")))
void atelier_attention_values8_avx512(const float *p, long p_stride, const float *v, long keys,
                                      float *const o[8], int accumulate) {
    __m512 a0[8], a1[8];
    __m256 a2[8];
    for (int i = 0; i < 8; i++) {
        if (accumulate && o[i]) {
            a0[i] = _mm512_loadu_ps(o[i]); a1[i] = _mm512_loadu_ps(o[i] + 16); a2[i] = _mm256_loadu_ps(o[i] + 32);
        } else {
            a0[i] = _mm512_setzero_ps(); a1[i] = _mm512_setzero_ps(); a2[i] = _mm256_setzero_ps();
        }
    }
    const float *row = v;
    for (long j = 0; j < keys; j++) {
        __m512 v0 = _mm512_loadu_ps(row), v1 = _mm512_loadu_ps(row + 16);
        __m256 v2 = _mm256_loadu_ps(row + 32);
        for (int i = 0; i < 8; i++) {
            float w = p[i * p_stride + j];
            __m512 x = _mm512_set1_ps(w);
            a0[i] = _mm512_fmadd_ps(x, v0, a0[i]);
            a1[i] = _mm512_fmadd_ps(x, v1, a1[i]);
            a2[i] = _mm256_fmadd_ps(_mm256_set1_ps(w), v2, a2[i]);
        }
        row += HEAD;
    }
    for (int i = 0; i < 8; i++) {
        if (!o[i]) continue;
        _mm512_storeu_ps(o[i], a0[i]); _mm512_storeu_ps(o[i] + 16, a1[i]); _mm256_storeu_ps(o[i] + 32, a2[i]);
    }
}

/* AtelierTensor's vexp (VectorMath.swift), 16 lanes: clamp, n = round(x·log2 e) by the 1.5·2^23 trick,
   Cody–Waite reduction, degree-6 polynomial, scale by 2^n. Every step is the Swift one. */
__attribute__((target("avx512f,fma")))
static inline __m512 vexp16(__m512 x) {
    /* the constant first: MINPS / MAXPS return the second operand when either is NaN, so NaN stays
       NaN as with Swift's replace(with:where:) */
    x = _mm512_min_ps(_mm512_set1_ps(88.3f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-87.3f), x);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 nm = _mm512_add_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(0.44269504088896341f), x), magic);
    __m512 n = _mm512_sub_ps(nm, magic);
    __m512 f = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
    f = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(nm), _mm512_set1_epi32(0x4B400000)),
                                                   _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

__attribute__((target("avx512f,fma")))
void atelier_exp_shifted16_avx512(float *row, long n, float m, float lane_sums[16]) {
    const __m512 mb = _mm512_set1_ps(m);
    __m512 sv = _mm512_setzero_ps();
    for (long i = 0; i + 16 <= n; i += 16) {
        __m512 e = vexp16(_mm512_sub_ps(_mm512_loadu_ps(row + i), mb));
        _mm512_storeu_ps(row + i, e);
        sv = _mm512_add_ps(sv, e);
    }
    _mm512_storeu_ps(lane_sums, sv);
}

/* The AVX2 machines' tiles, 6 rows (12 accumulators of the 16 registers, as the GEMM's 6 × 16):
   each element sums the same products in the same order as the 512-bit tiles above. */
__attribute__((target("avx2,fma")))
void atelier_attention_scores6_avx2(const float *q, const float *kt, long kt_stride, long keys,
                                    float *s, long s_stride) {
    for (long j = 0; j < keys; j += 16) {
        __m256 a[6][2];
        for (int i = 0; i < 6; i++) { a[i][0] = _mm256_setzero_ps(); a[i][1] = _mm256_setzero_ps(); }
        const float *col = kt + j;
        for (int e = 0; e < HEAD; e++) {
            __m256 k0 = _mm256_loadu_ps(col), k1 = _mm256_loadu_ps(col + 8);
            for (int i = 0; i < 6; i++) {
                __m256 x = _mm256_broadcast_ss(q + i * HEAD + e);
                a[i][0] = _mm256_fmadd_ps(x, k0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(x, k1, a[i][1]);
            }
            col += kt_stride;
        }
        for (int i = 0; i < 6; i++) {
            _mm256_storeu_ps(s + i * s_stride + j, a[i][0]);
            _mm256_storeu_ps(s + i * s_stride + j + 8, a[i][1]);
        }
    }
}

/* `o[i][c0 .. c0 + 8·width)` for 6 rows, one column strip of `width` (1 or 2) vectors. */
__attribute__((target("avx2,fma")))
static inline void values6_strip(const float *p, long p_stride, const float *v, long keys,
                                 float *const o[6], int accumulate, int c0, int width) {
    __m256 a[6][2];
    for (int i = 0; i < 6; i++)
        for (int w = 0; w < width; w++)
            a[i][w] = accumulate && o[i] ? _mm256_loadu_ps(o[i] + c0 + 8 * w) : _mm256_setzero_ps();
    const float *row = v + c0;
    for (long j = 0; j < keys; j++) {
        __m256 v0 = _mm256_loadu_ps(row), v1 = width == 2 ? _mm256_loadu_ps(row + 8) : v0;
        for (int i = 0; i < 6; i++) {
            __m256 x = _mm256_broadcast_ss(p + i * p_stride + j);
            a[i][0] = _mm256_fmadd_ps(x, v0, a[i][0]);
            if (width == 2) a[i][1] = _mm256_fmadd_ps(x, v1, a[i][1]);
        }
        row += HEAD;
    }
    for (int i = 0; i < 6; i++) {
        if (!o[i]) continue;
        for (int w = 0; w < width; w++) _mm256_storeu_ps(o[i] + c0 + 8 * w, a[i][w]);
    }
}

__attribute__((target("avx2,fma")))
void atelier_attention_values6_avx2(const float *p, long p_stride, const float *v, long keys,
                                    float *const o[6], int accumulate) {
    /* the 40 columns as strips of 16, 16 and 8 */
    values6_strip(p, p_stride, v, keys, o, accumulate, 0, 2);
    values6_strip(p, p_stride, v, keys, o, accumulate, 16, 2);
    values6_strip(p, p_stride, v, keys, o, accumulate, 32, 1);
}
