import KeelEventSourcing

/// Which service publishes which durable event type, from every registered service's
/// ``ServiceActor/publishes``: what crosses a service's boundary through the store.
///
/// Types are told apart by their Swift identity, not by their stored type name alone, so a
/// private event of one service that happens to share a name with another service's declared
/// event is never taken for it.
struct PublicationCatalog: Sendable {
    private var publishers: [ObjectIdentifier: [ServiceName]] = [:]

    /// Records that `service` publishes `types`.
    mutating func add(_ types: [any DomainEvent.Type], of service: ServiceName) {
        for type in types {
            let key = ObjectIdentifier(type)
            if !(self.publishers[key]?.contains(service) ?? false) {
                self.publishers[key, default: []].append(service)
            }
        }
    }

    /// The services that declared `type`, in registration order.
    func publishers(of type: any DomainEvent.Type) -> [ServiceName] {
        self.publishers[ObjectIdentifier(type)] ?? []
    }

    /// Whether `service` declared `type`.
    func declares(_ service: ServiceName, _ type: any DomainEvent.Type) -> Bool {
        self.publishers(of: type).contains(service)
    }

    /// The namespace a shared-store stream belongs to: what comes before its first `/`.
    static func namespace(of stream: StreamID) -> Substring {
        let name = stream.name
        guard let slash = name.firstIndex(of: "/") else { return name[...] }
        return name[..<slash]
    }
}
