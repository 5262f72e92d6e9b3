#if os(Linux)
import CLinux
#endif

/// The kernel's pseudo file systems (procfs, sysfs and their kin), told by `statfs`: their files are interfaces, not
/// data, so an image path or a backing name that leads into one is refused before it is opened.
package enum PseudoFileSystem {
    /// Magic numbers (`f_type`) and names.
    static let names: [Int: String] = [
        0x9FA0: "procfs", 0x6265_6572: "sysfs", 0x6462_6720: "debugfs", 0x7472_6163: "tracefs",
        0x7363_6673: "securityfs", 0x6265_6570: "configfs", 0x0027_E0EB: "cgroupfs", 0x6367_7270: "cgroup2fs",
        0xCAFE_4A11: "bpffs", 0xDE5E_81E4: "efivarfs", 0x6165_676C: "pstore",
    ]

    /// The pseudo file system `path` lies on, nil for any other (or when statfs fails: open decides then).
    package static func of(path: String) -> String? {
        #if os(Linux)
        var s = statfs()
        guard statfs(path, &s) == 0 else { return nil }
        return names[Int(s.f_type)]
        #else
        return nil
        #endif
    }

    /// The same for an open descriptor.
    static func of(fd: Int32) -> String? {
        #if os(Linux)
        var s = statfs()
        guard fstatfs(fd, &s) == 0 else { return nil }
        return names[Int(s.f_type)]
        #else
        return nil
        #endif
    }
}
