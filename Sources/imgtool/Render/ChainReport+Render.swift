import ImageOps
import QCow2

/// The chain as JSON (the contract's keys) and as a tree.
extension ChainReport {
    /// `{"image", "healthy", "layers", "problems"}` as the contract gives it.
    var json: JSON {
        .object([
            ("image", .string(image)),
            ("healthy", .bool(chain.isHealthy)),
            ("layers", .array(chain.layers.map(\.json))),
            ("problems", problemsJSON),
        ])
    }

    /// The `problems` array, each with its suggestions.
    var problemsJSON: JSON {
        .array(zip(chain.problems, suggestions).map { p, s in
            .object([
                ("layer", .int(Int64(p.layer))),
                ("kind", .string(p.kind.rawValue)),
                ("backing", .string(p.backing)),
                ("resolved", .string(p.resolved)),
                ("message", .string(p.message)),
                ("suggestions", .array(s.map(JSON.string))),
            ])
        })
    }

    /// Prints `json` byte for byte as `json.printToStandardOutput()` would, without the whole tree or the whole
    /// document in memory: each layer's object is written as bytes straight away (`JSONBytes`), and the bytes go out
    /// whenever 64 KiB have gathered. At depth 1000 the tree and a document buffer grown by doubling were most of the memory and
    /// the page faults of `chain --output json` (`/usr/bin/time`, `perf stat`). A test compares the two outputs.
    func printJSON() {
        streamJSON { writeAll(1, $0) }
    }

    /// `printJSON`'s bytes, handed to `emit` piece by piece.
    func streamJSON(_ emit: ([UInt8]) -> Void) {
        var out = JSONStream()
        out.bytes.append(UInt8(ascii: "{"))
        out.key("image", first: true)
        JSON.quote(image, into: &out.bytes)
        out.key("healthy")
        out.bytes.append(contentsOf: chain.isHealthy ? JSON.trueBytes : JSON.falseBytes)
        out.key("layers")
        // A chain has its top layer at least, so the array is never `[]`.
        out.bytes.append(UInt8(ascii: "["))
        // By index, not `enumerated()`, which copied each layer out of the array first.
        for i in chain.layers.indices {
            if i > 0 { out.bytes.append(UInt8(ascii: ",")) }
            JSON.newline(&out.bytes, indent: JSONStream.indent, level: 2)
            JSONBytes.object(into: &out.bytes, level: 2) { chain.layers[i].members(into: &$0) }
            out.flushIfFull(emit)
        }
        JSON.newline(&out.bytes, indent: JSONStream.indent, level: 1)
        out.bytes.append(UInt8(ascii: "]"))
        out.key("problems")
        problemsJSON.write(to: &out.bytes, indent: JSONStream.indent, level: 1)
        JSON.newline(&out.bytes, indent: JSONStream.indent, level: 0)
        out.bytes.append(contentsOf: [UInt8(ascii: "}"), UInt8(ascii: "\n")])
        out.flush(emit)
    }

    /// A tree, one layer a line or two, the problems under the layer they belong to.
    func human(style: Style) -> String {
        var lines: [String] = []
        for (i, layer) in chain.layers.enumerated() {
            let indent = String(repeating: "   ", count: max(0, i - 1))
            let branch = i == 0 ? "" : indent + "└─ "
            var name = Untrusted.shown(layer.filename)
            if i > 0, let recorded = chain.layers[i - 1].backingFilename, recorded != layer.filename {
                name = "\(Untrusted.shown(recorded)) → \(name)"
            }
            lines.append(branch + name + "  " + style.dim(ImageReport.summary(layer)))
            let below = String(repeating: "   ", count: i)
            if !layer.snapshots.isEmpty { lines.append(below + "   " + ImageReport.snapshotSummary(layer.snapshots)) }
            for (p, s) in zip(chain.problems, suggestions) where p.layer == i {
                let mark = p.kind.isWarning ? style.warn("! \(p.kind.rawValue)") : style.bad("✗ \(p.kind.rawValue)")
                lines.append(below + "└─ " + mark + ": " + Untrusted.shown(p.backing) + (p.backing == p.resolved ? "" : " → " + Untrusted.shown(p.resolved)))
                lines.append(below + "   " + Untrusted.shown(p.message))
                for cmd in s { lines.append(below + "   fix: " + style.command(Untrusted.shown(cmd))) }
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
