import QCow2

/// `imgtool space`: the chain's ledger and, for each layer, the other images that use it as backing (found as a
/// commit's refusal finds them: the folders of the chain's layers, and `--store DIR` to any depth).
public struct SpaceReport: Sendable {
    /// The ledger.
    public var ledger: SpaceLedger
    /// For each layer, top first: paths of images outside the chain backed by it.
    public var dependents: [[String]]

    /// Reads the chain below `image`, every layer's map, and the dependents.
    public static func read(_ image: String, store: String?) throws(LayerSpace.Error) -> SpaceReport {
        let ledger = try SpaceLedger.read(image)
        return SpaceReport(ledger: ledger, dependents: dependents(of: ledger.layers.map(\.filename), store: store))
    }

    /// Images outside the chain whose backing file is one of `layers`, per layer.
    public static func dependents(of layers: [String], store: String?) -> [[String]] {
        var index: [FileKey: Int] = [:]
        for (i, path) in layers.enumerated() {
            if let id = FileIdentity.of(path: path) { index[FileKey(id)] = index[FileKey(id)] ?? i }
        }
        var found = [[String]](repeating: [], count: layers.count)
        var folders = Set(layers.map { BackingPath.directory(Paths.absolute($0)) })
        func look(_ root: String, depth: Int) {
            Directory.walk(root, maxDepth: depth, limit: 100_000) { e in
                guard !e.isDirectory, let id = FileIdentity.of(path: e.path), index[FileKey(id)] == nil,
                      let other = try? ImageInfo.read(e.path), let name = other.backingFilename, !BackingPath.isProtocol(name),
                      let below = FileIdentity.of(path: BackingPath.resolve(name, relativeTo: e.path)),
                      let i = index[FileKey(below)] else { return }
                if !found[i].contains(e.path) { found[i].append(e.path) }
            }
        }
        if let store { look(store, depth: 64); folders.remove(Paths.absolute(store)) }
        for folder in folders.sorted() { look(folder, depth: 0) }
        return found.map { $0.sorted() }
    }
}
