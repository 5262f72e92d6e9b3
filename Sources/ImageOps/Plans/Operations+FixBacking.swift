import QCow2

import Glibc

extension Operations {
    /// Checks `newBase` as the backing file of `image` and returns the name to write and the format to record.
    /// A differing format or size is refused unless `force`; `forced` says in the checks why it was accepted.
    static func checkNewBacking(image: ImageInfo, newBase: String, style: LinkStyle, force: Bool, forced: String = "--force given",
                                _ plan: inout Plan) throws(ChangeError) -> (name: String, format: String) {
        try requireLastingName(newBase, owner: image.filename)
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
            plan.checks.append("format differs (\(recorded) recorded, \(target.format.rawValue) found): \(forced)")
        } else {
            plan.checks.append("format agrees: \(target.format.rawValue)")
        }
        if let mine = image.virtualSize, let theirs = target.virtualSize, mine != theirs {
            if !force {
                throw .refused(path: image.filename, reason: "is \(mine) bytes but \(newBase) is \(theirs) bytes: probably not its base",
                               hint: "--force if you know it is")
            }
            plan.checks.append("virtual size differs (\(mine) vs \(theirs)): \(forced)")
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
        let file = try openImage(image, role: "the image")
        let info = try readImage(file, role: "the image")
        guard Repoint.canRewrite(info.format) else {
            let hint = info.backingFilename.map { name in
                Repoint.command(image, format: info.format, resolved: BackingPath.resolve(name, relativeTo: image), to: newBase) + " (a symbolic link where QEMU looks)"
            }
            throw .refused(path: image, reason: "is \(info.format.rawValue); qemu-img can rewrite only qcow2 and QED backing links", hint: hint)
        }
        let (name, format) = try checkNewBacking(image: info, newBase: newBase, style: style, force: force, &plan)
        // A base someone writes (a VM's disk, a mounted read-write loop device) would change under the overlay's
        // guest, as for `overlay` and `rebase --onto`; `--unsafe`'s promise of the same data cannot hold for it.
        try requireNotWritten(newBase, &plan)
        noteSnapshots(snapshotsAffected([info][...]), &plan)
        try requireNotHeld(file, &plan)
        let data = try holdDataFile(of: info, written: true, &plan)
        hold(file, &plan)
        plan.save = HeaderBackup.Intent(backing: name, backingFormat: format)
        let held = QemuImgCommand.heldImage(format: info.format.rawValue, onDevice: file.stat.kind == .blockDevice, dataFile: data)
        plan.commands = [.rebase(image: held, format: info.format.rawValue, backing: name, backingFormat: format, unsafe: true, progress: false)]
        plan.show = [image]
        return plan
    }

    /// Images in `folder` whose backing link is broken and names a file called like `newBase`. Every entry is read;
    /// a folder or file that cannot be is refused rather than left out, so no broken image is silently missed.
    public static func brokenOverlays(in folder: String, named newBase: String) throws(ChangeError) -> [String] {
        let wanted = BackingPath.fileName(newBase)
        var found: [(path: String, identity: FileIdentity, isLink: Bool)] = []
        var unreadable: [FolderSearch.Unsearched] = []
        var missed = FolderSearch.walk(folder, recursive: false) { path in
            guard let info = FolderSearch.image(at: path, missed: &unreadable), let name = info.backingFilename,
                  BackingPath.fileName(name) == wanted else { return }
            let chain = BackingChain.follow(from: info, maxDepth: 1)
            if let p = chain.problems.first, p.layer == 0, [.missing, .unreadable, .notAnImage, .invalidHeader].contains(p.kind) {
                var st = stat()
                let isLink = Sys.lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
                found.append((path, info.identity, isLink))
            }
        }
        missed += unreadable
        if !missed.isEmpty {
            throw .refused(path: folder, reason: "could not be searched to its end for images with a broken link: "
                           + missed.prefix(20).map { "\($0.path) \($0.reason)" }.joined(separator: "; "),
                           hint: "name the images to repoint: imgtool fix-backing IMAGE... --to \(Shell.operand(newBase))")
        }
        // One image under several names (symbolic or hard links) is listed once, by a name that is not a symbolic
        // link where there is one: changing it twice would file the changed header as its save.
        var seen = Set<FileKey>()
        return found.sorted { ($0.isLink ? 1 : 0, $0.path) < ($1.isLink ? 1 : 0, $1.path) }
            .filter { seen.insert(FileKey($0.identity)).inserted }.map(\.path).sorted()
    }
}
