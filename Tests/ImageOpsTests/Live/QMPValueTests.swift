import Testing
@testable import ImageOps

/// QMP's JSON through `QMPValue`: the kinds `JSONSerialization` told apart (a boolean is not a number, sizes above
/// `Int64.max` keep every digit) and the bytes sent to QEMU.
@Suite struct QMPValueTests {
    @Test func decodesEveryKindWithoutConfusingBooleansAndNumbers() throws {
        let line = #"{"a": true, "b": 1, "c": 18446744073709551615, "d": 1.5, "e": null, "f": "x", "g": [false, -2]}"#
        let v = try QMPValue.parse(Array(line.utf8))
        #expect(v["a"] == .bool(true))
        #expect(v["b"] == .int(1))
        #expect(v["a"]?.uint64 == nil)
        #expect(v["c"]?.uint64 == UInt64.max)
        #expect(v["d"] == .double(1.5))
        #expect(v["d"]?.uint64 == nil)
        #expect(v["e"] == .null)
        #expect(v["f"]?.string == "x")
        #expect(v["g"] == [false, -2])
        #expect(v["missing"] == nil)
    }

    @Test func encodesOneLineThatDecodesBack() throws {
        let v: QMPValue = ["execute": "blockdev-add", "arguments": ["backing": nil, "read-only": true, "speed": .uint(UInt64.max), "name": "a\nb"]]
        let bytes = try v.jsonBytes()
        #expect(!bytes.contains(0x0A))
        #expect(try QMPValue.parse(bytes) == v)
    }
}
