import QCow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A change, checked and ready: the checks made (for the user to read) and the qemu-img commands that do it.
public struct Plan: Sendable {
    /// What was checked, one line each.
    public var checks: [String] = []
    /// Commands to run, in order.
    public var commands: [QemuImgCommand] = []
    /// Images whose header is saved before the commands run (header-only changes), for `undo`.
    public var saveHeaders: [String] = []
    /// A file we created exclusively to reserve the name; removed if the commands fail.
    public var reserved: String?
    /// Images to show the chain of after the change.
    public var show: [String] = []
    /// Stream qemu-img's output (its progress bar) to the terminal.
    public var progress = false
}

/// Why a change was refused or failed. Every case names the file.
public enum ChangeError: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
    /// A check failed: nothing was changed.
    case refused(path: String, reason: String, hint: String?)
    /// Another process holds the image.
    case inUse(path: String, holders: String)

    public var description: String {
        switch self {
        case .refused(let path, let reason, let hint):
            return "\(path): \(reason); nothing was changed" + (hint.map { "\n  instead: \($0)" } ?? "")
        case .inUse(let path, let holders):
            return "\(path) is in use by \(holders); nothing was changed (stop it first, then retry)"
        }
    }
}

/// Builds the plans for each changing command. Every check runs here, before anything is written.
public enum Operations {
    /// Refuses an image another process holds, naming it.
    static func requireNotHeld(_ path: String, _ plan: inout Plan) throws(ChangeError) {
        let use = InUse.check(path)
        if use.isHeld { throw .inUse(path: path, holders: use.summary) }
        plan.checks.append("no process holds \(path)")
    }

