import QCow2

#if canImport(Glibc)
import Glibc
#endif

/// The guest readers of every format: the first input byte picks a format whose magic is stamped over the rest of
/// the input (so every run reaches a reader, not the probe's raw fallback), the result is written to a file, then
/// info, the native check, open and guest reads at offsets the input also chooses. No trap, no hang, no huge allocation.
/// A negative offset counts from the end: dmg is found by its `.dmg` name and the `koly` trailer in its last 512
/// bytes, so for it the input is padded to 512 bytes, stamped there, and written to a `.dmg` path.
let magics: [(Int, [UInt8])] = [
    (0, [0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 1]),  // qcow v1
    (0, Array("QED".utf8) + [0]),
    (64, [0x7F, 0x10, 0xDA, 0xBE]),  // VDI
    (0, Array("WithouFreSpacExt".utf8) + [2, 0, 0, 0]),
    (0, Array("WithoutFreeSpace".utf8) + [2, 0, 0, 0]),
    (0, Array("conectix".utf8)),
    (0, Array("vhdxfile".utf8)),
    (0, Array("KDMV".utf8)),
    (0, Array("version=1\nCID=1\nparentCID=ffffffff\n".utf8)),
    (0, Array("Bochs Virtual HD Image".utf8) + [0] + [UInt8](repeating: 0, count: 9) + Array("Redolog".utf8) + [0] + [UInt8](repeating: 0, count: 8) + Array("Growing".utf8) + [0] + [UInt8](repeating: 0, count: 8) + [0, 0, 2, 0]),
    (0, Array("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n".utf8)),
    (-512, Array("koly".utf8)),  // dmg
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 1 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let (from, magic) = magics[Int(data[0]) % magics.count]
    if from < 0, bytes.count < -from { bytes += [UInt8](repeating: 0, count: -from - bytes.count) }
    let at = from < 0 ? bytes.count + from : from
    if bytes.count < at + magic.count { bytes += [UInt8](repeating: 0, count: at + magic.count - bytes.count) }
    bytes.replaceSubrange(at..<(at + magic.count), with: magic)
    let path = "/dev/shm/imgtool-fuzzguest-\(getpid())" + (from < 0 ? ".dmg" : ".img")
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    defer { unlink(path) }
    // The native check of the formats qemu-img checks (qcow2's has FuzzCheck): bounded work, no trap.
    if let info = try? ImageInfo.read(path, mode: .check) { _ = try? ImageChecker.check(info) }
    guard let disk = try? GuestDisk.open(path) else { return 0 }
    var offsets: [UInt64] = [0, 512, 4096, disk.size / 2, disk.size &- 1]
    if bytes.count >= 8 { offsets.append(bytes.suffix(8).reduce(0) { $0 << 8 | UInt64($1) } % max(disk.size, 1)) }
    for offset in offsets {
        _ = try? disk.read(at: offset, count: 8192 + 512)
    }
    return 0
}
