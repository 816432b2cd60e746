import Keel

/// A service with one trivial handler, reachable both through a host and directly.
actor PingService: ServiceActor {
    static let name: ServiceName = "ping"

    private var count = 0

    nonisolated func registerHandlers(_ handlers: inout RequestHandlers<PingService>) {
        handlers.on(Ping.self) { service, _ in
            service.ping()
        }
    }

    /// The work of one request, on the actor: the baseline calls this directly.
    /// - Returns: The number of pings so far.
    func ping() -> Int {
        self.count &+= 1
        return self.count
    }
}
