/*
 * eb_provider: the adapter interface every upstream platform implements.
 *
 * An adapter is a table of functions and declarations (struct
 * eb_provider) in its own lib/providers/<name>.c, registered by one line
 * in lib/providers/list.h. The scheduler (eb_poller) owns the HTTP
 * transfers, rate limits, backoff and publishing; the adapter only knows
 * its API:
 *
 *   walk_begin      checkpoint (JSON, or NULL on first start) -> walk state
 *   next_request    walk state -> the URL and auth header of the next page
 *   handle_response HTTP response -> events + "more pages?" + signals
 *   page_done       the page's events are in Kafka -> advance the
 *                   checkpoint (w->cp) the scheduler will persist
 *   walk_end        the walk finished -> final checkpoint for the next one
 *   normalize       one native event -> struct eb_event (webhooks too)
 *
 * Checkpoints are provider-defined JSON objects, so they can be stored in
 * Kafka as they are (<state_prefix>.checkpoints) and read back after a
 * restart. They must only move forward when the events behind them are
 * acknowledged; the scheduler guarantees page_done is called only then.
 *
 * Thread context: all calls on the loop thread; no I/O inside adapters.
 */
#ifndef EB_PROVIDER_H
#define EB_PROVIDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_buf.h"
#include "eb_config.h"
#include "eb_event.h"
#include "eb_jfield.h"
#include "eb_log.h"
#include "eb_url.h"
#include "eb_webhook_sig.h"

/** What the scheduler should make of a response. */
typedef enum {
        EB_RESP_OK = 0,       /* a page (possibly empty): see page fields */
        EB_RESP_RATE_LIMITED, /* 429: wait retry_after_ms (or back off) */
        EB_RESP_BANNED,       /* Kommo 403: stop the source, alert */
        EB_RESP_AUTH,         /* 401/402/403 (not a ban): credentials */
        EB_RESP_RETRY,        /* 5xx, 408, etc: back off and retry */
        EB_RESP_BAD_BODY,     /* unparseable or wrong shape: back off */
        EB_RESP_CLIENT_ERROR, /* other 4xx: our request is wrong; back off */
        EB_RESP_REFUSED,      /* a 4xx the upstream says not to retry (Kota
                               * 400/404/422): stop the source, alert */
} eb_resp_kind_t;

/** The response the scheduler hands to the adapter (all borrowed). */
struct eb_response {
        long status;      /* HTTP status */
        const char *body; /* NUL-terminated, may be "" */
        size_t body_len;
        const char *content_type; /* may be NULL */
        const char *retry_after;  /* Retry-After header, may be NULL */
        const char *ratelimit;    /* RateLimit header, may be NULL */
        int64_t now_ms;           /* wall clock at completion */
};

/** What the adapter made of a response. */
struct eb_page {
        eb_resp_kind_t kind;
        struct eb_event **events; /* new array of new events (kind OK) */
        size_t events_cnt;
        int more;               /* 1: call next_request for another page */
        int full;               /* 1: the page was full (catch-up hint) */
        int64_t retry_after_ms; /* >0 when the upstream said how long;
                                 * on an OK page: its budget is spent
                                 * (Close remaining=0), hold the next
                                 * request this long */
        char detail[256];       /* why, for logs and metrics */
        /* Added fields (every handle_response sets them, any kind):
         * the upstream's own rate-limit report from this response
         * (Close "RateLimit: limit=100, remaining=50, reset=0.734"), -1
         * when it did not say. The scheduler may slow down when
         * remaining gets low and wait reset_ms once it reaches 0. */
        double ratelimit_limit;     /* requests per window, or -1 */
        double ratelimit_remaining; /* left in this window, or -1 */
        int64_t ratelimit_reset_ms; /* until the window resets, or -1 */
        /* Events the adapter dropped on purpose (an allow-list such as
         * Kota options.types); they still advance the checkpoint. */
        size_t skipped_cnt;
        /* the body as eb_resp_json_object() read it (a reference,
         * may be NULL); eb_page_add_event() hands it to each event, and
         * eb_walk_response_end() drops the page's own reference. */
        struct eb_json_src *src;
};

