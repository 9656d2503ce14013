import AtelierModels
import AtelierTensor
import Foundation
import Testing

/// A1111's Tiling: convolutions pad circularly, so a picture's right edge continues its left one.
struct TilingTests {
    static func pattern(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { Float(sin(Double($0) * 0.731) + 0.1 * Double($0 % 7)) })
    }

    @Test func circularPaddingWrapsRowsAndColumnsAsPyTorch() {
        let x = Self.pattern([2, 3, 5, 4])
        let y = Ops.padCircular(x, (top: 2, left: 1, bottom: 1, right: 3))
        #expect(y.shape == [2, 3, 8, 8])
        let xs = x.scalars, ys = y.scalars
        var wrong = 0
        for plane in 0..<6 {
            for i in 0..<8 {
                for j in 0..<8 {
                    let si = ((i - 2) % 5 + 5) % 5, sj = ((j - 1) % 4 + 4) % 4
                    if ys[plane * 64 + i * 8 + j] != xs[plane * 20 + si * 4 + sj] { wrong += 1 }
                }
            }
        }
        #expect(wrong == 0, "out(i, j) = in((i − top) mod H, (j − left) mod W)")
    }

    /// A circular 3×3 conv equals the middle of a zero-padded conv over the input tiled 3 × 3:
    /// what a seamless texture means, checked without the padding code under test.
    @Test func circularConvEqualsTheCentreOfAConvOverTheTiledPicture() throws {
        let (c, o, h, w) = (8, 6, 12, 10)
        let x = Self.pattern([1, c, h, w])
        let weight = Tensor(shape: [o, c, 3, 3], data: (0..<(o * c * 9)).map { Float(cos(Double($0) * 0.37)) * 0.2 })
        let bias = Tensor(shape: [o], data: (0..<o).map { Float($0) * 0.1 })
        let wrapped = Ops.conv2d(Ops.padCircular(x, (1, 1, 1, 1)), weight: weight, bias: bias, padding: (0, 0, 0, 0))
        // the input repeated 3 × 3
        let big = Tensor(uninitialized: [1, c, 3 * h, 3 * w])
        for ch in 0..<c { for i in 0..<(3 * h) { for j in 0..<(3 * w) {
            big.unsafePointer[(ch * 3 * h + i) * 3 * w + j] = x.unsafePointer[(ch * h + i % h) * w + j % w]
        } } }
        let full = Ops.conv2d(big, weight: weight, bias: bias, padding: (1, 1, 1, 1))
        var worst: Float = 0
        for oc in 0..<o { for i in 0..<h { for j in 0..<w {
            let a = wrapped.unsafePointer[(oc * h + i) * w + j]
            let b = full.unsafePointer[(oc * 3 * h + h + i) * 3 * w + w + j]
            worst = max(worst, abs(a - b))
        } } }
        #expect(worst <= 1e-5, "largest difference \(worst)")
    }

    @Test func tilingIsBoundPerGenerationAndControlNetsStayZeroPadded() throws {
        #expect(ConvPadding.circular == false)
        // a constant hint: circular padding would give a constant map; zero padding makes its corner differ
        let hint = Tensor(filling: [1, 3, 64, 64], with: 0.5)
        let (corner, centre) = ConvPadding.$circular.withValue(true) { () -> (Float, Float) in
            #expect(ConvPadding.circular)
            let g = Fixtures.controlNet.encodeHint(hint)
            return (g.scalars[0], g.scalars[(g.shape[2] / 2) * g.shape[3] + g.shape[3] / 2])
        }
        #expect(corner != centre, "the ControlNet's hint block pads with zeros under Tiling (it is not part of A1111's hijacked model)")
        #expect(ConvPadding.circular == false, "the binding ends with the generation")
    }
}
