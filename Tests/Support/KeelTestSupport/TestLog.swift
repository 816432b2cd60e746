#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Lines a test prints for the person reading the run: seeds to replay a randomized trial, counts
/// of what a trial exercised.
///
/// They go to stderr, unbuffered: `print` writes to stdout, which `swift test` reads through a
/// pipe, where a buffered line can be lost when the test process ends.
package enum TestLog {
    /// Writes `line` and a newline to stderr at once.
    /// - Parameter line: The line.
    package static func line(_ line: String) {
        let text = line + "\n"
        _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }
}
