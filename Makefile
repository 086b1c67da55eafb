# Signet. Two commands matter on a fresh machine: `make run` and `make test`.
GO      ?= go
BIN     := bin/signet
PKGS    := ./...
# install puts $(BIN) in $(DESTDIR)$(PREFIX)/bin.
PREFIX  ?= /usr/local
# signet --version prints VERSION (git describe), else the module version Go records.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
# Benchmarks run a fixed number of iterations so runs are comparable on 2-core machines.
BENCH_FLAGS ?= -run '^$$' -benchmem

.PHONY: all build install run test vet bench bench-ledger lint proto clean example-envoy example-jwt-api example-mtls example-openssl

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/signet

## install: build, then install bin/signet as $(PREFIX)/bin/signet (PREFIX=/usr/local by default)
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/signet

## run: start Signet in dev mode (one process: server + agent, Workload API socket, an entry for you)
run: build
	./$(BIN) dev

## example-envoy: run Envoy with examples/envoy/envoy.yaml against `signet dev` (needs Envoy on PATH;
## it is not installed on the build machines, where examples/envoy's test checks the file instead)
example-envoy: build
	SIGNET=./$(BIN) examples/envoy/run.sh

## example-jwt-api: run examples/jwt-api (an API accepting JWT-SVIDs validated against the OIDC provider)
## against signet dev on 127.0.0.1:8090-8091; TestExampleJWTAPI (cmd/signet) tests it in make test
example-jwt-api: build
	$(GO) build -o bin/jwt-api ./examples/jwt-api/api
	$(GO) build -o bin/jwt-api-client ./examples/jwt-api/client
	BIN=bin sh examples/jwt-api/run.sh

## test: vet + every test with the race detector (unit, integration and end-to-end with real processes),
## and the aws_iid EC2 API checks, which only an awsec2 build has
test: vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(GO) test -race -count=1 -tags awsec2 ./attestor/awsiid/

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags awsec2 ./attestor/awsiid/
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

## bench: the benchmarks behind docs/performance.md (fixed iteration counts; ~28 min, the 10M-record
## ledger benchmarks another ~12 and ~40: run them with `make bench-ledger`)
bench:
	$(GO) test $(BENCH_FLAGS) -bench . -benchtime 3000x ./ca/...
	$(GO) test $(BENCH_FLAGS) -bench . -benchtime 2000x ./attestor/... ./policy/...
	$(GO) test $(BENCH_FLAGS) -bench 'X509Issuance|JWTIssuance' -benchtime 20000x ./server/issuer/
	$(GO) test $(BENCH_FLAGS) -bench 'BatchCreateEntries' -benchtime 5x ./server/
	$(GO) test $(BENCH_FLAGS) -bench 'EntryPropagation' -benchtime 200x -timeout 30m ./server/
	$(GO) test $(BENCH_FLAGS) -bench 'Review100k' -benchtime 5x -timeout 30m ./server/
	# Issuance during a key rotation vs outside one: 6 rounds, each running both windows, so load drift
	# on a shared machine hits both alike (compare with benchstat, keyed by window).
	for i in 1 2 3 4 5 6; do $(GO) test $(BENCH_FLAGS) -bench 'IssuanceAcrossRotation' -benchtime 4000x -count 1 ./server/ || exit 1; done
	$(GO) test $(BENCH_FLAGS) -bench 'FetchX509SVID' -benchtime 10000x ./workloadapi/
	$(GO) test $(BENCH_FLAGS) -bench 'Processes2000Entries' -benchtime 1x ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'AgentStartToFirstSVID' -benchtime 20x ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'FirstFetchOnDemand' -benchtime 100x ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'FetchProcesses' -benchtime 5000x ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'LedgerRecordsPerHour' -benchtime 1x ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'Agent100kEntries' -benchtime 1x -timeout 30m ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'ClusterIssuance' -benchtime 4000x -timeout 30m ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'ClusterFailover' -benchtime 10x -timeout 30m ./cmd/signet/
	$(GO) test $(BENCH_FLAGS) -bench 'ClusterEntryPropagation' -benchtime 200x -timeout 30m ./cmd/signet/

## bench-ledger: lookup and query on a 10,000,000-record ledger (needs ~8 GB of disk), and a Raft
## snapshot of one under a write load (needs ~40 GB: the ledger, its Raft log and two snapshots;
## SIGNET_BENCH_RECORDS=1200000 runs both at a smaller scale)
bench-ledger:
	$(GO) test $(BENCH_FLAGS) -bench 'Ledger10M$$' -benchtime 2000x -timeout 90m ./storage/
	$(GO) test $(BENCH_FLAGS) -bench 'Ledger10MSnapshot' -benchtime 1x -timeout 90m ./storage/

## example-mtls: the mTLS example (examples/mtls): a throwaway signet dev, an entry for the Go server and
## one for the Go client, and five requests over mutual TLS authorized by SPIFFE ID
example-mtls: build
	$(GO) build -o bin/examples/mtls-server ./examples/mtls/server
	$(GO) build -o bin/examples/mtls-client ./examples/mtls/client
	SIGNET=$(BIN) SERVER=bin/examples/mtls-server CLIENT=bin/examples/mtls-client sh examples/mtls/run.sh

## example-openssl: the OpenSSL example (examples/openssl): SVIDs written as PEM files by `signet svid fetch
## --write`, openssl s_server and s_client in mutual TLS on 127.0.0.1:$(PORT) (8443 by default)
example-openssl: build
	SIGNET=$(BIN) PORT=$(or $(PORT),8443) sh examples/openssl/run.sh

lint: vet
	@command -v staticcheck >/dev/null 2>&1 && staticcheck $(PKGS) || echo "staticcheck not installed; ran go vet and gofmt only"

## proto: regenerate the committed gRPC and Raft command code (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
proto:
	cd proto && PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) generate ./...

clean:
	rm -rf bin
