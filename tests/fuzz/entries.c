/*
 * entries.c: the fuzz entry points (see entries.h). No libFuzzer code
 * here: the same file is built into the fuzz binaries and, included by
 * tests/unit/test_fuzz_regressions.c, into the normal test run.
 */
#include "entries.h"

#include "eb_json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_config.h"
#include "eb_envelope.h"
#include "eb_event.h"
#include "eb_form.h"
#include "eb_json.h"
#include "eb_log.h"
#include "eb_provider.h"
#include "eb_ratelimit.h"
#include "eb_shard.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"
#include "eb_webhook.h"
#include "eb_webhook_sig.h"
#include "providers/kota.h"

/* A fixed wall clock, so that a replayed input takes the same path. */
#define FZ_NOW_MS 1700000000000LL
/* The most array elements normalized one by one from one input. */
#define FZ_MAX_ELEMS 64

/* The sources every entry uses, loaded once by the real config loader. */
static const char fz_config[] =
        "{\"sources\":["
        "{\"name\":\"fz-kommo\",\"provider\":\"kommo\","
        "\"base_url\":\"https://fz.kommo.com\","
        "\"credentials\":{\"token\":\"kommo-token-fuzz\"},"
        "\"webhook\":{\"token\":\"kommo-hook-fuzz\"},"
        "\"options\":{\"with\":[\"contact_name\",\"lead_name\"]}},"
        "{\"name\":\"fz-close\",\"provider\":\"close\","
        "\"credentials\":{\"api_key\":\"close-key-fuzz\"},"
        "\"webhook\":{\"secret\":\"00112233445566778899aabbccddeeff"
        "00112233445566778899aabbccddeeff\"}},"
        "{\"name\":\"fz-kota\",\"provider\":\"kota\","
        "\"credentials\":{\"api_key\":\"pk_test_fuzz\"},"
        "\"webhook\":{\"secret\":\"whsec_fuzz_kota\"}},"
        "{\"name\":\"fz-kota1\",\"provider\":\"kota\","
        "\"credentials\":{\"api_key\":\"pk_test_fuzz_v1\"},"
        "\"options\":{\"version\":\"v1\",\"types\":[\"employee.created\","
        "\"employee.updated\"]}},"
        "{\"name\":\"fz-std\",\"provider\":\"kota\","
        "\"credentials\":{\"api_key\":\"pk_test_fuzz_std\"},"
        "\"webhook\":{\"scheme\":\"standard\","
        "\"secret\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}}"
        "]}";

static struct fz_state {
        int ready;
        struct eb_config *cfg;
        const struct eb_source_cfg *kommo, *close, *kota, *kota1, *std;
        struct eb_wh_key close_key, kota_key, std_key, token_key;
} fz;

static void fz_sink(const char *line, void *opaque)
{
        (void)line;
        (void)opaque;
}

static void fz_die(const char *what)
{
        fprintf(stderr, "fuzz harness set-up failed: %s\n", what);
        abort();
}

static void key_for(const char *scheme, const char *secret,
                    struct eb_wh_key *key)
{
        const struct eb_wh_scheme *s = eb_wh_scheme_lookup(scheme);
        char err[256];

        if (!s || eb_wh_key_init(s, secret, key, err, sizeof(err)))
                fz_die(scheme);
}

void eb_fuzz_init(void)
{
        char err[1024];

        if (fz.ready)
                return;
        /* Debug level into a sink that drops the lines: the formatting
         * and redaction of hostile text still runs. */
        eb_log_set_sink(fz_sink, NULL);
        eb_log_set_level(EB_LOG_DEBUG);
        fz.cfg = eb_config_load_string(fz_config, err, sizeof(err));
        if (!fz.cfg)
                fz_die(err);
        if (eb_provider_check_config(fz.cfg, err, sizeof(err)) ||
            eb_webhook_check_config(fz.cfg, err, sizeof(err)))
                fz_die(err);
        fz.kommo = eb_config_source(fz.cfg, "fz-kommo");
        fz.close = eb_config_source(fz.cfg, "fz-close");
        fz.kota = eb_config_source(fz.cfg, "fz-kota");
        fz.kota1 = eb_config_source(fz.cfg, "fz-kota1");
        fz.std = eb_config_source(fz.cfg, "fz-std");
        if (!fz.kommo || !fz.close || !fz.kota || !fz.kota1 || !fz.std)
                fz_die("sources");
        key_for("close", fz.close->webhook_secret, &fz.close_key);
        key_for("kota-v1", fz.kota->webhook_secret, &fz.kota_key);
        key_for("standard", fz.std->webhook_secret, &fz.std_key);
        key_for("token", fz.kommo->webhook_token, &fz.token_key);
        fz.ready = 1;
}

void eb_fuzz_fini(void)
{
        if (!fz.ready)
                return;
        eb_wh_key_fini(&fz.close_key);
        eb_wh_key_fini(&fz.kota_key);
        eb_wh_key_fini(&fz.std_key);
        eb_wh_key_fini(&fz.token_key);
        eb_config_free(fz.cfg);
        memset(&fz, 0, sizeof(fz));
        eb_log_clear_secrets();
        eb_log_set_sink(NULL, NULL);
        eb_log_set_level(EB_LOG_INFO);
}

