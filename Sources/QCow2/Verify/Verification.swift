/// `imgtool verify`: is an image from someone we do not trust safe to hand to qemu-img? Unsafe when it reaches
/// outside itself (backing file, external data file, VMDK extents), cannot be trusted (unknown incompatible features,
/// the corrupt bit, a header that fails validation, tables outside the file), or is not the format it claims.
public struct Verification: Sendable {
    /// One check's outcome.
    public struct Finding: Sendable {
        /// A short name for the check.
        public var check: String
        /// True when this finding makes the image unsafe.
        public var unsafe: Bool
        /// In words.
        public var message: String
    }

    /// The image.
    public var image: String
    /// The detected format (nil when unreadable).
    public var format: String?
    /// Every finding, safe ones included.
    public var findings: [Finding]
    /// True when nothing unsafe was found.
    public var safe: Bool { !findings.contains { $0.unsafe } }

    /// Verifies `path`; `claimed` is the format the sender said it is.
    public static func run(_ path: String, claimed: String?) -> Verification {
        var v = Verification(image: path, format: nil, findings: [])
        func add(_ check: String, _ unsafe: Bool, _ message: String) { v.findings.append(Finding(check: check, unsafe: unsafe, message: message)) }
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch {
            add("readable", true, error.description)
            return v
        }
        let prefix: [UInt8]
        do { prefix = try file.read(at: 0, count: QCow2Header.firstRead) } catch {
            add("readable", true, error.description)
            return v
        }
        var probe = ImageFormat.probe(prefix, fileSize: file.stat.size, filename: path)
        if probe.format == .vmdk { probe = ImageFormat.vmdkProbe(file, probe) }
        v.format = probe.format.rawValue
        if let claimed {
            if claimed != probe.format.rawValue {
                add("format", true, "claimed to be \(claimed) but it is \(probe.format.rawValue)" + (claimed == "raw" ? ": QEMU told 'raw' would hand the guest a \(probe.format.rawValue) header, and told nothing it would follow its links" : ""))
            } else {
                add("format", false, "is \(claimed), as claimed")
            }
        }
        switch probe.format {
        case .qcow2: verifyQCow2(file, prefix, &v)
        case .vmdk: verifyVMDK(file, prefix, &v)
        case .qed:
            let w = ByteWindow(prefix)
            if let off = w.u32LE(56), off != 0 { add("backing file", true, "QED image names a backing file") }
            if let cs = w.u32LE(4), cs < 4096 || cs > 64 << 20 || cs & (cs - 1) != 0 { add("header", true, "QED cluster size \(cs) is invalid") }
        case .vdi:
            let w = ByteWindow(prefix)
            if let hs = w.u32LE(72), hs < 348 || hs > 1 << 20 { add("header", true, "VDI header size \(hs) is invalid") }
            if let dataOff = w.u32LE(344), UInt64(dataOff) > file.stat.size { add("header", true, "VDI data offset \(dataOff) lies beyond the file") }
        case .vpc:
            // The footer's checksum: the ones' complement of the byte sum with the checksum field zeroed.
            let w = ByteWindow(prefix)
            if let stored = w.u32BE(64), prefix.count >= 512 {
                var sum: UInt32 = 0
                for (i, b) in prefix.prefix(512).enumerated() where !(64..<68).contains(i) { sum &+= UInt32(b) }
                if ~sum != stored { add("header", true, "VHD footer checksum does not match") }
            }
            // QEMU's vpc driver opens a differencing disk (type 4) as if it were dynamic: it never opens the parent, so
            // the guest reads zeros wherever the parent holds data. Hyper-V and VirtualBox do open the parent its
            // locators name. Either way the disk is not this file alone.
            if let diskType = w.u32BE(60), diskType == 4 {
                add("backing file", true, "a differencing VHD: its data is incomplete without the parent disk it names (QEMU reads it as standalone and shows zeros where the parent has data; Hyper-V and VirtualBox open that parent)")
            }
        case .vhdx:
            let head: [UInt8] = (try? file.read(at: 64 * 1024, count: 4)) ?? []
            if head != Array("head".utf8) { add("header", true, "VHDX header signature missing at 64 KiB") }
        case .luks, .parallels, .raw, .qcow, .bochs, .cloop, .dmg:
            if probe.format == .qcow { add("format", true, "qcow (version 1) is obsolete and can name a backing file") }
        }
        if probe.format == .vmdk || probe.format == .qcow {
            let details = FormatDetails.read(probe.format, prefix: prefix, fileSize: file.stat.size) { offset, count in
                try? file.read(at: offset, count: count)
            }
            if let parent = details.backingFile { add("backing file", true, "names a backing file: \(parent)") }
        }
        // What QEMU's open refuses cannot be trusted either: the header is not what qemu-img would read.
        if probe.format != .qcow2 && probe.format != .raw {
            do throws(FormatError) { _ = try FormatCheck.validate(probe.format, file) } catch {
                add("header: \(error.field)", true, error.description)
            }
        }
        for other in alsoLooksLike(file, prefix, probe.format) {
            add("polyglot", true, "is a \(probe.format.rawValue) image but also carries \(other): tools that probe differently would see different disks")
        }
        if !v.findings.contains(where: { $0.unsafe }) { add("external references", false, "reaches no file outside itself") }
        return v
    }

