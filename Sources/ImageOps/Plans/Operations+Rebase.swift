import QCow2

extension Operations {
    /// `imgtool rebase IMAGE (--onto PATH | --flatten) [--unsafe]`.
    public static func rebase(_ image: String, onto: String?, flatten: Bool, unsafe: Bool, progress: Bool) throws(ChangeError) -> Plan {
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
        // A safe rebase reads the old backing file: it is handed to qemu-img by its resolved path, since the image
        // itself goes by a /proc/self/fd name that a relative backing name cannot be resolved from.
        var oldBacking: (format: String, path: String)?
        var oldOnDevice = false
        if !unsafe {
            let chain = BackingChain.follow(from: info)
            if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
                throw .refused(path: image, reason: "a safe rebase reads the old backing chain, and it is broken (\(p.kind.rawValue): \(p.message))",
                               hint: "imgtool fix-backing \(Shell.operand(chain.layers[p.layer].filename)) --to NEW-PATH (repoints without copying)")
            }
            if chain.layers.count > 1 {
                oldBacking = (chain.layers[1].format.rawValue, Paths.absolute(chain.layers[1].filename))
                oldOnDevice = chain.layers[1].identity.kind == .blockDevice
            } else if info.backingFilename != nil {
                throw .refused(path: image, reason: "its backing name is not a file imgtool can hand to qemu-img", hint: nil)
            }
            plan.checks.append("the old backing chain is readable (\(chain.layers.count) layers)")
        }
        var name = "", format: String?
        if let onto {
            (name, format) = try checkNewBacking(image: info, newBase: onto, style: .keep, force: true, &plan)
            try requireNotWritten(onto, &plan)
        } else {
            plan.checks.append("flatten: every cluster the chain provides is copied into \(image)")
        }
        try requireNotHeld(file, &plan)
        hold(file, &plan)
        let held = QemuImgCommand.heldImage
        if unsafe {
            plan.save = HeaderBackup.Intent(backing: name, backingFormat: format ?? "")
            plan.commands = [.rebase(image: held, backing: name, backingFormat: format, unsafe: true, progress: false)]
        } else {
            // qemu-img resolves a relative new name from the image's name too: the copy is made against the new
            // base's absolute path, then the name is written as asked (a header-only step on the same file).
            let absolute = onto.map(Paths.absolute) ?? ""
            plan.commands = [.rebase(image: QemuImgCommand.heldQCow2(backing: oldBacking, onDevice: file.stat.kind == .blockDevice, backingOnDevice: oldOnDevice), backing: absolute, backingFormat: format, unsafe: false, progress: progress)]
            if name != absolute {
                plan.commands.append(.rebase(image: held, backing: name, backingFormat: format, unsafe: true, progress: false))
            }
        }
        plan.progress = progress && !unsafe
        plan.show = [image]
        return plan
    }
}
