import AtelierTensor
import Foundation

/// A ControlNet (lllyasviel's `cldm.ControlNet`, single-file layout `control_model.*`): a copy
/// of the UNet's encoder that also sees a control image (the "hint") and returns one residual
/// per UNet skip connection plus one for the middle block, through zero-initialised 1×1 convs.
public final class ControlNetModel: @unchecked Sendable {
    public let path: String
    /// file name without extension (how the API names it)
    public let name: String
    public let sha256: String
    /// A1111 / the extension's short hash: the first 8 hex digits of the file's sha256
    public var shortHash: String { String(sha256.prefix(8)) }
    let encoder: UNetEncoder
    /// `input_hint_block`: 8 convs (SiLU between), three of them stride 2: pixels → latent size
    let hintBlock: [Conv2d]
    let zeroConvs: [Conv2d]
    let middleOut: Conv2d

    public static let prefix = "control_model."

    /// Loads a ControlNet for a base model with `config`'s layout (SD 1.x ControlNets for SD 1.x
    /// checkpoints); a file of another layout fails naming the first tensor that does not fit.
    public init(path: String, config: UNetConfig) throws {
        self.path = path
        let fileName = (path as NSString).lastPathComponent
        name = (fileName as NSString).deletingPathExtension
        guard let source = try openTensorFile(path, pickled: ["pth", "pt", "ckpt", "bin"]) else {
            throw ModelFileError(file: fileName, "not a ControlNet file (.safetensors, .pth, .pt or .ckpt)")
        }
        let store = WeightStore(file: source)
        let p = Self.prefix
        guard store.has(p + "input_hint_block.0.weight") else {
            throw ModelFileError(file: fileName, "not a ControlNet: no tensor \(p)input_hint_block.0.weight (T2I adapters and diffusers-layout files are not supported)")
        }
        encoder = try UNetEncoder(store, prefix: p, config: config)
        var hint: [Conv2d] = []
        var index = 0
        var channels = 3
        while let shape = store.shape(p + "input_hint_block.\(index).weight") {
            guard shape.count == 4, shape[1] == channels else {
                throw ModelFileError(file: fileName, "tensor \(p)input_hint_block.\(index).weight has shape \(shape), expected [_, \(channels), k, k]")
            }
            // strides as cldm: the 3rd, 5th and 7th conv (indices 4, 8, 12) halve the size
            hint.append(try Conv2d(store, p + "input_hint_block.\(index)", in: channels, out: shape[0], kernel: shape[2],
                                   stride: [4, 8, 12].contains(index) ? 2 : 1))
            channels = shape[0]
            index += 2
        }
        guard hint.count == 8, channels == config.modelChannels else {
            throw ModelFileError(file: fileName, "input_hint_block has \(hint.count) convs ending in \(channels) channels; expected 8 ending in \(config.modelChannels)")
        }
        hintBlock = hint
        zeroConvs = try encoder.skipChannels.enumerated().map { i, c in
            try Conv2d(store, p + "zero_convs.\(i).0", in: c, out: c, kernel: 1)
        }
        let mid = encoder.skipChannels.last!
        middleOut = try Conv2d(store, p + "middle_block_out.0", in: mid, out: mid, kernel: 1)
        try store.checkAllUsed(prefixes: [p])
        sha256 = try StableDiffusionModel.fileSHA256(path)
    }

    /// The hint block's output for a control image `[1, 3, H, W]` in 0…1 (H, W multiples of 8):
    /// `[1, model_channels, H/8, W/8]`. It depends on nothing else, so a job computes it once.
    /// A ControlNet is not part of A1111's hijacked model, so its convs pad with zeros under Tiling.
    public func encodeHint(_ hint: Tensor) -> Tensor {
        ConvPadding.$circular.withValue(false) { encodeHintZeroPadded(hint) }
    }

    private func encodeHintZeroPadded(_ hint: Tensor) -> Tensor {
        var g = hint
        for (i, conv) in hintBlock.enumerated() {
            g = conv(g)
            if i < hintBlock.count - 1 { g = Ops.silu(g) }
        }
        return g
    }

    /// The 13 unweighted residuals (zero-conv outputs of the 12 input blocks, then the middle
    /// block's) for latents `x` `[N, 4, h, w]`, the encoded hint (batch 1, broadcast over N),
    /// the UNet's continuous timesteps and the rows' own context.
    public func residuals(_ x: Tensor, encodedHint: Tensor, timesteps: [Float], context: Tensor) -> [Tensor] {
        var outs: [Tensor] = []
        residuals(x, encodedHint: encodedHint, timesteps: timesteps, context: context, into: &outs)
        return outs
    }

    /// The same written into `outs` (emptied first, its capacity kept): a sampler's steps make no
    /// new array. An encoded hint of N rows is used as it is, one of 1 row is stacked N times.
    public func residuals(_ x: Tensor, encodedHint: Tensor, timesteps: [Float], context: Tensor, into outs: inout [Tensor]) {
        // only under A1111's Tiling is there a padding to switch off (a task-local binding costs an allocation)
        if ConvPadding.circular {
            ConvPadding.$circular.withValue(false) {
                zeroPaddedResiduals(x, encodedHint: encodedHint, timesteps: timesteps, context: context, into: &outs)
            }
        } else {
            zeroPaddedResiduals(x, encodedHint: encodedHint, timesteps: timesteps, context: context, into: &outs)
        }
    }

    private func zeroPaddedResiduals(_ x: Tensor, encodedHint: Tensor, timesteps: [Float], context: Tensor, into outs: inout [Tensor]) {
        outs.removeAll(keepingCapacity: true)  // the previous residuals go back to the buffer pool first
        let siluEmb = encoder.siluEmbedding(timesteps)
        let n = x.shape[0]
        var h = encoder.convIn(x)
        h = Ops.add(h, encodedHint.shape[0] == n ? encodedHint : Tensor.stack(Array(repeating: encodedHint, count: n)))
        outs.append(zeroConvs[0](h))
        for (i, block) in encoder.inputBlocks.enumerated() {
            h = UNetLayer.run(block, h, siluEmb: siluEmb, context: context)
            outs.append(zeroConvs[i + 1](h))
        }
        h = UNetLayer.run(encoder.middle, h, siluEmb: siluEmb, context: context)
        outs.append(middleOut(h))
    }
}
