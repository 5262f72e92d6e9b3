/// A backing chain, top first, followed natively as far as it goes, with every problem found on the way.
public struct BackingChain: Sendable, Equatable {
    /// The layers that could be read, top first.
    public var layers: [ImageInfo]
    /// The problems, in the order met. A chain with none is healthy.
    public var problems: [Problem]

    /// True when every link could be followed and agrees with what it names.
    public var isHealthy: Bool { problems.isEmpty }

    /// How many backing links are followed at most; 1000 keeps a hostile chain from running long.
    public static let defaultMaxDepth = 1000

    /// One bad backing link.
    public struct Problem: Sendable, Equatable {
        /// Index of the layer whose backing link is bad.
        public var layer: Int
        /// What is wrong.
        public var kind: Kind
        /// The backing name as recorded.
        public var backing: String
        /// Where it resolves to.
        public var resolved: String
        /// The problem in words.
        public var message: String
    }

    /// The kinds of broken link, as the CLI contract names them.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case missing, unreadable, loop
        case notAnImage = "not-an-image"
        case formatMismatch = "format-mismatch"
        case noFormat = "no-format"
        case `protocol`
        case tooDeep = "too-deep"
        case invalidHeader = "invalid-header"

        /// True when QEMU could still open the chain (the link works but is fragile).
        public var isWarning: Bool { self == .noFormat }
    }

    /// Follows the chain from `path`. Throws only when `path` itself cannot be read; every later break becomes a
    /// problem so the layers above it are still reported.
    public static func follow(_ path: String, maxDepth: Int = defaultMaxDepth) throws(ImageInfo.Error) -> BackingChain {
        let top = try ImageInfo.read(path)
        return follow(from: top, maxDepth: maxDepth)
    }

    /// Follows the chain below an image already read.
    public static func follow(from top: ImageInfo, maxDepth: Int = defaultMaxDepth) -> BackingChain {
        var chain = BackingChain(layers: [top], problems: [])
        // Not a Set<FileKey>: its first use made the runtime check FileKey's Hashable conformance by searching the
        // static binary's every conformance record (266 K of `chain`'s 664 K instructions at depth 1, callgrind).
        var seen = LayerKeys()
        seen.insert(0, in: chain.layers)
        // The layer below is read from the last one in place: a copy of an `ImageInfo` (a dozen fields, strings,
        // arrays) a layer was most of `follow`'s own instructions.
        while let name = chain.layers[chain.layers.count - 1].backingFilename {
            let index = chain.layers.count - 1
            let resolved = BackingPath.resolve(name, relativeTo: chain.layers[index].filename)
            func problem(_ kind: Kind, _ message: String) {
                chain.problems.append(Problem(layer: index, kind: kind, backing: name, resolved: resolved, message: message))
            }
            func problem(_ verdict: (kind: Kind, message: String)) { problem(verdict.kind, verdict.message) }
            if BackingPath.isProtocol(name) {
                problem(BackingLink.protocolProblem(name))
                break
            }
            if chain.layers.count > maxDepth {
                problem(.tooDeep, "the chain is deeper than \(maxDepth) backing links; stopped following at \(resolved)")
                break
            }
            let next: ImageInfo
            do {
                next = try ImageInfo.read(resolved)
            } catch {
                problem(BackingLink.problem(reading: resolved, failed: error))
                break
            }
            if seen.contains(FileKey(next.identity), in: chain.layers) {
                problem(.loop, "backing file \(resolved) is already in this chain: the chain loops")
                break
            }
            if let verdict = BackingLink.problem(recorded: chain.layers[index].backingFormat, target: next.format, resolved: resolved) {
                problem(verdict)
                // A missing format is a warning: QEMU still opens the link, so the walk goes on.
                if verdict.kind != .noFormat { break }
            }
            chain.layers.append(next)
            seen.insert(index + 1, in: chain.layers)
        }
        return chain
    }
}

/// The layers of a chain by device and inode, for loop detection: open addressing over layer indexes, the keys read
/// from the layers themselves. No `Set<FileKey>` (see `follow`); `[UInt32]` is a type the runtime has ready.
struct LayerKeys {
    /// Layer index + 1 per slot; 0 is free.
    private var slots = [UInt32](repeating: 0, count: 64)
    private var count = 0

    private func home(_ key: FileKey) -> Int {
        var h = key.inode &* 0x9E37_79B9_7F4A_7C15 ^ (key.device &* 0xC2B2_AE3D_27D4_EB4F)
        h ^= h >> 29
        return Int(truncatingIfNeeded: h) & (slots.count - 1)
    }

    /// True when a layer in `layers` has `key`.
    func contains(_ key: FileKey, in layers: [ImageInfo]) -> Bool {
        var i = home(key)
        while slots[i] != 0 {
            if FileKey(layers[Int(slots[i]) - 1].identity) == key { return true }
            i = (i + 1) & (slots.count - 1)
        }
        return false
    }

    /// Records layer `index` (already in `layers`); the caller has checked its key is not there yet.
    mutating func insert(_ index: Int, in layers: [ImageInfo]) {
        if (count + 1) * 2 > slots.count {
            let old = slots
            slots = [UInt32](repeating: 0, count: old.count * 2)
            for s in old where s != 0 { place(s, layers) }
        }
        place(UInt32(truncatingIfNeeded: index + 1), layers)
        count += 1
    }

    private mutating func place(_ slot: UInt32, _ layers: [ImageInfo]) {
        var i = home(FileKey(layers[Int(slot) - 1].identity))
        while slots[i] != 0 { i = (i + 1) & (slots.count - 1) }
        slots[i] = slot
    }
}

/// A file's identity for loop detection: two names of one file compare equal.
package struct FileKey: Hashable, Sendable {
    /// The device number.
    package var device: UInt64
    /// The inode number.
    package var inode: UInt64
    /// The key of a file already looked at.
    package init(_ id: FileIdentity) { device = id.device; inode = id.inode }
    /// The key from raw numbers (a `stat` made elsewhere).
    package init(device: UInt64, inode: UInt64) { self.device = device; self.inode = inode }
}
