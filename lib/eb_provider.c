#include "eb_provider.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_json.h"
#include "eb_oauth.h"
#include "eb_ratelimit.h"
#include "eb_time.h"
#include "eb_util.h"

/* ---- registry ------------------------------------------------------- */

/* The built-in providers (lib/providers/list.h), then those added with
 * eb_provider_register(); NULL-terminated. */
static const struct eb_provider *providers[EB_PROVIDER_MAX + 1] = {
#define EB_PROVIDER(x) &eb_provider_##x,
#include "providers/list.h"
#undef EB_PROVIDER
};

const struct eb_provider *eb_provider_lookup(const char *name)
{
        size_t i;

        if (!name)
                return NULL;
        for (i = 0; providers[i]; i++) {
                if (!strcmp(providers[i]->name, name))
                        return providers[i];
        }
        return NULL;
}

const struct eb_provider *const *eb_provider_all(void)
{
        return (const struct eb_provider *const *)providers;
}

int eb_provider_register(const struct eb_provider *prov)
{
        size_t i;

        if (!prov || !prov->name || eb_provider_lookup(prov->name))
                return -EEXIST;
        for (i = 0; providers[i]; i++)
                ;
        if (i >= EB_PROVIDER_MAX)
                return -ENOSPC;
        providers[i] = prov;
        return 0;
}

static void known_list(char *buf, size_t sz)
{
        size_t i, off = 0;

        buf[0] = '\0';
        for (i = 0; providers[i] && off < sz; i++) {
                int n = snprintf(buf + off, sz - off, "%s%s", i ? ", " : "",
                                 providers[i]->name);
                if (n < 0)
                        break;
                off += (size_t)n;
        }
}

static int is_http_url(const char *s)
{
        return !strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8);
}

static int check_source(const struct eb_source_cfg *src, size_t idx,
                        char *errstr, size_t errstr_size)
{
        const struct eb_provider *prov;
        const char *cred;
        char path[48], known[128];

        snprintf(path, sizeof(path), "sources[%zu]", idx);
        known_list(known, sizeof(known));
        if (!src->provider || !*src->provider) {
                snprintf(errstr, errstr_size,
                         "%s.provider: required (known: %s)", path, known);
                return -EINVAL;
        }
        prov = eb_provider_lookup(src->provider);
        if (!prov) {
                snprintf(errstr, errstr_size,
                         "%s.provider: unknown provider \"%.64s\" (known: %s)",
                         path, src->provider, known);
                return -EINVAL;
        }
        cred = !strcmp(prov->credential, "token") ? src->token : src->api_key;
        if (eb_oauth_configured(src)) {
                int rc = eb_oauth_check_config(src, path, errstr, errstr_size);

                if (rc)
                        return rc;
                cred = src->client_id; /* Kommo OAuth instead of a token */
        }
        if (!cred || !*cred) {
                snprintf(errstr, errstr_size,
                         "%s.credentials.%s: required for provider %s", path,
                         prov->credential, prov->name);
                return -EINVAL;
        }
        if (!prov->default_base_url && (!src->base_url || !*src->base_url)) {
                snprintf(errstr, errstr_size,
                         "%s.base_url: required for provider %s (the "
                         "account's own domain, e.g. "
                         "https://<subdomain>.kommo.com)",
                         path, prov->name);
                return -EINVAL;
        }
        if (src->base_url && !is_http_url(src->base_url)) {
                snprintf(errstr, errstr_size,
                         "%s.base_url: expected an http:// or https:// URL, "
                         "got \"%.100s\"",
                         path, src->base_url);
                return -EINVAL;
        }
        if (src->base_url && strpbrk(src->base_url, "?# \t\r\n")) {
                snprintf(errstr, errstr_size,
                         "%s.base_url: must not contain a query, a fragment "
                         "or spaces (got \"%.100s\")",
                         path, src->base_url);
                return -EINVAL;
        }
        if (src->page_size < 0 || src->page_size > prov->max_page_size) {
                snprintf(errstr, errstr_size,
                         "%s.poll.page_size: %d is %s for provider %s "
                         "(1..%d)",
                         path, src->page_size,
                         src->page_size < 0 ? "out of range"
                                            : "above the maximum",
                         prov->name, prov->max_page_size);
                return -EINVAL;
        }
        if (prov->check_config)
                return prov->check_config(src, path, errstr, errstr_size);
        return 0;
}