/* ---- helpers --------------------------------------------------------- */

/* The input as a NUL-terminated string (an embedded NUL ends it early, as
 * it would for a C string taken from a header). */
static char *cstr(const uint8_t *data, size_t size)
{
        char *s = eb_xmalloc(size + 1);

        if (size)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Split @p s at the next '\n' (replaced by NUL); @returns the rest, or ""
 * when there is no newline. */
static char *next_line(char *s)
{
        char *nl = strchr(s, '\n');

        if (!nl)
                return s + strlen(s);
        *nl = '\0';
        return nl + 1;
}

/* An event must be complete enough to render, and render in both modes. */
static int check_event(const struct eb_event *evt)
{
        struct eb_envelope env;
        char *key, *type, *dkey;
        size_t klen = 0;
        int rc = 0, mode;

        if (evt->deadletter) {
                /* a poison event: raw, for the dead-letter topic */
                if (!evt->id || strncmp(evt->id, "deadletter-", 11) ||
                    !evt->provider || !evt->native || !evt->source_name ||
                    !*evt->deadletter) {
                        fprintf(stderr, "fuzz: incomplete poison event\n");
                        return -1;
                }
                return 0;
        }
        if (!evt->id || !*evt->id || !evt->provider || !evt->entity_type ||
            !evt->entity_id || !evt->action || !*evt->action || !evt->native ||
            !evt->source_name) {
                fprintf(stderr, "fuzz: incomplete event\n");
                return -1;
        }
        for (mode = 0; mode < 2; mode++) {
                memset(&env, 0, sizeof(env));
                if (eb_envelope_render(evt,
                                       mode ? "{source}.{account}.{entity}"
                                            : fz.cfg->topic_template,
                                       fz.cfg->topic_prefix,
                                       mode ? EB_ENVELOPE_BINARY
                                            : EB_ENVELOPE_STRUCTURED,
                                       &env)) {
                        fprintf(stderr, "fuzz: envelope refused an event\n");
                        rc = -1;
                        continue;
                }
                /* The value is JSON that carries the event as it came. */
                {
                        json_t *v =
                                json_loadb(env.value, env.value_len, 0, NULL);
                        json_t *d = mode ? v : json_object_get(v, "data");

                        if (!v || env.value_len != strlen(env.value) ||
                            !json_equal(json_object_get(d, "native"),
                                        evt->native)) {
                                fprintf(stderr, "fuzz: envelope value is "
                                                "not the event's JSON\n");
                                rc = -1;
                        }
                        json_decref(v);
                }
                /* The page's text, where it is used, changes no byte. */
                if (evt->src) {
                        struct eb_event plain = *evt;
                        struct eb_envelope env2;

                        plain.src = NULL;
                        if (eb_envelope_render(
                                    &plain,
                                    mode ? "{source}.{account}.{entity}"
                                         : fz.cfg->topic_template,
                                    fz.cfg->topic_prefix,
                                    mode ? EB_ENVELOPE_BINARY
                                         : EB_ENVELOPE_STRUCTURED,
                                    &env2)) {
                                rc = -1;
                        } else {
                                if (env2.value_len != env.value_len ||
                                    memcmp(env2.value, env.value,
                                           env.value_len)) {
                                        fprintf(stderr,
                                                "fuzz: envelope differs "
                                                "with the page's text\n");
                                        rc = -1;
                                }
                                eb_envelope_fini(&env2);
                        }
                }
                if (!env.topic || !*env.topic || strlen(env.topic) > 249 ||
                    strspn(env.topic,
                           "abcdefghijklmnopqrstuvwxyz0123456789.-") !=
                            strlen(env.topic)) {
                        fprintf(stderr, "fuzz: illegal topic name\n");
                        rc = -1;
                }
                eb_envelope_fini(&env);
        }
        key = eb_event_key(evt);
        type = eb_event_type(evt);
        dkey = eb_event_dedupe_key(evt, &klen);
        if (!key || !type || !dkey || !klen)
                rc = -1;
        free(key);
        free(type);
        free(dkey);
        return rc;
}

/* The contract of handle_response (eb_provider.h). */
static int check_page(const struct eb_page *page)
{
        size_t i;

        switch (page->kind) {
        case EB_RESP_OK:
                if (page->events_cnt > EB_PROVIDER_MAX_PAGE_EVENTS)
                        return -1;
                for (i = 0; i < page->events_cnt; i++)
                        if (check_event(page->events[i]))
                                return -1;
                return 0;
        case EB_RESP_RATE_LIMITED:
        case EB_RESP_BANNED:
        case EB_RESP_AUTH:
        case EB_RESP_RETRY:
        case EB_RESP_BAD_BODY:
        case EB_RESP_CLIENT_ERROR:
        case EB_RESP_REFUSED:
                if (page->events_cnt || !page->detail[0]) {
                        fprintf(stderr, "fuzz: error page with events or "
                                        "without a detail\n");
                        return -1;
                }
                if (page->retry_after_ms < 0 ||
                    page->retry_after_ms > EB_RATELIMIT_MAX_WAIT_MS) {
                        fprintf(stderr, "fuzz: retry_after out of range\n");
                        return -1;
                }
                return 0;
        }
        fprintf(stderr, "fuzz: unknown page kind %d\n", (int)page->kind);
        return -1;
}

/* A URL on the configured host, fully encoded: nothing from an upstream
 * body may change where the next request goes. */
static int url_ok(const char *url, const char *base)
{
        size_t n = strlen(base), i;

        if (strncmp(url, base, n) || (url[n] != '/' && url[n] != '?'))
                return 0;
        if (strlen(url) > EB_PROVIDER_MAX_URL)
                return 0;
        for (i = n; url[i]; i++) {
                unsigned char c = (unsigned char)url[i];

                if (c <= ' ' || c >= 0x7f || c == '#')
                        return 0;
        }
        return 1;
}

/* next_request: 0 with a URL under the base, or -E2BIG. */
static int check_request(struct eb_walk *w)
{
        char *url = NULL, *auth = NULL;
        int rc = w->prov->next_request(w, &url, &auth), bad = 0;

        if (rc == 0) {
                if (!url || !auth || !url_ok(url, w->base_url)) {
                        fprintf(stderr, "fuzz: bad request URL %.200s\n",
                                url ? url : "(none)");
                        bad = 1;
                }
        } else if (rc != -E2BIG && rc != -EINVAL) {
                fprintf(stderr, "fuzz: next_request returned %d\n", rc);
                bad = 1;
        }
        free(url);
        free(auth);
        return bad ? -1 : 0;
}

/* One response with @p status and @p body through a fresh walk. */
static int feed_page(const struct eb_provider *prov,
                     const struct eb_source_cfg *src, long status,
                     const char *body, size_t len, const char *ct)
{
        struct eb_response resp;
        struct eb_page page;
        struct eb_walk w;
        int rc = 0;

        eb_walk_init(&w, prov, src, NULL, FZ_NOW_MS);
        if (prov->walk_begin(&w)) {
                eb_walk_fini(&w);
                fprintf(stderr, "fuzz: walk_begin failed on a first start\n");
                return -1;
        }
        if (check_request(&w))
                rc = -1;
        memset(&resp, 0, sizeof(resp));
        resp.status = status;
        resp.body = body;
        resp.body_len = len;
        resp.content_type = ct;
        resp.retry_after = status == 429 ? "7" : NULL;
        resp.ratelimit = "limit=100, remaining=0, reset=0.734";
        resp.now_ms = FZ_NOW_MS;
        eb_page_init(&page);
        prov->handle_response(&w, &resp, &page);
        if (check_page(&page))
                rc = -1;
        if (page.kind == EB_RESP_OK) {
                prov->page_done(&w);
                if (!page.more)
                        prov->walk_end(&w);
                else if (check_request(&w))
                        rc = -1; /* cursors from the body end up in URLs */
        }
        eb_page_fini(&page);
        eb_walk_fini(&w);
        return rc;
}

static int normalize_one(const struct eb_provider *prov,
                         const struct eb_source_cfg *src, json_t *native)
{
        struct eb_event *evt;
        char err[256];
        int rc = 0;

        err[0] = '\0';
        evt = prov->normalize(src, native, err, sizeof(err));
        if (evt) {
                rc = check_event(evt);
                eb_event_free(evt);
        } else if (!err[0]) {
                fprintf(stderr, "fuzz: normalize failed without a reason\n");
                rc = -1;
        }
        return rc;
}

/* The input as JSON: normalize it (and the elements of an array), and use
 * it as a restored checkpoint. */
static int json_paths(const struct eb_provider *prov,
                      const struct eb_source_cfg *src, const char *body,
                      size_t len)
{
        json_t *root, *elem;
        struct eb_walk w;
        size_t i;
        int rc = 0;

        root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                          NULL);
        if (!root)
                return 0;
        if (json_is_object(root)) {
                if (normalize_one(prov, src, root))
                        rc = -1;
                eb_walk_init(&w, prov, src, root, FZ_NOW_MS);
                if (prov->walk_begin(&w) == 0 && check_request(&w))
                        rc = -1;
                eb_walk_fini(&w);
        } else if (json_is_array(root)) {
                json_array_foreach(root, i, elem)
                {
                        if (i >= FZ_MAX_ELEMS)
                                break;
                        if (json_is_object(elem) &&
                            normalize_one(prov, src, elem))
                                rc = -1;
                }
        }
        json_decref(root);
        return rc;
}

