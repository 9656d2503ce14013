import AtelierTensor
import Crypto
import Foundation

/// A LoRA / LyCORIS file in kohya's layout (A1111's built-in Lora extension): per module, the
/// low-rank factors of a weight update. Kinds: LoRA (`lora_up`/`lora_down`, linear and conv
/// 1×1/3×3 — LoCon), LoHa (`hada_w1_a/b`, `hada_w2_a/b`) and LoKr (`lokr_w1[_a/_b]`,
/// `lokr_w2[_a/_b]`); each with an optional `alpha` (scale = alpha / dim) or `scale`.
public final class NetworkFile: @unchecked Sendable {
    public let path: String
    /// the file name without extension: what `<lora:NAME:…>` names
    public let name: String
    /// A1111's "addnet" hash: sha256 of the tensor data after the safetensors header
    public let addnetHash: String
    /// module (kohya name without the tensor suffix) → its tensors by suffix
    let modules: [String: [String: Tensor]]

    public init(path: String) throws {
        self.path = path
        let fileName = (path as NSString).lastPathComponent
        name = (fileName as NSString).deletingPathExtension
        let ext = (fileName as NSString).pathExtension.lowercased()
        let file: any TensorSource = ext == "safetensors" ? try SafeTensorsFile(path: path) : try PickledTensors(path: path)
        var modules: [String: [String: Tensor]] = [:]
        for key in file.names {
            guard let dot = key.firstIndex(of: ".") else { continue }
            modules[String(key[..<dot]), default: [:]][String(key[key.index(after: dot)...])] = try file.tensor(key)
        }
        self.modules = modules
        // A1111: the "addnet" hash for safetensors, the file's sha256 otherwise
        addnetHash = ext == "safetensors" ? try Self.addnetHash(path) : try StableDiffusionModel.fileSHA256(path)
    }

    public var shortHash: String { String(addnetHash.prefix(12)) }

