import KeelCore
import Synchronization

/// The metric handlers of one bulkhead, made once at construction.
///
/// With a telemetry that records no metrics (``NoOpTelemetry``) every handler is `nil`, so the hot
/// path pays one branch instead of several existential calls.
///
/// Metrics, each with the dimension `bulkhead` = name:
/// - `keel.bulkhead.in_flight` (gauge): units held;
/// - `keel.bulkhead.queued` (gauge): waiters queued;
/// - `keel.bulkhead.utilisation` (gauge): units held / capacity;
/// - `keel.bulkhead.rejected` (counter, dimension `reason`: `queue_full`, `exceeds_capacity`,
///   `wait_timed_out`);
/// - `keel.bulkhead.wait` (timer): how long granted waiters waited.
///
/// Rejections are also logged (source `keel.bulkhead`, at most one record a second per
/// bulkhead; see ``RejectionLog``).
struct BulkheadInstruments: Sendable {
    final class Gauges: Sendable {
        let inFlight: any TelemetryGauge
        let queued: any TelemetryGauge
        let utilisation: any TelemetryGauge
        /// The version of the state the gauges show.
        private let shown = Lock<UInt64>(0)

        init(inFlight: any TelemetryGauge, queued: any TelemetryGauge, utilisation: any TelemetryGauge) {
            self.inFlight = inFlight
            self.queued = queued
            self.utilisation = utilisation
        }

        /// Sets the gauges to the state numbered `version`, unless they already show a later one.
        ///
        /// The bulkhead reads its state under its lock and sets the gauges after releasing it, so
        /// two updates can arrive out of order (a release that hands its permit to a waiter, then
        /// the waiter's own release, each on its own thread): without the version, the older
        /// value could be set last and stay.
        func update(version: UInt64, used: Int, queued: Int, capacity: Int) {
            self.shown.withLock { shown in
                guard version > shown else { return }
                shown = version
                self.inFlight.set(Double(used))
                self.queued.set(Double(queued))
                self.utilisation.set(Double(used) / Double(capacity))
            }
        }
    }

    final class Events: Sendable {
        let queueFull: any TelemetryCounter
        let exceedsCapacity: any TelemetryCounter
        let timedOut: any TelemetryCounter
        let wait: any TelemetryTimer

        init(
            queueFull: any TelemetryCounter,
            exceedsCapacity: any TelemetryCounter,
            timedOut: any TelemetryCounter,
            wait: any TelemetryTimer
        ) {
            self.queueFull = queueFull
            self.exceedsCapacity = exceedsCapacity
            self.timedOut = timedOut
            self.wait = wait
        }
    }

    /// Logs rejections at ``/KeelCore/LogLevel/warning``, at most one record per
    /// ``interval`` per bulkhead: the first rejection after a quiet interval is logged at once,
    /// the ones that follow within the interval are counted and reported with the next record
    /// (metadata `bulkhead`, `reason`, `suppressed`).
    final class RejectionLog: Sendable {
        /// The least time between two records of one bulkhead.
        static let interval = Duration.seconds(1)

        private let telemetry: any Telemetry
        private let name: String
        /// When the last record was written, and the rejections not logged since.
        private let state = Lock<(lastLogged: Duration?, suppressed: Int)>((nil, 0))

        init(telemetry: any Telemetry, name: String) {
            self.telemetry = telemetry
            self.name = name
        }

        /// Notes one rejection at `now` (the bulkhead's clock) and logs it unless a record was
        /// written less than ``interval`` ago.
        func rejected(reason: String, message: String, now: Duration) {
            let suppressed = self.state.withLock { state -> Int? in
                if let last = state.lastLogged, now - last < Self.interval {
                    state.suppressed += 1
                    return nil
                }
                let suppressed = state.suppressed
                state = (now, 0)
                return suppressed
            }
            guard let suppressed else { return }
            let since = suppressed > 0 ? " (\(suppressed) more rejected since the last record)" : ""
            self.telemetry.log(
                .warning,
                source: "keel.bulkhead",
                "bulkhead \(self.name) rejected a caller (\(reason)): \(message)\(since)",
                metadata: ["bulkhead": self.name, "reason": reason, "suppressed": "\(suppressed)"]
            )
        }
    }

    let gauges: Gauges?
    let events: Events?
    /// Where rejections are logged; `nil` when the telemetry does not log warnings.
    let rejections: RejectionLog?

    /// No handlers at all.
    static let none = BulkheadInstruments(gauges: nil, events: nil, rejections: nil)

    /// Makes the handlers for the bulkhead `name`.
    /// - Parameter withGauges: `false` for bulkheads that share a name (keyed ones), whose
    ///   gauges would overwrite each other.
    static func make(
        _ telemetry: any Telemetry,
        name: String,
        withGauges: Bool = true
    )
        -> BulkheadInstruments
    {
        let rejections = telemetry.isLogging(.warning) ? RejectionLog(telemetry: telemetry, name: name) : nil
        guard telemetry.recordsMetrics else {
            return BulkheadInstruments(gauges: nil, events: nil, rejections: rejections)
        }
        let dimensions = [("bulkhead", name)]
        func rejected(_ reason: String) -> any TelemetryCounter {
            telemetry.makeCounter(label: "keel.bulkhead.rejected", dimensions: dimensions + [("reason", reason)])
        }
        let gauges =
            withGauges
            ? Gauges(
                inFlight: telemetry.makeGauge(label: "keel.bulkhead.in_flight", dimensions: dimensions),
                queued: telemetry.makeGauge(label: "keel.bulkhead.queued", dimensions: dimensions),
                utilisation: telemetry.makeGauge(label: "keel.bulkhead.utilisation", dimensions: dimensions)
            ) : nil
        let events = Events(
            queueFull: rejected("queue_full"),
            exceedsCapacity: rejected("exceeds_capacity"),
            timedOut: rejected("wait_timed_out"),
            wait: telemetry.makeTimer(label: "keel.bulkhead.wait", dimensions: dimensions)
        )
        return BulkheadInstruments(gauges: gauges, events: events, rejections: rejections)
    }
}
