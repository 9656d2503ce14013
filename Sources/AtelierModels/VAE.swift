import AtelierTensor
import Foundation

/// Sizes of LDM's `AutoencoderKL` (`first_stage_config.params.ddconfig`).
public struct VAEConfig: Sendable, Equatable {
    public var ch = 128
    public var chMult = [1, 2, 4, 4]
    public var numResBlocks = 2
    public var zChannels = 4
    public var inChannels = 3
    public var outChannels = 3
    public var scaleFactor: Float = 0.18215
    public init() {}
}

/// VAE `ResnetBlock` (no time embedding; GroupNorm eps 1e-6).
struct VAEResBlock {
    let norm1: GroupNorm, conv1: Conv2d, norm2: GroupNorm, conv2: Conv2d
    let shortcut: Conv2d?

    init(_ s: WeightStore, _ p: String, in i: Int, out o: Int) throws {
        norm1 = try GroupNorm(s, p + ".norm1", channels: i, eps: 1e-6)
        conv1 = try Conv2d(s, p + ".conv1", in: i, out: o, kernel: 3)
        norm2 = try GroupNorm(s, p + ".norm2", channels: o, eps: 1e-6)
        conv2 = try Conv2d(s, p + ".conv2", in: o, out: o, kernel: 3)
        shortcut = i == o ? nil : try Conv2d(s, p + ".nin_shortcut", in: i, out: o, kernel: 1)
    }

    /// `norms`: the whole picture's statistics in a tiled decode or encode (see `TiledGroupNorm`).
    /// A stopped statistics pass (`TiledGroupNorm.stopped`) returns x at once.
    func callAsFunction(_ x: Tensor, norms: TiledGroupNorm? = nil) -> Tensor {
        let a = norm1(x, silu: true, tiled: norms)
        if norms?.stopped == true { return x }
        let b = norm2(conv1(a), silu: true, tiled: norms)
        if norms?.stopped == true { return x }
        let h = conv2(b)
        return Ops.add(shortcut.map { $0(x) } ?? x, h)
    }
}

/// VAE `AttnBlock`: one head over all h·w positions, q/k/v/proj as 1×1 convs.
struct VAEAttention {
    let norm: GroupNorm, q: Linear, k: Linear, v: Linear, proj: Linear

    init(_ s: WeightStore, _ p: String, channels c: Int) throws {
        norm = try GroupNorm(s, p + ".norm", channels: c, eps: 1e-6)
        q = try Linear(conv1x1: s, p + ".q", channels: c)
        k = try Linear(conv1x1: s, p + ".k", channels: c)
        v = try Linear(conv1x1: s, p + ".v", channels: c)
        proj = try Linear(conv1x1: s, p + ".proj_out", channels: c)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let t = Ops.transposeLast2(norm(x).reshaped([n, c, h * w]))
        let a = proj(Ops.attention(q: q(t), k: k(t), v: v(t), heads: 1))
        return Ops.add(x, Ops.transposeLast2(a).reshaped([n, c, h, w]))
    }
}

/// The VAE decoder: latents (already divided by the scale factor) → image in [-1, 1].
public struct VAEDecoder {
    let postQuant: Conv2d, convIn: Conv2d
    let mid1: VAEResBlock, midAttn: VAEAttention, mid2: VAEResBlock
    /// levels from the deepest up: (res blocks, upsample conv)
    let levels: [([VAEResBlock], Conv2d?)]
    let normOut: GroupNorm, convOut: Conv2d
    public let config: VAEConfig

