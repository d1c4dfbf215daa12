/*
 * providers/kommo.c: Kommo (amoCRM) GET /api/v4/events.
 *
 * Closed created_at windows walked newest first (docs/providers.md):
 *
 *   from = wm - overlap (first start: poll.start), to = now - lag
 *   GET /api/v4/events?with=..&page=1&limit=L
 *       &filter[created_at][from]=F&filter[created_at][to]=U&filter[..]..
 *
 * Kommo documents no order among events of one second, and a real one
 * may differ from request to request (the strict simulator's tie
 * shuffle), so page numbers are not trusted across a second: a second
 * split by a page boundary could be on neither page. Instead the walk
 * moves its upper bound U down by whole seconds: after a full page whose
 * oldest second is S, the next request is [F, S] page 1 again (S is read
 * whole once more; the ids of S already taken are dropped). A second
 * holding a whole page or more is read alone, [S, S] by page numbers, in
 * passes until as many distinct ids were seen as the pages said it holds
 * (KOMMO_DENSE_PASSES at most). The walk ends at a page without
 * _links.next, or a 204 (no events: not an error).
 *
 * Overlap without re-downloading: a finished walk keeps in its checkpoint
 * how many events each second of its window held ("seen", down to
 * to - overlap). The next walk re-reads the overlap only as far as it has
 * to: once a page has covered the seconds in which an event could have
 * become visible since the last walk (KOMMO_VISIBILITY_MS beyond the lag)
 * and every second it covers below the watermark holds exactly as many
 * events as before, the walk stops there.
 *
 * Checkpoint: {"wm": T, "seen": [[T - second, count], ...],
 * "seen_span": N} between walks (T unix seconds: the last closed window's
 * "to"; seen covers [T - N, T], seconds not listed held none), {"wm": W,
 * "from": F, "to": T, "upper": U, "page": 1} inside one, so a restart
 * resumes the same closed window below U. Older checkpoints with a page
 * number resume at page 1 of their window (re-read, not skipped).
 *
 * Slices (w->slice_ms): a backlog is walked as closed windows of at most
 * that length, oldest first: to = wm + slice while that is before
 * now - lag. Such a window carries "cut": true in its checkpoints, and the
 * walk after it starts at its "to" (inclusive: one second is read twice,
 * the dedupe drops it) instead of wm - overlap.
 */
#include "eb_provider.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_ratelimit.h"
#include "eb_seen.h"
#include "eb_util.h"
#include "eb_webhook_sig.h"

#define KOMMO_MAX_PAGES      10000
#define KOMMO_MAX_TS         100000000000LL /* unix seconds; year ~5000 */
#define KOMMO_MAX_TYPES      100
#define KOMMO_MAX_ENTITIES   20
#define KOMMO_MAX_CREATED_BY 10
#define KOMMO_MAX_NAME       4096
/* How long after its created_at an event may take to show in the list.
 * Kommo documents nothing; this is the harsher reading the strict
 * simulator uses. A walk always re-reads this much (beyond the lag)
 * before the watermark. */
#define KOMMO_VISIBILITY_MS 5000LL
/* Passes over one second that holds a page of events or more. */
#define KOMMO_DENSE_PASSES 20
/* Most seconds with events a checkpoint's "seen" lists. */
#define KOMMO_MAX_SEEN 2000

static const char *const kommo_option_keys[] = {
        "with", "filter_type", "filter_entity", "filter_created_by", NULL};
static const char *const kommo_with_values[] = {
        "contact_name",         "lead_name", "company_name", "catalog_name",
        "catalog_element_name", NULL};
static const char *const kommo_entities[] = {"lead",     "contact", "company",
                                             "customer", "task",    NULL};
/* "_embedded.entity" keys a with= enrichment may add (not verified on a
 * live account: name is the documented one, the rest are tolerated). */
static const char *const kommo_name_keys[] = {"name",
                                              "lead_name",
                                              "contact_name",
                                              "company_name",
                                              "catalog_element_name",
                                              "customer_name",
                                              NULL};

static int in_list(const char *const *list, const char *s)
{
        size_t i;

        for (i = 0; list[i]; i++) {
                if (!strcmp(list[i], s))
                        return 1;
        }
        return 0;
}

static int all_digits(const char *s)
{
        if (!*s)
                return 0;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return 0;
        }
        return 1;
}

/* lead, contact, company, customer, task or catalog_<id>. */
static int valid_entity(const char *s)
{
        return in_list(kommo_entities, s) ||
               (!strncmp(s, "catalog_", 8) && all_digits(s + 8) &&
                strlen(s) < 40);
}

/* An event type key: [a-z0-9_], 1..100. */
static int valid_type(const char *s)
{
        size_t n = 0;

        for (; *s; s++, n++) {
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
                      *s == '_'))
                        return 0;
        }
        return n >= 1 && n <= 100;
}

/* custom_field_<id>_value_changed: Kommo refuses any other type next to
 * it in filter[type]. */