    static func addnetHash(_ path: String) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw ModelFileError(file: path, "cannot read") }
        defer { try? h.close() }
        let head = try h.read(upToCount: 8) ?? Data()
        guard head.count == 8 else { throw ModelFileError(file: path, "truncated") }
        let n = head.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        try h.seek(toOffset: 8 + n)
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// A1111's `convert_diffusers_name_to_compvis`: kohya's diffusers-path names to the LDM module
    /// names with `.` written as `_`. `sd2`: text-encoder keys name OpenCLIP's modules (`self_attn` →
    /// `attn`, `mlp_fc1` → `mlp_c_fc`, `mlp_fc2` → `mlp_c_proj`), as A1111 does for a model whose
    /// layer names contain `model_transformer_resblocks`.
    public static func compvisName(_ key: String, sd2: Bool = false) -> String {
        func groups(_ pattern: String) -> [String]? {
            guard let re = try? NSRegularExpression(pattern: "^" + pattern + "$"),
                  let m = re.firstMatch(in: key, range: NSRange(key.startIndex..., in: key)) else { return nil }
            return (1..<m.numberOfRanges).map { i in Range(m.range(at: i), in: key).map { String(key[$0]) } ?? "" }
        }
        let resnet = ["conv1": "in_layers_2", "conv2": "out_layers_3", "norm1": "in_layers_0", "norm2": "out_layers_0",
                      "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"]
        func suffix(_ kind: String, _ s: String) -> String { kind == "resnets" ? resnet[s] ?? s : s }
        if let m = groups("lora_unet_conv_in(.*)") { return "diffusion_model_input_blocks_0_0" + m[0] }
        if let m = groups("lora_unet_conv_out(.*)") { return "diffusion_model_out_2" + m[0] }
        if let m = groups("lora_unet_time_embedding_linear_(\\d+)(.*)") { return "diffusion_model_time_embed_\(Int(m[0])! * 2 - 2)" + m[1] }
        if let m = groups("lora_unet_down_blocks_(\\d+)_(attentions|resnets)_(\\d+)_(.+)") {
            return "diffusion_model_input_blocks_\(1 + Int(m[0])! * 3 + Int(m[2])!)_\(m[1] == "attentions" ? 1 : 0)_" + suffix(m[1], m[3])
        }
        if let m = groups("lora_unet_mid_block_(attentions|resnets)_(\\d+)_(.+)") {
            return "diffusion_model_middle_block_\(m[0] == "attentions" ? 1 : Int(m[1])! * 2)_" + suffix(m[0], m[2])
        }
        if let m = groups("lora_unet_up_blocks_(\\d+)_(attentions|resnets)_(\\d+)_(.+)") {
            return "diffusion_model_output_blocks_\(Int(m[0])! * 3 + Int(m[2])!)_\(m[1] == "attentions" ? 1 : 0)_" + suffix(m[1], m[3])
        }
        if let m = groups("lora_unet_down_blocks_(\\d+)_downsamplers_0_conv") { return "diffusion_model_input_blocks_\(3 + Int(m[0])! * 3)_0_op" }
        if let m = groups("lora_unet_up_blocks_(\\d+)_upsamplers_0_conv") {
            let i = Int(m[0])!
            return "diffusion_model_output_blocks_\(2 + i * 3)_\(i > 0 ? 2 : 1)_conv"
        }
        if let m = groups("lora_te_text_model_encoder_layers_(\\d+)_(.+)") {
            guard sd2 else { return "transformer_text_model_encoder_layers_\(m[0])_\(m[1])" }
            let part = m[1].contains("mlp_fc1") ? m[1].replacingOccurrences(of: "mlp_fc1", with: "mlp_c_fc")
                : m[1].contains("mlp_fc2") ? m[1].replacingOccurrences(of: "mlp_fc2", with: "mlp_c_proj")
                : m[1].replacingOccurrences(of: "self_attn", with: "attn")
            return "model_transformer_resblocks_\(m[0])_\(part)"
        }
        return key
    }

    /// The update of one module for a weight of `shape`, × multiplier × scale (A1111's
    /// `calc_updown` + `finalize_updown`), or nil for a kind Atelier does not know.
    func updown(_ t: [String: Tensor], shape: [Int], multiplier: Float) throws -> [Float]? {
        var full: [Float]
        var dim: Int?
        if let up = t["lora_up.weight"], let down = t["lora_down.weight"] {
            full = Self.matmul(up, down)
            dim = down.shape[0]
        } else if let w1a = t["hada_w1_a"], let w1b = t["hada_w1_b"], let w2a = t["hada_w2_a"], let w2b = t["hada_w2_b"] {
            let a = Self.matmul(w1a, w1b), b = Self.matmul(w2a, w2b)
            guard a.count == b.count else { return nil }
            full = zip(a, b).map { $0 * $1 }
            dim = w1b.shape[0]
        } else if t["lokr_w1"] != nil || t["lokr_w1_a"] != nil {
            let w1: (data: [Float], shape: [Int])
            if let w = t["lokr_w1"] { w1 = (w.scalars, w.shape) } else {
                guard let a = t["lokr_w1_a"], let b = t["lokr_w1_b"] else { return nil }
                w1 = (Self.matmul(a, b), [a.shape[0]] + Array(b.shape.dropFirst()))
                dim = b.shape[0]
            }
            let w2: (data: [Float], shape: [Int])
            if let w = t["lokr_w2"] { w2 = (w.scalars, w.shape) } else {
                guard let a = t["lokr_w2_a"], let b = t["lokr_w2_b"] else { return nil }
                w2 = (Self.matmul(a, b), [a.shape[0]] + Array(b.shape.dropFirst()))
                dim = dim ?? b.shape[0]
            }
            full = Self.kron(w1, w2)
        } else {
            return nil
        }
        guard full.count == shape.reduce(1, *) else { return nil }
        var scale: Float = 1
        if let s = t["scale"] { scale = s.scalars[0] } else if let a = t["alpha"], let dim { scale = a.scalars[0] / Float(dim) }
        for i in full.indices { full[i] = full[i] * multiplier * scale }
        return full
    }

    /// `a.reshape(a.shape[0], −1) @ b.reshape(b.shape[0], −1)`, row-major.
    static func matmul(_ a: Tensor, _ b: Tensor) -> [Float] {
        let m = a.shape[0], k = a.count / m, n = b.count / b.shape[0]
        precondition(b.shape[0] == k, "factor shapes \(a.shape) and \(b.shape) do not chain")
        let c = Tensor(uninitialized: [m, n])
        sgemm(m: m, n: n, k: k, a: a.unsafePointer, lda: k, b: b.unsafePointer, ldb: n, c: c.unsafePointer, ldc: n)
        return c.scalars
    }

    /// `torch.kron(w1, w2)` with w1 `[a, b]` and w2 `[c, d, …]` (w1 broadcast over w2's kernel
    /// dims, as A1111's make_kron does): `[a·c, b·d, …]`.
    static func kron(_ w1: (data: [Float], shape: [Int]), _ w2: (data: [Float], shape: [Int])) -> [Float] {
        let a = w1.shape[0], b = w1.data.count / a
        let c = w2.shape[0], d = w2.shape.count > 1 ? w2.shape[1] : 1
        let k = w2.data.count / (c * d)
        var out = [Float](repeating: 0, count: a * c * b * d * k)
        for i in 0..<a { for j in 0..<b {
            let s = w1.data[i * b + j]
            for p in 0..<c { for q in 0..<d {
                let dst = (((i * c + p) * (b * d)) + (j * d + q)) * k
                let src = (p * d + q) * k
                for r in 0..<k { out[dst + r] = s * w2.data[src + r] }
            } }
        } }
        return out
    }
}

