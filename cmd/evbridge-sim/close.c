/*
 * close.c: Close GET /api/v1/event/ and GET /api/v1/event/{id}/, with event
 * consolidation.
 *
 * Behaviour follows providers.md section 2: Basic auth with the API key as
 * user, _limit <= 50 (default 50, larger capped), opaque _cursor values
 * (cursor_next = older, cursor_previous = newer, null when there are no
 * more), newest first by date_updated, date_updated__gte/gt/lte/lt, the
 * fifteen allowed filter combinations (anything else is a 400), 30-day
 * retention, and consolidation: an update to an object whose recent
 * "updated" event is still open is folded into that event, which gets a
 * later date_updated, merged changed_fields/previous_data and the new data,
 * and moves to its new place in date_updated order.
 *
 * Cursors carry the date_updated bounds of the first request, so a client
 * re-sends only the other filters (as the docs ask).
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
        C_LEAD = 0,
        C_CONTACT,
        C_OPP,
        C_TASK,
        C_NOTE,
        C_EMAIL,
        C_CALL,
        C_SMS,
        C_LSC,
        C_OSC,
        C_NKINDS
};

static const char *const otype[C_NKINDS] = {
        "lead",
        "contact",
        "opportunity",
        "task.lead",
        "activity.note",
        "activity.email",
        "activity.call",
        "activity.sms",
        "activity.lead_status_change",
        "activity.opportunity_status_change"};
static const char *const oprefix[C_NKINDS] = {
        "lead_", "cont_", "oppo_", "task_", "acti_",
        "acti_", "acti_", "acti_", "acti_", "acti_"};
static const char *const opath[C_NKINDS] = {
        "lead",
        "contact",
        "opportunity",
        "task",
        "activity/note",
        "activity/email",
        "activity/call",
        "activity/sms",
        "activity/status_change/lead",
        "activity/status_change/opportunity"};

static const char *const lead_status[][2] = {
        {"stat_1ZdiZqcSIkoGVnNOyxiEY58eTGQmFNG3LPlEVQ4V7Nk", "Potential"},
        {"stat_NWMKGkIQVaLN2yVOTnz0e7rKvNIOOtRDzYByE2COjrG", "Qualified"},
        {"stat_9QeDHa0qGbQnZNrXZfO3aKHLpB4fnxHuuVVHo0b5OMd", "Customer"},
        {"stat_ESxdkiVzEUOEPjO6xkhRiCtpQwY3fyuWtnzP0CqGFmB", "Bad Fit"},
};
static const char *const opp_status[][3] = {
        {"stat_3FD9DnGUCJzccBKTh8LiiKoyVPpMJsOkJdcGoA5AYKH", "Active",
         "active"},
        {"stat_wMS9M6HC2O3CSEOzF5g2vEGt6RM5R3RfhIQixdnmjf2", "Won", "won"},
        {"stat_oFG9jq2SDKXGeBdN1G7DZDmZsHn1cj5PBW3tIVKsHdN", "Lost", "lost"},
};

void sim_close_init(struct sim_account *a)
{
        struct sim_rng *r = &a->gen;
        size_t i, nleads;
        static const int kw[C_NKINDS] = {0, 14, 14, 12, 10, 12, 10, 6, 6, 6};

        a->org_id = sim_rand_id(r, "orga_", sim_base62, 43);
        a->sub_id = sim_rand_id(r, "whsub_", sim_base62, 22);
        a->nusers = 4;
        /* NULL-terminated; users[nusers] is the account's API key id */
        a->users = eb_xcalloc(a->nusers + 2, sizeof(*a->users));
        for (i = 0; i < a->nusers; i++)
                a->users[i] = sim_rand_id(r, "user_", sim_base62, 43);
        a->users[a->nusers] = sim_rand_id(r, "api_", sim_base62, 22);
        a->nents = (size_t)a->set.entities;
        a->ents = eb_xcalloc(a->nents, sizeof(*a->ents));
        nleads = a->nents / 5 ? a->nents / 5 : 1;
        for (i = 0; i < a->nents; i++) {
                struct sim_entity *e = &a->ents[i];

                e->kind = i < nleads ? C_LEAD
                                     : (int)sim_rng_weighted(r, kw, C_NKINDS);
                e->id = sim_rand_id(r, oprefix[e->kind], sim_base62, 43);
                e->parent = e->kind == C_LEAD
                                    ? NULL
                                    : &a->ents[sim_rng_below(r, nleads)];
                if (e->kind == C_LEAD)
                        e->name = eb_xasprintf(
                                "%s %s", sim_pick(r, sim_words, sim_words_n),
                                sim_rng_below(r, 2) ? "Corp" : "LLC");
                else
                        e->name = eb_xasprintf(
                                "%s %s",
                                sim_pick(r, sim_first_names, sim_first_names_n),
                                sim_pick(r, sim_last_names, sim_last_names_n));
        }
}