/** One walk over the events list. Owned by the scheduler. */
struct eb_walk {
        const struct eb_source_cfg *src; /* borrowed */
        const char *base_url; /* src->base_url or the provider default */
        int64_t now_ms;       /* wall clock when the walk began */
        int64_t start_ms;     /* poll.start resolved (first start only) */
        int64_t overlap_ms;   /* resolved (source or provider default) */
        int64_t lag_ms;       /* resolved */
        int page_size;        /* resolved */
        json_t *cp;           /* checkpoint: in at begin, advanced by
                               * page_done/walk_end (owned ref) */
        json_t *state;        /* adapter-private walk state (owned ref) */
        int pages;            /* pages fetched so far in this walk */
        /* the adapter this walk runs (set by eb_walk_init). */
        const struct eb_provider *prov;
        /* time slicing of newest-first walks (docs/providers.md,
         * "Slices"). slice_ms (in, set before walk_begin; 0: none): a
         * walk that does not resume a checkpoint's window covers at
         * most this much time past its watermark. cut (out, set by
         * walk_begin): 1 when the walk's window ends before now - lag
         * because of that, so the next walk follows at once and starts
         * at this one's end without the overlap. */
        int64_t slice_ms;
        int cut;
        /* Added (out, set by walk_begin): 1 when the walk resumes a
         * window a checkpoint was inside of (its bounds are fixed). */
        int resumed;
};

/**
 * How a provider takes webhooks (struct eb_provider.webhook; NULL: it
 * takes none). eb_webhook verifies, parses and dispatches by this alone.
 */
struct eb_provider_webhook {
        /* the default webhook.scheme: a generic one of eb_webhook_sig
         * (eb_wh_scheme_token...) or the provider's own */
        const struct eb_wh_scheme *scheme;
        /* the only media type accepted. A form type
         * ("application/x-www-form-urlencoded") is read with eb_form,
         * any other as a JSON object. */
        const char *content_type;
        /* publishing webhooks: the event is body[event_key] (NULL: the
         * whole body), normalized with normalize() and published. */
        const char *event_key;
        /* poll triggers: set when the provider's webhooks carry no event
         * of their own, only news that the source has some. The parsed
         * body (borrowed) is checked with it (0, or -EINVAL with why),
         * then the source is polled at once (at most one poll per
         * webhook.trigger interval, a later one deferred). */
        int (*trigger_check)(const json_t *body, char *why, size_t why_size);
};

struct eb_provider {
        const char *name;
        const char *default_base_url; /* NULL: base_url is required */
        double default_rps;
        int default_burst;
        int default_page_size;
        int max_page_size;
        int64_t default_overlap_ms;
        int64_t default_lag_ms;

        /** Check provider-specific keys of a source; @p path is
         *  "sources[N]". @returns 0 or -EINVAL with "path.key: why". */
        int (*check_config)(const struct eb_source_cfg *src, const char *path,
                            char *errstr, size_t errstr_size);

        /** Prepare a walk from w->cp (NULL: first start, use start_ms). */
        int (*walk_begin)(struct eb_walk *w);

        /** Build the next request. @p url and @p auth are new strings
         *  (auth: a full header line, "Authorization: ..."). */
        int (*next_request)(struct eb_walk *w, char **url, char **auth);

        /** Classify and parse a response. Never fails: bad input becomes
         *  kind EB_RESP_BAD_BODY with a detail. */
        void (*handle_response)(struct eb_walk *w,
                                const struct eb_response *resp,
                                struct eb_page *page);

        /** The last page's events are acknowledged: advance w->cp. */
        void (*page_done)(struct eb_walk *w);

        /** The walk is over (no more pages): finalize w->cp. */
        void (*walk_end)(struct eb_walk *w);

