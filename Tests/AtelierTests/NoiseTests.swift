import AtelierDiffusion
import AtelierTensor
import Foundation
import Testing

/// Noise sources against PyTorch's CPU `randn` and A1111's Philox (specs: noise.md §5).
struct NoiseTests {
    func hex(_ v: [Float]) -> [String] { v.map { String(format: "%08x", $0.bitPattern) } }

    @Test func cpuSourceMatchesTorchRandnVectors() {
        var g = TorchCPUGenerator(seed: 0)
        #expect(hex(Array(g.randn(4 * 64 * 64).prefix(8))) == ["bf901b85", "bf93808a", "be804bd6", "bede255d", "3f594515", "3f312783", "bea1cc6d", "c0075fc1"])
        var g42 = TorchCPUGenerator(seed: 42)
        _ = g42.randn(4 * 64 * 64)
        #expect(hex(Array(g42.randn(4 * 64 * 64).prefix(8))) == ["bfa6ff0e", "3fb9b0a6", "3e7a2487", "be8f4db2", "3e05f0b6", "3f7d5e5f", "3e853fe3", "40332ef9"])
        var big = TorchCPUGenerator(seed: UInt64(Int64.max))
        #expect(hex(Array(big.randn(4 * 8 * 8).prefix(8))) == ["c02a83da", "bf8ba77b", "3ee7241e", "3e69d763", "3ff305e9", "3fc837ff", "bfa0b0f0", "3f4b2c45"])
    }

    @Test func cpuSourceSmallDrawsUseTheCachedDoublePath() {
        var g = TorchCPUGenerator(seed: 0)
        #expect(hex(g.randn(7)) == ["3fc53f5c", "be963c50", "c00b7149", "3f1184b6", "bf8ad1a1", "bfb3052d", "3ece837a"])
        #expect(hex(g.randn(7)) == ["3f5688e5", "bf382144", "bece830b", "bf18bd18", "3e3a67c6", "bf5b4f07", "3f8ce099"])
    }

    @Test func nvSourceMatchesPhiloxVectors() {
        var g = PhiloxGenerator(seed: 0)
        #expect(hex(Array(g.randn(12).prefix(8))) == ["bf6cb6ad", "bed9c6af", "c02934c5", "3e14ab15", "bdf788dc", "bf1468e7", "bf1f732f", "bea8225c"])
        var g2 = PhiloxGenerator(seed: 9_223_372_036_854_775_807)
        #expect(hex(Array(g2.randn(4 * 8 * 8).prefix(8))) == ["bf581e85", "3fdf124c", "3f95bb69", "bf648832", "3f76705c", "3f2ed99e", "bdc7f405", "bfae6813"])
    }

    /// Whole arrays dumped from torch / the oracle's numpy twin, draw after draw.
    @Test(arguments: [
        ("cpu_42_4x64x64_3draws", "CPU", UInt64(42), 4 * 64 * 64, 3),
        ("cpu_1_4x65x65_1draw", "CPU", UInt64(1), 4 * 65 * 65, 1),
        ("cpu_0_17_2draws", "CPU", UInt64(0), 17, 2),
        ("cpu_0_7_2draws", "CPU", UInt64(0), 7, 2),
        ("nv_42_4x64x64_2draws", "NV", UInt64(42), 4 * 64 * 64, 2),
        ("nv_9223372036854775807_4x8x8", "NV", UInt64(9_223_372_036_854_775_807), 4 * 8 * 8, 1),
    ])
    func successiveDrawsAreBitIdenticalToTheReference(_ file: String, _ source: String, _ seed: UInt64, _ n: Int, _ draws: Int) throws {
        let ref = try NPY.read(Fixtures.root.appendingPathComponent("noise/\(file).npy")).floats
        var g: any NormalGenerator = source == "CPU" ? TorchCPUGenerator(seed: seed) : PhiloxGenerator(seed: seed)
        var mine: [Float] = []
        for _ in 0..<draws { mine += g.randn(n) }
        #expect(mine.count == ref.count)
        #expect(mine == ref)
    }

    @Test func ensdReseedsTheSamplerStreamWithSeedPlusDelta() {
        var a = ImageNoise(source: .cpu, shape: [4, 8, 8], seeds: [42], etaNoiseSeedDelta: 31337)
        _ = a.next()
        var fresh = TorchCPUGenerator(seed: 42 + 31337)
        #expect(a.next() == fresh.randn(256))
    }
}
