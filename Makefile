# evbridge: one hand-written GNU Makefile.
#
#   make            build everything into build/$(BUILD)/
#   make test       unit + integration tests, ends with "N passed, N failed";
#                   the integration tests start real Kafka brokers
#   make test-faults  the full fault-injection suite (24 kills, outages, ...)
#   make test-backfill  200,000 events per provider in bounded memory
#   make test-scale     only the scale-out tests (real rebalances; also in make test)
#   make asan       the whole test suite under ASan+UBSan
#   make valgrind   unit tests under valgrind, leak-free
#   make fuzz       libFuzzer targets with clang, FUZZ_TIME s each (fuzz-ci: 10)
#   make run        the demo on the embedded Kafka cluster
#   make lint       clang-format check + banned functions
#   make lint-deploy  render (kustomize, helm) and check the Kubernetes manifests
#   make deps       apt-get install what the build and tests need
#   make install    evbridge, evbridge-replay and their man pages (PREFIX,
#                   DESTDIR); make install-dev: the simulator, the mock...
#
# V=1 shows the full commands, WERROR=1 turns warnings into errors.

PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZER ?=
PKGS     := libevent libevent_openssl libcurl jansson rdkafka libcrypto

ifeq ($(SANITIZER),address)
BUILD    ?= asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
else ifeq ($(SANITIZER),undefined)
BUILD    ?= ubsan
SANFLAGS := -fsanitize=undefined -fno-sanitize-recover=all
else
BUILD    ?= release
SANFLAGS :=
endif

B        := build/$(BUILD)
CC       ?= cc
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GITREV   := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wpointer-arith -Wcast-align \
            -Wwrite-strings -Wformat=2 -Wundef -Wvla -Wnull-dereference \
            -Wno-format-truncation
ifeq ($(WERROR),1)
WARN     += -Werror
endif
OPT      := -O2 -g
ifeq ($(BUILD),release)
OPT      += -D_FORTIFY_SOURCE=2 -fstack-protector-strong
else
OPT      := -O1 -g
endif
# EB_DEBUG=1: checked state machines (lib/eb_fsm.h, and the transaction
# machine of lib/eb_txn.c) abort on an illegal transition instead of
# logging and counting it. On in every build but
# release (so the ASan and UBSan test runs stop at the first one);
# `make EB_DEBUG=1` turns it on in a release build too.
ifeq ($(BUILD),release)
EB_DEBUG ?= 0
else
EB_DEBUG ?= 1
endif

PKG_CONFIG ?= pkg-config
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

# A fresh machine: what building (and `make test`, `make run`) needs is
# checked before anything runs, and a missing piece stops the build with
# one line that names it and the command, not a wall of compiler errors.
# Goals that need none of it (deps, clean, lint) skip the check.
DEB_OF_libevent         := libevent-dev
DEB_OF_libevent_openssl := libevent-dev
DEB_OF_libcurl          := libcurl4-openssl-dev
DEB_OF_jansson          := libjansson-dev
DEB_OF_rdkafka          := librdkafka-dev
DEB_OF_libcrypto        := libssl-dev
NODEPS_GOALS := deps clean lint style-check style-fix checksrc \
                fuzz-toolchain
TEST_GOALS   := test test-unit test-integration test-faults asan ubsan \
                valgrind run bench
ifneq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
DEPS_MISSING := $(shell command -v $(CC) >/dev/null 2>&1 || \
                  echo "$(CC) (build-essential)"; \
                  command -v $(PKG_CONFIG) >/dev/null 2>&1 || \
                  echo "pkg-config (pkg-config)")
ifeq ($(strip $(DEPS_MISSING)),)
DEPS_MISSING := $(foreach p,$(PKGS),$(if $(shell $(PKG_CONFIG) --exists $(p) \
                  2>/dev/null && echo y),,$(p) ($(DEB_OF_$(p)))))
endif
ifneq ($(filter $(TEST_GOALS),$(MAKECMDGOALS)),)
ifeq ($(strip $(DEPS_MISSING)),)
# The tests and the demo run the system's python (/usr/bin/python3).
DEPS_MISSING := $(shell test -x /usr/bin/python3 || \
                  echo "/usr/bin/python3 (python3)"; \
                  command -v curl >/dev/null 2>&1 || echo "curl (curl)"; \
                  /usr/bin/python3 -c 'import confluent_kafka' \
                    >/dev/null 2>&1 || \
                  echo "python3-confluent-kafka (python3-confluent-kafka)")
