import QCow2

/// `scan DIR --space`: each whole chain's totals, and what the store could give back, in one process. A layer
/// shared by several chains is read once; what it holds that no chain reads (hidden in every chain that uses it)
/// is what a commit or a stream could drop.
public struct StoreSpace: Sendable {
    /// One chain, by its top image.
    public struct Chain: Sendable {
        /// The top image.
        public var image: String
        /// How many layers.
        public var layers: Int
        /// Its files' sizes, added up (a shared layer counted in every chain that uses it).
        public var fileSize: UInt64
        /// Guest bytes its layers map, added up.
        public var allocated: UInt64
        /// Guest bytes its layers map that this chain does not read.
        public var shadowed: UInt64
        /// File space nothing references, added up.
        public var unused: UInt64
        /// The file a `qemu-img convert -O qcow2` of the chain would write.
        public var flattenFileSize: UInt64
    }

    /// The chains, by top image path.
    public var chains: [Chain]
    /// Distinct image files in those chains.
    public var files: Int
    /// Their sizes, each file once.
    public var fileSize: UInt64
    /// File space nothing references, each file once.
    public var unused: UInt64
    /// Guest bytes held by a layer that no chain reads from it.
    public var unread: UInt64
    /// Chains whose space could not be read, with why.
    public var failures: [(image: String, message: String)]

    /// What the store could give back: unreferenced space and what no chain reads.
    public var reclaimable: UInt64 { unused + unread }

    /// Reads every whole chain whose top no other scanned image uses as backing. The chains are the scan's own
    /// links (a chain with a broken link or a loop anywhere is left out, as `chain` would find it), and each layer's
    /// map is the one the scan read through the same open as its header (`Scan.run(space: true)`); only a layer the
    /// scan reached outside DIR is opened here. A layer whose map failed sends its chain through `BackingChain.follow`
    /// and a fresh read, so the message names the layer as the chain names it.
    public static func compute(_ scan: Scan) -> StoreSpace {
        var isParent = [Bool](repeating: false, count: scan.nodes.count)
        for node in scan.nodes { if let p = node.parent { isParent[p] = true } }
        var broken = [Bool](repeating: false, count: scan.nodes.count)
        for p in scan.problems where !p.kind.isWarning { broken[p.node] = true }
        var cache: [FileKey: LayerSpace] = [:]
        var read: [FileKey: [(UInt64, UInt64)]] = [:]
        var result = StoreSpace(chains: [], files: 0, fileSize: 0, unused: 0, unread: 0, failures: [])
        for (n, node) in scan.nodes.enumerated() where !isParent[n] {
            let top = node.image.filename
            // The chain by the scan's links; `follow`'s depth bound and its verdicts on every link.
            var chain: [Int] = []
            var cur: Int? = n, whole = true
            while let c = cur {
                chain.append(c)
                if broken[c] || chain.count > BackingChain.defaultMaxDepth + 1 { whole = false; break }
                cur = scan.nodes[c].parent
            }
            guard whole else { continue }
            var layers: [LayerSpace] = [], keys: [FileKey] = []
            var failed = false
            for c in chain {
                let key = scan.nodes[c].image.key
                if cache[key] == nil {
                    switch scan.spaces[key] {
                    case .success(let l): cache[key] = l
                    case .failure: failed = true
                    case nil:
                        // Reached outside DIR: read now, checked to be the file the scan linked.
                        guard let info = try? ImageInfo.read(scan.nodes[c].image.filename), FileKey(info.identity) == key,
                              let l = try? LayerSpace.read(info) else { failed = true; break }
                        cache[key] = l
                    }
                }
                if failed { break }
                if let l = cache[key] { layers.append(l); keys.append(key) }
            }
            if failed {
                // The exact route (and message) of a chain read on its own.
                guard let followed = try? BackingChain.follow(top), !followed.problems.contains(where: { !$0.kind.isWarning }) else { continue }
                layers = []; keys = []
                do {
                    for info in followed.layers {
                        let key = FileKey(info.identity)
                        if cache[key] == nil { cache[key] = try LayerSpace.read(info) }
                        if let l = cache[key] { layers.append(l); keys.append(key) }
                    }
                } catch {
                    result.failures.append((top, error.description))
                    continue
                }
            }
            let ledger = SpaceLedger.compute(image: top, layers)
            for e in ledger.map where e.present { read[keys[e.depth], default: []].append((e.start, e.start + e.length)) }
            result.chains.append(Chain(image: top, layers: layers.count, fileSize: layers.reduce(0) { $0 + $1.fileSize },
                                       allocated: layers.reduce(0) { $0 + $1.allocated }, shadowed: ledger.shadowed.reduce(0, +),
                                       unused: layers.reduce(0) { $0 + $1.unused }, flattenFileSize: ledger.flattenFileSize))
        }
        for (key, layer) in cache {
            result.files += 1
            result.fileSize += layer.fileSize
            result.unused += layer.unused
            result.unread += unread(layer, (read[key] ?? []).sorted { $0.0 < $1.0 })
        }
        result.chains.sort { $0.image < $1.image }
        return result
    }

    /// Bytes of `layer`'s runs that hold file space (data, compressed, allocated zeros; not a raw file's holes or
    /// plain zero clusters) that none of `ranges` (sorted by start) covers.
    static func unread(_ layer: LayerSpace, _ ranges: [(UInt64, UInt64)]) -> UInt64 {
        var union: [(UInt64, UInt64)] = []
        for (s, e) in ranges {
            if let last = union.last, s <= last.1 { union[union.count - 1].1 = max(last.1, e) } else { union.append((s, e)) }
        }
        var total: UInt64 = 0, j = 0
        for r in layer.runs where r.kind != .zero {
            var covered: UInt64 = 0
            while j < union.count && union[j].1 <= r.start { j += 1 }
            var k = j
            while k < union.count && union[k].0 < r.end {
                covered += min(union[k].1, r.end) - max(union[k].0, r.start)
                k += 1
            }
            total += r.length - covered
        }
        return total
    }
}
