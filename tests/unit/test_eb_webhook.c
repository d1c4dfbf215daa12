/*
 * Unit tests for webhook authentication (eb_webhook_sig), the PHP-style
 * form parser (eb_form) and the webhook config checks (eb_webhook).
 *
 * The signature vectors were computed independently of this code with the
 * openssl command-line tool and are pinned here:
 *
 *   printf '%s%s' "$TS" "$BODY" |
 *       openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY        (Close)
 *   printf '%s.%s' "$T" "$BODY" |
 *       openssl dgst -sha256 -mac HMAC -macopt key:whsec_kota-1   (Kota)
 *
 * and the Standard Webhooks vector is the one the specification publishes
 * (secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw), which the same openssl
 * command reproduces.
 */
#include "eb_config.h"
#include "eb_form.h"
#include "eb_test.h"
#include "eb_webhook.h"
#include "eb_webhook_sig.h"
#include "providers/kota.h"

#include <errno.h>
#include <strings.h>

/* ---- fixtures -------------------------------------------------------- */

#define CLOSE_KEY                                                              \
        "4f1b2e7c9d3a5b6e8f0a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5"
#define CLOSE_TS "1544271440"
#define CLOSE_BODY                                                             \
        "{\"event\":{\"id\":\"ev_3dk3nVKM2e0vLq2B0kQ6DX\",\"object_type\":"    \
        "\"lead\",\"action\":\"created\",\"date_updated\":\"2024-05-15T14:22:" \
        "30.123000\",\"date_created\":\"2024-05-15T14:22:30.123000\","         \
        "\"object_id\":\"lead_abc\",\"organization_id\":\"orga_1\"},"          \
        "\"subscription_id\":\"whsub_BUBTDjaNGNlGH6RfS4Vf7i\"}"
#define CLOSE_SIG                                                              \
        "9b574907464bc359e4029d4bd30240924c675d6903f7dd767b4e44a3d5bd0269"
/* HMAC of the timestamp alone (empty body). */
#define CLOSE_SIG_EMPTY                                                        \
        "9e175dfe7be0e30f02257baf32cf3ae5acbda9c5eedb076cd215ddfa38dda2ea"

#define KOTA_SECRET "whsec_kota-1"
#define KOTA_T      "1733011200"
#define KOTA_BODY                                                              \
        "{\"id\":\"evt_3b1333d87d9d4fd6ad83ba7f6b0e951a\",\"type\":"           \
        "\"employee.created\",\"platform_id\":\"pt_3b1333d87d9d4fd6ad83ba7f6b" \
        "0e951a\",\"data\":{\"id\":\"ee_3b1333d87d9d4fd6ad83ba7f6b0e951a\","   \
        "\"employer_id\":\"er_3b1333d87d9d4fd6ad83ba7f6b0e951a\",\"metadata\"" \
        ":null,\"resource_type\":\"employee\",\"object\":\"employee\"},"       \
        "\"created_at\":\"2024-12-01T00:00:00Z\",\"object\":\"event\","        \
        "\"version\":\"V2\"}"
#define KOTA_SIG                                                               \
        "34e151a4b110df84ff0d431fba019f37a2ca49c407815f060540da38e8f278c8"

#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define STD_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define STD_TS     "1614265330"
#define STD_BODY   "{\"test\": 2432232314}"
#define STD_SIG    "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

#define TOL_MS (5 * 60 * 1000)

/* A request: up to 4 headers. */
struct fake {
        const char *names[4];
        const char *values[4];
};

static const char *fake_header(void *hctx, const char *name)
{
        struct fake *f = hctx;
        int i;

        for (i = 0; i < 4; i++)
                if (f->names[i] && !strcasecmp(f->names[i], name))
                        return f->values[i];
        return NULL;
}

static eb_wh_auth_t run(const char *scheme, const char *secret, struct fake *f,
                        const char *body, const char *token, int64_t now_ms,
                        unsigned *cmp)
{
        const struct eb_wh_scheme *s = eb_wh_scheme_lookup(scheme);
        struct eb_wh_input in;
        struct eb_wh_key key;
        char err[256];
        eb_wh_auth_t r;

        if (!s || eb_wh_key_init(s, secret, &key, err, sizeof(err))) {
                fprintf(stderr, "  bad fixture: %s %s\n", scheme, err);
                return EB_WH_AUTH_ERROR;
        }
        memset(&in, 0, sizeof(in));
        in.header = fake_header;
        in.hctx = f;
        in.body = body;
        in.body_len = strlen(body);
        in.token = token;
        in.now_ms = now_ms;
        in.tolerance_ms = TOL_MS;
        r = eb_wh_verify(s, &key, &in, cmp);
        eb_wh_key_fini(&key);
        return r;
}

/* ---- Close ----------------------------------------------------------- */