    static func readImage(_ path: String, role: String) throws(ChangeError) -> ImageInfo {
        do { return try ImageInfo.read(path) } catch {
            throw .refused(path: path, reason: "\(role) cannot be read: \(error.description)", hint: nil)
        }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Reserves `path` by creating it exclusively (O_EXCL): no other file can appear there between our check and
    /// qemu-img's write, so an existing file is never overwritten.
    static func reserve(_ path: String, dryRun: Bool, _ plan: inout Plan) throws(ChangeError) {
        if exists(path) {
            throw .refused(path: path, reason: "already exists and imgtool does not overwrite", hint: "choose another name, or remove it yourself")
        }
        plan.checks.append("\(path) does not exist yet")
        if dryRun { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .refused(path: path, reason: "cannot be created (errno \(errno))", hint: nil)
        }
        close(fd)
        plan.reserved = path
    }

    // MARK: create

    /// `imgtool create IMAGE SIZE [--format]`.
    public static func create(_ image: String, size: UInt64, format: String, dryRun: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        guard format == "qcow2" || format == "raw" else {
            throw .refused(path: image, reason: "format \(format) is not offered (qcow2 or raw)", hint: nil)
        }
        try reserve(image, dryRun: dryRun, &plan)
        plan.commands = [.create(image: image, format: format, size: size, backing: nil, backingFormat: nil)]
        plan.show = [image]
        return plan
    }

    // MARK: overlay

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
        let info = try readImage(base, role: "the base")
        let chain = BackingChain.follow(from: info)
        if let p = chain.problems.first(where: { !$0.kind.isWarning }) {
            throw .refused(path: base, reason: "its own backing chain is broken (\(p.kind.rawValue): \(p.message))",
                           hint: "imgtool chain \(Shell.quote(base))")
        }
        plan.checks.append("\(base) is \(info.format.rawValue), \(Sizes.human(info.virtualSize ?? 0)), its chain is healthy (\(chain.layers.count) layer\(chain.layers.count == 1 ? "" : "s"))")
        let name = absolute ? Paths.absolute(base) : Paths.relative(Paths.absolute(base), from: BackingPath.directory(Paths.absolute(target)))
        plan.checks.append("backing name written as \(name) (\(absolute ? "absolute" : "relative to the overlay's folder"))")
        try reserve(target, dryRun: dryRun, &plan)
        plan.commands = [.create(image: target, format: "qcow2", size: nil, backing: name, backingFormat: info.format.rawValue)]
        plan.show = [target]
        return plan
    }

    // MARK: fix-backing

    /// How to write the new backing name.
    public enum LinkStyle: Sendable { case keep, relative, absolute }

    /// Checks `newBase` as the backing file of `image` and returns the name to write and the format to record.
    static func checkNewBacking(image: ImageInfo, newBase: String, style: LinkStyle, force: Bool, _ plan: inout Plan) throws(ChangeError) -> (name: String, format: String) {
        let target = try readImage(newBase, role: "the new backing file")
        if target.identity.device == image.identity.device && target.identity.inode == image.identity.inode {
            throw .refused(path: image.filename, reason: "\(newBase) is the image itself: the chain would loop", hint: nil)
        }
        let below = BackingChain.follow(from: target)
        if below.layers.contains(where: { $0.identity.device == image.identity.device && $0.identity.inode == image.identity.inode }) {
            throw .refused(path: image.filename, reason: "\(newBase) has \(image.filename) in its own chain: the chain would loop", hint: nil)
        }
        if let p = below.problems.first(where: { $0.kind == .loop }) {
            throw .refused(path: newBase, reason: "its own chain loops (\(p.message))", hint: nil)
        }
        plan.checks.append("\(newBase) is a \(target.format.rawValue) image of \(Sizes.human(target.virtualSize ?? 0)); \(image.filename) is not in its chain")
        if let recorded = image.backingFormat, recorded != target.format.rawValue {
            if !force {
                throw .refused(path: image.filename, reason: "records its backing as \(recorded) but \(newBase) is \(target.format.rawValue)",
                               hint: "check that \(newBase) is the right file; --force records \(target.format.rawValue)")
            }
            plan.checks.append("format differs (\(recorded) recorded, \(target.format.rawValue) found): --force given")
        } else {
            plan.checks.append("format agrees: \(target.format.rawValue)")
        }
        if let mine = image.virtualSize, let theirs = target.virtualSize, mine != theirs {
            if !force {
                throw .refused(path: image.filename, reason: "is \(mine) bytes but \(newBase) is \(theirs) bytes: probably not its base",
                               hint: "--force if you know it is")
            }
            plan.checks.append("virtual size differs (\(mine) vs \(theirs)): --force given")
        } else {
            plan.checks.append("virtual size agrees: \(Sizes.human(image.virtualSize ?? 0))")
        }
        let wasRelative = image.backingFilename.map { !$0.hasPrefix("/") } ?? true
        let useAbsolute = style == .absolute || (style == .keep && !wasRelative)
        let absTarget = Paths.absolute(newBase)
        let name = useAbsolute ? absTarget : Paths.relative(absTarget, from: BackingPath.directory(Paths.absolute(image.filename)))
        plan.checks.append("backing name written as \(name) (\(useAbsolute ? "absolute" : "relative to \(image.filename)'s folder"))")
        return (name, target.format.rawValue)
    }

    /// `imgtool fix-backing IMAGE --to PATH`: repoint the link without touching guest data.
    public static func fixBacking(_ image: String, to newBase: String, style: LinkStyle, force: Bool) throws(ChangeError) -> Plan {
        var plan = Plan()
        let info = try readImage(image, role: "the image")
        guard Repoint.canRewrite(info.format) else {
            let hint = info.backingFilename.map { name in
                Repoint.command(image, format: info.format, resolved: BackingPath.resolve(name, relativeTo: image), to: newBase) + " (a symbolic link where QEMU looks)"
            }
            throw .refused(path: image, reason: "is \(info.format.rawValue); qemu-img can rewrite only qcow2 and QED backing links", hint: hint)
        }
        let (name, format) = try checkNewBacking(image: info, newBase: newBase, style: style, force: force, &plan)
        try requireNotHeld(image, &plan)
        plan.saveHeaders = [image]
        plan.commands = [.rebase(image: image, format: info.format.rawValue, backing: name, backingFormat: format, unsafe: true, progress: false)]
        plan.show = [image]
        return plan
    }

    /// Images in `folder` whose backing link is broken and names a file called like `newBase`.
    public static func brokenOverlays(in folder: String, named newBase: String) -> [String] {
        let wanted = BackingPath.fileName(newBase)
        var found: [String] = []
        Directory.walk(folder, maxDepth: 0, limit: 100_000) { e in
            guard !e.isDirectory, let info = try? ImageInfo.read(e.path), let name = info.backingFilename,
                  BackingPath.fileName(name) == wanted else { return }
            let chain = BackingChain.follow(from: info, maxDepth: 1)
            if let p = chain.problems.first, p.layer == 0, [.missing, .unreadable, .notAnImage, .invalidHeader].contains(p.kind) {
                found.append(e.path)
            }
        }
        return found.sorted()
    }

    // MARK: rebase

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

    // MARK: resize

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

    /// A check a shrink must pass beyond `--shrink` (the partition guard plugs in here).
    public typealias ShrinkGuard = @Sendable (_ image: ImageInfo, _ newSize: UInt64) throws(ChangeError) -> String?

    /// `imgtool resize IMAGE SIZE [--shrink] [--force]`.
    public static func resize(_ image: String, size: SizeChange, shrink: Bool, force: Bool, guard shrinkGuard: ShrinkGuard?) throws(ChangeError) -> Plan {
        var plan = Plan()
        let info = try readImage(image, role: "the image")
        guard info.format == .qcow2 || info.format == .raw else {
            throw .refused(path: image, reason: "is \(info.format.rawValue); resize works on qcow2 and raw", hint: nil)
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
            if let shrinkGuard {
                if let note = try shrinkGuard(info, newSize) {
                    if !force { throw .refused(path: image, reason: note, hint: "--force to cut anyway") }
                    plan.checks.append(note + ": --force given")
                } else {
                    plan.checks.append("no partition ends past \(Sizes.human(newSize))")
                }
            }
            plan.checks.append("shrinking from \(Sizes.human(current)) to \(Sizes.human(newSize)): --shrink given")
        } else {
            plan.checks.append("\(Sizes.human(current)) → \(Sizes.human(newSize))")
        }
        try requireNotHeld(image, &plan)
        plan.commands = [.resize(image: image, format: info.format.rawValue, size: newSize, shrink: newSize < current)]
        plan.show = [image]
        return plan
    }
}
