/* Unit tests for eb_oauth: configuration checks, the refresh request,
 * answers, the encrypted pair (round trip, another key, another source,
 * altered, re-authorized origin), checkpoint wrapping, and a bounded
 * redaction list across many renewals. */
#include <string.h>

#include "eb_config.h"
#include "eb_log.h"
#include "eb_oauth.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_util.h"

#define KEY1 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static char last[4096];

static void sink(const char *line, void *opaque)
{
        (void)opaque;
        snprintf(last, sizeof(last), "%s", line);
}

static void src_init(struct eb_source_cfg *s, const char *name,
                     const char *refresh, const char *key)
{
        memset(s, 0, sizeof(*s));
        s->name = (char *)name;
        s->provider = (char *)"kommo";
        s->client_id = (char *)"client-1";
        s->client_secret = (char *)"client-secret-1";
        s->redirect_uri = (char *)"https://example.test/cb";
        s->refresh_token = (char *)refresh;
        s->token_key = (char *)key;
}

static void test_check_config(void)
{
        struct eb_source_cfg s;
        char err[512];

        src_init(&s, "k", "r0-initial", KEY1);
        EB_CHECK_INT(eb_oauth_check_config(&s, "sources[0]", err, sizeof(err)),
                     0);
        s.token = (char *)"long-lived";
        EB_CHECK(eb_oauth_check_config(&s, "sources[0]", err, sizeof(err)) < 0);
        EB_CHECK(strstr(err, "not both") != NULL);
        s.token = NULL;
        s.redirect_uri = NULL;
        EB_CHECK(eb_oauth_check_config(&s, "sources[0]", err, sizeof(err)) < 0);
        EB_CHECK(strstr(err, "sources[0].credentials.redirect_uri: required") !=
                 NULL);
        src_init(&s, "k", "r0-initial", "00112233");
        EB_CHECK(eb_oauth_check_config(&s, "sources[0]", err, sizeof(err)) < 0);
        EB_CHECK(strstr(err, "token_key: expected 64 hex digits") != NULL);
        EB_CHECK(strstr(err, "00112233") == NULL); /* never echoed */
        src_init(&s, "k", "r0-initial", KEY1);
        s.provider = (char *)"close";
        EB_CHECK(eb_oauth_check_config(&s, "sources[0]", err, sizeof(err)) < 0);
        EB_CHECK(strstr(err, "kommo only") != NULL);
        src_init(&s, "k", "r0-initial", KEY1);
        s.redirect_uri = (char *)"evbridge.example/cb";
        EB_CHECK(eb_oauth_check_config(&s, "sources[0]", err, sizeof(err)) < 0);
}

static void test_request(void)
{
        struct eb_source_cfg s;
        char note[256], *url = NULL, *body = NULL;
        eb_oauth_t *o;
        json_t *b;

        src_init(&s, "k", "r0-initial", KEY1);
        o = eb_oauth_new(&s, NULL, note, sizeof(note));
        EB_REQUIRE(o != NULL);
        EB_CHECK(strstr(note, "no persisted token pair") != NULL);
        EB_CHECK(eb_oauth_access(o, eb_now_ms()) == NULL);
        EB_CHECK_INT(
                eb_oauth_request(o, "https://acme.kommo.com/", &url, &body), 0);
        EB_CHECK_STR(url, "https://acme.kommo.com/oauth2/access_token");
        b = json_loads(body, 0, NULL);
        EB_CHECK_STR(json_string_value(json_object_get(b, "grant_type")),
                     "refresh_token");
        EB_CHECK_STR(json_string_value(json_object_get(b, "refresh_token")),
                     "r0-initial");
        EB_CHECK_STR(json_string_value(json_object_get(b, "client_id")),
                     "client-1");
        EB_CHECK_STR(json_string_value(json_object_get(b, "client_secret")),
                     "client-secret-1");
        EB_CHECK_STR(json_string_value(json_object_get(b, "redirect_uri")),
                     "https://example.test/cb");
        json_decref(b);
        free(url);
        free(body);
        eb_oauth_free(o);
}

static const char *ok_body(char *buf, size_t n, int gen, int expires)
{
        snprintf(buf, n,
                 "{\"token_type\":\"Bearer\",\"expires_in\":%d,"
                 "\"access_token\":\"acc-%d-xyz\","
                 "\"refresh_token\":\"ref-%d-xyz\"}",
                 expires, gen, gen);
        return buf;
}

