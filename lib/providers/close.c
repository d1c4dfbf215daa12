/*
 * providers/close.c: Close GET /api/v1/event/ (docs/providers.md).
 *
 *   first page:  ?date_updated__gte=<wm - overlap>&_limit=L&<filters>
 *   next pages:  ?_cursor=<cursor_next>&_limit=L&<filters>
 *                (the other filters again, never date_updated: Close says
 *                so)
 *   until cursor_next is null, data is empty, or the page went below
 *   date_updated__gte (newest first: everything after is older).
 *
 * Events are newest first by date_updated and mutable (consolidation
 * rewrites date_updated), so the watermark only moves at the end of a
 * walk, to min(max date_updated seen, walk start - lag), never backwards.
 *
 * Checkpoint: {"wm": "<RFC 3339 ms>"} between walks; inside one
 * {"wm", "gte", "cursor", "started", "max"?, "lt"?} so a restart resumes
 * the cursor walk.
 *
 * Slices (w->slice_ms): a backlog is walked as windows of date_updated,
 * oldest first: [wm - overlap, wm + slice) with date_updated__lt, as long
 * as wm + slice is older than walk start - lag. Such a walk ends with
 * {"wm": <its lt>, "cut": true}: everything before lt was seen, so the
 * next slice starts at wm itself, without the overlap. A resumed cursor may be
 * stale: if a cursor request gets a 400, the walk restarts once from
 * date_updated__gte (duplicates, never gaps).
 */
#include "eb_provider.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_ratelimit.h"
#include "eb_seen.h"
#include "eb_time.h"
#include "eb_util.h"
#include "eb_webhook_sig.h"

#define CLOSE_MAX_FILTER 200
#define CLOSE_MAX_DATE   64
/* Close: events may become visible out of order; re-scan the latest five
 * minutes (its events reference). Plus clock skew between Close and us. */
#define CLOSE_VISIBILITY_MS (5 * 60 * 1000LL)
#define CLOSE_SKEW_MS       5000LL
/* Most seconds with events a checkpoint's "seen" lists. */
#define CLOSE_MAX_SEEN 2000

/* Filter options, in the order they appear in the query string. */
enum {
        F_OBJECT_TYPE = 1 << 0,
        F_OBJECT_ID = 1 << 1,
        F_ACTION = 1 << 2,
        F_LEAD_ID = 1 << 3,
        F_USER_ID = 1 << 4,
        F_REQUEST_ID = 1 << 5,
};

static const char *const close_filters[] = {"object_type", "object_id",
                                            "action",      "lead_id",
                                            "user_id",     "request_id"};
#define CLOSE_NFILTERS 6

/* The combinations Close accepts (developer.close.com events list), plus
 * none at all; date_updated may be added to any of them. */
static const unsigned close_allowed[] = {
        0,
        F_OBJECT_TYPE | F_OBJECT_ID,
        F_OBJECT_TYPE | F_ACTION,
        F_OBJECT_ID | F_ACTION,
        F_LEAD_ID | F_OBJECT_TYPE,
        F_LEAD_ID | F_OBJECT_TYPE | F_ACTION,
        F_LEAD_ID | F_USER_ID | F_OBJECT_TYPE,
        F_LEAD_ID | F_USER_ID | F_OBJECT_TYPE | F_ACTION,
        F_LEAD_ID | F_USER_ID,
        F_USER_ID | F_OBJECT_ID,
        F_USER_ID | F_OBJECT_ID | F_ACTION,
        F_USER_ID | F_OBJECT_TYPE,
        F_USER_ID | F_OBJECT_TYPE | F_ACTION,
        F_LEAD_ID,
        F_USER_ID,
        F_REQUEST_ID,
};

static int printable_token(const char *s)
{
        for (; *s; s++) {
                if ((unsigned char)*s <= 0x20 || *s == 0x7f)
                        return 0;
        }
        return 1;
}

