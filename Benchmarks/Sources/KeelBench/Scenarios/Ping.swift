import Keel

/// The request of the request scenarios: no payload, an `Int` back.
struct Ping: ServiceRequest {
    typealias Response = Int
}
