/*
 * kota.c: Kota GET /events and GET /events/{id}, plus the webhook body.
 *
 * Behaviour follows providers.md section 3: Bearer auth; page (default 1)
 * + page_size (default 10, above 100 is a 400 problem+json);
 * created_after limited to the retention (30 days: older is a 400, or
 * clamped with --kota-created-after clamp); order_direction asc|desc
 * (default desc); version v1|v2 (v1 hides the v2-only types and renders
 * data as the full resource, v2 renders the thin reference); items, page,
 * page_size, total_count, has_next_page, has_previous_page; nothing older
 * than the retention is served.
 *
 * Choices where the docs are silent: created_after is exclusive; page_size
 * in the response is the number of items on the page; v2 list items carry
 * "api_version":"2.0"; a page past the end is 200 with items []. Strict
 * (the harsher readings): "created" in whole seconds as the reference's
 * examples show (kota_created_seconds), and events of one second in a new
 * order on every request (tie_shuffle).
 */
#include "sim.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "eb_time.h"
#include "eb_util.h"

enum {
        T_EMPLOYER = 0,
        T_EMPLOYEE,
        T_QUOTE,
        T_REPORT,
        T_GROUP,
        T_POLICY,
        T_ENROL,
        T_NKINDS
};

static const char *const rtype[T_NKINDS] = {"employer",
                                            "employee",
                                            "employer_health_insurance_quote",
                                            "contribution_report",
                                            "group",
                                            "policy",
                                            "enrolment_intent"};
static const char *const rprefix[T_NKINDS] = {"er_",  "ee_",  "hiq_", "cr_",
                                              "grp_", "pol_", "ei_"};

static int is_v1_type(const char *t)
{
        if (!strcmp(t, "employee.health_insurance.policy.imported"))
                return 0;
        return !strncmp(t, "employee.", 9) || !strncmp(t, "employer.", 9) ||
               !strncmp(t, "contribution_report.", 20);
}

static int is_critical(const char *t)
{
        return !strcmp(t, "employer.health_insurance.quote.action_required") ||
               !strcmp(t, "employee.health_insurance.offer.action_required");
}

static char *hex_id(struct sim_rng *r, const char *prefix)
{
        return sim_rand_id(r, prefix, sim_hexdigits, 32);
}

void sim_kota_init(struct sim_account *a)
{
        struct sim_rng *r = &a->gen;
        size_t i, nemp;
        static const int kw[T_NKINDS] = {0, 40, 8, 4, 10, 12, 10};

        a->platform_id = hex_id(r, "pt_");
        a->nents = (size_t)a->set.entities;
        a->ents = eb_xcalloc(a->nents, sizeof(*a->ents));
        nemp = a->nents / 8 ? a->nents / 8 : 1;
        for (i = 0; i < a->nents; i++) {
                struct sim_entity *e = &a->ents[i];

                e->kind = i < nemp ? T_EMPLOYER
                                   : (int)sim_rng_weighted(r, kw, T_NKINDS);
                e->id = hex_id(r, rprefix[e->kind]);
                e->parent = e->kind == T_EMPLOYER
                                    ? NULL
                                    : &a->ents[sim_rng_below(r, nemp)];
                if (e->kind == T_EMPLOYER)
                        e->name = eb_xasprintf(
                                "%s Holdings",
                                sim_pick(r, sim_words, sim_words_n));
                else
                        e->name = eb_xasprintf(
                                "%s %s",
                                sim_pick(r, sim_first_names, sim_first_names_n),
                                sim_pick(r, sim_last_names, sim_last_names_n));
        }
}

static void date_only(int64_t ms, char *buf, size_t sz)
{
        char tmp[48];

        eb_rfc3339_format(ms, 0, tmp, sizeof(tmp));
        snprintf(buf, sz, "%.10s", tmp);
}

