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

    /// The AVX-512 tiles sum the same products in the same order as the AVX2 ones: same bits, at
    /// the 64² shape and at a partial group (77 rows) with a 16-key tail (272 keys). On a CPU
    /// without AVX-512F the dispatcher must keep the AVX2 tiles.
    @Test func avx512AttentionTilesGiveTheAVX2TilesBits() {
        let saved = Ops.attentionUsesAVX512
        defer { Ops.attentionUsesAVX512 = saved }
        Ops.attentionUsesAVX512 = true
        guard Ops.cpuHasAVX512 else {
            #expect(!Ops.attentionUsesAVX512, "no AVX-512F here: the AVX2 tiles must run")
            return
        }
        for (b, nq, nk, heads) in [(2, 4096, 4096, 8), (1, 77, 272, 2)] {
            let c = heads * 40
            let q = Tensor(shape: [b, nq, c], data: WinogradTests.normals(b * nq * c, seed: 31, sigma: 1))
            let k = Tensor(shape: [b, nk, c], data: WinogradTests.normals(b * nk * c, seed: 32, sigma: 1))
            let v = Tensor(shape: [b, nk, c], data: WinogradTests.normals(b * nk * c, seed: 33, sigma: 1))
            Ops.attentionUsesAVX512 = true
            let wide = Ops.attention(q: q, k: k, v: v, heads: heads).scalars
            Ops.attentionUsesAVX512 = false
            let narrow = Ops.attention(q: q, k: k, v: v, heads: heads).scalars
            #expect(wide.count == narrow.count)
            let differing = zip(wide, narrow).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            #expect(differing == 0, "\(nq)×\(nk): \(differing) elements differ")
        }
    }

    @Test func blasAttentionServesOtherHeadWidthsAndTheTextEncodersKeys() {
        #expect(Self.check(b: 2, nq: 1024, nk: 1024, heads: 8, d: 80, fused: false) <= 1e-5)
        #expect(Self.check(b: 2, nq: 4096, nk: 77, heads: 8, d: 40, fused: false) <= 1e-5)  // cross-attention
    }
}
