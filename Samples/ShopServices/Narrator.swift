import Keel
import KeelCore

/// Where the shop's services tell what they are doing: one line of text per step, from the
/// service that takes it.
///
/// The `shop` walk-through prints every line (``standardOutput``); a server passes its own, for
/// instance one that logs each line at debug level with the trace id, or ``silent``.
///
/// ```swift
/// let narrator = Narrator { service, text in
///     logger.debug("\(service): \(text)")
/// }
/// try await ShopAssembly.register(on: host, gateway: gateway, payments: payments, narrator: narrator)
/// ```
///
/// **Concurrency.** The closure is called synchronously on the task of the service that speaks,
/// inside its handler, with that handler's ``/KeelCore/TraceContext/current`` bound; it may be
/// called from many tasks at once, and must not block.
public struct Narrator: Sendable {
    private let output: @Sendable (_ service: ServiceName, _ text: String) -> Void

    /// Creates a narrator that hands every line to `output`.
    /// - Parameter output: Called once per line, with the speaking service's name and the text.
    public init(_ output: @escaping @Sendable (_ service: ServiceName, _ text: String) -> Void) {
        self.output = output
    }

    /// Prints each line, tagged with the business operation it works for: the correlation id of
    /// the task-local ``/KeelCore/TraceContext``, which Keel binds around every request and event
    /// handler (that is how the notification service, on its own subscription task, still knows
    /// which order it is working for).
    public static let standardOutput = Narrator { service, text in
        let tag = "[\(service)]"
        guard let correlation = TraceContext.current?.correlationID else {
            print("  \(tag) \(text)")
            return
        }
        print("  \(correlation)  \(tag)\(String(repeating: " ", count: max(1, 15 - tag.count)))\(text)")
    }

    /// Drops every line.
    public static let silent = Narrator { _, _ in }

    /// Tells one line.
    /// - Parameters:
    ///   - service: The service that speaks.
    ///   - text: What it says.
    func callAsFunction(_ service: ServiceName, _ text: String) {
        self.output(service, text)
    }
}