static int page_entry(const struct eb_provider *prov,
                      const struct eb_source_cfg *src, const char *ct,
                      const uint8_t *data, size_t size)
{
        static const long statuses[] = {200, 429, 500};
        char *body;
        size_t i;
        int rc = 0;

        eb_fuzz_init();
        body = cstr(data, size); /* NUL-terminated, as eb_http hands it */
        for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
                if (feed_page(prov, src, statuses[i], body, size, ct))
                        rc = -1;
        if (json_paths(prov, src, body, size))
                rc = -1;
        free(body);
        return rc;
}

/* ---- pages ------------------------------------------------------------ */

int eb_fuzz_kommo_page(const uint8_t *data, size_t size)
{
        eb_fuzz_init();
        return page_entry(&eb_provider_kommo, fz.kommo, "application/hal+json",
                          data, size);
}

int eb_fuzz_close_page(const uint8_t *data, size_t size)
{
        eb_fuzz_init();
        return page_entry(&eb_provider_close, fz.close, "application/json",
                          data, size);
}

int eb_fuzz_kota_page(const uint8_t *data, size_t size)
{
        int rc;

        eb_fuzz_init();
        rc = page_entry(&eb_provider_kota, fz.kota, "application/json", data,
                        size);
        if (page_entry(&eb_provider_kota, fz.kota1, "application/json", data,
                       size))
                rc = -1;
        return rc;
}

