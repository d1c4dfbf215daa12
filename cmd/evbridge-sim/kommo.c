/*
 * kommo.c: Kommo (amoCRM) GET /api/v4/events, GET /api/v4/events/{id},
 * GET /api/v4/events/types, and the form-encoded account webhook body.
 *
 * Behaviour follows providers.md section 1: Bearer auth, page + limit
 * (limit above the maximum is a 422 "Limit 250 per page"), HAL envelope,
 * 204 with no body when nothing matches (also for an unknown id), newest
 * first, value_before/value_after shaped per type, with= adding names to
 * _embedded.entity.
 *
 * Choices where the docs are silent (documented in docs/simulator.md):
 * filter[created_at][from]/[to] are inclusive, the single-value form is
 * strictly after; ties on created_at are ordered by creation (newest
 * first); the default limit is 50.
 */
#include "sim.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "eb_time.h"
#include "eb_util.h"

enum { K_LEAD = 0, K_CONTACT, K_COMPANY, K_TASK, K_NKINDS };

static const char *const kind_name[K_NKINDS] = {"lead", "contact", "company",
                                                "task"};
static const char *const kind_plural[K_NKINDS] = {"leads", "contacts",
                                                  "companies", "tasks"};

/* entity state slots (sim_entity.iv) */
#define IV_STATUS   0
#define IV_PIPELINE 1
#define IV_RESP     2
#define IV_PRICE    3
#define IV_CREATOR  4
#define IV_MODIFIED 5
#define IV_DEADLINE 6
#define IV_TTYPE    7

static const int64_t pipelines[2] = {7000001, 7000002};
static const int64_t statuses[2][5] = {
        {5200001, 5200002, 5200003, 142, 143},
        {5300001, 5300002, 5300003, 142, 143},
};

static const char *const tags[] = {"vip",     "repeat request", "webinar",
                                   "partner", "cold",           "inbound"};

void sim_kommo_init(struct sim_account *a)
{
        struct sim_rng *r = &a->gen;
        size_t i;
        static const int kw[K_NKINDS] = {50, 25, 15, 10};

        a->kommo_account_id =
                30000000 +
                (int64_t)(sim_hash3(a->sim->seed, a->name, 1) % 1000000);
        a->nusers = 6;
        a->kusers = eb_xcalloc(a->nusers, sizeof(*a->kusers));
        a->kusers[0] = 0; /* system / robot */
        for (i = 1; i < a->nusers; i++)
                a->kusers[i] =
                        6000000 + (int64_t)i * 17 +
                        (int64_t)(sim_hash3(a->sim->seed, a->name, 2) % 1000) *
                                100;
        a->nents = (size_t)a->set.entities;
        a->ents = eb_xcalloc(a->nents, sizeof(*a->ents));
        for (i = 0; i < a->nents; i++) {
                struct sim_entity *e = &a->ents[i];
                int p = (int)sim_rng_below(r, 2);

                e->kind = (int)sim_rng_weighted(r, kw, K_NKINDS);
                e->nid = 20000000 + (int64_t)i * 131 +
                         (int64_t)sim_rng_below(r, 100);
                e->id = eb_xasprintf("%lld", (long long)e->nid);
                switch (e->kind) {
                case K_LEAD:
                        e->name = eb_xasprintf(
                                "%s deal #%lld",
                                sim_pick(r, sim_words, sim_words_n),
                                (long long)(i + 1));
                        break;
                case K_COMPANY:
                        e->name = eb_xasprintf(
                                "%s %s", sim_pick(r, sim_words, sim_words_n),
                                sim_rng_below(r, 2) ? "Ltd" : "Inc");
                        break;
                case K_TASK:
                        e->name = eb_xasprintf("Follow up #%lld",
                                               (long long)(i + 1));
                        break;
                default:
                        e->name = eb_xasprintf(
                                "%s %s",
                                sim_pick(r, sim_first_names, sim_first_names_n),
                                sim_pick(r, sim_last_names, sim_last_names_n));
                        break;
                }
                e->iv[IV_PIPELINE] = pipelines[p];
                e->iv[IV_STATUS] = statuses[p][0];
                e->iv[IV_RESP] = a->kusers[1 + sim_rng_below(r, a->nusers - 1)];
                e->iv[IV_PRICE] = 100 * sim_rng_range(r, 1, 500);
                e->iv[IV_TTYPE] = 1 + (int64_t)sim_rng_below(r, 3);
        }
}

/* ULID-like id: 10 chars of ms time, 16 random, Crockford base32 lower. */
static char *kommo_id(struct sim_account *a, int64_t ms)
{
        char *s = eb_xmalloc(27);
        uint64_t t = (uint64_t)ms;
        int i;

        for (i = 9; i >= 0; i--) {
                s[i] = sim_crockford[t & 31];
                t >>= 5;
        }
        for (i = 10; i < 26; i++)
                s[i] = sim_crockford[sim_rng_below(&a->gen, 32)];
        s[26] = '\0';
        return s;
}

static json_t *note_value(struct sim_account *a)
{
        return json_pack(
                "[{s:{s:I}}]", "note", "id",
                (json_int_t)(40000000 + sim_rng_below(&a->gen, 9000000)));
}

/* An integer @p field of @p key changes from @p *cur to @p nv: one
 * value_before and one value_after entry. */
