import Filters
import NIOCore
import NIOHTTP1

/// The filter side of `ProxyRequest`: the route's `onRequest` chain, and for
/// routes with a filter that needs the whole body, buffering it and running
/// `onRequestBody` before the request goes upstream.
extension ProxyRequest {
    func runFilters(from index: Int) {
        guard let route, phase == .filtering else { return }
        var i = index
        while i < route.chain.count {
            filtersReached = i + 1
            switch route.chain[i]._withUnsafeGuaranteedRef({ $0.onRequest(exchange) }) {
            case .next:
                i += 1
            case .respond(let response):
                return respondLocally(response)
            case .suspend(let future):
                // Constants only in the closure: capturing `i` would box it
                // on the heap for every request, suspended or not.
                let current = i, next = i + 1
                future.hop(to: eventLoop).whenComplete { [self] result in
                    guard phase == .filtering else { return }
                    switch result {
                    case .success(.next): runFilters(from: next)
                    case .success(.respond(let response)): respondLocally(response)
                    case .success(.suspend(let again)):
                        // A filter may chain futures; resolve before moving on.
                        again.hop(to: eventLoop).whenComplete { [self] r in
                            switch r {
                            case .success(.respond(let response)): respondLocally(response)
                            case .success: runFilters(from: next)
                            case .failure: respondLocally(.internalError)
                            }
                        }
                    case .failure(let error):
                        exchange.logger.error("filter failed", metadata: ["filter": "\(route.filterNames[current])", "error": "\(error)"])
                        respondLocally(.internalError)
                    }
                }
                return
            }
        }
        filtersPassed()
    }

    /// Every `onRequest` passed: on to the upstream, or first collect the body
    /// for the filters that need it.
    func filtersPassed() {
        guard let route else { return }
        guard route.buffersBody else { return acquireUpstream() }
        phase = .buffering
        if expectsContinue {
            expectsContinue = false
            handler.write(.head(.local(.continue)))
            handler.flush()
        }
        if clientEnded { runBodyFilters(from: 0) }
    }

    /// Runs `onRequestBody` of the filters that need the body, in order, then
    /// sends the (possibly replaced) body upstream with a `Content-Length`.
    func runBodyFilters(from index: Int) {
        guard let route, phase == .buffering else { return }
        var body = bufferedBody ?? ByteBuffer()
        bufferedBody = nil
        var i = index
        while i < route.chain.count {
            let filter = route.chain[i]
            i += 1
            switch filter._withUnsafeGuaranteedRef({ $0.onRequestBody(exchange, &body) }) {
            case .next:
                continue
            case .respond(let response):
                return respondLocally(response)
            case .suspend(let future):
                bufferedBody = body
                let next = i
                future.hop(to: eventLoop).whenComplete { [self] result in
                    guard phase == .buffering else { return }
                    switch result {
                    case .success(.next), .success(.suspend): runBodyFilters(from: next)
                    case .success(.respond(let response)): respondLocally(response)
                    case .failure: respondLocally(.internalError)
                    }
                }
                return
            }
        }
        wireEdits.contentLength = body.readableBytes
        framing = .contentLength
        pending.removeAll(keepingCapacity: true)
        pending.reserveCapacity(2)  // one allocation for the body and the end, not two
        if body.readableBytes > 0 { pending.append(.body(.byteBuffer(body))) }
        pending.append(.end(nil))
        acquireUpstream()
    }
}
