/// Where an object's members go as a report names them: into a `JSON` tree (`JSONTree`), or straight out as bytes in
/// `JSON.write`'s layout (`JSONBytes`). A report written once against this gives both, the same members in the same
/// order; `chain --output json` writes each layer's object without a tree in between (building and freeing the trees
/// was over half of its instructions at depth 500, callgrind).
///
/// Member names are `StaticString`s, the report's own literals: plain ASCII that needs no escape, so `JSONBytes`
/// copies them whole (quoting each name as a String was a quarter of `chain --output json`'s instructions, callgrind).
/// A name read from elsewhere goes through `add(named:_:)`, which quotes it.
protocol JSONMembers {
    /// A member whose value is already a tree (rare parts: snapshots, VMDK extents, LUKS).
    mutating func add(_ key: StaticString, _ value: JSON)
    /// A member whose name is not a literal of ours, quoted as any string is.
    mutating func add(named key: String, _ value: JSON)
    /// A string member.
    mutating func add(_ key: StaticString, string: String)
    /// An unsigned number member.
    mutating func add(_ key: StaticString, uint: UInt64)
    /// A true/false member.
    mutating func add(_ key: StaticString, bool: Bool)
    /// A member whose value is an object, its members added by `body`.
    mutating func addObject(_ key: StaticString, _ body: (inout Self) -> Void)
}

/// The members gathered as a tree.
struct JSONTree: JSONMembers {
    /// The members so far, in order.
    var fields: [(String, JSON)] = []

    /// The object made of them.
    var object: JSON { .object(fields) }

    mutating func add(_ key: StaticString, _ value: JSON) { fields.append((key.description, value)) }
    mutating func add(named key: String, _ value: JSON) { fields.append((key, value)) }
    mutating func add(_ key: StaticString, string: String) { fields.append((key.description, .string(string))) }
    mutating func add(_ key: StaticString, uint: UInt64) { fields.append((key.description, .uint(uint))) }
    mutating func add(_ key: StaticString, bool: Bool) { fields.append((key.description, .bool(bool))) }
    mutating func addObject(_ key: StaticString, _ body: (inout JSONTree) -> Void) {
        var inner = JSONTree()
        body(&inner)
        fields.append((key.description, inner.object))
    }
}

/// The members written as bytes, as `JSON.write(to:indent:4,level:)` writes an object at `level`: `{`, each member on
/// a line of its own one level in, `}` on a line at `level`; `{}` for none.
struct JSONBytes: JSONMembers {
    /// Where the bytes go (moved in and out: see `addObject`).
    var bytes: [UInt8]
    /// The object's level.
    let level: Int
    /// True once a member is written (`{` is).
    private var opened = false

    /// An object at `level` written to the end of `bytes`.
    init(into bytes: [UInt8], level: Int) { (self.bytes, self.level) = (bytes, level) }

    /// Ends the object.
    mutating func close() {
        if opened {
            JSON.newline(&bytes, indent: JSONStream.indent, level: level)
            bytes.append(UInt8(ascii: "}"))
        } else {
            bytes.append(contentsOf: JSON.emptyObject)
        }
    }

    /// Writes an object at `level` to the end of `bytes`, its members added by `body`.
    static func object(into bytes: inout [UInt8], level: Int, _ body: (inout JSONBytes) -> Void) {
        // The buffer moves into the object's writer and back: no copy of what is written so far.
        var inner = JSONBytes(into: [], level: level)
        swap(&bytes, &inner.bytes)
        body(&inner)
        inner.close()
        swap(&bytes, &inner.bytes)
    }

    /// `,` or `{`, the new line and `"name": `.
    private mutating func open() {
        bytes.append(opened ? UInt8(ascii: ",") : UInt8(ascii: "{"))
        opened = true
        JSON.newline(&bytes, indent: JSONStream.indent, level: level + 1)
    }

    /// A literal name's bytes go in whole: see `JSONMembers`.
    private mutating func key(_ key: StaticString) {
        open()
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: JSON.keyEnd)
    }

    mutating func add(_ key: StaticString, _ value: JSON) {
        self.key(key)
        value.write(to: &bytes, indent: JSONStream.indent, level: level + 1)
    }

    mutating func add(named key: String, _ value: JSON) {
        open()
        JSON.key(key, into: &bytes)
        value.write(to: &bytes, indent: JSONStream.indent, level: level + 1)
    }

    mutating func add(_ key: StaticString, string: String) {
        self.key(key)
        JSON.quote(string, into: &bytes)
    }

    mutating func add(_ key: StaticString, uint: UInt64) {
        self.key(key)
        JSON.digits(uint, into: &bytes)
    }

    mutating func add(_ key: StaticString, bool: Bool) {
        self.key(key)
        bytes.append(contentsOf: bool ? JSON.trueBytes : JSON.falseBytes)
    }

    mutating func addObject(_ key: StaticString, _ body: (inout JSONBytes) -> Void) {
        self.key(key)
        JSONBytes.object(into: &bytes, level: level + 1, body)
    }
}
