#include "eb_oauth.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_log.h"
#include "eb_time.h"
#include "eb_util.h"

#define KEY_LEN    32
#define IV_LEN     12
#define TAG_LEN    16
#define ORIGIN_LEN 16

struct pair {
        char *access;
        char *refresh;
        int64_t issued_ms;  /* wall clock */
        int64_t expires_ms; /* wall clock; 0: unknown */
};

struct eb_oauth_s {
        const struct eb_source_cfg *src;
        unsigned char key[KEY_LEN];
        char origin[ORIGIN_LEN * 2 + 1]; /* hex HMAC of the config token */
        struct pair cur;                 /* persisted (or configured) */
        struct pair pend;                /* received, not yet durable */
        int have_pend;
        /* Each pair is encrypted once: every checkpoint then carries the
         * same record, so an unchanged checkpoint stays equal (the
         * pipeline does not rewrite equal idle checkpoints). */
        json_t *cur_blob, *pend_blob;
};

int eb_oauth_configured(const struct eb_source_cfg *src)
{
        return src->client_id || src->client_secret || src->redirect_uri ||
               src->refresh_token || src->token_key;
}

static int is_http_url(const char *s)
{
        return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8);
}

int eb_oauth_check_config(const struct eb_source_cfg *src, const char *path,
                          char *errstr, size_t errstr_size)
{
        static const char *const names[] = {"client_id", "client_secret",
                                            "redirect_uri", "refresh_token",
                                            "token_key"};
        const char *vals[5];
        unsigned char key[KEY_LEN];
        size_t i;

        if (!eb_oauth_configured(src))
                return 0;
        if (strcmp(src->provider, "kommo")) {
                snprintf(errstr, errstr_size,
                         "%s.credentials: OAuth credentials (client_id, "
                         "client_secret, redirect_uri, refresh_token, "
                         "token_key) are for provider kommo only, not %s",
                         path, src->provider);
                return -EINVAL;
        }
        if (src->token) {
                snprintf(errstr, errstr_size,
                         "%s.credentials: give either \"token\" (a "
                         "long-lived token) or the OAuth keys (client_id, "
                         "client_secret, redirect_uri, refresh_token, "
                         "token_key), not both",
                         path);
                return -EINVAL;
        }
        vals[0] = src->client_id;
        vals[1] = src->client_secret;
        vals[2] = src->redirect_uri;
        vals[3] = src->refresh_token;
        vals[4] = src->token_key;
        for (i = 0; i < 5; i++) {
                if (!vals[i]) {
                        snprintf(errstr, errstr_size,
                                 "%s.credentials.%s: required with OAuth "
                                 "(client_id, client_secret, redirect_uri, "
                                 "refresh_token and token_key go together)",
                                 path, names[i]);
                        return -EINVAL;
                }
        }
        if (!is_http_url(src->redirect_uri)) {
                snprintf(errstr, errstr_size,
                         "%s.credentials.redirect_uri: expected the "
                         "integration's http:// or https:// redirect URI, "
                         "got \"%.100s\"",
                         path, src->redirect_uri);
                return -EINVAL;
        }
        if (strlen(src->token_key) != KEY_LEN * 2 ||
            eb_hex_decode(src->token_key, key, sizeof(key)) != KEY_LEN) {
                /* Never echo the value: it is a secret. */
                snprintf(errstr, errstr_size,
                         "%s.credentials.token_key: expected 64 hex digits "
                         "(a 256-bit key, e.g. from `openssl rand -hex 32`), "
                         "got %zu characters",
                         path, strlen(src->token_key));
                return -EINVAL;
        }
        memset(key, 0, sizeof(key));
        return 0;
}

/* ---- pairs ----------------------------------------------------------- */

static void scrub_free(char *s)
{
        if (!s)
                return;
        eb_log_remove_secret(s);
        memset(s, 0, strlen(s));
        free(s);
}

static void pair_fini(struct pair *p)
{
        scrub_free(p->access);
        scrub_free(p->refresh);
        memset(p, 0, sizeof(*p));
}

