import GRPCCore

extension Metadata {
    /// The first string value for `key`, if any.
    func first(_ key: String) -> String? {
        self[stringValues: key].first { _ in true }
    }
}
