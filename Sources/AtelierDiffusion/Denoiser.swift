import AtelierModels
import AtelierTensor

/// What a denoiser call turns each UNet output row `e` into (with the row's latents `x`) before
/// CFG combines the rows — A1111's denoisers, each in its float32 operation order.
enum DenoiserOutput {
    /// ε as it is: the timestep samplers (DDIM, PLMS, UniPC) combine ε
    case epsilon
    /// k-diffusion's CompVisDenoiser: `x + ε·c_out` (c_out = −σ)
    case denoisedFromEpsilon(cOut: Float)
    /// k-diffusion's CompVisVDenoiser (σ_data 1): `v·c_out + x·c_skip`
    case denoisedFromV(cOut: Float, cSkip: Float)
    /// A1111's CompVisTimestepsVDenoiser, a v-model under DDIM/PLMS/UniPC: `√ᾱ_t·v + √(1−ᾱ_t)·x`
    case epsilonFromV(sa: Float, s1: Float)
    /// A1111's LCMCompVisDenoiser: the consistency output `c_o·(x + ε·(−σ)) + c_skip·x`
    case consistency(sigma: Float, cO: Float, cSkip: Float)

    @inline(__always) func apply(_ e: Float, _ x: Float) -> Float {
        switch self {
        case .epsilon: e
        case .denoisedFromEpsilon(let cOut): x + e * cOut
        case .denoisedFromV(let cOut, let cSkip): e * cOut + x * cSkip
        case .epsilonFromV(let sa, let s1): sa * e + s1 * x
        case .consistency(let sigma, let cO, let cSkip): cO * (x + e * -sigma) + cSkip * x
        }
    }
}

/// A1111's `CFGDenoiser` for one batch of `b` images: each call runs the UNet over the rows
/// `[image 0: part 0…n−1, image 1: …, uncond × b]` — one batch when the parts' token lengths
/// (padded among themselves) equal the negative's, else the parts in batches of 2·b rows and the
/// negative alone — then combines them as `uncond + Σ_j (part_j − uncond) · (w_j · cfg)`.
///
/// Steps 2…N allocate nothing here: the UNet input and output are pooled tensors, the stacked
/// contexts are rebuilt only when the prompt schedule moves on, and the combined output goes
/// into the caller's buffer.
final class CFGDenoiser {
    let model: StableDiffusionModel
    let conditioning: Pipeline.Conditioning
    let images: Int
    /// one image's latent shape `[4, h, w]` and element count
    let latentShape: (channels: Int, height: Int, width: Int)
    let perImage: Int
    /// each part's factor `w_j · cfg` (DDIM CFG++: `w_j · cfg / 12.5`), as A1111 rounds it to float32
    let factors: [Float]
    /// an inpainting checkpoint's extra input `[5, h, w]` (mask and masked-image latent), every row alike
    let imageConditioning: [Float]?
    /// k-diffusion inpainting: the CFG output keeps this latent outside the mask (1 = repaint)
    let keep: (latent: [Float], nmask: [Float])?
    var controlSession: ControlSession?
    let dump: DumpSink?

    /// calls so far (A1111's `CFGDenoiser.step`): picks the scheduled conditioning
    private(set) var calls = 0
    private var dumpedRows = 0
    private var firstCall: (x: [Float], eps: [Float]) = ([], [])

    /// One UNet call of a denoiser call: its rows of the batch, how many are conditional, its
    /// context, timesteps and (inpainting checkpoints) image conditioning.
    private struct UNetBatch {
        let rows: Range<Int>
        let condRows: Int
        let context: Tensor
        var timesteps: [Float]
        let imageConditioning: Tensor?
    }
    private var batches: [UNetBatch] = []
    /// the conditionings (parts, then the negative) `batches` were built from
    private var builtFrom: [ObjectIdentifier]

