import KeelCore
import Synchronization
import Testing

@testable import Keel

/// The mailbox state machine, driven directly: every transition and the action it returns.
///
/// Paths without continuations run synchronously. Paths that park a publisher or the consumer
/// need a real continuation; those run in small async tests that create it with
/// `withCheckedContinuation` / `withUnsafeContinuation` and hand it to the state machine inside the
/// continuation's body, or, when two must be parked at once, in child tasks that report when they
/// have parked.
@Suite("Bus mailbox state machine", .timeLimit(.minutes(2)))
struct BusMailboxStateMachineTests {
    typealias Mailbox = MailboxStateMachine<Int>
    typealias Collector = BusFixtures.Collector

    /// A `SendAction` without its continuations, so that tests can compare it.
    enum Sent: Equatable {
        case enqueued(woke: Bool)
        case enqueuedDroppingOldest(Int, woke: Bool)
        case droppedNewest
        case finished
        case suspend(id: UInt64)
        case full
    }

    /// Summarises `action`. Only for actions that wake no parked consumer: a wake that is dropped
    /// here would leave its task suspended.
    static func sent(_ action: Mailbox.SendAction) -> Sent {
        switch action {
        case .enqueued(let wake): .enqueued(woke: wake != nil)
        case .enqueuedDroppingOldest(let oldest, let wake): .enqueuedDroppingOldest(oldest, woke: wake != nil)
        case .droppedNewest: .droppedNewest
        case .finished: .finished
        case .suspend(let id): .suspend(id: id)
        case .full: .full
        }
    }

    /// A mailbox filled to `capacity` with `1...capacity`.
    static func full(capacity: Int, overflow: OverflowPolicy) -> Mailbox {
        var mailbox = Mailbox(capacity: capacity, overflow: overflow)
        for element in 1...capacity {
            #expect(sent(mailbox.send(element)) == .enqueued(woke: false))
        }
        return mailbox
    }

    /// Takes up to `limit` elements; expects that no publisher was waiting to be admitted.
    static func take(_ mailbox: inout Mailbox, limit: Int = .max) -> [Int] {
        var batch: [Int] = []
        let admitted = mailbox.take(into: &batch, limit: limit)
        #expect(admitted.isEmpty, "a publisher was admitted that the test cannot resume")
        return batch
    }

    // MARK: Sending with room

    @Test("elements are buffered in order up to capacity")
    func buffersInOrder() {
        var mailbox = Mailbox(capacity: 3, overflow: .suspendPublisher)
        #expect(mailbox.count == 0)
        #expect(Self.sent(mailbox.send(1)) == .enqueued(woke: false))
        #expect(Self.sent(mailbox.send(2, mayWait: false)) == .enqueued(woke: false))
        #expect(Self.sent(mailbox.send(3)) == .enqueued(woke: false))
        #expect(mailbox.count == 3)
        #expect(mailbox.waitingProducers == 0)
        #expect(!mailbox.isFinished)
        #expect(Self.take(&mailbox) == [1, 2, 3])
        #expect(mailbox.count == 0)
    }

    @Test("take respects its limit and keeps the rest in order")
    func takeRespectsLimit() {
        var mailbox = Mailbox(capacity: 10, overflow: .suspendPublisher)
        for element in 1...7 { _ = mailbox.send(element) }

        #expect(Self.take(&mailbox, limit: 3) == [1, 2, 3])
        #expect(mailbox.count == 4)
        #expect(mailbox.isConsumerBusy)
        #expect(Self.take(&mailbox, limit: 1) == [4])
        #expect(Self.take(&mailbox, limit: 10) == [5, 6, 7])
        #expect(mailbox.count == 0)
        #expect(Self.take(&mailbox, limit: 10) == [])
        #expect(!mailbox.isConsumerBusy, "an empty take leaves the consumer idle")
    }

