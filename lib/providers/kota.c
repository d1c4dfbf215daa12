/*
 * providers/kota.c: Kota GET /events (docs/providers.md).
 *
 *   GET /events?order_direction=asc&created_after=<ISO>&page=P
 *              &page_size=L
 *   while has_next_page; the walk starts at created_after = max(wm -
 *   overlap, now - 30 days + 1 minute) and moves on by whole seconds (see
 *   kota_walk_step: Kota promises no order among events of one second).
 *
 * Ascending order lets the watermark move with every acknowledged page:
 * wm = max(wm, newest "created" on the page).
 *
 * Checkpoint: {"wm": "<RFC 3339 ms>"} between walks;
 * {"wm", "page": 1, "created_after": "<the value used>"} inside one: a
 * restart reads that second again whole (older checkpoints with a later
 * page resume from page 1 of their created_after: read again, not
 * skipped).
 */
#include "providers/kota.h"

#include "eb_provider.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_seen.h"
#include "eb_time.h"
#include "eb_util.h"

#define KOTA_RETENTION_MS (30LL * 24 * 3600 * 1000)
#define KOTA_MARGIN_MS    (60LL * 1000)
/* Kota's clock may run ahead of ours by this much: a created_after this
 * close to the edge of its 30 days may already be past it there. */
#define KOTA_SKEW_MS 5000LL
/* Fresh starts from the floor in a row without a page in between; then a
 * 400 is taken as Kota refusing the request itself. */
#define KOTA_MAX_REANCHORS 3
#define KOTA_MAX_PAGES     100000
#define KOTA_MAX_TYPES     500
#define KOTA_MAX_TYPE_LEN  200
#define KOTA_MAX_DATE      64
/* Passes over one second whose pages say it holds more events than were
 * seen, before the walk goes on without the rest. */
#define KOTA_PASSES 20
/* How late an event may become visible in the list after its "created":
 * Kota documents nothing; the strict simulator's 5 s is the assumption. */
#define KOTA_VISIBILITY_MS 5000LL
/* Most seconds with events a checkpoint's "seen" lists. */
#define KOTA_MAX_SEEN 2000

static int valid_type(const char *s)
{
        size_t n = strlen(s), i;

        if (!n || n > KOTA_MAX_TYPE_LEN || s[0] == '.' || s[n - 1] == '.')
                return 0;
        for (i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.'))
                        return 0;
        }
        return 1;
}