/// One use of a network in a generation: `<lora:name:te:unet>`.
public struct NetworkUse: Equatable, Sendable {
    public var file: NetworkFile
    public var te: Float
    public var unet: Float

    public init(file: NetworkFile, te: Float, unet: Float) {
        self.file = file
        self.te = te
        self.unet = unet
    }

    public static func == (a: NetworkUse, b: NetworkUse) -> Bool {
        a.file.path == b.file.path && a.file.addnetHash == b.file.addnetHash && a.te == b.te && a.unet == b.unet
    }
}

/// What is patched into a model's weights now, and how to undo it: half-resident weights go
/// back to their float16 values (`Parameter.demote`), float32 ones are copied back from `backups`.
final class NetworkPatches: @unchecked Sendable {
    let lock = NSLock()
    var applied: [NetworkUse] = []
    var patched: Set<String> = []
    var backups: [String: [Float]] = [:]
}

extension StableDiffusionModel {
    /// The module names a network file can address (LDM names with `.` as `_`) → weight key.
    var networkTargets: [String: String] {
        var out: [String: String] = [:]
        for key in parameters.keys where key.hasSuffix(".weight") {
            let module = String(key.dropLast(".weight".count))
            if module.hasPrefix("model.diffusion_model.") {
                out[String(module.dropFirst("model.".count)).replacingOccurrences(of: ".", with: "_")] = key
            } else if module.hasPrefix("cond_stage_model.transformer.") || module.hasPrefix("cond_stage_model.model.") {
                out[String(module.dropFirst("cond_stage_model.".count)).replacingOccurrences(of: ".", with: "_")] = key
            }
        }
        return out
    }