static int is_custom_field_type(const char *s)
{
        const char *end;
        size_t n = strlen(s);

        if (strncmp(s, "custom_field_", 13) || n < 13 + 1 + 14)
                return 0;
        end = s + n - 14;
        if (strcmp(end, "_value_changed"))
                return 0;
        for (s += 13; s < end; s++) {
                if (*s < '0' || *s > '9')
                        return 0;
        }
        return 1;
}

static int check_strings(const json_t *arr, const char *path, const char *key,
                         size_t max, int (*valid)(const char *),
                         const char *allowed, char *errstr, size_t errstr_size)
{
        size_t i, j;
        json_t *v;

        if (!json_is_array(arr)) {
                snprintf(errstr, errstr_size,
                         "%s.options.%s: expected an array of strings", path,
                         key);
                return -EINVAL;
        }
        if (json_array_size(arr) > max) {
                snprintf(errstr, errstr_size,
                         "%s.options.%s: at most %zu values, got %zu", path,
                         key, max, json_array_size(arr));
                return -EINVAL;
        }
        json_array_foreach(arr, i, v)
        {
                const char *s = json_is_string(v) ? json_string_value(v) : NULL;

                if (!s || strlen(s) != json_string_length(v)) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.%s[%zu]: expected a string", path,
                                 key, i);
                        return -EINVAL;
                }
                if (!valid(s)) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.%s[%zu]: unknown value \"%.64s\" "
                                 "(allowed: %s)",
                                 path, key, i, s, allowed);
                        return -EINVAL;
                }
                for (j = 0; j < i; j++) {
                        if (!strcmp(json_string_value(json_array_get(arr, j)),
                                    s)) {
                                snprintf(errstr, errstr_size,
                                         "%s.options.%s[%zu]: duplicate value "
                                         "\"%.64s\"",
                                         path, key, i, s);
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

static int valid_with(const char *s)
{
        return in_list(kommo_with_values, s);
}

static int kommo_check_config(const struct eb_source_cfg *src, const char *path,
                              char *errstr, size_t errstr_size)
{
        json_t *opts, *v, *types, *ids;
        const char *key;
        size_t i;
        int rc;

        rc = eb_source_options_check(src, path, &opts, errstr, errstr_size);
        if (rc || !opts)
                return rc;
        json_object_foreach(opts, key, v)
        {
                if (!in_list(kommo_option_keys, key)) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.%.64s: unknown option (allowed: "
                                 "with, filter_type, filter_entity, "
                                 "filter_created_by)",
                                 path, key);
                        return -EINVAL;
                }
        }
        if ((v = json_object_get(opts, "with")) &&
            (rc = check_strings(v, path, "with", 5, valid_with,
                                "contact_name, lead_name, company_name, "
                                "catalog_name, catalog_element_name",
                                errstr, errstr_size)))
                return rc;
        if ((types = json_object_get(opts, "filter_type"))) {
                rc = check_strings(types, path, "filter_type", KOMMO_MAX_TYPES,
                                   valid_type,
                                   "event type keys such as lead_added: "
                                   "lowercase letters, digits and '_'",
                                   errstr, errstr_size);
                if (rc)
                        return rc;
                json_array_foreach(types, i, v)
                {
                        if (is_custom_field_type(json_string_value(v)) &&
                            json_array_size(types) > 1) {
                                snprintf(errstr, errstr_size,
                                         "%s.options.filter_type[%zu]: "
                                         "\"%.64s\" must be the only type "
                                         "(Kommo accepts no other type next "
                                         "to custom_field_<id>_value_changed)",
                                         path, i, json_string_value(v));
                                return -EINVAL;
                        }
                }
        }
        if ((v = json_object_get(opts, "filter_entity")) &&
            (rc = check_strings(v, path, "filter_entity", KOMMO_MAX_ENTITIES,
                                valid_entity,
                                "lead, contact, company, customer, task, "
                                "catalog_<id>",
                                errstr, errstr_size)))
                return rc;
        if ((ids = json_object_get(opts, "filter_created_by"))) {
                if (!json_is_array(ids) ||
                    json_array_size(ids) > KOMMO_MAX_CREATED_BY) {
                        snprintf(errstr, errstr_size,
                                 "%s.options.filter_created_by: expected an "
                                 "array of up to %d user ids",
                                 path, KOMMO_MAX_CREATED_BY);
                        return -EINVAL;
                }
                json_array_foreach(ids, i, v)
                {
                        if (!json_is_integer(v) || json_integer_value(v) < 0) {
                                snprintf(errstr, errstr_size,
                                         "%s.options.filter_created_by[%zu]: "
                                         "expected a user id (an integer >= "
                                         "0; 0 is the system)",
                                         path, i);
                                return -EINVAL;
                        }
                }
        }
        return 0;
}

/* ---- walk ------------------------------------------------------------ */

/*
 * w->state: {"wm": W, "from": F, "to": T, "upper": U, "page": P,
 *            "pending": 0|1, "more": 0|1, "done": 0|1, "cut": 0|1,
 *            "cnt": {second: count}, "cnt_lo": L (seconds counted whole:
 *            [L, T]), "nocount": 1 (this walk keeps no "seen"),
 *            "prev": {second: count}, "prev_lo": P (the last walk's
 *            counts, [P, W]), "edge": {id: 1} (ids of second U taken),
 *            "dense": S, "dpass": N, "dids": {id: 1} (a second read
 *            alone), "p": {...} (the pending page's next position)}
 */

static int64_t floor_div(int64_t a, int64_t b)
{
        return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The previous walk's per-second counts ("seen", "seen_span" of @p cp,
 * whose watermark is @p wm) into w->state "prev" / "prev_lo". An
 * unreadable record is ignored: it only saves requests. */
static void kommo_load_seen(struct eb_walk *w, const json_t *cp, int64_t wm)
{
        int64_t lo;
        json_t *prev = eb_seen_load(cp, wm, KOMMO_MAX_SEEN, &lo);

        if (!prev)
                return;
        json_object_set_new(w->state, "prev", prev);
        eb_walk_set(w, "prev_lo", lo);
}

static int kommo_walk_begin(struct eb_walk *w)
{
        char err[256];
        json_t *cp = w->cp;
        int64_t wm, from = 0, to = 0, upper = -1, overlap_s, slice_s;
        int resume = 0, cut = 0;

        if (!w->src)
                return -EINVAL;
        if (kommo_check_config(w->src, "options", err, sizeof(err)))
                return -EINVAL;
        overlap_s = (w->overlap_ms + 999) / 1000;
        if (cp) {
                json_t *jf = json_object_get(cp, "from"),
                       *jt = json_object_get(cp, "to"),
                       *jp = json_object_get(cp, "page"),
                       *ju = json_object_get(cp, "upper");

                if (!json_is_object(cp) ||
                    !json_is_integer(json_object_get(cp, "wm")))
                        return -EINVAL;
                wm = eb_jfield_i64(cp, "wm", 0);
                if (wm < 0 || wm > KOMMO_MAX_TS)
                        return -EINVAL;
                cut = json_is_true(json_object_get(cp, "cut"));
                if (jf || jt || jp || ju) {
                        int64_t pg;

                        if (!json_is_integer(jf) || !json_is_integer(jt) ||
                            !json_is_integer(jp) ||
                            (ju && !json_is_integer(ju)))
                                return -EINVAL;
                        from = json_integer_value(jf);
                        to = json_integer_value(jt);
                        pg = json_integer_value(jp);
                        upper = ju ? json_integer_value(ju) : to;
                        if (from < 0 || to < from || to > KOMMO_MAX_TS ||
                            pg < 1 || pg > KOMMO_MAX_PAGES || upper < 0 ||
                            upper > to)
                                return -EINVAL;
                        /* A page number of an older checkpoint is not
                         * trusted (the order within a second may have
                         * changed): its window is resumed below its
                         * upper bound from page 1, re-read, not skipped. */
                        resume = 1;
                }
        } else {
                wm = floor_div(w->start_ms, 1000);
                if (wm < 0)
                        wm = 0;
        }
        json_decref(w->state);
        w->state = json_object();
        if (!resume) {
                /* After a slice, nothing before its end is new. */
                from = cp && !cut ? wm - overlap_s : wm;
                to = floor_div(w->now_ms - w->lag_ms, 1000);
                slice_s = (w->slice_ms + 999) / 1000;
                cut = w->slice_ms > 0 && wm + slice_s < to;
                if (cut)
                        to = wm + slice_s;
        }
        if (from < 0)
                from = 0;
        if (from > to)
                from = to; /* clock went back: a window of one second */
        if (!resume)
                upper = to;
        eb_walk_set(w, "wm", wm);
        eb_walk_set(w, "from", from);
        eb_walk_set(w, "to", to);
        eb_walk_set(w, "upper", upper);
        eb_walk_set(w, "page", 1);
        /* Seconds counted whole by this walk: [cnt_lo, to]. */
        eb_walk_set(w, "cnt_lo", to + 1);
        json_object_set_new(w->state, "cnt", json_object());
        json_object_set_new(w->state, "edge", json_object());
        if (resume)
                eb_walk_set(w, "nocount", 1);
        else if (cp)
                kommo_load_seen(w, cp, wm);
        if (cut)
                eb_walk_set(w, "cut", 1);
        w->cut = cut;
        w->resumed = resume;
        return 0;
}

/* One "key=a,b,c" parameter: Kommo's reference page describes every
 * list filter as a string of values divided by commas (the official PHP
 * SDK sends it so too); the array form key[]=a&key[]=b is not documented. */
static int add_list_param(struct eb_buf *b, const json_t *arr, const char *key)
{
        struct eb_buf list;
        size_t i;
        json_t *v;
        char num[32];
        int rc = 0;

        if (!json_array_size(arr))
                return 0;
        eb_buf_init(&list, 256);
        json_array_foreach(arr, i, v)
        {
                const char *text = NULL;

                if (json_is_string(v)) {
                        text = json_string_value(v);
                } else if (json_is_integer(v)) {
                        snprintf(num, sizeof(num), "%lld",
                                 (long long)json_integer_value(v));
                        text = num;
                }
                if (!text)
                        continue;
                if (list.len)
                        rc = eb_buf_append(&list, ",", 1);
                if (!rc)
                        rc = eb_buf_append_str(&list, text);
                if (rc)
                        break;
        }
        if (!rc && list.len)
                rc = eb_url_add_param(b, key, list.data);
        eb_buf_fini(&list);
        return rc;
}

static int kommo_next_request(struct eb_walk *w, char **url, char **auth)
{
        struct eb_buf b, with;
        json_t *opts, *arr, *v;
        size_t i;
        int rc;

        if (!w->state || !w->base_url || !w->src)
                return -EINVAL;
        opts = eb_source_options(w->src);
        rc = eb_url_start(&b, w->base_url, "/api/v4/events");
        arr = json_object_get(opts, "with");
        if (!rc && json_is_array(arr) && json_array_size(arr)) {
                eb_buf_init(&with, 256);
                json_array_foreach(arr, i, v)
                {
                        if (!rc && json_is_string(v)) {
                                if (with.len)
                                        rc = eb_buf_append(&with, ",", 1);
                                if (!rc)
                                        rc = eb_buf_append_str(
                                                &with, json_string_value(v));
                        }
                }
                if (!rc && with.len)
                        rc = eb_url_add_param(&b, "with", with.data);
                eb_buf_fini(&with);
        }
        if (!rc)
                rc = eb_url_add_param_i64(&b, "page", eb_walk_get(w, "page"));
        if (!rc)
                rc = eb_url_add_param_i64(&b, "limit", w->page_size);
        if (!rc)
                rc = eb_url_add_param_i64(&b, "filter[created_at][from]",
                                          eb_walk_has(w, "dense")
                                                  ? eb_walk_get(w, "dense")
                                                  : eb_walk_get(w, "from"));
        if (!rc)
                rc = eb_url_add_param_i64(&b, "filter[created_at][to]",
                                          eb_walk_get(w, "upper"));
        if (!rc)
                rc = add_list_param(&b, json_object_get(opts, "filter_type"),
                                    "filter[type]");
        if (!rc)
                rc = add_list_param(&b, json_object_get(opts, "filter_entity"),
                                    "filter[entity]");
        if (!rc)
                rc = add_list_param(&b,
                                    json_object_get(opts, "filter_created_by"),
                                    "filter[created_by]");
        if (rc) {
                eb_buf_fini(&b);
                return rc;
        }
        *url = eb_buf_take(&b, NULL);
        *auth = eb_auth_bearer(w->src->token);
        return 0;
}

/* ---- normalize ------------------------------------------------------- */

static char *kommo_action(const char *type, const char *entity)
{
        size_t n = strlen(entity);

        /* lead_status_changed on a lead -> status_changed; generic types
         * (entity_tag_added, incoming_call, custom_field_value_changed) and
         * types of another entity keep their whole name. */
        if (n && !strncmp(type, entity, n) && type[n] == '_' && type[n + 1])
                return eb_xstrdup(type + n + 1);
        return eb_xstrdup(type);
}

static const char *kommo_entity_name(const json_t *native)
{
        const json_t *ent =
                json_object_get(json_object_get(native, "_embedded"), "entity");
        const char *s;
        size_t i;

        if (!json_is_object(ent))
                return NULL;
        for (i = 0; kommo_name_keys[i]; i++) {
                s = eb_jfield_str(ent, kommo_name_keys[i], KOMMO_MAX_NAME);
                if (s)
                        return s;
        }
        return NULL;
}

static struct eb_event *kommo_normalize(const struct eb_source_cfg *src,
                                        json_t *native, char *errstr,
                                        size_t errstr_size)
{
        struct eb_event *evt = NULL;
        char *id = NULL, *entity_id = NULL, *actor = NULL, *account = NULL;
        const char *type, *entity, *name, *bad = NULL;
        const json_t *v;
        int64_t created = 0;

        if (!json_is_object(native)) {
                snprintf(errstr, errstr_size, "event is not a JSON object");
                return NULL;
        }
        id = eb_jfield_id_text(json_object_get(native, "id"));
        type = eb_jfield_str(native, "type", EB_PROVIDER_MAX_ID);
        entity = eb_jfield_str(native, "entity_type", EB_PROVIDER_MAX_ID);
        v = json_object_get(native, "created_at");
        if (json_is_integer(v))
                created = json_integer_value(v);
        if (!id)
                bad = "missing or invalid \"id\"";
        else if (!type)
                bad = "missing or invalid \"type\"";
        else if (!entity)
                bad = "missing or invalid \"entity_type\"";
        else if (!json_is_integer(v) || created < 0 || created > KOMMO_MAX_TS)
                bad = "missing or invalid \"created_at\" (unix seconds)";
        else if (eb_jfield_opt_id(native, "entity_id", &entity_id))
                bad = "invalid \"entity_id\"";
        else if (eb_jfield_opt_id(native, "created_by", &actor))
                bad = "invalid \"created_by\"";
        else if (eb_jfield_opt_id(native, "account_id", &account))
                bad = "invalid \"account_id\"";
        if (bad) {
                snprintf(errstr, errstr_size, "event %.64s: %s",
                         id ? id : "(no id)", bad);
                free(id);
                free(entity_id);
                free(actor);
                free(account);
                return NULL;
        }
        if (actor && !strcmp(actor, "0")) {
                free(actor); /* 0 is the system or a robot: no actor */
                actor = NULL;
        }
        evt = eb_event_new();
        evt->id = id;
        evt->source_name = eb_xstrdup(src && src->name ? src->name : "");
        evt->provider = eb_xstrdup("kommo");
        evt->account = account;
        evt->entity_type = eb_xstrdup(entity);
        evt->entity_id = entity_id ? entity_id : eb_xstrdup("");
        evt->action = kommo_action(type, entity);
        evt->actor = actor;
        evt->version = NULL;
        evt->time_ms = created * 1000;
        evt->fields = json_object();
        json_object_set_new(evt->fields, "type", json_string(type));
        eb_jfield_copy(evt->fields, native, "created_by");
        eb_jfield_copy(evt->fields, native, "value_before");
        eb_jfield_copy(evt->fields, native, "value_after");
        name = kommo_entity_name(native);
        if (name)
                json_object_set_new(evt->fields, "entity_name",
                                    json_string(name));
        evt->native = json_incref(native);
        return evt;
}

/* ---- the walk over seconds ------------------------------------------ */

/* The created_at second of a page's event (its native JSON), or -1 when
 * it has none (a poison event). */
static int64_t kommo_event_second(const struct eb_event *evt)
{
        const json_t *v = json_object_get(evt->native, "created_at");
        int64_t s;

        if (!json_is_integer(v))
                return -1;
        s = json_integer_value(v);
        return s >= 0 && s <= KOMMO_MAX_TS ? s : -1;
}

/* Seconds a walk re-reads below the watermark whatever it finds: those
 * in which an event could have become visible after the last walk read
 * them (the visibility time beyond the lag, and the watermark's own
 * second, which the lag cuts in the middle). */
static int64_t kommo_recheck_s(const struct eb_walk *w)
{
        int64_t v = KOMMO_VISIBILITY_MS - w->lag_ms;

        return v > 0 ? (v + 999) / 1000 + 1 : 1;
}

/* A page of [from, upper] whose seconds (smin, upper] are whole, with
 * their counts in @p cnt: @returns 1 when it reaches past the recheck
 * seconds below the watermark (read whole, whatever changed there: that
 * is where late events show up) and every second it covers below them
 * holds exactly what the last walk saw there, so the rest of the overlap
 * is known. A second that changed there (an event later than the
 * visibility time) sends the walk on down. */
static int kommo_overlap_known(const struct eb_walk *w, const json_t *cnt,
                               int64_t smin, int64_t upper)
{
        const json_t *prev = json_object_get(w->state, "prev");
        int64_t wm = eb_walk_get(w, "wm"), hi = wm - kommo_recheck_s(w);

        if (!prev || !eb_walk_has(w, "prev_lo") || eb_walk_has(w, "nocount"))
                return 0;
        if (upper < hi)
                hi = upper;
        if (smin >= hi || smin + 1 < eb_walk_get(w, "prev_lo"))
                return 0;
        return eb_seen_same(cnt, prev, smin, hi);
}

/*
 * kommo_walk_step for a second read alone (w->state "dense"): one more
 * page of it, or, once a pass is over, leave it (every event it holds was
 * seen, or the passes ran out) or start another pass. @p more: in, the
 * page said there is more; out, where the walk goes. @returns how many
 * events the second's pages said it holds beyond those found (0 unless
 * the passes ran out).
 */
static int64_t kommo_dense_step(struct eb_walk *w, const struct eb_page *page,
                                json_t *p, json_t *cnt, int *more)
{
        int64_t pg = eb_walk_get(w, "page"), ds = eb_walk_get(w, "dense");
        json_t *dids = json_object_get(w->state, "dids");
        json_t *ndids = json_deep_copy(dids ? dids : json_object());
        size_t raw = page->events_cnt, i;
        int64_t total, missed = 0;

        for (i = 0; i < raw; i++)
                json_object_set_new(
                        ndids, page->events[i]->id ? page->events[i]->id : "",
                        json_true());
        if (*more) {
                json_object_set_new(p, "page", json_integer(pg + 1));
        } else {
                /* One pass over the second is over: its pages said how
                 * many events it holds. */
                total = (pg - 1) * w->page_size + (int64_t)raw;
                if ((int64_t)json_object_size(ndids) >= total ||
                    eb_walk_get(w, "dpass") >= KOMMO_DENSE_PASSES) {
                        eb_seen_add(cnt, ds, (int64_t)json_object_size(ndids));
                        json_object_set_new(p, "leave", json_true());
                        json_object_set_new(p, "cnt_lo", json_integer(ds));
                        json_object_set_new(p, "upper", json_integer(ds - 1));
                        json_object_set_new(p, "page", json_integer(1));
                        *more = ds - 1 >= eb_walk_get(w, "from");
                        missed = total - (int64_t)json_object_size(ndids);
                } else {
                        json_object_set_new(
                                p, "dpass",
                                json_integer(eb_walk_get(w, "dpass") + 1));
                        json_object_set_new(p, "page", json_integer(1));
                        *more = 1;
                }
        }
        json_object_set_new(p, "dids", ndids);
        return missed;
}

/* Drop from @p page what this walk already took: the top second of the
 * request read again (w->state "edge"), or a dense second's earlier
 * passes ("dids"). */
static void kommo_drop_taken(struct eb_walk *w, struct eb_page *page, int dense)
{
        json_t *edge = json_object_get(w->state, "edge");
        json_t *dids = json_object_get(w->state, "dids");
        int64_t upper = eb_walk_get(w, "upper");
        size_t i, kept = 0;

        for (i = 0; i < page->events_cnt; i++) {
                struct eb_event *evt = page->events[i];
                const char *id = evt->id ? evt->id : "";

                if (dense ? dids && json_object_get(dids, id)
                          : kommo_event_second(evt) == upper &&
                                    json_object_get(edge, id)) {
                        eb_event_free(evt);
                        continue;
                }
                page->events[kept++] = evt;
        }
        page->events_cnt = kept;
}

/*
 * Where the walk goes after an OK page (@p has_next: it had
 * _links.next). Drops the events this walk already took (the re-read
 * second at the top of the request, or a dense second's earlier passes),
 * counts the seconds the page holds whole, and leaves the next position
 * in w->state "p" for page_done. Sets page->more.
 */
static void kommo_walk_step(struct eb_walk *w, struct eb_page *page,
                            int has_next)
{
        int64_t from = eb_walk_get(w, "from"), upper = eb_walk_get(w, "upper");
        int64_t pg = eb_walk_get(w, "page");
        int64_t smin = INT64_MAX, smax = -1, s, missed = 0;
        int dense = eb_walk_has(w, "dense"), more;
        json_t *p = json_object(), *cnt = json_object(), *nedge = json_object();
        size_t raw = page->events_cnt, i, len;

        more = has_next && raw;
        for (i = 0; i < raw; i++) {
                s = kommo_event_second(page->events[i]);
                if (s < 0)
                        continue;
                if (s < smin)
                        smin = s;
                if (s > smax)
                        smax = s;
        }
        if (dense) {
                missed = kommo_dense_step(w, page, p, cnt, &more);
        } else if (pg > 1 || (more && smax < 0)) {
                /* No event of a full page says its second (poison only),
                 * or an older checkpoint's page numbers: go on by page
                 * number, and keep no counts from this walk. */
                json_object_set_new(p, "page", json_integer(pg + 1));
                json_object_set_new(p, "nocount", json_true());
        } else if (!more) {
                /* The rest of the window was on this page. */
                for (i = 0; i < raw; i++) {
                        s = kommo_event_second(page->events[i]);
                        if (s >= 0)
                                eb_seen_add(cnt, s, 1);
                }
                json_object_set_new(p, "cnt_lo", json_integer(from));
        } else if (smin < smax) {
                /* Seconds above the oldest one are whole on this page;
                 * the oldest is read again, whole, by the next request. */
                for (i = 0; i < raw; i++) {
                        s = kommo_event_second(page->events[i]);
                        if (s > smin)
                                eb_seen_add(cnt, s, 1);
                }
                json_object_set_new(p, "cnt_lo", json_integer(smin + 1));
                json_object_set_new(p, "upper", json_integer(smin));
                json_object_set_new(p, "page", json_integer(1));
                for (i = 0; i < raw; i++) {
                        if (kommo_event_second(page->events[i]) == smin)
                                json_object_set_new(nedge, page->events[i]->id,
                                                    json_true());
                }
                if (kommo_overlap_known(w, cnt, smin, upper)) {
                        more = 0;
                        json_object_set_new(p, "stop", json_true());
                }
        } else {
                /* A whole page of one second: it holds a page or more.
                 * Read it alone ([S, S] by page numbers) until every
                 * event it holds was seen. */
                json_t *d = json_object();

                for (i = 0; i < raw; i++)
                        json_object_set_new(d, page->events[i]->id,
                                            json_true());
                json_object_set_new(p, "dense", json_integer(smin));
                json_object_set_new(p, "dpass", json_integer(1));
                json_object_set_new(p, "dids", d);
                json_object_set_new(p, "cnt_lo", json_integer(smin + 1));
                json_object_set_new(p, "upper", json_integer(smin));
                json_object_set_new(p, "page", json_integer(1));
        }
        kommo_drop_taken(w, page, dense);
        json_object_set_new(p, "cnt", cnt);
        json_object_set_new(p, "edge", nedge);
        json_object_set_new(w->state, "p", p);
        page->more = more;
        if (!page->detail[0])
                snprintf(page->detail, sizeof(page->detail),
                         "page %" PRId64 ": %zu events", pg, page->events_cnt);
        len = strlen(page->detail);
        snprintf(page->detail + len, sizeof(page->detail) - len, "%s%s%s%s",
                 more ? ", more" : "", dense ? ", a second read alone" : "",
                 missed > 0 ? " (its pages say it holds more events than "
                              "20 passes found)"
                            : "",
                 json_is_true(json_object_get(p, "stop"))
                         ? ", the overlap below is unchanged"
                         : "");
}

/* page_done: move to the position the acknowledged page left in "p". */
static void kommo_walk_advance(struct eb_walk *w)
{
        json_t *p = json_object_get(w->state, "p"), *v;
        json_t *cnt = json_object_get(w->state, "cnt");

        if (!p)
                return;
        if ((v = json_object_get(p, "cnt")) && cnt)
                json_object_update(cnt, v);
        if ((v = json_object_get(p, "cnt_lo")))
                eb_walk_set(w, "cnt_lo", json_integer_value(v));
        if (json_object_get(p, "nocount"))
                eb_walk_set(w, "nocount", 1);
        if ((v = json_object_get(p, "upper")))
                eb_walk_set(w, "upper", json_integer_value(v));
        if ((v = json_object_get(p, "page")))
                eb_walk_set(w, "page", json_integer_value(v));
        if ((v = json_object_get(p, "dense")))
                eb_walk_set(w, "dense", json_integer_value(v));
        if ((v = json_object_get(p, "dpass")))
                eb_walk_set(w, "dpass", json_integer_value(v));
        if ((v = json_object_get(p, "dids")))
                json_object_set(w->state, "dids", v);
        if (json_object_get(p, "leave")) {
                json_object_del(w->state, "dense");
                json_object_del(w->state, "dpass");
                json_object_del(w->state, "dids");
        }
        if ((v = json_object_get(p, "edge")))
                json_object_set(w->state, "edge", v);
        json_object_del(w->state, "p");
}

/* ---- responses ------------------------------------------------------- */

/* Wait from a 429: the problem+json body's retry_after (seconds), else
 * the Retry-After header. */
static int64_t kommo_retry_after(const struct eb_response *resp)
{
        json_t *root = NULL, *v;
        json_error_t jerr;
        int64_t ms = 0;
        double secs = -1;

        if (resp->body && resp->body_len && resp->body_len <= 65536)
                root = json_loadb(resp->body, resp->body_len, 0, &jerr);
        v = json_object_get(root, "retry_after");
        if (json_is_number(v))
                secs = json_number_value(v);
        if (isfinite(secs) && secs > 0)
                ms = eb_ratelimit_reset_ms(secs);
        else
                ms = eb_resp_retry_after_ms(resp);
        json_decref(root);
        return ms;
}

static void kommo_page_ok(struct eb_walk *w, const struct eb_response *resp,
                          struct eb_page *page)
{
        json_t *root, *emb, *events, *links, *next, *item;
        int64_t req_page = eb_walk_get(w, "page");
        size_t i;

        root = eb_resp_json_object(resp, page);
        if (!root)
                return;
        emb = json_object_get(root, "_embedded");
        events = json_object_get(emb, "events");
        links = json_object_get(root, "_links");
        next = json_object_get(links, "next");
        if (json_is_null(next))
                next = NULL; /* "next": null also means the last page */
        if (!json_is_array(events)) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "page %" PRId64 ": no _embedded.events array",
                             req_page);
                goto out;
        }
        if (eb_page_check_number(page, root, "_page", req_page))
                goto out;
        if (next && !json_is_object(next)) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "page %" PRId64 ": _links.next is not an object",
                             req_page);
                goto out;
        }
        if (json_array_size(events) > EB_PROVIDER_MAX_PAGE_EVENTS) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "page %" PRId64 ": %zu events, more than %d",
                             req_page, json_array_size(events),
                             EB_PROVIDER_MAX_PAGE_EVENTS);
                goto out;
        }
        json_array_foreach(events, i, item)
        {
                struct eb_event *evt =
                        eb_walk_normalize(w, item, req_page, "events", i);

                if (eb_page_add_event(page, evt)) {
                        eb_page_fail(page, EB_RESP_BAD_BODY,
                                     "page %" PRId64 ": too many events",
                                     req_page);
                        goto out;
                }
        }
        page->full = page->events_cnt >= (size_t)w->page_size;
        kommo_walk_step(w, page, next != NULL);
        if (page->more && req_page >= KOMMO_MAX_PAGES) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "window [%" PRId64 ", %" PRId64
                             "] has more than %d pages",
                             eb_walk_get(w, "from"), eb_walk_get(w, "to"),
                             KOMMO_MAX_PAGES);
                goto out;
        }
