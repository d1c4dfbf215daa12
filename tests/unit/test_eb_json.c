/*
 * eb_json: the compact writer must produce json_dumps(JSON_COMPACT)'s
 * bytes, and the envelope rendered with it the bytes of the jansson tree
 * it replaced. Differential: jansson is the reference.
 */
#include "eb_envelope.h"
#include "eb_event.h"
#include "eb_json.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>

static int same_as_jansson(const json_t *v)
{
        struct eb_buf b;
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int ok;

        eb_buf_init(&b, 0);
        ok = want && eb_json_put(&b, v) == 0 && b.len == strlen(want) &&
             memcmp(b.data, want, b.len) == 0;
        if (!ok)
                fprintf(stderr, "  want %s\n  got  %s\n", want ? want : "-",
                        b.data ? b.data : "-");
        free(want);
        eb_buf_fini(&b);
        return ok;
}

static void test_table(void)
{
        static const char *const texts[] = {
                "{}",
                "[]",
                "\"\"",
                "{\"a\":1,\"b\":[1.5,-2e-7,1e300,0.1,true,false,null]}",
                "[0.0,-0.0,1.0,100.0,1e20,1e-5,123.456,5e-324,"
                "1.7976931348623157e308,0.30000000000000004]",
                "[9223372036854775807,-9223372036854775808,0,-1,10]",
                "\"\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\\u007f\"",
                "\"\\u00e9\\u20ac\\ud83d\\ude00 caf\\u00e9\"",
                "{\"k\\n\\\"ey\":{\"nested\":{\"deeper\":[[],[{}],\"x\"]}}}",
                "{\"z\":1,\"a\":2,\"m\":3}",
                "\"a\\u0000b\"",
                "{\"\":\"empty key\",\"\\u00e9\":[\"\\t\"]}",
        };
        size_t i;

        for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                json_error_t err;
                json_t *v = json_loads(texts[i],
                                       JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

                if (!v)
                        fprintf(stderr, "  %s: %s\n", texts[i], err.text);
                EB_REQUIRE(v != NULL);
                EB_CHECK(same_as_jansson(v));
                json_decref(v);
        }
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * 2685821657736338717ULL;
}

static json_t *rand_string(void)
{
        static const char *const parts[] = {"a",
                                            "Z",
                                            " ",
                                            "\"",
                                            "\\",
                                            "/",
                                            "\n",
                                            "\t",
                                            "\x01",
                                            "\x1f",
                                            "\x7f",
                                            "\xc3\xa9",
                                            "\xe2\x82\xac",
                                            "\xf0\x9f\x98\x80",
                                            "{",
                                            "[",
                                            ":",
                                            ",",
                                            "0",
                                            "-"};
        char buf[256];
        size_t n = next() % 12, i, len = 0;

        for (i = 0; i < n; i++) {
                const char *p =
                        parts[next() % (sizeof(parts) / sizeof(*parts))];
                memcpy(buf + len, p, strlen(p));
                len += strlen(p);
        }
        if (next() % 8 == 0)
                buf[len++] = '\0'; /* NUL inside (json_stringn) */
        return json_stringn(buf, len);
}

static json_t *rand_value(int depth)
{
        uint64_t k = next() % (depth > 4 ? 6 : 8);
        json_t *v;
        size_t i, n;

        switch (k) {
        case 0:
                return json_null();
        case 1:
                return json_boolean(next() & 1);
        case 2:
                return json_integer((json_int_t)next() >> (next() % 64));
        case 3: {
                double d = (double)(int64_t)next() /
                           (double)(1ULL << (next() % 60));
                if (next() % 4 == 0)
                        d *= 1e-300;
                if (next() % 4 == 0)
                        d *= 1e290;
                v = json_real(d); /* NULL for inf */
                return v ? v : json_real(0.5);
        }
        case 4:
        case 5:
                return rand_string();
        case 6:
                v = json_array();
                n = next() % 5;
                for (i = 0; i < n; i++)
                        json_array_append_new(v, rand_value(depth + 1));
                return v;
        default:
                v = json_object();
                n = next() % 5;
                for (i = 0; i < n; i++) {
                        json_t *key = rand_string();
                        json_object_setn_new(v, json_string_value(key),
                                             json_string_length(key),
                                             rand_value(depth + 1));
                        json_decref(key);
                }
                return v;
        }
}

