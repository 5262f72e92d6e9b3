import ImageOps
import QCow2

extension Scan {
    /// The `imgtool fix-backing` commands for every broken link with exactly one candidate.
    public var fixPlan: [String] {
        problems.compactMap { p in
            guard [.missing, .unreadable, .notAnImage, .invalidHeader].contains(p.kind), p.candidates.count == 1 else { return nil }
            let image = nodes[p.node].image
            let line = Repoint.command(image.filename, format: image.format, resolved: p.resolved, to: p.candidates[0])
            // A qcow v1 or VMDK link cannot be rewritten; the plan still shows the symbolic link that mends it, as a comment.
            return Untrusted.shown(Repoint.canRewrite(image.format) ? line : "# \(image.filename) is \(image.format.rawValue), whose link qemu-img cannot rewrite: " + line)
        }
    }

    /// Counts for the summary line and JSON.
    public var summary: (images: Int, chains: Int, broken: Int, loops: Int, warnings: Int, held: Int) {
        let broken = problems.filter { !$0.kind.isWarning && $0.kind != .loop }.count
        let loops = problems.filter { $0.kind == .loop }.count
        let roots = nodes.indices.filter { n in nodes[n].parent == nil }.count
        return (nodes.count, roots, broken, loops, problems.filter(\.kind.isWarning).count, held.count)
    }

    /// Images whose headers are read again together when printing: enough to keep both readers busy, few enough
    /// that memory does not grow with the store.
    static let batch = 512

    func imageJSON(_ index: Int, _ info: ImageInfo?) -> JSON {
        let n = nodes[index]
        var fields: [(String, JSON)] = []
        if let info, case .object(let f) = info.json {
            fields = f
        } else {
            // Gone or replaced since the scan: what the scan itself saw.
            let image = n.image
            fields = [
                ("filename", .string(image.filename)),
                ("format", .string(image.format.rawValue)),
                ("virtual-size", image.virtualSize.map(JSON.uint) ?? .null),
                ("backing-filename", image.backingFilename.map(JSON.string) ?? .null),
                ("full-backing-filename", image.fullBackingFilename.map(JSON.string) ?? .null),
                ("backing-filename-format", image.backingFormat.map(JSON.string) ?? .null),
            ].filter { if case .null = $0.1 { return false } else { return true } }
        }
        var tree = JSONTree(fields: fields)
        scanMembers(index, into: &tree)
        return tree.object
    }

    /// What scan adds to each image's `info` members: the image below it and what holds it.
    func scanMembers<M: JSONMembers>(_ index: Int, into m: inout M) {
        if let p = nodes[index].parent { m.add("backing-image", string: nodes[p].image.filename) } else { m.add("backing-image", .null) }
        guard let held = self.held[index] else {
            m.add("holders", JSON.array([]))
            m.add("devices", JSON.array([]))
            return
        }
        m.add("holders", .array(held.holders.map { .object([("pid", .int(Int64($0.pid))), ("command-line", .string($0.commandLine))]) }))
        m.add("devices", .array(held.devices.map { .string($0.device) }))
    }

    /// The whole JSON document, as `printJSON` writes it.
    public func json() async -> JSON {
        var images: [JSON] = []
        var start = 0
        while start < nodes.count {
            let range = start..<min(nodes.count, start + Scan.batch)
            let infos = await details(Array(range)[...])
            for (k, n) in range.enumerated() { images.append(imageJSON(n, infos[k])) }
            start = range.upperBound
        }
        return .object([("root", .string(root)), ("healthy", .bool(!hasBrokenLinks)), ("images", .array(images))] + tailFields)
    }

    /// Writes the JSON document to standard output one image at a time, so a store of thousands of images never
    /// holds the whole document (or every header) in memory. The bytes are exactly `json().rendered()`'s.
    public func printJSON(extra: [(String, JSON)] = []) async {
        var out = OutputBuffer(fd: 1)
        await writeJSON(to: &out, extra: extra)
        out.finish()
    }

