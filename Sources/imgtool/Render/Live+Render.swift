import ImageOps
import QCow2

extension LiveView {
    /// Each disk's chain as QEMU has it open, running jobs, stray nodes.
    func human(style: Style) -> String {
        var lines = ["QEMU PID \(pid), \(monitorKind == .hmp ? "human monitor (HMP)" : "QMP monitor") \(Untrusted.shown(monitor.description))"]
        for d in devices {
            lines.append("disk \(Untrusted.shown(d.label))" + (d.qdev.map { style.dim(" (\(Untrusted.shown($0)))") } ?? ""))
            for (i, l) in d.layers.enumerated() {
                let branch = i == 0 ? "  " : "  " + String(repeating: "   ", count: i - 1) + "└─ "
                var line = branch + Untrusted.shown(l.filename) + "  " + style.dim("\(l.driver), node \(Untrusted.shown(l.nodeName)), \(l.readOnly ? "read-only" : "read-write")")
                if !l.pathCurrent {
                    line += "  " + style.warn("moved" + (l.currentPath.map { ": now \(Untrusted.shown($0))" } ?? ""))
                }
                lines.append(line)
            }
        }
        for j in jobs {
            let pct = j.length > 0 ? Double(j.offset) * 100 / Double(j.length) : 0
            lines.append("job \(Untrusted.shown(j.id)): \(j.type) \(Int(pct))% (\(Sizes.human(j.offset)) of \(Sizes.human(j.length)))\(j.ready ? ", ready" : ""), \(j.status)")
        }
        for s in strays {
            lines.append(style.warn("open outside any chain:") + " node \(Untrusted.shown(s.nodeName)) (\(s.driver), \(Untrusted.shown(s.filename)))")
        }
        return lines.joined(separator: "\n")
    }

    /// One disk's live chain as JSON.
    static func json(_ d: LiveDevice) -> JSON {
        .object([
            ("device", .string(d.device)),
            ("qdev", d.qdev.map(JSON.string) ?? .null),
            ("layers", .array(d.layers.map { l in
                .object([
                    ("node-name", .string(l.nodeName)),
                    ("file-node-name", l.fileNodeName.map(JSON.string) ?? .null),
                    ("format", .string(l.driver)),
                    ("filename", .string(l.filename)),
                    ("current-filename", l.currentPath.map(JSON.string) ?? .null),
                    ("read-only", .bool(l.readOnly)),
                    ("backing-filename", l.backingFilename.map(JSON.string) ?? .null),
                    ("backing-filename-format", l.backingFormat.map(JSON.string) ?? .null),
                ])
            })),
        ])
    }
}

extension LiveComparison {
    /// The on-disk chain's report plus `pid`, `monitor`, `live` (the disk, jobs, stray nodes) and `differences`.
    var json: JSON {
        guard case .object(var fields) = ChainReport(image: image, chain: disk).json else { return .null }
        if let i = fields.firstIndex(where: { $0.0 == "healthy" }) { fields[i].1 = .bool(healthy) }
        fields += [
            ("pid", .int(Int64(view.pid))),
            ("monitor", .string(view.monitor.description)),
            ("monitor-kind", .string(view.monitorKind.rawValue)),
            ("live", LiveView.json(device)),
            ("live-index", .int(Int64(index))),
            ("jobs", .array(view.jobs.map { j in
                .object([("id", .string(j.id)), ("type", .string(j.type)), ("offset", .uint(j.offset)), ("len", .uint(j.length)),
                         ("ready", .bool(j.ready)), ("status", .string(j.status))])
            })),
            ("stray-nodes", .array(view.strays.map { s in
                .object([("node-name", .string(s.nodeName)), ("format", .string(s.driver)), ("filename", .string(s.filename))])
            })),
            ("differences", .array(differences.map { d in
                .object([("layer", d.layer.map { .int(Int64($0)) } ?? .null), ("kind", .string(d.kind.rawValue)),
                         ("message", .string(d.message)), ("suggestions", .array(d.suggestions.map(JSON.string)))])
            })),
        ]
        return .object(fields)
    }

    /// The live chain, the on-disk chain, and the differences.
    func human(style: Style) -> String {
        var lines = ["live (QEMU PID \(view.pid), \(view.monitorKind == .hmp ? "HMP " : "")monitor \(Untrusted.shown(view.monitor.description))):"]
        let one = view.only(device)
        lines += one.human(style: style).split(separator: "\n").dropFirst().map { "  " + $0 }
        lines.append("on disk:")
        lines += ChainReport(image: image, chain: disk).human(style: style).split(separator: "\n").map { "  " + $0 }
        if differences.isEmpty {
            lines.append(style.good("QEMU and the disk agree"))
        } else {
            lines.append(style.bad("\(differences.count) difference\(differences.count == 1 ? "" : "s"):"))
            for d in differences {
                lines.append("  ✗ \(d.kind.rawValue): \(Untrusted.shown(d.message))")
                for s in d.suggestions { lines.append("    fix: " + style.command(Untrusted.shown(s))) }
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension QemuMonitor {
    /// `{"kind", "address", "state"}` as `who` prints it.
    var json: JSON {
        .object([("kind", .string(kind.rawValue)), ("address", .string(address.description)), ("state", .string(state.rawValue))])
    }
}
