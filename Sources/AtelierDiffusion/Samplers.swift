import Foundation

/// A1111's samplers (the names of its `/samplers` list) that Atelier has.
public enum Sampler: String, CaseIterable, Sendable, Codable {
    // in the order of A1111 1.10's `/samplers` list
    case dpmpp2m = "DPM++ 2M"
    case dpmppSDE = "DPM++ SDE"
    case dpmpp2mSDE = "DPM++ 2M SDE"
    case dpmpp2mSDEHeun = "DPM++ 2M SDE Heun"
    case dpmpp2sA = "DPM++ 2S a"
    case dpmpp3mSDE = "DPM++ 3M SDE"
    case eulerA = "Euler a"
    case euler = "Euler"
    case lms = "LMS"
    case heun = "Heun"
    case dpm2 = "DPM2"
    case dpm2A = "DPM2 a"
    case dpmFast = "DPM fast"
    case dpmAdaptive = "DPM adaptive"
    case restart = "Restart"
    case ddim = "DDIM"
    case ddimCFGpp = "DDIM CFG++"
    case plms = "PLMS"
    case uniPC = "UniPC"
    case lcm = "LCM"

    public var aliases: [String] {
        switch self {
        case .dpmpp2m: ["k_dpmpp_2m"]
        case .dpmppSDE: ["k_dpmpp_sde"]
        case .dpmpp2mSDE: ["k_dpmpp_2m_sde"]
        case .dpmpp2mSDEHeun: ["k_dpmpp_2m_sde_heun"]
        case .dpmpp2sA: ["k_dpmpp_2s_a"]
        case .dpmpp3mSDE: ["k_dpmpp_3m_sde"]
        case .eulerA: ["k_euler_a", "k_euler_ancestral"]
        case .euler: ["k_euler"]
        case .lms: ["k_lms"]
        case .heun: ["k_heun"]
        case .dpm2: ["k_dpm_2"]
        case .dpm2A: ["k_dpm_2_a"]
        case .dpmFast: ["k_dpm_fast"]
        case .dpmAdaptive: ["k_dpm_ad"]
        case .restart: ["restart"]
        case .ddim: ["ddim"]
        case .ddimCFGpp: ["ddim_cfgpp"]
        case .plms: ["plms"]
        case .uniPC: ["unipc"]
        case .lcm: ["k_lcm"]
        }
    }

    /// A1111's timestep samplers (`sd_samplers_timesteps`): ε on integer timesteps, no σ schedule.
    public var isTimestepSampler: Bool { self == .ddim || self == .ddimCFGpp || self == .plms || self == .uniPC }

    /// The schedule "Automatic" stands for (nil: the model's own `get_sigmas`, i.e. Uniform).
    public var defaultScheduler: Scheduler? {
        switch self {
        case .dpmpp2m, .dpmppSDE, .dpmpp2sA, .dpm2, .dpm2A, .restart: .karras
        case .dpmpp2mSDE, .dpmpp2mSDEHeun, .dpmpp3mSDE: .exponential
        default: nil
        }
    }

    /// DPM2, DPM2 a and DPM++ 3M SDE make the schedule for steps + 1 and drop the penultimate σ.
    public var discardsPenultimateSigma: Bool { self == .dpm2 || self == .dpm2A || self == .dpmpp3mSDE }

    /// Whether the sampler draws image-stream noise (so `eta_noise_seed_delta` is written to the infotext).
    public var usesENSD: Bool { self == .eulerA || self == .dpm2A || self == .dpmpp2sA || self == .dpmFast || self == .dpmAdaptive }

    /// Evaluates the model twice per step.
    public var secondOrder: Bool {
        self == .heun || self == .dpm2 || self == .dpm2A || self == .dpmpp2sA || self == .restart || self == .dpmppSDE
    }

    /// Which eta a sampler takes (A1111's `eta_option_field`): the k-diffusion samplers with an
    /// `eta` parameter take `eta_ancestral` (default 1, infotext "Eta"), DDIM and DDIM CFG++
    /// `eta_ddim` (default 0, "Eta DDIM"); nil for samplers without one.
    public enum EtaKind: Sendable { case ancestral, ddim }
    public var etaKind: EtaKind? {
        if ancestral { return .ancestral }
        return self == .ddim || self == .ddimCFGpp ? .ddim : nil
    }

