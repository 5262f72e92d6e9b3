import ImageOps
import QCow2

extension StoreSpace {
    /// `"space"` in `scan --space`'s JSON.
    var json: JSON {
        .object([
            ("chains", .array(chains.map { c in
                .object([
                    ("image", .string(c.image)), ("layers", .int(Int64(c.layers))), ("file-size", .uint(c.fileSize)),
                    ("allocated", .uint(c.allocated)), ("shadowed", .uint(c.shadowed)), ("unused", .uint(c.unused)),
                    ("flatten", .object([("file-size", .uint(c.flattenFileSize))])),
                ])
            })),
            ("files", .int(Int64(files))), ("file-size", .uint(fileSize)), ("unused", .uint(unused)), ("unread", .uint(unread)),
            ("reclaimable", .uint(reclaimable)),
            ("unreadable", .array(failures.map { .object([("image", .string($0.image)), ("message", .string($0.message))]) })),
        ])
    }

    /// One line per chain, then the store's totals.
    var human: String {
        let size = Sizes.human
        var lines = ["", "Space, \(chains.count) chain\(chains.count == 1 ? "" : "s"):"]
        for c in chains {
            lines.append("  \(Untrusted.shown(c.image)) (\(c.layers) layer\(c.layers == 1 ? "" : "s")): files \(size(c.fileSize)), "
                         + "shadowed \(size(c.shadowed)), unused \(size(c.unused)); flattened \(size(c.flattenFileSize))")
        }
        for f in failures { lines.append("  \(Untrusted.shown(f.image)): \(Untrusted.shown(f.message))") }
        lines.append("Store: \(files) file\(files == 1 ? "" : "s"), \(size(fileSize)); nothing references \(size(unused)) "
                     + "(leaks, trailing space); layers hold \(size(unread)) that no chain reads; could reclaim \(size(reclaimable)).")
        return lines.joined(separator: "\n")
    }
}