out:
        json_decref(root);
}

static void kommo_handle_response(struct eb_walk *w,
                                  const struct eb_response *resp,
                                  struct eb_page *page)
{
        eb_resp_kind_t kind;

        if (eb_walk_response_begin(w, page))
                return;
        json_object_del(w->state, "p");
        if (resp->status == 204) {
                snprintf(page->detail, sizeof(page->detail),
                         "page %" PRId64 ": 204, no events",
                         eb_walk_get(w, "page"));
                kommo_walk_step(w, page, 0);
        } else if (resp->status == 200) {
                kommo_page_ok(w, resp, page);
        } else {
                kind = resp->status == 403
                               ? EB_RESP_BANNED
                               : eb_resp_classify_error(resp->status);
                eb_page_http_error(page, kind, resp);
                if (kind == EB_RESP_RATE_LIMITED)
                        page->retry_after_ms = kommo_retry_after(resp);
        }
        eb_walk_response_end(w, page);
}

/* The counts a finished walk leaves for the next one: its own whole
 * seconds [cnt_lo, to], below them the last walk's where this walk
 * stopped early, from to - overlap up; at most KOMMO_MAX_SEEN seconds
 * with events (the oldest go first). */
static void kommo_add_seen(struct eb_walk *w, int64_t end)
{
        json_t *cnt = json_object_get(w->state, "cnt");
        json_t *prev = json_object_get(w->state, "prev");
        int64_t lo = eb_walk_get(w, "cnt_lo"), wm = eb_walk_get(w, "wm");
        int64_t keep = end - (w->overlap_ms + 999) / 1000, s, plo;
        json_t *all = json_object(), *v;
        const char *key;

        if (eb_walk_has(w, "nocount") || !cnt) {
                json_decref(all);
                return;
        }
        json_object_foreach(cnt, key, v)
        {
                s = strtoll(key, NULL, 10);
                if (s >= lo)
                        json_object_set(all, key, v);
        }
        if (prev && eb_walk_has(w, "prev_lo") && lo <= wm + 1) {
                plo = eb_walk_get(w, "prev_lo");
                json_object_foreach(prev, key, v)
                {
                        s = strtoll(key, NULL, 10);
                        if (s >= plo && s < lo)
                                json_object_set(all, key, v);
                }
                if (plo < lo)
                        lo = plo;
        }
        if (lo < keep)
                lo = keep;
        eb_seen_store(w->cp, all, lo, end, KOMMO_MAX_SEEN);
        json_decref(all);
}

