/// Why QEMU would refuse to open an image of a format other than qcow2: the file, the format, the header field and
/// the reason, in QEMU's words where it has some.
public struct FormatError: Swift.Error, CustomStringConvertible, Sendable, Equatable {
    /// The image.
    public var path: String
    /// Its format.
    public var format: ImageFormat
    /// The field (or structure) at fault.
    public var field: String
    /// Where it sits in the file, when known.
    public var offset: UInt64?
    /// What is wrong, and what QEMU says.
    public var reason: String

    /// Makes one.
    public init(path: String, format: ImageFormat, field: String, offset: UInt64? = nil, reason: String) {
        self.path = path
        self.format = format
        self.field = field
        self.offset = offset
        self.reason = reason
    }

    public var description: String {
        let at = offset.map { " at offset \($0)" } ?? ""
        return "\(path): invalid \(format.rawValue) image: \(field)\(at): \(reason)"
    }
}

/// Bytes of a file as QEMU's block layer returns them: zeros past the end of the file.
func readPadded(_ file: ImageFile, at offset: UInt64, count: Int, format: ImageFormat, field: String) throws(FormatError) -> [UInt8] {
    do {
        var b = try file.read(at: offset, count: count)
        if b.count < count { b += [UInt8](repeating: 0, count: count - b.count) }
        return b
    } catch {
        throw FormatError(path: file.path, format: format, field: field, offset: offset, reason: error.description)
    }
}
