import CZlib

extension Decompress {
    /// zlib data (with its header), as `uncompress` reads it for VMDK grains: the stream must end within
    /// `outputSize` bytes; what came out is returned (it may be shorter). Nil on corrupt or overlong data.
    static func zlib(_ input: [UInt8], outputSize: Int) -> [UInt8]? {
        guard var (out, ret, left) = inflate(input, outputSize: outputSize, windowBits: 15), ret == Z_STREAM_END else { return nil }
        out.removeLast(left)
        return out
    }
}
