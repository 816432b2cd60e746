import Foundation
import KeelCore

extension WallClock {
    /// The current time as a `Date` (which keeps it to about a microsecond): the time of an
    /// ``EventEnvelope``.
    ///
    /// Internal on purpose: a public member here would make Keel's documentation extend KeelCore,
    /// and Keel's articles link to KeelCore's.
    func date() -> Date {
        Date(timeIntervalSince1970: Double(self.nanosecondsSinceEpoch()) / 1_000_000_000)
    }
}
