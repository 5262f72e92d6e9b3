/// The command line as the kernel passed it. `CommandLine.arguments` decodes each word as UTF-8 with U+FFFD in place
/// of a byte that is not, so a file named `caf\xe9.qcow2` (Latin-1) could not be named at all: it read as another
/// name, "no such file". Each word is decoded losslessly instead (see `PathBytes`), so a path argument gives the
/// kernel and qemu-img back its exact bytes; options and numbers are ASCII and read as before.
extension CommandLine {
    /// `arguments`, each word decoded with `String(pathBytes:)`.
    static var pathArguments: [String] {
        (0..<Int(argc)).map { i in unsafeArgv[i].map { String(pathCString: $0) } ?? "" }
    }
}