/* The URL a source polls, for comparing: its own or the provider's
 * default, without trailing slashes. */
static size_t base_url_of(const struct eb_source_cfg *src,
                          const struct eb_provider *prov, const char **url)
{
        size_t n;

        *url = src->base_url && *src->base_url ? src->base_url
                                               : prov->default_base_url;
        n = strlen(*url);
        while (n > 0 && (*url)[n - 1] == '/')
                n--;
        return n;
}

static const char *credential_of(const struct eb_source_cfg *src,
                                 const struct eb_provider *prov)
{
        const char *c =
                !strcmp(prov->credential, "token") ? src->token : src->api_key;

        /* Kommo OAuth: the integration is the account's identity. */
        return c ? c : src->client_id ? src->client_id : "";
}

/*
 * Two enabled sources on the same provider, base URL and credentials poll
 * the same account: every event would be fetched twice and, under two
 * source names, published twice (dedupe is per source).
 */
static int check_duplicates(const struct eb_config *cfg, char *errstr,
                            size_t errstr_size)
{
        size_t i, j;

        for (i = 0; i < cfg->sources_cnt; i++) {
                const struct eb_source_cfg *a = &cfg->sources[i];
                const struct eb_provider *prov =
                        eb_provider_lookup(a->provider);
                const char *ua, *ub;
                size_t na, nb;

                if (!a->enabled || !prov)
                        continue;
                na = base_url_of(a, prov, &ua);
                for (j = i + 1; j < cfg->sources_cnt; j++) {
                        const struct eb_source_cfg *b = &cfg->sources[j];

                        if (!b->enabled || strcmp(a->provider, b->provider))
                                continue;
                        nb = base_url_of(b, prov, &ub);
                        if (na != nb || strncasecmp(ua, ub, na) ||
                            strcmp(credential_of(a, prov),
                                   credential_of(b, prov)))
                                continue;
                        snprintf(errstr, errstr_size,
                                 "sources[%zu] \"%.100s\" and sources[%zu] "
                                 "\"%.100s\": same provider (%s), base_url "
                                 "(%.*s) and credentials.%s: both would poll "
                                 "the same account and publish its events "
                                 "twice; keep one, or disable one "
                                 "(\"enabled\": false)",
                                 i, a->name, j, b->name, prov->name, (int)na,
                                 ua, prov->credential);
                        return -EINVAL;
                }
        }
        return 0;
}

/* The most requests a source's token bucket lets through in one second:
 * a full bucket (burst) plus one second of refill (rps). */
static double per_second(const struct eb_source_cfg *src,
                         const struct eb_provider *prov)
{
        double rps = src->rate_rps > 0 ? src->rate_rps : prov->default_rps;
        int burst = src->rate_burst > 0 ? src->rate_burst : prov->default_burst;

        return rps + (double)(burst > 0 ? burst : 1);
}

/* "https://ACME.kommo.com/" and "https://acme.kommo.com" name one
 * account: compare without the scheme and trailing slashes, ignoring case
 * (a simulator serves several accounts on one host, told apart by path). */
static int same_account(const char *a, const char *b)
{
        const char *pa = a ? strstr(a, "://") : NULL;
        const char *pb = b ? strstr(b, "://") : NULL;
        size_t na, nb;

        if (!pa || !pb)
                return 0;
        pa += 3;
        pb += 3;
        na = strlen(pa);
        nb = strlen(pb);
        while (na && pa[na - 1] == '/')
                na--;
        while (nb && pb[nb - 1] == '/')
                nb--;
        return na == nb && !strncasecmp(pa, pb, na);
}

/*
 * Kommo allows 7 requests per second per account and bans the address
 * after repeated 429s: a rate_limit that can exceed the documented limit
 * is refused rather than clamped, because a ban stops every source of
 * that address for a long time. Sources on one account (the same
 * base_url) are checked together: their budgets add up.
 */
