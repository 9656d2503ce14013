import AtelierTensor
import Crypto
import Foundation
import Yams

/// What a model file is, found from its tensor names and shapes (never its file name).
public enum Architecture: Equatable, Sendable {
    case sd1
    case sd1Inpainting
    case sd2(vPrediction: Bool?)
    case sdxl
    case sdxlRefiner
    case vae
    case lora
    case textualInversion
    case controlNet
    case unknown(String)

    public var label: String {
        switch self {
        case .sd1: "Stable Diffusion 1.x"
        case .sd1Inpainting: "Stable Diffusion 1.x inpainting (9-channel UNet)"
        case .sd2: "Stable Diffusion 2.x"
        case .sdxl: "Stable Diffusion XL"
        case .sdxlRefiner: "Stable Diffusion XL refiner"
        case .vae: "a VAE on its own"
        case .lora: "a LoRA / LyCORIS network"
        case .textualInversion: "a textual-inversion embedding"
        case .controlNet: "a ControlNet"
        case .unknown(let why): "an unknown model (\(why))"
        }
    }

    /// Where such a file belongs in the A1111 data dir, when it is not a checkpoint.
    public var belongsIn: String? {
        switch self {
        case .vae: "models/VAE"
        case .lora: "models/Lora"
        case .textualInversion: "embeddings"
        case .controlNet: "models/ControlNet"
        default: nil
        }
    }

    /// Detects the architecture from canonical key names and shapes (ComfyUI-style).
    public static func detect(_ s: WeightStore) -> Architecture {
        let names = s.canonicalNames
        let u = UNet.prefix
        if names.contains(where: { $0.hasPrefix("conditioner.embedders.1.") }) { return .sdxl }
        if names.contains(where: { $0.hasPrefix("conditioner.embedders.0.model.") }) && s.has(u + "label_emb.0.0.weight") {
            return .sdxlRefiner
        }
        if names.contains(where: { $0.hasPrefix("control_model.") || $0.contains("input_hint_block.") }) { return .controlNet }
        if names.contains(where: { $0.hasPrefix("lora_") || $0.contains(".lora_down.") || $0.contains(".lora_up.")
            || $0.contains(".hada_w1_a") || $0.contains(".lokr_w1") || $0.hasSuffix(".alpha") && $0.hasPrefix("lora_") }) {
            return .lora
        }
        if names.contains("emb_params") || names.contains(where: { $0.hasPrefix("string_to_param") }) || names == ["clip_l", "clip_g"] {
            return .textualInversion
        }
        if let w = s.shape(u + "input_blocks.0.0.weight") {
            if names.contains(where: { $0.hasPrefix("cond_stage_model.model.") }) { return .sd2(vPrediction: nil) }
            if let k = s.shape(u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"), k.count == 2, k[1] == 1024 {
                return .sd2(vPrediction: nil)
            }
            if w.count == 4 && w[1] == 9 { return .sd1Inpainting }
            if w.count == 4 && w[1] == 4 { return .sd1 }
            return .unknown("UNet input has shape \(w)")
        }
        if names.contains(where: { $0.hasPrefix("decoder.") || $0.hasPrefix("first_stage_model.decoder.") })
            && !names.contains(where: { $0.hasPrefix("model.diffusion_model.") }) {
            return .vae
        }
        return .unknown("no UNet weights (\(names.count) tensors)")
    }
}

/// A loaded SD 1.x checkpoint: its three networks and the DDPM schedule.
public final class StableDiffusionModel: @unchecked Sendable {
    public let path: String
    public let name: String
    public let textEncoder: CLIPTextModel
    public let unet: UNet
    public let vaeDecoder: VAEDecoder
    public let vaeEncoder: VAEEncoder
    /// ᾱ_t for t = 0…999, float32 (the file's `alphas_cumprod`, or computed as ldm does)
    public let alphasCumprod: [Float]
    public let sha256: String
    public var shortHash: String { String(sha256.prefix(10)) }
    /// what the UNet predicts: ε (SD 1.x, SD 2.x 512-base) or v (SD 2.x 768-v), from the yaml's
    /// `parameterization`, or for SD 2.x without one A1111's test forward
    public let prediction: Prediction
    public enum Prediction: String, Sendable { case epsilon = "eps", v }
    /// an inpainting checkpoint (A1111's "hybrid" conditioning): the UNet also reads a mask and
    /// the masked image's latent, 5 channels concatenated to its 4
    public var isInpainting: Bool { unet.config.inChannels == 9 }
    /// the UNet's and text encoder's weights by canonical key, shared with the layers
    public let parameters: [String: Parameter]
    /// bytes of every weight in memory now (UNet, text encoder, VAE)
    public var residentBytes: Int { allParameters.reduce(0) { $0 + $1.residentBytes } }
    private let allParameters: [Parameter]
    /// extra networks patched into `parameters` now, and the original weights they replaced
    let patches = NetworkPatches()

