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
        case .json: report.json.printToStandardOutput()
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
        guard let p = report.table.partition(number), !p.extended else {
            let have = report.table.partitions.filter { !$0.extended }.map { String($0.number) }.joined(separator: ", ")
            throw ChangeError.refused(path: image, reason: "has no partition \(number)" + (have.isEmpty ? "" : " (it has \(have))"), hint: "imgtool partitions \(image)")
        }
        printOut(String(p.offset(report.table.sectorSize)))
        return 0
    }

    /// `imgtool who`: prints who holds `image`; 0 when nobody does, 2 when someone does.
    public static func who(_ image: String, output: Output) throws -> Int32 {
        guard FileIdentity.of(path: image) != nil else { throw ImageFile.Error.missing(path: image) }
        let use = InUse.check(image)
        // A QEMU holder's monitor: the QMP one when there is one (changes need it), else the human one.
        let qemus = use.holders.map { QemuProcess.inspect(pid: $0.pid) }
        let monitors = qemus.map { q in q.flatMap { $0.qmp ?? $0.monitors.first } }
        switch output {
        case .json:
            JSON.object([
                ("image", .string(image)),
                ("held", .bool(use.isHeld)),
                ("write-locked", .bool(use.writeLocked)),
                ("locked", .bool(use.locked)),
                ("holders", .array(zip(use.holders, monitors).map { h, m in
                    .object([("pid", .int(Int64(h.pid))), ("command-line", .string(h.commandLine)), ("monitor", m?.json ?? .null)])
                })),
            ]).printToStandardOutput()
        case .human:
            if !use.isHeld {
                printOut("\(image): no process holds it")
            } else {
                printOut("\(image): held" + (use.writeLocked ? " (QEMU's write lock is held)" : use.locked ? " (QEMU's read lock is held)" : ""))
                for (h, m) in zip(use.holders, monitors) {
                    printOut("  PID \(h.pid)  \(Terminal.safe(h.commandLine))")
                    if let m { printOut("    monitor: \(m.kind.rawValue) \(Terminal.safe(m.address.description)) (\(m.state.rawValue))") }
                }
                for case let q? in qemus {
                    if let d = q.libvirtDomain { printOut("  PID \(q.pid) is managed by libvirt (domain \(Terminal.safe(d))): change its disks with virsh") }
                }
            }
        }
        return use.isHeld ? 2 : 0
    }

    /// Recognises the plain forms of the reading commands (`imgtool chain IMAGE [--output json] [--max-depth N]`,
    /// `info`, `partitions`, `who`, `offset IMAGE N`) without ArgumentParser, whose reflection costs milliseconds of
    /// start-up on every run. Anything else — help, a typo, an option it does not know — returns nil and goes
    /// through the full parser, so usage errors keep its wording and exit 64.
    public static func fastPath(_ argv: [String]) -> (() throws -> Int32)? {
        guard argv.count >= 2, ["info", "chain", "partitions", "who", "offset"].contains(argv[0]) else { return nil }
        let command = argv[0]
        var positionals: [String] = []
        var output = Output.human
        var maxDepth = BackingChain.defaultMaxDepth
        var live = false
        var i = 1
        while i < argv.count {
            let a = argv[i]
            func value() -> String? {
                i += 1
                return i < argv.count ? argv[i] : nil
            }
            if command != "offset", a == "--output" || a.hasPrefix("--output=") {
                guard let v = a == "--output" ? value() : String(a.dropFirst(9)), let o = Output(rawValue: v) else { return nil }
                output = o
            } else if command == "chain", a == "--live", !live {
                live = true
            } else if command == "chain", a == "--max-depth" || a.hasPrefix("--max-depth=") {
                guard let v = a == "--max-depth" ? value() : String(a.dropFirst(12)), let n = Int(v), n >= 1 else { return nil }
                maxDepth = n
            } else if a.hasPrefix("-") {
                return nil
            } else {
                positionals.append(a)
            }
            i += 1
        }
        switch (command, positionals.count) {
        case ("offset", 2):
            guard let number = Int(positionals[1]) else { return nil }
            return { try offset(positionals[0], number: number) }
        case ("info", 1): return { try info(positionals[0], output: output) }
        case ("chain", 1) where live:
            return { try LiveCommands.chain(positionals[0], output: output == .json ? .json : .human) }
        case ("chain", 1): return { try chain(positionals[0], maxDepth: maxDepth, output: output) }
        case ("partitions", 1): return { try partitions(positionals[0], output: output) }
        case ("who", 1): return { try who(positionals[0], output: output) }
        default: return nil
        }
    }
}