static void test_close_vectors(void)
{
        static const int64_t t0 = 1544271440LL * 1000;
        static const char other_key[] = "5f1b2e7c9d3a5b6e8f0a1c2d3e4f5a6b7c8d9e"
                                        "0f1a2b3c4d5e6f708192a3b4c5";
        static const char upper_sig[] = "9B574907464BC359E4029D4BD30240924C675D"
                                        "6903F7DD767B4E44A3D5BD0269";
        struct {
                const char *what, *key, *sig, *ts, *body;
                int64_t now;
                eb_wh_auth_t want;
        } cases[] = {
                {"valid", CLOSE_KEY, CLOSE_SIG, CLOSE_TS, CLOSE_BODY, t0,
                 EB_WH_AUTH_OK},
                {"valid, uppercase hex", CLOSE_KEY, upper_sig, CLOSE_TS,
                 CLOSE_BODY, t0, EB_WH_AUTH_OK},
                {"valid, empty body", CLOSE_KEY, CLOSE_SIG_EMPTY, CLOSE_TS, "",
                 t0, EB_WH_AUTH_OK},
                {"valid, 4m59s old", CLOSE_KEY, CLOSE_SIG, CLOSE_TS, CLOSE_BODY,
                 t0 + TOL_MS - 1000, EB_WH_AUTH_OK},
                {"wrong key", other_key, CLOSE_SIG, CLOSE_TS, CLOSE_BODY, t0,
                 EB_WH_AUTH_SIG_MISMATCH},
                {"tampered body", CLOSE_KEY, CLOSE_SIG, CLOSE_TS,
                 CLOSE_BODY " ", t0, EB_WH_AUTH_SIG_MISMATCH},
                {"tampered timestamp", CLOSE_KEY, CLOSE_SIG, "1544271441",
                 CLOSE_BODY, t0, EB_WH_AUTH_SIG_MISMATCH},
                {"signature of another body", CLOSE_KEY, CLOSE_SIG_EMPTY,
                 CLOSE_TS, CLOSE_BODY, t0, EB_WH_AUTH_SIG_MISMATCH},
                {"expired", CLOSE_KEY, CLOSE_SIG, CLOSE_TS, CLOSE_BODY,
                 t0 + TOL_MS + 1000, EB_WH_AUTH_TS_EXPIRED},
                {"future", CLOSE_KEY, CLOSE_SIG, CLOSE_TS, CLOSE_BODY,
                 t0 - TOL_MS - 1000, EB_WH_AUTH_TS_FUTURE},
                {"missing hash", CLOSE_KEY, NULL, CLOSE_TS, CLOSE_BODY, t0,
                 EB_WH_AUTH_SIG_MISSING},
                {"missing timestamp", CLOSE_KEY, CLOSE_SIG, NULL, CLOSE_BODY,
                 t0, EB_WH_AUTH_SIG_MISSING},
                {"non-hex signature", CLOSE_KEY,
                 "zz574907464bc359e4029d4bd30240924c675d6903f7dd767b4e44a3d5bd"
                 "0269",
                 CLOSE_TS, CLOSE_BODY, t0, EB_WH_AUTH_SIG_MALFORMED},
                {"short signature", CLOSE_KEY, "9b5749", CLOSE_TS, CLOSE_BODY,
                 t0, EB_WH_AUTH_SIG_MALFORMED},
                {"sha256= prefix", CLOSE_KEY, "sha256=" CLOSE_SIG, CLOSE_TS,
                 CLOSE_BODY, t0, EB_WH_AUTH_SIG_MALFORMED},
                {"timestamp not a number", CLOSE_KEY, CLOSE_SIG, "15442x1440",
                 CLOSE_BODY, t0, EB_WH_AUTH_TS_INVALID},
                {"timestamp empty", CLOSE_KEY, CLOSE_SIG, "", CLOSE_BODY, t0,
                 EB_WH_AUTH_TS_INVALID},
                {"timestamp in ms (13 digits)", CLOSE_KEY, CLOSE_SIG,
                 "1544271440000", CLOSE_BODY, t0, EB_WH_AUTH_TS_INVALID},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct fake f = {{"close-sig-hash", "close-sig-timestamp"},
                                 {cases[i].sig, cases[i].ts}};
                unsigned cmp = 0;
                eb_wh_auth_t got;

                if (!cases[i].sig)
                        f.names[0] = NULL;
                if (!cases[i].ts)
                        f.names[1] = NULL;
                got = run("close", cases[i].key, &f, cases[i].body, NULL,
                          cases[i].now, &cmp);
                if (got != cases[i].want)
                        fprintf(stderr, "  close case \"%s\": got %s\n",
                                cases[i].what, eb_wh_auth_name(got));
                EB_CHECK_INT(got, cases[i].want);
                /* Once a signature is parsed, the comparison is always the
                 * constant-time one, whether it matches or not. */
                if (got == EB_WH_AUTH_OK || got == EB_WH_AUTH_SIG_MISMATCH ||
                    got == EB_WH_AUTH_TS_EXPIRED || got == EB_WH_AUTH_TS_FUTURE)
                        EB_CHECK_INT(cmp, 1);
                else
                        EB_CHECK_INT(cmp, 0);
        }
}

static void test_close_headers_case_insensitive(void)
{
        struct fake f = {{"Close-Sig-Hash", "CLOSE-SIG-TIMESTAMP"},
                         {CLOSE_SIG, CLOSE_TS}};

        EB_CHECK_INT(run("close", CLOSE_KEY, &f, CLOSE_BODY, NULL,
                         1544271440LL * 1000, NULL),
                     EB_WH_AUTH_OK);
}

