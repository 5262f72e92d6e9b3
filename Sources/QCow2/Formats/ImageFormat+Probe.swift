extension ImageFormat {
    /// How many bytes `probe` looks at: every magic sits in the first 512, but a VMDK descriptor needs more.
    public static let probeBytes = 4096

    /// Detects the format by magic, the way QEMU's probes do, from the first bytes of the file.
    /// `fileSize` gives raw (and fixed-size formats) their virtual size.
    public static func probe(_ prefix: [UInt8], fileSize: UInt64) -> ProbeResult {
        let w = ByteWindow(prefix)
        func result(_ f: ImageFormat, _ size: UInt64?) -> ProbeResult {
            ProbeResult(format: f, virtualSize: size, vmdkExtents: [], vmdkCreateType: nil)
        }
        if w.u32BE(0) == QCow2Header.magic, let version = w.u32BE(4) {
            // qcow v1 and qcow2 share the magic; the version tells them apart.
            if version == 1 { return result(.qcow, w.u64BE(24)) }
            if version >= 2 { return result(.qcow2, w.u64BE(24)) }
        }
        if w.starts(with: Array("QED".utf8) + [0]) { return result(.qed, w.u64LE(48)) }
        if w.starts(with: Array("KDMV".utf8)) {
            // Sparse extent: capacity in sectors at offset 12.
            let sectors = w.u64LE(12)
            return result(.vmdk, sectors.flatMap { $0 <= UInt64.max / 512 ? $0 * 512 : nil })
        }
        if w.starts(with: [0x43, 0x4F, 0x57, 0x44]) { return result(.vmdk, nil) }  // "COWD": ESX sparse
        if w.starts(with: Array("# Disk DescriptorFile".utf8)) { return vmdkDescriptor(prefix) }
        if w.u32LE(64) == 0xBEDA_107F { return result(.vdi, w.u64LE(368)) }
        if w.starts(with: Array("vhdxfile".utf8)) { return result(.vhdx, nil) }
        if w.starts(with: Array("conectix".utf8)) { return result(.vpc, w.u64BE(48)) }
        if w.starts(with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]) { return result(.luks, nil) }
        // Parallels: either magic, and version 2 (QEMU's probe asks for both).
        if w.starts(with: Array("WithoutFreeSpace".utf8)) || w.starts(with: Array("WithouFreSpacExt".utf8)), w.u32LE(16) == 2 {
            return result(.parallels, nil)
        }
        return result(.raw, fileSize)
    }

    /// A VMDK text descriptor: its extents name other files, and their sizes add up to the disk.
    package static func vmdkDescriptor(_ prefix: [UInt8]) -> ProbeResult {
        let text = decodeText(prefix.prefix { $0 != 0 })
        var extents: [String] = []
        var createType: String?
        var sectors: UInt64 = 0
        var sizeKnown = true
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.hasPrefix("createType=") {
                createType = String(trimmed.dropFirst("createType=".count)).replacingQuotes()
            }
            // RW 2048 FLAT "file.img" 0
            let words = trimmed.split(separator: " ", maxSplits: 3)
            if words.count >= 3, ["RW", "RDONLY", "NOACCESS"].contains(String(words[0])) {
                if let n = UInt64(words[1]) {
                    let (sum, o) = sectors.addingReportingOverflow(n)
                    sectors = sum
                    if o { sizeKnown = false }
                } else { sizeKnown = false }
                if words.count == 4, let q1 = words[3].firstIndex(of: "\"") {
                    let rest = words[3][words[3].index(after: q1)...]
                    if let q2 = rest.firstIndex(of: "\"") { extents.append(String(rest[..<q2])) }
                }
            }
        }
        let size = sizeKnown && sectors <= UInt64.max / 512 ? sectors * 512 : nil
        return ProbeResult(format: .vmdk, virtualSize: extents.isEmpty ? nil : size, vmdkExtents: extents, vmdkCreateType: createType)
    }
}

extension String {
    fileprivate func replacingQuotes() -> String {
        String(self.filter { $0 != "\"" })
    }
}
