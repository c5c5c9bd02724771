import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import Gateway

/// Helpers for the end-to-end tests: real processes, real TLS, real curl.
enum TestSupport {
    /// The package root, from this file's path.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `gateway` binary built by `swift build` (the Makefile builds it
    /// before `swift test`), or the one `GATEWAY_TEST_BINARY` names (the
    /// second pass of `make test`, and `make test-release`: the end-to-end
    /// tests against the release build).
    static var gatewayBinary: String {
        get throws {
            if let path = ProcessInfo.processInfo.environment["GATEWAY_TEST_BINARY"], !path.isEmpty {
                guard FileManager.default.isExecutableFile(atPath: path) else { throw TestError("GATEWAY_TEST_BINARY: \(path) is not an executable file") }
                return path
            }
            for config in ["debug", "release"] {
                let path = packageRoot.appendingPathComponent(".build/\(config)/gateway").path
                if FileManager.default.isExecutableFile(atPath: path) { return path }
            }
            throw TestError("the gateway binary is not built; run `swift build` (make test does) before `swift test`")
        }
    }

    private static let launchLock = NSLock()

    /// Starts `process`, one launch at a time: Foundation's `Process.run`
    /// crashed (a bad read in its memcpy while it walked the parent's open
    /// descriptors) with launches on other threads, and again on 2026-12-03
    /// with 2,000 descriptors leaked by `run` (now closed there).
    static func launch(_ process: Process) throws {
        launchLock.lock()
        defer { launchLock.unlock() }
        try process.run()
    }

    /// Sends `signal` to a child and waits for it to exit by polling, never
    /// with `Process.waitUntilExit`, whose run loop raced a launch on another
    /// thread and crashed the test process (a bad read in Foundation); after
    /// 5 s it is killed.
    static func stop(_ process: Process, signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning {
            if Date() > deadline { kill(process.processIdentifier, SIGKILL) }
            usleep(10_000)
        }
    }

