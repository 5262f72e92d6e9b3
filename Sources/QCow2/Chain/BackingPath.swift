/// Backing names resolved the way QEMU resolves them (block.c: `path_combine`, `path_has_protocol`).
public enum BackingPath {
    /// True for `nbd:…`, `json:{…}`, `file:…` and the like: a ':' before the first '/'. QEMU passes these to a
    /// protocol driver, so a reader reports them rather than opening a file of that name.
    public static func isProtocol(_ name: String) -> Bool {
        // The bytes in place: walking the UTF-8 view index by index cost ~400 instructions a name (callgrind).
        if let found = name.utf8.withContiguousStorageIfAvailable({ isProtocol(bytes: $0) }) { return found }
        return Array(name.utf8).withUnsafeBufferPointer { isProtocol(bytes: $0) }
    }

    private static func isProtocol(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        for c in bytes {
            if c == UInt8(ascii: ":") { return true }
            if c == UInt8(ascii: "/") || c == UInt8(ascii: "\\") { return false }
        }
        return false
    }

    /// Where QEMU looks for `name` when the image at `imagePath` names it: absolute as is, relative to the folder
    /// of the naming image (never the current directory). The result is the string qemu-img prints as
    /// full-backing-filename.
    public static func resolve(_ name: String, relativeTo imagePath: String) -> String {
        if name.hasPrefix("/") || isProtocol(name) { return name }
        // The folder's bytes in place (the UTF-8 view searched backwards index by index was slow, callgrind); a cut
        // just after an ASCII '/' leaves whole UTF-8 sequences, so decoding the prefix gives it back unchanged.
        let folder: String?? = imagePath.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.lastIndex(of: UInt8(ascii: "/")).map { String(decoding: UnsafeBufferPointer(rebasing: bytes[...$0]), as: UTF8.self) }
        }
        if let folder {
            guard let folder else { return name }
            return folder + name
        }
        guard let slash = imagePath.utf8.lastIndex(of: UInt8(ascii: "/")) else { return name }
        return String(imagePath[...slash]) + name
    }

    /// The last path component.
    public static func fileName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// The folder part, "." when there is none.
    public static func directory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }
}