static int kota_check_config(const struct eb_source_cfg *src, const char *path,
                             char *errstr, size_t errstr_size)
{
        json_t *opts, *v, *types;
        const char *key, *ver;
        size_t i;
        int rc;

        rc = eb_source_options_check(src, path, &opts, errstr, errstr_size);
        if (rc || !opts)
                return rc;
        json_object_foreach(opts, key, v)
        {
                if (strcmp(key, "version") && strcmp(key, "types")) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.%.64s: unknown option (allowed: "
                                 "version, types)",
                                 path, key);
                        return -EINVAL;
                }
        }
        v = json_object_get(opts, "version");
        if (v) {
                ver = json_is_string(v) ? json_string_value(v) : NULL;
                if (!ver || (strcmp(ver, "v1") && strcmp(ver, "v2"))) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.version: unknown value \"%.32s\" "
                                 "(allowed: v1, v2)",
                                 path, ver ? ver : "(not a string)");
                        return -EINVAL;
                }
        }
        types = json_object_get(opts, "types");
        if (types) {
                if (!json_is_array(types) || !json_array_size(types) ||
                    json_array_size(types) > KOTA_MAX_TYPES) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.types: expected an array of 1..%d "
                                 "event types",
                                 path, KOTA_MAX_TYPES);
                        return -EINVAL;
                }
                json_array_foreach(types, i, v)
                {
                        const char *s = json_string_value(v);

                        if (!s || strlen(s) != json_string_length(v) ||
                            !valid_type(s)) {
                                snprintf(errstr, errstr_size,
                                         "%s.options.types[%zu]: expected an "
                                         "event type such as "
                                         "\"employee.created\" (lowercase "
                                         "letters, digits, '_' and '.')",
                                         path, i);
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

/* NULL: not sent, so Kota applies its own default (the version of the
 * platform's registered webhook endpoints). */
static const char *kota_version(const struct eb_source_cfg *src)
{
        return eb_jfield_str(eb_source_options(src), "version", 8);
}

/* ---- walk ------------------------------------------------------------ */

/*
 * w->state: {"wm", "ca" (created_after, ms), "page", "pending", "more",
 *            "done", "pmax" (newest created on the pending page),
 *            "bs", "pass", "ids", "p" (kota_walk_step)}
 */
/*
 * Overlap without downloading it again. A walk between two others starts
 * at the whole second O = the watermark's second minus the overlap. The
 * last walk left how many events each second held ("seen"), and when it
 * began ("seen_at"): seconds older than that minus the visibility time
 * (and Kota's clock skew), below Rs, could not change after it read them.
 * If they held K events, the walk asks first for the page that holds
 * positions K - 1 and K (a page size q that does not divide K puts them
 * on one page): if the event at K - 1 is older than Rs and the one at K
 * is not, those seconds still hold exactly K events (Kota deletes none;
 * late ones would push the boundary on), and the walk takes the page from
 * K on. Otherwise the overlap is read whole from page 1. With nothing new,
 * that is one request per walk.
 */
static void kota_plan_skip(struct eb_walk *w, const json_t *cp, int64_t wm,
                           int64_t floor_ms)
{
        int64_t top = wm / 1000, o = top - (w->overlap_ms + 999) / 1000;
        int64_t at = eb_jfield_i64(cp, "seen_at", -1), lo, rs, k = 0, q;
        const char *key;
        json_t *prev, *v;

        if (o * 1000 - 1 < floor_ms)
                return;
        eb_walk_set(w, "ca", o * 1000 - 1);
        eb_walk_set(w, "cnt_lo", o);
        eb_walk_set(w, "o", o);
        if (at < 0)
                return;
        prev = eb_seen_load(cp, top, KOTA_MAX_SEEN, &lo);
        rs = (at - KOTA_VISIBILITY_MS - KOTA_SKEW_MS) / 1000;
        if (rs > top + 1)
                rs = top + 1;
        if (!prev || lo > o || rs <= o) {
                json_decref(prev);
                return;
        }
        json_object_foreach(prev, key, v)
        {
                int64_t sec = strtoll(key, NULL, 10);

                if (sec >= o && sec < rs)
                        k += json_integer_value(v);
        }
        for (q = w->page_size; q > 1 && k % q == 0; q--)
                ;
        if (k < 1 || q < 2 || k / q >= KOTA_MAX_PAGES) {
                json_decref(prev);
                return;
        }
        json_object_set_new(w->state, "prev", prev);
        eb_walk_set(w, "rs", rs);
        eb_walk_set(w, "k", k);
        eb_walk_set(w, "q", q);
        eb_walk_set(w, "page", k / q + 1);
}

static int kota_walk_begin(struct eb_walk *w)
{
        char err[256];
        json_t *cp = w->cp, *jp, *jca;
        int64_t wm, ca, floor_ms;

        if (!w->src)
                return -EINVAL;
        if (kota_check_config(w->src, "options", err, sizeof(err)))
                return -EINVAL;
        floor_ms = w->now_ms - KOTA_RETENTION_MS + KOTA_MARGIN_MS;
        if (cp) {
                if (!json_is_object(cp) || eb_jfield_rfc3339(cp, "wm", &wm))
                        return -EINVAL;
                ca = wm - w->overlap_ms;
                jp = json_object_get(cp, "page");
                jca = json_object_get(cp, "created_after");
                if (jp || jca) {
                        int64_t rca;

                        if (!json_is_integer(jp) ||
                            json_integer_value(jp) < 1 ||
                            json_integer_value(jp) > KOTA_MAX_PAGES ||
                            eb_jfield_rfc3339(cp, "created_after", &rca))
                                return -EINVAL;
                        /* Resume the same page sequence, unless its start
                         * has aged out of the 30-day window: then pages
                         * shift as events expire, so start afresh. */
                        if (rca >= floor_ms)
                                ca = rca;
                }
        } else {
                wm = w->start_ms;
                ca = w->start_ms;
        }
        if (ca < floor_ms)
                ca = floor_ms;
        if (!cp && wm < ca)
                wm = ca;
        json_decref(w->state);
        w->state = json_object();
        eb_walk_set(w, "wm", wm);
        eb_walk_set(w, "ca", ca);
        eb_walk_set(w, "page", 1);
        eb_walk_set(w, "pass", 1);
        eb_walk_set(w, "at", w->now_ms);
        eb_walk_set(w, "cnt_lo", ca / 1000 + 1);
        json_object_set_new(w->state, "cnt", json_object());
        if (cp && !json_object_get(cp, "page"))
                kota_plan_skip(w, cp, wm, floor_ms);
        return 0;
}

static int kota_next_request(struct eb_walk *w, char **url, char **auth)
{
        struct eb_buf b;
        char iso[40];
        int rc;

        if (!w->state || !w->base_url || !w->src)
                return -EINVAL;
        eb_rfc3339_format(eb_walk_get(w, "ca"), 3, iso, sizeof(iso));
        rc = eb_url_start(&b, w->base_url, "/events");
        if (!rc)
                rc = eb_url_add_param(&b, "order_direction", "asc");
        if (!rc)
                rc = eb_url_add_param(&b, "created_after", iso);
        if (!rc && kota_version(w->src))
                rc = eb_url_add_param(&b, "version", kota_version(w->src));
        if (!rc)
                rc = eb_url_add_param_i64(&b, "page", eb_walk_get(w, "page"));
        if (!rc)
                rc = eb_url_add_param_i64(&b, "page_size",
                                          eb_walk_has(w, "q")
                                                  ? eb_walk_get(w, "q")
                                                  : w->page_size);
        if (rc) {
                eb_buf_fini(&b);
                return rc;
        }
        *url = eb_buf_take(&b, NULL);
        *auth = eb_auth_bearer(w->src->api_key);
        return 0;
}

/* ---- normalize ------------------------------------------------------- */

static struct eb_event *kota_normalize(const struct eb_source_cfg *src,
                                       json_t *native, char *errstr,
                                       size_t errstr_size)
{
        struct eb_event *evt;
        const char *id, *type, *dot, *bad = NULL;
        const json_t *data, *ver, *pid;
        char *account = NULL, *entity_id = NULL;
        int64_t t = 0;

        if (!json_is_object(native)) {
                snprintf(errstr, errstr_size, "event is not a JSON object");
                return NULL;
        }
        id = eb_jfield_str(native, "id", EB_PROVIDER_MAX_ID);
        type = eb_jfield_str(native, "type", EB_PROVIDER_MAX_ID);
        data = json_object_get(native, "data");
        pid = json_object_get(native, "platform_id");
        if (!id)
                bad = "missing or invalid \"id\"";
        else if (!type)
                bad = "missing or invalid \"type\"";
        else if (eb_jfield_rfc3339(native, "created", &t) &&
                 eb_jfield_rfc3339(native, "created_at", &t))
                bad = "missing or invalid \"created\" / \"created_at\"";
        else if (data && !json_is_object(data) && !json_is_null(data))
                bad = "\"data\" is not an object";
        else if (pid && !json_is_null(pid) &&
                 !(account = eb_jfield_id_text(pid)))
                bad = "invalid \"platform_id\"";
        if (bad) {
                snprintf(errstr, errstr_size, "event %.64s: %s",
                         id ? id : "(no id)", bad);
                return NULL;
        }
        entity_id = eb_jfield_id_text(json_object_get(data, "id"));
        evt = eb_event_new();
        evt->id = eb_xstrdup(id);
        evt->source_name = eb_xstrdup(src && src->name ? src->name : "");
        evt->provider = eb_xstrdup("kota");
        evt->account = account;
        /* "employee.created" -> employee / created;
         * "employer.health_insurance.quote.created" ->
         * employer.health_insurance.quote / created; a type without a
         * usable dot is kept whole as the entity, action "event". */
        dot = strrchr(type, '.');
        if (dot && dot != type && dot[1]) {
                evt->entity_type = eb_xstrndup(type, (size_t)(dot - type));
                evt->action = eb_xstrdup(dot + 1);
        } else {
                evt->entity_type = eb_xstrdup(type);
                evt->action = eb_xstrdup("event");
        }
        evt->entity_id = entity_id ? entity_id : eb_xstrdup("");
        evt->actor = NULL;
        evt->version = NULL;
        evt->time_ms = t;
        evt->fields = json_object();
        json_object_set_new(evt->fields, "type", json_string(type));
        ver = json_object_get(native, "api_version");
        if (!ver || json_is_null(ver))
                ver = json_object_get(native, "version");
        json_object_set_new(evt->fields, "api_version",
                            ver ? json_incref((json_t *)ver) : json_null());
        json_object_set_new(evt->fields, "data",
                            data ? json_incref((json_t *)data) : json_null());
        evt->native = json_incref(native);
        return evt;
}

/* ---- responses ------------------------------------------------------- */

static int type_allowed(const json_t *types, const char *type)
{
        size_t i;
        json_t *v;

        if (!json_is_array(types))
                return 1;
        json_array_foreach(types, i, v)
        {
                if (json_is_string(v) && !strcmp(json_string_value(v), type))
                        return 1;
        }
        return 0;
}

/* The second of a list item's "created" ("created_at"), -1 without one. */
static int64_t item_second(const json_t *item)
{
        int64_t t;

        if (!json_is_object(item) ||
            (eb_jfield_rfc3339(item, "created", &t) &&
             eb_jfield_rfc3339(item, "created_at", &t)))
                return -1;
        return t / 1000;
}

/* What tells list items apart: the id, or for an item without one (a
 * poison event) its whole text. Caller frees. */
static char *item_key(const json_t *item)
{
        const char *id = eb_jfield_str(item, "id", EB_PROVIDER_MAX_ID);
        char *dump, *key;

        if (id)
                return eb_xstrdup(id);
        dump = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
        key = eb_xasprintf("#%s", dump ? dump : "");
        free(dump);
        return key;
}

static void ids_add(json_t *ids, const json_t *item)
{
        char *key = item_key(item);

        json_object_set_new(ids, key, json_true());
        free(key);
}

static int ids_have(const json_t *ids, const json_t *item)
{
        char *key = item_key(item);
        int have = json_object_get(ids, key) != NULL;

        free(key);
        return have;
}

/* The seconds of the items taken, into "cnt" of @p p (the counts the
 * next walk compares its overlap with). */
static void count_kept(json_t *p, const json_t *items, const char *keep)
{
        json_t *cnt = json_object();
        size_t i;
        int64_t s;

        for (i = 0; i < json_array_size(items); i++) {
                s = item_second(json_array_get(items, i));
                if (keep[i] && s >= 0)
                        eb_seen_add(cnt, s, 1);
        }
        json_object_set_new(p, "cnt", cnt);
}

/*
 * Pages follow whole seconds, not page numbers alone. Kota promises no
 * order among events of one "created" second (its examples show whole
 * seconds), and may give them in another order on every request, so with
 * page numbers a second split by a page boundary could be partly on
 * neither page.
 *
 * "bs" is the second the walk is on (none at the start): the request is
 * created_after = bs - 1 ms, page 1, 2... so bs is read again whole, and
 * "ids" are its events already taken, dropped when they come again. A page
 * holding a second newer than bs ends the pass over bs, and its position
 * says how many events bs holds: (page - 1) * page_size + the items before
 * the first newer one. When every one of them was taken, the page's newer
 * events are taken too and the walk moves to its newest second (read again
 * whole, from page 1: one request per page, as with page numbers).
 * Otherwise the newer events are left for later and bs is read again from
 * page 1, at most KOTA_PASSES times. Sets keep[i] for the items to take
 * and leaves the position to move to in w->state "p" for page_done.
 * @returns whether there is more to read.
 */
static int kota_walk_step(struct eb_walk *w, const json_t *items, int more,
                          char *keep, int64_t *missed)
{
        int64_t pg = eb_walk_get(w, "page"), pass = eb_walk_get(w, "pass");
        int64_t bs = eb_walk_has(w, "bs") ? eb_walk_get(w, "bs") : -1;
        int64_t s, newest = -1, total;
        json_t *ids = json_object_get(w->state, "ids"), *p = json_object();
        json_t *nids = ids ? json_deep_copy(ids) : json_object();
        size_t n = json_array_size(items), i, fnew = n;

        for (i = 0; i < n; i++) {
                s = item_second(json_array_get(items, i));
                if (s > bs && fnew == n)
                        fnew = i;
                if (s > newest)
                        newest = s;
        }
        for (i = 0; i < fnew; i++) {
                const json_t *item = json_array_get(items, i);

                keep[i] = !ids_have(nids, item);
                if (keep[i])
                        ids_add(nids, item);
        }
        if (fnew == n && more) { /* the pass over bs goes on */
                json_object_set_new(p, "page", json_integer(pg + 1));
                json_object_set_new(p, "ids", nids);
                count_kept(p, items, keep);
                json_object_set_new(w->state, "p", p);
                return 1;
        }
        total = (pg - 1) * w->page_size + (int64_t)fnew;
        if (bs >= 0 && (int64_t)json_object_size(nids) < total &&
            pass < KOTA_PASSES) {
                /* Some events of bs were on neither page: again. */
                for (i = fnew; i < n; i++)
                        keep[i] = 0;
                json_object_set_new(p, "page", json_integer(1));
                json_object_set_new(p, "pass", json_integer(pass + 1));
                json_object_set_new(p, "ids", nids);
                count_kept(p, items, keep);
                json_object_set_new(w->state, "p", p);
                return 1;
        }
        if (bs >= 0 && (int64_t)json_object_size(nids) < total)
                *missed = total - (int64_t)json_object_size(nids);
        json_decref(nids);
        nids = json_object();
        for (i = fnew; i < n; i++) {
                const json_t *item = json_array_get(items, i);

                keep[i] = 1;
                if (item_second(item) == newest)
                        ids_add(nids, item);
        }
        if (fnew < n && more) {
                json_object_set_new(p, "bs", json_integer(newest));
                json_object_set_new(p, "ca", json_integer(newest * 1000 - 1));
                json_object_set_new(p, "page", json_integer(1));
                json_object_set_new(p, "pass", json_integer(1));
        } else {
                more = 0;
        }
        json_object_set_new(p, "ids", nids);
        count_kept(p, items, keep);
        json_object_set_new(w->state, "p", p);
        return more;
}

/* The first request of a walk that skips its overlap (kota_plan_skip):
 * @returns what kota_walk_step returns for the items from position K on,
 * or, when the page says the overlap changed, 1 with page 1 next. */
static int kota_skip_step(struct eb_walk *w, const json_t *items, int more,
                          char *keep, int64_t *missed)
{
        int64_t k = eb_walk_get(w, "k"), q = eb_walk_get(w, "q");
        int64_t rs = eb_walk_get(w, "rs"), e64, sb, sa;
        size_t n = json_array_size(items), e, i;
        json_t *rest, *p;
        int r;

        memset(keep, 0, n);
        e64 = k - (eb_walk_get(w, "page") - 1) * q;
        e = e64 >= 1 && e64 <= (int64_t)n ? (size_t)e64 : 0;
        sb = e ? item_second(json_array_get(items, e - 1)) : -1;
        sa = e && e < n ? item_second(json_array_get(items, e)) : -1;
        if (e && sb >= 0 && sb < rs && (e < n ? sa >= rs : !more)) {
                rest = json_array();
                for (i = e; i < n; i++)
                        json_array_append(rest, json_array_get(items, i));
                r = kota_walk_step(w, rest, more, keep + e, missed);
                json_decref(rest);
                p = json_object_get(w->state, "p");
                json_object_set_new(p, "skipped", json_true());
                json_object_set_new(p, "cnt_lo", json_integer(rs));
                json_object_set_new(p, "unq", json_true());
                return r;
        }
        p = json_object();
        json_object_set_new(p, "page", json_integer(1));
        json_object_set_new(p, "unq", json_true());
        json_object_set_new(w->state, "p", p);
        return 1;
}

static void kota_page_ok(struct eb_walk *w, const struct eb_response *resp,
                         struct eb_page *page)
{
        json_t *root, *items, *hnp, *item, *types;
        int64_t req_page = eb_walk_get(w, "page"), pmax = 0, missed = 0;
        char *keep = NULL;
        size_t i, nvalid = 0, len;
        int more, skip;

        json_object_del(w->state, "p");
        root = eb_resp_json_object(resp, page);
        if (!root)
                return;
        items = json_object_get(root, "items");
        hnp = json_object_get(root, "has_next_page");
        types = json_object_get(eb_source_options(w->src), "types");
        if (!json_is_array(items)) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "page %" PRId64 ": no \"items\" array", req_page);
                goto out;
        }
        if (!json_is_boolean(hnp)) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "page %" PRId64 ": no boolean \"has_next_page\"",
                             req_page);
                goto out;
        }
        if (eb_page_check_number(page, root, "page", req_page))
                goto out;
        if (json_array_size(items) > EB_PROVIDER_MAX_PAGE_EVENTS) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "page %" PRId64 ": %zu events, more than %d",
                             req_page, json_array_size(items),
                             EB_PROVIDER_MAX_PAGE_EVENTS);
                goto out;
        }
        more = json_is_true(hnp) && json_array_size(items);
        if (more && req_page >= KOTA_MAX_PAGES) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "more than %d pages since created_after",
                             KOTA_MAX_PAGES);
                goto out;
        }
        keep = eb_xmalloc(json_array_size(items) + 1);
        skip = eb_walk_has(w, "q");
        more = skip ? kota_skip_step(w, items, more, keep, &missed)
                    : kota_walk_step(w, items, more, keep, &missed);
        json_array_foreach(items, i, item)
        {
                struct eb_event *evt;
                const char *type;

                if (!keep[i])
                        continue; /* taken before in this walk */
                evt = eb_walk_normalize(w, item, req_page, "items", i);
                if (evt->deadletter) {
                        if (eb_page_add_event(page, evt)) {
                                eb_page_fail(page, EB_RESP_BAD_BODY,
                                             "page %" PRId64
                                             ": too many events",
                                             req_page);
                                goto out;
                        }
                        continue;
                }
                if (!nvalid++ || evt->time_ms > pmax)
                        pmax = evt->time_ms;
                type = json_string_value(json_object_get(evt->fields, "type"));
                if (!type_allowed(types, type)) {
                        page->skipped_cnt++;
                        eb_event_free(evt);
                        continue;
                }
                if (eb_page_add_event(page, evt)) {
                        eb_page_fail(page, EB_RESP_BAD_BODY,
                                     "page %" PRId64 ": too many events",
                                     req_page);
                        goto out;
                }
        }
        page->more = more;
        page->full = json_array_size(items) >= (size_t)w->page_size;
        if (nvalid)
                eb_walk_set(w, "pmax", pmax);
        snprintf(page->detail, sizeof(page->detail),
                 "page %" PRId64 ": %zu events, %zu skipped%s", req_page,
                 page->events_cnt, page->skipped_cnt,
                 page->more ? ", more" : "");
        len = strlen(page->detail);
        if (eb_walk_get(w, "pass") > 1)
                snprintf(page->detail + len, sizeof(page->detail) - len,
                         ", a second read again (pass %" PRId64 ")",
                         eb_walk_get(w, "pass"));
        len = strlen(page->detail);
        if (skip)
                snprintf(page->detail + len, sizeof(page->detail) - len,
                         json_object_get(json_object_get(w->state, "p"),
                                         "skipped")
                                 ? ", the overlap below is unchanged"
                                 : ", the overlap changed: read again whole");
        len = strlen(page->detail);
        if (missed)
                snprintf(page->detail + len, sizeof(page->detail) - len,
                         " (its pages say one second holds %" PRId64
                         " more events than %d passes found)",
                         missed, KOTA_PASSES);