static void kommo_finalize(struct eb_walk *w)
{
        int64_t wm = eb_walk_get(w, "wm"), to = eb_walk_get(w, "to");
        int64_t end = to > wm ? to : wm;

        json_decref(w->cp);
        w->cp = json_pack("{sI}", "wm", (json_int_t)end);
        if (eb_walk_get(w, "cut"))
                json_object_set_new(w->cp, "cut", json_true());
        kommo_add_seen(w, end);
}

static void kommo_page_done(struct eb_walk *w)
{
        int64_t upper;

        if (!eb_walk_page_ack(w))
                return;
        kommo_walk_advance(w);
        if (!eb_walk_get(w, "more"))
                eb_walk_set(w, "done", 1);
        if (eb_walk_get(w, "done")) {
                kommo_finalize(w);
                return;
        }
        /* A restart resumes below this bound: a dense second whole. */
        upper = eb_walk_has(w, "dense") ? eb_walk_get(w, "dense")
                                        : eb_walk_get(w, "upper");
        json_decref(w->cp);
        w->cp = json_pack("{sIsIsIsIsI}", "wm",
                          (json_int_t)eb_walk_get(w, "wm"), "from",
                          (json_int_t)eb_walk_get(w, "from"), "to",
                          (json_int_t)eb_walk_get(w, "to"), "upper",
                          (json_int_t)upper, "page", (json_int_t)1);
        if (eb_walk_get(w, "cut"))
                json_object_set_new(w->cp, "cut", json_true());
}