/* ---- webhooks ---------------------------------------------------------- */

struct fz_headers {
        const char *names[4];
        const char *values[4];
};

static const char *fz_header(void *hctx, const char *name)
{
        const struct fz_headers *h = hctx;
        size_t i;

        for (i = 0; i < 4 && h->names[i]; i++)
                if (!strcasecmp(h->names[i], name))
                        return h->values[i];
        return NULL;
}

static eb_wh_auth_t verify(const char *scheme, const struct eb_wh_key *key,
                           struct fz_headers *h, const void *body, size_t len,
                           const char *token)
{
        struct eb_wh_input in;

        memset(&in, 0, sizeof(in));
        in.header = fz_header;
        in.hctx = h;
        in.body = body;
        in.body_len = len;
        in.token = token;
        in.now_ms = FZ_NOW_MS;
        in.tolerance_ms = 5 * 60 * 1000;
        return eb_wh_verify(eb_wh_scheme_lookup(scheme), key, &in, NULL);
}

static void hex_hmac(const struct eb_wh_key *key, const char *a, const char *b,
                     const void *body, size_t len, char out[65])
{
        const void *parts[3] = {a, b, body};
        size_t lens[3] = {strlen(a), strlen(b), len};
        unsigned char mac[32];

        if (eb_wh_hmac_parts(key, parts, lens, 3, mac))
                fz_die("hmac");
        eb_hex_encode(mac, 32, out);
}

/* What eb_webhook does with a verified JSON body. */
static int webhook_json(const struct eb_provider *prov,
                        const struct eb_source_cfg *src, const char *event_key,
                        const uint8_t *data, size_t size)
{
        json_t *root, *ev;
        int rc = 0;

        root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
                          NULL);
        if (!root)
                return 0;
        ev = event_key ? json_object_get(root, event_key) : root;
        if (json_is_object(root) && json_is_object(ev))
                rc = normalize_one(prov, src, ev);
        json_decref(root);
        return rc;
}

int eb_fuzz_close_webhook(const uint8_t *data, size_t size)
{
        struct fz_headers h;
        char sig[65], ts[32];
        eb_wh_auth_t a;

        eb_fuzz_init();
        snprintf(ts, sizeof(ts), "%lld", (long long)(FZ_NOW_MS / 1000));
        hex_hmac(&fz.close_key, ts, "", data, size, sig);
        memset(&h, 0, sizeof(h));
        h.names[0] = "close-sig-hash";
        h.values[0] = sig;
        h.names[1] = "close-sig-timestamp";
        h.values[1] = ts;
        a = verify("close", &fz.close_key, &h, data, size, NULL);
        if (a != EB_WH_AUTH_OK) {
                fprintf(stderr,
                        "fuzz: a correctly signed Close body was "
                        "refused (%s)\n",
                        eb_wh_auth_name(a));
                return -1;
        }
        return webhook_json(&eb_provider_close, fz.close, "event", data, size);
}

int eb_fuzz_kota_webhook(const uint8_t *data, size_t size)
{
        struct fz_headers h;
        char sig[65], ts[32], hdr[128];
        eb_wh_auth_t a;
        int rc;

        eb_fuzz_init();
        snprintf(ts, sizeof(ts), "%lld", (long long)(FZ_NOW_MS / 1000));
        hex_hmac(&fz.kota_key, ts, ".", data, size, sig);
        snprintf(hdr, sizeof(hdr), "t=%s,v1=%s", ts, sig);
        memset(&h, 0, sizeof(h));
        h.names[0] = "x-kota-webhook-signature";
        h.values[0] = hdr;
        a = verify("kota-v1", &fz.kota_key, &h, data, size, NULL);
        if (a != EB_WH_AUTH_OK) {
                fprintf(stderr,
                        "fuzz: a correctly signed Kota body was "
                        "refused (%s)\n",
                        eb_wh_auth_name(a));
                return -1;
        }
        rc = webhook_json(&eb_provider_kota, fz.kota, NULL, data, size);
        if (webhook_json(&eb_provider_kota, fz.kota1, NULL, data, size))
                rc = -1;
        return rc;
}