    func writeJSON(to out: inout OutputBuffer, extra: [(String, JSON)] = []) async {
        var head = JSON.object([("root", .string(root)), ("healthy", .bool(!hasBrokenLinks))]).renderedBytes()
        head.removeLast(2)  // "\n}": the object goes on
        out.append(head)
        out.append(",\n    \"images\": ")
        if nodes.isEmpty {
            out.append("[]")
        } else {
            out.append("[")
            var start = 0
            while start < nodes.count {
                let range = start..<min(nodes.count, start + Scan.batch)
                let infos = await details(Array(range)[...])
                for (k, n) in range.enumerated() {
                    out.append(n == 0 ? "\n        " : ",\n        ")
                    if let info = infos[k] {
                        // Straight to bytes, no tree per image (the same bytes: see `JSONMembers`).
                        JSONBytes.object(into: &out.bytes, level: 2) { m in
                            info.members(into: &m)
                            scanMembers(n, into: &m)
                        }
                    } else {
                        imageJSON(n, nil).write(to: &out.bytes, indent: 4, level: 2)
                    }
                    out.flushIfFull()
                }
                start = range.upperBound
            }
            out.append("\n    ]")
        }
        var tail = JSON.object(tailFields + extra).renderedBytes()
        tail.removeFirst(1)  // "{": continues the object
        out.append(",")
        out.append(tail)
    }

    /// Everything after the images.
    var tailFields: [(String, JSON)] {
        let s = summary
        return [
            ("problems", .array(problems.map { p in
                .object([
                    ("image", .string(nodes[p.node].image.filename)),
                    ("kind", .string(p.kind.rawValue)),
                    ("backing", .string(p.backing)),
                    ("resolved", .string(p.resolved)),
                    ("message", .string(p.message)),
                    ("candidates", .array(p.candidates.map(JSON.string))),
                ])
            })),
            ("unreadable", .array(unreadable.map { .object([("filename", .string($0.path)), ("message", .string($0.message))]) })),
            ("summary", .object([
                ("images", .int(Int64(s.images))), ("chains", .int(Int64(s.chains))), ("broken", .int(Int64(s.broken))),
                ("loops", .int(Int64(s.loops))), ("warnings", .int(Int64(s.warnings))), ("held", .int(Int64(s.held))),
            ])),
        ]
    }

    /// A tree per base, problems under the image they belong to, then a summary line, as one string.
    public func human(style: Style) async -> String {
        var out = OutputBuffer(fd: nil)
        await writeHuman(style: style, to: &out)
        return String(decoding: out.bytes, as: UTF8.self)
    }

    /// Writes the tree to standard output as it goes.
    public func printHuman(style: Style) async {
        var out = OutputBuffer(fd: 1)
        await writeHuman(style: style, to: &out)
        out.finish()
    }

