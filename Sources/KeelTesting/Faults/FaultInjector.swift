import Keel
import KeelCore
import Synchronization

/// Makes a host's routes fail, slow down or time out, and its bus drop, delay or duplicate
/// deliveries, by rules a test adds and removes while the host runs; seeded, so that a seed
/// replays the same faults.
///
/// ``TestHost`` makes one for every test host (``TestHost/faults``). For a host you make
/// yourself, set ``Keel/ServiceHost/Configuration/faults`` before making the host.
///
/// ```swift
/// try await TestHost.with(PaymentService()) { test in
///     let outage = test.faults.inject(.failure(GatewayDown()), into: ChargePayment.self)
///     // … every charge fails as if the handler had thrown GatewayDown …
///     test.faults.remove(outage)
///     // … and charges go through again.
/// }
/// ```
///
/// **Where faults happen.** A request fault applies to one *attempt*: the host asks the injector
/// inside the route's policy, after an instance is chosen and before its handler is called, so a
/// retry asks again and a circuit breaker on the route counts an injected failure as it counts
/// the handler's own (see ``RequestFault``). A delivery fault applies to the delivery of one event
/// to one subscription: the bus asks in the publisher's task, once per matching subscription (see
/// ``DeliveryFault``). Durable subscriptions read the event store, not the bus, and replayed dead
/// letters skip the injector: neither sees delivery faults.
///
/// **Which rule.** Rules are consulted in the order they were added; the first one that matches
/// and fires decides, and later rules are not consulted for that call or delivery. A rule that
/// matches but does not fire (its probability draw failed, or its ``FaultSchedule/next(_:)`` count
/// is spent) lets the next rule decide.
///
/// **Determinism.** Each rule draws from a random source of its own, derived from the seed of the
/// host's ``/KeelCore/RandomSource`` and the rule's number, and draws once each time it is
/// consulted with a ``FaultSchedule/probability(_:)`` schedule. A rule's decisions therefore
/// depend only on the host's seed, the order in which rules were added, and the sequence of calls
/// and deliveries it is consulted about: two hosts on the same seed, given the same calls in the
/// same order, inject the same faults. The injector never draws from the host's own source, so
/// adding a rule changes no event id, trace id or load-balancing choice.
///
/// **Concurrency.** Every method is thread-safe and may be called from any task while the host
/// runs; all but ``waitForInjections(count:by:)`` are synchronous and never suspend. A rule added
/// or removed applies from the next attempt or publication on. The injector's lock is never held
/// while a handler, a continuation or other code outside it runs.
///
/// An injector serves one host: the host made with it binds it to its random source, and making
/// a second host with the same injector is a precondition failure.
public final class FaultInjector: Sendable {
    private enum Target {
        case request(ObjectIdentifier, name: String)
        case topics(TopicPattern, subscription: String?)
    }

    private struct Rule {
        var rule: FaultRule
        var target: Target
        var request: RequestFaultAction?
        var delivery: DeliveryFaultAction?
        var schedule: FaultSchedule
        var remaining: Int?
        var random: RandomSource?
        var injections = 0
        var isRemoved = false

        /// Whether the rule fires for the call or delivery it matched; draws when probabilistic.
        mutating func fires(seed: UInt64) -> Bool {
            switch self.schedule.kind {
            case .always:
                return true
            case .next:
                guard let remaining = self.remaining, remaining > 0 else { return false }
                self.remaining = remaining - 1
                return true
            case .probability(let probability):
                if self.random == nil { self.random = FaultInjector.makeRandom(seed: seed, rule: self.rule.number) }
                return self.random!.nextUnitDouble() < probability
            }
        }
    }

    private struct Waiter {
        var rule: Int
        var count: Int
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var rules: [Rule] = []
        var nextNumber = 0
        var seed: UInt64?
        var exempt: Set<SubscriptionID> = []
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
        var cancelledWaiters: Set<UInt64> = []

        /// Counts an injection by the rule at `index`, and takes the waiters it satisfies.
        mutating func countInjection(at index: Int) -> [CheckedContinuation<Void, Never>] {
            self.rules[index].injections += 1
            let injections = self.rules[index].injections
            guard !self.waiters.isEmpty else { return [] }
            var ready: [CheckedContinuation<Void, Never>] = []
            // Sorted by id, so waiters resume in the order they began to wait.
            for id in self.waiters.keys.sorted() {
                guard let waiter = self.waiters[id], waiter.rule == index, waiter.count <= injections else { continue }
                self.waiters[id] = nil
                ready.append(waiter.continuation)
            }
            return ready
        }
    }

