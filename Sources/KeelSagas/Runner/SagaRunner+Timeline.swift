extension SagaRunner {
    /// The latest run of the saga `id` named `saga`, as a readable timeline: one line per journal
    /// entry, with the time since the run started.
    ///
    /// ```
    /// +0.000s  started order.place o-7 (run 1)
    /// +0.001s  step validate: attempt 1
    /// +0.002s  step validate: completed
    /// +0.002s  step pay: attempt 1
    /// +0.004s  step pay: failed: PaymentDeclined: insufficient funds
    /// +0.004s  compensate reserve: attempt 1
    /// …
    /// +0.009s  finished: compensated (pay: PaymentDeclined: insufficient funds)
    /// ```
    /// - Parameters:
    ///   - saga: The saga's type name.
    ///   - id: The saga's id.
    /// - Returns: The timeline.
    /// - Throws: ``SagaError`` with ``SagaError/Code-swift.struct/notFound`` when the journal has no
    ///   such saga, or when it cannot be read.
    public func timeline(_ saga: String, id: String) async throws(SagaError) -> String {
        guard
            let replay = try await self.runtime.journal.load(SagaRuntime.stream(saga: saga, id: id))
        else {
            throw SagaError(code: .notFound, message: "no saga \(saga) \(id) in the journal")
        }
        return replay.entries.map { entry in
            let milliseconds = max(0, entry.time - replay.startTime) / 1_000_000
            let fraction = String(milliseconds % 1000)
            let stamp = "+\(milliseconds / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction + "s"
            return stamp + "  " + Self.describe(entry, saga: replay.saga, id: replay.id)
        }.joined(separator: "\n")
    }

    static func describe(_ entry: SagaJournalEntry, saga: String, id: String) -> String {
        let name = entry.name ?? "?"
        let kind = entry.itemKind.map { $0 == .step ? "step" : $0.rawValue } ?? "item"
        let attempt = entry.attempt.map { "attempt \($0)" } ?? "attempt"
        switch entry.kind {
        case .started:
            return "started \(saga) \(id) (run \(entry.run))" + (entry.dueTime == nil ? "" : ", with a deadline")
        case .stepStarted: return "\(kind) \(name): \(attempt)"
        case .stepCompleted: return "\(kind) \(name): completed"
        case .stepFailed:
            return "\(kind) \(name): failed: " + (entry.failure.map { "\($0.errorType): \($0.message)" } ?? "")
        case .compensationStarted: return "compensate \(name): \(attempt)"
        case .compensationCompleted: return "compensate \(name): completed"
        case .compensationFailed:
            return "compensate \(name): gave up: " + (entry.failure.map { "\($0.errorType): \($0.message)" } ?? "")
        case .scopeStarted: return "\(kind) \(name): started"
        case .timerStarted: return entry.itemKind == .signal ? "wait for \(name): started" : "timer \(name): set"
        case .timerFired: return "timer \(name): fired"
        case .finished:
            return "finished: \(entry.outcome?.rawValue ?? "?")" + (entry.failure.map { " (\($0))" } ?? "")
        case .reopened: return "reopened by an operator" + (entry.note.map { ": \($0)" } ?? "")
        case .resolved: return "resolved by an operator" + (entry.note.map { ": \($0)" } ?? "")
        case .signalSent: return "signal \(name) sent"
        }
    }
}
