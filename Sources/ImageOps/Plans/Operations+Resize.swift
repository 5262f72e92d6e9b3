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
            plan.checks.append("shrinking from \(Sizes.human(current)) to \(Sizes.human(newSize)): --shrink given")
        } else {
            plan.checks.append("\(Sizes.human(current)) → \(Sizes.human(newSize))")
        }
        try requireNotHeld(file, &plan)
        hold(file, &plan)
        // A qcow2 resize needs none of its backing chain: none is opened (a relative name would not resolve).
        let operand = info.format == .qcow2 ? QemuImgCommand.heldQCow2(backing: nil, onDevice: file.stat.kind == .blockDevice) : QemuImgCommand.heldImage
        plan.commands = [.resize(image: operand, format: info.format.rawValue, size: newSize, shrink: newSize < current)]
        plan.show = [image]
        return plan
    }
}