/* "2019-01-15T12:48:23.395000" (event fields, no offset) */
static void ev_time(int64_t ms, char *buf, size_t sz)
{
        size_t n;

        eb_rfc3339_format(ms, 6, buf, sz);
        n = strlen(buf);
        if (n && buf[n - 1] == 'Z')
                buf[n - 1] = '\0';
}

/* "2019-01-15T12:48:23.392000+00:00" (resource fields) */
static json_t *data_time(int64_t ms)
{
        char buf[48], out[64];

        ev_time(ms, buf, sizeof(buf));
        snprintf(out, sizeof(out), "%s+00:00", buf);
        return json_string(out);
}

static const char *pick_user(struct sim_account *a)
{
        if (sim_rng_below(&a->gen, 100) < 15)
                return NULL;
        return a->users[sim_rng_below(&a->gen, a->nusers)];
}

static json_t *jstr_or_null(const char *s)
{
        return s ? json_string(s) : json_null();
}

static void set_status(json_t *snap, int kind, size_t i)
{
        if (kind == C_LEAD) {
                json_object_set_new(snap, "status_id",
                                    json_string(lead_status[i][0]));
                json_object_set_new(snap, "status_label",
                                    json_string(lead_status[i][1]));
        } else {
                json_object_set_new(snap, "status_id",
                                    json_string(opp_status[i][0]));
                json_object_set_new(snap, "status_label",
                                    json_string(opp_status[i][1]));
                json_object_set_new(snap, "status_type",
                                    json_string(opp_status[i][2]));
        }
}

static json_t *new_snapshot(struct sim_account *a, struct sim_entity *e,
                            const char *user, int64_t ms)
{
        struct sim_rng *r = &a->gen;
        json_t *s = json_object();
        const char *lead_id = e->parent ? e->parent->id : e->id;

        json_object_set_new(s, "id", json_string(e->id));
        json_object_set_new(s, "organization_id", json_string(a->org_id));
        if (e->kind != C_LEAD)
                json_object_set_new(s, "lead_id", json_string(lead_id));
        json_object_set_new(s, "date_created", data_time(ms));
        json_object_set_new(s, "date_updated", data_time(ms));
        json_object_set_new(s, "created_by", jstr_or_null(user));
        json_object_set_new(s, "updated_by", jstr_or_null(user));
        switch (e->kind) {
        case C_LEAD:
                json_object_set_new(s, "name", json_string(e->name));
                json_object_set_new(s, "display_name", json_string(e->name));
                json_object_set_new(s, "description", json_string(""));
                json_object_set_new(s, "url", json_null());
                set_status(s, C_LEAD, 0);
                break;
        case C_CONTACT: {
                char email[96];
                size_t i;
                snprintf(email, sizeof(email), "%s@example.com", e->name);
                for (i = 0; email[i]; i++)
                        if (email[i] == ' ')
                                email[i] = '.';
                json_object_set_new(s, "name", json_string(e->name));
                json_object_set_new(s, "title", json_string("Buyer"));
                json_object_set_new(s, "emails",
                                    json_pack("[{s:s,s:s}]", "type", "office",
                                              "email", email));
                json_object_set_new(s, "phones",
                                    json_pack("[{s:s,s:s}]", "type", "mobile",
                                              "phone", "+15555550100"));
                break;
        }
        case C_OPP: {
                int64_t v = 1000 * sim_rng_range(r, 1, 200);
                char fmt[32];
                snprintf(fmt, sizeof(fmt), "$%lld", (long long)(v / 100));
                set_status(s, C_OPP, 0);
                json_object_set_new(s, "confidence",
                                    json_integer(10 * sim_rng_range(r, 1, 9)));
                json_object_set_new(s, "value", json_integer(v));
                json_object_set_new(s, "value_period", json_string("one_time"));
                json_object_set_new(s, "value_currency", json_string("USD"));
                json_object_set_new(s, "value_formatted", json_string(fmt));
                json_object_set_new(s, "lead_name",
                                    json_string(e->parent->name));
                json_object_set_new(s, "contact_id", json_null());
                json_object_set_new(s, "note", json_string(""));
                json_object_set_new(s, "date_won", json_null());
                json_object_set_new(s, "date_lost", json_null());
                break;
        }
        case C_TASK:
                json_object_set_new(s, "_type", json_string("lead"));
                json_object_set_new(s, "text",
                                    json_string("Follow up with the lead"));
                json_object_set_new(s, "is_complete", json_false());
                json_object_set_new(
                        s, "assigned_to",
                        json_string(a->users[sim_rng_below(r, a->nusers)]));
                break;
        case C_NOTE:
                json_object_set_new(s, "_type", json_string("Note"));
                json_object_set_new(s, "note",
                                    json_string("Called, left a message."));
                break;
        case C_EMAIL:
                json_object_set_new(s, "_type", json_string("Email"));
                json_object_set_new(s, "direction", json_string("outgoing"));
                json_object_set_new(s, "status", json_string("draft"));
                json_object_set_new(s, "subject",
                                    json_string("Following up on our call"));
                json_object_set_new(s, "to",
                                    json_pack("[s]", "buyer@example.com"));
                break;
        case C_CALL:
                json_object_set_new(s, "_type", json_string("Call"));
                json_object_set_new(s, "direction",
                                    json_string(sim_rng_below(r, 2)
                                                        ? "outbound"
                                                        : "inbound"));
                json_object_set_new(s, "status", json_string("in-progress"));
                json_object_set_new(s, "duration", json_integer(0));
                json_object_set_new(s, "phone", json_string("+15555550100"));
                break;
        case C_SMS:
                json_object_set_new(s, "_type", json_string("SMS"));
                json_object_set_new(s, "direction", json_string("outbound"));
                json_object_set_new(s, "status", json_string("draft"));
                json_object_set_new(s, "text",
                                    json_string("Hi! Quick "
                                                "question."));
                break;
        case C_LSC:
                json_object_set_new(s, "_type",
                                    json_string("LeadStatusChange"));
                json_object_set_new(s, "old_status_id",
                                    json_string(lead_status[0][0]));
                json_object_set_new(s, "old_status_label",
                                    json_string(lead_status[0][1]));
                json_object_set_new(s, "new_status_id",
                                    json_string(lead_status[1][0]));
                json_object_set_new(s, "new_status_label",
                                    json_string(lead_status[1][1]));
                break;
        default:
                json_object_set_new(s, "_type",
                                    json_string("OpportunityStatusChange"));
                json_object_set_new(s, "old_status_type",
                                    json_string("active"));
                json_object_set_new(s, "new_status_type", json_string("won"));
                break;
        }
        return s;
}

