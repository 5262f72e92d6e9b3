/// Where a chain's bytes are, layer by layer, top first: what each layer maps, what the guest reads from it, what
/// the layers above hide, and what a commit or a flatten would do. Computed from the layers' allocation maps only.
public struct SpaceLedger: Sendable, Equatable {
    /// The top image as named.
    public var image: String
    /// The guest disk's size (the top's virtual size).
    public var virtualSize: UInt64
    /// Every layer's map, top first.
    public var layers: [LayerSpace]
    /// Guest bytes the guest reads from each layer (qemu-img map's `depth` and `present`).
    public var visible: [UInt64]
    /// The chain's map as `qemu-img map --output=json` reports it (neighbours with the same attributes merged).
    public var map: [MapEntry]
    /// A commit of each layer into the one below, top first.
    public var commits: [CommitPreview]
    /// The file size a `qemu-img convert -O qcow2` of the whole chain would reach (a flatten into a new image).
    public var flattenFileSize: UInt64
    /// The chain's links have no problem at all (a link with no recorded format is followed, as QEMU does, but
    /// `chain` calls it a problem, and `space` exits as `chain` does).
    public var healthy = true

    /// Guest bytes each layer maps that the guest does not read from it: hidden by a layer above (what a commit or
    /// stream drops), or past the end of a shorter layer above.
    public var shadowed: [UInt64] { zip(layers, visible).map { $0.allocated - min($0.allocated, $1) } }

    /// One range of the chain's map.
    public struct MapEntry: Sendable, Equatable {
        /// First guest byte.
        public var start: UInt64
        /// Bytes.
        public var length: UInt64
        /// The layer the guest reads it from (or where the read stops as zeros).
        public var depth: Int
        /// A layer maps it (qemu-img's `present`).
        public var present: Bool
        /// It reads data.
        public var data: Bool
        /// It reads as zeros.
        public var zero: Bool

        /// An entry (tests build qemu-img's map from these).
        package init(start: UInt64, length: UInt64, depth: Int, present: Bool, data: Bool, zero: Bool) {
            self.start = start
            self.length = length
            self.depth = depth
            self.present = present
            self.data = data
            self.zero = zero
        }
    }

    /// What `qemu-img commit` of `layer` into `into` would do.
    public struct CommitPreview: Sendable, Equatable {
        /// The layer committed (its index, top = 0).
        public var layer: Int
        /// The layer it goes into.
        public var into: Int
        /// Bytes of data copied into the target.
        public var writes: UInt64
        /// Bytes written as zeros (zero clusters in a qcow2 v3 target: no data cluster).
        public var zeroWrites: UInt64
        /// How much the target's file grows (a raw target: its allocated bytes).
        public var targetGrows: UInt64
        /// The layer is larger than the target, which is grown first.
        public var needsResize: Bool
        /// Bytes given back once the layer is merged away and deleted (its file less the target's growth; negative
        /// when the target grows by more).
        public var frees: Int64
    }

    /// Guest bytes the flatten preview reads to find clusters that read as zeros; past it, the map's upper bound.
    public static let flattenReadBudget: UInt64 = 1 << 30

    /// The ledger of the chain below `path`. The chain must be whole: a broken link is an error.
    public static func read(_ path: String) throws(LayerSpace.Error) -> SpaceLedger {
        let chain: BackingChain
        do { chain = try BackingChain.follow(path) } catch { throw .read(.open(error)) }
        if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
            throw .brokenChain(path: path, problem: "\(p.kind.rawValue): \(p.message)")
        }
        var layers: [LayerSpace] = []
        for info in chain.layers { layers.append(try LayerSpace.read(info)) }
        var ledger = compute(image: path, layers)
        ledger.healthy = chain.isHealthy
        // qemu-img convert reads what the map calls data and writes no cluster for what reads as zeros (zeros
        // written into a VDI or VHD block, a VHDX that QEMU maps as all data): the flatten reads it too. A read
        // that fails counts the cluster as data (the upper bound the map gives), and so does every cluster past
        // `flattenReadBudget` bytes read: `space` stays a metadata-speed command on a large disk.
        if let disk = try? GuestDisk.open(path) {
            let size = disk.size
            var budget = flattenReadBudget
            ledger.flattenFileSize = flattenSize(ledger.map, virtualSize: ledger.virtualSize) { c in
                let (start, o) = c.multipliedReportingOverflow(by: 65536)
                guard !o, start < size, budget >= 65536 else { return false }
                budget -= 65536
                guard let bytes = try? disk.read(at: start, count: Int(min(65536, size - start))) else { return false }
                return !bytes.contains { $0 != 0 }
            }
        }
        return ledger
    }

    /// The ledger of layers already read, top first.
    public static func compute(image: String, _ layers: [LayerSpace]) -> SpaceLedger {
        let map = chainMap(layers)
        var visible = [UInt64](repeating: 0, count: layers.count)
        for e in map where e.present { visible[e.depth] += e.length }
        var commits: [CommitPreview] = []
        for i in 0..<max(0, layers.count - 1) { commits.append(commitPreview(layers[i], into: layers[i + 1], index: i)) }
        return SpaceLedger(image: image, virtualSize: layers.first?.virtualSize ?? 0, layers: layers, visible: visible,
                           map: map, commits: commits, flattenFileSize: flattenSize(map, virtualSize: layers.first?.virtualSize ?? 0))
    }

    /// The chain's map, as qemu-img's `get_block_status` walks it: a range is read from the first layer that maps
    /// it; an unmapped range stops at a layer whose backing file ends before it (zeros), or at the bottom.
    static func chainMap(_ layers: [LayerSpace]) -> [MapEntry] {
        guard let top = layers.first else { return [] }
        var entries: [MapEntry] = []
        var uncovered: [(UInt64, UInt64)] = top.virtualSize > 0 ? [(UInt64(0), top.virtualSize)] : []
        for (d, layer) in layers.enumerated() {
            if uncovered.isEmpty { break }
            var rest: [(UInt64, UInt64)] = []
            var j = 0
            let runs = layer.runs
            for (s, e) in uncovered {
                var at = s
                while j < runs.count && runs[j].end <= at { j += 1 }
                var k = j
                while at < e {
                    guard k < runs.count, runs[k].start < e else { rest.append((at, e)); break }
                    let r = runs[k]
                    if r.start > at { rest.append((at, r.start)); at = r.start }
                    let stop = min(r.end, e)
                    entries.append(MapEntry(start: at, length: stop - at, depth: d, present: true, data: r.kind.isData, zero: r.kind.readsZero))
                    at = stop
                    if r.end <= e { k += 1 }
                }
            }
            uncovered = []
            let below = d + 1 < layers.count ? layers[d + 1].virtualSize : 0
            for (s, e) in rest {
                if d + 1 >= layers.count || s >= below {
                    entries.append(MapEntry(start: s, length: e - s, depth: d, present: false, data: false, zero: layer.supportsBacking))
                } else if e > below {
                    uncovered.append((s, below))
                    entries.append(MapEntry(start: below, length: e - below, depth: d, present: false, data: false, zero: true))
                } else {
                    uncovered.append((s, e))
                }
            }
        }
        entries.sort { $0.start < $1.start }
        var merged: [MapEntry] = []
        for e in entries {
            if var last = merged.last, last.start + last.length == e.start, last.depth == e.depth, last.present == e.present,
               last.data == e.data, last.zero == e.zero {
                last.length += e.length
                merged[merged.count - 1] = last
            } else {
                merged.append(e)
            }
        }
        return merged
    }
}
