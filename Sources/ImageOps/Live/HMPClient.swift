import QCow2

/// A session with QEMU's human monitor (HMP), the one `-monitor tcp:H:P,server,nowait`, `telnet:` or `unix:` starts
/// (qemu-init's guests, and most hand-started VMs). HMP is text for people: the banner, a `(qemu) ` prompt, and a
/// readline that echoes each typed byte back with terminal escapes (ESC[K, ESC[D). A command's output is what comes
/// between the echo's line end and the next prompt. Every read has a deadline, and the whole exchange has one and a
/// size cap, as QMP's: a monitor that goes quiet or talks forever must never hang imgtool nor fill its memory.
public final class HMPClient {
    /// Why talking to the human monitor failed. Each case names the monitor's address.
    public enum Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        /// Another client is connected: QEMU accepted the connection but sent no banner.
        case busy(MonitorAddress)
        /// The monitor is not a human monitor (a QMP one, or something else): what it said first.
        case notHMP(MonitorAddress, greeting: String)
        /// The socket failed.
        case socket(MonitorAddress, String)
        /// No prompt came back after `command` in time (the deadline is for the whole exchange).
        case timedOut(MonitorAddress, command: String)
        /// The output of `command` grew past `limit` bytes without a prompt: the session is closed.
        case tooLarge(MonitorAddress, command: String, limit: Int)
        /// `command` printed something imgtool does not expect from it (escaped for a terminal).
        case unexpected(MonitorAddress, command: String, text: String)
        /// A command imgtool would type cannot be typed: a byte readline would act on (a control character), a name
        /// HMP's quoting cannot carry, or a line longer than readline keeps.
        case cannotType(MonitorAddress, command: String, why: String)

