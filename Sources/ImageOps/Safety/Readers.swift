import QCow2

import Glibc

/// Who reads what a change alters: the one place every change (offline and `--live`) and `who` ask. A file's
/// readers are the processes with a descriptor on it and QEMU's locks (`InUse`), and the kernel's holders, which have
/// no process: loop and nbd devices that serve it, device-mapper and md devices stacked on those, and their mounts
/// (`Readers+Devices.swift`). The images that read a layer through their backing link are searched for in
/// `Readers+Dependents.swift`, and that search never stops silently. A new kind of reader is one `Finding` case and
/// one search here, and every command gets it.
public struct Readers: Sendable, Equatable {
    /// A block device the kernel serves the file on, with what sits on top of it.
    public struct Device: Sendable, Equatable {
        /// What serves the file.
        public enum Kind: String, Sendable, Equatable {
            /// A loop device (`losetup`, `mount -o loop`).
            case loop
            /// A network block device a `qemu-nbd --connect` serves.
            case nbd
            /// A device-mapper table over such a device (`dmsetup`, LVM, cryptsetup, kpartx).
            case dm
            /// An md (software RAID) array over such a device (`mdadm --build`, as `mbr-wrap` prints).
            case md
            /// The image itself, a block device, mounted (the mount points say where).
            case block
        }

        /// The device node, `/dev/loop3`, `/dev/nbd0`, `/dev/dm-1`.
        public var device: String
        /// What it is.
        public var kind: Kind
        /// Where in the file the device starts (a loop device's offset); nil when not known or not a loop.
        public var offset: UInt64?
        /// True when the kernel was told to write nothing through it (`losetup -r`).
        public var readOnly: Bool
        /// The devices this one is built on, for a stacked one (`/dev/loop3` under a dm table).
        public var over: [String]
        /// Where it, or a partition of it, is mounted.
        public var mountPoints: [String]

        /// The device in words, for refusals and `who`.
        public var words: String {
            var s = "\(kind.rawValue) device \(device)"
            if !over.isEmpty { s += " (over \(over.joined(separator: ", ")))" }
            if let offset, offset > 0 { s += " at offset \(offset)" }
            if !mountPoints.isEmpty { s += ", mounted on " + mountPoints.joined(separator: ", ") }
            return s
        }
    }

    /// One thing that reads (or writes) the file. Cases are added here as readers are found to matter.
    public enum Finding: Sendable, Equatable {
        /// A process with a descriptor on it.
        case process(InUse.Holder)
        /// QEMU's lock bytes say someone holds it (the owner may be a process we cannot see).
        case lock(InUse.Lock)
        /// A block device the kernel serves it on.
        case device(Device)
    }

    /// The processes and QEMU's locks.
    public var use: InUse
    /// The kernel's devices over the file, each with what is stacked on it and mounted.
    public var devices: [Device]

    /// Every reader found, processes first.
    public var findings: [Finding] {
        use.holders.map(Finding.process) + (use.locked ? [.lock(use.lock)] : []) + devices.map(Finding.device)
    }

    /// True when changing the file now would race another reader: a process, a QEMU lock or a device.
    public var isHeld: Bool { use.isHeld || !devices.isEmpty }

    /// True when someone may write the file: QEMU's write permission, or a device the kernel may write through.
    /// A base with such a reader moves under a new overlay.
    public var isWritten: Bool { use.writeLocked || devices.contains { !$0.readOnly } }

    /// The readers by name (PIDs and command lines, devices and mounts), for refusals.
    public var who: String {
        var parts = use.holders.map { "PID \($0.pid) (\($0.commandLine))" }
        if use.holders.isEmpty && use.locked && devices.isEmpty { parts.append("a process imgtool cannot see") }
        parts += devices.map(\.words)
        return parts.joined(separator: ", ")
    }

    /// The writers only, for the refusal of a base someone writes.
    public var writers: String {
        var parts = use.writeLocked ? [use.holders.isEmpty ? "a process imgtool cannot see" : use.who] : []
        parts += devices.filter { !$0.readOnly }.map(\.words)
        return parts.joined(separator: ", ")
    }

    /// One line naming the readers and what QEMU's lock says, for refusals.
    public var summary: String {
        who + (use.locked ? "; \(use.holders.count + devices.count > 1 ? "a holder" : "it") is " + use.lock.words : "")
    }

    /// The readers of the file `file` has open (the very file checked, whatever its name names now). `quick`: see
    /// `InUse.check(_:quick:)` (the same readers, found without walking `/proc` when the kernel says nobody else
    /// has the file open).
    public static func of(_ file: ImageFile, quick: Bool = false) -> Readers {
        let use = InUse.check(file, quick: quick)
        var found = devices(over: FileKey(file.stat), pids: use.holders.map(\.pid))
        if file.stat.kind == .blockDevice { found += onTop(ofBlockDevice: "/proc/self/fd/\(file.rawDescriptor)").map { d in var d = d; if d.device.hasPrefix("/proc/self/fd/") { d.device = file.path }; return d } }
        return Readers(use: use, devices: found)
    }

    /// The readers of the file `path` names now. `quick` as for `of(_:quick:)`.
    public static func of(path: String, quick: Bool = false) -> Readers {
        let use = InUse.check(path, quick: quick)
        guard let id = FileIdentity.of(path: path) else { return Readers(use: use, devices: []) }
        return Readers(use: use, devices: devices(over: FileKey(id), pids: use.holders.map(\.pid)) + onTop(ofBlockDevice: path))
    }
}
