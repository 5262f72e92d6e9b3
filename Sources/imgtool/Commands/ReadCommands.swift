import ImageOps
import QCow2

/// The reading commands' work, shared by the ArgumentParser commands and the start-up fast path, so both print the
/// same bytes and return the same exit code.
public enum ReadCommands {
    /// Output styles of the reading commands.
    public enum Output: String, Sendable, CaseIterable {
        case human, json
    }

    /// `imgtool info`: prints the image; throws when it cannot be read.
    public static func info(_ image: String, output: Output) throws(ImageInfo.Error) -> Int32 {
        let info = try ImageInfo.read(image)
        switch output {
        case .json: info.json.printToStandardOutput()
        case .human: printOut(ImageReport.human(info))
        }
        return 0
    }

    /// `imgtool chain`: prints the chain; 0 healthy, 2 with problems; throws when the top cannot be read.
    public static func chain(_ image: String, maxDepth: Int, output: Output) throws(ImageInfo.Error) -> Int32 {
        let chain = try BackingChain.follow(image, maxDepth: maxDepth)
        let report = ChainReport(image: image, chain: chain)
        switch output {
        case .json: report.printJSON()
        case .human: printOut(report.human(style: .forStandardOutput()))
        }
        return chain.isHealthy ? 0 : 2
    }

    /// `imgtool partitions`: prints the guest's partition table; throws when the image or its table cannot be read.
    public static func partitions(_ image: String, output: Output) throws -> Int32 {
        let report = try PartitionReport.read(image)
        switch output {
        case .json: report.json.printToStandardOutput()
        case .human: printOut(report.human(style: .forStandardOutput()))
        }
        return 0
    }

    /// `imgtool offset`: prints partition `number`'s byte offset; a missing partition is refused (exit 1).
    public static func offset(_ image: String, number: Int) throws -> Int32 {
        let report = try PartitionReport.read(image)
        printOut(String(try report.offset(of: number)))
        return 0
    }

    /// `imgtool who`: prints who holds `image`; 0 when nobody does, 2 when someone does.
    public static func who(_ image: String, output: Output) throws -> Int32 {
        guard FileIdentity.of(path: image) != nil else { throw ImageFile.Error.missing(path: image) }
        let readers = Readers.of(path: image)
        let use = readers.use
        // A QEMU holder's monitor: the QMP one when there is one (changes need it), else the human one.
        let qemus = use.holders.map { QemuProcess.inspect(pid: $0.pid) }
        let monitors = qemus.map { q in q.flatMap { $0.qmp ?? $0.monitors.first } }
        switch output {
        case .json:
            JSON.object([
                ("image", .string(image)),
                ("held", .bool(readers.isHeld)),
                ("write-locked", .bool(use.writeLocked)),
                ("locked", .bool(use.locked)),
                ("holders", .array(zip(use.holders, monitors).map { h, m in
                    .object([("pid", .int(Int64(h.pid))), ("command-line", .string(h.commandLine)), ("monitor", m?.json ?? .null),
                             ("monitors", .array((qemus.first { $0?.pid == h.pid } ?? nil)?.monitors.map(\.json) ?? []))])
                })),
                ("devices", .array(readers.devices.map { d in
                    .object([("device", .string(d.device)), ("kind", .string(d.kind.rawValue)),
                             ("offset", d.offset.map { .int(Int64(clamping: $0)) } ?? .null), ("read-only", .bool(d.readOnly)),
                             ("over", .array(d.over.map(JSON.string))), ("mount-points", .array(d.mountPoints.map(JSON.string)))])
                })),
            ]).printToStandardOutput()
        case .human:
            if !readers.isHeld {
                printOut("\(Untrusted.shown(image)): no process or device holds it")
            } else {
                // Writing (byte 101) and protecting (201 alone) both forbid a change; only writing moves the content.
                printOut("\(Untrusted.shown(image)): held" + (use.locked ? "; a holder is " + use.lock.words : ""))
                for (h, m) in zip(use.holders, monitors) {
                    printOut("  PID \(h.pid)  \(Untrusted.shown(h.commandLine))")
                    // Every monitor: with qemu-init's two ports, the second is the way in while the first is busy.
                    let all = (qemus.first { $0?.pid == h.pid } ?? nil)?.monitors ?? []
                    for m in all.isEmpty ? (m.map { [$0] } ?? []) : all {
                        printOut("    monitor: \(m.kind.rawValue) \(Untrusted.shown(m.address.description)) (\(m.state.rawValue))")
                    }
                }
                for d in readers.devices {
                    printOut("  \(d.kind.rawValue) device \(Untrusted.shown(d.device))" + (d.over.isEmpty ? "" : " over \(d.over.map(Untrusted.shown).joined(separator: ", "))")
                             + (d.offset.map { $0 > 0 ? " at offset \($0)" : "" } ?? "") + (d.readOnly ? " (read-only)" : ""))
                    for m in d.mountPoints { printOut("    mounted on \(Untrusted.shown(m))") }
                }
                if use.holders.isEmpty && use.locked { printOut("  (the lock's owner is a process imgtool cannot see)") }
                for case let q? in qemus {
                    if let d = q.libvirtDomain { printOut("  PID \(q.pid) is managed by libvirt (domain \(Untrusted.shown(d))): change its disks with virsh") }
                }
            }
        }
        return readers.isHeld ? 2 : 0
    }
}