    @Test("take appends to a batch that already holds elements, up to the limit in all")
    func takeCountsTheBatchAlreadyHeld() {
        var mailbox = Mailbox(capacity: 10, overflow: .suspendPublisher)
        for element in 1...5 { _ = mailbox.send(element) }
        var batch = [0]
        let admitted = mailbox.take(into: &batch, limit: 3)
        #expect(admitted.isEmpty)
        #expect(batch == [0, 1, 2])
        #expect(mailbox.count == 3)
    }

    @Test("the buffer wraps around many times without losing order")
    func wrapsAround() {
        var mailbox = Mailbox(capacity: 3, overflow: .suspendPublisher)
        var next = 0
        var received: [Int] = []
        for round in 0..<50 {
            for _ in 0..<min(round % 3 + 1, mailbox.capacity - mailbox.count) {
                #expect(Self.sent(mailbox.send(next)) == .enqueued(woke: false))
                next += 1
            }
            received += Self.take(&mailbox, limit: round % 2 + 1)
        }
        received += Self.take(&mailbox)
        #expect(received == Array(0..<next))
    }

    // MARK: Overflow at capacity

    @Test("suspendPublisher at capacity asks the publisher to park, with a fresh id each time")
    func suspendAtCapacity() {
        var mailbox = Self.full(capacity: 2, overflow: .suspendPublisher)
        #expect(Self.sent(mailbox.send(3)) == .suspend(id: 0))
        #expect(Self.sent(mailbox.send(4)) == .suspend(id: 1))
        #expect(Self.sent(mailbox.send(5)) == .suspend(id: 2))
        #expect(mailbox.count == 2, "a publisher asked to park has not added its element yet")
        #expect(mailbox.waitingProducers == 0)
        #expect(Self.take(&mailbox) == [1, 2])
    }

    @Test("suspendPublisher at capacity reports full to a publisher that may not wait")
    func fullWhenMayNotWait() {
        var mailbox = Self.full(capacity: 2, overflow: .suspendPublisher)
        #expect(Self.sent(mailbox.send(3, mayWait: false)) == .full)
        #expect(mailbox.count == 2)
        #expect(Self.sent(mailbox.send(4)) == .suspend(id: 0), "a refusal reserves no id")
        #expect(Self.take(&mailbox) == [1, 2])
    }

    @Test("dropNewest at capacity drops the new element and keeps the buffer", arguments: [true, false])
    func dropNewestAtCapacity(mayWait: Bool) {
        var mailbox = Self.full(capacity: 3, overflow: .dropNewest)
        #expect(Self.sent(mailbox.send(4, mayWait: mayWait)) == .droppedNewest)
        #expect(Self.sent(mailbox.send(5, mayWait: mayWait)) == .droppedNewest)
        #expect(mailbox.count == 3)
        #expect(Self.take(&mailbox, limit: 1) == [1])
        #expect(Self.sent(mailbox.send(6)) == .enqueued(woke: false), "room again after a take")
        #expect(Self.take(&mailbox) == [2, 3, 6])
    }

    @Test("dropOldest at capacity returns the oldest element and buffers the new one", arguments: [true, false])
    func dropOldestAtCapacity(mayWait: Bool) {
        var mailbox = Self.full(capacity: 3, overflow: .dropOldest)
        #expect(Self.sent(mailbox.send(4, mayWait: mayWait)) == .enqueuedDroppingOldest(1, woke: false))
        #expect(Self.sent(mailbox.send(5, mayWait: mayWait)) == .enqueuedDroppingOldest(2, woke: false))
        #expect(mailbox.count == 3)
        #expect(Self.take(&mailbox) == [3, 4, 5])
    }

    @Test("dropOldest with capacity one keeps only the newest element")
    func dropOldestCapacityOne() {
        var mailbox = Self.full(capacity: 1, overflow: .dropOldest)
        for element in 2...5 {
            #expect(Self.sent(mailbox.send(element)) == .enqueuedDroppingOldest(element - 1, woke: false))
        }
        #expect(Self.take(&mailbox) == [5])
    }

