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
        var seen: Set<FileKey> = [FileKey(top.identity)]
        var current = top
        while let name = current.backingFilename {
            let index = chain.layers.count - 1
            let resolved = BackingPath.resolve(name, relativeTo: current.filename)
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
            if seen.contains(FileKey(next.identity)) {
                problem(.loop, "backing file \(resolved) is already in this chain: the chain loops")
                break
            }
            if let verdict = BackingLink.problem(recorded: current.backingFormat, target: next.format, resolved: resolved) {
                problem(verdict)
                // A missing format is a warning: QEMU still opens the link, so the walk goes on.
                if verdict.kind != .noFormat { break }
            }
            seen.insert(FileKey(next.identity))
            chain.layers.append(next)
            current = next
        }
        return chain
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
