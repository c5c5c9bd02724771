import Foundation
import Testing

/// What an operator gets when the gateway crashes: a backtrace on stderr.
/// The release binary links Swift's runtime in statically, and such a
/// runtime prints one only if Swift's backtracer sits beside the binary
/// (`make release` puts it there); without it a crash prints nothing.
@Suite("a crash prints a backtrace", .serialized)
struct CrashBacktraceTests {
    @Test("SIGSEGV: the binary under test prints Swift's crash report, with its threads, to stderr")
    func backtraceOnCrash() async throws {
        let gateway = try TestSupport.gatewayBinary
        let dir = try TestSupport.temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let errPath = dir + "/stderr"
        FileManager.default.createFile(atPath: errPath, contents: nil)
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
        // The runtime installs its crash handler before `main`.
        try await Task.sleep(for: .seconds(1))
        #expect(process.isRunning, "the benchmark ended before the signal")
        kill(process.processIdentifier, SIGSEGV)
        // The report is written by the backtracer, a second process; a
        // signal sent from outside is not a fault, so the runtime may let
        // the process run on after it: the test stops it either way.
        var err = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            if err.contains("*** Program crashed") && err.contains("Thread 1") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        TestSupport.stop(process, signal: SIGKILL)
        #expect(err.contains("*** Program crashed"), "stderr: \(err.prefix(500))")
        #expect(err.contains("Thread 0") && err.contains("Thread 1"), "stderr: \(err.prefix(500))")
    }
}
