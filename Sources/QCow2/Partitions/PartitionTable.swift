import CZlib

/// A partition table as the guest sees it: MBR (with the extended chain), GPT, or the Sun, SGI and BSD labels that
/// sfdisk also reads.
public struct PartitionTable: Sendable, Equatable {
    /// "mbr", "gpt", "sun", "sgi", "bsd" or "none": the labels `sfdisk` reads, so a recognised label is never "none".
    public var kind: String
    /// Logical sector size the table was found with.
    public var sectorSize: UInt64
    /// The disk's size in bytes.
    public var diskSize: UInt64
    /// The partitions, in table order (primaries 1–4, then logicals from 5; GPT in entry order).
    public var partitions: [Partition]
    /// What was odd on the way: a damaged primary GPT header, an EBR loop, entries beyond the disk.
    public var warnings: [String]
    /// The sector size of a valid GPT found behind an MBR that does not protect it (a hybrid ISO's): not the table,
    /// as for Linux and sfdisk, but its backup header still lives in the disk's last sector.
    public var gptBehindMBR: UInt64? = nil

    /// One partition.
    public struct Partition: Sendable, Equatable {
        /// Its number as Linux names it (sda1…, logicals from 5).
        public var number: Int
        /// MBR type as two hex digits, the GPT type GUID, or the Sun tag, SGI or BSD type in hex as sfdisk prints it.
        public var type: String
        /// A readable name for the type.
        public var typeName: String
        /// The MBR boot flag.
        public var bootable: Bool
        /// A logical partition inside an extended one.
        public var logical: Bool
        /// An extended container (it holds logicals; it is not mounted).
        public var extended: Bool
        /// First sector.
        public var startSector: UInt64
        /// Sectors it covers.
        public var sectors: UInt64
        /// GPT partition name.
        public var name: String?
        /// GPT unique GUID.
        public var uuid: String?

        /// Byte offset: what `mount -o loop,offset=` wants.
        public func offset(_ sectorSize: UInt64) -> UInt64 { startSector.multipliedReportingOverflow(by: sectorSize).partialValue }
        /// Size in bytes.
        public func size(_ sectorSize: UInt64) -> UInt64 { sectors.multipliedReportingOverflow(by: sectorSize).partialValue }
        /// The byte after its last, saturating: a hostile table's numbers must not trap the arithmetic.
        public func end(_ sectorSize: UInt64) -> UInt64 {
            let (s, o1) = startSector.multipliedReportingOverflow(by: sectorSize)
            let (n, o2) = sectors.multipliedReportingOverflow(by: sectorSize)
            let (e, o3) = s.addingReportingOverflow(n)
            return o1 || o2 || o3 ? UInt64.max : e
        }
    }

    /// Why a table could not be read at all (a damaged one is read as far as it goes, with warnings).
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
        /// Reading the disk failed.
        case read(GuestDisk.Error)

        public var description: String {
            switch self {
            case .read(let e): return e.description
            }
        }
    }

    /// Reads sectors of the guest's disk.
    public typealias Reader = (_ offset: UInt64, _ count: Int) throws(GuestDisk.Error) -> [UInt8]

    /// Reads the table of the disk behind `read`, `diskSize` bytes long.
    public static func read(diskSize: UInt64, _ read: Reader) throws(Error) -> PartitionTable {
        func get(_ offset: UInt64, _ count: Int) throws(Error) -> [UInt8] {
            do { return try read(offset, count) } catch { throw .read(error) }
        }
        let sector0 = try get(0, 512)
        // GPT first, but only behind a protective MBR, as Linux and sfdisk decide: its header sits at LBA 1 of
        // 512- or 4096-byte sectors.
        if GPT.hasProtectiveMBR(sector0) {
            for sectorSize: UInt64 in [512, 4096] where diskSize >= sectorSize * 2 {
                if let gpt = try GPT.read(diskSize: diskSize, sectorSize: sectorSize, get) { return gpt }
            }
            // No valid header at either size: the protective MBR still says GPT, so say what is wrong with it.
            if diskSize >= 1024, let damaged = try GPT.read(diskSize: diskSize, sectorSize: 512, reportDamaged: true, get) { return damaged }
        }
        // A GPT the MBR does not protect (isohybrid, xorriso's hybrid ISOs) is not used; it is said to be there.
        var table = try otherLabel(sector0, diskSize: diskSize, get)
        if !GPT.hasProtectiveMBR(sector0), let size = try GPT.headerPresent(diskSize: diskSize, get) {
            table.warnings.append("a GPT is present too (header at LBA 1 of \(size)-byte sectors), but the MBR does not protect it "
                + "(no type ee entry at LBA 1): Linux and sfdisk ignore it, and so does this listing")
            table.gptBehindMBR = size
        }
        return table
    }

    /// libfdisk's order after GPT: DOS, BSD, SGI, Sun; "none" when nothing is recognised.
    static func otherLabel(_ sector0: [UInt8], diskSize: UInt64, _ get: (UInt64, Int) throws(Error) -> [UInt8]) throws(Error) -> PartitionTable {
        if MBR.isLabel(sector0) { return try MBR.read(sector0, diskSize: diskSize, get) }
        if diskSize >= 1024 {
            let sector1 = try get(512, 512)
            if OtherLabels.isBSD(sector1) { return OtherLabels.bsd(sector1, diskSize: diskSize) }
        }
        if OtherLabels.isSGI(sector0) { return OtherLabels.sgi(sector0, diskSize: diskSize) }
        if OtherLabels.isSun(sector0) { return OtherLabels.sun(sector0, diskSize: diskSize) }
        return PartitionTable(kind: "none", sectorSize: 512, diskSize: diskSize, partitions: [], warnings: [])
    }
}

extension PartitionTable {
    /// The partition whose number is `number`.
    public func partition(_ number: Int) -> Partition? { partitions.first { $0.number == number } }

    /// The last byte any partition (or the GPT backup) needs: a shrink below it cuts something.
    public var usedEnd: UInt64 {
        var end: UInt64 = 0
        for p in partitions where !p.extended { end = max(end, p.end(sectorSize)) }
        return end
    }
}

/// CRC-32 as GPT uses it (the same as zlib's).
func crc32Of<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
    let a = Array(bytes)
    return a.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
}

/// CRC-32 of `bytes` continued from `crc` (the CRC of what came before them), for an array read piece by piece.
func crc32Update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBufferPointer { UInt32(crc32(UInt(crc), $0.baseAddress, UInt32($0.count))) }
}
