extension FilesystemSize {
    /// LUKS1/2 (cryptsetup docs/on-disk-format*.pdf): "LUKS\u{BA}\u{BE}" at 0, version (big-endian u16) at 6.
    /// LUKS1: payload-offset (+104, 512-byte sectors) is where the data starts. LUKS2: hdr_size (+8) is one
    /// binary header plus its JSON area; two copies follow each other, then the key slots area
    /// (config.keyslots_size), and the data segment starts at segments[…].offset. The data runs to the end of its
    /// device, so the size is a lower bound: the header must stay.
    static func luks(_ w: ByteWindow, _ start: UInt64, _ read: Reader) throws(Error) -> FilesystemSize? {
        guard w.starts(with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]), let version = w.u16BE(6) else { return nil }
        switch version {
        case 1:
            guard let payload = w.u32BE(104) else { return nil }
            // Key material sits between the header and the payload; a detached header (payload 0) still keeps
            // the 592-byte header here.
            let bytes = max(try product(UInt64(payload), 512, "crypto_LUKS", "payload-offset", at(start, 104)), 592)
            return .init(name: "crypto_LUKS", bytes: bytes, exact: false)
        case 2:
            guard let hdr = w.u64BE(8) else { return nil }
            // cryptsetup allows 16 KiB to 4 MiB headers, a power of two.
            guard hdr >= 0x4000, hdr <= 0x40_0000, hdr & (hdr - 1) == 0 else {
                throw .invalidField(filesystem: "crypto_LUKS", field: "hdr_size", offset: at(start, 8), reason: "is \(hdr), not a power of two from 16 KiB to 4 MiB")
            }
            let json: [UInt8]
            do { json = try read(at(start, 4096), Int(hdr) - 4096) } catch { throw .read(error) }
            let text = json.prefix { $0 != 0 }
            var bytes = 2 * hdr
            if let slots = number(after: "\"keyslots_size\"", in: text) {
                let (v, o) = bytes.addingReportingOverflow(slots)
                bytes = o ? .max : v
            }
            if let segments = find(Array("\"segments\"".utf8), in: text), let offset = number(after: "\"offset\"", in: text[segments...]) {
                bytes = max(bytes, offset)
            }
            return .init(name: "crypto_LUKS", bytes: bytes, exact: false)
        default:
            throw .invalidField(filesystem: "crypto_LUKS", field: "version", offset: at(start, 6), reason: "is \(version), not 1 or 2")
        }
    }

    /// The index of `needle` in `hay`.
    static func find(_ needle: [UInt8], in hay: ArraySlice<UInt8>) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count else { return nil }
        var i = hay.startIndex
        while i <= hay.endIndex - needle.count {
            if hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// The decimal number (LUKS2 writes sizes as JSON strings: `"key":"123"`) after the first `key` in `text`.
    static func number(after key: String, in text: ArraySlice<UInt8>) -> UInt64? {
        guard let k = find(Array(key.utf8), in: text) else { return nil }
        var i = k + key.utf8.count
        while i < text.endIndex, [0x20, 0x3A, 0x22, 0x09, 0x0A, 0x0D].contains(text[i]) { i += 1 }
        var value: UInt64 = 0, digits = 0
        while i < text.endIndex, text[i] >= 0x30, text[i] <= 0x39, digits < 20 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(text[i] - 0x30))
            guard !o1, !o2 else { return nil }
            value = s; digits += 1; i += 1
        }
        return digits > 0 ? value : nil
    }
}
