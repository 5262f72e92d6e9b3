import QCow2

#if canImport(Glibc)
import Glibc
#endif

/// The whole file path: the input written to a file, then info, chain, verify and guest reads on it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let path = "/dev/shm/imgtool-fuzz-\(getpid()).img"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = write(fd, data, size)
    close(fd)
    defer { unlink(path) }
    _ = try? ImageInfo.read(path)
    _ = try? BackingChain.follow(path, maxDepth: 4)
    _ = Verification.run(path, claimed: "raw")
    if let disk = try? GuestDisk.open(path) {
        for offset: UInt64 in [0, 512, 65536, disk.size / 2, disk.size &- 1] {
            _ = try? disk.read(at: offset, count: 4096)
        }
    }
    return 0
}