        /// The message for the user, naming the monitor.
        public var description: String {
            switch self {
            case .busy(let a): return "the human monitor \(a) is busy: another client is connected"
            case .notHMP(let a, let g): return "\(a) is not a human monitor (it said \(Untrusted.shown(g)))"
            case .socket(let a, let why): return "human monitor \(a): \(why)"
            case .timedOut(let a, let c): return "human monitor \(a) did not finish \(Untrusted.shown(c)) in time"
            case .tooLarge(let a, let c, let limit): return "human monitor \(a) answered \(Untrusted.shown(c)) with more than \(limit) bytes; the session was closed"
            case .unexpected(let a, let c, let t): return "human monitor \(a) answered \(Untrusted.shown(c)) with something unexpected: \(Untrusted.shown(t))"
            case .cannotType(let a, let c, let why): return "human monitor \(a): cannot type \(Untrusted.shown(c)): \(why)"
            }
        }
    }

    /// The monitor this client talks to.
    public let address: MonitorAddress
    /// QEMU's version as the banner states it, e.g. "7.2.22".
    public private(set) var version: String = ""
    /// A telnet monitor: QEMU opened with IAC negotiation, which is stripped from what it sends, and 0xFF is doubled
    /// in what is sent to it.
    public private(set) var telnet = false
    private let socket: MonitorSocket
    private var telnetFilter = TelnetFilter()
    /// Deadline for each exchange (a command's whole output up to the next prompt), in milliseconds.
    var answerTimeoutMS: Int32 = 30_000
    /// The most bytes one exchange may read. `info block -v` of a 500-layer chain prints ~300 KiB.
    var maxAnswerBytes = 64 << 20
    /// Set once an exchange timed out, overflowed or was not understood: the stream is out of step.
    private var broken: Error?

    /// The prompt readline prints when it waits for a line.
    static let prompt: [UInt8] = Array("(qemu) ".utf8)
    /// readline's command buffer (READLINE_CMD_BUF_SIZE, 4095 bytes and its NUL): a longer line is cut.
    static let maxLine = 4000

    private init(socket: MonitorSocket) { self.socket = socket; address = socket.address }

    /// Connects and reads the banner up to the first prompt. Silence for `greetingTimeoutMS` means another client
    /// holds the monitor: the connection is closed at once, so it never becomes that monitor's next client.
    public static func connect(_ address: MonitorAddress, greetingTimeoutMS: Int32 = 300) throws(Error) -> HMPClient {
        // A monitor the kernel shows a client on is not probed: the probe would wait in its queue (see clientConnected).
        if MonitorSocket.clientConnected(address) == true { throw .busy(address) }
        let s: MonitorSocket
        do { s = try MonitorSocket.connect(address, timeoutMS: greetingTimeoutMS) } catch {
            // A TCP listener whose accept queue is full (its client, and probes that closed but wait there until QEMU
            // accepts them) drops the handshake: as busy as a unix listener answering EAGAIN.
            if case .timedOut = error { throw .busy(address) }
            throw map(error, "connect")
        }
        let first: [UInt8]
        do { first = try s.readSome(timeoutMS: greetingTimeoutMS) } catch { s.close(); throw map(error, "banner") }
        guard !first.isEmpty else { s.close(); throw .busy(address) }
        // A QMP monitor greets with JSON and never prompts: said at once rather than after an answer's deadline.
        if first.first == UInt8(ascii: "{") {
            s.close()
            throw .notHMP(address, greeting: String(decoding: first.prefix(80), as: UTF8.self))
        }
        let client = HMPClient(socket: s)
        client.telnet = first.first == TelnetFilter.iac
        s.unread(first)
        do {
            // The rest of the banner gets an answer's deadline: the monitor has shown it is there.
            let banner = try client.readToPrompt(command: "banner")
            let text = String(decoding: banner, as: UTF8.self)
            guard text.hasPrefix("QEMU "), text.contains(" monitor") else {
                throw Error.notHMP(address, greeting: String(text.prefix(80)))
            }
            client.version = String(text.dropFirst(5).prefix { $0 != " " })
        } catch {
            s.close()
            throw map(error, "banner")
        }
        return client
    }

    /// Ends the session.
    public func close() { socket.close() }

    /// Why `command` cannot be typed at readline's prompt, or nil when it can (checked before anything is changed).
    public static func untypeable(_ command: String) -> String? {
        let bytes = command.pathBytes
        if bytes.count > maxLine { return "longer than readline's \(maxLine) bytes" }
        // readline acts on control bytes (tab completes, ESC starts a key sequence, 0x7F erases…): none may be typed.
        if let bad = bytes.first(where: { $0 < 0x20 || $0 == 0x7F }) {
            return "it holds the control byte 0x\(String(bad, radix: 16)), which readline would act on"
        }
        return nil
    }

    /// Types `command` and returns its output lines (without line ends), up to the next prompt. `timeoutMS` overrides
    /// the exchange's deadline (a synchronous `commit` takes as long as the copy).
    public func run(_ command: String, timeoutMS: Int32? = nil) throws(Error) -> [String] {
        if let broken { throw broken }
        let bytes = command.pathBytes
        if let why = Self.untypeable(command) { throw .cannotType(address, command: command, why: why) }
        var wire: [UInt8] = []
        for b in bytes { wire.append(b); if telnet && b == TelnetFilter.iac { wire.append(b) } }
        wire.append(0x0A)
        let timeout = timeoutMS ?? answerTimeoutMS
        do { try socket.send(wire, timeoutMS: timeout) } catch { throw fail(Self.map(error, command)) }
        let raw: [UInt8]
        do { raw = try readToPrompt(command: command, timeoutMS: timeout) } catch { throw fail(error) }
        // The echo ends at the first line end; readline redraws the line as each byte arrives, so with the escapes
        // taken out it ends with the whole command.
        guard let cr = Self.find([0x0D, 0x0A], in: raw) else {
            throw fail(.unexpected(address, command: command, text: String(decoding: raw.prefix(200), as: UTF8.self)))
        }
        let echo = Self.withoutEscapes(Array(raw[..<cr]))
        guard echo.count >= bytes.count, Array(echo.suffix(bytes.count)) == bytes else {
            throw fail(.unexpected(address, command: command, text: "an echo that is not the command: " + String(pathBytes: echo.suffix(200))))
        }
        let output = raw[(cr + 2)...]
        return Self.lines(Array(output))
    }

    /// Reads until the stream ends in a prompt at a line start; returns what came before the prompt.
    private func readToPrompt(command: String, timeoutMS: Int32? = nil) throws(Error) -> [UInt8] {
        let deadline = Clock.now + Int64(timeoutMS ?? answerTimeoutMS)
        var got: [UInt8] = []
        while true {
            if got.count >= Self.prompt.count, Array(got.suffix(Self.prompt.count)) == Self.prompt {
                let start = got.count - Self.prompt.count
                // The prompt follows a line end (or opens the stream): a name in the output that spells "(qemu) "
                // mid-line is no prompt.
                if start == 0 || (start >= 2 && got[start - 2] == 0x0D && got[start - 1] == 0x0A) { return Array(got[..<start]) }
            }
            let chunk: [UInt8]?
            do { chunk = try socket.readAvailable(deadline: deadline) } catch { throw Self.map(error, command) }
            guard let chunk else { throw .timedOut(address, command: command) }
            got += telnet ? telnetFilter.strip(chunk) : chunk
            guard got.count <= maxAnswerBytes else { throw .tooLarge(address, command: command, limit: maxAnswerBytes) }
        }
    }

    /// Marks the session broken (the next output read would belong to an earlier command) and closes the socket.
    private func fail(_ error: Error) -> Error {
        switch error {
        case .timedOut, .tooLarge, .socket, .unexpected:
            broken = error
            socket.close()
        default: break
        }
        return error
    }

    /// Output lines: QEMU's monitor writes each `\n` as `\r\n`. A last line without a line end is kept.
    static func lines(_ bytes: [UInt8]) -> [String] {
        var out: [String] = []
        var start = 0
        var i = 0
        while i + 1 < bytes.count {
            if bytes[i] == 0x0D && bytes[i + 1] == 0x0A {
                out.append(String(pathBytes: bytes[start..<i]))
                i += 2
                start = i
            } else { i += 1 }
        }
        if start < bytes.count { out.append(String(pathBytes: bytes[start...])) }
        return out
    }

    /// `bytes` without terminal escape sequences (ESC [ parameters final-byte, and a lone ESC X).
    static func withoutEscapes(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            guard bytes[i] == 0x1B else { out.append(bytes[i]); i += 1; continue }
            i += 1
            guard i < bytes.count else { break }
            if bytes[i] == UInt8(ascii: "[") {
                i += 1
                while i < bytes.count, !(0x40...0x7E).contains(bytes[i]) { i += 1 }
            }
            i += 1
        }
        return out
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    /// Quotes `value` as one HMP string argument: `"…"` with `\` and `"` escaped (monitor/hmp.c get_str). Bytes
    /// readline would act on cannot be typed at all (see `run`).
    public static func quoted(_ value: String) -> String {
        var s = "\""
        for ch in value.unicodeScalars {
            if ch == "\\" || ch == "\"" { s += "\\" }
            s.unicodeScalars.append(ch)
        }
        return s + "\""
    }

    private static func map(_ error: any Swift.Error, _ what: String) -> Error {
        switch error as? MonitorSocket.Error {
        case .connect(let a, let why)?: return .socket(a, why)
        case .queueFull(let a)?: return .busy(a)
        case .timedOut(let a, _)?: return .timedOut(a, command: what)
        case .tooLarge(let a, let limit)?: return .tooLarge(a, command: what, limit: limit)
        case .closed(let a)?: return .socket(a, "QEMU closed the connection")
        case .io(let a, let why)?: return .socket(a, why)
        case nil:
            if let e = error as? Error { return e }
            return .socket(.unix("?"), "\(error)")
        }
    }
}

/// Telnet's in-band commands, taken out of what a `telnet:` monitor sends (QEMU opens with IAC WILL ECHO, WILL SGA,
/// WILL BINARY, DO BINARY). Nothing is answered: QEMU does not wait for answers, and it strips the ones it gets.
/// Stateful, since a command may be split between two reads.
struct TelnetFilter {
    static let iac: UInt8 = 0xFF
    private enum State { case data, iac, option, subnegotiation, subIAC }
    private var state = State.data

    mutating func strip(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for b in bytes {
            switch state {
            case .data: if b == Self.iac { state = .iac } else { out.append(b) }
            case .iac:
                switch b {
                case Self.iac: out.append(b); state = .data          // IAC IAC: a literal 0xFF
                case 251...254: state = .option                        // WILL, WONT, DO, DONT: one option byte follows
                case 250: state = .subnegotiation                      // SB … IAC SE
                default: state = .data                                 // a two-byte command (NOP, GA, …)
                }
            case .option: state = .data
            case .subnegotiation: if b == Self.iac { state = .subIAC }
            case .subIAC: state = b == 240 ? .data : .subnegotiation
            }
        }
        return out
    }
}
