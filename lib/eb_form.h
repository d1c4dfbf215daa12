/*
 * eb_form: application/x-www-form-urlencoded bodies and query strings,
 * with PHP-style nested keys, into JSON. No application state.
 *
 * Kommo (amoCRM) webhooks are PHP form posts (docs/providers.md 1.9):
 *
 *     leads[status][0][id]=10701093&leads[status][0][tags][0][name]=a+b
 *     &account[subdomain]=example
 *
 * becomes
 *
 *     {"leads": {"status": [{"id": "10701093",
 *                            "tags": [{"name": "a b"}]}]},
 *      "account": {"subdomain": "example"}}
 *
 * Rules (PHP's, made strict where PHP silently guesses):
 *   - pairs are separated by '&'; empty pairs ("a=1&&b=2", a trailing '&')
 *     are skipped; a pair without '=' is malformed;
 *   - key and value are percent-decoded ('+' is a space) before the key's
 *     brackets are read, so "leads%5Bstatus%5D" is "leads[status]"; a bad
 *     escape ("%zz", "%4") or a decoded NUL is malformed; both must be
 *     valid UTF-8;
 *   - a key is a non-empty name followed by zero or more "[sub]" groups;
 *     an unbalanced bracket, a '[' inside a group or anything between two
 *     groups is malformed; more than max_depth groups is malformed;
 *   - "[]" appends: its index is the container's current size (a clash
 *     with an existing key is malformed rather than guessed);
 *   - a later scalar replaces an earlier one (PHP); a key used both as a
 *     scalar and as a container is malformed;
 *   - every value is a JSON string; a container whose keys are exactly
 *     "0".."n-1" becomes a JSON array (PHP's json_encode does the same).
 */
#ifndef EB_FORM_H
#define EB_FORM_H

#include <jansson.h>
#include <stddef.h>

#include "eb_buf.h"
#include "eb_log.h"

/** Bounds on what eb_form_parse() accepts (0: the default). */
struct eb_form_limits {
        size_t max_pairs;   /* default 10000 */
        size_t max_depth;   /* "[...]" groups per key, default 16 */
        size_t max_key_len; /* decoded key bytes, default 1024 */
};

/**
 * @brief Parse a form-encoded @p body of @p len bytes (need not be
 * NUL-terminated).
 * @param lim bounds, or NULL for the defaults.
 * @returns new JSON object (possibly empty), or NULL with a short reason
 * in @p errstr (it names the pair's position, never its value).
 */
json_t *eb_form_parse(const char *body, size_t len,
                      const struct eb_form_limits *lim, char *errstr,
                      size_t errstr_size);

/**
 * @brief Percent-decode @p n bytes of @p in, appending to @p out; when
 * @p plus_is_space, '+' becomes ' ' (form encoding; not in URL paths).
 * @returns 0, -EINVAL (bad escape or decoded NUL), -E2BIG or -ENOMEM.
 */
int eb_form_decode(const char *in, size_t n, int plus_is_space,
                   struct eb_buf *out) EB_WUR;

/**
 * @brief Find the first parameter named @p name (compared after
 * decoding) in the query string @p query ("a=1&token=x").
 * @returns new decoded value ("" for "name=" or a bare "name"), or NULL
 * when absent or badly encoded.
 */
char *eb_form_query_get(const char *query, const char *name);

#endif /* EB_FORM_H */
