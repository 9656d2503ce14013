import AtelierTensor
import Foundation
import Testing

/// The engine's GEMM (`sgemm`, Atelier's own kernels) at SD 1.5's GEMM shapes against a float64
/// product, and its promise that the bits do not depend on the tile width (AVX2 / AVX-512) or on
/// how the output is split between threads.
///
/// Tolerance: relative L2 ≤ 1e-5, the issue's bound for fast kernels. Each element is one float32
/// fused multiply-add chain over k, whose rounding grows with K (measured 1.8e-7 … 9.7e-7 here).
@Suite struct GEMMTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let m, n, k: Int
        let transA, transB: Bool
        var alpha: Float = 1, beta: Float = 0
        var testDescription: String { "\(m)×\(n)×\(k)\(transA ? " Aᵀ" : "")\(transB ? " Bᵀ" : "") α\(alpha) β\(beta)" }
    }

    /// Row-major operands for a case: op(A) is m×k, op(B) is k×n; C starts non-zero (β reads it).
    static func operands(_ c: Case) -> (a: [Float], b: [Float], c: [Float]) {
        (WinogradTests.normals(c.m * c.k, seed: 41, sigma: 1), WinogradTests.normals(c.k * c.n, seed: 42, sigma: 0.1),
         WinogradTests.normals(c.m * c.n, seed: 43, sigma: 1))
    }

    static func run(_ t: Case, parts: Int? = nil) -> [Float] {
        var (a, b, c) = operands(t)
        let lda = t.transA ? t.m : t.k, ldb = t.transB ? t.k : t.n
        sgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: &a, lda: lda, b: &b,
              ldb: ldb, beta: t.beta, c: &c, ldc: t.n, parts: parts)
        return c
    }

    static func reference(_ t: Case) -> [Double] {
        let (a, b, c) = operands(t)
        let lda = t.transA ? t.m : t.k, ldb = t.transB ? t.k : t.n
        var out = [Double](repeating: 0, count: t.m * t.n)
        for i in 0..<t.m {
            for j in 0..<t.n {
                var s = 0.0
                for p in 0..<t.k {
                    let x = t.transA ? a[p * lda + i] : a[i * lda + p]
                    let y = t.transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(x) * Double(y)
                }
                out[i * t.n + j] = Double(t.alpha) * s + Double(t.beta) * Double(c[i * t.n + j])
            }
        }
        return out
    }

    static let shapes: [Case] = [
        // a 64² transformer's projections (K = 320, the weight transposed), the 16² level's (K = 1280)
        Case(m: 4096, n: 320, k: 320, transA: false, transB: true),
        Case(m: 256, n: 1280, k: 1280, transA: false, transB: true),
        // im2col of a 320-channel 3×3 conv (K = 2880), and the projection that reads NCHW (Aᵀ) with its residual (β 1)
        Case(m: 320, n: 256, k: 2880, transA: false, transB: false),
        Case(m: 1024, n: 320, k: 320, transA: true, transB: true, beta: 1),
        // edges everywhere (77 rows, 100 columns), attention's scale (α), β neither 0 nor 1
        Case(m: 77, n: 100, k: 50, transA: true, transB: false, alpha: 0.125, beta: 0.5),
        Case(m: 5, n: 3, k: 700, transA: false, transB: true),
    ]

    @Test(arguments: shapes)
    func gemmMatchesFloat64WithinOneInHundredThousand(_ t: Case) {
        let got = Self.run(t)
        let err = relativeL2(got, Self.reference(t))
        #expect(err <= 1e-5, "relative L2 \(err)")
    }

    /// Rows or columns split between 1…3 parts (what `Compute.threads` threads do) give the bits of
    /// one call.
    @Test(arguments: [shapes[0], shapes[3], shapes[4], Case(m: 40, n: 700, k: 64, transA: false, transB: false)])
    func gemmGivesTheSameBitsHoweverTheOutputIsSplitBetweenThreads(_ t: Case) {
        let one = Self.run(t, parts: 1)
        for parts in [2, 3] {
            let split = Self.run(t, parts: parts)
            let differing = zip(one, split).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            #expect(differing == 0, "\(parts) parts: \(differing) elements differ")
        }
    }

    /// The 512-bit tiles (12 × 32) and the 256-bit tiles (6 × 16) give the same bits. On a CPU
    /// without AVX-512F the GEMM must keep the 256-bit tiles.
    @Test func avx512GEMMTilesGiveTheAVX2TilesBits() {
        let saved = GEMM.wide
        defer { GEMM.wide = saved }
        GEMM.wide = true
        guard Ops.cpuHasAVX512 else {
            #expect(!GEMM.wide, "no AVX-512F here: the 256-bit tiles must run")
            return
        }
        for t in Self.shapes {
            GEMM.wide = true
            let wide = Self.run(t)
            GEMM.wide = false
            let narrow = Self.run(t)
            let differing = zip(wide, narrow).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            #expect(differing == 0, "\(t.testDescription): \(differing) elements differ")
        }
    }
}
