import Keel
import Testing

@testable import KeelGRPC

@Suite("The wire format of keel.v1.Requests")
struct WireTests {
    @Test(
        "grpc-timeout values read back as durations",
        arguments: [
            ("200m", Duration.milliseconds(200)), ("5S", .seconds(5)), ("2M", .seconds(120)), ("1H", .seconds(3600)),
            ("150u", .microseconds(150)), ("99999999n", .nanoseconds(99_999_999)),
        ]
    )
    func timeouts(text: String, duration: Duration) {
        #expect(RequestsRPC.timeout(from: text) == duration)
    }

    @Test("malformed grpc-timeout values read as none", arguments: ["", "m", "12", "1.5S", "123456789S", "10x", "-1S"])
    func malformedTimeouts(text: String) {
        #expect(RequestsRPC.timeout(from: text) == nil)
    }

    @Test("a Send message round-trips, and a truncated one is refused")
    func sendMessage() throws {
        let message = SendMessage(name: "Chärge", payload: Array(#"{"amount":1}"#.utf8))
        let bytes = message.encoded()
        #expect(try bytes.withUnsafeBytes { try SendMessage(decoding: $0) } == message)
        #expect(throws: (any Error).self) { try bytes.prefix(5).withUnsafeBytes { try SendMessage(decoding: $0) } }
        #expect(throws: (any Error).self) { try [UInt8]().withUnsafeBytes { try SendMessage(decoding: $0) } }
    }

    @Test("every RequestError code crosses the wire as itself; an unknown one as handlerFailed")
    func errorCodes() throws {
        for code in RequestError.Code.allCases {
            let wire = WireError(RequestError(code: code, request: "R", service: "s", message: "m"))
            let bytes = try Reply.failure(wire).encoded()
            guard case .failure(let decoded) = try bytes.withUnsafeBytes({ try Reply(decoding: $0) }) else {
                Issue.record("a failure decoded as a response")
                continue
            }
            let error = decoded.requestError(decoding: [:])
            #expect(error.code == code)
            #expect(error.service == "s")
            #expect(error.message == "m")
        }
        var future = WireError(code: .handlerFailed, request: "R", message: "m")
        future.code = "quotaExceeded"
        let error = future.requestError(decoding: [:])
        #expect(error.code == .handlerFailed)
        #expect(error.message == "m (remote code quotaExceeded)")
    }

    @Test("a RemoteError is sent on unchanged across a second hop")
    func remoteErrorsKeepTheirType() {
        let first = RemoteError(describing: CardDeclined(reason: "lost"))
        #expect(first.type == "CardDeclined")
        #expect(first.json == #"{"reason":"lost"}"#)
        #expect(RemoteError(describing: first) == first)
    }
}