    /// Has an `eta` parameter (k-diffusion's signature), so A1111 passes `eta_ancestral` and
    /// writes `Eta` to the infotext when it is not 1.
    public var ancestral: Bool {
        switch self {
        case .eulerA, .dpm2A, .dpmpp2sA, .dpmFast, .dpmAdaptive, .dpmppSDE, .dpmpp2mSDE, .dpmpp2mSDEHeun, .dpmpp3mSDE: true
        default: false
        }
    }

    /// Draws its noise from k-diffusion's Brownian tree (torchsde), seeded by the image seeds.
    public var brownianNoise: Bool { self == .dpmppSDE || self == .dpmpp2mSDE || self == .dpmpp2mSDEHeun || self == .dpmpp3mSDE }

    /// A1111's `/samplers` options object (values as its pydantic model gives them: `str(True)` = "True").
    public var options: [String: String] {
        var o: [String: String] = [:]
        if let d = defaultScheduler { o["scheduler"] = d.name }
        if discardsPenultimateSigma { o["discard_next_to_last_sigma"] = "True" }
        if usesENSD { o["uses_ensd"] = "True" }
        if brownianNoise { o["brownian_noise"] = "True" }
        if self == .dpmpp2mSDEHeun { o["solver_type"] = "heun" }
        if secondOrder { o["second_order"] = "True" }
        return o
    }

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
    /// `sample_euler` with A1111's churn options (`noise` is drawn every step, as A1111 does).
    public static func euler(_ model: Denoise, _ x0: [Float], sigmas: [Float], churn: Churn = Churn(), noise: () -> [Float],
                             onStep: StepCallback) throws -> [Float] {
        var x = x0
        let n = sigmas.count - 1
        for i in 0..<n {
            let s = churn.apply(&x, sigma: sigmas[i], steps: n, noise: noise())
            x = eulerStep(x, den: try model(x, s), from: s, to: sigmas[i + 1])
            try onStep(i, x)
        }
        return x
    }

    /// k-diffusion's `to_d` as A1111 replaces it: `(x − denoised) / σ`.
    @inline(__always)
    static func toD(_ x: [Float], _ den: [Float], _ s: Float) -> [Float] {
        x.indices.map { (x[$0] - den[$0]) / s }
    }

    /// An Euler step from σ `s` to `target`: `x + to_d · (target − s)`.
    @inline(__always)
    static func eulerStep(_ x: [Float], den: [Float], from s: Float, to target: Float) -> [Float] {
        let dt = target - s
        return x.indices.map { x[$0] + ((x[$0] - den[$0]) / s) * dt }
    }