/* ---- Kota ------------------------------------------------------------ */

static void test_kota_parse(void)
{
        static const char *const h =
                "t=" KOTA_T ",v1=" KOTA_SIG; /* reference */
        struct {
                const char *hdr;
                eb_wh_auth_t want;
                int nsig;
        } cases[] = {
                {h, EB_WH_AUTH_OK, 1},
                {"v1=" KOTA_SIG ",t=" KOTA_T, EB_WH_AUTH_OK, 1},
                {" t=" KOTA_T " ,\tv1=" KOTA_SIG " ", EB_WH_AUTH_OK, 1},
                {"t=" KOTA_T ",v0=abc,v1=" KOTA_SIG ",v2=zz", EB_WH_AUTH_OK, 1},
                {"t=" KOTA_T ",v1=" KOTA_SIG ",v1=" KOTA_SIG, EB_WH_AUTH_OK, 2},
                {"t=" KOTA_T, EB_WH_AUTH_SIG_MALFORMED, 0},
                {"v1=" KOTA_SIG, EB_WH_AUTH_SIG_MALFORMED, 0},
                {"t=1,t=2,v1=" KOTA_SIG, EB_WH_AUTH_SIG_MALFORMED, 0},
                {"t=abc,v1=" KOTA_SIG, EB_WH_AUTH_TS_INVALID, 0},
                {"t=,v1=" KOTA_SIG, EB_WH_AUTH_TS_INVALID, 0},
                {"t=" KOTA_T ",v1=xyz", EB_WH_AUTH_SIG_MALFORMED, 0},
                {"t=" KOTA_T ",v1=" KOTA_SIG "00", EB_WH_AUTH_SIG_MALFORMED, 0},
                {"t=" KOTA_T ",,v1=" KOTA_SIG, EB_WH_AUTH_SIG_MALFORMED, 0},
                {"t=" KOTA_T ",v1=" KOTA_SIG ",", EB_WH_AUTH_SIG_MALFORMED, 0},
                {"t " KOTA_T ",v1=" KOTA_SIG, EB_WH_AUTH_SIG_MALFORMED, 0},
                {"=x,t=" KOTA_T ",v1=" KOTA_SIG, EB_WH_AUTH_SIG_MALFORMED, 0},
                {"garbage", EB_WH_AUTH_SIG_MALFORMED, 0},
                {"", EB_WH_AUTH_SIG_MALFORMED, 0},
                {"sha256=" KOTA_SIG, EB_WH_AUTH_SIG_MALFORMED, 0},
        };
        struct eb_kota_sig ks;
        char many[1024];
        size_t i;
        int n;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                eb_wh_auth_t got = eb_kota_sig_parse(cases[i].hdr, &ks);
                if (got != cases[i].want)
                        fprintf(stderr, "  kota header \"%s\": got %s\n",
                                cases[i].hdr, eb_wh_auth_name(got));
                EB_CHECK_INT(got, cases[i].want);
                if (got == EB_WH_AUTH_OK) {
                        EB_CHECK_INT(ks.nsig, cases[i].nsig);
                        EB_CHECK_INT(ks.t, 1733011200);
                        EB_CHECK_STR(ks.t_text, KOTA_T);
                }
        }
        /* At most EB_WH_MAX_SIGS v1 values. */
        n = snprintf(many, sizeof(many), "t=%s", KOTA_T);
        for (i = 0; i < EB_WH_MAX_SIGS; i++)
                n += snprintf(many + n, sizeof(many) - (size_t)n, ",v1=%s",
                              KOTA_SIG);
        EB_CHECK_INT(eb_kota_sig_parse(many, &ks), EB_WH_AUTH_OK);
        snprintf(many + n, sizeof(many) - (size_t)n, ",v1=%s", KOTA_SIG);
        EB_CHECK_INT(eb_kota_sig_parse(many, &ks), EB_WH_AUTH_SIG_MALFORMED);
}

