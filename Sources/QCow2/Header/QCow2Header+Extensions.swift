extension QCow2Header {
    /// Header extension types.
    public enum ExtensionType {
        /// End of the extension area.
        public static let end: UInt32 = 0
        /// Backing file format name.
        public static let backingFormat: UInt32 = 0xE279_2ACA
        /// Feature name table.
        public static let featureNameTable: UInt32 = 0x6803_F857
        /// Persistent bitmaps.
        public static let bitmaps: UInt32 = 0x2385_2875
        /// Full disk encryption header pointer.
        public static let cryptoHeader: UInt32 = 0x0537_BE77
        /// External data file name.
        public static let dataFile: UInt32 = 0x4441_5441
    }

    /// Walks the extensions from the end of the header to `end`. Each extension takes at least 8 bytes, so the loop
    /// ends after at most cluster_size / 8 steps whatever the file says.
    /// Returns false when the bytes at hand ran out before the end marker or `end`, so the caller can read more.
    /// With `final`, the bytes at hand are all there is (the file ends there) and an extension running past them is
    /// refused.
    mutating func readExtensions(_ w: ByteWindow, end: UInt64, final: Bool, path: String) throws(Error) -> Bool {
        var offset = UInt64(headerLength)
        let limit = min(end, UInt64(w.bytes.count))
        while offset + 8 <= limit {
            let o = Int(offset)
            let type = w.u32BE(o) ?? 0
            let length = UInt64(w.u32BE(o + 4) ?? 0)
            let dataStart = offset + 8
            // QEMU checks the length before it looks at the type: an end marker with a length that runs past the
            // extension area is refused too ("Header extension too large").
            if length > end - dataStart {
                if limit < end && !final { return false }
                throw .invalidField(path: path, field: "header extension 0x\(String(type, radix: 16)) length", value: length, reason: "runs past the end of the extension area (\(end)) (\"Header extension too large\")")
            }
            if type == ExtensionType.end { return true }
            if length > limit - dataStart && limit < end && !final { return false }
            // When the file ends inside the extension area, QEMU reads zeros past its end: an extension whose data
            // runs past the end of the file (but not past the area) is read with those zeros, not refused.
            guard length <= limit - dataStart || (final && limit < end) else {
                throw .invalidField(path: path, field: "header extension 0x\(String(type, radix: 16)) length", value: length, reason: "runs past the end of the extension area (\(end))")
            }
            let d = Int(dataStart)
            // What the file holds of the data (all of it unless the file ends inside it; zeros follow).
            let n = Int(min(length, limit - min(dataStart, limit)))
            switch type {
            case ExtensionType.backingFormat:
                // QEMU keeps the name in a 16-byte buffer and refuses longer ones.
                guard length < 16 else {
                    throw .invalidField(path: path, field: "backing format extension length", value: length, reason: "at most 15 bytes")
                }
                backingFormat = decodeText(w.slice(d, n) ?? [])
            case ExtensionType.featureNameTable:
                // The names serve one message: the refusal of incompatible bits no reader knows. qemu-img writes a
                // table of nine into every image, and decoding their strings on every layer of a chain was a sixth
                // of `chain`'s instructions (callgrind), so a header QEMU opens skips them.
                guard unknownIncompatibleBits != 0 else { break }
                var e = d
                while e + 48 <= d + n {
                    let raw = w.slice(e + 2, 46) ?? []
                    let name = decodeText(raw.prefix { $0 != 0 })
                    featureNames.append(FeatureName(kind: w.u8(e) ?? 0, bit: w.u8(e + 1) ?? 0, name: name))
                    e += 48
                }
            case ExtensionType.bitmaps:
                // QEMU refuses any other length ("bitmaps_ext: Invalid extension length").
                guard length == 24 else {
                    throw .invalidField(path: path, field: "bitmaps extension length", value: length, reason: "must be 24 bytes")
                }
                bitmaps = Bitmaps(count: w.u32BE(d) ?? 0, directorySize: w.u64BE(d + 8) ?? 0, directoryOffset: w.u64BE(d + 16) ?? 0,
                                  reserved: w.u32BE(d + 4) ?? 0)
            case ExtensionType.cryptoHeader:
                guard length == 16 else {
                    throw .invalidField(path: path, field: "crypto header extension length", value: length, reason: "must be 16 bytes")
                }
                cryptoHeader = CryptoHeader(offset: w.u64BE(d) ?? 0, length: w.u64BE(d + 8) ?? 0)
            case ExtensionType.dataFile:
                dataFile = decodeName(w.slice(d, n) ?? [])
            default:
                unknownExtensions.append(type)
            }
            let padded = (length + 7) & ~UInt64(7)
            offset = dataStart + padded
        }
        // QEMU reads an extension header wherever one starts before the end of the area: one that starts less than
        // 8 bytes before the end runs past it.
        if offset < end && offset + 8 > end {
            throw .invalidField(path: path, field: "header extension at \(offset)", value: offset, reason: "starts less than 8 bytes before the end of the extension area (\(end)) (\"Header extension too large\")")
        }
        return limit >= end || offset + 8 <= limit
    }
}
