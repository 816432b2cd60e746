/// A timeout of a process instance, as its handler (``ProcessManager/handleTimeout(_:state:context:)``)
/// and ``ProcessInstance/timeouts`` see it.
///
/// Scheduled with ``ProcessContext/schedule(_:after:)``, it is stored with the instance's state, so
/// it survives restarts; its due time is a time of day (the host's
/// ``/Keel/ServiceHost/Configuration/wallClock``), so a restart neither moves it nor forgets it.
public struct ProcessTimeout: Sendable, Hashable, Codable {
    /// The name it was scheduled under; an instance has at most one pending timeout per name.
    public var name: String
    /// When it comes due, in nanoseconds since 1970-01-01 00:00:00 UTC on the host's wall clock.
    public var dueTime: Int64
    /// The scheduling's unique id: the id of the message whose handler scheduled it and the
    /// effect's place among that handler's effects. Tells a reschedule apart from the original.
    public var id: String

    /// Creates a timeout.
    /// - Parameters:
    ///   - name: Its name.
    ///   - dueTime: When it comes due, in nanoseconds since 1970-01-01 00:00:00 UTC.
    ///   - id: The scheduling's unique id.
    public init(name: String, dueTime: Int64, id: String) {
        self.name = name
        self.dueTime = dueTime
        self.id = id
    }
}