endif
endif
DEPS_MISSING := $(strip $(DEPS_MISSING))
ifneq ($(DEPS_MISSING),)
$(error missing $(DEPS_MISSING): run make deps)
endif
endif

CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Ilib -Itests/support \
            -DEB_VERSION='"$(VERSION)"' -DEB_GITREV='"$(GITREV)"' \
            -DEB_DEBUG=$(EB_DEBUG)
CFLAGS   += -std=c11 $(OPT) $(WARN) $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   += $(PKG_LIBS) -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC   := $(sort $(wildcard lib/*.c lib/providers/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
LIBEB     := $(B)/libeb.a

CMDS      := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard cmd/*/*.c)))))
CMD_BINS  := $(CMDS:%=$(B)/bin/%)

SUPPORT_SRC := $(sort $(wildcard tests/support/*.c))
SUPPORT_OBJ := $(SUPPORT_SRC:%.c=$(B)/%.o)

UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/unit/%)
INTEG_SRC := $(sort $(wildcard tests/integration/test_*.c))
INTEG_BINS := $(INTEG_SRC:tests/integration/%.c=$(B)/tests/integration/%)
INTEG_SH  := $(sort $(wildcard tests/integration/test_*.sh))

.PHONY: all test test-unit test-integration test-faults asan ubsan valgrind \
        run lint style-check style-fix checksrc doc-refs install install-dev clean \
        deps bench bench-peers lint-deploy kafka-fetch test-backfill test-scale \
        deploy-tools \
        deploy-tools-args k8scheck-build

all: $(CMD_BINS) $(UNIT_BINS) $(INTEG_BINS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIBEB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# Each cmd/<name>/ directory is one program; all its .c files link together.
.SECONDARY:
.SECONDEXPANSION:
$(B)/bin/%: $$(addsuffix .o,$$(addprefix $(B)/,$$(basename $$(wildcard cmd/$$*/*.c)))) $(LIBEB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/unit/%: $(B)/tests/unit/%.o $(SUPPORT_OBJ) $(LIBEB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Test-only providers, linked into the contract test only.
$(B)/tests/unit/test_provider_contract: $(B)/tests/unit/provider_example.o

$(B)/tests/integration/%: $(B)/tests/integration/%.o $(SUPPORT_OBJ) $(LIBEB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# ---- tests ---------------------------------------------------------------
# tests/run drives every binary, counts the cases each one reports and prints
# the one closing line CI reads: "N passed, N failed".
export EB_BUILD_DIR := $(CURDIR)/$(B)
# Tests run a few at once (tests/run): most of their time is spent waiting
# on sockets and timers. The long end-to-end scripts start first.
EB_TEST_JOBS ?= 3
export EB_TEST_JOBS

# The integration tests run on a real Apache Kafka broker
# (tests/kafka/broker: the pinned 4.x from Maven artifacts, one KRaft node
# per test, started by the test itself), or on the cluster that
# EB_TEST_BROKERS=host:port names. kafka-fetch fetches the broker first,
# so a broker that cannot be had fails the run at once, not test by test.
kafka-fetch:
	$(Q)if [ -n "$$EB_TEST_BROKERS" ]; then \
	  echo "kafka: tests run against the existing cluster at $$EB_TEST_BROKERS"; \
	else \
	  tests/kafka/broker fetch > /dev/null && \
	  echo "kafka: tests run against $$(tests/kafka/broker version) (KRaft," \
	    "one broker per test; tests/kafka/broker)"; \
	fi

test: all kafka-fetch
	$(Q)tests/run $(INTEG_SH) $(INTEG_BINS) $(UNIT_BINS)

test-unit: all
	$(Q)tests/run $(UNIT_BINS)

test-integration: all kafka-fetch
	$(Q)tests/run $(INTEG_SH) $(INTEG_BINS)

# The full fault-injection suite (docs/delivery.md "Fault injection"):
# 24 SIGKILLs, broker outage, injected broker errors, a second instance.
# `make test` runs its light variant (5 kills).
test-faults: all kafka-fetch
	$(Q)EB_FAULTS_FULL=1 EB_TEST_LIMIT=$${EB_TEST_LIMIT:-900} \
	  tests/run tests/integration/test_faults.sh

# Backfill of 200,000 events per provider (all three at once) on the real
# broker: exactly once, checkpoints moving, peak RSS under 128 MB
# (docs/operations.md "Memory"). `make test` runs it with 20,000.
test-backfill: all kafka-fetch
	$(Q)EB_BACKFILL_EVENTS=200000 EB_TEST_LIMIT=$${EB_TEST_LIMIT:-2400} \
	  tests/run tests/integration/test_backfill_memory.sh

# Only the scale-out tests (also part of make test): three replicas, one
# SIGKILLed, one leaving, a fourth joining, webhooks through the intake
# tier; and state topics made before they were partitioned by shard
# (docs/scaling.md).
test-scale: all kafka-fetch
	$(Q)tests/run tests/integration/test_scale_out.sh \
	  tests/integration/test_scale_state_layout.sh

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address EB_TEST_TMOUT_MULT=3 test

ubsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=undefined test

valgrind: all
	$(Q)EB_TEST_TMOUT_MULT=10 EB_VALGRIND=1 EB_TEST_JOBS=2 tests/run $(UNIT_BINS)

run: $(CMD_BINS)
	$(Q)scripts/demo $(B)

# Benchmarks against baselines measured in the same run (docs/benchmarks.md,
# which it rewrites; needs kcat, wrk, python3-confluent-kafka, and Java and
# Maven for the real Kafka broker it starts with tests/kafka/broker: make
# deps). BENCH_QUICK=1: a smoke run of the harness with small sizes, written
# to $(B)/bench/benchmarks.md instead. BENCH_RUNS=N: N runs of each (default
# 5, quick 1). Sections: scripts/bench --help. The peers section builds the
# Apache Camel peer with Maven on first use (scripts/peers/camel/build, into
# ~/.cache/evbridge): bench targets only, never make test or CI.
bench: all
	$(Q)scripts/bench $(B) $(if $(BENCH_QUICK),--quick) \
		$(if $(BENCH_RUNS),--runs $(BENCH_RUNS))

# Only the peers (evbridge vs an Apache Camel route vs a Python bridge, on
# a real broker): replaces the Peers section of docs/benchmarks.md, or with
# BENCH_QUICK=1 writes $(B)/bench/benchmarks.md.
bench-peers: all
	$(Q)scripts/bench $(B) --only peers \
		$(if $(BENCH_QUICK),--quick,--into docs/benchmarks.md) \
		$(if $(BENCH_RUNS),--runs $(BENCH_RUNS))

# ---- fuzzing ---------------------------------------------------------------
# libFuzzer targets for every parser of outside input (tests/fuzz/, see
# tests/fuzz/entries.h). Built with clang into build/fuzz/ against their
# own libeb.a (every lib/*.c under ASan+UBSan and fuzzer coverage), then
# each runs for FUZZ_TIME seconds on a copy of its seed corpus
# (tests/fuzz/corpus/<name>/ plus tests/fixtures/fuzz-regressions/<name>/),
# so the committed corpus stays as it is. A crash leaves its input in
# build/fuzz/artifacts/<name>/ and fails the target; make it a regression
# (tests/fixtures/fuzz-regressions/<name>/, replayed by
# tests/unit/test_fuzz_regressions.c). `make -j2 fuzz` runs two at once.
#
#   make fuzz            FUZZ_TIME=60 per target (default)
#   make fuzz-ci         FUZZ_TIME=10 per target
#   make fuzz FUZZ_TARGETS="close_page time"   only these
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 60
FUZZ_B       := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -O1 -g $(WARN) -Wno-unknown-warning-option \
                -Wno-gnu-statement-expression -Wno-cast-align \
                $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -MMD -MP
FUZZ_ALL     := $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_B)/%.o)
FUZZ_LIBEB   := $(FUZZ_B)/libeb.a
FUZZ_BINS    := $(FUZZ_ALL:%=$(FUZZ_B)/fuzz_%)

.PHONY: fuzz fuzz-ci fuzz-build fuzz-toolchain

# A clear message when clang or its fuzzer runtime is missing.
fuzz-toolchain:
	$(Q)printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\n{ (void)d; (void)n; return 0; }\n' | \
	  $(FUZZ_CC) -x c $(FUZZ_SAN) -fsanitize=fuzzer -o /dev/null - 2>/dev/null || \
	  { echo "fuzz: needs clang with libFuzzer and the sanitizer runtimes" \
	    "(Debian: apt-get install clang libclang-rt-14-dev)"; exit 1; }

$(FUZZ_LIB_OBJ) $(FUZZ_B)/tests/fuzz/entries.o: | fuzz-toolchain

$(FUZZ_B)/lib/%.o: lib/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_B)/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_LIBEB): $(FUZZ_LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_B)/fuzz_%: $(FUZZ_B)/tests/fuzz/fuzz_%.o $(FUZZ_B)/tests/fuzz/entries.o $(FUZZ_LIBEB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# One run per target (phony, so `make -j` runs them side by side). The
# log goes to build/fuzz/<name>.log; the last lines are shown on failure
# and build/fuzz/<name>.failed marks it.
fuzz-run-%: $(FUZZ_B)/fuzz_%
	$(Q)rm -rf $(FUZZ_B)/corpus-$* $(FUZZ_B)/$*.failed && \
	  mkdir -p $(FUZZ_B)/corpus-$* $(FUZZ_B)/artifacts/$*
	$(Q)if [ -d tests/fuzz/corpus/$* ]; then \
	  cp -R tests/fuzz/corpus/$*/. $(FUZZ_B)/corpus-$*/; fi
	$(Q)regs=; if [ -d tests/fixtures/fuzz-regressions/$* ]; then \
	  regs=tests/fixtures/fuzz-regressions/$*; fi; \
	if ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1} \
	  $(FUZZ_B)/fuzz_$* -max_total_time=$(FUZZ_TIME) -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_B)/artifacts/$*/ \
	    $(FUZZ_B)/corpus-$* $$regs > $(FUZZ_B)/$*.log 2>&1; then \
	  echo "fuzz $*: ok ($$(grep -E '^stat::number_of_executed_units' \
	    $(FUZZ_B)/$*.log | awk '{print $$2}') runs in $(FUZZ_TIME)s)"; \
	else \
	  echo "fuzz $*: FAILED (input in $(FUZZ_B)/artifacts/$*/, log $(FUZZ_B)/$*.log)"; \
	  tail -n 40 $(FUZZ_B)/$*.log | sed 's/^/    | /'; \
	  touch $(FUZZ_B)/$*.failed; \
	fi

