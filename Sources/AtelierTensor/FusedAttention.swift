import Foundation

/// Attention for 40-wide heads (SD 1.5's 64² level, 5 of its 16 transformers and most of its
/// attention time) without BLAS calls whose inner dimension is 40: per head, keys are packed
/// transposed once, then for four query rows at a time the scores come from a 4×16 register
/// tile (d = 40 multiply-adds per key), a row softmax, and `P·V` from a 2×40 register tile.
/// Scores for four rows (4 × Nk floats) stay in L1/L2; no `block × Nk` matrix per task.
enum FusedAttention {
    static let headDim = 40

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
        Scratch.with(workers * (2 * d * nk + 4 * nk + 4 * d)) { scratch in
            Compute.parallel(tasks: workers) { worker in
                let kt = scratch + worker * (2 * d * nk + 4 * nk + 4 * d)
                let vh = kt + d * nk            // this head's values, rows of 40 contiguous
                let scores = vh + d * nk
                let qs = scores + 4 * nk
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
                    while r < rows {
                        let quad = min(4, rows - r)
                        // the four query rows, scaled (a partial quad repeats its last row)
                        for i in 0..<4 {
                            let src = qp + (n * nq + r0 + r + min(i, quad - 1)) * c + h * d
                            for e in 0..<d { qs[i * d + e] = src[e] * scale }
                        }
                        scoreQuad(qs, kt, nk: nk, into: scores)
                        for i in 0..<quad { Ops.softmaxRow(scores + i * nk, nk) }
                        var i = 0
                        while i < quad {
                            let dst0 = op + (n * nq + r0 + r + i) * c + h * d
                            if i + 1 < quad {
                                let dst1 = op + (n * nq + r0 + r + i + 1) * c + h * d
                                weightedValues(scores + i * nk, scores + (i + 1) * nk, vh, stride: d, nk: nk, dst0, dst1)
                            } else {
                                weightedValues(scores + i * nk, scores + i * nk, vh, stride: d, nk: nk, dst0, nil)
                            }
                            i += 2
                        }
                        r += quad
                    }
                }
            }
        }
        return out
    }

    /// `scores[i][j] = Σ_e q[i][e] · kᵀ[e][j]` for four rows, sixteen keys per register tile.
    @inline(__always)
    static func scoreQuad(_ q: UnsafePointer<Float>, _ kt: UnsafePointer<Float>, nk: Int,
                          into s: UnsafeMutablePointer<Float>) {
        let d = headDim
        var j = 0
        while j < nk {
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

    /// `out_r = Σ_j p_r[j] · v[j]` for two rows (40 wide: five vectors each).
    @inline(__always)
    static func weightedValues(_ p0: UnsafePointer<Float>, _ p1: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
                               stride: Int, nk: Int, _ o0: UnsafeMutablePointer<Float>, _ o1: UnsafeMutablePointer<Float>?) {
        var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8(), a4 = V8()
        var b0 = V8(), b1 = V8(), b2 = V8(), b3 = V8(), b4 = V8()
        var row = v
        for j in 0..<nk {
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
