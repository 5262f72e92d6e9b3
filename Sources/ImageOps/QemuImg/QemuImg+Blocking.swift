import QCow2
import SystemPackage

import Glibc

extension QemuImg {
    /// Runs `command` on the calling thread and returns its standard output: `posix_spawn`, both outputs read through
    /// pipes with `poll`, `waitpid`. No concurrency runtime and no helper threads: for `fix-backing`, whose qemu-img
    /// takes a few milliseconds, swift-subprocess's threads, event loop and run-time generic metadata cost more CPU
    /// than the checks (`strace -c`: 10 `clone3`; callgrind: 2.8 M instructions instantiating types). The same
    /// contract as `run`: `stdin` is the held image as fd 0, a failure carries the status and the whole stderr, and a
    /// SIGINT, SIGTERM or SIGHUP to us stops qemu-img (`ChildGuard`), the caller asking `ChildGuard.interruption`.
    @discardableResult
    public func runBlocking(_ command: QemuImgCommand, stdin: FileDescriptor?) throws(Error) -> String {
        let line = commandLine(command)
        let result: (status: Int32, stdout: [UInt8], stderr: [UInt8])
        do { result = try Self.spawnAndWait(path, command.arguments, stdin: stdin?.rawValue) } catch {
            ChildGuard.track(0)
            throw .couldNotRun(commandLine: line, reason: error.description)
        }
        ChildGuard.track(0)
        let status = result.status
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import (they are macros).
        if status & 0x7f == 0 {
            let code = (status >> 8) & 0xff
            if code == 0 { return String(pathBytes: result.stdout) }
            throw .failed(commandLine: line, status: code, stderr: String(pathBytes: result.stderr))
        }
        throw .couldNotRun(commandLine: line, reason: "killed by signal \(status & 0x7f)")
    }

    /// Starts `executable` with `arguments` (their exact bytes), `stdin` as its fd 0 (else /dev/null), its stdout
    /// and stderr into pipes, and every other descriptor of ours closed in it; tells `ChildGuard` its PID; reads
    /// both pipes to their end (at most 16 MiB and 1 MiB are kept, as `run` keeps) and reaps it.
    static func spawnAndWait(_ executable: String, _ arguments: [String], stdin: Int32?) throws(Errno) -> (status: Int32, stdout: [UInt8], stderr: [UInt8]) {
        // pipe2 is not imported: pipe, then close-on-exec set on each end. No other thread of ours spawns meanwhile
        // (this path runs without the concurrency runtime), so no child can inherit them in between.
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0 else { throw Errno(rawValue: errno) }
        guard pipe(&errPipe) == 0 else {
            let e = errno
            close(outPipe[0]); close(outPipe[1])
            throw Errno(rawValue: e)
        }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // Nothing of ours but these three reaches qemu-img: ours are opened close-on-exec, and any descriptor that
        // is not (one we inherited) is closed in the child (`addclosefrom_np` is not imported).
        for fd in inheritableDescriptors() where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with default signal handling and nothing blocked (ChildGuard's handler is ours only).
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let words = [executable] + arguments
        var argv: [UnsafeMutablePointer<CChar>?] = words.map { word in
            (word.pathBytes + [0]).withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { $0.baseAddress.flatMap { strdup($0) } }
            }
        }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = executable.withPathCString { path in posix_spawn(&pid, path, &actions, &attributes, argv, environ) }
        close(outPipe[1])
        close(errPipe[1])
        guard spawned == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw Errno(rawValue: spawned)
        }
        ChildGuard.track(pid)
        var out: [UInt8] = [], err: [UInt8] = []
        let status = drainAndReap(pid, outPipe[0], into: &out, limit: 16 << 20, errPipe[0], into: &err, limit: 1 << 20)
        close(outPipe[0])
        close(errPipe[0])
        return (status, out, err)
    }

    /// Our descriptors without close-on-exec, from `/proc/self/fd`.
    private static func inheritableDescriptors() -> [Int32] {
        guard let d = opendir("/proc/self/fd") else { return [] }
        defer { closedir(d) }
        let own = dirfd(d)
        var found: [Int32] = []
        while let ent = readdir(d) {
            guard let fd = Int32(Directory.name(ent)), fd != own else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0, flags & FD_CLOEXEC == 0 { found.append(fd) }
        }
        return found
    }

    /// Reads both pipes until each ends or the child has ended and nothing more is waiting in them, keeping at
    /// most `limit` bytes of each (the rest is read and dropped, so the child never blocks on a full pipe), and reaps
    /// the child; returns its wait status. A process the child left behind may hold the pipes open (a wrapper
    /// script's `sleep`): once the child itself is reaped, what is buffered is read and the rest not waited for.
    private static func drainAndReap(_ pid: pid_t, _ a: Int32, into aBytes: inout [UInt8], limit aLimit: Int,
                                     _ b: Int32, into bBytes: inout [UInt8], limit bLimit: Int) -> Int32 {
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 65536)
        var status: Int32 = 0
        var reaped = false
        while fds.contains(where: { $0.fd >= 0 }) {
            let n = poll(&fds, nfds_t(fds.count), reaped ? 0 : 100)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if n == 0 {
                if reaped { break }
                // Nothing to read for a while: has the child ended?
                if waitpid(pid, &status, WNOHANG) == pid { reaped = true }
                continue
            }
            for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
                let got = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if got < 0, errno == EINTR { continue }
                guard got > 0 else {
                    // End of file (or an error): this pipe is done; poll skips a negative descriptor.
                    fds[i].fd = -1
                    continue
                }
                if i == 0 {
                    aBytes.append(contentsOf: buffer[..<min(got, max(0, aLimit - aBytes.count))])
                } else {
                    bBytes.append(contentsOf: buffer[..<min(got, max(0, bLimit - bBytes.count))])
                }
            }
        }
        if !reaped {
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        }
        return status
    }
}