# Every target runs even when one fails; the verdict comes at the end.
fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)
	$(Q)failed=$$(cd $(FUZZ_B) && ls *.failed 2>/dev/null | sed 's/\.failed$$//'); \
	if [ -n "$$failed" ]; then echo "fuzz: findings in:" $$failed; exit 1; \
	else echo "fuzz: $(words $(FUZZ_TARGETS)) target(s), no findings"; fi

fuzz-ci:
	$(Q)$(MAKE) --no-print-directory FUZZ_TIME=10 fuzz

-include $(shell find $(FUZZ_B) -name '*.d' 2>/dev/null)

# ---- lint ----------------------------------------------------------------
SRC_ALL := $(shell find lib cmd tests -name '*.[ch]' 2>/dev/null)
BANNED  := '\b(sprintf|vsprintf|strcpy|strcat|strncpy|gets|strtok|atoi|atol)[[:space:]]*\('

lint: style-check checksrc doc-refs

# Every document a comment or a doc cites exists in the repository.
doc-refs:
	$(Q)scripts/check-doc-refs

style-check:
	$(Q)clang-format --dry-run --Werror $(SRC_ALL) && echo "style: ok"

style-fix:
	$(Q)clang-format -i $(SRC_ALL)

checksrc:
	$(Q)if grep -nE $(BANNED) $(SRC_ALL); then \
	  echo "checksrc: banned function used (see docs/architecture.md)"; exit 1; \
	else echo "checksrc: ok"; fi