static void change_int(json_t *vb, json_t *va, const char *key,
                       const char *field, int64_t *cur, int64_t nv)
{
        json_array_append_new(
                vb, json_pack("{s:{s:I}}", key, field, (json_int_t)*cur));
        json_array_append_new(
                va, json_pack("{s:{s:I}}", key, field, (json_int_t)nv));
        *cur = nv;
}

/* The same for a string; @p nv (owned) replaces @p *cur. */
static void change_str(json_t *vb, json_t *va, const char *key,
                       const char *field, char **cur, char *nv)
{
        json_array_append_new(vb, json_pack("{s:{s:s}}", key, field, *cur));
        json_array_append_new(va, json_pack("{s:{s:s}}", key, field, nv));
        free(*cur);
        *cur = nv;
}

/* Pick the next type for entity @p e and fill value_after/value_before;
 * updates the entity state. @returns static type name (or built in buf). */
static const char *kommo_pick(struct sim_account *a, struct sim_entity *e,
                              json_t *va, json_t *vb, char *buf, size_t bufsz,
                              int64_t ms)
{
        struct sim_rng *r = &a->gen;
        const char *k = kind_name[e->kind];
        static const char *const lead_t[] = {"lead_status_changed",
                                             "entity_responsible_changed",
                                             "custom_field_value_changed",
                                             "sale_field_changed",
                                             "name_field_changed",
                                             "entity_tag_added",
                                             "entity_tag_deleted",
                                             "common_note_added",
                                             "incoming_chat_message",
                                             "outgoing_chat_message",
                                             "incoming_call",
                                             "outgoing_call",
                                             "lead_linked",
                                             "lead_deleted"};
        static const int lead_w[] = {30, 8, 10, 8, 5, 5, 2,
                                     8,  6, 4,  3, 3, 2, 2};
        static const char *const contact_t[] = {"custom_field_value_changed",
                                                "name_field_changed",
                                                "entity_responsible_changed",
                                                "incoming_call",
                                                "outgoing_call",
                                                "incoming_sms",
                                                "incoming_chat_message",
                                                "entity_tag_added",
                                                "common_note_added",
                                                "contact_linked",
                                                "contact_deleted"};
        static const int contact_w[] = {10, 5, 5, 8, 6, 3, 5, 3, 6, 3, 2};
        static const char *const company_t[] = {"name_field_changed",
                                                "custom_field_value_changed",
                                                "entity_responsible_changed",
                                                "common_note_added",
                                                "company_linked",
                                                "company_deleted"};
        static const int company_w[] = {5, 8, 4, 5, 2, 1};
        static const char *const task_t[] = {
                "task_text_changed", "task_deadline_changed",
                "task_type_changed", "task_completed",
                "task_result_added", "task_deleted"};
        static const int task_w[] = {4, 6, 3, 5, 3, 1};
        const char *t;

        if (!e->created || e->deleted) {
                int restore = e->deleted && e->kind != K_TASK;

                snprintf(buf, bufsz, "%s_%s", k,
                         restore ? "restored" : "added");
                if (!restore && e->kind != K_TASK) {
                        json_t *n = note_value(a);
                        json_array_extend(va, n);
                        json_decref(n);
                }
                if (!e->created) {
                        e->created = 1;
                        e->created_ms = ms;
                        e->iv[IV_CREATOR] =
                                a->kusers[sim_rng_below(r, a->nusers)];
                }
                e->deleted = 0;
                return buf;
        }
        switch (e->kind) {
        case K_LEAD:
                t = lead_t[sim_rng_weighted(r, lead_w, 14)];
                break;
        case K_CONTACT:
                t = contact_t[sim_rng_weighted(r, contact_w, 11)];
                break;
        case K_COMPANY:
                t = company_t[sim_rng_weighted(r, company_w, 6)];
                break;
        default:
                t = task_t[sim_rng_weighted(r, task_w, 6)];
                break;
        }
        if (!strcmp(t, "lead_status_changed")) {
                int p = e->iv[IV_PIPELINE] == pipelines[0] ? 0 : 1;
                int np = sim_rng_below(r, 10) == 0 ? 1 - p : p;
                int64_t ns = statuses[np][sim_rng_below(r, 5)];

                if (ns == e->iv[IV_STATUS])
                        ns = statuses[np][(sim_rng_below(r, 4) + 1) % 5];
                json_array_append_new(
                        vb,
                        json_pack("{s:{s:I,s:I}}", "lead_status", "id",
                                  (json_int_t)e->iv[IV_STATUS], "pipeline_id",
                                  (json_int_t)e->iv[IV_PIPELINE]));
                json_array_append_new(
                        va, json_pack("{s:{s:I,s:I}}", "lead_status", "id",
                                      (json_int_t)ns, "pipeline_id",
                                      (json_int_t)pipelines[np]));
                e->iv[IV_STATUS] = ns;
                e->iv[IV_PIPELINE] = pipelines[np];
        } else if (!strcmp(t, "entity_responsible_changed")) {
                int64_t nu = a->kusers[1 + sim_rng_below(r, a->nusers - 1)];
                change_int(vb, va, "responsible_user", "id", &e->iv[IV_RESP],
                           nu);
        } else if (!strcmp(t, "custom_field_value_changed")) {
                int64_t fid = 500000 + (int64_t)sim_rng_below(r, 5);
                char *txt =
                        eb_xasprintf("%s", sim_pick(r, sim_words, sim_words_n));
                json_array_append_new(va, json_pack("{s:{s:I,s:i,s:n,s:s}}",
                                                    "custom_field_value",
                                                    "field_id", (json_int_t)fid,
                                                    "field_type", 1, "enum_id",
                                                    "text", txt));
                free(txt);
        } else if (!strcmp(t, "sale_field_changed")) {
                int64_t np = 100 * sim_rng_range(r, 1, 900);
                change_int(vb, va, "sale_field_value", "sale", &e->iv[IV_PRICE],
                           np);
        } else if (!strcmp(t, "name_field_changed")) {
                char *nn = eb_xasprintf(
                        "%s %s", sim_pick(r, sim_words, sim_words_n),
                        sim_pick(r, sim_last_names, sim_last_names_n));
                change_str(vb, va, "name_field_value", "name", &e->name, nn);
        } else if (!strcmp(t, "entity_tag_added") ||
                   !strcmp(t, "entity_tag_deleted")) {
                json_t *dst = t[11] == 'a' ? va : vb;
                size_t n = 1 + sim_rng_below(r, 2), i;
                for (i = 0; i < n; i++)
                        json_array_append_new(
                                dst, json_pack("{s:{s:s}}", "tag", "name",
                                               tags[sim_rng_below(r, 6)]));
        } else if (!strcmp(t, "incoming_chat_message") ||
                   !strcmp(t, "outgoing_chat_message")) {
                char *u = sim_rand_uuid(r);
                json_array_append_new(
                        va, json_pack("{s:{s:s}}", "message", "id", u));
                free(u);
        } else if (strstr(t, "_linked")) {
                static const char *const lt[] = {"contact", "company", "lead"};
                json_array_append_new(
                        va, json_pack("{s:{s:{s:s,s:I}}}", "link", "entity",
                                      "type", lt[sim_rng_below(r, 3)], "id",
                                      (json_int_t)(20000000 +
                                                   sim_rng_below(r, 100000))));
        } else if (!strcmp(t, "task_text_changed")) {
                json_array_append_new(
                        vb, json_pack("{s:{s:s}}", "task", "text", e->name));
                free(e->name);
                e->name = eb_xasprintf("Call %s", sim_pick(r, sim_first_names,
                                                           sim_first_names_n));
                json_array_append_new(
                        va, json_pack("{s:{s:s}}", "task", "text", e->name));
        } else if (!strcmp(t, "task_deadline_changed")) {
                int64_t nd = ms / 1000 + sim_rng_range(r, 3600, 7 * 86400);
                change_int(vb, va, "task_deadline", "timestamp",
                           &e->iv[IV_DEADLINE], nd);
        } else if (!strcmp(t, "task_type_changed")) {
                int64_t nt = e->iv[IV_TTYPE] % 3 + 1;
                change_int(vb, va, "task_type", "id", &e->iv[IV_TTYPE], nt);
        } else if (strstr(t, "_deleted") && strncmp(t, "entity_", 7)) {
                e->deleted = 1;
        } else if (!strcmp(t, "task_completed")) {
                /* empty value arrays */
        } else {
                /* notes, calls, sms, task results: a note reference */
                json_t *n = note_value(a);
                json_array_extend(va, n);
                json_decref(n);
        }
        return t;
}

