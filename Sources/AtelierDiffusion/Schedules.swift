import Foundation

/// k-diffusion's `DiscreteSchedule` over the model's 1000 training sigmas, in float32 as
/// PyTorch computes it: σ_t = √((1 − ᾱ_t)/ᾱ_t).
public struct DiscreteSchedule: Sendable {
    public let alphasCumprod: [Float]
    public let sigmas: [Float]
    public let logSigmas: [Float]
    /// 1 for the model's schedule; 20 for LCM's grid of 50 of its timesteps (19, 39, …, 999)
    public let timestepSkip: Int

    public init(alphasCumprod: [Float]) {
        self.alphasCumprod = alphasCumprod
        sigmas = alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
        logSigmas = sigmas.map { logf($0) }
        timestepSkip = 1
    }

    /// A1111's `LCMCompVisDenoiser` schedule: 50 of the model's alphas (every 20th from 999 down),
    /// σ → t snapped to that grid (`t = 20k + 19`), t → σ interpolated on it.
    public init(lcmFrom alphasCumprod: [Float]) {
        let skip = 20
        let grid = (0..<50).map { k in alphasCumprod[999 - (49 - k) * skip] }
        self.alphasCumprod = grid
        sigmas = grid.map { ((1 - $0) / $0).squareRoot() }
        logSigmas = sigmas.map { logf($0) }
        timestepSkip = skip
    }

    public var sigmaMin: Float { sigmas.first! }
    public var sigmaMax: Float { sigmas.last! }

    /// Continuous timestep for σ: log-σ interpolation between the two nearest training
    /// sigmas (no rounding), as `CompVisDenoiser.sigma_to_t`.
    public func sigmaToT(_ sigma: Float) -> Float {
        let ls = logf(sigma)
        if timestepSkip > 1 {
            var best = 0
            for i in logSigmas.indices where abs(ls - logSigmas[i]) < abs(ls - logSigmas[best]) { best = i }
            return Float(best * timestepSkip + timestepSkip - 1)
        }
        var low = 0
        for (i, v) in logSigmas.enumerated() where ls - v >= 0 { low = i }
        low = min(low, logSigmas.count - 2)
        let lo = logSigmas[low], hi = logSigmas[low + 1]
        var w = (lo - ls) / (lo - hi)
        w = min(max(w, 0), 1)
        return (1 - w) * Float(low) + w * Float(low + 1)
    }

    public func tToSigma(_ t0: Float) -> Float {
        var t = t0
        if timestepSkip > 1 { t = min(max((t - Float(timestepSkip - 1)) / Float(timestepSkip), 0), Float(sigmas.count - 1)) }
        let low = Int(t.rounded(.down)), high = Int(t.rounded(.up))
        let w = t - t.rounded(.down)
        return expf((1 - w) * logSigmas[low] + w * logSigmas[high])
    }
}

/// `torch.linspace(start, end, n)` in float32 as PyTorch's CPU kernel computes it: the first
/// half counts up, `start + step·i`, the rest down, `end − step·(n−1−i)`, each one fused
/// multiply-add (a single rounding).
func linspace(_ start: Float, _ end: Float, _ n: Int) -> [Float] {
    if n == 1 { return [start] }
    let step = (end - start) / Float(n - 1)
    let half = n / 2
    return (0..<n).map { i in i < half ? fmaf(step, Float(i), start) : fmaf(-step, Float(n - i - 1), end) }
}

/// A1111's schedule types (the "Schedule type" menu), all 12 of 1.10.
public enum Scheduler: String, CaseIterable, Sendable, Codable {
    case automatic = "Automatic"
    case uniform = "Uniform"
    case karras = "Karras"
    case exponential = "Exponential"
    case polyexponential = "Polyexponential"
    case sgmUniform = "SGM Uniform"
    case klOptimal = "KL Optimal"
    case alignYourSteps = "Align Your Steps"
    case simple = "Simple"
    case normal = "Normal"
    case ddim = "DDIM"
    case beta = "Beta"

    /// A1111's internal name (`karras`, `sgm_uniform`, …).
    public var name: String { rawValue.lowercased().replacingOccurrences(of: " ", with: "_") }

    /// Accepts labels and names, case-insensitively, and the alias `SGMUniform`.
    public init?(label: String) {
        let key = label.trimmingCharacters(in: .whitespaces).lowercased().replacingOccurrences(of: " ", with: "_")
        if key == "sgmuniform" { self = .sgmUniform; return }
        guard let s = Self.allCases.first(where: { $0.name == key }) else { return nil }
        self = s
    }

    /// The schedule's ρ (A1111's `default_rho`), for those that have one.
    public var defaultRho: Double? { self == .karras ? 7 : (self == .polyexponential ? 1 : nil) }

    /// k-diffusion's `get_sigmas_karras` (ρ = 7 unless given) from `smax` down to `smin`, then 0.
    public static func karras(n: Int, smin: Double, smax: Double, rho: Double = 7) -> [Float] {
        let lo = smin.pow(1 / rho), hi = smax.pow(1 / rho)
        let (fhi, fd) = (Float(hi), Float(lo - hi))
        return linspace(0, 1, n).map { powf(fhi + $0 * fd, Float(rho)) } + [0]
    }