/* Change a field: record the previous value and the field name. */
static void change(json_t *snap, json_t *prev, json_t *changed, const char *key,
                   json_t *val)
{
        json_t *old = json_object_get(snap, key);

        if (!json_object_get(prev, key))
                json_object_set(prev, key, old ? old : json_null());
        json_array_append_new(changed, json_string(key));
        json_object_set_new(snap, key, val);
}

/* Apply an update for @p action to the entity snapshot. */
/* @returns whichever of @p x / @p y differs from the current value. */
static json_t *other(json_t *snap, const char *key, const char *x,
                     const char *y)
{
        const char *cur = json_string_value(json_object_get(snap, key));

        return json_string(cur && !strcmp(cur, x) ? y : x);
}

/* Kinds whose update flips one field between two texts. */
static const struct flip {
        int kind;
        const char *field, *a, *b;
} flips[] = {
        {C_CONTACT, "title", "Head of Sales", "CTO"},
        {C_TASK, "text", "Send the proposal", "Call back"},
        {C_NOTE, "note", "Budget approved.", "Asked for a demo."},
        {C_EMAIL, "subject", "Re: proposal", "Quick question"},
        {C_CALL, "note", "Discussed pricing.", "Left a voicemail."},
        {C_SMS, "text", "Are you free tomorrow?", "Thanks, talk soon."},
};

static const struct flip *flip_of(int kind)
{
        size_t i;

        for (i = 0; i < sizeof(flips) / sizeof(flips[0]); i++)
                if (flips[i].kind == kind)
                        return &flips[i];
        return NULL;
}