    static func temporaryDirectory(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "gateway-tests-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Ports already handed out by `freePort()` in this test process: a port
    /// is checked free by binding and releasing it, so without this two calls
    /// of one fixture (a listener and the admin port) could get the same one.
    private static let handedOut = NIOLockedValueBox<Set<Int>>([])

    /// A free TCP port on 127.0.0.1, checked by binding it, taken from below
    /// the kernel's ephemeral range so that no client connection (curl's own
    /// source ports) can take it between this check and the gateway's bind,
    /// and never the same one twice in a test run.
    static func freePort() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_000)
            guard handedOut.withLockedValue({ $0.insert(port).inserted }) else { continue }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestError("socket() failed") }
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            if ok { return port }
        }
        throw TestError("no free port found")
    }

    /// Whether something accepts TCP connections on the loopback port.
    static func accepts(_ port: Int) async -> Bool {
        (try? await run("/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port)"]).code) == 0
    }

    /// Waits (up to 5 s) until the loopback port accepts connections.
    static func waitForPort(_ port: Int, what: String) async throws {
        for _ in 0..<200 {
            if await accepts(port) { return }
            try await Task.sleep(nanoseconds: 25_000_000)
        }
        throw TestError("\(what) does not accept connections on port \(port)")
    }

    struct ProcessResult {
        var code: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program to completion without blocking a cooperative thread.
    static func run(_ executable: String, _ arguments: [String], stdin: String? = nil) async throws -> ProcessResult {
        let dir = try temporaryDirectory("proc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outPath = dir + "/out", errPath = dir + "/err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        // The parent's copies are closed once the program is done: Foundation
        // keeps them open otherwise, and the test process ran past 2,000 open
        // descriptors, which `Process.run` (it walks them all) crashed on.
        let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? outHandle.close()
            try? errHandle.close()
        }
        process.standardOutput = outHandle
        process.standardError = errHandle
        if let stdin {
            let pipe = Pipe()
            process.standardInput = pipe
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                process.terminationHandler = { _ in c.resume() }
                do {
                    try TestSupport.launch(process)
                    pipe.fileHandleForWriting.write(Data(stdin.utf8))
                    try? pipe.fileHandleForWriting.close()
                } catch { c.resume(throwing: error) }
            }
        } else {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                process.terminationHandler = { _ in c.resume() }
                do { try TestSupport.launch(process) } catch { c.resume(throwing: error) }
            }
        }
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return ProcessResult(code: process.terminationStatus, stdout: out, stderr: err)
    }

    /// Runs a Python script with `s`, a TLS socket (ALPN http/1.1) already
    /// connected to the gateway at `port` and verified against `ca`, and
    /// `read_all()`, which reads until the gateway closes (5 s at most).
    static func pythonTLSClient(ca: String, port: Int, _ body: String) async throws -> ProcessResult {
        let script = """
        import select, socket, ssl, sys, time
        ctx = ssl.create_default_context(cafile=sys.argv[1])
        ctx.set_alpn_protocols(["http/1.1"])
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="localhost")

        def read_all():
            s.settimeout(5)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk

        """ + body
        return try await run("/usr/bin/env", ["python3", "-c", script, ca, String(port)])
    }

    /// A dev CA and a localhost certificate, made with the openssl CLI the
    /// way `make dev-certs` makes them.
    static func makeCertificates(in dir: String) async throws {
        let script = """
        set -e
        cd "\(dir)"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -keyout ca-key.pem -out ca.pem \
          -subj "/CN=test CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout localhost-key.pem -out localhost.csr -subj "/CN=localhost" 2>/dev/null
        printf "subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n" > ext.cnf
        openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -extfile ext.cnf -out localhost.pem 2>/dev/null
        """
        let r = try await run("/bin/bash", ["-c", script])
        guard r.code == 0 else { throw TestError("openssl failed: \(r.stderr)") }
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A gateway process serving a config written by the test.
final class GatewayProcess: @unchecked Sendable {
    let dir: String
    let process = Process()
    let adminPort: Int
    let logPath: String
    /// The parent's copy of the log's descriptor, closed by `stop`.
    private var logHandle: FileHandle?

    private init(dir: String, adminPort: Int) {
        self.dir = dir
        self.adminPort = adminPort
        self.logPath = dir + "/gateway.log"
    }

    /// Writes `yaml` (with `ADMIN_PORT` replaced) to a config folder and
    /// starts `gateway serve`; returns when /readyz answers 200.
    static func start(yaml: String, stateDir: String, extraArgs: [String] = []) async throws -> GatewayProcess {
        let dir = try TestSupport.temporaryDirectory("gw")
        let adminPort = try TestSupport.freePort()
        let configDir = dir + "/filters.d"
        try FileManager.default.createDirectory(atPath: configDir, withIntermediateDirectories: true)
        let text = "admin:\n  address: 127.0.0.1:\(adminPort)\n" + yaml
        try text.write(toFile: configDir + "/00-test.yaml", atomically: true, encoding: .utf8)
        let gw = GatewayProcess(dir: dir, adminPort: adminPort)
        _ = FileManager.default.createFile(atPath: gw.logPath, contents: nil)
        gw.process.executableURL = URL(fileURLWithPath: try TestSupport.gatewayBinary)
        gw.process.arguments = ["serve", "--config", configDir, "--state", stateDir, "--threads", "2"] + extraArgs
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: gw.logPath))
        gw.logHandle = log
        gw.process.standardOutput = log
        gw.process.standardError = log
        try TestSupport.launch(gw.process)
        for _ in 0..<200 {
            let r = try await TestSupport.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(adminPort)/readyz"])
            if r.stdout == "200" { return gw }
            if !gw.process.isRunning { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let log2 = (try? String(contentsOfFile: gw.logPath, encoding: .utf8)) ?? ""
        let exit = gw.process.isRunning ? "still running" : "exited with \(gw.process.terminationStatus) (\(gw.process.terminationReason == .uncaughtSignal ? "signal" : "exit"))"
        gw.stop()
        throw TestError("gateway did not become ready (\(exit)); log:\n\(log2)")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Whether the log comes to contain `text` within `timeout` seconds (log
    /// lines are written in batches, at most 50 ms late).
    func logEventually(contains text: String, timeout: Double = 2) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.contains(text) { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return log.contains(text)
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit (up to `timeout` seconds); returns the exit status or nil.
    func waitForExit(timeout: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(nanoseconds: 20_000_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func stop() {
        TestSupport.stop(process)
        try? logHandle?.close()
        logHandle = nil
    }

    deinit { stop() }
}

/// curl through the gateway. Returns status, headers (lowercased names) and body.
struct CurlResponse {
    var status: Int
    var headers: [String: String]
    var body: String
    var exitCode: Int32
    var stderr: String
}

enum Curl {
    static func request(_ url: String, caFile: String, args: [String] = []) async throws -> CurlResponse {
        let dir = try TestSupport.temporaryDirectory("curl")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let headerFile = dir + "/headers"
        let r = try await TestSupport.run("/usr/bin/curl", ["-sS", "--cacert", caFile, "-D", headerFile, "--max-time", "20"] + args + [url])
        let rawHeaders = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
        var status = 0
        var headers: [String: String] = [:]
        for line in rawHeaders.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("HTTP/") {
                let parts = line.split(separator: " ")
                if parts.count >= 2, let s = Int(parts[1]), s >= 200 { status = s; headers = [:] }
            } else if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return CurlResponse(status: status, headers: headers, body: r.stdout, exitCode: r.code, stderr: r.stderr)
    }
}