static int check_rates(const struct eb_config *cfg, char *errstr,
                       size_t errstr_size)
{
        size_t i, j;

        for (i = 0; i < cfg->sources_cnt; i++) {
                const struct eb_source_cfg *s = &cfg->sources[i];
                const struct eb_provider *prov =
                        eb_provider_lookup(s->provider);
                double sum, own;
                size_t n = 1;

                if (!prov || prov->max_per_second <= 0 || !s->enabled ||
                    s->rate_above_documented)
                        continue;
                own = per_second(s, prov);
                if (own >= (double)prov->max_per_second + 1) {
                        snprintf(errstr, errstr_size,
                                 "sources[%zu].rate_limit: rps %g + burst %d "
                                 "lets %g requests through in one second, "
                                 "above %s's documented limit of %d per "
                                 "account (repeated 429s get the address "
                                 "banned); use rps + burst below %d, e.g. "
                                 "rps %g and burst %d (the default)",
                                 i,
                                 s->rate_rps > 0 ? s->rate_rps
                                                 : prov->default_rps,
                                 s->rate_burst > 0 ? s->rate_burst
                                                   : prov->default_burst,
                                 own, prov->name, prov->max_per_second,
                                 prov->max_per_second + 1, prov->default_rps,
                                 prov->default_burst);
                        return -EINVAL;
                }
                sum = own;
                for (j = 0; j < cfg->sources_cnt; j++) {
                        const struct eb_source_cfg *o = &cfg->sources[j];
                        if (j == i || !o->provider || !o->enabled ||
                            o->rate_above_documented ||
                            strcmp(o->provider, s->provider) ||
                            !same_account(o->base_url, s->base_url))
                                continue;
                        if (j < i)
                                break; /* reported for the first one */
                        sum += per_second(o, prov);
                        n++;
                }
                if (j >= cfg->sources_cnt && n > 1 &&
                    sum >= (double)prov->max_per_second + 1) {
                        snprintf(errstr, errstr_size,
                                 "sources[%zu].rate_limit: %zu %s sources "
                                 "poll the account at %s and together can "
                                 "send %g requests in one second, above its "
                                 "documented limit of %d per account; give "
                                 "them rate_limit values whose rps + burst "
                                 "add up to less than %d",
                                 i, n, prov->name, s->base_url, sum,
                                 prov->max_per_second,
                                 prov->max_per_second + 1);
                        return -EINVAL;
                }
        }
        return 0;
}

int eb_provider_check_config(const struct eb_config *cfg, char *errstr,
                             size_t errstr_size)
{
        size_t i;
        int rc;

        if (!cfg)
                return -EINVAL;
        for (i = 0; i < cfg->sources_cnt; i++) {
                rc = check_source(&cfg->sources[i], i, errstr, errstr_size);
                if (rc)
                        return rc;
                if (eb_oauth_configured(&cfg->sources[i]) &&
                    cfg->delivery != EB_DELIVERY_EXACTLY_ONCE) {
                        /* at-least-once keeps no checkpoint in Kafka, so
                         * the rotating token pair could not survive */
                        snprintf(errstr, errstr_size,
                                 "sources[%zu].credentials: Kommo OAuth "
                                 "needs kafka.delivery \"exactly-once\" "
                                 "(each new token pair is persisted in the "
                                 "state topic before it is used)",
                                 i);
                        return -EINVAL;
                }
        }
        rc = check_duplicates(cfg, errstr, errstr_size);
        if (rc)
                return rc;
        return check_rates(cfg, errstr, errstr_size);
}

/* ---- pages ----------------------------------------------------------- */

struct eb_event *eb_deadletter_event(const struct eb_source_cfg *src,
                                     const char *provider, json_t *native,
                                     const char *reason, const char *position)
{
        static const char key[] = "evbridge-deadletter";
        struct eb_event *evt = eb_event_new();
        char *text = native ? json_dumps(native, JSON_COMPACT | JSON_SORT_KEYS |
                                                         JSON_ENCODE_ANY)
                            : NULL;
        unsigned char mac[32];
        char hex[33];

        memset(mac, 0, sizeof(mac));
        if (text)
                (void)eb_hmac_sha256(key, sizeof(key) - 1, text, strlen(text),
                                     mac);
        free(text);
        eb_hex_encode(mac, 16, hex);
        evt->id = eb_xasprintf("deadletter-%s", hex);
        evt->source_name = eb_xstrdup(src && src->name ? src->name : "");
        evt->provider = eb_xstrdup(provider);
        evt->native = native ? json_incref(native) : json_null();
        evt->deadletter = eb_xstrdup(reason ? reason : "unknown");
        evt->position = position ? eb_xstrdup(position) : NULL;
        return evt;
}