/* ---- webhook form body ----------------------------------------------------
 */

static void form_enc(struct evbuffer *b, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        const unsigned char *p = (const unsigned char *)s;

        for (; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
                    *p == '.' || *p == '~')
                        evbuffer_add(b, p, 1);
                else if (*p == ' ')
                        evbuffer_add(b, "+", 1);
                else
                        evbuffer_add_printf(b, "%%%c%c", hex[*p >> 4],
                                            hex[*p & 15]);
        }
}

static void form_kv(struct evbuffer *b, const char *pre, const char *field,
                    const char *val)
{
        char key[160];

        if (evbuffer_get_length(b))
                evbuffer_add(b, "&", 1);
        snprintf(key, sizeof(key), "%s[%s]", pre, field);
        form_enc(b, key);
        evbuffer_add(b, "=", 1);
        form_enc(b, val);
}

static void form_ki(struct evbuffer *b, const char *pre, const char *field,
                    int64_t v)
{
        char num[32];

        snprintf(num, sizeof(num), "%lld", (long long)v);
        form_kv(b, pre, field, num);
}

/* Map an event to a webhook action; NULL when no webhook exists for it. */
static const char *hook_action(const struct sim_entity *e, const char *type)
{
        if (e->kind == K_TASK)
                return NULL;
        if (strstr(type, "_added") && !strstr(type, "tag") &&
            !strstr(type, "note"))
                return "add";
        if (strstr(type, "_restored"))
                return "restore";
        if (strstr(type, "_deleted") && strncmp(type, "entity_", 7))
                return "delete";
        if (!strcmp(type, "lead_status_changed"))
                return "status";
        if (!strcmp(type, "entity_responsible_changed"))
                return "responsible";
        if (!strcmp(type, "name_field_changed") ||
            !strcmp(type, "sale_field_changed") ||
            !strcmp(type, "custom_field_value_changed") ||
            !strncmp(type, "entity_tag_", 11))
                return "update";
        return NULL;
}

