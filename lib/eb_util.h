/*
 * eb_util: small helpers with no application state.
 *
 * Allocation policy (docs/architecture.md "Conventions"): eb_x* abort with a
 * log line on failure and are for small internal objects; where a size
 * comes from outside input, use plain malloc and return -ENOMEM.
 */
#ifndef EB_UTIL_H
#define EB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

/** @returns new zeroed memory; aborts on failure. */
void *eb_xcalloc(size_t nmemb, size_t size);
/** @returns new memory; aborts on failure. */
void *eb_xmalloc(size_t size);
/** @returns resized memory; aborts on failure. */
void *eb_xrealloc(void *p, size_t size);
/** @returns new copy of @p s, or NULL if @p s is NULL; aborts on failure. */
char *eb_xstrdup(const char *s);
/** @returns new copy of the first @p n bytes of @p s, NUL-terminated. */
char *eb_xstrndup(const char *s, size_t n);
/** @returns new string formatted like printf; aborts on failure. */
char *eb_xasprintf(const char *fmt, ...) EB_PRINTF(1, 2);

#if defined(EB_UNIT_TESTS) || !defined(NDEBUG)
#define EB_ASSERT(cond)                                                        \
        do {                                                                   \
                if (!(cond))                                                   \
                        eb_assert_fail(#cond, __FILE__, __LINE__);             \
        } while (0)
#else
#define EB_ASSERT(cond) ((void)0)
#endif
void eb_assert_fail(const char *what, const char *file, int line);

/**
 * @brief Constant-time comparison of two byte strings (signatures, tokens).
 * The time depends only on @p blen, never on where the strings differ.
 * @returns 1 when equal (same length and bytes), 0 otherwise.
 */
int eb_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/** @brief Lowercase hex of @p n bytes into @p out (2n+1 bytes). */
void eb_hex_encode(const unsigned char *in, size_t n, char *out);

/**
 * @brief Decode hex (either case) into @p out (capacity @p outsz).
 * @returns the number of bytes written, or -EINVAL on odd length, a non-hex
 * digit or lack of space.
 */
int eb_hex_decode(const char *in, unsigned char *out, size_t outsz);

/** @returns the value of hex digit @p c (either case), or -1. */
int eb_hex_digit(int c);

/**
 * @brief Base64 (RFC 4648, standard alphabet, padded) of @p n bytes.
 * @returns new NUL-terminated string, or NULL when out of memory.
 */
char *eb_base64_encode(const void *p, size_t n);

/**
 * @brief HMAC-SHA256 of @p msg with @p key into @p out (32 bytes).
 * @returns 0 or -EIO.
 */
int eb_hmac_sha256(const void *key, size_t keylen, const void *msg,
                   size_t msglen, unsigned char out[32]);

/** @brief 64-bit FNV-1a, for stable sharding and hashing of names. */
uint64_t eb_fnv1a64(const void *p, size_t n);

/** @brief Strict decimal parse of a whole string into int64. @returns 0 or
 * -EINVAL / -ERANGE. */
int eb_parse_i64(const char *s, int64_t *out);

/** @brief Strict decimal/fractional parse (e.g. "1.5"). @returns 0 or
 * -EINVAL. */
int eb_parse_double(const char *s, double *out);

#endif /* EB_UTIL_H */
