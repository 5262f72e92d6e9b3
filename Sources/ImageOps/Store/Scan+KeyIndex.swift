import QCow2

extension Scan {
    /// Node indexes by device and inode: open addressing over 4-byte slots, the keys read from the nodes themselves.
    /// A `[FileKey: Int]` for 100,000 images takes 262,144 buckets of 24 bytes (6 MiB); this takes 1 MiB.
    struct KeyIndex {
        /// Node index + 1 per slot; 0 is free.
        private var slots: [UInt32]
        private var mask: Int
        private(set) var count = 0

        init(capacity: Int) {
            var size = 16
            while size < capacity * 2 { size <<= 1 }
            slots = [UInt32](repeating: 0, count: size)
            mask = size - 1
        }

        private func home(_ key: FileKey) -> Int {
            var h = key.inode &* 0x9E37_79B9_7F4A_7C15 ^ (key.device &* 0xC2B2_AE3D_27D4_EB4F)
            h ^= h >> 29
            return Int(truncatingIfNeeded: h) & mask
        }

        /// The node whose image has `key`.
        func find(_ key: FileKey, in nodes: [Node]) -> Int? {
            var i = home(key)
            while slots[i] != 0 {
                let n = Int(slots[i]) - 1
                if nodes[n].image.key == key { return n }
                i = (i + 1) & mask
            }
            return nil
        }

        /// Records that node `index` (already in `nodes`) has `key`; the caller has checked it is not there yet.
        mutating func insert(_ key: FileKey, _ index: Int, in nodes: [Node]) {
            if (count + 1) * 2 > slots.count { grow(nodes) }
            var i = home(key)
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = UInt32(truncatingIfNeeded: index + 1)
            count += 1
        }

        private mutating func grow(_ nodes: [Node]) {
            let old = slots
            slots = [UInt32](repeating: 0, count: old.count * 2)
            mask = slots.count - 1
            for s in old where s != 0 {
                var i = home(nodes[Int(s) - 1].image.key)
                while slots[i] != 0 { i = (i + 1) & mask }
                slots[i] = s
            }
        }
    }
}
