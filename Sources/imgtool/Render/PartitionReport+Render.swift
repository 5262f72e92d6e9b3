import ImageOps
import QCow2

/// The partition table as the contract's JSON and as a table.
extension PartitionReport {
    /// The contract's JSON.
    var json: JSON {
        let s = table.sectorSize
        return .object([
            ("table", .string(table.kind)),
            ("sector-size", .uint(s)),
            ("disk-size", .uint(table.diskSize)),
            ("partitions", .array(table.partitions.map { p in
                JSON.object([
                    ("number", .int(Int64(p.number))),
                    ("type", .string(p.type)),
                    ("type-name", .string(p.typeName)),
                    ("bootable", .bool(p.bootable)),
                    ("logical", .bool(p.logical)),
                    ("extended", .bool(p.extended)),
                    ("start-sector", .uint(p.startSector)),
                    ("sectors", .uint(p.sectors)),
                    ("offset", .uint(p.offset(s))),
                    ("size", .uint(p.size(s))),
                    ("name", p.name.map(JSON.string)),
                    ("uuid", p.uuid.map(JSON.string)),
                ])
            })),
            ("warnings", .array(table.warnings.map(JSON.string))),
        ])
    }

    /// A table a person reads at a glance, then how to mount each partition.
    func human(style: Style) -> String {
        let s = table.sectorSize
        var lines = ["\(Untrusted.shown(image)): \(table.kind == "none" ? "no partition table" : table.kind.uppercased()), \(Sizes.human(table.diskSize)), \(s)-byte sectors"]
        for w in table.warnings { lines.append(style.warn("warning: ") + Untrusted.shown(w)) }
        guard !table.partitions.isEmpty else { return lines.joined(separator: "\n") }
        var rows = [["#", "boot", "start", "sectors", "offset", "size", "type", table.kind == "gpt" ? "name" : ""]]
        for p in table.partitions {
            let kind = p.extended ? " (extended container)" : p.logical ? " (logical)" : ""
            rows.append([
                "\(p.number)", p.bootable ? "*" : "", "\(p.startSector)", "\(p.sectors)", "\(p.offset(s))",
                Sizes.human(p.size(s)), p.typeName + (table.kind == "gpt" ? "" : " (\(p.type))") + kind, Untrusted.shown(p.name ?? ""),
            ])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for (i, r) in rows.enumerated() {
            let cells = r.enumerated().map { c, v in
                c <= 5 ? String(repeating: " ", count: widths[c] - v.count) + v : v + String(repeating: " ", count: widths[c] - v.count)
            }
            var line = cells.joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(i == 0 ? style.dim(line) : line)
        }
        lines.append("")
        lines.append(format == .raw ? "mount (as root):" : "mount (as root; a \(format.rawValue) image needs qemu-nbd):")
        for p in table.partitions where !p.extended {
            let recipe = mountRecipe(p)
            if format == .raw {
                lines.append("  \(p.number): " + style.command(Untrusted.shown(recipe[0])))
            } else {
                lines.append("  \(p.number): " + recipe.map { style.command(Untrusted.shown($0)) }.joined(separator: "; "))
            }
        }
        return lines.joined(separator: "\n")
    }
}
