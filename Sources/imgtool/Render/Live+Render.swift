import ImageOps
import QCow2

/// Text that reaches a terminal from images, file names or QEMU: every control byte shown escaped (`\x1b`, `\n`).
enum Terminal {
    /// `text` with control characters (C0, DEL, C1) written as `\n`, `\t` or `\xNN`.
    static func safe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for u in text.unicodeScalars {
            guard isControl(u) else { out.unicodeScalars.append(u); continue }
            switch u {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                let hex = String(u.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" : "") + hex
            }
        }
        return out
    }

    static func isControl(_ u: Unicode.Scalar) -> Bool { u.value < 0x20 || (0x7F...0x9F).contains(u.value) }
}

extension LiveView {
    /// Each disk's chain as QEMU has it open, running jobs, stray nodes.
    func human(style: Style) -> String {
        var lines = ["QEMU PID \(pid), QMP monitor \(Terminal.safe(monitor.description))"]
        for d in devices {
            lines.append("disk \(Terminal.safe(d.label))" + (d.qdev.map { style.dim(" (\(Terminal.safe($0)))") } ?? ""))
            for (i, l) in d.layers.enumerated() {
                let branch = i == 0 ? "  " : "  " + String(repeating: "   ", count: i - 1) + "└─ "
                var line = branch + Terminal.safe(l.filename) + "  " + style.dim("\(l.driver), node \(Terminal.safe(l.nodeName)), \(l.readOnly ? "read-only" : "read-write")")
                if !l.pathCurrent {
                    line += "  " + style.warn("moved" + (l.currentPath.map { ": now \(Terminal.safe($0))" } ?? ""))
                }
                lines.append(line)
            }
        }
        for j in jobs {
            let pct = j.length > 0 ? Double(j.offset) * 100 / Double(j.length) : 0
            lines.append("job \(Terminal.safe(j.id)): \(j.type) \(Int(pct))% (\(Sizes.human(j.offset)) of \(Sizes.human(j.length)))\(j.ready ? ", ready" : ""), \(j.status)")
        }
        for s in strays {
            lines.append(style.warn("open outside any chain:") + " node \(Terminal.safe(s.nodeName)) (\(s.driver), \(Terminal.safe(s.filename)))")
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
        var lines = ["live (QEMU PID \(view.pid), monitor \(Terminal.safe(view.monitor.description))):"]
        let one = view.only(device)
        lines += one.human(style: style).split(separator: "\n").dropFirst().map { "  " + $0 }
        lines.append("on disk:")
        lines += ChainReport(image: image, chain: disk).human(style: style).split(separator: "\n").map { "  " + $0 }
        if differences.isEmpty {
            lines.append(style.good("QEMU and the disk agree"))
        } else {
            lines.append(style.bad("\(differences.count) difference\(differences.count == 1 ? "" : "s"):"))
            for d in differences {
                lines.append("  ✗ \(d.kind.rawValue): \(Terminal.safe(d.message))")
                for s in d.suggestions { lines.append("    fix: " + style.command(Terminal.safe(s))) }
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