    // MARK: Finishing

    @Test("finish discards what is buffered, returns the count, and refuses everything after")
    func finishDiscardsBuffered() {
        var mailbox = Self.full(capacity: 3, overflow: .suspendPublisher)
        let finished = mailbox.finish()
        #expect(finished.discarded == 3)
        #expect(finished.producers.isEmpty)
        #expect(finished.consumer == nil)
        #expect(mailbox.isFinished)
        #expect(mailbox.count == 0)
        #expect(Self.sent(mailbox.send(4)) == .finished)
        #expect(Self.sent(mailbox.send(5, mayWait: false)) == .finished)
        #expect(Self.take(&mailbox) == [])

        let again = mailbox.finish()
        #expect(again.discarded == 0, "a second finish discards nothing more")
        #expect(again.producers.isEmpty)
        #expect(again.consumer == nil)
    }

    @Test(
        "finish refuses new elements whatever the overflow policy",
        arguments: [OverflowPolicy.dropOldest, .dropNewest]
    )
    func finishRefusesUnderDropPolicies(overflow: OverflowPolicy) {
        var mailbox = Mailbox(capacity: 2, overflow: overflow)
        _ = mailbox.send(1)
        #expect(mailbox.finish().discarded == 1)
        #expect(Self.sent(mailbox.send(2)) == .finished)
    }

    @Test("cancelling an id that is not waiting changes nothing")
    func cancelUnknownProducer() {
        var mailbox = Self.full(capacity: 2, overflow: .suspendPublisher)
        #expect(mailbox.cancelProducer(id: 99) == nil)
        #expect(mailbox.count == 2)
        #expect(mailbox.waitingProducers == 0)
    }

    // MARK: Parking publishers (one continuation, in the test's own task)

