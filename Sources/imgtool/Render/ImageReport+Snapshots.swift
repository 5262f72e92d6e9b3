import ImageOps
import QCow2

/// Internal snapshots in human text, as `qemu-img snapshot -l` lists them (ID, tag, VM size, date, VM clock, icount).
extension ImageReport {
    /// The snapshot list: a header line and one line per snapshot, qemu-img's columns. Tags and IDs come from the
    /// image: shown escaped.
    static func snapshotTable(_ snapshots: [QCow2Snapshot]) -> [String] {
        func pad(_ s: String, _ width: Int, left: Bool = true) -> String {
            let n = s.count
            guard n < width else { return s }
            let fill = String(repeating: " ", count: width - n)
            return left ? s + fill : fill + s
        }
        var lines = [pad("ID", 10) + pad("TAG", 17) + pad("VM SIZE", 8, left: false) + pad("DATE", 20, left: false)
                     + pad("VM CLOCK", 13, left: false) + pad("ICOUNT", 11, left: false)]
        for s in snapshots {
            lines.append(pad(Untrusted.shown(s.id), 9) + " " + pad(Untrusted.shown(s.name), 16) + " "
                         + pad(Sizes.human(s.vmStateSize), 8, left: false) + pad(date(s.dateSeconds), 20, left: false)
                         + pad(clock(s.vmClockNanoseconds), 13, left: false) + pad(s.icount.map { "\(Int64(bitPattern: $0))" } ?? "", 11, left: false))
        }
        return lines
    }

    /// One line for the chain tree: each snapshot's ID, tag and date.
    static func snapshotSummary(_ snapshots: [QCow2Snapshot]) -> String {
        let each = snapshots.prefix(8).map { "\(Untrusted.shown($0.id)) \"\(Untrusted.shown($0.name))\" (\(date($0.dateSeconds)), VM \(Sizes.human($0.vmStateSize)))" }
        let more = snapshots.count > 8 ? ", and \(snapshots.count - 8) more" : ""
        return "\(snapshots.count) internal snapshot\(snapshots.count == 1 ? "" : "s"): " + joined(each, ", ") + more
    }

    static func date(_ seconds: UInt32) -> String { SnapshotText.date(seconds) }
    static func clock(_ nanoseconds: UInt64) -> String { SnapshotText.clock(nanoseconds) }
}
