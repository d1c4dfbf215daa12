#include "eb_webhook_sig.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_provider.h"
#include "eb_util.h"

#define WH_TS_MAX_DIGITS 12  /* Unix seconds: far beyond year 9999 */
#define WH_MAX_MSG_ID    256 /* Standard Webhooks webhook-id */

const char *eb_wh_auth_name(eb_wh_auth_t a)
{
        switch (a) {
        case EB_WH_AUTH_OK:
                return "ok";
        case EB_WH_AUTH_SIG_MISSING:
                return "signature_missing";
        case EB_WH_AUTH_SIG_MALFORMED:
                return "signature_malformed";
        case EB_WH_AUTH_SIG_MISMATCH:
                return "signature_mismatch";
        case EB_WH_AUTH_TS_INVALID:
                return "timestamp_invalid";
        case EB_WH_AUTH_TS_EXPIRED:
                return "timestamp_expired";
        case EB_WH_AUTH_TS_FUTURE:
                return "timestamp_future";
        case EB_WH_AUTH_TOKEN_MISSING:
                return "token_missing";
        case EB_WH_AUTH_TOKEN_MISMATCH:
                return "token_mismatch";
        case EB_WH_AUTH_ERROR:
                break;
        }
        return "auth_error";
}

/* ---- primitives ------------------------------------------------------ */

int eb_wh_hmac_parts(const struct eb_wh_key *key, const void *const *parts,
                     const size_t *lens, size_t n, unsigned char out[32])
{
        static char digest[] = "SHA256";
        static const unsigned char empty = 0;
        EVP_MAC *mac = NULL;
        EVP_MAC_CTX *ctx = NULL;
        OSSL_PARAM params[2];
        size_t outlen = 0, i;
        int rc = -EIO;

        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!mac)
                goto out;
        ctx = EVP_MAC_CTX_new(mac);
        if (!ctx)
                goto out;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                     digest, 0);
        params[1] = OSSL_PARAM_construct_end();
        if (!EVP_MAC_init(ctx, key->len ? key->bytes : &empty, key->len,
                          params))
                goto out;
        for (i = 0; i < n; i++)
                if (lens[i] && !EVP_MAC_update(ctx, parts[i], lens[i]))
                        goto out;
        if (!EVP_MAC_final(ctx, out, &outlen, 32) || outlen != 32)
                goto out;
        rc = 0;
out:
        EVP_MAC_CTX_free(ctx);
        EVP_MAC_free(mac);
        return rc;
}

