import Keel

extension ServiceHost.Configuration {
    /// The fault injector that the host's request routes and bus consult; `nil`, the default,
    /// injects nothing and costs one `nil` check per call and per delivery.
    ///
    /// Set it before making the host: the host binds the injector to its random source when it is
    /// made, and an injector serves one host. ``TestHost`` sets a new one unless the configuration
    /// it is given has one.
    ///
    /// ```swift
    /// let faults = FaultInjector()
    /// var configuration = ServiceHost.Configuration()
    /// configuration.faults = faults
    /// let host = ServiceHost(configuration: configuration, clock: clock, random: RandomSource(seed: 7))
    /// faults.inject(.delay(.seconds(2)), into: Quote.self)
    /// ```
    public var faults: FaultInjector? {
        get { self.faultInjector as? FaultInjector }
        set { self.faultInjector = newValue }
    }
}