    /// Loads `path`: detects the architecture, reads `<stem>.yaml` beside it as A1111 does,
    /// builds every network and fails on any missing, misshapen or unused weight.
    /// `resident`: how linear and conv weights stay in memory (float16 files: float16 or float32).
    public init(path: String, resident: ResidentWeights = ResidentWeights.current) throws {
        self.path = path
        let fileName = (path as NSString).lastPathComponent
        name = ((fileName as NSString).deletingPathExtension)
        guard let file = try openTensorFile(path) else {
            throw ModelFileError(file: fileName, "not a checkpoint (.safetensors or .ckpt)")
        }
        let store = WeightStore(file: file, resident: resident)
        let arch = Architecture.detect(store)
        let supported: Bool
        switch arch {
        case .sd1, .sd1Inpainting, .sd2: supported = true
        default: supported = false
        }
        guard supported else {
            if let dir = arch.belongsIn {
                throw ModelFileError(file: fileName, "this is \(arch.label), not a checkpoint; put it in \(dir)")
            }
            throw ModelFileError(file: fileName, "recognised as \(arch.label), which is not supported yet (Atelier runs Stable Diffusion 1.x and 2.x checkpoints)")
        }
        let configs = try ModelConfigs(for: path, store: store)
        textEncoder = try CLIPTextModel(store, config: configs.text)
        unet = try UNet(store, config: configs.unet)
        vaeDecoder = try VAEDecoder(store, config: configs.vae)
        vaeEncoder = try VAEEncoder(store, config: configs.vae)
        if store.has("alphas_cumprod") {
            let ac = try store.take("alphas_cumprod", shape: [1000])
            alphasCumprod = ac.scalars
        } else {
            alphasCumprod = Self.ldmAlphasCumprod(linearStart: configs.linearStart, linearEnd: configs.linearEnd)
        }
        // Known extras of SD 1.x release files, not network weights.
        for k in store.canonicalNames where Self.ignoredKeys.contains(k) || k.hasPrefix("model_ema.") {
            store.markUsed(k)
        }
        try store.checkAllUsed(prefixes: ["model.", "first_stage_model.", "cond_stage_model."])
        if let p = configs.prediction {
            prediction = p
        } else if case .sd2 = arch {
            prediction = Self.detectVPrediction(unet: unet)
        } else {
            prediction = .epsilon
        }
        let stray = store.canonicalNames.filter { !$0.hasPrefix("model.") && !$0.hasPrefix("first_stage_model.")
            && !$0.hasPrefix("cond_stage_model.") && !$0.hasPrefix("model_ema.") && !Self.ignoredKeys.contains($0) }
        if let k = stray.sorted().first {
            throw ModelFileError(file: fileName, "unexpected tensor \(k) with shape \(store.shape(k) ?? []) outside the model's networks")
        }
        sha256 = try Self.fileSHA256(path)
        parameters = store.taken.filter { $0.key.hasPrefix("model.diffusion_model.") || $0.key.hasPrefix("cond_stage_model.") }
        allParameters = Array(store.taken.values)
    }

    /// A1111's `is_using_v_parameterization_for_sd2`: the UNet at t = 999 on 0.5-filled latents and
    /// context; a v-model's output minus the input averages below −1.
    static func detectVPrediction(unet: UNet) -> Prediction {
        let x = Tensor(shape: [1, 4, 8, 8], data: [Float](repeating: 0.5, count: 256))
        let ctx = Tensor(shape: [1, 2, unet.config.contextDim], data: [Float](repeating: 0.5, count: 2 * unet.config.contextDim))
        let out = unet(x, timesteps: [999], context: ctx).scalars
        let mean = zip(out, x.scalars).reduce(0.0) { $0 + Double($1.0 - $1.1) } / Double(out.count)
        return mean < -1 ? .v : .epsilon
    }

