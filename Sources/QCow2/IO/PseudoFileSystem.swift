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
