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

/// The denoiser as samplers see it: latents and σ in, the denoised latents (CFG applied) written
/// into the caller's buffer — the samplers keep their buffers from step to step, so steps 2…N
/// allocate nothing.
public typealias DenoiseInto = (_ x: [Float], _ sigma: Float, _ denoised: inout [Float]) throws -> Void

/// The next image-stream noise block (k-diffusion's `randn_like`), written into the caller's buffer.
public typealias NoiseInto = (_ noise: inout [Float]) -> Void

/// Called after each step with the step index and the current latents.
public typealias StepCallback = (_ step: Int, _ x: [Float]) throws -> Void

/// k-diffusion's samplers over a σ list ending in 0, with A1111's `to_d`. Each updates its
/// latents in place and keeps every buffer across steps; the arithmetic is k-diffusion's, in its
/// float32 order.
public enum KSamplers {
    /// A buffer of `count` zeros (each call its own storage).
    @inline(__always) static func buffer(_ count: Int) -> [Float] { [Float](repeating: 0, count: count) }

    /// `sample_euler` with A1111's churn options (`noise` is drawn every step, as A1111 does).
    public static func euler(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], churn: Churn = Churn(), noise: NoiseInto,
                             onStep: StepCallback) throws -> [Float] {
        var x = x0, den = buffer(x0.count), n = buffer(x0.count)
        let steps = sigmas.count - 1
        for i in 0..<steps {
            noise(&n)
            let s = churn.apply(&x, sigma: sigmas[i], steps: steps, noise: n)
            try model(x, s, &den)
            eulerStep(&x, den: den, from: s, to: sigmas[i + 1])
            try onStep(i, x)
        }
        return x
    }

    /// An Euler step from σ `s` to `target`, in place: `x + to_d · (target − s)`.
    @inline(__always)
    static func eulerStep(_ x: inout [Float], den: [Float], from s: Float, to target: Float) {
        let dt = target - s
        for j in x.indices { x[j] = x[j] + ((x[j] - den[j]) / s) * dt }
    }

    /// The Euler step's result in `out`, `x` unchanged.
    @inline(__always)
    static func eulerStep(_ x: [Float], den: [Float], from s: Float, to target: Float, into out: inout [Float]) {
        let dt = target - s
        for j in x.indices { out[j] = x[j] + ((x[j] - den[j]) / s) * dt }
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

    public static func eulerAncestral(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                      noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        var x = x0, den = buffer(x0.count), n = buffer(x0.count)
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            try model(x, s, &den)
            let (down, up) = ancestral(s, sigmas[i + 1], eta: eta)
            eulerStep(&x, den: den, from: s, to: down)
            if sigmas[i + 1] > 0 {
                noise(&n)
                addNoise(&x, n, sNoise: sNoise, up: up)
            }
            try onStep(i, x)
        }
        return x
    }

    /// The buffers of a second-order step: the slope, the midpoint/endpoint latents and their denoised.
    struct SecondOrderBuffers {
        var d: [Float], x2: [Float], den2: [Float]
        init(_ count: Int) { d = buffer(count); x2 = buffer(count); den2 = buffer(count) }
    }

    /// A Heun step from σ `s` (denoised `den` known) to `target`, in place: Euler when the target
    /// is 0, else the average of the slopes at both ends (Heun, and each segment step of Restart).
    static func heunStep(_ model: DenoiseInto, _ x: inout [Float], den: [Float], from s: Float, to target: Float,
                         _ w: inout SecondOrderBuffers) throws {
        if target == 0 { return eulerStep(&x, den: den, from: s, to: target) }
        let dt = target - s
        for j in x.indices { w.d[j] = (x[j] - den[j]) / s }
        eulerStep(x, den: den, from: s, to: target, into: &w.x2)
        try model(w.x2, target, &w.den2)
        for j in x.indices { x[j] = x[j] + ((w.d[j] + (w.x2[j] - w.den2[j]) / target) / 2) * dt }
    }

    public static func heun(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], churn: Churn = Churn(), noise: NoiseInto,
                            onStep: StepCallback) throws -> [Float] {
        try churnedSecondOrder(model, x0, sigmas: sigmas, churn: churn, noise: noise, onStep: onStep, dpm2: false)
    }

    /// Heun's and DPM2's loop: A1111's churn (a draw every step), the model at σ̂, then a Heun or
    /// DPM2 step to the next σ.
    static func churnedSecondOrder(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], churn: Churn, noise: NoiseInto, onStep: StepCallback,
                                   dpm2: Bool) throws -> [Float] {
        var x = x0, den = buffer(x0.count), n = buffer(x0.count), w = SecondOrderBuffers(x0.count)
        let steps = sigmas.count - 1
        for i in 0..<steps {
            noise(&n)
            let s = churn.apply(&x, sigma: sigmas[i], steps: steps, noise: n)
            try model(x, s, &den)
            if dpm2 {
                try dpm2Step(model, &x, den: den, from: s, to: sigmas[i + 1], &w)
            } else {
                try heunStep(model, &x, den: den, from: s, to: sigmas[i + 1], &w)
            }
            try onStep(i, x)
        }
        return x
    }

    /// `exp(lerp(log a, log b, 0.5))` as PyTorch's lerp computes it for weight 0.5.
    static func logMidpoint(_ a: Float, _ b: Float) -> Float {
        let la = logf(a), lb = logf(b)
        return expf(lb - (lb - la) * 0.5)
    }

    /// One DPM2 step from σ `s` (denoised `den` already known) to `target`, in place: Euler when
    /// the target is 0, else the midpoint (in log σ) rule.
    static func dpm2Step(_ model: DenoiseInto, _ x: inout [Float], den: [Float], from s: Float, to target: Float,
                         _ w: inout SecondOrderBuffers) throws {
        if target == 0 { return eulerStep(&x, den: den, from: s, to: target) }
        let mid = logMidpoint(s, target)
        eulerStep(x, den: den, from: s, to: mid, into: &w.x2)
        try model(w.x2, mid, &w.den2)
        for j in x.indices { x[j] = x[j] + ((w.x2[j] - w.den2[j]) / mid) * (target - s) }
    }

    public static func dpm2(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], churn: Churn = Churn(), noise: NoiseInto,
                            onStep: StepCallback) throws -> [Float] {
        try churnedSecondOrder(model, x0, sigmas: sigmas, churn: churn, noise: noise, onStep: onStep, dpm2: true)
    }

    public static func dpm2Ancestral(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                     noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        var x = x0, den = buffer(x0.count), n = buffer(x0.count), w = SecondOrderBuffers(x0.count)
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            try model(x, s, &den)
            let (down, up) = ancestral(s, sigmas[i + 1], eta: eta)
            try dpm2Step(model, &x, den: den, from: s, to: down, &w)
            if down != 0 {
                noise(&n)
                addNoise(&x, n, sNoise: sNoise, up: up)
            }
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

    /// `sample_lms`: the last `order` slopes in a ring of buffers, newest weighted first.
    public static func lms(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], order: Int = 4, onStep: StepCallback) throws -> [Float] {
        var x = x0, den = buffer(x0.count), acc = buffer(x0.count)
        let t = sigmas.map(Double.init)
        var ring = (0..<order).map { _ in buffer(x0.count) }
        var coeffs = [Float](repeating: 0, count: order)
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            try model(x, s, &den)
            let slot = i % order
            for j in x.indices { ring[slot][j] = (x[j] - den[j]) / s }
            let cur = min(i + 1, order)
            for k in 0..<cur { coeffs[k] = Float(lmsCoefficient(order: cur, t: t, i: i, j: k)) }
            for j in acc.indices { acc[j] = 0 }
            // coefficient k goes with the slope of step i − k
            for k in 0..<cur {
                let c = coeffs[k], from = (i - k) % order
                for j in acc.indices { acc[j] = acc[j] + c * ring[from][j] }
            }
            for j in x.indices { x[j] = x[j] + acc[j] }
            try onStep(i, x)
        }
        return x
    }

    public static func dpmpp2SAncestral(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                        noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        var x = x0, den = buffer(x0.count), n = buffer(x0.count), w = SecondOrderBuffers(x0.count)
        func t(_ s: Float) -> Float { -logf(s) }
        for i in 0..<(sigmas.count - 1) {
            let s = sigmas[i]
            try model(x, s, &den)
            let (down, up) = ancestral(s, sigmas[i + 1], eta: eta)
            if down == 0 {
                eulerStep(&x, den: den, from: s, to: down)
            } else {
                let ti = t(s), tn = t(down)
                let h = tn - ti
                let sm = ti + 0.5 * h
                let r1 = expf(-sm) / expf(-ti), c1 = expm1f(-h * 0.5)
                for j in x.indices { w.x2[j] = r1 * x[j] - c1 * den[j] }
                try model(w.x2, expf(-sm), &w.den2)
                let r2 = expf(-tn) / expf(-ti), c2 = expm1f(-h)
                for j in x.indices { x[j] = r2 * x[j] - c2 * w.den2[j] }
            }
            if sigmas[i + 1] > 0 {
                noise(&n)
                addNoise(&x, n, sNoise: sNoise, up: up)
            }
            try onStep(i, x)
        }
        return x
    }

    /// A1111's Restart sampler (`restart_sampler`) with its automatic restart list: from 20
    /// steps on the schedule becomes Karras over `steps − 9·k` steps (k = 1, or 2 restarts of
    /// steps/4 from 36 steps), and a restart segment goes back up from the σ nearest 0.1 to the
    /// one nearest 2, re-noising with `√(new² − old²)` of image-stream noise. Heun steps.
    public static func restart(_ model: DenoiseInto, _ x0: [Float], sigmas given: [Float], sNoise: Float = 1,
                               noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
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
        var x = x0, den = buffer(x0.count), n = buffer(x0.count), w = SecondOrderBuffers(x0.count)
        var last: Float?
        for (k, (old, new)) in pairs.enumerated() {
            if let l = last, l < old {
                noise(&n)
                addNoise(&x, n, sNoise: sNoise, up: (old * old - l * l).squareRoot())
            }
            try model(x, old, &den)
            try heunStep(model, &x, den: den, from: old, to: new, &w)
            last = new
            try onStep(k, x)
        }
        return x
    }

    /// LCM: the denoised latents, re-noised to the next σ with a fresh image-stream draw.
    public static func lcm(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        // x gets buffers of its own: the two swap, and the caller's x0 must not come back as `den`
        var x = buffer(x0.count), den = buffer(x0.count), n = buffer(x0.count)
        for j in x.indices { x[j] = x0[j] }
        for i in 0..<(sigmas.count - 1) {
            try model(x, sigmas[i], &den)
            swap(&x, &den)  // x ← denoised; the old latents' buffer takes the next call's output
            if sigmas[i + 1] > 0 {
                noise(&n)
                for j in x.indices { x[j] = x[j] + sigmas[i + 1] * n[j] }
            }
            try onStep(i, x)
        }
        return x
    }

    /// `sample_dpmpp_2m`: the previous step's denoised kept in a second buffer (the two swap).
    public static func dpmpp2M(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], onStep: StepCallback) throws -> [Float] {
        var x = x0, den = buffer(x0.count), old = buffer(x0.count)
        func t(_ s: Float) -> Float { -logf(s) }
        for i in 0..<(sigmas.count - 1) {
            try model(x, sigmas[i], &den)
            let ti = t(sigmas[i]), tn = t(sigmas[i + 1])
            let h = tn - ti
            let ratio = expf(-tn) / expf(-ti)
            let c = expm1f(-h)
            if i > 0, sigmas[i + 1] != 0 {
                let r = (ti - t(sigmas[i - 1])) / h
                let a = 1 + 1 / (2 * r), b = 1 / (2 * r)
                for j in x.indices { x[j] = ratio * x[j] - c * (a * den[j] - b * old[j]) }
            } else {
                for j in x.indices { x[j] = ratio * x[j] - c * den[j] }
            }
            swap(&old, &den)
            try onStep(i, x)
        }
        return x
    }

    /// k-diffusion's `sample_dpm_fast` (DPM-Solver, `n` model calls between σ_max and σ_min on
    /// t = −log σ: orders 3, 3, …, then 2, 1 or n mod 3); with eta (A1111 passes its ancestral eta,
    /// default 1) each step lands below the target and adds image-stream noise — a draw is made
    /// every step, also at eta 0 (× 0).
    public static func dpmFast(_ model: DenoiseInto, _ x0: [Float], sigmaMin: Float, sigmaMax: Float, n: Int, eta: Float = 1,
                               sNoise: Float = 1, noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        let sig = DPMSolver.sigma
        let tStart = -logf(sigmaMax), tEnd = -logf(sigmaMin)
        let m = n / 3 + 1
        let ts = linspace(tStart, tEnd, m + 1)
        let orders = n % 3 == 0 ? Array(repeating: 3, count: max(m - 2, 0)) + [2, 1] : Array(repeating: 3, count: m - 1) + [n % 3]
        var x = x0, next = buffer(x0.count), draw = buffer(x0.count), solver = DPMSolver(count: x0.count)
        for (i, order) in orders.enumerated() {
            let t = ts[i], tn = ts[i + 1]
            var target = tn, up: Float = 0
            if eta != 0 {
                let (down, _) = ancestral(sig(t), sig(tn), eta: eta)
                target = min(tEnd, -logf(down))
                let a = sig(tn), b = sig(target)
                up = max(a * a - b * b, 0).squareRoot()  // 0 on the last step (never a NaN)
            }
            let step = DPMSolver.Step(t: t, target: target)
            try solver.start(model, x, step)
            switch order {
            case 1:
                solver.order1(x, step, into: &next)
            case 2:
                let r1: Float = 0.5
                try solver.stage(model, x, step, r: r1)
                solver.order2(x, step, r1: r1, into: &next)
            default:
                try solver.stage(model, x, step, r: DPMSolver.third)
                try solver.order3(model, x, step, into: &next)
            }
            noise(&draw)
            let f = up * sNoise
            for j in x.indices { x[j] = next[j] + f * draw[j] }
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

    /// `eps(x, t, &combined, &uncond)` writes the CFG-combined ε at integer timestep t and the
    /// negative prompt's ε; DDIM CFG++ (`cfgpp`) points the direction term along the negative
    /// prompt's ε. Buffers are kept across steps (no array per step).
    public static func sample(eps: (_ x: [Float], _ t: Int, _ combined: inout [Float], _ uncond: inout [Float]) throws -> Void,
                              _ x0: [Float], timesteps ts: [Int], alphasCumprod ac: [Float], eta: Double = 0, cfgpp: Bool = false,
                              noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        var x = x0, e = KSamplers.buffer(x0.count), u = KSamplers.buffer(x0.count), n = KSamplers.buffer(x0.count)
        let alphas = ts.map { ac[$0] }
        let alphasPrev = ([0] + ts.dropLast()).map { Double(ac[$0]) }
        for i in 0..<(ts.count - 1) {
            let idx = ts.count - 1 - i
            try eps(x, ts[idx], &e, &u)
            let at = alphas[idx]
            let aPrev = Float(alphasPrev[idx])
            let sig64 = eta * ((1 - alphasPrev[idx]) / Double(1 - at) * Double(1 - at / Float(alphasPrev[idx]))).squareRoot()
            let sigma = Float(sig64)
            let sqrt1m = (1 - at).squareRoot()
            let sqrtAt = at.squareRoot(), sqrtPrev = aPrev.squareRoot()
            let dirCoef = (1 - aPrev - sigma * sigma).squareRoot()
            noise(&n)
            for j in x.indices {
                let pred = (x[j] - sqrt1m * e[j]) / sqrtAt
                x[j] = sqrtPrev * pred + dirCoef * (cfgpp ? u[j] : e[j]) + sigma * n[j]
            }
            try onStep(i, x)
        }
        return x
    }

    /// A1111's PLMS (`sd_samplers_timesteps_impl.plms`): a pseudo-improved Euler first step
    /// (two model calls), then Adams–Bashforth of orders 2, 3, 4 on ε. The last three ε are kept
    /// in a ring of buffers.
    public static func plms(eps: (_ x: [Float], _ t: Int, _ out: inout [Float]) throws -> Void, _ x0: [Float], timesteps ts: [Int],
                            alphasCumprod ac: [Float], onStep: StepCallback) throws -> [Float] {
        let count = x0.count
        var x = x0, e = KSamplers.buffer(count), ep = KSamplers.buffer(count)
        var ring = (0..<3).map { _ in KSamplers.buffer(count) }
        let alphas = ts.map { ac[$0] }
        let alphasPrev = ([0] + ts.dropLast()).map { Float(Double(ac[$0])) }
        /// The coefficients of x at the previous timestep: `√ᾱ_prev·(x − √(1−ᾱ)·ε)/√ᾱ + √(1−ᾱ_prev)·ε`.
        func coefficients(_ idx: Int) -> (sqrt1m: Float, sqrtAt: Float, sqrtPrev: Float, dirCoef: Float) {
            let at = alphas[idx], aPrev = alphasPrev[idx]
            return ((1 - at).squareRoot(), at.squareRoot(), aPrev.squareRoot(), (1 - aPrev).squareRoot())
        }
        for i in 0..<(ts.count - 1) {
            let idx = ts.count - 1 - i
            try eps(x, ts[idx], &e)
            // ε of steps i − 1, i − 2, i − 3 (the newest first)
            let (n1, n2, n3) = ((i + 2) % 3, (i + 1) % 3, i % 3)
            switch min(i, 3) {
            case 0:
                // the first step's second evaluation: ep and ring[0] serve as x' and ε'
                let k = coefficients(idx)
                for j in x.indices { ep[j] = k.sqrtPrev * ((x[j] - k.sqrt1m * e[j]) / k.sqrtAt) + k.dirCoef * e[j] }
                try eps(ep, ts[max(idx - 1, 0)], &ring[0])
                for j in e.indices { ep[j] = (e[j] + ring[0][j]) / 2 }
            case 1:
                for j in e.indices { ep[j] = (3 * e[j] - ring[n1][j]) / 2 }
            case 2:
                for j in e.indices { ep[j] = (23 * e[j] - 16 * ring[n1][j] + 5 * ring[n2][j]) / 12 }
            default:
                for j in e.indices { ep[j] = (55 * e[j] - 59 * ring[n1][j] + 37 * ring[n2][j] - 9 * ring[n3][j]) / 24 }
            }
            let k = coefficients(idx)
            for j in x.indices { x[j] = k.sqrtPrev * ((x[j] - k.sqrt1m * ep[j]) / k.sqrtAt) + k.dirCoef * ep[j] }
            swap(&e, &ring[i % 3])  // this step's ε joins the ring; the oldest's buffer takes the next
            try onStep(i, x)
        }
        return x
    }
}

/// k-diffusion's `DPMSolver` (DPM fast, DPM adaptive) on t = −log σ, with
/// ε(x, t) = (x − denoised(x, σ(t)))/σ(t): ε at a step's start, its r1 stage (shared by DPM
/// adaptive's order-2 and order-3 updates) and each order's update, in k-diffusion's float32
/// operation order. The ε of the start and both stages, a stage's input and the denoised are
/// buffers kept from step to step.
struct DPMSolver {
    /// One step from t to `target`.
    struct Step {
        let t: Float, target: Float, h: Float, sn: Float, em: Float
        init(t: Float, target: Float) {
            self.t = t; self.target = target
            h = target - t
            sn = DPMSolver.sigma(target)
            em = expm1f(h)
        }
    }

    var e: [Float], e1: [Float], e2: [Float], u: [Float], den: [Float]

    init(count: Int) {
        (e, e1, e2, u, den) = (KSamplers.buffer(count), KSamplers.buffer(count), KSamplers.buffer(count),
                               KSamplers.buffer(count), KSamplers.buffer(count))
    }

    static func sigma(_ t: Float) -> Float { expf(-t) }
    static let third = Float(1.0 / 3.0), twoThirds = Float(2.0 / 3.0)

    /// ε at t of `x`: `(x − denoised(x, σ(t))) / σ(t)` into `out`.
    static func epsilon(_ model: DenoiseInto, _ x: [Float], _ t: Float, den: inout [Float], into out: inout [Float]) throws {
        let s = sigma(t)
        try model(x, s, &den)
        for j in x.indices { out[j] = (x[j] - den[j]) / s }
    }

    /// ε at the step's start into `e`.
    mutating func start(_ model: DenoiseInto, _ x: [Float], _ step: Step) throws {
        try Self.epsilon(model, x, step.t, den: &den, into: &e)
    }

    /// ε into `e1` at s1 = t + r·h of `u1 = x − σ(s1)·expm1(r·h)·ε`.
    mutating func stage(_ model: DenoiseInto, _ x: [Float], _ step: Step, r: Float) throws {
        let s1 = step.t + r * step.h
        let k1 = Self.sigma(s1) * expm1f(r * step.h)
        for j in x.indices { u[j] = x[j] - k1 * e[j] }
        try Self.epsilon(model, u, s1, den: &den, into: &e1)
    }

    /// DPM-Solver-1: `x − σ(t')·expm1(h)·ε`.
    func order1(_ x: [Float], _ step: Step, into out: inout [Float]) {
        let k = step.sn * step.em
        for j in x.indices { out[j] = x[j] - k * e[j] }
    }

    /// DPM-Solver-2 from the r1 stage's ε.
    func order2(_ x: [Float], _ step: Step, r1: Float, into out: inout [Float]) {
        let a = step.sn * step.em, b = (step.sn / (2 * r1)) * step.em
        for j in x.indices { out[j] = (x[j] - a * e[j]) - b * (e1[j] - e[j]) }
    }

    /// DPM-Solver-3 (r1 = 1/3, r2 = 2/3) from the r1 stage's ε; evaluates the r2 stage (into `e2`).
    mutating func order3(_ model: DenoiseInto, _ x: [Float], _ step: Step, into out: inout [Float]) throws {
        let (r1, r2, h) = (Self.third, Self.twoThirds, step.h)
        let s2 = step.t + r2 * h
        let em2 = expm1f(r2 * h)
        let a2 = Self.sigma(s2) * em2, b2 = (Self.sigma(s2) * (r2 / r1)) * (em2 / (r2 * h) - 1)
        for j in x.indices { u[j] = (x[j] - a2 * e[j]) - b2 * (e1[j] - e[j]) }
        try Self.epsilon(model, u, s2, den: &den, into: &e2)
        let a = step.sn * step.em, b = (step.sn / r2) * (step.em / h - 1)
        for j in x.indices { out[j] = (x[j] - a * e[j]) - b * (e2[j] - e[j]) }
    }
}
