import Filters
import NIOHTTP1

/// Runs the `tests:` of every route against the compiled routers, as
/// `gateway check` does. Filters are not run: a route test checks mapping
/// (route, rewritten path, upstream, Host, 404/405), not filter behaviour.
struct RouteTestRunner {
    let config: RuntimeConfig

    struct Failure: CustomStringConvertible {
        let location: String
        let message: String
        var description: String { "\(location): \(message)" }
    }

    func run() -> (passed: Int, failures: [Failure]) {
        var passed = 0
        var failures: [Failure] = []
        let routers = Dictionary(uniqueKeysWithValues: config.listeners.map { ($0.name, $0.router) })
        let paths = Dictionary(uniqueKeysWithValues: config.listeners.map { ($0.name, $0.sanitize.paths) })
        for t in config.routeTests {
            let location = "\(t.source.file): \(t.source.path("tests[\(t.index)]")) (route \(t.route))"
            guard let owner = config.routes.first(where: { $0.name == t.route }), let router = routers[owner.listener] else { continue }
            let problems = check(t.test, owner: owner, router: router, paths: paths[owner.listener] ?? PathCanonicalizer())
            if problems.isEmpty { passed += 1 } else { failures.append(contentsOf: problems.map { Failure(location: location, message: $0) }) }
        }
        return (passed, failures)
    }

    func check(_ test: RouteTestConfig, owner: CompiledRoute, router: Router, paths: PathCanonicalizer) -> [String] {
        var headers = HeaderFields()
        headers.add(name: "host", value: test.request.host ?? "localhost")
        for (k, v) in test.request.headers.sorted(by: { $0.key < $1.key }) { headers.add(name: k, value: v) }
        let method = test.request.method.uppercased()
        let e = test.expect
        // The path as the gateway routes it: canonical, or refused with 400 invalid_path.
        let (rawPath, rawQuery) = Router.split(Substring(test.request.path))
        let target: String
        switch paths.canonicalTarget(path: rawPath, query: rawQuery) {
        case .success(let canonical):
            target = canonical ?? test.request.path
            if e.status == 400 { return ["\(method) \(test.request.path): expected status 400, got a canonical path '\(target)'"] }
        case .failure(.invalid(let reason)):
            if e.status == 400 { return [] }
            return ["\(method) \(test.request.path): expected \(describe(e, owner)), got 400 invalid_path (\(reason))"]
        }
        let result = router.match(method: method, host: Substring(test.request.host ?? "localhost"),
                                  target: Substring(target), headers: headers)
        var problems: [String] = []
        switch result {
        case .noRoute:
            if e.status != 404 { problems.append("\(method) \(test.request.path): expected \(describe(e, owner)), got 404 no_route") }
        case .methodNotAllowed(let allow):
            if e.status != 405 {
                problems.append("\(method) \(test.request.path): expected \(describe(e, owner)), got 405 (allow: \(allow.joined(separator: ", ")))")
            }
        case .matched(let route):
            if let s = e.status, s == 404 || s == 405 {
                problems.append("\(method) \(test.request.path): expected status \(s), got route '\(route.name)'")
                break
            }
            let expectedRoute = e.route ?? (e.status == nil ? owner.name : nil)
            if let r = expectedRoute, r != route.name {
                problems.append("\(method) \(test.request.path): expected route '\(r)', got '\(route.name)'")
                break
            }
            let (path, query) = Router.split(Substring(target))
            let rewritten = route.rewrite.apply(path) + (query.map { "?" + $0 } ?? "")
            if let p = e.path, p != rewritten { problems.append("\(method) \(test.request.path): expected path '\(p)', got '\(rewritten)'") }
            if let u = e.upstream {
                let possible: [String]
                if let forced = route.targets.forcedUpstream(headers) { possible = [forced] } else { possible = route.targets.weighted.map(\.0) }
                if !possible.contains(u) {
                    problems.append("\(method) \(test.request.path): expected upstream '\(u)', route sends to \(possible.joined(separator: " or "))")
                }
            }
            if let h = e.host {
                let upstreamName = route.targets.forcedUpstream(headers) ?? route.targets.weighted.first?.0 ?? ""
                let actual = route.upstreamHost(clientHost: test.request.host ?? "localhost", upstream: config.upstreams[upstreamName])
                if h != actual { problems.append("\(method) \(test.request.path): expected Host '\(h)', got '\(actual)'") }
            }
        }
        return problems
    }

    private func describe(_ e: RouteTestExpect, _ owner: CompiledRoute) -> String {
        if let s = e.status { return "status \(s)" }
        return "route '\(e.route ?? owner.name)'"
    }
}
