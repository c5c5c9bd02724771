import NIOCore

/// A closure for `EventLoop.execute`, made once per owner rather than once
/// per call: `execute` with a fresh closure allocates its context every
/// time, and the end-of-tick flushes ask for one per request. It holds its
/// owner strongly, like the rest of the request path (a weak reference
/// would give the owner a side table and put every retain and release of it
/// on the runtime's slow path): the owner keeps the closure in an optional
/// and drops it when its channel closes, which breaks the cycle. `body`
/// must not capture the owner.
func makeLoopTask<Owner: AnyObject>(_ owner: Owner, eventLoop: EventLoop,
                                    _ body: @escaping (Owner) -> Void) -> @Sendable () -> Void {
    let bound = NIOLoopBound((owner, body), eventLoop: eventLoop)
    return {
        let (owner, body) = bound.value
        body(owner)
    }
}
