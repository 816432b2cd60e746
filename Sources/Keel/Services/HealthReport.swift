/// What a service instance says about its health.
///
/// *Liveness* says whether the instance works at all; *readiness* whether it should get traffic
/// now (it may be live but warming up, or shedding load). An instance takes requests only while it
/// is both live and ready; it returns to the rotation as soon as a later check says so.
public struct HealthReport: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Whether the instance works at all.
    public var isLive: Bool
    /// Whether the instance should receive traffic now.
    public var isReady: Bool
    /// A human-readable reason, for the unhealthy cases.
    public var detail: String?

    /// Creates a report.
    /// - Parameters:
    ///   - isLive: Whether the instance works at all.
    ///   - isReady: Whether it should receive traffic.
    ///   - detail: Why not, if not.
    public init(isLive: Bool, isReady: Bool, detail: String? = nil) {
        self.isLive = isLive
        self.isReady = isReady
        self.detail = detail
    }

    /// Live and ready.
    public static let healthy = HealthReport(isLive: true, isReady: true)

    /// Live but not ready for traffic.
    /// - Parameter reason: Why.
    /// - Returns: The report.
    public static func notReady(_ reason: String) -> HealthReport {
        HealthReport(isLive: true, isReady: false, detail: reason)
    }

    /// Not live.
    /// - Parameter reason: Why.
    /// - Returns: The report.
    public static func dead(_ reason: String) -> HealthReport {
        HealthReport(isLive: false, isReady: false, detail: reason)
    }

    /// Whether the instance should be in the load-balancing rotation.
    public var isServing: Bool { self.isLive && self.isReady }

    /// `healthy`, `not ready: …` or `dead: …`.
    public var description: String {
        if self.isServing { return "healthy" }
        let state = self.isLive ? "not ready" : "dead"
        return self.detail.map { "\(state): \($0)" } ?? state
    }
}