static int close_check_config(const struct eb_source_cfg *src, const char *path,
                              char *errstr, size_t errstr_size)
{
        json_t *opts, *v;
        const char *key;
        unsigned mask = 0;
        size_t i, off;
        char names[128];
        int rc;

        rc = eb_source_options_check(src, path, &opts, errstr, errstr_size);
        if (rc || !opts)
                return rc;
        json_object_foreach(opts, key, v)
        {
                const char *s;

                for (i = 0; i < CLOSE_NFILTERS; i++) {
                        if (!strcmp(key, close_filters[i]))
                                break;
                }
                if (i == CLOSE_NFILTERS) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.%.64s: unknown option (allowed: "
                                 "object_type, object_id, action, lead_id, "
                                 "user_id, request_id)",
                                 path, key);
                        return -EINVAL;
                }
                s = eb_jfield_str(opts, key, CLOSE_MAX_FILTER);
                if (!s || !printable_token(s)) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.%s: expected a non-empty string "
                                 "without spaces (at most %d bytes)",
                                 path, key, CLOSE_MAX_FILTER);
                        return -EINVAL;
                }
                mask |= 1u << i;
        }
        for (i = 0; i < sizeof(close_allowed) / sizeof(close_allowed[0]); i++) {
                if (close_allowed[i] == mask)
                        return 0;
        }
        names[0] = '\0';
        for (i = 0, off = 0; i < CLOSE_NFILTERS; i++) {
                int n;

                if (!(mask & (1u << i)))
                        continue;
                n = snprintf(names + off, sizeof(names) - off, "%s%s",
                             off ? "+" : "", close_filters[i]);
                if (n < 0 || (size_t)n >= sizeof(names) - off)
                        break;
                off += (size_t)n;
        }
        snprintf(errstr, errstr_size,
                 "%s.options: Close does not accept the filter combination "
                 "%s; allowed: object_type+object_id, object_type+action, "
                 "object_id+action, lead_id+object_type[+action], "
                 "lead_id+user_id[+object_type[+action]], "
                 "user_id+object_id[+action], user_id+object_type[+action], "
                 "lead_id, user_id, request_id, or none",
                 path, names);
        return -EINVAL;
}

/* ---- walk ------------------------------------------------------------ */

/*
 * w->state: {"wm", "gte", "started", "max" (ms; max absent until an
 * event is acknowledged), "cursor" (absent on the first page), "low"
 * (the oldest date_updated acknowledged in this walk), "refused" (times
 * the current cursor was refused), "pending", "more", "done", "pmax",
 * "pmin" and "pnext" (the pending page's max and min date_updated and
 * cursor_next)}
 *
 * A cursor Close refuses (400) is tried once more; refused again, it has
 * expired (Close does not document how long cursors live), and the walk
 * goes on from its checkpoint with a date filter instead:
 * date_updated__gte=<gte>&date_updated__lte=<low>. That re-reads only the
 * events of the oldest acknowledged millisecond (dropped by the dedupe
 * store), never the pages already taken.
 */
static const char *st_cursor(const struct eb_walk *w)
{
        return json_string_value(json_object_get(w->state, "cursor"));
}

/*
 * Overlap without downloading it again. A finished walk leaves how many
 * events each second of [wm - overlap, wm] held ("seen", "seen_span", as
 * Kommo's, lib/eb_seen.h) and when it began ("seen_at"). Seconds older
 * than that start minus Close's five minutes of late visibility (and clock
 * skew), below "rs", cannot have changed after it read them. The next walk
 * reads down from now as before, through the lag and everything newer
 * than rs, and stops at the first page whose whole seconds below rs hold
 * exactly those counts: the rest of the overlap is the same. A count that
 * differs (an event that became visible later still, or one Close
 * consolidated into a newer date_updated) sends the walk on down to
 * date_updated__gte.
 */