static void test_kota_verify(void)
{
        static const int64_t t0 = 1733011200LL * 1000;
        static const char wrong[] = "000000000000000000000000000000000000000000"
                                    "0000000000000000000000";
        char hdr[512];
        unsigned cmp;
        struct fake f = {{"x-kota-webhook-signature"}, {hdr}};

        snprintf(hdr, sizeof(hdr), "t=%s,v1=%s", KOTA_T, KOTA_SIG);
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_OK);
        /* Rotation: the old signature first, the matching one second;
         * both are compared. */
        snprintf(hdr, sizeof(hdr), "t=%s,v1=%s,v1=%s", KOTA_T, wrong, KOTA_SIG);
        cmp = 0;
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL, t0, &cmp),
                     EB_WH_AUTH_OK);
        EB_CHECK_INT(cmp, 2);
        snprintf(hdr, sizeof(hdr), "t=%s,v1=%s", KOTA_T, KOTA_SIG);
        EB_CHECK_INT(
                run("kota-v1", "whsec_kota-2", &f, KOTA_BODY, NULL, t0, NULL),
                EB_WH_AUTH_SIG_MISMATCH);
        EB_CHECK_INT(
                run("kota-v1", KOTA_SECRET, &f, KOTA_BODY "\n", NULL, t0, NULL),
                EB_WH_AUTH_SIG_MISMATCH);
        snprintf(hdr, sizeof(hdr), "t=1733011201,v1=%s", KOTA_SIG);
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISMATCH);
        /* The signed string uses t as sent: a zero-padded t signs
         * differently, so it does not verify against the plain one. */
        snprintf(hdr, sizeof(hdr), "t=0%s,v1=%s", KOTA_T, KOTA_SIG);
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISMATCH);
        snprintf(hdr, sizeof(hdr), "v1=%s,t=%s", KOTA_SIG, KOTA_T);
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL,
                         t0 + TOL_MS + 1, NULL),
                     EB_WH_AUTH_TS_EXPIRED);
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL,
                         t0 - TOL_MS - 1, NULL),
                     EB_WH_AUTH_TS_FUTURE);
        f.names[0] = NULL;
        EB_CHECK_INT(run("kota-v1", KOTA_SECRET, &f, KOTA_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISSING);
}

/* ---- Standard Webhooks ----------------------------------------------- */

static void test_standard_vectors(void)
{
        static const int64_t t0 = 1614265330LL * 1000;
        char sig[256];
        unsigned cmp = 0;
        struct fake f = {
                {"webhook-id", "webhook-timestamp", "webhook-signature"},
                {STD_ID, STD_TS, sig}};

        snprintf(sig, sizeof(sig), "v1,%s", STD_SIG);
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL, t0, &cmp),
                     EB_WH_AUTH_OK);
        EB_CHECK_INT(cmp, 1);
        /* The secret without its "whsec_" prefix is the same key. */
        EB_CHECK_INT(run("standard", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &f,
                         STD_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_OK);
        /* Several signatures (rotation) and other versions. */
        snprintf(sig, sizeof(sig),
                 "v1a,ignored v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "
                 " v1,%s",
                 STD_SIG);
        cmp = 0;
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL, t0, &cmp),
                     EB_WH_AUTH_OK);
        EB_CHECK_INT(cmp, 2);
        snprintf(sig, sizeof(sig), "v1a,%s", STD_SIG);
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MALFORMED);
        snprintf(sig, sizeof(sig), "v1,%s", STD_SIG);
        EB_CHECK_INT(run("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx",
                         &f, STD_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISMATCH);
        EB_CHECK_INT(run("standard", STD_SECRET, &f, "{\"test\": 2432232315}",
                         NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISMATCH);
        f.values[0] = "msg_other";
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISMATCH);
        f.values[0] = STD_ID;
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL,
                         t0 + TOL_MS + 1000, NULL),
                     EB_WH_AUTH_TS_EXPIRED);
        f.values[1] = "16142x5330";
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_TS_INVALID);
        f.values[1] = STD_TS;
        f.names[0] = NULL;
        EB_CHECK_INT(run("standard", STD_SECRET, &f, STD_BODY, NULL, t0, NULL),
                     EB_WH_AUTH_SIG_MISSING);
}

/* ---- token ----------------------------------------------------------- */

static void test_token(void)
{
        struct fake f = {{NULL}, {NULL}};
        unsigned cmp = 0;

        EB_CHECK_INT(run("token", "kommo-hook-1", &f, "a=b", "kommo-hook-1", 0,
                         &cmp),
                     EB_WH_AUTH_OK);
        EB_CHECK_INT(cmp, 1);
        cmp = 0;
        EB_CHECK_INT(run("token", "kommo-hook-1", &f, "a=b", "kommo-hook-2", 0,
                         &cmp),
                     EB_WH_AUTH_TOKEN_MISMATCH);
        EB_CHECK_INT(cmp, 1);
        EB_CHECK_INT(run("token", "kommo-hook-1", &f, "a=b", "kommo-hook-1x", 0,
                         NULL),
                     EB_WH_AUTH_TOKEN_MISMATCH);
        EB_CHECK_INT(run("token", "kommo-hook-1", &f, "a=b", "kommo", 0, NULL),
                     EB_WH_AUTH_TOKEN_MISMATCH);
        cmp = 0;
        EB_CHECK_INT(run("token", "kommo-hook-1", &f, "a=b", NULL, 0, &cmp),
                     EB_WH_AUTH_TOKEN_MISSING);
        EB_CHECK_INT(run("token", "kommo-hook-1", &f, "a=b", "", 0, &cmp),
                     EB_WH_AUTH_TOKEN_MISSING);
        EB_CHECK_INT(cmp, 0);
}