out:
        free(keep);
        json_decref(root);
}

/*
 * A walk held past its margin (a publish that kept failing, long
 * backoffs) asks for a created_after that has meanwhile left Kota's 30
 * days, and Kota refuses it with a 400. That is not Kota refusing the
 * request: start the walk again at the new floor (the events in between
 * have expired there) instead of stopping the source. @returns 1 when it
 * did.
 */
static int kota_reanchor(struct eb_walk *w, int64_t now_ms)
{
        int64_t ca = eb_walk_get(w, "ca");

        if (ca >= now_ms - KOTA_RETENTION_MS + KOTA_SKEW_MS ||
            eb_walk_get(w, "reanchors") >= KOTA_MAX_REANCHORS)
                return 0;
        eb_walk_set(w, "stale_ca", ca);
        eb_walk_set(w, "ca", now_ms - KOTA_RETENTION_MS + KOTA_MARGIN_MS);
        eb_walk_set(w, "page", 1);
        eb_walk_set(w, "pass", 1);
        json_object_del(w->state, "bs");
        json_object_del(w->state, "ids");
        json_object_del(w->state, "q");
        json_object_del(w->state, "k");
        eb_walk_set(w, "nocount", 1);
        eb_walk_set(w, "reanchors", eb_walk_get(w, "reanchors") + 1);
        return 1;
}