static char *kommo_hook(struct sim_account *a, struct sim_entity *e,
                        const char *type, const char *action, int64_t ms,
                        int64_t modifier, int64_t old_status,
                        int64_t old_pipeline, int64_t old_resp, size_t *lenp)
{
        struct evbuffer *b = evbuffer_new();
        char pre[64];
        int64_t sec = ms / 1000;
        size_t len;
        char *out;

        snprintf(pre, sizeof(pre), "%s[%s][0]", kind_plural[e->kind], action);
        form_ki(b, pre, "id", e->nid);
        if (!strcmp(action, "delete")) {
                if (e->kind == K_LEAD) {
                        form_ki(b, pre, "status_id", e->iv[IV_STATUS]);
                        form_ki(b, pre, "pipeline_id", e->iv[IV_PIPELINE]);
                } else {
                        form_kv(b, pre, "type", kind_name[e->kind]);
                }
        } else {
                form_kv(b, pre, "name", e->name);
                if (e->kind == K_LEAD) {
                        form_ki(b, pre, "status_id", e->iv[IV_STATUS]);
                        if (!strcmp(action, "status"))
                                form_ki(b, pre, "old_status_id", old_status);
                        form_ki(b, pre, "price", e->iv[IV_PRICE]);
                } else {
                        form_kv(b, pre, "type", kind_name[e->kind]);
                }
                form_ki(b, pre, "responsible_user_id", e->iv[IV_RESP]);
                if (!strcmp(action, "responsible"))
                        form_ki(b, pre, "old_responsible_user_id", old_resp);
                form_ki(b, pre, "date_create", e->created_ms / 1000);
                form_ki(b, pre, "last_modified", sec);
                form_ki(b, pre, "created_user_id", e->iv[IV_CREATOR]);
                form_ki(b, pre, "modified_user_id", modifier);
                if (e->kind == K_LEAD) {
                        form_ki(b, pre, "pipeline_id", e->iv[IV_PIPELINE]);
                        if (!strcmp(action, "status"))
                                form_ki(b, pre, "old_pipeline_id",
                                        old_pipeline);
                }
                form_ki(b, pre, "account_id", a->kommo_account_id);
                form_ki(b, pre, "created_at", e->created_ms / 1000);
                form_ki(b, pre, "updated_at", sec);
        }
        (void)type;
        form_kv(b, "account", "subdomain", a->name);
        form_ki(b, "account", "id", a->kommo_account_id);
        {
                char *self = eb_xasprintf("%s", a->base_url);
                form_kv(b, "account[_links]", "self", self);
                free(self);
        }
        len = evbuffer_get_length(b);
        out = eb_xmalloc(len + 1);
        evbuffer_remove(b, out, len);
        out[len] = '\0';
        evbuffer_free(b);
        *lenp = len;
        return out;
}

/* ---- generation ---------------------------------------------------------- */

struct sim_event *sim_kommo_generate(struct sim_account *a, int64_t ms)
{
        struct sim_rng *r = &a->gen;
        struct sim_entity *e;
        struct sim_event *evt;
        struct sim_version *v;
        json_t *va = json_array(), *vb = json_array(), *root;
        char tbuf[64], *dump, *json;
        const char *type, *action;
        int64_t old_status, old_pipeline, old_resp, created_by;
        size_t dlen, name_at;
        struct evbuffer *b;

        if (!a->nents) {
                json_decref(va);
                json_decref(vb);
                return NULL;
        }
        e = &a->ents[sim_rng_below(r, a->nents)];
        old_status = e->iv[IV_STATUS];
        old_pipeline = e->iv[IV_PIPELINE];
        old_resp = e->iv[IV_RESP];
        type = kommo_pick(a, e, va, vb, tbuf, sizeof(tbuf), ms);
        created_by = sim_rng_below(r, 5) == 0
                             ? 0
                             : a->kusers[1 + sim_rng_below(r, a->nusers - 1)];
        evt = sim_event_new(a, kommo_id(a, ms), ms);
        evt->type = eb_xstrdup(type);
        evt->etype = kind_name[e->kind];
        evt->eid = eb_xstrdup(e->id);
        evt->ent = e;
        evt->k_entity_id = e->nid;
        evt->k_created_by = created_by;

        {
                char *self = eb_xasprintf("%s/api/v4/events/%s", a->base_url,
                                          evt->id);
                root = json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:o,s:o,s:I,"
                                 "s:{s:{s:s}}}",
                                 "id", evt->id, "type", type, "entity_id",
                                 (json_int_t)e->nid, "entity_type", evt->etype,
                                 "created_by", (json_int_t)created_by,
                                 "created_at", (json_int_t)(ms / 1000),
                                 "value_after", va, "value_before", vb,
                                 "account_id", (json_int_t)a->kommo_account_id,
                                 "_links", "self", "href", self);
                free(self);
        }
        dump = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        dlen = strlen(dump);
        b = evbuffer_new();
        evbuffer_add(b, dump, dlen - 1); /* without the closing brace */
        free(dump);
        evbuffer_add_printf(b, ",\"_embedded\":{\"entity\":{\"id\":%lld",
                            (long long)e->nid);
        name_at = evbuffer_get_length(b);
        evbuffer_add_printf(b,
                            ",\"_links\":{\"self\":{\"href\":\"%s/api/v4/%s/"
                            "%lld\"}}}}}",
                            a->base_url, kind_plural[e->kind],
                            (long long)e->nid);
        dlen = evbuffer_get_length(b);
        json = eb_xmalloc(dlen + 1);
        evbuffer_remove(b, json, dlen);
        json[dlen] = '\0';
        evbuffer_free(b);

        action = hook_action(e, type);
        if (action)
                evt->hook = kommo_hook(a, e, type, action, ms,
                                       created_by ? created_by : e->iv[IV_RESP],
                                       old_status, old_pipeline, old_resp,
                                       &evt->hook_len);
        v = sim_version_add(evt, json, dlen, NULL, 0, NULL, ms);
        v->name_at = name_at;
        sim_event_publish(evt);
        e->last = evt;
        return evt;
}

