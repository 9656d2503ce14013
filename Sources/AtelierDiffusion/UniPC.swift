import Foundation

/// A1111's UniPC (`modules/models/diffusion/uni_pc/uni_pc.py` as `sd_samplers_timesteps_impl.unipc`
/// calls it): multistep predictor–corrector with the B(h) = h variant "bh1", data prediction,
/// `time_uniform` steps over continuous t ∈ [1/N, 1] of `NoiseScheduleVP('discrete')`, order 3,
/// lower orders for the last steps, no corrector on the last step. One model call per step.
public enum UniPCSampler {
    /// `NoiseScheduleVP('discrete')`: log α(t) piecewise linear through t_n = (n+1)/N, log α_n = ½·log ᾱ_n.
    struct NoiseSchedule {
        let tArray: [Float]
        let logAlpha: [Float]

        init(alphasCumprod ac: [Float]) {
            tArray = Array(linspace(0, 1, ac.count + 1).dropFirst())
            logAlpha = ac.map { 0.5 * logf($0) }
        }

        /// `interpolate_fn`: the segment of the first keypoint not below t (the outer
        /// segments extrapolate), `y0 + (t − x0)·(y1 − y0)/(x1 − x0)` in float32.
        func logMeanCoeff(_ t: Float) -> Float {
            let k = tArray.count
            var lo = 0, hi = k  // j = number of keypoints strictly below t
            while lo < hi {
                let mid = (lo + hi) / 2
                if tArray[mid] < t { lo = mid + 1 } else { hi = mid }
            }
            let j = lo
            let i0 = j == 0 ? 0 : (j == k ? k - 2 : j - 1)
            let (sx, ex, sy, ey) = (tArray[i0], tArray[i0 + 1], logAlpha[i0], logAlpha[i0 + 1])
            return sy + ((t - sx) * (ey - sy)) / (ex - sx)
        }

        func lambda(_ t: Float) -> Float {
            let l = logMeanCoeff(t)
            return l - 0.5 * logf(1 - expf(2 * l))
        }

        func std(_ t: Float) -> Float { (1 - expf(2 * logMeanCoeff(t))).squareRoot() }
        func alpha(_ t: Float) -> Float { expf(logMeanCoeff(t)) }
    }

    /// The continuous times UniPC visits: `linspace(t_T, 1/N, steps + 1)`, t_T = 1 (txt2img) or
    /// `timesteps[-1]/1000 + 1/1000` of the img2img tail (A1111's own "likely off by a bit").
    public static func times(steps: Int, lastTimestep: Int?) -> [Float] {
        let tT: Float = lastTimestep.map { Float($0) / 1000 + Float(1.0 / 1000) } ?? 1
        return linspace(tT, Float(1.0 / 1000), steps + 1)
    }

    /// The timestep the UNet sees at continuous time t: `(t − 1/N) · 1000` (not an integer).
    public static func modelInputTime(_ t: Float) -> Float { (t - Float(1.0 / 1000)) * 1000 }