static void test_keys(void)
{
        const struct eb_wh_scheme *s;
        struct eb_wh_key key;
        char err[256];

        EB_CHECK(eb_wh_scheme_lookup("nope") == NULL);
        EB_CHECK(eb_wh_scheme_lookup(NULL) == NULL);
        s = eb_wh_scheme_lookup("close");
        EB_REQUIRE(s != NULL);
        EB_CHECK(!eb_wh_scheme_uses_token(s));
        EB_CHECK_INT(
                eb_wh_key_init(s, "secret-not-hex", &key, err, sizeof(err)),
                -EINVAL);
        EB_CHECK(strstr(err, "hex") != NULL);
        EB_CHECK(strstr(err, "secret-not-hex") == NULL);
        eb_wh_key_fini(&key);
        EB_CHECK_INT(eb_wh_key_init(s, "abc", &key, err, sizeof(err)), -EINVAL);
        eb_wh_key_fini(&key);
        EB_CHECK_INT(eb_wh_key_init(s, CLOSE_KEY, &key, err, sizeof(err)), 0);
        EB_CHECK_INT(key.len, 32);
        eb_wh_key_fini(&key);
        EB_CHECK(key.bytes == NULL);

        s = eb_wh_scheme_lookup("standard");
        EB_REQUIRE(s != NULL);
        EB_CHECK_INT(eb_wh_key_init(s, "whsec_!!!", &key, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK(strstr(err, "!!!") == NULL);
        eb_wh_key_fini(&key);
        EB_CHECK_INT(eb_wh_key_init(s, "whsec_", &key, err, sizeof(err)),
                     -EINVAL);
        eb_wh_key_fini(&key);

        s = eb_wh_scheme_lookup("token");
        EB_REQUIRE(s != NULL);
        EB_CHECK(eb_wh_scheme_uses_token(s));
        EB_CHECK_INT(eb_wh_key_init(s, "", &key, err, sizeof(err)), -EINVAL);
        eb_wh_key_fini(&key);
}

static void test_base64(void)
{
        unsigned char out[64];

        EB_CHECK_INT(eb_wh_base64_decode("aGVsbG8=", 8, out, sizeof(out)), 5);
        EB_CHECK(!memcmp(out, "hello", 5));
        EB_CHECK_INT(eb_wh_base64_decode("aGVsbG8", 7, out, sizeof(out)), 5);
        EB_CHECK_INT(eb_wh_base64_decode("aGVsbA==", 8, out, sizeof(out)), 4);
        EB_CHECK_INT(eb_wh_base64_decode("", 0, out, sizeof(out)), 0);
        EB_CHECK_INT(eb_wh_base64_decode("a", 1, out, sizeof(out)), -EINVAL);
        EB_CHECK_INT(eb_wh_base64_decode("aGVs bG8=", 9, out, sizeof(out)),
                     -EINVAL);
        EB_CHECK_INT(eb_wh_base64_decode("aGVsbG9=", 8, out, sizeof(out)),
                     -EINVAL); /* non-zero leftover bits */
        EB_CHECK_INT(eb_wh_base64_decode("aGVsbG8===", 10, out, sizeof(out)),
                     -EINVAL);
        EB_CHECK_INT(eb_wh_base64_decode("aGVsbG8=", 8, out, 4), -EINVAL);
}

static void test_timestamp(void)
{
        EB_CHECK_INT(eb_wh_check_timestamp("100", 100000, 0), EB_WH_AUTH_OK);
        EB_CHECK_INT(eb_wh_check_timestamp("100", 100001, 0),
                     EB_WH_AUTH_TS_EXPIRED);
        EB_CHECK_INT(eb_wh_check_timestamp("100", 99999, 0),
                     EB_WH_AUTH_TS_FUTURE);
        EB_CHECK_INT(eb_wh_check_timestamp("-100", 0, 1000),
                     EB_WH_AUTH_TS_INVALID);
        EB_CHECK_INT(eb_wh_check_timestamp(" 100", 0, 1000),
                     EB_WH_AUTH_TS_INVALID);
        EB_CHECK_INT(eb_wh_check_timestamp(NULL, 0, 1000),
                     EB_WH_AUTH_TS_INVALID);
        EB_CHECK_STR(eb_wh_auth_name(EB_WH_AUTH_SIG_MISMATCH),
                     "signature_mismatch");
        EB_CHECK_STR(eb_wh_auth_name(EB_WH_AUTH_TS_EXPIRED),
                     "timestamp_expired");
}

/* ---- the form parser -------------------------------------------------- */

/* providers.md Example 3, as one line. */
static const char example3[] =
        "leads[status][0][id]=10701093&leads[status][0][name]=Seminar+booking"
        "&leads[status][0][status_id]=142&leads[status][0][old_status_id]="
        "20067736&leads[status][0][price]=22500&leads[status][0]"
        "[responsible_user_id]=2079676&leads[status][0][last_modified]="
        "1539782664&leads[status][0][modified_user_id]=2079718&leads[status]"
        "[0][created_user_id]=2076025&leads[status][0][date_create]="
        "1539782209&leads[status][0][pipeline_id]=9217056&leads[status][0]"
        "[tags][0][id]=80147&leads[status][0][tags][0][name]=repeat+request&"
        "leads[status][0][account_id]=17769199&leads[status][0]"
        "[custom_fields][0][id]=66339&leads[status][0][custom_fields][0]"
        "[name]=Source&leads[status][0][custom_fields][0][values][0][value]="
        "Website&leads[status][0][custom_fields][0][values][0][enum]=139517"
        "&account[subdomain]=example";

static json_t *parse(const char *body, char *err, size_t errsz)
{
        return eb_form_parse(body, strlen(body), NULL, err, errsz);
}

/* Value at a dotted path ("leads.status.0.id"), or NULL. */
static json_t *at(json_t *root, const char *path)
{
        char buf[256], *save = NULL, *tok;
        json_t *v = root;

        snprintf(buf, sizeof(buf), "%s", path);
        for (tok = strtok_r(buf, ".", &save); tok && v;
             tok = strtok_r(NULL, ".", &save)) {
                if (json_is_array(v)) {
                        char *end;
                        long i = strtol(tok, &end, 10);
                        v = *end ? NULL : json_array_get(v, (size_t)i);
                } else {
                        v = json_object_get(v, tok);
                }
        }
        return v;
}

static const char *at_str(json_t *root, const char *path)
{
        return json_string_value(at(root, path));
}

static void test_form_example3(void)
{
        char err[256] = "";
        json_t *root = parse(example3, err, sizeof(err));
        json_t *enc;
        char *a, *b;

        EB_REQUIRE(root != NULL);
        EB_CHECK(json_is_object(root));
        EB_CHECK(json_is_array(at(root, "leads.status")));
        EB_CHECK_INT(json_array_size(at(root, "leads.status")), 1);
        EB_CHECK_STR(at_str(root, "leads.status.0.id"), "10701093");
        EB_CHECK_STR(at_str(root, "leads.status.0.name"), "Seminar booking");
        EB_CHECK_STR(at_str(root, "leads.status.0.status_id"), "142");
        EB_CHECK_STR(at_str(root, "leads.status.0.old_status_id"), "20067736");
        EB_CHECK_STR(at_str(root, "leads.status.0.pipeline_id"), "9217056");
        EB_CHECK_STR(at_str(root, "leads.status.0.tags.0.name"),
                     "repeat request");
        EB_CHECK_STR(at_str(root, "leads.status.0.custom_fields.0.name"),
                     "Source");
        EB_CHECK_STR(
                at_str(root, "leads.status.0.custom_fields.0.values.0.value"),
                "Website");
        EB_CHECK_STR(
                at_str(root, "leads.status.0.custom_fields.0.values.0.enum"),
                "139517");
        EB_CHECK_STR(at_str(root, "account.subdomain"), "example");
        EB_CHECK_INT(json_object_size(at(root, "leads.status.0")), 14);

        /* The same body with %-encoded brackets (as Kommo and the
         * simulator send it) parses to the same JSON. */
        {
                struct eb_buf b2;
                const char *p;
                eb_buf_init(&b2, 0);
                for (p = example3; *p; p++) {
                        int rc;
                        if (*p == '[')
                                rc = eb_buf_append_str(&b2, "%5B");
                        else if (*p == ']')
                                rc = eb_buf_append_str(&b2, "%5d");
                        else
                                rc = eb_buf_append(&b2, p, 1);
                        EB_CHECK_INT(rc, 0);
                }
                enc = eb_form_parse(b2.data, b2.len, NULL, err, sizeof(err));
                eb_buf_fini(&b2);
        }
        EB_REQUIRE(enc != NULL);
        a = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT);
        b = json_dumps(enc, JSON_SORT_KEYS | JSON_COMPACT);
        EB_CHECK_STR(a, b);
        free(a);
        free(b);
        json_decref(enc);
        json_decref(root);
}

static void test_form_nesting_and_decoding(void)
{
        char err[256] = "";
        json_t *root;
        char *s;

        root = parse("a=hello+world%21%20%E2%9C%93&b=%2B1&c=&d=x%3Dy%26z", err,
                     sizeof(err));
        EB_REQUIRE(root != NULL);
        EB_CHECK_STR(at_str(root, "a"), "hello world! \xe2\x9c\x93");
        EB_CHECK_STR(at_str(root, "b"), "+1");
        EB_CHECK_STR(at_str(root, "c"), "");
        EB_CHECK_STR(at_str(root, "d"), "x=y&z");
        json_decref(root);

        root = parse("a[0][0]=x&a[0][1]=y&a[1][0]=z", err, sizeof(err));
        EB_REQUIRE(root != NULL);
        s = json_dumps(root, JSON_COMPACT);
        EB_CHECK_STR(s, "{\"a\":[[\"x\",\"y\"],[\"z\"]]}");
        free(s);
        json_decref(root);

        /* Out-of-order indexes still make an array; sparse ones do not. */
        root = parse("a[1]=y&a[0]=x&b[0]=x&b[2]=y&c[x]=1", err, sizeof(err));
        EB_REQUIRE(root != NULL);
        EB_CHECK_STR(at_str(root, "a.0"), "x");
        EB_CHECK_STR(at_str(root, "a.1"), "y");
        EB_CHECK(json_is_object(at(root, "b")));
        EB_CHECK_STR(at_str(root, "b.2"), "y");
        EB_CHECK(json_is_object(at(root, "c")));
        json_decref(root);

        /* "[]" appends; empty pairs are skipped; a later scalar wins. */
        root = parse("&a[]=1&&a[]=2&k=old&k=new&", err, sizeof(err));
        EB_REQUIRE(root != NULL);
        s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
        EB_CHECK_STR(s, "{\"a\":[\"1\",\"2\"],\"k\":\"new\"}");
        free(s);
        json_decref(root);

        /* A top level of numeric keys stays an object. */
        root = parse("0=a&1=b", err, sizeof(err));
        EB_REQUIRE(root != NULL);
        EB_CHECK(json_is_object(root));
        json_decref(root);

        /* Empty body: an empty object. */
        root = eb_form_parse("", 0, NULL, err, sizeof(err));
        EB_REQUIRE(root != NULL);
        EB_CHECK_INT(json_object_size(root), 0);
        json_decref(root);

        /* Exactly the depth limit is fine. */
        root = parse("a[1][2][3][4][5][6][7][8][9][10][11][12][13][14][15][16]"
                     "=deep",
                     err, sizeof(err));
        EB_CHECK(root != NULL);
        json_decref(root);
}

static void test_form_malformed(void)
{
        static const struct {
                const char *body, *why;
        } cases[] = {
                {"a[b=1", "unbalanced '['"},
                {"a]=1", "unbalanced ']'"},
                {"a[b]]=1", "text after ']'"},
                {"a[b]c=1", "text after ']'"},
                {"a[b[c]]=1", "'[' inside"},
                {"[a]=1", "empty key name"},
                {"=1", "empty key name"},
                {"a", "missing '='"},
                {"a=1&b", "missing '='"},
                {"a=%zz", "bad %-escape in value"},
                {"a=%4", "bad %-escape in value"},
                {"a=%", "bad %-escape in value"},
                {"a%2=1", "bad %-escape in key"},
                {"a=%00", "bad %-escape in value"},
                {"a%5B=1", "unbalanced '['"},
                {"a=%FF", "not valid UTF-8"},
                {"a=1&a[b]=2", "both as a value and as a container"},
                {"a[b]=2&a=1", "both as a value and as a container"},
                {"a[1]=x&a[]=y", "clashes"},
                {"a[1][2][3][4][5][6][7][8][9][10][11][12][13][14][15][16][17]"
                 "=x",
                 "nested too deeply"},
        };
        char err[256];
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *root;

                err[0] = '\0';
                root = parse(cases[i].body, err, sizeof(err));
                if (root || !strstr(err, cases[i].why))
                        fprintf(stderr, "  form \"%s\": got \"%s\"\n",
                                cases[i].body, err);
                EB_CHECK(root == NULL);
                EB_CHECK(strstr(err, cases[i].why) != NULL);
                json_decref(root);
        }
        /* The reason names the pair, never the value. */
        EB_CHECK(parse("ok=1&secret=%zzTOPSECRET", err, sizeof(err)) == NULL);
        EB_CHECK(strstr(err, "pair 2") != NULL);
        EB_CHECK(strstr(err, "TOPSECRET") == NULL);
}

