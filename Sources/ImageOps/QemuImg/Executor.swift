import QCow2
import SystemPackage

import Glibc

/// Runs a checked plan: reserves the new file or keeps the checked one open, saves the header, runs qemu-img on
/// that very file, records the result for `undo`, and cleans up after a failure or an interruption.
public enum Executor {
    /// Everything a run did, for the report.
    public struct Outcome: Sendable {
        /// Files the headers were saved to.
        public var saved: [String] = []
        /// Why `undo` will not be able to put a saved header back (the change rewrote more than the header), and
        /// what to do instead; said now, not first at undo time.
        public var noUndo: [String] = []
        /// Each command's standard output, in order (`qemu-img check --output=json`'s answer).
        public var output: [String] = []
    }

    /// The file qemu-img writes, held from the checks (or from its exclusive creation) to the end.
    struct Target {
        /// The path as the user named it.
        var path: String
        /// The descriptor handed to qemu-img as its standard input.
        var descriptor: FileDescriptor
        /// Its device and inode.
        var identity: FileIdentity
        /// The checked image, when the change is to an existing one.
        var held: ImageFile?
        /// True when imgtool created the file for this change.
        var reserved: Bool
    }

    /// Runs the plan's commands through `qemuImg`. Nothing is written before the save `undo` needs is complete;
    /// a change that fails or is interrupted leaves no save and no new file behind.
    public static func execute(_ plan: Plan, qemuImg: QemuImg) async throws -> Outcome {
        guard let path = plan.target else {
            for command in plan.commands { try await qemuImg.run(command, passThroughOutput: plan.progress) }
            return Outcome()
        }
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        let change = try Change.start(plan, path: path)
        defer { change.end() }
        var outputs: [String] = []
        do throws(QemuImg.Error) {
            for command in plan.commands {
                outputs.append(try await qemuImg.run(command, stdin: change.target.descriptor, passThroughOutput: plan.progress))
            }
        } catch {
            throw change.failed(error)
        }
        var outcome = try change.finish()
        outcome.output = outputs
        return outcome
    }

    /// `execute` on the calling thread, qemu-img run by `QemuImg.runBlocking`: the same checks, save, cleanup and
    /// report, without the concurrency runtime (what `fix-backing` uses). A plan that shows qemu-img's progress
    /// goes through `execute`.
    public static func executeBlocking(_ plan: Plan, qemuImg: QemuImg) throws -> Outcome {
        guard let path = plan.target else {
            for command in plan.commands { try qemuImg.runBlocking(command, stdin: nil) }
            return Outcome()
        }
        ChildGuard.install()
        defer { ChildGuard.uninstall() }
        let change = try Change.start(plan, path: path)
        defer { change.end() }
        do throws(QemuImg.Error) {
            for command in plan.commands { try qemuImg.runBlocking(command, stdin: change.target.descriptor) }
        } catch {
            throw change.failed(error)
        }
        return try change.finish()
    }

    /// One change under way: the file held or reserved and the header saved, before qemu-img runs; what is done
    /// after it ran or failed. `execute` and `executeBlocking` differ only in how they run qemu-img between.
    struct Change {
        let plan: Plan
        let path: String
        let target: Target
        let backup: HeaderBackup?

        /// Holds or reserves the file and saves the header (complete and fsynced, or the change is refused).
        static func start(_ plan: Plan, path: String) throws -> Change {
            let target = try open(plan, path: path)
            var backup: HeaderBackup?
            if let intent = plan.save, let held = target.held {
                do { backup = try HeaderBackup.begin(held, intent: intent) } catch {
                    _ = removeReserved(target)
                    if target.reserved { try? target.descriptor.close() }
                    throw error
                }
            }
            if let sig = ChildGuard.interruption {
                let detail = settleFailure(target, backup)
                if target.reserved { try? target.descriptor.close() }
                throw ChangeError.interrupted(path: path, signal: sig, detail: "nothing was changed" + (detail.isEmpty ? "" : "; " + detail))
            }
            return Change(plan: plan, path: path, target: target, backup: backup)
        }

        /// Lets go of the file imgtool reserved.
        func end() {
            if target.reserved { try? target.descriptor.close() }
        }

        /// The error to report when qemu-img failed or was stopped, after cleaning up.
        func failed(_ error: QemuImg.Error) -> any Swift.Error {
            let detail = settleFailure(target, backup)
            if let sig = ChildGuard.interruption { return ChangeError.interrupted(path: path, signal: sig, detail: "qemu-img was stopped" + (detail.isEmpty ? "" : "; " + detail)) }
            return ChangeError.qemuImgFailed(path: path, error: error, detail: detail)
        }

