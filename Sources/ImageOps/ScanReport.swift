import QCow2

extension Scan {
    /// The `imgtool fix-backing` commands for every broken link with exactly one candidate.
    public var fixPlan: [String] {
        problems.compactMap { p in
            guard [.missing, .unreadable, .notAnImage, .invalidHeader].contains(p.kind), p.candidates.count == 1 else { return nil }
            return Shell.join(["imgtool", "fix-backing", nodes[p.node].info.filename, "--to", p.candidates[0]])
        }
    }

    /// Counts for the summary line and JSON.
    public var summary: (images: Int, chains: Int, broken: Int, loops: Int, warnings: Int, held: Int) {
        let broken = problems.filter { !$0.kind.isWarning && $0.kind != .loop }.count
        let loops = problems.filter { $0.kind == .loop }.count
        let roots = nodes.indices.filter { n in nodes[n].parent == nil }.count
        return (nodes.count, roots, broken, loops, problems.filter(\.kind.isWarning).count, nodes.filter { !$0.holders.isEmpty }.count)
    }

    func imageJSON(_ n: Node) -> JSON {
        var fields: [(String, JSON)] = []
        if case .object(let f) = n.info.json { fields = f }
        fields.append(("backing-image", n.parent.map { .string(nodes[$0].info.filename) } ?? .null))
        fields.append(("holders", .array(n.holders.map { .object([("pid", .int(Int64($0.pid))), ("command-line", .string($0.commandLine))]) })))
        return JSON.object(fields)
    }

    /// Writes `json` to standard output one image at a time, so a store of thousands of images never holds the
    /// whole document in memory. The bytes are exactly `json.rendered()`'s.
    public func printJSON() {
        var head = JSON.object([("root", .string(root)), ("healthy", .bool(!hasBrokenLinks))]).renderedBytes()
        head.removeLast(2)  // "\n}": the object goes on
        head += Array(",\n    \"images\": ".utf8)
        if nodes.isEmpty {
            head += Array("[]".utf8)
            writeAll(1, head)
        } else {
            head += Array("[".utf8)
            writeAll(1, head)
            for (i, n) in nodes.enumerated() {
                var item: [UInt8] = Array(((i == 0 ? "" : ",") + "\n        ").utf8)
                imageJSON(n).write(to: &item, indent: 4, level: 2)
                writeAll(1, item)
            }
            writeAll(1, Array("\n    ]".utf8))
        }
        var tail = JSON.object(tailFields).renderedBytes()
        tail.removeFirst(1)  // "{": continues the object
        writeAll(1, Array(",".utf8) + tail + [UInt8(ascii: "\n")])
    }

    /// JSON for scripts.
    public var json: JSON { .object(jsonFields) }

    var jsonFields: [(String, JSON)] {
        [("root", .string(root)), ("healthy", .bool(!hasBrokenLinks)), ("images", .array(nodes.map(imageJSON)))] + tailFields
    }

    /// Everything after the images.
    var tailFields: [(String, JSON)] {
        let s = summary
        return [
            ("problems", .array(problems.map { p in
                .object([
                    ("image", .string(nodes[p.node].info.filename)),
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

    /// A tree per base, problems under the image they belong to, then a summary line.
    public func human(style: Style) -> String {
        var children: [Int: [Int]] = [:]
        for (n, node) in nodes.enumerated() { if let p = node.parent { children[p, default: []].append(n) } }
        var problemsOf: [Int: [Problem]] = [:]
        for p in problems { problemsOf[p.node, default: []].append(p) }
        var lines: [String] = []
        func emit(_ n: Int, _ prefix: String, _ isLast: Bool, _ isRoot: Bool) {
            let node = nodes[n]
            let branch = isRoot ? "" : prefix + (isLast ? "└─ " : "├─ ")
            var line = branch + node.info.filename + "  " + style.dim(ImageReport.summary(node.info))
            if !node.holders.isEmpty {
                line += "  " + style.warn("held by " + node.holders.map { "PID \($0.pid)" }.joined(separator: ", "))
            }
            lines.append(line)
            let inner = isRoot ? "" : prefix + (isLast ? "   " : "│  ")
            for p in problemsOf[n] ?? [] {
                let mark = p.kind.isWarning ? style.warn("! \(p.kind.rawValue)") : style.bad("✗ \(p.kind.rawValue)")
                lines.append(inner + "   " + mark + ": " + p.message)
                if p.candidates.isEmpty {
                    if !p.kind.isWarning && p.kind != .loop && p.kind != .protocol { lines.append(inner + "     no candidate found under \(root)") }
                } else {
                    for c in p.candidates { lines.append(inner + "     candidate: " + c) }
                    if p.candidates.count == 1 {
                        lines.append(inner + "     fix: " + style.command(Shell.join(["imgtool", "fix-backing", node.info.filename, "--to", p.candidates[0]])))
                    }
                }
            }
            let kids = children[n] ?? []
            for (k, c) in kids.enumerated() { emit(c, inner, k == kids.count - 1, false) }
        }
        for n in nodes.indices where nodes[n].parent == nil { emit(n, "", true, true) }
        for u in unreadable { lines.append(style.bad("✗ ") + u.message) }
        let s = summary
        var tail = "\(s.images) images in \(s.chains) chains"
        tail += s.broken + s.loops == 0 ? ", " + style.good("no broken links") : ", " + style.bad("\(s.broken) broken link\(s.broken == 1 ? "" : "s")")
        if s.loops > 0 { tail += ", " + style.bad("\(s.loops) loop\(s.loops == 1 ? "" : "s")") }
        if s.warnings > 0 { tail += ", \(s.warnings) warning\(s.warnings == 1 ? "" : "s")" }
        if s.held > 0 { tail += ", \(s.held) held by a process" }
        lines.append(tail)
        return lines.joined(separator: "\n")
    }
}
