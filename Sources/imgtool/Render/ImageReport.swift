import ImageOps
import QCow2

/// Human text for one image.
enum ImageReport {
    /// One line: format, version, sizes.
    static func summary(_ info: ImageInfo) -> String {
        var parts: [String] = []
        if let h = info.qcow2 {
            parts.append("qcow2 v\(h.version)")
        } else {
            parts.append(info.format.rawValue)
        }
        if let v = info.virtualSize { parts.append(Sizes.human(v) + " virtual") }
        parts.append(Sizes.human(info.actualSize) + " on disk")
        if let h = info.qcow2 {
            if h.isDirty { parts.append("dirty") }
            if h.isCorrupt { parts.append("CORRUPT") }
            if let e = h.encryptionName { parts.append("encrypted (\(e))") }
        } else if info.isEncrypted {
            parts.append("encrypted")
        }
        return Untrusted.shown(joined(parts, ", "))
    }

    /// The `imgtool info` page: one fact a line.
    static func human(_ info: ImageInfo) -> String {
        var rows: [(String, String)] = [
            ("image", info.filename),
            ("format", info.format.rawValue),
        ]
        if let v = info.virtualSize { rows.append(("virtual size", "\(Sizes.human(v)) (\(v) bytes)")) }
        rows.append(("disk size", Sizes.human(info.actualSize)))
        if let h = info.qcow2 {
            rows.append(("version", "\(h.version) (compat \(h.compat))"))
            rows.append(("cluster size", Sizes.human(h.clusterSize)))
            rows.append(("refcount bits", "\(h.refcountBits)"))
            rows.append(("compression", h.compressionName))
            rows.append(("encryption", h.encryptionName ?? "none"))
            var flags: [String] = []
            if h.isDirty { flags.append("dirty") }
            if h.isCorrupt { flags.append("corrupt") }
            if h.lazyRefcounts { flags.append("lazy refcounts") }
            if h.hasExtendedL2 { flags.append("extended L2") }
            rows.append(("flags", flags.isEmpty ? "none" : joined(flags, ", ")))
            if let df = h.dataFile { rows.append(("data file", df + (h.dataFileRaw ? " (raw)" : ""))) }
            rows.append(("snapshots", "\(h.snapshotCount)"))
            if let b = h.bitmaps { rows.append(("bitmaps", "\(b.count)")) }
        } else {
            if let c = info.clusterSize { rows.append(("cluster size", Sizes.human(c))) }
            if info.isEncrypted { rows.append(("encryption", info.format == .luks ? "luks" : "aes")) }
        }
        if let v = info.vmdk {
            let hex = { (x: UInt32) in String(x, radix: 16) }
            rows.append(("vmdk type", "\(v.createType.isEmpty ? "none" : v.createType) (CID \(hex(v.cids.cid)), parent CID \(hex(v.cids.parentCID)))"))
        }
        if let l = info.details?.luks {
            let active = l.slots.filter(\.active).count
            rows.append(("cipher", "\(l.cipherAlg) \(l.cipherMode)-\(l.ivgenAlg)\(l.ivgenHashAlg.map { ":" + $0 } ?? ""), \(l.hashAlg); \(active) of 8 key slots in use"))
        }
        if !info.probe.vmdkExtents.isEmpty {
            rows.append(("vmdk extents", info.probe.vmdkExtents.joined(separator: ", ")))
        }
        if let b = info.backingFilename {
            rows.append(("backing file", b))
            if let full = info.fullBackingFilename, full != b { rows.append(("  resolves to", full)) }
            rows.append(("backing format", info.backingFormat ?? "none recorded"))
        }
        let width = rows.map(\.0.count).max() ?? 0
        // Every value may come from the image or the file system: shown escaped, one line each.
        var lines = rows.map { k, v in k + ":" + String(repeating: " ", count: width - k.count + 1) + Untrusted.shown(v) }
        if !info.snapshots.isEmpty { lines += ["snapshot list:"] + snapshotTable(info.snapshots) }
        return joined(lines, "\n")
    }

    /// `parts.joined(separator:)` without the standard library's unspecialized generic: its first call instantiates
    /// metadata and searches every protocol conformance of the static binary, about a third of `imgtool info`'s
    /// instructions (callgrind).
    static func joined(_ parts: [String], _ separator: String) -> String {
        var text = ""
        for (i, part) in parts.enumerated() {
            if i > 0 { text += separator }
            text += part
        }
        return text
    }
}
