import QCow2

/// qcow2 header and extensions, the format probe and every other format's header details, on arbitrary bytes:
/// no trap, no hang, no huge allocation.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = ImageFormat.probe(bytes, fileSize: UInt64(size))
    // The header parser with the input as the whole file: `more` serves further bytes from it.
    _ = try? QCow2Header.parseForFuzzing(bytes)
    // Every format's details on the same bytes, whatever the magic says. Reads past the input wrap around it, so
    // the fuzzer also controls what sits at VHDX's 192 KiB region table and the metadata it points to.
    guard !bytes.isEmpty else { return 0 }
    let read: (UInt64, Int) -> [UInt8]? = { offset, count in
        guard count >= 0, count <= 1 << 20 else { return nil }
        let start = Int(offset % UInt64(bytes.count))
        return (0..<min(count, bytes.count)).map { bytes[(start + $0) % bytes.count] }
    }
    for format in ImageFormat.allCases {
        _ = FormatDetails.read(format, prefix: bytes, fileSize: UInt64(size) * 64, read: read)
    }
    return 0
}
