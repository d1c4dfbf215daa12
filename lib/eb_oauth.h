/*
 * eb_oauth: Kommo OAuth 2.0 token renewal for one source
 * (docs/providers.md, "Kommo authentication").
 *
 * A source configured with credentials.client_id, client_secret,
 * redirect_uri, refresh_token and token_key (instead of a long-lived
 * credentials.token) gets its access tokens from
 *
 *   POST <base_url>/oauth2/access_token
 *   {"client_id","client_secret","grant_type":"refresh_token",
 *    "refresh_token","redirect_uri"}
 *
 * Every answer carries a new refresh token and the old one is refused from
 * then on, so the newest pair must be durable before it is relied on. This
 * module only decides and encodes; the poller does the I/O:
 *
 *   eb_oauth_access()     the access token to send, NULL: refresh first
 *   eb_oauth_request()    the refresh request
 *   eb_oauth_response()   its answer: a new pair, held as PENDING
 *   eb_oauth_blob()       the pending pair, encrypted (AES-256-GCM with
 *                         token_key, the source name as associated data),
 *                         to persist in the source's checkpoint record
 *   eb_oauth_persisted()  the record is acknowledged: use the new pair
 *
 * The persisted blob records the origin: an HMAC (token_key) of the
 * configured refresh_token the pair descends from. On restart a blob of
 * the same origin wins (the configured token is spent by then); a
 * configured refresh_token of another origin means the operator
 * re-authorized, and it wins.
 *
 * The blob rides in the provider checkpoint object under the member
 * EB_OAUTH_CP_KEY (eb_oauth_wrap / eb_oauth_split), so it is stored,
 * compacted, partitioned and restored exactly like that source's
 * checkpoint.
 *
 * Thread context: the loop thread (no I/O here).
 */
#ifndef EB_OAUTH_H
#define EB_OAUTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_config.h"

/** The checkpoint member that carries the encrypted pair. */
#define EB_OAUTH_CP_KEY "oauth"

/** Refresh once this share of an access token's lifetime has passed. */
#define EB_OAUTH_REFRESH_AT 0.8

typedef struct eb_oauth_s eb_oauth_t;

/** @returns 1 when @p src gives any of the OAuth credentials. */
int eb_oauth_configured(const struct eb_source_cfg *src);

/**
 * @brief Check a source's credentials: either credentials.token or the
 * five OAuth keys (client_id, client_secret, redirect_uri, refresh_token,
 * token_key: 64 hex digits), never both; OAuth for Kommo only.
 * @p path is "sources[N]". @returns 0 or -EINVAL with the key's path.
 */
int eb_oauth_check_config(const struct eb_source_cfg *src, const char *path,
                          char *errstr, size_t errstr_size);

/**
 * @brief The OAuth state of @p src (borrowed, must outlive it), starting
 * from @p blob (a restored EB_OAUTH_CP_KEY member, borrowed, may be NULL).
 * @p note receives one line on what it chose (restored pair, configured
 * token, or why a blob was not used), without any secret.
 * @returns new state, or NULL when @p src has no OAuth credentials.
 */
eb_oauth_t *eb_oauth_new(const struct eb_source_cfg *src, const json_t *blob,
                         char *note, size_t note_size);

/** @brief Free (tokens scrubbed, forgotten by the log redactor). */
void eb_oauth_free(eb_oauth_t *o);

/** @returns the access token to use at @p now_ms (wall clock), or NULL
 *  when none is usable (none yet, or past EB_OAUTH_REFRESH_AT of its
 *  lifetime): refresh first. */
const char *eb_oauth_access(const eb_oauth_t *o, int64_t now_ms);

/** @brief The upstream refused the access token (401): drop it so the
 *  next request refreshes first. */
void eb_oauth_invalidate(eb_oauth_t *o);

/** @returns 1 while a new pair waits for eb_oauth_persisted(). */
int eb_oauth_pending(const eb_oauth_t *o);

/**
 * @brief The refresh request: @p url "<base_url>/oauth2/access_token",
 * @p body the JSON body (both new strings; scrub and free the body).
 * @returns 0 or -ENOMEM.
 */
int eb_oauth_request(const eb_oauth_t *o, const char *base_url, char **url,
                     char **body);

typedef enum {
        EB_OAUTH_OK = 0,  /* a new pair, pending until persisted */
        EB_OAUTH_REFUSED, /* 400/401: the refresh token or client is not
                           * accepted; only re-authorizing helps */
        EB_OAUTH_RETRY,   /* 5xx, 429, a bad body: try again later */
} eb_oauth_result_t;

/**
 * @brief Take the token endpoint's answer (@p status, @p body) received at
 * @p now_ms. @p detail gets a reason without secrets (the upstream's
 * title/hint on a refusal).
 */
eb_oauth_result_t eb_oauth_response(eb_oauth_t *o, long status,
                                    const char *body, size_t body_len,
                                    int64_t now_ms, char *detail,
                                    size_t detail_size);

/** @returns new reference to the encrypted record of the pending pair
 *  (@p pending 1 and one is pending) or of the current one, or NULL when
 *  there is none but the configured refresh_token. Each pair is
 *  encrypted once and the same record returned after. */
json_t *eb_oauth_blob(eb_oauth_t *o, int pending);

/** @brief The pending pair is durable: use it from now on. */
void eb_oauth_persisted(eb_oauth_t *o);

/**
 * @brief Move @p from's pending pair to @p to (a restarted incarnation of
 * the same source), unless @p to was configured from another
 * refresh_token (re-authorized). @returns 1 if moved.
 */
int eb_oauth_adopt(eb_oauth_t *to, eb_oauth_t *from);

/** @brief Drop a pending pair (it could not be persisted and never
 *  will: stopping). */
void eb_oauth_drop_pending(eb_oauth_t *o);

/** @returns new reference: @p cp with @p blob as EB_OAUTH_CP_KEY (a
 *  shallow copy of an object; {} + blob for NULL), or @p cp itself
 *  (incref'd, may be NULL) when @p blob is NULL or @p cp no object. */
json_t *eb_oauth_wrap(json_t *cp, json_t *blob);

/**
 * @brief Split a restored checkpoint: @returns new reference to @p cp
 * without EB_OAUTH_CP_KEY (NULL when nothing else is left), and the blob
 * (new reference or NULL) in @p blob.
 */
json_t *eb_oauth_split(json_t *cp, json_t **blob);

/* Test-only fault hook: EB_TEST_OAUTH_HOLD_MS in the environment (read
 * once) holds every new pair this long before it is persisted, after
 * logging "oauth test hold", so a test can kill the process in that
 * window. @returns the hold, 0 normally. */
int64_t eb_oauth_test_hold_ms(void);

#endif /* EB_OAUTH_H */
