import ImageOps
import QCow2

extension ImageCheck {
    /// JSON as `qemu-img check --output=json` writes it (its field names, order and presence rules: `filename`,
    /// `format` and `check-errors` always, every other count only when it is not 0, as `collect_image_check` sets
    /// them), then our own: `held` and every finding.
    func json(shownAs name: String, held: Bool) -> JSON {
        func count(_ v: UInt64?) -> JSON? { v.flatMap { $0 == 0 ? nil : .uint($0) } }
        return .object([
            ("filename", .string(name)),
            ("format", .string(format.rawValue)),
            ("check-errors", .uint(checkErrors)),
            ("image-end-offset", count(imageEndOffset)),
            ("corruptions", count(corruptions)),
            ("leaks", count(leaks)),
            ("corruptions-fixed", count(corruptionsFixed)),
            ("leaks-fixed", count(leaksFixed)),
            ("total-clusters", count(totalClusters)),
            ("allocated-clusters", count(allocatedClusters)),
            ("fragmented-clusters", count(fragmentedClusters)),
            ("compressed-clusters", count(compressedClusters)),
            ("held", .bool(held)),
            ("check-failed", stopped.map(JSON.string)),
            ("findings", .array(findings.map(\.json))),
        ])
    }

    /// qemu-img's summary (`dump_human_image_check`, word for word), then every finding in words, escaped.
    func human(style: Style) -> String {
        var out = ""
        if isClean {
            out += style.good("No errors were found on the image.") + "\n"
        } else {
            if corruptions > 0 {
                out += "\n" + style.bad("\(corruptions) errors were found on the image.") + "\nData may be corrupted, or further writes to the image may corrupt it.\n"
            }
            if leaks > 0 {
                out += "\n" + style.warn("\(leaks) leaked clusters were found on the image.") + "\nThis means waste of disk space, but no harm to data.\n"
            }
            if checkErrors > 0 {
                out += "\n\(checkErrors) internal errors have occurred during the check.\n"
            }
        }
        if let total = totalClusters, let allocated = allocatedClusters, total != 0, allocated != 0 {
            let fragmented = fragmentedClusters ?? 0, compressed = compressedClusters ?? 0
            out += "\(allocated)/\(total) = \(Self.percent(allocated, total))% allocated, \(Self.percent(fragmented, allocated))% fragmented, \(Self.percent(compressed, allocated))% compressed clusters\n"
        }
        if let end = imageEndOffset, end != 0 { out += "Image end offset: \(end)\n" }
        for f in findings { out += f.human(style: style) + "\n" }
        return String(out.dropLast())
    }

    /// `a * 100 / b` with two decimals, as printf's `%0.2f` of that double prints it.
    static func percent(_ a: UInt64, _ b: UInt64) -> String {
        let value = Double(a) * 100.0 / Double(b)
        let hundredths = (value * 100).rounded(.toNearestOrEven)
        guard hundredths.isFinite, hundredths < 1e17 else { return "\(value)" }
        let n = UInt64(hundredths)
        let frac = n % 100
        return "\(n / 100)." + (frac < 10 ? "0" : "") + "\(frac)"
    }
}

extension ImageCheck.Finding {
    /// `{"kind", "cluster", "offset", "table", "message"}`, null where the finding has no such place.
    var json: JSON {
        .object([
            ("kind", .string(kind.rawValue)),
            ("cluster", cluster.map(JSON.uint) ?? .null),
            ("offset", offset.map(JSON.uint) ?? .null),
            ("table", table.map(JSON.string) ?? .null),
            ("message", .string(message)),
        ])
    }

    /// One line: the kind, the message, and where (escaped: table names and messages may quote image text).
    func human(style: Style) -> String {
        let label: String
        switch kind {
        case .corruption: label = style.bad("corruption")
        case .leak: label = style.warn("leak")
        case .checkError: label = style.bad("check error")
        case .note: label = "note"
        }
        var place: [String] = []
        if let table { place.append(Untrusted.shown(table)) }
        if let cluster { place.append("cluster \(cluster)") }
        if let offset { place.append("offset 0x" + String(offset, radix: 16)) }
        return "  \(label): \(Untrusted.shown(message))" + (place.isEmpty ? "" : " (" + place.joined(separator: ", ") + ")")
    }
}