static json_t *new_resource(struct sim_account *a, struct sim_entity *e,
                            int64_t ms)
{
        struct sim_rng *r = &a->gen;
        json_t *s = json_object();
        char day[16];

        date_only(ms, day, sizeof(day));
        json_object_set_new(s, "id", json_string(e->id));
        if (e->parent)
                json_object_set_new(s, "employer_id",
                                    json_string(e->parent->id));
        json_object_set_new(s, "platform_id", json_string(a->platform_id));
        switch (e->kind) {
        case T_EMPLOYER:
                json_object_set_new(s, "legal_name", json_string(e->name));
                json_object_set_new(s, "country", json_string("GB"));
                json_object_set_new(s, "status", json_string("active"));
                json_object_set_new(s, "registration_number",
                                    json_string(sim_rng_below(r, 2)
                                                        ? "12345678"
                                                        : "87654321"));
                break;
        case T_EMPLOYEE: {
                char email[96];
                size_t i;
                const char *sp = strchr(e->name, ' ');
                snprintf(email, sizeof(email), "%s@example.com", e->name);
                for (i = 0; email[i]; i++)
                        if (email[i] == ' ')
                                email[i] = '.';
                json_object_set_new(s, "status", json_string("pending"));
                json_object_set_new(
                        s, "first_name",
                        json_stringn(e->name, sp ? (size_t)(sp - e->name)
                                                 : strlen(e->name)));
                json_object_set_new(s, "last_name",
                                    json_string(sp ? sp + 1 : ""));
                json_object_set_new(s, "date_of_birth",
                                    json_string("1990-04-01"));
                json_object_set_new(
                        s, "sex_at_birth",
                        json_string(sim_rng_below(r, 2) ? "female" : "male"));
                json_object_set_new(s, "national_tax_id",
                                    json_string("1234567T"));
                json_object_set_new(s, "phone_number",
                                    json_string("+447700900999"));
                json_object_set_new(s, "email", json_string(email));
                json_object_set_new(s, "start_on", json_string(day));
                break;
        }
        case T_QUOTE:
                json_object_set_new(s, "status", json_string("created"));
                json_object_set_new(s, "insurer", json_string("Bupa"));
                break;
        case T_REPORT:
                json_object_set_new(s, "status", json_string("finalized"));
                json_object_set_new(s, "period", json_string(day));
                break;
        case T_GROUP:
                json_object_set_new(s, "name", json_string("Standard staff"));
                json_object_set_new(s, "status", json_string("created"));
                break;
        case T_POLICY:
                json_object_set_new(s, "status", json_string("scheduled"));
                json_object_set_new(s, "start_on", json_string(day));
                break;
        default:
                json_object_set_new(s, "status", json_string("processing"));
                break;
        }
        json_object_set_new(s, "metadata", json_null());
        return s;
}

