/*
 * eb_buf: a growable byte buffer with a hard limit (curl's dynbuf).
 *
 * Visible struct, embedded by callers: use the API only.
 * Every buffer fed by the network has a limit; appending past it fails with
 * -E2BIG and leaves the buffer as it was.
 */
#ifndef EB_BUF_H
#define EB_BUF_H

#include <stddef.h>
#include <string.h>

#include "eb_log.h"

struct eb_buf {
        char *data; /* NUL-terminated after every append */
        size_t len;
        size_t cap;
        size_t limit; /* 0: no limit */
};

/** @brief Start an empty buffer that may hold at most @p limit bytes. */
void eb_buf_init(struct eb_buf *b, size_t limit);
/** @brief Free the contents; the buffer is empty and reusable after. */
void eb_buf_fini(struct eb_buf *b);
/** @brief Drop the contents, keep the memory. */
void eb_buf_reset(struct eb_buf *b);
/** @brief eb_buf_append()'s general case (growth, limit); use
 *  eb_buf_append(). */
int eb_buf_append_slow(struct eb_buf *b, const void *p, size_t n) EB_WUR;

/**
 * @returns 0, -E2BIG past the limit, or -ENOMEM. Inline: the envelope
 * writer appends a few bytes at a time, and the common case (room left,
 * no limit in the way) is a copy and a store.
 */
static inline EB_WUR int eb_buf_append(struct eb_buf *b, const void *p,
                                       size_t n)
{
        if (n < b->cap - b->len && !b->limit) {
                memcpy(b->data + b->len, p, n);
                b->len += n;
                b->data[b->len] = '\0';
                return 0;
        }
        return eb_buf_append_slow(b, p, n);
}

/** @brief Make room for @p n more bytes (within the limit) without
 *  changing the contents. @returns 0, -E2BIG or -ENOMEM. */
int eb_buf_reserve(struct eb_buf *b, size_t n) EB_WUR;
/** @returns 0, -E2BIG or -ENOMEM. */
int eb_buf_append_str(struct eb_buf *b, const char *s) EB_WUR;
/** @returns 0, -E2BIG or -ENOMEM. */
int eb_buf_printf(struct eb_buf *b, const char *fmt, ...)
        EB_PRINTF(2, 3) EB_WUR;
/**
 * @brief Take the contents (never NULL: an empty buffer yields "").
 * @returns new string (caller frees); the buffer is left empty.
 */
char *eb_buf_take(struct eb_buf *b, size_t *lenp);

#endif /* EB_BUF_H */
