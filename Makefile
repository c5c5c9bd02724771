# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
STATE ?= .state
CONFIG ?= filters.d
SWIFT ?= swift
## libcurl4-openssl-dev: the release build links Swift's runtime and Foundation
## statically, and FoundationNetworking (Passport's JWKS fetch) links libcurl.
## libmimalloc-dev: the gateway's allocator in place of the C library's malloc.
APT_PACKAGES := libsodium-dev libmimalloc-dev libssl-dev libcurl4-openssl-dev pkg-config openssl curl python3 python3-pip
PY_PACKAGES := pynacl pyjwt cryptography h2

.PHONY: run test test-release build release deps test-deps bench-deps dev-certs check bench bench-instructions bench-micro micro-run clean

## Install the system packages the build needs, if any is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

## What the tests need beyond the build: Python clients, a real redis-server
## and nginx (the tests start their own on free loopback ports and stop them).
test-deps: deps
	@missing=""; for p in redis-server nginx; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Debian starts a system redis on 6379 at install; the tests never use it.
	@python3 -c "import nacl, jwt, cryptography, h2" 2>/dev/null || python3 -m pip install -q $(PY_PACKAGES)

build: deps
	$(SWIFT) build

## Release builds skip Swift's runtime exclusivity checks in every module,
## the dependencies included (a runtime call, a thread-local lookup and a set
## insert per dynamic access: 161 a plain request), and optimize across
## modules (the filters, `Passport` and NIO's code specialized and inlined
## into the request path: 830 -> 691 retains a full app-route request).
## They also link Swift's runtime and Foundation into the binary
## (--static-swift-stdlib): the runtime's calls (389 retains and as many
## releases a full app-route request among them) become direct calls instead
## of calls through a shared library's PLT, the request path runs from one
## mapping instead of a dozen libraries', and the binary runs on a host
## without a Swift toolchain. Full app route 54.2 -> 49.6 us of CPU a request
## (medians of an alternated A/B; bench/README.md, "The runtime linked in").
## Debug builds keep the checks; `make test` runs the end-to-end tests
## against both builds. `make release RELEASE_FLAGS=` builds without any.
RELEASE_FLAGS ?= -Xswiftc -enforce-exclusivity=unchecked -Xswiftc -cross-module-optimization --static-swift-stdlib

release: deps
	$(SWIFT) build -c release $(RELEASE_FLAGS)
	@# Swift's crash backtracer, beside the binary: a runtime linked in
	@# statically looks for it there, and without it a crash prints nothing.
	@bt="$$(dirname "$$(readlink -f "$$(command -v $(SWIFT))")")/../libexec/swift/linux/swift-backtrace-static"; \
	if [ -x "$$bt" ]; then cp -u "$$bt" .build/release/swift-backtrace; \
	else echo "warning: $$bt not found: the release binary will print no backtrace if it crashes" >&2; fi

## Dev certificates in $(STATE)/dev, made once by `gateway certs dev`: a dev CA,
## localhost, the gateway's client certificate (SPIFFE), the demo's mesh
## service (SPIFFE only) and a partner's client certificate.
dev-certs: release
	@.build/release/gateway certs dev --out $(STATE)/dev --upstream ledger

check: build
	.build/debug/gateway check --config $(CONFIG) --state $(STATE)