static void test_form_limits(void)
{
        struct eb_form_limits lim = {3, 2, 8};
        char err[256], key[2048];
        json_t *root;

        root = eb_form_parse("a=1&b=2&c=3", 11, &lim, err, sizeof(err));
        EB_CHECK(root != NULL);
        json_decref(root);
        root = eb_form_parse("a=1&b=2&c=3&d=4", 15, &lim, err, sizeof(err));
        EB_CHECK(root == NULL);
        EB_CHECK(strstr(err, "more than 3 pairs") != NULL);
        root = eb_form_parse("a[b][c]=1", 9, &lim, err, sizeof(err));
        EB_CHECK(root != NULL);
        json_decref(root);
        root = eb_form_parse("a[b][c][d]=1", 12, &lim, err, sizeof(err));
        EB_CHECK(root == NULL);
        root = eb_form_parse("abcdefghi=1", 11, &lim, err, sizeof(err));
        EB_CHECK(root == NULL);
        EB_CHECK(strstr(err, "key too long") != NULL);
        /* Default key limit: 1024 bytes. */
        memset(key, 'k', 1025);
        memcpy(key + 1025, "=1", 3);
        root = parse(key, err, sizeof(err));
        EB_CHECK(root == NULL);
        EB_CHECK(strstr(err, "key too long") != NULL);
        key[1024] = '=';
        key[1025] = '1';
        key[1026] = '\0';
        root = parse(key, err, sizeof(err));
        EB_CHECK(root != NULL);
        json_decref(root);
        /* Not NUL-terminated input: only len bytes are read. */
        root = eb_form_parse("a=1&b=2GARBAGE", 7, NULL, err, sizeof(err));
        EB_REQUIRE(root != NULL);
        EB_CHECK_STR(at_str(root, "b"), "2");
        json_decref(root);
}

