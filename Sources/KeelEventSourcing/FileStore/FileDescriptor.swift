#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `open(2)` from the C library, under a name that no type's own `open` hides.
func systemOpen(_ path: UnsafePointer<CChar>, _ flags: Int32, _ mode: mode_t) -> Int32 {
    open(path, flags, mode)
}

/// `close(2)` from the C library, under a name that no type's own `close` hides.
@discardableResult
func systemClose(_ descriptor: Int32) -> Int32 {
    close(descriptor)
}

/// A thin, throwing wrapper over the POSIX calls the file store makes. Every failure becomes an
/// ``EventStoreError`` with code ``EventStoreError/Code/io`` naming the call, the path and errno.
struct FileDescriptor: Sendable {
    let raw: Int32
    let path: String

    static func open(_ path: String, flags: Int32, mode: mode_t = 0o644) throws(EventStoreError) -> FileDescriptor {
        if flags & (O_CREAT | O_TRUNC) != 0, let simulator = PowerLossSimulator.simulator(for: path) {
            return try simulator.opened(path, flags: flags) { () throws(EventStoreError) in
                try Self.openUnjournaled(path, flags: flags, mode: mode)
            }
        }
        return try Self.openUnjournaled(path, flags: flags, mode: mode)
    }

    private static func openUnjournaled(
        _ path: String,
        flags: Int32,
        mode: mode_t
    ) throws(EventStoreError) -> FileDescriptor {
        let descriptor = path.withCString { systemOpen($0, flags | O_CLOEXEC, mode) }
        guard descriptor >= 0 else { throw Self.failure("open", path) }
        return FileDescriptor(raw: descriptor, path: path)
    }

    static func failure(_ call: String, _ path: String, errno code: Int32 = errno) -> EventStoreError {
        let reason = String(cString: strerror(code))
        return EventStoreError(code: .io, message: "\(call) \(path): \(reason) (errno \(code))")
    }

    func close() {
        _ = systemClose(self.raw)
    }

    func size() throws(EventStoreError) -> Int {
        var info = stat()
        guard fstat(self.raw, &info) == 0 else { throw Self.failure("fstat", self.path) }
        return Int(info.st_size)
    }

    /// Reads exactly `count` bytes at `offset` into `buffer`, or fewer at the end of the file.
    /// - Returns: The bytes read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(EventStoreError) -> Int {
        var done = 0
        while done < buffer.count {
            let result = pread(self.raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if result < 0 {
                if errno == EINTR { continue }
                throw Self.failure("pread", self.path)
            }
            if result == 0 { break }
            done += result
        }
        return done
    }

    /// Reads up to `count` bytes at `offset`.
    func read(count: Int, at offset: Int) throws(EventStoreError) -> [UInt8] {
        guard count > 0 else { return [] }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 1)
        defer { buffer.deallocate() }
        let read = try self.read(into: buffer, at: offset)
        return Array(UnsafeRawBufferPointer(rebasing: buffer[0..<read]))
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(EventStoreError) {
        if let simulator = PowerLossSimulator.simulator(for: self.path) {
            return try simulator.wrote(self.path, offset: offset, bytes: bytes) { () throws(EventStoreError) in
                try self.writeUnjournaled(bytes, at: offset)
            }
        }
        try self.writeUnjournaled(bytes, at: offset)
    }

    private func writeUnjournaled(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(EventStoreError) {
        var done = 0
        while done < bytes.count {
            let result = pwrite(self.raw, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if result < 0 {
                if errno == EINTR { continue }
                throw Self.failure("pwrite", self.path)
            }
            done += result
        }
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: [UInt8], at offset: Int) throws(EventStoreError) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(EventStoreError) in try self.write(buffer, at: offset) }
        }
        try result.get()
    }

    func sync() throws(EventStoreError) {
        if let simulator = PowerLossSimulator.simulator(for: self.path) {
            return try simulator.synced(self.path) { () throws(EventStoreError) in try self.syncUnjournaled() }
        }
        try self.syncUnjournaled()
    }

    private func syncUnjournaled() throws(EventStoreError) {
        #if canImport(Darwin)
        // Darwin's fsync(2) hands the data to the drive without making the drive write its cache
        // to stable storage; F_FULLFSYNC does. A file system that does not support it refuses
        // it, and fsync is the best there is.
        if fcntl(self.raw, F_FULLFSYNC) == 0 { return }
        #endif
        guard fsync(self.raw) == 0 else { throw Self.failure("fsync", self.path) }
    }

    func truncate(to size: Int) throws(EventStoreError) {
        if let simulator = PowerLossSimulator.simulator(for: self.path) {
            return try simulator.truncated(self.path, size: size) { () throws(EventStoreError) in
                try self.truncateUnjournaled(to: size)
            }
        }
        try self.truncateUnjournaled(to: size)
    }

    private func truncateUnjournaled(to size: Int) throws(EventStoreError) {
        guard ftruncate(self.raw, off_t(size)) == 0 else { throw Self.failure("ftruncate", self.path) }
    }

    /// Takes an exclusive advisory lock without waiting.
    /// - Returns: Whether the lock was taken (`false`: someone else holds it).
    func tryLock() throws(EventStoreError) -> Bool {
        if flock(self.raw, LOCK_EX | LOCK_NB) == 0 { return true }
        if errno == EWOULDBLOCK { return false }
        throw Self.failure("flock", self.path)
    }

    /// Syncs the directory at `path`, so that a file created or removed in it survives a crash.
    static func syncDirectory(_ path: String) throws(EventStoreError) {
        let directory = try FileDescriptor.open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { directory.close() }
        try directory.sync()
    }

    /// The names of the entries of a directory, without `.` and `..`.
    static func listDirectory(_ path: String) throws(EventStoreError) -> [String] {
        guard let directory = opendir(path) else { throw Self.failure("opendir", path) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Creates the directory at `path` (and its parents) if it does not exist.
    static func makeDirectory(_ path: String) throws(EventStoreError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component + "/"
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { throw Self.failure("mkdir", prefix) }
        }
    }

    static func remove(_ path: String) throws(EventStoreError) {
        if let simulator = PowerLossSimulator.simulator(for: path) {
            return try simulator.removed(path) { () throws(EventStoreError) in try Self.removeUnjournaled(path) }
        }
        try Self.removeUnjournaled(path)
    }

    private static func removeUnjournaled(_ path: String) throws(EventStoreError) {
        guard unlink(path) == 0 else { throw Self.failure("unlink", path) }
    }
}
