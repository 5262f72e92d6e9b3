import QCow2

/// An error whose description is a complete message for the user (it names the file and the field), so the CLI
/// prints it as `imgtool: error: …` and exits 1.
public protocol ReportableError: Error, CustomStringConvertible {}

extension ImageFile.Error: ReportableError {}
extension QCow2Header.Error: ReportableError {}
extension ImageInfo.Error: ReportableError {}
extension GuestDisk.Error: ReportableError {}