void eb_page_init(struct eb_page *page)
{
        memset(page, 0, sizeof(*page));
        page->kind = EB_RESP_OK;
        page->ratelimit_limit = -1;
        page->ratelimit_remaining = -1;
        page->ratelimit_reset_ms = -1;
}

void eb_page_fini(struct eb_page *page)
{
        if (!page)
                return;
        eb_events_free(page->events, page->events_cnt);
        eb_json_src_unref(page->src);
        eb_page_init(page);
}

int eb_page_add_event(struct eb_page *page, struct eb_event *evt)
{
        if (page->events_cnt >= EB_PROVIDER_MAX_PAGE_EVENTS) {
                eb_event_free(evt);
                return -E2BIG;
        }
        page->events = eb_xrealloc(page->events, (page->events_cnt + 1) *
                                                         sizeof(*page->events));
        page->events[page->events_cnt++] = evt;
        if (page->src && !evt->src)
                evt->src = eb_json_src_ref(page->src);
        return 0;
}

static void vdetail(struct eb_page *page, const char *fmt, va_list ap)
        EB_PRINTF(2, 0);

static void vdetail(struct eb_page *page, const char *fmt, va_list ap)
{
        char *p;

        vsnprintf(page->detail, sizeof(page->detail), fmt, ap);
        for (p = page->detail; *p; p++) {
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        }
}

void eb_page_fail(struct eb_page *page, eb_resp_kind_t kind, const char *fmt,
                  ...)
{
        va_list ap;

        eb_events_free(page->events, page->events_cnt);
        page->events = NULL;
        page->events_cnt = 0;
        page->more = 0;
        page->full = 0;
        page->skipped_cnt = 0;
        page->kind = kind;
        va_start(ap, fmt);
        vdetail(page, fmt, ap);
        va_end(ap);
}

int eb_page_check_number(struct eb_page *page, const json_t *root,
                         const char *key, int64_t want)
{
        const json_t *v = json_object_get(root, key);

        if (!json_is_integer(v) || json_integer_value(v) == want)
                return 0;
        eb_page_fail(page, EB_RESP_BAD_BODY,
                     "asked for page %" PRId64 ", got a different %s", want,
                     key);
        return -1;
}

const char *eb_resp_kind_name(eb_resp_kind_t kind)
{
        switch (kind) {
        case EB_RESP_OK:
                return "ok";
        case EB_RESP_RATE_LIMITED:
                return "rate_limited";
        case EB_RESP_BANNED:
                return "banned";
        case EB_RESP_AUTH:
                return "auth";
        case EB_RESP_RETRY:
                return "retry";
        case EB_RESP_BAD_BODY:
                return "bad_body";
        case EB_RESP_CLIENT_ERROR:
                return "client_error";
        case EB_RESP_REFUSED:
                return "refused";
        }
        return "unknown";
}

eb_resp_kind_t eb_resp_classify(long status)
{
        if (status >= 200 && status <= 299)
                return EB_RESP_OK;
        if (status == 429)
                return EB_RESP_RATE_LIMITED;
        if (status == 401 || status == 402 || status == 403)
                return EB_RESP_AUTH;
        if (status == 0 || status == 408 || (status >= 500 && status <= 599))
                return EB_RESP_RETRY;
        if (status >= 300 && status <= 499)
                return EB_RESP_CLIENT_ERROR;
        return EB_RESP_BAD_BODY;
}

eb_resp_kind_t eb_resp_classify_error(long status)
{
        eb_resp_kind_t kind = eb_resp_classify(status);

        return kind == EB_RESP_OK ? EB_RESP_BAD_BODY : kind;
}

int64_t eb_resp_retry_after_ms(const struct eb_response *resp)
{
        int64_t ms;

        if (!resp->retry_after ||
            eb_retry_after_parse(resp->retry_after, resp->now_ms, &ms))
                return 0;
        return ms;
}

/* Copy up to @p max printable bytes of @p s into @p out. */
static void printable(const char *s, size_t len, char *out, size_t sz,
                      size_t max)
{
        size_t i, o = 0;

        for (i = 0; i < len && o + 1 < sz && o < max; i++) {
                unsigned char c = (unsigned char)s[i];

                if (!c)
                        break;
                out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        }
        out[o] = '\0';
}