static const char *pick_type(struct sim_account *a, struct sim_entity *e)
{
        struct sim_rng *r = &a->gen;
        static const char *const emp_t[] = {
                "employee.updated",
                "employee.health_insurance.offer.action_required",
                "employee.health_insurance.policy.activated",
                "employee.health_insurance.policy.cancelled",
                "employee.health_insurance.policy.expired",
                "employee.health_insurance.policy.imported",
                "employee.offboarded"};
        static const int emp_w[] = {12, 2, 4, 1, 1, 1, 1};
        static const char *const quote_t[] = {
                "employer.health_insurance.quote.pending_quote",
                "employer.health_insurance.quote.pending_insurer_acceptance",
                "employer.health_insurance.quote.action_required",
                "employer.health_insurance.quote.accepted",
                "employer.health_insurance.quote.not_undertaken"};
        static const int quote_w[] = {3, 2, 2, 2, 1};
        static const char *const group_t[] = {"group.ready",
                                              "group.updated",
                                              "group.employee.added",
                                              "group.employee.removed",
                                              "group.employee.eligible",
                                              "group.employee.moved",
                                              "group.employee.move.scheduled",
                                              "group.archived"};
        static const int group_w[] = {2, 3, 5, 2, 2, 1, 1, 1};
        static const char *const pol_t[] = {
                "policy.active",           "policy.updated",
                "policy.renewal.opened",   "policy.renewal.renewed",
                "policy.renewal.canceled", "policy.expired",
                "policy.cancelled"};
        static const int pol_w[] = {3, 4, 2, 2, 1, 1, 1};
        static const char *const enr_t[] = {
                "enrolment_intent.scheduled",
                "enrolment_intent.action_required",
                "enrolment_intent.enrolling",
                "enrolment_intent.enrolled",
                "enrolment_intent.not_undertaken",
                "enrolment_intent.ineligible",
                "enrolment_intent.pending_confirmation",
                "enrolment_intent.addon_selection_required"};
        static const int enr_w[] = {3, 2, 3, 3, 1, 1, 1, 1};
        static const char *const first[T_NKINDS] = {
                "employer.created",
                "employee.created",
                "employer.health_insurance.quote.created",
                "contribution_report.finalized",
                "group.created",
                "policy.scheduled",
                "enrolment_intent.processing"};

        if (!e->created || e->deleted)
                return first[e->kind];
        switch (e->kind) {
        case T_EMPLOYER:
                return sim_rng_below(r, 30) ? "employer.updated"
                                            : "employer.offboarded";
        case T_EMPLOYEE:
                return emp_t[sim_rng_weighted(r, emp_w, 7)];
        case T_QUOTE:
                return quote_t[sim_rng_weighted(r, quote_w, 5)];
        case T_REPORT:
                return "contribution_report.finalized";
        case T_GROUP:
                return group_t[sim_rng_weighted(r, group_w, 8)];
        case T_POLICY:
                return pol_t[sim_rng_weighted(r, pol_w, 7)];
        default:
                return enr_t[sim_rng_weighted(r, enr_w, 8)];
        }
}

/* Update the resource for @p type; marks offboarded/archived entities. */
static void apply_type(struct sim_account *a, struct sim_entity *e,
                       const char *type, int64_t ms)
{
        const char *dot = strrchr(type, '.');
        const char *last = dot ? dot + 1 : type;
        json_t *s = e->snap;

        if (!strcmp(last, "offboarded") || !strcmp(type, "group.archived")) {
                json_object_set_new(s, "status", json_string(last));
                e->deleted = 1;
        } else if (!strcmp(last, "updated")) {
                if (e->kind == T_EMPLOYEE)
                        json_object_set_new(
                                s, "phone_number",
                                json_string(sim_rng_below(&a->gen, 2)
                                                    ? "+447700900123"
                                                    : "+447700900456"));
                else
                        json_object_set_new(s, "status", json_string("active"));
        } else if (e->kind != T_EMPLOYEE && e->kind != T_EMPLOYER) {
                json_object_set_new(s, "status", json_string(last));
        } else if (e->kind == T_EMPLOYEE && strstr(type, ".policy.")) {
                json_object_set_new(s, "health_insurance",
                                    json_pack("{s:s}", "policy_status", last));
        }
        (void)ms;
}

static json_t *thin(struct sim_entity *e)
{
        json_t *t = json_object();

        json_object_set_new(t, "id", json_string(e->id));
        if (e->parent)
                json_object_set_new(t, "employer_id",
                                    json_string(e->parent->id));
        json_object_set_new(t, "metadata", json_null());
        json_object_set_new(t, "resource_type", json_string(rtype[e->kind]));
        json_object_set_new(t, "object", json_string(rtype[e->kind]));
        return t;
}

static char *render(const char *id, const char *pid, const char *created,
                    const char *type, json_t *data, const char *apiver,
                    size_t *lenp)
{
        json_t *root = json_pack("{s:s,s:s,s:s,s:s,s:O,s:s}", "id", id,
                                 "platform_id", pid, "created", created, "type",
                                 type, "data", data, "api_version", apiver);
        char *s = json_dumps(root, JSON_COMPACT);

        json_decref(root);
        if (!s)
                s = eb_xstrdup("{}");
        *lenp = strlen(s);
        return s;
}

struct sim_event *sim_kota_generate(struct sim_account *a, int64_t ms)
{
        struct sim_rng *r = &a->gen;
        struct sim_entity *e;
        struct sim_event *evt;
        const char *type;
        json_t *d1, *d2;
        char created[48];
        char *j2, *j1 = NULL;
        size_t l2, l1 = 0;

