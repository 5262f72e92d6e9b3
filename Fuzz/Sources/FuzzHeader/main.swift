import QCow2

/// qcow2 header and extensions, and the format probe, on arbitrary bytes: no trap, no hang, no huge allocation.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = ImageFormat.probe(bytes, fileSize: UInt64(size))
    // The header parser with the input as the whole file: `more` serves further bytes from it.
    _ = try? QCow2Header.parseForFuzzing(bytes)
    return 0
}
