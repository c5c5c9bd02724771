/// One request's access-log fields. Deliberately holds no headers: none of
/// them (Authorization, cookies, X-Passport, ...) can reach the log. The path
/// is logged without its query string, which may carry tokens.
struct AccessLogEntry {
    var requestID: String
    var listener: String
    var route: String
    var upstream: String
    var method: String
    var path: String
    var status: Int
    var bytesIn: Int
    var bytesOut: Int
    var durationNanos: Int64
    var upstreamNanos: Int64?
    var client: String?
    var protocolName: String
    var error: String?
}

/// Writes one JSON line per request through `LogSink`.
struct AccessLog: Sendable {
    let enabled: Bool

    /// The entry is only built when the log is on.
    func log(_ entry: @autoclosure () -> AccessLogEntry) {
        guard enabled else { return }
        let e = entry()
        let path = String(Router.split(Substring(e.path)).0)
        var line = "{\"type\":\"access\",\"time\":\"\(JSONText.timestamp())\",\"request_id\":\"\(e.requestID)\""
        line += ",\"listener\":\(JSONText.quote(e.listener)),\"route\":\(JSONText.quote(e.route)),\"upstream\":\(JSONText.quote(e.upstream))"
        line += ",\"method\":\(JSONText.quote(e.method)),\"path\":\(JSONText.quote(path)),\"protocol\":\"\(e.protocolName)\""
        line += ",\"status\":\(e.status),\"bytes_in\":\(e.bytesIn),\"bytes_out\":\(e.bytesOut)"
        line += ",\"duration_ms\":\(Self.ms(e.durationNanos))"
        if let u = e.upstreamNanos { line += ",\"upstream_ms\":\(Self.ms(u))" }
        if let c = e.client { line += ",\"client\":\(JSONText.quote(c))" }
        if let err = e.error { line += ",\"error\":\(JSONText.quote(err))" }
        line += "}"
        LogSink.shared.write(line)
    }

    static func ms(_ nanos: Int64) -> String {
        let micros = nanos / 1000
        let whole = micros / 1000
        let frac = micros % 1000
        let f = String(frac)
        return "\(whole)." + String(repeating: "0", count: 3 - f.count) + f
    }
}
