import QCow2

/// MBR/EBR/GPT parsing with the input as a disk (zeros past its end, as a sparse disk reads).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let disk = Array(UnsafeBufferPointer(start: data, count: size))
    // Claim a larger disk than the bytes, so backup GPT headers and far EBRs are looked for.
    for diskSize in [UInt64(size), UInt64(size) * 8 + 4096] {
        _ = try? PartitionTable.read(diskSize: diskSize) { (o, n) throws(GuestDisk.Error) in
            guard n <= 1 << 21 else { throw .tooLarge(count: n) }
            let start = Int(min(o, UInt64(disk.count)))
            var out = Array(disk[start..<min(disk.count, start + n)])
            out += [UInt8](repeating: 0, count: n - out.count)
            return out
        }
    }
    return 0
}
