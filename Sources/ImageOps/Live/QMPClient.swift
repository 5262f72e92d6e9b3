import FoundationEssentials

/// A QMP session with one running QEMU: JSON lines over its monitor socket, decoded by FoundationEssentials' `JSONDecoder` (full Foundation is not linked: its start-up cost hit every command). Every read has a
/// deadline; events that arrive between answers are queued so a block job's end is never missed.
public final class QMPClient {
    /// Why talking to QEMU failed. Each case names the monitor's address.
    public enum Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        /// Another client is connected: QEMU accepted the connection but sent no greeting.
        case busy(MonitorAddress)
        /// The monitor speaks HMP, not QMP.
        case notQMP(MonitorAddress, greeting: String)
        /// The socket failed.
        case socket(MonitorAddress, String)
        /// QEMU did not answer `command` in time (the deadline is for the whole exchange, not for each byte).
        case timedOut(MonitorAddress, command: String)
        /// An answer to `command` grew past `limit` bytes without ending: the session is closed.
        case tooLarge(MonitorAddress, command: String, limit: Int)
        /// QEMU refused `command`: its error class and description.
        case failed(MonitorAddress, command: String, errorClass: String, message: String)
        /// An answer was not the JSON QMP promises.
        case malformed(MonitorAddress, command: String, detail: String)
        /// An argument of `command` is a file name that is not UTF-8 (see `PathBytes`), or QEMU's report of one
        /// (U+FFFD in place of the bytes): QMP is JSON text, which cannot carry such a name, and QEMU's parser
        /// refuses one; sent as text it would name another file.
        case notUTF8(MonitorAddress, command: String, value: String)

