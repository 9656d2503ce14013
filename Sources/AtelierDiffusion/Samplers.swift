import Foundation

/// A1111's samplers (the names of its `/samplers` list).
public enum Sampler: String, CaseIterable, Sendable, Codable {
    case dpmpp2m = "DPM++ 2M"
    case eulerA = "Euler a"
    case euler = "Euler"
    case ddim = "DDIM"

    public var aliases: [String] {
        switch self {
        case .dpmpp2m: ["k_dpmpp_2m"]
        case .eulerA: ["k_euler_a", "k_euler_ancestral"]
        case .euler: ["k_euler"]
        case .ddim: ["ddim"]
        }
    }

    /// The schedule "Automatic" stands for (nil: the model's own `get_sigmas`, i.e. Uniform).
    public var defaultScheduler: Scheduler? {
        switch self {
        case .dpmpp2m: .karras
        default: nil
        }
    }

    /// Whether `eta_noise_seed_delta` affects this sampler (it draws sampler noise).
    public var usesENSD: Bool { self == .eulerA }

    /// Resolves a sampler name or alias, case-insensitively; a pre-1.9 name ending in a
    /// schedule label (`"DPM++ 2M Karras"`) also yields that schedule.
    public static func resolve(_ name: String) -> (Sampler, Scheduler?)? {
        let n = name.trimmingCharacters(in: .whitespaces).lowercased()
        for s in allCases where s.rawValue.lowercased() == n || s.aliases.contains(n) { return (s, nil) }
        for sched in Scheduler.allCases where sched != .automatic {
            let suffix = " " + sched.rawValue.lowercased()
            if n.hasSuffix(suffix), let (s, _) = resolve(String(n.dropLast(suffix.count))) {
                return (s, sched == s.defaultScheduler ? .automatic : sched)
            }
        }
        return nil
    }
}

/// The denoiser as samplers see it: latents and σ in, denoised latents out (CFG applied).
public typealias Denoise = (_ x: [Float], _ sigma: Float) throws -> [Float]

/// Called after each step with the step index and the current latents.
public typealias StepCallback = (_ step: Int, _ x: [Float]) throws -> Void

/// k-diffusion's samplers over a σ list ending in 0, with A1111's `to_d`.
public enum KSamplers {
    public static func euler(_ model: Denoise, _ x0: [Float], sigmas: [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i] * (0 + 1)
            let den = try model(x, s)
            let dt = sigmas[i + 1] - s
            for j in x.indices { x[j] = x[j] + ((x[j] - den[j]) / s) * dt }
            try onStep(i, x)
        }
        return x
    }

    /// `get_ancestral_step` in float32.
    static func ancestral(_ from: Float, _ to: Float, eta: Float) -> (down: Float, up: Float) {
        if eta == 0 { return (to, 0) }
        let up = min(to, eta * ((to * to) * (from * from - to * to) / (from * from)).squareRoot())
        return ((to * to - up * up).squareRoot(), up)
    }

    public static func eulerAncestral(_ model: Denoise, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                      noise: () -> [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            let den = try model(x, s)
            let (down, up) = ancestral(s, sigmas[i + 1], eta: eta)
            let dt = down - s
            for j in x.indices { x[j] = x[j] + ((x[j] - den[j]) / s) * dt }
            if sigmas[i + 1] > 0 {
                let n = noise()
                for j in x.indices { x[j] = x[j] + (n[j] * sNoise) * up }
            }
            try onStep(i, x)
        }
        return x
    }

    public static func dpmpp2M(_ model: Denoise, _ x0: [Float], sigmas: [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        var old: [Float]?
        func t(_ s: Float) -> Float { -logf(s) }
        for i in 0..<(sigmas.count - 1) {
            let den = try model(x, sigmas[i])
            let ti = t(sigmas[i]), tn = t(sigmas[i + 1])
            let h = tn - ti
            let ratio = expf(-tn) / expf(-ti)
            let c = expm1f(-h)
            if let old, sigmas[i + 1] != 0 {
                let r = (ti - t(sigmas[i - 1])) / h
                let a = 1 + 1 / (2 * r), b = 1 / (2 * r)
                for j in x.indices { x[j] = ratio * x[j] - c * (a * den[j] - b * old[j]) }
            } else {
                for j in x.indices { x[j] = ratio * x[j] - c * den[j] }
            }
            old = den
            try onStep(i, x)
        }
        return x
    }
}

/// A1111's own DDIM (`sd_samplers_timesteps_impl.ddim`): timesteps `range(0, 1000, 1000/steps) + 1`,
/// CFG on ε, `len(timesteps) − 1` UNet calls, a noise block drawn every step (× σ_t = 0 at η 0).
public enum DDIMSampler {
    public static func timesteps(steps: Int) -> [Int] {
        Array(stride(from: 0, to: 1000, by: max(1, 1000 / steps))).map { min(max($0 + 1, 0), 999) }
    }

    /// `eps(x, t)` returns the CFG-combined ε at integer timestep t.
    public static func sample(eps: (_ x: [Float], _ t: Int) throws -> [Float], _ x0: [Float], timesteps ts: [Int],
                              alphasCumprod ac: [Float], eta: Double = 0, noise: () -> [Float],
                              onStep: StepCallback) throws -> [Float] {
        var x = x0
        let alphas = ts.map { ac[$0] }
        let alphasPrev = ([0] + ts.dropLast()).map { Double(ac[$0]) }
        for i in 0..<(ts.count - 1) {
            let idx = ts.count - 1 - i
            let e = try eps(x, ts[idx])
            let at = alphas[idx]
            let aPrev = Float(alphasPrev[idx])
            let sig64 = eta * ((1 - alphasPrev[idx]) / Double(1 - at) * Double(1 - at / Float(alphasPrev[idx]))).squareRoot()
            let sigma = Float(sig64)
            let sqrt1m = (1 - at).squareRoot()
            let sqrtAt = at.squareRoot(), sqrtPrev = aPrev.squareRoot()
            let dirCoef = (1 - aPrev - sigma * sigma).squareRoot()
            let n = noise()
            for j in x.indices {
                let pred = (x[j] - sqrt1m * e[j]) / sqrtAt
                x[j] = sqrtPrev * pred + dirCoef * e[j] + sigma * n[j]
            }
            try onStep(i, x)
        }
        return x
    }
}
