#if canImport(Glibc)
import Glibc
#endif

extension RandomAccessCollection where Element == UInt8, Index == Int {
    /// The index where `needle` first occurs, like `strstr`/`memmem` on the bytes; nil when it does not occur.
    ///
    /// Descriptor text is searched on every VMDK probe and open (up to 1 MiB of it). The generic `firstRange(of:)`
    /// of _StringProcessing took a third of the whole probe's time there; this scans with `memchr` for the first
    /// byte and compares the rest in place.
    package func firstOffset(of needle: [UInt8]) -> Int? {
        guard let head = needle.first else { return startIndex }
        let found: Int?? = withContiguousStorageIfAvailable { hay -> Int? in
            guard let base = hay.baseAddress, needle.count <= hay.count else { return nil }
            let last = hay.count - needle.count  // the last position a match can start at
            var i = 0
            while i <= last {
                guard let hit = memchr(base + i, Int32(head), last - i + 1) else { return nil }
                let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                if needle.withUnsafeBytes({ n in n.baseAddress.map { memcmp(base + at, $0, n.count) == 0 } ?? false }) { return startIndex + at }
                i = at + 1
            }
            return nil
        }
        if let found { return found }
        // Not contiguous (no caller passes such a collection today): the plain scan.
        guard needle.count <= count else { return nil }
        var i = startIndex
        while i <= endIndex - needle.count {
            if self[i] == head, elementsEqual(needle, at: i) { return i }
            i += 1
        }
        return nil
    }

    private func elementsEqual(_ needle: [UInt8], at i: Int) -> Bool {
        for (k, b) in needle.enumerated() where self[i + k] != b { return false }
        return true
    }
}
