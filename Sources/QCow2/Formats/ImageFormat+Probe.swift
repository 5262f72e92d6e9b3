extension ImageFormat {
    /// How many bytes `probe` looks at: QEMU's BLOCK_PROBE_BUF_SIZE. QEMU reads this many (zeros past the end of
    /// the file) and hands every driver the same buffer.
    public static let probeBytes = 2048

    /// QEMU 7.2's drivers in the order `bdrv_probe_all` asks them, which decides ties (the first highest score
    /// wins). Measured with qemu-img 7.2 on polyglots: qed and parallels win over a VDI signature at byte 64, vdi
    /// wins over qcow2, qcow, vpc, vhdx, vmdk and luks; dmg (by name) wins over cloop.
    static let probeOrder: [ImageFormat] = [.qed, .parallels, .bochs, .vdi, .qcow2, .qcow, .vpc, .vhdx, .vmdk, .luks, .dmg, .cloop]

    /// Detects the format the way QEMU 7.2's probes do: every driver scores the first 2048 bytes (zero-padded) and
    /// the file name, the highest score wins, raw (score 1) when nothing else scores. An empty file is raw.
    /// `fileSize` gives raw (and fixed-size formats) their virtual size; `filename` is needed for dmg, which QEMU
    /// recognises by its `.dmg` suffix alone.
    public static func probe(_ prefix: [UInt8], fileSize: UInt64, filename: String? = nil) -> ProbeResult {
        // Nearly every file a scan meets is qcow2: its magic decides at once. Only the probes before qcow2 in
        // `probeOrder` could win (a tie goes to the first); qed, parallels and bochs need other bytes at 0, so only
        // vdi's signature at 64 is looked at. The 2048-byte copy and twelve scores were a tenth of a scan's own work.
        if fileSize > 0, prefix.count >= 72 {
            let w = ByteWindow(prefix)
            if w.u32BE(0) == QCow2Header.magic, (w.u32BE(4) ?? 0) >= 2, w.u32LE(64) != 0xBEDA_107F {
                return ProbeResult(format: .qcow2, virtualSize: w.u64BE(24).map { $0 & ~511 }, vmdkExtents: [], vmdkCreateType: nil)
            }
        }
        var buf = Array(prefix.prefix(probeBytes))
        if buf.count < probeBytes { buf += [UInt8](repeating: 0, count: probeBytes - buf.count) }
        let w = ByteWindow(buf)
        var best: (ImageFormat, Int)?
        if fileSize > 0 {
            for f in probeOrder {
                let s = score(f, w, filename: filename)
                if s > (best?.1 ?? 1) { best = (f, s) }
                // No driver scores above 100 and a tie goes to the first: once one scores 100 the rest cannot win,
                // so a qcow2 (fifth in the order) is not scored as a VMDK text descriptor and six other formats.
                if s >= 100 { break }
            }
        }
        let format = best?.0 ?? .raw
        var r = ProbeResult(format: format, virtualSize: nil, vmdkExtents: [], vmdkCreateType: nil)
        switch format {
        case .raw: r.virtualSize = ImageFormat.sectorsRoundedUp(fileSize)
        // QEMU's drivers keep whole sectors of these headers' byte sizes (`size / 512`).
        case .qcow, .qcow2: r.virtualSize = w.u64BE(24).map { $0 & ~511 }
        case .qed: r.virtualSize = w.u64LE(48)
        case .vdi: r.virtualSize = w.u64LE(368).map(ImageFormat.sectorsRoundedUp)
        case .vpc: r.virtualSize = w.u64BE(48)
        case .vmdk:
            if w.starts(with: Array("KDMV".utf8)) {
                r.virtualSize = w.u64LE(12).flatMap { $0 <= UInt64.max / 512 ? $0 * 512 : nil }
            } else if w.starts(with: Array("COWD".utf8)) {
                r.virtualSize = w.u32LE(12).map { UInt64($0) * 512 }
            } else {
                let d = VMDKDescriptor.parse(prefix)
                r.vmdkExtents = d.extents.map(\.fileName)
                r.vmdkCreateType = d.createType
                r.virtualSize = d.extents.isEmpty ? nil : d.sectors.flatMap { $0 <= UInt64.max / 512 ? $0 * 512 : nil }
            }
        default: break
        }
        return r
    }

    /// One driver's score for the probe buffer, as its `*_probe` function computes it.
    static func score(_ f: ImageFormat, _ w: ByteWindow, filename: String?) -> Int {
        switch f {
        case .qcow2: return w.u32BE(0) == QCow2Header.magic && (w.u32BE(4) ?? 0) >= 2 ? 100 : 0
        case .qcow: return w.u32BE(0) == QCow2Header.magic && w.u32BE(4) == 1 ? 100 : 0
        case .qed: return w.u32LE(0) == 0x0044_4551 ? 100 : 0  // "QED\0"
        case .vdi: return w.u32LE(64) == 0xBEDA_107F ? 100 : 0
        case .vpc: return w.starts(with: Magic.conectix) ? 100 : 0
        case .vhdx: return w.starts(with: Magic.vhdxfile) ? 100 : 0
        case .parallels:
            let magic = w.starts(with: Magic.parallelsOld) || w.starts(with: Magic.parallelsExt)
            return magic && w.u32LE(16) == 2 ? 100 : 0
        case .luks:
            // qcrypto_block_luks_has_format: the magic and version 1. A LUKS2 header is raw to QEMU 7.2.
            return w.starts(with: Magic.luks) && w.u16BE(6) == 1 ? 100 : 0
        case .bochs:
            // strcmp on the fixed fields: each string must end with its NUL inside the buffer.
            let ok = w.starts(with: Magic.bochs)
                && w.starts(with: Magic.redolog, at: 32)
                && w.starts(with: Magic.growing, at: 48)
                && (w.u32LE(64) == 0x0002_0000 || w.u32LE(64) == 0x0001_0000)
            return ok ? 100 : 0
        case .cloop:
            return w.starts(with: Magic.cloop) ? 2 : 0
        case .dmg:
            guard let name = filename, name.utf8.count > 4, name.hasSuffix(".dmg") else { return 0 }
            return 2
        case .vmdk: return vmdkScore(w.bytes)
        case .raw: return 1
        }
    }

    /// `vmdk_probe`: a sparse magic, or a text whose first line that is neither a comment (`#…`) nor blank (spaces
    /// only, CRLF allowed) is `version=1`, `2` or `3` followed by LF or CRLF. An empty line ends the search.
    static func vmdkScore(_ b: [UInt8]) -> Int {
        let w = ByteWindow(b)
        if w.starts(with: Array("COWD".utf8)) || w.starts(with: Array("KDMV".utf8)) { return 100 }
        let end = b.count
        var p = 0
        while p < end {
            if b[p] == UInt8(ascii: "#") {
                while p < end && b[p] != UInt8(ascii: "\n") { p += 1 }
                p += 1
                continue
            }
            if b[p] == UInt8(ascii: " ") {
                while p < end && b[p] == UInt8(ascii: " ") { p += 1 }
                if p < end && b[p] == UInt8(ascii: "\r") { p += 1 }
                if p == end || b[p] != UInt8(ascii: "\n") { return 0 }
                p += 1
                continue
            }
            // Checked byte by byte: this runs on every file probed, and a chain of 500 qcow2 layers probes 500 times.
            let version: [UInt8] = [0x76, 0x65, 0x72, 0x73, 0x69, 0x6F, 0x6E, 0x3D]  // "version="
            guard w.starts(with: version, at: p), let digit = w.u8(p + 8), digit >= 0x31, digit <= 0x33 else { return 0 }
            if w.u8(p + 9) == 0x0A { return 100 }
            return w.u8(p + 9) == 0x0D && w.u8(p + 10) == 0x0A ? 100 : 0
        }
        return 0
    }

    /// A VMDK text descriptor: its extents name other files, and their sizes add up to the disk.
    package static func vmdkDescriptor(_ prefix: [UInt8]) -> ProbeResult {
        let d = VMDKDescriptor.parse(prefix)
        let size = d.sectors.flatMap { $0 <= UInt64.max / 512 ? $0 * 512 : nil }
        return ProbeResult(format: .vmdk, virtualSize: d.extents.isEmpty ? nil : size, vmdkExtents: d.extents.map(\.fileName), vmdkCreateType: d.createType)
    }
}

extension ImageFormat {
    /// A byte count as QEMU's block layer sees a file of that size: whole 512-byte sectors, the last one completed
    /// with zeros (`bdrv_refresh_total_sectors` rounds up). A raw image of 1000 bytes is a 1024-byte disk.
    public static func sectorsRoundedUp(_ bytes: UInt64) -> UInt64 {
        let (sum, o) = bytes.addingReportingOverflow(511)
        return o ? bytes & ~511 : sum & ~511
    }
}

/// The magics the probe compares, made once (the probe runs on every layer of every chain).
enum Magic {
    static let conectix = Array("conectix".utf8)
    static let vhdxfile = Array("vhdxfile".utf8)
    static let parallelsOld = Array("WithoutFreeSpace".utf8)
    static let parallelsExt = Array("WithouFreSpacExt".utf8)
    static let bochs = Array("Bochs Virtual HD Image".utf8) + [0]
    static let redolog = Array("Redolog".utf8) + [0]
    static let growing = Array("Growing".utf8) + [0]
    static let cloop = Array("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n".utf8)
    static let luks: [UInt8] = [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]
}
