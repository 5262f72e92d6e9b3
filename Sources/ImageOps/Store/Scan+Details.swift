import QCow2

/// What a scan prints beyond its forest: the images' details, and the loop test the candidate search uses.
extension Scan {
    /// The images as printed, in the order given: raw and plain qcow2 images from what the scan kept (their brief),
    /// the others' full headers read again on all readers. An image read again that is gone or is now another file
    /// (device and inode differ) gives nil, and is printed from what the scan kept.
    package func details(_ order: ArraySlice<Int>) async -> [ImageInfo?] {
        var out = order.map { nodes[$0].printed }
        let again = out.indices.filter { out[$0] == nil }
        if again.isEmpty { return out }
        let wanted = again.map { nodes[order[order.startIndex + $0]].image }
        let read = await Scan.parallelMap(wanted.count, threads: threads) { i -> ImageInfo? in
            guard let info = try? ImageInfo.read(wanted[i].filename), FileKey(info.identity) == wanted[i].key else { return nil }
            return info
        }
        for (k, i) in again.enumerated() { out[i] = read[k] ?? nil }
        return out
    }

    /// True when `a` is `b` or lies below it (b's chain reaches a): such a candidate would make a loop.
    static func isAncestor(_ a: Int, of b: Int, _ nodes: [Node]) -> Bool {
        var cur: Int? = b
        var steps = 0
        while let c = cur, steps <= nodes.count {
            if c == a { return true }
            cur = nodes[c].parent
            steps += 1
        }
        return false
    }
}