## Build release, make dev certificates, start the demo upstreams and the gateway.
## The demo upstreams are this shell's jobs, stopped when it ends (`kill 0`
## signalled the shell too, whose trap then ran again until bash crashed:
## Ctrl-C ended in "Segmentation fault").
run: release dev-certs
	@.build/release/gateway dev keys --state $(STATE)
	@.build/release/gateway check --config $(CONFIG) --state $(STATE)
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT INT TERM; \
	for spec in $$(sed -n 's/^# demo-upstream: *//p' $(CONFIG)/*.yaml); do \
	  name=$${spec%%=*}; port=$${spec##*=}; \
	  .build/release/gateway demo-upstream --name $$name --port $$port --state $(STATE) & \
	done; \
	for spec in $$(sed -n 's/^# demo-upstream-mtls: *//p' $(CONFIG)/*.yaml); do \
	  name=$${spec%%=*}; port=$${spec##*=}; \
	  .build/release/gateway demo-upstream --name $$name --port $$port --state $(STATE) \
	    --tls-cert $(STATE)/dev/$$name.pem --tls-key $(STATE)/dev/$$name-key.pem --client-ca $(STATE)/dev/ca.pem & \
	done; \
	sleep 0.5; \
	echo; echo "Try:"; \
	echo "  TOKEN=\$$(.build/release/gateway dev token --state $(STATE) --sub user-42 --scope accounts:read)"; \
	echo "  curl --cacert $(STATE)/dev/ca.pem -H \"authorization: Bearer \$$TOKEN\" https://localhost:8443/api/v1/me"; \
	echo "  curl http://127.0.0.1:9901/.well-known/passport-jwks.json"; \
	echo "  curl --cacert $(STATE)/dev/ca.pem https://localhost:8443/api/v1/accounts/42"; \
	echo "  curl --cacert $(STATE)/dev/ca.pem --http2 -H 'content-type: application/json' -d '{\"amount\":5}' https://localhost:8443/api/v1/payments"; \
	echo "  curl --cacert $(STATE)/dev/ca.pem -H 'x-canary: always' https://localhost:8443/api/v1/payments/7"; \
	echo "  .build/release/gateway app-call --gateway https://localhost:8443 --cacert $(STATE)/dev/ca.pem --header \"authorization: Bearer \$$TOKEN\" POST /app/v1/transfers '{\"amount\":1000,\"to\":\"110-222\"}'"; \
	echo "  curl --cacert $(STATE)/dev/ca.pem --cert $(STATE)/dev/partner.pem --key $(STATE)/dev/partner-key.pem https://localhost:8444/partner/v1/ledger/entries"; \
	echo "  curl http://127.0.0.1:9901/metrics"; echo; \
	.build/release/gateway serve --config $(CONFIG) --state $(STATE)

## The whole suite again (its unit tests are the same code; its end-to-end
## tests drive the release binary).
RELEASE_E2E = GATEWAY_TEST_BINARY=$(CURDIR)/.build/release/gateway $(SWIFT) test --skip-build --no-parallel

## The test suite: unit tests and end-to-end tests over real TLS with curl,
## against the debug build (runtime exclusivity checks on), then once more
## with the end-to-end tests driving the release binary, the one `make run`
## and `make bench` run (built with other flags: see RELEASE_FLAGS).
test: test-deps release
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --no-parallel
	$(RELEASE_E2E)

## Only the second half of `make test`: the end-to-end tests against the
## release binary.
test-release: test-deps release
	$(SWIFT) build --build-tests
	$(RELEASE_E2E)

## The contenders and load generators of the benchmark (Debian packages).
bench-deps: deps
	@missing=""; for p in nginx haproxy wrk nghttp2-client util-linux; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

## The gateway against nginx and HAProxy (bench/README.md), then the microbenchmarks.
bench: release dev-certs bench-deps test-deps
	python3 bench/bench.py
	@$(MAKE) --no-print-directory micro-run

## Instructions a request, by route, under valgrind (bench/instructions.py):
## exact and repeatable, for comparing builds on a noisy machine.
bench-instructions: release dev-certs bench-deps test-deps
	@dpkg -s valgrind >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	python3 bench/instructions.py

bench-micro: release test-deps
	@$(MAKE) --no-print-directory micro-run

## Microbenchmarks; a throwaway redis-server on a loopback port for the redis
## nonce store's figures. On the binary already built: `make bench` builds
## once, so an edit made while it runs cannot reach half of its figures.
micro-run:
	@port=16390; dir=$$(mktemp -d); \
	redis-server --port $$port --bind 127.0.0.1 --save "" --appendonly no --dir $$dir --daemonize no --loglevel warning & rpid=$$!; \
	sleep 0.3; .build/release/gateway bench-micro --redis 127.0.0.1:$$port; status=$$?; \
	kill $$rpid; rm -rf $$dir; exit $$status

clean:
	rm -rf .build $(STATE)