static void close_load_seen(struct eb_walk *w, const json_t *cp, int64_t wm)
{
        int64_t at = eb_jfield_i64(cp, "seen_at", -1), top = wm / 1000, lo, rs;
        json_t *prev;

        if (at < 0)
                return;
        prev = eb_seen_load(cp, top, CLOSE_MAX_SEEN, &lo);
        if (!prev)
                return;
        rs = (at - CLOSE_VISIBILITY_MS - CLOSE_SKEW_MS) / 1000;
        if (rs > top + 1)
                rs = top + 1;
        json_object_set_new(w->state, "prev", prev);
        eb_walk_set(w, "prev_lo", lo);
        eb_walk_set(w, "rs", rs);
}

/* After a page whose oldest second is @p smin, with this walk's counts
 * @p cnt (this page's included): @returns 1 when the seconds below rs
 * that are whole now, (smin, rs - 1], hold the last walk's counts. */
static int close_overlap_known(const struct eb_walk *w, const json_t *cnt,
                               int64_t smin)
{
        const json_t *prev = json_object_get(w->state, "prev");
        int64_t hi = eb_walk_get(w, "rs") - 1;

        if (!prev || eb_walk_has(w, "nocount") || smin >= hi ||
            smin + 1 < eb_walk_get(w, "prev_lo"))
                return 0;
        return eb_seen_same(cnt, prev, smin, hi);
}

static int close_walk_begin(struct eb_walk *w)
{
        char err[256];
        json_t *cp = w->cp, *jc;
        const char *cursor = NULL;
        int64_t wm, gte, started = w->now_ms, max = 0, lt = 0, low = 0;
        int has_max = 0, has_lt = 0, has_low = 0;

        if (!w->src)
                return -EINVAL;
        if (close_check_config(w->src, "options", err, sizeof(err)))
                return -EINVAL;
        if (cp) {
                if (!json_is_object(cp) || eb_jfield_rfc3339(cp, "wm", &wm))
                        return -EINVAL;
                /* The last walk was a slice: nothing before wm is new. */
                gte = json_is_true(json_object_get(cp, "cut"))
                              ? wm
                              : wm - w->overlap_ms;
                jc = json_object_get(cp, "cursor");
                if (jc && !json_is_null(jc)) {
                        cursor = eb_jfield_str(cp, "cursor",
                                               EB_PROVIDER_MAX_CURSOR);
                        if (!cursor || eb_jfield_rfc3339(cp, "gte", &gte) ||
                            eb_jfield_rfc3339(cp, "started", &started))
                                return -EINVAL;
                        if (json_object_get(cp, "max")) {
                                if (eb_jfield_rfc3339(cp, "max", &max))
                                        return -EINVAL;
                                has_max = 1;
                        }
                        if (json_object_get(cp, "lt")) {
                                if (eb_jfield_rfc3339(cp, "lt", &lt) ||
                                    lt <= gte)
                                        return -EINVAL;
                                has_lt = 1;
                        }
                        if (json_object_get(cp, "low")) {
                                if (eb_jfield_rfc3339(cp, "low", &low))
                                        return -EINVAL;
                                has_low = 1;
                        }
                }
        } else {
                wm = w->start_ms;
                gte = w->start_ms;
        }
        if (!cursor && w->slice_ms > 0 &&
            wm + w->slice_ms < started - w->lag_ms) {
                lt = wm + w->slice_ms;
                has_lt = 1;
        }
        w->cut = has_lt;
        w->resumed = cursor != NULL;
        json_decref(w->state);
        w->state = json_object();
        eb_walk_set(w, "wm", wm);
        eb_walk_set(w, "gte", gte);
        eb_walk_set(w, "started", started);
        if (has_max)
                eb_walk_set(w, "max", max);
        if (has_lt)
                eb_walk_set(w, "lt", lt);
        if (has_low)
                eb_walk_set(w, "low", low);
        if (cursor)
                json_object_set_new(w->state, "cursor", json_string(cursor));
        json_object_set_new(w->state, "cnt", json_object());
        eb_walk_set(w, "cnt_lo", gte / 1000 + 1);
        if (cursor || has_lt || !cp || json_is_true(json_object_get(cp, "cut")))
                eb_walk_set(w, "nocount", 1);
        else
                close_load_seen(w, cp, wm);
        return 0;
}

