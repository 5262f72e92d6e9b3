import QCow2
import SystemPackage

import Glibc

/// `imgtool scan DIR`: every image under DIR read natively (both cores), the chains as a forest, every broken link
/// with candidates found under DIR, loops, and images a process holds.
///
/// Memory stays nearly flat as the store grows: the forest keeps a slim `Image` per file (name, key, format, size,
/// backing link), and the full header of each image is read again only when it is printed, a batch at a time.
public struct Scan: Sendable {
    /// The folder scanned.
    public var root: String
    /// Every image found, in path order.
    public var nodes: [Node]
    /// Every bad link.
    public var problems: [Problem]
    /// What holds the few images that are held, by index in `nodes` (kept apart: most images are held by nothing).
    public var held: [Int: Held] = [:]
    /// Files that looked like images but could not be read (invalid header, unreadable).
    public var unreadable: [(path: String, message: String)]
    /// Readers used, for scanning and for reading headers again when printing.
    var threads: Int
    /// With `space`: each image's allocation map (or why it could not be read), read through the same open as its
    /// header, by device and inode.
    package var spaces: [FileKey: Result<LayerSpace, LayerSpace.Error>] = [:]

    /// True when any link is broken or loops (warnings such as no-format do not count).
    public var hasBrokenLinks: Bool { problems.contains { !$0.kind.isWarning } }

    static let rawExtensions: Set<String> = ["raw", "img", "iso"]

    static func ext(_ path: String) -> String {
        let name = BackingPath.fileName(path)
        guard let dot = name.lastIndex(of: ".") else { return "" }
        return String(name[name.index(after: dot)...]).lowercased()
    }

    /// Online cores: how many readers a scan uses by default.
    public static var cores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// What reading one file gave.
    enum Found: Sendable {
        case image(Image)
        /// A file without a known image format and without a raw image's extension: an image only if named.
        case rawMaybe(Image)
        case unreadable(String)
        case nothing
    }

    /// Calls `read` for every index in `0..<count` on `threads` tasks; results come back in index order.
    static func parallelMap<T: Sendable>(_ count: Int, threads: Int, _ read: @escaping @Sendable (Int) -> T) async -> [T?] {
        let chunks = max(1, min(threads, count))
        var out = [T?](repeating: nil, count: count)
        await withTaskGroup(of: [(Int, T)].self) { group in
            for c in 0..<chunks {
                group.addTask {
                    var part: [(Int, T)] = []
                    part.reserveCapacity(count / chunks + 1)
                    var i = c
                    while i < count { part.append((i, read(i))); i += chunks }
                    return part
                }
            }
            for await part in group { for (i, v) in part { out[i] = v } }
        }
        return out
    }

    /// What reading one file gave, beside its slot (the slot itself holds the image).
    enum Kind: UInt8 { case nothing, image, rawMaybe, unreadable }

