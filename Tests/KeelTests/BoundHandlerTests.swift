import Testing

@testable import Keel

@Suite("Bound handlers")
struct BoundHandlerTests {
    private struct Echo: ServiceRequest {
        typealias Response = Int
    }

    @Test("a bound handler with no service behind it throws noHandler instead of trapping")
    func unboundThrows() async throws {
        let unbound = BoundHandler<Echo>()
        #expect(unbound.requestName == Echo.name)
        let error = await #expect(throws: RequestError.self) { try await unbound.call(Echo()) }
        #expect(error?.code == .noHandler)
    }
}