static void test_answers(void)
{
        struct eb_source_cfg s;
        char note[256], det[400], body[256];
        const char *refused = "{\"title\":\"Bad Request\",\"status\":400,"
                              "\"detail\":\"Token has been revoked.\"}";
        int64_t now = 1700000000000LL;
        eb_oauth_t *o;

        src_init(&s, "k", "r0-initial", KEY1);
        o = eb_oauth_new(&s, NULL, note, sizeof(note));
        EB_CHECK_INT(eb_oauth_response(o, 400, refused, strlen(refused), now,
                                       det, sizeof(det)),
                     EB_OAUTH_REFUSED);
        EB_CHECK(
                strstr(det, "HTTP 400: Bad Request: Token has been revoked.") !=
                NULL);
        EB_CHECK_INT(eb_oauth_response(o, 401, "", 0, now, det, sizeof(det)),
                     EB_OAUTH_REFUSED);
        EB_CHECK_INT(eb_oauth_response(o, 503, "", 0, now, det, sizeof(det)),
                     EB_OAUTH_RETRY);
        EB_CHECK_INT(eb_oauth_response(o, 429, "", 0, now, det, sizeof(det)),
                     EB_OAUTH_RETRY);
        /* a 200 without the tokens is a bad answer, never echoed */
        EB_CHECK_INT(eb_oauth_response(o, 200, "{\"access_token\":\"leak\"}",
                                       24, now, det, sizeof(det)),
                     EB_OAUTH_RETRY);
        EB_CHECK(strstr(det, "leak") == NULL);
        EB_CHECK(!eb_oauth_pending(o));

        ok_body(body, sizeof(body), 1, 100);
        EB_CHECK_INT(eb_oauth_response(o, 200, body, strlen(body), now, det,
                                       sizeof(det)),
                     EB_OAUTH_OK);
        EB_CHECK(eb_oauth_pending(o));
        /* not usable before it is persisted */
        EB_CHECK(eb_oauth_access(o, now) == NULL);
        eb_oauth_persisted(o);
        EB_CHECK(!eb_oauth_pending(o));
        EB_CHECK_STR(eb_oauth_access(o, now), "acc-1-xyz");
        /* renewed at 80% of its lifetime (100 s) */
        EB_CHECK(eb_oauth_access(o, now + 79 * 1000) != NULL);
        EB_CHECK(eb_oauth_access(o, now + 80 * 1000) == NULL);
        eb_oauth_invalidate(o);
        EB_CHECK(eb_oauth_access(o, now) == NULL);
        eb_oauth_free(o);
}

/* A pair persisted by one process, restored by the next. */
static json_t *persisted_blob(const struct eb_source_cfg *s, int gen)
{
        char note[256], det[400], body[256];
        eb_oauth_t *o = eb_oauth_new(s, NULL, note, sizeof(note));
        json_t *blob;

        ok_body(body, sizeof(body), gen, 3600);
        (void)eb_oauth_response(o, 200, body, strlen(body), eb_now_ms(), det,
                                sizeof(det));
        blob = eb_oauth_blob(o, 1);
        eb_oauth_persisted(o);
        eb_oauth_free(o);
        return blob;
}

