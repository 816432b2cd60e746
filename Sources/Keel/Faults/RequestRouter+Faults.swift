import KeelCore
import Synchronization

extension RequestRouter {
    /// Asks the injector about one attempt of a request and carries out its answer.
    ///
    /// Runs inside the route's policy, once per attempt, after an instance was chosen and counted
    /// as outstanding: a retry on the route asks again, and a breaker on the route sees an injected
    /// failure as it sees the handler's own. Returns when the handler is to be called (no fault,
    /// or a delay that has elapsed); throws what the attempt fails with otherwise:
    /// - a failure: ``RequestError/Code-swift.struct/handlerFailed`` with the injected error as
    ///   ``RequestError/underlying``, exactly as if the handler had thrown it;
    /// - a delay or a failure's wait cut short, or a timeout ended, by cancellation:
    ///   ``RequestError/Code-swift.struct/cancelled``, which ``dispatch(_:call:caller:)`` turns
    ///   into ``RequestError/Code-swift.struct/deadlineExceeded`` when the caller's deadline is
    ///   what cancelled it, as it does for a handler that overran.
    func inject<R: ServiceRequest>(
        _ faults: any FaultInjecting,
        into request: R.Type,
        route: Route,
        slot: ServiceRegistry.Slot
    ) async throws(RequestError) {
        guard faults.isInjectingRequestFaults, let fault = faults.requestFault(for: request, service: route.service)
        else { return }
        switch fault {
        case .delay(let duration):
            try await self.sleepInjected(for: duration, route: route)
        case .fail(let error, let after):
            if after > .zero {
                try await self.sleepInjected(for: after, route: route)
            }
            throw RequestError(
                code: .handlerFailed,
                request: route.requestName,
                service: route.service,
                message: "an injected fault failed the call to \(slot.id)",
                underlying: error
            )
        case .timeout:
            await Self.waitUntilCancelled()
            throw self.injectedCancellation(route, while: "an injected timeout held the call")
        }
    }

    private func sleepInjected(for duration: Duration, route: Route) async throws(RequestError) {
        do {
            try await self.clock.sleep(for: duration)
        } catch {
            throw self.injectedCancellation(route, while: "an injected delay held the call")
        }
    }

    private func injectedCancellation(_ route: Route, while what: String) -> RequestError {
        RequestError(
            code: .cancelled,
            request: route.requestName,
            service: route.service,
            message: "cancelled while \(what)"
        )
    }

    /// Suspends until the current task is cancelled; returns at once if it already is. Nothing
    /// else resumes it: it is a handler that never answers.
    static func waitUntilCancelled() async {
        // `parked` holds the continuation once stored; `isCancelled` records a cancellation that
        // came first, so that it is honoured when the continuation is stored after it.
        let state = Lock<(parked: CheckedContinuation<Void, Never>?, isCancelled: Bool)>((nil, false))
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.isCancelled { return true }
                    state.parked = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let parked = state.withLock { state in
                state.isCancelled = true
                defer { state.parked = nil }
                return state.parked
            }
            parked?.resume()
        }
    }
}
