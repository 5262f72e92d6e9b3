/// # QCow2: reading disk images, and only reading
///
/// Everything imgtool knows about an image file without changing it: the format by its magic (`Formats`), the qcow2
/// header and its extensions (`Header`), backing chains followed as QEMU follows them (`Chain`), the disk a guest
/// sees through a whole chain (`GuestDisk`), partition tables on that disk (`Partitions`) and the checks for images
/// from someone you do not trust (`Verify`). `IO` holds the few system calls underneath: `pread` on a descriptor
/// opened read-only, file identity, a bounded directory walk.
///
/// This module never writes a file, never starts a process, never prints and never reads argv: it returns values
/// and typed errors whose descriptions name the file, the offset and the field. Every number read from a file is
/// treated as hostile until it has been checked (bounds, overflow, loops, sizes before allocation).

/// An error whose description is a complete message for the user (it names the file and the field), so the CLI
/// prints it as `imgtool: error: …` and exits 1.
public protocol ReportableError: Error, CustomStringConvertible {
    /// The message's first line. The CLI shows it with every control character escaped, so a file name holding a
    /// newline cannot start a line of its own.
    var headline: String { get }
    /// Lines that follow it (a hint, another program's output), each shown escaped and indented.
    var details: [String] { get }
    /// The process's exit code for it: 1, or 128 + the signal for an interrupted change.
    var exitCode: Int32 { get }
}

extension ReportableError {
    /// The whole description, by default: one line.
    public var headline: String { description }
    /// None, by default.
    public var details: [String] { [] }
    /// 1, by default: the contract's "could not do it".
    public var exitCode: Int32 { 1 }
}

extension ImageFile.Error: ReportableError {}
extension QCow2Header.Error: ReportableError {}
extension ImageInfo.Error: ReportableError {}
extension GuestDisk.Error: ReportableError {}

/// A broken chain is the contract's "found problems" (exit 2, as `chain` exits); the rest could not be read (1).
extension LayerSpace.Error: ReportableError {
    public var exitCode: Int32 {
        if case .brokenChain = self { return 2 }
        return 1
    }
}