static void test_random_trees(void)
{
        int i, bad = 0;

        for (i = 0; i < 3000; i++) {
                json_t *v = rand_value(0);

                if (!same_as_jansson(v))
                        bad++;
                json_decref(v);
        }
        EB_CHECK_INT(bad, 0);
}

static void test_depth_limit(void)
{
        json_t *root = json_array(), *cur = root;
        struct eb_buf b;
        int i;

        for (i = 0; i < EB_JSON_MAX_DEPTH + 10; i++) {
                json_t *a = json_array();
                json_array_append_new(cur, a);
                cur = a;
        }
        eb_buf_init(&b, 0);
        EB_CHECK_INT(eb_json_put(&b, root), -EINVAL);
        eb_buf_fini(&b);
        json_decref(root);
        eb_buf_init(&b, 16);
        root = json_pack("{s:s}", "long", "more than sixteen bytes");
        EB_CHECK_INT(eb_json_put(&b, root), -E2BIG);
        eb_buf_fini(&b);
        json_decref(root);
}

static void test_utf8(void)
{
        static const struct {
                const char *s;
                size_t len;
        } cases[] = {
                {"plain", 5},
                {"\xc3\xa9", 2},
                {"\xe2\x82\xac", 3},
                {"\xf0\x9f\x98\x80", 4},
                {"\xf4\x8f\xbf\xbf", 4}, /* U+10FFFF */
                {"\xf4\x90\x80\x80", 4}, /* beyond */
                {"\xed\xa0\x80", 3},     /* surrogate */
                {"\xc0\xaf", 2},         /* overlong */
                {"\xe0\x80\xaf", 3},     /* overlong */
                {"\xf0\x80\x80\xaf", 4}, /* overlong */
                {"\x80", 1},             /* lone continuation */
                {"\xc3", 1},             /* cut */
                {"\xe2\x82", 2},         /* cut */
                {"a\0b", 3},             /* NUL is a character */
                {"\xff", 1},
        };
        size_t i;
        int j;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *ref = json_stringn(cases[i].s, cases[i].len);

                EB_CHECK_INT(eb_utf8_valid(cases[i].s, cases[i].len), !!ref);
                json_decref(ref);
        }
        /* random short byte strings, jansson as the reference */
        for (j = 0; j < 20000; j++) {
                unsigned char buf[6];
                size_t n = 1 + next() % 5, k;
                json_t *ref;

                for (k = 0; k < n; k++)
                        buf[k] = (unsigned char)(next() % 4
                                                         ? 0x80 + next() % 0x80
                                                         : next() % 256);
                ref = json_stringn((const char *)buf, n);
                if (eb_utf8_valid((const char *)buf, n) != !!ref)
                        EB_CHECK_INT(eb_utf8_valid((const char *)buf, n),
                                     !!ref);
                json_decref(ref);
        }
}

/* Every container under @p v written with @p src as without it.
 * @returns the number of containers that differ. */
static int src_walk(const json_t *v, const struct eb_json_src *src)
{
        struct eb_buf a, b;
        const char *key;
        json_t *c;
        size_t i;
        int diff = 0;

        if (!json_is_object(v) && !json_is_array(v))
                return 0;
        eb_buf_init(&a, 0);
        eb_buf_init(&b, 0);
        if (eb_json_put(&a, v) || eb_json_put_src(&b, v, src) ||
            a.len != b.len || memcmp(a.data, b.data, a.len)) {
                fprintf(stderr, "  with src: %.*s\n  without:  %.*s\n",
                        (int)(b.len > 300 ? 300 : b.len), b.data ? b.data : "",
                        (int)(a.len > 300 ? 300 : a.len), a.data ? a.data : "");
                diff++;
        }
        eb_buf_fini(&a);
        eb_buf_fini(&b);
        if (json_is_object(v)) {
                json_object_foreach((json_t *)v, key, c) diff +=
                        src_walk(c, src);
        } else {
                json_array_foreach(v, i, c) diff += src_walk(c, src);
        }
        return diff;
}

