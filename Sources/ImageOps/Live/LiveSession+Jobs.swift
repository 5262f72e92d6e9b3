import QCow2

extension LiveSession {
    /// Waits for block job `id` to end, reporting progress from `query-block-jobs` about every 100 ms. An active
    /// commit reports READY and waits for `block-job-complete`, which this sends (the pivot onto the base).
    ///
    /// The caller holds the signal guard (`guarded`) from before its first change. SIGINT, SIGTERM or SIGHUP meanwhile
    /// cancels the job (`block-job-cancel`, forced so a READY job does not pivot)
    /// and, once QEMU reports it cancelled, throws `.interrupted`: a job left running would go on writing (an active
    /// commit would mirror every guest write forever) with nobody to finish it. A job that completes before the
    /// cancel lands is a finished change and returns normally. A second signal ends imgtool at once.
    func waitForJob(_ id: String, progress: (LiveJob) -> Void) throws(LiveError) {
        let ends: Set<String> = ["BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_READY"]
        var completing = false
        var missing = 0
        var cancelled: Int32?
        func cancelIfInterrupted() {
            guard cancelled == nil, let sig = ChildGuard.interruption else { return }
            cancelled = sig
            // Refused only when the job is already ending (a pivot under way): its end event decides.
            try? execute("block-job-cancel", ["device": .string(id), "force": .bool(true)])
        }
        while true {
            cancelIfInterrupted()
            let event: QMPValue?
            do {
                event = try client.waitForEvent(timeoutMS: 100) { e in
                    guard let name = e["event"]?.string, ends.contains(name) else { return false }
                    return e["data"]?["device"]?.string == id
                }
            } catch { throw .qmp(path: image, error) }
            if let event, let name = event["event"]?.string {
                let data = event["data"] ?? [:]
                switch name {
                case "BLOCK_JOB_READY":
                    if let job = try currentJob(id) { progress(job) }
                    cancelIfInterrupted()
                    if !completing, cancelled == nil {
                        completing = true
                        try execute("block-job-complete", ["device": .string(id)])
                    }
                    continue
                case "BLOCK_JOB_CANCELLED":
                    if let sig = cancelled {
                        throw .interrupted(path: image, signal: sig, detail: "QEMU cancelled its job \(id); the disk goes on running on the chain it had")
                    }
                    throw .jobFailed(path: image, job: id, message: "cancelled")
                default:
                    if let message = data["error"]?.string { throw .jobFailed(path: image, job: id, message: message) }
                    let len = data["len"]?.uint64 ?? 0
                    progress(LiveJob(id: id, type: data["type"]?.string ?? "", offset: data["offset"]?.uint64 ?? len,
                                     length: len, ready: false, status: "concluded"))
                    return
                }
            }
            if let job = try currentJob(id) {
                missing = 0
                progress(job)
            } else {
                // Gone from the list without an end event yet: give the event a few rounds to arrive.
                missing += 1
                if missing > 20 { throw .jobFailed(path: image, job: id, message: "the job disappeared without reporting its end") }
            }
        }
    }

    /// Runs a live change with SIGINT, SIGTERM and SIGHUP held back from the first change QEMU is asked to make
    /// (a reopen, a new node) to the end: a signal then stops the job or is answered between steps, never in the
    /// middle, where it would leave layers read-write or a job with nobody to finish it.
    func guarded<T>(_ body: () throws(LiveError) -> T) throws(LiveError) -> T {
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        return try body()
    }

    /// Throws `.interrupted` when a signal came before a job was started; `undo` puts back what was done so far.
    func stopIfInterrupted(_ what: String, undo: () -> Void = {}) throws(LiveError) {
        guard let sig = ChildGuard.interruption else { return }
        undo()
        throw .interrupted(path: image, signal: sig, detail: what)
    }

    /// The job's state now, or nil when QEMU no longer lists it.
    func currentJob(_ id: String) throws(LiveError) -> LiveJob? {
        let jobs: [JobInfo]
        do { jobs = try client.execute("query-block-jobs", as: [JobInfo].self) } catch { throw .qmp(path: image, error) }
        return jobs.first { $0.device == id }.map {
            LiveJob(id: $0.device, type: $0.type, offset: $0.offset, length: $0.len, ready: $0.ready ?? false, status: $0.status ?? "")
        }
    }

    /// Opens `layer` read-write when it was opened `read-only=on` by name (libvirt's and `-blockdev`'s way): QEMU
    /// then refuses jobs that write to it. `-drive`'s implicit `#block` nodes are reopened by the job itself.
    /// Returns whether a reopen happened, so the caller can put it back.
    @discardableResult
    func reopen(_ layer: LiveLayer, below: LiveLayer?, readOnly: Bool) throws(LiveError) -> Bool {
        guard layer.readOnly != readOnly, !layer.nodeName.hasPrefix("#"), let fileNode = layer.fileNodeName else { return false }
        var format: [String: QMPValue] = [
            "driver": .string(layer.driver), "node-name": .string(layer.nodeName), "file": .string(fileNode), "read-only": .bool(readOnly),
        ]
        if layer.driver != "raw" { format["backing"] = below.map { .string($0.nodeName) } ?? .null }
        let file: [String: QMPValue] = [
            "driver": "file", "node-name": .string(fileNode), "filename": .string(layer.filename), "read-only": .bool(readOnly),
        ]
        // The file node first when opening up (the format node needs write access below it), last when closing down.
        try execute("blockdev-reopen", ["options": .array(readOnly ? [.object(format), .object(file)] : [.object(file), .object(format)])])
        return true
    }

    /// Deletes nodes that the change took out of the chain (they were in `before` and are strays now) and every
    /// stray node imgtool added (`imgtool-…`): such nodes stay open, holding their files' locks, until deleted.
    /// Returns the names deleted and the view afterwards (the one read here, less the deleted nodes: deleting a node
    /// outside every chain changes nothing else).
    func deleteDroppedNodes(before: LiveView) throws(LiveError) -> (deleted: [String], view: LiveView) {
        let after = try view()
        var inChain: [String: LiveLayer] = [:]
        for d in before.devices { for l in d.layers { inChain[l.nodeName] = l } }
        var deleted: [String] = []
        for stray in after.strays where inChain[stray.nodeName] != nil || stray.nodeName.hasPrefix("imgtool-") {
            // A file node is listed beside its format node when the latter carries a json: name; it goes with it.
            guard !stray.nodeName.hasPrefix("#"), !deleted.contains(stray.nodeName) else { continue }
            try execute("blockdev-del", ["node-name": .string(stray.nodeName)])
            deleted.append(stray.nodeName)
            // A file node added on its own stays behind its format node; a `#block` one goes with it.
            if let fileNode = inChain[stray.nodeName]?.fileNodeName, !fileNode.hasPrefix("#"), !deleted.contains(fileNode) {
                try execute("blockdev-del", ["node-name": .string(fileNode)])
                deleted.append(fileNode)
            }
        }
        var now = after
        now.strays.removeAll { deleted.contains($0.nodeName) }
        return (deleted, now)
    }
}