        if (!a->nents)
                return NULL;
        e = &a->ents[sim_rng_below(r, a->nents)];
        if (e->parent && (!e->parent->created || e->parent->deleted))
                e = e->parent;
        type = pick_type(a, e);
        if (!e->created || e->deleted) {
                if (e->deleted) {
                        free(e->id);
                        e->id = hex_id(r, rprefix[e->kind]);
                        e->deleted = 0;
                }
                json_decref(e->snap);
                e->snap = new_resource(a, e, ms);
                e->created = 1;
                e->created_ms = ms;
        } else {
                apply_type(a, e, type, ms);
        }
        evt = sim_event_new(a, hex_id(r, "evt_"), ms);
        evt->type = eb_xstrdup(type);
        evt->etype = rtype[e->kind];
        evt->eid = eb_xstrdup(e->id);
        evt->ent = e;
        evt->kota_v1 = is_v1_type(type);
        eb_rfc3339_format(ms, a->set.kota_seconds ? 0 : 3, created,
                          sizeof(created));
        d1 = json_deep_copy(e->snap);
        d2 = thin(e);
        if (is_critical(type)) {
                char due[48];
                json_t *ra;

                eb_rfc3339_format(ms + 14LL * 86400 * 1000, 0, due,
                                  sizeof(due));
                ra = json_pack("{s:s,s:s,s:s}", "reason", "missing_information",
                               "reason_description",
                               "Additional information is required to "
                               "continue.",
                               "due_at", due);
                json_object_set(d1, "required_action", ra);
                json_object_set_new(d2, "required_action", ra);
        }
        j2 = render(evt->id, a->platform_id, created, type, d2, "2.0", &l2);
        if (evt->kota_v1)
                j1 = render(evt->id, a->platform_id, created, type, d1, "1.0",
                            &l1);
        json_decref(d1);
        json_decref(d2);
        sim_version_add(evt, j2, l2, j1, l1, NULL, ms);
        sim_event_publish(evt);
        e->last = evt;
        return evt;
}

char *sim_kota_webhook_body(struct sim_event *evt, int v2, size_t *lenp)
{
        const char *src = v2 ? evt->cur->json : evt->cur->alt;
        json_t *item, *root;
        char *s;

        if (!src)
                return NULL;
        item = json_loads(src, 0, NULL);
        if (!item)
                return NULL;
        root = json_pack("{s:O,s:O,s:O,s:O,s:O,s:s}", "id",
                         json_object_get(item, "id"), "type",
                         json_object_get(item, "type"), "platform_id",
                         json_object_get(item, "platform_id"), "data",
                         json_object_get(item, "data"), "created_at",
                         json_object_get(item, "created"), "object", "event");
        json_decref(item);
        if (!root)
                return NULL;
        if (v2)
                json_object_set_new(root, "version", json_string("V2"));
        else
                json_object_set_new(root, "api_version", json_string("1.0"));
        s = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        if (s)
                *lenp = strlen(s);
        return s;
}

/* ---- HTTP ------------------------------------------------------------------
 */

static void bad_request(struct sim_req *sr, const char *field, const char *msg)
{
        struct evbuffer *x = evbuffer_new();
        char *extra;
        size_t len;

        evbuffer_add(x, "\"errors\":{", 10);
        sim_json_str(x, field);
        evbuffer_add(x, ":[", 2);
        sim_json_str(x, msg);
        evbuffer_add(x, "]},\"error_code\":\"invalid_request\"", 33);
        len = evbuffer_get_length(x);
        extra = eb_xmalloc(len + 1);
        evbuffer_remove(x, extra, len);
        extra[len] = '\0';
        evbuffer_free(x);
        sim_req_problem(sr, 400, msg, extra);
        free(extra);
}

static int parse_version(const char *s, int *v2)
{
        if (!strcmp(s, "v1") || !strcmp(s, "V1"))
                *v2 = 0;
        else if (!strcmp(s, "v2") || !strcmp(s, "V2"))
                *v2 = 1;
        else
                return -EINVAL;
        return 0;
}

