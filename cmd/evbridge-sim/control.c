/*
 * control.c: the /_sim/ namespace (kept apart from every API path):
 *
 *   GET  /_sim/info      the start-up JSON line again
 *   GET  /_sim/stats     per-account counters (?account=NAME)
 *   GET  /_sim/truth     ground truth, JSON lines (?provider= &account=
 *                        &served=1)
 *   GET  /_sim/control   current settings of every account
 *   POST /_sim/control   change settings, generate or consolidate events,
 *                        reset counters, write the dump (docs/simulator.md)
 *   GET  /_sim/health    {"ok":true}
 */
#include "sim.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_time.h"
#include "eb_util.h"

static int target_match(const struct sim_account *a, const char *target)
{
        if (!target || !*target || !strcmp(target, "all"))
                return 1;
        if (!strcmp(target, sim_prov_name(a->prov)))
                return 1;
        return !strcmp(target, a->name);
}

int sim_target_valid(struct sim *sim, const char *target)
{
        size_t i;

        for (i = 0; i < sim->nacct; i++)
                if (target_match(sim->accts[i], target))
                        return 1;
        return !strcmp(target, "all") ||
               sim_prov_parse(target, strlen(target)) >= 0;
}

int sim_apply_target(struct sim *sim, const char *target, const char *key,
                     const json_t *val, int at_start, char *err, size_t errsz)
{
        struct sim_settings scratch;
        int64_t now = eb_now_ms();
        size_t i;
        int rc = 0;

        if (!sim_target_valid(sim, target)) {
                snprintf(err, errsz,
                         "unknown target '%s' (all, kommo, "
                         "close, kota or an account name)",
                         target);
                return -EINVAL;
        }
        /* validate once on a scratch copy, then apply everywhere */
        sim_settings_default(&scratch, SIM_KOMMO);
        rc = sim_setting_apply(&scratch, key, val, at_start, now, sim->start_ms,
                               err, errsz);
        sim_settings_fini(&scratch);
        if (rc < 0)
                return rc;
        for (i = 0; i < sim->nacct; i++) {
                struct sim_account *a = sim->accts[i];

                if (!target_match(a, target))
                        continue;
                rc = sim_setting_apply(&a->set, key, val, at_start, now,
                                       sim->start_ms, err, errsz);
                if (rc < 0)
                        return rc;
                if (!strcmp(key, "rate"))
                        a->next_due_ms = 0; /* re-arm at the new rate */
        }
        return 0;
}

char *sim_webhook_url(const struct sim_account *a)
{
        const char *src = a->set.webhook_url;
        const char *tok = sim_account_secret(a);
        struct evbuffer *b;
        int had_token = 0;
        size_t len;
        char *out;

        if (!src)
                return NULL;
        b = evbuffer_new();
        while (*src) {
                if (!strncmp(src, "{account}", 9)) {
                        evbuffer_add(b, a->name, strlen(a->name));
                        src += 9;
                } else if (!strncmp(src, "{provider}", 10)) {
                        const char *p = sim_prov_name(a->prov);
                        evbuffer_add(b, p, strlen(p));
                        src += 10;
                } else if (!strncmp(src, "{token}", 7)) {
                        char *enc = evhttp_encode_uri(tok);
                        evbuffer_add(b, enc, strlen(enc));
                        free(enc);
                        had_token = 1;
                        src += 7;
                } else {
                        evbuffer_add(b, src, 1);
                        src++;
                }
        }
        if (a->prov == SIM_KOMMO && !had_token) {
                char *enc = evhttp_encode_uri(tok);
                evbuffer_add_printf(b, "%stoken=%s",
                                    strchr(a->set.webhook_url, '?') ? "&" : "?",
                                    enc);
                free(enc);
        }
        len = evbuffer_get_length(b);
        out = eb_xmalloc(len + 1);
        evbuffer_remove(b, out, len);
        out[len] = '\0';
        evbuffer_free(b);
        return out;
}

