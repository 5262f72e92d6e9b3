/// A VMDK text descriptor read as QEMU 7.2 reads it (`vmdk_parse_description`, `vmdk_parse_extents`): the text
/// ends at its first NUL, `createType` is the first occurrence of the word anywhere, and an extent is a line that
/// `sscanf("%10s %ld %10s \"%511[^\n\r\"]\" %ld")` accepts with access `RW` and a known type. Other lines are
/// ignored, as QEMU ignores them.
package struct VMDKDescriptor: Sendable, Equatable {
    /// One extent QEMU opens.
    package struct Extent: Sendable, Equatable {
        /// Size in sectors (positive).
        package var sectors: UInt64
        /// FLAT, SPARSE, VMFS, VMFSSPARSE or SESPARSE.
        package var type: String
        /// The file name as written.
        package var fileName: String
        /// FLAT and VMFS: where the extent's data starts in its file, in sectors.
        package var flatOffset: UInt64
    }

    /// The `createType` value; nil when QEMU would fail to read one.
    package var createType: String?
    /// The extents QEMU opens, in order.
    package var extents: [Extent]
    /// The first line QEMU rejects as "Invalid extent lines", when there is one.
    package var invalidLine: String?

    /// The sum of the extents' sectors, nil on overflow.
    package var sectors: UInt64? {
        var total: UInt64 = 0
        for e in extents {
            let (s, o) = total.addingReportingOverflow(e.sectors)
            if o { return nil }
            total = s
        }
        return total
    }

    /// How much of a descriptor file QEMU reads (`vmdk_read_desc`: 1 MiB − 1).
    package static let maxBytes = (1 << 20) - 1
    /// The createType values QEMU opens as a descriptor file.
    package static let descriptorFileTypes: Set<String> = ["monolithicFlat", "vmfs", "vmfsSparse", "seSparse", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]

    /// Parses descriptor text.
    package static func parse<C: Collection>(_ bytes: C) -> VMDKDescriptor where C.Element == UInt8 {
        let text = Array(bytes.prefix(maxBytes).prefix { $0 != 0 })
        var d = VMDKDescriptor(createType: option(text, "createType", limit: 128), extents: [], invalidLine: nil)
        var p = 0
        // sscanf skips leading white space, newlines included, so every line start inside a run of blank lines scans
        // the same text (and QEMU adds the extent after them once per line; so do we). The scan from the run's end
        // is remembered: a megabyte of newlines costs one pass, not one per line.
        var last: (start: Int, result: Scanned?)? = nil
        while p < text.count {
            var q = p
            if let l = last, p <= l.start { q = l.start } else { while q < text.count && isSpace(text[q]) { q += 1 } }
            let scanned: Scanned?
            if let l = last, l.start == q { scanned = l.result } else { scanned = scanExtent(text, q); last = (q, scanned) }
            if let e = scanned {
                switch e {
                case .extent(let x): d.extents.append(x)
                case .invalid: if d.invalidLine == nil { d.invalidLine = line(text, q) }
                }
            }
            while p < text.count {
                p += 1
                if text[p - 1] == UInt8(ascii: "\n") { break }
            }
        }
        return d
    }

    /// `vmdk_parse_description`: the value after `name="`, up to the next quote; nil when absent or longer than
    /// `limit` − 1 bytes.
    package static func option(_ text: [UInt8], _ name: String, limit: Int) -> String? {
        let key = Array(name.utf8)
        guard let at = text.firstOffset(of: key) else { return nil }
        let start = at + key.count + 2
        guard start < text.count, let end = text[start...].firstIndex(of: UInt8(ascii: "\"")), end - start + 1 <= limit else { return nil }
        return decodeName(text[start..<end])
    }

    enum Scanned { case extent(Extent), invalid }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }

    /// One `sscanf` of an extent line starting at `p` (which, like sscanf, may read across line ends).
    static func scanExtent(_ t: [UInt8], _ start: Int) -> Scanned? {
        var p = start
        func skipSpace() { while p < t.count && isSpace(t[p]) { p += 1 } }
        func word(_ max: Int) -> String? {
            skipSpace()
            let s = p
            while p < t.count && !isSpace(t[p]) && p - s < max { p += 1 }
            return p > s ? decodeText(t[s..<p]) : nil
        }
        func number() -> Int64? {
            skipSpace()
            var negative = false
            if p < t.count && (t[p] == UInt8(ascii: "-") || t[p] == UInt8(ascii: "+")) { negative = t[p] == UInt8(ascii: "-"); p += 1 }
            let s = p
            var v: Int64 = 0
            while p < t.count, t[p] >= 0x30, t[p] <= 0x39 {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(t[p] - 0x30))
                v = o1 || o2 ? Int64.max : a  // strtoll clamps
                p += 1
            }
            return p > s ? (negative ? -v : v) : nil
        }
        var matches = 0
        var fname = "", flat: Int64 = -1
        guard let access = word(10) else { return nil }
        matches = 1
        let sectors = number()
        var type = ""
        if sectors != nil, let ty = word(10) {
            type = ty
            matches = 3
            skipSpace()
            if p < t.count && t[p] == UInt8(ascii: "\"") {
                p += 1
                let s = p
                while p < t.count, p - s < 511, t[p] != 0x0A, t[p] != 0x0D, t[p] != UInt8(ascii: "\"") { p += 1 }
                if p > s {
                    fname = decodeName(t[s..<p])
                    matches = 4
                    if p < t.count && t[p] == UInt8(ascii: "\"") {
                        p += 1
                        if let f = number() { flat = f; matches = 5 }
                    }
                }
            }
        }
        guard matches >= 4, access == "RW", let sectors else { return nil }
        switch type {
        case "FLAT": if matches != 5 || flat < 0 { return .invalid }
        case "VMFS": if matches == 4 { flat = 0 } else { return .invalid }
        default: if matches != 4 { return .invalid }
        }
        guard sectors > 0, ["FLAT", "SPARSE", "VMFS", "VMFSSPARSE", "SESPARSE"].contains(type) else { return nil }
        return .extent(Extent(sectors: UInt64(sectors), type: type, fileName: fname, flatOffset: UInt64(max(flat, 0))))
    }

    static func line(_ t: [UInt8], _ p: Int) -> String {
        decodeName(t[p...].prefix { $0 != 0x0A })
    }
}

extension ImageFormat {
    /// The probe of a VMDK text descriptor redone on the whole descriptor (QEMU reads up to 1 MiB of it; the probe
    /// saw 2 KiB), so no extent line hides past the probe's window. Sparse files are returned as probed.
    package static func vmdkProbe(_ file: ImageFile, _ probe: ProbeResult) -> ProbeResult {
        let head = (try? file.read(at: 0, count: 4)) ?? []
        guard head != Array("KDMV".utf8), head != Array("COWD".utf8) else { return probe }
        let n = min(file.stat.size, UInt64(VMDKDescriptor.maxBytes))
        guard let text = try? file.read(at: 0, count: Int(n)) else { return probe }
        return vmdkDescriptor(text)
    }
}