    @Test("a publisher cancelled after it was asked to park but before it parked resumes cancelled")
    func cancelledBeforePark() async {
        var mailbox = Self.full(capacity: 2, overflow: .suspendPublisher)
        guard case .suspend(let id) = mailbox.send(3) else {
            Issue.record("expected .suspend")
            return
        }
        #expect(mailbox.cancelProducer(id: id) == nil, "nothing to resume yet: the publisher has not parked")

        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Mailbox.SendOutcome, Never>) in
            switch mailbox.park(id: id, element: 3, continuation: continuation) {
            case .resume(let outcome, let wake):
                #expect(wake == nil)
                continuation.resume(returning: outcome)
            case .parked:
                Issue.record("a cancelled publisher parked")
                let taken = mailbox.cancelProducer(id: id)
                (taken ?? continuation).resume(returning: .enqueued)
            }
        }
        #expect(outcome == .cancelled)
        #expect(mailbox.waitingProducers == 0)
        #expect(Self.take(&mailbox) == [1, 2], "the cancelled element was not buffered")
    }

    @Test("a publisher whose room appeared before it parked is buffered at once")
    func roomBeforePark() async {
        var mailbox = Self.full(capacity: 2, overflow: .suspendPublisher)
        guard case .suspend(let id) = mailbox.send(3) else {
            Issue.record("expected .suspend")
            return
        }
        #expect(Self.take(&mailbox, limit: 1) == [1])

        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Mailbox.SendOutcome, Never>) in
            switch mailbox.park(id: id, element: 3, continuation: continuation) {
            case .resume(let outcome, let wake):
                #expect(wake == nil, "the consumer is busy, not parked")
                continuation.resume(returning: outcome)
            case .parked:
                Issue.record("parked although there was room")
                let taken = mailbox.cancelProducer(id: id)
                (taken ?? continuation).resume(returning: .cancelled)
            }
        }
        #expect(outcome == .enqueued)
        #expect(mailbox.waitingProducers == 0)
        #expect(Self.take(&mailbox) == [2, 3])
    }

    @Test("a publisher that parks after finish resumes finished")
    func parkAfterFinish() async {
        var mailbox = Self.full(capacity: 1, overflow: .suspendPublisher)
        guard case .suspend(let id) = mailbox.send(2) else {
            Issue.record("expected .suspend")
            return
        }
        #expect(mailbox.finish().discarded == 1)

        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Mailbox.SendOutcome, Never>) in
            switch mailbox.park(id: id, element: 2, continuation: continuation) {
            case .resume(let outcome, _):
                continuation.resume(returning: outcome)
            case .parked:
                Issue.record("parked on a finished mailbox")
                let taken = mailbox.cancelProducer(id: id)
                (taken ?? continuation).resume(returning: .enqueued)
            }
        }
        #expect(outcome == .finished)
        #expect(mailbox.waitingProducers == 0)
    }

    @Test("cancelling a parked publisher removes it and hands back its continuation")
    func cancelWhileWaiting() async {
        var mailbox = Self.full(capacity: 2, overflow: .suspendPublisher)
        guard case .suspend(let id) = mailbox.send(3) else {
            Issue.record("expected .suspend")
            return
        }

        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Mailbox.SendOutcome, Never>) in
            guard case .parked = mailbox.park(id: id, element: 3, continuation: continuation) else {
                Issue.record("expected the publisher to park")
                continuation.resume(returning: .enqueued)
                return
            }
            #expect(mailbox.waitingProducers == 1)
            guard let taken = mailbox.cancelProducer(id: id) else {
                Issue.record("cancelProducer did not return the parked continuation")
                // Resume it anyway so that the test ends; the state machine still holds a copy.
                continuation.resume(returning: .enqueued)
                return
            }
            #expect(mailbox.waitingProducers == 0)
            #expect(mailbox.cancelProducer(id: id) == nil, "a second cancel finds nothing")
            taken.resume(returning: .cancelled)
        }
        #expect(outcome == .cancelled)

        var batch: [Int] = []
        let admitted = mailbox.take(into: &batch, limit: .max)
        #expect(admitted.isEmpty, "the cancelled publisher is not admitted")
        #expect(batch == [1, 2])
        #expect(mailbox.count == 0)
    }

    // MARK: Parking publishers (several at once, in child tasks)

    /// A mailbox that child tasks share, as the subscriber shares it: behind a `Mutex`.
    final class Shared: Sendable {
        let state: Lock<Mailbox>

        init(_ mailbox: sending Mailbox) {
            self.state = Lock(mailbox)
        }
    }

    /// Parks `element` with `id` from a child task and reports, through `parked`, once it did.
    static func parkedPublisher(
        _ mailbox: Shared,
        id: UInt64,
        element: Int,
        parked: Collector<Int>
    ) async -> Mailbox.SendOutcome {
        await withCheckedContinuation { continuation in
            let action = mailbox.state.withLock { $0.park(id: id, element: element, continuation: continuation) }
            if case .resume(let outcome, let wake) = action {
                wake?.resume()
                continuation.resume(returning: outcome)
            }
            parked.append(element)
        }
    }

    /// Sends `element` to a full mailbox, expecting to be asked to park; returns the id.
    static func reserve(_ mailbox: Shared, _ element: Int) throws -> UInt64 {
        let action = mailbox.state.withLock { Self.sent($0.send(element)) }
        guard case .suspend(let id) = action else {
            Issue.record("expected .suspend, got \(action)")
            throw CancellationError()
        }
        return id
    }

    @Test("waiting publishers are admitted in the order they parked as take frees room")
    func admitsWaitingPublishersInOrder() async throws {
        let mailbox = Shared(Self.full(capacity: 2, overflow: .suspendPublisher))
        let parked = Collector<Int>()
        let first = try Self.reserve(mailbox, 3)
        let second = try Self.reserve(mailbox, 4)

        await withTaskGroup(of: (Int, Mailbox.SendOutcome).self) { group in
            group.addTask { (3, await Self.parkedPublisher(mailbox, id: first, element: 3, parked: parked)) }
            await parked.waitFor(count: 1)
            group.addTask { (4, await Self.parkedPublisher(mailbox, id: second, element: 4, parked: parked)) }
            await parked.waitFor(count: 2)
            #expect(mailbox.state.withLock { $0.waitingProducers } == 2)

            // A new publisher may not overtake the waiting ones.
            let overtaking = mailbox.state.withLock { Self.sent($0.send(5, mayWait: false)) }
            #expect(overtaking == .full)

            // Taking one element frees one slot: the first publisher is admitted, and only it.
            var batch: [Int] = []
            let admittedFirst = mailbox.state.withLock { $0.take(into: &batch, limit: 1) }
            #expect(batch == [1])
            #expect(admittedFirst.count == 1)
            #expect(mailbox.state.withLock { ($0.count, $0.waitingProducers) } == (2, 1))
            for producer in admittedFirst { producer.resume(returning: .enqueued) }
            let resumedFirst = await group.next()
            #expect(resumedFirst?.0 == 3)
            #expect(resumedFirst?.1 == .enqueued)

            // Taking two frees two slots, but only one publisher is still waiting.
            batch.removeAll()
            let admittedSecond = mailbox.state.withLock { $0.take(into: &batch, limit: 2) }
            #expect(batch == [2, 3])
            #expect(admittedSecond.count == 1)
            for producer in admittedSecond { producer.resume(returning: .enqueued) }
            let resumedSecond = await group.next()
            #expect(resumedSecond?.0 == 4)
            #expect(resumedSecond?.1 == .enqueued)

            batch.removeAll()
            let admittedNone = mailbox.state.withLock { $0.take(into: &batch, limit: 10) }
            #expect(batch == [4])
            #expect(admittedNone.isEmpty)
        }
    }

    @Test("finish hands back every waiting publisher in order and counts them as discarded")
    func finishReturnsWaitingPublishers() async throws {
        let mailbox = Shared(Self.full(capacity: 2, overflow: .suspendPublisher))
        let parked = Collector<Int>()
        let first = try Self.reserve(mailbox, 3)
        let second = try Self.reserve(mailbox, 4)

        await withTaskGroup(of: Mailbox.SendOutcome.self) { group in
            group.addTask { await Self.parkedPublisher(mailbox, id: first, element: 3, parked: parked) }
            await parked.waitFor(count: 1)
            group.addTask { await Self.parkedPublisher(mailbox, id: second, element: 4, parked: parked) }
            await parked.waitFor(count: 2)

            let finished = mailbox.state.withLock { $0.finish() }
            #expect(finished.discarded == 4, "two buffered and two waiting")
            #expect(finished.producers.map(\.id) == [first, second])
            #expect(finished.producers.map(\.element) == [3, 4])
            #expect(finished.consumer == nil)
            for producer in finished.producers { producer.continuation.resume(returning: .finished) }

            var outcomes: [Mailbox.SendOutcome] = []
            for await outcome in group { outcomes.append(outcome) }
            #expect(outcomes == [.finished, .finished])
        }
        #expect(mailbox.state.withLock { ($0.count, $0.waitingProducers, $0.isFinished) } == (0, 0, true))
    }

    // MARK: Parking the consumer

    @Test("a parked consumer is woken by the next element, and only once")
    func consumerWokenBySend() async {
        var mailbox = Mailbox(capacity: 2, overflow: .suspendPublisher)
        var secondWake: Sent?
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let parked = mailbox.parkConsumer(continuation)
            #expect(parked)
            guard case .enqueued(let wake) = mailbox.send(1) else {
                Issue.record("expected .enqueued")
                continuation.resume()
                return
            }
            #expect(wake != nil, "the send did not hand back the parked consumer")
            secondWake = Self.sent(mailbox.send(2))
            (wake ?? continuation).resume()
        }
        #expect(secondWake == .enqueued(woke: false), "the consumer was handed out twice")
        #expect(Self.take(&mailbox) == [1, 2])
    }

    @Test("a consumer parked on an empty dropOldest mailbox is woken by the next element")
    func consumerWokenUnderDropOldest() async {
        var mailbox = Mailbox(capacity: 1, overflow: .dropOldest)
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let parked = mailbox.parkConsumer(continuation)
            #expect(parked)
            guard case .enqueued(let wake) = mailbox.send(1) else {
                Issue.record("expected .enqueued")
                continuation.resume()
                return
            }
            #expect(wake != nil)
            (wake ?? continuation).resume()
        }
        #expect(Self.sent(mailbox.send(2)) == .enqueuedDroppingOldest(1, woke: false))
    }

    @Test("the consumer may not park while elements are buffered")
    func consumerRefusedWhenNonEmpty() async {
        var mailbox = Mailbox(capacity: 2, overflow: .suspendPublisher)
        _ = mailbox.send(1)
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let parked = mailbox.parkConsumer(continuation)
            #expect(!parked)
            continuation.resume()
        }
        #expect(Self.sent(mailbox.send(2)) == .enqueued(woke: false), "a refused consumer is not stored")
    }

    @Test("the consumer may not park on a finished mailbox")
    func consumerRefusedWhenFinished() async {
        var mailbox = Mailbox(capacity: 2, overflow: .suspendPublisher)
        _ = mailbox.finish()
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let parked = mailbox.parkConsumer(continuation)
            #expect(!parked)
            continuation.resume()
        }
        #expect(mailbox.finish().consumer == nil)
    }

    @Test("finish hands back the parked consumer")
    func finishWakesConsumer() async {
        var mailbox = Mailbox(capacity: 2, overflow: .suspendPublisher)
        var discarded = -1
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let parked = mailbox.parkConsumer(continuation)
            #expect(parked)
            let finished = mailbox.finish()
            discarded = finished.discarded
            #expect(finished.consumer != nil)
            (finished.consumer ?? continuation).resume()
        }
        #expect(discarded == 0)
        #expect(mailbox.isFinished)
    }
}

