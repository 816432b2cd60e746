import KeelCore
import Synchronization

/// Where the host keeps one instance: set at registration, or by its factory when it starts.
final class ServiceSlot: Sendable {
    private let storage: Lock<(any ServiceActor)?>

    init(_ service: (any ServiceActor)?) {
        self.storage = Lock(service)
    }

    var value: (any ServiceActor)? {
        self.storage.withLock { $0 }
    }

    func set(_ service: any ServiceActor) {
        self.storage.withLock { $0 = service }
    }
}