/* eb_json_loadb_src(): the same tree as json_loadb(), and the text it
 * keeps never changes what is written. @returns its span count. */
static size_t src_same(const char *text, size_t len, size_t flags, int *bad)
{
        struct eb_json_src *src = NULL;
        json_t *v = eb_json_loadb_src(text, len, flags, NULL, &src);
        json_t *ref = json_loadb(text, len, flags, NULL);
        size_t n = eb_json_src_spans(src);

        if (!!v != !!ref || (v && !json_equal(v, ref)) || (src && !v) ||
            (src && !n) || src_walk(v, src)) {
                if (!(*bad)++)
                        fprintf(stderr, "  src differs on %.*s\n",
                                (int)(len > 300 ? 300 : len), text);
        }
        json_decref(v);
        json_decref(ref);
        eb_json_src_unref(src);
        return n;
}

/* The fast reader either declines or builds jansson's tree, byte for byte
 * once dumped (insertion order and reals included). @returns 1 if it
 * built it. */
static int read_same(const char *text, size_t len, size_t flags, int *bad)
{
        json_t *fast = eb_json_loadb_fast(text, len, flags);
        json_t *ref = json_loadb(text, len, flags, NULL);
        int built = fast != NULL;

        (void)src_same(text, len, flags, bad);
        if (fast) {
                char *a = ref ? json_dumps(ref, JSON_COMPACT) : NULL;
                char *b = json_dumps(fast, JSON_COMPACT);

                if (!ref || !a || !b || strcmp(a, b) ||
                    !json_equal(ref, fast)) {
                        if (!(*bad)++)
                                fprintf(stderr,
                                        "  input %.*s\n  fast  %s\n  ref   "
                                        "%s\n",
                                        (int)(len > 300 ? 300 : len), text,
                                        b ? b : "-", a ? a : "-");
                }
                free(a);
                free(b);
        }
        json_decref(fast);
        json_decref(ref);
        return built;
}

static void test_read_table(void)
{
        static const char *const good[] = {
                "{}",
                "[]",
                " \n\t{ \"a\" : 1 , \"b\":[ ] }\r\n",
                "[0,-0,1,-1,9223372036854775807,-9223372036854775808]",
                "[0.5,-1.5e3,1E-2,2e+8,1.7976931348623157e308,0.1]",
                "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\"]",
                "[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f\"]",
                "{\"a\":1,\"a\":2}", /* last wins without the flag */
                "[true,false,null,[[[]]],{\"x\":{\"y\":{}}}]",
                "{\"k\\u0041y\":\"v\"}",
        };
        static const char *const bad[] = {
                "",
                " ",
                "1",
                "\"s\"",
                "{",
                "[",
                "[1,]",
                "{\"a\":1,}",
                "[01]",
                "[1.]",
                "[.5]",
                "[-]",
                "[1e]",
                "[1e+]",
                "[+1]",
                "[tru]",
                "[truex]",
                "[nul]",
                "[1x]",
                "{\"a\" 1}",
                "{1:2}",
                "[\"\\u0000\"]",
                "[\"\\ud800\"]",
                "[\"\\udc00\"]",
                "[\"\\ud800\\u0041\"]",
                "[\"\\x\"]",
                "[\"\\u12\"]",
                "[\"\x01\"]",
                "[\"\xc3\"]",
                "[\"\xed\xa0\x80\"]",
                "[\"\xc0\xaf\"]",
                "[99999999999999999999]",
                "[-9223372036854775809]",
                "[1e400]",
                "[1] x",
                "[1]]",
                "{\"a\":1}{}",
                "[\"unterminated]",
        };
        size_t i;
        int bad_cnt = 0;

        for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                json_t *v = json_loadb(good[i], strlen(good[i]), 0, NULL);

                EB_CHECK(read_same(good[i], strlen(good[i]), 0, &bad_cnt));
                EB_CHECK(v != NULL);
                json_decref(v);
        }
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                json_t *v = eb_json_loadb(bad[i], strlen(bad[i]), 0, NULL);

                EB_CHECK(!read_same(bad[i], strlen(bad[i]), 0, &bad_cnt));
                EB_CHECK(v == NULL);
                json_decref(v);
        }
        /* duplicates: refused with the flag, as jansson refuses them */
        EB_CHECK(eb_json_loadb("{\"a\":1,\"a\":2}", 13, JSON_REJECT_DUPLICATES,
                               NULL) == NULL);
        EB_CHECK(read_same("{\"a\":1,\"b\":{\"a\":2}}", 19,
                           JSON_REJECT_DUPLICATES, &bad_cnt));
        /* an underflowing real is left to jansson (which takes it) */
        EB_CHECK(!read_same("[5e-324]", 8, 0, &bad_cnt));
        {
                json_t *v = eb_json_loadb("[5e-324]", 8, 0, NULL);

                EB_CHECK(v != NULL);
                json_decref(v);
        }
        /* jansson's error text when the fast path declines */
        {
                json_error_t err;

                EB_CHECK(eb_json_loadb("{\"a\";1}", 8, 0, &err) == NULL);
                EB_CHECK(strstr(err.text, "':' expected") != NULL);
        }
        EB_CHECK_INT(bad_cnt, 0);
}

