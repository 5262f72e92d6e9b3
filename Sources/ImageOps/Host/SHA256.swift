/// SHA-256 (FIPS 180-4), fed in pieces: the fingerprint of an image's metadata that a save records, so `undo` can
/// tell that nothing but the header changed without keeping megabytes of tables. No crypto library is linked, and
/// the fingerprint must not be forgeable by chance the way a CRC is.
struct SHA256: Sendable {
    private var state: [UInt32] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    init() {}

    /// Adds `bytes` to what is hashed.
    mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        length &+= UInt64(bytes.count)
        if bytes.withContiguousStorageIfAvailable({ absorb($0) }) == nil {
            Array(bytes).withUnsafeBufferPointer { absorb($0) }
        }
    }

    /// Hashes whole blocks straight from `input` (the tables hashed run to megabytes) and keeps the rest pending.
    private mutating func absorb(_ input: UnsafeBufferPointer<UInt8>) {
        var offset = 0
        if !pending.isEmpty {
            offset = min(64 - pending.count, input.count)
            pending.append(contentsOf: UnsafeBufferPointer(rebasing: input[..<offset]))
            guard pending.count == 64 else { return }
            let block = pending
            block.withUnsafeBufferPointer { Self.compress(&state, $0, blocks: 1) }
            pending.removeAll(keepingCapacity: true)
        }
        let whole = (input.count - offset) / 64
        if whole > 0 {
            Self.compress(&state, UnsafeBufferPointer(rebasing: input[offset..<(offset + whole * 64)]), blocks: whole)
            offset += whole * 64
        }
        pending.append(contentsOf: UnsafeBufferPointer(rebasing: input[offset...]))
    }
    /// Adds a number as 8 little-endian bytes (lengths and offsets are hashed with the bytes they describe, so
    /// two layouts with the same bytes in other places differ).
    mutating func update(number: UInt64) {
        update((0..<8).map { UInt8(truncatingIfNeeded: number >> (8 * UInt64($0))) })
    }

    /// The digest, as 64 lowercase hex digits.
    func hex() -> String {
        var copy = self
        let bits = length &* 8
        copy.update([0x80])
        while copy.pending.count != 56 { copy.update([0]) }
        copy.update((0..<8).map { UInt8(truncatingIfNeeded: bits >> (8 * (7 - UInt64($0)))) })
        let digits = Array("0123456789abcdef")
        var out = ""
        for word in copy.state {
            for shift in stride(from: 28, through: 0, by: -4) { out.append(digits[Int((word >> UInt32(shift)) & 0xf)]) }
        }
        return out
    }

    /// The compression function over `blocks` 64-byte blocks of `input`. The message schedule lives on the stack and
    /// the words are read through pointers: a heap array per block and checked subscripts made the fingerprints of
    /// `fix-backing` (two of 128 KiB of tables) cost more CPU than the qemu-img it runs (callgrind).
    private static func compress(_ state: inout [UInt32], _ input: UnsafeBufferPointer<UInt8>, blocks: Int) {
        guard blocks > 0, input.count >= blocks * 64, let base = input.baseAddress else { return }
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            k.withUnsafeBufferPointer { k in
                var h0 = state[0], h1 = state[1], h2 = state[2], h3 = state[3]
                var h4 = state[4], h5 = state[5], h6 = state[6], h7 = state[7]
                var p = base
                for _ in 0..<blocks {
                    for t in 0..<16 {
                        w[t] = UInt32(p[4 * t]) << 24 | UInt32(p[4 * t + 1]) << 16 | UInt32(p[4 * t + 2]) << 8 | UInt32(p[4 * t + 3])
                    }
                    for t in 16..<64 {
                        let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                        let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                        w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
                    }
                    var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7
                    for t in 0..<64 {
                        let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                        let ch = (e & f) ^ (~e & g)
                        let t1 = h &+ s1 &+ ch &+ k[t] &+ w[t]
                        let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                        let maj = (a & b) ^ (a & c) ^ (b & c)
                        let t2 = s0 &+ maj
                        (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
                    }
                    h0 &+= a; h1 &+= b; h2 &+= c; h3 &+= d
                    h4 &+= e; h5 &+= f; h6 &+= g; h7 &+= h
                    p += 64
                }
                state = [h0, h1, h2, h3, h4, h5, h6, h7]
            }
        }
    }

    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
}
