import AtelierTensor
import Foundation

/// Sizes of a CLIP text tower (ViT-L/14 for SD 1.x, OpenCLIP ViT-H/14 for SD 2.x).
public struct CLIPTextConfig: Sendable, Equatable {
    public var vocabSize = 49408
    public var positions = 77
    public var hidden = 768
    public var intermediate = 3072
    public var layers = 12
    public var heads = 12
    public var layerNormEps: Float = 1e-5
    /// SD 2.x's OpenCLIP tower (`cond_stage_model.model.*`): fused q/k/v, exact GELU, its
    /// penultimate layer always (A1111 ignores the CLIP-skip setting there) and token 0 after
    /// the first end-of-text token instead of more end tokens
    public var openCLIP = false
    public init() {}

    /// The id chunks are padded with after their end-of-text token (A1111's `id_pad`).
    public var padToken: Int? { openCLIP ? 0 : nil }
}

struct CLIPEncoderLayer {
    let ln1: LayerNorm, q: Linear, k: Linear, v: Linear, out: Linear
    let ln2: LayerNorm, fc1: Linear, fc2: Linear
    let heads: Int

    let gelu: Bool

    init(_ s: WeightStore, _ p: String, _ c: CLIPTextConfig) throws {
        gelu = false
        ln1 = try LayerNorm(s, p + ".layer_norm1", channels: c.hidden, eps: c.layerNormEps)
        q = try Linear(s, p + ".self_attn.q_proj", in: c.hidden, out: c.hidden)
        k = try Linear(s, p + ".self_attn.k_proj", in: c.hidden, out: c.hidden)
        v = try Linear(s, p + ".self_attn.v_proj", in: c.hidden, out: c.hidden)
        out = try Linear(s, p + ".self_attn.out_proj", in: c.hidden, out: c.hidden)
        ln2 = try LayerNorm(s, p + ".layer_norm2", channels: c.hidden, eps: c.layerNormEps)
        fc1 = try Linear(s, p + ".mlp.fc1", in: c.hidden, out: c.intermediate)
        fc2 = try Linear(s, p + ".mlp.fc2", in: c.intermediate, out: c.hidden)
        heads = c.heads
    }

    /// An OpenCLIP `ResidualAttentionBlock` (`transformer.resblocks.N`): `in_proj_weight` holds
    /// q, k and v stacked; the MLP is `c_fc` → GELU → `c_proj`.
    init(openCLIP s: WeightStore, _ p: String, _ c: CLIPTextConfig) throws {
        gelu = true
        let w = c.hidden
        ln1 = try LayerNorm(s, p + ".ln_1", channels: w, eps: c.layerNormEps)
        let inW = try s.take(p + ".attn.in_proj_weight", shape: [3 * w, w]), inB = try s.take(p + ".attn.in_proj_bias", shape: [3 * w])
        func slice(_ t: Tensor, _ i: Int, _ shape: [Int]) -> Tensor {
            let n = shape.reduce(1, *)
            return Tensor(shape: shape, data: Array(UnsafeBufferPointer(start: t.unsafePointer + i * n, count: n)))
        }
        q = Linear(weight: slice(inW, 0, [w, w]), bias: slice(inB, 0, [w]))
        k = Linear(weight: slice(inW, 1, [w, w]), bias: slice(inB, 1, [w]))
        v = Linear(weight: slice(inW, 2, [w, w]), bias: slice(inB, 2, [w]))
        // A1111 patches a LoRA's q / k / v updates into the fused weight's thirds: the split kernels
        // stand under `attn.{q,k,v}_proj.weight` (the names its `re_x_proj` fallback reads)
        s.split(p + ".attn.in_proj_weight", into: [(p + ".attn.q_proj.weight", q.weight), (p + ".attn.k_proj.weight", k.weight),
                                                   (p + ".attn.v_proj.weight", v.weight)])
        s.split(p + ".attn.in_proj_bias", into: [])
        out = try Linear(s, p + ".attn.out_proj", in: w, out: w)
        ln2 = try LayerNorm(s, p + ".ln_2", channels: w, eps: c.layerNormEps)
        fc1 = try Linear(s, p + ".mlp.c_fc", in: w, out: c.intermediate)
        fc2 = try Linear(s, p + ".mlp.c_proj", in: c.intermediate, out: w)
        heads = c.heads
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = ln1(x)
        let a = out(Ops.attention(q: q(h), k: k(h), v: v(h), heads: heads, causal: true))
        let x = Ops.add(x, a)
        let m = fc1(ln2(x))
        return Ops.add(x, fc2(gelu ? Ops.gelu(m) : Ops.quickGELU(m)))
    }
}

