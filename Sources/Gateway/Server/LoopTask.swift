import NIOCore

/// A weak reference, for closures that must not keep their owner alive.
final class WeakRef<Value: AnyObject> {
    weak var value: Value?
    init(_ value: Value) { self.value = value }
}

/// A closure for `EventLoop.execute`, made once per owner rather than once
/// per call: `execute` with a fresh closure allocates its context every
/// time, and the end-of-tick flushes ask for one per request. It holds the
/// owner weakly (no cycle through the owner's own property) and does
/// nothing once the owner is gone. `body` must not capture the owner.
func makeLoopTask<Owner: AnyObject>(_ owner: Owner, eventLoop: EventLoop,
                                    _ body: @escaping (Owner) -> Void) -> @Sendable () -> Void {
    let bound = NIOLoopBound((WeakRef(owner), body), eventLoop: eventLoop)
    return {
        let (ref, body) = bound.value
        if let owner = ref.value { body(owner) }
    }
}