static void test_query_get(void)
{
        char *v;

        v = eb_form_query_get("token=abc&x=1", "token");
        EB_CHECK_STR(v, "abc");
        free(v);
        v = eb_form_query_get("x=1&token=a%2Fb+c&token=second", "token");
        EB_CHECK_STR(v, "a/b c");
        free(v);
        v = eb_form_query_get("x=1&tok%65n=enc", "token");
        EB_CHECK_STR(v, "enc");
        free(v);
        v = eb_form_query_get("token", "token");
        EB_CHECK_STR(v, "");
        free(v);
        v = eb_form_query_get("tokens=1&atoken=2", "token");
        EB_CHECK(v == NULL);
        EB_CHECK(eb_form_query_get("token=%zz", "token") == NULL);
        EB_CHECK(eb_form_query_get("", "token") == NULL);
        EB_CHECK(eb_form_query_get(NULL, "token") == NULL);
}

static void test_decode(void)
{
        struct eb_buf b;

        eb_buf_init(&b, 16);
        EB_CHECK_INT(eb_form_decode("a+b%2Fc", 7, 0, &b), 0);
        EB_CHECK_STR(b.data, "a+b/c");
        eb_buf_reset(&b);
        EB_CHECK_INT(eb_form_decode("a+b", 3, 1, &b), 0);
        EB_CHECK_STR(b.data, "a b");
        eb_buf_reset(&b);
        EB_CHECK_INT(eb_form_decode("%0", 2, 1, &b), -EINVAL);
        EB_CHECK_INT(eb_form_decode("%00", 3, 1, &b), -EINVAL);
        EB_CHECK_INT(eb_form_decode("0123456789abcdefX", 17, 1, &b), -E2BIG);
        eb_buf_fini(&b);
}

