import AtelierTensor
import Foundation

/// Sizes of an LDM `openaimodel.UNetModel` (what `unet_config.params` in the model's yaml says).
public struct UNetConfig: Sendable, Equatable {
    public var inChannels = 4
    public var outChannels = 4
    public var modelChannels = 320
    public var channelMult = [1, 2, 4, 4]
    public var numResBlocks = 2
    /// downsampling factors (1, 2, 4, …) whose level carries cross-attention
    public var attentionResolutions = [4, 2, 1]
    /// SD 1.x fixes the head count (8); SD 2.x fixes the head width (64) instead.
    public var numHeads: Int? = 8
    public var headChannels: Int?
    public var contextDim = 768
    public var linearProjection = false
    public var transformerDepth = 1

    public init() {}

    func heads(for channels: Int) -> Int {
        if let headChannels { return channels / headChannels }
        return numHeads ?? 8
    }
}

/// `ResBlock`: GroupNorm–SiLU–conv, plus the projected time embedding, twice, with a skip.
struct ResBlock {
    let inNorm: GroupNorm, inConv: Conv2d, emb: Linear, outNorm: GroupNorm, outConv: Conv2d
    let skip: Conv2d?

    init(_ s: WeightStore, _ p: String, in i: Int, out o: Int, embDim: Int) throws {
        inNorm = try GroupNorm(s, p + ".in_layers.0", channels: i, eps: 1e-5)
        inConv = try Conv2d(s, p + ".in_layers.2", in: i, out: o, kernel: 3)
        emb = try Linear(s, p + ".emb_layers.1", in: embDim, out: o)
        outNorm = try GroupNorm(s, p + ".out_layers.0", channels: o, eps: 1e-5)
        outConv = try Conv2d(s, p + ".out_layers.3", in: o, out: o, kernel: 3)
        skip = i == o ? nil : try Conv2d(s, p + ".skip_connection", in: i, out: o, kernel: 1)
    }

    /// x: [N, in, h, w]; siluEmb: SiLU(time embedding) [N, embDim]
    func callAsFunction(_ x: Tensor, siluEmb: Tensor) -> Tensor {
        var h = inConv(inNorm(x, silu: true))
        h = Ops.addPerChannel(h, emb(siluEmb))
        h = outConv(outNorm(h, silu: true))
        return Ops.add(skip.map { $0(x) } ?? x, h)
    }
}

/// Multi-head attention with separate q/k/v projections (no bias) and a biased output.
struct CrossAttention {
    let q: Linear, k: Linear, v: Linear, out: Linear
    let heads: Int

    init(_ s: WeightStore, _ p: String, dim: Int, contextDim: Int, heads: Int) throws {
        q = try Linear(s, p + ".to_q", in: dim, out: dim, bias: false)
        k = try Linear(s, p + ".to_k", in: contextDim, out: dim, bias: false)
        v = try Linear(s, p + ".to_v", in: contextDim, out: dim, bias: false)
        out = try Linear(s, p + ".to_out.0", in: dim, out: dim)
        self.heads = heads
    }

    /// `residual + attention(x, context)`: the block's residual add is folded into `to_out`.
    func callAsFunction(_ x: Tensor, context: Tensor? = nil, residual: Tensor) -> Tensor {
        let ctx = context ?? x
        return out(Ops.attention(q: q(x), k: k(ctx), v: v(ctx), heads: heads), residual: residual)
    }
}

/// `BasicTransformerBlock`: self-attention, cross-attention, GEGLU feed-forward.
struct TransformerBlock {
    let norm1: LayerNorm, attn1: CrossAttention, norm2: LayerNorm, attn2: CrossAttention
    let norm3: LayerNorm, ffIn: Linear, ffOut: Linear

    init(_ s: WeightStore, _ p: String, dim: Int, contextDim: Int, heads: Int) throws {
        norm1 = try LayerNorm(s, p + ".norm1", channels: dim)
        attn1 = try CrossAttention(s, p + ".attn1", dim: dim, contextDim: dim, heads: heads)
        norm2 = try LayerNorm(s, p + ".norm2", channels: dim)
        attn2 = try CrossAttention(s, p + ".attn2", dim: dim, contextDim: contextDim, heads: heads)
        norm3 = try LayerNorm(s, p + ".norm3", channels: dim)
        ffIn = try Linear(s, p + ".ff.net.0.proj", in: dim, out: dim * 8)
        ffOut = try Linear(s, p + ".ff.net.2", in: dim * 4, out: dim)
    }

    /// x: [N, tokens, dim]; context: [N, 77·k, contextDim]
    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var x = attn1(norm1(x), residual: x)
        x = attn2(norm2(x), context: context, residual: x)
        return ffOut(Ops.geglu(ffIn(norm3(x))), residual: x)
    }
}