    private let state = Lock(State())
    /// The request rules and the delivery rules in force, changed under `state`'s lock and read
    /// without it on every call and publication.
    private let requestRules = Atomic<Int>(0)
    private let deliveryRules = Atomic<Int>(0)

    /// Creates an injector with no rules.
    public init() {}

    /// The seed of the host's random source, once a host was made with this injector.
    public var seed: UInt64? {
        self.state.withLock { $0.seed }
    }

    /// The rules in force, in the order they were added (spent ``FaultSchedule/next(_:)`` rules
    /// included, until removed).
    public var rules: [FaultRule] {
        self.state.withLock { state in state.rules.filter { !$0.isRemoved }.map(\.rule) }
    }

    /// Injects `fault` into attempts of requests of type `request`.
    ///
    /// Applies from the next attempt on, including attempts of calls already in flight that a
    /// retry runs again.
    /// - Parameters:
    ///   - fault: What to do to an attempt.
    ///   - request: The request type, that is the route.
    ///   - schedule: Which attempts; all by default.
    /// - Returns: The rule, to remove it or to count its injections.
    @discardableResult
    public func inject<R: ServiceRequest>(
        _ fault: RequestFault,
        into request: R.Type,
        when schedule: FaultSchedule = .always
    ) -> FaultRule {
        self.add(.request(ObjectIdentifier(request), name: R.name), request: fault.action, schedule: schedule)
    }

    /// Injects `fault` into deliveries of events whose topic matches `pattern`.
    ///
    /// Applies from the next publication on; events already in a mailbox are not affected.
    /// - Parameters:
    ///   - fault: What to do to a delivery.
    ///   - pattern: A ``/Keel/TopicPattern``, such as `order.#`.
    ///   - subscription: The name of the only subscription to hit (a subscription's name is the
    ///     one given to `subscribe`, or else its topic or pattern); every matching subscription
    ///     when `nil`. ``TestHost/events`` is never hit: it records what was published.
    ///   - schedule: Which deliveries; all by default.
    /// - Returns: The rule, to remove it or to count its injections.
    @discardableResult
    public func inject(
        _ fault: DeliveryFault,
        intoTopics pattern: String,
        subscription: String? = nil,
        when schedule: FaultSchedule = .always
    ) -> FaultRule {
        self.add(.topics(TopicPattern(pattern), subscription: subscription), delivery: fault.action, schedule: schedule)
    }

    /// Removes a rule: from the next attempt or publication on, it no longer fires. Removing a
    /// rule twice, or one of another injector, does nothing.
    /// - Parameter rule: The rule.
    public func remove(_ rule: FaultRule) {
        self.state.withLock { state in
            guard self.owns(rule, in: state), !state.rules[rule.number].isRemoved else { return }
            self.retire(&state.rules[rule.number])
        }
    }

    /// Removes every rule.
    public func removeAll() {
        self.state.withLock { state in
            for index in state.rules.indices where !state.rules[index].isRemoved {
                self.retire(&state.rules[index])
            }
        }
    }

    /// How many times `rule` has fired so far, whether or not it has been removed since.
    /// - Parameter rule: The rule.
    /// - Returns: The number of attempts or deliveries it injected a fault into; 0 for a rule of
    ///   another injector.
    public func injections(by rule: FaultRule) -> Int {
        self.state.withLock { state in
            self.owns(rule, in: state) ? state.rules[rule.number].injections : 0
        }
    }

    /// Suspends until `rule` has fired at least `count` times in all (counting from when it was
    /// added), then returns: the handshake that tells a test an injected fault has happened (for
    /// example, that a call now waits in an injected ``RequestFault/timeout``).
    ///
    /// The waiter does not poll: the call or publication that brings the count up resumes it. It
    /// returns at once when the count is already reached, `count` is not positive, or the rule is
    /// another injector's. Cancelling
    /// the waiting task resumes it at once and it returns normally, without the count having been
    /// reached; check ``injections(by:)`` if that matters.
    /// - Parameters:
    ///   - count: How many injections to wait for.
    ///   - rule: The rule.
    public func waitForInjections(count: Int, by rule: FaultRule) async {
        let id: UInt64? = self.state.withLock { state in
            guard count > 0, self.owns(rule, in: state), state.rules[rule.number].injections < count
            else { return nil }
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        guard let id else { return }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state in
                    if state.cancelledWaiters.remove(id) != nil || state.rules[rule.number].injections >= count {
                        return true
                    }
                    state.waiters[id] = Waiter(rule: rule.number, count: count, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { state in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    // Not parked yet: the continuation, once made, returns at once.
                    state.cancelledWaiters.insert(id)
                    return nil as Waiter?
                }
                return waiter
            }
            waiter?.continuation.resume()
        }
        // A cancellation that came after the waiter was resumed left its id behind.
        self.state.withLock { _ = $0.cancelledWaiters.remove(id) }
    }