    /// Makes the weights those of the checkpoint plus `uses`, in order (A1111's default weight
    /// patching: `W += updown · multiplier · scale`). Weights patched for an earlier, different
    /// set are first restored from exact copies, so switching never drifts. Returns how many
    /// modules were patched; modules the model lacks are ignored (as A1111).
    @discardableResult
    public func applyNetworks(_ uses: [NetworkUse]) throws -> Int {
        try patches.lock.withLock {
            if patches.applied == uses { return patches.patched.count }
            for key in patches.patched {
                let p = parameters[key]!
                if let original = patches.backups[key] {
                    let t = p.promote()
                    original.withUnsafeBufferPointer { t.unsafePointer.update(from: $0.baseAddress!, count: original.count) }
                } else {
                    p.demote()
                }
            }
            patches.patched = []
            patches.backups = [:]
            patches.applied = []
            let targets = networkTargets
            let sd2 = targets.keys.contains { $0.hasPrefix("model_transformer_resblocks") }
            for use in uses {
                let converted = Dictionary(use.file.modules.keys.map { ($0, NetworkFile.compvisName($0, sd2: sd2)) }) { a, _ in a }
                let names = Set(converted.values)
                for (module, tensors) in use.file.modules {
                    let name = converted[module]!
                    // OpenCLIP's attention is one nn.MultiheadAttention: A1111 patches its q, k, v and
                    // out weights together, and only when the file has all four of them
                    if let block = Self.openCLIPAttentionBlock(name),
                       !["q_proj", "k_proj", "v_proj", "out_proj"].allSatisfy({ names.contains(block + $0) }) { continue }
                    guard let key = targets[name] ?? targets[module.replacingOccurrences(of: "lora_unet", with: "diffusion_model")],
                          let weight = parameters[key] else { continue }
                    let multiplier = key.hasPrefix("cond_stage_model.") ? use.te : use.unet
                    guard let delta = try use.file.updown(tensors, shape: weight.shape, multiplier: multiplier) else { continue }
                    if !patches.patched.contains(key) {
                        if !weight.isHalfResident { patches.backups[key] = weight.scalars }
                        patches.patched.insert(key)
                    }
                    let w = weight.promote().unsafePointer
                    for i in delta.indices { w[i] += delta[i] }
                }
            }
            patches.applied = uses
            return patches.patched.count
        }
    }
}

extension StableDiffusionModel {
    /// `model_transformer_resblocks_N_attn_` for a name of one of OpenCLIP's attention projections
    /// (`…_attn_q_proj`, `k_proj`, `v_proj`, `out_proj`), else nil.
    static func openCLIPAttentionBlock(_ name: String) -> String? {
        guard name.hasPrefix("model_transformer_resblocks_") else { return nil }
        for part in ["q_proj", "k_proj", "v_proj", "out_proj"] where name.hasSuffix("_attn_" + part) {
            return String(name.dropLast(part.count))
        }
        return nil
    }
}

/// A textual-inversion embedding (A1111's `create_embedding_from_data`): vectors that stand for
/// its name in a prompt. `.safetensors` (`emb_params`, or a single tensor) and `.pt` / `.bin`
/// (`string_to_param`) read through the restricted unpickler.
public struct TextualInversion: Equatable, @unchecked Sendable {
    public static func == (a: TextualInversion, b: TextualInversion) -> Bool { a.path == b.path && a.shortHash == b.shortHash }

    /// the file name without extension: the word that calls it in a prompt
    public let name: String
    public let path: String
    /// `[n, dim]`
    public let vectors: Tensor
    /// sha256 of the file, first 12 hex digits (A1111's `TI hashes`)
    public let shortHash: String

    public init(path: String) throws {
        self.path = path
        let fileName = (path as NSString).lastPathComponent
        name = (fileName as NSString).deletingPathExtension
        let ext = (fileName as NSString).pathExtension.lowercased()
        var tensors: [String: Tensor] = [:]
        if ext == "safetensors" {
            let file = try SafeTensorsFile(path: path)
            for k in file.names { tensors[k] = try file.tensor(k) }
        } else if ext == "pt" || ext == "bin" {
            tensors = try TorchFile.load(path: path).tensors
        } else {
            throw ModelFileError(file: fileName, "not an embedding file (.safetensors, .pt or .bin)")
        }
        let chosen: Tensor?
        if let v = tensors["emb_params"] {
            chosen = v
        } else if let k = tensors.keys.sorted().first(where: { $0.hasPrefix("string_to_param.") }) {
            chosen = tensors[k]
        } else if tensors.count == 1 {
            chosen = tensors.values.first
        } else {
            chosen = nil
        }
        guard var v = chosen else {
            throw ModelFileError(file: fileName, "no embedding inside (expected emb_params or string_to_param; SDXL clip_l/clip_g embeddings are not supported)")
        }
        if v.shape.count == 1 { v = v.reshaped([1, v.shape[0]]) }
        guard v.shape.count == 2 else { throw ModelFileError(file: fileName, "embedding of shape \(v.shape); expected [vectors, width]") }
        vectors = v
        shortHash = String(try StableDiffusionModel.fileSHA256(path).prefix(12))
    }
}