static int close_next_request(struct eb_walk *w, char **url, char **auth)
{
        struct eb_buf b;
        json_t *opts;
        const char *cursor, *v;
        char iso[40];
        size_t i;
        int rc;

        if (!w->state || !w->base_url || !w->src)
                return -EINVAL;
        opts = eb_source_options(w->src);
        cursor = st_cursor(w);
        rc = eb_url_start(&b, w->base_url, "/api/v1/event/");
        if (!rc && cursor) {
                rc = eb_url_add_param(&b, "_cursor", cursor);
        } else if (!rc) {
                eb_rfc3339_format(eb_walk_get(w, "gte"), 3, iso, sizeof(iso));
                rc = eb_url_add_param(&b, "date_updated__gte", iso);
                if (!rc && eb_walk_has(w, "lt")) {
                        eb_rfc3339_format(eb_walk_get(w, "lt"), 3, iso,
                                          sizeof(iso));
                        rc = eb_url_add_param(&b, "date_updated__lt", iso);
                }
                if (!rc && eb_walk_has(w, "low")) {
                        /* a refused cursor: go on below the pages taken */
                        eb_rfc3339_format(eb_walk_get(w, "low"), 3, iso,
                                          sizeof(iso));
                        rc = eb_url_add_param(&b, "date_updated__lte", iso);
                }
        }
        if (!rc)
                rc = eb_url_add_param_i64(&b, "_limit", w->page_size);
        for (i = 0; !rc && i < CLOSE_NFILTERS; i++) {
                v = eb_jfield_str(opts, close_filters[i], CLOSE_MAX_FILTER);
                if (v)
                        rc = eb_url_add_param(&b, close_filters[i], v);
        }
        if (rc) {
                eb_buf_fini(&b);
                return rc;
        }
        *url = eb_buf_take(&b, NULL);
        *auth = eb_auth_basic(w->src->api_key, "");
        if (!*auth) {
                free(*url);
                *url = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ---- normalize ------------------------------------------------------- */

static const char *const close_fields[] = {
        "object_type",    "object_id",    "lead_id",       "action",
        "changed_fields", "data",         "previous_data", "meta",
        "date_created",   "date_updated", "request_id",    NULL};

static struct eb_event *close_normalize(const struct eb_source_cfg *src,
                                        json_t *native, char *errstr,
                                        size_t errstr_size)
{
        struct eb_event *evt;
        json_t *ev = native, *inner;
        const char *id, *object_type, *action, *updated, *bad = NULL;
        char *object_id = NULL, *actor = NULL, *account = NULL;
        int64_t t = 0;
        size_t i;

        if (!json_is_object(ev)) {
                snprintf(errstr, errstr_size, "event is not a JSON object");
                return NULL;
        }
        /* A webhook delivery {"event": {...}, "subscription_id": ...}. */
        inner = json_object_get(ev, "event");
        if (!json_object_get(ev, "id") && json_is_object(inner))
                ev = inner;
        id = eb_jfield_str(ev, "id", EB_PROVIDER_MAX_ID);
        object_type = eb_jfield_str(ev, "object_type", EB_PROVIDER_MAX_ID);
        action = eb_jfield_str(ev, "action", EB_PROVIDER_MAX_ID);
        updated = eb_jfield_str(ev, "date_updated", CLOSE_MAX_DATE);
        if (!id)
                bad = "missing or invalid \"id\"";
        else if (!object_type)
                bad = "missing or invalid \"object_type\"";
        else if (!action)
                bad = "missing or invalid \"action\"";
        else if (!updated || eb_rfc3339_parse(updated, &t))
                bad = "missing or invalid \"date_updated\"";
        else if (eb_jfield_opt_id(ev, "object_id", &object_id))
                bad = "invalid \"object_id\"";
        else if (eb_jfield_opt_id(ev, "user_id", &actor))
                bad = "invalid \"user_id\"";
        else if (eb_jfield_opt_id(ev, "organization_id", &account))
                bad = "invalid \"organization_id\"";
        if (bad) {
                snprintf(errstr, errstr_size, "event %.64s: %s",
                         id ? id : "(no id)", bad);
                free(object_id);
                free(actor);
                free(account);
                return NULL;
        }
        evt = eb_event_new();
        evt->id = eb_xstrdup(id);
        evt->source_name = eb_xstrdup(src && src->name ? src->name : "");
        evt->provider = eb_xstrdup("close");
        evt->account = account;
        evt->entity_type = eb_xstrdup(object_type);
        evt->entity_id = object_id ? object_id : eb_xstrdup("");
        evt->action = eb_xstrdup(action);
        evt->actor = actor;
        evt->version = eb_xstrdup(updated);
        evt->time_ms = t;
        evt->fields = json_object();
        for (i = 0; close_fields[i]; i++)
                eb_jfield_copy(evt->fields, ev, close_fields[i]);
        evt->native = json_incref(ev);
        /* Close gives a non-admin key data and previous_data only for an
         * hour after the event; later both come back null. A deleted
         * object has null data but still its previous_data. */
        if (json_is_null(json_object_get(ev, "data")) &&
            json_is_null(json_object_get(ev, "previous_data")) &&
            strcmp(action, "deleted")) {
                evt->stripped = 1;
                json_object_set_new(evt->fields, "data_stripped", json_true());
        }
        return evt;
}

/* ---- responses ------------------------------------------------------- */

/* This page's events by second, into w->state "pcnt" for page_done.
 * @returns 1 when, with them, the overlap below is known
 * (close_overlap_known): the walk stops here, and its counts are whole
 * from the second above @p smin ("pstop"). */
static int close_count_page(struct eb_walk *w, const struct eb_page *page,
                            int64_t smin)
{
        json_t *pcnt = json_object(), *all;
        size_t i;
        int known;

        for (i = 0; i < page->events_cnt; i++) {
                const struct eb_event *evt = page->events[i];

                if (!evt->deadletter && evt->time_ms > 0)
                        eb_seen_add(pcnt, evt->time_ms / 1000, 1);
        }
        json_object_set_new(w->state, "pcnt", pcnt);
        all = json_deep_copy(json_object_get(w->state, "cnt"));
        if (!all)
                return 0;
        {
                const char *key;
                json_t *v;

                json_object_foreach(pcnt, key, v) eb_seen_add(
                        all, strtoll(key, NULL, 10), json_integer_value(v));
        }
        known = close_overlap_known(w, all, smin);
        json_decref(all);
        if (known)
                eb_walk_set(w, "pstop", smin + 1);
        return known;
}

static void close_page_ok(struct eb_walk *w, const struct eb_response *resp,
                          struct eb_page *page)
{
        json_t *root, *data, *jn, *item;
        const char *next = NULL, *cursor = st_cursor(w);
        int64_t pmax = 0, pmin = 0, gte = eb_walk_get(w, "gte");
        size_t i, nvalid = 0;

        root = eb_resp_json_object(resp, page);
        if (!root)
                return;
        data = json_object_get(root, "data");
        jn = json_object_get(root, "cursor_next");
        if (!json_is_array(data)) {
                eb_page_fail(page, EB_RESP_BAD_BODY, "no \"data\" array");
                goto out;
        }
        if (jn && !json_is_null(jn)) {
                next = eb_jfield_str(root, "cursor_next",
                                     EB_PROVIDER_MAX_CURSOR);
                if (!next) {
                        eb_page_fail(page, EB_RESP_BAD_BODY,
                                     "invalid \"cursor_next\" (expected a "
                                     "string of 1..%d bytes or null)",
                                     EB_PROVIDER_MAX_CURSOR);
                        goto out;
                }
        }
        if (json_array_size(data) > EB_PROVIDER_MAX_PAGE_EVENTS) {
                eb_page_fail(page, EB_RESP_BAD_BODY, "%zu events, more than %d",
                             json_array_size(data),
                             EB_PROVIDER_MAX_PAGE_EVENTS);
                goto out;
        }
        json_array_foreach(data, i, item)
        {
                struct eb_event *evt =
                        eb_walk_normalize(w, item, w->pages + 1, "data", i);

                if (!evt->deadletter) {
                        if (!nvalid || evt->time_ms > pmax)
                                pmax = evt->time_ms;
                        if (!nvalid || evt->time_ms < pmin)
                                pmin = evt->time_ms;
                        nvalid++;
                }
                if (eb_page_add_event(page, evt)) {
                        eb_page_fail(page, EB_RESP_BAD_BODY, "too many events");
                        goto out;
                }
        }
        if (next && cursor && !strcmp(next, cursor)) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "cursor_next repeats the cursor just used");
                goto out;
        }
        /* Newest first: once a page reaches below date_updated__gte the
         * rest of the log is older still (a cursor that dropped the date
         * filter would otherwise walk 30 days). */
        page->more = next && page->events_cnt && (!nvalid || pmin >= gte);
        if (page->more && nvalid && close_count_page(w, page, pmin / 1000))
                page->more = 0; /* the rest of the overlap is known */
        page->full = page->events_cnt >= (size_t)w->page_size;
        if (nvalid) {
                eb_walk_set(w, "pmax", pmax);
                eb_walk_set(w, "pmin", pmin);
        }
        eb_walk_set(w, "refused", 0);
        if (page->more)
                json_object_set_new(w->state, "pnext", json_string(next));
        snprintf(page->detail, sizeof(page->detail), "%zu events%s%s",
                 page->events_cnt, page->more ? ", more" : "",
                 eb_walk_has(w, "pstop") ? " (the overlap below is unchanged)"
                 : next && !page->more && page->events_cnt
                         ? " (reached date_updated__gte)"
                         : "");
out:
        json_decref(root);
}

