#ifndef ATELIER_CKERNELS_H
#define ATELIER_CKERNELS_H

/// Micro-kernels that need a CPU feature Swift cannot target per function (the Swift modules are
/// built for Haswell / AVX2): each is compiled for its feature and called only after the check.

/// Whether the CPU (and OS) run AVX-512F code.
int atelier_cpu_has_avx512f(void);

/// Fused attention's score tile with 512-bit vectors: for 8 query rows `q` (each 40 floats,
/// packed) and the transposed keys `kt` (40 rows, `kt_stride` floats apart), writes
/// `s[i * s_stride + j] = sum_e q[i][e] * kt[e][j]` for j in [0, keys) (keys a multiple of 16).
/// Each element sums e = 0…39 in order with fused multiply-adds: the same numbers as the AVX2 tile.
void atelier_attention_scores8_avx512(const float *q, const float *kt, long kt_stride, long keys,
                                      float *s, long s_stride);

/// `o[i][0..40) (+)= sum_j p[i][j] * v[j][0..40)` for 8 rows (`p` rows `p_stride` apart, `v` rows
/// of 40 contiguous floats) over `keys` keys; rows whose `o[i]` is NULL are not stored. With
/// `accumulate` the sums continue from the stored values. Sums run over j in order.
void atelier_attention_values8_avx512(const float *p, long p_stride, const float *v, long keys,
                                      float *const o[8], int accumulate);

/// The same two tiles for 6 query rows with 256-bit vectors (AVX2 + FMA): 12 accumulators, as the
/// GEMM's 6 × 16 tile. Same order of sums per element as the 512-bit tiles, so the same bits.
void atelier_attention_scores6_avx2(const float *q, const float *kt, long kt_stride, long keys,
                                    float *s, long s_stride);
void atelier_attention_values6_avx2(const float *p, long p_stride, const float *v, long keys,
                                    float *const o[6], int accumulate);

/// `row[i] = exp(row[i] - m)` for i in [0, n) (n a multiple of 16) with 512-bit vectors, and the
/// sums of every 16th value into `lane_sums[16]` (lane l: i = l, l + 16, … in order). The exp is
/// AtelierTensor's `vexp` operation for operation (same fused multiply-adds), so the values and
/// lane sums equal the Swift loop's bit for bit.
void atelier_exp_shifted16_avx512(float *row, long n, float m, float lane_sums[16]);

/// Row-major `C[m,n] = alpha op(A) op(B) + beta C` in which each element of C is one chain of
/// fused multiply-adds over k in order, starting from 0 (beta 0) or beta·C, with alpha applied to
/// A's elements: the same bits with 512-bit (`wide`, 12 × 32 tiles; AVX-512F) or 256-bit tiles
/// (6 × 16; AVX2 + FMA), for any blocking, and for any split of C's rows or columns between
/// calls. Single-threaded; packing buffers are per thread.
void atelier_gemm(int wide, int trans_a, int trans_b, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb, float beta, float *c,
                  long ldc);

/// A per-thread flag: this thread works for a parallel task (`Compute.parallel`), so its GEMMs
/// stay on it. Thread-local C storage: no lookup or allocation on the GEMM's path.
int atelier_parallel_region(void);
void atelier_set_parallel_region(int inside);

/// One part of a parallel job: `part` in 0..<parts.
typedef void (*atelier_part_fn)(void *ctx, long part);

/// Runs fn(ctx, part) for every part in 0..<parts on the calling thread and up to `threads` − 1
/// threads of the engine's pool, returning when all are done. No allocation per call. While a
/// job runs, a job posted from one of its parts (or from another thread) runs on its own thread.
void atelier_parallel_for(long parts, int threads, atelier_part_fn fn, void *ctx);

/// One GEMM (as `atelier_gemm`) with C divided into `parts` parts of `per` rows (`by_rows`) or
/// columns, run on the pool: the same bits as one call, since each element's sum is unchanged.
void atelier_gemm_split(long parts, int threads, int by_rows, long per, int wide, int trans_a, int trans_b,
                        long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc);

/// Hands the allocator's free heap pages back to the system (glibc's malloc_trim).
void atelier_release_free_heap(void);

/// At least `count` floats of this thread's scratch slot `slot` (0…3), 64-byte aligned, kept for
/// the thread's life and grown when a call asks for more. For leaf kernels: the memory is the
/// same on every call, so a kernel must not call another that uses the same slot.
float *atelier_thread_scratch(int slot, long count);

#endif
