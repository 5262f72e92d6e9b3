import QCow2

/// `scan DIR --check`: every image of the store checked natively, in one process, in parallel. An image of a format
/// qemu-img has no check for (raw, VHD, …) is counted, not checked; one that cannot be read is listed with why.
public struct StoreCheck: Sendable {
    /// One image's result.
    public struct Entry: Sendable {
        /// The image's path.
        public var image: String
        /// What the check found; nil when it could not be checked (`error` says why).
        public var result: ImageCheck?
        /// Why the image could not be checked.
        public var error: String?
        /// A process or device holds the image: the answer may be stale.
        public var held: Bool
    }

    /// Every image checked or that failed, in scan order.
    public var entries: [Entry]
    /// Images of a format qemu-img cannot check.
    public var unsupported: Int

    /// Images with leaks or corruptions (or check errors).
    public var withProblems: [Entry] { entries.filter { $0.result.map { !$0.isClean } ?? false } }
    /// Images that could not be checked.
    public var failed: [Entry] { entries.filter { $0.result == nil } }
    /// True when any image has leaks or corruptions: `scan --check` exits 2.
    public var hasProblems: Bool { !withProblems.isEmpty }

    /// Totals over the store.
    public var leaks: UInt64 { entries.reduce(0) { $0 + ($1.result?.leaks ?? 0) } }
    /// Corruptions over the store.
    public var corruptions: UInt64 { entries.reduce(0) { $0 + ($1.result?.corruptions ?? 0) } }

    /// Checks every image `scan` found, on `threads` readers.
    public static func run(_ scan: Scan, threads: Int = Scan.cores) async -> StoreCheck {
        let nodes = scan.nodes
        let found = await Scan.parallelMap(nodes.count, threads: threads) { i -> Entry? in
            let node = nodes[i]
            let path = node.image.filename
            let held = scan.held[i] != nil
            do {
                let info = try ImageInfo.read(path, mode: .check)
                return Entry(image: path, result: try ImageChecker.check(info), error: nil, held: held)
            } catch let e as ImageCheck.Error {
                if case .unsupported = e { return nil }
                return Entry(image: path, result: nil, error: e.description, held: held)
            } catch {
                return Entry(image: path, result: nil, error: "\(error)", held: held)
            }
        }
        var entries: [Entry] = []
        var unsupported = 0
        for case let f? in found {
            if let e = f { entries.append(e) } else { unsupported += 1 }
        }
        return StoreCheck(entries: entries, unsupported: unsupported)
    }
}