/* Register a received token with the redactor; pair_fini() forgets it,
 * so the list holds at most the pairs alive (two per source). */
static char *secret_dup(const char *s)
{
        char *d = eb_xstrdup(s);

        eb_log_add_secret(d);
        return d;
}

/* ---- encryption ------------------------------------------------------ */

static void origin_of(const unsigned char key[KEY_LEN], const char *refresh,
                      char out[ORIGIN_LEN * 2 + 1])
{
        unsigned char mac[32];
        char *msg = eb_xasprintf("evbridge-oauth-origin:%s", refresh);

        if (eb_hmac_sha256(key, KEY_LEN, msg, strlen(msg), mac))
                memset(mac, 0, sizeof(mac));
        memset(msg, 0, strlen(msg));
        free(msg);
        eb_hex_encode(mac, ORIGIN_LEN, out);
}

static char *aad_of(const eb_oauth_t *o, const char *origin)
{
        return eb_xasprintf("evbridge-oauth-v1:%s:%s", o->src->name, origin);
}

/* @returns new hex ciphertext parts in @p out, or -EIO. */
static int seal(const eb_oauth_t *o, const char *plain, json_t *out)
{
        unsigned char iv[IV_LEN], tag[TAG_LEN], *ct;
        size_t n = strlen(plain);
        char *aad = aad_of(o, o->origin), *hex;
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int len = 0, fin = 0, ok;

        ct = eb_xmalloc(n + 16);
        ok = c && RAND_bytes(iv, IV_LEN) == 1 &&
             EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) ==
                     1 &&
             EVP_EncryptInit_ex(c, NULL, NULL, o->key, iv) == 1 &&
             EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)aad,
                               (int)strlen(aad)) == 1 &&
             EVP_EncryptUpdate(c, ct, &len, (const unsigned char *)plain,
                               (int)n) == 1 &&
             EVP_EncryptFinal_ex(c, ct + len, &fin) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
        EVP_CIPHER_CTX_free(c);
        free(aad);
        if (!ok) {
                free(ct);
                return -EIO;
        }
        hex = eb_xmalloc((size_t)(len + fin) * 2 + 1);
        eb_hex_encode(ct, (size_t)(len + fin), hex);
        json_object_set_new(out, "ct", json_string(hex));
        free(hex);
        free(ct);
        hex = eb_xmalloc(TAG_LEN * 2 + 1);
        eb_hex_encode(iv, IV_LEN, hex);
        json_object_set_new(out, "iv", json_string(hex));
        eb_hex_encode(tag, TAG_LEN, hex);
        json_object_set_new(out, "tag", json_string(hex));
        free(hex);
        return 0;
}

/* @returns new plaintext, or NULL (wrong key, altered, another source). */
static char *open_blob(const eb_oauth_t *o, const json_t *blob,
                       const char *origin)
{
        const char *cth = json_string_value(json_object_get(blob, "ct"));
        const char *ivh = json_string_value(json_object_get(blob, "iv"));
        const char *tagh = json_string_value(json_object_get(blob, "tag"));
        unsigned char iv[IV_LEN], tag[TAG_LEN], *ct, *pt;
        EVP_CIPHER_CTX *c;
        char *aad;
        int n, len = 0, fin = 0, ok;
        size_t cl;

        if (!cth || !ivh || !tagh || strlen(cth) > 65536 ||
            eb_hex_decode(ivh, iv, sizeof(iv)) != IV_LEN ||
            eb_hex_decode(tagh, tag, sizeof(tag)) != TAG_LEN)
                return NULL;
        cl = strlen(cth) / 2;
        ct = eb_xmalloc(cl + 1);
        n = eb_hex_decode(cth, ct, cl + 1);
        if (n < 0) {
                free(ct);
                return NULL;
        }
        pt = eb_xmalloc((size_t)n + 17);
        aad = aad_of(o, origin);
        c = EVP_CIPHER_CTX_new();
        ok = c &&
             EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) ==
                     1 &&
             EVP_DecryptInit_ex(c, NULL, NULL, o->key, iv) == 1 &&
             EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)aad,
                               (int)strlen(aad)) == 1 &&
             EVP_DecryptUpdate(c, pt, &len, ct, n) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
             EVP_DecryptFinal_ex(c, pt + len, &fin) == 1;
        EVP_CIPHER_CTX_free(c);
        free(aad);
        free(ct);
        if (!ok) {
                memset(pt, 0, (size_t)n + 17);
                free(pt);
                return NULL;
        }
        pt[len + fin] = '\0';
        return (char *)pt;
}

