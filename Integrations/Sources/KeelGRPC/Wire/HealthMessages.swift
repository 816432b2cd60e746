/// The message of `keel.v1.Requests/Health`: the services to report on; none for all of them.
struct HealthQuery: JSONWireMessage, Hashable {
    /// The services' names.
    var services: [String]
}

/// The answer of `keel.v1.Requests/Health`: for each service asked about, how many instances the
/// remote host has and how many of them serve (are live and ready).
struct HealthAnswer: JSONWireMessage, Hashable {
    /// One service's instances.
    struct Entry: Codable, Sendable, Hashable {
        /// The service's name.
        var service: String
        /// Its instances in the remote host's registry; 0 for a service it does not know.
        var instances: Int
        /// How many of them are live and ready.
        var serving: Int
    }

    /// One entry per service asked about, in the order asked.
    var services: [Entry]
}