static void mutate(struct sim_account *a, struct sim_entity *e,
                   const char *action, const char *user, int64_t ms,
                   json_t *prev, json_t *changed)
{
        struct sim_rng *r = &a->gen;
        json_t *s = e->snap;
        const struct flip *fl;
        int which = (int)sim_rng_below(r, 3);

        if (!strcmp(action, "sent")) {
                change(s, prev, changed, "status", json_string("sent"));
                change(s, prev, changed, "date_sent", data_time(ms));
        } else if (!strcmp(action, "completed") && e->kind == C_CALL) {
                change(s, prev, changed, "status", json_string("completed"));
                change(s, prev, changed, "duration",
                       json_integer(sim_rng_range(r, 5, 900)));
        } else if (!strcmp(action, "completed")) {
                change(s, prev, changed, "is_complete", json_true());
        } else if ((fl = flip_of(e->kind)) != NULL) {
                change(s, prev, changed, fl->field,
                       other(s, fl->field, fl->a, fl->b));
        } else {
                switch (e->kind) {
                case C_LEAD:
                        if (which == 0) {
                                size_t i = sim_rng_below(r, 4);
                                json_t *x = json_string(lead_status[i][0]);
                                change(s, prev, changed, "status_id", x);
                                change(s, prev, changed, "status_label",
                                       json_string(lead_status[i][1]));
                        } else {
                                char *d = eb_xasprintf(
                                        "Interested in %s",
                                        sim_pick(r, sim_words, sim_words_n));
                                change(s, prev, changed, "description",
                                       json_string(d));
                                free(d);
                        }
                        break;
                case C_OPP:
                        if (which == 0) {
                                size_t i = sim_rng_below(r, 3);
                                change(s, prev, changed, "status_id",
                                       json_string(opp_status[i][0]));
                                change(s, prev, changed, "status_label",
                                       json_string(opp_status[i][1]));
                                change(s, prev, changed, "status_type",
                                       json_string(opp_status[i][2]));
                        } else if (which == 1) {
                                change(s, prev, changed, "confidence",
                                       json_integer(10 *
                                                    sim_rng_range(r, 1, 10)));
                        } else {
                                int64_t v = 1000 * sim_rng_range(r, 1, 200);
                                char fmt[32];
                                snprintf(fmt, sizeof(fmt), "$%lld",
                                         (long long)(v / 100));
                                change(s, prev, changed, "value",
                                       json_integer(v));
                                change(s, prev, changed, "value_formatted",
                                       json_string(fmt));
                        }
                        break;
                case C_LSC: {
                        size_t i = sim_rng_below(r, 4);
                        change(s, prev, changed, "new_status_id",
                               json_string(lead_status[i][0]));
                        change(s, prev, changed, "new_status_label",
                               json_string(lead_status[i][1]));
                        break;
                }
                default:
                        change(s, prev, changed, "new_status_type",
                               other(s, "new_status_type", "lost", "won"));
                        break;
                }
        }
        change(s, prev, changed, "date_updated", data_time(ms));
        if (json_object_get(s, "updated_by"))
                change(s, prev, changed, "updated_by", jstr_or_null(user));
}

