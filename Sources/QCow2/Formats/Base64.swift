/// Strict base64 (RFC 4648 alphabet, `=` padding) for the `<data>` elements of a dmg's XML property list. Our code
/// does not import Foundation, so it is decoded here.
///
/// Stricter than glib's `g_base64_decode`, which QEMU uses and which skips any byte outside the alphabet: only
/// ASCII white space may appear between the characters, padding only at the end, and the characters must come in
/// whole groups of four. Anything else is refused (nil) instead of decoded into a guess.
enum Base64 {
    /// The value of each alphabet byte, 0xFF for white space, 0xFE for `=`, 0xFD for anything else.
    static let ranks: [UInt8] = {
        var t = [UInt8](repeating: 0xFD, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { t[Int(c)] = UInt8(i) }
        for c in [0x20, 0x09, 0x0A, 0x0D, 0x0B, 0x0C] { t[c] = 0xFF }
        t[Int(UInt8(ascii: "="))] = 0xFE
        return t
    }()

    /// The bytes `text` encodes; nil when it is not strict base64. The output size is computed (three bytes for
    /// every four characters, less the padding) and checked before anything is allocated; one pass per input byte.
    static func decode(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var chars = 0, pads = 0
        for b in text {
            switch ranks[Int(b)] {
            case 0xFF: continue
            case 0xFE: pads += 1
            case 0xFD: return nil
            default: if pads > 0 { return nil }  // a character after padding
            }
            chars += 1
        }
        guard chars % 4 == 0, pads <= 2 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars / 4 * 3)
        var group: UInt32 = 0, n = 0
        for b in text {
            let r = ranks[Int(b)]
            if r == 0xFF { continue }
            group = group << 6 | UInt32(r == 0xFE ? 0 : r)
            n += 1
            if n == 4 {
                out.append(UInt8(truncatingIfNeeded: group >> 16))
                out.append(UInt8(truncatingIfNeeded: group >> 8))
                out.append(UInt8(truncatingIfNeeded: group))
                group = 0
                n = 0
            }
        }
        out.removeLast(pads)
        return out
    }
}
