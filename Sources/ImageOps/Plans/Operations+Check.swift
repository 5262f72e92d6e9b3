import QCow2

extension Operations {
    /// `imgtool check IMAGE --repair leaks|all`: a repair through `qemu-img check -r` on the held image, after a save
    /// of every byte it may rewrite (`RepairSave`), so `imgtool undo` gives the damaged image back byte for byte.
    /// Refused while anyone holds the image; qcow2 only (the save is built from qcow2's tables). Returns the plan and
    /// the bytes the save will hold.
    public static func repair(_ image: String, mode: String) throws(ChangeError) -> (plan: Plan, savedBytes: UInt64, regions: Int) {
        guard mode == "leaks" || mode == "all" else {
            throw .refused(path: image, reason: "--repair takes leaks or all, not \(mode)", hint: nil)
        }
        var plan = Plan()
        let file = try openImage(image, role: "the image")
        let info = try readImage(file, role: "the image")
        guard info.format == .qcow2 else {
            throw .refused(path: image, reason: "is \(info.format.rawValue); imgtool repairs qcow2 only (its save of what qemu-img may rewrite is built from qcow2's tables)",
                           hint: "copy the file first, then qemu-img check -r \(mode) on the copy")
        }
        do { try requireNotHeld(file, &plan) } catch {
            // The shared in-use error advises `--live` when QEMU holds the file; a repair has no live form.
            if case .inUse(let path, let holders) = error, holders.contains("qemu-system") || holders.contains("qemu-kvm") {
                throw .refused(path: path, reason: "is in use by \(holders) (a repair cannot go through a running QEMU)",
                               hint: "shut the VM down, then retry; imgtool check without --repair reads the image while it runs")
            }
            throw error
        }
        let data = try holdDataFile(of: info, written: true, &plan)
        // `-r all` rewrites corrupted L1 and L2 entries; the clusters only those entries referenced are then freed,
        // and QEMU discards freed clusters (holes punched into guest data). Then every byte is saved (found by the
        // review: a snapshot's data read as zeros after repair and undo). Leaks alone free only unreferenced clusters.
        var wholeFile = false
        if mode == "all" {
            let found = try? ImageChecker.check(info)
            wholeFile = found.map { $0.corruptions > 0 || $0.checkErrors > 0 || $0.aborted != nil } ?? true
        }
        let regions: [RepairSave.Region]
        do { regions = try RepairSave.plan(file, wholeFile: wholeFile) } catch {
            throw .refused(path: image, reason: "what the repair may rewrite cannot be saved: \(error.reason)", hint: "copy the file first, then qemu-img check -r \(mode) on the copy")
        }
        let saved = regions.reduce(0) { $0 + ($1.data ? $1.length : 0) }
        let holes = regions.count - regions.filter(\.data).count
        plan.checks.append("the save holds \(saved) bytes (\(Sizes.human(saved))) in \(regions.count - holes) stretch\(regions.count - holes == 1 ? "" : "es") of data, \(holes) hole\(holes == 1 ? "" : "s") and the file size: "
                           + (wholeFile ? "every byte of the file: the image has corruptions, and a repair of its tables may free and discard clusters they reference"
                              : "the header, tables, refcounts and every cluster nothing references as guest data, which qemu-img may rewrite; the guest's data clusters it never writes are left out"))
        hold(file, &plan)
        plan.save = .repair(mode)
        plan.save?.repairWholeFile = wholeFile
        // Without its backing chain (`backing: null`): a check reads this file's tables only, and QEMU would resolve a
        // relative backing name from /proc/self/fd.
        let held = QemuImgCommand.heldQCow2(backing: nil, onDevice: file.stat.kind == .blockDevice, dataFile: data)
        plan.commands = [.check(image: held, format: "qcow2", repair: mode)]
        return (plan, saved, regions.count)
    }
}
