import QCow2

import Glibc

/// An internal snapshot whose guest view a change alters: a qcow2 snapshot reads every cluster it does not hold from
/// the image's backing file, as the active view does, so whatever changes what that backing file reads (a commit
/// into it, a flatten, a safe rebase onto another file) changes the snapshot too, and qemu-img keeps only the
/// active view's data.
public struct AffectedSnapshot: Sendable, Equatable {
    /// The image that holds the snapshot, as the chain names it.
    public var image: String
    /// The snapshot.
    public var snapshot: QCow2Snapshot
}

extension Operations {
    /// The internal snapshots of `layers`, the images whose unallocated clusters will read something else after the
    /// change (commit of layer 0 into layer j: layers 0..<j; flatten and safe rebase --onto: layer 0). A layer's own
    /// snapshots read only through the layers below it, so the layer a commit writes into is not among them.
    public static func snapshotsAffected(_ layers: ArraySlice<ImageInfo>) -> [AffectedSnapshot] {
        layers.flatMap { layer in layer.snapshots.map { AffectedSnapshot(image: layer.filename, snapshot: $0) } }
    }

    /// What a snapshot check found: lines for the plan's checks, and warnings to print once the change is made.
    public struct SnapshotCheck: Sendable, Equatable {
        /// One line each, for the dry run's list of checks.
        public var checks: [String] = []
        /// Printed as `imgtool: warning:` after the change.
        public var warnings: [String] = []

        /// A check with these lines (none: nothing found).
        public init(checks: [String] = [], warnings: [String] = []) { (self.checks, self.warnings) = (checks, warnings) }
    }

    /// Refuses a change that alters what `affected` read, naming each snapshot and what to do first; with `force`
    /// the change goes on and says so (a check line, and a warning printed after the change). `change` says in
    /// words what happens to them ("after a flatten they read zeros there").
    public static func checkSnapshots(_ affected: [AffectedSnapshot], change: String, force: Bool) throws(ChangeError) -> SnapshotCheck {
        guard !affected.isEmpty else { return SnapshotCheck(checks: ["no image whose view changes has internal snapshots"]) }
        let one = affected.count == 1
        if !force {
            // The error names the first image; the text names it again only when other images follow.
            throw .refused(path: affected[0].image,
                           reason: snapshotText(affected, first: false) + ", which read\(one ? "s" : "") the clusters \(one ? "it does" : "they do") not hold from the backing file; \(change), and qemu-img keeps only the active view",
                           hint: snapshotHint(affected) + "; or pass --force to go on and let \(one ? "it" : "them") change")
        }
        let text = snapshotText(affected, first: true)
        return SnapshotCheck(checks: ["--force: \(text) will read other data afterwards (\(change))"],
                             warnings: ["--force: \(text) now read\(one ? "s" : "") other data than when \(one ? "it was" : "they were") taken (\(change))"])
    }

    /// A note for the changes that keep what the snapshots read (fix-backing, `rebase --unsafe`): the user states the
    /// new backing file holds the same data, for the snapshots as for the active view; said, never refused.
    public static func noteSnapshots(_ affected: [AffectedSnapshot]) -> SnapshotCheck {
        guard !affected.isEmpty else { return SnapshotCheck() }
        let text = snapshotText(affected, first: true)
        let one = affected.count == 1
        return SnapshotCheck(checks: ["\(text) will read from the new backing file too (the same data, as the change states)"],
                             warnings: ["\(text) read\(one ? "s" : "") the clusters \(one ? "it does" : "they do") not hold from the new backing file too: it must hold the same data for \(one ? "it" : "them") as for the active view"])
    }

    static func requireNoSnapshots(_ affected: [AffectedSnapshot], change: String, force: Bool, _ plan: inout Plan) throws(ChangeError) {
        let found = try checkSnapshots(affected, change: change, force: force)
        plan.checks += found.checks
        plan.warnings += found.warnings
    }

    static func noteSnapshots(_ affected: [AffectedSnapshot], _ plan: inout Plan) {
        let found = noteSnapshots(affected)
        plan.checks += found.checks
        plan.warnings += found.warnings
    }

    /// "a.qcow2 has 2 internal snapshots (ID 1 "s1" taken …; ID 2 …)", per image, joined; with `first` false the
    /// first image's name is left out ("has 2 internal snapshots …"): the message already starts with it.
    static func snapshotText(_ affected: [AffectedSnapshot], first: Bool) -> String {
        var images: [String] = []
        for a in affected where !images.contains(a.image) { images.append(a.image) }
        let parts = images.enumerated().map { i, image in
            let mine = affected.filter { $0.image == image }.map(\.snapshot)
            let listed = mine.prefix(10).map(SnapshotText.describe).joined(separator: "; ")
            let more = mine.count > 10 ? "; and \(mine.count - 10) more" : ""
            return (i == 0 && !first ? "" : image + " ") + "has \(mine.count) internal snapshot\(mine.count == 1 ? "" : "s") (\(listed)\(more))"
        }
        return parts.joined(separator: ", and ")
    }

    /// What to run first: delete each (`qemu-img snapshot -d`), or keep one as an image of its own
    /// (`qemu-img convert -l`: the snapshot's view, read through the backing chain as it is now).
    static func snapshotHint(_ affected: [AffectedSnapshot]) -> String {
        let deletes = affected.prefix(10).map { "qemu-img snapshot -d \(Shell.quote($0.snapshot.id)) \(Shell.operand($0.image))" }
        let first = affected[0]
        let keep = "qemu-img convert -l snapshot.id=\(Shell.quote(first.snapshot.id)) -O qcow2 \(Shell.operand(first.image)) \(Shell.operand(first.image + ".snapshot-" + first.snapshot.id + ".qcow2"))"
        let one = affected.count == 1
        return "delete \(one ? "it" : "them") first (\(deletes.joined(separator: "; "))\(affected.count > 10 ? "; …" : "")), or keep \(one ? "it" : "one") as an image of its own before deleting it (\(keep))"
    }
}

/// Snapshots in words, as `qemu-img snapshot -l` shows them.
public enum SnapshotText {
    /// `1 "s1" (taken 2026-12-03 11:40:51, VM state 0 B)`.
    public static func describe(_ s: QCow2Snapshot) -> String {
        "ID \(s.id) \"\(s.name)\" taken \(date(s.dateSeconds)), VM state \(Sizes.human(s.vmStateSize))"
    }

    /// Local time as qemu-img prints it: `%Y-%m-%d %H:%M:%S`.
    public static func date(_ seconds: UInt32) -> String {
        var t = time_t(seconds)
        var parts = tm()
        guard localtime_r(&t, &parts) != nil else { return "\(seconds)" }
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }

    /// The guest clock as qemu-img prints it: `HH:MM:SS.mmm`.
    public static func clock(_ nanoseconds: UInt64) -> String {
        let secs = nanoseconds / 1_000_000_000
        let ms = (nanoseconds / 1_000_000) % 1000
        func two(_ v: UInt64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(two(secs / 3600)):\(two((secs / 60) % 60)):\(two(secs % 60)).\(ms < 10 ? "00" : ms < 100 ? "0" : "")\(ms)"
    }
}
