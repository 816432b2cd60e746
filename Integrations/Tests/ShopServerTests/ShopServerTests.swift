import Foundation
import HTTPTypes
import InMemoryLogging
import Keel
import KeelCore
import KeelResilience
import Logging
import ShopServer
import ShopServices
import Testing

@Suite("shop-server over HTTP on loopback")
struct ShopServerTests {
    // MARK: Customers

    @Test("register, read, change the e-mail, and list by domain reading our own writes")
    func customers() async throws {
        try await ServerFixture.with { server in
            let registered = try await server.send(
                .post,
                "/customers",
                json: #"{"id": 4, "name": "Katherine Johnson", "email": "katherine@nasa.gov"}"#
            )
            #expect(registered.status == .created, "\(registered.body)")
            #expect(registered.header("location") == "/customers/4")
            let body = try registered.json()
            #expect(body["version"] as? Int == 0, "Keel's stream versions count from 0")
            let position = try #require(body["position"] as? Int)
            #expect(registered.header("x-read-position") == String(position))

            let read = try await server.send(.get, "/customers/4")
            #expect(read.status == .ok)
            #expect(try read.json()["email"] as? String == "katherine@nasa.gov")
            #expect(try read.json()["version"] as? Int == 0)

            let listed = try await server.send(.get, "/customers?domain=nasa.gov&minPosition=\(position)")
            #expect(listed.status == .ok, "\(listed.body)")
            let ids = try #require(listed.json()["customers"] as? [[String: Any]]).compactMap { $0["id"] as? Int }
            #expect(ids == [4])

            let changed = try await server.send(
                .put,
                "/customers/4/email",
                json: #"{"email": "katherine@jpl.nasa.gov", "expectedVersion": 0}"#
            )
            #expect(changed.status == .ok, "\(changed.body)")
            #expect(try changed.json()["version"] as? Int == 1)
            let newPosition = try #require(changed.json()["position"] as? Int)
            #expect(newPosition > position)

            let moved = try await server.send(.get, "/customers?domain=jpl.nasa.gov&minPosition=\(newPosition)")
            let movedIDs = try #require(moved.json()["customers"] as? [[String: Any]]).compactMap { $0["id"] as? Int }
            #expect(movedIDs == [4])
            let left = try await server.send(.get, "/customers?domain=nasa.gov&minPosition=\(newPosition)")
            #expect(try (left.json()["customers"] as? [[String: Any]])?.isEmpty == true, "\(left.body)")

            let founders = try await server.send(.get, "/customers?domain=example.com")
            let founderIDs = try #require(founders.json()["customers"] as? [[String: Any]]).compactMap {
                $0["id"] as? Int
            }
            #expect(founderIDs == [1, 2, 3])
        }
    }

    // MARK: Orders

    @Test("place an order, then read it")
    func orders() async throws {
        try await ServerFixture.with { server in
            let placed = try await server.send(
                .post,
                "/orders",
                json:
                    #"{"customerId": 1, "lines": [{"sku": "keyboard", "quantity": 1}, {"sku": "mouse", "quantity": 2}]}"#
            )
            #expect(placed.status == .created, "\(placed.body)")
            let order = try placed.json()
            let id = try #require(order["id"] as? Int)
            #expect(order["totalCents"] as? Int == 89_00 + 2 * 25_00)
            #expect(order["customerId"] as? Int == 1)
            #expect(placed.header("location") == "/orders/\(id)")

            let read = try await server.send(.get, "/orders/\(id)")
            #expect(read.status == .ok)
            #expect(try read.json()["totalCents"] as? Int == 89_00 + 2 * 25_00)
            #expect(try (read.json()["items"] as? [[String: Any]])?.count == 2)
        }
    }

    // MARK: Errors

    /// One request and the status and error code it must get.
    struct Refusal: Sendable, CustomTestStringConvertible {
        var method: HTTPRequest.Method
        var uri: String
        var json: String?
        var status: HTTPResponse.Status
        var code: String

        var testDescription: String { "\(self.method) \(self.uri) → \(self.status.code) \(self.code)" }
    }

    static let refusals: [Refusal] = [
        // 400: not JSON, or not the JSON expected.
        Refusal(method: .post, uri: "/customers", json: "{not json", status: .badRequest, code: "malformed_json"),
        Refusal(method: .post, uri: "/orders", json: #"{"lines": []}"#, status: .badRequest, code: "malformed_json"),
        Refusal(
            method: .post,
            uri: "/customers",
            json: #"{"id": "four", "name": "K", "email": "k@nasa.gov"}"#,
            status: .badRequest,
            code: "malformed_json"
        ),
        Refusal(method: .get, uri: "/customers?domain=a.b&minPosition=-1", status: .badRequest, code: "bad_position"),
        // 404: unknown customer, order, route.
        Refusal(method: .get, uri: "/customers/99", status: .notFound, code: "unknown_customer"),
        Refusal(method: .get, uri: "/customers/abc", status: .notFound, code: "unknown_customer"),
        Refusal(
            method: .put,
            uri: "/customers/99/email",
            json: #"{"email": "x@y.z"}"#,
            status: .notFound,
            code: "unknown_customer"
        ),
        Refusal(method: .get, uri: "/orders/99", status: .notFound, code: "unknown_order"),
        Refusal(method: .get, uri: "/no/such/route", status: .notFound, code: "not_found"),
        // 409: the id is taken, the version moved on, the stock ran out.
        Refusal(
            method: .post,
            uri: "/customers",
            json: #"{"id": 1, "name": "Ada again", "email": "ada@example.org"}"#,
            status: .conflict,
            code: "customer_exists"
        ),
        Refusal(
            method: .put,
            uri: "/customers/2/email",
            json: #"{"email": "grace@navy.mil", "expectedVersion": 7}"#,
            status: .conflict,
            code: "version_conflict"
        ),
        Refusal(
            method: .post,
            uri: "/orders",
            json: #"{"customerId": 1, "lines": [{"sku": "monitor", "quantity": 2}]}"#,
            status: .conflict,
            code: "out_of_stock"
        ),
        // 422: well-formed, but not acceptable.
        Refusal(
            method: .post,
            uri: "/customers",
            json: #"{"id": 5, "name": "Mary", "email": "not an address"}"#,
            status: .unprocessableContent,
            code: "invalid_customer"
        ),
        Refusal(
            method: .post,
            uri: "/customers",
            json: #"{"id": 0, "name": "Mary", "email": "mary@example.com"}"#,
            status: .unprocessableContent,
            code: "invalid_customer"
        ),
        Refusal(
            method: .post,
            uri: "/orders",
            json: #"{"customerId": 1, "lines": []}"#,
            status: .unprocessableContent,
            code: "invalid_order"
        ),
        Refusal(
            method: .post,
            uri: "/orders",
            json: #"{"customerId": 1, "lines": [{"sku": "cable", "quantity": 0}]}"#,
            status: .unprocessableContent,
            code: "invalid_order"
        ),
        Refusal(
            method: .post,
            uri: "/orders",
            json: #"{"customerId": 1, "lines": [{"sku": "spaceship", "quantity": 1}]}"#,
            status: .unprocessableContent,
            code: "invalid_order"
        ),
        Refusal(
            method: .post,
            uri: "/orders",
            json: #"{"customerId": 42, "lines": [{"sku": "cable", "quantity": 1}]}"#,
            status: .unprocessableContent,
            code: "invalid_order"
        ),
        Refusal(method: .get, uri: "/customers", status: .unprocessableContent, code: "missing_domain"),
    ]

    @Test("errors map to their statuses, with a JSON body naming the request", arguments: Self.refusals)
    func refusal(_ refusal: Refusal) async throws {
        try await ServerFixture.with { server in
            let reply = try await server.send(refusal.method, refusal.uri, json: refusal.json)
            #expect(reply.status == refusal.status, "\(reply.body)")
            let body = try reply.json()
            #expect(body["error"] as? String == refusal.code)
            #expect(body["requestId"] as? String == reply.header("x-request-id"))
            #expect((body["message"] as? String)?.isEmpty == false)
        }
    }

    @Test("a malformed body's 400 says briefly what is wrong")
    func malformedReason() async throws {
        try await ServerFixture.with { server in
            let missing = try await server.send(.post, "/orders", json: #"{"lines": []}"#)
            #expect(try missing.json()["message"] as? String == "malformed JSON: missing field 'customerId'")
            let notJSON = try await server.send(.post, "/customers", json: "{not json")
            #expect(try notJSON.json()["message"] as? String == "malformed JSON: the body is not valid JSON")
        }
    }

    @Test("a body over the configured limit is a 413, by its length or as it streams")
    func oversizedBody() async throws {
        try await ServerFixture.with({ $0.maxBodyBytes = 64 }) { server in
            let name = String(repeating: "x", count: 100)
            let reply = try await server.send(
                .post,
                "/customers",
                json: #"{"id": 9, "name": "\#(name)", "email": "x@y.z"}"#
            )
            #expect(reply.status == .contentTooLarge, "\(reply.body)")
            #expect(try reply.json()["error"] as? String == "body_too_large")
            // The customer was not registered.
            #expect(try await server.send(.get, "/customers/9").status == .notFound)
            // Within the limit, the same route works.
            let small = try await server.send(.post, "/customers", json: #"{"id": 9, "name": "X", "email": "x@y.z"}"#)
            #expect(small.status == .created, "\(small.body)")
        }
    }

    @Test("an open payments circuit is a 503 with Retry-After, and no 5xx body carries internal text")
    func circuitOpen() async throws {
        try await ServerFixture.with({ $0.paymentsOpenDuration = .seconds(60) }) { server in
            await server.server.gateway.behave(.flaky(failureRate: 1))
            var statuses: [HTTPResponse.Status] = []
            var open: Reply?
            // Each order makes two failing attempts; the breaker opens after five failures in a row,
            // so the third order at the latest finds it open. Ten is a bound, not a timing.
            for _ in 0..<10 {
                let reply = try await server.send(
                    .post,
                    "/orders",
                    json: #"{"customerId": 1, "lines": [{"sku": "cable", "quantity": 1}]}"#
                )
                statuses.append(reply.status)
                #expect(!reply.body.contains("Error"), "a 5xx body must not carry internal text: \(reply.body)")
                #expect(!reply.body.contains("gateway is unavailable"), "\(reply.body)")
                if reply.status == .serviceUnavailable {
                    open = reply
                    break
                }
                #expect(reply.status == .badGateway, "\(reply.body)")
            }
            let reply = try #require(open, "the breaker never opened: \(statuses)")
            #expect(try reply.json()["error"] as? String == "payments_unavailable")
            let retryAfter = try #require(reply.header("retry-after").flatMap { Int($0) })
            #expect((1...60).contains(retryAfter))
            #expect(server.server.payments.breaker.state == .open)
        }
    }

    // MARK: Headers, logs, operations

    @Test("every answer carries a request id and a W3C traceparent; a caller's ids are kept")
    func identityHeaders() async throws {
        try await ServerFixture.with { server in
            let plain = try await server.send(.get, "/customers/1")
            let requestID = try #require(plain.header("x-request-id"))
            #expect(requestID.count == 16 && requestID.allSatisfy(\.isHexDigit))
            let traceparent = try #require(plain.header("traceparent"))
            let parts = traceparent.split(separator: "-")
            #expect(
                parts.count == 4 && parts[0] == "00" && parts[1].count == 32 && parts[2].count == 16 && parts[3] == "01"
            )

            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let traced = try await server.send(
                .get,
                "/customers/99",
                headers: [HTTPField.Name("traceparent")!: incoming, HTTPField.Name("x-request-id")!: "client-42"]
            )
            #expect(traced.status == .notFound)
            #expect(traced.header("x-request-id") == "client-42")
            let echoed = try #require(traced.header("traceparent")).split(separator: "-")
            #expect(echoed[1] == "4bf92f3577b34da6a3ce929d0e0e4736", "the caller's trace continues")
            #expect(echoed[2] != "00f067aa0ba902b7", "with a span of the server's own")

            // The access log line of that request carries both ids.
            let line = server.log.entries.first { $0.metadata["request_id"] == "client-42" }
            let entry = try #require(line, "no log line for the request")
            #expect(entry.metadata["trace_id"]?.description == "4bf92f3577b34da6a3ce929d0e0e4736")
            #expect(entry.message.description == "GET /customers/99 404")
        }
    }

    @Test("/health and /ready answer 200 while running; /metrics shows Keel's metrics")
    func operations() async throws {
        try await ServerFixture.with { server in
            let health = try await server.send(.get, "/health")
            #expect(health.status == .ok)
            #expect(try health.json()["status"] as? String == "live")
            let ready = try await server.send(.get, "/ready")
            #expect(ready.status == .ok, "\(ready.body)")
            #expect(try ready.json()["status"] as? String == "ready")

            let order = try await server.send(
                .post,
                "/orders",
                json: #"{"customerId": 2, "lines": [{"sku": "cable", "quantity": 1}]}"#
            )
            #expect(order.status == .created)
            let metrics = try await server.send(.get, "/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.header("content-type")?.hasPrefix("text/plain") == true)
            // Keel's request timer and the payment breaker's call counter, through
            // SwiftServerTelemetry and swift-prometheus.
            #expect(metrics.body.contains("keel_requests_duration"), "\(metrics.body.prefix(2000))")
            #expect(metrics.body.contains(#"keel_breaker_calls{breaker="payment-gateway""#))
        }
    }

    // MARK: Shutdown

    @Test("graceful shutdown: the request in flight finishes with 200, a new one gets 503, /ready flips")
    func gracefulShutdown() async throws {
        try await ServerFixture.with { server in
            #expect(try await server.send(.get, "/ready").status == .ok)
            let registered = try await server.send(
                .post,
                "/customers",
                json: #"{"id": 4, "name": "Katherine Johnson", "email": "katherine@nasa.gov"}"#
            )
            let position = try #require(registered.json()["position"] as? Int)

            // In flight: a read that waits for the next event of the store, which only the test
            // will append.
            async let inFlight = server.send(.get, "/customers?domain=nasa.gov&minPosition=\(position + 1)")
            await server.server.gate.waitUntilInFlight(atLeast: 1)

            await server.server.triggerGracefulShutdown()
            await server.server.gate.waitUntilDraining()

            let ready = try await server.send(.get, "/ready")
            #expect(ready.status == .serviceUnavailable)
            #expect(ready.body.contains("draining"))
            let refused = try await server.send(
                .post,
                "/customers",
                json: #"{"id": 6, "name": "Dorothy Vaughan", "email": "dorothy@nasa.gov"}"#
            )
            #expect(refused.status == .serviceUnavailable, "\(refused.body)")
            #expect(refused.header("retry-after") == "1")
            #expect(try refused.json()["error"] as? String == "shutting_down")

            // The host still runs while an accepted request is in flight: the write it waits for
            // goes through, and the read answers.
            _ = try await server.server.host.client.send(
                RegisterCustomer(aggregateID: "5", name: "Mary Jackson", email: "mary@nasa.gov")
            )
            let answered = try await inFlight
            #expect(answered.status == .ok, "\(answered.body)")
            let ids = try #require(answered.json()["customers"] as? [[String: Any]]).compactMap { $0["id"] as? Int }
            #expect(ids == [4, 5])
        }
    }
}
