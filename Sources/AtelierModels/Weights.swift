import AtelierTensor
import Foundation

/// Where a model's tensors come from: a `.safetensors` file (mmapped) or a pickled torch file.
public protocol TensorSource: AnyObject {
    var path: String { get }
    var names: [String] { get }
    func shape(of name: String) -> [Int]?
    func tensor(_ name: String) throws -> Tensor
    /// The tensor as a half-resident `Parameter` when the file stores it as float16; nil otherwise.
    func halfParameter(_ name: String) throws -> Parameter?
}

extension SafeTensorsFile: TensorSource {
    public func shape(of name: String) -> [Int]? { entries[name]?.shape }
}

/// The tensors of a `.ckpt` / `.pt` / `.pth` file, read through the restricted unpickler
/// (all at once: a pickle cannot be read lazily).
public final class PickledTensors: TensorSource {
    public let path: String
    private let tensors: [String: Tensor]

    public init(path: String) throws {
        self.path = path
        tensors = try TorchFile.load(path: path).tensors
    }

    public var names: [String] { Array(tensors.keys) }
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    /// Pickled tensors are widened to float32 as they are read.
    public func halfParameter(_ name: String) throws -> Parameter? { nil }
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw ModelFileError(file: (path as NSString).lastPathComponent, "missing tensor \(name)") }
        return t
    }
}

/// How a model's large weights (linear and conv kernels) are kept in memory.
public enum ResidentWeights: String, Sendable, CaseIterable {
    /// float16 where the file stores float16, widened per layer call (half the memory)
    case auto
    /// always float32 (widened once at load; no per-call widening)
    case fp32

    /// The process-wide choice (operator flag `--resident-weights`).
    nonisolated(unsafe) public static var current: ResidentWeights = .auto
}

/// Hands out a checkpoint's tensors by key and keeps account of which were used, so a
/// missing, misshapen or left-over key is an error naming the file, the key and the shapes.
public final class WeightStore {
    public let file: any TensorSource
    /// canonical key → key in the file (A1111's key replacements and wrappers undone)
    private let keyMap: [String: String]
    private var used: Set<String> = []
    /// every tensor handed out, by canonical key (they share storage with the layers, so
    /// weight patches — LoRA — can be applied in place)
    public private(set) var taken: [String: Parameter] = [:]
    /// keep float16 kernels as float16 (`ResidentWeights.auto`)
    public let keepsHalf: Bool
    public var fileName: String { (file.path as NSString).lastPathComponent }

    public init(file: any TensorSource, resident: ResidentWeights = ResidentWeights.current) {
        self.file = file
        keepsHalf = resident == .auto
        keyMap = Self.canonicalKeys(file.names)
    }

    public var canonicalNames: [String] { Array(keyMap.keys) }

    public func has(_ key: String) -> Bool { keyMap[key] != nil }

    public func shape(_ key: String) -> [Int]? { keyMap[key].flatMap { file.shape(of: $0) } }

    /// The tensor at `key` as float32, which must have `shape` when one is given.
    public func take(_ key: String, shape expected: [Int]? = nil) throws -> Tensor {
        let stored = try check(key, expected)
        let t = try file.tensor(stored)
        taken[key] = Parameter(t)
        return t
    }

    /// A layer's kernel at `key`: half-resident when the file stores float16 and `keepsHalf`.
    public func takeParameter(_ key: String, shape expected: [Int]? = nil) throws -> Parameter {
        let stored = try check(key, expected)
        let p = try (keepsHalf ? file.halfParameter(stored) : nil) ?? Parameter(try file.tensor(stored))
        taken[key] = p
        return p
    }

    /// Hands out `parts` in place of the tensor taken at `key`, which a layer has split (SD 2's fused
    /// `in_proj_weight` as separate q, k and v kernels): weight patches address the parts, and the
    /// whole is not kept beside them.
    public func split(_ key: String, into parts: [(String, Parameter)]) {
        taken[key] = nil
        for (k, p) in parts { taken[k] = p }
    }