# ---- deploy manifests ------------------------------------------------------
# Renders deploy/k8s/base and every overlay with the real kustomize, the Helm
# chart deploy/helm/evbridge with each examples/*.yaml (helm lint + helm
# template), and checks every object: schema against the API types of the
# oldest and the newest supported Kubernetes release and the published CRDs
# (tools/k8scheck), policy, the evbridge config in the ConfigMap (with
# `evbridge --check-config`), and that the chart and the overlays agree. See
# tools/lint-deploy.js and docs/operations.md.
#
# kustomize, helm and the checker are built once per pinned version from
# their Go modules (go is the only thing needed) into DEPLOY_TOOLS, outside
# the work tree; the directory names carry the versions (the checker's: a
# hash of its sources and go.mod files), so a version bump rebuilds and
# nothing else does. The node modules are pinned in tools/package-lock.json.
KUSTOMIZE_VERSION := v5.8.2
HELM_VERSION      := v4.3.2
DEPLOY_TOOLS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/evbridge/tools
GO_BUILD_P   ?= 2
TOOLS_GO      = GOFLAGS=-buildvcs=false go
KUSTOMIZE    := $(DEPLOY_TOOLS)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
HELM         := $(DEPLOY_TOOLS)/helm-$(HELM_VERSION)/helm
K8SCHECK_SRC := $(sort $(wildcard tools/k8scheck/*.go tools/k8scheck/go.* \
                  tools/k8scheck/crds/*.yaml))
K8SCHECK_DIR  = $(DEPLOY_TOOLS)/k8scheck-$(shell cat $(K8SCHECK_SRC) | \
                  sha256sum | cut -c1-16)
TOOLS_MODULES := tools/node_modules/.package-lock.json

$(TOOLS_MODULES): tools/package.json tools/package-lock.json
	$(Q)cd tools && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	$(Q)touch $@

# go install pkg@version: the module's own go.mod and go.sum, checked
# against the checksum database. Built into a temporary directory and moved
# into place, so an interrupted build leaves nothing that looks finished.
$(KUSTOMIZE):
	$(Q)echo "deploy-tools: building kustomize $(KUSTOMIZE_VERSION) into $(@D)" >&2
	$(Q)rm -rf $(@D).tmp && mkdir -p $(@D).tmp && \
	  GOBIN=$(@D).tmp $(TOOLS_GO) install -p $(GO_BUILD_P) -trimpath \
	    -ldflags='-s -w' sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION) && \
	  rm -rf $(@D) && mv $(@D).tmp $(@D)

$(HELM):
	$(Q)echo "deploy-tools: building helm $(HELM_VERSION) into $(@D)" >&2
	$(Q)rm -rf $(@D).tmp && mkdir -p $(@D).tmp && \
	  GOBIN=$(@D).tmp $(TOOLS_GO) install -p $(GO_BUILD_P) -trimpath \
	    -ldflags='-s -w' helm.sh/helm/v4/cmd/helm@$(HELM_VERSION) && \
	  rm -rf $(@D) && mv $(@D).tmp $(@D)

# The checker, twice: against the newest supported Kubernetes release
# (tools/k8scheck/go.mod) and the oldest (go.oldest.mod).
k8scheck-build:
	$(Q)d=$(K8SCHECK_DIR); if [ ! -x $$d/k8scheck-oldest ]; then \
	  echo "deploy-tools: building tools/k8scheck into $$d" >&2; \
	  rm -rf $$d.tmp && mkdir -p $$d.tmp && cd tools/k8scheck && \
	  $(TOOLS_GO) build -p $(GO_BUILD_P) -trimpath -ldflags='-s -w' \
	    -o $$d.tmp/k8scheck-newest . && \
	  $(TOOLS_GO) build -p $(GO_BUILD_P) -trimpath -ldflags='-s -w' \
	    -modfile=go.oldest.mod -o $$d.tmp/k8scheck-oldest . && \
	  rm -rf $$d && mv $$d.tmp $$d; fi

deploy-tools: $(KUSTOMIZE) $(HELM) k8scheck-build

# The arguments tools/lint-deploy.js needs (tests/integration/test_lint_deploy.sh).
deploy-tools-args: deploy-tools
	$(Q)echo --kustomize $(KUSTOMIZE) --helm $(HELM) \
	  --k8scheck $(K8SCHECK_DIR)/k8scheck-oldest \
	  --k8scheck $(K8SCHECK_DIR)/k8scheck-newest

lint-deploy: $(TOOLS_MODULES) $(B)/bin/evbridge deploy-tools
	$(Q)node tools/lint-deploy.js --evbridge $(B)/bin/evbridge \
	  --kustomize $(KUSTOMIZE) --helm $(HELM) \
	  --k8scheck $(K8SCHECK_DIR)/k8scheck-oldest \
	  --k8scheck $(K8SCHECK_DIR)/k8scheck-newest

# ---- install / clean / deps ----------------------------------------------
# The product: evbridge, evbridge-replay and their man pages (docs/man/,
# roff sources kept with the docs). The simulator, the Kafka mock and the
# benchmark helpers are for development: make install-dev.
MANDIR       ?= $(PREFIX)/share/man
PRODUCT_BINS := $(B)/bin/evbridge $(B)/bin/evbridge-replay
DEV_BINS     := $(filter-out $(PRODUCT_BINS),$(CMD_BINS))
MAN1         := docs/man/evbridge.1 docs/man/evbridge-replay.1
MAN5         := docs/man/evbridge.json.5

install: $(PRODUCT_BINS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man5
	install -m 0755 $(PRODUCT_BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/

install-dev: $(DEV_BINS)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(DEV_BINS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build

DEB_PKGS := build-essential pkg-config libevent-dev libcurl4-openssl-dev \
            libjansson-dev librdkafka-dev libssl-dev kcat \
            python3-confluent-kafka clang-format valgrind curl \
            clang libclang-rt-14-dev openjdk-17-jre-headless maven

# apt-get through sudo unless already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	$(Q)missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi
	$(Q)p=$$(scripts/get-promtool) && echo "deps: promtool at $$p"
