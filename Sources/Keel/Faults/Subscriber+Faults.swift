import Synchronization

extension Subscriber {
    /// Handles an event that carries an injected fault.
    ///
    /// A delay sleeps on the bus's clock before the handler runs; the subscription's events
    /// behind it wait too, so per-publisher order is kept (a slow link that delivers in order). A
    /// duplicate runs the whole delivery twice, redelivery and dead-lettering included, with the
    /// same envelope, so the handler sees the same event id twice. Ending the subscription during
    /// the delay, or between the two deliveries, discards what is left, counted as
    /// ``SubscriptionStatistics/discarded``.
    func deliver(_ published: PublishedEvent, injecting fault: DeliveryFaultAction) async {
        switch fault {
        case .delay(let duration):
            do {
                try await self.bus.clock.sleep(for: duration)
            } catch {
                self.discarded.wrappingAdd(1, ordering: .relaxed)
                return
            }
            await self.deliver(published)
        case .duplicate:
            await self.deliver(published)
            if Task.isCancelled {
                self.discarded.wrappingAdd(1, ordering: .relaxed)
                return
            }
            await self.deliver(published)
        case .drop:
            // Drops never reach a mailbox: `EventBus.send(_:to:injecting:mayWait:)` counts them.
            preconditionFailure("an injected drop reached the mailbox of \(self.name)")
        }
    }
}