    private func check(_ key: String, _ expected: [Int]?) throws -> String {
        guard let stored = keyMap[key], let entryShape = file.shape(of: stored) else {
            throw ModelFileError(file: fileName, "missing tensor \(key)" + (expected.map { " (expected shape \($0))" } ?? ""))
        }
        if let expected, entryShape != expected {
            throw ModelFileError(file: fileName, "tensor \(key) has shape \(entryShape), the model expects \(expected)")
        }
        used.insert(key)
        return stored
    }

    /// Marks keys that are read for validation only (e.g. `position_ids`).
    public func markUsed(_ key: String) { used.insert(key) }

    /// Fails if a tensor under one of `prefixes` was never taken.
    public func checkAllUsed(prefixes: [String]) throws {
        let left = keyMap.keys.filter { k in prefixes.contains { k.hasPrefix($0) } && !used.contains(k) }.sorted()
        if let first = left.first {
            let shape = shape(first) ?? []
            throw ModelFileError(file: fileName, "unexpected tensor \(first) with shape \(shape) (\(left.count) unused tensor\(left.count == 1 ? "" : "s") under \(prefixes.joined(separator: ", ")))")
        }
    }

    /// A1111's key normalisation: a `state_dict.` wrapper is removed, and the CLIP text
    /// tower's keys gain `text_model.` when saved without it (transformers 5 / old files).
    static func canonicalKeys(_ names: [String]) -> [String: String] {
        var out: [String: String] = [:]
        let wrapped = !names.isEmpty && names.allSatisfy { $0.hasPrefix("state_dict.") }
        for name in names {
            var k = wrapped ? String(name.dropFirst("state_dict.".count)) : name
            let te = "cond_stage_model.transformer."
            if k.hasPrefix(te) && !k.hasPrefix(te + "text_model.") {
                k = te + "text_model." + k.dropFirst(te.count)
            }
            out[k] = name
        }
        return out
    }
}

// MARK: - Layers loaded from the store

/// `nn.Linear`.
public struct Linear {
    /// `[out, in]` (or `[out, in, 1, 1]` for a 1×1 conv used as a linear map)
    public let weight: Parameter
    public let bias: Tensor?
    /// the weight's shape as a matrix, `[out, in]`
    let matrix: [Int]

    public init(_ s: WeightStore, _ prefix: String, in i: Int, out o: Int, bias hasBias: Bool = true) throws {
        weight = try s.takeParameter(prefix + ".weight", shape: [o, i])
        bias = hasBias ? try s.take(prefix + ".bias", shape: [o]) : nil
        matrix = [o, i]
    }

    /// A 1×1 conv stored as `[o, i, 1, 1]` used as a linear map (VAE attention).
    public init(conv1x1 s: WeightStore, _ prefix: String, channels c: Int) throws {
        weight = try s.takeParameter(prefix + ".weight", shape: [c, c, 1, 1])
        bias = try s.take(prefix + ".bias", shape: [c])
        matrix = [c, c]
    }

