import Synchronization

/// The floor of the bus's mailbox shape: a bounded ring buffer in a `Mutex`, one publisher that
/// suspends while the buffer is full, and one consumer task that drains it in batches.
///
/// This is the least a bounded, backpressured mailbox can do, and what the throughput scenarios
/// compare the bus with. The consumer is resumed once per wake-up, not once per element: it parks
/// only when it finds the buffer empty, and only the send that finds it parked resumes it. A
/// full buffer parks the publisher with its element; the consumer's next ``take(into:limit:)``
/// moves the element into the room it freed and resumes the publisher, as the bus's mailbox
/// does. Both parks honour cancellation (a cancelled consumer finishes the mailbox; a cancelled
/// publisher's element is not taken). Unlike the bus there is no envelope, no trace context, no
/// statistics, and at most one publisher may wait at a time.
final class BoundedMailbox<Element: Sendable>: Sendable {
    /// The state under the lock.
    private struct State {
        /// The ring buffer's slots; `nil` where empty.
        var slots: [Element?]
        /// The index of the oldest element.
        var head = 0
        /// How many elements are buffered.
        var count = 0
        /// The consumer, parked on an empty buffer.
        var consumer: UnsafeContinuation<Void, Never>?
        /// The publisher parked on a full buffer, with the element it sends.
        var publisher: (element: Element, continuation: UnsafeContinuation<Bool, Never>)?
        /// Whether ``finish()`` was called.
        var isFinished = false

        /// Appends an element; the buffer must have room.
        mutating func append(_ element: Element) {
            self.slots[(self.head + self.count) % self.slots.count] = element
            self.count += 1
        }

        /// Removes and returns the oldest element, if any.
        mutating func popFirst() -> Element? {
            guard self.count > 0 else { return nil }
            defer {
                self.slots[self.head] = nil
                self.head = (self.head + 1) % self.slots.count
                self.count -= 1
            }
            return self.slots[self.head]
        }
    }

    /// What a send does after releasing the lock.
    private enum SendAction {
        /// Buffered; resume the consumer if it was parked.
        case buffered(wake: UnsafeContinuation<Void, Never>?)
        /// The mailbox is finished.
        case refused
        /// The buffer is full: park.
        case full
    }

    /// What a parking publisher does after releasing the lock.
    private enum ParkAction {
        /// Resume at once with this outcome, and the consumer if it was parked.
        case resume(Bool, wake: UnsafeContinuation<Void, Never>?)
        /// Parked; the consumer or a cancellation resumes it.
        case parked
    }

    private let state: Mutex<State>

    /// Creates an empty mailbox.
    /// - Parameter capacity: The most elements it buffers; at least 1.
    init(capacity: Int) {
        precondition(capacity >= 1, "capacity must be at least 1, got \(capacity)")
        self.state = Mutex(State(slots: Array(repeating: nil, count: capacity)))
    }

    /// Buffers `element`, suspending while the buffer is full.
    ///
    /// Only one task may send at a time.
    /// - Parameter element: The element.
    /// - Returns: `true` when the element was buffered; `false` when the mailbox is finished or the
    ///   publisher was cancelled while it waited.
    func send(_ element: Element) async -> Bool {
        let action = self.state.withLock { state -> SendAction in
            if state.isFinished { return .refused }
            guard state.count < state.slots.count else { return .full }
            state.append(element)
            defer { state.consumer = nil }
            return .buffered(wake: state.consumer)
        }
        switch action {
        case .buffered(let wake):
            wake?.resume()
            return true
        case .refused:
            return false
        case .full:
            return await self.park(element)
        }
    }

    /// Parks the publisher with its element until the consumer makes room.
    private func park(_ element: Element) async -> Bool {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Bool, Never>) in
                let action = self.state.withLock { state -> ParkAction in
                    // A cancellation that came before the continuation was stored found nothing to
                    // resume; it is honoured here.
                    if state.isFinished || Task.isCancelled { return .resume(false, wake: nil) }
                    if state.count < state.slots.count {
                        state.append(element)
                        defer { state.consumer = nil }
                        return .resume(true, wake: state.consumer)
                    }
                    precondition(state.publisher == nil, "two publishers wait on one mailbox")
                    state.publisher = (element, continuation)
                    return .parked
                }
                if case .resume(let isBuffered, let wake) = action {
                    wake?.resume()
                    continuation.resume(returning: isBuffered)
                }
            }
        } onCancel: {
            let publisher = self.state.withLock { state in
                defer { state.publisher = nil }
                return state.publisher?.continuation
            }
            publisher?.resume(returning: false)
        }
    }

    /// Moves up to `limit` elements into `batch` and admits the waiting publisher's element into
    /// the room freed, resuming the publisher.
    /// - Parameters:
    ///   - batch: Where the elements go, oldest first.
    ///   - limit: The most elements to move.
    /// - Returns: Whether the mailbox is finished.
    func take(into batch: inout [Element], limit: Int) -> Bool {
        let (publisher, isFinished) = self.state.withLock { state in
            while batch.count < limit, let element = state.popFirst() {
                batch.append(element)
            }
            var admitted: UnsafeContinuation<Bool, Never>?
            if state.count < state.slots.count, let publisher = state.publisher {
                state.append(publisher.element)
                state.publisher = nil
                admitted = publisher.continuation
            }
            return (admitted, state.isFinished)
        }
        publisher?.resume(returning: true)
        return isFinished
    }

    /// Suspends the consumer until an element arrives or the mailbox finishes; returns at once
    /// when either already happened. Cancelling the consumer finishes the mailbox.
    func waitForElements() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let isParked = self.state.withLock { state -> Bool in
                    if state.count > 0 || state.isFinished || Task.isCancelled { return false }
                    precondition(state.consumer == nil, "two consumers wait on one mailbox")
                    state.consumer = continuation
                    return true
                }
                if !isParked { continuation.resume() }
            }
        } onCancel: {
            self.finish()
        }
    }

    /// Ends the mailbox: later sends are refused, a parked consumer and a parked publisher are
    /// resumed. Elements still buffered are left for the consumer's next takes.
    func finish() {
        let (consumer, publisher) = self.state.withLock { state in
            state.isFinished = true
            defer {
                state.consumer = nil
                state.publisher = nil
            }
            return (state.consumer, state.publisher?.continuation)
        }
        consumer?.resume()
        publisher?.resume(returning: false)
    }
}