static void kota_stale_detail(struct eb_walk *w, struct eb_page *page)
{
        char was[40], now[40];

        eb_rfc3339_format(eb_walk_get(w, "stale_ca"), 3, was, sizeof(was));
        eb_rfc3339_format(eb_walk_get(w, "ca"), 3, now, sizeof(now));
        snprintf(page->detail, sizeof(page->detail),
                 "created_after %s left Kota's 30 days while the walk "
                 "waited; starting again from %s",
                 was, now);
}

static void kota_handle_response(struct eb_walk *w,
                                 const struct eb_response *resp,
                                 struct eb_page *page)
{
        eb_resp_kind_t kind;

        if (eb_walk_response_begin(w, page))
                return;
        if (resp->status == 200) {
                kota_page_ok(w, resp, page);
        } else {
                kind = eb_resp_classify_error(resp->status);
                /* Kota: "You should not retry the same request, except for
                 * the 429 status code": retrying a 400/404/422 forever
                 * only hides the problem. */
                if (resp->status == 400 || resp->status == 404 ||
                    resp->status == 422)
                        kind = EB_RESP_REFUSED;
                if ((resp->status == 400 || resp->status == 422) &&
                    kota_reanchor(w, resp->now_ms)) {
                        eb_page_http_error(page, EB_RESP_RETRY, resp);
                        kota_stale_detail(w, page);
                        eb_walk_response_end(w, page);
                        return;
                }
                eb_page_http_error(page, kind, resp);
                if (kind == EB_RESP_RATE_LIMITED)
                        page->retry_after_ms = eb_resp_retry_after_ms(resp);
        }
        eb_walk_response_end(w, page);
}