/// `SpatialTransformer`: GroupNorm, projection in, transformer blocks over the h·w tokens,
/// projection out, residual. Projections are 1×1 convs (SD 1.x) or linear (SD 2.x): the
/// same matrix either way, applied to the token-major tensor.
struct SpatialTransformer {
    let norm: GroupNorm, projIn: Linear, projOut: Linear
    let blocks: [TransformerBlock]

    init(_ s: WeightStore, _ p: String, channels c: Int, config: UNetConfig) throws {
        norm = try GroupNorm(s, p + ".norm", channels: c, eps: 1e-6)
        if config.linearProjection {
            projIn = try Linear(s, p + ".proj_in", in: c, out: c)
            projOut = try Linear(s, p + ".proj_out", in: c, out: c)
        } else {
            projIn = try Linear(conv1x1: s, p + ".proj_in", channels: c)
            projOut = try Linear(conv1x1: s, p + ".proj_out", channels: c)
        }
        blocks = try (0..<config.transformerDepth).map {
            try TransformerBlock(s, p + ".transformer_blocks.\($0)", dim: c, contextDim: config.contextDim,
                                 heads: config.heads(for: c))
        }
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        // projections straight between the channels-first and token-major layouts
        let normed = norm(x).reshaped(Dims(n, c, h * w))
        var t = projIn.withMatrix { Ops.linear(channelsFirst: normed, weight: $0, bias: projIn.bias) }
        for b in blocks { t = b(t, context: context) }
        return projOut.withMatrix { Ops.linear(toChannelsFirst: t, weight: $0, bias: projOut.bias, residual: x) }
            .reshaped(Dims(n, c, h, w))
    }
}

/// One layer of a UNet block (LDM `TimestepEmbedSequential` members).
enum UNetLayer {
    case res(ResBlock)
    case attn(SpatialTransformer)
    case down(Conv2d)
    case up(Conv2d)

    /// Runs `layers` in order; `.up` doubles the size (nearest) before its conv.
    static func run(_ layers: [UNetLayer], _ x: Tensor, siluEmb: Tensor, context: Tensor) -> Tensor {
        var h = x
        for layer in layers {
            switch layer {
            case .res(let r): h = r(h, siluEmb: siluEmb)
            case .attn(let a): h = a(h, context: context)
            case .down(let c): h = c(h)
            case .up(let c):
                h = c(Ops.upsampleNearest(h, height: h.shape[2] * 2, width: h.shape[3] * 2))
            }
        }
        return h
    }
}

/// The encoder half shared by the UNet and ControlNet (same layout under another prefix):
/// time embedding, `input_blocks.*` and `middle_block.*`.
struct UNetEncoder {
    let config: UNetConfig
    let timeIn: Linear, timeOut: Linear
    let convIn: Conv2d
    let inputBlocks: [[UNetLayer]]
    let middle: [UNetLayer]
    /// channels of each skip connection (convIn's output first), for the decoder
    let skipChannels: [Int]

    init(_ s: WeightStore, prefix p: String, config: UNetConfig) throws {
        self.config = config
        let mc = config.modelChannels, embDim = mc * 4
        timeIn = try Linear(s, p + "time_embed.0", in: mc, out: embDim)
        timeOut = try Linear(s, p + "time_embed.2", in: embDim, out: embDim)
        convIn = try Conv2d(s, p + "input_blocks.0.0", in: config.inChannels, out: mc, kernel: 3)
        var blocks: [[UNetLayer]] = []
        var chans = [mc]
        var ch = mc, ds = 1, index = 1
        for (level, mult) in config.channelMult.enumerated() {
            for _ in 0..<config.numResBlocks {
                let bp = p + "input_blocks.\(index)"
                var layers: [UNetLayer] = [.res(try ResBlock(s, bp + ".0", in: ch, out: mult * mc, embDim: embDim))]
                ch = mult * mc
                if config.attentionResolutions.contains(ds) {
                    layers.append(.attn(try SpatialTransformer(s, bp + ".1", channels: ch, config: config)))
                }
                blocks.append(layers)
                chans.append(ch)
                index += 1
            }
            if level != config.channelMult.count - 1 {
                blocks.append([.down(try Conv2d(s, p + "input_blocks.\(index).0.op", in: ch, out: ch, kernel: 3, stride: 2))])
                chans.append(ch)
                index += 1
                ds *= 2
            }
        }
        inputBlocks = blocks
        skipChannels = chans
        middle = [
            .res(try ResBlock(s, p + "middle_block.0", in: ch, out: ch, embDim: embDim)),
            .attn(try SpatialTransformer(s, p + "middle_block.1", channels: ch, config: config)),
            .res(try ResBlock(s, p + "middle_block.2", in: ch, out: ch, embDim: embDim)),
        ]
    }

