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
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        let made = try await LiveOverlayFile.make(target, create: create, qemuImg: qemuImg)
        let madeKey = made.key
        func removeMade() { made.remove() }
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