int eb_fuzz_kommo_form(const uint8_t *data, size_t size)
{
        struct eb_form_limits tight = {8, 3, 16};
        struct eb_buf b;
        json_t *form;
        char err[256], *s, *v;
        int rc = 0, plus;

        eb_fuzz_init();
        err[0] = '\0';
        form = eb_form_parse((const char *)data, size, NULL, err, sizeof(err));
        if (!form && !err[0]) {
                fprintf(stderr, "fuzz: form refused without a reason\n");
                rc = -1;
        }
        if (form && !json_is_object(form))
                rc = -1;
        json_decref(form);
        form = eb_form_parse((const char *)data, size, &tight, err,
                             sizeof(err));
        json_decref(form);
        s = cstr(data, size);
        v = eb_form_query_get(s, "token");
        free(v);
        v = eb_form_query_get(s, "leads[status][0][id]");
        free(v);
        for (plus = 0; plus < 2; plus++) {
                eb_buf_init(&b, 4096);
                if (eb_form_decode(s, strlen(s), plus, &b) == 0 &&
                    b.len > strlen(s)) {
                        fprintf(stderr, "fuzz: decoding grew the input\n");
                        rc = -1;
                }
                eb_buf_fini(&b);
        }
        /* The token scheme on a path token taken from the input. */
        (void)verify("token", &fz.token_key, NULL, data, size, s);
        free(s);
        return rc;
}

/* ---- signature headers -------------------------------------------------- */

/* Layout: line 1 the x-kota-webhook-signature value, the rest the body. A
 * second pass uses line 1 as the secret of a new key. */
int eb_fuzz_sig_kota(const uint8_t *data, size_t size)
{
        struct eb_kota_sig sig;
        struct eb_wh_key key;
        struct fz_headers h;
        char *s = NULL, *body, err[256];
        eb_wh_auth_t a;
        int rc = 0;

        eb_fuzz_init();
        s = cstr(data, size);
        body = next_line(s);
        a = eb_kota_sig_parse(s, &sig);
        if (a == EB_WH_AUTH_OK) {
                if (sig.nsig < 1 || sig.nsig > EB_WH_MAX_SIGS ||
                    !memchr(sig.t_text, '\0', sizeof(sig.t_text)))
                        rc = -1;
        } else if (a != EB_WH_AUTH_SIG_MALFORMED &&
                   a != EB_WH_AUTH_TS_INVALID) {
                rc = -1;
        }
        memset(&h, 0, sizeof(h));
        h.names[0] = "x-kota-webhook-signature";
        h.values[0] = s;
        if (verify("kota-v1", &fz.kota_key, &h, body, strlen(body), NULL) ==
            EB_WH_AUTH_OK) {
                /* Accepted: one of the header's v1 values must really be
                 * the HMAC of "<t>.<body>" (the seeds carry real ones). */
                unsigned char mac[32];
                const void *parts[3] = {sig.t_text, ".", body};
                size_t lens[3] = {strlen(sig.t_text), 1, strlen(body)};
                int i, hit = 0;

                if (a != EB_WH_AUTH_OK ||
                    eb_wh_hmac_parts(&fz.kota_key, parts, lens, 3, mac))
                        fz_die("kota check");
                for (i = 0; i < sig.nsig; i++)
                        hit |= !memcmp(sig.v1[i], mac, 32);
                if (!hit) {
                        fprintf(stderr, "fuzz: Kota signature accepted "
                                        "without a matching v1\n");
                        rc = -1;
                }
        }
        memset(&key, 0, sizeof(key));
        (void)eb_wh_key_init(eb_wh_scheme_lookup("kota-v1"), s, &key, err,
                             sizeof(err));
        eb_wh_key_fini(&key);
        free(s);
        return rc;
}

/* Layout: webhook-id, webhook-timestamp and webhook-signature lines, then
 * the body. The signature line is also used as a secret ("whsec_...") and
 * decoded as base64. */
int eb_fuzz_sig_standard(const uint8_t *data, size_t size)
{
        unsigned char out[512];
        struct eb_wh_key key;
        struct fz_headers h;
        char *s, *id, *ts, *sg, *body, err[256];
        int n, rc = 0;

        eb_fuzz_init();
        s = cstr(data, size);
        id = s;
        ts = next_line(id);
        sg = next_line(ts);
        body = next_line(sg);
        memset(&h, 0, sizeof(h));
        h.names[0] = "webhook-id";
        h.values[0] = id;
        h.names[1] = "webhook-timestamp";
        h.values[1] = ts;
        h.names[2] = "webhook-signature";
        h.values[2] = sg;
        (void)verify("standard", &fz.std_key, &h, body, strlen(body), NULL);
        n = eb_wh_base64_decode(sg, strlen(sg), out, sizeof(out));
        if (n > (int)sizeof(out))
                rc = -1;
        memset(&key, 0, sizeof(key));
        (void)eb_wh_key_init(eb_wh_scheme_lookup("standard"), sg, &key, err,
                             sizeof(err));
        eb_wh_key_fini(&key);
        (void)eb_wh_check_timestamp(ts, FZ_NOW_MS, 300000);
        free(s);
        return rc;
}