/** Largest error body we bother to parse for a message. */
#define EB_PROVIDER_MAX_ERROR_BODY (64 * 1024)

void eb_page_http_error(struct eb_page *page, eb_resp_kind_t kind,
                        const struct eb_response *resp)
{
        json_t *root = NULL;
        const char *title = NULL, *detail = NULL;
        char excerpt[96];
        json_error_t jerr;

        if (resp->body && resp->body_len &&
            resp->body_len <= EB_PROVIDER_MAX_ERROR_BODY)
                root = json_loadb(resp->body, resp->body_len, 0, &jerr);
        if (json_is_object(root)) {
                title = eb_jfield_str(root, "title", 200);
                if (!title)
                        title = eb_jfield_str(root, "error_code", 200);
                detail = eb_jfield_str(root, "detail", 200);
                if (!detail)
                        detail = eb_jfield_str(root, "error", 200);
        }
        if (title || detail) {
                eb_page_fail(page, kind, "HTTP %ld%s%s%s%s", resp->status,
                             title ? ": " : "", title ? title : "",
                             detail ? ": " : "", detail ? detail : "");
        } else if (resp->body && resp->body_len) {
                printable(resp->body, resp->body_len, excerpt, sizeof(excerpt),
                          80);
                eb_page_fail(page, kind, "HTTP %ld: %s", resp->status, excerpt);
        } else {
                eb_page_fail(page, kind, "HTTP %ld", resp->status);
        }
        json_decref(root);
}

int eb_content_type_is_json(const char *ct)
{
        const char *end;
        size_t n;

        if (!ct)
                return 1;
        while (*ct == ' ' || *ct == '\t')
                ct++;
        if (!*ct)
                return 1;
        end = ct;
        while (*end && *end != ';' && *end != ' ' && *end != '\t')
                end++;
        n = (size_t)(end - ct);
        if (n == 16 && !strncasecmp(ct, "application/json", 16))
                return 1;
        if (n > 17 && !strncasecmp(ct, "application/", 12) &&
            !strncasecmp(end - 5, "+json", 5))
                return 1;
        return 0;
}

json_t *eb_resp_json_object(const struct eb_response *resp,
                            struct eb_page *page)
{
        json_t *root;
        json_error_t jerr;

        if (!eb_content_type_is_json(resp->content_type)) {
                char ct[64];

                printable(resp->content_type, strlen(resp->content_type), ct,
                          sizeof(ct), 60);
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "HTTP %ld with content-type \"%s\", expected "
                             "JSON",
                             resp->status, ct);
                return NULL;
        }
        if (!resp->body || !resp->body_len) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "HTTP %ld with an empty body", resp->status);
                return NULL;
        }
        eb_json_src_unref(page->src);
        page->src = NULL;
        root = eb_json_loadb_src(resp->body, resp->body_len,
                                 JSON_REJECT_DUPLICATES, &jerr, &page->src);
        if (!root) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "invalid JSON at line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
                return NULL;
        }
        if (!json_is_object(root)) {
                eb_page_fail(page, EB_RESP_BAD_BODY,
                             "expected a JSON object, got another JSON type");
                json_decref(root);
                return NULL;
        }
        return root;
}

/* ---- source options ---------------------------------------------------- */

json_t *eb_source_options(const struct eb_source_cfg *src)
{
        json_t *o;

        if (!src || !src->json)
                return NULL;
        o = json_object_get(src->json, "options");
        return json_is_object(o) ? o : NULL;
}

int eb_source_options_check(const struct eb_source_cfg *src, const char *path,
                            json_t **opts, char *errstr, size_t errstr_size)
{
        json_t *o = src->json ? json_object_get(src->json, "options") : NULL;

        *opts = NULL;
        if (!o || json_is_null(o))
                return 0;
        if (!json_is_object(o)) {
                snprintf(errstr, errstr_size, "%s.options: expected an object",
                         path);
                return -EINVAL;
        }
        *opts = o;
        return 0;
}

/* ---- auth headers --------------------------------------------------- */

char *eb_auth_bearer(const char *token)
{
        return eb_xasprintf("Authorization: Bearer %s", token ? token : "");
}