static int cmp_str(const void *x, const void *y)
{
        return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Sorted, de-duplicated union of two string arrays (new reference). */
static json_t *union_fields(json_t *a, json_t *b)
{
        const char *tmp[128];
        size_t n = 0, i;
        json_t *out = json_array(), *v;

        json_array_foreach(a, i, v) if (json_is_string(v) && n < 128) tmp[n++] =
                json_string_value(v);
        json_array_foreach(b, i, v) if (json_is_string(v) && n < 128) tmp[n++] =
                json_string_value(v);
        qsort(tmp, n, sizeof(tmp[0]), cmp_str);
        for (i = 0; i < n; i++)
                if (i == 0 || strcmp(tmp[i], tmp[i - 1]))
                        json_array_append_new(out, json_string(tmp[i]));
        return out;
}

static char *dump_str(json_t *root, size_t *lenp)
{
        char *s = json_dumps(root, JSON_COMPACT);

        if (!s)
                s = eb_xstrdup("{}");
        *lenp = strlen(s);
        return s;
}

/* Fold an update (changed fields @p changed, previous values @p prev) into
 * the current version of @p evt at time @p ms. */
static void fold_into(struct sim_account *a, struct sim_event *evt,
                      json_t *prev, json_t *changed, int64_t ms)
{
        json_t *root = json_loads(evt->cur->json, 0, NULL);
        json_t *oprev, *fields;
        const char *k;
        json_t *v;
        char when[48];
        char *json;
        size_t len;

        if (!root)
                return; /* cannot happen: we rendered it */
        ev_time(ms, when, sizeof(when));
        json_object_set_new(root, "date_updated", json_string(when));
        fields = union_fields(json_object_get(root, "changed_fields"), changed);
        json_object_set_new(root, "changed_fields", fields);
        oprev = json_object_get(root, "previous_data");
        if (!json_is_object(oprev)) {
                oprev = json_object();
                json_object_set_new(root, "previous_data", oprev);
        }
        json_object_foreach(prev, k, v) if (!json_object_get(oprev, k))
                json_object_set(oprev, k, v);
        json_object_set(root, "data", evt->ent->snap);
        json = dump_str(root, &len);
        json_decref(root);
        sim_version_add(evt, json, len, NULL, 0, eb_xstrdup(when), ms);
        (void)a;
}

static void pick_action(struct sim_account *a, struct sim_entity *e,
                        const char **action)
{
        struct sim_rng *r = &a->gen;
        const char *st;

        if (!e->created || e->deleted) {
                *action = "created";
                return;
        }
        st = json_string_value(json_object_get(e->snap, "status"));
        switch (e->kind) {
        case C_LEAD:
                *action = sim_rng_below(r, 100) < 2 ? "deleted" : "updated";
                break;
        case C_TASK: {
                static const int w[] = {5, 2, 1};
                static const char *const n[] = {"updated", "completed",
                                                "deleted"};
                *action = n[sim_rng_weighted(r, w, 3)];
                break;
        }
        case C_EMAIL:
        case C_SMS:
                if (st && !strcmp(st, "draft") && sim_rng_below(r, 3))
                        *action = "sent";
                else
                        *action = sim_rng_below(r, 6) ? "updated" : "deleted";
                break;
        case C_CALL:
                if (st && strcmp(st, "completed"))
                        *action = "completed";
                else
                        *action = "updated";
                break;
        default:
                *action = sim_rng_below(r, 9) ? "updated" : "deleted";
                break;
        }
}

struct sim_event *sim_close_generate(struct sim_account *a, int64_t ms)
{
        struct sim_rng *r = &a->gen;
        struct sim_entity *e;
        struct sim_event *evt;
        const char *action, *user, *method;
        json_t *prev = NULL, *changed = NULL, *data = NULL, *root;
        char when[48], path[200];
        char *json;
        size_t len;

        if (!a->nents)
                return NULL;
        e = &a->ents[sim_rng_below(r, a->nents)];
        if (e->parent && (!e->parent->created || e->parent->deleted))
                e = e->parent; /* a child needs its lead first */
        pick_action(a, e, &action);
        user = pick_user(a);

        if (!strcmp(action, "created")) {
                if (e->deleted) {
                        /* a new incarnation gets a new id */
                        free(e->id);
                        e->id = sim_rand_id(r, oprefix[e->kind], sim_base62,
                                            43);
                        e->deleted = 0;
                }
                json_decref(e->snap);
                e->snap = new_snapshot(a, e, user, ms);
                e->created = 1;
                e->created_ms = ms;
                prev = json_object();
                changed = json_array();
                data = json_incref(e->snap);
        } else if (!strcmp(action, "deleted")) {
                prev = json_deep_copy(e->snap);
                changed = json_array();
                data = json_null();
                e->deleted = 1;
        } else {
                json_t *tmp = json_array();
                prev = json_object();
                mutate(a, e, action, user, ms, prev, tmp);
                changed = union_fields(tmp, NULL); /* sorted */
                json_decref(tmp);
                data = json_incref(e->snap);
                /* Consolidation: fold into the entity's open "updated"
                 * event instead of creating a new one. */
                if (!strcmp(action, "updated") && e->last && e->last->cur &&
                    !strcmp(e->last->c_action, "updated") &&
                    ms - e->last->cur->updated_ms <=
                            a->set.consolidate_window_ms &&
                    sim_rng_unit(r) < a->set.consolidate) {
                        struct sim_event *last = e->last;
                        fold_into(a, last, prev, changed, ms);
                        json_decref(prev);
                        json_decref(changed);
                        json_decref(data);
                        return last;
                }
        }

        evt = sim_event_new(a, sim_rand_id(r, "ev_", sim_base62, 22), ms);
        evt->type = eb_xasprintf("%s.%s", otype[e->kind], action);
        evt->etype = otype[e->kind];
        evt->eid = eb_xstrdup(e->id);
        evt->ent = e;
        evt->c_object_type = otype[e->kind];
        evt->c_action = action; /* static literals */
        evt->c_lead_id = eb_xstrdup(e->parent ? e->parent->id : e->id);
        evt->c_user_id = user;
        evt->c_request_id = sim_rand_id(r, "req_", sim_base62, 22);
        ev_time(ms, when, sizeof(when));
        method = !strcmp(action, "created")   ? "POST"
                 : !strcmp(action, "deleted") ? "DELETE"
                                              : "PUT";
        if (!strcmp(action, "created"))
                snprintf(path, sizeof(path), "/api/v1/%s/", opath[e->kind]);
        else
                snprintf(path, sizeof(path), "/api/v1/%s/%s/", opath[e->kind],
                         e->id);
        root = json_pack(
                "{s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:s,s:s,s:s,s:s,s:o,s:o,s:o,"
                "s:{s:s,s:s}}",
                "id", evt->id, "date_created", when, "date_updated", when,
                "organization_id", a->org_id, "user_id", jstr_or_null(user),
                "request_id", evt->c_request_id, "api_key_id",
                (user && sim_rng_below(r, 10) < 3)
                        ? json_string(a->users[a->nusers])
                        : json_null(),
                "object_type", evt->c_object_type, "object_id", e->id,
                "lead_id", evt->c_lead_id, "action", action, "changed_fields",
                changed, "data", data, "previous_data", prev, "meta",
                "request_method", method, "request_path", path);
        json = dump_str(root, &len);
        json_decref(root);
        sim_version_add(evt, json, len, NULL, 0, eb_xstrdup(when), ms);
        sim_event_publish(evt);
        e->last = evt;
        return evt;
}

int sim_close_fold(struct sim_account *a, struct sim_event *evt, int64_t ms)
{
        struct sim_entity *e = evt->ent;
        json_t *prev, *changed;

        if (!e || !e->snap || e->deleted || e->last != evt)
                return -EINVAL;
        prev = json_object();
        changed = json_array();
        mutate(a, e, "updated", evt->c_user_id, ms, prev, changed);
        fold_into(a, evt, prev, changed, ms);
        json_decref(prev);
        json_decref(changed);
        return 0;
}

/* ---- HTTP ---------------------------------------------------------------- */

static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64_enc(struct evbuffer *out, const unsigned char *in, size_t n)
{
        size_t i;

        for (i = 0; i + 2 < n; i += 3) {
                unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 |
                             in[i + 2];
                char c[4] = {b64url[v >> 18], b64url[(v >> 12) & 63],
                             b64url[(v >> 6) & 63], b64url[v & 63]};
                evbuffer_add(out, c, 4);
        }
        if (n - i == 1) {
                unsigned v = (unsigned)in[i] << 16;
                char c[2] = {b64url[v >> 18], b64url[(v >> 12) & 63]};
                evbuffer_add(out, c, 2);
        } else if (n - i == 2) {
                unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
                char c[3] = {b64url[v >> 18], b64url[(v >> 12) & 63],
                             b64url[(v >> 6) & 63]};
                evbuffer_add(out, c, 3);
        }
}

static int b64_dec(const char *in, char *out, size_t outsz)
{
        unsigned acc = 0;
        int bits = 0;
        size_t n = 0;

        for (; *in; in++) {
                const char *p = strchr(b64url, *in);
                if (!p || !*in)
                        return -EINVAL;
                acc = (acc << 6) | (unsigned)(p - b64url);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (n + 1 >= outsz)
                                return -EINVAL;
                        out[n++] = (char)((acc >> bits) & 0xff);
                }
        }
        out[n] = '\0';
        return (int)n;
}

