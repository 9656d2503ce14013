import AtelierModels
import AtelierTensor
import Foundation
import Testing

/// Float16 checkpoints may keep their linear and conv weights as float16 in memory, widened per
/// layer call: half the memory, the same numbers.
@Suite(.serialized) struct ResidentWeightsTests {
    static let lora = Fixtures.root.appendingPathComponent("networks/Lora")

    @Test func wideningEveryFloat16BitPatternEqualsSwiftsConversion() {
        let bits = (0...UInt16.max).map { $0 }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: bits.count)
        defer { out.deallocate() }
        bits.withUnsafeBufferPointer { Parameter.widen($0.baseAddress!, into: out, count: bits.count) }
        var mismatches = 0
        for (i, b) in bits.enumerated() {
            let want = Float(Float16(bitPattern: b))
            if want.bitPattern != out[i].bitPattern && !(want.isNaN && out[i].isNaN) { mismatches += 1 }
        }
        #expect(mismatches == 0, "all 65 536 float16 values (subnormals, infinities, NaNs) widen exactly")
    }

    @Test func aHalfParameterPromotedAndDemotedHasItsStoredValuesAgain() {
        let values: [Float16] = [0, -0, 1, -2.5, 65504, 6.1e-5, 3e-7, .infinity]
        let p = values.withUnsafeBytes { Parameter(halfBits: $0.baseAddress!, shape: [2, 4]) }
        #expect(p.isHalfResident)
        #expect(p.residentBytes == 16)
        let t = p.promote()
        #expect(!p.isHalfResident && p.residentBytes == 16 + 32)
        t.unsafePointer[2] += 0.125
        #expect(p.withFloat32 { $0.scalars[2] } == 1.125, "a promoted weight is changed in place")
        #expect(p.demote())
        #expect(p.isHalfResident && p.residentBytes == 16)
        #expect(p.withFloat32 { $0.scalars } == values.map(Float.init), "demote restores the checkpoint's values exactly")
        #expect(!Parameter(Tensor(shape: [1], data: [1])).demote(), "a float32 weight has nothing to go back to")
    }

    @Test func aFloat16CheckpointKeptHalfComputesTheSameUNetOutputInHalfTheMemory() throws {
        let half = try StableDiffusionModel(path: Fixtures.checkpoint, resident: .auto)
        let full = try StableDiffusionModel(path: Fixtures.checkpoint, resident: .fp32)
        let kernels = half.parameters.filter { $0.value.isHalfResident }
        #expect(kernels.count > 100, "the UNet's and text encoder's linear and conv kernels stay float16")
        #expect(half.parameters.keys.filter { $0.hasSuffix(".bias") }.allSatisfy { !half.parameters[$0]!.isHalfResident },
                "biases are float32 (read per element, tiny)")
        #expect(full.parameters.values.allSatisfy { !$0.isHalfResident })
        let halfBytes = kernels.values.reduce(0) { $0 + $1.residentBytes }
        let fullBytes = kernels.keys.reduce(0) { $0 + full.parameters[$1]!.residentBytes }
        #expect(2 * halfBytes == fullBytes, "kernels: \(halfBytes) vs \(fullBytes) bytes")
        #expect(full.residentBytes - half.residentBytes > halfBytes, "the VAE's kernels are kept float16 too")

        let x = Tensor(shape: [2, 4, 8, 8], data: (0..<512).map { Float(sin(Double($0) * 0.37)) })
        let ctx = Tensor(shape: [2, 77, half.unet.config.contextDim],
                         data: (0..<(2 * 77 * half.unet.config.contextDim)).map { Float(cos(Double($0) * 0.011)) })
        let a = half.unet(x, timesteps: [500, 500], context: ctx).scalars
        let b = full.unet(x, timesteps: [500, 500], context: ctx).scalars
        // Widening is exact, and the GEMM's sums do not depend on the thread split (suites running
        // beside this one change nothing), so the outputs are the same bits.
        let differing = zip(a, b).filter { $0.0.bitPattern != $0.1.bitPattern }.count
        #expect(a.count == b.count && differing == 0, "\(differing) outputs differ")
        let ids = [49406, 320, 1125, 49407] + Array(repeating: 49407, count: 73)
        let te = half.textEncoder.encode(ids)
        let tf = full.textEncoder.encode(ids)
        #expect(zip(te.scalars, tf.scalars).map { abs($0 - $1) }.max()! <= 1e-5)
    }

    @Test func aLoRAOnHalfWeightsPatchesFloat32CopiesAndRestoringFreesThem() throws {
        let half = try StableDiffusionModel(path: Fixtures.checkpoint, resident: .auto)
        let full = try StableDiffusionModel(path: Fixtures.checkpoint, resident: .fp32)
        let bytes = half.residentBytes
        let file = try NetworkFile(path: Self.lora.appendingPathComponent("tiny_lora.safetensors").path)
        let use = [NetworkUse(file: file, te: 0.8, unet: 0.6)]
        #expect(try half.applyNetworks(use) == 289)
        try full.applyNetworks(use)
        #expect(half.residentBytes > bytes, "patched weights are float32 copies")
        var differing = 0
        for (key, p) in half.parameters where p.scalars != full.parameters[key]!.scalars { differing += 1 }
        #expect(differing == 0, "the patched weights equal those patched in a float32-resident model")
        try half.applyNetworks([])
        #expect(half.residentBytes == bytes, "restoring drops the float32 copies")
        #expect(half.parameters.values.filter(\.isHalfResident).count > 100)
        try full.applyNetworks([])
    }
}
