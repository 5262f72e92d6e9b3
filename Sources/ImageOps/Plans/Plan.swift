import QCow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A change, checked and ready: the checks made (for the user to read) and the qemu-img commands that do it.
public struct Plan: Sendable {
    /// What was checked, one line each.
    public var checks: [String] = []
    /// Commands to run, in order.
    public var commands: [QemuImgCommand] = []
    /// Images whose header is saved before the commands run (header-only changes), for `undo`.
    public var saveHeaders: [String] = []
    /// A file we created exclusively to reserve the name; removed if the commands fail.
    public var reserved: String?
    /// Images to show the chain of after the change.
    public var show: [String] = []
    /// Stream qemu-img's output (its progress bar) to the terminal.
    public var progress = false
}

/// Why a change was refused or failed. Every case names the file.
public enum ChangeError: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
    /// A check failed: nothing was changed.
    case refused(path: String, reason: String, hint: String?)
    /// Another process holds the image.
    case inUse(path: String, holders: String)

    public var description: String {
        switch self {
        case .refused(let path, let reason, let hint):
            return "\(path): \(reason); nothing was changed" + (hint.map { "\n  instead: \($0)" } ?? "")
        case .inUse:
            return ([headline] + details.map { "  " + $0 }).joined(separator: "\n")
        }
    }

    public var headline: String {
        switch self {
        case .refused(let path, let reason, _): return "\(path): \(reason); nothing was changed"
        case .inUse(let path, let holders): return "\(path) is in use by \(holders); nothing was changed (stop it first, then retry)"
        }
    }

    public var details: [String] {
        switch self {
        case .refused(_, _, let hint?): return ["instead: \(hint)"]
        case .refused: return []
        case .inUse(_, let holders):
            // A running QEMU can make the change itself: say so where the user looks first.
            let qemu = holders.contains("qemu-system") || holders.contains("qemu-kvm")
            return qemu ? ["instead: add --live to have the running QEMU make the change through its QMP monitor"] : []
        }
    }
}

/// Builds the plans for each changing command. Every check runs here, before anything is written.
public enum Operations {
    /// Refuses an image another process holds, naming it.
    static func requireNotHeld(_ path: String, _ plan: inout Plan) throws(ChangeError) {
        let use = InUse.check(path)
        if use.isHeld { throw .inUse(path: path, holders: use.summary) }
        plan.checks.append("no process holds \(path)")
    }

    static func readImage(_ path: String, role: String) throws(ChangeError) -> ImageInfo {
        do { return try ImageInfo.read(path) } catch {
            throw .refused(path: path, reason: "\(role) cannot be read: \(error.description)", hint: nil)
        }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Reserves `path` by creating it exclusively (O_EXCL): no other file can appear there between our check and
    /// qemu-img's write, so an existing file is never overwritten.
    static func reserve(_ path: String, dryRun: Bool, _ plan: inout Plan) throws(ChangeError) {
        if exists(path) {
            throw .refused(path: path, reason: "already exists and imgtool does not overwrite", hint: "choose another name, or remove it yourself")
        }
        plan.checks.append("\(path) does not exist yet")
        if dryRun { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .refused(path: path, reason: "cannot be created (errno \(errno))", hint: nil)
        }
        close(fd)
        plan.reserved = path
    }

    /// How to write a new backing name.
    public enum LinkStyle: Sendable { case keep, relative, absolute }
}
