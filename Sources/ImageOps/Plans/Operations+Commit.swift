import QCow2

import Glibc

/// A checked commit: the plan, and the images outside the chain that `--force` lets it endanger.
public struct CommitPlan: Sendable {
    /// The commands (qemu-img commit, then the repoint onto a deeper base).
    public var plan: Plan
    /// Images outside the chain backed by a layer the commit changes (empty unless `--force` let them through).
    public var endangered: [String]
    /// The layer the data goes into.
    public var base: String
    /// The layers the commit changes or reads (IMAGE down to the chain's end) and the files they named when checked.
    public var layers: [(path: String, identity: FileIdentity)] = []

    /// Nil while every layer's name still names the file that was checked; else which does not, in words. qemu-img
    /// got the checked files themselves (held descriptors), so the data went where the checks said; but a name that
    /// now names another file means the chain as the user names it is no longer the one that was changed.
    public func renamedLayers() -> String? {
        let moved = layers.filter { l in
            guard let now = FileIdentity.of(path: l.path) else { return true }
            return now.device != l.identity.device || now.inode != l.identity.inode
        }
        guard !moved.isEmpty else { return nil }
        return "the commit was made on the files imgtool checked and held, but "
            + moved.map(\.path).joined(separator: ", ") + (moved.count == 1 ? " now names" : " now name")
            + " another file (or none) than the one imgtool checked"
    }
}

extension Operations {
    /// `imgtool commit IMAGE [--base LAYER] [--store DIR] [--force]`: IMAGE's data (and the layers' between) merged
    /// into LAYER by `qemu-img commit`. With a deeper LAYER the layers between are left invalid, so IMAGE is repointed
    /// onto LAYER (header only: the guest sees the same bytes). Refused while a process holds any layer, and unless
    /// `force` while an image outside the chain is backed by LAYER or a layer between.
    public static func commit(_ image: String, base: String?, store: String?, force: Bool, progress: Bool) throws(ChangeError) -> CommitPlan {
        var plan = Plan()
        let file = try openImage(image, role: "the image")
        let info = try readImage(file, role: "the image")
        guard info.format == .qcow2 || info.format == .qed else {
            throw .refused(path: image, reason: "is \(info.format.rawValue); qemu-img commits qcow2 and QED overlays", hint: nil)
        }
        let chain = BackingChain.follow(from: info)
        guard chain.layers.count > 1 else {
            // A backing file named but not reached is a broken link, said as `chain` says it, with its fix.
            if let p = chain.problems.first(where: { $0.layer == 0 && !$0.kind.isWarning }) { throw brokenLink(image, chain, p) }
            throw .refused(path: image, reason: "has no backing file to commit into", hint: nil)
        }
        var j = 1
        if let base {
            guard let id = FileIdentity.of(path: base) else { throw .refused(path: base, reason: "does not exist", hint: nil) }
            guard let k = chain.layers.firstIndex(where: { FileKey($0.identity) == FileKey(id) }), k > 0 else {
                throw .refused(path: base, reason: "is not in the backing chain of \(image)", hint: "imgtool chain \(Shell.operand(image))")
            }
            j = k
        }
        // qemu-img opens the whole chain (a write into the base copies the rest of a cluster from below it), and
        // every layer is handed to it by descriptor: so the whole chain must be followed to its end.
        if let p = chain.problems.first(where: { !$0.kind.isWarning }) { throw brokenLink(image, chain, p) }
        let target = chain.layers[j]
        plan.checks.append("\(target.filename) is layer \(j) of \(image)'s chain (\(target.format.rawValue))")
        // Each layer above the target reads what it does not hold from the layers below, which the commit rewrites:
        // so do their internal snapshots. The target's own snapshots read only below it, which stays as it is.
        try requireNoSnapshots(snapshotsAffected(chain.layers[0..<j]),
                               change: "the commit writes newer data into \(target.filename)\(j > 1 ? " and empties the layers between" : "")",
                               force: force, &plan)
        try requireNotHeld(file, &plan)
        let held = try holdLayers(chain, top: file, writtenThrough: j, &plan)

        let search = endangeredByCommit(chain, into: j, store: store)
        try requireSearched(image, search)
        let endangered = search.images
        if !endangered.isEmpty {
            let list = endangered.joined(separator: ", ")
            guard force else { throw endangeredRefusal(image, target: target.filename, deeper: j > 1, endangered) }
            plan.checks.append("--force: \(list) \(endangered.count == 1 ? "is" : "are") backed by a layer that changes and will read corrupted data")
        } else {
            plan.checks.append("no other image in the chain's folders\(store.map { " or under \($0)" } ?? "") is backed by a layer that changes (every entry read)")
        }
        // One `qemu-img commit` per layer, each into its own backing file (IMAGE into layer 1, then layer 1 into
        // layer 2, …), rather than `-b`: qemu-img finds `-b` by comparing file names, which a chain of held
        // descriptors does not have. Each step leaves a chain that reads the guest's bytes, so an interruption
        // between steps loses nothing.
        plan.commands = (0..<j).map { k in
            .commit(image: QemuImgCommand.heldChain(held[k...]), format: held[k].format, base: nil, progress: progress)
        }
        if j > 1 {
            // The layers between are emptied into the base; IMAGE now reads its data straight from it.
            let name = LinkNames.name(for: image, to: target.filename, recorded: info.backingFilename, style: .keep)
            plan.commands.append(.rebase(image: QemuImgCommand.heldImage(format: info.format.rawValue, onDevice: held[0].onDevice, dataFile: held[0].dataFile),
                                         format: info.format.rawValue, backing: name,
                                         backingFormat: target.format.rawValue, unsafe: true, progress: false))
            plan.checks.append("afterwards \(image) is repointed at \(name): the layers between drop out of its chain")
        }
        plan.progress = progress
        plan.show = [image]
        return CommitPlan(plan: plan, endangered: endangered, base: target.filename,
                          layers: chain.layers.map { ($0.filename, $0.identity) })
    }

