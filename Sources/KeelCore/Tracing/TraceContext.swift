/// The trace, correlation and deadline information that travels with a unit of work.
///
/// `TraceContext` is bound to the current task through the task-local ``TraceContext/current``.
/// Keel binds it around every request handler and every event handler from the incoming message,
/// so code inside a handler reads `TraceContext.current` and sees its caller's trace, and any
/// request or event it sends on carries the context forward. Task-locals are inherited by child
/// tasks but not by detached tasks or other queues; that is why Keel rebinds the context from the
/// message envelope rather than relying on inheritance across a mailbox.
///
/// - ``traceID`` names the whole tree of work started by one external trigger.
/// - ``spanID`` names this unit of work; ``parentSpanID`` names the unit that caused it.
/// - ``correlationID`` groups work that belongs to one business operation (an order, a saga);
///   unlike the trace it may be chosen by the application.
/// - ``causationID`` is the id of the message (event or request) that caused this work.
/// - ``deadline`` is the time by which the work must finish; callees inherit it.
///
/// ```swift
/// let root = TraceContext.makeRoot(using: random)
/// try await TraceContext.$current.withValue(root) {
///     try await client.send(GetUser(id: 7))  // the request carries root's trace
/// }
/// ```
public struct TraceContext: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The trace this work belongs to.
    public var traceID: TraceID
    /// This unit of work.
    public var spanID: SpanID
    /// The unit of work that started this one, if any.
    public var parentSpanID: SpanID?
    /// The business operation this work belongs to; the trace id's text unless set.
    public var correlationID: String {
        get { self.correlation.text }
        set { self.explicitCorrelation = LazyID(newValue) }
    }
    /// The id of the message that caused this work, if any.
    public var causationID: String? {
        get { self.causation?.text }
        set { self.causation = newValue.map(LazyID.init) }
    }
    /// The correlation id when one was given; `nil` means "the trace id". Ids are kept as bits
    /// and formatted only when read.
    private var explicitCorrelation: LazyID?
    /// The causation id, formatted only when read.
    package var causation: LazyID?
    /// The time by which this work must finish, if bounded. Not encoded: a deadline is an instant
    /// on a local clock; a remote binding sends the remaining budget instead.
    public var deadline: Deadline?
    /// Whether this context belongs to work a host is already doing (a request or event handler);
    /// such work may still start nested work while the host drains. Not encoded, not compared.
    package var isInHandler = false

    /// The context bound to the current task, if any.
    @TaskLocal public static var current: TraceContext?

    /// Creates a context from its parts.
    /// - Parameters:
    ///   - traceID: The trace id.
    ///   - spanID: The span id.
    ///   - parentSpanID: The parent span id.
    ///   - correlationID: The correlation id.
    ///   - causationID: The causation id.
    ///   - deadline: The deadline.
    public init(
        traceID: TraceID,
        spanID: SpanID,
        parentSpanID: SpanID? = nil,
        correlationID: String,
        causationID: String? = nil,
        deadline: Deadline? = nil
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.explicitCorrelation = LazyID(correlationID)
        self.causation = causationID.map(LazyID.init)
        self.deadline = deadline
    }

    /// Creates a context whose ids are kept unformatted.
    package init(
        traceID: TraceID,
        spanID: SpanID,
        parentSpanID: SpanID?,
        correlation: LazyID?,
        causation: LazyID?
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.explicitCorrelation = correlation
        self.causation = causation
        self.deadline = nil
    }

    /// The correlation id, unformatted: the explicit one, or the trace id.
    package var correlation: LazyID {
        self.explicitCorrelation ?? LazyID(.hex(self.traceID.high, self.traceID.low))
    }

    /// Starts a new trace: fresh trace and span ids, no parent.
    /// - Parameters:
    ///   - random: The source of the ids.
    ///   - correlationID: The correlation id; defaults to the trace id's text.
    /// - Returns: A root context.
    public static func makeRoot(using random: RandomSource, correlationID: String? = nil) -> TraceContext {
        // The trace id's two halves, then the span id: the draws of `TraceID.random` and
        // `SpanID.random`, in one atomic add.
        let (high, low, span) = random.nextThree()
        return TraceContext(
            traceID: TraceID(high: high, low: low | 1),
            spanID: SpanID(rawValue: span | 1),
            parentSpanID: nil,
            correlation: correlationID.map(LazyID.init),
            causation: nil
        )
    }

    /// A context for a unit of work started by this one: same trace, correlation, causation and
    /// deadline, a fresh span id whose parent is this span.
    /// - Parameter random: The source of the new span id.
    /// - Returns: The child context.
    public func makeChild(using random: RandomSource) -> TraceContext {
        var child = self
        child.parentSpanID = self.spanID
        child.spanID = .random(using: random)
        return child
    }

    /// The context of the current task's child, or a new root when no context is bound.
    /// - Parameter random: The source of new ids.
    /// - Returns: A child of ``current``, or a root.
    public static func makeChildOfCurrent(using random: RandomSource) -> TraceContext {
        if let current = TraceContext.current {
            return current.makeChild(using: random)
        }
        return .makeRoot(using: random)
    }

    private enum CodingKeys: String, CodingKey {
        case traceID, spanID, parentSpanID, correlationID, causationID
    }

    /// Decodes the ids; the deadline is not encoded.
    /// - Parameter decoder: The decoder.
    /// - Throws: When an id is missing or malformed.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            traceID: try container.decode(TraceID.self, forKey: .traceID),
            spanID: try container.decode(SpanID.self, forKey: .spanID),
            parentSpanID: try container.decodeIfPresent(SpanID.self, forKey: .parentSpanID),
            correlationID: try container.decode(String.self, forKey: .correlationID),
            causationID: try container.decodeIfPresent(String.self, forKey: .causationID)
        )
    }

    /// Encodes the ids; the deadline is not encoded.
    /// - Parameter encoder: The encoder.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.traceID, forKey: .traceID)
        try container.encode(self.spanID, forKey: .spanID)
        try container.encodeIfPresent(self.parentSpanID, forKey: .parentSpanID)
        try container.encode(self.correlationID, forKey: .correlationID)
        try container.encodeIfPresent(self.causationID, forKey: .causationID)
    }

    public static func == (lhs: TraceContext, rhs: TraceContext) -> Bool {
        lhs.traceID == rhs.traceID && lhs.spanID == rhs.spanID && lhs.parentSpanID == rhs.parentSpanID
            && lhs.correlation == rhs.correlation && lhs.causation == rhs.causation
    }

    /// Hashes the trace and span ids, which identify a context.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.traceID)
        hasher.combine(self.spanID)
    }

    /// A short textual form: trace id and span id.
    public var description: String {
        "\(self.traceID)/\(self.spanID)"
    }
}

extension TraceContext {
    /// Binds `context` as ``current`` for `body`, keeping `body`'s typed error.
    package static func bind<T, Failure: Error>(
        _ context: TraceContext,
        _ body: () async throws(Failure) -> T
    ) async throws(Failure) -> T {
        do {
            return try await TraceContext.$current.withValue(context) { try await body() }
        } catch {
            // `withValue` rethrows only what `body` threw.
            throw error as! Failure
        }
    }
}
