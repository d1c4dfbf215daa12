/*
 * eb_webhook_sig: webhook authentication schemes. No application state,
 * no I/O: a scheme reads a request's headers, body and token and says
 * whether it is authentic. eb_webhook picks one per source
 * (webhook.scheme, or the provider's default: struct
 * eb_provider_webhook.scheme).
 *
 * The generic schemes live here:
 *
 *   "standard"  Standard Webhooks: webhook-id, webhook-timestamp,
 *               webhook-signature = space-separated "v1,<base64 HMAC-SHA256
 *               of '<id>.<ts>.<body>'>"; secret "whsec_<base64>"
 *   "token"     a shared token in the URL (for platforms that sign
 *               nothing); compared in constant time
 *
 * A provider with a signature of its own defines its scheme in its file
 * (lib/providers/<name>.c) from the primitives below and points its
 * webhook table at it; eb_wh_scheme_lookup() finds it by name there.
 *
 * Signed schemes check the signature first, then that the timestamp is
 * within the tolerance (either side of now). Every comparison of a
 * secret-derived value goes through eb_ct_equal(); the verdict reports how
 * many were made, so tests can see it.
 *
 * Adding a scheme: a struct eb_wh_scheme (one verify function) in the
 * provider's file, or a generic one in eb_webhook_sig.c's table.
 */
#ifndef EB_WEBHOOK_SIG_H
#define EB_WEBHOOK_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

/** Why a request is (not) authentic. */
typedef enum {
        EB_WH_AUTH_OK = 0,
        EB_WH_AUTH_SIG_MISSING,   /* a required header is absent */
        EB_WH_AUTH_SIG_MALFORMED, /* header present but unparseable */
        EB_WH_AUTH_SIG_MISMATCH,  /* no signature matches */
        EB_WH_AUTH_TS_INVALID,    /* timestamp not a Unix time */
        EB_WH_AUTH_TS_EXPIRED,    /* older than the tolerance */
        EB_WH_AUTH_TS_FUTURE,     /* newer than now + tolerance */
        EB_WH_AUTH_TOKEN_MISSING,
        EB_WH_AUTH_TOKEN_MISMATCH,
        EB_WH_AUTH_ERROR, /* internal (crypto library) failure */
} eb_wh_auth_t;

/** @returns a stable snake_case name ("signature_mismatch"), for
 *  metrics labels and logs. */
const char *eb_wh_auth_name(eb_wh_auth_t a);

/** A scheme's prepared key. Use the API only. */
struct eb_wh_key {
        unsigned char *bytes;
        size_t len;
};

/** What a scheme may look at (all borrowed). */
struct eb_wh_input {
        /* Header lookup, case-insensitive; NULL when absent. */
        const char *(*header)(void *hctx, const char *name);
        void *hctx;
        const void *body;
        size_t body_len;
        const char *token;    /* from the URL (path or ?token=), or NULL */
        int64_t now_ms;       /* wall clock */
        int64_t tolerance_ms; /* allowed |now - timestamp| */
};

/** An authentication scheme. */
struct eb_wh_scheme {
        const char *name; /* webhook.scheme */
        int uses_token;   /* 1: webhook.token, 0: webhook.secret */
        /* prepare the key from the secret or token (errstr never quotes
         * it); the key is wiped by eb_wh_key_fini() even on error */
        int (*key_init)(const char *secret, struct eb_wh_key *key, char *errstr,
                        size_t errstr_size);
        eb_wh_auth_t (*verify)(const struct eb_wh_key *key,
                               const struct eb_wh_input *in,
                               unsigned *ct_compares);
};

/** The generic schemes. */
extern const struct eb_wh_scheme eb_wh_scheme_standard;
extern const struct eb_wh_scheme eb_wh_scheme_token;

/** @returns borrowed scheme by name: a generic one or one a registered
 *  provider declares (eb_wh_scheme_names()), or NULL. */
const struct eb_wh_scheme *eb_wh_scheme_lookup(const char *name);

