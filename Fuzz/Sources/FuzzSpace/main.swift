import QCow2

#if canImport(Glibc)
import Glibc
#endif

/// The allocation map reader: the input written to a file, read as one layer (its backing file is not followed:
/// a fuzzed name must not reach other files), then the ledger and the previews over it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let path = "/dev/shm/imgtool-fuzz-space-\(getpid()).img"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = write(fd, data, size)
    close(fd)
    defer { unlink(path) }
    guard let info = try? ImageInfo.read(path), let layer = try? LayerSpace.read(info, maxLookups: 1 << 12) else { return 0 }
    let ledger = SpaceLedger.compute(image: path, [layer, layer])
    precondition(ledger.visible[0] + ledger.shadowed[0] == layer.allocated, "the ledger does not add up")
    return 0
}