struct cursor {
        char dir; /* 'n' older, 'p' newer, 0 none */
        uint64_t uorder;
        int64_t lo_ms; /* updated window [lo, hi) */
        int64_t hi_ms;
        int64_t issued_ms; /* wall clock when handed out */
};

static void add_cursor(struct evbuffer *out, char dir, uint64_t u,
                       const struct cursor *win, int64_t now_ms)
{
        char raw[160];
        int n = snprintf(raw, sizeof(raw), "v2|%c|%llu|%lld|%lld|%lld", dir,
                         (unsigned long long)u, (long long)win->lo_ms,
                         (long long)win->hi_ms, (long long)now_ms);

        evbuffer_add(out, "\"", 1);
        b64_enc(out, (const unsigned char *)raw, (size_t)n);
        evbuffer_add(out, "\"", 1);
}

static int parse_cursor(const char *s, struct cursor *c)
{
        char raw[200], dir = 0;
        unsigned long long u;
        long long lo, hi, at;
        char tail;

        if (strlen(s) > 260 || b64_dec(s, raw, sizeof(raw)) < 0)
                return -EINVAL;
        if (sscanf(raw, "v2|%c|%llu|%lld|%lld|%lld%c", &dir, &u, &lo, &hi, &at,
                   &tail) != 5 ||
            (dir != 'n' && dir != 'p'))
                return -EINVAL;
        c->dir = dir;
        c->uorder = u;
        c->lo_ms = lo;
        c->hi_ms = hi;
        c->issued_ms = at;
        return 0;
}

static int parse_date(const char *s, int64_t *ms)
{
        char buf[64];

        if (strlen(s) == 10) {
                snprintf(buf, sizeof(buf), "%sT00:00:00", s);
                return eb_rfc3339_parse(buf, ms);
        }
        return eb_rfc3339_parse(s, ms);
}

#define F_OT 0x01 /* object_type */
#define F_OI 0x02 /* object_id */
#define F_AC 0x04 /* action */
#define F_LI 0x08 /* lead_id */
#define F_UI 0x10 /* user_id */
#define F_RI 0x20 /* request_id */

static int combo_allowed(int m)
{
        static const int ok[] = {
                0,
                F_OT | F_OI,
                F_OT | F_AC,
                F_OI | F_AC,
                F_LI | F_OT,
                F_LI | F_OT | F_AC,
                F_LI | F_UI | F_OT,
                F_LI | F_UI | F_OT | F_AC,
                F_LI | F_UI,
                F_UI | F_OI,
                F_UI | F_OI | F_AC,
                F_UI | F_OT,
                F_UI | F_OT | F_AC,
                F_LI,
                F_UI,
                F_RI,
        };
        size_t i;

        for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
                if (ok[i] == m)
                        return 1;
        return 0;
}

struct cfilter {
        const char *ot, *oi, *ac, *li, *ui, *ri;
        int mask;
};

