import AtelierModels
import AtelierTensor
import Foundation

/// How a ControlNet unit weighs against the prompt (sd-webui-controlnet's `control_mode`).
public enum ControlMode: String, Sendable, CaseIterable {
    case balanced = "Balanced"
    /// "soft injection": residual `i` of 13 scaled by `0.825^(12−i)`
    case prompt = "My prompt is more important"
    /// soft injection, and no control on the unconditional rows of the CFG batch
    case controlNet = "ControlNet is more important"

    /// The extension's API also takes 0, 1, 2 and its older names.
    public init?(api value: String) {
        switch value {
        case "0", "Balanced": self = .balanced
        case "1", "My prompt is more important", "Prompt": self = .prompt
        case "2", "ControlNet is more important", "ControlNet": self = .controlNet
        default: return nil
        }
    }
}

/// One enabled ControlNet unit of a generation: the model, its control image (the detected
/// map as `[1, 3, h, w]` in 0…1, h × w the request's size floored to multiples of 8) and how
/// strongly and when it steers.
public struct ControlUnit: Equatable, @unchecked Sendable {
    public static func == (a: ControlUnit, b: ControlUnit) -> Bool {
        a.model === b.model && a.hint.shape == b.hint.shape && a.hint.scalars == b.hint.scalars && a.weight == b.weight
            && a.guidanceStart == b.guidanceStart && a.guidanceEnd == b.guidanceEnd && a.mode == b.mode
    }

    public let model: ControlNetModel
    public var hint: Tensor
    public var weight: Double
    public var guidanceStart: Double
    public var guidanceEnd: Double
    public var mode: ControlMode

    public init(model: ControlNetModel, hint: Tensor, weight: Double = 1, guidanceStart: Double = 0, guidanceEnd: Double = 1,
                mode: ControlMode = .balanced) {
        self.model = model
        self.hint = hint
        self.weight = weight
        self.guidanceStart = guidanceStart
        self.guidanceEnd = guidanceEnd
        self.mode = mode
    }

    /// A control map (RGB bytes, row-major) as the hint `[1, 3, h, w]`: `uint8 / 255` in float32.
    public static func hint(rgb: [UInt8], width: Int, height: Int) -> Tensor {
        precondition(rgb.count == width * height * 3)
        let t = Tensor(uninitialized: [1, 3, height, width])
        let p = t.unsafePointer
        for c in 0..<3 {
            for i in 0..<(width * height) { p[c * width * height + i] = Float(rgb[i * 3 + c]) / 255 }
        }
        return t
    }

    /// The weight of each of the 13 residuals (skip connections 0…11, then the middle block).
    public var scales: [Float] {
        (0..<13).map { i in
            mode == .balanced ? Float(weight) : Float(weight * pow(0.825, Double(12 - i)))
        }
    }

    /// Whether the unit steers a model call made at A1111's `state.sampling_step` of
    /// `samplingSteps` (the extension skips it when the fraction is outside start…end).
    func isActive(samplingStep: Int, samplingSteps: Int) -> Bool {
        let fraction = Double(samplingStep) / Double(samplingSteps)
        return !(fraction < guidanceStart || fraction > guidanceEnd)
    }
}

/// The ControlNet side of one generation: the units with their hints encoded once, A1111's
/// step bookkeeping, and the residuals of each UNet call.
final class ControlSession {
    let units: [(unit: ControlUnit, encodedHint: Tensor)]
    /// `state.sampling_steps`: steps (txt2img) or `t_enc + 1` (img2img)
    let samplingSteps: Int
    /// steps finished so far (the sampler's callbacks) and model calls since the last one
    private var stepsDone = 0
    private var callsInStep = 0
    private(set) var active: [Bool]
    /// every denoiser call's `sampling_step` and whether any unit steered it (for the dump)
    private(set) var log: [(samplingStep: Int, active: Bool)] = []
    /// whether the job dumps its intermediates: only then are `log` and `firstResiduals` kept
    private let dumps: Bool
    /// the first active call's weighted residuals, for the oracle's `control_residual_NN` dump
    var firstResiduals: [Tensor]?

    // Kept from call to call, so a sampler's steps make no new array: each unit's weights, its
    // encoded hint stacked per row count, its last residuals, their sum, the skips handed to the
    // UNet, and the cond rows' timesteps.
    private let scales: [[Float]]
    private var stackedHints: [[Int: Tensor]]
    private var unitResiduals: [[Tensor]]
    private var total: [Tensor] = []
    private var skips: [Tensor] = []
    private var condTimesteps: [Float] = []

