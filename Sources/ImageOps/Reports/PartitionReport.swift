import QCow2

/// `imgtool partitions` and `offset`: the table of the guest's disk, with the line that mounts each partition.
public struct PartitionReport: Sendable {
    /// The image as given.
    public var image: String
    /// Its format (raw images mount with a loop device, anything else through qemu-nbd).
    public var format: ImageFormat
    /// The table.
    public var table: PartitionTable

    /// Reads the table of `image`'s guest disk (through the whole chain for qcow2).
    public static func read(_ image: String) throws -> PartitionReport {
        let disk = try GuestDisk.open(image)
        let table = try PartitionTable.read(diskSize: disk.size) { (offset, count) throws(GuestDisk.Error) in
            try disk.read(at: offset, count: count)
        }
        return PartitionReport(image: image, format: disk.format, table: table)
    }

    /// The line (or lines) that mount partition `p`.
    public func mountRecipe(_ p: PartitionTable.Partition) -> [String] {
        if p.extended { return [] }
        let s = table.sectorSize
        if format == .raw {
            return ["mount -o loop,offset=\(p.offset(s)),sizelimit=\(p.size(s)) \(Shell.operand(image)) /mnt"]
        }
        return [
            "modprobe nbd max_part=8",
            "qemu-nbd --connect=/dev/nbd0 --read-only \(Shell.operand(image))",
            "mount -o ro /dev/nbd0p\(p.number) /mnt",
            "umount /mnt && qemu-nbd --disconnect /dev/nbd0",
        ]
    }


}

/// The shrink guard `resize` uses: a shrink that cuts a partition, or any shrink of a GPT disk, needs --force.
public enum PartitionGuard {
    /// Nil when the shrink cuts nothing; otherwise what it would cut.
    public static func check(_ image: ImageInfo, newSize: UInt64) -> String? {
        let report: PartitionReport
        do { report = try PartitionReport.read(image.filename) } catch {
            return "the partition table cannot be read (\(error)), so imgtool cannot tell what the shrink cuts"
        }
        let t = report.table
        if t.kind == "gpt" { return "the disk has a GPT, whose backup header lives in the last sector: any shrink breaks it" }
        if t.gptBehindMBR != nil {
            return "the disk carries a GPT behind its MBR (a hybrid ISO's), whose backup header lives in the last sector: any shrink breaks it"
        }
        // An extended container counts too: cut, its logical partitions' chain of EBRs points past the disk's end.
        for p in t.partitions {
            let end = p.end(t.sectorSize)
            if end > newSize {
                return "\(p.extended ? "the extended container, partition \(p.number)," : "partition \(p.number)") ends at byte \(end), past the new size \(newSize): the shrink would cut it"
            }
        }
        return nil
    }
}
