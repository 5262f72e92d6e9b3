import ImageOps
import QCow2

/// The changing commands' work, shared by the ArgumentParser commands and the start-up fast path: `fix-backing` is
/// the one people run in loops and scripts, and ArgumentParser's start-up (3.5–5 ms of reflection) cost more than all
/// its checks together. Both paths call these functions, so they print the same bytes and exit the same way.
public enum ChangeCommands {
    /// `--dry-run` and `--qemu-img`, which every changing command takes.
    public struct Options: Sendable, Equatable {
        /// Run every check and print the exact command line; change nothing.
        public var dryRun: Bool
        /// The qemu-img binary, when given.
        public var qemuImg: String?

        /// The options as given.
        public init(dryRun: Bool, qemuImg: String?) {
            self.dryRun = dryRun
            self.qemuImg = qemuImg
        }
    }

    /// Prints the plan (dry run) or runs it, then shows the chain of what changed.
    public static func carryOut(_ plan: Plan, _ options: Options) async throws {
        if options.dryRun { return try describe(plan, options) }
        let tool = try QemuImg.locate(options.qemuImg)
        try report(try await Executor.execute(plan, qemuImg: tool), of: plan)
    }

    /// `carryOut` on the calling thread (`Executor.executeBlocking`): `fix-backing` starts no concurrency runtime.
    public static func carryOutBlocking(_ plan: Plan, _ options: Options) throws {
        if options.dryRun { return try describe(plan, options) }
        let tool = try QemuImg.locate(options.qemuImg)
        try report(try Executor.executeBlocking(plan, qemuImg: tool), of: plan)
    }

    /// What a change did: the saves, warnings and notes, then the chain of each image shown.
    static func report(_ outcome: Executor.Outcome, of plan: Plan) throws {
        for saved in outcome.saved { printOut("saved the old header to \(Untrusted.shown(saved)) (imgtool undo puts it back)") }
        for warning in plan.warnings { printError("imgtool: warning: " + Untrusted.shown(warning)) }
        for line in outcome.noUndo { printOut("note: " + Untrusted.shown(line)) }
        for image in plan.show {
            let chain = try BackingChain.follow(image)
            printOut(ChainReport(image: image, chain: chain).human(style: .forStandardOutput()))
        }
    }

    /// The dry run's report: every check passed and the exact command lines. Synchronous, so a dry run never starts
    /// the concurrency runtime's threads.
    public static func describe(_ plan: Plan, _ options: Options) throws {
        let tool = try QemuImg.locate(options.qemuImg)
        // The save folder is one of the checks: a change it would refuse is refused by its dry run too.
        if plan.save != nil, let path = plan.target { try HeaderBackup.checkFolder(for: path) }
        printOut(Executor.describe(plan, qemuImg: tool))
        printOut("dry run: nothing was changed")
    }

    /// What `fix-backing` was asked to do.
    public struct FixBackingRequest: Sendable, Equatable {
        /// The overlays named; empty means the broken ones in the current folder.
        public var images: [String]
        /// The backing file's new path.
        public var to: String
        /// How the new name is written.
        public var style: Operations.LinkStyle
        /// Accept a format or size that differs.
        public var force: Bool
        /// `--dry-run` and `--qemu-img`.
        public var options: Options
        /// `--live`: the running QEMU that holds the image rewrites the name.
        public var live: Bool

        /// The request as given.
        public init(images: [String], to: String, style: Operations.LinkStyle, force: Bool, options: Options, live: Bool = false) {
            (self.images, self.to, self.style, self.force, self.options, self.live) = (images, to, style, force, options, live)
        }
    }

    /// Every check `fix-backing` makes, without changing anything: one plan per image. Synchronous (see `describe`).
    public static func plans(for request: FixBackingRequest) throws -> [Plan] {
        var targets = request.images
        if targets.isEmpty {
            targets = try Operations.brokenOverlays(in: ".", named: request.to)
            if targets.isEmpty {
                throw ChangeError.refused(path: ".", reason: "no image here has a broken backing link naming \(BackingPath.fileName(request.to))",
                                          hint: "imgtool scan . to see every link")
            }
            printOut("found \(targets.count) image\(targets.count == 1 ? "" : "s") with a broken link to \(Untrusted.shown(BackingPath.fileName(request.to))): \(Untrusted.shown(targets.joined(separator: ", ")))")
        }
        var plans: [Plan] = []
        var seen = Set<FileKey>()
        for image in targets {
            let plan = try Operations.fixBacking(image, to: request.to, style: request.style, force: request.force)
            // One file named twice (a link, a repeated name) is changed once: a second change would save the
            // already-changed header over the first save, and undo could no longer put the old one back.
            if let held = plan.held, !seen.insert(FileKey(held.stat)).inserted { continue }
            plans.append(plan)
        }
        return plans
    }

    /// Runs checked plans, each on the calling thread; with no image named, ends with the list of what it fixed.
    public static func execute(_ plans: [Plan], for request: FixBackingRequest) throws {
        for plan in plans { try carryOutBlocking(plan, request.options) }
        if request.images.isEmpty { printOut("fixed: \(Untrusted.shown(plans.flatMap(\.show).joined(separator: ", ")))") }
    }

}
