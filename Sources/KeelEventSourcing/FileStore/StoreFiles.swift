#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The files a ``FileEventStore`` or a ``FileStateStore`` holds open beside its data files, from
/// open to close: the store's directory and its `LOCK` file, each holding the store's exclusive
/// lock, and the high-water mark's file that the writer thread writes.
///
/// A store keeps them in its locked state and takes them out to close them, once: whichever of
/// `close()` and `deinit` releases the store first finds them there, the other finds `nil`.
struct StoreFiles: Sendable {
    /// The directory, opened to hold a lock that deleting `LOCK` cannot take away.
    let directory: FileDescriptor
    /// The `LOCK` file, locked.
    let lock: FileDescriptor
    /// The high-water mark's file (`HIGHWATER`, `STATEMARK`).
    let mark: FileDescriptor

    /// Releases the locks and closes the three descriptors. Call it once, after the writer thread
    /// that writes the mark has stopped.
    func close() {
        // Closing releases the locks too, unless a copy of a descriptor survives elsewhere (a
        // child forked without `exec`): unlock explicitly first.
        _ = flock(self.lock.raw, LOCK_UN)
        _ = flock(self.directory.raw, LOCK_UN)
        self.mark.close()
        self.lock.close()
        self.directory.close()
    }
}
