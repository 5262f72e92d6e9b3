import QCow2
import Subprocess
import Synchronization
import SystemPackage

import Glibc

/// The qemu-img binary we run: found from `--qemu-img`, `IMGTOOL_QEMU_IMG`, or PATH.
public struct QemuImg: Sendable {
    /// The path we run.
    public var path: String

    /// Why running qemu-img did not work.
    public enum Error: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
        /// No qemu-img where we looked.
        case notFound(String)
        /// It ran and failed: its exit status and its whole stderr.
        case failed(commandLine: String, status: Int32, stderr: String)
        /// It could not be started, or ended by a signal or our timeout.
        case couldNotRun(commandLine: String, reason: String)

        public var description: String {
            switch self {
            case .notFound(let where_):
                return "qemu-img not found (\(where_)); install qemu-utils or pass --qemu-img PATH"
            case .failed(let cmd, let status, let stderr):
                let text = stderr.hasSuffix("\n") ? String(stderr.dropLast()) : stderr
                return "qemu-img failed (exit \(status)): \(cmd)\n\(text)"
            case .couldNotRun(let cmd, let reason):
                return "qemu-img did not complete (\(reason)): \(cmd)"
            }
        }

        public var headline: String {
            if case .failed(let cmd, let status, _) = self { return "qemu-img failed (exit \(status)): \(cmd)" }
            return description
        }

        /// qemu-img's own stderr, line by line (it prints file names raw: each line is shown escaped, indented).
        public var details: [String] {
            guard case .failed(_, _, let stderr) = self else { return [] }
            return stderr.split(separator: "\n").map(String.init)
        }
    }

    /// Finds qemu-img: an explicit path first, then `IMGTOOL_QEMU_IMG`, then PATH.
    public static func locate(_ explicit: String?) throws(Error) -> QemuImg {
        if let explicit, !explicit.isEmpty {
            guard Sys.access(explicit, X_OK) == 0 else { throw .notFound("--qemu-img \(explicit) is not executable") }
            return QemuImg(path: explicit)
        }
        if let env = getenv("IMGTOOL_QEMU_IMG").map({ String(pathCString: $0) }), !env.isEmpty {
            guard Sys.access(env, X_OK) == 0 else { throw .notFound("IMGTOOL_QEMU_IMG=\(env) is not executable") }
            return QemuImg(path: env)
        }
        let pathVar = getenv("PATH").map { String(pathCString: $0) } ?? "/usr/bin:/bin"
        for dir in pathVar.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/qemu-img"
            if Sys.access(candidate, X_OK) == 0 { return QemuImg(path: candidate) }
        }
        throw .notFound("not on PATH")
    }

    /// The exact command line for `command`.
    public func commandLine(_ command: QemuImgCommand) -> String { command.commandLine(qemuImg: path) }

    /// Runs `command` and returns its standard output. With `passThroughOutput` the child writes straight to our
    /// terminal (qemu-img's progress bar). `stdin` is the held image the command names as `/proc/self/fd/0`.
    /// A failure carries qemu-img's status and stderr whole. SIGINT, SIGTERM or SIGHUP to us while it runs stops it
    /// (see `ChildGuard`); the caller asks `ChildGuard.interruption` and cleans up.
    @discardableResult
    public func run(_ command: QemuImgCommand, stdin: FileDescriptor? = nil, passThroughOutput: Bool = false) async throws(Error) -> String {
        let line = commandLine(command)
        let options: PlatformOptions = {
            var o = PlatformOptions()
            o.teardownSequence = [.send(signal: .terminate, allowedDurationToNextStep: .milliseconds(500))]
            return o
        }()
        let executable = path
        let arguments = command.arguments
        do {
            let result = try await Self.spawn(executable, arguments, stdin: stdin, passThroughOutput: passThroughOutput, options: options)
            ChildGuard.track(0)
            switch result.status {
            case .exited(let code) where command.acceptedStatuses.contains(code): return result.stdout
            case .exited(let code): throw Error.failed(commandLine: line, status: code, stderr: result.stderr)
            case .signaled(let sig): throw Error.couldNotRun(commandLine: line, reason: "killed by signal \(sig)")
            }
        } catch let e as Error {
            ChildGuard.track(0)
            throw e
        } catch {
            ChildGuard.track(0)
            throw .couldNotRun(commandLine: line, reason: "\(error)")
        }
    }

    /// Starts qemu-img and waits for it, telling `ChildGuard` its PID so a signal to us reaches it.
    private static func spawn(_ executable: String, _ arguments: [String], stdin: FileDescriptor?, passThroughOutput: Bool, options: PlatformOptions) async throws -> RunOutcome {
        // The held image stays ours: the child gets a copy of the descriptor as its fd 0.
        if let stdin {
            return try await spawn(executable, arguments, input: .fileDescriptor(stdin, closeAfterSpawningProcess: false), passThroughOutput: passThroughOutput, options: options)
        }
        return try await spawn(executable, arguments, input: .none, passThroughOutput: passThroughOutput, options: options)
    }

    private static func spawn<Input: InputProtocol>(_ executable: String, _ arguments: [String], input: Input, passThroughOutput: Bool, options: PlatformOptions) async throws -> RunOutcome {
        if passThroughOutput {
            let r = try await Subprocess.run(
                .path(FilePath(pathString: executable)), arguments: Arguments(arguments.map(argvBytes)),
                platformOptions: options, input: input,
                output: .currentStandardOutput, error: .bytes(limit: 1 << 20)
            ) { execution in ChildGuard.track(execution.processIdentifier.value) }
            return RunOutcome(status: r.terminationStatus, stdout: "", stderr: String(pathBytes: r.standardError))
        }
        let r = try await Subprocess.run(
            .path(FilePath(pathString: executable)), arguments: Arguments(arguments.map(argvBytes)),
            platformOptions: options, input: input,
            output: .bytes(limit: 16 << 20), error: .bytes(limit: 1 << 20)
        ) { execution in ChildGuard.track(execution.processIdentifier.value) }
        return RunOutcome(
            status: r.terminationStatus, stdout: String(pathBytes: r.standardOutput),
            stderr: String(pathBytes: r.standardError))
    }
}

