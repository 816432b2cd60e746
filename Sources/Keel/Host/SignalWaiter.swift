import Dispatch
import KeelCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Waits for SIGINT or SIGTERM. The process edge: the one place where Keel uses Dispatch.
enum SignalWaiter {
    /// Suspends until the process receives SIGINT or SIGTERM, or the task is cancelled.
    /// - Returns: The signal's name, or `nil` when cancelled.
    static func wait() async -> String? {
        let signals: [(Int32, String)] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")]
        let queue = DispatchQueue(label: "keel.signals")
        let box = ContinuationBox()
        var sources: [any DispatchSourceSignal] = []
        for (number, name) in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { box.resume(name) }
            source.resume()
            sources.append(source)
        }
        let received = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                box.store(continuation)
            }
        } onCancel: {
            box.resume(nil)
        }
        for source in sources { source.cancel() }
        for (number, _) in signals { signal(number, SIG_DFL) }
        return received
    }
}

/// A continuation that may be resumed before it is stored, and at most once.
private final class ContinuationBox: Sendable {
    private enum State {
        case empty
        case waiting(CheckedContinuation<String?, Never>)
        case resolved(String?)
        case done
    }
    private let state = Lock(State.empty)

    func store(_ continuation: CheckedContinuation<String?, Never>) {
        let value: String?? = self.state.withLock { state in
            switch state {
            case .empty:
                state = .waiting(continuation)
                return nil
            case .resolved(let value):
                state = .done
                return .some(value)
            case .waiting, .done:
                preconditionFailure("continuation stored twice in state \(state)")
            }
        }
        if let value { continuation.resume(returning: value) }
    }

    func resume(_ value: String?) {
        let continuation = self.state.withLock { state -> CheckedContinuation<String?, Never>? in
            switch state {
            case .empty:
                state = .resolved(value)
                return nil
            case .waiting(let continuation):
                state = .done
                return continuation
            case .resolved, .done:
                return nil
            }
        }
        continuation?.resume(returning: value)
    }
}
