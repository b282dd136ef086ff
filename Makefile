# The two commands: `make demo` (the main job) and `make test` (every test).
# Every target first runs tools/deps.sh, which installs what it needs.

BOARD ?= qemu-arm64
OUT   := out/$(BOARD)
# A Go fetched by tools/deps.sh on a machine that had none.
export PATH := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/boxswarm/go/bin:$(PATH)

GO_TEST_FLAGS ?= -timeout 45m
FUZZTIME ?= 30s

.PHONY: all deps kernel image qemu demo demo-boot test lint unit bench sim sim-scale fuzz clean help

all: image

help:
	@echo "make demo [EXIT=1]         the whole system: head-end, two QEMU boxes behind NATs, a movie from web to TV"
	@echo "make demo-boot             the verified boot chain alone: update, rollback, tampering"
	@echo "make test                  every test: lint, unit, QEMU boot chain and tamper matrix"
	@echo "make image [BOARD=] [KEYS=] bake ROM, signed firmware and disk into out/<board>"
	@echo "make qemu  [BOARD=] [DISK=] boot the baked box headless, console on stdout"
	@echo "make bench                 measure against references; results in BENCHMARKS.md"
	@echo "make sim                   the swarm simulator: standard scenario, sensitivity runs, plots in docs/sim"
	@echo "make sim-scale             the scheduler at 10k, 100k and 1M simulated boxes: time, memory, cost per decision"
	@echo "make fuzz [FUZZTIME=30s]   run every fuzz target"

deps:
	@bash tools/deps.sh

kernel: deps

image: deps
	go run ./tools/bake -board $(BOARD) $(if $(KEYS),-keys $(KEYS))

qemu: deps
	go run ./tools/qemu -board $(BOARD) $(if $(DISK),-disk $(DISK))

demo: image
	go run ./tools/demo -board $(BOARD) $(if $(EXIT),-exit)

demo-boot: image
	go run ./tools/demo -board $(BOARD) -boot-chain

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go tool staticcheck ./...

unit: deps
	go test $(GO_TEST_FLAGS) ./...

# The QEMU tests read the baked images through BOXSWARM_IMAGES; CI=true
# turns every "missing prerequisite" skip into a failure.
test: lint image
	BOXSWARM_IMAGES=$(CURDIR)/$(OUT) go test $(GO_TEST_FLAGS) ./...
	# The player daemon is built with runtime/secret; test it that way too.
	GOEXPERIMENT=runtimesecret go test $(GO_TEST_FLAGS) ./player/...

bench: image
	BOXSWARM_IMAGES=$(CURDIR)/$(OUT) go run ./tools/bench -board $(BOARD) -record BENCHMARKS.md

# The simulator's full runs; make test runs the standard scenario at CI
# length (sim's TestStandardScenario).
sim: deps
	go run ./sim/cmd/swarmsim -out docs/sim

sim-scale: deps
	go run ./sim/cmd/swarmsim -scale 10000,100000,1000000 -policies boxswarm -out docs/sim

fuzz: deps
	@for pkg in $$(go list ./...); do \
	  for f in $$(go test -list 'Fuzz.*' $$pkg 2>/dev/null | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; go test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf out
