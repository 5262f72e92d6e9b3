import QCow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `imgtool scan DIR`: every image under DIR read natively (both cores), the chains as a forest, every broken link
/// with candidates found under DIR, loops, and images a process holds.
public struct Scan: Sendable {
    /// One image found.
    public struct Node: Sendable {
        /// The image.
        public var info: ImageInfo
        /// Index of its backing image in `nodes`, when the link resolves to one.
        public var parent: Int?
        /// Processes holding it.
        public var holders: [InUse.Holder]
    }

    /// A broken link.
    public struct Problem: Sendable {
        /// Index of the image whose link is bad.
        public var node: Int
        /// Kind, as `chain` names them.
        public var kind: BackingChain.Kind
        /// The recorded backing name.
        public var backing: String
        /// Where it resolves.
        public var resolved: String
        /// In words.
        public var message: String
        /// Files under DIR that could be the lost backing file: same name first, then same format and size.
        public var candidates: [String]
    }

    /// The folder scanned.
    public var root: String
    /// Every image found, in path order.
    public var nodes: [Node]
    /// Every bad link.
    public var problems: [Problem]
    /// Files that looked like images but could not be read (invalid header, unreadable).
    public var unreadable: [(path: String, message: String)]

    /// True when any link is broken or loops (warnings such as no-format do not count).
    public var hasBrokenLinks: Bool { problems.contains { !$0.kind.isWarning } }

    static let rawExtensions: Set<String> = ["raw", "img", "iso"]

    static func ext(_ path: String) -> String {
        let name = BackingPath.fileName(path)
        guard let dot = name.lastIndex(of: ".") else { return "" }
        return String(name[name.index(after: dot)...]).lowercased()
    }

