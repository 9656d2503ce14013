import CKernels
import Foundation

/// Attention for 40-wide heads (SD 1.5's 64² level, 5 of its 16 transformers and most of its
/// attention time) without GEMM calls whose inner dimension is 40: per head, keys are packed
/// transposed once; then for a group of 16 (AVX-512) or 18 (AVX2) query rows the scores come from
/// register tiles of 8 or 6 rows (d = 40 multiply-adds per key; `CKernels`), a row softmax, and
/// `P·V` from tiles of 8 or 6 rows × 40. Keys are taken in blocks of 256 that every tile of the
/// group uses while the block is in cache, so a head's K and V (2 × 640 KB at 64², more than L2)
/// stream in once per group, not per tile. Scores for the group (≤ 18 × Nk floats) stay in L2; no
/// `block × Nk` matrix per task. Sums run over the keys in order, whatever the blocking or tiles.
enum FusedAttention {
    static let headDim = 40
    /// query rows that share one pass over the keys (their scores, ≤ 18 × Nk floats, stay in L2):
    /// two 8-row tiles, or three 6-row tiles
    static func groupRows(wide: Bool) -> Int { wide ? 16 : 18 }
    static let maxGroupRows = 18
    /// keys per block: Kᵀ and V of a block (2 × 40 KB) stay in L1/L2 while the group uses them
    static let keyBlock = 256

    /// Whether the 512-bit tiles (8 rows × 32 keys, 8 rows × 40 values; `CKernels`) run instead of the
    /// AVX2 ones: on CPUs with AVX-512F, unless ATELIER_AVX512=0. Every output element sums the same
    /// products in the same order either way, so both give the same bits.
    nonisolated(unsafe) static var wide = Ops.avx512ByDefault

    /// Whether `Ops.attention` takes this path (ATELIER_FUSED_ATTENTION=0 turns it off).
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["ATELIER_FUSED_ATTENTION"] != "0"

    static func applies(headDim d: Int, keys nk: Int, causal: Bool) -> Bool {
        enabled && d == headDim && !causal && nk >= 64 && nk % 16 == 0
    }

    /// `q [B, Nq, H·40]`, `k, v [B, Nk, H·40]` → `[B, Nq, H·40]`.
    static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1]
        Profiler.count(macs: 2 * b * heads * nq * nk * headDim)
        let d = headDim
        let scale = 1 / Float(d).squareRoot()
        let rowsPerTask = 64
        let qBlocks = (nq + rowsPerTask - 1) / rowsPerTask
        let out = Tensor(uninitialized: Dims(b, nq, c))
        let qp = q.unsafePointer, kp = k.unsafePointer, vp = v.unsafePointer, op = out.unsafePointer
        let heads2 = b * heads
        let workers = min(Compute.threads, heads2 * qBlocks)
        let perWorker = 2 * d * nk + maxGroupRows * nk + maxGroupRows * d
        Scratch.with(workers * perWorker) { scratch in
            let sizes = (nq: nq, nk: nk, c: c, d: d, heads: heads, heads2: heads2, qBlocks: qBlocks, rowsPerTask: rowsPerTask,
                         workers: workers, perWorker: perWorker)
            Compute.parallel(tasks: workers, (qp, kp, vp, op, scratch, scale, sizes)) { context, worker in
                let (qp, kp, vp, op, scratch, scale, (nq, nk, c, d, heads, heads2, qBlocks, rowsPerTask, workers, perWorker)) = context
                let kt = scratch + worker * perWorker
                let vh = kt + d * nk            // this head's values, rows of 40 contiguous
                let scores = vh + d * nk        // groupRows rows of nk
                let qs = scores + maxGroupRows * nk
                // contiguous runs of tasks per worker, so each packs a head's keys once
                let total = heads2 * qBlocks
                let per = (total + workers - 1) / workers
                var packed = -1
                for t in (worker * per)..<min(total, (worker + 1) * per) {
                    let head = t / qBlocks, qb = t % qBlocks
                    let n = head / heads, h = head % heads
                    if packed != head {
                        // Kᵀ of this head: kt[i][j] = k[n, j, h·d + i]
                        for j in 0..<nk {
                            let src = kp + (n * nk + j) * c + h * d
                            for i in 0..<d { kt[i * nk + j] = src[i] }
                            (vh + j * d).update(from: vp + (n * nk + j) * c + h * d, count: d)
                        }
                        packed = head
                    }
                    let r0 = qb * rowsPerTask, rows = min(rowsPerTask, nq - r0)
                    var r = 0
                    let wide = Self.wide, tile = wide ? 8 : 6, groupRows = Self.groupRows(wide: wide)
                    while r < rows {
                        let group = min(groupRows, rows - r), tiles = (group + tile - 1) / tile
                        // the group's query rows, scaled (a partial tile repeats the group's last row)
                        for i in 0..<(tiles * tile) {
                            let src = qp + (n * nq + r0 + r + min(i, group - 1)) * c + h * d
                            for e in 0..<d { qs[i * d + e] = src[e] * scale }
                        }
                        // one block of keys (Kᵀ columns, then V rows) serves every row tile of the group
                        // while it is in L1/L2: the head's keys are read once per group, not per tile
                        var j0 = 0
                        while j0 < nk {
                            let jn = min(keyBlock, nk - j0)
                            for g in 0..<tiles {
                                if wide {
                                    atelier_attention_scores8_avx512(qs + g * 8 * d, kt + j0, nk, jn, scores + g * 8 * nk + j0, nk)
                                } else {
                                    atelier_attention_scores6_avx2(qs + g * 6 * d, kt + j0, nk, jn, scores + g * 6 * nk + j0, nk)
                                }
                            }
                            j0 += jn
                        }
                        for i in 0..<group { Ops.softmaxRow(scores + i * nk, nk) }
                        j0 = 0
                        while j0 < nk {
                            let jn = min(keyBlock, nk - j0)
                            func row(_ i: Int) -> UnsafeMutablePointer<Float>? { i < group ? op + (n * nq + r0 + r + i) * c + h * d : nil }
                            for g in 0..<tiles {
                                // the tile's output rows (nil past the group, and past the tile's 6 on AVX2)
                                var dst = (row(tile * g), row(tile * g + 1), row(tile * g + 2), row(tile * g + 3),
                                           row(tile * g + 4), row(tile * g + 5),
                                           wide ? row(tile * g + 6) : nil, wide ? row(tile * g + 7) : nil)
                                let p = scores + g * tile * nk + j0, accumulate: Int32 = j0 > 0 ? 1 : 0
                                withUnsafePointer(to: &dst) {
                                    $0.withMemoryRebound(to: UnsafeMutablePointer<Float>?.self, capacity: 8) {
                                        if wide {
                                            atelier_attention_values8_avx512(p, nk, vh + j0 * d, jn, $0, accumulate)
                                        } else {
                                            atelier_attention_values6_avx2(p, nk, vh + j0 * d, jn, $0, accumulate)
                                        }
                                    }
                                }
                            }
                            j0 += jn
                        }
                        r += group
                    }
                }
            }
        }
        return out
    }
}