        /// Records what qemu-img wrote in the save and checks the path still names the file changed.
        func finish() throws -> Outcome {
            var outcome = Outcome()
            var savedNote = ""
            if let b = backup, b.repair != nil, let held = target.held, b.isUnchanged(held) {
                // A repair that found nothing to do: its save would replace the image's earlier save (one a
                // previous repair made, the only way back to the damaged image) with one of nothing.
                b.discard()
                outcome.noUndo.append("\(path): the repair changed nothing, so no save was made; an earlier save of this image, if any, is kept for imgtool undo")
            } else if var b = backup, let held = target.held {
                let file = try b.complete(held)
                if b.refusal.isEmpty {
                    outcome.saved.append(file)
                    savedNote = "; its old header is saved in \(file) (imgtool undo puts it back)"
                } else {
                    outcome.noUndo.append("\(path): \(b.refusal); imgtool undo will refuse")
                    outcome.noUndo += b.instead()
                }
            }
            if let moved = moved(target) {
                throw ChangeError.pathMoved(path: path, detail: moved + savedNote)
            }
            if let sig = ChildGuard.interruption {
                throw ChangeError.interrupted(path: path, signal: sig, detail: "the change had completed and is kept" + savedNote)
            }
            return outcome
        }
    }

    /// The held image, or the new file created exclusively now (never one that appeared since the checks).
    static func open(_ plan: Plan, path: String) throws(ChangeError) -> Target {
        if let held = plan.held {
            return Target(path: path, descriptor: FileDescriptor(rawValue: held.rawDescriptor), identity: held.stat, held: held, reserved: false)
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                FilePath(pathString: path), .readOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            let e = (error as? Errno) ?? .ioError
            if e == .fileExists {
                throw .refused(path: path, reason: "appeared after the checks, and imgtool does not overwrite", hint: "choose another name, or remove it yourself")
            }
            throw .refused(path: path, reason: "cannot be created (\(e.description))", hint: nil)
        }
        guard let id = FileIdentity.of(path: "/proc/self/fd/\(fd.rawValue)") else {
            try? fd.close()
            throw .refused(path: path, reason: "was created but cannot be examined", hint: nil)
        }
        return Target(path: path, descriptor: fd, identity: id, held: nil, reserved: true)
    }

    /// After a failure: drops the save when the header is untouched (keeps it, completed, when qemu-img changed the
    /// header before failing) and removes the file imgtool reserved. Returns what it did, in words.
    static func settleFailure(_ target: Target, _ backup: HeaderBackup?) -> String {
        var notes: [String] = []
        if var b = backup, let held = target.held {
            if b.isUnchanged(held) {
                b.discard()
                notes.append("the header is as it was and no save is left behind")
            } else if let file = try? b.complete(held) {
                notes.append(b.refusal.isEmpty
                    ? "the header changed before qemu-img stopped; the old one is saved in \(file) (imgtool undo puts it back)"
                    : "qemu-img changed the image before it stopped; \(b.refusal), so imgtool undo will refuse")
            } else {
                notes.append("the header changed before qemu-img stopped; the old one is in \(HeaderBackup.pendingFile(for: held.stat)) (imgtool undo puts it back)")
            }
        }
        if target.reserved { notes.append(removeReserved(target)) }
        return notes.joined(separator: "; ")
    }

    /// Removes the file imgtool created, only if the path still names that very file (device and inode).
    static func removeReserved(_ target: Target) -> String {
        guard target.reserved else { return "" }
        guard let now = FileIdentity.of(path: target.path), now.device == target.identity.device, now.inode == target.identity.inode else {
            return "\(target.path) no longer names the file imgtool created; left alone"
        }
        return Sys.unlink(target.path) == 0 ? "the half-made \(target.path) was removed" : "\(target.path) could not be removed (\(Errno(rawValue: errno).description))"
    }

    /// Nil when the path still names the file that was changed; else the truth in words.
    static func moved(_ target: Target) -> String? {
        let now = FileIdentity.of(path: target.path)
        if let now, now.device == target.identity.device, now.inode == target.identity.inode { return nil }
        let whereNow = Sys.readlink("/proc/self/fd/\(target.descriptor.rawValue)").flatMap { $0.isEmpty ? nil : $0 } ?? "?"
        let other = now.map { "another file (device \($0.device), inode \($0.inode)), which imgtool did not touch" } ?? "nothing"
        return "the change was made to the file imgtool checked, which is now \(whereNow.hasSuffix(" (deleted)") ? "deleted" : "at " + whereNow); the name now names \(other)"
    }

    /// The dry-run text: the checks and the exact command lines, the held image shown as their standard input.
    public static func describe(_ plan: Plan, qemuImg: QemuImg) -> String {
        var lines = plan.checks.map { "checked: " + $0 }
        if let save = plan.save, save.repair != nil, let path = plan.target {
            lines.append("would save every byte the repair may rewrite of \(path) to \(HeaderBackup.directoryShown)")
        } else if plan.save != nil, let path = plan.target {
            lines.append("would save the header of \(path) to \(HeaderBackup.directoryShown)")
            if let held = plan.held, let note = HeaderBackup.undoWarning(held) { lines.append(note) }
        }
        let input = plan.target.map { " < " + Shell.quote($0) } ?? ""
        lines += plan.commands.map { qemuImg.commandLine($0) + input }
        // The checks name files: each line is shown escaped, so none can hold a raw escape or forge a line.
        return lines.map(Untrusted.shown).joined(separator: "\n")
    }
}
