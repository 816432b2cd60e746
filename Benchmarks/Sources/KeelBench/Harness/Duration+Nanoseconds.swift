extension Duration {
    /// The duration in nanoseconds.
    var nanoseconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }
}