static void test_blob(void)
{
        struct eb_source_cfg s, other, rekeyed, reauth;
        char note[256], *text, *url, *body;
        json_t *blob, *bad;
        eb_oauth_t *o;

        src_init(&s, "kommo-1", "r0-initial", KEY1);
        /* only the configured token: nothing to persist */
        o = eb_oauth_new(&s, NULL, note, sizeof(note));
        EB_CHECK(eb_oauth_blob(o, 1) == NULL);
        eb_oauth_free(o);
        blob = persisted_blob(&s, 7);
        EB_REQUIRE(blob != NULL);
        text = json_dumps(blob, JSON_COMPACT);
        /* encrypted: neither token is in the record */
        EB_CHECK(strstr(text, "acc-7-xyz") == NULL);
        EB_CHECK(strstr(text, "ref-7-xyz") == NULL);
        EB_CHECK(strstr(text, "r0-initial") == NULL);
        free(text);

        o = eb_oauth_new(&s, blob, note, sizeof(note));
        EB_CHECK(strstr(note, "restored the newest persisted token pair") !=
                 NULL);
        {
                /* the stored record is carried on unchanged, so an idle
                 * checkpoint stays equal to the committed one */
                json_t *again = eb_oauth_blob(o, 0);

                EB_CHECK(json_equal(again, blob));
                json_decref(again);
        }
        EB_CHECK_STR(eb_oauth_access(o, eb_now_ms()), "acc-7-xyz");
        EB_REQUIRE(eb_oauth_request(o, "https://a.test", &url, &body) == 0);
        EB_CHECK(strstr(body, "\"ref-7-xyz\"") != NULL);
        free(url);
        free(body);
        eb_oauth_free(o);

        /* another source cannot use it (source name is authenticated) */
        src_init(&other, "kommo-2", "r0-initial", KEY1);
        o = eb_oauth_new(&other, blob, note, sizeof(note));
        EB_CHECK(strstr(note, "cannot be decrypted") != NULL);
        EB_CHECK(eb_oauth_access(o, eb_now_ms()) == NULL);
        eb_oauth_free(o);

        /* another key: the origin does not match either */
        src_init(&rekeyed, "kommo-1", "r0-initial", KEY2);
        o = eb_oauth_new(&rekeyed, blob, note, sizeof(note));
        EB_CHECK(strstr(note, "using the configured refresh_token") != NULL);
        EB_CHECK(eb_oauth_access(o, eb_now_ms()) == NULL);
        eb_oauth_free(o);

        /* the operator re-authorized: the configured token wins */
        src_init(&reauth, "kommo-1", "r9-new-authorization", KEY1);
        o = eb_oauth_new(&reauth, blob, note, sizeof(note));
        EB_CHECK(strstr(note, "re-authorized") != NULL);
        EB_REQUIRE(eb_oauth_request(o, "https://a.test", &url, &body) == 0);
        EB_CHECK(strstr(body, "\"r9-new-authorization\"") != NULL);
        free(url);
        free(body);
        eb_oauth_free(o);

        /* altered ciphertext: refused by the tag */
        bad = json_deep_copy(blob);
        {
                char *ct = eb_xstrdup(
                        json_string_value(json_object_get(bad, "ct")));
                ct[0] = ct[0] == '0' ? '1' : '0';
                json_object_set_new(bad, "ct", json_string(ct));
                free(ct);
        }
        o = eb_oauth_new(&s, bad, note, sizeof(note));
        EB_CHECK(strstr(note, "cannot be decrypted") != NULL);
        eb_oauth_free(o);
        json_decref(bad);
        json_decref(blob);
}

static void test_wrap_split(void)
{
        json_t *cp = json_pack("{s:i,s:s}", "ts", 5, "w", "x");
        json_t *blob = json_pack("{s:i}", "v", 1);
        json_t *w, *rest, *b;

        w = eb_oauth_wrap(cp, blob);
        EB_CHECK(json_object_get(w, EB_OAUTH_CP_KEY) != NULL);
        EB_CHECK(json_object_get(cp, EB_OAUTH_CP_KEY) == NULL); /* a copy */
        rest = eb_oauth_split(w, &b);
        EB_CHECK(json_equal(rest, cp));
        EB_CHECK(json_equal(b, blob));
        json_decref(rest);
        json_decref(b);
        json_decref(w);
        /* no checkpoint yet: the pair alone, and nothing else restored */
        w = eb_oauth_wrap(NULL, blob);
        rest = eb_oauth_split(w, &b);
        EB_CHECK(rest == NULL);
        EB_CHECK(b != NULL);
        json_decref(b);
        json_decref(w);
        /* without a pair: the checkpoint itself */
        w = eb_oauth_wrap(cp, NULL);
        EB_CHECK(w == cp);
        json_decref(w);
        rest = eb_oauth_split(cp, &b);
        EB_CHECK(rest == cp && b == NULL);
        json_decref(rest);
        json_decref(cp);
        json_decref(blob);
}

/* Every received token is redacted from logs while it lives, and the
 * redaction list does not grow with the renewals. */
static void test_secrets_bounded(void)
{
        struct eb_source_cfg s;
        char note[256], det[400], body[256];
        eb_oauth_t *o;
        size_t base;
        int i;

        eb_log_set_sink(sink, NULL);
        src_init(&s, "k", "r0-initial", KEY1);
        o = eb_oauth_new(&s, NULL, note, sizeof(note));
        base = eb_log_secret_count();
        for (i = 1; i <= 200; i++) {
                ok_body(body, sizeof(body), i, 3600);
                (void)eb_oauth_response(o, 200, body, strlen(body), eb_now_ms(),
                                        det, sizeof(det));
                eb_oauth_persisted(o);
        }
        EB_CHECK(eb_log_secret_count() <= base + 2);
        eb_warn("t", "token acc-200-xyz ref-200-xyz");
        EB_CHECK(strstr(last, "acc-200") == NULL);
        EB_CHECK(strstr(last, "ref-200") == NULL);
        eb_oauth_free(o);
        EB_CHECK(eb_log_secret_count() == base);
        eb_log_set_sink(NULL, NULL);
}

int main(void)
{
        EB_RUN(test_check_config);
        EB_RUN(test_request);
        EB_RUN(test_answers);
        EB_RUN(test_blob);
        EB_RUN(test_wrap_split);
        EB_RUN(test_secrets_bounded);
        eb_log_shutdown();
        return eb_test_summary();
}
