/// A fault rule added to a ``FaultInjector``: the handle to remove it and to ask how often it
/// fired.
public struct FaultRule: Sendable, Hashable, CustomStringConvertible {
    /// The rule's number in its injector, counting from 0 in the order rules were added.
    public let number: Int
    /// The injector that made the rule.
    let injector: ObjectIdentifier

    /// `fault-rule-N`.
    public var description: String { "fault-rule-\(self.number)" }
}