    /// The refusal for a chain that breaks at `p`: the problem as `imgtool chain` words it and the command that fixes
    /// it (fix-backing), since qemu-img opens the whole chain.
    static func brokenLink(_ image: String, _ chain: BackingChain, _ p: BackingChain.Problem) -> ChangeError {
        let i = chain.problems.firstIndex(of: p) ?? 0
        let fixes = ChainReport(image: image, chain: chain).suggestions[i]
        let owner = p.layer < chain.layers.count ? chain.layers[p.layer].filename : image
        let hint = fixes.isEmpty ? "imgtool chain \(Shell.operand(image))" : fixes.joined(separator: " or ") + ", then commit again"
        return .refused(path: image, reason: "its backing chain is broken at \(owner) (\(p.kind.rawValue)): \(p.message); qemu-img opens it all", hint: hint)
    }

    /// Holds `top` and opens every layer below it, checking each is the file the chain was read from (device and
    /// inode) and, down to layer `writtenThrough` (the layers a commit writes), held by no process; the layers below
    /// are only read, so a reader of them (other VMs on a shared base) is no reason to refuse. They stay open in the plan, and
    /// qemu-img is handed the chain as `/proc/PID/fd/N` names of these descriptors: a layer renamed over after the
    /// checks is neither written nor read.
    static func holdLayers(_ chain: BackingChain, top: ImageFile, writtenThrough: Int, _ plan: inout Plan) throws(ChangeError) -> [QemuImgCommand.HeldLayer] {
        // External data files are held and handed over too (a relative name would resolve from qemu-img's working
        // folder); the image's own first, before any lower layer is opened.
        let topData = try holdDataFile(of: chain.layers[0], written: true, &plan)
        hold(top, &plan)
        var held = [QemuImgCommand.HeldLayer(format: chain.layers[0].format.rawValue, path: QemuImgCommand.heldImage,
                                             onDevice: top.stat.kind == .blockDevice, dataFile: topData)]
        for (k, layer) in chain.layers.enumerated().dropFirst() {
            let file = try openImage(layer.filename, role: "a layer of the chain")
            guard FileKey(file.stat) == FileKey(layer.identity) else {
                throw .refused(path: layer.filename, reason: "was replaced by another file while imgtool read the chain", hint: "retry")
            }
            if k <= writtenThrough {
                try requireNotHeld(file, &plan)
            } else {
                // Only read, but a writer would make qemu-img's open fail on QEMU's lock: said here, with the holder.
                try requireNotWritten(file)
            }
            plan.alsoHeld.append(file)
            // A VMDK descriptor names its extent files relative to its own name, which a /proc name has no folder
            // for: such a layer goes by its checked path (as before layers were held); the renamed-layer check after
            // the change still covers it.
            if let extents = layer.vmdk?.extents, extents.contains(where: { FileIdentity.of(path: $0.filename).map(FileKey.init) != FileKey(file.stat) }) {
                held.append(.init(format: layer.format.rawValue, path: Paths.absolute(layer.filename), onDevice: false))
                plan.checks.append("\(layer.filename) is a VMDK descriptor with extent files of its own: qemu-img opens it by name")
                continue
            }
            let data = try holdDataFile(of: layer, written: k <= writtenThrough, &plan)
            held.append(.init(format: layer.format.rawValue, path: "/proc/\(getpid())/fd/\(file.rawDescriptor)", onDevice: file.stat.kind == .blockDevice,
                              dataFile: data))
        }
        plan.checks.append("every layer below stays open too; qemu-img gets them as /proc/\(getpid())/fd names, whatever their paths name by then")
        return held
    }
}