/** @returns the scheme's name. */
const char *eb_wh_scheme_name(const struct eb_wh_scheme *s);

/** @returns 1 when the scheme authenticates with webhook.token, 0 when
 *  with webhook.secret. */
int eb_wh_scheme_uses_token(const struct eb_wh_scheme *s);

/** @returns a comma-separated list of scheme names (for messages). */
const char *eb_wh_scheme_names(void);

/**
 * @brief Prepare @p key for @p s from the configured secret or token
 * (borrowed) with the scheme's key_init (Standard Webhooks strips
 * "whsec_" and base64-decodes, token takes the bytes as they are).
 * @returns 0, or -EINVAL with a reason in @p errstr that never quotes the
 * secret. Free with eb_wh_key_fini() (also after a failure).
 */
int eb_wh_key_init(const struct eb_wh_scheme *s, const char *secret,
                   struct eb_wh_key *key, char *errstr, size_t errstr_size);

/** @brief Wipe and free @p key; safe on a zeroed or finished key. */
void eb_wh_key_fini(struct eb_wh_key *key);

/**
 * @brief Check @p in against @p key with scheme @p s.
 * @param ct_compares if not NULL, incremented once per constant-time
 * comparison made.
 * @returns EB_WH_AUTH_OK or the first reason it is not authentic.
 */
eb_wh_auth_t eb_wh_verify(const struct eb_wh_scheme *s,
                          const struct eb_wh_key *key,
                          const struct eb_wh_input *in, unsigned *ct_compares);

/* ---- helpers, exposed for the schemes' tests ------------------------ */

/**
 * @brief HMAC-SHA256 over the concatenation of @p n parts (no copy).
 * @returns 0 or -EIO.
 */
int eb_wh_hmac_parts(const struct eb_wh_key *key, const void *const *parts,
                     const size_t *lens, size_t n, unsigned char out[32]);

/**
 * @brief Decode standard base64 (padding optional, no whitespace) into
 * @p out (capacity @p outsz).
 * @returns bytes written, or -EINVAL.
 */
int eb_wh_base64_decode(const char *in, size_t n, unsigned char *out,
                        size_t outsz);

/** Most v1 signatures read from one signature header. */
#define EB_WH_MAX_SIGS 8

/** @returns the header @p name of @p in (case-insensitive), or NULL. */
const char *eb_wh_header(const struct eb_wh_input *in, const char *name);

/** @brief Key initializers for schemes: the secret's bytes as they are
 *  (not empty), or hex-decoded (an even number of hex digits). */
int eb_wh_key_raw(const char *secret, struct eb_wh_key *key, char *errstr,
                  size_t errstr_size);
int eb_wh_key_hex(const char *secret, struct eb_wh_key *key, char *errstr,
                  size_t errstr_size);

/** @brief Decode exactly 64 hex digits at @p s (@p n bytes) into @p out.
 *  @returns 0 or -EINVAL. */
int eb_wh_hex32(const char *s, size_t n, unsigned char out[32]);

/** @brief Parse a Unix-seconds timestamp of 1..12 decimal digits at @p s
 *  (@p n bytes). @returns 0 or -EINVAL. */
int eb_wh_parse_ts(const char *s, size_t n, int64_t *secs);

/** @returns EB_WH_AUTH_OK when @p secs is within @p tol_ms of @p now_ms,
 *  else _TS_EXPIRED or _TS_FUTURE. */
eb_wh_auth_t eb_wh_ts_window(int64_t secs, int64_t now_ms, int64_t tol_ms);

/**
 * @brief Parse a Unix-seconds timestamp (1..12 decimal digits) and check
 * it against @p now_ms +- @p tolerance_ms.
 * @returns EB_WH_AUTH_OK, _TS_INVALID, _TS_EXPIRED or _TS_FUTURE.
 */
eb_wh_auth_t eb_wh_check_timestamp(const char *ts, int64_t now_ms,
                                   int64_t tolerance_ms);

#endif /* EB_WEBHOOK_SIG_H */
