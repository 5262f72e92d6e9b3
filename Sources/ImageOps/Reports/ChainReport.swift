import QCow2

/// The chain as the CLI shows it: problems with the commands that would fix them, as JSON or as a tree.
public struct ChainReport: Sendable {
    /// The image asked about, as given.
    public var image: String
    /// The chain as followed.
    public var chain: BackingChain
    /// For each problem (same order), the commands that would fix it.
    public var suggestions: [[String]]

    /// Builds the report and looks for fixes. Candidates are searched near the image that names the lost file.
    public init(image: String, chain: BackingChain) {
        self.image = image
        self.chain = chain
        self.suggestions = chain.problems.map { ChainReport.suggest(for: $0, in: chain) }
    }

    static func suggest(for p: BackingChain.Problem, in chain: BackingChain) -> [String] {
        guard p.layer < chain.layers.count else { return [] }
        let owner = chain.layers[p.layer].filename
        let format = chain.layers[p.layer].format
        func fix(_ target: String, placeholder: Bool = false, _ extra: [String] = []) -> String {
            Repoint.command(owner, format: format, resolved: p.resolved, to: target, placeholder: placeholder, extra: extra)
        }
        switch p.kind {
        case .missing, .unreadable, .notAnImage, .invalidHeader:
            let found = Candidates.sameName(as: p.resolved, near: owner)
            if found.isEmpty { return [fix("NEW-PATH", placeholder: true)] }
            return found.map { fix($0) }
        case .noFormat:
            // Only qcow2 records any backing format; QED records "raw" alone, qcow v1 none.
            guard format == .qcow2 || (format == .qed && chain.layers.count > p.layer + 1 && chain.layers[p.layer + 1].format == .raw) else { return [] }
            return [fix(p.resolved)]
        case .formatMismatch:
            guard Repoint.canRewrite(format) else { return [] }
            return [fix(p.resolved, ["--force"])]
        case .loop:
            guard Repoint.canRewrite(format) else { return [] }
            return [fix("CORRECT-BASE", placeholder: true)]
        case .protocol, .tooDeep:
            return []
        }
    }


}

/// Looking for where a lost backing file went.
package enum Candidates {
    /// Files called like `lost` in the naming image's folder, its parent and the current folder, two levels down.
    package static func sameName(as lost: String, near owner: String) -> [String] {
        let name = BackingPath.fileName(lost)
        // Work from absolute folders: "img1.cow" in the current folder still has a parent to look in.
        let ownerDir = BackingPath.directory(Paths.absolute(owner))
        var roots = [ownerDir, BackingPath.directory(ownerDir), "."]
        roots = roots.reduce(into: []) { acc, r in if !acc.contains(r) { acc.append(r) } }
        var found: [String] = []
        var seen = Set<FileKey>()
        for root in roots where root != "/" {
            Directory.walk(root, maxDepth: 2, limit: 20_000) { e in
                guard !e.isDirectory, e.name == name, e.path != lost,
                      let id = FileIdentity.of(path: e.path), id.kind == .regular,
                      seen.insert(FileKey(id)).inserted else { return }
                found.append(e.path)
            }
        }
        return found.sorted()
    }
}
