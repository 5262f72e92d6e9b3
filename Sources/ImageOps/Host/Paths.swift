import QCow2

import Glibc

/// Path arithmetic for writing backing names: absolute forms and a name relative to an overlay's folder.
public enum Paths {
    /// `path` made absolute against the current folder and with its folders' symlinks resolved, without
    /// requiring the last component to exist.
    public static func absolute(_ path: String) -> String {
        let dir = BackingPath.directory(path)
        let name = BackingPath.fileName(path)
        if let d = Sys.realpath(dir) {
            return d == "/" ? "/" + name : d + "/" + name
        }
        if path.hasPrefix("/") { return path }
        return Directory.current() + "/" + path
    }

    /// The name of `target` as seen from folder `fromDir` (both absolute), climbing with `..` where needed.
    public static func relative(_ target: String, from fromDir: String) -> String {
        let t = target.split(separator: "/").map(String.init)
        let f = fromDir.split(separator: "/").map(String.init)
        var common = 0
        // Compared as bytes: String's == calls two spellings of "é" (NFC, NFD) equal, and they are two folders.
        while common < min(t.count - 1, f.count), t[common].utf8.elementsEqual(f[common].utf8) { common += 1 }
        let ups = Array(repeating: "..", count: f.count - common)
        return (ups + t[common...]).joined(separator: "/")
    }
}
