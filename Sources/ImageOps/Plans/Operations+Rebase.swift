import QCow2

extension Operations {
    /// `imgtool rebase IMAGE (--onto PATH | --flatten) [--unsafe]`.
    public static func rebase(_ image: String, onto: String?, flatten: Bool, unsafe: Bool, progress: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        let info = try readImage(image, role: "the image")
        guard info.format == .qcow2 else {
            throw .refused(path: image, reason: "is \(info.format.rawValue); rebase works on qcow2 images", hint: nil)
        }
        if flatten && unsafe {
            throw .refused(path: image, reason: "--flatten --unsafe would drop every cluster the backing chain holds",
                           hint: "imgtool rebase \(Shell.quote(image)) --flatten (copies the data in)")
        }
        if !unsafe {
            let chain = BackingChain.follow(from: info)
            if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
                throw .refused(path: image, reason: "a safe rebase reads the old backing chain, and it is broken (\(p.kind.rawValue): \(p.message))",
                               hint: "imgtool fix-backing \(Shell.quote(chain.layers[p.layer].filename)) --to NEW-PATH (repoints without copying)")
            }
            plan.checks.append("the old backing chain is readable (\(chain.layers.count) layers)")
        }
        var name = "", format: String?
        if let onto {
            (name, format) = try checkNewBacking(image: info, newBase: onto, style: .keep, force: true, &plan)
        } else {
            plan.checks.append("flatten: every cluster the chain provides is copied into \(image)")
        }
        try requireNotHeld(image, &plan)
        if unsafe { plan.saveHeaders = [image] }
        plan.commands = [.rebase(image: image, backing: name, backingFormat: format, unsafe: unsafe, progress: progress && !unsafe)]
        plan.progress = progress && !unsafe
        plan.show = [image]
        return plan
    }
}