json_t *sim_info_json(struct sim *sim)
{
        json_t *root, *accts = json_array();
        char listen[128], ctl[160];
        size_t i;

        snprintf(listen, sizeof(listen), "%s:%d", sim->host, sim->port);
        snprintf(ctl, sizeof(ctl), "%s/_sim/control", sim->origin);
        for (i = 0; i < sim->nacct; i++) {
                struct sim_account *a = sim->accts[i];
                char *url = sim_webhook_url(a);
                json_t *o, *wh;

                o = json_pack("{s:s,s:s,s:s}", "provider",
                              sim_prov_name(a->prov), "account", a->name,
                              "base_url", a->base_url);
                wh = json_pack("{s:o}", "url",
                               url ? json_string(url) : json_null());
                free(url);
                switch (a->prov) {
                case SIM_KOMMO:
                        json_object_set_new(
                                o, "credentials",
                                json_pack("{s:s}", "token",
                                          sim_account_credential(a)));
                        json_object_set_new(wh, "token",
                                            json_string(sim_account_secret(a)));
                        json_object_set_new(o, "account_id",
                                            json_integer(a->kommo_account_id));
                        json_object_set_new(o, "subdomain",
                                            json_string(a->name));
                        {
                                char id[128], sec[128], red[160];
                                sim_oauth_client(a, id, sizeof(id), sec,
                                                 sizeof(sec), red, sizeof(red));
                                json_object_set_new(
                                        o, "oauth",
                                        json_pack("{s:s,s:s,s:s,s:s}",
                                                  "client_id", id,
                                                  "client_secret", sec,
                                                  "redirect_uri", red,
                                                  "refresh_token",
                                                  sim_oauth_refresh_token(a)));
                        }
                        break;
                case SIM_CLOSE:
                        json_object_set_new(
                                o, "credentials",
                                json_pack("{s:s}", "api_key",
                                          sim_account_credential(a)));
                        json_object_set_new(wh, "secret",
                                            json_string(sim_account_secret(a)));
                        json_object_set_new(wh, "subscription_id",
                                            json_string(a->sub_id));
                        json_object_set_new(o, "organization_id",
                                            json_string(a->org_id));
                        break;
                default:
                        json_object_set_new(
                                o, "credentials",
                                json_pack("{s:s}", "api_key",
                                          sim_account_credential(a)));
                        json_object_set_new(wh, "secret",
                                            json_string(sim_account_secret(a)));
                        json_object_set_new(wh, "scheme",
                                            json_string("t=<unix>,v1=<hex "
                                                        "HMAC-SHA256(secret, "
                                                        "\"<t>.<body>\")>"));
                        json_object_set_new(
                                wh, "version",
                                json_string(a->set.kota_v2 ? "v2" : "v1"));
                        json_object_set_new(o, "platform_id",
                                            json_string(a->platform_id));
                        break;
                }
                json_object_set_new(o, "webhook", wh);
                json_array_append_new(accts, o);
        }
        root = json_pack("{s:s,s:I,s:i,s:s,s:s,s:I,s:s,s:o}", "event", "ready",
                         "pid", (json_int_t)getpid(), "port", sim->port,
                         "listen", listen, "origin", sim->origin, "seed",
                         (json_int_t)sim->seed, "control_url", ctl, "accounts",
                         accts);
        return root;
}

/* ---- replies ----------------------------------------------------------------
 */

static void reply_json(struct evhttp_request *req, int status, json_t *root)
{
        struct evbuffer *b = evbuffer_new();
        char *s = json_dumps(root, JSON_COMPACT);

        json_decref(root);
        if (s) {
                evbuffer_add(b, s, strlen(s));
                evbuffer_add(b, "\n", 1);
                free(s);
        }
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type", "application/json");
        evhttp_send_reply(req, status, NULL, b);
        evbuffer_free(b);
}

static void reply_error(struct evhttp_request *req, int status, const char *msg)
{
        reply_json(req, status, json_pack("{s:s}", "error", msg));
}

/* ---- stats ----------------------------------------------------------------
 */