    /// SiLU(time embedding) of continuous timesteps, `[N, 4·model_channels]`.
    func siluEmbedding(_ timesteps: [Float]) -> Tensor {
        Ops.silu(timeOut(Ops.silu(timeIn(Ops.timestepEmbedding(timesteps, dim: config.modelChannels)))))
    }
}

/// What a ControlNet adds to one UNet call: one residual per skip connection (12 for SD 1.x)
/// and one for the middle block's output, already weighted.
public struct ControlResiduals {
    public var skips: [Tensor]
    public var middle: Tensor
    public init(skips: [Tensor], middle: Tensor) {
        self.skips = skips
        self.middle = middle
    }
}

/// The denoising UNet of LDM (`model.diffusion_model.*`), predicting ε.
public struct UNet {
    public let config: UNetConfig
    let encoder: UNetEncoder
    let outputBlocks: [[UNetLayer]]
    let outNorm: GroupNorm, convOut: Conv2d

    public static let prefix = "model.diffusion_model."

    public init(_ s: WeightStore, config: UNetConfig) throws {
        self.config = config
        let p = Self.prefix
        let mc = config.modelChannels, embDim = mc * 4
        encoder = try UNetEncoder(s, prefix: p, config: config)
        var chans = encoder.skipChannels
        var ch = chans.last!
        var ds = 1 << (config.channelMult.count - 1)
        var outs: [[UNetLayer]] = []
        var index = 0
        for (level, mult) in config.channelMult.enumerated().reversed() {
            for i in 0...config.numResBlocks {
                let bp = p + "output_blocks.\(index)"
                let skip = chans.removeLast()
                var layers: [UNetLayer] = [.res(try ResBlock(s, bp + ".0", in: ch + skip, out: mc * mult, embDim: embDim))]
                ch = mc * mult
                if config.attentionResolutions.contains(ds) {
                    layers.append(.attn(try SpatialTransformer(s, bp + ".1", channels: ch, config: config)))
                }
                if level != 0 && i == config.numResBlocks {
                    layers.append(.up(try Conv2d(s, bp + ".\(layers.count).conv", in: ch, out: ch, kernel: 3)))
                    ds /= 2
                }
                outs.append(layers)
                index += 1
            }
        }
        outputBlocks = outs
        outNorm = try GroupNorm(s, p + "out.0", channels: mc, eps: 1e-5)
        convOut = try Conv2d(s, p + "out.2", in: mc, out: config.outChannels, kernel: 3)
    }

    /// ε prediction. x: [N, 4, h, w]; timesteps: N continuous timesteps; context: [N, T, contextDim];
    /// `control`: ControlNet residuals added to the skip connections and the middle block's
    /// output (where sd-webui-controlnet's hook adds them).
    public func callAsFunction(_ x: Tensor, timesteps: [Float], context: Tensor, control: ControlResiduals? = nil) -> Tensor {
        let siluEmb = encoder.siluEmbedding(timesteps)
        // the skip connections on the stack (`withUnsafeTemporaryAllocation`): a forward allocates no array
        return withUnsafeTemporaryAllocation(of: Tensor.self, capacity: encoder.inputBlocks.count + 1) { skips in
            var h = encoder.convIn(x)
            var count = 0
            func push(_ t: Tensor) { (skips.baseAddress! + count).initialize(to: t); count += 1 }
            push(h)
            for block in encoder.inputBlocks {
                h = UNetLayer.run(block, h, siluEmb: siluEmb, context: context)
                push(h)
            }
            h = UNetLayer.run(encoder.middle, h, siluEmb: siluEmb, context: context)
            if let control {
                precondition(control.skips.count == count, "ControlNet residuals do not match the UNet's skip connections")
                h = Ops.add(h, control.middle)
                for i in 0..<count { skips[i] = Ops.add(skips[i], control.skips[i]) }
            }
            for block in outputBlocks {
                precondition(count > 0, "the UNet has more output blocks than skip connections")
                count -= 1
                let skip = (skips.baseAddress! + count).move()
                // A1111's rule for sizes not divisible by 64 (sd_hijack_unet's `cat`): the ×2 upsampled
                // features are resized, nearest, to the skip's size where they differ (diffusers instead
                // upsamples straight to the skip's size, which gives other numbers)
                if h.shape[2] != skip.shape[2] || h.shape[3] != skip.shape[3] {
                    h = Ops.interpolate(h, height: skip.shape[2], width: skip.shape[3], mode: .nearest)
                }
                h = UNetLayer.run(block, Ops.concatChannels(h, skip), siluEmb: siluEmb, context: context)
            }
            skips.baseAddress!.deinitialize(count: count)
            return convOut(outNorm(h, silu: true))
        }
    }
}