    /// `eps(x, t)` is the CFG-combined ε at the model input time t (a float timestep).
    public static func sample(eps: (_ x: [Float], _ t: Float) throws -> [Float], _ x0: [Float], steps: Int, lastTimestep: Int?,
                              alphasCumprod: [Float], order: Int = 3, lowerOrderFinal: Bool = true, onStep: StepCallback) throws -> [Float] {
        let ns = NoiseSchedule(alphasCumprod: alphasCumprod)
        let ts = times(steps: steps, lastTimestep: lastTimestep)
        /// data prediction: x₀ = (x − σ_t·ε) / α_t
        func model(_ x: [Float], _ t: Float) throws -> [Float] {
            let e = try eps(x, modelInputTime(t))
            let a = ns.alpha(t), s = ns.std(t)
            return x.indices.map { (x[$0] - s * e[$0]) / a }
        }
        /// `multistep_uni_pc_bh_update` (bh1, predict_x0) from the last `order` model outputs.
        func update(_ x: [Float], _ models: [[Float]], _ tPrev: [Float], _ t: Float, _ order: Int, corrector: Bool) throws -> ([Float], [Float]?) {
            let tp0 = tPrev[tPrev.count - 1], m0 = models[models.count - 1]
            let lp0 = ns.lambda(tp0), lt = ns.lambda(t)
            let sp0 = ns.std(tp0), st = ns.std(t)
            let alphaT = expf(ns.logMeanCoeff(t))
            let h = lt - lp0
            var rks: [Float] = [], d1s: [[Float]] = []
            for i in 1..<max(order, 1) {
                let mi = models[models.count - 1 - i]
                let rk = (ns.lambda(tPrev[tPrev.count - 1 - i]) - lp0) / h
                rks.append(rk)
                d1s.append(mi.indices.map { (mi[$0] - m0[$0]) / rk })
            }
            rks.append(1)
            let hh = -h
            let hPhi1 = expm1f(hh)
            var hPhiK = hPhi1 / hh - 1
            var factorial = 1
            let bh = hh  // bh1: B(h) = h
            var r: [[Float]] = [], b: [Float] = []
            for i in 1...order {
                r.append(rks.map { i == 1 ? 1 : (i == 2 ? $0 : $0 * $0) })
                b.append((hPhiK * Float(factorial)) / bh)
                factorial *= i + 1
                hPhiK = hPhiK / hh - Float(1.0 / Double(factorial))
            }
            let c1 = st / sp0, c2 = alphaT * hPhi1, cb = alphaT * bh
            let base = x.indices.map { c1 * x[$0] - c2 * m0[$0] }
            var xt = base
            if !d1s.isEmpty {
                let rhosP: [Float] = order == 2 ? [0.5] : solve(Array(r.dropLast().map { Array($0.dropLast()) }), Array(b.dropLast()))
                for j in xt.indices {
                    var p: Float = 0
                    for (k, d) in d1s.enumerated() { p = k == 0 ? rhosP[0] * d[j] : p + rhosP[k] * d[j] }
                    xt[j] = base[j] - cb * p
                }
            }
            guard corrector else { return (xt, nil) }
            let rhosC: [Float] = order == 1 ? [0.5] : solve(r, b)
            let mt = try model(xt, t)
            let last = rhosC[rhosC.count - 1]
            for j in xt.indices {
                var corr: Float = 0
                for (k, d) in d1s.enumerated() { corr = k == 0 ? rhosC[0] * d[j] : corr + rhosC[k] * d[j] }
                xt[j] = base[j] - cb * (corr + last * (mt[j] - m0[j]))
            }
            return (xt, mt)
        }

        var x = x0
        var models = [try model(x, ts[0])]
        var tPrev = [ts[0]]
        var done = 0
        for initOrder in 1..<max(order, 1) {
            let (nx, mx) = try update(x, models, tPrev, ts[initOrder], initOrder, corrector: true)
            x = nx
            models.append(mx!)
            tPrev.append(ts[initOrder])
            try onStep(done, x)
            done += 1
        }
        if order <= steps {
            for step in order...steps {
                let stepOrder = lowerOrderFinal ? min(order, steps + 1 - step) : order
                let (nx, mx) = try update(x, models, tPrev, ts[step], stepOrder, corrector: step != steps)
                x = nx
                try onStep(done, x)
                done += 1
                for i in 0..<(order - 1) {
                    tPrev[i] = tPrev[i + 1]
                    models[i] = models[i + 1]
                }
                tPrev[order - 1] = ts[step]
                if step < steps { models[order - 1] = try mx ?? model(x, ts[step]) }
            }
        }
        return x
    }

    /// `torch.linalg.solve` for UniPC's ≤ 3×3 systems: LU with partial pivoting as LAPACK's
    /// getrf (multipliers scaled by the pivot's reciprocal), then the two triangular solves.
    static func solve(_ matrix: [[Float]], _ rhs: [Float]) -> [Float] {
        var a = matrix, x = rhs
        let n = x.count
        for k in 0..<n {
            var p = k
            for i in (k + 1)..<n where abs(a[i][k]) > abs(a[p][k]) { p = i }
            if p != k { a.swapAt(p, k); x.swapAt(p, k) }
            let recip = 1 / a[k][k]
            for i in (k + 1)..<n {
                a[i][k] *= recip
                for j in (k + 1)..<n { a[i][j] -= a[i][k] * a[k][j] }
            }
        }
        for i in 0..<n { for k in 0..<i { x[i] -= a[i][k] * x[k] } }
        for i in stride(from: n - 1, through: 0, by: -1) {
            for k in (i + 1)..<n { x[i] -= a[i][k] * x[k] }
            x[i] /= a[i][i]
        }
        return x
    }
}