    /// Runs `body` with the weight as a float32 `[out, in]` matrix (see `Parameter.withFloat32`).
    public func withMatrix<R>(_ body: (Tensor) throws -> R) rethrows -> R {
        try weight.withFloat32 { try body($0.reshaped(matrix)) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { withMatrix { Ops.linear(x, weight: $0, bias: bias) } }

    /// `self(x) + residual` in one pass (the add folded into the GEMM).
    public func callAsFunction(_ x: Tensor, residual: Tensor) -> Tensor {
        withMatrix { Ops.linear(x, weight: $0, bias: bias, residual: residual) }
    }
}

/// A1111's "Tiling" (seamless textures): while `circular` is bound true, every conv that pads
/// pads circularly, as A1111 sets `padding_mode = 'circular'` on all the UNet's and VAE's convs.
/// Bound per generation (task-local, so concurrent generations do not see each other's).
public enum ConvPadding {
    @TaskLocal public static var circular = false
}

/// `nn.Conv2d` with square kernels; padding (top, left, bottom, right).
public struct Conv2d {
    public let weight: Parameter
    public let bias: Tensor?
    public let stride: Int
    public let padding: (top: Int, left: Int, bottom: Int, right: Int)
    /// the padding stands for an explicit zero `F.pad` before a conv without padding (VAE encoder
    /// downsamplers): it stays zeros under `ConvPadding.circular`, as in A1111
    let explicitZeroPad: Bool

    public init(_ s: WeightStore, _ prefix: String, in i: Int, out o: Int, kernel k: Int,
                stride: Int = 1, padding: Int? = nil) throws {
        weight = try s.takeParameter(prefix + ".weight", shape: [o, i, k, k])
        bias = try s.take(prefix + ".bias", shape: [o])
        self.stride = stride
        let p = padding ?? k / 2
        self.padding = (p, p, p, p)
        explicitZeroPad = false
    }

    init(weight: Parameter, bias: Tensor?, stride: Int, padding: (Int, Int, Int, Int), explicitZeroPad: Bool) {
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.explicitZeroPad = explicitZeroPad
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if ConvPadding.circular && !explicitZeroPad && padding != (0, 0, 0, 0) {
            let wrapped = Ops.padCircular(x, padding)
            return weight.withFloat32 { Ops.conv2d(wrapped, weight: $0, bias: bias, stride: stride, padding: (0, 0, 0, 0)) }
        }
        return weight.withFloat32 { Ops.conv2d(x, weight: $0, bias: bias, stride: stride, padding: padding) }
    }

    /// The same weights after an explicit zero pad `p` (VAE encoder's asymmetric downsample).
    public func padded(_ p: (Int, Int, Int, Int)) -> Conv2d {
        Conv2d(weight: weight, bias: bias, stride: stride, padding: p, explicitZeroPad: true)
    }
}

/// `nn.GroupNorm` (32 groups in every SD model).
public struct GroupNorm {
    public let weight: Tensor
    public let bias: Tensor
    public let groups: Int
    public let eps: Float

    public init(_ s: WeightStore, _ prefix: String, channels c: Int, groups: Int = 32, eps: Float) throws {
        weight = try s.take(prefix + ".weight", shape: [c])
        bias = try s.take(prefix + ".bias", shape: [c])
        self.groups = groups
        self.eps = eps
    }

    /// `moments`: one per (row, group) to normalise with instead of x's own (the tiled VAE's).
    public func callAsFunction(_ x: Tensor, silu: Bool = false, moments: [Ops.GroupMoments]? = nil) -> Tensor {
        Ops.groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, silu: silu, moments: moments)
    }

    /// Normalised with `tiled`'s whole-picture statistics where a tiled decode or encode passes them, else x's own.
    func callAsFunction(_ x: Tensor, silu: Bool = false, tiled: TiledGroupNorm?) -> Tensor {
        tiled?.normalize(self, x, silu: silu) ?? self(x, silu: silu)
    }
}

/// `nn.LayerNorm` over the last axis.
public struct LayerNorm {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Float

    public init(_ s: WeightStore, _ prefix: String, channels c: Int, eps: Float = 1e-5) throws {
        weight = try s.take(prefix + ".weight", shape: [c])
        bias = try s.take(prefix + ".bias", shape: [c])
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { Ops.layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

extension Linear {
    /// A linear map from tensors already in hand (OpenCLIP's fused q/k/v, split).
    init(weight: Tensor, bias: Tensor?) {
        self.weight = Parameter(weight)
        self.bias = bias
        matrix = weight.shape
    }
}

/// Opens a model file by its extension: `.safetensors` memory-mapped, the pickled torch
/// extensions in `pickled` through the restricted unpickler; nil for any other extension (the
/// caller names what it expected).
func openTensorFile(_ path: String, pickled: Set<String> = ["ckpt", "pt", "pth"]) throws -> (any TensorSource)? {
    let ext = (path as NSString).pathExtension.lowercased()
    if ext == "safetensors" { return try SafeTensorsFile(path: path) }
    return pickled.contains(ext) ? try PickledTensors(path: path) : nil
}