    static let ignoredKeys: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "lvlb_weights",
    ]

    /// ldm's schedule: betas = linspace(√start, √end, 1000)², ᾱ = cumprod(1 − β) in float64.
    public static func ldmAlphasCumprod(linearStart: Double = 0.00085, linearEnd: Double = 0.012) -> [Float] {
        let a = linearStart.squareRoot(), b = linearEnd.squareRoot()
        var prod = 1.0
        return (0..<1000).map { i in
            let s = a + (b - a) * Double(i) / 999
            prod *= 1 - s * s
            return Float(prod)
        }
    }

    /// sha256 of the whole file, hex (A1111's "Model hash" is its first 10 characters).
    public static func fileSHA256(_ path: String) throws -> String {
        let key = FileHashes.key(path)
        if let key, let known = FileHashes.shared.lookup(key) { return known }
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw ModelFileError(file: (path as NSString).lastPathComponent, "cannot read")
        }
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 16 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        let sha = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        if let key { FileHashes.shared.store(key, sha) }
        return sha
    }
}

/// The network sizes of a checkpoint: SD 1.5's unless `<stem>.yaml` beside the file says
/// otherwise (as A1111 reads it); the text tower's head count, which neither the yaml nor
/// the shapes state for non-standard widths, from `<stem>.json` when present, else width/64.
struct ModelConfigs {
    var unet = UNetConfig()
    var vae = VAEConfig()
    var text = CLIPTextConfig()
    var linearStart = 0.00085
    var linearEnd = 0.012
    /// the yaml's `parameterization` ("eps" / "v"), nil without one
    var prediction: StableDiffusionModel.Prediction?

