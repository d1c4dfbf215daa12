# evbridge: one hand-written GNU Makefile.
#
#   make            build everything into build/$(BUILD)/
#   make test       unit + integration tests, ends with "N passed, N failed"
#   make asan       the whole test suite under ASan+UBSan
#   make valgrind   unit tests under valgrind, leak-free
#   make run        the demo on the embedded Kafka cluster
#   make lint       clang-format check + banned functions
#   make lint-deploy  render and check the Kubernetes manifests (offline)
#   make deps       apt-get install what the build and tests need
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

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CPPFLAGS += -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Ilib -Itests/support \
            -DEB_VERSION='"$(VERSION)"' -DEB_GITREV='"$(GITREV)"'
CFLAGS   += -std=c11 $(OPT) $(WARN) $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   += $(PKG_LIBS) -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC   := $(sort $(wildcard lib/*.c))
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

.PHONY: all test test-unit test-integration asan ubsan valgrind run lint \
        style-check style-fix checksrc install clean deps bench lint-deploy

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

$(B)/tests/integration/%: $(B)/tests/integration/%.o $(SUPPORT_OBJ) $(LIBEB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# ---- tests ---------------------------------------------------------------
# tests/run drives every binary, counts the cases each one reports and prints
# the one closing line CI reads: "N passed, N failed".
export EB_BUILD_DIR := $(CURDIR)/$(B)

test: all
	$(Q)tests/run $(UNIT_BINS) $(INTEG_BINS) $(INTEG_SH)

test-unit: all
	$(Q)tests/run $(UNIT_BINS)

test-integration: all
	$(Q)tests/run $(INTEG_BINS) $(INTEG_SH)

asan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=address EB_TEST_TMOUT_MULT=3 test

ubsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=undefined test

valgrind: all
	$(Q)EB_TEST_TMOUT_MULT=10 EB_VALGRIND=1 tests/run $(UNIT_BINS)

run: $(CMD_BINS)
	$(Q)scripts/demo $(B)

bench: all
	$(Q)scripts/bench $(B)

# ---- lint ----------------------------------------------------------------
SRC_ALL := $(shell find lib cmd tests -name '*.[ch]' 2>/dev/null)
BANNED  := '\b(sprintf|vsprintf|strcpy|strcat|strncpy|gets|strtok|atoi|atol)[[:space:]]*\('

lint: style-check checksrc

style-check:
	$(Q)clang-format --dry-run --Werror $(SRC_ALL) && echo "style: ok"

style-fix:
	$(Q)clang-format -i $(SRC_ALL)

checksrc:
	$(Q)if grep -nE $(BANNED) $(SRC_ALL); then \
	  echo "checksrc: banned function used (see docs/architecture.md)"; exit 1; \
	else echo "checksrc: ok"; fi

# ---- deploy manifests ------------------------------------------------------
# Renders deploy/k8s/base and every overlay offline and checks every object:
# schema, policy, and the evbridge config in the ConfigMap (with
# `evbridge --check-config`). See tools/lint-deploy.js and
# docs/operations.md. The node modules are pinned in tools/package-lock.json.
TOOLS_MODULES := tools/node_modules/.package-lock.json

$(TOOLS_MODULES): tools/package.json tools/package-lock.json
	$(Q)cd tools && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	$(Q)touch $@

lint-deploy: $(TOOLS_MODULES) $(B)/bin/evbridge
	$(Q)node tools/lint-deploy.js --evbridge $(B)/bin/evbridge

# ---- install / clean / deps ----------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(CMD_BINS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build

DEB_PKGS := build-essential pkg-config libevent-dev libcurl4-openssl-dev \
            libjansson-dev librdkafka-dev libssl-dev kcat \
            python3-confluent-kafka clang-format valgrind curl

deps:
	$(Q)missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi
	$(Q)p=$$(scripts/get-promtool) && echo "deps: promtool at $$p"
