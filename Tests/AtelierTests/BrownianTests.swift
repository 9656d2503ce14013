import AtelierDiffusion
import AtelierTensor
import Foundation
import Testing

/// The SDE samplers' Brownian-tree noise against torchsde 0.2.6 itself
/// (Tests/Fixtures/noise/brownian, made by tools/make_brownian_fixtures.py).
struct BrownianTests {
    static let dir = Fixtures.root.appendingPathComponent("noise/brownian")

    struct SeedCase: Decodable { let entropy: UInt64; let spawn_key: [UInt64]; let pool_size: Int; let state: [UInt32] }
    struct TreeCase: Decodable {
        let seeds: [UInt64]; let shape: [Int]; let randn_source: String; let sigma_min: Float; let sigma_max: Float; let pairs: [[Float]]; let file: String
    }
    struct TreeCases: Decodable { let cases: [String: TreeCase] }

    @Test func seedSequenceStatesEqualNumpys() throws {
        let cases = try JSONDecoder().decode([SeedCase].self, from: Data(contentsOf: Self.dir.appendingPathComponent("seedsequence.json")))
        #expect(cases.count == 9)
        for c in cases {
            let mine = NumpySeedSequence(entropy: c.entropy, spawnKey: c.spawn_key, poolSize: c.pool_size).generateState(c.state.count)
            #expect(mine == c.state, "entropy \(c.entropy) spawn key \(c.spawn_key) pool \(c.pool_size)")
        }
    }

    /// Every call of the noise sampler, as the samplers make them: the trees' increments bit for
    /// bit with torchsde (float32 throughout; the tree's times are the float32 sigmas as doubles);
    /// the scaled noise within 2 ulp (1.2e-7 relative × 2), because PyTorch's CPU `sqrt` of the
    /// step length is MKL's (HA mode: within 1 ulp, not always correctly rounded — e.g.
    /// √3.0805168 gives 1.7551402 where the correctly rounded value is 1.7551401).
    /// (nv-*: A1111 patches torchsde's `_randn` with its `randn_local`, so with randn_source NV the
    /// tree's draws are A1111's Philox.)
    @Test(arguments: ["dpmpp_sde-karras-10", "dpmpp_2m_sde-exp-12", "batch2-exp-6", "small-3x3", "nv-dpmpp_sde-karras-8"])
    func noiseSamplerCallsMatchTorchsde(_ name: String) throws {
        let all = try JSONDecoder().decode(TreeCases.self, from: Data(contentsOf: Self.dir.appendingPathComponent("cases.json")))
        let c = try #require(all.cases[name])
        let ref = try NPY.read(Self.dir.appendingPathComponent(c.file)).floats
        let refIncrements = try NPY.read(Self.dir.appendingPathComponent(c.file.replacingOccurrences(of: ".npy", with: "-increments.npy"))).floats
        let per = c.shape.reduce(1, *)
        let source = try #require(NoiseSource(label: c.randn_source))
        let sampler = BrownianNoiseSampler(seeds: c.seeds, perImage: per, sigmaMin: c.sigma_min, sigmaMax: c.sigma_max, source: source)
        var increments: [Float] = [], noise: [Float] = []
        for p in c.pairs {
            increments += sampler.increments(p[0], p[1])
            noise += sampler(p[0], p[1])
        }
        #expect(increments.count == refIncrements.count && noise.count == ref.count)
        let differing = zip(increments, refIncrements).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(refIncrements.count) increments differ")
        let worst = zip(noise, ref).map { abs($0 - $1) / max(abs($1), 1e-30) }.max() ?? 1
        #expect(worst <= 2.5e-7, "noise off by \(worst) relative")
    }

    @Test func treeIncrementsAddUpOverAdjacentIntervals() {
        // W(c) − W(a) is built from the nodes of [a, b] and [b, c]: the pieces sum to the whole
        let tree = BrownianTree(t0: 0.03, t1: 14.6, count: 64, entropy: 9)
        let whole = tree.increment(0.5, 7.25)
        let a = tree.increment(0.5, 3.125), b = tree.increment(3.125, 7.25)
        let sum = zip(a, b).map { $0 + $1 }
        #expect(zip(whole, sum).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($0)) })
        #expect(tree.increment(2, 2).allSatisfy { $0 == 0 })
    }
}