static json_t *account_stats(struct sim_account *a)
{
        const struct sim_stats *st = &a->st;
        size_t served = 0, i;
        json_t *o;

        for (i = 0; i < a->nvers; i++)
                served += a->vers[i]->served;
        o = json_pack(
                "{s:s,s:s,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
                "s:{s:I,s:I,s:I,s:I,s:I},s:i,s:I,s:I,s:i,s:I,s:I,s:I,s:I,s:b,"
                "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
                "provider", sim_prov_name(a->prov), "account", a->name,
                "requests", (json_int_t)st->requests, "status", "2xx",
                (json_int_t)st->s2xx, "204", (json_int_t)st->s204, "4xx",
                (json_int_t)st->s4xx, "401", (json_int_t)st->s401, "403",
                (json_int_t)st->s403, "404", (json_int_t)st->s404, "429",
                (json_int_t)st->s429, "5xx", (json_int_t)st->s5xx, "faults",
                "reset", (json_int_t)st->resets, "slow", (json_int_t)st->slow,
                "truncated", (json_int_t)st->truncated, "malformed",
                (json_int_t)st->malformed, "html", (json_int_t)st->html,
                "max_concurrent", st->max_conc, "max_concurrent_at_ms",
                (json_int_t)st->max_conc_at_ms, "overlaps",
                (json_int_t)st->overlaps, "concurrent", st->cur_conc, "events",
                (json_int_t)st->events, "versions", (json_int_t)st->versions,
                "consolidations", (json_int_t)st->consolidations,
                "served_versions", (json_int_t)served, "banned",
                a->banned_until && eb_mono_ms() < a->banned_until, "webhooks",
                "scheduled", (json_int_t)st->wh_scheduled, "attempts",
                (json_int_t)st->wh_attempts, "delivered",
                (json_int_t)st->wh_delivered, "failed",
                (json_int_t)st->wh_failed, "retries",
                (json_int_t)st->wh_retries, "duplicates",
                (json_int_t)st->wh_dups, "pending", (json_int_t)st->wh_pending);
        if (o) {
                json_object_set_new(o, "stripped",
                                    json_integer((json_int_t)a->stripped));
                json_object_set_new(o, "oauth",
                                    json_pack("{s:I,s:I}", "refreshes",
                                              (json_int_t)a->refreshes,
                                              "refused",
                                              (json_int_t)a->refresh_refused));
        }
        return o;
}

static void handle_stats(struct sim *sim, struct evhttp_request *req,
                         const struct evkeyvalq *q)
{
        const char *only = evhttp_find_header(q, "account");
        json_t *arr = json_array();
        size_t i;

        for (i = 0; i < sim->nacct; i++)
                if (!only || !strcmp(only, sim->accts[i]->name))
                        json_array_append_new(arr,
                                              account_stats(sim->accts[i]));
        reply_json(
                req, 200,
                json_pack("{s:I,s:I,s:o}", "uptime_ms",
                          (json_int_t)(eb_now_ms() - sim->start_ms),
                          "webhooks_pending",
                          (json_int_t)(sim->hook ? sim_hook_pending(sim->hook)
                                                 : 0),
                          "accounts", arr));
}

static void handle_truth(struct sim *sim, struct evhttp_request *req,
                         const struct evkeyvalq *q)
{
        const char *prov = evhttp_find_header(q, "provider");
        const char *acct = evhttp_find_header(q, "account");
        const char *served = evhttp_find_header(q, "served");
        struct evbuffer *b = evbuffer_new();
        size_t i;

        for (i = 0; i < sim->nacct; i++) {
                struct sim_account *a = sim->accts[i];
                if (prov && strcmp(prov, sim_prov_name(a->prov)))
                        continue;
                if (acct && strcmp(acct, a->name))
                        continue;
                sim_truth_account(a, b, served && !strcmp(served, "1"));
        }
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type", "application/x-ndjson");
        evhttp_send_reply(req, 200, NULL, b);
        evbuffer_free(b);
}

static void handle_get_control(struct sim *sim, struct evhttp_request *req)
{
        json_t *o = json_object();
        size_t i;

        for (i = 0; i < sim->nacct; i++)
                json_object_set_new(o, sim->accts[i]->name,
                                    sim_settings_json(&sim->accts[i]->set));
        reply_json(req, 200, json_pack("{s:o}", "accounts", o));
}

