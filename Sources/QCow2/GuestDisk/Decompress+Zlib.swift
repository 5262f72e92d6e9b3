import CZlib

extension Decompress {
    /// zlib data (with its header), as `uncompress` reads it for VMDK grains: the stream must end within
    /// `outputSize` bytes; what came out is returned (it may be shorter). Nil on corrupt or overlong data.
    static func zlib(_ input: [UInt8], outputSize: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: outputSize)
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
        defer { inflateEnd(&stream) }
        var input = input
        let ret: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
            out.withUnsafeMutableBufferPointer { outBuf in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = UInt32(inBuf.count)
                stream.next_out = outBuf.baseAddress
                stream.avail_out = UInt32(outBuf.count)
                return inflate(&stream, Z_FINISH)
            }
        }
        guard ret == Z_STREAM_END else { return nil }
        out.removeSubrange(Int(stream.total_out)...)
        return out
    }
}