/* Layout: close-sig-hash, close-sig-timestamp, then the body. The hash line
 * is also used as a (hex) secret. */
int eb_fuzz_sig_close(const uint8_t *data, size_t size)
{
        struct eb_wh_key key;
        struct fz_headers h;
        char *s, *hash, *ts, *body, err[256];
        int rc = 0;

        eb_fuzz_init();
        s = cstr(data, size);
        hash = s;
        ts = next_line(hash);
        body = next_line(ts);
        memset(&h, 0, sizeof(h));
        h.names[0] = "close-sig-hash";
        h.values[0] = hash;
        h.names[1] = "close-sig-timestamp";
        h.values[1] = ts;
        if (verify("close", &fz.close_key, &h, body, strlen(body), NULL) ==
            EB_WH_AUTH_OK) {
                /* Accepted: the hash must be the real HMAC. */
                unsigned char mac[32], got[32];
                const void *parts[2] = {ts, body};
                size_t lens[2] = {strlen(ts), strlen(body)};

                if (eb_wh_hmac_parts(&fz.close_key, parts, lens, 2, mac))
                        fz_die("close check");
                if (eb_hex_decode(hash, got, sizeof(got)) != 32 ||
                    memcmp(got, mac, 32)) {
                        fprintf(stderr, "fuzz: Close signature accepted "
                                        "without the real HMAC\n");
                        rc = -1;
                }
        }
        memset(&key, 0, sizeof(key));
        (void)eb_wh_key_init(eb_wh_scheme_lookup("close"), hash, &key, err,
                             sizeof(err));
        eb_wh_key_fini(&key);
        free(s);
        return rc;
}

/* ---- headers, config, times ---------------------------------------------- */

int eb_fuzz_ratelimit(const uint8_t *data, size_t size)
{
        double limit, remaining, reset;
        int64_t ms = -1, r;
        char *s;
        int rc = 0;

        eb_fuzz_init();
        s = cstr(data, size);
        if (eb_ratelimit_parse(s, &limit, &remaining, &reset) == 0) {
                if (limit < -1 || remaining < -1 || reset < -1 ||
                    (limit < 0 && remaining < 0 && reset < 0))
                        rc = -1;
                r = eb_ratelimit_reset_ms(reset);
                if (r < 0 || r > EB_RATELIMIT_MAX_WAIT_MS)
                        rc = -1;
        } else if (limit != -1 || remaining != -1 || reset != -1) {
                rc = -1;
        }
        if (eb_retry_after_parse(s, FZ_NOW_MS, &ms) == 0 &&
            (ms < 0 || ms > EB_RATELIMIT_MAX_WAIT_MS))
                rc = -1;
        if (rc)
                fprintf(stderr, "fuzz: rate-limit value out of range\n");
        free(s);
        return rc;
}

int eb_fuzz_config(const uint8_t *data, size_t size)
{
        struct eb_config *cfg;
        char err[1024], *s;

        eb_fuzz_init();
        s = cstr(data, size);
        /* ${file:...} would read (or block on) whatever path the fuzzer
         * makes up; the file form is covered by test_eb_config. */
        if (strstr(s, "file:")) {
                free(s);
                return 0;
        }
        err[0] = '\0';
        cfg = eb_config_load_string(s, err, sizeof(err));
        if (cfg) {
                (void)eb_provider_check_config(cfg, err, sizeof(err));
                (void)eb_webhook_check_config(cfg, err, sizeof(err));
                eb_config_free(cfg);
        } else if (!err[0]) {
                fprintf(stderr, "fuzz: config refused without a message\n");
                free(s);
                return -1;
        }
        /* Secrets loaded from this input stay registered otherwise, and
         * the list would grow with every input. (The harness's own go
         * too; nothing here needs them redacted.) */
        eb_log_clear_secrets();
        free(s);
        return 0;
}

int eb_fuzz_time(const uint8_t *data, size_t size)
{
        char *s, buf[64];
        int64_t ms, again;
        int rc = 0;

        eb_fuzz_init();
        s = cstr(data, size);
        if (eb_duration_parse(s, &ms) == 0) {
                if (ms < 0)
                        rc = -1;
                eb_duration_format(ms, buf, sizeof(buf));
                if (eb_duration_parse(buf, &again) || again != ms) {
                        fprintf(stderr,
                                "fuzz: duration %lld does not "
                                "survive formatting (%s)\n",
                                (long long)ms, buf);
                        rc = -1;
                }
        }
        if (eb_rfc3339_parse(s, &ms) == 0) {
                /* Checkpoints are written with eb_rfc3339_format and read
                 * back with eb_rfc3339_parse: every time one accepts, the
                 * other must reproduce. */
                eb_rfc3339_format(ms, 3, buf, sizeof(buf));
                if (eb_rfc3339_parse(buf, &again) || again != ms) {
                        fprintf(stderr,
                                "fuzz: time %lld does not survive "
                                "formatting (%s)\n",
                                (long long)ms, buf);
                        rc = -1;
                }
        }
        if (eb_time_parse_start(s, FZ_NOW_MS, &ms) == 0 && !*s)
                rc = -1; /* an empty start is never valid */
        free(s);
        return rc;
}

