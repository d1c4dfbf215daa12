/*
 * eb_json: compact JSON output straight into an eb_buf.
 *
 * The hot path renders every event's envelope; jansson's json_dumps()
 * builds it through a callback per token and a loop-detection table keyed
 * by printf("%p") per container. This writer produces the same bytes as
 * json_dumps(v, JSON_COMPACT) (checked by tests/unit/test_eb_json.c and a
 * differential fuzz target) for trees jansson itself built, which cannot
 * hold cycles.
 */
#ifndef EB_JSON_H
#define EB_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "eb_buf.h"

/** Deepest nesting written (jansson's own parser stops at 2048). */
#define EB_JSON_MAX_DEPTH 2048

/** @brief Append @p s escaped as in eb_json_put_str(), without quotes (to
 *  build one string from parts). @returns 0, -E2BIG or -ENOMEM. */
int eb_json_put_chars(struct eb_buf *b, const char *s, size_t len) EB_WUR;

/**
 * @brief Append @p s (@p len bytes of UTF-8) as a quoted JSON string:
 * '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX.
 * @returns 0, -E2BIG or -ENOMEM.
 */
int eb_json_put_str(struct eb_buf *b, const char *s, size_t len) EB_WUR;

/**
 * @brief Append @p v as json_dumps(v, JSON_COMPACT) would write it.
 * @returns 0, -EINVAL (NULL, or nested deeper than EB_JSON_MAX_DEPTH),
 * -E2BIG or -ENOMEM. On error @p b holds a partial value.
 */
int eb_json_put(struct eb_buf *b, const json_t *v) EB_WUR;

/**
 * @brief json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), allocated with
 * malloc() whatever allocator jansson was given (eb_jalloc).
 * @returns new string (caller frees), or NULL.
 */
char *eb_json_dumps(const json_t *v);

/** @returns 1 if @p s is valid UTF-8 as jansson accepts it (no overlong
 *  forms, no surrogates, nothing beyond U+10FFFF), else 0. */
int eb_utf8_valid(const char *s, size_t len);

/**
 * @brief json_loadb(@p buf, @p len, @p flags, @p error), faster: a direct
 * parser builds the tree and json_loadb() runs only when it declines
 * (any error, or a number or flag it leaves to jansson). Same tree, same
 * errors. Fast path for @p flags 0 and JSON_REJECT_DUPLICATES.
 */
json_t *eb_json_loadb(const char *buf, size_t len, size_t flags,
                      json_error_t *error);

/** @brief The fast path alone: the tree, or NULL where it declines (for
 *  tests). */
json_t *eb_json_loadb_fast(const char *buf, size_t len, size_t flags);

/*
 * A parsed text kept with its tree, so that writing the tree again costs
 * a copy: eb_json_loadb_src() records every object and array whose bytes
 * in the text are already what eb_json_put() writes for it (compact, no
 * repeated key, escapes and numbers as eb_json_put() writes them), and
 * eb_json_put_src() copies those bytes instead of walking the subtree.
 * Same output as eb_json_put(), always (cross-checked by
 * tests/unit/test_eb_json.c and the json_load and page fuzz targets).
 *
 * The tree must not change while its src lives: nothing may be added to
 * or removed from a container of it (new containers holding parts of it
 * are fine). The src holds a reference to the root, so a recorded
 * address is never freed and reused before the src is.
 */
struct eb_json_src;

/**
 * @brief eb_json_loadb(), and in @p *srcp the text and its canonical
 * containers (a reference for the caller), or NULL when the fast path
 * declined or found none (then eb_json_put_src() is eb_json_put()).
 */
json_t *eb_json_loadb_src(const char *buf, size_t len, size_t flags,
                          json_error_t *error, struct eb_json_src **srcp);

/** @brief eb_json_put(), copying what @p src (may be NULL) holds. */
int eb_json_put_src(struct eb_buf *b, const json_t *v,
                    const struct eb_json_src *src) EB_WUR;

/** @returns @p src with one more reference (NULL: NULL). */
struct eb_json_src *eb_json_src_ref(struct eb_json_src *src);
/** @brief Drop a reference; the last frees the text, the table and the
 *  tree's reference. NULL is a no-op. */
void eb_json_src_unref(struct eb_json_src *src);
/** @returns how many containers @p src records (for tests). */
size_t eb_json_src_spans(const struct eb_json_src *src);

/** Bytes of text and tables all live srcs of the process may hold;
 *  past it eb_json_loadb_src() makes none (the envelopes are the same,
 *  written from the tree). */
#define EB_JSON_SRC_BUDGET (4 * 1024 * 1024)

/** @brief Set the budget (tests). @returns the previous one. */
size_t eb_json_src_set_budget(size_t bytes);
/** @returns the bytes all live srcs hold now. */
size_t eb_json_src_live(void);

#endif /* EB_JSON_H */
