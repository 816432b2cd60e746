#if KEEL_TSAN_LOCKS
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
#else
import Synchronization
#endif

/// The lock every Keel module uses for its short critical sections: `Synchronization.Mutex`
/// itself, or, in a build compiled with `-D KEEL_TSAN_LOCKS`, a `pthread_mutex_t` of the same shape.
///
/// On Linux `Mutex` parks on a futex from inside the standard library, which ThreadSanitizer does
/// not instrument: it sees the accesses inside `withLock` but not the lock that orders them, and
/// reports every critical section as a race. `pthread_mutex_lock` is intercepted by the sanitizer,
/// so the ThreadSanitizer run in `.ci/run` builds with
/// `swift build --sanitize=thread -Xswiftc -DKEEL_TSAN_LOCKS` and every report it prints is a
/// real one. Ordinary builds pay nothing: `Lock` is a type alias of `Mutex` there, so call sites
/// compile to exactly the code `Mutex` gives (a wrapper struct was not reliably inlined across
/// modules, and an unspecialised `withLock` costs several times the lock itself).
///
/// The lock is never held across a suspension point (`withLock` is synchronous).
#if KEEL_TSAN_LOCKS
package struct Lock<Value: ~Copyable>: ~Copyable, Sendable {
    @usableFromInline
    let storage: PThreadLockStorage<Value>

    /// Creates a lock around `initialValue`.
    @inlinable
    package init(_ initialValue: consuming sending Value) {
        self.storage = PThreadLockStorage(initialValue)
    }

    /// Runs `body` with exclusive access to the value and returns its result.
    @inlinable
    package borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        try self.storage.withLock(body)
    }
}
#else
package typealias Lock<Value: ~Copyable> = Mutex<Value>
#endif

#if KEEL_TSAN_LOCKS
/// The storage of a ``Lock`` in a ThreadSanitizer build: a heap-allocated `pthread_mutex_t`
/// (its address must not move) and the value it guards.
@usableFromInline
package final class PThreadLockStorage<Value: ~Copyable>: @unchecked Sendable {
    @usableFromInline
    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    @usableFromInline
    nonisolated(unsafe) var value: Value

    @usableFromInline
    init(_ initialValue: consuming sending Value) {
        self.mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        self.mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(self.mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed with \(status)")
        self.value = initialValue
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    @usableFromInline
    func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }
}
#endif