extension Operations {
    /// The images outside `chain` (in the folders of its layers, and under `store`) whose backing file is layer 1
    /// through `j`: a commit into layer `j` changes what they read. Matched by device and inode, sorted; with every
    /// place the search could not look (`Operations.requireSearched` refuses on those).
    public static func endangeredByCommit(_ chain: BackingChain, into j: Int, store: String?) -> Readers.Dependents {
        guard j >= 1, j < chain.layers.count else { return Readers.Dependents(images: [], unsearched: []) }
        let changing = Set(chain.layers[1...j].map { FileKey($0.identity) })
        let ours = Set(chain.layers[0..<j].map { FileKey($0.identity) })
        let folders = chain.layers.map { BackingPath.directory(Paths.absolute($0.filename)) }
        return Readers.dependents(on: changing, excluding: ours, folders: folders, store: store)
    }

    /// The refusal naming the images a commit would corrupt.
    public static func endangeredRefusal(_ image: String, target: String, deeper: Bool, _ endangered: [String]) -> ChangeError {
        .refused(path: image, reason: "committing changes \(target)\(deeper ? " and the layers above it" : ""), which \(endangered.count == 1 ? "another image uses" : "other images use") as backing: \(endangered.joined(separator: ", ")); their guest data would be silently corrupted",
                 hint: "flatten them first (imgtool rebase IMAGE --flatten), or pass --force to commit anyway")
    }
}

/// Backing names as the user's link style asks.
public enum LinkNames {
    /// The name to write into `image` for `target`: relative to the image's folder or absolute, as `style` says;
    /// `.keep` follows the style of the name recorded now.
    public static func name(for image: String, to target: String, recorded: String?, style: Operations.LinkStyle) -> String {
        let absolute: Bool
        switch style {
        case .absolute: absolute = true
        case .relative: absolute = false
        case .keep: absolute = recorded?.hasPrefix("/") ?? false
        }
        let abs = Paths.absolute(target)
        return absolute ? abs : Paths.relative(abs, from: BackingPath.directory(Paths.absolute(image)))
    }
}
