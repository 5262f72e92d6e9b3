import QCow2
import SystemPackage

import Glibc

extension LiveSession {
    /// `overlay BASE [OVERLAY] --live`: qemu-img makes the overlay (relative backing name, never overwriting), then
    /// QEMU opens it (`blockdev-add`) and switches the disk to it (`blockdev-snapshot`).
    public func overlay(base: String, overlay: String?, absolute: Bool = false, qemuImg: QemuImg, dryRun: Bool = false) async throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, index) = try locate(base, in: before)
        guard index == 0 else {
            throw .refused(path: base, reason: "is layer \(index) of disk \(device.label); a live snapshot goes on the active layer \(device.layers[0].filename)",
                           hint: "imgtool overlay \(Shell.quote(device.layers[0].filename)) --live")
        }
        let top = device.layers[0]
        let target = overlay ?? Operations.defaultOverlay(for: base)
        let absTarget = Paths.absolute(target)
        let name = absolute ? Paths.absolute(base) : Paths.relative(Paths.absolute(base), from: BackingPath.directory(absTarget))
        // The size is given so qemu-img need not open a base the running VM writes (and because it writes the new file
        // through /proc/self/fd/0, from which a relative backing name could not be resolved).
        guard let size = (try? ImageInfo.read(base))?.virtualSize else {
            throw .refused(path: base, reason: "its virtual size cannot be read, and the overlay is made with it", hint: nil)
        }
        let create = QemuImgCommand.create(image: QemuImgCommand.heldImage, format: "qcow2", size: size, backing: name, backingFormat: top.driver)
        if dryRun {
            if Operations.exists(target) { throw .refused(path: target, reason: "already exists and imgtool does not overwrite", hint: "choose another name") }
            out.steps = ["\(base) is the active layer of disk \(device.label) in QEMU PID \(process.pid)",
                         qemuImg.commandLine(create) + " < " + Shell.quote(target) + " (created exclusively first)",
                         "then QMP: blockdev-add \(target), blockdev-snapshot onto node \(top.nodeName)"]
            out.view = before
            return out
        }
        // Reserved exclusively and held, as the offline overlay does: qemu-img writes this very file (as its standard
        // input), whatever the name names by then, and nothing that appears at the name in between is overwritten.
        let fd = Sys.open(target, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let why = errno == EEXIST ? "already exists and imgtool does not overwrite" : "cannot be created (\(errnoText()))"
            throw .refused(path: target, reason: why, hint: errno == EEXIST ? "choose another name" : nil)
        }
        defer { Glibc.close(fd) }
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        guard let made = FileIdentity.of(path: "/proc/self/fd/\(fd)") else {
            throw .failed(path: target, "was created but cannot be examined")
        }
        let madeKey = FileKey(made)
        /// Removes the new file, only while its name still names it.
        func removeMade() {
            if let now = FileIdentity.of(path: target), FileKey(now) == madeKey { Sys.unlink(target) }
        }
        do {
            _ = try await qemuImg.run(create, stdin: FileDescriptor(rawValue: fd))
        } catch {
            removeMade()
            if let sig = ChildGuard.interruption {
                throw .interrupted(path: target, signal: sig, detail: "qemu-img was stopped; the half-made file was removed and QEMU was not asked anything")
            }
            throw .failed(path: target, error.description)
        }
        try stopIfInterrupted("nothing was changed in QEMU; the overlay qemu-img made was removed") { removeMade() }
        out.steps.append("created \(target) on \(name) (\(top.driver)) with qemu-img")
        let node = Self.freeNodeName(before)
        do throws(LiveError) {
            try execute("blockdev-add", ["driver": "file", "node-name": "\(node)-file", "filename": .string(absTarget)])
            do throws(LiveError) {
                try execute("blockdev-add", ["driver": "qcow2", "node-name": .string(node), "file": "\(node)-file", "backing": .null])
            } catch { _ = try? execute("blockdev-del", ["node-name": "\(node)-file"]); throw error }
            do throws(LiveError) {
                // QEMU opened the file by name: it must be the one qemu-img just wrote, or the VM's writes would go
                // to whatever was renamed over it in between.
                guard OpenFiles.has(pid: process.pid, madeKey) else {
                    throw .refused(path: target, reason: "was replaced by another file before QEMU opened it", hint: "retry")
                }
                try execute("blockdev-snapshot", ["node": .string(top.nodeName), "overlay": .string(node)])
            } catch {
                _ = try? execute("blockdev-del", ["node-name": .string(node)])
                _ = try? execute("blockdev-del", ["node-name": "\(node)-file"])
                throw error
            }
        } catch {
            removeMade()
            throw error
        }
        out.steps.append("QEMU opened \(target) as node \(node) and switched disk \(device.label) to it")
        out.view = try view()
        return out
    }
}