static size_t count_visible(struct sim_account *a, size_t lo, size_t hi, int v2)
{
        return v2 ? hi - lo : (size_t)(a->cum[hi] - a->cum[lo]);
}

/* @returns the index of the k-th (0-based) visible event at or after lo. */
static size_t nth_visible(struct sim_account *a, size_t lo, size_t k, int v2)
{
        size_t l, h;
        uint32_t want;

        if (v2)
                return lo + k;
        want = a->cum[lo] + (uint32_t)k + 1;
        l = lo;
        h = a->nevts;
        while (l < h) { /* smallest j with cum[j + 1] >= want */
                size_t mid = l + (h - l) / 2;
                if (a->cum[mid + 1] < want)
                        l = mid + 1;
                else
                        h = mid;
        }
        return l;
}

/* The visible events of a list request in ascending order (the first
 * @p base from lo on, then the late ones), with tied times shuffled anew
 * (tie_shuffle): the same second, or millisecond as rendered. */
static struct sim_event **shuffled(struct sim_account *a, size_t lo,
                                   size_t base, struct sim_event **late,
                                   size_t nlate, int v2)
{
        struct sim_event **v = eb_xmalloc((base + nlate) * sizeof(*v));
        size_t k;

        for (k = 0; k < base; k++)
                v[k] = a->evts[nth_visible(a, lo, k, v2)];
        for (k = 0; k < nlate; k++)
                v[base + k] = late[k];
        sim_shuffle_ties(a, v, base + nlate, a->set.kota_seconds ? 1000 : 1);
        return v;
}

static void add_item(struct sim_req *sr, struct sim_event *evt, int v2)
{
        struct sim_version *v = evt->cur;

        if (v2)
                evbuffer_add(sr->body, v->json, v->len);
        else
                evbuffer_add(sr->body, v->alt, v->alt_len);
        sim_req_served(sr, v);
}