/* The counts a finished walk leaves for the next one: its own whole
 * seconds from cnt_lo, below them the last walk's where this one skipped
 * them, from the watermark's second minus the overlap up. */
static void kota_store_seen(struct eb_walk *w)
{
        json_t *cnt = json_object_get(w->state, "cnt");
        json_t *prev = json_object_get(w->state, "prev"), *all, *v;
        int64_t top = eb_walk_get(w, "wm") / 1000, s;
        int64_t lo = eb_walk_get(w, "cnt_lo"), o = eb_walk_get(w, "o");
        int64_t keep = top - (w->overlap_ms + 999) / 1000;
        const char *key;

        if (!cnt || eb_walk_get(w, "nocount"))
                return;
        all = json_deep_copy(cnt);
        if (eb_walk_get(w, "skipped") && prev) {
                json_object_foreach(prev, key, v)
                {
                        s = strtoll(key, NULL, 10);
                        if (s >= o && s < lo)
                                json_object_set(all, key, v);
                }
                lo = o;
        }
        eb_seen_store(w->cp, all, lo > keep ? lo : keep, top, KOTA_MAX_SEEN);
        json_object_set_new(w->cp, "seen_at",
                            json_integer(eb_walk_get(w, "at")));
        json_decref(all);
}

static void kota_write_cp(struct eb_walk *w)
{
        json_decref(w->cp);
        w->cp = json_object();
        eb_jfield_set_rfc3339(w->cp, "wm", eb_walk_get(w, "wm"));
        if (eb_walk_get(w, "done")) {
                kota_store_seen(w);
                return;
        }
        json_object_set_new(w->cp, "page", json_integer(1));
        eb_jfield_set_rfc3339(w->cp, "created_after", eb_walk_get(w, "ca"));
}