/* ---- HTTP -----------------------------------------------------------------
 */

#define W_LEAD     0x01
#define W_CONTACT  0x02
#define W_COMPANY  0x04
#define W_CUSTOMER 0x08

#define MAXV 64

struct kfilter {
        int64_t lo_ms, hi_ms; /* created window [lo, hi) */
        const char *types[MAXV];
        size_t ntypes;
        const char *ents[MAXV];
        size_t nents;
        int64_t eids[MAXV];
        size_t neids;
        int64_t cbs[MAXV];
        size_t ncbs;
        const char *ids[MAXV];
        size_t nids;
        int with;
        char *bufs[4 * MAXV]; /* owned split copies */
        size_t nbufs;
};

static void kf_fini(struct kfilter *f)
{
        size_t i;

        for (i = 0; i < f->nbufs; i++)
                free(f->bufs[i]);
}

/* Does key equal "filter[name]", "filter[name][]" or "filter[name][N]"? */
static int filter_key(const char *key, const char *name)
{
        size_t n = strlen(name);
        const char *p;

        if (strncmp(key, "filter[", 7) || strncmp(key + 7, name, n) ||
            key[7 + n] != ']')
                return 0;
        p = key + 8 + n;
        if (!*p)
                return 1;
        if (*p != '[')
                return 0;
        p++;
        while (*p >= '0' && *p <= '9')
                p++;
        return p[0] == ']' && !p[1];
}

/* Split a comma list into @p out (borrowed pointers into an owned copy). */
static int add_values(struct kfilter *f, const char *val, const char **out,
                      size_t *n)
{
        char *copy, *save = NULL, *tok;

        if (f->nbufs >= sizeof(f->bufs) / sizeof(f->bufs[0]))
                return -E2BIG;
        copy = eb_xstrdup(val);
        f->bufs[f->nbufs++] = copy;
        for (tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                if (*n >= MAXV)
                        return -E2BIG;
                out[(*n)++] = tok;
        }
        return 0;
}

static int add_ints(struct kfilter *f, const char *val, int64_t *out, size_t *n)
{
        const char *tmp[MAXV];
        size_t cnt = 0, i;
        int rc = add_values(f, val, tmp, &cnt);

        if (rc < 0)
                return rc;
        for (i = 0; i < cnt; i++) {
                if (*n >= MAXV || eb_parse_i64(tmp[i], &out[*n]) < 0)
                        return -EINVAL;
                (*n)++;
        }
        return 0;
}

static void validation_error(struct sim_req *sr, const char *path,
                             const char *detail)
{
        struct evbuffer *x = evbuffer_new();
        char *extra;
        size_t len;

        evbuffer_add_printf(x, "\"validation-errors\":[{\"request_id\":\"0\","
                               "\"errors\":[{\"code\":\"NotSupportedChoice\","
                               "\"path\":");
        sim_json_str(x, path);
        evbuffer_add(x, ",\"detail\":", 10);
        sim_json_str(x, detail);
        evbuffer_add(x, "}]}]", 4);
        len = evbuffer_get_length(x);
        extra = eb_xmalloc(len + 1);
        evbuffer_remove(x, extra, len);
        extra[len] = '\0';
        evbuffer_free(x);
        sim_req_problem(sr, 400, "Request validation failed", extra);
        free(extra);
}

static int parse_with(const char *v)
{
        int w = 0;

        if (strstr(v, "lead_name"))
                w |= W_LEAD;
        if (strstr(v, "contact_name"))
                w |= W_CONTACT;
        if (strstr(v, "company_name"))
                w |= W_COMPANY;
        if (strstr(v, "customer_name"))
                w |= W_CUSTOMER;
        return w;
}

static int valid_entity(const char *s)
{
        static const char *const ok[] = {"lead", "contact", "company",
                                         "customer", "task"};
        size_t i;

        for (i = 0; i < 5; i++)
                if (!strcmp(s, ok[i]))
                        return 1;
        if (!strncmp(s, "catalog_", 8) && s[8]) {
                for (s += 8; *s; s++)
                        if (*s < '0' || *s > '9')
                                return 0;
                return 1;
        }
        return 0;
}

/* "filter[name][]" or "filter[name][N]": the array form. */
static int array_form(const char *key)
{
        const char *p = strchr(key + 7, ']');

        return p && p[1] == '[';
}

/* @returns 0, or -1 after answering the request with an error. */
static int kf_parse(struct sim_req *sr, const struct evkeyvalq *q,
                    struct kfilter *f, int64_t now_ms)
{
        const struct evkeyval *kv;
        struct sim_account *a = sr->acct;
        int64_t v;

