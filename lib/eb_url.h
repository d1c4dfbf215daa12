/*
 * eb_url: building request URLs: a base, a path and encoded query
 * parameters, bounded (EB_URL_MAX). No application state; used by the
 * providers' next_request.
 */
#ifndef EB_URL_H
#define EB_URL_H

#include <stdint.h>

#include "eb_buf.h"
#include "eb_log.h"

/** Longest URL eb_url_start() lets a buffer grow to. */
#define EB_URL_MAX 16384

/**
 * @brief Percent-encode @p s into @p b: unreserved characters
 * (A-Z a-z 0-9 - . _ ~) and those in @p keep (may be NULL) stay, every
 * other byte becomes %XX (uppercase hex).
 * @returns 0, -E2BIG or -ENOMEM.
 */
int eb_url_encode(struct eb_buf *b, const char *s, const char *keep) EB_WUR;

/**
 * @brief Append "?key=value" (or "&key=value" once the URL has a '?')
 * to @p b, the key fully encoded ("filter[type][]" becomes
 * "filter%5Btype%5D%5B%5D") and the value encoded keeping ','.
 * @returns 0, -E2BIG or -ENOMEM.
 */
int eb_url_add_param(struct eb_buf *b, const char *key,
                     const char *value) EB_WUR;
/** @brief eb_url_add_param() with a decimal value. */
int eb_url_add_param_i64(struct eb_buf *b, const char *key,
                         int64_t value) EB_WUR;

/**
 * @brief Start a URL in @p b (limit EB_URL_MAX): @p base with its
 * trailing slashes removed, then @p path (which starts with '/').
 * @returns 0, -E2BIG or -ENOMEM.
 */
int eb_url_start(struct eb_buf *b, const char *base, const char *path) EB_WUR;

#endif /* EB_URL_H */
