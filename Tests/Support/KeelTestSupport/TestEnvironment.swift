/// What the test suites need to know about the build they run in.
package enum TestEnvironment {
    /// Whether this is the ThreadSanitizer build (`.ci/run` builds it with `-DKEEL_TSAN_LOCKS`,
    /// which reaches every module): code runs several times slower there, on the same two cores.
    package static let isThreadSanitized: Bool = {
        #if KEEL_TSAN_LOCKS
        true
        #else
        false
        #endif
    }()

    /// How many times longer a time limit is in this build: 4 under ThreadSanitizer, else 1.
    package static let slowdown = isThreadSanitized ? 4 : 1

    /// `count` in an ordinary build, `count / divisor` (at least 1) under ThreadSanitizer: the
    /// size of a stress test's workload, smaller where every memory access is instrumented.
    /// - Parameters:
    ///   - count: The workload in an ordinary build.
    ///   - divisor: How much smaller it is under ThreadSanitizer.
    /// - Returns: The workload for this build.
    package static func scaled(_ count: Int, underThreadSanitizerBy divisor: Int = 10) -> Int {
        isThreadSanitized ? max(1, count / divisor) : count
    }
}
