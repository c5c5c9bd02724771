import ArgumentParser
import CMimalloc
import Filters
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import Passport
import Prometheus
import ServiceLifecycle

@main
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "An edge API gateway: TLS listeners, routes, filter chains, pooled proxying.",
        subcommands: [Serve.self, Check.self, Version.self, Keys.self, PassportCommand.self, AppCall.self, Dev.self, Certs.self, DemoUpstream.self, BenchMicro.self]
    )
}

enum GatewayVersion {
    static let string = "0.1.0"

    /// Which allocator serves `malloc` in this process: "mimalloc 2.0.9"
    /// when libmimalloc took the symbol from the C library (the gateway
    /// links it for that), "the C library's malloc" if something undid it.
    static var allocator: String {
        guard gw_malloc_is_mimalloc() else { return "the C library's malloc" }
        let v = Int(mi_version())
        return "mimalloc \(v / 100).\(v / 10 % 10).\(v % 10)"
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() {
        print("gateway \(GatewayVersion.string) (libsodium \(Sodium.version), \(GatewayVersion.allocator))")
    }
}

struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Folder of *.yaml files, read in file-name order.")
    var config: String = "filters.d"

    @Option(name: .long, help: "State folder: relative key and certificate paths are resolved against it.")
    var state: String = ".state"

    func load() throws -> RuntimeConfig {
        let registry = try FilterRegistry()
        return try RuntimeConfig.load(directory: config, stateDirectory: state, registry: registry)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate the configuration and run every route test.")

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let config: RuntimeConfig
        do { config = try options.load() } catch let error as ConfigError {
            FileHandle.standardError.write(Data("config error:\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let (passed, failures) = RouteTestRunner(config: config).run()
        for f in failures { print("FAIL \(f)") }
        print("config \(config.digest.prefix(12)): \(config.listeners.count) listeners, \(config.upstreams.count) upstreams, \(config.routes.count) routes")
        print("route tests: \(passed) passed, \(failures.count) failed")
        if !failures.isEmpty { throw ExitCode(1) }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the configuration until SIGTERM or SIGINT.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Event loop threads (default: one per core).")
    var threads: Int = System.coreCount

    @Option(help: "How long in-flight requests may take to finish after SIGTERM, e.g. 10s.")
    var grace: String = "10s"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "How often certificate and key files are checked for changes (new handshakes use new files), e.g. 1s.")
    var certCheck: String = "1s"
    var certificateCheck: ConfigDuration { (try? ConfigDuration(parsing: certCheck)) ?? .seconds(1) }

    func validate() throws {
        guard let d = try? ConfigDuration(parsing: certCheck), d.nanoseconds >= 100_000_000 else {
            throw ValidationError("--cert-check must be a duration of at least 100ms, e.g. 1s")
        }
    }

    @Flag(inversion: .prefixedNo, help: "Write one JSON access-log line per request.")
    var accessLog: Bool = true

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = JSONLogHandler(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "gateway")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let graceDuration: ConfigDuration
        do { graceDuration = try ConfigDuration(parsing: grace) } catch {
            throw ValidationError("--grace: '\(grace)' is not a duration")
        }
        let config: RuntimeConfig
        do { config = try options.load() } catch let error as ConfigError {
            logger.error("config error, not serving", metadata: ["problems": "\(error.problems.count)"])
            LogSink.shared.drain()
            FileHandle.standardError.write(Data("config error:\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let server = GatewayServer(config: config, state: GatewayState(metricsRegistry: registry), threads: max(1, threads),
                                   grace: graceDuration.timeAmount, accessLog: AccessLog(enabled: accessLog), logger: logger)
        server.certificateCheckInterval = Double(certificateCheck.nanoseconds) / 1e9
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch let error as StartupError {
            logger.error("cannot start", metadata: ["error": "\(error.message)"])
            LogSink.shared.drain()
            FileHandle.standardError.write(Data("\(error.message)\n".utf8))
            throw ExitCode(1)
        }
        LogSink.shared.drain()
    }
}

struct DemoUpstream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-upstream",
        abstract: "A demo upstream service that answers with JSON describing what it received.")

    @Option(help: "Port to listen on (127.0.0.1).") var port: Int
    @Option(help: "Name reported in answers.") var name: String = "demo"
    @Option(help: "State folder: when it has passport keys, an X-Passport is verified (audience: the name) and its claims shown.")
    var state: String?
    @Option(help: "Serve TLS with this certificate (PEM), e.g. one from `gateway certs dev` with a SPIFFE URI SAN.") var tlsCert: String?
    @Option(help: "The key of --tls-cert.") var tlsKey: String?
    @Option(help: "Require client certificates from this CA (mTLS).") var clientCA: String?

    func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if clientCA != nil && tlsCert == nil { throw ValidationError("--client-ca needs --tls-cert and --tls-key") }
    }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var verifier: PassportVerifier?
        if let state, FileManager.default.fileExists(atPath: state + "/passport") {
            verifier = PassportVerifier(jwks: try PassportKeyRing(directory: state + "/passport").published(), audience: name)
        }
        var tls: NIOSSLContext?
        if let tlsCert, let tlsKey {
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tlsCert).map { .certificate($0) }, privateKey: .privateKey(try NIOSSLPrivateKey(file: tlsKey, format: .pem)))
            if let clientCA {
                config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(clientCA))
                config.certificateVerification = .noHostnameVerification
            }
            tls = try NIOSSLContext(configuration: config)
        }
        let server = DemoUpstreamServer(name: name, group: group, passportVerifier: verifier, tls: tls)
        let bound = try await server.start(port: port)
        print("{\"message\":\"demo upstream listening\",\"name\":\(JSONText.quote(name)),\"port\":\(bound)}")
        fflush(stdout)
        try await server.channel?.closeFuture.get()
    }
}
