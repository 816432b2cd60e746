import Foundation

/// A test tool (an executable under `Tests/Tools`) run as a child process: the test reads its
/// stdout line by line and kills it with SIGKILL. Its stderr goes to a file, so that the test can
/// fail on what a sanitized child reports there.
///
/// A read waits on a thread of its own, never on the cooperative pool: with two cores the pool has
/// two threads, and a test blocking one of them on a slow child halves what every other test gets
/// (on a busy machine, enough to push unrelated tests past their time limits). Each tool sets an
/// alarm, so a read ends at the latest when the child dies of it. Shared by the test targets that
/// run tools (`Tests/Tools`).
///
/// It is used by one task at a time (the test that made it), hence `@unchecked Sendable`; its
/// reading thread shares only the buffer with that task, under a lock.
package final class CrashChild: @unchecked Sendable {
    /// Why a child could not be run.
    package struct Failure: Error, CustomStringConvertible {
        package var message: String
        package var description: String { self.message }

        package init(message: String) {
            self.message = message
        }
    }

    private let process = Process()
    private let output = Pipe()
    private let errorPath: String
    /// What was read and not yet returned as lines. The reading thread and the test's task take
    /// turns with it, under `bufferLock` (an `NSLock`, which ThreadSanitizer sees; it does not
    /// see the continuation that orders them).
    private var buffer: [UInt8] = []
    private let bufferLock = NSLock()

    /// The path of the tool `name`, built beside the test bundle.
    package static func path(of name: String) -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test bundle is a file on Linux and a directory (…/Contents/MacOS/…) on macOS.
        for candidate in [
            directory, directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent(),
        ] {
            let path = candidate.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return directory.appendingPathComponent(name).path
    }

    /// Starts `tool` with `arguments`.
    package init(tool: String, arguments: [String]) throws {
        let path = Self.path(of: tool)
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure(message: "\(path) is missing: build \(tool) first")
        }
        self.errorPath =
            FileManager.default.temporaryDirectory.path + "/keel-child-\(UInt64.random(in: 0...UInt64.max))"
        guard FileManager.default.createFile(atPath: self.errorPath, contents: nil),
            let errorFile = FileHandle(forWritingAtPath: self.errorPath)
        else {
            throw Failure(message: "cannot create \(self.errorPath) for the child's stderr")
        }
        self.process.executableURL = URL(fileURLWithPath: path)
        self.process.arguments = arguments
        self.process.standardOutput = self.output
        self.process.standardError = errorFile
        try self.process.run()
    }

    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: self.errorPath)
    }

    /// The next line of the child's stdout, read on a thread of its own; `nil` at end of file.
    package func nextLine() async -> String? {
        if let line = self.takeLine() { return line }
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: self.blockingNextLine()) }
        }
    }

    /// The next line of the child's stdout, blocking the calling thread; `nil` at end of file.
    private func blockingNextLine() -> String? {
        while true {
            if let line = self.takeLine() { return line }
            let data = self.output.fileHandleForReading.availableData
            if data.isEmpty { return nil }
            self.bufferLock.withLock { self.buffer.append(contentsOf: data) }
        }
    }

    /// Removes and returns the first whole line of the buffer, if there is one.
    private func takeLine() -> String? {
        self.bufferLock.withLock {
            guard let newline = self.buffer.firstIndex(of: 10) else { return nil }
            let line = String(decoding: self.buffer[..<newline], as: UTF8.self)
            self.buffer.removeSubrange(...newline)
            return line
        }
    }

    /// Waits `microseconds` of real time on a thread of its own (a kill at a random moment of a
    /// real child's run), leaving the cooperative pool to the other tests.
    package static func pause(microseconds: Int) async {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                usleep(UInt32(microseconds))
                continuation.resume()
            }
        }
    }

    /// Kills the child with SIGKILL and waits for it.
    /// - Returns: What it wrote to stderr.
    package func sigkill() -> String {
        kill(self.process.processIdentifier, SIGKILL)
        self.process.waitUntilExit()
        return (try? String(contentsOfFile: self.errorPath, encoding: .utf8)) ?? ""
    }

    /// Whether `stderr` holds a sanitizer's report.
    package static func hasSanitizerReport(_ stderr: String) -> Bool {
        stderr.contains("ThreadSanitizer") || stderr.contains("WARNING: ")
    }
}