static void kommo_walk_end(struct eb_walk *w)
{
        /* Only a walk whose last page was acknowledged moves the
         * watermark; an abandoned walk keeps its mid-walk checkpoint. */
        if (!w->state || !eb_walk_get(w, "done"))
                return;
        kommo_finalize(w);
}

/* A Kommo webhook must look like an account webhook: an "account" object
 * naming the account, next to at least one entity section. */
static int kommo_trigger_check(const json_t *form, char *why, size_t why_size)
{
        json_t *acct = json_object_get(form, "account");

        if (json_is_object(acct) &&
            (json_object_get(acct, "subdomain") ||
             json_object_get(acct, "id")) &&
            json_object_size(form) >= 2)
                return 0;
        snprintf(why, why_size,
                 "no account[subdomain] / account[id] next "
                 "to an entity section");
        return -EINVAL;
}

/* Kommo webhooks carry no id and no signature: a shared token in the URL
 * authenticates them, and each one only triggers a poll. */
static const struct eb_provider_webhook kommo_webhook = {
        .scheme = &eb_wh_scheme_token,
        .content_type = "application/x-www-form-urlencoded",
        .trigger_check = kommo_trigger_check,
};

const struct eb_provider eb_provider_kommo = {
        .name = "kommo",
        .default_base_url = NULL,
        .default_rps = 6.0,
        .default_burst = 1,
        .max_per_second = 7,
        .default_page_size = 250,
        .max_page_size = 250,
        .default_overlap_ms = 2 * 60 * 1000,
        .default_lag_ms = 5 * 1000,
        .check_config = kommo_check_config,
        .walk_begin = kommo_walk_begin,
        .next_request = kommo_next_request,
        .handle_response = kommo_handle_response,
        .page_done = kommo_page_done,
        .walk_end = kommo_walk_end,
        .normalize = kommo_normalize,
        .credential = "token",
        .newest_first = 1,
        .webhook = &kommo_webhook,
};
