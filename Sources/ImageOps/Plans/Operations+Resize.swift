import QCow2

extension Operations {
    /// How a resize size was given.
    public enum SizeChange: Sendable, Equatable {
        case absolute(UInt64), grow(UInt64), shrink(UInt64)

        /// Parses `SIZE`, `+SIZE` or `-SIZE`.
        public init?(_ text: String) {
            if text.hasPrefix("+"), let n = Sizes.parse(String(text.dropFirst())) { self = .grow(n) }
            else if text.hasPrefix("-"), let n = Sizes.parse(String(text.dropFirst())) { self = .shrink(n) }
            else if let n = Sizes.parse(text) { self = .absolute(n) }
            else { return nil }
        }
    }

    /// `imgtool resize IMAGE SIZE [--shrink] [--force]`.
    public static func resize(_ image: String, size: SizeChange, shrink: Bool, force: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        let file = try openImage(image, role: "the image")
        let info = try readImage(file, role: "the image")
        guard info.format == .qcow2 || info.format == .raw else {
            throw .refused(path: image, reason: "is \(info.format.rawValue); resize works on qcow2 and raw", hint: nil)
        }
        // qemu-img answers a looping chain with a misleading "Is another process using the image?": say it here.
        if info.backingFilename != nil, let p = BackingChain.follow(from: info).problems.first(where: { $0.kind == .loop }) {
            throw .refused(path: image, reason: "its backing chain loops (\(p.message))",
                           hint: "imgtool chain \(Shell.operand(image)), then imgtool fix-backing to break the loop")
        }
        let current = info.virtualSize ?? 0
        let newSize: UInt64
        switch size {
        case .absolute(let n): newSize = n
        case .grow(let n):
            let (v, o) = current.addingReportingOverflow(n)
            guard !o else { throw .refused(path: image, reason: "the new size overflows", hint: nil) }
            newSize = v
        case .shrink(let n):
            guard n <= current else { throw .refused(path: image, reason: "cannot shrink \(Sizes.human(current)) by \(Sizes.human(n))", hint: nil) }
            newSize = current - n
        }
        if newSize < current {
            guard shrink else {
                throw .refused(path: image, reason: "\(Sizes.human(newSize)) is smaller than the current \(Sizes.human(current)); shrinking cuts off guest data",
                               hint: "add --shrink once the guest's filesystems and partitions end before \(Sizes.human(newSize))")
            }
            if let note = PartitionGuard.check(info, newSize: newSize) {
                if !force { throw .refused(path: image, reason: note, hint: "--force to cut anyway") }
                plan.checks.append(note + ": --force given")
            } else {
                plan.checks.append("no partition ends past \(Sizes.human(newSize))")
            }
            if let note = FilesystemGuard.check(info, newSize: newSize) {
                if !force { throw .refused(path: image, reason: note, hint: "shrink the filesystem first, or --force to cut anyway") }
                plan.checks.append(note + ": --force given")
            } else {
                plan.checks.append("no filesystem imgtool reads ends past \(Sizes.human(newSize))")
            }
            try requireNoDependents(file, shrinkingTo: newSize, force: force, &plan)
            plan.checks.append("shrinking from \(Sizes.human(current)) to \(Sizes.human(newSize)): --shrink given")
        } else {
            plan.checks.append("\(Sizes.human(current)) → \(Sizes.human(newSize))")
        }
        try requireNotHeld(file, &plan)
        let operand = try resizeOperand(file, info, growing: newSize > current, &plan)
        plan.commands = [.resize(image: operand, format: info.format.rawValue, size: newSize, shrink: newSize < current)]
        plan.show = [image]
        return plan
    }
}

extension Operations {
    /// The name qemu-img resizes the held image by. A qcow2 that grows over a backing file gets its whole chain
    /// (held descriptors, as commit): QEMU zero-fills the grown area only when it sees a backing file that reaches
    /// into it, and without that the guest would read the backing file's old bytes there (after a shrink and a
    /// grow back). Otherwise no backing file is opened (a relative name would not resolve from /proc/self/fd).
    /// An external data file is held and handed over either way.
    static func resizeOperand(_ file: ImageFile, _ info: ImageInfo, growing: Bool, _ plan: inout Plan) throws(ChangeError) -> String {
        guard info.format == .qcow2 else {
            hold(file, &plan)
            return QemuImgCommand.heldImage
        }
        if growing, info.backingFilename != nil {
            let chain = BackingChain.follow(from: info)
            if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
                throw .refused(path: file.path, reason: "growing an overlay needs its backing chain (QEMU zero-fills the new area only when it sees the backing file reach into it), and it is broken (layer \(p.layer), \(p.kind.rawValue): \(p.message))",
                               hint: "imgtool chain \(Shell.operand(file.path)), then imgtool fix-backing")
            }
            // QEMU zero-fills with zero clusters, which a version 2 qcow2 cannot record: qemu-img fails after
            // the checks (the image unchanged). Said here, with the way out.
            if info.qcow2?.version == 2, chain.layers.count > 1, (chain.layers[1].virtualSize ?? .max) > (info.virtualSize ?? 0) {
                throw .refused(path: file.path, reason: "is a version 2 qcow2 (compat=0.10) over a longer backing file: the grown area must be recorded as zeros, which version 2 cannot",
                               hint: "qemu-img amend -f qcow2 -o compat=1.1 \(Shell.operand(file.path)), then resize")
            }
            let held = try holdLayers(chain, top: file, writtenThrough: 0, &plan)
            plan.checks.append("the backing chain is opened too, so the grown area reads zeros, not the backing file's bytes")
            return QemuImgCommand.heldChain(held[...])
        }
        let data = try holdDataFile(of: info, written: true, &plan)
        hold(file, &plan)
        return QemuImgCommand.heldQCow2(backing: nil, onDevice: file.stat.kind == .blockDevice, dataFile: data)
    }
}

extension Operations {
    /// A shrink cuts what every image backed by this one reads past the new end (an overlay reads zeros there
    /// afterwards): such images in its folder are refused unless `force`, named, and a folder that cannot be read to
    /// its end refuses the shrink (`--force` covers images found, not places unseen), as for commit.
    static func requireNoDependents(_ file: ImageFile, shrinkingTo newSize: UInt64, force: Bool, _ plan: inout Plan) throws(ChangeError) {
        let me = FileKey(file.stat)
        let folder = BackingPath.directory(Paths.absolute(file.path))
        let search = Readers.dependents(on: [me], excluding: [me], folders: [folder], store: nil)
        try requireSearched(file.path, search)
        guard !search.images.isEmpty else {
            plan.checks.append("no other image in \(folder) is backed by \(file.path) (every entry read)")
            return
        }
        let list = search.images.joined(separator: ", ")
        let one = search.images.count == 1
        guard force else {
            throw .refused(path: file.path, reason: "\(one ? "another image uses" : "other images use") it as backing: \(list); past \(Sizes.human(newSize)) \(one ? "its" : "their") guest would read zeros instead of this image's data",
                           hint: "flatten them first (imgtool rebase IMAGE --flatten), or pass --force to shrink anyway")
        }
        plan.checks.append("--force: \(list) \(one ? "is" : "are") backed by \(file.path) and will read zeros past \(Sizes.human(newSize))")
        plan.warnings.append("--force: \(list) \(one ? "was" : "were") backed by \(file.path); past \(Sizes.human(newSize)) \(one ? "it reads" : "they read") zeros now")
    }
}