        f->lo_ms =
                a->set.retention_ms ? now_ms - a->set.retention_ms : INT64_MIN;
        f->hi_ms = INT64_MAX;
        TAILQ_FOREACH(kv, q, next)
        {
                const char *k = kv->key, *val = kv->value;
                int rc = 0;

                if (!strncmp(k, "filter[", 7) && !*val) {
                        continue; /* empty filters are ignored */
                } else if (!a->set.kommo_array_filters &&
                           strncmp(k, "filter[created_at]", 18) &&
                           !strncmp(k, "filter[", 7) && array_form(k)) {
                        /* The reference page documents only the comma
                         * form ("a string of types divided by commas"). */
                        validation_error(sr, k,
                                         "This value should be of type "
                                         "string: pass several values "
                                         "divided by commas.");
                        return -1;
                } else if (!strcmp(k, "with")) {
                        f->with |= parse_with(val);
                } else if (!strcmp(k, "filter[created_at]")) {
                        if (eb_parse_i64(val, &v) < 0) {
                                validation_error(sr, "filter.created_at",
                                                 "This value should be a "
                                                 "valid timestamp.");
                                return -1;
                        }
                        if ((v + 1) * 1000 > f->lo_ms)
                                f->lo_ms = (v + 1) * 1000;
                } else if (!strcmp(k, "filter[created_at][from]") ||
                           !strcmp(k, "filter[created_at][to]")) {
                        int from = k[19] == 'f';
                        if (eb_parse_i64(val, &v) < 0 || v < 0 ||
                            v > 100000000000LL) {
                                validation_error(sr,
                                                 from ? "filter.created_at.from"
                                                      : "filter.created_at.to",
                                                 "This value should be a "
                                                 "valid timestamp.");
                                return -1;
                        }
                        if (from && v * 1000 > f->lo_ms)
                                f->lo_ms = v * 1000;
                        if (!from && (v + 1) * 1000 < f->hi_ms)
                                f->hi_ms = (v + 1) * 1000;
                } else if (filter_key(k, "type")) {
                        rc = add_values(f, val, f->types, &f->ntypes);
                } else if (filter_key(k, "entity")) {
                        size_t before = f->nents, i;
                        rc = add_values(f, val, f->ents, &f->nents);
                        for (i = before; rc == 0 && i < f->nents; i++) {
                                if (!valid_entity(f->ents[i])) {
                                        validation_error(
                                                sr, "filter.entity",
                                                "The value you selected is "
                                                "not a valid choice.");
                                        return -1;
                                }
                        }
                } else if (filter_key(k, "entity_id")) {
                        rc = add_ints(f, val, f->eids, &f->neids);
                } else if (filter_key(k, "created_by")) {
                        rc = add_ints(f, val, f->cbs, &f->ncbs);
                } else if (filter_key(k, "id")) {
                        rc = add_values(f, val, f->ids, &f->nids);
                } else if (!strncmp(k, "filter[value_before]", 20) ||
                           !strncmp(k, "filter[value_after]", 19)) {
                        validation_error(sr, "filter.value_after",
                                         "value_before/value_after filters "
                                         "are not supported by the "
                                         "simulator");
                        return -1;
                } else if (!strncmp(k, "filter[", 7)) {
                        validation_error(sr, k, "Unknown filter.");
                        return -1;
                }
                if (rc < 0) {
                        validation_error(sr, k,
                                         "Invalid value or too many values.");
                        return -1;
                }
        }
        if (f->neids && f->nents != 1) {
                validation_error(sr, "filter.entity_id",
                                 "filter[entity_id] needs exactly one "
                                 "filter[entity] value.");
                return -1;
        }
        if (f->neids > 10 || f->ncbs > 10) {
                validation_error(sr,
                                 f->neids > 10 ? "filter.entity_id"
                                               : "filter.created_by",
                                 "This collection should contain 10 "
                                 "elements or less.");
                return -1;
        }
        return 0;
}

static int kf_has_attr_filters(const struct kfilter *f)
{
        return f->ntypes || f->nents || f->neids || f->ncbs || f->nids;
}

static int kf_match(const struct kfilter *f, const struct sim_event *evt)
{
        size_t i;
        int ok;

        if (f->ntypes) {
                for (ok = 0, i = 0; i < f->ntypes && !ok; i++)
                        ok = !strcmp(f->types[i], evt->type);
                if (!ok)
                        return 0;
        }
        if (f->nents) {
                for (ok = 0, i = 0; i < f->nents && !ok; i++)
                        ok = !strcmp(f->ents[i], evt->etype);
                if (!ok)
                        return 0;
        }
        if (f->neids) {
                for (ok = 0, i = 0; i < f->neids && !ok; i++)
                        ok = f->eids[i] == evt->k_entity_id;
                if (!ok)
                        return 0;
        }
        if (f->ncbs) {
                for (ok = 0, i = 0; i < f->ncbs && !ok; i++)
                        ok = f->cbs[i] == evt->k_created_by;
                if (!ok)
                        return 0;
        }
        if (f->nids) {
                for (ok = 0, i = 0; i < f->nids && !ok; i++)
                        ok = !strcmp(f->ids[i], evt->id);
                if (!ok)
                        return 0;
        }
        return 1;
}