/* page_done: move to the position the acknowledged page left in "p". */
static void kota_walk_advance(struct eb_walk *w)
{
        json_t *p = json_object_get(w->state, "p"), *v;
        static const char *const keys[] = {"bs", "ca", "page", "pass",
                                           "cnt_lo"};
        json_t *cnt = json_object_get(w->state, "cnt");
        const char *key;
        size_t i;

        if (!p)
                return;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if ((v = json_object_get(p, keys[i])))
                        eb_walk_set(w, keys[i], json_integer_value(v));
        }
        if ((v = json_object_get(p, "ids")))
                json_object_set(w->state, "ids", v);
        json_object_foreach(json_object_get(p, "cnt"), key, v)
        {
                if (cnt)
                        eb_seen_add(cnt, strtoll(key, NULL, 10),
                                    json_integer_value(v));
        }
        if (json_object_get(p, "skipped"))
                eb_walk_set(w, "skipped", 1);
        if (json_object_get(p, "unq")) {
                json_object_del(w->state, "q");
                json_object_del(w->state, "k");
        }
        json_object_del(w->state, "p");
}

static void kota_page_done(struct eb_walk *w)
{
        if (!eb_walk_page_ack(w))
                return;
        eb_walk_set(w, "reanchors", 0);
        if (eb_walk_has(w, "pmax") &&
            eb_walk_get(w, "pmax") > eb_walk_get(w, "wm"))
                eb_walk_set(w, "wm", eb_walk_get(w, "pmax"));
        kota_walk_advance(w);
        if (!eb_walk_get(w, "more"))
                eb_walk_set(w, "done", 1);
        kota_write_cp(w);
}

