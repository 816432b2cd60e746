import Logging
import ServiceLifecycle

/// The first step of a graceful shutdown: closes the ``DrainGate`` so that new API requests are
/// answered with 503, then waits (up to a timeout) for the requests already accepted to finish.
///
/// It is the last service of the server's `ServiceGroup`, which shuts services down in reverse
/// order and waits for each before the next: so the accepted requests finish while the Keel host
/// still runs (they get no 5xx), then `HostService` drains Keel's own in-flight work and stops the
/// services, and only then does the HTTP server stop listening. Until then it keeps answering:
/// health and metrics normally, new API requests with 503.
struct RequestDrain: Service, CustomStringConvertible {
    let gate: DrainGate
    let timeout: Duration
    let logger: Logger

    func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            // Only `CancellationError`: the group was cancelled; draining still closes the gate.
        }
        self.gate.startDraining()
        let waiting = self.gate.inFlight
        self.logger.notice("draining: new API requests get 503", metadata: ["in_flight": "\(waiting)"])
        let gate = self.gate
        let timeout = self.timeout
        let drained = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await gate.waitUntilIdle()
                return !Task.isCancelled
            }
            group.addTask {
                // The shutdown's own deadline, in real time: not a test's timing.
                try? await ContinuousClock().sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if drained {
            self.logger.notice("drained: every accepted API request has finished")
        } else {
            self.logger.warning(
                "drain timed out: requests still in flight",
                metadata: ["in_flight": "\(gate.inFlight)"]
            )
        }
    }

    var description: String { "RequestDrain" }
}
