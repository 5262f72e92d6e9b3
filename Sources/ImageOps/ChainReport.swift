import QCow2

/// The chain as the CLI shows it: problems with the commands that would fix them, as JSON or as a tree.
public struct ChainReport: Sendable {
    /// The image asked about, as given.
    public var image: String
    /// The chain as followed.
    public var chain: BackingChain
    /// For each problem (same order), the commands that would fix it.
    public var suggestions: [[String]]

    /// Builds the report and looks for fixes. Candidates are searched near the image that names the lost file.
    public init(image: String, chain: BackingChain) {
        self.image = image
        self.chain = chain
        self.suggestions = chain.problems.map { ChainReport.suggest(for: $0, in: chain) }
    }

    static func suggest(for p: BackingChain.Problem, in chain: BackingChain) -> [String] {
        guard p.layer < chain.layers.count else { return [] }
        let owner = chain.layers[p.layer].filename
        let format = chain.layers[p.layer].format
        func fix(_ target: String, placeholder: Bool = false, _ extra: [String] = []) -> String {
            Repoint.command(owner, format: format, resolved: p.resolved, to: target, placeholder: placeholder, extra: extra)
        }
        switch p.kind {
        case .missing, .unreadable, .notAnImage, .invalidHeader:
            let found = Candidates.sameName(as: p.resolved, near: owner)
            if found.isEmpty { return [fix("NEW-PATH", placeholder: true)] }
            return found.map { fix($0) }
        case .noFormat:
            // Only qcow2 records any backing format; QED records "raw" alone, qcow v1 none.
            guard format == .qcow2 || (format == .qed && chain.layers.count > p.layer + 1 && chain.layers[p.layer + 1].format == .raw) else { return [] }
            return [fix(p.resolved)]
        case .formatMismatch:
            guard Repoint.canRewrite(format) else { return [] }
            return [fix(p.resolved, ["--force"])]
        case .loop:
            guard Repoint.canRewrite(format) else { return [] }
            return [fix("CORRECT-BASE", placeholder: true)]
        case .protocol, .tooDeep:
            return []
        }
    }

    /// `{"image", "healthy", "layers", "problems"}` as the contract gives it.
    public var json: JSON {
        .object([
            ("image", .string(image)),
            ("healthy", .bool(chain.isHealthy)),
            ("layers", .array(chain.layers.map(\.json))),
            ("problems", .array(zip(chain.problems, suggestions).map { p, s in
                .object([
                    ("layer", .int(Int64(p.layer))),
                    ("kind", .string(p.kind.rawValue)),
                    ("backing", .string(p.backing)),
                    ("resolved", .string(p.resolved)),
                    ("message", .string(p.message)),
                    ("suggestions", .array(s.map(JSON.string))),
                ])
            })),
        ])
    }

    /// A tree, one layer a line or two, the problems under the layer they belong to.
    public func human(style: Style) -> String {
        var lines: [String] = []
        for (i, layer) in chain.layers.enumerated() {
            let indent = String(repeating: "   ", count: max(0, i - 1))
            let branch = i == 0 ? "" : indent + "└─ "
            var name = layer.filename
            if i > 0, let recorded = chain.layers[i - 1].backingFilename, recorded != layer.filename {
                name = "\(recorded) → \(layer.filename)"
            }
            lines.append(branch + name + "  " + style.dim(ImageReport.summary(layer)))
            let below = String(repeating: "   ", count: i)
            for (p, s) in zip(chain.problems, suggestions) where p.layer == i {
                let mark = p.kind.isWarning ? style.warn("! \(p.kind.rawValue)") : style.bad("✗ \(p.kind.rawValue)")
                lines.append(below + "└─ " + mark + ": " + p.backing + (p.backing == p.resolved ? "" : " → " + p.resolved))
                lines.append(below + "   " + p.message)
                for cmd in s { lines.append(below + "   fix: " + style.command(cmd)) }
            }
        }
        let broken = chain.problems.filter { !$0.kind.isWarning }.count
        let warnings = chain.problems.count - broken
        var summary = "\(chain.layers.count) layer\(chain.layers.count == 1 ? "" : "s")"
        if chain.isHealthy {
            summary += ", " + style.good("healthy")
        } else {
            if broken > 0 { summary += ", " + style.bad("broken") }
            if warnings > 0 { summary += ", \(warnings) warning\(warnings == 1 ? "" : "s")" }
        }
        lines.append(summary)
        return lines.joined(separator: "\n")
    }
}

/// Looking for where a lost backing file went.
package enum Candidates {
    /// Files called like `lost` in the naming image's folder, its parent and the current folder, two levels down.
    package static func sameName(as lost: String, near owner: String) -> [String] {
        let name = BackingPath.fileName(lost)
        // Work from absolute folders: "img1.cow" in the current folder still has a parent to look in.
        let ownerDir = BackingPath.directory(Paths.absolute(owner))
        var roots = [ownerDir, BackingPath.directory(ownerDir), "."]
        roots = roots.reduce(into: []) { acc, r in if !acc.contains(r) { acc.append(r) } }
        var found: [String] = []
        var seen = Set<FileKey>()
        for root in roots where root != "/" {
            Directory.walk(root, maxDepth: 2, limit: 20_000) { e in
                guard !e.isDirectory, e.name == name, e.path != lost,
                      let id = FileIdentity.of(path: e.path), id.kind == .regular,
                      seen.insert(FileKey(id)).inserted else { return }
                found.append(e.path)
            }
        }
        return found.sorted()
    }
}

/// Human text for one image.
public enum ImageReport {
    /// One line: format, version, sizes.
    public static func summary(_ info: ImageInfo) -> String {
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
        return parts.joined(separator: ", ")
    }

    /// The `imgtool info` page: one fact a line.
    public static func human(_ info: ImageInfo) -> String {
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
            rows.append(("flags", flags.isEmpty ? "none" : flags.joined(separator: ", ")))
            if let df = h.dataFile { rows.append(("data file", df + (h.dataFileRaw ? " (raw)" : ""))) }
            rows.append(("snapshots", "\(h.snapshotCount)"))
            if let b = h.bitmaps { rows.append(("bitmaps", "\(b.count)")) }
        } else {
            if let c = info.clusterSize { rows.append(("cluster size", Sizes.human(c))) }
            if info.isEncrypted { rows.append(("encryption", info.format == .luks ? "luks" : "aes")) }
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
        return rows.map { k, v in k + ":" + String(repeating: " ", count: width - k.count + 1) + v }.joined(separator: "\n")
    }
}
