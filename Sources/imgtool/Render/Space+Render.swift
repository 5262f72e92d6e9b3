import ImageOps
import QCow2

extension SpaceReport {
    /// The contract's JSON, with `zero`, `snapshots` and the commit's `zero-writes` and `frees` beside its keys.
    var json: JSON {
        let l = ledger
        let shadowed = l.shadowed
        return .object([
            ("image", .string(l.image)),
            ("virtual-size", .uint(l.virtualSize)),
            ("layers", .array(l.layers.enumerated().map { i, layer in
                .object([
                    ("filename", .string(layer.filename)),
                    ("format", .string(layer.format.rawValue)),
                    ("virtual-size", .uint(layer.virtualSize)),
                    ("file-size", .uint(layer.fileSize)),
                    ("allocated", .uint(layer.allocated)),
                    ("zero", .uint(layer.zero)),
                    ("visible", .uint(l.visible[i])),
                    ("shadowed", .uint(shadowed[i])),
                    ("metadata", .uint(layer.metadata)),
                    ("snapshots", .uint(layer.snapshots)),
                    ("unused", .uint(layer.unused)),
                    ("internal-snapshots", .array((layer.held?.snapshots ?? []).map { s in
                        .object([("id", .string(s.id)), ("name", .string(s.name)), ("alone", .uint(s.alone))])
                    })),
                    ("bitmaps", .uint(layer.held?.bitmaps ?? 0)),
                    ("dependents", .array(dependents[i].map { .string($0) })),
                ])
            })),
            ("commit", .array(l.commits.map { c in
                .object([
                    ("layer", .int(Int64(c.layer))),
                    ("into", .int(Int64(c.into))),
                    ("writes", .uint(c.writes)),
                    ("zero-writes", .uint(c.zeroWrites)),
                    ("target-grows", .uint(c.targetGrows)),
                    ("needs-resize", .bool(c.needsResize)),
                    ("frees", .int(c.frees)),
                ])
            })),
            ("flatten", .object([("file-size", .uint(l.flattenFileSize))])),
        ])
    }

    /// A table with a bar per layer (`#` what the guest reads from it, `=` what layers above hide, of the virtual
    /// size), then the previews in sentences.
    func human(style: Style) -> String {
        let l = ledger
        let shadowed = l.shadowed
        let names = l.layers.map { Untrusted.shown($0.filename) }
        let width = max(5, names.map(\.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func right(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        let size = Sizes.human
        var lines = ["\(Untrusted.shown(l.image)): \(l.layers.count) layer\(l.layers.count == 1 ? "" : "s"), virtual size \(size(l.virtualSize))", ""]
        if !l.healthy { lines.insert(style.warn("a backing link has a problem (imgtool chain \(Untrusted.shown(l.image)) says which)"), at: 1) }
        let cols = ["FILE", "ALLOCATED", "VISIBLE", "SHADOWED", "METADATA", "UNUSED"]
        lines.append("   " + pad("LAYER", width) + "  " + pad("FORMAT", 9) + cols.map { right($0, 11) }.joined() + "  [# visible, = shadowed]")
        for (i, layer) in l.layers.enumerated() {
            let bar = Self.bar(visible: l.visible[i], shadowed: shadowed[i], of: max(layer.virtualSize, 1), width: 20)
            let cells = [layer.fileSize, layer.allocated, l.visible[i], shadowed[i], layer.metadata, layer.unused].map { right(size($0), 11) }
            lines.append(right("\(i)", 2) + " " + pad(names[i], width) + "  " + pad(layer.format.rawValue, 9) + cells.joined() + "  [" + bar + "]")
            let indent = "   " + String(repeating: " ", count: width) + "  "
            if layer.snapshots > 0 { lines.append(indent + "internal snapshots and bitmaps hold \(size(layer.snapshots)) more") }
            for s in layer.held?.snapshots ?? [] {
                lines.append(indent + "snapshot \(Untrusted.shown(s.id)) '\(Untrusted.shown(s.name))' alone holds \(size(s.alone)) (qemu-img snapshot -d frees it)")
            }
            if let b = layer.held?.bitmaps, b > 0 { lines.append(indent + "persistent bitmaps take \(size(b))") }
            if !dependents[i].isEmpty {
                lines.append("   " + String(repeating: " ", count: width) + "  " + style.warn("backing file of \(dependents[i].map(Untrusted.shown).joined(separator: ", "))"))
            }
        }
        lines.append("")
        for c in l.commits {
            var s = "Commit \(names[c.layer]) into \(names[c.into]): writes \(size(c.writes))"
            if c.zeroWrites > 0 { s += " (and zeros over \(size(c.zeroWrites)), which take no data space)" }
            s += "; \(names[c.into]) grows by \(size(c.targetGrows))"
            if c.needsResize { s += ", after it is resized to \(size(l.layers[c.layer].virtualSize))" }
            s += c.frees >= 0 ? ". Merging it away frees \(size(UInt64(c.frees)))." : ". Merging it away costs \(size(UInt64(-c.frees))) more."
            lines.append(s)
            if !dependents[c.layer].isEmpty { lines.append("  " + style.warn("(it cannot be deleted while \(dependents[c.layer].map(Untrusted.shown).joined(separator: ", ")) use\(dependents[c.layer].count == 1 ? "s" : "") it)")) }
            if !dependents[c.into].isEmpty { lines.append("  " + style.bad("(refused without --force: other images use \(names[c.into]) as backing)")) }
        }
        lines.append("Flatten (qemu-img convert -O qcow2 of the chain): a file of \(size(l.flattenFileSize)).")
        return lines.joined(separator: "\n")
    }

    /// `width` characters: `#` for the visible share, `=` for the shadowed share, `.` for the rest.
    static func bar(visible: UInt64, shadowed: UInt64, of total: UInt64, width: Int) -> String {
        func cells(_ v: UInt64) -> Int {
            let (p, o) = v.multipliedReportingOverflow(by: UInt64(width))
            let n = o ? Double(v) / Double(total) * Double(width) : Double(p) / Double(total)
            return v > 0 ? max(1, Int(n.rounded())) : 0
        }
        let a = min(width, cells(visible))
        let b = min(width - a, cells(shadowed))
        return String(repeating: "#", count: a) + String(repeating: "=", count: b) + String(repeating: ".", count: width - a - b)
    }
}
