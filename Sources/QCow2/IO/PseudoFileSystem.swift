#if os(Linux)
import CLinux
#endif

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
}