/* Random trees written compact, indented and ASCII-escaped, read back;
 * then every byte of some of them flipped. */
/* Which containers eb_json_loadb_src() keeps as text: only those already
 * written as eb_json_put() writes them. */
static void test_read_src(void)
{
        static const struct {
                const char *text;
                size_t flags, spans;
        } cases[] = {
        /* P: 26 bytes, so that every container below is long
         * enough to be kept (EB_JSON_SPAN_MIN) */
#define P "\"pppppppppppppppppppppppp\""
                {"{\"a\":[" P "],\"b\":{\"c\":" P "}}", 0, 3},
                {"{\"a\":[],\"b\":{},\"c\":" P "}", 0, 1}, /* {} [] */
                {"{\"a\": " P "}", 0, 0},                  /* whitespace */
                {" {\"a\":" P "} ", 0, 1},                 /* outside: fine */
                {"{\"a\":[" P "],\"b\":1.50}", 0, 1},      /* 1.5 */
                {"{\"a\":[" P "],\"b\":1.5}", 0, 2},
                {"{\"a\":[" P "],\"b\":1e2}", 0, 1}, /* 100.0 */
                {"[-0," P "]", 0, 0},                /* 0 */
                {"[-1,0,9223372036854775807," P "]", 0, 1},
                {"[\"\\u00e9\"," P "]", 0, 0}, /* UTF-8 */
                {"[\"\\/\"," P "]", 0, 0},     /* '/' */
                {"[\"\\u001f\"," P "]", 0, 0}, /* upper case */
                {"[\"\\u001F\\u0001\"," P "]", 0, 1},
                {"[\"\\n\\t\\\"\\\\\"," P "]", 0, 1},
                {"[\"\\u000a\"," P "]", 0, 0}, /* \n */
                {"[\"caf\xc3\xa9\x7f\"," P "]", 0, 1},
                {"{\"k\\u0041\":[" P "]}", 0, 1}, /* key escaped */
                {"[true,false,null,[[" P "]]]", 0, 3},
                {"[1,2]", 0, 0}, /* short: from the tree */
                /* a repeated key frees a value: no table at all */
                {"{\"a\":[" P "],\"a\":[" P "]}", 0, 0},
                {"{\"a\":[" P "],\"b\":[" P "]}", JSON_REJECT_DUPLICATES, 3},
#undef P
        };
        size_t i;
        int bad = 0;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t n = src_same(cases[i].text, strlen(cases[i].text),
                                    cases[i].flags, &bad);

                if (n != cases[i].spans)
                        fprintf(stderr, "  %s: %zu spans, expected %zu\n",
                                cases[i].text, n, cases[i].spans);
                EB_CHECK_INT((int)n, (int)cases[i].spans);
        }
        EB_CHECK_INT(bad, 0);
        /* a text the fast path declines has no src, and the tree is
         * jansson's */
        {
                struct eb_json_src *src = (struct eb_json_src *)1;
                json_t *v = eb_json_loadb_src("[5e-324]", 8, 0, NULL, &src);

                EB_CHECK(v != NULL && src == NULL);
                json_decref(v);
        }
}

