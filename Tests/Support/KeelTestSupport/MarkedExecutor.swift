import Dispatch
import Synchronization

/// A task executor that runs its jobs on a dispatch queue it marks, so that a test can tell
/// whether code runs on it (``isCurrent``) and how many jobs it ran.
package final class MarkedExecutor: TaskExecutor, Sendable {
    private static let key = DispatchSpecificKey<ObjectIdentifier>()
    private let queue: DispatchQueue
    private let enqueued = Atomic<Int>(0)

    /// Creates an executor on a concurrent queue of its own.
    /// - Parameter label: The queue's label.
    package init(label: String = "keel.test.marked-executor") {
        self.queue = DispatchQueue(label: label, attributes: .concurrent)
        self.queue.setSpecific(key: Self.key, value: ObjectIdentifier(self))
    }

    /// Runs `job` on the queue.
    /// - Parameter job: The job.
    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = self.asUnownedTaskExecutor()
        self.enqueued.add(1, ordering: .relaxed)
        self.queue.async { job.runSynchronously(on: executor) }
    }

    /// Whether the calling code runs on this executor.
    package var isCurrent: Bool {
        DispatchQueue.getSpecific(key: Self.key) == ObjectIdentifier(self)
    }

    /// How many jobs were enqueued so far.
    package var jobs: Int {
        self.enqueued.load(ordering: .relaxed)
    }
}