    public init(_ s: WeightStore, config c: VAEConfig, prefix: String = "first_stage_model.") throws {
        config = c
        let p = prefix + "decoder."
        postQuant = try Conv2d(s, prefix + "post_quant_conv", in: c.zChannels, out: c.zChannels, kernel: 1)
        var ch = c.ch * c.chMult.last!
        convIn = try Conv2d(s, p + "conv_in", in: c.zChannels, out: ch, kernel: 3)
        mid1 = try VAEResBlock(s, p + "mid.block_1", in: ch, out: ch)
        midAttn = try VAEAttention(s, p + "mid.attn_1", channels: ch)
        mid2 = try VAEResBlock(s, p + "mid.block_2", in: ch, out: ch)
        var levels: [([VAEResBlock], Conv2d?)] = []
        for i in (0..<c.chMult.count).reversed() {
            let out = c.ch * c.chMult[i]
            var blocks: [VAEResBlock] = []
            for j in 0...c.numResBlocks {
                blocks.append(try VAEResBlock(s, p + "up.\(i).block.\(j)", in: ch, out: out))
                ch = out
            }
            let up = i != 0 ? try Conv2d(s, p + "up.\(i).upsample.conv", in: ch, out: ch, kernel: 3) : nil
            levels.append((blocks, up))
        }
        self.levels = levels
        normOut = try GroupNorm(s, p + "norm_out", channels: ch, eps: 1e-6)
        convOut = try Conv2d(s, p + "conv_out", in: ch, out: c.outChannels, kernel: 3)
    }

    /// Latent area above which `callAsFunction` decodes in tiles by default (96² latents = 768²
    /// pixels): below it the untiled decode is A1111's, bit for bit; above it memory stays
    /// that of one tile with its context (84² latents, a 672² decode) whatever the size.
    public static let tilingThreshold = 96 * 96
    /// Default tile side in latent pixels.
    public static let defaultTile = 64

    /// z: [N, 4, h, w] (scaled latents × 1/scaleFactor) → [N, 3, 8h, 8w].
    /// `tile`: nil decodes in tiles of `defaultTile` above `tilingThreshold`, 0 never tiles,
    /// n tiles with side n latent pixels (see `tiledUpsampling`); never in tiles under
    /// `ConvPadding.circular`. `statistics`: a tiled decode's GroupNorm statistics.
    public func callAsFunction(_ z: Tensor, tile: Int? = nil, statistics: TileStatistics = .byDefault) -> Tensor {
        var h = convIn(postQuant(z))
        h = mid2(midAttn(mid1(h)))
        for b in levels[0].0 { h = b(h) }
        let side = VAETiles.side(tile, latentHeight: h.shape[2], latentWidth: h.shape[3],
                                 threshold: Self.tilingThreshold, defaultTile: Self.defaultTile)
        return side == 0 ? upsampling(h) : tiledUpsampling(h, tile: side, statistics: statistics)
    }

    /// Everything after the first level's res blocks: the upsampling levels, norm and conv out.
    /// With `norms`, a stopped statistics pass returns at once (what it returns is not used).
    func upsampling(_ h0: Tensor, norms: TiledGroupNorm? = nil) -> Tensor {
        var h = h0
        if let up = levels[0].1 { h = up(Ops.upsampleNearest2x(h)) }
        for (blocks, up) in levels.dropFirst() {
            for b in blocks {
                h = b(h, norms: norms)
                if norms?.stopped == true { return h }
            }
            if let up { h = up(Ops.upsampleNearest2x(h)) }
        }
        let out = normOut(h, silu: true, tiled: norms)
        return norms?.stopped == true ? out : convOut(out)
    }

    /// PSNR of two decoded pictures in [-1, 1], clamped and mapped to [0, 1] as they are saved
    /// (how far a tiled decode is from the whole one).
    public static func picturePSNR(_ a: Tensor, _ b: Tensor) -> Double {
        precondition(a.count == b.count, "pictures of \(a.count) and \(b.count) values")
        var squares = 0.0
        for (x, y) in zip(a.scalars, b.scalars) {
            let d = Double(min(max(x, -1), 1) - min(max(y, -1), 1)) / 2
            squares += d * d
        }
        return 10 * log10(1 / max(squares / Double(a.count), 1e-20))
    }

    /// GroupNorms in `upsampling`: two per res block, and the output norm.
    var upsamplingGroupNorms: Int { levels.dropFirst().reduce(0) { $0 + 2 * $1.0.count } + 1 }

