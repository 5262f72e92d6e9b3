import QCow2

/// `imgtool partitions` and `offset`: the table of the guest's disk, with the line that mounts each partition.
public struct PartitionReport: Sendable {
    /// The image as given.
    public var image: String
    /// Its format (raw images mount with a loop device, anything else through qemu-nbd).
    public var format: ImageFormat
    /// The table.
    public var table: PartitionTable

    /// Reads the table of `image`'s guest disk (through the whole chain for qcow2).
    public static func read(_ image: String) throws -> PartitionReport {
        let disk = try GuestDisk.open(image)
        let table = try PartitionTable.read(diskSize: disk.size) { (offset, count) throws(GuestDisk.Error) in
            try disk.read(at: offset, count: count)
        }
        return PartitionReport(image: image, format: disk.format, table: table)
    }

    /// The line (or lines) that mount partition `p`.
    public func mountRecipe(_ p: PartitionTable.Partition) -> [String] {
        if p.extended { return [] }
        let s = table.sectorSize
        if format == .raw {
            return ["mount -o loop,offset=\(p.offset(s)),sizelimit=\(p.size(s)) \(Shell.quote(image)) /mnt"]
        }
        return [
            "modprobe nbd max_part=8",
            "qemu-nbd --connect=/dev/nbd0 --read-only \(Shell.quote(image))",
            "mount -o ro /dev/nbd0p\(p.number) /mnt",
            "umount /mnt && qemu-nbd --disconnect /dev/nbd0",
        ]
    }

    /// The contract's JSON.
    public var json: JSON {
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
    public func human(style: Style) -> String {
        let s = table.sectorSize
        var lines = ["\(image): \(table.kind == "none" ? "no partition table" : table.kind.uppercased()), \(Sizes.human(table.diskSize)), \(s)-byte sectors"]
        for w in table.warnings { lines.append(style.warn("warning: ") + w) }
        guard !table.partitions.isEmpty else { return lines.joined(separator: "\n") }
        var rows = [["#", "boot", "start", "sectors", "offset", "size", "type", table.kind == "gpt" ? "name" : ""]]
        for p in table.partitions {
            let kind = p.extended ? " (extended container)" : p.logical ? " (logical)" : ""
            rows.append([
                "\(p.number)", p.bootable ? "*" : "", "\(p.startSector)", "\(p.sectors)", "\(p.offset(s))",
                Sizes.human(p.size(s)), p.typeName + (table.kind == "mbr" ? " (\(p.type))" : "") + kind, p.name ?? "",
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
                lines.append("  \(p.number): " + style.command(recipe[0]))
            } else {
                lines.append("  \(p.number): " + recipe.map(style.command).joined(separator: "; "))
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// The shrink guard `resize` uses: a shrink that cuts a partition, or any shrink of a GPT disk, needs --force.
public enum PartitionGuard {
    /// Nil when the shrink cuts nothing; otherwise what it would cut.
    public static func check(_ image: ImageInfo, newSize: UInt64) -> String? {
        let report: PartitionReport
        do { report = try PartitionReport.read(image.filename) } catch {
            return "the partition table cannot be read (\(error)), so imgtool cannot tell what the shrink cuts"
        }
        let t = report.table
        if t.kind == "gpt" { return "the disk has a GPT, whose backup header lives in the last sector: any shrink breaks it" }
        for p in t.partitions where !p.extended {
            let end = p.end(t.sectorSize)
            if end > newSize { return "partition \(p.number) ends at byte \(end), past the new size \(newSize): the shrink would cut it" }
        }
        return nil
    }
}