        /** Normalize one native event (borrowed) for source @p src.
         *  @returns new event, or NULL with a reason in @p errstr. */
        struct eb_event *(*normalize)(const struct eb_source_cfg *src,
                                      json_t *native, char *errstr,
                                      size_t errstr_size);

        /* the credentials key the provider needs ("token" for
         * Kommo, "api_key" for Close and Kota). */
        const char *credential;

        /* 1 when the list API returns newest first (Kommo, Close): the
         * scheduler then buffers a walk's pages and publishes them oldest
         * first, so one entity's events reach Kafka in the order they
         * happened. 0 for ascending walks (Kota), published page by page. */
        int newest_first;

        /* the most requests the provider allows in any one second
         * per account, when it documents one (Kommo 7); 0: not
         * documented. A source whose rate_limit could exceed it (rps +
         * burst, the most a token bucket lets through in one second) is
         * refused, and so are sources of one account that could exceed
         * it together. */
        int max_per_second;

        /* its webhooks (NULL: it takes none). */
        const struct eb_provider_webhook *webhook;
};

/** @returns borrowed adapter by name, or NULL. */
const struct eb_provider *eb_provider_lookup(const char *name);

/** @returns the NULL-terminated list of registered adapters. */
const struct eb_provider *const *eb_provider_all(void);

/** Most providers the registry holds (built-in and registered). */
#define EB_PROVIDER_MAX 16

/**
 * @brief Add @p prov (borrowed, lives as long as the process) to the
 * registry after the built-in ones of lib/providers/list.h. For tests and
 * embedders that bring a provider of their own: call it before anything
 * reads the registry (config checks, webhooks, the poller); it is not
 * thread-safe and there is no unregister.
 * @returns 0, -EEXIST (no name, or one already registered by that name)
 * or -ENOSPC (EB_PROVIDER_MAX reached).
 */
int eb_provider_register(const struct eb_provider *prov) EB_WUR;

/**
 * @brief Check every source's provider and provider-specific options.
 * @returns 0 or -EINVAL with "sources[N].key: why" in @p errstr.
 */
int eb_provider_check_config(const struct eb_config *cfg, char *errstr,
                             size_t errstr_size);

/** @brief Free a page's events and reset it. */
void eb_page_fini(struct eb_page *page);

/** @brief Set up @p w for @p src and @p prov at @p now_ms, taking a
 * reference to @p cp (may be NULL). */
void eb_walk_init(struct eb_walk *w, const struct eb_provider *prov,
                  const struct eb_source_cfg *src, json_t *cp, int64_t now_ms);
/** @brief Release what a walk holds. */
void eb_walk_fini(struct eb_walk *w);

/*
 * Contract details every adapter follows (docs/providers.md has the
 * per-provider rules and checkpoint formats):
 *
 * - walk_begin returns 0, or -EINVAL when w->cp is not a checkpoint this
 *   provider wrote (corrupt, or another provider's: never silently
 *   restarted) or when the source's options are invalid.
 * - next_request only reads the walk state: calling it again after an
 *   error kind yields the same request. It returns 0, -E2BIG (URL too
 *   long) or -EINVAL (walk not begun).
 * - handle_response resets @p page itself (it must hold no events: zeroed,
 *   fresh from eb_page_init() or after eb_page_fini()). A page whose
 *   events cannot all be normalized is rejected whole as
 *   EB_RESP_BAD_BODY with no events: an event is never dropped silently.
 *   It may change the walk state on an error kind only to recover (Close:
 *   a 400 on a cursor restarts the walk from the watermark).
 * - page_done is a no-op unless the last handle_response returned
 *   EB_RESP_OK and page_done was not yet called for it; it increments
 *   w->pages.
 * - Events in page.events own everything they point to; native is a new
 *   reference to the object inside the parsed body.
 */

/* ---- the registered adapters -------------------------------------- */

/* The built-in adapters, declared from lib/providers/list.h. */
#define EB_PROVIDER(x) extern const struct eb_provider eb_provider_##x;
#include "providers/list.h"
#undef EB_PROVIDER