static void close_handle_response(struct eb_walk *w,
                                  const struct eb_response *resp,
                                  struct eb_page *page)
{
        double limit, remaining, reset;
        eb_resp_kind_t kind;
        size_t n;
        int rc;

        rc = eb_walk_response_begin(w, page);
        /* Even a walk not begun reports the upstream's rate limit. */
        if (resp->ratelimit && eb_ratelimit_parse(resp->ratelimit, &limit,
                                                  &remaining, &reset) == 0) {
                page->ratelimit_limit = limit;
                page->ratelimit_remaining = remaining;
                page->ratelimit_reset_ms =
                        reset >= 0 ? eb_ratelimit_reset_ms(reset) : -1;
        }
        if (rc)
                return;
        json_object_del(w->state, "pmin");
        json_object_del(w->state, "pcnt");
        json_object_del(w->state, "pstop");
        if (resp->status == 200) {
                close_page_ok(w, resp, page);
        } else if (resp->status == 400 && st_cursor(w)) {
                /* Refused once: try the same cursor again. Refused twice:
                 * it has expired; go on from the checkpoint with a date
                 * filter instead of the cursor. */
                int again = eb_walk_get(w, "refused") < 1;
                eb_page_http_error(page, EB_RESP_RETRY, resp);
                n = strlen(page->detail);
                if (again) {
                        eb_walk_set(w, "refused", 1);
                        snprintf(page->detail + n, sizeof(page->detail) - n,
                                 " (cursor refused: trying it once more)");
                } else {
                        json_object_del(w->state, "cursor");
                        eb_walk_set(w, "refused", 0);
                        /* pages may repeat: keep no counts */
                        eb_walk_set(w, "nocount", 1);
                        snprintf(page->detail + n, sizeof(page->detail) - n,
                                 " (cursor refused twice: going on from the "
                                 "checkpoint with date_updated__lte)");
                }
        } else {
                kind = eb_resp_classify_error(resp->status);
                eb_page_http_error(page, kind, resp);
                if (kind == EB_RESP_RATE_LIMITED) {
                        if (page->ratelimit_reset_ms > 0)
                                page->retry_after_ms = page->ratelimit_reset_ms;
                        else
                                page->retry_after_ms =
                                        eb_resp_retry_after_ms(resp);
                }
        }
        /* The window's budget is spent on an OK page: tell the scheduler
         * to hold the next request until it resets. */
        if (page->kind == EB_RESP_OK && page->ratelimit_remaining >= 0 &&
            page->ratelimit_remaining < 1 && page->ratelimit_reset_ms > 0)
                page->retry_after_ms = page->ratelimit_reset_ms;
        eb_walk_response_end(w, page);
}