    init(units: [ControlUnit], samplingSteps: Int, dumps: Bool = false) {
        self.units = units.map { ($0, $0.model.encodeHint($0.hint)) }
        self.samplingSteps = samplingSteps
        self.dumps = dumps
        active = Array(repeating: false, count: units.count)
        scales = units.map(\.scales)
        stackedHints = Array(repeating: [:], count: units.count)
        unitResiduals = Array(repeating: [], count: units.count)
    }

    /// Called once per denoiser (CFG) call. A1111's `state.sampling_step` is set by the
    /// k-diffusion callback that fires after the first model call of step `i`, so the first call
    /// of step `i` sees `max(i − 1, 0)` and later calls of the same step see `i`.
    func beginDenoiserCall() {
        let samplingStep = callsInStep == 0 ? max(stepsDone - 1, 0) : stepsDone
        callsInStep += 1
        for k in units.indices { active[k] = units[k].unit.isActive(samplingStep: samplingStep, samplingSteps: samplingSteps) }
        if dumps { log.append((samplingStep, active.contains(true))) }
    }

    /// The sampler finished a step.
    func stepFinished() {
        stepsDone += 1
        callsInStep = 0
    }

    /// Unit k's encoded hint stacked to `rows` rows (made once per row count).
    private func hint(_ k: Int, rows: Int) -> Tensor {
        let one = units[k].encodedHint
        if rows == one.shape[0] { return one }
        if let t = stackedHints[k][rows] { return t }
        let t = Tensor.stack(Array(repeating: one, count: rows))
        stackedHints[k][rows] = t
        return t
    }

    /// The summed, weighted residuals for one UNet call over `x` `[rows, 4, h, w]` whose first
    /// `condRows` rows are conditional (the rest the negative prompt's); nil when no unit steers.
    func residuals(_ x: Tensor, timesteps: [Float], context: Tensor, condRows: Int) -> ControlResiduals? {
        var summed = false
        let rows = x.shape[0]
        // the previous call's residuals go back to the buffer pool before this call's are made
        total.removeAll(keepingCapacity: true)
        skips.removeAll(keepingCapacity: true)
        for k in units.indices where active[k] {
            let unit = units[k].unit
            if unit.mode == .controlNet {
                // the extension multiplies by the cond mark (0 on uncond rows): only the cond rows need the net
                guard condRows > 0 else { continue }
                if condRows == rows {
                    unit.model.residuals(x, encodedHint: hint(k, rows: rows), timesteps: timesteps, context: context, into: &unitResiduals[k])
                } else {
                    if condTimesteps.count != condRows { condTimesteps = Array(repeating: 0, count: condRows) }
                    for i in 0..<condRows { condTimesteps[i] = timesteps[i] }
                    unit.model.residuals(x.slice(0..<condRows), encodedHint: hint(k, rows: condRows), timesteps: condTimesteps,
                                         context: context.slice(0..<condRows), into: &unitResiduals[k])
                    for i in unitResiduals[k].indices { unitResiduals[k][i] = unitResiduals[k][i].paddedRows(to: rows) }
                }
            } else {
                unit.model.residuals(x, encodedHint: hint(k, rows: rows), timesteps: timesteps, context: context, into: &unitResiduals[k])
            }
            for i in unitResiduals[k].indices { unitResiduals[k][i] = Ops.scale(unitResiduals[k][i], scales[k][i]) }
            if summed {
                for i in total.indices { total[i] = Ops.add(total[i], unitResiduals[k][i]) }
            } else {
                total.append(contentsOf: unitResiduals[k])
                summed = true
            }
        }
        guard summed else { return nil }
        if dumps, firstResiduals == nil { firstResiduals = total.map { $0 } }  // its own array: `total` is refilled in place
        skips.append(contentsOf: total[0..<(total.count - 1)])
        return ControlResiduals(skips: skips, middle: total[total.count - 1])
    }
}

extension Tensor {
    /// The tensor with zero rows appended up to `rows` along the first axis.
    func paddedRows(to rows: Int) -> Tensor {
        let out = Tensor(uninitialized: dims.replacing(0, with: rows))
        out.unsafePointer.update(from: unsafePointer, count: count)
        (out.unsafePointer + count).initialize(repeating: 0, count: out.count - count)
        return out
    }
}