    /// Ancestral noise: `x + noise · s_noise · σ_up`, one draw from the image stream.
    @inline(__always)
    static func addNoise(_ x: inout [Float], _ n: [Float], sNoise: Float = 1, up: Float) {
        for j in x.indices { x[j] = x[j] + (n[j] * sNoise) * up }
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
            x = eulerStep(x, den: den, from: s, to: down)
            if sigmas[i + 1] > 0 { addNoise(&x, noise(), sNoise: sNoise, up: up) }
            try onStep(i, x)
        }
        return x
    }

    /// A Heun step from σ `s` (denoised `den` known) to `target`: Euler when the target is 0,
    /// else the average of the slopes at both ends (Heun, and each segment step of Restart).
    static func heunStep(_ model: Denoise, _ x: [Float], den: [Float], from s: Float, to target: Float) throws -> [Float] {
        if target == 0 { return eulerStep(x, den: den, from: s, to: target) }
        let dt = target - s
        let d = toD(x, den, s)
        let x2 = eulerStep(x, den: den, from: s, to: target)
        let den2 = try model(x2, target)
        return x.indices.map { j in x[j] + ((d[j] + (x2[j] - den2[j]) / target) / 2) * dt }
    }

    public static func heun(_ model: Denoise, _ x0: [Float], sigmas: [Float], churn: Churn = Churn(), noise: () -> [Float],
                            onStep: StepCallback) throws -> [Float] {
        var x = x0
        let n = sigmas.count - 1
        for i in 0..<n {
            let s = churn.apply(&x, sigma: sigmas[i], steps: n, noise: noise())
            x = try heunStep(model, x, den: try model(x, s), from: s, to: sigmas[i + 1])
            try onStep(i, x)
        }
        return x
    }

    /// `exp(lerp(log a, log b, 0.5))` as PyTorch's lerp computes it for weight 0.5.
    static func logMidpoint(_ a: Float, _ b: Float) -> Float {
        let la = logf(a), lb = logf(b)
        return expf(lb - (lb - la) * 0.5)
    }

    /// One DPM2 step from σ `s` (denoised `den` already known) to `target`: Euler when the
    /// target is 0, else the midpoint (in log σ) rule.
    static func dpm2Step(_ model: Denoise, _ x: [Float], den: [Float], from s: Float, to target: Float) throws -> [Float] {
        if target == 0 { return eulerStep(x, den: den, from: s, to: target) }
        let mid = logMidpoint(s, target)
        let x2 = eulerStep(x, den: den, from: s, to: mid)
        let den2 = try model(x2, mid)
        return x.indices.map { x[$0] + ((x2[$0] - den2[$0]) / mid) * (target - s) }
    }

    public static func dpm2(_ model: Denoise, _ x0: [Float], sigmas: [Float], churn: Churn = Churn(), noise: () -> [Float],
                            onStep: StepCallback) throws -> [Float] {
        var x = x0
        let n = sigmas.count - 1
        for i in 0..<n {
            let s = churn.apply(&x, sigma: sigmas[i], steps: n, noise: noise())
            x = try dpm2Step(model, x, den: try model(x, s), from: s, to: sigmas[i + 1])
            try onStep(i, x)
        }
        return x
    }

    public static func dpm2Ancestral(_ model: Denoise, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                     noise: () -> [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            let den = try model(x, s)
            let (down, up) = ancestral(s, sigmas[i + 1], eta: eta)
            x = try dpm2Step(model, x, den: den, from: s, to: down)
            if down != 0 { addNoise(&x, noise(), sNoise: sNoise, up: up) }
            try onStep(i, x)
        }
        return x
    }

    /// k-diffusion's `linear_multistep_coeff`: ∫ of the Lagrange basis polynomial over
    /// [t_i, t_i+1], integrated exactly (Gauss–Legendre, exact for these degrees).
    static func lmsCoefficient(order: Int, t: [Double], i: Int, j: Int) -> Double {
        let nodes = [-0.861_136_311_594_052_6, -0.339_981_043_584_856_3, 0.339_981_043_584_856_3, 0.861_136_311_594_052_6]
        let weights = [0.347_854_845_137_453_9, 0.652_145_154_862_546_1, 0.652_145_154_862_546_1, 0.347_854_845_137_453_9]
        let (a, b) = (t[i], t[i + 1])
        var sum = 0.0
        for (xn, w) in zip(nodes, weights) {
            let tau = (b - a) / 2 * xn + (a + b) / 2
            var p = 1.0
            for k in 0..<order where k != j { p *= (tau - t[i - k]) / (t[i - j] - t[i - k]) }
            sum += w * p
        }
        return sum * (b - a) / 2
    }

    public static func lms(_ model: Denoise, _ x0: [Float], sigmas: [Float], order: Int = 4, onStep: StepCallback) throws -> [Float] {
        var x = x0
        let t = sigmas.map(Double.init)
        var ds: [[Float]] = []
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            let den = try model(x, s)
            ds.append(toD(x, den, s))
            if ds.count > order { ds.removeFirst() }
            let cur = min(i + 1, order)
            let coeffs = (0..<cur).map { Float(lmsCoefficient(order: cur, t: t, i: i, j: $0)) }
            var acc = [Float](repeating: 0, count: x.count)
            for (k, d) in zip(coeffs, ds.reversed()) {
                for j in acc.indices { acc[j] = acc[j] + k * d[j] }
            }
            for j in x.indices { x[j] = x[j] + acc[j] }
            try onStep(i, x)
        }
        return x
    }

    public static func dpmpp2SAncestral(_ model: Denoise, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                        noise: () -> [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        func t(_ s: Float) -> Float { -logf(s) }
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            let den = try model(x, s)
            let (down, up) = ancestral(s, sigmas[i + 1], eta: eta)
            if down == 0 {
                x = eulerStep(x, den: den, from: s, to: down)
            } else {
                let ti = t(s), tn = t(down)
                let h = tn - ti
                let sm = ti + 0.5 * h
                let r1 = expf(-sm) / expf(-ti), c1 = expm1f(-h * 0.5)
                let x2 = x.indices.map { r1 * x[$0] - c1 * den[$0] }
                let den2 = try model(x2, expf(-sm))
                let r2 = expf(-tn) / expf(-ti), c2 = expm1f(-h)
                for j in x.indices { x[j] = r2 * x[j] - c2 * den2[j] }
            }
            if sigmas[i + 1] > 0 { addNoise(&x, noise(), sNoise: sNoise, up: up) }
            try onStep(i, x)
        }
        return x
    }

    /// A1111's Restart sampler (`restart_sampler`) with its automatic restart list: from 20
    /// steps on the schedule becomes Karras over `steps − 9·k` steps (k = 1, or 2 restarts of
    /// steps/4 from 36 steps), and a restart segment goes back up from the σ nearest 0.1 to the
    /// one nearest 2, re-noising with `√(new² − old²)` of image-stream noise. Heun steps.
    public static func restart(_ model: Denoise, _ x0: [Float], sigmas given: [Float], sNoise: Float = 1,
                               noise: () -> [Float], onStep: StepCallback) throws -> [Float] {
        var sigmas = given
        let steps = sigmas.count - 1
        var restarts: [(at: Float, steps: Int, times: Int, max: Float)] = []
        if steps >= 20 {
            var (rSteps, rTimes) = (9, 1)
            if steps >= 36 { (rSteps, rTimes) = (steps / 4, 2) }
            sigmas = Scheduler.karras(n: steps - rSteps * rTimes, smin: Double(sigmas[sigmas.count - 2]), smax: Double(sigmas[0]))
            restarts = [(0.1, rSteps + 1, rTimes, 2)]
        }
        func nearest(_ v: Float) -> Int {
            var best = 0
            for i in sigmas.indices where abs(sigmas[i] - v) < abs(sigmas[best] - v) { best = i }
            return best
        }
        let list = Dictionary(restarts.map { (nearest($0.at), $0) }, uniquingKeysWith: { a, _ in a })
        var pairs: [(Float, Float)] = []
        for i in 0..<(sigmas.count - 1) {
            pairs.append((sigmas[i], sigmas[i + 1]))
            if let r = list[i + 1] {
                let lo = i + 1, hi = nearest(r.max)
                if hi < lo {
                    let sr = Array(Scheduler.karras(n: r.steps, smin: Double(sigmas[lo]), smax: Double(sigmas[hi])).dropLast())
                    for _ in 0..<r.times { pairs += zip(sr.dropLast(), sr.dropFirst()).map { ($0, $1) } }
                }
            }
        }
        var x = x0
        var last: Float?
        for (k, (old, new)) in pairs.enumerated() {
            if let l = last, l < old { addNoise(&x, noise(), sNoise: sNoise, up: (old * old - l * l).squareRoot()) }
            x = try heunStep(model, x, den: try model(x, old), from: old, to: new)
            last = new
            try onStep(k, x)
        }
        return x
    }

    /// LCM: the denoised latents, re-noised to the next σ with a fresh image-stream draw.
    public static func lcm(_ model: Denoise, _ x0: [Float], sigmas: [Float], noise: () -> [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        for i in 0..<(sigmas.count - 1) {
            x = try model(x, sigmas[i])
            if sigmas[i + 1] > 0 {
                let n = noise()
                for j in x.indices { x[j] = x[j] + sigmas[i + 1] * n[j] }
            }
            try onStep(i, x)
        }
        return x
    }

    /// k-diffusion's `sample_dpm_fast` (DPM-Solver, `n` model calls between σ_max and σ_min on
    /// t = −log σ: orders 3, 3, …, then 2, 1 or n mod 3); with eta (A1111 passes its ancestral eta,
    /// default 1) each step lands below the target and adds image-stream noise — a draw is made
    /// every step, also at eta 0 (× 0).
    public static func dpmFast(_ model: Denoise, _ x0: [Float], sigmaMin: Float, sigmaMax: Float, n: Int, eta: Float = 1,
                               sNoise: Float = 1, noise: () -> [Float], onStep: StepCallback) throws -> [Float] {
        let sig = DPMSolverStep.sigma
        let tStart = -logf(sigmaMax), tEnd = -logf(sigmaMin)
        let m = n / 3 + 1
        let ts = linspace(tStart, tEnd, m + 1)
        let orders = n % 3 == 0 ? Array(repeating: 3, count: max(m - 2, 0)) + [2, 1] : Array(repeating: 3, count: m - 1) + [n % 3]
        var x = x0
        func eps(_ x: [Float], _ t: Float) throws -> [Float] { try DPMSolverStep.epsilon(model, x, t) }
        for (i, order) in orders.enumerated() {
            let t = ts[i], tn = ts[i + 1]
            var target = tn, up: Float = 0
            if eta != 0 {
                let (down, _) = ancestral(sig(t), sig(tn), eta: eta)
                target = min(tEnd, -logf(down))
                let a = sig(tn), b = sig(target)
                up = max(a * a - b * b, 0).squareRoot()  // 0 on the last step (never a NaN)
            }
            let step = DPMSolverStep(x: x, e: try eps(x, t), t: t, target: target)
            switch order {
            case 1:
                x = step.order1()
            case 2:
                let r1: Float = 0.5
                x = step.order2(e1: try step.stage(r1, eps), r1: r1)
            default:
                x = try step.order3(e1: try step.stage(DPMSolverStep.third, eps), eps)
            }
            let n = noise()
            let f = up * sNoise
            for j in x.indices { x[j] = x[j] + f * n[j] }
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

    /// `eps(x, t)` returns the CFG-combined ε at integer timestep t and the negative prompt's ε;
    /// DDIM CFG++ (`cfgpp`) points the direction term along the negative prompt's ε.
    public static func sample(eps: (_ x: [Float], _ t: Int) throws -> (combined: [Float], uncond: [Float]), _ x0: [Float], timesteps ts: [Int],
                              alphasCumprod ac: [Float], eta: Double = 0, cfgpp: Bool = false, noise: () -> [Float],
                              onStep: StepCallback) throws -> [Float] {
        var x = x0
        let alphas = ts.map { ac[$0] }
        let alphasPrev = ([0] + ts.dropLast()).map { Double(ac[$0]) }
        for i in 0..<(ts.count - 1) {
            let idx = ts.count - 1 - i
            let (e, u) = try eps(x, ts[idx])
            let dir = cfgpp ? u : e
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
                x[j] = sqrtPrev * pred + dirCoef * dir[j] + sigma * n[j]
            }
            try onStep(i, x)
        }
        return x
    }

    /// A1111's PLMS (`sd_samplers_timesteps_impl.plms`): a pseudo-improved Euler first step
    /// (two model calls), then Adams–Bashforth of orders 2, 3, 4 on ε.
    public static func plms(eps: (_ x: [Float], _ t: Int) throws -> [Float], _ x0: [Float], timesteps ts: [Int],
                            alphasCumprod ac: [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0
        let alphas = ts.map { ac[$0] }
        let alphasPrev = ([0] + ts.dropLast()).map { Float(Double(ac[$0])) }
        func prev(_ x: [Float], _ e: [Float], _ idx: Int) -> [Float] {
            let at = alphas[idx], aPrev = alphasPrev[idx]
            let sqrt1m = (1 - at).squareRoot(), sqrtAt = at.squareRoot(), sqrtPrev = aPrev.squareRoot(), dirCoef = (1 - aPrev).squareRoot()
            return x.indices.map { j in sqrtPrev * ((x[j] - sqrt1m * e[j]) / sqrtAt) + dirCoef * e[j] }
        }
        var old: [[Float]] = []
        for i in 0..<(ts.count - 1) {
            let idx = ts.count - 1 - i
            let e = try eps(x, ts[idx])
            var ep: [Float]
            switch old.count {
            case 0:
                let xp = prev(x, e, idx)
                let en = try eps(xp, ts[max(idx - 1, 0)])
                ep = e.indices.map { (e[$0] + en[$0]) / 2 }
            case 1:
                ep = e.indices.map { (3 * e[$0] - old[0][$0]) / 2 }
            case 2:
                ep = e.indices.map { (23 * e[$0] - 16 * old[1][$0] + 5 * old[0][$0]) / 12 }
            default:
                let n = old.count
                ep = e.indices.map { (55 * e[$0] - 59 * old[n - 1][$0] + 37 * old[n - 2][$0] - 9 * old[n - 3][$0]) / 24 }
            }
            x = prev(x, ep, idx)
            old.append(e)
            if old.count >= 4 { old.removeFirst() }
            try onStep(i, x)
        }
        return x
    }
}

/// One step of k-diffusion's `DPMSolver` (DPM fast, DPM adaptive) from t to `target` on
/// t = −log σ, with ε(x, t) = (x − denoised(x, σ(t)))/σ(t) known at the start: the r1 stage
/// (shared by DPM adaptive's order-2 and order-3 updates) and each order's update, in k-diffusion's
/// float32 operation order.
struct DPMSolverStep {
    let x: [Float], e: [Float], t: Float, target: Float
    let h: Float, sn: Float, em: Float

    init(x: [Float], e: [Float], t: Float, target: Float) {
        self.x = x; self.e = e; self.t = t; self.target = target
        h = target - t
        sn = Self.sigma(target)
        em = expm1f(h)
    }

    static func sigma(_ t: Float) -> Float { expf(-t) }
    static let third = Float(1.0 / 3.0), twoThirds = Float(2.0 / 3.0)

    /// ε at t: `(x − denoised(x, σ(t))) / σ(t)`
    static func epsilon(_ model: Denoise, _ x: [Float], _ t: Float) throws -> [Float] {
        let s = sigma(t)
        let den = try model(x, s)
        return x.indices.map { (x[$0] - den[$0]) / s }
    }

    /// ε at s1 = t + r·h of `u1 = x − σ(s1)·expm1(r·h)·ε`.
    func stage(_ r: Float, _ eps: (_ x: [Float], _ t: Float) throws -> [Float]) throws -> [Float] {
        let s1 = t + r * h
        let k1 = Self.sigma(s1) * expm1f(r * h)
        return try eps(x.indices.map { x[$0] - k1 * e[$0] }, s1)
    }

    /// DPM-Solver-1: `x − σ(t')·expm1(h)·ε`.
    func order1() -> [Float] {
        let k = sn * em
        return x.indices.map { x[$0] - k * e[$0] }
    }

    /// DPM-Solver-2 from the r1 stage's ε.
    func order2(e1: [Float], r1: Float) -> [Float] {
        let a = sn * em, b = (sn / (2 * r1)) * em
        return x.indices.map { (x[$0] - a * e[$0]) - b * (e1[$0] - e[$0]) }
    }

    /// DPM-Solver-3 (r1 = 1/3, r2 = 2/3) from the r1 stage's ε; evaluates the r2 stage.
    func order3(e1: [Float], _ eps: (_ x: [Float], _ t: Float) throws -> [Float]) throws -> [Float] {
        let (r1, r2) = (Self.third, Self.twoThirds)
        let s2 = t + r2 * h
        let em2 = expm1f(r2 * h)
        let a2 = Self.sigma(s2) * em2, b2 = (Self.sigma(s2) * (r2 / r1)) * (em2 / (r2 * h) - 1)
        let u2 = x.indices.map { (x[$0] - a2 * e[$0]) - b2 * (e1[$0] - e[$0]) }
        let e2 = try eps(u2, s2)
        let a = sn * em, b = (sn / r2) * (em / h - 1)
        return x.indices.map { (x[$0] - a * e[$0]) - b * (e2[$0] - e[$0]) }
    }
}