/* page_done: the acknowledged page's counts join the walk's. */
static void close_take_counts(struct eb_walk *w)
{
        json_t *cnt = json_object_get(w->state, "cnt"), *v;
        const char *key;

        json_object_foreach(json_object_get(w->state, "pcnt"), key, v)
        {
                if (cnt)
                        eb_seen_add(cnt, strtoll(key, NULL, 10),
                                    json_integer_value(v));
        }
        if (eb_walk_has(w, "pstop")) {
                eb_walk_set(w, "cnt_lo", eb_walk_get(w, "pstop"));
                eb_walk_set(w, "stopped", 1);
        }
        json_object_del(w->state, "pcnt");
        json_object_del(w->state, "pstop");
}

/* The counts a finished walk leaves for the next one: its own whole
 * seconds from cnt_lo, below them the last walk's where it stopped early,
 * from wm - overlap up to wm (the seconds the next walk's overlap can
 * skip are all below it). */
static void close_store_seen(struct eb_walk *w, int64_t wm)
{
        json_t *cnt = json_object_get(w->state, "cnt");
        json_t *prev = json_object_get(w->state, "prev"), *all, *v;
        int64_t top = wm / 1000, lo = eb_walk_get(w, "cnt_lo"), s;
        int64_t keep = top - (w->overlap_ms + 999) / 1000;
        const char *key;

        if (!cnt || eb_walk_get(w, "nocount"))
                return;
        all = json_deep_copy(cnt);
        if (eb_walk_get(w, "stopped") && prev) {
                int64_t plo = eb_walk_get(w, "prev_lo");

                json_object_foreach(prev, key, v)
                {
                        s = strtoll(key, NULL, 10);
                        if (s >= plo && s < lo)
                                json_object_set(all, key, v);
                }
                if (plo < lo)
                        lo = plo;
        }
        eb_seen_store(w->cp, all, lo > keep ? lo : keep, top, CLOSE_MAX_SEEN);
        json_object_set_new(w->cp, "seen_at",
                            json_integer(eb_walk_get(w, "started")));
        json_decref(all);
}

