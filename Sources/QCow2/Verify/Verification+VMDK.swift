/// VMDK as QEMU 7.2's block/vmdk.c opens it, for `verify`: which files it would open besides this one.
///
/// - A hosted sparse extent (`KDMV`) with a capacity is the whole disk. QEMU never reads the extent lines or the
///   createType of its embedded descriptor, so a renamed monolithicSparse or streamOptimized image (its descriptor
///   still naming the old file) is self-contained; only `parentFileNameHint` reaches outside (FormatDetails).
/// - A sparse header with capacity 0 and a descriptor offset makes QEMU open that embedded descriptor as a
///   descriptor file: then its extent lines are followed like a text descriptor's.
/// - A text descriptor holds no data at all: every extent it names is another file.
enum VMDKExtentLines {
    /// An extent line QEMU would act on.
    struct Extent: Equatable {
        /// RW, RDONLY or NOACCESS.
        var access: String
        /// FLAT, SPARSE, VMFS, VMFSSPARSE or SESPARSE: the types that open a file.
        var type: String
        /// The file it names, as written.
        var file: String
    }

    static let fileTypes: Set<String> = ["FLAT", "SPARSE", "VMFS", "VMFSSPARSE", "SESPARSE"]

    /// Extent lines as `vmdk_parse_extents` scans them (`%10s %ld %10s "%511[^\n\r"]"`), every access mode kept:
    /// QEMU 7.2 opens only RW extents, later versions RDONLY ones too, and `--qemu-img` may be either.
    static func extents(_ text: [UInt8]) -> [Extent] {
        var out: [Extent] = []
        for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            var rest = line[...]
            func word() -> String {
                rest = rest.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0B || $0 == 0x0C }
                let w = rest.prefix { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0B || $0 == 0x0C) }.prefix(10)
                rest = rest.dropFirst(w.count)
                return decodeText(w)
            }
            let access = word(), sectors = Int64(word()), type = word()
            rest = rest.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
            guard ["RW", "RDONLY", "NOACCESS"].contains(access), let sectors, sectors > 0, fileTypes.contains(type),
                  rest.first == UInt8(ascii: "\"") else { continue }
            let name = rest.dropFirst().prefix { $0 != UInt8(ascii: "\"") && $0 != 0x0D }.prefix(511)
            guard !name.isEmpty else { continue }
            out.append(Extent(access: access, type: type, file: decodeName(name)))
        }
        return out
    }
}

extension Verification {
    static func verifyVMDK(_ file: ImageFile, _ prefix: [UInt8], _ v: inout Verification) {
        func add(_ check: String, _ unsafe: Bool, _ message: String) { v.findings.append(Finding(check: check, unsafe: unsafe, message: message)) }
        let w = ByteWindow(prefix)
        let descriptor: [UInt8]
        if w.starts(with: Array("KDMV".utf8)) {
            let capacity = w.u64LE(12) ?? 0, descSector = w.u64LE(28) ?? 0
            guard capacity == 0, descSector != 0 else {
                add("vmdk extents", false, "a sparse extent with its own capacity: QEMU reads the disk from this file alone and ignores the extent names in its embedded descriptor")
                return
            }
            // QEMU reads up to 1 MiB of descriptor from there, and stops at the first NUL.
            let (offset, o) = descSector.multipliedReportingOverflow(by: 512)
            guard !o, offset < file.stat.size else { add("descriptor", true, "capacity 0 sends QEMU to an embedded descriptor at sector \(descSector), beyond the file"); return }
            let count = Int(min(file.stat.size - offset, (1 << 20) - 1))
            descriptor = ((try? file.read(at: offset, count: count)) ?? []).prefix { $0 != 0 }
            add("descriptor", true, "capacity 0: QEMU opens the embedded descriptor at sector \(descSector) as a descriptor file and follows its extents")
        } else if w.starts(with: Array("COWD".utf8)) {
            add("vmdk extents", false, "a VMFS sparse (COWD) extent: QEMU reads the disk from this file alone")
            return
        } else {
            // A descriptor file is read whole, up to 1 MiB as QEMU does: extent lines past the probe's prefix count.
            let whole = (try? file.read(at: 0, count: Int(min(file.stat.size, (1 << 20) - 1)))) ?? prefix
            descriptor = Array(whole.prefix { $0 != 0 })
            switch VMDKDescriptor.parse(descriptor).createType {
            case let t? where VMDKDescriptor.descriptorFileTypes.contains(t):
                add("vmdk createType", true, "a \(t) descriptor holds no data: the disk lives in the files its extents name")
            case let t?:
                add("vmdk createType", true, "QEMU refuses a descriptor file of createType \(t) (only \(VMDKDescriptor.descriptorFileTypes.sorted().joined(separator: ", ")))")
            case nil:
                add("vmdk createType", true, "a descriptor without createType: QEMU refuses it")
            }
        }
        for e in VMDKExtentLines.extents(descriptor) {
            let note = e.access == "RW" ? "" : " (QEMU 7.2 skips \(e.access) extents; later versions open them)"
            add("vmdk extent", true, "a \(e.type) extent names another file: \(e.file)\(note)")
        }
    }
}
