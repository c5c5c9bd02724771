import Testing

@testable import Gateway

@Suite("upstream pool state machine")
struct PoolStateMachineTests {
    @Test("connects up to the limit, then queues, then rejects")
    func limits() {
        var sm = PoolStateMachine(maxConnections: 2, maxWaiters: 3)
        #expect(sm.acquire(waiter: 1) == .init(connect: true))
        #expect(sm.acquire(waiter: 2) == .init(connect: true))
        #expect(sm.acquire(waiter: 3) == .init())  // queued, no third connection
        #expect(sm.total == 2)
        #expect(sm.acquire(waiter: 4) == .init(reject: true))
    }

    @Test("a new connection goes to the first waiter; a released one to the next")
    func fifo() {
        var sm = PoolStateMachine(maxConnections: 1, maxWaiters: 10)
        _ = sm.acquire(waiter: 1)
        _ = sm.acquire(waiter: 2)
        #expect(sm.connected(100) == .init(lease: (100, 1)))
        #expect(sm.released(100, reusable: true) == .init(lease: (100, 2)))
        #expect(sm.released(100, reusable: true) == .init(park: 100))
        #expect(sm.acquire(waiter: 3) == .init(lease: (100, nil)))
    }

    @Test("a broken connection is closed and replaced for whoever waits")
    func notReusable() {
        var sm = PoolStateMachine(maxConnections: 1, maxWaiters: 10)
        _ = sm.acquire(waiter: 1)
        _ = sm.connected(7)
        _ = sm.acquire(waiter: 2)
        #expect(sm.released(7, reusable: false) == .init(close: 7, connect: true))
        #expect(sm.connected(8) == .init(lease: (8, 2)))
    }

    @Test("a failed connect fails the first waiter")
    func connectFailure() {
        var sm = PoolStateMachine(maxConnections: 4, maxWaiters: 10)
        _ = sm.acquire(waiter: 1)
        #expect(sm.connectFailed() == .init(fail: 1))
        #expect(sm.total == 0)
    }

    @Test("idle connections closed by the upstream leave the pool")
    func idleClosed() {
        var sm = PoolStateMachine(maxConnections: 1, maxWaiters: 10)
        _ = sm.acquire(waiter: 1)
        _ = sm.connected(5)
        _ = sm.released(5, reusable: true)
        sm.idleClosed(5)
        #expect(sm.total == 0)
        #expect(sm.acquire(waiter: 2) == .init(connect: true))
    }

    @Test("a waiter that gives up is removed")
    func cancel() {
        var sm = PoolStateMachine(maxConnections: 1, maxWaiters: 10)
        _ = sm.acquire(waiter: 1)
        _ = sm.acquire(waiter: 2)
        let first = sm.cancelWaiter(2)
        let second = sm.cancelWaiter(2)
        #expect(first)
        #expect(!second)
        #expect(sm.connected(9) == .init(lease: (9, 1)))
        #expect(sm.released(9, reusable: true) == .init(park: 9))
    }
}