/* Restore the pair of @p blob into o->cur. @returns 0, or -EINVAL with
 * why in @p note. */
static int restore(eb_oauth_t *o, const json_t *blob, char *note,
                   size_t note_size)
{
        const char *origin = json_string_value(json_object_get(blob, "origin"));
        char *plain;
        json_t *pj;
        const char *acc, *ref;

        if (json_integer_value(json_object_get(blob, "v")) != 1 || !origin) {
                snprintf(note, note_size,
                         "the persisted token pair has an unknown format; "
                         "using the configured refresh_token");
                return -EINVAL;
        }
        if (strcmp(origin, o->origin)) {
                snprintf(note, note_size,
                         "credentials.refresh_token is not the one the "
                         "persisted token pair descends from (re-authorized, "
                         "or token_key changed): using the configured "
                         "refresh_token");
                return -EINVAL;
        }
        plain = open_blob(o, blob, origin);
        if (!plain) {
                snprintf(note, note_size,
                         "the persisted token pair cannot be decrypted "
                         "(credentials.token_key changed?); using the "
                         "configured refresh_token, which may be spent");
                return -EINVAL;
        }
        pj = json_loads(plain, 0, NULL);
        memset(plain, 0, strlen(plain));
        free(plain);
        acc = json_string_value(json_object_get(pj, "access"));
        ref = json_string_value(json_object_get(pj, "refresh"));
        if (!acc || !ref || !*ref) {
                json_decref(pj);
                snprintf(note, note_size,
                         "the persisted token pair is incomplete; using the "
                         "configured refresh_token");
                return -EINVAL;
        }
        o->cur.access = *acc ? secret_dup(acc) : NULL;
        o->cur.refresh = secret_dup(ref);
        o->cur.issued_ms = json_integer_value(json_object_get(pj, "issued"));
        o->cur.expires_ms = json_integer_value(json_object_get(pj, "expires"));
        json_decref(pj);
        snprintf(note, note_size,
                 "restored the newest persisted token pair (issued %llds "
                 "ago)",
                 (long long)((eb_now_ms() - o->cur.issued_ms) / 1000));
        return 0;
}

/* ---- life ------------------------------------------------------------ */

eb_oauth_t *eb_oauth_new(const struct eb_source_cfg *src, const json_t *blob,
                         char *note, size_t note_size)
{
        eb_oauth_t *o;

        if (note_size)
                note[0] = '\0';
        if (!src->refresh_token || !src->token_key || !src->client_id)
                return NULL;
        o = eb_xcalloc(1, sizeof(*o));
        o->src = src;
        if (eb_hex_decode(src->token_key, o->key, sizeof(o->key)) != KEY_LEN)
                memset(o->key, 0, sizeof(o->key)); /* checked at load */
        origin_of(o->key, src->refresh_token, o->origin);
        if (blob && !restore(o, blob, note, note_size)) {
                /* the record as stored: an unchanged checkpoint stays
                 * equal to the restored one */
                o->cur_blob = json_incref((json_t *)blob);
        } else {
                if (!blob)
                        snprintf(note, note_size,
                                 "no persisted token pair: using the "
                                 "configured refresh_token");
                pair_fini(&o->cur);
                o->cur.refresh = eb_xstrdup(src->refresh_token);
        }
        return o;
}

void eb_oauth_free(eb_oauth_t *o)
{
        if (!o)
                return;
        /* The configured token is the config's secret: keep it
         * registered; only forget the ones received. */
        if (o->cur.refresh && !strcmp(o->cur.refresh, o->src->refresh_token)) {
                memset(o->cur.refresh, 0, strlen(o->cur.refresh));
                free(o->cur.refresh);
                o->cur.refresh = NULL;
        }
        pair_fini(&o->cur);
        pair_fini(&o->pend);
        json_decref(o->cur_blob);
        json_decref(o->pend_blob);
        memset(o->key, 0, sizeof(o->key));
        free(o);
}