    /// Latent pixels of context that make a tile's own part exact at each GroupNorm of
    /// `upsampling`: zero padding at a region's edge spoils one more pixel per 3×3 conv, ½ latent
    /// pixel at 2×, ¼ at 4×, ⅛ at 8× (the upsampling path's statistics passes need no more).
    var upsamplingGroupNormContexts: [Int] {
        var (spoilt, scale) = (0.0, 1.0)
        var contexts: [Int] = []
        if levels[0].1 != nil { scale *= 2; spoilt += 1 / scale }
        for (blocks, up) in levels.dropFirst() {
            for _ in blocks {
                contexts.append(Int(spoilt.rounded(.up)))   // norm1, then conv1
                spoilt += 1 / scale
                contexts.append(Int(spoilt.rounded(.up)))   // norm2, then conv2
                spoilt += 1 / scale
            }
            if up != nil { scale *= 2; spoilt += 1 / scale }
        }
        contexts.append(Int(spoilt.rounded(.up)))           // norm_out
        return contexts
    }

    /// Latent pixels decoded around each tile beyond its blend band: the upsampling path's
    /// 3×3 convolutions see 6¼ latent pixels (7 convs at 2×, 7 at 4×, 7 at 8×), so the band's
    /// convolutions are exact (with `.tile` statistics, only the GroupNorms differ).
    static let tileHalo = 8

    /// The upsampling path (the memory-hungry part: 256 channels at 4× and 128 at 8× the
    /// latent size) one tile of latents at a time, as diffusers' and ComfyUI's tiled VAE
    /// decodes do; the deep part (mid attention over all positions) stays whole. Each tile
    /// is decoded with `tileHalo + VAETiles.blend` latent pixels of context, and neighbours
    /// cross-fade linearly over ±`VAETiles.blend` latent pixels around their shared border.
    /// `statistics` says where the GroupNorms' statistics come from (`TileStatistics`).
    func tiledUpsampling(_ h0: Tensor, tile: Int, statistics: TileStatistics) -> Tensor {
        let f = 1 << (levels.count - 1)          // latent → pixel scale (8)
        let tiles = VAETiles(input: h0, tile: tile, inputPerTileUnit: 1, outputPerTileUnit: f,
                             outChannels: config.outChannels, context: Self.tileHalo + VAETiles.blend)
        guard statistics == .exact else { return tiles.run { region, _ in upsampling(region) } }
        let norms = tiles.wholePictureStatistics(groupNorms: upsamplingGroupNorms, contexts: upsamplingGroupNormContexts) {
            upsampling($0, norms: $1)
        }
        return tiles.run { region, window in
            norms.begin(window)
            return upsampling(region, norms: norms)
        }
    }
}

/// Where a tiled VAE decode's or encode's GroupNorms get their statistics.
public enum TileStatistics: String, Sendable, Equatable, CaseIterable {
    /// The whole picture's, as the untiled decode (A1111's) has them: one short pass over the
    /// tiles per GroupNorm finds its statistics from the earlier ones', then the decode runs. Memory
    /// stays one tile's; the work is about 7–8 tiled decodes' (see docs/PERFORMANCE.md).
    case exact
    /// Each tile's own, its context included (one pass, as diffusers and ComfyUI decode): about
    /// 36–46 dB from the untiled picture, each tile's tones shifted a little.
    case tile

    /// A tiled decode's or encode's statistics unless the request says otherwise.
    public static let byDefault = TileStatistics.exact
}

/// The whole picture's GroupNorm statistics for a path run one tile at a time, found pass by pass.
/// Pass k normalises GroupNorms 0..<k with the moments the passes before found, merges the
/// moments of GroupNorm k's input over each tile's own part (its context left out, so each
/// position counts once), and stops there (`stopped`). Each tile's own part is exact (the context
/// covers the path's receptive field), so every pass's moments are the untiled path's, up to
/// float rounding.
///
/// Tried and dropped: each tile's own statistics corrected pass by pass toward the whole
/// picture's (shifted and scaled by how the previous pass's whole and tile moments differed):
/// +1–4 dB a pass but slow to converge (38.4 dB after three passes on some latents); fixed
/// whole-picture moments from a per-tile pass diverge pass by pass.
final class TiledGroupNorm {
    /// The whole picture's moments per GroupNorm found so far, [GroupNorm][row · group].
    private var found: [[Ops.GroupMoments]] = []
    /// This pass's GroupNorm's moments over the tiles' own parts so far, per (row, group).
    private var parts: [Ops.PartialMoments] = []
    private var window: VAETiles.Window?
    private var call = 0
    /// This pass has summed its GroupNorm: the path may return anything from here.
    private(set) var stopped = false
    /// Every GroupNorm's moments are known: no pass may stop any more.
    private var complete = false

