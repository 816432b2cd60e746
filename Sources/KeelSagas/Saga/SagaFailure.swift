/// Why a step, a compensation or a whole saga failed, in a form the journal keeps.
///
/// The journal records the error's type name and description, so that a failure recovered after a
/// restart still says what happened. ``error`` is the error itself, present only in the process
/// where it was thrown.
public struct SagaFailure: Sendable, Codable, Hashable, CustomStringConvertible {
    /// The step (or compensation's step) that failed; `nil` when the body itself threw between
    /// steps.
    public var step: String?
    /// The error's type name, such as `PaymentDeclined` or `CancellationError`.
    public var errorType: String
    /// The error's description.
    public var message: String
    /// The error itself; `nil` once the failure has been read back from the journal.
    public var error: (any Error)?

    /// Creates a failure record.
    /// - Parameters:
    ///   - step: The step that failed, if any.
    ///   - errorType: The error's type name.
    ///   - message: The error's description.
    ///   - error: The error, when at hand.
    public init(step: String?, errorType: String, message: String, error: (any Error)? = nil) {
        self.step = step
        self.errorType = errorType
        self.message = message
        self.error = error
    }

    /// Records `error`, thrown by `step`.
    /// - Parameters:
    ///   - error: The error.
    ///   - step: The step that threw it, if any.
    public init(_ error: any Error, step: String?) {
        if let failure = error as? SagaStepFailure {
            self = failure.failure
            return
        }
        self.init(step: step, errorType: String(describing: type(of: error)), message: "\(error)", error: error)
    }

    /// Whether the failure is the cancellation of the saga's task.
    public var isCancellation: Bool { self.errorType == "CancellationError" }

    /// `step: ErrorType: message`.
    public var description: String {
        (self.step.map { "\($0): " } ?? "") + "\(self.errorType): \(self.message)"
    }

    private enum CodingKeys: String, CodingKey {
        case step, errorType, message
    }

    /// Decodes the failure; ``error`` is `nil`.
    /// - Parameter decoder: The decoder.
    /// - Throws: What the decoder throws.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.step = try container.decodeIfPresent(String.self, forKey: .step)
        self.errorType = try container.decode(String.self, forKey: .errorType)
        self.message = try container.decode(String.self, forKey: .message)
        self.error = nil
    }

    /// Encodes the step, the error's type name and its description.
    /// - Parameter encoder: The encoder.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(self.step, forKey: .step)
        try container.encode(self.errorType, forKey: .errorType)
        try container.encode(self.message, forKey: .message)
    }

    /// Compares the step, type name and message; not ``error``.
    /// - Parameters:
    ///   - lhs: A failure.
    ///   - rhs: Another.
    /// - Returns: Whether they record the same failure.
    public static func == (lhs: SagaFailure, rhs: SagaFailure) -> Bool {
        lhs.step == rhs.step && lhs.errorType == rhs.errorType && lhs.message == rhs.message
    }

    /// Hashes the step, type name and message.
    /// - Parameter hasher: The hasher.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.step)
        hasher.combine(self.errorType)
        hasher.combine(self.message)
    }
}

/// The error a step call throws into the saga's body when the step failed: the body may catch it
/// (and, for example, try another way), or let it end the saga.
///
/// On replay, a step the journal records as failed throws this again, with the recorded
/// ``failure``, without running.
public struct SagaStepFailure: Error, Sendable, CustomStringConvertible {
    /// The failure, with the step's name.
    public var failure: SagaFailure

    /// Creates the error.
    /// - Parameter failure: The failure.
    public init(failure: SagaFailure) {
        self.failure = failure
    }

    /// The failure's description.
    public var description: String { "step failed: \(self.failure)" }
}