    init(model: StableDiffusionModel, conditioning: Pipeline.Conditioning, images: Int, latentShape: [Int], cfgScale: Double,
         cfgpp: Bool, imageConditioning: [Float]?, keep: (latent: [Float], nmask: [Float])?, dump: DumpSink?) {
        self.model = model
        self.conditioning = conditioning
        self.images = images
        self.latentShape = (latentShape[0], latentShape[1], latentShape[2])
        perImage = latentShape.reduce(1, *)
        factors = conditioning.parts.map { Float($0.weight * (cfgpp ? cfgScale * (1 / 12.5) : cfgScale)) }
        self.imageConditioning = imageConditioning
        self.keep = keep
        self.dump = dump
        builtFrom = Array(repeating: ObjectIdentifier(Self.self), count: conditioning.parts.count + 1)
    }

    private var parts: Int { conditioning.parts.count }
    private var rowCount: Int { images * parts + images }

    /// Rebuilds the UNet batches' contexts when a part's or the negative's scheduled
    /// conditioning at this call differs from the one they were built from.
    private func refreshBatches() {
        var same = !batches.isEmpty
        for (j, part) in conditioning.parts.enumerated() where same {
            same = ObjectIdentifier(Pipeline.Conditioning.pick(part.schedule, at: calls).storage) == builtFrom[j]
        }
        if same, ObjectIdentifier(Pipeline.Conditioning.pick(conditioning.negative, at: calls).storage) == builtFrom[parts] { return }
        let picked = conditioning.parts.map { Pipeline.Conditioning.pick($0.schedule, at: calls) }
        let uncond = Pipeline.Conditioning.pick(conditioning.negative, at: calls)
        builtFrom = picked.map { ObjectIdentifier($0.storage) } + [ObjectIdentifier(uncond.storage)]
        let conds = Tensor.padToLongest(picked)
        var condRows: [Tensor] = []
        for _ in 0..<images { condRows += conds }
        let uncondRows = Array(repeating: uncond, count: images)
        func batch(_ rows: Range<Int>, condRows: Int, _ context: [Tensor]) -> UNetBatch {
            let ic = imageConditioning.map { ic in
                Tensor(shape: [rows.count, 5, latentShape.height, latentShape.width],
                       data: Array(repeating: ic, count: rows.count).flatMap { $0 })
            }
            return UNetBatch(rows: rows, condRows: condRows, context: Tensor.stack(context),
                             timesteps: Array(repeating: 0, count: rows.count), imageConditioning: ic)
        }
        let n = images * parts
        if conds[0].shape[1] == uncond.shape[1] {
            batches = [batch(0..<(n + images), condRows: n, condRows + uncondRows)]
        } else {
            batches = []
            var a = 0
            while a < n {
                let e = min(a + 2 * images, n)
                batches.append(batch(a..<e, condRows: e - a, Array(condRows[a..<e])))
                a = e
            }
            batches.append(batch(n..<(n + images), condRows: 0, uncondRows))
        }
    }

    /// The UNet's outputs for latents `x` `[b, 4, h, w]` scaled by `inputScale` (c_in) at
    /// timestep `t`: a pooled `[rows, 4, h, w]` tensor in the row order above.
    func unetOutputs(_ x: [Float], inputScale: Float, t: Float) -> Tensor {
        precondition(x.count == images * perImage, "latents of \(x.count) values for \(images) images of \(perImage)")
        refreshBatches()
        controlSession?.beginDenoiserCall()
        let (c, h, w) = latentShape
        let per = perImage, n = images * parts
        let input = Tensor(uninitialized: Dims(rowCount, c, h, w))
        x.withUnsafeBufferPointer { xs in
            let dst = input.unsafePointer
            func put(_ image: Int, row: Int) {
                let from = xs.baseAddress! + image * per, to = dst + row * per
                for k in 0..<per { to[k] = from[k] * inputScale }
            }
            for i in 0..<images { for j in 0..<parts { put(i, row: i * parts + j) } }
            for i in 0..<images { put(i, row: n + i) }
        }
        if batches.count == 1 { return call(0, input, t: t) }
        let out = Tensor(uninitialized: Dims(rowCount, c, h, w))
        for k in batches.indices {
            let rows = batches[k].rows
            let part = Tensor(uninitialized: Dims(rows.count, c, h, w))
            part.unsafePointer.update(from: input.unsafePointer + rows.lowerBound * per, count: rows.count * per)
            let eps = call(k, part, t: t)
            (out.unsafePointer + rows.lowerBound * per).update(from: eps.unsafePointer, count: rows.count * per)
        }
        return out
    }

