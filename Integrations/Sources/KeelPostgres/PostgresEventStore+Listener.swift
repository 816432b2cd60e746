import KeelCore
import Logging
import PostgresNIO
import Synchronization

extension PostgresEventStore {
    /// The listener: keeps its one connection (``listenerClient``'s) listening on the schema's channel and raises the known
    /// head with every notification, until its task is cancelled. When the connection fails it
    /// waits per ``Configuration/listenerBackoff`` and listens again; each time it starts
    /// listening it reads the head from the table, since a notification sent while nobody
    /// listened is lost.
    func runListener() async {
        var delays = self.configuration.listenerBackoff.makeDelays(using: RandomSource())
        let channel = self.schema.channel
        while !Task.isCancelled {
            do {
                try await self.listenerClient.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        // Listening from here on: a commit after this point is notified. Read the
                        // head, which covers every commit before it.
                        let rows = try await connection.checkedQuery(
                            PostgresQuery(unsafeSQL: self.schema.readHead),
                            logger: self.logger
                        )
                        for try await head in rows.decode(Int64.self) { self.observe(head: UInt64(head)) }
                        delays = self.configuration.listenerBackoff.makeDelays(using: RandomSource())
                        for try await notification in notifications {
                            if let head = UInt64(notification.payload) { self.observe(head: head) }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                self.logger.warning("listener on \(channel) failed, listening again: \(Self.describe(error))")
            }
            guard !Task.isCancelled, let delay = delays.next() else { return }
            do {
                try await self.sleep(for: delay)
            } catch {
                return
            }
        }
    }
}
