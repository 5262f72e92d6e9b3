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
        var starts: [(UInt64, String)] = [(0, "the disk")]
        if let table = try? PartitionTable.read(diskSize: disk.size, read) {
            for p in table.partitions where !p.extended {
                starts.append((p.offset(table.sectorSize), "partition \(p.number)"))
            }
        }
        for (start, place) in starts where start < disk.size {
            let fs: FilesystemSize?
            do { fs = try FilesystemSize.probe(at: start, read) } catch {
                return "\(place) starts with a superblock imgtool cannot size (\(Untrusted.shown(error.description))), so it cannot tell what the shrink cuts"
            }
            guard let fs else { continue }
            let (end, o) = start.addingReportingOverflow(fs.bytes)
            guard o || end > newSize else { continue }
            let name = Untrusted.shown(fs.name)
            if fs.exact {
                return "\(place) holds a \(name) filesystem of \(Sizes.human(fs.bytes)) (\(fs.bytes) bytes) ending at byte \(o ? "past 2^64" : String(end)), past the new size \(newSize): the shrink would cut it"
            }
            return "\(place) holds \(name), whose size imgtool cannot know; its header alone ends at byte \(o ? "past 2^64" : String(end)), past the new size \(newSize), and must stay"
        }
        return nil
    }
}