    /// GroupNorms whose whole-picture moments are known.
    var known: Int { found.count }

    /// Starts a tile: its GroupNorm calls count from 0.
    func begin(_ window: VAETiles.Window) {
        self.window = window
        call = 0
        stopped = false
    }

    /// Ends a pass over every tile: its parts give the next GroupNorm's moments.
    func endPass() {
        found.append(parts.map(\.moments))
        parts = []
    }

    /// Marks the statistics found: from here a path with more GroupNorms than counted fails
    /// instead of stopping.
    func finish() { complete = true }

    /// `norm` applied to x, a tile's activation, with the whole picture's moments; at the pass's
    /// own GroupNorm, x's own part summed instead (and x returned: the pass stops).
    func normalize(_ norm: GroupNorm, _ x: Tensor, silu: Bool) -> Tensor {
        guard let window else { preconditionFailure("TiledGroupNorm.begin before the tile's first GroupNorm") }
        defer { call += 1 }
        if call < found.count { return norm(x, silu: silu, moments: found[call]) }
        precondition(!complete, "more GroupNorms in the path than its statistics passes counted")
        precondition(call == found.count && !stopped, "a pass stops at its own GroupNorm")
        // the own part at x's scale (the encoder's first levels have 8, 4, 2 pixels per unit); an
        // own part that reaches its region's end is at the picture's edge, so it takes the rows
        // or columns past the last whole unit too (a picture side that is no multiple of 8)
        let scale = x.shape[2] / window.regionRows.count
        let (rows, columns) = (window.rowsInRegion, window.columnsInRegion)
        let rowEnd = window.rows.upperBound == window.regionRows.upperBound ? x.shape[2] : rows.upperBound * scale
        let columnEnd = window.columns.upperBound == window.regionColumns.upperBound ? x.shape[3] : columns.upperBound * scale
        let part = Ops.groupWindowMoments(x, groups: norm.groups, rows: rows.lowerBound * scale..<rowEnd,
                                          columns: columns.lowerBound * scale..<columnEnd)
        if parts.isEmpty { parts = Array(repeating: Ops.PartialMoments(), count: part.count) }
        for i in part.indices { parts[i].merge(part[i]) }
        stopped = true
        return x
    }
}

/// Runs a convolutional path over a picture one tile at a time and cross-fades the tiles' outputs
/// (the tiled VAE decode and encode). Tiles are `tile` units square on a grid of units; the input
/// holds `inputPerTileUnit` pixels per unit and the output `outputPerTileUnit` (decode: latent
/// units, 1 in, 8 out; encode: latent units, 8 in, 1 out). Each tile runs on its region widened
/// by `context` units (clipped at the picture's edges); neighbours cross-fade linearly over
/// ±`blend` units around their shared border, and each output pixel is divided by its weights.
struct VAETiles {
    /// Units over which neighbouring tiles cross-fade, each side of their border.
    static let blend = 2
    let input: Tensor
    let tile: Int
    let inputPerTileUnit: Int, outputPerTileUnit: Int
    let outChannels: Int
    let context: Int

    /// The tile side (latents) for a picture of `latentHeight × latentWidth` latents, or 0 for
    /// whole: `requested` when given (0 = whole), else `defaultTile` above `threshold` latents of
    /// area; whole where one tile holds the picture, and always under circular padding (A1111's
    /// Tiling), where a tile's convs would wrap around the tile instead of the picture.
    static func side(_ requested: Int?, latentHeight: Int, latentWidth: Int, threshold: Int, defaultTile: Int) -> Int {
        if ConvPadding.circular { return 0 }
        let side = requested ?? (latentHeight * latentWidth > threshold ? defaultTile : 0)
        return side <= 0 || (latentHeight <= side && latentWidth <= side) ? 0 : side
    }