int eb_fuzz_intake(const uint8_t *data, size_t size)
{
        struct eb_event *evt = NULL, *again = NULL;
        char *src = NULL, *src2 = NULL, *rec = NULL, *k1 = NULL, *k2 = NULL;
        size_t len = 0, l1 = 0, l2 = 0;
        int trig = 0, trig2 = 0, rc = 0;

        eb_fuzz_init();
        if (eb_intake_decode(data, size, &src, &evt, &trig)) {
                if (src || evt)
                        rc = -1; /* nothing handed out on failure */
                goto out;
        }
        if (!src || (trig ? evt != NULL : evt == NULL)) {
                rc = -1;
                goto out;
        }
        if (trig)
                goto out;
        if (check_event(evt)) {
                rc = -1;
                goto out;
        }
        rec = eb_intake_encode(evt, &len);
        if (!rec || eb_intake_decode(rec, len, &src2, &again, &trig2) ||
            trig2 || !again || strcmp(src, src2)) {
                fprintf(stderr, "fuzz: intake record does not round-trip\n");
                rc = -1;
                goto out;
        }
        k1 = eb_event_dedupe_key(evt, &l1);
        k2 = eb_event_dedupe_key(again, &l2);
        if (l1 != l2 || memcmp(k1, k2, l1)) {
                fprintf(stderr, "fuzz: intake identity changed\n");
                rc = -1;
        }
out:
        free(k1);
        free(k2);
        free(rec);
        free(src);
        free(src2);
        eb_event_free(evt);
        eb_event_free(again);
        return rc;
}

int eb_fuzz_json_dump(const uint8_t *data, size_t size)
{
        json_t *v;
        struct eb_buf b;
        char *want;
        int rc = 0, utf8;

        eb_fuzz_init();
        /* eb_utf8_valid() accepts what jansson's strings accept. */
        v = json_stringn((const char *)data, size);
        utf8 = eb_utf8_valid((const char *)data, size);
        if (!!v != utf8) {
                fprintf(stderr, "fuzz: utf8 %d, jansson %d\n", utf8, !!v);
                rc = -1;
        }
        json_decref(v);
        /* eb_json_put() writes what json_dumps(JSON_COMPACT) writes. */
        v = json_loadb((const char *)data, size,
                       JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!v)
                return rc;
        want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        eb_buf_init(&b, 0);
        if (eb_json_put(&b, v) != 0 || !want || b.len != strlen(want) ||
            memcmp(b.data, want, b.len)) {
                fprintf(stderr, "fuzz: eb_json_put differs from jansson\n");
                rc = -1;
        }
        eb_buf_fini(&b);
        free(want);
        json_decref(v);
        return rc;
}

/* Every container under @p v written with @p src as without it: the
 * text eb_json_loadb_src() keeps must never change a byte. */
static int src_same(const json_t *v, const struct eb_json_src *src)
{
        struct eb_buf a, b;
        const char *key;
        json_t *c;
        size_t i;
        int rc = 0;

        if (!json_is_object(v) && !json_is_array(v))
                return 0;
        eb_buf_init(&a, 0);
        eb_buf_init(&b, 0);
        if (eb_json_put(&a, v) || eb_json_put_src(&b, v, src) ||
            a.len != b.len || memcmp(a.data, b.data, a.len))
                rc = -1;
        eb_buf_fini(&a);
        eb_buf_fini(&b);
        if (json_is_object(v)) {
                json_object_foreach((json_t *)v, key, c) rc |= src_same(c, src);
        } else {
                json_array_foreach(v, i, c) rc |= src_same(c, src);
        }
        return rc;
}