    /// Scans `root`. `threads` readers share the files (the machine's cores by default).
    public static func run(_ root: String, threads: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))) async -> Scan {
        var files: [String] = []
        Directory.walk(root, maxDepth: 64, limit: 5_000_000) { e in if !e.isDirectory { files.append(e.path) } }
        files.sort()
        let allFiles = files

        // Read every header in parallel: one open, fstat and pread each.
        let chunks = max(1, threads)
        let results: [(Int, Result<ImageInfo, ImageInfo.Error>)] = await withTaskGroup(of: [(Int, Result<ImageInfo, ImageInfo.Error>)].self) { group in
            for c in 0..<chunks {
                group.addTask {
                    var out: [(Int, Result<ImageInfo, ImageInfo.Error>)] = []
                    var i = c
                    while i < allFiles.count {
                        do throws(ImageInfo.Error) { out.append((i, .success(try ImageInfo.read(allFiles[i])))) } catch { out.append((i, .failure(error))) }
                        i += chunks
                    }
                    return out
                }
            }
            var all: [(Int, Result<ImageInfo, ImageInfo.Error>)] = []
            for await part in group { all += part }
            return all.sorted { $0.0 < $1.0 }
        }

        var infos: [ImageInfo] = []
        var unreadable: [(String, String)] = []
        var rawMaybe: [ImageInfo] = []
        for (_, r) in results {
            switch r {
            case .success(var info):
                // The forest needs none of the feature-name table: drop it so memory stays small per image.
                info.qcow2?.featureNames = []
                if info.format != .raw || rawExtensions.contains(ext(info.filename)) { infos.append(info) } else { rawMaybe.append(info) }
            case .failure(let e):
                if case .header = e { unreadable.append((files.first { e.description.hasPrefix($0 + ":") } ?? "?", e.description)) }
                else if case .file(.unreadable(let p, _)) = e { unreadable.append((p, e.description)) }
            }
        }
        // A raw file without an image extension counts when something names it as backing.
        var byKey: [FileKey: Int] = [:]
        var nodes: [Node] = []
        func add(_ info: ImageInfo) -> Int {
            let k = FileKey(info.identity)
            if let i = byKey[k] { return i }
            nodes.append(Node(info: info, parent: nil, holders: []))
            byKey[k] = nodes.count - 1
            return nodes.count - 1
        }
        for info in infos { _ = add(info) }
        var rawByKey: [FileKey: ImageInfo] = [:]
        for info in rawMaybe { rawByKey[FileKey(info.identity)] = info }

        var problems: [Problem] = []
        var i = 0
        while i < nodes.count {
            let info = nodes[i].info
            defer { i += 1 }
            guard let name = info.backingFilename else { continue }
            let resolved = BackingPath.resolve(name, relativeTo: info.filename)
            func problem(_ kind: BackingChain.Kind, _ message: String) {
                problems.append(Problem(node: i, kind: kind, backing: name, resolved: resolved, message: message, candidates: []))
            }
            if BackingPath.isProtocol(name) { problem(.protocol, "backing \"\(name)\" is a protocol string"); continue }
            var st = stat()
            guard stat(resolved, &st) == 0 else {
                if errno == EACCES { problem(.unreadable, "backing file \(resolved) cannot be reached (permission denied)") }
                else { problem(.missing, "backing file \(resolved) does not exist") }
                continue
            }
            let key = FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino))
            var parent = byKey[key]
            if parent == nil {
                if let raw = rawByKey[key] { parent = add(raw) }
                else {
                    // Outside DIR, or not read above: read it now.
                    do throws(ImageInfo.Error) { parent = add(try ImageInfo.read(resolved)) } catch {
                        switch error {
                        case .header: problem(.invalidHeader, error.description)
                        case .file(.notAFile): problem(.notAnImage, "backing file \(resolved) is not a regular file")
                        default: problem(.unreadable, error.description)
                        }
                        continue
                    }
                }
            }
            guard let p = parent else { continue }
            nodes[i].parent = p
            let target = nodes[p].info
            if let recorded = info.backingFormat {
                if ImageFormat(qemuName: recorded) != target.format {
                    problem(.formatMismatch, "recorded backing format is \(recorded) but \(resolved) is \(target.format.rawValue)")
                }
            } else {
                problem(.noFormat, "no backing format recorded; QEMU has to guess (\(resolved) looks like \(target.format.rawValue))")
            }
        }

        // Loops: each node has at most one parent, so a walk up either ends or meets itself.
        var state = [UInt8](repeating: 0, count: nodes.count)  // 0 new, 1 on the current walk, 2 done
        for start in nodes.indices where state[start] == 0 {
            var path: [Int] = []
            var cur: Int? = start
            while let c = cur, state[c] == 0 {
                state[c] = 1
                path.append(c)
                cur = nodes[c].parent
            }
            if let c = cur, state[c] == 1 {
                let cycle = path.drop { $0 != c }.map { nodes[$0].info.filename }
                let info = nodes[c].info
                problems.append(Problem(node: c, kind: .loop, backing: info.backingFilename ?? "", resolved: info.fullBackingFilename ?? "",
                                        message: "the chain loops: " + (cycle + [info.filename]).joined(separator: " → "), candidates: []))
                nodes[c].parent = nil  // so the forest stays a forest
            }
            for n in path { state[n] = 2 }
        }

        // Candidates for every missing or unreadable link.
        // Raw files without an image extension are candidates too (a moved base may be called anything), but they
        // are not listed as images unless something names them.
        var byName: [String: [String]] = [:]
        for node in nodes { byName[BackingPath.fileName(node.info.filename), default: []].append(node.info.filename) }
        for info in rawMaybe where byKey[FileKey(info.identity)] == nil {
            byName[BackingPath.fileName(info.filename), default: []].append(info.filename)
        }
        for k in problems.indices where [.missing, .unreadable, .notAnImage, .invalidHeader].contains(problems[k].kind) {
            let p = problems[k]
            let owner = nodes[p.node].info
            var found: [String] = []
            for path in byName[BackingPath.fileName(p.backing)] ?? [] {
                if let c = nodes.firstIndex(where: { $0.info.filename == path }), c == p.node || isAncestor(p.node, of: c, nodes) { continue }
                found.append(path)
            }
            if found.isEmpty, let size = owner.virtualSize {
                let wanted = owner.backingFormat.flatMap(ImageFormat.init(qemuName:))
                for (c, node) in nodes.enumerated() where c != p.node && node.info.virtualSize == size
                    && (wanted == nil || node.info.format == wanted) && !isAncestor(p.node, of: c, nodes) {
                    found.append(node.info.filename)
                }
            }
            problems[k].candidates = found
        }

        // Holders, from one pass over /proc.
        let open = InUse.openFiles()
        for n in nodes.indices { nodes[n].holders = open[FileKey(nodes[n].info.identity)] ?? [] }
        return Scan(root: root, nodes: nodes, problems: problems, unreadable: unreadable.map { (path: $0.0, message: $0.1) })
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