static int cf_match(const struct cfilter *f, const struct sim_event *evt)
{
        if (!f->mask)
                return 1;
        if (f->ot && strcmp(f->ot, evt->c_object_type))
                return 0;
        if (f->oi && strcmp(f->oi, evt->eid))
                return 0;
        if (f->ac && strcmp(f->ac, evt->c_action))
                return 0;
        if (f->li && (!evt->c_lead_id || strcmp(f->li, evt->c_lead_id)))
                return 0;
        if (f->ui && (!evt->c_user_id || strcmp(f->ui, evt->c_user_id)))
                return 0;
        if (f->ri && strcmp(f->ri, evt->c_request_id))
                return 0;
        return 1;
}

/* One event as served: a non-admin key sees data and previous_data only
 * for close_strip_after (1h) after the event (Close changelog
 * 2019-01-25); later they come back null. */
static void add_event(struct sim_req *sr, struct sim_event *evt, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        struct sim_version *v = evt->cur;
        json_t *o;
        char *out;

        if (a->set.close_admin ||
            now_ms - v->updated_ms <= a->set.close_strip_ms ||
            !(o = json_loadb(v->json, v->len, 0, NULL))) {
                evbuffer_add(sr->body, v->json, v->len);
                sim_req_served(sr, v);
                return;
        }
        json_object_set_new(o, "data", json_null());
        json_object_set_new(o, "previous_data", json_null());
        out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (out) {
                evbuffer_add(sr->body, out, strlen(out));
                free(out);
        }
        a->stripped++;
        sim_req_served(sr, v);
}

