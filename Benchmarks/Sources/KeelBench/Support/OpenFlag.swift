import Synchronization

/// The floor of a fail-fast rejection: an atomic flag that, when set, makes a call throw a
/// prebuilt error before doing anything else.
///
/// The open-breaker scenarios compare a rejection with this: a rejection makes no call, so the
/// fair baseline makes none either. ``check()`` and ``run(_:)`` are `@inline(never)`, as the
/// breaker's `acquirePermit()` and `run(_:)` are calls into another module.
final class OpenFlag: Sendable {
    /// The error every rejection throws, made once.
    struct Rejection: Error {
        /// What rejected the call.
        var name: String
    }

    private let isOpen: Atomic<Bool>
    private let rejection: Rejection

    /// Creates a flag.
    /// - Parameters:
    ///   - name: Named in the prebuilt error.
    ///   - isOpen: Whether calls are rejected.
    init(name: String, isOpen: Bool) {
        self.isOpen = Atomic(isOpen)
        self.rejection = Rejection(name: name)
    }

    /// Admits a call, or throws the prebuilt error when the flag is set: one atomic load.
    /// - Throws: ``Rejection`` when the flag is set.
    @inline(never)
    func check() throws(Rejection) {
        guard !self.isOpen.load(ordering: .acquiring) else { throw self.rejection }
    }

    /// Runs `operation` unless the flag is set; then throws the prebuilt error without calling it.
    /// - Parameter operation: The call, made at most once.
    /// - Returns: What `operation` returns.
    /// - Throws: ``Rejection`` when the flag is set; otherwise what `operation` throws.
    @inline(never)
    func run<T: Sendable>(_ operation: () async throws -> T) async throws -> T {
        guard !self.isOpen.load(ordering: .acquiring) else { throw self.rejection }
        return try await operation()
    }
}
