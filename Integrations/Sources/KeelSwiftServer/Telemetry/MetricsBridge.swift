import CoreMetrics
import KeelCore

/// The metrics half of ``SwiftServerTelemetry``: makes each Keel instrument as one swift-metrics
/// metric, or as an instrument that records nothing when metrics are off.
///
/// Every `make…` call makes its swift-metrics metric at once (the factory's handler is made
/// there); the returned instrument only forwards to it. Keel makes each instrument once, when a
/// component is made, so a backend sees one `make…` per Keel instrument, never one per record.
struct MetricsBridge: Sendable {
    /// The factory, or `nil` when metrics are off.
    let factory: (any MetricsFactory)?

    func makeCounter(label: String, dimensions: [(String, String)]) -> any TelemetryCounter {
        guard let factory = self.factory else {
            return NoOpTelemetry().makeCounter(label: label, dimensions: dimensions)
        }
        return BridgedCounter(counter: Counter(label: label, dimensions: dimensions, factory: factory))
    }

    /// A Keel gauge only ever sets its value, which is what swift-metrics' `Gauge` (a recorder
    /// that does not aggregate) means, and every backend since swift-metrics 1.0 supports it.
    /// A `Meter` would add increments Keel does not use, and a backend that does not implement
    /// `makeMeter` gets swift-metrics' fallback, which records into an aggregating recorder: the
    /// gauge would show up there as a distribution.
    func makeGauge(label: String, dimensions: [(String, String)]) -> any TelemetryGauge {
        guard let factory = self.factory else {
            return NoOpTelemetry().makeGauge(label: label, dimensions: dimensions)
        }
        return BridgedGauge(gauge: Gauge(label: label, dimensions: dimensions, factory: factory))
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TelemetryTimer {
        guard let factory = self.factory else {
            return NoOpTelemetry().makeTimer(label: label, dimensions: dimensions)
        }
        return BridgedTimer(timer: Timer(label: label, dimensions: dimensions, factory: factory))
    }

    func makeHistogram(label: String, dimensions: [(String, String)]) -> any TelemetryHistogram {
        guard let factory = self.factory else {
            return NoOpTelemetry().makeHistogram(label: label, dimensions: dimensions)
        }
        return BridgedHistogram(
            recorder: Recorder(label: label, dimensions: dimensions, aggregate: true, factory: factory)
        )
    }

    /// The most nanoseconds a swift-metrics timer can record, as a duration.
    private static let largest = Duration.nanoseconds(Int64.max)
    /// The fewest.
    private static let smallest = Duration.nanoseconds(Int64.min)

    /// `duration` in whole nanoseconds (any fraction of a nanosecond cut off, towards zero),
    /// clamped to `Int64`: exact for every duration from `Int64.min` to `Int64.max` nanoseconds
    /// (about ±292 years), `Int64.max` above and `Int64.min` below.
    ///
    /// The bounds are checked on the duration itself, before it is split: a `Duration` holds
    /// 128 bits of attoseconds, and neither its seconds times 10⁹ nor, for the largest ones, its
    /// seconds alone fit in an `Int64`.
    static func nanoseconds(clamping duration: Duration) -> Int64 {
        if duration >= Self.largest { return .max }
        if duration <= Self.smallest { return .min }
        // Within the bounds: |seconds| ≤ 9_223_372_036, so neither step overflows.
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// A Keel counter that increments a swift-metrics `Counter`.
struct BridgedCounter: TelemetryCounter {
    let counter: Counter

    func increment(by amount: Int64) {
        self.counter.increment(by: amount)
    }
}

/// A Keel gauge that records each value into a swift-metrics `Gauge`.
struct BridgedGauge: TelemetryGauge {
    let gauge: Gauge

    func set(_ value: Double) {
        self.gauge.record(value)
    }
}

/// A Keel timer that records each duration into a swift-metrics `Timer`, in nanoseconds.
struct BridgedTimer: TelemetryTimer {
    let timer: Timer

    func record(_ duration: Duration) {
        self.timer.recordNanoseconds(MetricsBridge.nanoseconds(clamping: duration))
    }
}

/// A Keel histogram that records each value into an aggregating swift-metrics `Recorder`.
struct BridgedHistogram: TelemetryHistogram {
    let recorder: Recorder

    func record(_ value: Double) {
        self.recorder.record(value)
    }
}
