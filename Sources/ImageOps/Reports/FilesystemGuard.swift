import QCow2

/// The filesystem guard `resize --shrink` uses: a filesystem (or swap, LVM PV, LUKS header) at the disk's start or
/// at a partition's start that the new end would cut. A whole-disk filesystem (`mkfs.ext4 disk.raw`) has no
/// partition to warn about, so its own superblock is read.
public enum FilesystemGuard {
    /// Nil when no filesystem imgtool reads ends past `newSize`; otherwise what the shrink would cut.
    public static func check(_ image: ImageInfo, newSize: UInt64) -> String? {
        let disk: GuestDisk
        do { disk = try GuestDisk.open(image.filename) } catch {
            return "the guest's disk cannot be read (\(error)), so imgtool cannot tell which filesystems the shrink cuts"
        }
        let read: FilesystemSize.Reader = { (offset, count) throws(GuestDisk.Error) in try disk.read(at: offset, count: count) }
        var starts: [(UInt64, UInt64, String)] = [(0, disk.size, "the disk")]
        if let table = try? PartitionTable.read(diskSize: disk.size, read) {
            for p in table.partitions where !p.extended {
                starts.append((p.offset(table.sectorSize), p.end(table.sectorSize), "partition \(p.number)"))
            }
        }
        for (start, regionEnd, place) in starts where start < disk.size {
            let fs: FilesystemSize?
            do { fs = try FilesystemSize.probe(at: start, read) } catch {
                return "\(place) starts with a superblock imgtool cannot size (\(Untrusted.shown(error.description))), so it cannot tell what the shrink cuts"
            }
            guard let fs else { continue }
            if !fs.exact {
                // A LUKS container's data area runs to the end of its disk or partition (LUKS1 always, LUKS2 with a
                // dynamic segment): any cut into that region cuts encrypted data, whose size the header does not say.
                guard regionEnd > newSize else { continue }
                return "\(place) holds \(Untrusted.shown(fs.name)), whose encrypted data runs to the end of \(start == 0 && place == "the disk" ? "the disk" : place) (byte \(regionEnd)), past the new size \(newSize): the shrink would cut it"
            }
            let (end, o) = start.addingReportingOverflow(fs.bytes)
            guard o || end > newSize else { continue }
            let name = Untrusted.shown(fs.name)
            return "\(place) holds a \(name) filesystem of \(Sizes.human(fs.bytes)) (\(fs.bytes) bytes) ending at byte \(o ? "past 2^64" : String(end)), past the new size \(newSize): the shrink would cut it"
        }
        return nil
    }
}
