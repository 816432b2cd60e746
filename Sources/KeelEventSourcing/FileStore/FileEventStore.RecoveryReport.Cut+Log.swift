import KeelCore

extension FileEventStore.RecoveryReport.Cut {
    /// Logs the cut (source `keel.store`): a torn tail, the trace of an interrupted write, at
    /// ``/KeelCore/LogLevel/warning``; damage cut by a repair at ``/KeelCore/LogLevel/error``.
    /// Metadata: `store`, `directory`, `file`, `offset`, `droppedBytes`, `removedFile`, `reason`.
    /// - Parameters:
    ///   - telemetry: Where to log.
    ///   - store: Which kind of store, for the message (`event store`, `state store`).
    ///   - directory: The store's directory.
    func log(to telemetry: any Telemetry, store: String, directory: String) {
        let level: LogLevel = self.reason == .tornTail ? .warning : .error
        telemetry.log(
            level,
            source: "keel.store",
            "the \(store) in \(directory) recovered with a cut: \(self)",
            metadata: [
                "store": store,
                "directory": directory,
                "file": self.file,
                "offset": "\(self.offset)",
                "droppedBytes": "\(self.droppedBytes)",
                "removedFile": "\(self.removedFile)",
                "reason": self.reason == .tornTail ? "tornTail" : "repaired",
            ]
        )
    }
}
