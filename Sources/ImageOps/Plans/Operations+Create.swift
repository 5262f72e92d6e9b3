import QCow2

extension Operations {
    /// `imgtool create IMAGE SIZE [--format]`.
    public static func create(_ image: String, size: UInt64, format: String, dryRun: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        guard format == "qcow2" || format == "raw" else {
            throw .refused(path: image, reason: "format \(format) is not offered (qcow2 or raw)", hint: nil)
        }
        try reserve(image, &plan)
        plan.commands = [.create(image: QemuImgCommand.heldImage, format: format, size: size, backing: nil, backingFormat: nil)]
        plan.show = [image]
        return plan
    }

    /// The default overlay name: BASE with its extension replaced by `.cow`, beside BASE.
    public static func defaultOverlay(for base: String) -> String {
        let dir = BackingPath.directory(base)
        var name = BackingPath.fileName(base)
        if let dot = name.lastIndex(of: "."), dot != name.startIndex { name = String(name[..<dot]) }
        let file = name + ".cow"
        return base.contains("/") ? (dir == "/" ? "/" : dir + "/") + file : file
    }

    /// `imgtool overlay BASE [OVERLAY] [--absolute]`.
    public static func overlay(base: String, overlay: String?, absolute: Bool, dryRun: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        let target = overlay ?? defaultOverlay(for: base)
        try requireLastingName(base, owner: base)
        let info = try readImage(base, role: "the base")
        let chain = BackingChain.follow(from: info)
        if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
            throw .refused(path: base, reason: "its own backing chain is broken (\(p.kind.rawValue): \(p.message))",
                           hint: "imgtool chain \(Shell.operand(base))")
        }
        try requireNotWritten(base, &plan)
        plan.checks.append("\(base) is \(info.format.rawValue), \(Sizes.human(info.virtualSize ?? 0)), its chain is healthy (\(chain.layers.count) layer\(chain.layers.count == 1 ? "" : "s"))")
        let name = absolute ? Paths.absolute(base) : Paths.relative(Paths.absolute(base), from: BackingPath.directory(Paths.absolute(target)))
        plan.checks.append("backing name written as \(name) (\(absolute ? "absolute" : "relative to the overlay's folder"))")
        try reserve(target, &plan)
        let held = QemuImgCommand.heldImage, format = info.format.rawValue
        if let size = info.virtualSize {
            // The size is the base's, as qemu-img would read it (whole sectors): given, so qemu-img need not open
            // the base through a name relative to /proc/self/fd.
            plan.commands = [.create(image: held, format: "qcow2", size: size.roundedUpToSector, backing: name, backingFormat: format)]
        } else {
            // A size imgtool cannot read: qemu-img reads it from the base by its absolute path, then the name is
            // written as asked (a header-only step on the same file).
            let absoluteBase = Paths.absolute(base)
            plan.commands = [.create(image: held, format: "qcow2", size: nil, backing: absoluteBase, backingFormat: format)]
            if name != absoluteBase {
                plan.commands.append(.rebase(image: held, backing: name, backingFormat: format, unsafe: true, progress: false))
            }
        }
        plan.show = [target]
        return plan
    }
}

extension UInt64 {
    /// This many bytes rounded up to whole 512-byte sectors (saturating at the largest multiple of 512).
    var roundedUpToSector: UInt64 {
        let (sum, overflow) = addingReportingOverflow(511)
        return overflow ? UInt64.max & ~511 : sum & ~511
    }
}
