import CKernels
import Foundation

/// Attention for 40-wide heads (SD 1.5's 64² level, 5 of its 16 transformers and most of its
/// attention time) without BLAS calls whose inner dimension is 40: per head, keys are packed
/// transposed once; then for a group of 16 query rows the scores come from 4×16 register tiles
/// (d = 40 multiply-adds per key), a row softmax, and `P·V` from 2×40 register tiles. Keys are
/// taken in blocks of 256 that every quad / pair of the group uses while the block is in cache,
/// so a head's K and V (2 × 640 KB at 64², more than L2) stream in once per 16 rows, not per 4.
/// Scores for the group (16 × Nk floats) stay in L2; no `block × Nk` matrix per task. Sums run
/// over the keys in order, whatever the blocking.
enum FusedAttention {
    static let headDim = 40
    /// query rows that share one pass over the keys (their scores, 16 × Nk floats, stay in L2)
    static let groupRows = 16
    /// keys per block: Kᵀ and V of a block (2 × 40 KB) stay in L1/L2 while the group uses them
    static let keyBlock = 256

    /// Whether the 512-bit tiles (8 rows × 32 keys, 8 rows × 40 values; `CKernels`) run instead of the
    /// AVX2 ones: on CPUs with AVX-512F, unless ATELIER_AVX512=0. Every output element sums the same
    /// products in the same order either way, so both give the same bits.
    nonisolated(unsafe) static var wide = Ops.cpuHasAVX512 && ProcessInfo.processInfo.environment["ATELIER_AVX512"] != "0"

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
        let out = Tensor(uninitialized: [b, nq, c])
        let qp = q.unsafePointer, kp = k.unsafePointer, vp = v.unsafePointer, op = out.unsafePointer
        let heads2 = b * heads
        let workers = min(Compute.threads, heads2 * qBlocks)
        let perWorker = 2 * d * nk + groupRows * nk + groupRows * d
        Scratch.with(workers * perWorker) { scratch in
            Compute.parallel(tasks: workers) { worker in
                let kt = scratch + worker * perWorker
                let vh = kt + d * nk            // this head's values, rows of 40 contiguous
                let scores = vh + d * nk        // groupRows rows of nk
                let qs = scores + groupRows * nk
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
                    let wide = Self.wide, tile = wide ? 8 : 4
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
                                    scoreQuad(qs + g * 4 * d, kt + j0, stride: nk, keys: jn, into: scores + g * 4 * nk + j0)
                                }
                            }
                            j0 += jn
                        }
                        for i in 0..<group { Ops.softmaxRow(scores + i * nk, nk) }
                        j0 = 0
                        while j0 < nk {
                            let jn = min(keyBlock, nk - j0)
                            func row(_ i: Int) -> UnsafeMutablePointer<Float>? { i < group ? op + (n * nq + r0 + r + i) * c + h * d : nil }
                            if wide {
                                for g in 0..<tiles {
                                    var dst = (row(8 * g), row(8 * g + 1), row(8 * g + 2), row(8 * g + 3),
                                               row(8 * g + 4), row(8 * g + 5), row(8 * g + 6), row(8 * g + 7))
                                    withUnsafePointer(to: &dst) {
                                        $0.withMemoryRebound(to: UnsafeMutablePointer<Float>?.self, capacity: 8) {
                                            atelier_attention_values8_avx512(scores + g * 8 * nk + j0, nk, vh + j0 * d, jn, $0, j0 > 0 ? 1 : 0)
                                        }
                                    }
                                }
                            } else {
                                var i = 0
                                while i < group {
                                    weightedValues(scores + i * nk + j0, scores + min(i + 1, group - 1) * nk + j0, vh + j0 * d,
                                                   keys: jn, row(i)!, row(i + 1), accumulate: j0 > 0)
                                    i += 2
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

    /// `scores[i][j] = Σ_e q[i][e] · kᵀ[e][j]` for four rows, sixteen keys per register tile.
    /// `kt` and `s` advance by `stride` per dimension / row; `keys` is a multiple of 16.
    @inline(__always)
    static func scoreQuad(_ q: UnsafePointer<Float>, _ kt: UnsafePointer<Float>, stride nk: Int, keys: Int,
                          into s: UnsafeMutablePointer<Float>) {
        let d = headDim
        var j = 0
        while j < keys {
            var a00 = V8(), a01 = V8(), a10 = V8(), a11 = V8()
            var a20 = V8(), a21 = V8(), a30 = V8(), a31 = V8()
            var col = kt + j
            for e in 0..<d {
                let k0 = vload8(col), k1 = vload8(col + 8)
                let q0 = V8(repeating: q[e]), q1 = V8(repeating: q[d + e])
                let q2 = V8(repeating: q[2 * d + e]), q3 = V8(repeating: q[3 * d + e])
                a00.addProduct(q0, k0); a01.addProduct(q0, k1)
                a10.addProduct(q1, k0); a11.addProduct(q1, k1)
                a20.addProduct(q2, k0); a21.addProduct(q2, k1)
                a30.addProduct(q3, k0); a31.addProduct(q3, k1)
                col += nk
            }
            vstore8(a00, s + j); vstore8(a01, s + j + 8)
            vstore8(a10, s + nk + j); vstore8(a11, s + nk + j + 8)
            vstore8(a20, s + 2 * nk + j); vstore8(a21, s + 2 * nk + j + 8)
            vstore8(a30, s + 3 * nk + j); vstore8(a31, s + 3 * nk + j + 8)
            j += 16
        }
    }

    /// `out_r = Σ_j p_r[j] · v[j]` for two rows (40 wide: five vectors each) over `keys` keys;
    /// `accumulate` continues sums an earlier key block stored, in the same order as one pass.
    @inline(__always)
    static func weightedValues(_ p0: UnsafePointer<Float>, _ p1: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                               keys: Int, _ o0: UnsafeMutablePointer<Float>, _ o1: UnsafeMutablePointer<Float>?, accumulate: Bool) {
        var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8(), a4 = V8()
        var b0 = V8(), b1 = V8(), b2 = V8(), b3 = V8(), b4 = V8()
        if accumulate {
            a0 = vload8(o0); a1 = vload8(o0 + 8); a2 = vload8(o0 + 16); a3 = vload8(o0 + 24); a4 = vload8(o0 + 32)
            if let o1 { b0 = vload8(o1); b1 = vload8(o1 + 8); b2 = vload8(o1 + 16); b3 = vload8(o1 + 24); b4 = vload8(o1 + 32) }
        }
        let stride = headDim
        var row = v
        for j in 0..<keys {
            let v0 = vload8(row), v1 = vload8(row + 8), v2 = vload8(row + 16), v3 = vload8(row + 24), v4 = vload8(row + 32)
            let x = V8(repeating: p0[j]), y = V8(repeating: p1[j])
            a0.addProduct(x, v0); a1.addProduct(x, v1); a2.addProduct(x, v2); a3.addProduct(x, v3); a4.addProduct(x, v4)
            b0.addProduct(y, v0); b1.addProduct(y, v1); b2.addProduct(y, v2); b3.addProduct(y, v3); b4.addProduct(y, v4)
            row += stride
        }
        vstore8(a0, o0); vstore8(a1, o0 + 8); vstore8(a2, o0 + 16); vstore8(a3, o0 + 24); vstore8(a4, o0 + 32)
        if let o1 { vstore8(b0, o1); vstore8(b1, o1 + 8); vstore8(b2, o1 + 16); vstore8(b3, o1 + 24); vstore8(b4, o1 + 32) }
    }
}