    /// A tile on the grid of units: its own rows and columns and those of the region it runs on
    /// (its own widened by `context`, clipped at the picture's edges), in picture units.
    struct Window {
        let rows: Range<Int>, columns: Range<Int>
        let regionRows: Range<Int>, regionColumns: Range<Int>
        /// The tile's own rows and columns within its region.
        var rowsInRegion: Range<Int> { (rows.lowerBound - regionRows.lowerBound)..<(rows.upperBound - regionRows.lowerBound) }
        var columnsInRegion: Range<Int> { (columns.lowerBound - regionColumns.lowerBound)..<(columns.upperBound - regionColumns.lowerBound) }
    }

    /// The whole picture's statistics for `path`'s `groupNorms` GroupNorms: one pass over the
    /// tiles per GroupNorm, each stopping at it (`TiledGroupNorm`).
    /// `contexts[k]`: units of context enough for a tile's own part to be exact at GroupNorm k
    /// (less than the output's, which also covers the blend band), else `context`.
    func wholePictureStatistics(groupNorms: Int, contexts: [Int]? = nil,
                                _ path: (Tensor, TiledGroupNorm) -> Tensor) -> TiledGroupNorm {
        precondition(contexts.map { $0.count == groupNorms && $0.allSatisfy { $0 <= context } } ?? true)
        let norms = TiledGroupNorm()
        while norms.known < groupNorms {
            let pass = VAETiles(input: input, tile: tile, inputPerTileUnit: inputPerTileUnit, outputPerTileUnit: outputPerTileUnit,
                                outChannels: outChannels, context: contexts?[norms.known] ?? context)
            pass.forEachRegion { region, window in
                norms.begin(window)
                _ = path(region, norms)
            }
            norms.endPass()
        }
        norms.finish()
        return norms
    }

    /// `body` called with each tile's region of the input (and where the tile lies), row by row.
    func forEachRegion(_ body: (Tensor, Window) -> Void) {
        let (n, c) = (input.shape[0], input.shape[1])
        let (uh, uw) = (input.shape[2] / inputPerTileUnit, input.shape[3] / inputPerTileUnit)
        let (ih, iw) = (input.shape[2], input.shape[3])
        let g = inputPerTileUnit
        for y0 in stride(from: 0, to: uh, by: tile) {
            for x0 in stride(from: 0, to: uw, by: tile) {
                let (y1, x1) = (min(uh, y0 + tile), min(uw, x0 + tile))
                let (ry0, ry1) = (max(0, y0 - context), min(uh, y1 + context))
                let (rx0, rx1) = (max(0, x0 - context), min(uw, x1 + context))
                // the region's input pixels (the last unit row / column takes the picture's remainder)
                let (iy0, iy1) = (ry0 * g, ry1 == uh ? ih : ry1 * g)
                let (ix0, ix1) = (rx0 * g, rx1 == uw ? iw : rx1 * g)
                let (rh, rw) = (iy1 - iy0, ix1 - ix0)
                let region = Tensor(uninitialized: [n, c, rh, rw])
                for plane in 0..<(n * c) {
                    for y in 0..<rh {
                        (region.unsafePointer + (plane * rh + y) * rw)
                            .update(from: input.unsafePointer + (plane * ih + iy0 + y) * iw + ix0, count: rw)
                    }
                }
                body(region, Window(rows: y0..<y1, columns: x0..<x1, regionRows: ry0..<ry1, regionColumns: rx0..<rx1))
            }
        }
    }

