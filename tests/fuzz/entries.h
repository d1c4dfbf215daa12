/*
 * entries.h: the fuzz entry points, one per parser of outside input.
 *
 * Each entry feeds one input (any bytes) through the same library calls
 * evbridge makes on data it receives: upstream pages, webhook bodies and
 * headers, rate-limit headers, the configuration file, durations and
 * times. It checks the parsers' documented contracts on the way and
 * returns 0, or -1 when a contract is broken (a wrong result that is not
 * a crash). Crashes, leaks and undefined behaviour are left to the
 * sanitizers.
 *
 * Built twice: with clang and libFuzzer (tests/fuzz/fuzz_<name>.c, one
 * binary per entry, `make fuzz`), and with the normal compiler inside
 * tests/unit/test_fuzz_regressions.c, which replays every input under
 * tests/fixtures/fuzz-regressions/<name>/ through the same entry (so
 * `make test`, `make asan` and `make valgrind` re-check old findings).
 */
#ifndef EB_FUZZ_ENTRIES_H
#define EB_FUZZ_ENTRIES_H

#include <stddef.h>
#include <stdint.h>

typedef int eb_fuzz_fn(const uint8_t *data, size_t size);

struct eb_fuzz_target {
        const char *name; /* fuzz_<name>, corpus/<name>, regressions/<name> */
        eb_fuzz_fn *fn;
};

/** @brief Quiet logging and build the shared sources (idempotent). */
void eb_fuzz_init(void);

/** @brief Free what eb_fuzz_init() built (tests run under valgrind). */
void eb_fuzz_fini(void);

/* Upstream pages: handle_response at 200, 429 and 500, then page_done,
 * walk_end and next_request (cursors from the body end up in URLs);
 * normalize on the input as a native event; walk_begin with the input as
 * a restored checkpoint. Every event is rendered as a CloudEvent. */
int eb_fuzz_kommo_page(const uint8_t *data, size_t size);
int eb_fuzz_close_page(const uint8_t *data, size_t size);
int eb_fuzz_kota_page(const uint8_t *data, size_t size);

/* Webhook bodies, signed correctly by the harness (so the input reaches
 * the parser): verification must pass, then JSON, normalize, envelope. */
int eb_fuzz_close_webhook(const uint8_t *data, size_t size);
int eb_fuzz_kota_webhook(const uint8_t *data, size_t size);
/* Kommo form bodies (eb_form_parse with default and tight limits),
 * eb_form_query_get and eb_form_decode. */
int eb_fuzz_kommo_form(const uint8_t *data, size_t size);

/* Signature headers: the input's first lines are header values, the
 * rest the body (see entries.c for the layout of each). */
int eb_fuzz_sig_kota(const uint8_t *data, size_t size);
int eb_fuzz_sig_standard(const uint8_t *data, size_t size);
int eb_fuzz_sig_close(const uint8_t *data, size_t size);

/* Any JSON text: eb_json_put() must write exactly what
 * json_dumps(JSON_COMPACT) writes (NUL in strings included), and
 * eb_utf8_valid() accept exactly what jansson's strings accept. */
int eb_fuzz_json_dump(const uint8_t *data, size_t size);
/* Any bytes: eb_json_loadb() must give json_loadb()'s result, and its fast
 * path either decline or build the very same tree. */
int eb_fuzz_json_load(const uint8_t *data, size_t size);

/* RateLimit and Retry-After header values. */
int eb_fuzz_ratelimit(const uint8_t *data, size_t size);
/* eb_config_load_string and the provider and webhook checks. */
int eb_fuzz_config(const uint8_t *data, size_t size);
/* Durations, RFC 3339 times and poll.start values. */
int eb_fuzz_time(const uint8_t *data, size_t size);

/* Webhook intake records (sharding, eb_shard.h): decode; a decoded event
 * must be complete and render; encode it again and decode: the same
 * identity (dedupe key) and source. */
int eb_fuzz_intake(const uint8_t *data, size_t size);

/** The table of every entry, NULL-terminated. */
extern const struct eb_fuzz_target eb_fuzz_targets[];

/* State topic values (.seen and .checkpoints): decoded, the seen ones
 * re-encoded and compared, and fed to the restore loader. */
int eb_fuzz_state_records(const uint8_t *data, size_t size);

#endif /* EB_FUZZ_ENTRIES_H */
