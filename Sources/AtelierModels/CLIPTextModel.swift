import AtelierTensor
import Foundation

/// Sizes of a CLIP text tower (ViT-L/14 for SD 1.x).
public struct CLIPTextConfig: Sendable, Equatable {
    public var vocabSize = 49408
    public var positions = 77
    public var hidden = 768
    public var intermediate = 3072
    public var layers = 12
    public var heads = 12
    public var layerNormEps: Float = 1e-5
    public init() {}
}

struct CLIPEncoderLayer {
    let ln1: LayerNorm, q: Linear, k: Linear, v: Linear, out: Linear
    let ln2: LayerNorm, fc1: Linear, fc2: Linear
    let heads: Int

    init(_ s: WeightStore, _ p: String, _ c: CLIPTextConfig) throws {
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

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = ln1(x)
        let a = out(Ops.attention(q: q(h), k: k(h), v: v(h), heads: heads, causal: true))
        let x = Ops.add(x, a)
        return Ops.add(x, fc2(Ops.quickGELU(fc1(ln2(x)))))
    }
}

/// The CLIP text encoder of SD 1.x (`cond_stage_model.transformer.text_model.*`, the
/// transformers `CLIPTextModel` names).
public struct CLIPTextModel {
    public let config: CLIPTextConfig
    let tokenEmbedding: Tensor
    let positionEmbedding: Tensor
    let layers: [CLIPEncoderLayer]
    let finalNorm: LayerNorm

    public static let prefix = "cond_stage_model.transformer.text_model."

    public init(_ s: WeightStore, config c: CLIPTextConfig) throws {
        config = c
        let p = Self.prefix
        tokenEmbedding = try s.take(p + "embeddings.token_embedding.weight", shape: [c.vocabSize, c.hidden])
        positionEmbedding = try s.take(p + "embeddings.position_embedding.weight", shape: [c.positions, c.hidden])
        if s.has(p + "embeddings.position_ids") { s.markUsed(p + "embeddings.position_ids") }
        layers = try (0..<c.layers).map { try CLIPEncoderLayer(s, p + "encoder.layers.\($0)", c) }
        finalNorm = try LayerNorm(s, p + "final_layer_norm", channels: c.hidden, eps: c.layerNormEps)
    }

    /// Hidden states for one chunk of token ids. `clipSkip` 1 is the last layer after the
    /// final LayerNorm; n > 1 stops n−1 layers early and applies the final LayerNorm (A1111).
    /// `replacing` overwrites token-embedding rows (textual inversion) before positions are added.
    public func encode(_ ids: [Int], clipSkip: Int = 1, replacing: [(offset: Int, vectors: Tensor)] = []) -> Tensor {
        let n = ids.count, c = config.hidden
        var x = Tensor(uninitialized: [1, n, c])
        let d = x.unsafePointer
        for (i, id) in ids.enumerated() {
            let te = tokenEmbedding.unsafePointer + id * c
            for j in 0..<c { d[i * c + j] = te[j] }
        }
        for r in replacing {
            let rows = min(r.vectors.shape[0], n - r.offset)
            (d + r.offset * c).update(from: r.vectors.unsafePointer, count: rows * c)
        }
        let pe = positionEmbedding.unsafePointer
        for i in 0..<(n * c) { d[i] += pe[i] }
        let stop = layers.count - max(0, clipSkip - 1)
        for layer in layers.prefix(max(stop, 0)) { x = layer(x) }
        return finalNorm(x)
    }
}
