import QCow2

import Glibc

/// The regular files a process has open, by device and inode, with the name the kernel gives each today. A file
/// QEMU opened and someone then moved keeps its inode; `/proc/PID/fd/N` names its new place.
struct OpenFiles {
    /// Open file → its current path.
    let byKey: [FileKey: String]
    /// Open file → how many descriptors the process holds of it (QEMU opens a file once per node that reads it).
    let descriptors: [FileKey: Int]

    init(pid: Int32) {
        var map: [FileKey: String] = [:]
        var counts: [FileKey: Int] = [:]
        if let d = opendir("/proc/\(pid)/fd") {
            while let ent = readdir(d) {
                let name = Directory.name(ent)
                guard Int(name) != nil else { continue }
                let link = "/proc/\(pid)/fd/\(name)"
                var st = stat()
                guard Sys.stat(link, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFBLK else { continue }
                let path = Sys.readlink(link).flatMap { $0.isEmpty ? nil : $0 } ?? link
                // Anonymous memory (memfd) is no image.
                if path.hasPrefix("/memfd:") { continue }
                let key = FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino))
                map[key] = path
                counts[key, default: 0] += 1
            }
            closedir(d)
        }
        byKey = map
        descriptors = counts
    }

    /// True when process `pid` has the file `key` open. Only `stat`s, and only until the file is found: a process
    /// with thousands of descriptors (a qemu-img on a many-extent VMDK had 2,800) costs half the calls of reading
    /// every name, and none after the match.
    static func has(pid: Int32, _ key: FileKey) -> Bool {
        guard let d = opendir("/proc/\(pid)/fd") else { return false }
        defer { closedir(d) }
        while let ent = readdir(d) {
            let name = Directory.name(ent)
            guard Int(name) != nil else { continue }
            var st = stat()
            guard stat("/proc/\(pid)/fd/\(name)", &st) == 0 else { continue }
            if FileKey(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino)) == key { return true }
        }
        return false
    }

    /// Layers whose recorded path no longer leads to an open file are paired with the open files no layer claimed:
    /// the one file left, or the one whose format and virtual size match the node's.
    func pairMoved(_ devices: inout [LiveDevice], sizes: [String: UInt64?]) {
        var claimed = Set(devices.flatMap { $0.layers.compactMap(\.key) })
        for d in devices.indices {
            for l in devices[d].layers.indices where devices[d].layers[l].key == nil {
                let layer = devices[d].layers[l]
                let free = byKey.filter { !claimed.contains($0.key) }
                var pick: (key: FileKey, value: String)?
                let fits = free.filter { candidate in
                    guard let info = try? ImageInfo.read(candidate.value) else { return false }
                    let size = sizes[layer.nodeName] ?? nil
                    return info.format.rawValue == layer.driver && (size == nil || info.virtualSize == size)
                }
                // A file renamed in place keeps its last name part more often than not: that breaks a tie.
                let base = layer.filename.split(separator: "/").last.map(String.init) ?? layer.filename
                let sameName = fits.filter { $0.value.split(separator: "/").last.map(String.init) == base }
                if fits.count == 1 { pick = fits.first } else if sameName.count == 1 { pick = sameName.first } else if free.count == 1 { pick = free.first }
                guard let pick else { continue }
                devices[d].layers[l].key = pick.key
                devices[d].layers[l].currentPath = pick.value
                claimed.insert(pick.key)
            }
        }
    }
}
