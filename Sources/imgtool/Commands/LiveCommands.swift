import ImageOps
import QCow2

import Glibc

/// The `--live` forms: each finds the QEMU holding the image, asks it over QMP, waits for its job (progress on a
/// terminal), then shows the live chain. Refusals name the PID and monitor, and for libvirt the virsh command.
enum LiveCommands {
    /// `chain IMAGE --live`: 0 when both chains agree and are healthy, 2 otherwise.
    static func chain(_ image: String, output: ReadCommands.Output) throws -> Int32 {
        let session = try LiveSession.connect(image) { "virsh domblklist \($0) --details; virsh qemu-monitor-command \($0) --pretty '{\"execute\":\"query-named-block-nodes\",\"arguments\":{\"flat\":true}}'" }
        defer { session.close() }
        let comparison = try LiveComparison.read(image, connection: session)
        switch output {
        case .json: comparison.json.printToStandardOutput()
        case .human: printOut(comparison.human(style: .forStandardOutput()))
        }
        return comparison.healthy ? 0 : 2
    }

    /// `overlay BASE [OVERLAY] --live`.
    static func overlay(base: String, overlay: String?, absolute: Bool, options: ChangeCommands.Options) async throws {
        let target = overlay ?? Operations.defaultOverlay(for: base)
        let session = try LiveSession.connect(base) {
            "virsh snapshot-create-as \($0) --disk-only --no-metadata --diskspec \(Shell.quote(base)),snapshot=external,file=\(Shell.quote(target))"
        }
        defer { session.close() }
        let tool = try QemuImg.locate(options.qemuImg)
        let out: LiveOutcome
        switch session {
        case .qmp(let s): out = try await s.overlay(base: base, overlay: overlay, absolute: absolute, qemuImg: tool, dryRun: options.dryRun)
        case .hmp(let s): out = try await s.overlay(base: base, overlay: overlay, absolute: absolute, qemuImg: tool, dryRun: options.dryRun)
        }
        report(out, dryRun: options.dryRun)
    }

    /// `fix-backing IMAGE --to PATH --live`.
    static func fixBacking(_ images: [String], to: String, style: Operations.LinkStyle, options: ChangeCommands.Options) throws {
        guard images.count == 1, let image = images.first else {
            throw ChangeError.refused(path: images.first ?? ".", reason: "fix-backing --live repoints one named image", hint: "imgtool fix-backing IMAGE --to PATH --live")
        }
        let connection = try LiveSession.connect(image) {
            "virsh shutdown \($0), then imgtool fix-backing \(Shell.quote(image)) --to \(Shell.quote(to)) (libvirt keeps its own record of the chain; QEMU cannot rename a backing file under it)"
        }
        defer { connection.close() }
        guard case .qmp(let session) = connection else {
            if case .hmp(let s) = connection { throw s.fixBacking(image) }
            return
        }
        let out = try session.fixBacking(image, to: to, style: style, dryRun: options.dryRun)
        report(out, dryRun: options.dryRun)
        // Not refused (PATH is the very file QEMU reads), but the snapshots read from it too: said.
        let notes = (try? ImageInfo.read(image)).map { Operations.noteSnapshots(Operations.snapshotsAffected([$0][...])) }
        if !options.dryRun { for w in notes?.warnings ?? [] { printError("imgtool: warning: " + Untrusted.shown(w)) } }
    }

    /// `rebase IMAGE --flatten --live`.
    static func flatten(_ image: String, force: Bool = false, options: ChangeCommands.Options) throws {
        // IMAGE's internal snapshots read what QEMU's stream drops from under them: checked on disk, as offline.
        let top = try BackingChain.follow(image)
        let checks = try Operations.checkSnapshots(Operations.snapshotsAffected(top.layers.prefix(1)), change: "after a flatten they read zeros there", force: force)
        let session = try LiveSession.connect(image) { "virsh blockpull \($0) \(Shell.quote(image)) --wait --verbose" }
        defer { session.close() }
        var bar = ProgressBar()
        let out: LiveOutcome
        switch session {
        case .qmp(let s): out = try s.flatten(image, dryRun: options.dryRun) { bar.show($0) }
        case .hmp(let s): out = try s.flatten(image, dryRun: options.dryRun) { bar.show($0) }
        }
        bar.finish()
        report(out, dryRun: options.dryRun)
        if !options.dryRun { for w in checks.warnings { printError("imgtool: warning: " + Untrusted.shown(w)) } }
    }

