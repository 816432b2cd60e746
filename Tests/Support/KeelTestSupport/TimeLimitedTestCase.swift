import Dispatch
import XCTest

#if canImport(Glibc)
import Glibc  // abort
#elseif canImport(Musl)
import Musl  // abort
#elseif canImport(Darwin)
import Darwin  // abort
#endif

/// The base of Keel's XCTest suites: a test that runs past ``timeLimit`` ends the test process
/// with a message naming it, instead of hanging the run.
///
/// XCTest on Linux has no per-test time limit (`executionTimeAllowance` is Apple's only). A
/// watchdog on a Dispatch queue starts with each test and is cancelled when the test returns; if
/// it fires, the test is stuck (a lost wake-up, a deadlock), and the only way out of a stuck
/// async test is to end the process: it prints the test's name to stderr and aborts, which fails
/// `swift test`. Under ThreadSanitizer the limit is ``TestEnvironment/slowdown`` times longer.
open class TimeLimitedTestCase: XCTestCase {
    /// The most one test of the class may take in an ordinary build; 60 s unless overridden.
    open class var timeLimit: Duration { .seconds(60) }

    /// Runs the test under the watchdog.
    override open func invokeTest() {
        let limit = Self.timeLimit * TestEnvironment.slowdown
        let name = self.name
        let watchdog = DispatchWorkItem {
            let message = "error: \(name) did not finish within its time limit of \(limit); ending the test process"
            TestLog.line(message)
            abort()
        }
        let (seconds, attoseconds) = limit.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds), execute: watchdog)
        defer { watchdog.cancel() }
        super.invokeTest()
    }
}
