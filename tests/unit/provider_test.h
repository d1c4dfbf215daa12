/*
 * provider_test.h: helpers shared by the provider adapter unit tests
 * (test_provider_contract.c and each test_provider_<name>.c).
 * Header-only (static inline) so the Makefile needs no change.
 */
#ifndef EB_PROVIDER_TEST_H
#define EB_PROVIDER_TEST_H

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_config.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"

/* 2023-11-14T22:13:20Z: the wall clock of every test walk. */
#define T_NOW_MS 1700000000000LL

static inline char *t_strdup(const char *s)
{
        char *p;

        if (!s)
                return NULL;
        p = malloc(strlen(s) + 1);
        if (!p)
                abort();
        memcpy(p, s, strlen(s) + 1);
        return p;
}

/* A source as eb_config would load it; @p options_json may be NULL. */
static inline void t_src_init(struct eb_source_cfg *c, const char *provider,
                              const char *base_url, const char *options_json)
{
        json_error_t jerr;

        memset(c, 0, sizeof(*c));
        c->name = t_strdup("acme");
        c->provider = t_strdup(provider);
        c->base_url = t_strdup(base_url);
        c->enabled = 1;
        if (provider && !strcmp(provider, "kommo"))
                c->token = t_strdup("kommo-token-abcdef");
        else
                c->api_key = t_strdup("api_3x4mpl3K3y");
        c->poll_start = t_strdup("24h");
        c->overlap_ms = -1;
        c->lag_ms = -1;
        c->page_size = 0;
        c->json = json_object();
        if (options_json) {
                json_t *o = json_loads(options_json, JSON_DECODE_ANY, &jerr);

                if (!o) {
                        fprintf(stderr, "bad options JSON in test: %s\n",
                                jerr.text);
                        abort();
                }
                json_object_set_new(c->json, "options", o);
        }
}

static inline void t_src_fini(struct eb_source_cfg *c)
{
        free(c->name);
        free(c->provider);
        free(c->base_url);
        free(c->token);
        free(c->api_key);
        free(c->poll_start);
        json_decref(c->json);
        memset(c, 0, sizeof(*c));
}

/* A response; @p body may be a fixture's contents or a literal. */
static inline struct eb_response t_resp(long status, const char *body,
                                        const char *content_type)
{
        struct eb_response r;

        memset(&r, 0, sizeof(r));
        r.status = status;
        r.body = body ? body : "";
        r.body_len = body ? strlen(body) : 0;
        r.content_type = content_type;
        r.now_ms = T_NOW_MS;
        return r;
}

/* Fixture contents (abort if missing: a broken checkout, not a test). */
static inline char *t_fixture(const char *name)
{
        char *p = eb_test_read_fixture(name, NULL);

        if (!p) {
                fprintf(stderr, "missing fixture %s\n", name);
                abort();
        }
        return p;
}

/* next_request's URL (new string, or NULL on error); auth to @p authp
 * when non-NULL, else freed. */
static inline char *t_url(struct eb_walk *w, char **authp)
{
        char *url = NULL, *auth = NULL;

        if (w->prov->next_request(w, &url, &auth))
                return NULL;
        if (authp)
                *authp = auth;
        else
                free(auth);
        return url;
}