/// A word of qemu-img's argv as the exact bytes of the name it may hold (see `PathBytes`), NUL-terminated:
/// swift-subprocess hands the raw form to `strdup`, which reads to the first NUL.
private func argvBytes(_ word: String) -> [UInt8] {
    word.pathBytes + [0]
}

private struct RunOutcome: Sendable {
    var status: TerminationStatus
    var stdout: String
    var stderr: String
}

/// Stops the running qemu-img when we are interrupted, and remembers the signal so the change can be cleaned up
/// before we exit: a terminal's Ctrl-C reaches the child anyway (same process group), but a SIGINT or SIGTERM sent
/// to imgtool alone must not leave qemu-img writing behind us, nor its reserved file or save behind it.
package enum ChildGuard {
    static let child = Atomic<Int32>(0)
    static let signalled = Atomic<Int32>(0)
    static let installed = Atomic<Bool>(false)
    /// The signals (a bit each) that were ignored when the guard was installed: they stay ignored, and go back to
    /// ignored on uninstall. `nohup` ignores SIGHUP so that a logout does not stop the command; a background job
    /// of a script has SIGINT ignored.
    static let ignored = Atomic<UInt32>(0)
    static let guarded: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// The signal that interrupted us, or nil.
    package static var interruption: Int32? {
        let s = signalled.load(ordering: .sequentiallyConsistent)
        if s != 0 { return s }
        let t = simulated?.signal.load(ordering: .sequentiallyConsistent) ?? 0
        return t == 0 ? nil : t
    }

    /// A signal recorded for one task only, as the handler records a real one. Tests use it: a real signal, or a
    /// store into `signalled`, reaches every test running beside them in the same process.
    package final class Simulated: Sendable {
        /// The signal "received" (0: none yet).
        package let signal = Atomic<Int32>(0)
        /// A fresh one, nothing received.
        package init() {}
    }

    /// The current task's simulated signal, if a test bound one (`ChildGuard.$simulated.withValue`).
    @TaskLocal package static var simulated: Simulated?

    /// Records the running child (0: none). A signal that came before the child was known stops it now.
    static func track(_ pid: Int32) {
        child.store(pid, ordering: .sequentiallyConsistent)
        if pid > 0, interruption != nil { kill(pid, SIGTERM) }
    }

    /// From here on SIGINT, SIGTERM and SIGHUP stop the child and are remembered instead of ending us at once; one
    /// that was ignored stays ignored.
    package static func install() {
        guard !installed.exchange(true, ordering: .sequentiallyConsistent) else { return }
        let handler: @convention(c) (Int32) -> Void = { sig in
            // Only async-signal-safe work here: an atomic store and kill. A second signal ends us at once.
            if ChildGuard.signalled.exchange(sig, ordering: .sequentiallyConsistent) != 0 { _exit(128 + sig) }
            let pid = ChildGuard.child.load(ordering: .sequentiallyConsistent)
            if pid > 0 { kill(pid, SIGTERM) }
        }
        signalled.store(0, ordering: .sequentiallyConsistent)
        var ignoredNow: UInt32 = 0
        for sig in guarded {
            var old = sigaction()
            guard sigaction(sig, nil, &old) == 0 else { continue }
            if unsafeBitCast(old.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) {
                ignoredNow |= 1 << UInt32(sig)
            } else {
                signal(sig, handler)
            }
        }
        ignored.store(ignoredNow, ordering: .sequentiallyConsistent)
    }

    /// Back to the default: once the change is settled a signal ends us at once again.
    package static func uninstall() {
        guard installed.exchange(false, ordering: .sequentiallyConsistent) else { return }
        let ignoredThen = ignored.load(ordering: .sequentiallyConsistent)
        for sig in guarded { signal(sig, ignoredThen & (1 << UInt32(sig)) != 0 ? SIG_IGN : SIG_DFL) }
    }
}
