/// Sizes as people read them: powers of 1024, as qemu-img prints them ("64 MiB", "1.5 GiB").
public enum Sizes {
    static let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]

    /// `bytes` in the largest unit that keeps the number at or above 1, with up to two decimals.
    public static func human(_ bytes: UInt64) -> String {
        var unit = 0
        var whole = bytes
        while whole >= 1024 && unit < units.count - 1 {
            whole /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let divisor = UInt64(1) << UInt64(10 * unit)
        let rem = bytes % divisor
        if rem == 0 { return "\(whole) \(units[unit])" }
        // Two decimals, rounded, without Foundation's formatters.
        // rem × 100 needs 71 bits near 2^64: divide the full-width product, then round half up.
        let product = rem.multipliedFullWidth(by: 100)
        let (q, r) = divisor.dividingFullWidth(product)
        let hundredths = q + (r >= divisor - r ? 1 : 0)
        if hundredths >= 100 { return "\(whole + 1) \(units[unit])" }
        var frac = hundredths < 10 ? "0\(hundredths)" : "\(hundredths)"
        while frac.hasSuffix("0") { frac.removeLast() }
        return frac.isEmpty ? "\(whole) \(units[unit])" : "\(whole).\(frac) \(units[unit])"
    }

    /// Parses a size exactly as qemu-img 7.2 does (`qemu_strtosz`): leading blanks and a `+` are allowed; a decimal
    /// integer, or `0x` hex; a fraction (`1.5G`, even `1.G`) only before a scaling suffix; one suffix letter, either
    /// case: B (bytes), K, M, G, T, P, E (powers of 1024) — so `1e3` is 1 EiB followed by junk, hence refused; no
    /// exponent, no `KB`/`KiB`, no trailing text. The fraction is scaled as QEMU scales it (64-bit fixed point,
    /// half rounded up). qemu-img then refuses anything above 2^63 − 1, and so does this. Nil when qemu-img refuses.
    public static func parse(_ text: String) -> UInt64? {
        let b = Array(text.utf8)
        var i = 0
        while i < b.count, b[i] == 0x20 || (0x09...0x0D).contains(b[i]) { i += 1 }
        if i < b.count, b[i] == UInt8(ascii: "+") { i += 1 }
        func digits(_ radix: UInt64) -> (value: UInt64, count: Int)? {
            var v: UInt64 = 0, n = 0
            while i < b.count, let d = digit(b[i], radix) {
                let (m, o1) = v.multipliedReportingOverflow(by: radix)
                let (a, o2) = m.addingReportingOverflow(d)
                guard !o1, !o2 else { return nil }
                v = a; n += 1; i += 1
            }
            return (v, n)
        }
        let start = i
        guard let whole = digits(10), whole.count > 0 else { return nil }
        var value = whole.value
        var fraction: UInt64 = 0  // 0.64 fixed point, as QEMU keeps it
        if whole.value == 0, i < b.count, b[i] | 0x20 == UInt8(ascii: "x"), i == start + 1 {
            i += 1
            guard let hex = digits(16), hex.count > 0 else { return nil }
            value = hex.value
            if i < b.count, b[i] == UInt8(ascii: ".") { return nil }
        } else if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var f = i
            while f < b.count, digit(b[f], 10) != nil { f += 1 }
            // strtod would take an exponent after the digits; QEMU refuses the whole size then.
            if f > i, f + 1 < b.count, b[f] | 0x20 == UInt8(ascii: "e") {
                var e = f + 1
                if b[e] == UInt8(ascii: "+") || b[e] == UInt8(ascii: "-") { e += 1 }
                if e < b.count, digit(b[e], 10) != nil { return nil }
            }
            if f > i, let d = Double("0." + String(decoding: b[i..<f], as: UTF8.self)) {
                let scaled = d * 0x1p64
                fraction = scaled < 0x1p64 ? UInt64(scaled) : 0
            }
            i = f
        }
        var multiplier: UInt64 = 1
        if i < b.count, let shift = suffixShift(b[i]) {
            multiplier = UInt64(1) << shift
            i += 1
        }
        guard i == b.count else { return nil }
        if multiplier == 1 {
            guard fraction == 0 else { return nil }
        } else {
            let whole = value.multipliedFullWidth(by: multiplier)
            let part = fraction.multipliedFullWidth(by: multiplier)
            var (sum, carry) = whole.low.addingReportingOverflow(part.high)
            var high = whole.high + (carry ? 1 : 0)
            (sum, carry) = sum.addingReportingOverflow(part.low >> 63)
            high += carry ? 1 : 0
            guard high == 0 else { return nil }
            value = sum
        }
        return value <= UInt64(Int64.max) ? value : nil
    }

    static func digit(_ c: UInt8, _ radix: UInt64) -> UInt64? {
        let d: UInt64
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt64(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt64(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt64(c - UInt8(ascii: "A") + 10)
        default: return nil
        }
        return d < radix ? d : nil
    }

    static func suffixShift(_ c: UInt8) -> UInt64? {
        switch c | 0x20 {
        case UInt8(ascii: "b"): 0
        case UInt8(ascii: "k"): 10
        case UInt8(ascii: "m"): 20
        case UInt8(ascii: "g"): 30
        case UInt8(ascii: "t"): 40
        case UInt8(ascii: "p"): 50
        case UInt8(ascii: "e"): 60
        default: nil
        }
    }
}