/* The memory all live srcs hold stays within the budget: past it pages
 * parse without one (same tree), and freeing one makes room again. */
static void test_read_src_budget(void)
{
        struct eb_buf b;
        struct eb_json_src *s1 = NULL, *s2 = NULL, *s3 = NULL;
        size_t live0 = eb_json_src_live(), old, i;
        json_t *v1, *v2, *v3;

        eb_buf_init(&b, 0);
        EB_REQUIRE(eb_buf_append_str(&b, "[") == 0);
        for (i = 0; i < 40; i++)
                EB_REQUIRE(
                        eb_buf_append_str(
                                &b, i ? ",{\"k\":\"vvvvvvvvvvvvvvvvvvvv\"}"
                                      : "{\"k\":\"vvvvvvvvvvvvvvvvvvvv\"}") ==
                        0);
        EB_REQUIRE(eb_buf_append_str(&b, "]") == 0);
        old = eb_json_src_set_budget(live0 + 2 * (b.len + b.len / 4 + 1024) -
                                     1);
        v1 = eb_json_loadb_src(b.data, b.len, 0, NULL, &s1);
        EB_CHECK(v1 != NULL && s1 != NULL);
        EB_CHECK(eb_json_src_live() > live0);
        v2 = eb_json_loadb_src(b.data, b.len, 0, NULL, &s2);
        EB_CHECK(v2 != NULL && s2 == NULL); /* over the budget */
        EB_CHECK(json_equal(v1, v2));
        eb_json_src_unref(s1);
        EB_CHECK_INT((int)eb_json_src_live(), (int)live0);
        v3 = eb_json_loadb_src(b.data, b.len, 0, NULL, &s3);
        EB_CHECK(v3 != NULL && s3 != NULL);
        eb_json_src_unref(s3);
        EB_CHECK_INT((int)eb_json_src_live(), (int)live0);
        eb_json_src_set_budget(old);
        json_decref(v1);
        json_decref(v2);
        json_decref(v3);
        eb_buf_fini(&b);
}

static void test_read_random(void)
{
        static const size_t fmts[] = {JSON_COMPACT, JSON_INDENT(2),
                                      JSON_COMPACT | JSON_ENSURE_ASCII,
                                      JSON_INDENT(1) | JSON_ENSURE_ASCII};
        int i, bad = 0, built = 0, tried = 0;
        size_t f, k;

        for (i = 0; i < 1500; i++) {
                json_t *v = json_pack("{s:o}", "v", rand_value(0));

                for (f = 0; f < sizeof(fmts) / sizeof(fmts[0]); f++) {
                        char *text = json_dumps(v, fmts[f]);
                        size_t len = strlen(text);

                        tried++;
                        built += read_same(text, len, 0, &bad);
                        (void)read_same(text, len, JSON_REJECT_DUPLICATES,
                                        &bad);
                        if (i % 10 == 0) {
                                for (k = 0; k < len && k < 200; k++) {
                                        char keep = text[k];

                                        text[k] = (char)(next() & 0xff);
                                        (void)read_same(text, len, 0, &bad);
                                        text[k] = keep;
                                }
                        }
                        free(text);
                }
                json_decref(v);
        }
        EB_CHECK_INT(bad, 0);
        /* it declines only on NUL in strings and such: most are built */
        EB_CHECK(built > tried / 2);
}

/* What eb_envelope_render() wrote before it had its own writer: a jansson
 * tree in attribute order, dumped compact. */
