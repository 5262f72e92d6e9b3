import QCow2

import Glibc

/// What a live change did, for the report.
public struct LiveOutcome: Sendable {
    /// One line per step, in order.
    public var steps: [String] = []
    /// Nodes deleted afterwards (dropped from the chain, or added by imgtool and no longer used).
    public var deletedNodes: [String] = []
    /// Where the header was saved (fix-backing), for `undo`.
    public var savedHeader: String?
    /// The live view after the change.
    public var view: LiveView?
}

extension LiveSession {
    /// `fix-backing IMAGE --to PATH --live`: QEMU rewrites the backing name and format through a block-stream that
    /// has nothing to copy (its base is the direct backing node). PATH must be the file QEMU already reads.
    public func fixBacking(_ image: String, to newBase: String, style: Operations.LinkStyle, dryRun: Bool = false) throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, i) = try locate(image, in: before)
        guard i + 1 < device.layers.count else {
            throw .refused(path: image, reason: "has no backing file in QEMU; a live repoint rewrites an existing link only", hint: nil)
        }
        let layer = device.layers[i], backing = device.layers[i + 1]
        guard layer.driver == "qcow2" || layer.driver == "qed" else {
            throw .refused(path: image, reason: "is \(layer.driver); QEMU rewrites backing names of qcow2 and QED only", hint: nil)
        }
        guard let id = FileIdentity.of(path: newBase) else { throw .refused(path: newBase, reason: "does not exist", hint: nil) }
        guard FileKey(id) == backing.key else {
            throw .refused(path: image, reason: "QEMU reads \(backing.filename) as its backing file and \(newBase) is another file; QEMU would go on reading the old one",
                           hint: "point --to at the file QEMU has open, or stop the VM and run imgtool fix-backing without --live")
        }
        let name = LinkNames.name(for: image, to: newBase, recorded: layer.backingFilename, style: style)
        if dryRun {
            out.steps = ["\(newBase) is the file QEMU PID \(process.pid) reads as the backing file of \(image)",
                         "would save the header of \(image) to \(HeaderBackup.directoryShown)",
                         "then QMP: block-stream \(layer.nodeName) onto its backing node \(backing.nodeName) with backing-file \(name)"]
            out.view = before
            return out
        }
        // The same save an offline fix-backing makes: complete and fsynced before QEMU writes, finished after.
        let held: ImageFile
        do { held = try ImageFile.open(image) } catch { throw .failed(path: image, error.description) }
        var save: HeaderBackup
        do { save = try HeaderBackup.begin(held, intent: .init(backing: name, backingFormat: backing.driver)) } catch { throw .failed(path: image, error.description) }
        out.savedHeader = HeaderBackup.saveFile(for: held.stat)
        out.steps.append("saved the header of \(image)")
        do throws(LiveError) {
            try guarded { () throws(LiveError) in
                let reopened = try reopen(layer, below: backing, readOnly: false)
                try stopIfInterrupted("nothing was changed") {
                    if reopened, i > 0 { _ = try? reopen(layer.with(readOnly: false), below: backing, readOnly: true) }
                }
                let job = "imgtool-fix-backing-\(getpid())"
                try execute("block-stream", ["job-id": .string(job), "device": .string(layer.nodeName), "base-node": .string(backing.nodeName), "backing-file": .string(name)])
                try waitForJob(job) { _ in }
                if reopened, i > 0 { try reopen(layer.with(readOnly: false), below: backing, readOnly: true) }
            }
        } catch {
            // QEMU wrote nothing: no save is left behind (a header it did change keeps its pending save for undo).
            if save.isUnchanged(held) { save.discard() }
            throw error
        }
        do { _ = try save.complete(held) } catch { throw .failed(path: image, error.description) }
        if !save.refusal.isEmpty {
            // Said now, not first at undo time (the VM's own writes during the job count too).
            out.savedHeader = nil
            out.steps.append("note: \(save.refusal); imgtool undo will refuse")
        }
        out.steps.append("QEMU wrote backing name \(name) (\(backing.driver)) into \(image)")
        let cleanup = try deleteDroppedNodes(before: before)
        out.deletedNodes = cleanup.deleted
        out.view = cleanup.view
        return out
    }

    /// `rebase IMAGE --flatten --live`: QEMU streams the whole backing chain's data into IMAGE and drops the link.
    public func flatten(_ image: String, speed: UInt64? = nil, dryRun: Bool = false, progress: (LiveJob) -> Void) throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, i) = try locate(image, in: before)
        guard i + 1 < device.layers.count else {
            throw .refused(path: image, reason: "has no backing file; there is nothing to flatten", hint: nil)
        }
        let layer = device.layers[i]
        if dryRun {
            out.steps = ["\(image) is layer \(i) of disk \(device.label) in QEMU PID \(process.pid), over \(device.layers.count - i - 1) backing layer(s)",
                         "then QMP: block-stream \(layer.nodeName) (the whole backing chain copied in)"]
            out.view = before
            return out
        }
        try guarded { () throws(LiveError) in
            let reopened = try reopen(layer, below: device.layers[i + 1], readOnly: false)
            try stopIfInterrupted("nothing was changed") {
                if reopened, i > 0 { _ = try? reopen(layer.with(readOnly: false), below: device.layers[i + 1], readOnly: true) }
            }
            let job = "imgtool-stream-\(getpid())"
            var args: [String: QMPValue] = ["job-id": .string(job), "device": .string(layer.nodeName)]
            if let speed { args["speed"] = .uint(speed) }
            try execute("block-stream", args)
            do throws(LiveError) { try waitForJob(job, progress: progress) } catch {
                if reopened, i > 0 { _ = try? reopen(layer.with(readOnly: false), below: device.layers[i + 1], readOnly: true) }
                throw error
            }
            if reopened, i > 0 { try reopen(layer.with(readOnly: false), below: nil, readOnly: true) }
        }
        out.steps.append("QEMU copied the data of \(device.layers.count - i - 1) backing layer(s) into \(image); it has no backing file now")
        let cleanup = try deleteDroppedNodes(before: before)
        out.deletedNodes = cleanup.deleted
        out.view = cleanup.view
        return out
    }

    /// `commit IMAGE [--base LAYER] --live`: QEMU merges IMAGE (and the layers between) into LAYER. The active layer
    /// pivots onto LAYER; a lower layer's overlay is repointed at LAYER, keeping its name's style.
    public func commit(_ image: String, base: String?, speed: UInt64? = nil, dryRun: Bool = false, progress: (LiveJob) -> Void) throws(LiveError) -> LiveOutcome {
        var out = LiveOutcome()
        let before = try view()
        let (device, i) = try locate(image, in: before)
        guard i + 1 < device.layers.count else {
            throw .refused(path: image, reason: "has no backing file to commit into", hint: nil)
        }
        var j = i + 1
        if let base {
            let (other, k) = try locate(base, in: before)
            guard other.layers[0].nodeName == device.layers[0].nodeName, k > i else {
                throw .refused(path: base, reason: "is not below \(image) in the chain of disk \(device.label)", hint: "imgtool chain \(Shell.quote(image)) --live")
            }
            j = k
        }
        let target = device.layers[j]
        if dryRun {
            out.steps = ["\(image) is layer \(i) of disk \(device.label) in QEMU PID \(process.pid); \(target.filename) is layer \(j)",
                         "then QMP: block-commit of \(device.layers[i].nodeName) into \(target.nodeName)" + (i == 0 ? ", block-job-complete when ready" : "")]
            out.view = before
            return out
        }
        let below = j + 1 < device.layers.count ? device.layers[j + 1] : nil
        try guarded { () throws(LiveError) in
            var reopened: [(LiveLayer, LiveLayer?)] = []
            if try reopen(target, below: below, readOnly: false) { reopened.append((target, below)) }
            let job = "imgtool-commit-\(getpid())"
            var args: [String: QMPValue] = ["job-id": .string(job), "device": .string(device.layers[0].nodeName), "base-node": .string(target.nodeName)]
            if i > 0 {
                let above = device.layers[i - 1]
                if try reopen(above, below: device.layers[i], readOnly: false) { reopened.append((above, target)) }
                args["top-node"] = .string(device.layers[i].nodeName)
                args["backing-file"] = .string(LinkNames.name(for: absolutePath(above.filename), to: absolutePath(target.filename),
                                                        recorded: above.backingFilename, style: .keep))
            }
            if let speed { args["speed"] = .uint(speed) }
            try stopIfInterrupted("nothing was changed") {
                for (layer, below) in reopened { _ = try? reopen(layer.with(readOnly: false), below: below, readOnly: true) }
            }
            try execute("block-commit", args)
            do throws(LiveError) { try waitForJob(job, progress: progress) } catch {
                // No pivot happened (failed or cancelled): every layer reopened read-write goes back to read-only.
                for (layer, below) in reopened { _ = try? reopen(layer.with(readOnly: false), below: below, readOnly: true) }
                throw error
            }
            // Layers still below the top go back to read-only; an active commit's base is the new top and stays writable.
            for (layer, below) in reopened where !(i == 0 && layer.nodeName == target.nodeName) {
                try reopen(layer.with(readOnly: false), below: below, readOnly: true)
            }
        }
        out.steps.append(i == 0
            ? "QEMU merged \(image) into \(target.filename) and switched disk \(device.label) to it"
            : "QEMU merged \(image) into \(target.filename) and repointed \(device.layers[i - 1].filename) at it")
        let cleanup = try deleteDroppedNodes(before: before)
        out.deletedNodes = cleanup.deleted
        out.view = cleanup.view
        return out
    }

    /// A node name no node has yet.
    static func freeNodeName(_ view: LiveView) -> String {
        var taken: Set<String> = Set(view.strays.map(\.nodeName))
        for d in view.devices { for l in d.layers { taken.insert(l.nodeName); if let f = l.fileNodeName { taken.insert(f) } } }
        var n = 1
        while taken.contains("imgtool-\(n)") { n += 1 }
        return "imgtool-\(n)"
    }

    /// QEMU's file name as a path from here: a relative one is relative to QEMU's folder (see `QemuNames`).
    func absolutePath(_ filename: String) -> String {
        let pid = process.pid
        return QemuNames(pid: pid).absolute(filename) { OpenFiles.has(pid: pid, $0) }
    }

    /// The target of symbolic link `path` (readlink(2), which does not NUL-terminate), or nil when it cannot be read.
    static func readLink(_ path: String) -> String? {
        Sys.readlink(path)
    }
}

extension LiveLayer {
    /// The same layer with another read-only flag (after a reopen).
    func with(readOnly: Bool) -> LiveLayer { var l = self; l.readOnly = readOnly; return l }
}