    /// `path` run on each tile's region (with where the tile lies), the outputs cross-faded.
    func run(_ path: (Tensor, Window) -> Tensor) -> Tensor {
        let n = input.shape[0]
        let (uh, uw) = (input.shape[2] / inputPerTileUnit, input.shape[3] / inputPerTileUnit)
        let f = outputPerTileUnit
        let (ph, pw) = (uh * f, uw * f)
        let out = Tensor(zeros: [n, outChannels, ph, pw])
        var weights = [Float](repeating: 0, count: ph * pw)
        let band = Float(Self.blend * f)
        /// Cross-fade weight of output pixel p for a tile whose interior is [lo, hi) pixels.
        func ramp(_ p: Int, _ lo: Int, _ hi: Int, _ size: Int) -> Float {
            var w: Float = 1
            if lo > 0 { w = min(w, max(0, (Float(p - lo) + 0.5 + band) / (2 * band))) }
            if hi < size { w = min(w, max(0, (Float(hi - p) - 0.5 + band) / (2 * band))) }
            return w
        }
        forEachRegion { region, window in
            let decoded = path(region, window)
            let (y0, y1, x0, x1) = (window.rows.lowerBound, window.rows.upperBound, window.columns.lowerBound, window.columns.upperBound)
            let (ry0, rx0) = (window.regionRows.lowerBound, window.regionColumns.lowerBound)
            let (dh, dw) = (decoded.shape[2], decoded.shape[3])
            // output pixels this tile contributes to: its interior widened by the blend band
            let (py0, py1) = (max(0, (y0 - Self.blend) * f), min(ph, (y1 + Self.blend) * f))
            let (px0, px1) = (max(0, (x0 - Self.blend) * f), min(pw, (x1 + Self.blend) * f))
            let wx = (px0..<px1).map { ramp($0, x0 * f, x1 * f, pw) }
            for py in py0..<py1 {
                let wy = ramp(py, y0 * f, y1 * f, ph)
                let dy = py - ry0 * f
                for px in px0..<px1 { weights[py * pw + px] += wy * wx[px - px0] }
                for plane in 0..<(n * outChannels) {
                    let src = decoded.unsafePointer + (plane * dh + dy) * dw
                    let dst = out.unsafePointer + (plane * ph + py) * pw
                    for px in px0..<px1 { dst[px] += wy * wx[px - px0] * src[px - rx0 * f] }
                }
            }
        }
        for plane in 0..<(n * outChannels) {
            let dst = out.unsafePointer + plane * ph * pw
            for i in 0..<(ph * pw) { dst[i] /= weights[i] }
        }
        return out
    }
}

/// The VAE encoder: image in [-1, 1] → posterior mean (unscaled latents).
public struct VAEEncoder {
    let convIn: Conv2d
    let levels: [([VAEResBlock], Conv2d?)]
    let mid1: VAEResBlock, midAttn: VAEAttention, mid2: VAEResBlock
    let normOut: GroupNorm, convOut: Conv2d, quant: Conv2d
    public let config: VAEConfig

    public init(_ s: WeightStore, config c: VAEConfig, prefix: String = "first_stage_model.") throws {
        config = c
        let p = prefix + "encoder."
        var ch = c.ch
        convIn = try Conv2d(s, p + "conv_in", in: c.inChannels, out: ch, kernel: 3)
        var levels: [([VAEResBlock], Conv2d?)] = []
        for i in 0..<c.chMult.count {
            let out = c.ch * c.chMult[i]
            var blocks: [VAEResBlock] = []
            for j in 0..<c.numResBlocks {
                blocks.append(try VAEResBlock(s, p + "down.\(i).block.\(j)", in: ch, out: out))
                ch = out
            }
            // LDM pads (0, 1, 0, 1) then convolves with stride 2 and no padding.
            let down = i != c.chMult.count - 1
                ? try Conv2d(s, p + "down.\(i).downsample.conv", in: ch, out: ch, kernel: 3, stride: 2).padded((0, 0, 1, 1))
                : nil
            levels.append((blocks, down))
        }
        self.levels = levels
        mid1 = try VAEResBlock(s, p + "mid.block_1", in: ch, out: ch)
        midAttn = try VAEAttention(s, p + "mid.attn_1", channels: ch)
        mid2 = try VAEResBlock(s, p + "mid.block_2", in: ch, out: ch)
        normOut = try GroupNorm(s, p + "norm_out", channels: ch, eps: 1e-6)
        convOut = try Conv2d(s, p + "conv_out", in: ch, out: 2 * c.zChannels, kernel: 3)
        quant = try Conv2d(s, prefix + "quant_conv", in: 2 * c.zChannels, out: 2 * c.zChannels, kernel: 1)
    }

