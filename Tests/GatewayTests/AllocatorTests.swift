import Foundation
import Testing

/// The gateway links libmimalloc so that it, not the C library, serves
/// `malloc` (README "Performance"). That holds only while libmimalloc comes
/// before libc in the binary's link order; a build that lost it would still
/// run, just slower, so the binary under test is asked which one it got.
@Suite("the allocator")
struct AllocatorTests {
    @Test("the binary under test allocates with mimalloc, and says so in `gateway version`")
    func versionNamesMimalloc() async throws {
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["version"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("gateway "), "\(r.stdout)")
        #expect(r.stdout.contains("mimalloc 2."), "\(r.stdout)")
        #expect(!r.stdout.contains("C library"), "\(r.stdout)")
    }
}