static int with_bit(const struct sim_event *evt)
{
        switch (evt->ent ? evt->ent->kind : -1) {
        case K_LEAD:
                return W_LEAD;
        case K_CONTACT:
                return W_CONTACT;
        case K_COMPANY:
                return W_COMPANY;
        default:
                return 0;
        }
}

static void add_event(struct sim_req *sr, struct sim_event *evt, int with)
{
        struct sim_version *v = evt->cur;

        if (with & with_bit(evt)) {
                evbuffer_add(sr->body, v->json, v->name_at);
                evbuffer_add(sr->body, ",\"name\":", 8);
                sim_json_str(sr->body, evt->ent->name);
                evbuffer_add(sr->body, v->json + v->name_at,
                             v->len - v->name_at);
        } else {
                evbuffer_add(sr->body, v->json, v->len);
        }
        sim_req_served(sr, v);
}

/* Query without page/limit, for self and next links. */
static void add_href(struct evbuffer *b, struct sim_account *a,
                     const char *rawq, int64_t limit, int64_t page)
{
        char *copy = eb_xstrdup(rawq ? rawq : ""), *save = NULL, *tok;

        evbuffer_add_printf(b, "%s/api/v4/events?", a->base_url);
        for (tok = strtok_r(copy, "&", &save); tok;
             tok = strtok_r(NULL, "&", &save)) {
                if (!strncmp(tok, "page=", 5) || !strncmp(tok, "limit=", 6))
                        continue;
                /* raw query: already encoded; keep JSON-safe */
                {
                        char *p;
                        for (p = tok; *p; p++)
                                if (*p == '"' || *p == '\\' ||
                                    (unsigned char)*p < 0x20)
                                        *p = '_';
                }
                evbuffer_add_printf(b, "%s&", tok);
        }
        free(copy);
        evbuffer_add_printf(b, "limit=%lld&page=%lld", (long long)limit,
                            (long long)page);
}

static void kommo_list(struct sim_req *sr, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(sr->req);
        const char *rawq = evhttp_uri_get_query(uri);
        struct evkeyvalq q;
        struct kfilter f;
        const char *s;
        int64_t page = 1, limit = 50, skip;
        size_t lo, hi, i, taken = 0;
        int has_next = 0, any = 0;
        struct sim_event **pick = NULL, **all = NULL;
        size_t nall = 0, all_off = 0;

        TAILQ_INIT(&q);
        memset(&f, 0, sizeof(f));
        if (sim_query_parse(rawq, &q) < 0) {
                sim_req_problem(sr, 400, "Malformed query string", NULL);
                goto out;
        }
        s = sim_query_get(&q, "page");
        if (s && (eb_parse_i64(s, &page) < 0 || page < 1)) {
                validation_error(sr, "page",
                                 "This value should be greater than 0.");
                goto out;
        }
        s = sim_query_get(&q, "limit");
        if (s && (eb_parse_i64(s, &limit) < 0 || limit < 1)) {
                validation_error(sr, "limit",
                                 "This value should be greater than 0.");
                goto out;
        }
        if (limit > a->set.kommo_max_limit) {
                char d[64];
                snprintf(d, sizeof(d), "Limit %d per page",
                         a->set.kommo_max_limit);
                sim_req_problem(sr, 422, d, NULL);
                goto out;
        }
        if (page > 1000000000) {
                sim_req_status(sr, 204, NULL);
                goto out;
        }
        if (kf_parse(sr, &q, &f, now_ms) < 0)
                goto out;
        lo = sim_lower_bound_created(a, f.lo_ms);
        hi = f.hi_ms == INT64_MAX ? a->nevts
                                  : sim_lower_bound_created(a, f.hi_ms);
        skip = (page - 1) * limit;
        pick = eb_xcalloc((size_t)limit, sizeof(*pick));
        if (hi > lo && !kf_has_attr_filters(&f) &&
            (!a->set.late_ms ||
             hi <= sim_lower_bound_created(a, now_ms - a->set.late_ms))) {
                /* Every event of the window matches and is visible: the
                 * sequence (newest first) is evts[hi-1] .. evts[lo]. Take
                 * the slice, widened to whole seconds for the shuffle. */
                size_t total = hi - lo, b, e;
                if ((uint64_t)skip < total) {
                        b = (size_t)skip;
                        e = b + (size_t)limit < total ? b + (size_t)limit
                                                      : total;
                        while (b > 0 &&
                               a->evts[hi - 1 - b]->created_ms / 1000 ==
                                       a->evts[hi - b]->created_ms / 1000)
                                b--;
                        while (e < total &&
                               a->evts[hi - e]->created_ms / 1000 ==
                                       a->evts[hi - 1 - e]->created_ms / 1000)
                                e++;
                        all = eb_xcalloc(e - b, sizeof(*all));
                        for (i = b; i < e; i++)
                                all[nall++] = a->evts[hi - 1 - i];
                        all_off = b;
                        has_next = (uint64_t)(skip + limit) < total;
                }
        } else if (hi > lo) {
                size_t cap = 0;
                for (i = hi; i > lo; i--) {
                        struct sim_event *evt = a->evts[i - 1];
                        if (!kf_match(&f, evt) || !sim_visible(evt, now_ms))
                                continue;
                        if (nall == cap) {
                                cap = cap ? cap * 2 : 256;
                                all = eb_xrealloc(all, cap * sizeof(*all));
                        }
                        all[nall++] = evt;
                }
                has_next = (uint64_t)(skip + limit) < nall;
        }
        if (nall && a->set.tie_shuffle)
                sim_shuffle_ties(a, all, nall, 1000);
        for (i = 0; i < (size_t)limit; i++) {
                size_t pos = (size_t)skip + i;
                if (pos < all_off || pos - all_off >= nall)
                        break;
                pick[taken++] = all[pos - all_off];
        }
        if (!taken) {
                sim_req_status(sr, 204, NULL);
                goto out;
        }
        evbuffer_expand(sr->body, taken * (pick[0]->cur->len + 16) + 512);
        evbuffer_add_printf(sr->body,
                            "{\"_page\":%lld,\"_links\":{\"self\":"
                            "{\"href\":\"",
                            (long long)page);
        add_href(sr->body, a, rawq, limit, page);
        evbuffer_add(sr->body, "\"}", 2);
        if (has_next) {
                evbuffer_add(sr->body, ",\"next\":{\"href\":\"", 17);
                add_href(sr->body, a, rawq, limit, page + 1);
                evbuffer_add(sr->body, "\"}", 2);
        }
        evbuffer_add(sr->body, "},\"_embedded\":{\"events\":[", 25);
        for (i = 0; i < taken; i++) {
                if (any)
                        evbuffer_add(sr->body, ",", 1);
                add_event(sr, pick[i], f.with);
                any = 1;
        }
        evbuffer_add(sr->body, "]}}", 3);
        sim_req_status(sr, 200, "application/hal+json");
out:
        free(pick);
        free(all);
        kf_fini(&f);
        evhttp_clear_headers(&q);
}

