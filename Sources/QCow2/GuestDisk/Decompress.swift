import CZlib
import CZstd

/// Decompression of qcow2 clusters through the system's zlib and libzstd.
enum Decompress {
    /// Raw deflate (no zlib header), as qcow2 writes it, until `outputSize` bytes come out. Nil on corrupt data.
    static func deflate(_ input: [UInt8], outputSize: Int) -> [UInt8]? {
        // -12: raw deflate with a 4 KiB window, as QEMU uses.
        guard let (out, ret, left) = inflate(input, outputSize: outputSize, windowBits: -12) else { return nil }
        // QEMU accepts Z_BUF_ERROR when the output is full: compressed data may be followed by padding.
        guard ret == Z_STREAM_END || ((ret == Z_BUF_ERROR || ret == Z_OK) && left == 0) else { return nil }
        return out
    }

    /// One `inflate(Z_FINISH)` of `input` into `outputSize` bytes with the given window (negative: raw deflate,
    /// 15: a zlib header). Returns the output, zlib's answer and the output bytes left unfilled; nil when zlib cannot
    /// start or a size does not fit zlib's 32-bit counters (callers bound them far below; this never traps).
    static func inflate(_ input: [UInt8], outputSize: Int, windowBits: Int32) -> (out: [UInt8], ret: Int32, left: Int)? {
        guard outputSize >= 0, let inCount = UInt32(exactly: input.count), let outCount = UInt32(exactly: outputSize) else { return nil }
        var out = [UInt8](repeating: 0, count: outputSize)
        var stream = z_stream()
        guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var input = input
        let ret: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
            out.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = inCount
                stream.next_out = outBuf.baseAddress
                stream.avail_out = outCount
                return CZlib.inflate(&stream, Z_FINISH)
            }
        }
        return (out, ret, Int(stream.avail_out))
    }

    /// A zstd stream, until `outputSize` bytes come out (the compressed size is rounded up to sectors, so trailing
    /// bytes are not part of the frame). Nil on corrupt data.
    static func zstd(_ input: [UInt8], outputSize: Int) -> [UInt8]? {
        guard let ctx = ZSTD_createDStream() else { return nil }
        defer { ZSTD_freeDStream(ctx) }
        var out = [UInt8](repeating: 0, count: outputSize)
        let ok: Bool = input.withUnsafeBytes { inRaw in
            out.withUnsafeMutableBytes { outRaw in
                var inBuf = ZSTD_inBuffer(src: inRaw.baseAddress, size: inRaw.count, pos: 0)
                var outBuf = ZSTD_outBuffer(dst: outRaw.baseAddress, size: outRaw.count, pos: 0)
                // Each call makes progress or fails; the bound keeps a hostile stream from spinning.
                for _ in 0..<(inRaw.count + outRaw.count + 16) {
                    let r = ZSTD_decompressStream(ctx, &outBuf, &inBuf)
                    if ZSTD_isError(r) != 0 { return false }
                    if outBuf.pos == outBuf.size { return true }
                    if r == 0 || inBuf.pos == inBuf.size { return false }
                }
                return false
            }
        }
        return ok ? out : nil
    }
}
