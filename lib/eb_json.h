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

#endif /* EB_JSON_H */