/* ---- helpers shared by the adapters (no I/O, no state) ------------- */

/* Generic helpers the adapters use live in their own modules: eb_url.h
 * (request URLs), eb_jfield.h (typed JSON members), eb_time.h (RFC 3339),
 * eb_util.h (hex, base64). Below: what only adapters need. */

/** Most events one page may carry; more is a BAD_BODY (runaway body). */
#define EB_PROVIDER_MAX_PAGE_EVENTS 1000
/** Longest event id, type, entity or account string accepted. */
#define EB_PROVIDER_MAX_ID 256
/** Longest pagination cursor accepted from an upstream. */
#define EB_PROVIDER_MAX_CURSOR 4096
/** Longest URL next_request builds. */
#define EB_PROVIDER_MAX_URL EB_URL_MAX

/** @brief Reset @p page to an empty EB_RESP_OK page with unknown rate
 * limits (-1). It must hold no events (they would leak). */
void eb_page_init(struct eb_page *page);

/** @brief Append @p evt (ownership taken, also on failure: it is then
 * freed) to @p page. @returns 0 or -E2BIG past
 * EB_PROVIDER_MAX_PAGE_EVENTS. */
int eb_page_add_event(struct eb_page *page, struct eb_event *evt) EB_WUR;

/**
 * @brief A poison event: @p native (borrowed; a reference is taken) of
 * source @p src could not be normalized for @p reason. Its id is
 * "deadletter-" and a hash of the native JSON, so reading it again is a
 * duplicate; the pipeline writes it raw to the dead-letter topic in the
 * publish that moves the checkpoint past it.
 * @returns new event (never NULL).
 */
struct eb_event *eb_deadletter_event(const struct eb_source_cfg *src,
                                     const char *provider, json_t *native,
                                     const char *reason, const char *position);

/**
 * @brief Normalize element @p i of the page's array @p array (page
 * @p page_no) with the walk's adapter; one that cannot be normalized
 * becomes its poison event (eb_deadletter_event(), position
 * "page <page_no>, <array>[<i>]"), so the rest of the page goes on.
 * @returns new event (never NULL); evt->deadletter tells which.
 */
struct eb_event *eb_walk_normalize(const struct eb_walk *w, json_t *native,
                                   int64_t page_no, const char *array,
                                   size_t i);

/**
 * @brief A page that says which page it is (integer member @p key of
 * @p root) must be the one asked for, @p want: otherwise @p page becomes
 * EB_RESP_BAD_BODY "asked for page N, got a different <key>".
 * @returns 0, or -1 when @p page failed.
 */
int eb_page_check_number(struct eb_page *page, const json_t *root,
                         const char *key, int64_t want);

/** @brief Make @p page a @p kind page with no events and a printf-style
 * detail (control characters become spaces). */
void eb_page_fail(struct eb_page *page, eb_resp_kind_t kind, const char *fmt,
                  ...) EB_PRINTF(3, 4);

/** @returns the name of a kind ("ok", "rate_limited", ...), for logs. */
const char *eb_resp_kind_name(eb_resp_kind_t kind);

/**
 * @brief The generic status classification: 2xx OK, 429 RATE_LIMITED,
 * 401/402/403 AUTH, 408/5xx/0 (no response) RETRY, other 4xx and 3xx
 * CLIENT_ERROR, anything else (1xx, >599) BAD_BODY. Adapters override
 * what differs (Kommo 403 is BANNED).
 */
eb_resp_kind_t eb_resp_classify(long status);

/**
 * @brief Fill @p page for an error response: kind @p kind, detail
 * "HTTP <status>: <title>: <detail>" from a JSON error body
 * (problem+json title/detail, Close error, Kota error_code), or
 * "HTTP <status>" and a short printable excerpt otherwise.
 */
void eb_page_http_error(struct eb_page *page, eb_resp_kind_t kind,
                        const struct eb_response *resp);

