/// An identifier's text, made only when somebody reads it.
///
/// Correlation and causation ids are strings in the public API, but on the hot path they are
/// almost always derived from a 128-bit id (a trace id, an event id) and almost never read.
/// Keeping the bits and formatting on read saves an allocation per event and per request.
package struct LazyID: Sendable, Hashable {
    package enum Storage: Sendable, Hashable {
        /// Text given by the application.
        case text(String)
        /// 32 hex digits.
        case hex(UInt64, UInt64)
        /// The 8-4-4-4-12 form of a UUID.
        case uuid(UInt64, UInt64)
    }

    package var storage: Storage

    package init(_ storage: Storage) {
        self.storage = storage
    }

    package init(_ text: String) {
        self.storage = .text(text)
    }

    /// The identifier's text.
    package var text: String {
        switch self.storage {
        case .text(let text): text
        case .hex(let high, let low): hex([high, low])
        case .uuid(let high, let low): hex([high, low], dashes: [8, 12, 16, 20])
        }
    }

    package static func == (lhs: LazyID, rhs: LazyID) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.text(let a), .text(let b)): a == b
        case (.hex(let a, let b), .hex(let c, let d)), (.uuid(let a, let b), .uuid(let c, let d)):
            a == c && b == d
        default: lhs.text == rhs.text
        }
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(self.text)
    }
}