/// The CLIP text encoder of SD 1.x (`cond_stage_model.transformer.text_model.*`, the
/// transformers `CLIPTextModel` names).
public struct CLIPTextModel {
    public let config: CLIPTextConfig
    /// `[vocabulary, hidden]`; float16-resident where the file stores float16 (rows are widened
    /// per lookup: 76 MB instead of 152 for SD 1.x's table)
    let tokenEmbedding: Parameter
    let positionEmbedding: Tensor
    let layers: [CLIPEncoderLayer]
    let finalNorm: LayerNorm

    public static let prefix = "cond_stage_model.transformer.text_model."
    /// `<|endoftext|>` of the CLIP BPE vocabulary
    public static let endOfText = 49407
    /// SD 2.x's OpenCLIP text tower
    public static let openCLIPPrefix = "cond_stage_model.model."

    public init(_ s: WeightStore, config c: CLIPTextConfig) throws {
        config = c
        if c.openCLIP {
            let p = Self.openCLIPPrefix
            tokenEmbedding = try s.takeParameter(p + "token_embedding.weight", shape: [c.vocabSize, c.hidden])
            positionEmbedding = try s.take(p + "positional_embedding", shape: [c.positions, c.hidden])
            layers = try (0..<c.layers).map { try CLIPEncoderLayer(openCLIP: s, p + "transformer.resblocks.\($0)", c) }
            finalNorm = try LayerNorm(s, p + "ln_final", channels: c.hidden, eps: c.layerNormEps)
            // the contrastive head is not part of the conditioning (ldm's FrozenOpenCLIPEmbedder)
            for k in ["text_projection", "logit_scale", "attn_mask"] where s.has(p + k) { s.markUsed(p + k) }
            return
        }
        let p = Self.prefix
        tokenEmbedding = try s.takeParameter(p + "embeddings.token_embedding.weight", shape: [c.vocabSize, c.hidden])
        positionEmbedding = try s.take(p + "embeddings.position_embedding.weight", shape: [c.positions, c.hidden])
        if s.has(p + "embeddings.position_ids") { s.markUsed(p + "embeddings.position_ids") }
        layers = try (0..<c.layers).map { try CLIPEncoderLayer(s, p + "encoder.layers.\($0)", c) }
        finalNorm = try LayerNorm(s, p + "final_layer_norm", channels: c.hidden, eps: c.layerNormEps)
    }

    /// Hidden states for one chunk of token ids. `clipSkip` 1 is the last layer after the
    /// final LayerNorm; n > 1 stops n−1 layers early and applies the final LayerNorm (A1111).
    /// `replacing` overwrites token-embedding rows (textual inversion) before positions are added.
    public func encode(_ ids: [Int], clipSkip: Int = 1, replacing: [(offset: Int, vectors: Tensor)] = []) -> Tensor {
        var ids = ids
        // SD 2.x (A1111's process_tokens): everything after the first end-of-text token is the pad id
        if let pad = config.padToken, let end = ids.firstIndex(of: Self.endOfText), end + 1 < ids.count {
            for i in (end + 1)..<ids.count { ids[i] = pad }
        }
        let n = ids.count, c = config.hidden
        var x = Tensor(uninitialized: [1, n, c])
        let d = x.unsafePointer
        for (i, id) in ids.enumerated() { tokenEmbedding.copyRow(id, into: d + i * c) }
        for r in replacing {
            let rows = min(r.vectors.shape[0], n - r.offset)
            (d + r.offset * c).update(from: r.vectors.unsafePointer, count: rows * c)
        }
        let pe = positionEmbedding.unsafePointer
        for i in 0..<(n * c) { d[i] += pe[i] }
        // SD 2.x: ldm's "penultimate" layer whatever the setting
        let skip = config.openCLIP ? 2 : clipSkip
        let stop = layers.count - max(0, skip - 1)
        for layer in layers.prefix(max(stop, 0)) { x = layer(x) }
        return finalNorm(x)
    }
}
