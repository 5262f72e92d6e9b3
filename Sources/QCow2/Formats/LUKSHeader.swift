/// A LUKS1 header (592 bytes, big-endian) as QEMU 7.2 loads, checks and parses it (`qcrypto_block_luks_load_header`,
/// `_check_header`, `_parse_header`): the facts `qemu-img info` prints in a LUKS image's `format-specific` block,
/// with the algorithm names already mapped to QEMU's enum names. No key is needed, as none is for `qemu-img info`.
public struct LUKSHeader: Sendable, Equatable {
    /// One of the eight key slots.
    public struct Slot: Sendable, Equatable {
        /// The slot holds a key (state 0x00AC71F3).
        public var active: Bool
        /// PBKDF2 iterations (printed for active slots only, as QEMU does).
        public var iterations: UInt32
        /// Anti-forensic stripes (4000 in every header QEMU accepts).
        public var stripes: UInt32
        /// Where the key material starts, in bytes.
        public var keyOffset: UInt64
    }

    /// QEMU's cipher name: `aes-256`, `serpent-128`, `cast5-128`, …
    public var cipherAlg: String
    /// `ecb`, `cbc`, `xts` or `ctr`.
    public var cipherMode: String
    /// `plain`, `plain64` or `essiv`.
    public var ivgenAlg: String
    /// The ESSIV hash; nil for the other IV generators (QEMU prints it only for essiv).
    public var ivgenHashAlg: String?
    /// The PBKDF2 hash: `sha256`, `sha1`, …
    public var hashAlg: String
    /// Where the encrypted payload starts, in bytes.
    public var payloadOffset: UInt64
    /// PBKDF2 iterations of the master key digest.
    public var masterKeyIters: UInt32
    /// The UUID text as stored (up to its first NUL, 40 bytes at most).
    public var uuid: String
    /// The eight key slots, in order.
    public var slots: [Slot]

    /// The header's size on disk.
    public static let size = 592

    static let hashes = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160"]
    static let digestBytes: [String: Int] = ["md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64, "ripemd160": 20]
    /// `qcrypto_block_luks_cipher_name_map`: the LUKS cipher names QEMU 7.2 knows and their key sizes.
    static let ciphers: [String: [Int]] = ["aes": [16, 24, 32], "cast5": [16], "serpent": [16, 24, 32], "twofish": [16, 24, 32]]

    /// Parses and checks the first 592 bytes of a LUKS image; the error names what QEMU would refuse. `bytes` may
    /// be shorter (the rest reads as zeros, as QEMU's read of a short file does).
    package static func parse(_ bytes: [UInt8]) -> Result<LUKSHeader, Problem> {
        var b = Array(bytes.prefix(size))
        if b.count < size { b += [UInt8](repeating: 0, count: size - b.count) }
        let w = ByteWindow(b)
        guard w.starts(with: Magic.luks) else { return .failure(Problem(field: "magic", offset: 0, reason: "volume is not in LUKS format")) }
        let version = w.u16BE(6) ?? 0
        guard version == 1 else { return .failure(Problem(field: "version", offset: 6, reason: "LUKS version \(version) is not supported")) }
        // Each string must end inside its 32-byte field: QEMU refuses it otherwise.
        func cString(_ offset: Int, _ count: Int, _ field: String) -> Result<[UInt8], Problem> {
            let raw = b[offset..<offset + count]
            guard let nul = raw.firstIndex(of: 0) else {
                return .failure(Problem(field: field, offset: offset, reason: "LUKS header \(field) is not NUL terminated"))
            }
            return .success(Array(b[offset..<nul]))
        }
        let name: [UInt8], mode: [UInt8], hash: [UInt8]
        switch cString(8, 32, "cipher name") { case .success(let s): name = s; case .failure(let p): return .failure(p) }
        switch cString(40, 32, "cipher mode") { case .success(let s): mode = s; case .failure(let p): return .failure(p) }
        switch cString(72, 32, "hash spec") { case .success(let s): hash = s; case .failure(let p): return .failure(p) }
        let payload = w.u32BE(104) ?? 0, keyBytes = w.u32BE(108) ?? 0, mkIters = w.u32BE(164) ?? 0
        if let p = checkLayout(w, payload: payload, keyBytes: keyBytes, mkIters: mkIters) { return .failure(p) }
        switch algorithms(name: name, mode: mode, hash: hash, keyBytes: keyBytes) {
        case .failure(let p): return .failure(p)
        case .success(let a):
            var slots: [Slot] = []
            for i in 0..<8 {
                let s = 208 + i * 48
                slots.append(Slot(active: w.u32BE(s) == enabled, iterations: w.u32BE(s + 4) ?? 0, stripes: w.u32BE(s + 44) ?? 0,
                                  keyOffset: UInt64(w.u32BE(s + 40) ?? 0) * 512))
            }
            let uuid = b[168..<208].prefix { $0 != 0 }
            return .success(LUKSHeader(cipherAlg: a.cipher, cipherMode: a.mode, ivgenAlg: a.ivgen, ivgenHashAlg: a.ivgenHash, hashAlg: a.hash,
                                       payloadOffset: UInt64(payload) * 512, masterKeyIters: mkIters, uuid: decodeText(uuid), slots: slots))
        }
    }

    /// Why QEMU refuses a header: the field and the reason, to be put in a `FormatError`.
    package struct Problem: Sendable, Equatable, Error {
        /// The header field at fault.
        package var field: String
        /// Its byte offset in the header.
        package var offset: Int
        /// QEMU's complaint, in words.
        package var reason: String
    }

    static let enabled: UInt32 = 0x00AC_71F3
    static let disabled: UInt32 = 0x0000_DEAD
}
