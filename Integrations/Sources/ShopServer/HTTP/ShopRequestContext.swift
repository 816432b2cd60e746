import Hummingbird
import KeelCore

/// The request context of the shop's routes: Hummingbird's core storage, plus the request id and
/// the trace context that ``RequestIdentityMiddleware`` gives every request.
struct ShopRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The request's id, as the `x-request-id` response header says.
    var requestID = ""

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }
}