static void kota_walk_end(struct eb_walk *w)
{
        if (!w->state || !eb_walk_get(w, "done"))
                return;
        kota_write_cp(w);
}

/* ---- webhooks ---------------------------------------------------------- */

/* x-kota-webhook-signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">;
 * key = the secret's bytes; parts in any order, several v1 (key rotation)
 * allowed, others ignored (docs/providers.md 3.6: the real format is
 * unconfirmed). */
eb_wh_auth_t eb_kota_sig_parse(const char *header, struct eb_kota_sig *out)
{
        const char *p = header;
        int have_t = 0;

        memset(out, 0, sizeof(*out));
        for (;;) {
                const char *end = strchr(p, ','), *b, *e, *eq;

                if (!end)
                        end = p + strlen(p);
                b = p;
                e = end;
                while (b < e && (*b == ' ' || *b == '\t'))
                        b++;
                while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                eq = memchr(b, '=', (size_t)(e - b));
                if (b == e || !eq || eq == b)
                        return EB_WH_AUTH_SIG_MALFORMED;
                if (eq - b == 1 && *b == 't') {
                        if (have_t)
                                return EB_WH_AUTH_SIG_MALFORMED;
                        have_t = 1;
                        if (eb_wh_parse_ts(eq + 1, (size_t)(e - eq - 1),
                                           &out->t))
                                return EB_WH_AUTH_TS_INVALID;
                        memcpy(out->t_text, eq + 1, (size_t)(e - eq - 1));
                        out->t_text[e - eq - 1] = '\0';
                } else if (eq - b == 2 && b[0] == 'v' && b[1] == '1') {
                        if (out->nsig >= EB_WH_MAX_SIGS)
                                return EB_WH_AUTH_SIG_MALFORMED;
                        if (eb_wh_hex32(eq + 1, (size_t)(e - eq - 1),
                                        out->v1[out->nsig]))
                                return EB_WH_AUTH_SIG_MALFORMED;
                        out->nsig++;
                }
                /* other keys (v0, future schemes) are ignored */
                if (!*end)
                        break;
                p = end + 1;
        }
        if (!have_t || out->nsig == 0)
                return EB_WH_AUTH_SIG_MALFORMED;
        return EB_WH_AUTH_OK;
}

