extension EventBus {
    /// Offers `published` to `target` with the fault the injector chooses for this delivery.
    ///
    /// Runs in the publisher's task, once per matching subscription, in subscription order, so
    /// the injector's draws follow the order of publications. A drop is counted where an
    /// overflow drop is (the subscription's ``SubscriptionStatistics/dropped``, the
    /// `keel.bus.dropped` counter and the ``PublishReceipt/dropped`` of the publication) and is
    /// not a dead letter: the subscriber simply never sees the event, as over a lossy link. A
    /// delay or a duplicate travels with the event through the mailbox, and the subscription's
    /// task carries it out (``Subscriber/deliver(_:injecting:)``).
    func send(
        _ published: PublishedEvent,
        to target: Subscriber,
        injecting faults: any FaultInjecting,
        mayWait: Bool
    ) async -> MailboxStateMachine<PublishedEvent>.SendOutcome {
        guard faults.isInjectingDeliveryFaults,
            let fault = faults.deliveryFault(
                topic: published.envelope.topic,
                subscription: target.id,
                name: target.name
            )
        else {
            return await target.send(published, mayWait: mayWait)
        }
        switch fault {
        case .drop:
            // Counts the drop, and the event out of the work tracker.
            target.countDrop()
            return .droppedNewest
        case .delay, .duplicate:
            let marked = PublishedEvent(event: published.event, envelope: published.envelope, fault: fault)
            return await target.send(marked, mayWait: mayWait)
        }
    }
}
