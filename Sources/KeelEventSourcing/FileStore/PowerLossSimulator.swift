import KeelCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A simulated power loss for the stores of one directory (tests only): what a machine that
/// loses power keeps is what a completed `fsync` covered, and nothing else.
///
/// While armed, every write, truncation, `fsync`, file creation and removal that a
/// ``FileEventStore`` or ``FileStateStore`` makes in the directory is journaled (the store's I/O
/// goes through ``FileDescriptor``, which asks ``simulator(for:)``). For each file the simulator
/// keeps its durable image — its bytes as of its last `fsync` — and the writes and truncations
/// made since; a file created or removed counts as such on disk only once the directory has been
/// synced. ``cutPower(random:)`` then stops all further I/O (it fails with `EIO`, as on a dead
/// disk) and rewrites every file as the disk would hold it: its durable image, then a random
/// prefix of its later writes in order, the last of them (three times in four) torn at a random byte; a file whose
/// creation the directory never synced is gone, one whose removal it never synced is back.
///
/// SIGKILL keeps the page cache, so crash trials pass even with every `fsync` removed; under this
/// simulation a missing or misplaced `fsync` loses an acknowledged append, or leaves a high-water
/// mark that claims more than the disk holds, and a test fails.
package final class PowerLossSimulator: Sendable {
    private enum Operation {
        case write(offset: Int, bytes: [UInt8])
        case truncate(size: Int)
    }

    private struct File {
        /// The bytes as of the last `fsync`.
        var durable: [UInt8] = []
        /// Writes and truncations since.
        var pending: [Operation] = []
        /// Whether the directory entry is on disk (created and the directory synced since).
        var entryIsDurable: Bool
        /// Whether the file was removed (its removal is on disk once the directory is synced).
        var isRemoved = false
    }

    private struct State {
        var files: [String: File] = [:]
        var isOff = false
        var writes = 0
        /// Cut the power right after this write (counting from 1 since ``arm()``).
        var cutAtWrite: (number: Int, random: RandomSource)?
        var outcome: Outcome?
    }

    /// What a power cut did.
    package struct Outcome: Sendable, CustomStringConvertible {
        /// Files rewritten to fewer bytes than were written to them.
        package var filesCut = 0
        /// Writes kept whole, torn part-way, and dropped.
        package var writesKept = 0
        package var writesTorn = 0
        package var writesDropped = 0
        /// Files gone because their directory entry was never synced, and back because their
        /// removal was not.
        package var filesLost = 0
        package var filesRestored = 0

        package var description: String {
            "\(self.filesCut) files cut; writes: \(self.writesKept) kept, \(self.writesTorn) torn, "
                + "\(self.writesDropped) dropped; \(self.filesLost) files lost, \(self.filesRestored) restored"
        }
    }

    /// The directory whose files are journaled.
    package let directory: String
    private let state = Lock(State())

    private static let armedCount = Atomic<Int>(0)
    private static let armed = Lock<[String: PowerLossSimulator]>([:])

    /// A simulator for `directory`; not armed yet.
    package init(directory: String) {
        self.directory = directory
    }

    /// Starts journaling: the files already in the directory count as durable as they are.
    package func arm() throws(EventStoreError) {
        var files: [String: File] = [:]
        if access(self.directory, F_OK) == 0 {
            for name in try FileDescriptor.listDirectory(self.directory) {
                let path = self.directory + "/" + name
                var info = stat()
                guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
                let descriptor = try FileDescriptor.open(path, flags: O_RDONLY)
                defer { descriptor.close() }
                files[path] = File(
                    durable: try descriptor.read(count: try descriptor.size(), at: 0),
                    entryIsDurable: true
                )
            }
        }
        self.state.withLock { $0.files = files }
        Self.armed.withLock { $0[self.directory] = self }
        Self.armedCount.add(1, ordering: .sequentiallyConsistent)
    }

    /// Stops journaling; I/O in the directory is real again.
    package func disarm() {
        let removed = Self.armed.withLock { $0.removeValue(forKey: self.directory) != nil }
        if removed { Self.armedCount.subtract(1, ordering: .sequentiallyConsistent) }
    }

    /// The armed simulator whose directory holds `path` (or is `path`), if any. Costs one atomic
    /// load when none is armed.
    static func simulator(for path: String) -> PowerLossSimulator? {
        guard Self.armedCount.load(ordering: .relaxed) > 0 else { return nil }
        return Self.armed.withLock { armed in
            armed[path] ?? armed.first { path.hasPrefix($0.key + "/") }?.value
        }
    }

    // MARK: Journaling (called by FileDescriptor)

    /// Runs `body` (the real call) and journals it, or fails with `EIO` once the power is cut.
    /// Holding the lock across the call keeps a cut from landing in the middle of it.
    private func journal<T>(
        _ call: String,
        _ path: String,
        _ body: () throws(EventStoreError) -> T,
        record: (inout State) -> Void
    ) throws(EventStoreError) -> T {
        try self.state.withLock { state throws(EventStoreError) -> T in
            guard !state.isOff else { throw FileDescriptor.failure("\(call) (power cut)", path, errno: EIO) }
            let result = try body()
            record(&state)
            return result
        }
    }

    func opened(
        _ path: String,
        flags: Int32,
        _ body: () throws(EventStoreError) -> FileDescriptor
    ) throws(EventStoreError) -> FileDescriptor {
        let existed = access(path, F_OK) == 0
        return try self.journal("open", path, body) { state in
            if !existed {
                if flags & O_CREAT != 0 { state.files[path] = File(entryIsDurable: false) }
            } else if flags & O_TRUNC != 0 {
                state.files[path, default: File(entryIsDurable: true)].pending.append(.truncate(size: 0))
            }
        }
    }

    func wrote(
        _ path: String,
        offset: Int,
        bytes: UnsafeRawBufferPointer,
        _ body: () throws(EventStoreError) -> Void
    ) throws(EventStoreError) {
        try self.journal("pwrite", path, body) { state in
            state.files[path, default: File(entryIsDurable: true)].pending.append(
                .write(offset: offset, bytes: Array(bytes))
            )
            state.writes += 1
            if let trigger = state.cutAtWrite, trigger.number == state.writes {
                state.outcome = Self.cut(&state, random: trigger.random)
            }
        }
    }

    func truncated(_ path: String, size: Int, _ body: () throws(EventStoreError) -> Void) throws(EventStoreError) {
        try self.journal("ftruncate", path, body) { state in
            state.files[path, default: File(entryIsDurable: true)].pending.append(.truncate(size: size))
        }
    }

    func synced(_ path: String, _ body: () throws(EventStoreError) -> Void) throws(EventStoreError) {
        try self.journal("fsync", path, body) { state in
            // A directory's entries are on disk: creations and removals in it count from now on.
            let prefix = path + "/"
            for (name, file) in state.files where name.hasPrefix(prefix) && !name.dropFirst(prefix.count).contains("/")
            {
                if file.isRemoved {
                    state.files[name] = nil
                } else {
                    state.files[name]!.entryIsDurable = true
                }
            }
            if var file = state.files[path] {
                file.durable = Self.apply(file.pending[...], to: file.durable, tearingLastAt: nil)
                file.pending = []
                state.files[path] = file
            }
        }
    }

    func removed(_ path: String, _ body: () throws(EventStoreError) -> Void) throws(EventStoreError) {
        try self.journal("unlink", path, body) { state in
            state.files[path]?.isRemoved = true
        }
    }

    // MARK: The cut

    /// Cuts the power: later I/O in the directory fails with `EIO`, and each file is rewritten as
    /// the disk would hold it (see the type's documentation).
    /// - Parameter random: Where the kept prefixes and tears come from.
    /// - Returns: What the cut dropped.
    @discardableResult
    package func cutPower(random: RandomSource) -> Outcome {
        self.state.withLock { state in
            let outcome = Self.cut(&state, random: random)
            state.outcome = outcome
            return outcome
        }
    }

    /// Cuts the power right after the `number`-th write from now on (the write lands in the page
    /// cache, and its `fsync` never comes), as ``cutPower(random:)`` does.
    /// - Parameters:
    ///   - number: The write, counting from 1.
    ///   - random: Where the kept prefixes and tears come from.
    package func cutPower(atWrite number: Int, random: RandomSource) {
        precondition(number >= 1, "writes count from 1")
        self.state.withLock { $0.cutAtWrite = ($0.writes + number, random) }
    }

    /// What the cut did, once it happened.
    package var outcome: Outcome? { self.state.withLock { $0.outcome } }

    private static func cut(_ state: inout State, random: RandomSource) -> Outcome {
        guard !state.isOff else { return state.outcome ?? Outcome() }
        state.isOff = true
        var outcome = Outcome()
        for (path, file) in state.files.sorted(by: { $0.key < $1.key }) {
            if !file.entryIsDurable {
                if !file.isRemoved {
                    unlink(path)
                    outcome.filesLost += 1
                }
                continue
            }
            let writes = file.pending.count { if case .write = $0 { true } else { false } }
            // Any prefix of the later writes may have reached the disk; the last one kept may
            // be torn.
            let kept = random.next(upperBound: file.pending.count + 1)
            let tear = kept > 0 && random.next(upperBound: 4) > 0 ? random.nextUnitDouble() : nil
            let image = Self.apply(file.pending[..<kept], to: file.durable, tearingLastAt: tear)
            let keptWrites = file.pending[..<kept].count { if case .write = $0 { true } else { false } }
            outcome.writesKept += keptWrites
            outcome.writesDropped += writes - keptWrites
            if tear != nil, case .write = file.pending[kept - 1] {
                outcome.writesKept -= 1
                outcome.writesTorn += 1
            }
            if file.isRemoved { outcome.filesRestored += 1 }
            if kept < file.pending.count || tear != nil { outcome.filesCut += 1 }
            let descriptor = path.withCString { systemOpen($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
            guard descriptor >= 0 else { continue }
            _ = image.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            systemClose(descriptor)
        }
        return outcome
    }

    /// `durable` with `operations` applied in order, the last one, if a write, cut to the
    /// fraction `tear` of its bytes.
    private static func apply(
        _ operations: ArraySlice<Operation>,
        to durable: [UInt8],
        tearingLastAt tear: Double?
    ) -> [UInt8] {
        var image = durable
        for (index, operation) in zip(operations.indices, operations) {
            switch operation {
            case .write(let offset, var bytes):
                if let tear, index == operations.index(before: operations.endIndex) {
                    bytes = Array(bytes.prefix(Int(Double(bytes.count) * tear)))
                }
                if image.count < offset + bytes.count {
                    image += [UInt8](repeating: 0, count: offset + bytes.count - image.count)
                }
                image.replaceSubrange(offset..<offset + bytes.count, with: bytes)
            case .truncate(let size):
                if image.count > size {
                    image.removeLast(image.count - size)
                } else {
                    image += [UInt8](repeating: 0, count: size - image.count)
                }
            }
        }
        return image
    }
}
