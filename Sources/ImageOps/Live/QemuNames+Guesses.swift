import QCow2

extension QemuNames {
    /// True when the relative `name` led to `path` only through the launch folder (`PWD` of a daemonized QEMU),
    /// which is a hint from an environment anyone starting QEMU sets: a launcher that changed folder without
    /// updating `PWD` leaves the shell's folder there.
    func isGuess(_ name: String, path: String) -> Bool {
        !name.hasPrefix("/") && !path.hasPrefix(folders[0] + "/")
    }

    /// Drops the claims made through the launch-folder hint on a file that more layers claim than QEMU holds
    /// descriptors of: the name led there to a file QEMU has open for another layer, not to this layer's file (a
    /// stale `PWD` holding a file of the same name that QEMU also has open). Such a layer is then paired with the
    /// files no layer claims, as a moved one is; an overlay or commit aimed at the other layer's file never lands on
    /// this disk. `guessed` holds (device index, layer index) pairs.
    static func dropUnbackedGuesses(_ devices: inout [LiveDevice], guessed: [(Int, Int)], descriptors: [FileKey: Int]) {
        guard !guessed.isEmpty else { return }
        var claims: [FileKey: Int] = [:]
        for d in devices { for l in d.layers { if let k = l.key { claims[k, default: 0] += 1 } } }
        for (d, l) in guessed where d < devices.count && l < devices[d].layers.count {
            guard let k = devices[d].layers[l].key, claims[k, default: 0] > descriptors[k, default: 0] else { continue }
            devices[d].layers[l].key = nil
            devices[d].layers[l].pathCurrent = false
            devices[d].layers[l].currentPath = nil
        }
    }
}
