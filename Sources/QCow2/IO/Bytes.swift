/// A bounds-checked view of bytes read from a file: every getter says which field it wanted when the bytes run out.
package struct ByteWindow: Sendable {
    /// The bytes.
    package let bytes: [UInt8]

    /// A window on `bytes`.
    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// True when `count` bytes at `offset` lie inside the window.
    package func has(_ offset: Int, _ count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= bytes.count && count <= bytes.count - offset
    }

    /// The byte at `offset`; nil past the end.
    package func u8(_ offset: Int) -> UInt8? { has(offset, 1) ? bytes[offset] : nil }

    /// A little-endian 16-bit value at `offset`; nil when it would run past the end.
    package func u16LE(_ offset: Int) -> UInt16? {
        guard has(offset, 2) else { return nil }
        return UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    /// A big-endian 16-bit value at `offset`; nil when it would run past the end.
    package func u16BE(_ offset: Int) -> UInt16? {
        guard has(offset, 2) else { return nil }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    /// A big-endian 32-bit value at `offset`; nil when it would run past the end.
    package func u32BE(_ offset: Int) -> UInt32? {
        guard has(offset, 4) else { return nil }
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(bytes[offset + i]) }
        return v
    }

    /// A little-endian 32-bit value at `offset`; nil when it would run past the end.
    package func u32LE(_ offset: Int) -> UInt32? {
        guard has(offset, 4) else { return nil }
        var v: UInt32 = 0
        for i in (0..<4).reversed() { v = v << 8 | UInt32(bytes[offset + i]) }
        return v
    }

    /// A big-endian 64-bit value at `offset`; nil when it would run past the end.
    package func u64BE(_ offset: Int) -> UInt64? {
        guard has(offset, 8) else { return nil }
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
        return v
    }

    /// A little-endian 64-bit value at `offset`; nil when it would run past the end.
    package func u64LE(_ offset: Int) -> UInt64? {
        guard has(offset, 8) else { return nil }
        var v: UInt64 = 0
        for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[offset + i]) }
        return v
    }

    /// `count` bytes at `offset`; nil when they would run past the end.
    package func slice(_ offset: Int, _ count: Int) -> ArraySlice<UInt8>? {
        has(offset, count) ? bytes[offset..<(offset + count)] : nil
    }

    /// True when `magic` sits at `offset`.
    package func starts(with magic: [UInt8], at offset: Int = 0) -> Bool {
        guard has(offset, magic.count) else { return false }
        return bytes[offset..<(offset + magic.count)].elementsEqual(magic)
    }
}

/// Text from bytes a file holds: invalid UTF-8 is repaired rather than trusted.
package func decodeText<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    String(decoding: Array(bytes), as: UTF8.self)
}

/// A file name a file holds (a backing name, a data file, a VMDK extent): kept exactly, bytes that are not UTF-8
/// included (see `PathBytes`), so it opens the file QEMU would open and is written back byte for byte.
package func decodeName<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    String(pathBytes: Array(bytes))
}
