import Foundation
import Testing

/// What an operator gets when the gateway crashes: a backtrace on stderr.
/// The release binary links Swift's runtime in statically, and such a
/// runtime prints one only if Swift's backtracer sits beside the binary
/// (`make release` puts it there); without it a crash prints nothing.
@Suite("a crash prints a backtrace", .serialized)
struct CrashBacktraceTests {
    @Test("SIGSEGV: the binary under test prints Swift's crash report, whole, to stderr")
    func backtraceOnCrash() async throws {
        let gateway = try TestSupport.gatewayBinary
        let dir = try TestSupport.temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let errPath = dir + "/stderr"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: gateway)
        // A long benchmark: a process that stays up with no configuration.
        process.arguments = ["bench-micro", "--only", "request id", "--seconds", "60"]
        var env = ProcessInfo.processInfo.environment
        // Addresses only: symbolicating the release binary's debug
        // information takes seconds; finding and running the backtracer is
        // what is tested.
        env["SWIFT_BACKTRACE"] = "symbolicate=off"
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try TestSupport.launch(process)
        // Signalled only once the runtime's crash handler is in place
        // (before `main`, but a loaded machine may take its time).
        let ready = Date().addingTimeInterval(10)
        while !Self.catches(process.processIdentifier, SIGSEGV), process.isRunning, Date() < ready {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(Self.catches(process.processIdentifier, SIGSEGV), "no SIGSEGV handler in the process under test")
        kill(process.processIdentifier, SIGSEGV)
        // The report is written by the backtracer, a second process; a
        // signal sent from outside is not a fault, so the runtime may let
        // the process run on after it: the test stops it either way.
        var err = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            // The backtracer's last line: the report is whole.
            if err.contains("Backtrace took") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        TestSupport.stop(process, signal: SIGKILL)
        #expect(err.contains("*** Program crashed"), "stderr: \(err.prefix(500))")
        // The crashed thread at least (how many others there are yet
        // depends on how far the process got).
        #expect(err.contains("Thread 0") && err.contains("Backtrace took"), "stderr: \(err.prefix(500))")
    }

    /// Whether `pid` has a handler for `signal` (the `SigCgt` mask of
    /// `/proc/PID/status`).
    static func catches(_ pid: Int32, _ signal: Int32) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
              let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16)
        else { return false }
        return mask & (1 << UInt64(signal - 1)) != 0
    }
}