static void close_list(struct sim_req *sr, int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        const char *rawq =
                evhttp_uri_get_query(evhttp_request_get_evhttp_uri(sr->req));
        struct evkeyvalq q;
        struct cfilter f;
        struct cursor cur, win;
        struct sim_event *page[50];
        const char *s;
        int64_t limit = 50, v;
        size_t lo, hi, i, n = 0, first_idx = 0, last_idx = 0;
        int more_older = 0, more_newer = 0;
        static const struct {
                const char *name;
                int bit;
        } fk[] = {{"object_type", F_OT}, {"object_id", F_OI},
                  {"action", F_AC},      {"lead_id", F_LI},
                  {"user_id", F_UI},     {"request_id", F_RI}};

        TAILQ_INIT(&q);
        memset(&f, 0, sizeof(f));
        memset(&cur, 0, sizeof(cur));
        if (sim_query_parse(rawq, &q) < 0) {
                sim_req_close_error(sr, 400, "Malformed query string.");
                goto out;
        }
        if (sim_query_get(&q, "_skip")) {
                sim_req_close_error(sr, 400,
                                    "_skip is not supported for this "
                                    "endpoint; use _cursor.");
                goto out;
        }
        s = sim_query_get(&q, "_limit");
        if (s && (eb_parse_i64(s, &limit) < 0 || limit < 1)) {
                sim_req_close_error(sr, 400,
                                    "_limit must be a positive integer.");
                goto out;
        }
        if (limit > 50)
                limit = 50;
        for (i = 0; i < sizeof(fk) / sizeof(fk[0]); i++) {
                const char *val = sim_query_get(&q, fk[i].name);
                if (!val)
                        continue;
                f.mask |= fk[i].bit;
                switch (fk[i].bit) {
                case F_OT:
                        f.ot = val;
                        break;
                case F_OI:
                        f.oi = val;
                        break;
                case F_AC:
                        f.ac = val;
                        break;
                case F_LI:
                        f.li = val;
                        break;
                case F_UI:
                        f.ui = val;
                        break;
                default:
                        f.ri = val;
                        break;
                }
        }
        if (!combo_allowed(f.mask)) {
                sim_req_close_error(sr, 400,
                                    "This combination of filters is not "
                                    "supported. See the allowed filter "
                                    "combinations in the Event Log "
                                    "documentation.");
                goto out;
        }
        /* the date window: from the cursor if there is one */
        win.lo_ms = INT64_MIN;
        win.hi_ms = INT64_MAX;
        s = sim_query_get(&q, "_cursor");
        if (s && *s) {
                if (parse_cursor(s, &cur) < 0) {
                        sim_req_close_error(sr, 400, "Invalid cursor.");
                        goto out;
                }
                if (a->set.close_cursor_ttl_ms &&
                    now_ms - cur.issued_ms > a->set.close_cursor_ttl_ms) {
                        /* How long a real cursor lives is not documented:
                         * the harsher reading, it expires. */
                        sim_req_close_error(sr, 400, "Invalid cursor.");
                        goto out;
                }
                win.lo_ms = cur.lo_ms;
                win.hi_ms = cur.hi_ms;
        } else {
                static const char *const dk[] = {
                        "date_updated__gte", "date_updated__gt",
                        "date_updated__lte", "date_updated__lt"};
                for (i = 0; i < 4; i++) {
                        const char *val = sim_query_get(&q, dk[i]);
                        if (!val)
                                continue;
                        if (parse_date(val, &v) < 0) {
                                char msg[128];
                                snprintf(msg, sizeof(msg),
                                         "%s: enter a valid date/time.", dk[i]);
                                sim_req_close_error(sr, 400, msg);
                                goto out;
                        }
                        if (i == 0 && v > win.lo_ms)
                                win.lo_ms = v;
                        if (i == 1 && v + 1 > win.lo_ms)
                                win.lo_ms = v + 1;
                        if (i == 2 && v + 1 < win.hi_ms)
                                win.hi_ms = v + 1;
                        if (i == 3 && v < win.hi_ms)
                                win.hi_ms = v;
                }
        }
        lo = sim_lower_bound_updated(a, win.lo_ms);
        if (a->set.retention_ms) {
                size_t r = sim_lower_bound_updated(
                        a, now_ms - a->set.retention_ms);
                if (r > lo)
                        lo = r;
        }
        hi = win.hi_ms == INT64_MAX ? a->norder
                                    : sim_lower_bound_updated(a, win.hi_ms);
        if (cur.dir == 'p') {
                size_t start = sim_lower_bound_uorder(a, cur.uorder + 1);
                struct sim_event *tmp[50];
                size_t m = 0;
                if (start < lo)
                        start = lo;
                for (i = start; i < hi && m < (size_t)limit; i++)
                        if (cf_match(&f, a->order[i]) &&
                            sim_visible(a->order[i], now_ms))
                                tmp[m++] = a->order[i];
                for (i = 0; i < m; i++)
                        page[i] = tmp[m - 1 - i];
                n = m;
        } else {
                size_t start = hi;
                if (cur.dir == 'n') {
                        size_t c = sim_lower_bound_uorder(a, cur.uorder);
                        if (c < start)
                                start = c;
                }
                for (i = start; i > lo && n < (size_t)limit; i--)
                        if (cf_match(&f, a->order[i - 1]) &&
                            sim_visible(a->order[i - 1], now_ms))
                                page[n++] = a->order[i - 1];
        }
        if (n) {
                first_idx = page[0]->opos;
                last_idx = page[n - 1]->opos;
                for (i = last_idx; i > lo && !more_older; i--)
                        more_older = cf_match(&f, a->order[i - 1]) &&
                                     sim_visible(a->order[i - 1], now_ms);
                for (i = first_idx + 1; i < hi && !more_newer; i++)
                        more_newer = cf_match(&f, a->order[i]) &&
                                     sim_visible(a->order[i], now_ms);
        }
        evbuffer_expand(sr->body, n * (n ? page[0]->cur->len + 8 : 0) + 256);
        evbuffer_add(sr->body, "{\"data\":[", 9);
        for (i = 0; i < n; i++) {
                if (i)
                        evbuffer_add(sr->body, ",", 1);
                add_event(sr, page[i], now_ms);
        }
        evbuffer_add(sr->body, "],\"cursor_next\":", 16);
        if (more_older)
                add_cursor(sr->body, 'n', page[n - 1]->cur->uorder, &win,
                           now_ms);
        else
                evbuffer_add(sr->body, "null", 4);
        evbuffer_add(sr->body, ",\"cursor_previous\":", 19);
        if (more_newer)
                add_cursor(sr->body, 'p', page[0]->cur->uorder, &win, now_ms);
        else
                evbuffer_add(sr->body, "null", 4);
        evbuffer_add(sr->body, "}", 1);
        sim_req_status(sr, 200, "application/json");
out:
        evhttp_clear_headers(&q);
}

static void close_get(struct sim_req *sr, const char *id, size_t idlen,
                      int64_t now_ms)
{
        struct sim_account *a = sr->acct;
        char buf[128];
        struct sim_event *evt;

        if (idlen >= sizeof(buf)) {
                sim_req_close_error(sr, 404, "Not found.");
                return;
        }
        memcpy(buf, id, idlen);
        buf[idlen] = '\0';
        evt = sim_event_find(a, buf);
        if (!evt || (a->set.retention_ms &&
                     evt->cur->updated_ms < now_ms - a->set.retention_ms)) {
                sim_req_close_error(sr, 404, "Not found.");
                return;
        }
        add_event(sr, evt, now_ms);
        sim_req_status(sr, 200, "application/json");
}

void sim_close_handle(struct sim_req *sr, const char *rest)
{
        int64_t now_ms = eb_now_ms();
        size_t n = strlen(rest);

        if (!strcmp(rest, "/api/v1/event/")) {
                close_list(sr, now_ms);
        } else if (!strncmp(rest, "/api/v1/event/", 14) && n > 15 &&
                   rest[n - 1] == '/' && !memchr(rest + 14, '/', n - 15)) {
                close_get(sr, rest + 14, n - 15, now_ms);
        } else {
                sim_req_close_error(sr, 404, "Not found.");
        }
}
