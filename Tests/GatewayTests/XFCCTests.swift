import Filters
import NIOCore
import Testing

@testable import Gateway

@Suite("XFCC parsing and trusted address ranges")
struct XFCCTests {
    @Test("elements and pairs: quoted values keep commas, semicolons and escaped quotes; URI and DNS may repeat; keys are case-insensitive")
    func parsing() throws {
        let elements = try XFCC.parse(#"By=spiffe://a;Hash=ab;Subject="CN=x, O=\"q\";y";URI=spiffe://b;DNS=one;DNS=two,by=spiffe://c;CERT="%2D%2D""#)
        #expect(elements.count == 2)
        #expect(elements[0]["by"] == "spiffe://a" && elements[0]["hash"] == "ab")
        #expect(elements[0]["subject"] == #"CN=x, O="q";y"#)
        #expect(elements[0]["dns"] == "one,two" && elements[0]["uri"] == "spiffe://b")
        #expect(elements[1]["by"] == "spiffe://c" && elements[1]["cert"] == "%2D%2D")
        for bad in [#"Cert="x"#, "By=a;;Cert", "By=a,,By=b", #"By="a"b"#, "By=a\u{1}", #"Cert="\"#, "=x", #"By=a;By=b"#] {
            #expect(throws: XFCC.Malformed.self, "\(bad.debugDescription)") { try XFCC.parse(bad) }
        }
        #expect(throws: XFCC.Malformed.self) { try XFCC.identity("By=spiffe://a;Hash=00") }
    }

    @Test("address ranges: IPv4 and IPv6, prefix edges, single addresses, bad forms refused")
    func ranges() throws {
        let v4 = try #require(CIDR("10.1.0.0/16"))
        #expect(v4.contains(CIDR.bytes(try SocketAddress(ipAddress: "10.1.255.7", port: 0))!))
        #expect(!v4.contains(CIDR.bytes(try SocketAddress(ipAddress: "10.2.0.1", port: 0))!))
        let odd = try #require(CIDR("192.168.0.0/23"))
        #expect(odd.contains(CIDR.bytes(try SocketAddress(ipAddress: "192.168.1.200", port: 0))!))
        #expect(!odd.contains(CIDR.bytes(try SocketAddress(ipAddress: "192.168.2.1", port: 0))!))
        let v6 = try #require(CIDR("fd00::/8"))
        #expect(v6.contains(CIDR.bytes(try SocketAddress(ipAddress: "fd12::1", port: 0))!))
        #expect(!v6.contains(CIDR.bytes(try SocketAddress(ipAddress: "127.0.0.1", port: 0))!), "families never match")
        let one = try #require(CIDR("127.0.0.1"))
        #expect(one.prefix == 32)
        for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/129", "localhost", "10.0.0.0/-1", ""] { #expect(CIDR(bad) == nil, "\(bad)") }
        #expect(XFCCTrust(ranges: []).trusts(nil), "no ranges: every peer of the listener")
        #expect(!XFCCTrust(ranges: [v4]).trusts(nil))
    }
}
