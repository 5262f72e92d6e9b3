import QCow2

import Glibc

/// The kernel's holders, which no process shows: an image attached to a loop device (mounted with the
/// `mount -o loop,offset=…` line `partitions` prints, or joined by `mbr-wrap`'s `losetup`/`mdadm` lines) is read and
/// written by the kernel alone, so `/proc/*/fd` never names it.
extension Readers {
    /// Where the kernel's state is read from: the real `/sys`, `/dev` and mount table, or a made-up tree in tests.
    package struct Kernel: Sendable {
        /// sysfs.
        package var sys = "/sys"
        /// The device nodes.
        package var dev = "/dev"
        /// Our mount table.
        package var mountinfo = "/proc/self/mountinfo"
        /// The real kernel.
        package init() {}
    }

    /// How many devices may stack on one another (dm on dm on md …) before the search stops following: far more
    /// than any real stack, and a bound on a made-up loop in sysfs.
    static let stackDepth = 16

    /// The loop and nbd devices that serve the file `key`, each with the dm and md devices on top and the mounts of
    /// them all. `pids` are the processes holding the file: a `qemu-nbd` among them names its `/dev/nbdN`.
    package static func devices(over key: FileKey, pids: [Int32], kernel: Kernel = Kernel()) -> [Device] {
        // The mount table is read only once a device over the file is found: it names where such a device is
        // mounted and nothing else, and parsing it was most of this search when there is none (`perf record`).
        var table: [String: [String]]?
        func mounts() -> [String: [String]] {
            if let table { return table }
            let read = Mounts.read(kernel.mountinfo)
            table = read
            return read
        }
        let blocks = names(in: kernel.sys + "/block")
        var found: [Device] = []
        // Every loop device is asked, as `loopDevices` asks them; only those serving this file are stacked.
        for name in blocks where name.hasPrefix("loop") {
            guard let loop = LoopStatus.read(name, kernel: kernel), loop.key == key else { continue }
            found += stack(Device(device: kernel.dev + "/" + name, kind: .loop, offset: loop.offset, readOnly: loop.readOnly, over: [], mountPoints: []),
                           name: name, kernel: kernel, mounts: mounts())
        }
        for name in blocks where name.hasPrefix("nbd") && nbdServer(name, kernel: kernel).map(pids.contains) == true {
            found += stack(Device(device: kernel.dev + "/" + name, kind: .nbd, offset: nil, readOnly: readFlag(kernel.sys + "/block/\(name)/ro"), over: [], mountPoints: []),
                           name: name, kernel: kernel, mounts: mounts())
        }
        // A qemu-nbd whose device sysfs does not tie to it (an older kernel has no `pid` file): its command line names it.
        for pid in pids {
            for node in nbdDevices(commandLine: InUse.commandLineArguments(pid)) where !found.contains(where: { $0.device == node }) {
                let name = BackingPath.fileName(node)
                guard FileIdentity.of(path: kernel.sys + "/block/" + name) != nil else { continue }
                found += stack(Device(device: node, kind: .nbd, offset: nil, readOnly: readFlag(kernel.sys + "/block/\(name)/ro"), over: [], mountPoints: []),
                               name: name, kernel: kernel, mounts: mounts())
            }
        }
        return found
    }

    /// Every loop device with a file attached, by that file's device and inode, each with what is stacked on it:
    /// read once for a whole store (`scan`) as for one image.
    package static func loopDevices(kernel: Kernel = Kernel(), mounts: [String: [String]]? = nil) -> [FileKey: [Device]] {
        let mounts = mounts ?? Mounts.read(kernel.mountinfo)
        var out: [FileKey: [Device]] = [:]
        for name in names(in: kernel.sys + "/block") where name.hasPrefix("loop") {
            guard let loop = LoopStatus.read(name, kernel: kernel) else { continue }
            out[loop.key, default: []] += stack(Device(device: kernel.dev + "/" + name, kind: .loop, offset: loop.offset, readOnly: loop.readOnly, over: [], mountPoints: []),
                                                name: name, kernel: kernel, mounts: mounts)
        }
        return out
    }

