import Dispatch
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc  // abort
#elseif canImport(Musl)
import Musl  // abort
#elseif canImport(Darwin)
import Darwin  // abort
#endif

/// The base of this target's XCTest cases: a test that runs past ``timeLimit`` ends the test
/// process with a message naming it, instead of hanging the run (as the root package's
/// `TimeLimitedTestCase`, which this package cannot import).
///
/// XCTest on Linux has no per-test time limit (`executionTimeAllowance` is Apple's only): a
/// watchdog on a Dispatch queue starts with each test and is cancelled when the test returns.
class TimeLimitedTestCase: XCTestCase {
    /// The most one test of the class may take; 60 s unless overridden.
    class var timeLimit: Duration { .seconds(60) }

    override func invokeTest() {
        let limit = Self.timeLimit
        let name = self.name
        let watchdog = DispatchWorkItem {
            let message = "error: \(name) did not finish within its time limit of \(limit); ending the test process\n"
            FileHandle.standardError.write(Data(message.utf8))
            abort()
        }
        let (seconds, attoseconds) = limit.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds), execute: watchdog)
        defer { watchdog.cancel() }
        super.invokeTest()
    }
}