static int b64val(int c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int eb_wh_base64_decode(const char *in, size_t n, unsigned char *out,
                        size_t outsz)
{
        size_t i, o = 0, pad = 0;
        uint32_t acc = 0;
        int bits = 0;

        while (n > 0 && in[n - 1] == '=' && pad < 2) {
                n--;
                pad++;
        }
        if (pad && (n + pad) % 4)
                return -EINVAL;
        if (n % 4 == 1)
                return -EINVAL;
        for (i = 0; i < n; i++) {
                int v = b64val((unsigned char)in[i]);

                if (v < 0)
                        return -EINVAL;
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (o >= outsz)
                                return -EINVAL;
                        out[o++] = (unsigned char)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* Leftover bits must be zero (canonical encoding). */
        if (acc != 0)
                return -EINVAL;
        return (int)o;
}

static void b64_encode32(const unsigned char in[32], char out[45])
{
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t i, o = 0;

        for (i = 0; i + 2 < 32; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
                             in[i + 2];
                out[o++] = tbl[v >> 18 & 63];
                out[o++] = tbl[v >> 12 & 63];
                out[o++] = tbl[v >> 6 & 63];
                out[o++] = tbl[v & 63];
        }
        /* 32 = 30 + 2: two bytes left, one '=' of padding. */
        {
                uint32_t v = (uint32_t)in[30] << 16 | (uint32_t)in[31] << 8;
                out[o++] = tbl[v >> 18 & 63];
                out[o++] = tbl[v >> 12 & 63];
                out[o++] = tbl[v >> 6 & 63];
                out[o++] = '=';
        }
        out[o] = '\0';
}

/* Timestamp text: 1..12 decimal digits. */
int eb_wh_parse_ts(const char *s, size_t n, int64_t *secs)
{
        int64_t v = 0;
        size_t i;

        if (n == 0 || n > WH_TS_MAX_DIGITS)
                return -EINVAL;
        for (i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *secs = v;
        return 0;
}

eb_wh_auth_t eb_wh_ts_window(int64_t secs, int64_t now_ms, int64_t tol_ms)
{
        int64_t ts_ms = secs * 1000;

        if (now_ms - ts_ms > tol_ms)
                return EB_WH_AUTH_TS_EXPIRED;
        if (ts_ms - now_ms > tol_ms)
                return EB_WH_AUTH_TS_FUTURE;
        return EB_WH_AUTH_OK;
}

eb_wh_auth_t eb_wh_check_timestamp(const char *ts, int64_t now_ms,
                                   int64_t tolerance_ms)
{
        int64_t secs;

        if (!ts || eb_wh_parse_ts(ts, strlen(ts), &secs))
                return EB_WH_AUTH_TS_INVALID;
        return eb_wh_ts_window(secs, now_ms, tolerance_ms);
}

/* A hex string of exactly 64 digits into 32 bytes. */
int eb_wh_hex32(const char *s, size_t n, unsigned char out[32])
{
        char tmp[65];

        if (n != 64)
                return -EINVAL;
        memcpy(tmp, s, 64);
        tmp[64] = '\0';
        return eb_hex_decode(tmp, out, 32) == 32 ? 0 : -EINVAL;
}

/* ---- keys ------------------------------------------------------------ */

int eb_wh_key_raw(const char *secret, struct eb_wh_key *key, char *errstr,
                  size_t errstr_size)
{
        size_t n = strlen(secret);

        if (n == 0) {
                snprintf(errstr, errstr_size, "must not be empty");
                return -EINVAL;
        }
        key->bytes = eb_xmalloc(n);
        memcpy(key->bytes, secret, n);
        key->len = n;
        return 0;
}

int eb_wh_key_hex(const char *secret, struct eb_wh_key *key, char *errstr,
                  size_t errstr_size)
{
        size_t n = strlen(secret);
        int got;

        key->bytes = eb_xmalloc(n / 2 + 1);
        key->len = n / 2 + 1; /* wiped by eb_wh_key_fini() even on error */
        got = eb_hex_decode(secret, key->bytes, n / 2 + 1);
        if (n == 0 || got <= 0) {
                snprintf(errstr, errstr_size,
                         "expected the hex signature key (an even number "
                         "of hex digits)");
                return -EINVAL;
        }
        key->len = (size_t)got;
        return 0;
}

static int key_whsec(const char *secret, struct eb_wh_key *key, char *errstr,
                     size_t errstr_size)
{
        const char *b64 = secret;
        size_t n;
        int got;

        if (!strncmp(b64, "whsec_", 6))
                b64 += 6;
        n = strlen(b64);
        key->bytes = eb_xmalloc(n + 1);
        key->len = n + 1; /* wiped by eb_wh_key_fini() even on error */
        got = eb_wh_base64_decode(b64, n, key->bytes, n + 1);
        if (got <= 0) {
                snprintf(errstr, errstr_size,
                         "expected \"whsec_<base64>\" (a Standard Webhooks "
                         "secret)");
                return -EINVAL;
        }
        key->len = (size_t)got;
        return 0;
}

/* ---- schemes --------------------------------------------------------- */

const char *eb_wh_header(const struct eb_wh_input *in, const char *name)
{
        return in->header ? in->header(in->hctx, name) : NULL;
}

static eb_wh_auth_t verify_standard(const struct eb_wh_key *key,
                                    const struct eb_wh_input *in,
                                    unsigned *ct_compares)
{
        const char *id = eb_wh_header(in, "webhook-id");
        const char *ts = eb_wh_header(in, "webhook-timestamp");
        const char *sig = eb_wh_header(in, "webhook-signature");
        unsigned char want[32];
        char want64[45];
        const void *parts[5];
        size_t lens[5], idlen, i;
        const char *p;
        int64_t secs;
        int nv1 = 0, match = 0;

        if (!id || !ts || !sig)
                return EB_WH_AUTH_SIG_MISSING;
        idlen = strlen(id);
        if (idlen == 0 || idlen > WH_MAX_MSG_ID)
                return EB_WH_AUTH_SIG_MALFORMED;
        for (i = 0; i < idlen; i++)
                if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
                        return EB_WH_AUTH_SIG_MALFORMED;
        if (eb_wh_parse_ts(ts, strlen(ts), &secs))
                return EB_WH_AUTH_TS_INVALID;
        parts[0] = id;
        lens[0] = idlen;
        parts[1] = ".";
        lens[1] = 1;
        parts[2] = ts;
        lens[2] = strlen(ts);
        parts[3] = ".";
        lens[3] = 1;
        parts[4] = in->body;
        lens[4] = in->body_len;
        if (eb_wh_hmac_parts(key, parts, lens, 5, want))
                return EB_WH_AUTH_ERROR;
        b64_encode32(want, want64);
        OPENSSL_cleanse(want, sizeof(want));
        /* "v1,<b64> v1,<b64> v1a,<other>" */
        for (p = sig; *p;) {
                const char *e;

                while (*p == ' ')
                        p++;
                if (!*p)
                        break;
                e = strchr(p, ' ');
                if (!e)
                        e = p + strlen(p);
                if (e - p > 3 && !strncmp(p, "v1,", 3)) {
                        if (++nv1 > EB_WH_MAX_SIGS) {
                                OPENSSL_cleanse(want64, sizeof(want64));
                                return EB_WH_AUTH_SIG_MALFORMED;
                        }
                        if (ct_compares)
                                (*ct_compares)++;
                        match |= eb_ct_equal(p + 3, (size_t)(e - p - 3), want64,
                                             44);
                }
                p = e;
        }
        OPENSSL_cleanse(want64, sizeof(want64));
        if (nv1 == 0)
                return EB_WH_AUTH_SIG_MALFORMED;
        if (!match)
                return EB_WH_AUTH_SIG_MISMATCH;
        return eb_wh_ts_window(secs, in->now_ms, in->tolerance_ms);
}

static eb_wh_auth_t verify_token(const struct eb_wh_key *key,
                                 const struct eb_wh_input *in,
                                 unsigned *ct_compares)
{
        if (!in->token || !*in->token)
                return EB_WH_AUTH_TOKEN_MISSING;
        if (ct_compares)
                (*ct_compares)++;
        /* eb_ct_equal's time depends on its second length only: the key. */
        if (!eb_ct_equal(in->token, strlen(in->token), key->bytes, key->len))
                return EB_WH_AUTH_TOKEN_MISMATCH;
        return EB_WH_AUTH_OK;
}

const struct eb_wh_scheme eb_wh_scheme_standard = {"standard", 0, key_whsec,
                                                   verify_standard};
const struct eb_wh_scheme eb_wh_scheme_token = {"token", 1, eb_wh_key_raw,
                                                verify_token};

/* The generic schemes; providers bring their own (their webhook.scheme). */
static const struct eb_wh_scheme *const generic[] = {
        &eb_wh_scheme_standard,
        &eb_wh_scheme_token,
};

#define NGENERIC (sizeof(generic) / sizeof(generic[0]))

const struct eb_wh_scheme *eb_wh_scheme_lookup(const char *name)
{
        const struct eb_provider *const *p;
        size_t i;

        for (i = 0; name && i < NGENERIC; i++)
                if (!strcmp(generic[i]->name, name))
                        return generic[i];
        for (p = eb_provider_all(); name && *p; p++)
                if ((*p)->webhook && (*p)->webhook->scheme &&
                    !strcmp((*p)->webhook->scheme->name, name))
                        return (*p)->webhook->scheme;
        return NULL;
}

const char *eb_wh_scheme_name(const struct eb_wh_scheme *s)
{
        return s->name;
}

int eb_wh_scheme_uses_token(const struct eb_wh_scheme *s)
{
        return s->uses_token;
}

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *eb_wh_scheme_names(void)
{
        static char buf[256];
        const struct eb_provider *const *p;
        const char *names[NGENERIC + EB_PROVIDER_MAX];
        size_t n = 0, i, off = 0;

        for (i = 0; i < NGENERIC; i++)
                names[n++] = generic[i]->name;
        for (p = eb_provider_all(); *p; p++) {
                const struct eb_wh_scheme *sc =
                        (*p)->webhook ? (*p)->webhook->scheme : NULL;

                if (sc && eb_wh_scheme_lookup(sc->name) == sc) {
                        for (i = 0; i < n && strcmp(names[i], sc->name); i++)
                                ;
                        if (i == n)
                                names[n++] = sc->name;
                }
        }
        qsort(names, n, sizeof(names[0]), cmp_name);
        buf[0] = '\0';
        for (i = 0; i < n && off < sizeof(buf); i++) {
                int w = snprintf(buf + off, sizeof(buf) - off, "%s%s",
                                 i ? ", " : "", names[i]);
                if (w < 0)
                        break;
                off += (size_t)w;
        }
        return buf;
}

int eb_wh_key_init(const struct eb_wh_scheme *s, const char *secret,
                   struct eb_wh_key *key, char *errstr, size_t errstr_size)
{
        memset(key, 0, sizeof(*key));
        return s->key_init(secret, key, errstr, errstr_size);
}

void eb_wh_key_fini(struct eb_wh_key *key)
{
        if (key->bytes) {
                OPENSSL_cleanse(key->bytes, key->len);
                free(key->bytes);
        }
        key->bytes = NULL;
        key->len = 0;
}

eb_wh_auth_t eb_wh_verify(const struct eb_wh_scheme *s,
                          const struct eb_wh_key *key,
                          const struct eb_wh_input *in, unsigned *ct_compares)
{
        return s->verify(key, in, ct_compares);
}