    /// For an image that is itself a block device (`/dev/vdb`, `/dev/loop3`, an LV): where it or a partition of
    /// it is mounted, and the dm and md devices on top of it. Empty for anything else.
    package static func onTop(ofBlockDevice path: String, kernel: Kernel = Kernel()) -> [Device] {
        var st = stat()
        guard Sys.stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK else { return [] }
        let rdev = UInt64(truncatingIfNeeded: st.st_rdev)
        guard let target = Sys.readlink(kernel.sys + "/dev/block/\(LoopStatus.major(rdev)):\(LoopStatus.minor(rdev))"), !target.isEmpty else { return [] }
        let name = BackingPath.fileName(target)
        var found = stack(Device(device: path, kind: .block, offset: nil, readOnly: readFlag(kernel.sys + "/class/block/\(name)/ro"), over: [], mountPoints: []),
                          name: name, kernel: kernel, mounts: Mounts.read(kernel.mountinfo))
        // The device itself is the image: it counts only where it is mounted.
        if found.first?.mountPoints.isEmpty == true { found.removeFirst() }
        return found
    }

    /// `base` (named `name` in sysfs) with its mounts, then every device stacked on it or on one of its partitions,
    /// depth first, each with its own mounts.
    static func stack(_ base: Device, name: String, kernel: Kernel, mounts: [String: [String]]) -> [Device] {
        var out: [Device] = []
        var seen: Set<String> = []
        func visit(_ device: Device, _ name: String, depth: Int) {
            guard seen.insert(name).inserted else { return }
            var d = device
            let parts = [name] + partitions(of: name, kernel: kernel)
            for p in parts { d.mountPoints += mounts[devNumber(p, kernel: kernel) ?? "-"] ?? [] }
            out.append(d)
            guard depth < stackDepth else { return }
            for p in parts {
                for holder in names(in: kernel.sys + "/class/block/\(p)/holders") {
                    let kind: Device.Kind = holder.hasPrefix("md") ? .md : .dm
                    var node = kernel.dev + "/" + holder
                    if kind == .dm, let mapped = readLine(kernel.sys + "/class/block/\(holder)/dm/name"), !mapped.isEmpty, !mapped.contains("/") {
                        node = kernel.dev + "/mapper/" + mapped
                    }
                    visit(Device(device: node, kind: kind, offset: nil, readOnly: readFlag(kernel.sys + "/class/block/\(holder)/ro") || d.readOnly,
                                 over: [kernel.dev + "/" + p], mountPoints: []), holder, depth: depth + 1)
                }
            }
        }
        visit(base, name, depth: 0)
        return out
    }

    /// The partitions the kernel made of block device `name` (`loop0p1`, with `losetup -P`).
    static func partitions(of name: String, kernel: Kernel) -> [String] {
        names(in: kernel.sys + "/block/" + name).filter { FileIdentity.of(path: kernel.sys + "/block/\(name)/\($0)/partition") != nil }
    }

    /// `major:minor` of block device `name`, as the mount table writes it.
    static func devNumber(_ name: String, kernel: Kernel) -> String? {
        readLine(kernel.sys + "/class/block/\(name)/dev")
    }

    /// The PID the kernel says serves nbd device `name`.
    static func nbdServer(_ name: String, kernel: Kernel) -> Int32? {
        readLine(kernel.sys + "/block/\(name)/pid").flatMap { Int32($0) }
    }

    /// The `/dev/nbdN` a `qemu-nbd` command line connects (`-c DEV`, `-cDEV`, `--connect DEV`, `--connect=DEV`).
    package static func nbdDevices(commandLine args: [String]) -> [String] {
        guard let first = args.first, BackingPath.fileName(first).hasPrefix("qemu-nbd") else { return [] }
        var out: [String] = []
        var i = 1
        while i < args.count {
            let a = args[i]
            if a == "-c" || a == "--connect", i + 1 < args.count { out.append(args[i + 1]); i += 2; continue }
            if a.hasPrefix("--connect=") { out.append(String(a.dropFirst("--connect=".count))) }
            else if a.hasPrefix("-c"), a.count > 2, !a.hasPrefix("--") { out.append(String(a.dropFirst(2))) }
            i += 1
        }
        return out.filter { $0.hasPrefix("/dev/nbd") && !$0.dropFirst(5).contains("/") }
    }

    /// The entries of a folder but `.` and `..`, sorted; none when it cannot be read.
    static func names(in folder: String) -> [String] {
        guard let d = Sys.opendir(folder) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let ent = readdir(d) {
            let n = Directory.name(ent)
            if n != "." && n != ".." { out.append(n) }
        }
        return out.sorted()
    }

    /// The first line of a small kernel file, without its newline.
    static func readLine(_ path: String) -> String? {
        guard let file = try? ImageFile.open(path, kernelFile: true), let bytes = try? file.read(at: 0, count: 4096) else { return nil }
        return String(pathBytes: bytes.prefix { $0 != 10 && $0 != 0 })
    }

    static func readFlag(_ path: String) -> Bool { readLine(path) == "1" }
}

