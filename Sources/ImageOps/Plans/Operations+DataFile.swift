import QCow2

import Glibc

extension Operations {
    /// Opens, checks and holds `info`'s external data file, for qemu-img to get by descriptor (nil: the image has
    /// none). `written`: the change writes or resizes it, so no other process may hold it; else only a writer
    /// refuses (qemu-img's open would fail on QEMU's lock). Checked like a layer: a regular file or block device,
    /// not the image itself nor a layer of its chain (a resize would truncate that layer), a name that is no protocol
    /// string. A relative name is resolved from the image's folder, as imgtool's guest reads resolve it (QEMU 7.2
    /// itself resolves it from its working folder even for an image named by path: measured).
    static func holdDataFile(of info: ImageInfo, written: Bool, _ plan: inout Plan) throws(ChangeError) -> QemuImgCommand.HeldFile? {
        guard let header = info.qcow2, header.hasExternalDataFile || header.dataFile != nil else { return nil }
        guard header.hasExternalDataFile else {
            // QEMU ignores a name without the bit; so does imgtool (it is not handed over, and qemu-img opens none).
            return nil
        }
        guard let name = header.dataFile, !name.isEmpty else {
            throw .refused(path: info.filename, reason: "sets the external data file bit but records no data file name", hint: nil)
        }
        let shown = Untrusted.shown(name)
        if BackingPath.isProtocol(name) {
            throw .refused(path: info.filename, reason: "its external data file is a protocol name (\(shown)), which imgtool does not hand to qemu-img", hint: nil)
        }
        let path = BackingPath.resolve(name, relativeTo: info.filename)
        let file: ImageFile
        do { file = try ImageFile.open(path) } catch {
            throw .refused(path: info.filename, reason: "its external data file cannot be opened: \(error.description)", hint: nil)
        }
        guard FileKey(file.stat) != FileKey(info.identity) else {
            throw .refused(path: info.filename, reason: "names itself as its external data file (\(shown))", hint: nil)
        }
        let layers = info.backingFilename == nil ? [] : BackingChain.follow(from: info).layers.dropFirst().map { FileKey($0.identity) }
        guard !layers.contains(FileKey(file.stat)) else {
            throw .refused(path: info.filename, reason: "names a file of its own backing chain as its external data file (\(shown)): the change would write that layer", hint: nil)
        }
        if written {
            try requireNotHeld(file, &plan)
        } else {
            let use = InUse.check(file)
            if use.writeLocked { throw .baseWritten(path: Untrusted.shown(path), holders: use.who) }
        }
        plan.alsoHeld.append(file)
        plan.checks.append("\(Untrusted.shown(path)) (the external data file of \(info.filename)) stays open too; qemu-img gets it as /proc/\(getpid())/fd/\(file.rawDescriptor), not by its recorded name")
        return .init(path: "/proc/\(getpid())/fd/\(file.rawDescriptor)", onDevice: file.stat.kind == .blockDevice)
    }
}