    func writeHuman(style: Style, to out: inout OutputBuffer) async {
        // Tree order, without recursion (a chain may be thousands deep): children in path order under each parent.
        var childCount = [Int32](repeating: 0, count: nodes.count + 1)
        for node in nodes { if let p = node.parent { childCount[p + 1] += 1 } }
        for k in 1..<childCount.count { childCount[k] += childCount[k - 1] }
        var children = [Int32](repeating: 0, count: nodes.count)
        var fill = childCount
        for (n, node) in nodes.enumerated() { if let p = node.parent { children[Int(fill[p])] = Int32(n); fill[p] += 1 } }
        fill = []
        var isLast = [Bool](repeating: false, count: nodes.count)
        var order: [Int32] = []  // 4 bytes an image: the order lives through the whole print
        order.reserveCapacity(nodes.count)
        var stack: [Int] = []
        for r in nodes.indices.reversed() where nodes[r].parent == nil { stack.append(r) }
        while let n = stack.popLast() {
            order.append(Int32(truncatingIfNeeded: n))
            let kids = children[Int(childCount[n])..<Int(childCount[n + 1])]
            if let last = kids.last { isLast[Int(last)] = true }
            for c in kids.reversed() { stack.append(Int(c)) }
        }
        children = []
        childCount = []

        var problemsOf: [Int: [Problem]] = [:]
        for p in problems { problemsOf[p.node, default: []].append(p) }
        /// What goes before the lines under `n`: a bar for every ancestor that has siblings still to come.
        func inner(_ n: Int) -> String {
            var segments: [String] = []
            var cur: Int? = n
            while let c = cur, let p = nodes[c].parent {
                segments.append(isLast[c] ? "   " : "│  ")
                cur = p
            }
            return segments.reversed().joined()
        }
        var start = 0
        while start < order.count {
            let slice = order[start..<min(order.count, start + Scan.batch)].map { Int($0) }
            let infos = await details(slice[...])
            for (k, n) in slice.enumerated() {
                let node = nodes[n]
                let isRoot = node.parent == nil
                let above = node.parent.map(inner) ?? ""
                let branch = isRoot ? "" : above + (isLast[n] ? "└─ " : "├─ ")
                let summary = infos[k].map(ImageReport.summary)
                    ?? ([node.image.format.rawValue] + (node.image.virtualSize.map { [Sizes.human($0) + " virtual"] } ?? [])).joined(separator: ", ")
                var line = branch + Untrusted.shown(node.image.filename) + "  " + style.dim(Untrusted.shown(summary))
                if let held = held[n] {
                    let by = held.holders.map { "PID \($0.pid)" } + held.devices.map { "\($0.kind.rawValue) device \(Untrusted.shown($0.device))" }
                    line += "  " + style.warn("held by " + by.joined(separator: ", "))
                }
                out.line(line)
                let pad = isRoot ? "" : above + (isLast[n] ? "   " : "│  ")
                for p in problemsOf[n] ?? [] {
                    let mark = p.kind.isWarning ? style.warn("! \(p.kind.rawValue)") : style.bad("✗ \(p.kind.rawValue)")
                    out.line(pad + "   " + mark + ": " + Untrusted.shown(p.message))
                    if p.candidates.isEmpty {
                        if !p.kind.isWarning && p.kind != .loop && p.kind != .protocol { out.line(pad + "     no candidate found under \(Untrusted.shown(root))") }
                    } else {
                        for c in p.candidates { out.line(pad + "     candidate: " + Untrusted.shown(c)) }
                        if p.candidates.count == 1 {
                            out.line(pad + "     fix: " + style.command(Untrusted.shown(Repoint.command(node.image.filename, format: node.image.format, resolved: p.resolved, to: p.candidates[0]))))
                        }
                    }
                }
                out.flushIfFull()
            }
            start += slice.count
        }
        for u in unreadable { out.line(style.bad("✗ ") + Untrusted.shown(u.message)) }
        let s = summary
        var tail = "\(s.images) image\(s.images == 1 ? "" : "s") in \(s.chains) chain\(s.chains == 1 ? "" : "s")"
        tail += s.broken + s.loops == 0 ? ", " + style.good("no broken links") : ", " + style.bad("\(s.broken) broken link\(s.broken == 1 ? "" : "s")")
        if s.loops > 0 { tail += ", " + style.bad("\(s.loops) loop\(s.loops == 1 ? "" : "s")") }
        if s.warnings > 0 { tail += ", \(s.warnings) warning\(s.warnings == 1 ? "" : "s")" }
        if s.held > 0 { tail += ", \(s.held) held by a process or device" }
        out.append(tail)
    }
}

/// Bytes for a file descriptor, written 64 KiB at a time (one write per image would cost a syscall each); with no
/// descriptor it only collects.
package struct OutputBuffer {
    /// What is not written yet (everything, when collecting).
    package var bytes: [UInt8] = []
    /// Where it goes; nil collects.
    let fd: Int32?

    /// A buffer for `fd`, or one that only collects.
    package init(fd: Int32?) {
        self.fd = fd
        bytes.reserveCapacity(fd == nil ? 4096 : 1 << 16)
    }

    /// Appends `text` as UTF-8.
    package mutating func append(_ text: String) { bytes.append(contentsOf: text.utf8) }
    /// Appends bytes.
    package mutating func append(_ more: [UInt8]) { bytes.append(contentsOf: more) }
    /// Appends `text` and a newline.
    package mutating func line(_ text: String) { append(text); append("\n") }

    /// Writes out once 64 KiB have gathered.
    package mutating func flushIfFull() {
        guard let fd, bytes.count >= 1 << 16 else { return }
        writeAll(fd, bytes)
        bytes.removeAll(keepingCapacity: true)
    }

    /// Writes what is left, with a final newline.
    package mutating func finish() {
        guard let fd else { return }
        append("\n")
        writeAll(fd, bytes)
        bytes.removeAll()
    }
}
