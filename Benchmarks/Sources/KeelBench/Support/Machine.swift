import Foundation

/// What the scenarios' descriptions say about the machine they run on.
enum Machine {
    /// The threads of the cooperative pool that runs every task: one per active processor (2 on
    /// the project's machine kind), whatever the number of tasks.
    static let cooperativeThreads = ProcessInfo.processInfo.activeProcessorCount

    /// "the 2-thread cooperative pool", with this machine's count.
    static var pool: String { "the \(Self.cooperativeThreads)-thread cooperative pool" }
}