    /// The σ list for `steps` steps, ending in 0 (KL Optimal ends at σ_min, as in A1111 1.10).
    /// `sigmaMin` / `sigmaMax` / `rho` are A1111's option overrides (0: the model's / the schedule's
    /// own), applied as A1111 does: only to schedules that take them, only where they differ.
    public func sigmas(steps n: Int, schedule m: DiscreteSchedule, sigmaMin: Double = 0, sigmaMax: Double = 0, rho: Double = 0) -> [Float] {
        var o = SamplerOptions()
        (o.sigmaMin, o.sigmaMax, o.rho) = (sigmaMin, sigmaMax, rho)
        let given = o.overrides(self, model: m)
        let smin = given.min ?? Double(m.sigmaMin), smax = given.max ?? Double(m.sigmaMax)
        let (fmin, fmax) = (Float(smin), Float(smax))
        switch self {
        case .automatic, .uniform:
            if m.timestepSkip > 1 { return linspace(m.sigmaToT(m.sigmaMax), m.sigmaToT(m.sigmaMin), n).map { m.tToSigma($0) } + [0] }
            return linspace(Float(m.sigmas.count - 1), 0, n).map { m.tToSigma($0) } + [0]
        case .karras:
            return Self.karras(n: n, smin: smin, smax: smax, rho: given.rho ?? 7)
        case .exponential:
            return linspace(Float(Foundation.log(smax)), Float(Foundation.log(smin)), n).map { expf($0) } + [0]
        case .polyexponential:
            let d = Float(Foundation.log(smax) - Foundation.log(smin)), l = Float(Foundation.log(smin))
            let r = given.rho.map(Float.init)
            return linspace(1, 0, n).map { ramp in expf((r.map { powf(ramp, $0) } ?? ramp) * d + l) } + [0]
        case .sgmUniform, .normal:
            let t0 = m.sigmaToT(fmax), t1 = m.sigmaToT(fmin)
            let ts = self == .sgmUniform ? Array(linspace(t0, t1, n + 1).dropLast()) : linspace(t0, t1, n)
            return ts.map { m.tToSigma($0) } + [0]
        case .klOptimal:
            let aMin = atanf(fmin), aMax = atanf(fmax)
            return (0...n).map { k in
                let f = Float(k) / Float(n)
                return tanf(f * aMin + (1 - f) * aMax)
            }
        case .alignYourSteps:
            let table: [Double] = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
            if n == table.count { return table.map(Float.init) + [0] }
            let ys = table.reversed().map { Foundation.log($0) }
            let xs = numpyLinspace(table.count)
            let out = numpyLinspace(n).map { x -> Double in
                if x >= xs[xs.count - 1] { return exp(ys[ys.count - 1]) }
                var j = 0
                while j < xs.count - 2 && x >= xs[j + 1] { j += 1 }
                let slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
                return exp(slope * (x - xs[j]) + ys[j])
            }
            return out.reversed().map(Float.init) + [0]
        case .simple:
            let ss = Double(m.sigmas.count) / Double(n)
            return (0..<n).map { m.sigmas[m.sigmas.count - 1 - Int(Double($0) * ss)] } + [0]
        case .ddim:
            let ss = max(m.sigmas.count / n, 1)
            return Array(stride(from: 1, to: m.sigmas.count, by: ss).map { m.sigmas[$0] }.reversed()) + [0]
        case .beta:
            return numpyLinspace(n).map { x -> Float in
                Float(smin + BetaDistribution.quantile(1 - x, a: 0.6, b: 0.6) * (smax - smin))
            } + [0]
        }
    }
}

/// `np.linspace(0, 1, n)` in float64: `i · (1/(n−1))`, the last value exactly 1.
func numpyLinspace(_ n: Int) -> [Double] {
    guard n > 1 else { return [0] }
    let step = 1.0 / Double(n - 1)
    return (0..<n).map { $0 == n - 1 ? 1 : Double($0) * step }
}

/// The Beta distribution's quantile (scipy's `beta.ppf`), for the Beta schedule.
enum BetaDistribution {
    /// Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz), double precision.
    static func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let lbeta = lgamma(a + b) - lgamma(a) - lgamma(b)
        let front = exp(lbeta + a * Foundation.log(x) + b * Foundation.log(1 - x))
        if x > (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(1 - x, a: b, b: a) }
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < 1e-300 { d = 1e-300 }
        d = 1 / d
        var f = d
        for m in 1...500 {
            let md = Double(m)
            var num = md * (b - md) * x / ((a + 2 * md - 1) * (a + 2 * md))
            d = 1 + num * d; if abs(d) < 1e-300 { d = 1e-300 }
            c = 1 + num / c; if abs(c) < 1e-300 { c = 1e-300 }
            d = 1 / d; f *= d * c
            num = -(a + md) * (a + b + md) * x / ((a + 2 * md) * (a + 2 * md + 1))
            d = 1 + num * d; if abs(d) < 1e-300 { d = 1e-300 }
            c = 1 + num / c; if abs(c) < 1e-300 { c = 1e-300 }
            d = 1 / d
            let delta = d * c
            f *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return front * f / a
    }

    /// x with I_x(a, b) = p, by bisection to the last bit (the CDF is monotone).
    static func quantile(_ p: Double, a: Double, b: Double) -> Double {
        if p <= 0 { return 0 }
        if p >= 1 { return 1 }
        var lo = 0.0, hi = 1.0
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if mid == lo || mid == hi { break }
            if regularizedIncompleteBeta(mid, a: a, b: b) < p { lo = mid } else { hi = mid }
        }
        return (lo + hi) / 2
    }
}

extension Double {
    func pow(_ e: Double) -> Double { Foundation.pow(self, e) }
}
