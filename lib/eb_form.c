#include "eb_form.h"

#include "eb_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORM_DEF_PAIRS   10000
#define FORM_DEF_DEPTH   16
#define FORM_DEF_KEY_LEN 1024
#define FORM_MAX_DEPTH   64 /* hard cap on max_depth (stack array) */

/* Decode @p n bytes of @p in into @p out (capacity >= n: decoding never
 * grows). @returns 0 or -EINVAL (bad escape, decoded NUL). */
static int decode_into(const char *in, size_t n, int plus_is_space, char *out,
                       size_t *outlen)
{
        size_t i, o = 0;

        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)in[i];

                if (c == '%') {
                        int hi, lo;

                        if (i + 2 >= n)
                                return -EINVAL;
                        hi = eb_hex_digit((unsigned char)in[i + 1]);
                        lo = eb_hex_digit((unsigned char)in[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        c = (unsigned char)(hi << 4 | lo);
                        i += 2;
                } else if (c == '+' && plus_is_space) {
                        c = ' ';
                }
                if (c == '\0')
                        return -EINVAL;
                out[o++] = (char)c;
        }
        *outlen = o;
        return 0;
}

int eb_form_decode(const char *in, size_t n, int plus_is_space,
                   struct eb_buf *out)
{
        char *tmp = malloc(n + 1);
        size_t len = 0;
        int rc;

        if (!tmp)
                return -ENOMEM;
        rc = decode_into(in, n, plus_is_space, tmp, &len);
        if (!rc)
                rc = eb_buf_append(out, tmp, len);
        free(tmp);
        return rc;
}

char *eb_form_query_get(const char *query, const char *name)
{
        const char *p = query, *end;
        size_t nlen = strlen(name);
        char *key = NULL, *val = NULL;

        if (!query)
                return NULL;
        end = query + strlen(query);
        while (p < end) {
                const char *amp = memchr(p, '&', (size_t)(end - p));
                const char *eq;
                size_t klen = 0, vlen = 0;

                if (!amp)
                        amp = end;
                eq = memchr(p, '=', (size_t)(amp - p));
                if (!eq)
                        eq = amp;
                key = malloc((size_t)(eq - p) + 1);
                if (!key)
                        return NULL;
                if (decode_into(p, (size_t)(eq - p), 1, key, &klen) == 0 &&
                    klen == nlen && memcmp(key, name, nlen) == 0) {
                        size_t raw = eq < amp ? (size_t)(amp - eq - 1) : 0;

                        val = malloc(raw + 1);
                        if (val && raw &&
                            decode_into(eq + 1, raw, 1, val, &vlen) != 0) {
                                free(val);
                                val = NULL;
                        } else if (val) {
                                val[vlen] = '\0';
                        }
                        free(key);
                        return val;
                }
                free(key);
                key = NULL;
                p = amp + 1;
        }
        return NULL;
}

/* ---- nested keys ----------------------------------------------------- */

struct seg {
        const char *p;
        size_t n;
};

/* Split a decoded key "name[a][b][]" into its levels. @returns the number
 * of levels (>= 1) or -1 with @p why set. */
static int split_key(const char *k, size_t klen, size_t max_depth,
                     struct seg *segs, const char **why)
{
        size_t i = 0, nseg = 0;

        while (i < klen && k[i] != '[' && k[i] != ']')
                i++;
        if (i < klen && k[i] == ']') {
                *why = "unbalanced ']' in key";
                return -1;
        }
        if (i == 0) {
                *why = "empty key name";
                return -1;
        }
        segs[nseg].p = k;
        segs[nseg].n = i;
        nseg++;
        while (i < klen) {
                size_t j;

                if (k[i] != '[') {
                        *why = "text after ']' in key";
                        return -1;
                }
                for (j = i + 1; j < klen && k[j] != ']'; j++) {
                        if (k[j] == '[') {
                                *why = "'[' inside a key group";
                                return -1;
                        }
                }
                if (j >= klen) {
                        *why = "unbalanced '[' in key";
                        return -1;
                }
                if (nseg > max_depth) {
                        *why = "key nested too deeply";
                        return -1;
                }
                segs[nseg].p = k + i + 1;
                segs[nseg].n = j - i - 1;
                nseg++;
                i = j + 1;
        }
        return (int)nseg;
}

/* Insert value @p val at the path @p segs into @p root. Takes @p val.
 * @returns 0 or -1 with @p why. */
