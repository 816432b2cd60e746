import Foundation
import GRPCCore

/// The answer of `keel.v1.Requests/Send`: the response as JSON, or the error the remote route
/// threw.
///
/// Layout: one tag byte, `0` for a response followed by its JSON, `1` for an error followed by
/// the ``WireError``'s JSON. An error travels in the answer, not as a gRPC status, so that gRPC
/// statuses mean only what the transport says (unreachable, timed out, cancelled).
enum Reply: WireMessage {
    /// The handler's response, JSON-encoded.
    case response([UInt8])
    /// The remote route's error.
    case failure(WireError)

    func encoded() throws -> [UInt8] {
        switch self {
        case .response(let payload):
            var bytes: [UInt8] = [0]
            bytes.reserveCapacity(1 + payload.count)
            bytes.append(contentsOf: payload)
            return bytes
        case .failure(let error):
            return [1] + (try JSONEncoder().encode(error))
        }
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        guard let tag = bytes.first else {
            throw RPCError(code: .invalidArgument, message: "an empty Send answer")
        }
        switch tag {
        case 0:
            self = .response(Array(bytes[1...]))
        case 1:
            do {
                self = .failure(try JSONDecoder().decode(WireError.self, from: Data(bytes[1...])))
            } catch {
                throw RPCError(code: .invalidArgument, message: "a malformed error in a Send answer: \(error)")
            }
        default:
            throw RPCError(code: .invalidArgument, message: "a Send answer with the unknown tag \(tag)")
        }
    }
}
