import AtelierImaging
import Testing

@Suite struct GridTests {
    func solid(_ v: UInt8, _ w: Int = 4, _ h: Int = 2) -> Image8 { Image8(width: w, height: h, channels: 3, pixels: [UInt8](repeating: v, count: w * h * 3)) }

    @Test func threePicturesMakeTwoRowsOfTwoWithAWhiteEmptySpotAsA1111() {
        // rows = round(√3) = 2, cols = ⌈3/2⌉ = 2
        let g = Image8.a1111Grid([solid(10), solid(20), solid(30)], batchSize: 1)
        #expect(g.width == 8 && g.height == 4)
        func px(_ x: Int, _ y: Int) -> UInt8 { g.pixels[(y * g.width + x) * 3] }
        #expect(px(0, 0) == 10 && px(4, 0) == 20 && px(0, 2) == 30 && px(4, 2) == 255)
    }

    @Test func rowOptionsFollowNRowsAndPreventEmptySpots() {
        let six = (0..<6).map { solid(UInt8($0)) }
        #expect(Image8.a1111Grid(six, batchSize: 3, nRows: 0).height == 3 * 2)      // rows = batch size
        #expect(Image8.a1111Grid(six, batchSize: 1, nRows: 3).width == 2 * 4)
        #expect(Image8.a1111Grid(six, batchSize: 1).height == 2 * 2)                 // round(√6) = 2
        let five = (0..<5).map { solid(UInt8($0)) }
        #expect(Image8.a1111Grid(five, batchSize: 1, preventEmptySpots: true).height == 1 * 2)  // 5 has no divisor ≤ 2 but 1
    }

    @Test func smallerPicturesAreCentredInTheirCell() {
        let g = Image8.a1111Grid([solid(10, 4, 4), solid(20, 2, 2)], batchSize: 1)
        #expect(g.width == 8 && g.height == 4)
        #expect(g.pixels[(1 * 8 + 5) * 3] == 20 && g.pixels[(0 * 8 + 4) * 3] == 255)
    }
}
