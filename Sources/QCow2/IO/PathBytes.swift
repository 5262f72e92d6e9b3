import SystemPackage

/// File names are bytes to the kernel, not text: a Latin-1 `caf\xe9.qcow2` is as good a name as any. Swift's
/// `String` holds only Unicode scalars, and the usual decoding puts U+FFFD where a byte is not UTF-8, so the name no
/// longer names the file. imgtool carries names in `String`s all the same (every type and signature already does),
/// with a lossless decoding: valid UTF-8 decodes as usual; every byte that is not part of a valid sequence becomes
/// the private-use scalar U+10FF00 + byte (U+10FF80…U+10FFFF: only bytes 0x80–0xFF can be invalid), and encoding
/// turns each of those scalars back into its single byte. So that the mapping is a bijection, a valid sequence that
/// itself encodes one of those 128 scalars is escaped byte by byte too. Every name read from the kernel or a file
/// is decoded this way (`String(pathBytes:)`); every name given to the kernel or to qemu-img is encoded this way
/// (`pathBytes`, `withPathCString`, `FilePath(pathString:)`, the `Sys` wrappers).
package enum PathBytes {
    /// The first of the scalars that stand for a byte; scalar = base + byte.
    package static let base: UInt32 = 0x10FF00
    /// The scalars that stand for a byte (bytes 0x80–0xFF).
    package static let escapes: ClosedRange<UInt32> = 0x10FF80...0x10FFFF

    /// The byte `scalar` stands for, nil for an ordinary scalar.
    @inline(__always)
    package static func escapedByte(_ scalar: Unicode.Scalar) -> UInt8? {
        escapes.contains(scalar.value) ? UInt8(truncatingIfNeeded: scalar.value - base) : nil
    }

    /// The length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there starts none (RFC 3629:
    /// no overlong forms, no surrogates, nothing past U+10FFFF), or when the sequence encodes an escape scalar.
    static func validSequence(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        let lead = b[i]
        func cont(_ k: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool { i + k < b.count && range.contains(b[i + k]) }
        switch lead {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0: return cont(1, 0xA0...0xBF) && cont(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : 0
        case 0xED: return cont(1, 0x80...0x9F) && cont(2) ? 3 : 0
        case 0xF0: return cont(1, 0x90...0xBF) && cont(2) && cont(3) ? 4 : 0
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4:
            guard cont(1, 0x80...0x8F), cont(2), cont(3) else { return 0 }
            // F4 8F BE 80 … F4 8F BF BF encode U+10FF80…U+10FFFF: escaped, or decoding would not be one-to-one.
            return b[i + 1] == 0x8F && b[i + 2] >= 0xBE ? 0 : 4
        default: return 0
        }
    }

    /// The scalars of `b`, decoded losslessly.
    static func decode(_ b: UnsafeBufferPointer<UInt8>) -> String {
        var out = String.UnicodeScalarView()
        var i = 0
        while i < b.count {
            let n = validSequence(b, at: i)
            guard n > 0 else {
                // Only bytes 0x80…0xFF can start no valid sequence, so the scalar lands in `escapes`.
                out.append(Unicode.Scalar(base + UInt32(b[i])) ?? "\u{FFFD}")
                i += 1
                continue
            }
            var v = UInt32(b[i])
            switch n {
            case 2: v = (v & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F)
            case 3: v = (v & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F)
            case 4: v = (v & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F)
            default: break
            }
            out.append(Unicode.Scalar(v) ?? "\u{FFFD}")
            i += n
        }
        return String(out)
    }
}

extension String {
    /// The name `bytes` spell, decoded losslessly (see `PathBytes`): `pathBytes` gives back exactly `bytes`.
    /// A NUL ends nothing here; callers pass the bytes before it.
    public init<C: Collection>(pathBytes bytes: C) where C.Element == UInt8 {
        let decoded: String? = bytes.withContiguousStorageIfAvailable { buffer in
            // Nearly every name is ASCII: then the usual decoding is the same and cheaper.
            buffer.allSatisfy { $0 < 0x80 } ? String(decoding: buffer, as: UTF8.self) : PathBytes.decode(buffer)
        }
        if let decoded {
            self = decoded
        } else {
            self = Array(bytes).withUnsafeBufferPointer { PathBytes.decode($0) }
        }
    }

    /// The name a NUL-terminated C string spells, decoded losslessly.
    public init(pathCString: UnsafePointer<CChar>) {
        let count = strlenBounded(pathCString)
        self = pathCString.withMemoryRebound(to: UInt8.self, capacity: count) {
            String(pathBytes: UnsafeBufferPointer(start: $0, count: count))
        }
    }

    /// True when encoding differs from UTF-8: the string holds a scalar that stands for a byte. Every such scalar's
    /// UTF-8 form starts with 0xF4, which no other scalar below U+100000 has, so one scan of the bytes tells.
    @inline(__always)
    var holdsPathEscapes: Bool {
        var s = self
        return s.withUTF8 { $0.contains(0xF4) } && unicodeScalars.contains { PathBytes.escapedByte($0) != nil }
    }

    /// The bytes this name stands for (see `PathBytes`): UTF-8, except that each escape scalar is its one byte.
    public var pathBytes: [UInt8] {
        guard holdsPathEscapes else { return Array(utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        for scalar in unicodeScalars {
            if let byte = PathBytes.escapedByte(scalar) { out.append(byte) } else { out.append(contentsOf: String(scalar).utf8) }
        }
        return out
    }

    /// Calls `body` with the name as the kernel must see it, NUL-terminated: for every syscall that takes a path.
    public func withPathCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        guard holdsPathEscapes else { return try withCString(body) }
        var bytes = pathBytes
        bytes.append(0)
        return try bytes.withUnsafeBufferPointer { b in
            try b.withMemoryRebound(to: CChar.self) { c in
                // A buffer made from a non-empty array always has a base address.
                guard let p = c.baseAddress else { return try "".withCString(body) }
                return try body(p)
            }
        }
    }
}

/// The length of a C string (`strlen` without importing Glibc here).
private func strlenBounded(_ p: UnsafePointer<CChar>) -> Int {
    var n = 0
    while p[n] != 0 { n += 1 }
    return n
}

extension FilePath {
    /// The path a name decoded by `String(pathBytes:)` stands for, byte for byte. `FilePath(String)` would encode
    /// an escaped byte as the four UTF-8 bytes of its private-use scalar and name another file.
    public init(pathString: String) {
        self = pathString.withPathCString { FilePath(platformString: $0) }
    }
}