static void close_finalize(struct eb_walk *w)
{
        int64_t wm = eb_walk_get(w, "wm"), cand;

        if (eb_walk_has(w, "lt")) {
                /* A slice: every event before lt was seen. */
                wm = eb_walk_get(w, "lt");
                eb_walk_set(w, "wm", wm);
                json_decref(w->cp);
                w->cp = json_object();
                eb_jfield_set_rfc3339(w->cp, "wm", wm);
                json_object_set_new(w->cp, "cut", json_true());
                return;
        }
        if (eb_walk_has(w, "max")) {
                cand = eb_walk_get(w, "started") - w->lag_ms;
                if (eb_walk_get(w, "max") < cand)
                        cand = eb_walk_get(w, "max");
                if (cand > wm)
                        wm = cand;
        }
        eb_walk_set(w, "wm", wm);
        json_decref(w->cp);
        w->cp = json_object();
        eb_jfield_set_rfc3339(w->cp, "wm", wm);
        close_store_seen(w, wm);
}

static void close_page_done(struct eb_walk *w)
{
        const char *next;

        if (!eb_walk_page_ack(w))
                return;
        close_take_counts(w);
        if (eb_walk_has(w, "pmax") &&
            (!eb_walk_has(w, "max") ||
             eb_walk_get(w, "pmax") > eb_walk_get(w, "max")))
                eb_walk_set(w, "max", eb_walk_get(w, "pmax"));
        if (eb_walk_has(w, "pmin") &&
            (!eb_walk_has(w, "low") ||
             eb_walk_get(w, "pmin") < eb_walk_get(w, "low")))
                eb_walk_set(w, "low", eb_walk_get(w, "pmin"));
        next = json_string_value(json_object_get(w->state, "pnext"));
        if (!eb_walk_get(w, "more") || !next) {
                eb_walk_set(w, "done", 1);
                close_finalize(w);
                return;
        }
        json_object_set_new(w->state, "cursor", json_string(next));
        json_decref(w->cp);
        w->cp = json_object();
        eb_jfield_set_rfc3339(w->cp, "wm", eb_walk_get(w, "wm"));
        eb_jfield_set_rfc3339(w->cp, "gte", eb_walk_get(w, "gte"));
        json_object_set_new(w->cp, "cursor", json_string(next));
        eb_jfield_set_rfc3339(w->cp, "started", eb_walk_get(w, "started"));
        if (eb_walk_has(w, "max"))
                eb_jfield_set_rfc3339(w->cp, "max", eb_walk_get(w, "max"));
        if (eb_walk_has(w, "lt"))
                eb_jfield_set_rfc3339(w->cp, "lt", eb_walk_get(w, "lt"));
        if (eb_walk_has(w, "low"))
                eb_jfield_set_rfc3339(w->cp, "low", eb_walk_get(w, "low"));
}