static void kota_list(struct sim_req *sr, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        const char *rawq =
                evhttp_uri_get_query(evhttp_request_get_evhttp_uri(sr->req));
        struct evkeyvalq q;
        const char *s;
        int64_t page = 1, ps = 10, ca, floor_ms;
        int v2 = a->set.kota_v2, asc = 0;
        size_t lo, hi, total, first, i, n = 0, cut, base, nlate = 0;
        size_t caplate = 0;
        struct sim_event **late = NULL, **all = NULL;

        TAILQ_INIT(&q);
        if (sim_query_parse(rawq, &q) < 0) {
                bad_request(sr, "$", "Malformed query string.");
                goto out;
        }
        s = sim_query_get(&q, "page");
        if (s &&
            (eb_parse_i64(s, &page) < 0 || page < 1 || page > 2147483647)) {
                bad_request(sr, "page", "page must be a positive integer.");
                goto out;
        }
        s = sim_query_get(&q, "page_size");
        if (s && (eb_parse_i64(s, &ps) < 0 || ps < 1 || ps > 100)) {
                bad_request(sr, "page_size",
                            "page_size must be between 1 and 100.");
                goto out;
        }
        s = sim_query_get(&q, "order_direction");
        if (s) {
                if (!strcmp(s, "asc"))
                        asc = 1;
                else if (strcmp(s, "desc")) {
                        bad_request(sr, "order_direction",
                                    "order_direction must be asc or desc.");
                        goto out;
                }
        }
        s = sim_query_get(&q, "version");
        if (s && parse_version(s, &v2) < 0) {
                bad_request(sr, "version", "version must be v1 or v2.");
                goto out;
        }
        floor_ms =
                a->set.retention_ms ? now_ms - a->set.retention_ms : INT64_MIN;
        lo = sim_lower_bound_created(a, floor_ms);
        s = sim_query_get(&q, "created_after");
        if (s) {
                if (eb_rfc3339_parse(s, &ca) < 0) {
                        bad_request(sr, "created_after",
                                    "created_after must be an ISO 8601 "
                                    "date-time.");
                        goto out;
                }
                if (ca < floor_ms && !a->set.kota_clamp) {
                        bad_request(sr, "created_after",
                                    "created_after is limited to the last "
                                    "30 days.");
                        goto out;
                }
                if (ca >= floor_ms) {
                        /* Exclusive, on the time as rendered: in whole
                         * seconds, the first created after ca is the
                         * next whole second. */
                        int64_t after = a->set.kota_seconds
                                                ? (ca / 1000 + 1) * 1000
                                                : ca + 1;
                        size_t c = sim_lower_bound_created(a, after);
                        if (c > lo)
                                lo = c;
                }
        }
        hi = a->nevts;
        /* Events younger than late_visibility may not be visible yet:
         * those past cut are checked one by one. */
        cut = a->set.late_ms
                      ? sim_lower_bound_created(a, now_ms - a->set.late_ms)
                      : hi;
        if (cut < lo)
                cut = lo;
        base = count_visible(a, lo, cut, v2);
        for (i = cut; i < hi; i++) {
                struct sim_event *evt = a->evts[i];
                if ((!v2 && !evt->kota_v1) || !sim_visible(evt, now_ms))
                        continue;
                if (nlate == caplate) {
                        caplate = caplate ? caplate * 2 : 64;
                        late = eb_xrealloc(late, caplate * sizeof(*late));
                }
                late[nlate++] = evt;
        }
        total = base + nlate;
        first = (size_t)((page - 1) * ps);
        if (a->set.tie_shuffle && first < total)
                all = shuffled(a, lo, base, late, nlate, v2);
        evbuffer_add(sr->body, "{\"items\":[", 10);
        for (i = first; i < total && n < (size_t)ps; i++, n++) {
                size_t k = asc ? i : total - 1 - i;
                if (n)
                        evbuffer_add(sr->body, ",", 1);
                add_item(sr,
                         all        ? all[k]
                         : k < base ? a->evts[nth_visible(a, lo, k, v2)]
                                    : late[k - base],
                         v2);
        }
        evbuffer_add_printf(sr->body,
                            "],\"page\":%lld,\"page_size\":%zu,"
                            "\"total_count\":%zu,\"has_next_page\":%s,"
                            "\"has_previous_page\":%s}",
                            (long long)page, n, total,
                            (uint64_t)(page * ps) < total ? "true" : "false",
                            page > 1 ? "true" : "false");
        sim_req_status(sr, 200, "application/json");
out:
        free(all);
        free(late);
        evhttp_clear_headers(&q);
}

static void kota_get(struct sim_req *sr, const char *id, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        const char *rawq =
                evhttp_uri_get_query(evhttp_request_get_evhttp_uri(sr->req));
        struct evkeyvalq q;
        struct sim_event *evt = sim_event_find(a, id);
        const char *s;
        int v2 = a->set.kota_v2;

        TAILQ_INIT(&q);
        if (sim_query_parse(rawq, &q) < 0) {
                bad_request(sr, "$", "Malformed query string.");
                return;
        }
        s = sim_query_get(&q, "version");
        if (s && parse_version(s, &v2) < 0) {
                bad_request(sr, "version", "version must be v1 or v2.");
                evhttp_clear_headers(&q);
                return;
        }
        if (!evt || (!v2 && !evt->kota_v1) ||
            (a->set.retention_ms &&
             evt->created_ms < now_ms - a->set.retention_ms)) {
                sim_req_problem(sr, 404, "Event not found.",
                                "\"error_code\":\"not_found\"");
                evhttp_clear_headers(&q);
                return;
        }
        add_item(sr, evt, v2);
        sim_req_status(sr, 200, "application/json");
        evhttp_clear_headers(&q);
}

void sim_kota_handle(struct sim_req *sr, const char *rest)
{
        int64_t now_ms = eb_now_ms();

        if (!strcmp(rest, "/events") || !strcmp(rest, "/events/"))
                kota_list(sr, now_ms);
        else if (!strncmp(rest, "/events/", 8) && rest[8] &&
                 !strchr(rest + 8, '/'))
                kota_get(sr, rest + 8, now_ms);
        else
                sim_req_problem(sr, 404, "Not found.",
                                "\"error_code\":\"not_found\"");
}
