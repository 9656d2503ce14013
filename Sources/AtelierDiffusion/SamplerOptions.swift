import Foundation

/// A1111's sampler options: Karras churn (`s_churn`, `s_tmin`, `s_tmax`) and `s_noise` for the
/// k-diffusion samplers that take them, the schedule overrides `sigma_min` / `sigma_max` / `rho`,
/// and `always_discard_next_to_last_sigma`. Defaults are A1111's (0 = the model's or the schedule's own).
public struct SamplerOptions: Sendable, Equatable {
    public var sChurn: Double = 0
    public var sTmin: Double = 0
    /// ∞ where A1111's option is 0
    public var sTmax: Double = .infinity
    public var sNoise: Double = 1
    public var sigmaMin: Double = 0
    public var sigmaMax: Double = 0
    public var rho: Double = 0
    public var discardPenultimateSigma = false
    /// The churn / noise options that came from A1111's settings (or `override_settings`): only
    /// those are written to the infotext (A1111 applies a request's `s_churn` fields silently).
    public var fromSettings: Set<String> = []

    public init() {}

    /// Which of `s_churn`, `s_tmin`, `s_tmax`, `s_noise` a sampler takes (A1111's `sampler_extra_params`).
    public static func parameters(of sampler: Sampler) -> Set<String> {
        switch sampler {
        case .euler, .heun, .dpm2: ["s_churn", "s_tmin", "s_tmax", "s_noise"]
        case .dpmFast, .dpm2A, .dpmpp2sA, .dpmppSDE, .dpmpp2mSDE, .dpmpp2mSDEHeun, .dpmpp3mSDE: ["s_noise"]
        default: []
        }
    }

    /// The churn of Euler / Heun / DPM2 (s_noise included: it scales the churn noise).
    public var churn: Churn { Churn(sChurn: sChurn, sTmin: sTmin, sTmax: sTmax, sNoise: sNoise) }

    /// The σ range / ρ A1111 hands a schedule function: an override only where it is set (≠ 0)
    /// and differs from the model's (ρ: only to schedules that have one, when it differs). Uniform,
    /// Simple, DDIM and Align Your Steps get them too and ignore them (A1111 still writes them).
    func overrides(_ scheduler: Scheduler, model: DiscreteSchedule) -> (min: Double?, max: Double?, rho: Double?) {
        guard scheduler != .automatic else { return (nil, nil, nil) }
        let mn = sigmaMin != 0 && sigmaMin != Double(model.sigmaMin) ? sigmaMin : nil
        let mx = sigmaMax != 0 && sigmaMax != Double(model.sigmaMax) ? sigmaMax : nil
        let r = scheduler.defaultRho.flatMap { d in rho != 0 && rho != d ? rho : nil }
        return (mn, mx, r)
    }

    /// A1111's infotext entries from `get_sigmas` (before Eta): discard, schedule σ / ρ overrides.
    func scheduleInfotext(_ r: GenerationRequest, model: DiscreteSchedule) -> [(String, String?)] {
        let sched = r.sampler.isTimestepSampler ? nil : (r.scheduler == .automatic ? r.sampler.defaultScheduler : r.scheduler)
        let o: (min: Double?, max: Double?, rho: Double?) = sched.map { overrides($0, model: model) } ?? (nil, nil, nil)
        return [
            ("Discard penultimate sigma", discardPenultimateSigma && !r.sampler.discardsPenultimateSigma ? "True" : nil),
            ("Schedule min sigma", o.min.map(Infotext.pythonFloat)),
            ("Schedule max sigma", o.max.map(Infotext.pythonFloat)),
            ("Schedule rho", o.rho.map(Infotext.pythonFloat)),
        ]
    }

    /// A1111's infotext entries from `initialize` (after Eta): churn / noise options from settings
    /// that the sampler takes and that differ from its defaults.
    func samplerInfotext(_ sampler: Sampler) -> [(String, String?)] {
        let takes = Self.parameters(of: sampler).intersection(fromSettings)
        func entry(_ key: String, _ label: String, _ v: Double, _ d: Double) -> (String, String?) {
            (label, takes.contains(key) && v != d ? Infotext.pythonFloat(v) : nil)
        }
        return [entry("s_churn", "Sigma churn", sChurn, 0), entry("s_tmin", "Sigma tmin", sTmin, 0),
                entry("s_tmax", "Sigma tmax", sTmax, .infinity), entry("s_noise", "Sigma noise", sNoise, 1)]
    }
}

/// Karras et al.'s churn as k-diffusion's Euler / Heun / DPM2 apply it: at steps whose σ lies in
/// [s_tmin, s_tmax], γ = min(s_churn / steps, √2 − 1) raises σ to σ̂ = σ(γ + 1) by adding
/// image-stream noise × s_noise × √(σ̂² − σ²). A1111 draws that noise every step, used or not.
public struct Churn: Sendable, Equatable {
    public var sChurn: Double = 0
    public var sTmin: Double = 0
    public var sTmax: Double = .infinity
    public var sNoise: Double = 1

    public init(sChurn: Double = 0, sTmin: Double = 0, sTmax: Double = .infinity, sNoise: Double = 1) {
        self.sChurn = sChurn; self.sTmin = sTmin; self.sTmax = sTmax; self.sNoise = sNoise
    }

    /// γ for a step at σ of a schedule with `steps` steps (the comparison in float32, as torch's).
    func gamma(_ sigma: Float, steps: Int) -> Double {
        Float(sTmin) <= sigma && sigma <= Float(sTmax) ? min(sChurn / Double(steps), 2.0.squareRoot() - 1) : 0
    }

    /// σ̂ for step i, after adding the churn noise to x (the draw `n` is made by the caller every step).
    func apply(_ x: inout [Float], sigma: Float, steps: Int, noise n: [Float]) -> Float {
        let g = gamma(sigma, steps: steps)
        let sHat = sigma * Float(g + 1)
        if g > 0 {
            let k = (sHat * sHat - sigma * sigma).squareRoot(), sn = Float(sNoise)
            for j in x.indices { x[j] = x[j] + (n[j] * sn) * k }
        }
        return sHat
    }
}
