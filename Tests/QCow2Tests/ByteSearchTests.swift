import Testing
@testable import QCow2

/// `firstOffset(of:)` replaces `firstRange(of:)` in the descriptor readers, so it must answer as that one does.
@Suite struct ByteSearchTests {
    @Test func agreesWithFirstRangeOnRandomBytes() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            // A small alphabet makes partial matches (the case memchr + memcmp must step past) common.
            let hay = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...3, using: &rng) }
            let needle = (0..<Int.random(in: 1...4, using: &rng)).map { _ in UInt8.random(in: 0...3, using: &rng) }
            #expect(hay.firstOffset(of: needle) == hay.firstRange(of: needle)?.lowerBound, "\(hay) \(needle)")
            let slice = hay.dropFirst(hay.count / 3)
            #expect(slice.firstOffset(of: needle) == slice.firstRange(of: needle)?.lowerBound, "slice \(hay) \(needle)")
        }
    }

    @Test func edges() {
        let text = Array("parentCID=1 CID=2".utf8)
        #expect(text.firstOffset(of: Array("CID".utf8)) == 6)
        #expect(text.firstOffset(of: Array("CID=2".utf8)) == 12)
        #expect(text.firstOffset(of: Array("CID=3".utf8)) == nil)
        #expect([UInt8]().firstOffset(of: [1]) == nil)
        #expect([UInt8](repeating: 1, count: 3).firstOffset(of: [1, 1, 1, 1]) == nil)
    }
}
