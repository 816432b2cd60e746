import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// This process's open file descriptors, as `/proc/self/fd` lists them (Linux).
package enum OpenDescriptors {
    /// Whether the process's descriptors can be listed here.
    package static var isAvailable: Bool { FileManager.default.fileExists(atPath: "/proc/self/fd") }

    /// What the open descriptors that name `directory` or a file in it point at: `.` for the
    /// directory itself, else the path relative to it, sorted (one entry per descriptor). Other
    /// tests' descriptors, which point elsewhere, are not counted.
    package static func paths(under directory: String) -> [String] {
        guard let resolved = realpath(directory, nil) else { return [] }
        let root = String(cString: resolved)
        free(resolved)
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        var paths: [String] = []
        for entry in entries {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            // A descriptor closed since the listing has no link any more.
            let count = readlink("/proc/self/fd/" + entry, &buffer, buffer.count - 1)
            guard count > 0 else { continue }
            let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target == root {
                paths.append(".")
            } else if target.hasPrefix(root + "/") {
                paths.append(String(target.dropFirst(root.count + 1)))
            }
        }
        return paths.sorted()
    }
}