static void close_walk_end(struct eb_walk *w)
{
        if (!w->state || !eb_walk_get(w, "done"))
                return;
        close_finalize(w);
}

/* ---- webhooks ---------------------------------------------------------- */

/* close-sig-hash = lowercase hex HMAC-SHA256 over close-sig-timestamp +
 * raw body; key = the hex-decoded signature_key (docs/providers.md 2.7). */
static eb_wh_auth_t close_verify(const struct eb_wh_key *key,
                                 const struct eb_wh_input *in,
                                 unsigned *ct_compares)
{
        const char *sig = eb_wh_header(in, "close-sig-hash");
        const char *ts = eb_wh_header(in, "close-sig-timestamp");
        unsigned char got[32], want[32];
        const void *parts[2];
        size_t lens[2];
        int64_t secs;
        int eq;

        if (!sig || !ts)
                return EB_WH_AUTH_SIG_MISSING;
        if (eb_wh_hex32(sig, strlen(sig), got))
                return EB_WH_AUTH_SIG_MALFORMED;
        if (eb_wh_parse_ts(ts, strlen(ts), &secs))
                return EB_WH_AUTH_TS_INVALID;
        parts[0] = ts;
        lens[0] = strlen(ts);
        parts[1] = in->body;
        lens[1] = in->body_len;
        if (eb_wh_hmac_parts(key, parts, lens, 2, want))
                return EB_WH_AUTH_ERROR;
        if (ct_compares)
                (*ct_compares)++;
        eq = eb_ct_equal(got, sizeof(got), want, sizeof(want));
        OPENSSL_cleanse(want, sizeof(want));
        if (!eq)
                return EB_WH_AUTH_SIG_MISMATCH;
        return eb_wh_ts_window(secs, in->now_ms, in->tolerance_ms);
}

static const struct eb_wh_scheme close_scheme = {"close", 0, eb_wh_key_hex,
                                                 close_verify};

/* Close webhooks are signed (close-sig-hash) and carry the event under
 * "event", in the shape the events API returns. */
static const struct eb_provider_webhook close_webhook = {
        .scheme = &close_scheme,
        .content_type = "application/json",
        .event_key = "event",
};

const struct eb_provider eb_provider_close = {
        .name = "close",
        .default_base_url = "https://api.close.com",
        .default_rps = 5.0,
        .default_burst = 5,
        .default_page_size = 50,
        .max_page_size = 50,
        .default_overlap_ms = 5 * 60 * 1000,
        .default_lag_ms = 5 * 60 * 1000,
        .check_config = close_check_config,
        .walk_begin = close_walk_begin,
        .next_request = close_next_request,
        .handle_response = close_handle_response,
        .page_done = close_page_done,
        .walk_end = close_walk_end,
        .normalize = close_normalize,
        .credential = "api_key",
        .newest_first = 1,
        .webhook = &close_webhook,
};