static void kommo_get(struct sim_req *sr, const char *id, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        const char *rawq =
                evhttp_uri_get_query(evhttp_request_get_evhttp_uri(sr->req));
        struct evkeyvalq q;
        struct sim_event *evt = sim_event_find(a, id);
        const char *w;

        TAILQ_INIT(&q);
        if (sim_query_parse(rawq, &q) < 0) {
                sim_req_problem(sr, 400, "Malformed query string", NULL);
                return;
        }
        if (!evt || (a->set.retention_ms &&
                     evt->created_ms < now_ms - a->set.retention_ms)) {
                /* Kommo answers an unknown id with 204 and no body. */
                sim_req_status(sr, 204, NULL);
                evhttp_clear_headers(&q);
                return;
        }
        w = sim_query_get(&q, "with");
        add_event(sr, evt, w ? parse_with(w) : 0);
        sim_req_status(sr, 200, "application/hal+json");
        evhttp_clear_headers(&q);
}

static void kommo_types(struct sim_req *sr)
{
        static const char *const types[] = {"lead_added",
                                            "lead_deleted",
                                            "lead_restored",
                                            "lead_status_changed",
                                            "lead_linked",
                                            "lead_unlinked",
                                            "contact_added",
                                            "contact_deleted",
                                            "contact_restored",
                                            "contact_linked",
                                            "contact_unlinked",
                                            "company_added",
                                            "company_deleted",
                                            "company_restored",
                                            "company_linked",
                                            "company_unlinked",
                                            "task_added",
                                            "task_deleted",
                                            "task_completed",
                                            "task_type_changed",
                                            "task_text_changed",
                                            "task_deadline_changed",
                                            "task_result_added",
                                            "incoming_call",
                                            "outgoing_call",
                                            "incoming_chat_message",
                                            "outgoing_chat_message",
                                            "incoming_sms",
                                            "outgoing_sms",
                                            "entity_tag_added",
                                            "entity_tag_deleted",
                                            "entity_responsible_changed",
                                            "sale_field_changed",
                                            "name_field_changed",
                                            "custom_field_value_changed",
                                            "common_note_added"};
        size_t n = sizeof(types) / sizeof(types[0]), i;

        evbuffer_add_printf(sr->body,
                            "{\"_total_items\":%zu,\"_embedded\":{"
                            "\"events_types\":[",
                            n);
        for (i = 0; i < n; i++) {
                char lang[64];
                size_t j;

                snprintf(lang, sizeof(lang), "%s", types[i]);
                for (j = 0; lang[j]; j++)
                        if (lang[j] == '_')
                                lang[j] = ' ';
                evbuffer_add_printf(sr->body,
                                    "%s{\"key\":\"%s\",\"type\":%zu,"
                                    "\"lang\":\"%s\"}",
                                    i ? "," : "", types[i], i + 1, lang);
        }
        evbuffer_add(sr->body, "]}}", 3);
        sim_req_status(sr, 200, "application/hal+json");
}

void sim_kommo_handle(struct sim_req *sr, const char *rest)
{
        int64_t now_ms = eb_now_ms();

        if (!strcmp(rest, "/api/v4/events") ||
            !strcmp(rest, "/api/v4/events/")) {
                kommo_list(sr, now_ms);
        } else if (!strcmp(rest, "/api/v4/events/types")) {
                kommo_types(sr);
        } else if (!strncmp(rest, "/api/v4/events/", 15) &&
                   !strchr(rest + 15, '/') && rest[15]) {
                kommo_get(sr, rest + 15, now_ms);
        } else {
                sim_req_problem(sr, 404, "Not Found", NULL);
        }
}
