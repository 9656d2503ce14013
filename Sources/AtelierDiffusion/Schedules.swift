import Foundation

/// k-diffusion's `DiscreteSchedule` over the model's 1000 training sigmas, in float32 as
/// PyTorch computes it: σ_t = √((1 − ᾱ_t)/ᾱ_t).
public struct DiscreteSchedule: Sendable {
    public let alphasCumprod: [Float]
    public let sigmas: [Float]
    public let logSigmas: [Float]

    public init(alphasCumprod: [Float]) {
        self.alphasCumprod = alphasCumprod
        sigmas = alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
        logSigmas = sigmas.map { logf($0) }
    }

    public var sigmaMin: Float { sigmas.first! }
    public var sigmaMax: Float { sigmas.last! }

    /// Continuous timestep for σ: log-σ interpolation between the two nearest training
    /// sigmas (no rounding), as `CompVisDenoiser.sigma_to_t`.
    public func sigmaToT(_ sigma: Float) -> Float {
        let ls = logf(sigma)
        var low = 0
        for (i, v) in logSigmas.enumerated() where ls - v >= 0 { low = i }
        low = min(low, logSigmas.count - 2)
        let lo = logSigmas[low], hi = logSigmas[low + 1]
        var w = (lo - ls) / (lo - hi)
        w = min(max(w, 0), 1)
        return (1 - w) * Float(low) + w * Float(low + 1)
    }

    public func tToSigma(_ t: Float) -> Float {
        let low = Int(t.rounded(.down)), high = Int(t.rounded(.up))
        let w = t - t.rounded(.down)
        return expf((1 - w) * logSigmas[low] + w * logSigmas[high])
    }
}

/// `torch.linspace(start, end, n)` in float32: the first half counts up from `start`,
/// the second half down from `end`.
func linspace(_ start: Float, _ end: Float, _ n: Int) -> [Float] {
    if n == 1 { return [start] }
    let step = (end - start) / Float(n - 1)
    let half = n / 2
    return (0..<n).map { i in i < half ? start + step * Float(i) : end - step * Float(n - i - 1) }
}

/// A1111's schedule types (the "Schedule type" menu).
public enum Scheduler: String, CaseIterable, Sendable, Codable {
    case automatic = "Automatic"
    case uniform = "Uniform"
    case karras = "Karras"
    case exponential = "Exponential"

    /// Accepts A1111's labels and its lower-case names (`karras`, `exponential`, …).
    public init?(label: String) {
        let key = label.lowercased().replacingOccurrences(of: " ", with: "_")
        guard let s = Self.allCases.first(where: { $0.rawValue.lowercased() == key }) else { return nil }
        self = s
    }

    /// The σ list for `steps` steps, ending in 0.
    public func sigmas(steps: Int, schedule m: DiscreteSchedule) -> [Float] {
        switch self {
        case .automatic, .uniform:
            return linspace(Float(m.sigmas.count - 1), 0, steps).map { m.tToSigma($0) } + [0]
        case .karras:
            let rho: Double = 7
            let lo = Double(m.sigmaMin).pow(1 / rho), hi = Double(m.sigmaMax).pow(1 / rho)
            let ramp = linspace(0, 1, steps)
            let (fhi, fd) = (Float(hi), Float(lo - hi))
            return ramp.map { powf(fhi + $0 * fd, Float(rho)) } + [0]
        case .exponential:
            let a = Float(Foundation.log(Double(m.sigmaMax))), b = Float(Foundation.log(Double(m.sigmaMin)))
            return linspace(a, b, steps).map { expf($0) } + [0]
        }
    }
}

extension Double {
    func pow(_ e: Double) -> Double { Foundation.pow(self, e) }
}
