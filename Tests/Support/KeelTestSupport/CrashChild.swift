import Foundation

/// A test tool (an executable under `Tests/Tools`) run as a child process: the test reads its
/// stdout line by line and kills it with SIGKILL. Its stderr goes to a file, so that the test can
/// fail on what a sanitized child reports there.
///
/// Reads block the calling thread; each tool sets an alarm, so a read ends at the latest when the
/// child dies of it. Shared by the test targets that run tools (`Tests/Tools`).
package final class CrashChild {
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
    private var buffer: [UInt8] = []

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

    /// The next line of the child's stdout, blocking; `nil` at end of file.
    package func nextLine() -> String? {
        while true {
            if let newline = self.buffer.firstIndex(of: 10) {
                let line = String(decoding: self.buffer[..<newline], as: UTF8.self)
                self.buffer.removeSubrange(...newline)
                return line
            }
            let data = self.output.fileHandleForReading.availableData
            if data.isEmpty { return nil }
            self.buffer.append(contentsOf: data)
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