int eb_fuzz_json_load(const uint8_t *data, size_t size)
{
        static const size_t flags[] = {0, JSON_REJECT_DUPLICATES};
        int rc = 0;
        size_t i;

        eb_fuzz_init();
        for (i = 0; i < 2; i++) {
                const char *text = (const char *)data;
                json_t *fast = eb_json_loadb_fast(text, size, flags[i]);
                json_t *ref = json_loadb(text, size, flags[i], NULL);
                json_t *both = eb_json_loadb(text, size, flags[i], NULL);
                char *a = ref ? json_dumps(ref, JSON_COMPACT) : NULL;
                char *b = fast ? json_dumps(fast, JSON_COMPACT) : NULL;

                /* the fast reader declines or builds jansson's tree */
                if (fast && (!ref || !a || !b || strcmp(a, b) ||
                             !json_equal(fast, ref))) {
                        fprintf(stderr, "fuzz: fast reader differs from "
                                        "json_loadb\n");
                        rc = -1;
                }
                if (!!both != !!ref || (both && !json_equal(both, ref))) {
                        fprintf(stderr, "fuzz: eb_json_loadb differs from "
                                        "json_loadb\n");
                        rc = -1;
                }
                {
                        struct eb_json_src *src = NULL;
                        json_t *v = eb_json_loadb_src(text, size, flags[i],
                                                      NULL, &src);

                        if (!!v != !!ref || (v && !json_equal(v, ref)) ||
                            (src && !v) || (v && src_same(v, src))) {
                                fprintf(stderr, "fuzz: eb_json_loadb_src "
                                                "differs from json_loadb "
                                                "and eb_json_put\n");
                                rc = -1;
                        }
                        json_decref(v);
                        eb_json_src_unref(src);
                }
                free(a);
                free(b);
                json_decref(fast);
                json_decref(ref);
                json_decref(both);
        }
        return rc;
}

/* ---- state records -------------------------------------------------------
 *
 * Any bytes as a .seen value and as a .checkpoints value: the decoders
 * accept or refuse without reading past the input; what the seen decoder
 * accepts, the encoder writes back to bytes that decode to the same ids,
 * times and stamp; and the loader takes both kinds without a crash. */

static int seen_roundtrip(const struct eb_state_txn *txn,
                          const struct eb_fp *fps, const int64_t *times,
                          size_t n)
{
        struct eb_state_txn txn2;
        struct eb_fp *fps2 = NULL;
        int64_t *times2 = NULL;
        unsigned char *out = NULL;
        size_t len = 0, n2 = 0, i;
        int rc = 0;

        if (eb_state_seen_encode(txn, fps, times, n, &out, &len) ||
            eb_state_seen_decode(out, len, &txn2, &fps2, &times2, &n2)) {
                fprintf(stderr, "fuzz: decoded seen record does not "
                                "encode and decode again\n");
                free(out);
                return -1;
        }
        if (n2 != n || txn2.session != txn->session || txn2.seq != txn->seq ||
            txn2.prev != txn->prev)
                rc = -1;
        for (i = 0; !rc && i < n; i++)
                if (fps2[i].hi != fps[i].hi || fps2[i].lo != fps[i].lo ||
                    times2[i] != times[i])
                        rc = -1;
        if (rc)
                fprintf(stderr, "fuzz: seen record changes on re-encoding\n");
        free(out);
        free(fps2);
        free(times2);
        return rc;
}

int eb_fuzz_state_records(const uint8_t *data, size_t size)
{
        struct eb_state_txn txn;
        struct eb_state_restore_stats st;
        struct eb_fp *fps = NULL;
        int64_t *times = NULL;
        size_t n = 0;
        char *source = NULL;
        json_t *cp = NULL, *out = json_object();
        int64_t ts;
        eb_dedupe_t *dd = eb_dedupe_new(64, 86400);
        eb_state_loader_t *ld = eb_state_loader_new(dd, FZ_NOW_MS / 1000, 0);
        int rc = 0;

        eb_fuzz_init();
        if (eb_state_seen_decode(data, size, &txn, &fps, &times, &n) == 0)
                rc = seen_roundtrip(&txn, fps, times, n);
        free(fps);
        free(times);
        if (eb_state_checkpoint_decode(data, size, &source, &cp, &ts, &txn) ==
            0) {
                if (!source || !cp)
                        rc = -1;
                free(source);
                json_decref(cp);
        }
        (void)eb_state_loader_seen(ld, data, size);
        eb_state_loader_seen_done(ld);
        (void)eb_state_loader_checkpoint(ld, "k", 1, data, size, 0, 1);
        eb_state_loader_finish(ld, out, &st);
        eb_state_loader_free(ld);
        eb_dedupe_free(dd);
        json_decref(out);
        return rc;
}

const struct eb_fuzz_target eb_fuzz_targets[] = {
        {"kommo_page", eb_fuzz_kommo_page},
        {"close_page", eb_fuzz_close_page},
        {"kota_page", eb_fuzz_kota_page},
        {"close_webhook", eb_fuzz_close_webhook},
        {"kota_webhook", eb_fuzz_kota_webhook},
        {"kommo_form", eb_fuzz_kommo_form},
        {"sig_kota", eb_fuzz_sig_kota},
        {"sig_standard", eb_fuzz_sig_standard},
        {"sig_close", eb_fuzz_sig_close},
        {"ratelimit", eb_fuzz_ratelimit},
        {"config", eb_fuzz_config},
        {"time", eb_fuzz_time},
        {"intake", eb_fuzz_intake},
        {"json_dump", eb_fuzz_json_dump},
        {"json_load", eb_fuzz_json_load},
        {"state_records", eb_fuzz_state_records},
        {NULL, NULL},
};