    /// Picture area above which `mean` encodes in tiles by default: 1024² pixels, the largest whole
    /// encode under the 5 GiB bound (4.65 GiB peak RSS measured with the full SD 1.5 loaded).
    /// Up to it the encode is A1111's whole one; above it tiles bound the memory.
    public static let tilingThreshold = 1024 * 1024
    /// Default tile side in latent pixels (512 pixels).
    public static let defaultTile = 64
    /// Latent pixels encoded around each tile beyond its blend band: the downsampling path's
    /// convolutions see about 9½ latent pixels (75 pixels: 5 convs at 1×, 4 at ½, 4 at ¼, 4 at ⅛
    /// and the three stride-2 convs), so the band's convolutions are exact.
    static let tileHalo = 10

    /// x: [N, 3, H, W] in [-1, 1] → posterior mean [N, 4, H/8, W/8].
    /// `tile`: nil encodes in tiles of `defaultTile` latents above `tilingThreshold`, 0 never tiles,
    /// n tiles with side n latent pixels (never under `ConvPadding.circular`): the downsampling path (128 channels at full size, the
    /// memory-hungry part) runs per tile with `tileHalo + VAETiles.blend` latents of context, and
    /// the tiles cross-fade over ±`VAETiles.blend` latents before the mid block, which runs whole.
    /// `statistics`: `.exact` normalises the tiles with the whole picture's GroupNorm statistics
    /// (the whole encode's latents up to float rounding: 7.3e-6 relative L2 on the tiny
    /// random-weight model at 1088²); `.tile` with each tile's own, as diffusers' tiled encode does:
    /// 0.41 relative L2 (statistics estimated on a box-averaged copy did worse on a textured
    /// picture, 0.87).
    public func mean(_ x: Tensor, tile: Int? = nil, statistics: TileStatistics = .byDefault) -> Tensor {
        // the threshold is in pixels; sides are multiples of 8, so in latents it is the same test
        let side = VAETiles.side(tile, latentHeight: x.shape[2] / 8, latentWidth: x.shape[3] / 8,
                                 threshold: Self.tilingThreshold / 64, defaultTile: Self.defaultTile)
        var h: Tensor
        if side == 0 {
            h = downsampling(x)
        } else {
            let channels = config.ch * config.chMult.last!
            let tiles = VAETiles(input: x, tile: side, inputPerTileUnit: 8, outputPerTileUnit: 1, outChannels: channels,
                                 context: Self.tileHalo + VAETiles.blend)
            if statistics == .exact {
                let norms = tiles.wholePictureStatistics(groupNorms: downsamplingGroupNorms) { downsampling($0, norms: $1) }
                h = tiles.run { region, window in
                    norms.begin(window)
                    return downsampling(region, norms: norms)
                }
            } else {
                h = tiles.run { region, _ in downsampling(region) }
            }
        }
        h = mid2(midAttn(mid1(h)))
        let moments = quant(convOut(normOut(h, silu: true)))
        let n = moments.shape[0], z = config.zChannels
        let hw = moments.shape[2] * moments.shape[3]
        let out = Tensor(uninitialized: [n, z, moments.shape[2], moments.shape[3]])
        for i in 0..<n {
            (out.unsafePointer + i * z * hw).update(from: moments.unsafePointer + i * 2 * z * hw, count: z * hw)
        }
        return out
    }

    /// conv_in and the downsampling levels: [N, 3, H, W] → [N, 512, H/8, W/8].
    /// With `norms`, a stopped statistics pass returns at once (what it returns is not used).
    func downsampling(_ x: Tensor, norms: TiledGroupNorm? = nil) -> Tensor {
        var h = convIn(x)
        for (blocks, down) in levels {
            for b in blocks {
                h = b(h, norms: norms)
                if norms?.stopped == true { return h }
            }
            if let down { h = down(h) }
        }
        return h
    }

    /// GroupNorms in `downsampling`: two per res block.
    var downsamplingGroupNorms: Int { levels.reduce(0) { $0 + 2 * $1.0.count } }
}
