import Foundation

/// k-diffusion's SDE samplers (noise from the Brownian tree) and DPM adaptive, with the same
/// float32 operation order as `k_diffusion/sampling.py` (A1111 1.10's pin).
extension KSamplers {
    /// `sample_dpmpp_sde` (r = ½): a midpoint step in t = −log σ with ancestral noise at the
    /// midpoint and at the end, both from the tree (computed before the first step); two model
    /// calls per step.
    public static func dpmppSDE(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                noise ns: BrownianNoiseSampler, onStep: StepCallback) throws -> [Float] {
        let r: Float = 0.5
        let fac = 1 / (2 * r)
        /// step i's times in t = −log σ and the σ of its start, midpoint and end (the noise queries)
        func times(_ i: Int) -> (t: Float, tNext: Float, st: Float, ss: Float, sNext: Float) {
            let t = -logf(sigmas[i]), tNext = -logf(sigmas[i + 1])
            let s = t + (tNext - t) * r
            return (t, tNext, expf(-t), expf(-s), expf(-tNext))
        }
        ns.prepare((0..<(sigmas.count - 1)).filter { sigmas[$0 + 1] != 0 }.flatMap { i -> [(Float, Float)] in
            let k = times(i)
            return [(k.st, k.ss), (k.st, k.sNext)]
        })
        var x = x0, den = buffer(x0.count), n = buffer(x0.count), w = SecondOrderBuffers(x0.count)
        for i in 0..<(sigmas.count - 1) {
            try model(x, sigmas[i], &den)
            if sigmas[i + 1] == 0 {
                eulerStep(&x, den: den, from: sigmas[i], to: sigmas[i + 1])
            } else {
                let (t, _, st, ss, sNext) = times(i)
                var (sd, su) = ancestral(st, ss, eta: eta)
                let sMid = -logf(sd)
                let a1 = expf(-sMid) / st, c1 = expm1f(t - sMid)
                ns(st, ss, into: &n)
                for j in x.indices { w.x2[j] = (a1 * x[j] - c1 * den[j]) + (n[j] * sNoise) * su }
                try model(w.x2, ss, &w.den2)
                (sd, su) = ancestral(st, sNext, eta: eta)
                let tNextDown = -logf(sd)
                let a2 = expf(-tNextDown) / st, c2 = expm1f(t - tNextDown)
                ns(st, sNext, into: &n)
                for j in x.indices {
                    let d = (1 - fac) * den[j] + fac * w.den2[j]
                    x[j] = (a2 * x[j] - c2 * d) + (n[j] * sNoise) * su
                }
            }
            try onStep(i, x)
        }
        return x
    }

    /// The noise queries `(σ_i, σ_i+1)` of the multistep SDE samplers: every step that does not end at 0.
    static func stepQueries(_ sigmas: [Float], eta: Float) -> [(Float, Float)] {
        eta == 0 ? [] : (0..<(sigmas.count - 1)).filter { sigmas[$0 + 1] != 0 }.map { (sigmas[$0], sigmas[$0 + 1]) }
    }

    /// `sample_dpmpp_2m_sde` (midpoint, or `heun` for "DPM++ 2M SDE Heun"); the previous
    /// denoised in a second buffer (the two swap).
    public static func dpmpp2MSDE(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1, heun: Bool,
                                  noise ns: BrownianNoiseSampler, onStep: StepCallback) throws -> [Float] {
        ns.prepare(stepQueries(sigmas, eta: eta))
        var x = x0, den = buffer(x0.count), old = buffer(x0.count), n = buffer(x0.count)
        var hLast: Float = 0
        for i in 0..<(sigmas.count - 1) {
            try model(x, sigmas[i], &den)
            var h = hLast
            if sigmas[i + 1] == 0 {
                for j in x.indices { x[j] = den[j] }
            } else {
                let t = -logf(sigmas[i]), s = -logf(sigmas[i + 1])
                h = s - t
                let etaH = eta * h
                let a = sigmas[i + 1] / sigmas[i] * expf(-etaH)
                let arg = -h - etaH
                let b = -expm1f(arg)
                for j in x.indices { x[j] = a * x[j] + b * den[j] }
                if i > 0 {
                    let r = hLast / h
                    let k = heun ? (b / arg + 1) * (1 / r) : (0.5 * b) * (1 / r)
                    for j in x.indices { x[j] = x[j] + k * (den[j] - old[j]) }
                }
                if eta != 0 {
                    ns(sigmas[i], sigmas[i + 1], into: &n)
                    let f = (-expm1f(-2 * etaH)).squareRoot()
                    let sn = sigmas[i + 1]
                    for j in x.indices { x[j] = x[j] + ((n[j] * sn) * f) * sNoise }
                }
            }
            swap(&old, &den)
            hLast = h
            try onStep(i, x)
        }
        return x
    }

