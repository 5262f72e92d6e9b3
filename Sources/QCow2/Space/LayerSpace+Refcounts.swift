/// Reading the entries of a qcow2 refcount block: whether one is nonzero, and how many are, a word at a time.
extension QCow2SpaceReader {
    /// True when refcount `entry` (of `bits` bits, sub-byte ones from the low bits up as QEMU packs them) is nonzero.
    static func referenced(_ block: [UInt8], bits: UInt64, entry: Int) -> Bool {
        if bits >= 8 {
            let bytes = Int(bits / 8)
            guard (entry + 1) * bytes <= block.count else { return false }
            return block[(entry * bytes)..<((entry + 1) * bytes)].contains { $0 != 0 }
        }
        let per = 8 / Int(bits)
        guard entry / per < block.count else { return false }
        return (block[entry / per] >> UInt8((entry % per) * Int(bits))) & UInt8((1 << Int(bits)) - 1) != 0
    }

    /// How many refcounts of `bits` bits in `block` are nonzero.
    static func nonzero(_ block: [UInt8], bits: UInt64) -> UInt64 { nonzero(block, bits: bits, fromEntry: 0) }

    /// The nonzero entries of a refcount block from entry `fromEntry` on.
    static func nonzero(_ block: [UInt8], bits: UInt64, fromEntry: UInt64) -> UInt64 {
        let perWord = 64 / bits
        let total = UInt64(block.count) * 8 / bits
        var n: UInt64 = 0
        var j = fromEntry
        // Entry by entry up to a word's edge, then eight bytes at a time.
        while j < total && j % perWord != 0 {
            if referenced(block, bits: bits, entry: Int(j)) { n += 1 }
            j += 1
        }
        guard j < total else { return n }
        return block.withUnsafeBytes { raw -> UInt64 in
            var at = Int(j * bits / 8)
            // A zero word holds no nonzero entry whatever the width (entries never straddle a word), and most of a
            // refcount block is free clusters. A byte at a time this was half of `scan --space`'s time.
            while at < raw.count {
                let end = min(at + 8, raw.count)
                if end - at == 8, raw.loadUnaligned(fromByteOffset: at, as: UInt64.self) == 0 { at = end; continue }
                n += nonzero(raw, from: at, to: end, bits: bits)
                at = end
            }
            return n
        }
    }

    /// The nonzero entries among bytes `from..<to` of a refcount block (whole entries: `from` is entry-aligned).
    static func nonzero(_ raw: UnsafeRawBufferPointer, from: Int, to: Int, bits: UInt64) -> UInt64 {
        var n: UInt64 = 0
        if bits >= 8 {
            let bytes = Int(bits / 8)
            var at = from
            while at + bytes <= to {
                var any = false
                for x in at..<(at + bytes) where raw[x] != 0 { any = true; break }
                if any { n += 1 }
                at += bytes
            }
        } else {
            let per = 8 / Int(bits), mask = UInt8((1 << Int(bits)) - 1)
            for x in from..<to where raw[x] != 0 {
                for s in 0..<per where (raw[x] >> UInt8(s * Int(bits))) & mask != 0 { n += 1 }
            }
        }
        return n
    }
}
