import QCow2

extension Operations {
    /// `imgtool rebase IMAGE (--onto PATH | --flatten) [--unsafe] [--force]`. `force` lets a flatten or a safe rebase
    /// change what IMAGE's internal snapshots read (refused otherwise).
    public static func rebase(_ image: String, onto: String?, flatten: Bool, unsafe: Bool, force: Bool = false, progress: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        let file = try openImage(image, role: "the image")
        let info = try readImage(file, role: "the image")
        guard info.format == .qcow2 else {
            throw .refused(path: image, reason: "is \(info.format.rawValue); rebase works on qcow2 images", hint: nil)
        }
        if flatten && unsafe {
            throw .refused(path: image, reason: "--flatten --unsafe would drop every cluster the backing chain holds",
                           hint: "imgtool rebase \(Shell.operand(image)) --flatten (copies the data in)")
        }
        // A safe rebase reads the old backing chain: every layer is held and handed to qemu-img by descriptor (a
        // relative backing name could not be resolved from the image's /proc/self/fd name anyway, and a name can be
        // renamed over between the checks and qemu-img).
        var oldChain: BackingChain?
        if !unsafe {
            let chain = BackingChain.follow(from: info)
            if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
                throw .refused(path: image, reason: "a safe rebase reads the old backing chain, and it is broken (\(p.kind.rawValue): \(p.message))",
                               hint: "imgtool fix-backing \(Shell.operand(chain.layers[p.layer].filename)) --to NEW-PATH (repoints without copying)")
            }
            oldChain = chain
            if chain.layers.count == 1, info.backingFilename != nil {
                throw .refused(path: image, reason: "its backing name is not a file imgtool can hand to qemu-img", hint: nil)
            }
            plan.checks.append("the old backing chain is readable (\(chain.layers.count) layers)")
        }
        var name = "", format: String?
        if let onto {
            (name, format) = try checkNewBacking(image: info, newBase: onto, style: .keep, force: true,
                                                 forced: unsafe ? "recorded as found (--unsafe)" : "a safe rebase copies what differs", &plan)
            try requireNotWritten(onto, &plan)
        } else {
            plan.checks.append("flatten: every cluster the chain provides is copied into \(image)")
        }
        // A flatten makes IMAGE's snapshots read zeros where they hold nothing, a safe rebase the new base's data:
        // qemu-img copies into the active view only. `--unsafe` states the new file holds the same data.
        if unsafe {
            noteSnapshots(snapshotsAffected([info][...]), &plan)
        } else {
            try requireNoSnapshots(snapshotsAffected([info][...]),
                                   change: flatten ? "after a flatten they read zeros there" : "after a safe rebase they read \(onto ?? "the new backing file") there",
                                   force: force, &plan)
        }
        try requireNotHeld(file, &plan)
        // Readers of the old backing files (other VMs on the same base) are no reason to refuse: they are only read.
        let oldLayers = try oldChain.map { c throws(ChangeError) in try holdLayers(c, top: file, writtenThrough: 0, &plan) }
        var held = QemuImgCommand.heldImage
        if let top = oldLayers?.first {
            held = QemuImgCommand.heldImage(format: top.format, onDevice: top.onDevice, dataFile: top.dataFile)
        } else {
            let data = try holdDataFile(of: info, written: true, &plan)
            hold(file, &plan)
            held = QemuImgCommand.heldImage(format: info.format.rawValue, onDevice: file.stat.kind == .blockDevice, dataFile: data)
        }
        if unsafe {
            plan.save = HeaderBackup.Intent(backing: name, backingFormat: format ?? "")
            plan.commands = [.rebase(image: held, backing: name, backingFormat: format, unsafe: true, progress: false)]
        } else {
            // qemu-img resolves a relative new name from the image's name too: the copy is made against the new
            // base's absolute path, then the name is written as asked (a header-only step on the same file).
            let absolute = onto.map(Paths.absolute) ?? ""
            let image = oldLayers.map { QemuImgCommand.heldChain($0[...]) } ?? held
            plan.commands = [.rebase(image: image, backing: absolute, backingFormat: format, unsafe: false, progress: progress)]
            if name != absolute {
                plan.commands.append(.rebase(image: held, backing: name, backingFormat: format, unsafe: true, progress: false))
            }
        }
        plan.progress = progress && !unsafe
        plan.show = [image]
        return plan
    }
}
