/// A snapshot of one bulkhead's state and history.
///
/// For a ``Bulkhead`` a unit is one operation, so ``used`` equals ``inFlight``; for a
/// ``MemoryBulkhead`` category a unit is a byte and ``inFlight`` counts leases. Totals count from
/// the bulkhead's creation. Reading a snapshot takes the bulkhead's lock briefly and never
/// suspends. ``used``, ``inFlight`` and ``queued`` are read together; the uncontended path counts
/// ``admitted`` and ``peakUsed`` just after it takes its units, without the lock, so a snapshot
/// taken at that instant may count those units before their admission (``peakUsed`` is never
/// below ``used``). Once no acquisition is under way, every figure is exact.
public struct BulkheadMetrics: Sendable, Hashable, CustomStringConvertible {
    /// The bulkhead's name.
    public var name: String
    /// The units available in total (`maxConcurrent`, or the byte budget).
    public var capacity: Int
    /// Units held now.
    public var used: Int
    /// Operations or leases holding units now.
    public var inFlight: Int
    /// Waiters in the queue now.
    public var queued: Int
    /// The most units ever held at once.
    public var peakUsed: Int
    /// Acquisitions granted, at once or after waiting.
    public var admitted: Int
    /// Acquisitions refused at once (queue full, or larger than the capacity).
    public var rejected: Int
    /// Waiters that gave up after `maxWait`.
    public var timedOut: Int
    /// Waiters whose task was cancelled while queued.
    public var cancelled: Int
    /// Acquisitions that had to wait and were then granted.
    public var waited: Int
    /// The total time those acquisitions waited.
    public var totalWaitTime: Duration

    /// The share of the capacity in use now, from 0 to 1.
    public var utilisation: Double {
        Double(self.used) / Double(self.capacity)
    }

    /// The mean wait of the acquisitions that waited; `.zero` if none did.
    public var averageWaitTime: Duration {
        self.waited == 0 ? .zero : self.totalWaitTime / self.waited
    }

    /// One line with every figure.
    public var description: String {
        "\(self.name): \(self.used)/\(self.capacity) used by \(self.inFlight), \(self.queued) queued, "
            + "peak \(self.peakUsed), admitted \(self.admitted), rejected \(self.rejected), "
            + "timed out \(self.timedOut), cancelled \(self.cancelled), waited \(self.waited) "
            + "(total \(self.totalWaitTime))"
    }
}
