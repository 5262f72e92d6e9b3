import QCow2

import Glibc

extension HMPSession {
    /// The name HMP takes for a disk: the drive's id, else its top node's name.
    func hmpDevice(_ device: LiveDevice) -> String { device.device.isEmpty ? (device.layers.first?.nodeName ?? "") : device.device }

    /// `overlay BASE [OVERLAY] --live` through HMP: qemu-img makes the overlay through a held descriptor (relative
    /// backing name, never overwriting), then `snapshot_blkdev -n` (mode=existing: QEMU opens the file as it is,
    /// keeping its backing name, rather than making one of its own) switches the disk to it. Afterwards QEMU must
    /// have that very inode open.
    public func overlay(base: String, overlay: String?, absolute: Bool = false, qemuImg: QemuImg, dryRun: Bool = false) async throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, index) = try before.locate(base, pid: process.pid)
        guard index == 0 else {
            throw .refused(path: base, reason: "is layer \(index) of disk \(device.label); a live snapshot goes on the active layer \(device.layers[0].filename)",
                           hint: "imgtool overlay \(Shell.quote(device.layers[0].filename)) --live")
        }
        // HMP's snapshot_blkdev finds a disk by its drive name only (no node name is passed on), which a `-blockdev`
        // disk has not.
        guard !device.device.isEmpty else { throw cannot("snapshot a disk that has no drive name (-blockdev)", base) }
        let top = device.layers[0]
        let target = overlay ?? Operations.defaultOverlay(for: base)
        // QEMU resolves a relative name against its own folder (`/` once daemonized): it gets the absolute one.
        let absTarget = Paths.absolute(target)
        let name = absolute ? Paths.absolute(base) : Paths.relative(Paths.absolute(base), from: BackingPath.directory(absTarget))
        guard let size = (try? ImageInfo.read(base))?.virtualSize else {
            throw .refused(path: base, reason: "its virtual size cannot be read, and the overlay is made with it", hint: nil)
        }
        let create = QemuImgCommand.create(image: QemuImgCommand.heldImage, format: "qcow2", size: size, backing: name, backingFormat: top.driver)
        let command = "snapshot_blkdev -n \(HMPClient.quoted(device.device)) \(HMPClient.quoted(absTarget)) qcow2"
        if let why = HMPClient.untypeable(command) {
            throw .refused(path: target, reason: "its name cannot be typed at QEMU's human monitor: \(why)", hint: "choose another name")
        }
        if dryRun {
            if Operations.exists(target) { throw .refused(path: target, reason: "already exists and imgtool does not overwrite", hint: "choose another name") }
            out.steps = ["\(base) is the active layer of disk \(device.label) in QEMU PID \(process.pid)",
                         qemuImg.commandLine(create) + " < " + Shell.quote(target) + " (created exclusively first)",
                         "then HMP: \(command)"]
            out.view = before
            return out
        }
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        let made = try await LiveOverlayFile.make(target, create: create, qemuImg: qemuImg)
        try stopIfInterrupted("nothing was changed in QEMU; the overlay qemu-img made was removed") { made.remove() }
        out.steps.append("created \(target) on \(name) (\(top.driver)) with qemu-img")
        // HMP opens and switches in one step, so the file is checked just before (the name must still lead to it)
        // and QEMU's descriptors just after.
        guard let now = QemuNames.key(absTarget), now == made.key else {
            made.remove()
            throw .refused(path: target, reason: "was replaced by another file before QEMU was asked to open it", hint: "retry")
        }
        do { try runSilent(command) } catch {
            made.remove()
            throw error
        }
        guard OpenFiles.has(pid: process.pid, made.key) else {
            throw .failed(path: target, "QEMU switched disk \(device.label) to a file at this name that is not the one qemu-img made (it was replaced in between); the VM writes there now: check it with imgtool chain \(Shell.quote(target)) --live")
        }
        out.steps.append("QEMU opened \(target) and switched disk \(device.label) to it (HMP snapshot_blkdev)")
        out.view = try view()
        return out
    }

    /// `rebase IMAGE --flatten --live` through HMP: `block_stream DEVICE` copies the backing chain's data into the
    /// disk's active layer (the only one HMP can stream into); progress from `info block-jobs`; SIGINT, SIGTERM or
    /// SIGHUP cancels the job (`block_job_cancel -f`), as on QMP.
    public func flatten(_ image: String, speed: UInt64? = nil, dryRun: Bool = false, progress: (LiveJob) -> Void) throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, i) = try before.locate(image, pid: process.pid)
        guard i + 1 < device.layers.count else {
            throw .refused(path: image, reason: "has no backing file; there is nothing to flatten", hint: nil)
        }
        guard i == 0 else { throw cannot("stream into a layer below the top (layer \(i) of disk \(device.label))", image) }
        let dev = hmpDevice(device)
        // `block_stream device [speed [base]]`: the speed is a size whose unit defaults to MiB (HMP's `o` type), so
        // it carries the suffix B.
        let command = "block_stream \(HMPClient.quoted(dev))" + (speed.map { " \($0)B" } ?? "")
        if dryRun {
            out.steps = ["\(image) is the active layer of disk \(device.label) in QEMU PID \(process.pid), over \(device.layers.count - 1) backing layer(s)",
                         "then HMP: \(command) (the whole backing chain copied in)"]
            out.view = before
            return out
        }
        guard try jobs().allSatisfy({ $0.id != dev }) else {
            throw .refused(path: image, reason: "QEMU already runs a block job on disk \(device.label)", hint: "wait for it: imgtool chain \(Shell.quote(image)) --live")
        }
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        try stopIfInterrupted("nothing was changed")
        try runSilent(command)
        try waitForJob(dev, progress: progress)
        let after = try view()
        // HMP reports no job's end: the chain says whether the stream finished (no backing file left).
        guard let now = try? after.locate(image, pid: process.pid), now.device.layers.count == 1 else {
            throw .jobFailed(path: image, job: dev, message: "the stream ended, and \(image) still has a backing file in QEMU (QEMU's own log says why)")
        }
        out.steps.append("QEMU copied the data of \(device.layers.count - 1) backing layer(s) into \(image); it has no backing file now")
        out.view = after
        return out
    }

    /// `commit IMAGE --live` through HMP: `commit DEVICE` merges the active layer into its backing file,
    /// synchronously (QEMU 7.2's `bdrv_commit`, which then empties the top). The disk stays on IMAGE, empty; the
    /// output says so. A layer below the top, or a `--base` deeper than the backing file, needs QMP.
    public func commit(_ image: String, base: String?, dryRun: Bool = false) throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, i) = try before.locate(image, pid: process.pid)
        guard i + 1 < device.layers.count else {
            throw .refused(path: image, reason: "has no backing file to commit into", hint: nil)
        }
        guard i == 0 else { throw cannot("commit a layer below the top (layer \(i) of disk \(device.label))", image) }
        if let base {
            let (other, k) = try before.locate(base, pid: process.pid)
            guard other.layers[0].nodeName == device.layers[0].nodeName, k > i else {
                throw .refused(path: base, reason: "is not below \(image) in the chain of disk \(device.label)", hint: "imgtool chain \(Shell.quote(image)) --live")
            }
            guard k == 1 else { throw cannot("commit past the backing file into a deeper layer", image) }
        }
        // HMP's commit takes a drive's name (blk_by_name), which a `-blockdev` disk has not.
        guard !device.device.isEmpty else { throw cannot("commit a disk that has no drive name (-blockdev)", image) }
        let target = device.layers[1]
        let command = "commit \(HMPClient.quoted(device.device))"
        if dryRun {
            out.steps = ["\(image) is the active layer of disk \(device.label) in QEMU PID \(process.pid); \(target.filename) is its backing file",
                         "then HMP: \(command) (synchronous; \(image) stays on top, empty)"]
            out.view = before
            return out
        }
        guard try jobs().isEmpty else {
            throw .refused(path: image, reason: "QEMU runs a block job", hint: "wait for it: imgtool chain \(Shell.quote(image)) --live")
        }
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        try stopIfInterrupted("nothing was changed")
        // Synchronous: QEMU answers when the copy is done, which takes as long as the data; a day bounds a hang.
        do { try runSilent(command, timeoutMS: 86_400_000) } catch {
            // bdrv_commit fails these before it copies a byte (no backing, a blocker, the backing file not reopened
            // read-write, which QEMU 7.2 cannot do for a qcow2 backing file of a -drive): nothing changed, and QMP's
            // block-commit is the way.
            if case .hmp(_, .unexpected(_, _, let text)) = error, text.hasPrefix("'commit' error for "),
               ["Permission denied", "Operation not supported", "Device or resource busy", "No medium found"].contains(where: { text.hasSuffix(": " + $0) }) {
                throw .refused(path: image, reason: "QEMU's human monitor could not commit it into \(target.filename) (\(text))",
                               hint: "start QEMU with -qmp unix:PATH,server=on,wait=off as well (block-commit), or commit with the VM stopped")
            }
            throw error
        }
        out.steps.append("QEMU merged \(image) into \(target.filename) (HMP commit); disk \(device.label) still runs on \(image), now empty, on top of it")
        out.view = try view()
        return out
    }

    /// `fix-backing --live` needs QMP: HMP has no way to rewrite a backing name without copying.
    public func fixBacking(_ image: String) -> LiveError {
        cannot("rewrite a backing file name", image)
    }

    /// Waits until QEMU no longer lists job `id`, reporting progress about every 100 ms. A signal cancels the job
    /// (`block_job_cancel -f`) and, once it is gone, throws `.interrupted`.
    func waitForJob(_ id: String, progress: (LiveJob) -> Void) throws(LiveError) {
        var cancelled: Int32?
        while true {
            if cancelled == nil, let sig = ChildGuard.interruption {
                cancelled = sig
                // Refused only when the job is ending already: its absence next round decides.
                try? runSilent("block_job_cancel -f \(HMPClient.quoted(id))")
            }
            guard let job = try jobs().first(where: { $0.id == id }) else { break }
            progress(job)
            usleep(100_000)
        }
        if let sig = cancelled {
            throw .interrupted(path: image, signal: sig, detail: "QEMU's job \(id) was cancelled; what it copied stays, and the disk goes on running on the chain it had")
        }
    }

    /// Throws `.interrupted` when a signal came before QEMU was asked anything; `undo` puts back what was done.
    func stopIfInterrupted(_ what: String, undo: () -> Void = {}) throws(LiveError) {
        guard let sig = ChildGuard.interruption else { return }
        undo()
        throw .interrupted(path: image, signal: sig, detail: what)
    }
}