/* The checkpoint as compact JSON with sorted keys (new string). */
static inline char *t_cp(const struct eb_walk *w)
{
        if (!w->cp)
                return t_strdup("null");
        return json_dumps(w->cp, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Feed @p body with status 200 to the walk's adapter. */
static inline void t_feed(struct eb_walk *w, long status, const char *body,
                          const char *ct, struct eb_page *page)
{
        struct eb_response r = t_resp(status, body, ct);

        w->prov->handle_response(w, &r, page);
}

#define T_CHECK_URL(w, expect)                                                 \
        do {                                                                   \
                char *u_ = t_url((w), NULL);                                   \
                EB_CHECK_STR(u_, (expect));                                    \
                free(u_);                                                      \
        } while (0)

#define T_CHECK_CP(w, expect)                                                  \
        do {                                                                   \
                char *c_ = t_cp(w);                                            \
                EB_CHECK_STR(c_, (expect));                                    \
                free(c_);                                                      \
        } while (0)

/* ---- options: check_config tables ----------------------------------- */

struct t_opt_case {
        const char *opts; /* NULL: no options at all */
        const char *err;  /* NULL: accepted */
};

/* check_config of @p prov on a source at "sources[0]" with options
 * @p opts: accepted when @p expect is NULL, else -EINVAL with a message
 * equal to @p expect (@p exact) or containing it. */
static inline void t_check_option(const struct eb_provider *prov,
                                  const char *base_url, size_t i,
                                  const char *opts, const char *expect,
                                  int exact)
{
        struct eb_source_cfg s;
        char err[512] = "";
        int rc;

        t_src_init(&s, prov->name, base_url, opts);
        rc = prov->check_config(&s, "sources[0]", err, sizeof(err));
        if (!expect) {
                if (rc)
                        fprintf(stderr, "  case %zu: %s\n", i, err);
                EB_CHECK_INT(rc, 0);
        } else if (exact) {
                EB_CHECK_INT(rc, -EINVAL);
                EB_CHECK_STR(err, expect);
        } else {
                EB_CHECK_INT(rc, -EINVAL);
                if (!strstr(err, expect))
                        fprintf(stderr, "  case %zu: %s\n", i, err);
                EB_CHECK(strstr(err, expect) != NULL);
        }
        t_src_fini(&s);
}

/* t_check_option() with exact messages for each of @p n @p cases. */
static inline void t_check_options(const struct eb_provider *prov,
                                   const char *base_url,
                                   const struct t_opt_case *cases, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                t_check_option(prov, base_url, i, cases[i].opts, cases[i].err,
                               1);
}

/* ---- statuses: one response to a fresh walk ------------------------- */

struct t_status {
        long status;
        const char *fixture; /* or NULL */
        const char *body;    /* used when fixture is NULL */
        const char *ct;
        const char *retry_after;
        eb_resp_kind_t kind;
        int64_t retry_ms;
        size_t events;
        const char *detail; /* prefix */
};

/* Feed case @p c (with RateLimit header @p ratelimit, may be NULL) to a
 * fresh walk of @p prov over @p s (case number @p i, for the log) and check
 * what every adapter promises: the kind, wait, event count and detail prefix;
 * no "more" on an error page, and an error page leaves the walk where it was.
 * @p page is left to the caller for its own checks; it must eb_page_fini() it.
 */
static inline void t_check_status(const struct eb_provider *prov,
                                  struct eb_source_cfg *s, size_t i,
                                  const struct t_status *c,
                                  const char *ratelimit, struct eb_page *page)
{
        struct eb_walk w;
        struct eb_response r;
        char *body = c->fixture ? t_fixture(c->fixture) : t_strdup(c->body);
        int rc;

        memset(page, 0, sizeof(*page));
        eb_walk_init(&w, prov, s, NULL, T_NOW_MS);
        rc = w.prov->walk_begin(&w);
        EB_CHECK_INT(rc, 0);
        if (rc)
                goto out;
        r = t_resp(c->status, body, c->ct);
        r.retry_after = c->retry_after;
        r.ratelimit = ratelimit;
        w.prov->handle_response(&w, &r, page);
        if (page->kind != c->kind ||
            strncmp(page->detail, c->detail, strlen(c->detail)))
                fprintf(stderr, "  case %zu (HTTP %ld): kind %s: %s\n", i,
                        c->status, eb_resp_kind_name(page->kind), page->detail);
        EB_CHECK_INT(page->kind, c->kind);
        EB_CHECK_INT(page->retry_after_ms, c->retry_ms);
        EB_CHECK_INT(page->events_cnt, c->events);
        EB_CHECK(!strncmp(page->detail, c->detail, strlen(c->detail)));
        EB_CHECK(page->more == 0 || page->kind == EB_RESP_OK);
        /* Errors never advance the walk. */
        if (page->kind != EB_RESP_OK) {
                w.prov->page_done(&w);
                EB_CHECK(w.cp == NULL);
                EB_CHECK_INT(w.pages, 0);
        }
out:
        eb_walk_fini(&w);
        free(body);
}

/* ---- normalize: events it must reject ------------------------------ */

struct t_reject {
        const char *json; /* a native event */
        const char *err;  /* normalize's exact reason */
};

/* Each of @p n @p cases must make @p prov's normalize (for source @p s)
 * return NULL with exactly its reason. */
static inline void t_check_rejects(const struct eb_provider *prov,
                                   const struct eb_source_cfg *s,
                                   const struct t_reject *cases, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++) {
                char err[256] = "";
                json_t *ev = json_loads(cases[i].json, 0, NULL);
                struct eb_event *evt;

                EB_CHECK(ev != NULL);
                if (!ev)
                        continue;
                evt = prov->normalize(s, ev, err, sizeof(err));
                EB_CHECK(evt == NULL);
                EB_CHECK_STR(err, cases[i].err);
                eb_event_free(evt);
                json_decref(ev);
        }
}

/* ---- robustness: garbage must never crash an adapter ------------------ */

struct t_garbage {
        const struct eb_provider *prov;
        struct eb_source_cfg *src;
        const char *ct;
        long fed;
        long bad; /* results that broke the contract */
};

/* Feed one 200 body; check the contract: only OK or BAD_BODY, OK events
 * complete, BAD_BODY with no events and a detail. */
static inline void t_garbage_feed(struct t_garbage *g, const char *body,
                                  size_t len)
{
        struct eb_walk w;
        struct eb_page page;
        struct eb_response r;
        size_t i;
        int ok = 1;

        eb_walk_init(&w, g->prov, g->src, NULL, T_NOW_MS);
        if (g->prov->walk_begin(&w)) {
                g->bad++;
                eb_walk_fini(&w);
                return;
        }
        r = t_resp(200, body, g->ct);
        r.body_len = len;
        memset(&page, 0, sizeof(page));
        g->prov->handle_response(&w, &r, &page);
        if (page.kind == EB_RESP_OK) {
                for (i = 0; i < page.events_cnt; i++) {
                        const struct eb_event *e = page.events[i];

                        if (e->deadletter) {
                                /* a poison event, raw */
                                if (!e->id || !e->native || !e->provider ||
                                    !e->source_name || !*e->deadletter)
                                        ok = 0;
                                continue;
                        }
                        if (!e->id || !*e->id || !e->provider ||
                            !e->entity_type || !e->entity_id || !e->action ||
                            !*e->action || !e->native || !e->fields ||
                            !e->source_name)
                                ok = 0;
                }
        } else if (page.kind != EB_RESP_BAD_BODY || page.events_cnt ||
                   !page.detail[0]) {
                ok = 0;
        }
        g->prov->page_done(&w);
        g->prov->walk_end(&w);
        if (!ok) {
                fprintf(stderr, "  contract broken (%s: %s) for: %.200s\n",
                        eb_resp_kind_name(page.kind), page.detail, body);
                g->bad++;
        }
        g->fed++;
        eb_page_fini(&page);
        eb_walk_fini(&w);
}

static inline void t_garbage_dump(struct t_garbage *g, json_t *root)
{
        char *s = json_dumps(root, JSON_COMPACT);

        if (s) {
                t_garbage_feed(g, s, strlen(s));
                free(s);
        }
}

/* Replace every value in the tree under @p node, one at a time, by a value
 * of each JSON type, feeding the whole document each time. */
static inline void t_garbage_types(struct t_garbage *g, json_t *root,
                                   json_t *node)
{
        json_t *alts[8];
        size_t i, k, n = 0;
        void *it;

        alts[0] = json_null();
        alts[1] = json_true();
        alts[2] = json_integer(-1);
        alts[3] = json_real(1.5);
        alts[4] = json_string("");
        alts[5] = json_string("x\xc3\xa9\x01");
        alts[6] = json_array();
        alts[7] = json_object();
        if (json_is_object(node)) {
                for (it = json_object_iter(node); it;
                     it = json_object_iter_next(node, it)) {
                        json_t *orig = json_incref(json_object_iter_value(it));

                        for (k = 0; k < 8; k++) {
                                json_object_iter_set(node, it, alts[k]);
                                t_garbage_dump(g, root);
                        }
                        json_object_iter_set_new(node, it, orig);
                        t_garbage_types(g, root, orig);
                }
        } else if (json_is_array(node)) {
                n = json_array_size(node);
                for (i = 0; i < n; i++) {
                        json_t *orig = json_incref(json_array_get(node, i));

                        for (k = 0; k < 8; k++) {
                                json_array_set(node, i, alts[k]);
                                t_garbage_dump(g, root);
                        }
                        json_array_set_new(node, i, orig);
                        t_garbage_types(g, root, orig);
                }
        }
        for (k = 0; k < 8; k++)
                json_decref(alts[k]);
}

/* Truncations, byte flips and type swaps of fixture @p name. */
static inline void t_garbage_fixture(struct t_garbage *g, const char *name)
{
        char *body = t_fixture(name), *copy;
        size_t len = strlen(body), off, i;
        uint32_t seed = 2463534242u;
        json_t *root;

        for (off = 0; off < len; off += 5)
                t_garbage_feed(g, body, off);
        copy = malloc(len + 1);
        if (!copy)
                abort();
        for (i = 0; i < 400; i++) {
                int flips = 1 + (int)(i % 3), f;

                memcpy(copy, body, len + 1);
                for (f = 0; f < flips; f++) {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        copy[seed % len] =
                                (char)(" {}[]\",:0a\\-.e\x80\xff"[(seed >> 8) %
                                                                  17]);
                }
                t_garbage_feed(g, copy, len);
        }
        free(copy);
        root = json_loads(body, 0, NULL);
        if (root) {
                t_garbage_types(g, root, root);
                json_decref(root);
        }
        free(body);
}

#endif /* EB_PROVIDER_TEST_H */