/* ---- config checks --------------------------------------------------- */

static void check_cfg(const char *webhook, const char *provider,
                      const char *want_err)
{
        char json[1024], err[512] = "";
        struct eb_config *cfg;
        int rc;

        snprintf(json, sizeof(json),
                 "{\"sources\":[{\"name\":\"s1\",\"provider\":\"%s\","
                 "\"base_url\":\"http://127.0.0.1:1\","
                 "\"credentials\":{\"api_key\":\"k\",\"token\":\"t\"},"
                 "\"webhook\":%s}]}",
                 provider, webhook);
        cfg = eb_config_load_string(json, err, sizeof(err));
        if (!cfg) {
                fprintf(stderr, "  config did not load: %s\n", err);
                EB_CHECK(cfg != NULL);
                return;
        }
        rc = eb_webhook_check_config(cfg, err, sizeof(err));
        if (!want_err) {
                if (rc)
                        fprintf(stderr, "  unexpected: %s\n", err);
                EB_CHECK_INT(rc, 0);
        } else {
                if (!strstr(err, want_err))
                        fprintf(stderr, "  got \"%s\", want \"%s\"\n", err,
                                want_err);
                EB_CHECK_INT(rc, -EINVAL);
                EB_CHECK(strstr(err, want_err) != NULL);
                /* Secrets are never quoted. */
                EB_CHECK(strstr(err, "TOPSECRET") == NULL);
        }
        eb_config_free(cfg);
}

static void test_check_config(void)
{
        check_cfg("{\"secret\":\"" CLOSE_KEY "\"}", "close", NULL);
        check_cfg("{}", "close",
                  "sources[0].webhook.secret: required by scheme \"close\"");
        check_cfg("{\"secret\":\"TOPSECRET\"}", "close",
                  "sources[0].webhook.secret: expected the hex signature key");
        check_cfg("{\"secret\":\"whsec_kota-1\"}", "kota", NULL);
        check_cfg("{\"secret\":\"" STD_SECRET "\",\"scheme\":\"standard\"}",
                  "kota", NULL);
        check_cfg("{\"secret\":\"whsec_TOPSECRET!\",\"scheme\":\"standard\"}",
                  "kota", "sources[0].webhook.secret: expected \"whsec_");
        check_cfg("{\"secret\":\"x\",\"scheme\":\"stripe\"}", "kota",
                  "sources[0].webhook.scheme: unknown scheme \"stripe\"");
        check_cfg("{\"token\":\"kommo-hook\"}", "kommo", NULL);
        check_cfg("{\"secret\":\"TOPSECRET\"}", "kommo",
                  "sources[0].webhook.token: required by scheme \"token\"");
        check_cfg("{\"token\":\"TOPSECRET\",\"scheme\":\"token\"}", "close",
                  NULL);
        /* A disabled source's block is inert: not checked. */
        check_cfg("{},\"enabled\":false", "kota", NULL);
        check_cfg("{},\"enabled\":true", "kota",
                  "sources[0].webhook.secret: required by scheme "
                  "\"kota-v1\"");
}

int main(void)
{
        EB_RUN(test_close_vectors);
        EB_RUN(test_close_headers_case_insensitive);
        EB_RUN(test_kota_parse);
        EB_RUN(test_kota_verify);
        EB_RUN(test_standard_vectors);
        EB_RUN(test_token);
        EB_RUN(test_keys);
        EB_RUN(test_base64);
        EB_RUN(test_timestamp);
        EB_RUN(test_form_example3);
        EB_RUN(test_form_nesting_and_decoding);
        EB_RUN(test_form_malformed);
        EB_RUN(test_form_limits);
        EB_RUN(test_query_get);
        EB_RUN(test_decode);
        EB_RUN(test_check_config);
        return eb_test_summary();
}