/**
 * @returns 1 when @p content_type is JSON ("application/json", any
 * "application/<x>+json", parameters ignored, any case) or absent (NULL
 * or ""), else 0. A present non-JSON type on a 200 (an HTML page from a
 * proxy) is a BAD_BODY.
 */
int eb_content_type_is_json(const char *content_type);

/**
 * @brief Parse a 200 response body as a JSON object: checks the content
 * type, the body length and the top-level type.
 * @returns new reference, or NULL with @p page set to EB_RESP_BAD_BODY
 * and a detail.
 */
json_t *eb_resp_json_object(const struct eb_response *resp,
                            struct eb_page *page);

/** @returns borrowed "options" object of @p src, or NULL when absent
 * (also when it is not an object: check_config reports that). */
json_t *eb_source_options(const struct eb_source_cfg *src);

/**
 * @brief The start of every check_config: find the "options" of @p src.
 * @param opts set to the borrowed options object, or NULL when there are
 *        none (absent or JSON null: nothing to check).
 * @returns 0, or -EINVAL with "<path>.options: expected an object".
 */
int eb_source_options_check(const struct eb_source_cfg *src, const char *path,
                            json_t **opts, char *errstr,
                            size_t errstr_size) EB_WUR;

/* ---- walk state shared by the adapters ----------------------------- */

/*
 * w->state is a JSON object the adapter defines (integers, and strings
 * such as a cursor). Keys every adapter uses the same way: "pending" (1:
 * the last response was an OK page that page_done has not yet
 * acknowledged), "more" (that page said there is more) and "done" (the
 * walk's last page was acknowledged); "pmax" and "pnext" (the pending
 * page's newest event time and next cursor) where an adapter needs them.
 */

/** @returns the integer at @p key of w->state, or 0 when it is absent
 *  (or w->state is NULL). */
int64_t eb_walk_get(const struct eb_walk *w, const char *key);

/** @returns 1 when w->state has @p key, else 0. */
int eb_walk_has(const struct eb_walk *w, const char *key);

/** @brief Set @p key of w->state (which must exist) to @p v. */
void eb_walk_set(struct eb_walk *w, const char *key, int64_t v);

/**
 * @brief The start every handle_response shares: reset @p page with
 * eb_page_init(); then, for a walk not begun (no w->state), make it an
 * EB_RESP_CLIENT_ERROR "walk not begun"; otherwise forget the previous
 * pending page ("pending" 0, "pmax" and "pnext" removed).
 * @returns 0, or -EINVAL for a walk not begun (@p page is then final).
 */
int eb_walk_response_begin(struct eb_walk *w, struct eb_page *page) EB_WUR;

/** @brief The end every handle_response shares: an EB_RESP_OK @p page
 *  becomes the pending page ("pending" 1, "more" page->more); its detail
 *  gets how many poison events it holds and the first one's reason. */
void eb_walk_response_end(struct eb_walk *w, struct eb_page *page);

/**
 * @brief The start every page_done shares: acknowledge the pending page
 * ("pending" 0, w->pages incremented).
 * @returns 1 when there was one, 0 when page_done has nothing to do.
 */
int eb_walk_page_ack(struct eb_walk *w);

/**
 * @returns the kind of a response that is not the adapter's own success
 * status: eb_resp_classify(), except that a 2xx the adapter does not
 * expect (201, 206...) is EB_RESP_BAD_BODY.
 */
eb_resp_kind_t eb_resp_classify_error(long status);

/** @returns the wait the Retry-After header of @p resp asks for in ms,
 *  or 0 when it is absent or malformed. */
int64_t eb_resp_retry_after_ms(const struct eb_response *resp);

/** @returns new "Authorization: Bearer <token>". */
char *eb_auth_bearer(const char *token);

/**
 * @returns new "Authorization: Basic base64(<user>:<pass>)". The encoded
 * credential is registered with eb_log_add_secret(), so it cannot reach
 * a log line either. NULL when out of memory.
 */
char *eb_auth_basic(const char *user, const char *pass);

#endif /* EB_PROVIDER_H */
