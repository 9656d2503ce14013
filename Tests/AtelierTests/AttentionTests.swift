import AtelierTensor
import Foundation
import Testing

/// The attention kernels against a float64 reference, at SD 1.5's 64² self-attention shape
/// (8 heads × 4096 tokens × 40) where the fused kernel runs, and the BLAS path elsewhere.
@Suite(.serialized) struct AttentionTests {
    /// Softmax(q·kᵀ/√d)·v for one query row of one head, in double.
    static func reference(_ q: [Float], _ k: [Float], _ v: [Float], n: Int, row: Int, head: Int,
                          nq: Int, nk: Int, c: Int, d: Int) -> [Double] {
        let qo = (n * nq + row) * c + head * d
        var s = [Double](repeating: 0, count: nk)
        for j in 0..<nk {
            let ko = (n * nk + j) * c + head * d
            var acc = 0.0
            for e in 0..<d { acc += Double(q[qo + e]) * Double(k[ko + e]) }
            s[j] = acc / Double(d).squareRoot()
        }
        let m = s.max()!
        var sum = 0.0
        for j in 0..<nk { s[j] = exp(s[j] - m); sum += s[j] }
        var out = [Double](repeating: 0, count: d)
        for j in 0..<nk {
            let vo = (n * nk + j) * c + head * d
            for e in 0..<d { out[e] += s[j] / sum * Double(v[vo + e]) }
        }
        return out
    }

    static func check(b: Int, nq: Int, nk: Int, heads: Int, d: Int, fused: Bool) -> Double {
        let c = heads * d
        let q = WinogradTests.normals(b * nq * c, seed: 21, sigma: 1)
        let k = WinogradTests.normals(b * nk * c, seed: 22, sigma: 1)
        let v = WinogradTests.normals(b * nk * c, seed: 23, sigma: 1)
        #expect(Ops.attentionIsFused(headDim: d, keys: nk) == fused)
        let out = Ops.attention(q: Tensor(shape: [b, nq, c], data: q), k: Tensor(shape: [b, nk, c], data: k),
                                v: Tensor(shape: [b, nk, c], data: v), heads: heads).scalars
        var num = 0.0, den = 0.0
        for n in 0..<b {
            for row in [0, 1, 2, 3, 5, nq / 2, nq - 2, nq - 1] {
                for head in 0..<heads {
                    let ref = reference(q, k, v, n: n, row: row, head: head, nq: nq, nk: nk, c: c, d: d)
                    for e in 0..<d {
                        let diff = Double(out[(n * nq + row) * c + head * d + e]) - ref[e]
                        num += diff * diff
                        den += ref[e] * ref[e]
                    }
                }
            }
        }
        return (num / den).squareRoot()
    }

    /// Tolerance 1e-5 relative L2: float32 sums of 4096 products and a float32 softmax are
    /// around 1e-7…1e-6 from float64.
    @Test func fusedAttentionAt64SquaredMatchesFloat64() {
        let err = Self.check(b: 2, nq: 4096, nk: 4096, heads: 8, d: 40, fused: true)
        #expect(err <= 1e-5, "relative L2 \(err)")
    }

    @Test func fusedAttentionHandlesPartialQueryBlocksAndCrossAttentionShapes() {
        // 77 query rows (not a multiple of the 4-row tile or the 64-row task), 256 keys
        let err = Self.check(b: 1, nq: 77, nk: 256, heads: 2, d: 40, fused: true)
        #expect(err <= 1e-5, "relative L2 \(err)")
    }

    @Test func blasAttentionServesOtherHeadWidthsAndTheTextEncodersKeys() {
        #expect(Self.check(b: 2, nq: 1024, nk: 1024, heads: 8, d: 80, fused: false) <= 1e-5)
        #expect(Self.check(b: 2, nq: 4096, nk: 77, heads: 8, d: 40, fused: false) <= 1e-5)  // cross-attention
    }
}
