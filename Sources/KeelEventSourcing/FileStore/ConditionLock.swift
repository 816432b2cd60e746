#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a `pthread_mutex_t`, with a condition variable for the file store's writer
/// thread to sleep on until there is work. Critical sections are short and never suspend.
final class ConditionLock<State>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state: State

    init(_ state: State) {
        self.state = state
        pthread_mutex_init(self.mutex, nil)
        pthread_cond_init(self.condition, nil)
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    func withLock<Result, E: Error>(_ body: (inout State) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.state)
    }

    /// Waits, with the lock held by the caller's `body`, until `isReady` is true; then runs
    /// `body`. Only the writer thread calls this.
    func wait<Result>(until isReady: (State) -> Bool, then body: (inout State) -> Result) -> Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        while !isReady(self.state) {
            pthread_cond_wait(self.condition, self.mutex)
        }
        return body(&self.state)
    }

    /// Waits until `isReady` is true or `timeout` has passed, whichever comes first.
    /// - Returns: Whether `isReady` became true.
    @discardableResult
    func wait(until isReady: (State) -> Bool, timeout: Duration) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let (seconds, attoseconds) = timeout.components
        var deadline = timespec(
            tv_sec: now.tv_sec + Int(seconds),
            tv_nsec: now.tv_nsec + Int(attoseconds / 1_000_000_000)
        )
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        while !isReady(self.state) {
            if pthread_cond_timedwait(self.condition, self.mutex, &deadline) == ETIMEDOUT {
                return isReady(self.state)
            }
        }
        return true
    }

    /// Wakes the thread waiting in ``wait(until:then:)``. Call it after changing the state.
    func signal() {
        pthread_cond_signal(self.condition)
    }
}

/// A POSIX thread that runs one closure and can be joined: the file store's writer, which makes
/// blocking `write` and `fsync` calls that must not occupy the cooperative thread pool.
final class JoinableThread: @unchecked Sendable {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    // Glibc's `pthread_t` is an integer; Darwin's and Musl's are pointers, imported as optionals.
    #if canImport(Glibc)
    private var thread = pthread_t()
    #else
    private var thread: pthread_t?
    #endif
    private var isJoined = false

    init(_ run: @escaping @Sendable () -> Void) {
        let body = Unmanaged.passRetained(Body(run)).toOpaque()
        let status = pthread_create(
            &self.thread,
            nil,
            { argument in
                let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
                body.run()
                return nil
            },
            body
        )
        precondition(status == 0, "pthread_create failed with \(status)")
    }

    /// Waits for the closure to return. Call once.
    func join() {
        guard !self.isJoined else { return }
        self.isJoined = true
        #if canImport(Glibc)
        pthread_join(self.thread, nil)
        #else
        if let thread = self.thread { pthread_join(thread, nil) }
        #endif
    }
}
