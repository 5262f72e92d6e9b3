extension LUKSHeader {
    /// `qcrypto_block_luks_check_header` after the strings: the payload and the key slots must not overlap the
    /// header or each other. QEMU does this arithmetic in 32-bit `unsigned int`, which wraps; so does this, or a
    /// header QEMU accepts through a wrap would be refused here (and the other way round).
    static func checkLayout(_ w: ByteWindow, payload: UInt32, keyBytes: UInt32, mkIters: UInt32) -> Problem? {
        let headerSectors: UInt32 = 4096 / 512
        guard payload >= headerSectors else { return Problem(field: "payload_offset", offset: 104, reason: "LUKS payload is overlapping with the header") }
        guard mkIters != 0 else { return Problem(field: "master_key_iterations", offset: 164, reason: "LUKS key iteration count is zero") }
        // cryptsetup's key material size: key bytes × stripes in sectors, rounded up to the header's 8 sectors;
        // the 64-bit result is cut to 32 bits, as QEMU's return type cuts it.
        func sectors(_ stripes: UInt32) -> UInt32 {
            let bytes = UInt64(keyBytes) * UInt64(stripes)
            return UInt32(truncatingIfNeeded: ((bytes + 511) / 512 + 7) & ~7)
        }
        func slot(_ i: Int) -> (active: UInt32, iters: UInt32, start: UInt32, stripes: UInt32) {
            let s = 208 + i * 48
            return (w.u32BE(s) ?? 0, w.u32BE(s + 4) ?? 0, w.u32BE(s + 40) ?? 0, w.u32BE(s + 44) ?? 0)
        }
        for i in 0..<8 {
            let a = slot(i), at = 208 + i * 48
            let len1 = sectors(a.stripes)
            guard a.stripes == 4000 else { return Problem(field: "key slot \(i)", offset: at + 44, reason: "keyslot \(i) is corrupted (stripes \(a.stripes) != 4000)") }
            guard a.active == disabled || a.active == enabled else {
                return Problem(field: "key slot \(i)", offset: at, reason: "keyslot \(i) state (active/disable) is corrupted")
            }
            guard a.active != enabled || a.iters != 0 else { return Problem(field: "key slot \(i)", offset: at + 4, reason: "keyslot \(i) iteration count is zero") }
            guard a.start >= headerSectors else { return Problem(field: "key slot \(i)", offset: at + 40, reason: "keyslot \(i) is overlapping with the LUKS header") }
            guard a.start &+ len1 <= payload else {
                return Problem(field: "key slot \(i)", offset: at + 40, reason: "keyslot \(i) is overlapping with the encrypted payload")
            }
            for j in (i + 1)..<8 {
                let b = slot(j)
                let len2 = sectors(b.stripes)
                if a.start &+ len1 > b.start && b.start &+ len2 > a.start {
                    return Problem(field: "key slot \(i)", offset: at + 40, reason: "keyslots \(i) and \(j) are overlapping in the header")
                }
            }
        }
        return nil
    }

    /// `qcrypto_block_luks_parse_header`: the cipher mode string is `<mode>-<ivgen>[:<hash>]`; every name must be
    /// one QEMU 7.2 knows, in the order QEMU looks them up (so the first complaint is QEMU's).
    static func algorithms(name: [UInt8], mode: [UInt8], hash: [UInt8], keyBytes: UInt32)
        -> Result<(cipher: String, mode: String, ivgen: String, ivgenHash: String?, hash: String), Problem> {
        func bad(_ field: String, _ offset: Int, _ reason: String) -> Result<(cipher: String, mode: String, ivgen: String, ivgenHash: String?, hash: String), Problem> {
            .failure(Problem(field: field, offset: offset, reason: reason))
        }
        guard let dash = mode.firstIndex(of: UInt8(ascii: "-")) else {
            return bad("cipher mode", 40, "unexpected cipher mode string format '\(decodeText(mode))'")
        }
        let modeName = decodeText(mode[..<dash])
        var ivgenBytes = mode[(dash + 1)...]
        var ivHash: String?
        if let colon = ivgenBytes.firstIndex(of: UInt8(ascii: ":")) {
            let h = decodeText(ivgenBytes[(colon + 1)...])
            guard hashes.contains(h) else { return bad("cipher mode", 40, "hash algorithm \(h) not supported") }
            ivHash = h
            ivgenBytes = ivgenBytes[..<colon]
        }
        guard ["ecb", "cbc", "xts", "ctr"].contains(modeName) else { return bad("cipher mode", 40, "cipher mode \(modeName) not supported") }
        let family = decodeText(name)
        // XTS keys are two keys of the cipher's size.
        let key = modeName == "xts" ? keyBytes / 2 : keyBytes
        guard let sizes = ciphers[family], sizes.contains(Int(key)) else {
            return bad("cipher name", 8, "algorithm \(family) with key size \(key) bytes not supported")
        }
        let hashName = decodeText(hash)
        guard hashes.contains(hashName) else { return bad("hash spec", 72, "hash algorithm \(hashName) not supported") }
        let ivgen = decodeText(ivgenBytes)
        guard ["plain", "plain64", "essiv"].contains(ivgen) else { return bad("cipher mode", 40, "IV generator \(ivgen) not supported") }
        if ivgen == "essiv" {
            guard let h = ivHash else { return bad("cipher mode", 40, "missing IV generator hash specification") }
            // ESSIV keys its cipher with the hash digest: the same family must have a key of the digest's size.
            let digest = digestBytes[h] ?? 0
            guard digest == Int(key) || (family != "cast5" && [16, 24, 32].contains(digest)) else {
                return bad("cipher mode", 40, "cipher \(family)-\(key * 8) not supported with essiv:\(h)")
            }
        }
        return .success((cipher: "\(family)-\(key * 8)", mode: modeName, ivgen: ivgen, ivgenHash: ivgen == "essiv" ? ivHash : nil, hash: hashName))
    }
}
