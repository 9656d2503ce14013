/// SIMD elementary functions for the hot elementwise kernels (SiLU, GELU, softmax).
public typealias V16 = SIMD16<Float>

@inline(__always) func vload(_ p: UnsafePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}

@inline(__always) func vstore(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
}

/// Eight lanes (one AVX2 register), for kernels tiled in 8-wide columns (Winograd, attention).
typealias V8 = SIMD8<Float>

@inline(__always) func vload8(_ p: UnsafePointer<Float>) -> V8 {
    UnsafeRawPointer(p).loadUnaligned(as: V8.self)
}

@inline(__always) func vstore8(_ v: V8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self)
}

/// exp on 16 lanes, relative error about 1.2e-7 on [-87, 88] (Cephes-style polynomial,
/// rounding by the 1.5·2^23 "magic add" because `rounded()` is scalarised).
@inline(__always) public func vexp(_ x0: V16) -> V16 {
    var x = x0
    x.replace(with: V16(repeating: 88.3), where: x .> 88.3)
    x.replace(with: V16(repeating: -87.3), where: x .< -87.3)
    let magic = V16(repeating: 12_582_912)
    let nm = x.addingProduct(x, V16(repeating: 0.442_695_040_888_963_41)) + magic
    let n = nm - magic
    var f = x.addingProduct(n, V16(repeating: -0.693_359_375))
    f = f.addingProduct(n, V16(repeating: 2.121_944_40e-4))
    var p = V16(repeating: 1.987_569_150_0e-4)
    p = V16(repeating: 1.398_199_950_7e-3).addingProduct(p, f)
    p = V16(repeating: 8.333_451_907_3e-3).addingProduct(p, f)
    p = V16(repeating: 4.166_579_589_4e-2).addingProduct(p, f)
    p = V16(repeating: 1.666_666_545_9e-1).addingProduct(p, f)
    p = V16(repeating: 5.000_000_120_1e-1).addingProduct(p, f)
    p = (f + 1).addingProduct(p, f * f)
    let e = (unsafeBitCast(nm, to: SIMD16<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(e, to: V16.self)
}

/// x · sigmoid(x)
@inline(__always) func vsilu(_ x: V16) -> V16 {
    x / (1 + vexp(-x))
}

/// Applies `f` to `n` floats from `src` into `dst` (may alias), 16 lanes at a time.
@inline(__always)
func mapVector(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
               _ f: (V16) -> V16) {
    var i = 0
    while i + 16 <= n {
        vstore(f(vload(src + i)), dst + i)
        i += 16
    }
    if i < n {
        var tmp = V16(repeating: 0)
        for j in 0..<(n - i) { tmp[j] = src[i + j] }
        let r = f(tmp)
        for j in 0..<(n - i) { dst[i + j] = r[j] }
    }
}

/// erf on 16 lanes as PyTorch's AVX2 `Vectorized<float>::erf` computes it (Abramowitz & Stegun
/// 7.1.26, absolute error ≤ 1.5e-7): `sign(x)·(1 − r(t)·t·e^{−x²})`, `t = 1/(1 + p|x|)`.
@inline(__always) func verf(_ x: V16) -> V16 {
    let ax = x.replacing(with: -x, where: x .< 0)
    let t = 1 / V16(repeating: 1).addingProduct(V16(repeating: 0.327_591_1), ax)
    var r = V16(repeating: -1.453_152_027).addingProduct(V16(repeating: 1.061_405_429), t)
    r = V16(repeating: 1.421_413_741).addingProduct(r, t)
    r = V16(repeating: -0.284_496_736).addingProduct(r, t)
    r = V16(repeating: 0.254_829_592).addingProduct(r, t)
    let e = vexp(-(ax * ax))
    let y = V16(repeating: 1).addingProduct(t * -e, r)
    return y.replacing(with: -y, where: x .< 0)
}

/// Exact-form GELU, `x·0.5·(1 + erf(x/√2))`, in PyTorch's order of operations.
@inline(__always) func vgelu(_ x: V16) -> V16 {
    x * V16(repeating: 0.5) * (1 + verf(x * V16(repeating: 0.707_106_781_186_547_5)))
}

/// Applies `f` to `n` pairs from `a` and `b` into `dst` (may alias either), 16 lanes at a time.
@inline(__always)
func mapVector(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
               _ f: (V16, V16) -> V16) {
    var i = 0
    while i + 16 <= n {
        vstore(f(vload(a + i), vload(b + i)), dst + i)
        i += 16
    }
    if i < n {
        var x = V16(repeating: 0), y = V16(repeating: 0)
        for j in 0..<(n - i) { x[j] = a[i + j]; y[j] = b[i + j] }
        let r = f(x, y)
        for j in 0..<(n - i) { dst[i + j] = r[j] }
    }
}