const char *eb_oauth_access(const eb_oauth_t *o, int64_t now_ms)
{
        int64_t life;

        if (!o->cur.access)
                return NULL;
        if (!o->cur.expires_ms)
                return o->cur.access;
        life = o->cur.expires_ms - o->cur.issued_ms;
        if (life < 0)
                life = 0;
        if (now_ms >=
            o->cur.issued_ms + (int64_t)((double)life * EB_OAUTH_REFRESH_AT))
                return NULL;
        return o->cur.access;
}

void eb_oauth_invalidate(eb_oauth_t *o)
{
        scrub_free(o->cur.access);
        o->cur.access = NULL;
}

int eb_oauth_pending(const eb_oauth_t *o)
{
        return o->have_pend;
}

int eb_oauth_request(const eb_oauth_t *o, const char *base_url, char **url,
                     char **body)
{
        size_t n = strlen(base_url);
        json_t *b;

        while (n && base_url[n - 1] == '/')
                n--;
        b = json_pack("{s:s,s:s,s:s,s:s,s:s}", "client_id", o->src->client_id,
                      "client_secret", o->src->client_secret, "grant_type",
                      "refresh_token", "refresh_token", o->cur.refresh,
                      "redirect_uri", o->src->redirect_uri);
        if (!b)
                return -ENOMEM;
        *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        if (!*body)
                return -ENOMEM;
        *url = eb_xasprintf("%.*s/oauth2/access_token", (int)n, base_url);
        return 0;
}

/* The upstream's reason, without anything that could be a token. */
static void reason_of(const char *body, size_t len, char *out, size_t n)
{
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "title"));
        const char *h = json_string_value(json_object_get(j, "hint"));
        const char *d = json_string_value(json_object_get(j, "detail"));

        if (!t)
                t = json_string_value(json_object_get(j, "error"));
        if (!d)
                d = json_string_value(json_object_get(j, "error_description"));
        snprintf(out, n, "%.80s%s%.120s%s%.80s%s", t ? t : "no reason given",
                 d ? ": " : "", d ? d : "", h ? " (" : "", h ? h : "",
                 h ? ")" : "");
        json_decref(j);
}

eb_oauth_result_t eb_oauth_response(eb_oauth_t *o, long status,
                                    const char *body, size_t body_len,
                                    int64_t now_ms, char *detail,
                                    size_t detail_size)
{
        char why[320];
        json_t *j;
        const char *acc, *ref;
        json_int_t exp;

        if (status == 400 || status == 401) {
                reason_of(body, body_len, why, sizeof(why));
                snprintf(detail, detail_size, "HTTP %ld: %s", status, why);
                return EB_OAUTH_REFUSED;
        }
        if (status != 200) {
                snprintf(detail, detail_size, "HTTP %ld", status);
                return EB_OAUTH_RETRY;
        }
        j = json_loadb(body, body_len, 0, NULL);
        acc = json_string_value(json_object_get(j, "access_token"));
        ref = json_string_value(json_object_get(j, "refresh_token"));
        exp = json_integer_value(json_object_get(j, "expires_in"));
        if (!acc || !*acc || !ref || !*ref || exp <= 0 ||
            exp > 400LL * 24 * 3600) {
                /* Never echo the body: it may hold the tokens. */
                snprintf(detail, detail_size,
                         "HTTP 200 without access_token, refresh_token and "
                         "a positive expires_in");
                json_decref(j);
                return EB_OAUTH_RETRY;
        }
        eb_oauth_drop_pending(o);
        o->pend.access = secret_dup(acc);
        o->pend.refresh = secret_dup(ref);
        o->pend.issued_ms = now_ms;
        o->pend.expires_ms = now_ms + (int64_t)exp * 1000;
        o->have_pend = 1;
        json_decref(j);
        snprintf(detail, detail_size, "new token pair, expires in %llds",
                 (long long)exp);
        return EB_OAUTH_OK;
}