static int get_count(json_t *root, const char *key, int64_t max, int64_t *out,
                     char *err, size_t errsz)
{
        json_t *v = json_object_get(root, key);

        *out = 0;
        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > max) {
                snprintf(err, errsz, "%s: expected an integer 0..%lld", key,
                         (long long)max);
                return -EINVAL;
        }
        *out = json_integer_value(v);
        return 0;
}

static void handle_post_control(struct sim *sim, struct evhttp_request *req)
{
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        json_t *root = NULL, *set, *v, *accts = NULL, *gen = NULL, *cons = NULL;
        json_t *psn = NULL, *oauth = NULL;
        const char *oauth_op = NULL;
        json_error_t jerr;
        const char *target = "all", *k;
        char err[256];
        int64_t ngen = 0, ncons = 0, npoison = 0, now;
        size_t i;
        int reset = 0, dump = 0;

        root = json_loadb((const char *)evbuffer_pullup(in, -1), len,
                          JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(root)) {
                snprintf(err, sizeof(err), "body: expected a JSON object%s%s",
                         root ? "" : ": ", root ? "" : jerr.text);
                reply_error(req, 400, err);
                goto out;
        }
        json_object_foreach(root, k, v)
        {
                if (strcmp(k, "target") && strcmp(k, "set") &&
                    strcmp(k, "generate") && strcmp(k, "consolidate") &&
                    strcmp(k, "poison") && strcmp(k, "reset_stats") &&
                    strcmp(k, "dump") && strcmp(k, "oauth")) {
                        snprintf(err, sizeof(err),
                                 "unknown key '%s' (target, set, generate, "
                                 "poison, consolidate, reset_stats, dump, "
                                 "oauth)",
                                 k);
                        reply_error(req, 400, err);
                        goto out;
                }
        }
        v = json_object_get(root, "target");
        if (v) {
                if (!json_is_string(v) ||
                    !sim_target_valid(sim, json_string_value(v))) {
                        reply_error(req, 400,
                                    "target: expected all, kommo, close, "
                                    "kota or an account name");
                        goto out;
                }
                target = json_string_value(v);
        }
        set = json_object_get(root, "set");
        if (set && !json_is_object(set)) {
                reply_error(req, 400, "set: expected an object");
                goto out;
        }
        if (get_count(root, "generate", 100000, &ngen, err, sizeof(err)) < 0 ||
            get_count(root, "poison", 1000, &npoison, err, sizeof(err)) < 0 ||
            get_count(root, "consolidate", 10000, &ncons, err, sizeof(err)) <
                    0) {
                reply_error(req, 400, err);
                goto out;
        }
        v = json_object_get(root, "oauth");
        if (v) {
                oauth_op = json_string_value(v);
                if (!oauth_op || (strcmp(oauth_op, "revoke") &&
                                  strcmp(oauth_op, "reauthorize"))) {
                        reply_error(req, 400,
                                    "oauth: expected \"revoke\" or "
                                    "\"reauthorize\"");
                        goto out;
                }
        }
        reset = json_is_true(json_object_get(root, "reset_stats"));
        dump = json_is_true(json_object_get(root, "dump"));
        /* validate every setting first so a bad one changes nothing */
        if (set) {
                struct sim_settings scratch;
                int rc = 0;

                sim_settings_default(&scratch, SIM_KOMMO);
                json_object_foreach(set, k, v)
                {
                        rc = sim_setting_apply(&scratch, k, v, 0, eb_now_ms(),
                                               sim->start_ms, err, sizeof(err));
                        if (rc < 0)
                                break;
                }
                sim_settings_fini(&scratch);
                if (rc < 0) {
                        reply_error(req, 400, err);
                        goto out;
                }
                json_object_foreach(set, k, v)
                {
                        if (sim_apply_target(sim, target, k, v, 0, err,
                                             sizeof(err)) < 0) {
                                reply_error(req, 400, err);
                                goto out;
                        }
                }
        }
        accts = json_array();
        gen = json_object();
        cons = json_object();
        psn = json_object();
        oauth = json_object();
        now = eb_now_ms();
        for (i = 0; i < sim->nacct; i++) {
                struct sim_account *a = sim->accts[i];
                json_t *ids;
                int64_t n;

                if (!target_match(a, target))
                        continue;
                json_array_append_new(accts, json_string(a->name));
                if (reset) {
                        struct sim_stats *st = &a->st;
                        st->requests = st->s2xx = st->s204 = st->s4xx = 0;
                        st->s401 = st->s403 = st->s404 = st->s429 = 0;
                        st->s5xx = st->resets = st->slow = 0;
                        st->truncated = st->malformed = st->html = 0;
                        st->max_conc = st->cur_conc;
                        st->max_conc_at_ms = 0;
                        st->overlaps = 0;
                        st->wh_scheduled = st->wh_attempts = 0;
                        st->wh_delivered = st->wh_failed = 0;
                        st->wh_retries = st->wh_dups = 0;
                }
                if (ngen) {
                        ids = json_array();
                        for (n = 0; n < ngen; n++) {
                                struct sim_event *evt = sim_generate(a, now, 1);
                                if (evt)
                                        json_array_append_new(
                                                ids, json_string(evt->id));
                        }
                        json_object_set_new(gen, a->name, ids);
                }
                if (npoison) {
                        ids = json_array();
                        for (n = 0; n < npoison; n++) {
                                struct sim_event *evt = sim_generate(a, now, 0);
                                if (!evt)
                                        continue;
                                sim_poison(evt);
                                json_array_append_new(ids,
                                                      json_string(evt->id));
                        }
                        json_object_set_new(psn, a->name, ids);
                }
                if (oauth_op && a->prov == SIM_KOMMO) {
                        if (!strcmp(oauth_op, "revoke"))
                                sim_oauth_revoke(a);
                        else
                                json_object_set_new(
                                        oauth, a->name,
                                        json_string(sim_oauth_reauthorize(a)));
                }
                if (ncons && a->prov == SIM_CLOSE) {
                        ids = json_array();
                        sim_consolidate_now(a, (size_t)ncons, now, ids);
                        json_object_set_new(cons, a->name, ids);
                }
        }
        if (dump && sim->dump_path && sim_dump_write(sim) < 0) {
                reply_error(req, 500, "writing the dump file failed");
                goto out;
        }
        reply_json(req, 200,
                   json_pack("{s:b,s:O,s:O,s:O,s:O,s:O}", "ok", 1, "accounts",
                             accts, "generated", gen, "consolidated", cons,
                             "poisoned", psn, "refresh_tokens", oauth));
out:
        json_decref(accts);
        json_decref(gen);
        json_decref(cons);
        json_decref(psn);
        json_decref(oauth);
        json_decref(root);
}

void sim_control_handle(struct sim *sim, struct evhttp_request *req,
                        const char *path)
{
        const char *rawq =
                evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
        struct evkeyvalq q;

        TAILQ_INIT(&q);
        if (sim_query_parse(rawq, &q) < 0) {
                reply_error(req, 400, "malformed query string");
                return;
        }
        if (!strcmp(path, "/_sim/control") && cmd == EVHTTP_REQ_POST)
                handle_post_control(sim, req);
        else if (cmd != EVHTTP_REQ_GET)
                reply_error(req, 405, "method not allowed");
        else if (!strcmp(path, "/_sim/control"))
                handle_get_control(sim, req);
        else if (!strcmp(path, "/_sim/stats"))
                handle_stats(sim, req, &q);
        else if (!strcmp(path, "/_sim/truth"))
                handle_truth(sim, req, &q);
        else if (!strcmp(path, "/_sim/info"))
                reply_json(req, 200, sim_info_json(sim));
        else if (!strcmp(path, "/_sim/health"))
                reply_json(req, 200, json_pack("{s:b}", "ok", 1));
        else
                reply_error(req, 404, "unknown /_sim/ path");
        evhttp_clear_headers(&q);
}