    /// Scans `root`. `threads` readers share the files (the machine's cores by default).
    /// With `space`, each image's allocation map is read too, through the open that read its header (`scan --space`).
    public static func run(_ root: String, threads: Int = cores, space: Bool = false) async -> Scan {
        var files: [String] = []
        // Names not listed as regular files (links, devices, unknown types): few, so kept apart and matched after
        // the sort, where a flag beside every name would cost 8 bytes an image through the whole read.
        var irregular: [String] = []
        // Every entry: what the walk cannot read is reported with the unreadable files, never left out.
        let missed = FolderSearch.walk(root, recursive: true) { path, regular in
            files.append(path)
            if !regular { irregular.append(path) }
        }
        files.sort()
        irregular.sort()
        var listedRegular = [Bool](repeating: true, count: files.count)
        do {
            var k = 0
            for i in files.indices where k < irregular.count && files[i] == irregular[k] {
                listedRegular[i] = false
                k += 1
            }
        }
        irregular = []

        // Read every header in parallel (one open, fstat and pread each) into the slot of its file: the nodes are
        // these slots, compacted in place below, so no second list of every image is ever built.
        let blank = Node(image: Image(filename: "", key: FileKey(device: 0, inode: 0), format: .raw))
        var nodes = [Node](repeating: blank, count: files.count)
        var kinds = [Kind](repeating: .nothing, count: files.count)
        var slotSpaces = [Result<LayerSpace, LayerSpace.Error>?](repeating: nil, count: space ? files.count : 0)
        do {
            let allFiles = files, regular = listedRegular
            nodes.withUnsafeMutableBufferPointer { nodeBuffer in
              kinds.withUnsafeMutableBufferPointer { kindBuffer in
                slotSpaces.withUnsafeMutableBufferPointer { spaceBuffer in
                    guard let slots = nodeBuffer.baseAddress, let kindOf = kindBuffer.baseAddress else { return }
                    // An empty array may still give a base address: only a buffer sized for every slot is written.
                    let spaceOf = spaceBuffer.count == allFiles.count ? spaceBuffer.baseAddress : nil
                    forEachParallel(allFiles.count, threads: threads) { i in
                        let path = allFiles[i]
                        do throws(ImageInfo.Error) {
                            let file: ImageFile
                            do throws(ImageFile.Error) {
                                file = try regular[i] ? ImageFile.open(listedRegular: path) : ImageFile.open(path)
                            } catch { throw .file(error) }
                            let info = try ImageInfo.read(file)
                            kindOf[i] = info.format != .raw || rawExtensions.contains(ext(path)) ? .image : .rawMaybe
                            slots[i] = Node(info)
                            if let spaceOf {
                                do throws(LayerSpace.Error) { spaceOf[i] = .success(try LayerSpace.read(info, file: file)) } catch {
                                    spaceOf[i] = .failure(error)
                                }
                            }
                        } catch {
                            switch error {
                            case .header, .invalid, .snapshots, .file(.unreadable):
                                kindOf[i] = .unreadable
                                // The message rides in the slot's backing name until the slot is compacted away.
                                slots[i].image.backingFilename = error.description
                            default: break
                            }
                        }
                    }
                }
              }
            }
        }

        var byKey = KeyIndex(capacity: files.count)
        var unreadable: [(path: String, message: String)] = missed.map { ($0.path, "\($0.path) \($0.reason)") }
        var rawByKey: [FileKey: Node] = [:]
        var rawMaybe: [Image] = []
        // Compact in place: slot i moves to `count` when it is a new image; everything else leaves the list.
        var count = 0
        var spaces: [FileKey: Result<LayerSpace, LayerSpace.Error>] = [:]
        for i in nodes.indices {
            if space, let s = slotSpaces[i], spaces[nodes[i].image.key] == nil { spaces[nodes[i].image.key] = s }
            switch kinds[i] {
            case .image:
                let key = nodes[i].image.key
                if byKey.find(key, in: nodes) != nil { continue }
                if count != i { nodes.swapAt(count, i) }
                byKey.insert(key, count, in: nodes)
                count += 1
            case .rawMaybe: rawByKey[nodes[i].image.key] = nodes[i]; rawMaybe.append(nodes[i].image)
            case .unreadable: unreadable.append((files[i], nodes[i].image.backingFilename ?? ""))
            case .nothing: break
            }
        }
        nodes.removeSubrange(count...)
        kinds = []
        files = []
        listedRegular = []
        slotSpaces = []
        func add(_ node: Node) -> Int {
            if let i = byKey.find(node.image.key, in: nodes) { return i }
            nodes.append(node)
            byKey.insert(node.image.key, nodes.count - 1, in: nodes)
            return nodes.count - 1
        }

        // Where each backing name leads, by the resolved name: a store's overlays name a few bases, so one `stat`
        // serves every overlay of a folder that names the same file. Bounded: cleared when it fills.
        var resolvedKeys: [String: (key: FileKey?, errno: Int32)] = [:]
        var problems: [Problem] = []
        var i = 0
        while i < nodes.count {
            let image = nodes[i].image
            defer { i += 1 }
            guard let name = image.backingFilename else { continue }
            let resolved = BackingPath.resolve(name, relativeTo: image.filename)
            func problem(_ kind: BackingChain.Kind, _ message: String) {
                problems.append(Problem(node: i, kind: kind, backing: name, resolved: resolved, message: message, candidates: []))
            }
            func problem(_ verdict: (kind: BackingChain.Kind, message: String)) { problem(verdict.kind, verdict.message) }
            if BackingPath.isProtocol(name) { problem(BackingLink.protocolProblem(name)); continue }
            var looked = resolvedKeys[resolved]
            if looked == nil {
                var st = stat()
                if Sys.stat(resolved, &st) == 0 {
                    looked = (FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino)), 0)
                } else {
                    looked = (nil, errno)
                }
                if resolvedKeys.count >= 4096 { resolvedKeys.removeAll(keepingCapacity: true) }
                resolvedKeys[resolved] = looked
            }
            guard let key = looked?.key else {
                problem(BackingLink.problem(statOf: resolved, errno: looked?.errno ?? ENOENT))
                continue
            }
            var parent = byKey.find(key, in: nodes)
            if parent == nil {
                if let raw = rawByKey[key] { parent = add(raw) }
                else {
                    // Outside DIR, or not read above: read it now.
                    do throws(ImageInfo.Error) { parent = add(Node(try ImageInfo.read(resolved))) } catch {
                        problem(BackingLink.problem(reading: resolved, failed: error))
                        continue
                    }
                }
            }
            guard let p = parent else { continue }
            nodes[i].parent = p
            let target = nodes[p].image
            if let verdict = BackingLink.problem(recorded: image.backingFormat, target: target.format, resolved: resolved) { problem(verdict) }
        }
        resolvedKeys = [:]
        rawByKey = [:]

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
                let cycle = path.drop { $0 != c }.map { nodes[$0].image.filename }
                let image = nodes[c].image
                problems.append(Problem(node: c, kind: .loop, backing: image.backingFilename ?? "", resolved: image.fullBackingFilename ?? "",
                                        message: "the chain loops: " + (cycle + [image.filename]).joined(separator: " → "), candidates: []))
                nodes[c].parent = nil  // so the forest stays a forest
            }
            for n in path { state[n] = 2 }
        }

        // Candidates for every missing or unreadable link.
        // Raw files without an image extension are candidates too (a moved base may be called anything), but they
        // are not listed as images unless something names them. Indexes are built only when a link is broken.
        let lost = problems.indices.filter { [.missing, .unreadable, .notAnImage, .invalidHeader].contains(problems[$0].kind) }
        if !lost.isEmpty {
            var byName: [String: [(path: String, node: Int?)]] = [:]
            var bySize: [UInt64: [Int]] = [:]
            for (n, node) in nodes.enumerated() {
                byName[BackingPath.fileName(node.image.filename), default: []].append((node.image.filename, n))
                if let v = node.image.virtualSize { bySize[v, default: []].append(n) }
            }
            for image in rawMaybe where byKey.find(image.key, in: nodes) == nil {
                byName[BackingPath.fileName(image.filename), default: []].append((image.filename, nil))
            }
            for k in lost {
                let p = problems[k]
                let owner = nodes[p.node].image
                var found: [String] = []
                for c in byName[BackingPath.fileName(p.backing)] ?? [] {
                    if let n = c.node, n == p.node || isAncestor(p.node, of: n, nodes) { continue }
                    found.append(c.path)
                }
                if found.isEmpty, let size = owner.virtualSize {
                    let wanted = owner.backingFormat.flatMap(ImageFormat.init(qemuName:))
                    for c in bySize[size] ?? [] where c != p.node && (wanted == nil || nodes[c].image.format == wanted)
                        && !isAncestor(p.node, of: c, nodes) {
                        found.append(nodes[c].image.filename)
                    }
                }
                problems[k].candidates = found
            }
        }

        // Holders, from one pass over /proc.
        let open = InUse.openFiles()
        let loops = Readers.loopDevices()
        var held: [Int: Held] = [:]
        if !open.isEmpty || !loops.isEmpty {
            for n in nodes.indices {
                let holders = open[nodes[n].image.key] ?? [], devices = loops[nodes[n].image.key] ?? []
                if !holders.isEmpty || !devices.isEmpty { held[n] = Held(holders: holders, devices: devices) }
            }
        }
        return Scan(root: root, nodes: nodes, problems: problems, held: held, unreadable: unreadable, threads: threads, spaces: spaces)
    }
}
