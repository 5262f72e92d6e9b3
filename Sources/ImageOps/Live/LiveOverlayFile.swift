import QCow2
import SystemPackage

import Glibc

/// The overlay file a live snapshot hands to QEMU, made by qemu-img through a descriptor held from its exclusive
/// creation on: qemu-img writes this very file (as its standard input), whatever the name names by then, and nothing
/// that appears at the name in between is overwritten. Shared by the QMP and the HMP paths.
final class LiveOverlayFile {
    /// The name as the user gave it.
    let target: String
    /// The new file, by device and inode: QEMU must end up with this one open.
    let key: FileKey
    private let fd: Int32

    private init(target: String, key: FileKey, fd: Int32) { self.target = target; self.key = key; self.fd = fd }
    deinit { Glibc.close(fd) }

    /// Creates `target` exclusively and has qemu-img write `create` into it. The caller holds the signal guard.
    static func make(_ target: String, create: QemuImgCommand, qemuImg: QemuImg) async throws(LiveError) -> LiveOverlayFile {
        let fd = Sys.open(target, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let why = errno == EEXIST ? "already exists and imgtool does not overwrite" : "cannot be created (\(errnoText()))"
            throw .refused(path: target, reason: why, hint: errno == EEXIST ? "choose another name" : nil)
        }
        guard let made = FileIdentity.of(path: "/proc/self/fd/\(fd)") else {
            Glibc.close(fd)
            throw .failed(path: target, "was created but cannot be examined")
        }
        let file = LiveOverlayFile(target: target, key: FileKey(made), fd: fd)
        do {
            _ = try await qemuImg.run(create, stdin: FileDescriptor(rawValue: fd))
        } catch {
            file.remove()
            if let sig = ChildGuard.interruption {
                throw .interrupted(path: target, signal: sig, detail: "qemu-img was stopped; the half-made file was removed and QEMU was not asked anything")
            }
            throw .failed(path: target, error.description)
        }
        return file
    }

    /// Removes the new file, only while its name still names it.
    func remove() {
        if let now = FileIdentity.of(path: target), FileKey(now) == key { Sys.unlink(target) }
    }
}
