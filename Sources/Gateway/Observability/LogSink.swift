import Foundation
import NIOConcurrencyHelpers

/// Writes log lines to stdout from its own thread, so an event loop never
/// blocks on a slow terminal or pipe. Lines are queued under a lock and
/// written in batches: the writer wakes every 50 ms, or at once when 64 KiB
/// wait, so a request costs a lock and a copy, never a thread wake-up. When
/// more than `maxQueued` bytes wait, new lines are dropped and counted
/// rather than let memory grow.
final class LogSink: @unchecked Sendable {
    static let shared = LogSink()

    private let condition = ConditionLock(value: 0)
    private var queue: [UInt8] = []
    private var dropped = 0
    private let maxQueued = 8 << 20
    private let wakeAt = 64 << 10
    private var thread: Thread?

    private init() {
        let t = Thread { [unowned self] in self.run() }
        t.name = "gateway-log"
        thread = t
        t.start()
    }

    func write(_ line: String) {
        condition.lock()
        if queue.count + line.utf8.count + 1 > maxQueued {
            dropped += 1
            condition.unlock(withValue: 1)
            return
        }
        let before = queue.count
        queue.append(contentsOf: line.utf8)
        queue.append(0x0A)
        if before < wakeAt && queue.count >= wakeAt {
            condition.unlock(withValue: 1)
        } else {
            condition.unlock()
        }
    }

    /// Blocks until everything queued so far is written (shutdown, tests).
    func drain() {
        for _ in 0..<200 {
            condition.lock()
            let empty = queue.isEmpty
            condition.unlock()
            if empty { break }
            usleep(5_000)
        }
        fflush(stdout)
    }

    private func run() {
        while true {
            if !condition.lock(whenValue: 1, timeoutSeconds: 0.05) { condition.lock() }
            var batch: [UInt8] = []
            swap(&batch, &queue)
            let lost = dropped
            dropped = 0
            condition.unlock(withValue: 0)
            if lost > 0 {
                let note = "{\"level\":\"warning\",\"message\":\"log lines dropped\",\"count\":\(lost)}\n"
                fputs(note, stdout)
            }
            batch.withUnsafeBufferPointer { p in _ = fwrite(p.baseAddress, 1, p.count, stdout) }
            fflush(stdout)
        }
    }
}
