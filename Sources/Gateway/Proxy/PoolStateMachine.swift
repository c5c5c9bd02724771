import NIOCore

/// The bookkeeping of one upstream's connection pool on one event loop, as a
/// value type whose methods return what to do. `UpstreamPool` carries the
/// actions out; this is tested without any channel.
///
/// Waiters are served first come, first served. A connection attempt is not
/// bound to a waiter: whichever waiter is first when a connection becomes
/// available gets it. When an attempt fails, the first waiter fails with it
/// (the endpoint is down; waiting longer would only delay the 503).
struct PoolStateMachine {
    typealias ConnectionID = Int
    typealias WaiterID = Int

    let maxConnections: Int
    let maxWaiters: Int
    private(set) var idle: [ConnectionID] = []
    private(set) var leased: Set<ConnectionID> = []
    private(set) var connecting = 0
    private(set) var waiters = CircularBuffer<WaiterID>()

    init(maxConnections: Int, maxWaiters: Int) {
        self.maxConnections = maxConnections
        self.maxWaiters = maxWaiters
    }

    var total: Int { idle.count + leased.count + connecting }

    struct Action: Equatable {
        /// Give this connection to this waiter (`nil` waiter: the caller of `acquire`).
        var lease: (connection: ConnectionID, waiter: WaiterID?)?
        var park: ConnectionID?
        var close: ConnectionID?
        var connect = false
        var fail: WaiterID?
        /// `acquire` could neither lease, connect nor queue: the pool is saturated.
        var reject = false

        static func == (a: Action, b: Action) -> Bool {
            a.lease?.connection == b.lease?.connection && a.lease?.waiter == b.lease?.waiter && a.park == b.park
                && a.close == b.close && a.connect == b.connect && a.fail == b.fail && a.reject == b.reject
        }
    }

    /// The most recently parked idle connection, leased; nil when none is idle.
    mutating func leaseIdle() -> ConnectionID? {
        guard let c = idle.popLast() else { return nil }
        leased.insert(c)
        return c
    }

    mutating func acquire(waiter: WaiterID) -> Action {
        if let c = leaseIdle() { return Action(lease: (c, nil)) }
        if waiters.count >= maxWaiters { return Action(reject: true) }
        waiters.append(waiter)
        var action = Action()
        if total < maxConnections && connecting < waiters.count {
            connecting += 1
            action.connect = true
        }
        return action
    }

    mutating func connected(_ c: ConnectionID) -> Action {
        connecting -= 1
        if let w = waiters.popFirst() {
            leased.insert(c)
            return Action(lease: (c, w))
        }
        idle.append(c)
        return Action(park: c)
    }

    mutating func connectFailed() -> Action {
        connecting -= 1
        var action = Action()
        if let w = waiters.popFirst() { action.fail = w }
        return action
    }

    /// A leased connection comes back; `reusable` when its exchange ended
    /// cleanly and both sides allow keep-alive.
    mutating func released(_ c: ConnectionID, reusable: Bool) -> Action {
        guard leased.remove(c) != nil else { return Action() }
        if reusable {
            if let w = waiters.popFirst() {
                leased.insert(c)
                return Action(lease: (c, w))
            }
            idle.append(c)
            return Action(park: c)
        }
        var action = Action(close: c)
        if connecting < waiters.count && total < maxConnections {
            connecting += 1
            action.connect = true
        }
        return action
    }

    /// An idle connection was closed by the upstream or its keep-alive timer.
    mutating func idleClosed(_ c: ConnectionID) {
        if let i = idle.firstIndex(of: c) { idle.remove(at: i) }
    }

    /// A waiter gave up (timeout or the client went away).
    mutating func cancelWaiter(_ w: WaiterID) -> Bool {
        guard let i = waiters.firstIndex(of: w) else { return false }
        waiters.remove(at: i)
        return true
    }
}