    /// `sample_dpmpp_3m_sde`: third-order multistep on the last three denoised outputs, which
    /// rotate through three buffers.
    public static func dpmpp3MSDE(_ model: DenoiseInto, _ x0: [Float], sigmas: [Float], eta: Float = 1, sNoise: Float = 1,
                                  noise ns: BrownianNoiseSampler, onStep: StepCallback) throws -> [Float] {
        ns.prepare(stepQueries(sigmas, eta: eta))
        var x = x0, den = buffer(x0.count), d1 = buffer(x0.count), d2 = buffer(x0.count), n = buffer(x0.count)
        var h1: Float?, h2: Float?
        for i in 0..<(sigmas.count - 1) {
            try model(x, sigmas[i], &den)
            var h = h1 ?? 0
            if sigmas[i + 1] == 0 {
                for j in x.indices { x[j] = den[j] }
            } else {
                let t = -logf(sigmas[i]), s = -logf(sigmas[i + 1])
                h = s - t
                let hEta = h * (eta + 1)
                let a = expf(-hEta), b = -expm1f(-hEta)
                for j in x.indices { x[j] = a * x[j] + b * den[j] }
                // d1 holds step i − 1's denoised (from step 1 on), d2 step i − 2's (from step 2 on)
                if i >= 2, let h2, let h1 {
                    let r0 = h1 / h, r1 = h2 / h
                    let phi2 = expm1f(-hEta) / hEta + 1
                    let phi3 = phi2 / hEta - 0.5
                    let rs = r0 + r1
                    for j in x.indices {
                        let d10 = (den[j] - d1[j]) / r0
                        let d11 = (d1[j] - d2[j]) / r1
                        let dd1 = d10 + ((d10 - d11) * r0) / rs
                        let dd2 = (d10 - d11) / rs
                        x[j] = (x[j] + phi2 * dd1) - phi3 * dd2
                    }
                } else if i >= 1, let h1 {
                    let q = h1 / h
                    let phi2 = expm1f(-hEta) / hEta + 1
                    for j in x.indices { x[j] = x[j] + phi2 * ((den[j] - d1[j]) / q) }
                }
                if eta != 0 {
                    ns(sigmas[i], sigmas[i + 1], into: &n)
                    let f = (-expm1f((h * -2) * eta)).squareRoot()
                    let sn = sigmas[i + 1]
                    for j in x.indices { x[j] = x[j] + ((n[j] * sn) * f) * sNoise }
                }
            }
            // (d1, d2) ← (den, d1); the oldest buffer takes the next call's output
            swap(&d2, &d1)
            swap(&d1, &den)
            (h1, h2) = (h, h1)
            try onStep(i, x)
        }
        return x
    }