@Suite("Bus ring buffer", .timeLimit(.minutes(2)))
struct BusRingBufferTests {
    @Test("first in, first out, across growth while wrapped")
    func fifoAcrossGrowth() {
        var buffer = RingBuffer<Int>(initialCapacity: 2)
        #expect(buffer.isEmpty)
        #expect(buffer.first == nil)
        #expect(buffer.popFirst() == nil)
        buffer.append(1)
        buffer.append(2)
        #expect(buffer.popFirst() == 1)
        buffer.append(3)  // wraps around
        buffer.append(4)  // grows while wrapped
        buffer.append(5)
        #expect(buffer.count == 4)
        #expect(buffer.first == 2)
        var drained: [Int] = []
        while let element = buffer.popFirst() { drained.append(element) }
        #expect(drained == [2, 3, 4, 5])
        #expect(buffer.isEmpty)
    }

    @Test("a zero initial capacity still works")
    func zeroInitialCapacity() {
        var buffer = RingBuffer<String>(initialCapacity: 0)
        for word in ["a", "b", "c"] { buffer.append(word) }
        #expect(buffer.popFirst() == "a")
        #expect(buffer.popFirst() == "b")
        #expect(buffer.popFirst() == "c")
        #expect(buffer.popFirst() == nil)
    }

    @Test("interleaved appends and pops keep order over many laps")
    func manyLaps() {
        var buffer = RingBuffer<Int>(initialCapacity: 4)
        var expected = 0
        var next = 0
        for lap in 0..<200 {
            for _ in 0..<(lap % 5) {
                buffer.append(next)
                next += 1
            }
            for _ in 0..<(lap % 3) {
                guard let element = buffer.popFirst() else { break }
                #expect(element == expected)
                expected += 1
            }
        }
        while let element = buffer.popFirst() {
            #expect(element == expected)
            expected += 1
        }
        #expect(expected == next)
    }
}
