/*
 * eb_jfield: typed reads and writes of JSON object members (strings and
 * ids of bounded length, integers, RFC 3339 dates). No application state;
 * used by the providers to read upstream events and to keep their
 * checkpoints.
 */
#ifndef EB_JFIELD_H
#define EB_JFIELD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

/** Longest id eb_jfield_id_text() accepts. */
#define EB_JFIELD_MAX_ID 256

/**
 * @returns borrowed string value of @p key in @p obj when it is a JSON
 * string of 1..@p maxlen bytes with no NUL, else NULL.
 */
const char *eb_jfield_str(const json_t *obj, const char *key, size_t maxlen);

/**
 * @brief An optional id-like member of @p obj: absent or null sets
 * @p out to NULL; a string or an integer sets it to its text (new).
 * @returns 0, or -EINVAL (@p out NULL) for anything else.
 */
int eb_jfield_opt_id(const json_t *obj, const char *key, char **out) EB_WUR;

/** @returns the integer value of @p key in @p obj, or @p dflt when it is
 *  absent or not a JSON integer. */
int64_t eb_jfield_i64(const json_t *obj, const char *key, int64_t dflt);

/** @brief Parse the RFC 3339 string at @p key of @p obj into ms.
 *  @returns 0, or -EINVAL when absent, not a string or not a date-time. */
int eb_jfield_rfc3339(const json_t *obj, const char *key, int64_t *ms) EB_WUR;

/** @brief Set @p key of @p obj to @p ms formatted as RFC 3339 UTC with
 *  milliseconds ("2024-12-01T00:00:00.000Z"). */
void eb_jfield_set_rfc3339(json_t *obj, const char *key, int64_t ms);

/** @brief Set @p dst[@p key] to a new reference to @p src[@p key], or to
 *  JSON null when @p src has no such key. */
void eb_jfield_copy(json_t *dst, const json_t *src, const char *key);

/**
 * @brief Text of an id that may be a JSON string or integer.
 * @returns new string ("123" for 123), or NULL when @p v is neither (or
 * an empty or over-long string).
 */
char *eb_jfield_id_text(const json_t *v);

#endif /* EB_JFIELD_H */
