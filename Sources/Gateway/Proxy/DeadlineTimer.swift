import NIOCore

/// One timer per connection for whichever deadline applies, so that a
/// keep-alive request costs no timer scheduling: a deadline later than the
/// scheduled firing only moves a number; the timer, when it fires early,
/// schedules itself again for the deadline.
struct DeadlineTimer {
    enum Kind { case awaitingHead, upstream }
    enum Outcome { case none, reschedule, expired(Kind) }

    private(set) var kind: Kind?
    private(set) var deadline = NIODeadline.distantFuture
    private(set) var fireAt = NIODeadline.distantFuture
    var scheduled: Scheduled<Void>?

    /// Returns true when the timer must be (re)scheduled at `fireAt`.
    mutating func set(_ kind: Kind, at deadline: NIODeadline) -> Bool {
        self.kind = kind
        self.deadline = deadline
        if scheduled != nil && fireAt <= deadline { return false }
        scheduled?.cancel()
        fireAt = deadline
        return true
    }

    mutating func clear() { kind = nil }

    mutating func fired(now: NIODeadline) -> Outcome {
        scheduled = nil
        fireAt = .distantFuture
        guard let kind else { return .none }
        if now < deadline {
            fireAt = deadline
            return .reschedule
        }
        self.kind = nil
        return .expired(kind)
    }

    mutating func cancel() {
        scheduled?.cancel()
        scheduled = nil
        kind = nil
    }
}