    init(for path: String, store: WeightStore) throws {
        let stem = (path as NSString).deletingPathExtension
        let fileName = (path as NSString).lastPathComponent
        let yamlText = try? String(contentsOfFile: stem + ".yaml", encoding: .utf8)
        let hasYAML = yamlText != nil
        if let yamlText {
            do {
                guard let root = try Yams.load(yaml: yamlText) as? [String: Any] else { throw ModelFileError(file: fileName, "") }
                try apply(yaml: root)
            } catch {
                throw ModelFileError(file: (stem as NSString).lastPathComponent + ".yaml", "cannot read the model config: \(error)")
            }
        }
        // Text tower sizes from the tensors themselves.
        let tp = CLIPTextModel.prefix
        if let e = store.shape(tp + "embeddings.token_embedding.weight"), e.count == 2 {
            text.vocabSize = e[0]
            text.hidden = e[1]
            text.heads = max(1, e[1] / 64)
        }
        if let p = store.shape(tp + "embeddings.position_embedding.weight"), p.count == 2 { text.positions = p[0] }
        if let f = store.shape(tp + "encoder.layers.0.mlp.fc1.weight"), f.count == 2 { text.intermediate = f[0] }
        // SD 2.x's OpenCLIP text tower
        let op = CLIPTextModel.openCLIPPrefix
        if let e = store.shape(op + "token_embedding.weight"), e.count == 2 {
            text.openCLIP = true
            text.vocabSize = e[0]
            text.hidden = e[1]
            text.heads = max(1, e[1] / 64)
            if let p = store.shape(op + "positional_embedding"), p.count == 2 { text.positions = p[0] }
            if let f = store.shape(op + "transformer.resblocks.0.mlp.c_fc.weight"), f.count == 2 { text.intermediate = f[0] }
            text.layers = Set(store.canonicalNames.compactMap { k -> Int? in
                guard k.hasPrefix(op + "transformer.resblocks.") else { return nil }
                return Int(k.dropFirst((op + "transformer.resblocks.").count).prefix { $0 != "." })
            }).count
            if let data = FileManager.default.contents(atPath: stem + ".json"),
               let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let cfg = json["config"] as? [String: Any], let te = cfg["text_encoder"] as? [String: Any] {
                if let heads = (te["num_attention_heads"] ?? te["heads"]) as? Int { text.heads = heads }
            }
            // SD 2.x's UNet: head width 64 (v2-inference.yaml) unless the yaml says otherwise
            if !hasYAML { unet.numHeads = nil; unet.headChannels = 64 }
        }
        // the cross-attention width and projection kind from the weights themselves
        let u = UNet.prefix
        if let k = store.shape(u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"), k.count == 2 { unet.contextDim = k[1] }
        if let p = store.shape(u + "input_blocks.1.1.proj_in.weight") { unet.linearProjection = p.count == 2 }
        // the UNet's input width from its first conv (9 for inpainting checkpoints, which A1111
        // recognises by this shape and rarely come with a yaml)
        if let w = store.shape(UNet.prefix + "input_blocks.0.0.weight"), w.count == 4 { unet.inChannels = w[1] }
        if !text.openCLIP { text.layers = Set(store.canonicalNames.compactMap { k -> Int? in
            guard k.hasPrefix(tp + "encoder.layers.") else { return nil }
            return Int(k.dropFirst((tp + "encoder.layers.").count).prefix { $0 != "." })
        }).count }
        if let data = FileManager.default.contents(atPath: stem + ".json"),
           let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let cfg = json["config"] as? [String: Any],
           let te = cfg["text_encoder"] as? [String: Any], let heads = te["num_attention_heads"] as? Int {
            text.heads = heads
        }
    }

    mutating func apply(yaml root: [String: Any]) throws {
        func dict(_ d: [String: Any]?, _ k: String) -> [String: Any]? { d?[k] as? [String: Any] }
        let params = dict(dict(root, "model"), "params")
        if let v = params?["linear_start"] as? Double { linearStart = v }
        if let v = params?["linear_end"] as? Double { linearEnd = v }
        if let v = params?["scale_factor"] as? Double { vae.scaleFactor = Float(v) }
        if let v = params?["parameterization"] as? String {
            guard let p = StableDiffusionModel.Prediction(rawValue: v) else { throw ModelFileError(file: "yaml", "parameterization '\(v)' is not eps or v") }
            prediction = p
        }
        if let u = dict(dict(params, "unet_config"), "params") {
            if let v = u["in_channels"] as? Int { unet.inChannels = v }
            if let v = u["out_channels"] as? Int { unet.outChannels = v }
            if let v = u["model_channels"] as? Int { unet.modelChannels = v }
            if let v = u["channel_mult"] as? [Int] { unet.channelMult = v }
            if let v = u["num_res_blocks"] as? Int { unet.numResBlocks = v }
            if let v = u["attention_resolutions"] as? [Int] { unet.attentionResolutions = v }
            if let v = u["num_heads"] as? Int, v > 0 { unet.numHeads = v; unet.headChannels = nil }
            if let v = u["num_head_channels"] as? Int, v > 0 { unet.headChannels = v }
            if let v = u["context_dim"] as? Int { unet.contextDim = v }
            if let v = u["use_linear_in_transformer"] as? Bool { unet.linearProjection = v }
            if let v = u["transformer_depth"] as? Int { unet.transformerDepth = v }
        }
        if let d = dict(dict(dict(params, "first_stage_config"), "params"), "ddconfig") {
            if let v = d["ch"] as? Int { vae.ch = v }
            if let v = d["ch_mult"] as? [Int] { vae.chMult = v }
            if let v = d["num_res_blocks"] as? Int { vae.numResBlocks = v }
            if let v = d["z_channels"] as? Int { vae.zChannels = v }
            if let v = d["in_channels"] as? Int { vae.inChannels = v }
            if let v = d["out_ch"] as? Int { vae.outChannels = v }
        }
    }
}

/// sha256 of model files by (path, size, modification time), as A1111's `cache.json` keeps them:
/// hashing a 2 GB checkpoint took 3 s here, more than the rest of loading it. Kept in memory, and in
/// `file` when the service sets one (its data directory), so a restart does not hash again.
public final class FileHashes: @unchecked Sendable {
    public static let shared = FileHashes()
    private let lock = NSLock()
    private var hashes: [String: String] = [:]
    private var file: URL?

    /// Persists hashes in `url` (JSON), reading those already there.
    public func persist(in url: URL) {
        let known = (try? Data(contentsOf: url)).flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:]
        lock.withLock {
            file = url
            hashes.merge(known) { mine, _ in mine }
        }
    }

    /// The file behind any symlinks, its size and mtime (a link's own attributes would keep a
    /// replaced target's old hash).
    static func key(_ path: String) -> String? {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let a = try? FileManager.default.attributesOfItem(atPath: real), let size = a[.size] as? Int,
              let mtime = a[.modificationDate] as? Date else { return nil }
        return "\(real)|\(size)|\(mtime.timeIntervalSince1970)"
    }

    func lookup(_ key: String) -> String? { lock.withLock { hashes[key] } }

    /// The file's sha256 if already known (hashed before, or in the persisted file); never hashes.
    public func known(_ path: String) -> String? { Self.key(path).flatMap(lookup) }

    func store(_ key: String, _ sha: String) {
        let (snapshot, url) = lock.withLock { () -> ([String: String], URL?) in
            hashes[key] = sha
            return (hashes, file)
        }
        guard let url, let data = try? JSONEncoder().encode(snapshot) else { return }
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? data.write(to: url, options: .atomic)
    }
}