static int insert(json_t *root, const struct seg *segs, int nseg, json_t *val,
                  const char **why)
{
        json_t *cur = root;
        char name[FORM_DEF_KEY_LEN + 32];
        int lvl;

        for (lvl = 0; lvl < nseg; lvl++) {
                const struct seg *s = &segs[lvl];
                json_t *child;

                if (s->n == 0) {
                        /* "[]": append at the container's size. */
                        snprintf(name, sizeof(name), "%zu",
                                 json_object_size(cur));
                        if (json_object_get(cur, name)) {
                                *why = "'[]' clashes with an explicit index";
                                goto fail;
                        }
                } else {
                        if (s->n >= sizeof(name)) {
                                *why = "key too long";
                                goto fail;
                        }
                        memcpy(name, s->p, s->n);
                        name[s->n] = '\0';
                }
                child = json_object_get(cur, name);
                if (lvl == nseg - 1) {
                        if (child && json_is_object(child)) {
                                *why = "key used both as a value and as a "
                                       "container";
                                goto fail;
                        }
                        if (json_object_set_new(cur, name, val) != 0) {
                                *why = "key is not valid UTF-8";
                                return -1; /* set_new consumed val */
                        }
                        return 0;
                }
                if (!child) {
                        child = json_object();
                        if (json_object_set_new(cur, name, child) != 0) {
                                *why = "key is not valid UTF-8";
                                goto fail;
                        }
                } else if (!json_is_object(child)) {
                        *why = "key used both as a value and as a container";
                        goto fail;
                }
                cur = child;
        }
fail:
        json_decref(val);
        return -1;
}

static json_t *to_arrays(json_t *obj);

/* Convert the containers inside @p obj (not @p obj itself). */
static void children_to_arrays(json_t *obj)
{
        void *it;

        for (it = json_object_iter(obj); it;
             it = json_object_iter_next(obj, it)) {
                json_t *v = json_object_iter_value(it);

                if (json_is_object(v)) {
                        json_t *conv = to_arrays(v);
                        if (conv != v)
                                json_object_iter_set_new(obj, it, conv);
                        else
                                json_decref(conv);
                }
        }
}

/* Objects whose keys are exactly "0".."n-1" become arrays, bottom up.
 * @returns new reference (an array, or @p obj itself). */
static json_t *to_arrays(json_t *obj)
{
        size_t n, i;
        json_t *arr;
        char idx[32];

        children_to_arrays(obj);
        n = json_object_size(obj);
        if (n == 0)
                return json_incref(obj);
        for (i = 0; i < n; i++) {
                snprintf(idx, sizeof(idx), "%zu", i);
                if (!json_object_get(obj, idx))
                        return json_incref(obj);
        }
        arr = json_array();
        for (i = 0; i < n; i++) {
                snprintf(idx, sizeof(idx), "%zu", i);
                json_array_append(arr, json_object_get(obj, idx));
        }
        return arr;
}

json_t *eb_form_parse(const char *body, size_t len,
                      const struct eb_form_limits *lim, char *errstr,
                      size_t errstr_size)
{
        size_t max_pairs =
                lim && lim->max_pairs ? lim->max_pairs : FORM_DEF_PAIRS;
        size_t max_depth =
                lim && lim->max_depth ? lim->max_depth : FORM_DEF_DEPTH;
        size_t max_key =
                lim && lim->max_key_len ? lim->max_key_len : FORM_DEF_KEY_LEN;
        struct seg segs[FORM_MAX_DEPTH + 1];
        const char *p = body, *end = body + len, *why = NULL;
        char *kbuf = NULL, *vbuf = NULL;
        json_t *root = json_object(), *out = NULL;
        size_t pairs = 0;

        if (max_depth > FORM_MAX_DEPTH)
                max_depth = FORM_MAX_DEPTH;
        if (max_key > FORM_DEF_KEY_LEN)
                max_key = FORM_DEF_KEY_LEN;
        vbuf = malloc(len + 1);
        kbuf = malloc(len + 1);
        if (!vbuf || !kbuf || !root) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
        }
        while (p < end) {
                const char *amp = memchr(p, '&', (size_t)(end - p));
                const char *eq;
                size_t klen = 0, vlen = 0;
                json_t *val;
                int nseg;

                if (!amp)
                        amp = end;
                if (amp == p) {
                        p++;
                        continue;
                }
                pairs++;
                if (pairs > max_pairs) {
                        snprintf(errstr, errstr_size, "more than %zu pairs",
                                 max_pairs);
                        goto out;
                }
                eq = memchr(p, '=', (size_t)(amp - p));
                if (!eq) {
                        why = "missing '='";
                        goto bad;
                }
                if (decode_into(p, (size_t)(eq - p), 1, kbuf, &klen)) {
                        why = "bad %-escape in key";
                        goto bad;
                }
                if (klen > max_key) {
                        why = "key too long";
                        goto bad;
                }
                if (decode_into(eq + 1, (size_t)(amp - eq - 1), 1, vbuf,
                                &vlen)) {
                        why = "bad %-escape in value";
                        goto bad;
                }
                nseg = split_key(kbuf, klen, max_depth, segs, &why);
                if (nseg < 0)
                        goto bad;
                val = json_stringn(vbuf, vlen);
                if (!val) {
                        why = "value is not valid UTF-8";
                        goto bad;
                }
                if (insert(root, segs, nseg, val, &why))
                        goto bad;
                p = amp + 1;
        }
        /* The top level stays an object, as the header promises. */
        children_to_arrays(root);
        out = json_incref(root);
        goto out;
bad:
        snprintf(errstr, errstr_size, "pair %zu: %s", pairs, why);
out:
        json_decref(root);
        free(kbuf);
        free(vbuf);
        return out;
}
