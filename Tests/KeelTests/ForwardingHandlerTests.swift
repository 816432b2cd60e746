import Keel
import KeelCore
import KeelTesting
import Synchronization
import Testing

/// What a forwarding handler did with its requests.
private final class Forwarded: Sendable {
    let contexts = Mutex<[TraceContext?]>([])
}

private struct Lookup: ServiceRequest {
    typealias Response = String
    var key: String
}

private struct ForwardFailure: Error {}

/// Stands in for a service in another process: forwards ``Lookup`` to a closure that answers,
/// throws a route's error, or throws another error, by the key.
private actor LookupProxy: ServiceActor {
    static let name: ServiceName = "lookup"

    let forwarded: Forwarded

    init(forwarded: Forwarded) {
        self.forwarded = forwarded
    }

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<LookupProxy>) {
        let forwarded = self.forwarded
        handlers.forward(Lookup.self) { request in
            forwarded.contexts.withLock { $0.append(TraceContext.current) }
            switch request.key {
            case "unreachable":
                throw RequestError(
                    code: .noHealthyInstance,
                    request: Lookup.name,
                    service: "lookup",
                    message: "the remote host at 127.0.0.1:1 does not answer"
                )
            case "broken":
                throw ForwardFailure()
            default:
                return "value of \(request.key)"
            }
        }
    }
}

@Suite("Forwarding handlers")
struct ForwardingHandlerTests {
    @Test("a forwarded request's response reaches the caller, on the fast path and with a deadline")
    func roundTrip() async throws {
        let forwarded = Forwarded()
        try await TestHost.with(LookupProxy(forwarded: forwarded)) { test in
            let fast = try await test.client.send(Lookup(key: "a"))
            #expect(fast == "value of a")
            let deadline = Deadline.after(.seconds(5), on: test.clock)
            let bounded = try await test.client.send(Lookup(key: "b"), deadline: deadline)
            #expect(bounded == "value of b")
            let contexts = forwarded.contexts.withLock { $0 }
            #expect(contexts.count == 2)
            #expect(contexts.allSatisfy { $0 != nil })
            // The caller's deadline is bound while the request is forwarded, for the remote side.
            #expect(contexts.last??.deadline?.remaining(on: test.clock) == .seconds(5))
        }
    }

    @Test("a RequestError from a forwarding handler reaches the caller as it is, on both paths")
    func requestErrorsPassThrough() async throws {
        try await TestHost.with(LookupProxy(forwarded: Forwarded())) { test in
            for deadline in [nil, Deadline.after(.seconds(5), on: test.clock)] {
                let error = await #expect(throws: RequestError.self) {
                    try await test.client.send(Lookup(key: "unreachable"), deadline: deadline)
                }
                #expect(error?.code == .noHealthyInstance)
                #expect(error?.message == "the remote host at 127.0.0.1:1 does not answer")
                #expect(error?.underlying == nil)
            }
        }
    }

    @Test("any other error from a forwarding handler is a handler failure, as from any handler")
    func otherErrorsAreHandlerFailures() async throws {
        try await TestHost.with(LookupProxy(forwarded: Forwarded())) { test in
            for deadline in [nil, Deadline.after(.seconds(5), on: test.clock)] {
                let error = await #expect(throws: RequestError.self) {
                    try await test.client.send(Lookup(key: "broken"), deadline: deadline)
                }
                #expect(error?.code == .handlerFailed)
                #expect(error?.underlying is ForwardFailure)
            }
        }
    }
}

@Suite("Request error codes")
struct RequestErrorCodeTests {
    @Test("every code is listed once and found again by its name; an unknown name finds none")
    func namesRoundTrip() {
        let codes = RequestError.Code.allCases
        #expect(codes.count == 12)
        #expect(Set(codes).count == codes.count)
        for code in codes {
            #expect(RequestError.Code(name: code.description) == code)
        }
        #expect(codes.contains(.noHealthyInstance) && codes.contains(.invalidDeadline))
        #expect(RequestError.Code(name: "somethingNew") == nil)
    }
}