        /// The message for the user, naming the monitor.
        public var description: String {
            switch self {
            case .busy(let a): return "the QMP monitor \(a) is busy: another client is connected"
            case .notQMP(let a, _): return "\(a) is a human monitor (HMP), not QMP"
            case .socket(let a, let why): return "QMP monitor \(a): \(why)"
            case .timedOut(let a, let c): return "QMP monitor \(a) did not answer \(c) in time"
            case .tooLarge(let a, let c, let limit): return "QMP monitor \(a) answered \(c) with more than \(limit) bytes without ending the line; the session was closed"
            case .failed(_, let c, _, let m): return "QEMU refused \(c): \(m)"
            case .malformed(let a, let c, let d): return "QMP monitor \(a) answered \(c) with something unreadable: \(d)"
            case .notUTF8(_, let c, let v):
                return "\(v) is not UTF-8 (or is QEMU's U+FFFD stand-in for such a name), and QMP, JSON text, cannot carry it to QEMU's \(c)"
            }
        }
    }

    /// The monitor this client talks to.
    public let address: MonitorAddress
    /// QEMU's version as the greeting states it, e.g. "7.2.22".
    public private(set) var version: String = ""
    /// Events received and not yet taken, oldest first (each a decoded JSON object).
    private(set) var events: [QMPValue] = []
    private let socket: MonitorSocket
    /// Deadline for each exchange (a command's answers, the events between them, an event awaited), in milliseconds.
    /// It runs from the exchange's start: bytes that keep coming do not extend it.
    var answerTimeoutMS: Int32 = 30_000
    /// The most bytes one exchange may read (answers and the events between them). A chain of 500 layers answers
    /// `query-named-block-nodes` in tens of MiB (each node nests the images below it); no monitor needs more.
    var maxAnswerBytes = 256 << 20
    /// Set once an exchange timed out or overflowed: the stream is out of step, so nothing more is sent on it.
    private var broken: Error?

    private init(socket: MonitorSocket) { self.socket = socket; address = socket.address }

    /// Connects and negotiates capabilities. Silence for `greetingTimeoutMS` means another client holds the monitor:
    /// the connection is closed at once, so it never becomes that monitor's next client.
    public static func connect(_ address: MonitorAddress, greetingTimeoutMS: Int32 = 300) throws(Error) -> QMPClient {
        // A monitor the kernel shows a client on is not probed: the probe would wait in its queue (see clientConnected).
        if MonitorSocket.clientConnected(address) == true { throw .busy(address) }
        let s: MonitorSocket
        do { s = try MonitorSocket.connect(address, timeoutMS: greetingTimeoutMS) } catch { throw Self.map(error, "connect") }
        let greeting: [UInt8]
        do { greeting = try s.readSome(timeoutMS: greetingTimeoutMS) } catch { s.close(); throw Self.map(error, "greeting") }
        guard !greeting.isEmpty else { s.close(); throw .busy(address) }
        guard greeting.starts(with: Array(#"{"QMP""#.utf8)) else {
            s.close()
            throw .notQMP(address, greeting: String(decoding: greeting.prefix(80), as: UTF8.self))
        }
        s.unread(greeting)
        let client = QMPClient(socket: s)
        do {
            // The rest of the greeting line gets an answer's deadline: the monitor has shown it is there.
            guard let line = try s.readLine(timeoutMS: client.answerTimeoutMS, maxBytes: client.maxAnswerBytes),
                  let qmp = (try? QMPValue.parse(line))?["QMP"], qmp.object != nil else {
                throw Error.malformed(address, command: "greeting", detail: "no QMP object")
            }
            if let v = qmp["version"]?["qemu"],
               let major = v["major"]?.int64, let minor = v["minor"]?.int64, let micro = v["micro"]?.int64 {
                client.version = "\(major).\(minor).\(micro)"
            }
            _ = try client.executeAll([("qmp_capabilities", nil)])
        } catch let e as Error { s.close(); throw e } catch { s.close(); throw Self.map(error, "greeting") }
        return client
    }

    /// Ends the session.
    public func close() { socket.close() }

    /// Runs `command` and returns its `return` value (decoded JSON: object, array, or empty object).
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: QMPValue]? = nil) throws(Error) -> QMPValue {
        guard let line = try executeAll([(command, arguments)]).first, let ret = (try? QMPValue.parse(line))?["return"] else {
            throw .malformed(address, command: command, detail: "no return value")
        }
        return ret
    }

    /// Runs `command` and decodes its `return` value as `T`, straight from QEMU's bytes.
    public func execute<T: Decodable>(_ command: String, _ arguments: [String: QMPValue]? = nil, as type: T.Type) throws(Error) -> T {
        guard let line = try executeAll([(command, arguments)]).first else { throw .malformed(address, command: command, detail: "no answer") }
        return try decode(line, as: T.self, command: command)
    }

    /// Sends every command at once, then reads the answers in order (events between them are queued): one round
    /// trip to QEMU instead of one per command, which matters on a loaded machine where each wake-up of QEMU waits
    /// for a CPU. Returns each answer's line; a refused command throws.
    public func executeAll(_ commands: [(String, [String: QMPValue]?)]) throws(Error) -> [[UInt8]] {
        var bytes: [UInt8] = []
        for (command, arguments) in commands {
            var message: [String: QMPValue] = ["execute": .string(command)]
            if let arguments { message["arguments"] = .object(arguments) }
            if let name = QMPValue.object(message).nameNotUTF8 { throw .notUTF8(address, command: command, value: name) }
            guard let data = try? QMPValue.object(message).jsonBytes() else {
                throw .malformed(address, command: command, detail: "arguments are not JSON")
            }
            bytes += data + [0x0A]
        }
        if let broken { throw broken }
        let deadline = Clock.now + Int64(answerTimeoutMS)
        var budget = maxAnswerBytes
        do { try socket.send(bytes, timeoutMS: answerTimeoutMS) } catch { throw fail(Self.map(error, commands.first?.0 ?? "")) }
        var answers: [[UInt8]] = []
        for (command, _) in commands {
            while true {
                let line: [UInt8]?
                do { line = try socket.readLine(deadline: deadline, maxBytes: budget) } catch { throw fail(Self.map(error, command)) }
                guard let line else { throw fail(.timedOut(address, command: command)) }
                budget -= line.count + 1
                // Only the envelope is looked at here; a large answer is decoded once, into its type, by the caller.
                guard let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(line)) else {
                    throw .malformed(address, command: command, detail: String(decoding: line.prefix(120), as: UTF8.self))
                }
                if envelope.isEvent {
                    if let event = try? QMPValue.parse(line) { events.append(event) }
                    continue
                }
                if let err = envelope.error {
                    throw .failed(address, command: command, errorClass: err.errorClass ?? "GenericError", message: err.desc ?? "no description")
                }
                guard envelope.hasReturn else { throw .malformed(address, command: command, detail: "neither return nor error") }
                answers.append(line)
                break
            }
        }
        return answers
    }

    /// Decodes the `return` value of an answer line as `T`.
    public func decode<T: Decodable>(_ line: [UInt8], as type: T.Type, command: String) throws(Error) -> T {
        do { return try JSONDecoder().decode(Answer<T>.self, from: Data(line)).value } catch {
            throw .malformed(address, command: command, detail: "\(error)")
        }
    }

    /// Waits for the first queued or arriving event for which `matches` is true, and removes it from the queue.
    /// Nil when none came within `timeoutMS`.
    public func waitForEvent(timeoutMS: Int32, _ matches: (QMPValue) -> Bool) throws(Error) -> QMPValue? {
        if let i = events.firstIndex(where: matches) { return events.remove(at: i) }
        if let broken { throw broken }
        let deadline = Clock.now + Int64(timeoutMS)
        var budget = maxAnswerBytes
        while Clock.now < deadline {
            let line: [UInt8]?
            do { line = try socket.readLine(deadline: deadline, maxBytes: budget) } catch { throw fail(Self.map(error, "waiting for an event")) }
            // No whole line by the deadline: nothing came. A part of one stays buffered for the next wait, which
            // has its own deadline; only a line never finished across an exchange's deadline breaks the session.
            guard let line else { return nil }
            budget -= line.count + 1
            guard let obj = try? QMPValue.parse(line), obj["event"] != nil else { continue }
            if matches(obj) { return obj }
            events.append(obj)
        }
        return nil
    }

    /// Marks the session broken after a timeout or an overflow (the next answer read would belong to an
    /// earlier command) and closes the socket; returns the error to throw.
    private func fail(_ error: Error) -> Error {
        switch error {
        case .timedOut, .tooLarge, .socket, .malformed:
            broken = error
            socket.close()
        default: break
        }
        return error
    }

    private static func map(_ error: any Swift.Error, _ what: String) -> Error {
        switch error as? MonitorSocket.Error {
        case .connect(let a, let why)?: return .socket(a, why)
        case .queueFull(let a)?: return .busy(a)
        case .timedOut(let a, _)?: return .timedOut(a, command: what)
        case .tooLarge(let a, let limit)?: return .tooLarge(a, command: what, limit: limit)
        case .closed(let a)?: return .socket(a, "QEMU closed the connection")
        case .io(let a, let why)?: return .socket(a, why)
        case nil: return .socket(.unix("?"), "\(error)")
        }
    }
}

/// What kind of line QEMU sent: an event, an answer, or an error.
struct Envelope: Decodable {
    struct Failure: Decodable {
        let errorClass: String?
        let desc: String?
        enum CodingKeys: String, CodingKey { case errorClass = "class", desc }
    }
    let isEvent: Bool
    let hasReturn: Bool
    let error: Failure?
    enum CodingKeys: String, CodingKey { case event, `return`, error }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        isEvent = c.contains(.event)
        hasReturn = c.contains(.return)
        error = try c.decodeIfPresent(Failure.self, forKey: .error)
    }
}

/// An answer's `return` value as `T`.
struct Answer<T: Decodable>: Decodable {
    let value: T
    enum CodingKeys: String, CodingKey { case value = "return" }
}