static char *reference_structured(const struct eb_event *e)
{
        json_t *root = json_object(), *data = json_object();
        char ts[40], *type = eb_event_type(e), *s;
        const char *eid = e->entity_id ? e->entity_id : "";

        eb_rfc3339_format(e->time_ms, 3, ts, sizeof(ts));
        json_object_set_new(root, "specversion", json_string("1.0"));
        json_object_set_new(root, "id", json_string(e->id));
        s = eb_xasprintf("/%s/%s", e->provider,
                         e->account && *e->account ? e->account
                                                   : e->source_name);
        json_object_set_new(root, "source", json_string(s));
        free(s);
        json_object_set_new(root, "type", json_string(type));
        json_object_set_new(root, "time", json_string(ts));
        s = eb_xasprintf("%s/%s", e->entity_type, eid);
        json_object_set_new(root, "subject", json_string(s));
        free(s);
        json_object_set_new(root, "datacontenttype",
                            json_string("application/json"));
        json_object_set_new(root, "provider", json_string(e->provider));
        if (e->account && *e->account)
                json_object_set_new(root, "account", json_string(e->account));
        json_object_set_new(root, "entitytype", json_string(e->entity_type));
        json_object_set_new(root, "entityid", json_string(eid));
        json_object_set_new(root, "action", json_string(e->action));
        if (e->actor)
                json_object_set_new(root, "actor", json_string(e->actor));
        if (e->version)
                json_object_set_new(root, "eventversion",
                                    json_string(e->version));
        json_object_set_new(root, "sourcename", json_string(e->source_name));
        json_object_set_new(data, "fields",
                            e->fields ? json_incref(e->fields) : json_object());
        json_object_set(data, "native", e->native);
        json_object_set_new(root, "data", data);
        s = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        free(type);
        return s;
}

static char *rand_attr(void)
{
        json_t *v = rand_string();
        char *s = eb_xstrdup(json_string_value(v)); /* up to a NUL */

        json_decref(v);
        if (!*s) {
                free(s);
                s = eb_xstrdup("x");
        }
        return s;
}

static void test_envelope_bytes_unchanged(void)
{
        int i, bad = 0;

        for (i = 0; i < 2000; i++) {
                struct eb_event *e = eb_event_new();
                struct eb_envelope env;
                char *want;

                e->id = rand_attr();
                e->source_name = rand_attr();
                e->provider = rand_attr();
                e->account = next() % 3 ? rand_attr() : NULL;
                e->entity_type = rand_attr();
                e->entity_id = next() % 5 ? rand_attr() : NULL;
                e->action = rand_attr();
                e->actor = next() % 2 ? rand_attr() : NULL;
                e->version = next() % 2 ? rand_attr() : NULL;
                e->time_ms = (int64_t)(next() % INT64_C(4102444800000));
                e->fields = next() % 4 ? json_pack("{s:o}", "f", rand_value(3))
                                       : NULL;
                e->native = rand_value(0);
                want = reference_structured(e);
                if (eb_envelope_render(e, "{prefix}.{provider}", "t",
                                       EB_ENVELOPE_STRUCTURED, &env) != 0 ||
                    !want || env.value_len != strlen(want) ||
                    memcmp(env.value, want, env.value_len)) {
                        if (!bad++)
                                fprintf(stderr, "  want %s\n  got  %s\n",
                                        want ? want : "-",
                                        env.value ? env.value : "-");
                }
                eb_envelope_fini(&env);
                free(want);
                eb_event_free(e);
        }
        EB_CHECK_INT(bad, 0);
}

int main(void)
{
        EB_RUN(test_table);
        EB_RUN(test_random_trees);
        EB_RUN(test_depth_limit);
        EB_RUN(test_utf8);
        EB_RUN(test_envelope_bytes_unchanged);
        EB_RUN(test_read_table);
        EB_RUN(test_read_src);
        EB_RUN(test_read_src_budget);
        EB_RUN(test_read_random);
        return eb_test_summary();
}
