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

    /// `eps(x, t, &out)` writes the CFG-combined ε at the model input time t (a float timestep).
    /// The model outputs of the last `order` steps, the update's differences and its results live
    /// in buffers kept across steps; the small linear systems on the stack (no array per step).
    public static func sample(eps: (_ x: [Float], _ t: Float, _ out: inout [Float]) throws -> Void, _ x0: [Float], steps: Int,
                              lastTimestep: Int?, alphasCumprod: [Float], order: Int = 3, lowerOrderFinal: Bool = true,
                              onStep: StepCallback) throws -> [Float] {
        precondition(order >= 1 && order <= 3, "UniPC of order \(order)")
        let ns = NoiseSchedule(alphasCumprod: alphasCumprod)
        let ts = times(steps: steps, lastTimestep: lastTimestep)
        let count = x0.count
        var e = KSamplers.buffer(count)
        /// data prediction: x₀ = (x − σ_t·ε) / α_t
        func model(_ x: [Float], _ t: Float, into out: inout [Float]) throws {
            try eps(x, modelInputTime(t), &e)
            let a = ns.alpha(t), s = ns.std(t)
            for j in 0..<count { out[j] = (x[j] - s * e[j]) / a }
        }
        /// the model outputs at `tPrev`, oldest first; the first `filled` are valid
        var models = (0..<order).map { _ in KSamplers.buffer(count) }
        var tPrev = [Float](repeating: 0, count: order)
        var filled = 0
        var d1s = (0..<(order - 1)).map { _ in KSamplers.buffer(count) }
        var base = KSamplers.buffer(count), xt = KSamplers.buffer(count), mt = KSamplers.buffer(count)

        /// `multistep_uni_pc_bh_update` (bh1, predict_x0) from the newest `order` model outputs to
        /// t: the result in `xt`; with the corrector, the model output at the predicted point in
        /// `mt` (returns true).
        func update(_ x: [Float], _ t: Float, _ order: Int, corrector: Bool) throws -> Bool {
            let last = filled - 1
            let tp0 = tPrev[last]
            let lp0 = ns.lambda(tp0), lt = ns.lambda(t)
            let sp0 = ns.std(tp0), st = ns.std(t)
            let alphaT = expf(ns.logMeanCoeff(t))
            let h = lt - lp0
            let nd = order - 1
            return try withUnsafeTemporaryAllocation(of: Float.self, capacity: 36) { small in
                // rks (3), r (3×3, row i = rks^i), b (3), ρ predictor (3), ρ corrector (3), a solve's copy (9 + 3)
                let rks = small.baseAddress!, r = rks + 3, b = rks + 12, rhosP = rks + 15, rhosC = rks + 18, lu = rks + 21, rhs = rks + 30
                for i in 1..<max(order, 1) {
                    let rk = (ns.lambda(tPrev[last - i]) - lp0) / h
                    rks[i - 1] = rk
                    for j in 0..<count { d1s[i - 1][j] = (models[last - i][j] - models[last][j]) / rk }
                }
                rks[nd] = 1
                let hh = -h
                let hPhi1 = expm1f(hh)
                var hPhiK = hPhi1 / hh - 1
                var factorial = 1
                let bh = hh  // bh1: B(h) = h
                for i in 1...order {
                    for k in 0...nd { r[(i - 1) * 3 + k] = i == 1 ? 1 : (i == 2 ? rks[k] : rks[k] * rks[k]) }
                    b[i - 1] = (hPhiK * Float(factorial)) / bh
                    factorial *= i + 1
                    hPhiK = hPhiK / hh - Float(1.0 / Double(factorial))
                }
                /// ρ of the n × n top-left system of r and b, into `out`
                func rhos(_ n: Int, into out: UnsafeMutablePointer<Float>) {
                    for i in 0..<n {
                        for k in 0..<n { lu[i * 3 + k] = r[i * 3 + k] }
                        rhs[i] = b[i]
                    }
                    solve(n, lu, rhs)
                    out.update(from: rhs, count: n)
                }
                let c1 = st / sp0, c2 = alphaT * hPhi1, cb = alphaT * bh
                for j in 0..<count { base[j] = c1 * x[j] - c2 * models[last][j] }
                if nd > 0 {
                    if order == 2 { rhosP[0] = 0.5 } else { rhos(nd, into: rhosP) }
                    for j in 0..<count {
                        var p = rhosP[0] * d1s[0][j]
                        for k in 1..<nd { p = p + rhosP[k] * d1s[k][j] }
                        xt[j] = base[j] - cb * p
                    }
                } else {
                    for j in 0..<count { xt[j] = base[j] }
                }
                guard corrector else { return false }
                if order == 1 { rhosC[0] = 0.5 } else { rhos(order, into: rhosC) }
                try model(xt, t, into: &mt)
                let lastRho = rhosC[order - 1]
                for j in 0..<count {
                    var corr: Float = 0
                    for k in 0..<nd { corr = k == 0 ? rhosC[0] * d1s[0][j] : corr + rhosC[k] * d1s[k][j] }
                    xt[j] = base[j] - cb * (corr + lastRho * (mt[j] - models[last][j]))
                }
                return true
            }
        }

        // x in a buffer of its own: it swaps with xt, which must never be the caller's x0
        var x = KSamplers.buffer(count)
        for j in 0..<count { x[j] = x0[j] }
        try model(x, ts[0], into: &models[0])
        tPrev[0] = ts[0]
        filled = 1
        var done = 0
        for initOrder in 1..<order {
            _ = try update(x, ts[initOrder], initOrder, corrector: true)
            swap(&x, &xt)
            swap(&models[filled], &mt)
            tPrev[filled] = ts[initOrder]
            filled += 1
            try onStep(done, x)
            done += 1
        }
        if order <= steps {
            for step in order...steps {
                let stepOrder = lowerOrderFinal ? min(order, steps + 1 - step) : order
                let corrected = try update(x, ts[step], stepOrder, corrector: step != steps)
                swap(&x, &xt)
                try onStep(done, x)
                done += 1
                // the oldest output's buffer moves to the end and takes the newest
                for i in 0..<(order - 1) {
                    tPrev[i] = tPrev[i + 1]
                    models.swapAt(i, i + 1)
                }
                tPrev[order - 1] = ts[step]
                if step < steps {
                    if corrected { swap(&models[order - 1], &mt) } else { try model(x, ts[step], into: &models[order - 1]) }
                }
            }
        }
        return x
    }

    /// `torch.linalg.solve` for UniPC's ≤ 3×3 systems, in place (`a` n × n with row stride 3, `x`
    /// the right-hand side, then the solution): LU with partial pivoting as LAPACK's getrf
    /// (multipliers scaled by the pivot's reciprocal), then the two triangular solves.
    static func solve(_ n: Int, _ a: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>) {
        for k in 0..<n {
            var p = k
            for i in (k + 1)..<n where abs(a[i * 3 + k]) > abs(a[p * 3 + k]) { p = i }
            if p != k {
                for j in 0..<n { (a[p * 3 + j], a[k * 3 + j]) = (a[k * 3 + j], a[p * 3 + j]) }
                (x[p], x[k]) = (x[k], x[p])
            }
            let recip = 1 / a[k * 3 + k]
            for i in (k + 1)..<n {
                a[i * 3 + k] *= recip
                for j in (k + 1)..<n { a[i * 3 + j] -= a[i * 3 + k] * a[k * 3 + j] }
            }
        }
        for i in 0..<n { for k in 0..<i { x[i] -= a[i * 3 + k] * x[k] } }
        for i in stride(from: n - 1, through: 0, by: -1) {
            for k in (i + 1)..<n { x[i] -= a[i * 3 + k] * x[k] }
            x[i] /= a[i * 3 + i]
        }
    }
}