static eb_wh_auth_t kota_verify(const struct eb_wh_key *key,
                                const struct eb_wh_input *in,
                                unsigned *ct_compares)
{
        const char *h = eb_wh_header(in, "x-kota-webhook-signature");
        struct eb_kota_sig ks;
        unsigned char want[32];
        const void *parts[3];
        size_t lens[3];
        eb_wh_auth_t r;
        int i, match = 0;

        if (!h)
                return EB_WH_AUTH_SIG_MISSING;
        r = eb_kota_sig_parse(h, &ks);
        if (r != EB_WH_AUTH_OK)
                return r;
        /* The signed string uses t exactly as sent. */
        parts[0] = ks.t_text;
        lens[0] = strlen(ks.t_text);
        parts[1] = ".";
        lens[1] = 1;
        parts[2] = in->body;
        lens[2] = in->body_len;
        if (eb_wh_hmac_parts(key, parts, lens, 3, want))
                return EB_WH_AUTH_ERROR;
        /* Compare every candidate (no early exit). */
        for (i = 0; i < ks.nsig; i++) {
                if (ct_compares)
                        (*ct_compares)++;
                match |= eb_ct_equal(ks.v1[i], 32, want, sizeof(want));
        }
        OPENSSL_cleanse(want, sizeof(want));
        if (!match)
                return EB_WH_AUTH_SIG_MISMATCH;
        return eb_wh_ts_window(ks.t, in->now_ms, in->tolerance_ms);
}

static const struct eb_wh_scheme kota_scheme = {"kota-v1", 0, eb_wh_key_raw,
                                                kota_verify};

/* Kota webhooks are signed (x-kota-webhook-signature) and are the event
 * itself, in the shape the events API returns. */
static const struct eb_provider_webhook kota_webhook = {
        .scheme = &kota_scheme,
        .content_type = "application/json",
};

const struct eb_provider eb_provider_kota = {
        .name = "kota",
        .default_base_url = "https://api.kota.io",
        .default_rps = 5.0,
        .default_burst = 2,
        .default_page_size = 100,
        .max_page_size = 100,
        .default_overlap_ms = 2 * 60 * 1000,
        .default_lag_ms = 0,
        .check_config = kota_check_config,
        .walk_begin = kota_walk_begin,
        .next_request = kota_next_request,
        .handle_response = kota_handle_response,
        .page_done = kota_page_done,
        .walk_end = kota_walk_end,
        .normalize = kota_normalize,
        .credential = "api_key",
        .newest_first = 0,
        .webhook = &kota_webhook,
};