char *eb_auth_basic(const char *user, const char *pass)
{
        char *pair, *enc, *hdr;
        size_t n;

        pair = eb_xasprintf("%s:%s", user ? user : "", pass ? pass : "");
        n = strlen(pair);
        enc = eb_base64_encode(pair, n);
        memset(pair, 0, n);
        free(pair);
        if (!enc)
                return NULL;
        eb_log_add_secret(enc);
        hdr = eb_xasprintf("Authorization: Basic %s", enc);
        free(enc);
        return hdr;
}

struct eb_event *eb_walk_normalize(const struct eb_walk *w, json_t *native,
                                   int64_t page_no, const char *array, size_t i)
{
        struct eb_event *evt;
        char err[256], pos[64];

        err[0] = '\0';
        evt = w->prov->normalize(w->src, native, err, sizeof(err));
        if (evt)
                return evt;
        snprintf(pos, sizeof(pos), "page %" PRId64 ", %s[%zu]", page_no, array,
                 i);
        return eb_deadletter_event(w->src, w->prov->name, native, err, pos);
}

/* ---- walks ----------------------------------------------------------- */

void eb_walk_init(struct eb_walk *w, const struct eb_provider *prov,
                  const struct eb_source_cfg *src, json_t *cp, int64_t now_ms)
{
        int64_t start;

        memset(w, 0, sizeof(*w));
        w->prov = prov;
        w->src = src;
        w->now_ms = now_ms;
        w->base_url = src && src->base_url && *src->base_url
                              ? src->base_url
                              : prov->default_base_url;
        if (!src || !src->poll_start ||
            eb_time_parse_start(src->poll_start, now_ms, &start))
                start = now_ms - 24LL * 3600 * 1000;
        w->start_ms = start;
        w->overlap_ms = src && src->overlap_ms >= 0 ? src->overlap_ms
                                                    : prov->default_overlap_ms;
        w->lag_ms =
                src && src->lag_ms >= 0 ? src->lag_ms : prov->default_lag_ms;
        w->page_size = prov->default_page_size;
        if (src && src->page_size > 0)
                w->page_size = src->page_size < prov->max_page_size
                                       ? src->page_size
                                       : prov->max_page_size;
        w->cp = cp ? json_incref(cp) : NULL;
}

void eb_walk_fini(struct eb_walk *w)
{
        if (!w)
                return;
        json_decref(w->cp);
        json_decref(w->state);
        w->cp = NULL;
        w->state = NULL;
}

/* ---- walk state shared by the adapters ------------------------------ */

int64_t eb_walk_get(const struct eb_walk *w, const char *key)
{
        return eb_jfield_i64(w->state, key, 0);
}

int eb_walk_has(const struct eb_walk *w, const char *key)
{
        return json_object_get(w->state, key) != NULL;
}

void eb_walk_set(struct eb_walk *w, const char *key, int64_t v)
{
        json_object_set_new(w->state, key, json_integer(v));
}

int eb_walk_response_begin(struct eb_walk *w, struct eb_page *page)
{
        eb_page_init(page);
        if (!w->state) {
                eb_page_fail(page, EB_RESP_CLIENT_ERROR, "walk not begun");
                return -EINVAL;
        }
        eb_walk_set(w, "pending", 0);
        json_object_del(w->state, "pmax");
        json_object_del(w->state, "pnext");
        return 0;
}

void eb_walk_response_end(struct eb_walk *w, struct eb_page *page)
{
        const struct eb_event *first = NULL;
        size_t i, n = 0, len;

        /* the events hold what they need of it */
        eb_json_src_unref(page->src);
        page->src = NULL;
        if (page->kind != EB_RESP_OK)
                return;
        for (i = 0; i < page->events_cnt; i++) {
                if (page->events[i]->deadletter && !n++)
                        first = page->events[i];
        }
        if (n) {
                len = strlen(page->detail);
                snprintf(page->detail + len, sizeof(page->detail) - len,
                         "; %zu poison event%s for the dead-letter topic "
                         "(%s: %s)",
                         n, n == 1 ? "" : "s",
                         first->position ? first->position : "?",
                         first->deadletter);
        }
        eb_walk_set(w, "pending", 1);
        eb_walk_set(w, "more", page->more);
}

int eb_walk_page_ack(struct eb_walk *w)
{
        if (!w->state || !eb_walk_get(w, "pending"))
                return 0;
        eb_walk_set(w, "pending", 0);
        w->pages++;
        return 1;
}
