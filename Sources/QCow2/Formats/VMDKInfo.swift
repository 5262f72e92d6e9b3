/// A VMDK descriptor's `CID` and `parentCID` as `vmdk_read_cid` reads them: the first occurrence of the name in the
/// 10 KiB descriptor (so `CID` may well be found inside `parentCID`), then, past the name and one more byte, what
/// `sscanf("%x")` makes of the text, cut to 32 bits.
public struct VMDKCIDs: Sendable, Equatable {
    /// This image's content ID.
    public var cid: UInt32
    /// The parent's content ID (0xFFFFFFFF when there is none).
    public var parentCID: UInt32

    /// The IDs from the descriptor bytes (QEMU reads 10240 at byte 512 of a sparse file, at 0 of a descriptor
    /// file); nil when either is missing, as QEMU then refuses the image.
    package static func parse(_ descriptor: [UInt8]) -> VMDKCIDs? {
        var buf = Array(descriptor.prefix(10240))
        if buf.count < 10240 { buf += [UInt8](repeating: 0, count: 10240 - buf.count) }
        buf[10239] = 0
        guard let cid = value(buf, "CID"), let parent = value(buf, "parentCID") else { return nil }
        return VMDKCIDs(cid: cid, parentCID: parent)
    }

    static func value(_ buf: [UInt8], _ name: String) -> UInt32? {
        let text = buf.prefix { $0 != 0 }
        guard let at = text.firstOffset(of: Array(name.utf8)) else { return nil }
        // `p_name += sizeof(name)`: the name and the byte after it; the scan may start past the string's NUL, in the
        // rest of the buffer QEMU read, which ends with a NUL of its own.
        return scanHex(buf, at + name.utf8.count + 1)
    }

    /// glibc's `%x`: white space, a sign, an optional `0x`, hex digits; strtoul's value (clamped on overflow,
    /// negated for `-`) stored into 32 bits.
    static func scanHex(_ b: [UInt8], _ start: Int) -> UInt32? {
        var p = start
        while p < b.count, VMDKDescriptor.isSpace(b[p]) { p += 1 }
        var negative = false
        if p < b.count, b[p] == UInt8(ascii: "-") || b[p] == UInt8(ascii: "+") { negative = b[p] == UInt8(ascii: "-"); p += 1 }
        func digit(_ c: UInt8) -> UInt64? {
            switch c {
            case 0x30...0x39: return UInt64(c - 0x30)
            case 0x41...0x46: return UInt64(c - 0x41 + 10)
            case 0x61...0x66: return UInt64(c - 0x61 + 10)
            default: return nil
            }
        }
        var sawDigit = false
        // "0x" is a prefix only after a zero, which already counts as a digit (so "0xg" scans as 0).
        if p + 1 < b.count, b[p] == 0x30, b[p + 1] | 0x20 == UInt8(ascii: "x") { sawDigit = true; p += 2 }
        var v: UInt64 = 0, overflow = false
        while p < b.count, let d = digit(b[p]) {
            sawDigit = true
            let (m, o1) = v.multipliedReportingOverflow(by: 16)
            let (a, o2) = m.addingReportingOverflow(d)
            if o1 || o2 { overflow = true } else { v = a }
            p += 1
        }
        guard sawDigit else { return nil }
        if overflow { return UInt32.max }
        return UInt32(truncatingIfNeeded: negative ? 0 &- v : v)
    }
}

/// What `qemu-img info` prints in a VMDK's `format-specific` block (`vmdk_get_specific_info`).
public struct VMDKSpecific: Sendable, Equatable {
    /// One extent as QEMU describes it (`vmdk_get_extent_info`).
    public struct Extent: Sendable, Equatable {
        /// The extent's file: the image itself for a monolithic sparse file, else the name joined to the
        /// descriptor's folder.
        public var filename: String
        /// The type from the extent line (`FLAT`, `SPARSE`, …); empty for a sparse file opened directly.
        public var format: String
        /// The extent's size in bytes (a sparse extent's from its own header).
        public var virtualSize: UInt64
        /// The grain size in bytes; nil for flat extents.
        public var clusterSize: UInt64?
        /// True for deflate-compressed (stream-optimized) extents; QEMU prints the key only when true.
        public var compressed: Bool
    }

    /// The create type QEMU keeps (empty when it has none, as for a VMDK3 file).
    public var createType: String
    /// The descriptor's IDs.
    public var cids: VMDKCIDs
    /// The extents in order.
    public var extents: [Extent]
    /// Bytes allocated to the extent files other than the image itself, once per extent line (QEMU adds each
    /// extent's file to `actual-size`, even a file named twice).
    public var extentBytesOnDisk: UInt64 = 0

