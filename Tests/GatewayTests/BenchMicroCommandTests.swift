import Foundation
import Testing

@testable import Gateway

@Suite("gateway bench-micro's options", .serialized)
struct BenchMicroCommandTests {
    @Test("--only runs just the benchmarks it names, --iterations a fixed count; bad values are usage errors, not empty tables")
    func options() async throws {
        let gateway = try TestSupport.gatewayBinary
        let one = try await TestSupport.run(gateway, ["bench-micro", "--only", "REQUEST ID", "--iterations", "50"])
        #expect(one.code == 0, "\(one.stderr)")
        let lines = one.stdout.split(separator: "\n")
        #expect(lines.count == 2 && lines[0].hasPrefix("benchmark") && lines[1].hasPrefix("request id"), "\(one.stdout)")
        let figure = lines.last.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        #expect((figure ?? 0) > 0, "a time per operation: \(one.stdout)")

        let none = try await TestSupport.run(gateway, ["bench-micro", "--only", "no such benchmark"])
        #expect(none.code == 64 && none.stderr.contains("matches no benchmark"), "\(none.code) \(none.stderr)")
        #expect(!none.stdout.contains("ops/s"))
        for bad in [["--iterations", "0"], ["--seconds", "0"], ["--seconds", "-1"]] {
            let r = try await TestSupport.run(gateway, ["bench-micro"] + bad)
            #expect(r.code == 64 && r.stderr.contains(bad[0]), "\(bad): \(r.code) \(r.stderr)")
        }
    }
}
