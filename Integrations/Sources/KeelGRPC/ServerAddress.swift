/// A host and port: where a ``RequestServer`` listens, and where a ``RemoteService`` connects.
public struct ServerAddress: Sendable, Hashable, CustomStringConvertible {
    /// An IPv4 or IPv6 address, or a name to resolve.
    public var host: String
    /// The TCP port; 0 for a server asks the system for a free one.
    public var port: Int

    /// Creates an address.
    /// - Parameters:
    ///   - host: An IPv4 or IPv6 address, or a name to resolve.
    ///   - port: The TCP port.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with an IPv6 address in brackets.
    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}