    /// Signatures of other formats at the offsets those formats keep them. A file valid as two formats (a polyglot)
    /// is how an image slips past one inspector and is opened as something else by the next tool; OpenStack's
    /// inspector refuses those too. A raw disk is exempt: partition tables and an ISO 9660 volume are what a disk
    /// holds (hybrid ISOs carry both), and a fixed VHD is raw data with a footer.
    static func alsoLooksLike(_ file: ImageFile, _ prefix: [UInt8], _ format: ImageFormat) -> [String] {
        guard format != .raw else { return [] }
        var found: [String] = []
        let w = ByteWindow(prefix)
        let size = file.stat.size
        func bytes(at offset: UInt64, _ count: Int) -> [UInt8] {
            guard size >= offset + UInt64(count) else { return [] }
            return (try? file.read(at: offset, count: count)) ?? []
        }
        if bytes(at: 32769, 5) == Array("CD001".utf8) { found.append("an ISO 9660 volume descriptor at byte 32769") }
        if format != .vdi, w.u32LE(64) == 0xBEDA_107F { found.append("a VDI signature at byte 64") }
        if w.slice(512, 8).map(Array.init) == Array("EFI PART".utf8) { found.append("a GPT header at byte 512") }
        // A disk of 4 KiB sectors keeps its GPT header at byte 4096.
        if bytes(at: 4096, 8) == Array("EFI PART".utf8) { found.append("a GPT header at byte 4096") }
        if format != .vpc, size >= 1024, bytes(at: size - 512, 8) == Array("conectix".utf8) {
            found.append("a VHD footer in its last 512 bytes")
        }
        return found
    }

    static func verifyQCow2(_ file: ImageFile, _ prefix: [UInt8], _ v: inout Verification) {
        func add(_ check: String, _ unsafe: Bool, _ message: String) { v.findings.append(Finding(check: check, unsafe: unsafe, message: message)) }
        let h: QCow2Header
        do {
            h = try QCow2Header.parse(prefix, path: file.path) { (o, n) throws(QCow2Header.Error) in
                do throws(ImageFile.Error) { return try file.read(at: o, count: n) } catch { throw .io(error) }
            }
        } catch {
            add(error.field.map { "header: \($0)" } ?? "header", true, error.description)
            return
        }
        if let b = h.backingFile, !b.isEmpty { add("backing file", true, "names a backing file: \(b)") }
        if h.hasExternalDataFile || h.dataFile != nil { add("data file", true, "keeps guest data in an external file: \(h.dataFile ?? "(unnamed)")") }
        if h.isCorrupt { add("corrupt bit", true, "QEMU marked this image corrupt") }
        if h.isDirty { add("dirty bit", false, "not closed cleanly (lazy refcounts); qemu-img check repairs it") }
        let size = file.stat.size
        // Header fields are hostile: an end that overflows lies outside any file.
        func end(_ offset: UInt64, _ count: UInt64, _ unit: UInt64) -> UInt64 {
            let (bytes, o1) = count.multipliedReportingOverflow(by: unit)
            let (e, o2) = offset.addingReportingOverflow(bytes)
            return o1 || o2 ? .max : e
        }
        if end(h.l1TableOffset, UInt64(h.l1Size), 8) > size { add("l1 table", true, "the L1 table (offset \(h.l1TableOffset), \(h.l1Size) entries) lies outside the file (\(size) bytes)") }
        if end(h.refcountTableOffset, UInt64(h.refcountTableClusters), h.clusterSize) > size {
            add("refcount table", true, "the refcount table (offset \(h.refcountTableOffset)) lies outside the file (\(size) bytes)")
        }
        verifySnapshots(h, file, size: size, &v)
        if let b = h.bitmaps {
            let (end, o) = b.directoryOffset.addingReportingOverflow(b.directorySize)
            if o || end > size { add("bitmaps", true, "the bitmap directory lies outside the file") }
            do throws(QCow2Bitmap.Error) {
                verifyBitmapTables(h, try h.readBitmaps(from: file), path: file.path, size: size, &v)
            } catch {
                add("bitmaps: \(error.field)", true, error.description)
            }
        }
        if h.cryptMethod != 0 { add("encryption", false, "encrypted (\(h.encryptionName ?? "?")); qemu-img needs the key to read it") }
        if !h.unknownExtensions.isEmpty { add("extensions", false, "unknown header extensions: \(h.unknownExtensions.map { "0x" + String($0, radix: 16) }.joined(separator: ", "))") }
    }
}