/// What the kernel says of one loop device.
struct LoopStatus {
    /// The file it serves, by device and inode.
    var key: FileKey
    /// Where in the file the device starts.
    var offset: UInt64
    /// Attached read-only.
    var readOnly: Bool

    /// LOOP_GET_STATUS64 and the size of `struct loop_info64` (linux/loop.h).
    static let getStatus64: UInt = 0x4C05
    static let infoSize = 232
    static let flagReadOnly: UInt32 = 1

    /// The status of `/dev/NAME`, asked of the device itself: the backing file's device and inode, exactly, where
    /// sysfs's `backing_file` is only a name (stale once the file is renamed or deleted). A device without a node
    /// falls back on that name, checked by device and inode too. Nil for a loop device with no file attached.
    static func read(_ name: String, kernel: Readers.Kernel) -> LoopStatus? {
        let sys = kernel.sys + "/block/" + name
        guard FileIdentity.of(path: sys + "/loop") != nil else { return nil }
        if let s = ask(kernel.dev + "/" + name, expected: Readers.readLine(sys + "/dev")) { return s }
        guard var file = Readers.readLine(sys + "/loop/backing_file"), !file.isEmpty else { return nil }
        if file.hasSuffix(" (deleted)") { file.removeLast(" (deleted)".count) }
        guard let id = FileIdentity.of(path: file) else { return nil }
        let offset = Readers.readLine(sys + "/loop/offset").flatMap { UInt64($0) } ?? 0
        return LoopStatus(key: FileKey(id), offset: offset, readOnly: Readers.readFlag(sys + "/ro"))
    }

    /// LOOP_GET_STATUS64 on the node `node`, when it is the block device `expected` (`major:minor`) names.
    static func ask(_ node: String, expected: String?) -> LoopStatus? {
        let fd = Sys.open(node, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFBLK else { return nil }
        // A stale node in /dev may be another device than sysfs's: only the device sysfs names is asked.
        let rdev = UInt64(truncatingIfNeeded: st.st_rdev)
        guard let expected, expected == "\(major(rdev)):\(minor(rdev))" else { return nil }
        var info = [UInt8](repeating: 0, count: infoSize)
        let rc = info.withUnsafeMutableBytes { buf -> Int32 in
            guard let base = buf.baseAddress else { return -1 }
            return ioctl(fd, getStatus64, base)
        }
        guard rc == 0 else { return nil }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(info[at + $1]) << (8 * UInt64($1)) } }
        let flags = UInt32(truncatingIfNeeded: (0..<4).reduce(UInt64(0)) { $0 | UInt64(info[52 + $1]) << (8 * UInt64($1)) })
        return LoopStatus(key: FileKey(device: u64(0), inode: u64(8)), offset: u64(24), readOnly: flags & flagReadOnly != 0)
    }

    static func major(_ dev: UInt64) -> UInt64 { ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff) }
    static func minor(_ dev: UInt64) -> UInt64 { ((dev >> 12) & 0xffff_ff00) | (dev & 0xff) }
}

/// The mount table: mount points by the `major:minor` of what is mounted.
enum Mounts {
    /// Reads `/proc/self/mountinfo` (or the file given). Mount points are unescaped (`\040` is a space).
    static func read(_ path: String) -> [String: [String]] {
        guard let file = try? ImageFile.open(path, kernelFile: true) else { return [:] }
        var bytes: [UInt8] = []
        // The table is generated as it is read: read until a short read, bounded so a huge table cannot exhaust memory.
        while bytes.count < 64 << 20, let chunk = try? file.read(at: UInt64(bytes.count), count: 1 << 16), !chunk.isEmpty {
            bytes += chunk
        }
        var out: [String: [String]] = [:]
        for line in bytes.split(separator: 10) {
            let fields = line.split(separator: 32, omittingEmptySubsequences: false)
            guard fields.count > 4 else { continue }
            out[String(decoding: fields[2], as: UTF8.self), default: []].append(unescape(fields[4]))
        }
        return out
    }

    static func unescape(_ field: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        var i = field.startIndex
        while i < field.endIndex {
            if field[i] == 92, i + 3 < field.endIndex, field[(i + 1)...(i + 3)].allSatisfy({ $0 >= 48 && $0 <= 55 }) {
                out.append(field[(i + 1)...(i + 3)].reduce(UInt8(0)) { $0 &* 8 &+ ($1 - 48) })
                i += 4
            } else {
                out.append(field[i]); i += 1
            }
        }
        return String(pathBytes: out)
    }
}