    /// `commit IMAGE [--base LAYER] [--store DIR] [--force] --live`: the images a commit would corrupt are looked for
    /// on disk first, as offline.
    static func commit(_ image: String, base: String?, store: String?, force: Bool, options: ChangeCommands.Options) throws {
        let chain = try BackingChain.follow(image)
        var j = 1
        if let base, let id = FileIdentity.of(path: base), let k = chain.layers.firstIndex(where: { $0.identity.device == id.device && $0.identity.inode == id.inode }) { j = k }
        let search = Operations.endangeredByCommit(chain, into: j, store: store)
        try Operations.requireSearched(image, search)
        let endangered = search.images
        if !endangered.isEmpty && !force, j < chain.layers.count {
            throw Operations.endangeredRefusal(image, target: chain.layers[j].filename, deeper: j > 1, endangered)
        }
        // The snapshots of IMAGE and of the layers between read what the commit rewrites, as offline.
        var checks = Operations.SnapshotCheck()
        if j < chain.layers.count {
            checks = try Operations.checkSnapshots(Operations.snapshotsAffected(chain.layers[0..<j]),
                                                   change: "the commit writes newer data into \(chain.layers[j].filename)\(j > 1 ? " and drops the layers between" : "")",
                                                   force: force)
        }
        let session = try LiveSession.connect(image) {
            "virsh blockcommit \($0) \(Shell.quote(image))\(base.map { " --base " + Shell.quote($0) } ?? "") --active --pivot --wait --verbose"
                + " (for a layer below the top: --top \(Shell.quote(image)) on the disk's target instead of --active --pivot)"
        }
        defer { session.close() }
        var bar = ProgressBar()
        let out: LiveOutcome
        switch session {
        case .qmp(let s): out = try s.commit(image, base: base, dryRun: options.dryRun) { bar.show($0) }
        case .hmp(let s): out = try s.commit(image, base: base, dryRun: options.dryRun)
        }
        bar.finish()
        report(out, dryRun: options.dryRun)
        if !options.dryRun { for w in checks.warnings { printError("imgtool: warning: " + Untrusted.shown(w)) } }
        if !endangered.isEmpty && !options.dryRun {
            printError("imgtool: warning: --force: \(endangered.map(Untrusted.shown).joined(separator: ", ")) \(endangered.count == 1 ? "was" : "were") backed by a layer that changed; \(endangered.count == 1 ? "its" : "their") guest data is no longer what it was")
        }
    }

    /// The steps, the nodes deleted and the live chain afterwards.
    static func report(_ out: LiveOutcome, dryRun: Bool) {
        let style = Style.forStandardOutput()
        for step in out.steps { printOut((dryRun ? "checked: " : "") + Untrusted.shown(step)) }
        if let saved = out.savedHeader { printOut("saved the old header to \(Untrusted.shown(saved)) (imgtool undo puts it back once the VM stops)") }
        if !out.deletedNodes.isEmpty { printOut("closed nodes no longer in any chain: \(out.deletedNodes.map(Untrusted.shown).joined(separator: ", "))") }
        if dryRun { printOut("dry run: nothing was changed"); return }
        if let view = out.view { printOut(view.human(style: style)) }
    }
}

/// qemu-img's `(NN.NN/100%)` line, redrawn in place, for live jobs; only on a terminal.
struct ProgressBar {
    let enabled = isatty(1) == 1
    var shown = false

    mutating func show(_ job: LiveJob) {
        guard enabled, job.length > 0 else { return }
        let pct = Double(job.offset) * 100 / Double(job.length)
        let whole = Int(pct), hundredths = Int((pct - Double(whole)) * 100)
        let text = "    (\(whole).\(hundredths < 10 ? "0" : "")\(hundredths)/100%)" + (job.ready ? " ready" : "")
        writeAll(1, Array(("\r" + text).utf8))
        shown = true
    }

    mutating func finish() {
        if shown { writeAll(1, Array("\n".utf8)) }
        shown = false
    }
}
