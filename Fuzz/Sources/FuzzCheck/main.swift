import QCow2

#if canImport(Glibc)
import Glibc
#endif

/// The native checker: the input written to a file, read as an image, then checked as `qemu-img check` would. Every
/// count must be consistent with the findings, and a check that stopped must say so with a check error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let path = "/dev/shm/imgtool-fuzz-check-\(getpid()).img"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = write(fd, data, size)
    close(fd)
    defer { unlink(path) }
    guard let info = try? ImageInfo.read(path, mode: .check), let check = try? ImageChecker.check(info) else { return 0 }
    precondition(check.aborted == nil || check.checkErrors > 0, "a check that stopped counts no check error")
    let named = check.findings.filter { $0.kind == .corruption || $0.kind == .leak }.count
    precondition(check.corruptions + check.leaks == 0 || named > 0, "corruptions or leaks counted without a finding")
    return 0
}