    /// One UNet call over batch `k`'s rows `xt`.
    private func call(_ k: Int, _ xt: Tensor, t: Float) -> Tensor {
        for i in batches[k].timesteps.indices { batches[k].timesteps[i] = t }
        let batch = batches[k]
        // an inpainting checkpoint reads [x, mask, masked-image latent]
        let unetIn = batch.imageConditioning.map { Ops.concatChannels(xt, $0) } ?? xt
        let hadResiduals = controlSession?.firstResiduals != nil
        let control = controlSession?.residuals(xt, timesteps: batch.timesteps, context: batch.context, condRows: batch.condRows)
        if !hadResiduals, let dump, let first = controlSession?.firstResiduals {
            for (i, r) in first.enumerated() { dump.write(String(format: "control_residual_%02d", i), shape: r.shape, values: r.scalars) }
        }
        let eps = model.unet(unetIn, timesteps: batch.timesteps, context: batch.context, control: control)
        // the oracle's record: the first call, and the second too when the first had one row
        if calls == 0, dumpedRows < 2, let dump {
            let rows = batch.rows.count
            firstCall.x += xt.scalars
            firstCall.eps += eps.scalars
            dumpedRows += rows
            let shape = [latentShape.channels, latentShape.height, latentShape.width]
            dump.write("first_unet_in", shape: [dumpedRows] + shape, values: firstCall.x)
            dump.write("first_unet_t", shape: [dumpedRows], values: Array(repeating: t, count: dumpedRows))
            dump.write("first_unet_eps", shape: [dumpedRows] + shape, values: firstCall.eps)
        }
        return eps
    }

    /// CFG over the UNet outputs `eps` for latents `x`, each row first turned into `output`,
    /// written to `out` (`[b, 4, h, w]`); `keepOutsideMask` applies k-diffusion inpainting's blend.
    /// Ends the denoiser call.
    func combine(_ eps: Tensor, x: [Float], _ output: DenoiserOutput, keepOutsideMask: Bool, into out: inout [Float]) {
        let per = perImage, n = parts, b = images
        if out.count != b * per { out = [Float](repeating: 0, count: b * per) }
        eps.withPointer { e in
            x.withUnsafeBufferPointer { xs in
                factors.withUnsafeBufferPointer { f in
                    out.withUnsafeMutableBufferPointer { o in
                        for i in 0..<b {
                            let u = e + (b * n + i) * per
                            for k in 0..<per {
                                let xv = xs[i * per + k]
                                let du = output.apply(u[k], xv)
                                var v = du
                                for j in 0..<n { v += (output.apply(e[(i * n + j) * per + k], xv) - du) * f[j] }
                                o[i * per + k] = v
                            }
                        }
                    }
                }
            }
        }
        if keepOutsideMask, let keep {
            // `v·m + init·(1 − m)`, m from the latent mask of the pixel's plane position
            let plane = latentShape.height * latentShape.width
            for i in out.indices {
                let m = keep.nmask[(i % per) % plane]
                out[i] = out[i] * m + keep.latent[i] * (1 - m)
            }
        }
        if calls == 0 { dump?.write("first_denoised", shape: [b, latentShape.channels, latentShape.height, latentShape.width], values: out) }
        calls += 1
    }

    /// The negative prompt's rows alone, each turned into `output`, written to `out` (DDIM CFG++'s direction).
    func uncond(_ eps: Tensor, x: [Float], _ output: DenoiserOutput, into out: inout [Float]) {
        let count = images * perImage
        if out.count != count { out = [Float](repeating: 0, count: count) }
        eps.withPointer { e in
            let u = e + images * parts * perImage  // the uncond rows, in image order
            for k in 0..<count { out[k] = output.apply(u[k], x[k]) }
        }
    }
}