static json_t *seal_pair(const eb_oauth_t *o, const struct pair *p)
{
        json_t *pj, *out;
        char *plain;

        pj = json_pack("{s:s,s:s,s:I,s:I}", "access",
                       p->access ? p->access : "", "refresh", p->refresh,
                       "issued", (json_int_t)p->issued_ms, "expires",
                       (json_int_t)p->expires_ms);
        plain = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
        json_decref(pj);
        if (!plain)
                return NULL;
        out = json_pack("{s:i,s:s,s:s,s:I}", "v", 1, "alg", "A256GCM", "origin",
                        o->origin, "ts", (json_int_t)eb_now_ms());
        if (!out || seal(o, plain, out)) {
                json_decref(out);
                out = NULL;
        }
        memset(plain, 0, strlen(plain));
        free(plain);
        return out;
}

json_t *eb_oauth_blob(eb_oauth_t *o, int pending)
{
        int pend = pending && o->have_pend;
        const struct pair *p = pend ? &o->pend : &o->cur;
        json_t **cache = pend ? &o->pend_blob : &o->cur_blob;

        if (!p->refresh || !p->issued_ms)
                return NULL; /* only the configured token: nothing new */
        if (!*cache)
                *cache = seal_pair(o, p);
        return *cache ? json_incref(*cache) : NULL;
}

void eb_oauth_persisted(eb_oauth_t *o)
{
        if (!o->have_pend)
                return;
        if (o->cur.refresh && !strcmp(o->cur.refresh, o->src->refresh_token)) {
                memset(o->cur.refresh, 0, strlen(o->cur.refresh));
                free(o->cur.refresh);
                o->cur.refresh = NULL;
        }
        pair_fini(&o->cur);
        o->cur = o->pend;
        memset(&o->pend, 0, sizeof(o->pend));
        o->have_pend = 0;
        json_decref(o->cur_blob);
        o->cur_blob = o->pend_blob;
        o->pend_blob = NULL;
}

int eb_oauth_adopt(eb_oauth_t *to, eb_oauth_t *from)
{
        if (!from->have_pend || strcmp(to->origin, from->origin) ||
            memcmp(to->key, from->key, sizeof(to->key)))
                return 0;
        eb_oauth_drop_pending(to);
        to->pend = from->pend;
        to->have_pend = 1;
        to->pend_blob = from->pend_blob;
        from->pend_blob = NULL;
        memset(&from->pend, 0, sizeof(from->pend));
        from->have_pend = 0;
        return 1;
}

void eb_oauth_drop_pending(eb_oauth_t *o)
{
        pair_fini(&o->pend);
        o->have_pend = 0;
        json_decref(o->pend_blob);
        o->pend_blob = NULL;
}

json_t *eb_oauth_wrap(json_t *cp, json_t *blob)
{
        json_t *w;

        if (!blob || (cp && !json_is_object(cp)))
                return cp ? json_incref(cp) : NULL;
        w = cp ? json_copy(cp) : json_object();
        json_object_set(w, EB_OAUTH_CP_KEY, blob);
        return w;
}

json_t *eb_oauth_split(json_t *cp, json_t **blob)
{
        json_t *b, *rest;

        *blob = NULL;
        if (!json_is_object(cp) || !(b = json_object_get(cp, EB_OAUTH_CP_KEY)))
                return cp ? json_incref(cp) : NULL;
        *blob = json_incref(b);
        rest = json_copy(cp);
        json_object_del(rest, EB_OAUTH_CP_KEY);
        if (!json_object_size(rest)) {
                json_decref(rest);
                return NULL;
        }
        return rest;
}

int64_t eb_oauth_test_hold_ms(void)
{
        static int64_t hold = -1;

        if (hold < 0) {
                const char *e = getenv("EB_TEST_OAUTH_HOLD_MS");
                int64_t v = 0;

                if (!e || eb_parse_i64(e, &v) || v < 0)
                        v = 0;
                hold = v;
        }
        return hold;
}
