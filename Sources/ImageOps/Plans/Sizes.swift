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
        let hundredths = (rem.multipliedFullWidth(by: 100).low + divisor / 2) / divisor
        if hundredths >= 100 { return "\(whole + 1) \(units[unit])" }
        var frac = hundredths < 10 ? "0\(hundredths)" : "\(hundredths)"
        while frac.hasSuffix("0") { frac.removeLast() }
        return frac.isEmpty ? "\(whole) \(units[unit])" : "\(whole).\(frac) \(units[unit])"
    }

    /// Parses a size as qemu-img takes it: bytes, or a number with K, M, G, T, P, E (powers of 1024), optionally
    /// followed by "iB" or "B". Nil for anything else or on overflow.
    public static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text)
        var shift: UInt64 = 0
        for suffix in ["iB", "B"] where digits.count > 1 && digits.hasSuffix(suffix) {
            let trimmed = digits.dropLast(suffix.count)
            if let last = trimmed.last, "KMGTPEkmgtpe".contains(last) { digits = trimmed; break }
        }
        if let last = digits.last, let i = "KMGTPE".firstIndex(of: Character(last.uppercased())) {
            shift = UInt64(10 * ("KMGTPE".distance(from: "KMGTPE".startIndex, to: i) + 1))
            digits = digits.dropLast()
        } else if let last = digits.last, last == "b" || last == "c" {
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt64(digits) else { return nil }
        let (v, o) = n.multipliedReportingOverflow(by: UInt64(1) << shift)
        return o ? nil : v
    }
}
