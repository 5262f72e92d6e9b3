import QCow2

/// Why a reading command could not answer. Reading changes nothing, so these never say "nothing was changed" as a
/// refused change does; each names the file and what to run instead where there is something.
public enum ReadError: Swift.Error, CustomStringConvertible, Sendable, Equatable, ReportableError {
    /// `offset IMAGE N` where the table has no entry N; `have` lists the numbers it has.
    case noPartition(path: String, number: Int, have: [Int])
    /// `scan DIR` on something that is not a folder.
    case notAFolder(path: String)

    public var description: String { ([headline] + details.map { "  " + $0 }).joined(separator: "\n") }

    /// The refusal, one line.
    public var headline: String {
        switch self {
        case .noPartition(let path, let number, let have):
            let list = have.isEmpty ? "it has no partitions" : "it has " + have.map(String.init).joined(separator: ", ")
            return "\(path): has no partition \(number) (\(list))"
        case .notAFolder(let path):
            return "\(path): is not a folder; scan looks through a folder of images"
        }
    }

    /// What to run instead, a line of its own (the CLI shows a headline with its newlines escaped).
    public var details: [String] {
        switch self {
        case .noPartition(let path, _, _): return ["instead: imgtool partitions \(Shell.operand(path))"]
        case .notAFolder(let path): return ["instead: imgtool chain \(Shell.operand(path))"]
        }
    }
}

extension PartitionReport {
    /// The byte offset of partition `number`, for `mount -o loop,offset=`. Every entry the table lists has one, an
    /// extended container included (sfdisk gives it too).
    public func offset(of number: Int) throws(ReadError) -> UInt64 {
        guard let p = table.partition(number) else {
            throw .noPartition(path: image, number: number, have: table.partitions.map(\.number))
        }
        return p.offset(table.sectorSize)
    }
}