    /// k-diffusion's `sample_dpm_adaptive` (DPM-Solver-12/23 with a PID step-size controller on
    /// t = −log σ from σ_max to σ_min; A1111's defaults: order 3, rtol 0.05, atol 0.0078,
    /// h_init 0.05, I-controller, accept_safety 0.81). With eta (A1111 passes 1) every accepted
    /// step lands below its target and adds image-stream noise. The number of model calls depends
    /// on the data; `onStep` is called for each accepted step.
    public static func dpmAdaptive(_ model: DenoiseInto, _ x0: [Float], sigmaMin: Float, sigmaMax: Float, eta: Float = 1, sNoise: Float = 1,
                                   noise: NoiseInto, onStep: StepCallback) throws -> [Float] {
        let order = 3
        let rtol: Float = 0.05, atol: Float = 0.0078
        let (pcoeff, icoeff, dcoeff) = (0.0, 1.0, 0.0)
        let acceptSafety = 0.81
        let sig = DPMSolver.sigma
        let tStart = -logf(sigmaMax), tEnd = -logf(sigmaMin)
        let forward = tEnd > tStart
        guard sigmaMin > 0, sigmaMax > 0, tStart.isFinite, tEnd.isFinite, forward || eta == 0 else {
            throw RequestError(field: "sampler_name", "DPM adaptive needs 0 < σ_min < σ_max (k-diffusion: eta must be 0 for reverse sampling)")
        }
        var h = 0.05 * (forward ? 1.0 : -1.0)
        let bOrder = eta != 0 ? 1.5 : Double(order)
        let b1 = (pcoeff + icoeff + dcoeff) / bOrder, b2 = -(pcoeff + 2 * dcoeff) / bOrder, b3 = dcoeff / bOrder
        var errs: [Double] = [0, 0, 0]
        var s = tStart
        // x_prev in a buffer of its own: it swaps with x_low, which must never be the caller's x0
        var x = x0, xPrev = buffer(x0.count), xLow = buffer(x0.count), xHigh = buffer(x0.count), draw = buffer(x0.count)
        for j in x.indices { xPrev[j] = x0[j] }
        var solver = DPMSolver(count: x0.count)
        var accepted = 0
        let limit = tEnd + (forward ? -1e-5 : 1e-5)
        var attempts = 0
        while forward ? s < limit : s > limit {
            attempts += 1
            if attempts > 1_000 { throw RequestError(field: "sampler_name", "DPM adaptive did not converge") }
            let t = forward ? min(tEnd, s + Float(h)) : max(tEnd, s + Float(h))
            var target = t, su: Float = 0
            if eta != 0 {
                let (sd, _) = ancestral(sig(s), sig(t), eta: eta)
                target = min(tEnd, -logf(sd))
                let a = sig(t), b = sig(target)
                su = (a * a - b * b).squareRoot()
            }
            // x_low: DPM-Solver-2 with r1 = 1/3; x_high: DPM-Solver-3 (shares the r1 evaluation)
            let step = DPMSolver.Step(t: s, target: target)
            try solver.start(model, x, step)
            try solver.stage(model, x, step, r: DPMSolver.third)
            solver.order2(x, step, r1: DPMSolver.third, into: &xLow)
            try solver.order3(model, x, step, into: &xHigh)
            // error: ‖(x_low − x_high) / δ‖ / √n with δ = max(atol, rtol · max(|x_low|, |x_prev|))
            var sq = 0.0
            for j in x.indices {
                let delta = max(atol, rtol * max(abs(xLow[j]), abs(xPrev[j])))
                let q = Double((xLow[j] - xHigh[j]) / delta)
                sq += q * q
            }
            let error = Float(Float(sq.squareRoot()) / Float(Double(x.count).squareRoot()))
            guard error.isFinite else { throw RequestError(field: "sampler_name", "DPM adaptive: the step error is not finite (the latents diverged)") }
            let inv = 1 / (Double(error) + 1e-8)
            if attempts == 1 { (errs[1], errs[2]) = (inv, inv) }
            errs[0] = inv
            var factor = pow(errs[0], b1) * pow(errs[1], b2) * pow(errs[2], b3)
            factor = 1 + atan(factor - 1)
            let accept = factor >= acceptSafety
            if accept {
                errs[2] = errs[1]
                errs[1] = errs[0]
            }
            h *= factor
            if accept {
                swap(&xPrev, &xLow)  // x_prev ← x_low; the old buffer takes the next x_low
                noise(&draw)
                let f = su * sNoise
                for j in x.indices { x[j] = xHigh[j] + f * draw[j] }
                s = t
                try onStep(accepted, x)
                accepted += 1
            }
        }
        return x
    }
}
