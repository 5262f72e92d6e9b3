#if os(Linux)
import CLinux
#endif
import Glibc

/// The kernel's pseudo file systems (procfs, sysfs and their kin), told by `statfs`: their files are interfaces, not
/// data, so an image path or a backing name that leads into one is refused before it is opened.
package enum PseudoFileSystem {
    /// The name for a magic number (`f_type`). A switch, not a dictionary literal: building a `[Int: String]` makes
    /// the runtime instantiate its metadata and search the static binary's every conformance record, about a
    /// quarter of `imgtool info`'s instructions (callgrind), for eleven constants.
    static func name(_ magic: Int) -> String? {
        switch magic {
        case 0x9FA0: return "procfs"
        case 0x6265_6572: return "sysfs"
        case 0x6462_6720: return "debugfs"
        case 0x7472_6163: return "tracefs"
        case 0x7363_6673: return "securityfs"
        case 0x6265_6570: return "configfs"
        case 0x0027_E0EB: return "cgroupfs"
        case 0x6367_7270: return "cgroup2fs"
        case 0xCAFE_4A11: return "bpffs"
        case 0xDE5E_81E4: return "efivarfs"
        case 0x6165_676C: return "pstore"
        default: return nil
        }
    }

    /// False when a file on `device` (an `st_dev`) cannot be on one of them: these file systems are all mounted on
    /// anonymous devices (major number 0), so a file on a disk's file system (ext4, xfs on a block device) needs no
    /// `statfs`. A chain's every layer asked twice was 1,000 of `chain`'s 3,500 syscalls at depth 500.
    package static func mayHold(device: UInt64) -> Bool {
        // Linux's dev_t: the major number is bits 8-19 and 32-43 (glibc's `gnu_dev_major`).
        let major = ((device >> 8) & 0xFFF) | ((device >> 32) & ~UInt64(0xFFF))
        return major == 0
    }

    /// The pseudo file system `path` lies on, nil for any other (or when statfs fails: open decides then).
    package static func of(path: String) -> String? {
        #if os(Linux)
        var s = statfs()
        guard path.withPathCString({ statfs($0, &s) }) == 0 else { return nil }
        return name(Int(s.f_type))
        #else
        return nil
        #endif
    }

    /// The same for an open descriptor.
    static func of(fd: Int32) -> String? {
        #if os(Linux)
        var s = statfs()
        guard fstatfs(fd, &s) == 0 else { return nil }
        return name(Int(s.f_type))
        #else
        return nil
        #endif
    }

    /// `of(path:)` for a file `stat` put on `device`: the file system's type is a fact of the mounted file system,
    /// so once an open descriptor on that device has told it (`of(fd:device:)`) no further `statfs` is made. A scan
    /// of 100,000 images on one file system made 200,000 `statfs`/`fstatfs` calls before.
    package static func of(path: String, device: UInt64) -> String? {
        if let magic = DeviceFacts.magic(device) { return name(magic) }
        return of(path: path)
    }

    /// `of(fd:)` for a descriptor `fstat` put on `device`, remembered for that device. Only a descriptor's answer is
    /// kept: the descriptor and its `fstat` name the same file, where a path may change between two calls.
    static func of(fd: Int32, device: UInt64) -> String? {
        if let magic = DeviceFacts.magic(device) { return name(magic) }
        #if os(Linux)
        var s = statfs()
        guard fstatfs(fd, &s) == 0 else { return nil }
        DeviceFacts.remember(device, magic: Int(s.f_type))
        return name(Int(s.f_type))
        #else
        return nil
        #endif
    }
}

/// File system types by device number (`st_dev`), for the life of the process: a fixed table behind a mutex, read by
/// every reader thread of a scan. No dictionary: the first instantiation of a generic type searches the static
/// binary's conformance records (~250 K instructions, see `PseudoFileSystem.name`).
enum DeviceFacts {
    static let slots = 64
    /// Pairs of (device + 1, magic): 0 marks a free slot (device 0 exists).
    nonisolated(unsafe) static let table: UnsafeMutablePointer<UInt64> = {
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: slots * 2)
        p.initialize(repeating: 0, count: slots * 2)
        return p
    }()
    nonisolated(unsafe) static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let p = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        p.initialize(to: pthread_mutex_t())
        pthread_mutex_init(p, nil)
        return p
    }()

    /// The file system type remembered for `device`.
    static func magic(_ device: UInt64) -> Int? {
        let tag = device &+ 1
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        for i in 0..<slots {
            let t = table[2 * i]
            if t == 0 { return nil }
            if t == tag { return Int(truncatingIfNeeded: table[2 * i + 1]) }
        }
        return nil
    }

    /// Remembers `magic` for `device`; a full table just stops remembering (every call then asks the kernel).
    static func remember(_ device: UInt64, magic: Int) {
        let tag = device &+ 1
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        for i in 0..<slots {
            if table[2 * i] == tag { return }
            if table[2 * i] == 0 {
                table[2 * i + 1] = UInt64(truncatingIfNeeded: magic)
                table[2 * i] = tag
                return
            }
        }
    }
}