    private func owns(_ rule: FaultRule, in state: State) -> Bool {
        rule.injector == ObjectIdentifier(self) && state.rules.indices.contains(rule.number)
    }

    private func retire(_ rule: inout Rule) {
        rule.isRemoved = true
        switch rule.target {
        case .request: self.requestRules.subtract(1, ordering: .releasing)
        case .topics: self.deliveryRules.subtract(1, ordering: .releasing)
        }
    }

    private func add(
        _ target: Target,
        request: RequestFaultAction? = nil,
        delivery: DeliveryFaultAction? = nil,
        schedule: FaultSchedule
    ) -> FaultRule {
        self.state.withLock { state in
            let rule = FaultRule(number: state.nextNumber, injector: ObjectIdentifier(self))
            state.nextNumber += 1
            var remaining: Int?
            if case .next(let count) = schedule.kind { remaining = count }
            switch target {
            case .request: self.requestRules.add(1, ordering: .releasing)
            case .topics: self.deliveryRules.add(1, ordering: .releasing)
            }
            state.rules.append(
                Rule(
                    rule: rule,
                    target: target,
                    request: request,
                    delivery: delivery,
                    schedule: schedule,
                    remaining: remaining
                )
            )
            return rule
        }
    }

    /// Exempts a subscription from delivery faults (the test host's recorder).
    func exempt(_ subscription: SubscriptionID) {
        self.state.withLock { _ = $0.exempt.insert(subscription) }
    }

    /// A rule's own random source: a fixed function of the host's seed and the rule's number.
    static func makeRandom(seed: UInt64, rule: Int) -> RandomSource {
        // One SplitMix64 step scrambles the pair into a seed, so that neighbouring rule numbers
        // start far apart in the sequence.
        RandomSource(seed: RandomSource(seed: seed ^ UInt64(rule) &* 0xD1B5_4A32_D192_ED03).next())
    }
}

extension FaultInjector: FaultInjecting {
    package var isInjectingRequestFaults: Bool {
        self.requestRules.load(ordering: .acquiring) > 0
    }

    package var isInjectingDeliveryFaults: Bool {
        self.deliveryRules.load(ordering: .acquiring) > 0
    }

    package func attach(to random: RandomSource) {
        self.state.withLock { state in
            precondition(state.seed == nil, "a FaultInjector serves one host; make a new one for each host")
            state.seed = random.seed
        }
    }

    package func requestFault(for request: any ServiceRequest.Type, service: ServiceName) -> RequestFaultAction? {
        let key = ObjectIdentifier(request)
        let (fault, ready) = self.state.withLock { state -> (RequestFaultAction?, [CheckedContinuation<Void, Never>]) in
            guard let seed = state.seed else { return (nil, []) }
            for index in state.rules.indices where !state.rules[index].isRemoved {
                guard case .request(let target, _) = state.rules[index].target, target == key,
                    state.rules[index].fires(seed: seed)
                else { continue }
                return (state.rules[index].request, state.countInjection(at: index))
            }
            return (nil, [])
        }
        for waiter in ready { waiter.resume() }
        return fault
    }

    package func deliveryFault(topic: String, subscription: SubscriptionID, name: String) -> DeliveryFaultAction? {
        let (fault, ready) = self.state.withLock {
            state -> (DeliveryFaultAction?, [CheckedContinuation<Void, Never>]) in
            guard let seed = state.seed, !state.exempt.contains(subscription) else { return (nil, []) }
            for index in state.rules.indices where !state.rules[index].isRemoved {
                guard case .topics(let pattern, let only) = state.rules[index].target,
                    only == nil || only == name, pattern.matches(topic),
                    state.rules[index].fires(seed: seed)
                else { continue }
                return (state.rules[index].delivery, state.countInjection(at: index))
            }
            return (nil, [])
        }
        for waiter in ready { waiter.resume() }
        return fault
    }
}
