import CKernels
import Foundation

/// The CPU operations a latent-diffusion model needs, on `Tensor` values.
public enum Ops {
    /// Query rows per attention task (tunable for benchmarks: ATELIER_ATTN_BLOCK).
    nonisolated(unsafe) public static var attentionBlock: Int = Int(ProcessInfo.processInfo.environment["ATELIER_ATTN_BLOCK"] ?? "") ?? 64

    /// im2col tile budget in floats (tunable for benchmarks: ATELIER_CONV_TILE).
    nonisolated(unsafe) public static var convTileFloats: Int = Int(ProcessInfo.processInfo.environment["ATELIER_CONV_TILE"] ?? "") ?? (1 << 22)

    // MARK: - Linear algebra

    /// `x[..., K] · W[N, K]ᵀ + b[N]` → `[..., N]` (PyTorch `nn.Linear`).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        Profiler.measure("linear") {
        let k = x.shape.last!, n = weight.shape[0]
        precondition(weight.shape[1] == k, "linear: input width \(k) vs weight \(weight.shape)")
        let m = x.count / k
        let out = Tensor(uninitialized: x.dims.replacingLast(n))
        let o = out.unsafePointer
        var beta: Float = 0
        if let bias {
            for r in 0..<m { (o + r * n).update(from: bias.unsafePointer, count: n) }
            beta = 1
        }
        sgemm(transB: true, m: m, n: n, k: k, a: x.unsafePointer, lda: k,
              b: weight.unsafePointer, ldb: k, beta: beta, c: o, ldc: n)
        return out
    }
    }

    /// `x[..., K] · W[N, K]ᵀ + b + residual` → `[..., N]`: the residual add of a transformer
    /// block folded into the GEMM (the output starts as `residual + b`, GEMM with β = 1).
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor) -> Tensor {
        Profiler.measure("linear") {
        let k = x.shape.last!, n = weight.shape[0]
        precondition(weight.shape[1] == k, "linear: input width \(k) vs weight \(weight.shape)")
        let m = x.count / k
        precondition(residual.count == m * n, "linear: residual \(residual.shape) vs output [\(m), \(n)]")
        let out = Tensor(uninitialized: x.dims.replacingLast(n))
        let o = out.unsafePointer, r = residual.unsafePointer
        Compute.split(m, minimum: max(1, (1 << 15) / n), (r, o, n, bias?.unsafePointer)) { context, rows in
            let (r, o, n, bias) = context
            for row in rows {
                if let bias {
                    mapVector(r + row * n, bias, o + row * n, n) { $0 + $1 }
                } else {
                    (o + row * n).update(from: r + row * n, count: n)
                }
            }
        }
        sgemm(transB: true, m: m, n: n, k: k, a: x.unsafePointer, lda: k,
              b: weight.unsafePointer, ldb: k, beta: 1, c: o, ldc: n)
        return out
        }
    }

    /// Channels-first `x [B, K, T]` (NCHW with T = H·W) · W[N, K]ᵀ + b → token-major
    /// `[B, T, N]`: a transformer's projection in, without a separate transpose pass.
    public static func linear(channelsFirst x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        Profiler.measure("linear") {
        let (b, k, t) = (x.shape[0], x.shape[1], x.count / (x.shape[0] * x.shape[1]))
        let n = weight.shape[0]
        precondition(weight.shape[1] == k, "linear: input channels \(k) vs weight \(weight.shape)")
        let out = Tensor(uninitialized: Dims(b, t, n))
        let o = out.unsafePointer
        if let bias { for r in 0..<(b * t) { (o + r * n).update(from: bias.unsafePointer, count: n) } }
        for i in 0..<b {
            sgemm(transA: true, transB: true, m: t, n: n, k: k, a: x.unsafePointer + i * k * t, lda: t,
                  b: weight.unsafePointer, ldb: k, beta: bias == nil ? 0 : 1, c: o + i * t * n, ldc: n)
        }
        return out
        }
    }

    /// Token-major `x [B, T, K]` · W[N, K]ᵀ + b + residual, written channels first
    /// `[B, N, T]` (the residual in that layout): a transformer's projection out and its
    /// residual add, without a transpose or a separate add pass.
    public static func linear(toChannelsFirst x: Tensor, weight: Tensor, bias: Tensor?, residual: Tensor) -> Tensor {
        Profiler.measure("linear") {
        let (b, t, k) = (x.shape[0], x.shape[1], x.shape[2])
        let n = weight.shape[0]
        precondition(weight.shape[1] == k && residual.count == b * n * t, "linear: \(x.shape) · \(weight.shape) vs residual \(residual.shape)")
        let out = Tensor(uninitialized: Dims(b, n, t))
        let o = out.unsafePointer, r = residual.unsafePointer
        Compute.split(b * n, minimum: max(1, (1 << 15) / t), (r, o, t, n, bias?.unsafePointer)) { context, planes in
            let (r, o, t, n, bias) = context
            for plane in planes {
                let add = bias?[plane % n] ?? 0
                let addv = V16(repeating: add)
                mapVector(r + plane * t, o + plane * t, t) { $0 + addv }
            }
        }
        for i in 0..<b {
            sgemm(transB: true, m: n, n: t, k: k, a: weight.unsafePointer, lda: k,
                  b: x.unsafePointer + i * t * k, ldb: k, beta: 1, c: o + i * n * t, ldc: t)
        }
        return out
        }
    }

    /// How `conv2d` computes a convolution.
    public enum ConvAlgorithm: String, Sendable {
        /// 1×1, stride 1, no padding: one GEMM per image.
        case gemm
        /// Winograd F(4×4, 3×3) (`Winograd`): 3×3, stride 1, padding 1, enough 4×4 tiles.
        case winograd
        /// Winograd F(2×2, 3×3) (`WinogradF2`): the same convs on images too small for F(4×4)'s
        /// tiles (the UNet's 16² level).
        case winograd2
        /// im2col over tiles of output rows, then GEMM.
        case im2col
    }

    /// Winograd on/off (benchmarks compare both in one run: ATELIER_WINOGRAD=0 turns it off).
    nonisolated(unsafe) public static var winogradEnabled = ProcessInfo.processInfo.environment["ATELIER_WINOGRAD"] != "0"

    /// The algorithm `conv2d` uses for this input shape `[B, C, H, W]` and weight `[O, C, kh, kw]`.
    /// Winograd needs enough output tiles for its GEMMs to be well shaped: F(4×4) 128 tiles of 4×4,
    /// else F(2×2) 128 tiles of 2×2 (the UNet's 16² level); the 8² level stays im2col. Big kernels
    /// are transformed in blocks of output channels.
    public static func convAlgorithm(input: [Int], weight: [Int], stride: Int,
                                     padding: (top: Int, left: Int, bottom: Int, right: Int)) -> ConvAlgorithm {
        let (kh, kw) = (weight[2], weight[3])
        if kh == 1 && kw == 1 && stride == 1 && padding == (0, 0, 0, 0) { return .gemm }
        let tiles = input[0] * ((input[2] + 3) / 4) * ((input[3] + 3) / 4)
        if winogradEnabled && kh == 3 && kw == 3 && stride == 1 && padding == (1, 1, 1, 1) {
            if tiles >= 128 { return .winograd }
            if input[0] * ((input[2] + 1) / 2) * ((input[3] + 1) / 2) >= 128 { return .winograd2 }
        }
        return .im2col
    }

    /// 2-D convolution, NCHW input, OIHW weight. Padding is (top, left, bottom, right)
    /// so the VAE encoder's asymmetric (0,0,1,1) downsampling pad fits too.
    /// 1×1 stride-1 convs are one GEMM; 3×3 stride-1 convs with enough pixels are Winograd;
    /// others are im2col over tiles of output rows so the column buffer stays a few MB
    /// (a 512² VAE layer would need 1.2 GB unbounded).
    public static func conv2d(
        _ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1,
        padding: (top: Int, left: Int, bottom: Int, right: Int)
    ) -> Tensor {
        precondition(weight.shape[1] == x.shape[1], "conv2d: input channels \(x.shape[1]) vs weight \(weight.shape)")
        let algorithm = convAlgorithm(input: x.shape, weight: weight.shape, stride: stride, padding: padding)
        switch algorithm {
        case .winograd: return Profiler.measure("conv2d.winograd") { Winograd.conv3x3(x, weight: weight, bias: bias) }
        case .winograd2: return Profiler.measure("conv2d.winograd") { WinogradF2.conv3x3(x, weight: weight, bias: bias) }
        case .gemm, .im2col: break
        }
        return Profiler.measure("conv2d") {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        precondition(weight.shape[1] == c, "conv2d: input channels \(c) vs weight \(weight.shape)")
        let ho = (h + padding.top + padding.bottom - kh) / stride + 1
        let wo = (w + padding.left + padding.right - kw) / stride + 1
        let out = Tensor(uninitialized: Dims(b, o, ho, wo))
        let hw = ho * wo
        let kdim = c * kh * kw
        let xp = x.unsafePointer, wp = weight.unsafePointer, op = out.unsafePointer

        // small images (the UNet's 8² level, the stride-2 downsamplers): the batch's images share one
        // GEMM, as one image gives BLAS too few columns (64 at 8²); the same products, though BLAS may
        // sum a wider GEMM in another order (float32 rounding)
        let group = hw < 1024 && algorithm == .im2col ? min(b, max(1, 2048 / hw)) : 1
        if group > 1 {
            let cols = group * hw
            Scratch.with(kdim * cols + o * cols) { scratch in
                let col = scratch, prod = scratch + kdim * cols
                var n0 = 0
                while n0 < b {
                    let g = min(group, b - n0), ncols = g * hw
                    for i in 0..<g {
                        im2col(xp + (n0 + i) * c * h * w, c: c, h: h, w: w, kh: kh, kw: kw, stride: stride,
                               padTop: padding.top, padLeft: padding.left, row0: 0, rows: ho, wo: wo,
                               col: col + i * hw, ld: ncols)
                    }
                    if let bias {
                        for oc in 0..<o { (prod + oc * ncols).initialize(repeating: bias.unsafePointer[oc], count: ncols) }
                    }
                    sgemm(m: o, n: ncols, k: kdim, a: wp, lda: kdim, b: col, ldb: ncols,
                          beta: bias == nil ? 0 : 1, c: prod, ldc: ncols)
                    for i in 0..<g {
                        for oc in 0..<o {
                            (op + ((n0 + i) * o + oc) * hw).update(from: prod + oc * ncols + i * hw, count: hw)
                        }
                    }
                    n0 += g
                }
            }
            return out
        }

        for n in 0..<b {
            let on = op + n * o * hw
            if let bias {
                for oc in 0..<o { (on + oc * hw).initialize(repeating: bias.unsafePointer[oc], count: hw) }
            }
            let beta: Float = bias == nil ? 0 : 1
            let xn = xp + n * c * h * w
            if kh == 1 && kw == 1 && stride == 1 && padding == (0, 0, 0, 0) {
                sgemm(m: o, n: hw, k: c, a: wp, lda: c, b: xn, ldb: hw, beta: beta, c: on, ldc: hw)
                continue
            }
            // Tile of output rows so that the column buffer is about 4 MB.
            // at least ~1024 output columns per GEMM (small N starves BLAS), else ~convTileFloats of columns
            let rowsPerTile = max(1, min(ho, max((1024 + wo - 1) / wo, Ops.convTileFloats / max(1, kdim * wo))))
            Scratch.with(kdim * rowsPerTile * wo) { col in
            var r0 = 0
            while r0 < ho {
                let rows = min(rowsPerTile, ho - r0)
                let ncols = rows * wo
                im2col(xn, c: c, h: h, w: w, kh: kh, kw: kw, stride: stride,
                       padTop: padding.top, padLeft: padding.left, row0: r0, rows: rows, wo: wo, col: col)
                sgemm(m: o, n: ncols, k: kdim, a: wp, lda: kdim, b: col, ldb: ncols,
                      beta: beta, c: on + r0 * wo, ldc: hw)
                r0 += rows
            }
            }
        }
        return out
    }
    }

    @inline(__always)
    private static func im2col(
        _ x: UnsafePointer<Float>, c: Int, h: Int, w: Int, kh: Int, kw: Int, stride: Int,
        padTop: Int, padLeft: Int, row0: Int, rows: Int, wo: Int, col: UnsafeMutablePointer<Float>, ld: Int? = nil
    ) {
        // `ld`: the column matrix's row length (more than this tile's columns when images share it)
        let ncols = ld ?? rows * wo
        let geometry = (h: h, w: w, kh: kh, kw: kw, stride: stride, padTop: padTop, padLeft: padLeft, row0: row0, rows: rows, wo: wo)
        Compute.split(c, minimum: max(1, 4096 / max(1, ncols)), (x, col, ncols, geometry)) { context, range in
            let (x, col, ncols, (h, w, kh, kw, stride, padTop, padLeft, row0, rows, wo)) = context
            for ch in range {
                let xc = x + ch * h * w
                for i in 0..<kh {
                    for j in 0..<kw {
                        let dst = col + ((ch * kh + i) * kw + j) * ncols
                        for r in 0..<rows {
                            let iy = (row0 + r) * stride - padTop + i
                            let d = dst + r * wo
                            if iy < 0 || iy >= h {
                                d.initialize(repeating: 0, count: wo)
                                continue
                            }
                            let src = xc + iy * w
                            if stride == 1 {
                                // contiguous run of valid x positions
                                let lo = max(0, padLeft - j), hi = min(wo, w + padLeft - j)
                                if lo > 0 { d.initialize(repeating: 0, count: lo) }
                                if hi > lo { (d + lo).update(from: src + (lo - padLeft + j), count: hi - lo) }
                                if hi < wo { (d + max(hi, 0)).initialize(repeating: 0, count: wo - max(hi, 0)) }
                            } else {
                                for q in 0..<wo {
                                    let ix = q * stride - padLeft + j
                                    d[q] = (ix >= 0 && ix < w) ? src[ix] : 0
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: - Normalisation

    /// A (row, group)'s mean and variance over its channels and positions, as `groupNorm` computes them.
    public struct GroupMoments: Sendable, Equatable {
        public var mean: Double
        public var variance: Double
        public init(mean: Double, variance: Double) { self.mean = mean; self.variance = variance }
    }

    /// The moments of group g of row n: float32 block sums added in double, the variance about the
    /// float32-rounded mean (the order `groupNorm` has always used).
    @inline(__always)
    static func moments(_ xp: UnsafePointer<Float>, base: Int, length len: Int) -> GroupMoments {
        let mean = blockSum(xp + base, len) { $0 } / Double(len)
        let m = V16(repeating: Float(mean))
        let sq = blockSum(xp + base, len) { let d = $0 - m; return d * d }
        return GroupMoments(mean: mean, variance: sq / Double(len))
    }

    /// Count, mean and Σ(x − mean)² of some of a group's values, mergeable with another part's
    /// (Chan et al.'s pairwise update), so parts summed one tile at a time give the whole's
    /// variance without E[x²] − mean²'s cancellation.
    public struct PartialMoments: Sendable, Equatable {
        public var count = 0.0, mean = 0.0, squaredDeviations = 0.0
        public init() {}
        public init(count: Double, mean: Double, squaredDeviations: Double) {
            (self.count, self.mean, self.squaredDeviations) = (count, mean, squaredDeviations)
        }

        public mutating func merge(_ other: PartialMoments) {
            guard other.count > 0 else { return }
            let n = count + other.count
            let delta = other.mean - mean
            squaredDeviations += other.squaredDeviations + delta * delta * count * other.count / n
            mean += delta * other.count / n
            count = n
        }

        /// The moments `groupNorm` normalises with (the population variance).
        public var moments: GroupMoments { GroupMoments(mean: mean, variance: count > 0 ? squaredDeviations / count : 0) }
    }

    /// Each (row, group)'s moments over one window of its planes (x is [N, C, H, W]; the window
    /// is rows × columns of every plane in the group), row-major (row, group): the mean from
    /// float32 block sums added in double, the deviations about it as `groupNorm` sums them.
    public static func groupWindowMoments(_ x: Tensor, groups: Int, rows: Range<Int>, columns: Range<Int>) -> [PartialMoments] {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(rows.lowerBound >= 0 && rows.upperBound <= h && columns.lowerBound >= 0 && columns.upperBound <= w)
        let cpg = c / groups
        let count = Double(cpg * rows.count * columns.count)
        return (0..<(b * groups)).map { idx in
            guard count > 0 else { return PartialMoments() }
            func planeRows(_ body: (UnsafePointer<Float>) -> Void) {
                for ch in 0..<cpg {
                    let plane = x.unsafePointer + ((idx / groups) * c + (idx % groups) * cpg + ch) * h * w
                    for y in rows { body(plane + y * w + columns.lowerBound) }
                }
            }
            var sum = 0.0
            planeRows { sum += blockSum($0, columns.count) { $0 } }
            let mean = sum / count
            let m = V16(repeating: Float(mean))
            var squares = 0.0   // about the float32-rounded mean, then moved to the mean itself
            planeRows { squares += blockSum($0, columns.count) { let d = $0 - m; return d * d } }
            let offset = mean - Double(Float(mean))
            return PartialMoments(count: count, mean: mean, squaredDeviations: max(0, squares - count * offset * offset))
        }
    }

    /// GroupNorm over NCHW (statistics accumulated in double), optionally fused with SiLU,
    /// normalising each (row, group) with its own moments or, where `moments`
    /// is given (one per (row, group), row-major), with those: the tiled VAE's whole-picture
    /// statistics.
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor,
                                 eps: Float, silu: Bool = false, moments given: [GroupMoments]? = nil) -> Tensor {
        Profiler.measure("groupNorm") {
        let (b, c) = (x.shape[0], x.shape[1])
        let hw = x.count / (b * c)
        let cpg = c / groups
        precondition(given == nil || given!.count == b * groups, "one GroupNorm moment per (row, group)")
        let out = Tensor(uninitialized: x.shape)
        let xp = x.unsafePointer, op = out.unsafePointer
        let gp = weight.unsafePointer, bp = bias.unsafePointer
        let shape = (b: b, c: c, hw: hw, groups: groups, cpg: cpg, eps: eps, silu: silu, tasks: min(Compute.threads, b * groups))
        given.withUnsafeBufferPointerIfAny { givenMoments in
        Compute.parallel(tasks: shape.tasks, (shape, xp, op, gp, bp, givenMoments)) { context, task in
            let ((b, c, hw, groups, cpg, eps, silu, tasks), xp, op, gp, bp, givenMoments) = context
            var idx = task
            while idx < b * groups {
                let n = idx / groups, g = idx % groups
                let base = (n * c + g * cpg) * hw
                let len = cpg * hw
                let moments = givenMoments.map { $0[idx] } ?? Self.moments(xp, base: base, length: len)
                let mean = moments.mean
                let rstd = 1.0 / (moments.variance + Double(eps)).squareRoot()
                for cc in 0..<cpg {
                    let ch = g * cpg + cc
                    let scale = Float(rstd) * gp[ch]
                    let shift = bp[ch] - Float(mean) * scale
                    let s = xp + base + cc * hw, d = op + base + cc * hw
                    if silu {
                        mapVector(s, d, hw) { vsilu($0 * V16(repeating: scale) + V16(repeating: shift)) }
                    } else {
                        mapVector(s, d, hw) { $0 * V16(repeating: scale) + V16(repeating: shift) }
                    }
                }
                idx += tasks
            }
        }
        }
        return out
    }
    }

    /// LayerNorm over the last axis.
    /// Σ f(x) over `n` floats: float32 vector sums over blocks of 1024, the blocks added in
    /// double (group-norm statistics; the scalar all-double loop cost 1.5 s of a 512² VAE decode).
    @inline(__always)
    static func blockSum(_ p: UnsafePointer<Float>, _ n: Int, _ f: (V16) -> V16) -> Double {
        var total = 0.0
        var start = 0
        while start < n {
            let end = min(n, start + 1024)
            var a = V16(repeating: 0), b = V16(repeating: 0)
            var i = start
            while i + 32 <= end {
                a += f(vload(p + i))
                b += f(vload(p + i + 16))
                i += 32
            }
            while i + 16 <= end { a += f(vload(p + i)); i += 16 }
            var partial = Double((a + b).sum())
            if i < end {
                var tail = V16(repeating: 0)
                for j in 0..<(end - i) { tail[j] = p[i + j] }
                let ft = f(tail)
                for j in 0..<(end - i) { partial += Double(ft[j]) }
            }
            total += partial
            start = end
        }
        return total
    }

    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
        Profiler.measure("layerNorm") {
        let c = x.shape.last!
        let rows = x.count / c
        let out = Tensor(uninitialized: x.shape)
        let xp = x.unsafePointer, op = out.unsafePointer
        let gp = weight.unsafePointer, bp = bias.unsafePointer
        Compute.split(rows, minimum: max(1, 16384 / c), (xp, op, gp, bp, c, eps)) { context, range in
            let (xp, op, gp, bp, c, eps) = context
            for r in range {
                let s = xp + r * c, d = op + r * c
                var sum = 0.0
                for i in 0..<c { sum += Double(s[i]) }
                let mean = sum / Double(c)
                var sq = 0.0
                for i in 0..<c { let t = Double(s[i]) - mean; sq += t * t }
                let rstd = Float(1.0 / (sq / Double(c) + Double(eps)).squareRoot())
                let m = Float(mean)
                for i in 0..<c { d[i] = (s[i] - m) * rstd * gp[i] + bp[i] }
            }
        }
        return out
    }
    }

    // MARK: - Elementwise

    public static func silu(_ x: Tensor) -> Tensor { map(x) { vsilu($0) } }

    /// x · sigmoid(1.702 x) (CLIP's activation).
    public static func quickGELU(_ x: Tensor) -> Tensor {
        map(x) { v in v / (1 + vexp(v * V16(repeating: -1.702))) }
    }

    /// Exact (erf) GELU.
    public static func gelu(_ x: Tensor) -> Tensor { map(x) { vgelu($0) } }

    /// GEGLU: the last axis holds `[hidden, gate]`; returns `hidden · gelu(gate)`.
    public static func geglu(_ x: Tensor) -> Tensor {
        Profiler.measure("geglu") {
        let c2 = x.shape.last!, c = c2 / 2
        let rows = x.count / c2
        let out = Tensor(uninitialized: x.dims.replacingLast(c))
        let s = x.unsafePointer, d = out.unsafePointer
        Compute.split(rows, minimum: max(1, 8192 / c), (s, d, c, c2)) { context, range in
            let (s, d, c, c2) = context
            for r in range {
                let h = s + r * c2, g = h + c, o = d + r * c
                var i = 0
                while i + 16 <= c {
                    vstore(vload(h + i) * vgelu(vload(g + i)), o + i)
                    i += 16
                }
                while i < c {
                    var tail = V16(repeating: 0)
                    tail[0] = g[i]
                    o[i] = h[i] * vgelu(tail)[0]
                    i += 1
                }
            }
        }
        return out
    }
    }

    public static func map(_ x: Tensor, _ f: @escaping (V16) -> V16) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        let s = x.unsafePointer, d = out.unsafePointer
        Compute.split(x.count, (s, d, f)) { context, r in
            let (s, d, f) = context
            mapVector(s + r.lowerBound, d + r.lowerBound, r.count, f)
        }
        return out
    }

    /// a + b, same shapes.
    public static func add(_ a: Tensor, _ b: Tensor) -> Tensor {
        Profiler.measure("add") {
        precondition(a.shape == b.shape, "add: \(a.shape) vs \(b.shape)")
        let out = Tensor(uninitialized: a.shape)
        let ap = a.unsafePointer, bp = b.unsafePointer, d = out.unsafePointer
        Compute.split(a.count, (ap, bp, d)) { context, r in
            let (ap, bp, d) = context
            for i in r { d[i] = ap[i] + bp[i] }
        }
        return out
    }
    }

    /// x[n, c, ...] + v[n, c] broadcast over the trailing axes (ResBlock time embedding).
    public static func addPerChannel(_ x: Tensor, _ v: Tensor) -> Tensor {
        Profiler.measure("addPerChannel") {
        let (b, c) = (x.shape[0], x.shape[1])
        let inner = x.count / (b * c)
        precondition(v.count == b * c, "addPerChannel: \(x.shape) vs \(v.shape)")
        let out = Tensor(uninitialized: x.shape)
        let s = x.unsafePointer, d = out.unsafePointer, vp = v.unsafePointer
        for i in 0..<(b * c) {
            let add = V16(repeating: vp[i])
            mapVector(s + i * inner, d + i * inner, inner) { $0 + add }
        }
        return out
    }
    }

    /// x · s (the factor in the context tuple: no closure context to allocate)
    public static func scale(_ x: Tensor, _ s: Float) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        Compute.split(x.count, (x.unsafePointer, out.unsafePointer, s)) { context, r in
            let (src, d, s) = context
            mapVector(src + r.lowerBound, d + r.lowerBound, r.count) { $0 * V16(repeating: s) }
        }
        return out
    }

    // MARK: - Layout

    /// Concatenation of NCHW tensors along channels.
    public static func concatChannels(_ a: Tensor, _ b: Tensor) -> Tensor {
        Profiler.measure("concat") {
        let n = a.shape[0]
        precondition(b.shape[0] == n && a.shape.dropFirst(2).elementsEqual(b.shape.dropFirst(2)), "concat: \(a.shape) vs \(b.shape)")
        let inA = a.count / n, inB = b.count / n
        let out = Tensor(uninitialized: a.dims.replacing(1, with: a.shape[1] + b.shape[1]))
        let d = out.unsafePointer
        for i in 0..<n {
            (d + i * (inA + inB)).update(from: a.unsafePointer + i * inA, count: inA)
            (d + i * (inA + inB) + inA).update(from: b.unsafePointer + i * inB, count: inB)
        }
        return out
    }
    }

    /// `[B, C, N]` ↔ `[B, N, C]` (NCHW feature maps to token sequences and back).
    public static func transposeLast2(_ x: Tensor) -> Tensor {
        Profiler.measure("transpose") {
        let b = x.shape[0], r = x.shape[1], c = x.shape[2]
        let out = Tensor(uninitialized: Dims(b, c, r))
        let s = x.unsafePointer, d = out.unsafePointer
        let tile = 32
        for n in 0..<b {
            let sb = s + n * r * c, db = d + n * r * c
            var i0 = 0
            while i0 < r {
                var j0 = 0
                while j0 < c {
                    for i in i0..<min(i0 + tile, r) {
                        for j in j0..<min(j0 + tile, c) { db[j * r + i] = sb[i * c + j] }
                    }
                    j0 += tile
                }
                i0 += tile
            }
        }
        return out
    }
    }

    /// `F.pad(x, mode: "circular")` of an NCHW tensor by (top, left, bottom, right): the rows and
    /// columns wrap around, so output (i, j) is input ((i − top) mod H, (j − left) mod W).
    /// Each pad must be at most the padded side (as PyTorch requires).
    public static func padCircular(_ x: Tensor, _ pad: (top: Int, left: Int, bottom: Int, right: Int)) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(pad.top <= h && pad.bottom <= h && pad.left <= w && pad.right <= w,
                     "circular padding \(pad) is larger than the input \(x.shape)")
        let (ho, wo) = (h + pad.top + pad.bottom, w + pad.left + pad.right)
        let out = Tensor(uninitialized: Dims(b, c, ho, wo))
        let src = x.unsafePointer, dst = out.unsafePointer
        Compute.split(b * c, minimum: max(1, (1 << 15) / (ho * wo)), (src, dst, h, w, ho, wo, pad)) { context, planes in
            let (src, dst, h, w, ho, wo, pad) = context
            for plane in planes {
                let s = src + plane * h * w, d = dst + plane * ho * wo
                for i in 0..<ho {
                    let row = s + ((i - pad.top) % h + h) % h * w
                    let o = d + i * wo
                    for j in 0..<pad.left { o[j] = row[((j - pad.left) % w + w) % w] }
                    (o + pad.left).update(from: row, count: w)
                    for j in 0..<pad.right { o[pad.left + w + j] = row[j % w] }
                }
            }
        }
        return out
    }

    /// Nearest-neighbour 2× upsampling of NCHW.
    public static func upsampleNearest2x(_ x: Tensor) -> Tensor {
        Profiler.measure("upsample") {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = Tensor(uninitialized: Dims(b, c, 2 * h, 2 * w))
        let s = x.unsafePointer, d = out.unsafePointer
        Compute.split(b * c, minimum: 4, (s, d, h, w)) { context, range in
            let (s, d, h, w) = context
            for p in range {
                let sp = s + p * h * w, dp = d + p * 4 * h * w
                for y in 0..<h {
                    let row = dp + 2 * y * 2 * w
                    for xx in 0..<w { let v = sp[y * w + xx]; row[2 * xx] = v; row[2 * xx + 1] = v }
                    (row + 2 * w).update(from: row, count: 2 * w)
                }
            }
        }
        return out
    }
    }

    /// Nearest upsampling of NCHW to an exact size (UNet skip sizes when H/W are not
    /// multiples of 64): source index `floor(dst * in / out)`, as PyTorch's `nearest`.
    public static func upsampleNearest(_ x: Tensor, height: Int, width: Int) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        if height == 2 * h && width == 2 * w { return upsampleNearest2x(x) }
        let out = Tensor(uninitialized: Dims(b, c, height, width))
        let s = x.unsafePointer, d = out.unsafePointer
        let sy = Float(h) / Float(height), sx = Float(w) / Float(width)
        for p in 0..<(b * c) {
            for y in 0..<height {
                let iy = min(h - 1, Int(Float(y) * sy))
                for xx in 0..<width {
                    d[(p * height + y) * width + xx] = s[(p * h + iy) * w + min(w - 1, Int(Float(xx) * sx))]
                }
            }
        }
        return out
    }

    // MARK: - Attention

    /// Whether `attention` takes the fused kernel for this head width and key count
    /// (`FusedAttention`: 40-wide heads, SD 1.5's 64² level); otherwise BLAS per query block.
    public static func attentionIsFused(headDim: Int, keys: Int, causal: Bool = false) -> Bool {
        FusedAttention.applies(headDim: headDim, keys: keys, causal: causal)
    }

    /// Whether fused attention runs its AVX-512 tiles (set where the CPU has AVX-512F; ATELIER_AVX512=0
    /// turns them off). Setting it true on a CPU without AVX-512F is refused.
    public static var attentionUsesAVX512: Bool {
        get { FusedAttention.wide }
        set { FusedAttention.wide = newValue && cpuHasAVX512 }
    }

    /// Whether this CPU (and OS) run AVX-512F code.
    public static let cpuHasAVX512 = atelier_cpu_has_avx512f() != 0

    /// Whether the 512-bit kernels start on (GEMM and fused attention): where the CPU runs AVX-512F,
    /// unless ATELIER_AVX512=0.
    static let avx512ByDefault = cpuHasAVX512 && ProcessInfo.processInfo.environment["ATELIER_AVX512"] != "0"

    /// Fused attention on/off (benchmarks compare both: ATELIER_FUSED_ATTENTION=0 turns it off).
    public static var fusedAttentionEnabled: Bool {
        get { FusedAttention.enabled }
        set { FusedAttention.enabled = newValue }
    }

    /// Multi-head scaled dot-product attention on token-major tensors.
    /// `q [B, Nq, H·d]`, `k, v [B, Nk, H·d]` → `[B, Nq, H·d]`. Query rows are processed in
    /// blocks so the score matrix never exceeds `block × Nk` per task (a 4096² score
    /// matrix per head would be 64 MB); `causal` masks keys after the query (CLIP).
    public static func attention(q: Tensor, k: Tensor, v: Tensor, heads: Int, causal: Bool = false) -> Tensor {
        Profiler.measure("attention") {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1]
        let d = c / heads
        if FusedAttention.applies(headDim: d, keys: nk, causal: causal) {
            return FusedAttention.attention(q: q, k: k, v: v, heads: heads)
        }
        let scale = 1 / Float(d).squareRoot()
        let block = Ops.attentionBlock
        let qBlocks = (nq + block - 1) / block
        let out = Tensor(uninitialized: Dims(b, nq, c))
        let qp = q.unsafePointer, kp = k.unsafePointer, vp = v.unsafePointer, op = out.unsafePointer
        let tasks = b * heads * qBlocks
        let workers = min(Compute.threads, tasks)
        let sizes = (nq: nq, nk: nk, c: c, d: d, heads: heads, block: block, qBlocks: qBlocks, tasks: tasks, workers: workers)
        // each worker's block × nk scores in one scratch buffer, as the fused kernel keeps its own
        Scratch.with(workers * block * nk) { scratch in
            Compute.parallel(tasks: workers, (qp, kp, vp, op, scratch, scale, causal, sizes)) { context, worker in
                let (qp, kp, vp, op, scratch, scale, causal, (nq, nk, c, d, heads, block, qBlocks, tasks, workers)) = context
                let scores = scratch + worker * block * nk
                var t = worker
                while t < tasks {
                    let qb = t % qBlocks, h = (t / qBlocks) % heads, n = t / (qBlocks * heads)
                    let r0 = qb * block, rows = min(block, nq - r0)
                    let qs = qp + (n * nq + r0) * c + h * d
                    let ks = kp + n * nk * c + h * d
                    let vs = vp + n * nk * c + h * d
                    sgemm(transB: true, m: rows, n: nk, k: d, alpha: scale, a: qs, lda: c, b: ks, ldb: c,
                          c: scores, ldc: nk)
                    for r in 0..<rows {
                        let row = scores + r * nk
                        let valid = causal ? min(nk, r0 + r + 1) : nk
                        softmaxRow(row, valid)
                        if valid < nk { (row + valid).initialize(repeating: 0, count: nk - valid) }
                    }
                    sgemm(m: rows, n: d, k: nk, a: scores, lda: nk, b: vs, ldb: c,
                          c: op + (n * nq + r0) * c + h * d, ldc: c)
                    t += workers
                }
            }
        }
        return out
    }
    }

    /// In-place softmax of `n` floats: vector max, then exp and sum in one pass, then scale.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int) {
        var mv = V16(repeating: -.infinity)
        var i = 0
        while i + 16 <= n {
            let v = vload(row + i)
            mv.replace(with: v, where: v .> mv)
            i += 16
        }
        var m = mv.max()
        while i < n { if row[i] > m { m = row[i] }; i += 1 }
        let mb = V16(repeating: m)
        var sv = V16(repeating: 0)
        i = 0
        if FusedAttention.wide {
            // the same exp and lane sums with 512-bit vectors (CKernels)
            i = n / 16 * 16
            withUnsafeMutablePointer(to: &sv) {
                $0.withMemoryRebound(to: Float.self, capacity: 16) { atelier_exp_shifted16_avx512(row, i, m, $0) }
            }
        }
        while i + 16 <= n {
            let e = vexp(vload(row + i) - mb)
            vstore(e, row + i)
            sv += e
            i += 16
        }
        var s = sv.sum()
        while i < n { let e = expf(row[i] - m); row[i] = e; s += e; i += 1 }
        let inv = V16(repeating: 1 / s)
        mapVector(row, row, n) { $0 * inv }
    }

    // MARK: - Diffusion helpers

    /// Sinusoidal timestep embedding, `[cos | sin]` halves as LDM's `timestep_embedding`
    /// (diffusers `flip_sin_to_cos=True, freq_shift=0`), computed in float32 like PyTorch.
    public static func timestepEmbedding(_ t: [Float], dim: Int, maxPeriod: Float = 10000) -> Tensor {
        let half = dim / 2
        let out = Tensor(uninitialized: Dims(t.count, dim))
        let o = out.unsafePointer
        let lp = -logf(maxPeriod)
        for (i, tv) in t.enumerated() {
            for j in 0..<half {
                let freq = expf(lp * Float(j) / Float(half))
                let arg = tv * freq
                o[i * dim + j] = cosf(arg)
                o[i * dim + half + j] = sinf(arg)
            }
        }
        return out
    }
}

extension Optional {
    /// Calls `body` with the array's buffer where there is an array, else with nil (no allocation).
    func withUnsafeBufferPointerIfAny<E, R>(_ body: (UnsafeBufferPointer<E>?) throws -> R) rethrows -> R where Wrapped == [E] {
        guard let array = self else { return try body(nil) }
        return try array.withUnsafeBufferPointer { try body($0) }
    }
}
