import KeelSagas
import Testing

@Suite("SagaError", .timeLimit(.minutes(2)))
struct SagaErrorTests {
    @Test("describes its code, message and cause")
    func description() {
        struct Cause: Error, CustomStringConvertible { var description: String { "disk full" } }
        let error = SagaError(code: .journalUnavailable, message: "cannot append", underlying: Cause())
        #expect(error.description == "SagaError(journalUnavailable): cannot append (cause: disk full)")
        #expect(SagaError.Code.duplicateSaga != .notFound)
    }
}