    /// qemu-img's `cluster-size` for the image (`vmdk_get_info`): the first extent's grain when every extent is
    /// alike (all flat, or all sparse with one grain size and one compression); nil for flat or mixed extents.
    public var clusterSize: UInt64? {
        guard let first = extents.first else { return nil }
        for e in extents.dropFirst() where (e.clusterSize == nil) != (first.clusterSize == nil) || e.compressed != first.compressed
            || (first.clusterSize != nil && e.clusterSize != first.clusterSize) {
            return nil
        }
        return first.clusterSize
    }

    /// Reads the block for an image QEMU's checks accepted: the layout again, and each sparse extent's own header
    /// (each file once, however many lines name it). Nil when anything QEMU would need is missing or unreadable.
    package static func read(_ file: ImageFile, cids: VMDKCIDs?) -> VMDKSpecific? {
        guard let cids, let layout = try? VMDKLayout.read(file) else { return nil }
        var createType = layout.createType ?? ""
        var extents: [Extent] = []
        var headers: [String: Extent?] = [:]
        var allocated: [String: UInt64] = [:]
        var onDisk: UInt64 = 0
        for e in layout.extents {
            if isNamedExtent(e.kind) {
                if allocated[e.path] == nil { allocated[e.path] = FileIdentity.of(path: e.path)?.allocated ?? 0 }
                let (sum, o) = onDisk.addingReportingOverflow(allocated[e.path] ?? 0)
                onDisk = o ? UInt64.max : sum
            }
            var x: Extent
            switch e.kind {
            case .sparse(let h):
                guard let size = bytes(h.capacity), let grain = bytes(h.grainSectors) else { return nil }
                x = Extent(filename: file.path, format: "", virtualSize: size, clusterSize: grain, compressed: h.compressed)
            case .flat:
                guard let size = bytes(e.sectors) else { return nil }
                x = Extent(filename: e.path, format: e.type, virtualSize: size, clusterSize: nil, compressed: false)
            case .unsupported(let what) where what.hasPrefix("VMDK3"):
                guard let cowd = cowd(file) else { return nil }
                x = cowd
            case .unsupported:
                if headers[e.path] == nil { headers[e.path] = .some(sparseExtent(e.path, type: e.type)) }
                guard let found = headers[e.path], var sparse = found else { return nil }
                sparse.format = e.type
                x = sparse
            }
            // `vmdk_open_vmdk4` renames the image when any extent is compressed.
            if x.compressed { createType = "streamOptimized" }
            extents.append(x)
        }
        return VMDKSpecific(createType: createType, cids: cids, extents: extents, extentBytesOnDisk: onDisk)
    }

    /// An extent named on a descriptor line (opened as a file of its own, even when it is the image's file).
    static func isNamedExtent(_ kind: VMDKLayout.Kind) -> Bool {
        switch kind {
        case .flat: return true
        case .unsupported(let what): return !what.hasPrefix("VMDK3")
        case .sparse: return false
        }
    }

    static func bytes(_ sectors: UInt64) -> UInt64? { sectors <= UInt64(Int64.max) / 512 ? sectors * 512 : nil }

    /// A sparse extent named by a descriptor, by its own header: VMDK4 (KDMV), VMDK3 (COWD) or seSparse.
    static func sparseExtent(_ path: String, type: String) -> Extent? {
        guard let f = try? ImageFile.open(path) else { return nil }
        let head = (try? f.read(at: 0, count: 4)) ?? []
        if type == "SESPARSE" {
            // The constant header: magic 0xcafebabe, version, capacity and grain size in sectors (little-endian).
            guard let b = try? f.read(at: 0, count: 32) else { return nil }
            let w = ByteWindow(b)
            guard w.u64LE(0) == 0xCAFE_BABE, let cap = w.u64LE(16).flatMap(bytes), let grain = w.u64LE(24).flatMap(bytes) else { return nil }
            return Extent(filename: path, format: "", virtualSize: cap, clusterSize: grain, compressed: false)
        }
        if head == Array("COWD".utf8) { return cowd(f) }
        guard head == Array("KDMV".utf8), let h = try? VMDKSparseHeader.read(f), h.descriptorOffset == nil,
              let size = bytes(h.capacity), let grain = bytes(h.grainSectors) else { return nil }
        return Extent(filename: path, format: "", virtualSize: size, clusterSize: grain, compressed: h.compressed)
    }

    /// A VMDK3 (COWD) header: sectors at 12, granularity at 16 (both 32-bit little-endian).
    static func cowd(_ f: ImageFile) -> Extent? {
        guard let b = try? f.read(at: 0, count: 20), let sectors = ByteWindow(b).u32LE(12), let grain = ByteWindow(b).u32LE(16) else { return nil }
        return Extent(filename: f.path, format: "", virtualSize: UInt64(sectors) * 512, clusterSize: UInt64(grain) * 512, compressed: false)
    }
}
