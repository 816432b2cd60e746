import KeelCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Faults injected into a ``FileEventStore``'s writes and syncs, for tests of what the store does
/// when the disk fails: a short write followed by an error, `ENOSPC`, `EIO` on `fsync`.
///
/// The writer thread asks before each `pwrite` of a batch and each `fsync` of a segment; a fault
/// scheduled for the n-th write (counting from 1, since the store opened) writes the first
/// `keepingBytes` of the buffer for real, then fails with the given `errno`, as a disk that fills
/// up part-way through a write does. The counts also tell a test how many writes and syncs the
/// store made (for example, that concurrent appends shared one `fsync`), and how often appenders
/// woke the writer.
package final class FileStoreFaults: Sendable {
    private struct State {
        var writes = 0
        var syncs = 0
        var writerWakeups = 0
        var writeFaults: [Int: (keepingBytes: Int, code: Int32)] = [:]
        var syncFaults: [Int: Int32] = [:]
        var readHook: (@Sendable () -> Void)?
    }

    private let state = Lock(State())

    /// No faults scheduled.
    package init() {}

    /// The writes made so far.
    package var writes: Int { self.state.withLock { $0.writes } }
    /// The syncs of segment files made so far.
    package var syncs: Int { self.state.withLock { $0.syncs } }

    /// The times an appender woke the writer thread so far.
    package var writerWakeups: Int { self.state.withLock { $0.writerWakeups } }

    /// Makes the `number`-th write keep only its first `keepingBytes` bytes and fail with `code`.
    package func failWrite(number: Int, keepingBytes: Int = 0, code: Int32 = ENOSPC) {
        self.state.withLock { $0.writeFaults[number] = (keepingBytes, code) }
    }

    /// Makes the `number`-th sync fail with `code` (after the data was written).
    package func failSync(number: Int, code: Int32 = EIO) {
        self.state.withLock { $0.syncFaults[number] = code }
    }

    /// Runs `hook` (once) in the next read, after the read has chosen its records and taken the
    /// segments' descriptors (in a ``FileStateStore``: a value on disk, and the current
    /// generation's file), before it reads them: a test blocks there to close the store under the
    /// read.
    package func beforeNextRead(_ hook: @escaping @Sendable () -> Void) {
        self.state.withLock { $0.readHook = hook }
    }

    /// Runs the hook set by ``beforeNextRead(_:)``, if any.
    func beforeRead() {
        let hook = self.state.withLock { state in
            defer { state.readHook = nil }
            return state.readHook
        }
        hook?()
    }

    /// Counts a write of `count` bytes; returns the fault scheduled for it, if any.
    func nextWrite(count: Int) -> (keepingBytes: Int, code: Int32)? {
        self.state.withLock { state in
            state.writes += 1
            guard let fault = state.writeFaults.removeValue(forKey: state.writes) else { return nil }
            return (min(fault.keepingBytes, count), fault.code)
        }
    }

    /// Counts a wakeup of the writer by an appender.
    func countWriterWakeup() {
        self.state.withLock { $0.writerWakeups += 1 }
    }

    /// Counts a sync; returns the error scheduled for it, if any.
    func nextSync() -> Int32? {
        self.state.withLock { state in
            state.syncs += 1
            return state.syncFaults.removeValue(forKey: state.syncs)
        }
    }
}
