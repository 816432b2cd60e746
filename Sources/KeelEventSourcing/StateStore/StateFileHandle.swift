/// A ``FileStateStore`` generation file's descriptor, closed when the last reference goes.
///
/// A read takes a reference to the handle under the store's lock, together with the index entry
/// it reads, and reads after releasing the lock. Compaction and closing only drop the store's
/// reference, so the descriptor stays open until every read that took it has finished: a read
/// never sees `EBADF`, nor a descriptor number the system has handed to another file since.
final class StateFileHandle: Sendable {
    let descriptor: FileDescriptor

    init(_ descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    deinit {
        self.descriptor.close()
    }

    /// Reads the value `entry` locates, with one `pread` (more only when the system returns
    /// fewer bytes), and checks its CRC-32C.
    /// - Throws: ``KeyValueStoreError/Code/corrupted`` when the bytes fail their checksum or the
    ///   file ends before them, ``KeyValueStoreError/Code/storeFailed`` when the read fails.
    func value(of entry: StateIndex.Entry, namespace: String, key: String) throws(KeyValueStoreError) -> [UInt8] {
        let length = entry.length
        var failure: EventStoreError?
        let bytes = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            do throws(EventStoreError) {
                count = try self.descriptor.read(into: UnsafeMutableRawBufferPointer(buffer), at: entry.offset)
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure {
            throw KeyValueStoreError(
                code: .storeFailed,
                namespace: namespace,
                message: "reading the value of \(key) failed",
                cause: failure
            )
        }
        guard bytes.count == length else {
            throw KeyValueStoreError(
                code: .corrupted,
                namespace: namespace,
                message:
                    "\(self.descriptor.path)@\(entry.offset): the file ends \(bytes.count) bytes into the \(length)-byte value of \(key)"
            )
        }
        guard CRC32C.checksum(bytes) == entry.checksum else {
            throw KeyValueStoreError(
                code: .corrupted,
                namespace: namespace,
                message:
                    "\(self.descriptor.path)@\(entry.offset): the \(length)-byte value of \(key) fails its checksum"
            )
        }
        return bytes
    }
}
