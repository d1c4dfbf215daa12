#include "eb_replay.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_buf.h"
#include "eb_json.h"
#include "eb_time.h"
#include "eb_util.h"

#define EB_REPLAY_MAX_PARTS     100000
#define EB_REPLAY_MAX_PARTITION 999999
#define EB_REPLAY_MAX_PATTERN   1024

static void set_err(char *errstr, size_t sz, const char *fmt, ...)
        EB_PRINTF(3, 4);

static void set_err(char *errstr, size_t sz, const char *fmt, ...)
{
        va_list ap;

        if (!errstr || !sz)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, sz, fmt, ap);
        va_end(ap);
}

/* Strict non-negative decimal: digits only, no sign, no spaces. */
static int parse_uint(const char *s, size_t n, int64_t max, int64_t *out)
{
        int64_t v = 0;
        size_t i;

        if (!n)
                return -EINVAL;
        for (i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -EINVAL;
                if (v > (max - (s[i] - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return 0;
}

/* ---- positions ---------------------------------------------------------- */

static const char *kind_name(eb_replay_pos_kind_t kind)
{
        switch (kind) {
        case EB_REPLAY_POS_BEGINNING:
                return "beginning";
        case EB_REPLAY_POS_END:
                return "end";
        case EB_REPLAY_POS_OFFSET:
                return "an offset";
        case EB_REPLAY_POS_TAIL:
                return "-N";
        case EB_REPLAY_POS_TIME:
                return "a time";
        case EB_REPLAY_POS_GROUP:
                return "group:NAME";
        }
        return "?";
}

static void expected(unsigned allow, char *buf, size_t sz)
{
        static const char *const words[] = {
                "beginning",
                "end",
                "OFFSET",
                "-N",
                "TIME (RFC 3339 or a duration ago such as 2h)",
                "group:NAME"};
        size_t i, n = 0, len = 0;

        buf[0] = '\0';
        for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
                int w;

                if (!(allow & (1u << i)))
                        continue;
                w = snprintf(buf + len, sz - len, "%s%s", n ? ", " : "",
                             words[i]);
                if (w < 0 || (size_t)w >= sz - len)
                        return;
                len += (size_t)w;
                n++;
        }
}

int eb_replay_pos_parse(const char *s, int64_t now_ms, unsigned allow,
                        struct eb_replay_pos *pos, char *errstr,
                        size_t errstr_size)
{
        struct eb_replay_pos p = {EB_REPLAY_POS_BEGINNING, 0, NULL};
        char exp[200];
        int64_t v;

        if (!s)
                s = "";
        if (!strcmp(s, "beginning") || !strcmp(s, "earliest")) {
                p.kind = EB_REPLAY_POS_BEGINNING;
        } else if (!strcmp(s, "end") || !strcmp(s, "latest") ||
                   !strcmp(s, "now")) {
                p.kind = EB_REPLAY_POS_END;
        } else if (s[0] == '-' && isdigit((unsigned char)s[1])) {
                if (parse_uint(s + 1, strlen(s + 1), INT64_MAX, &v) || !v) {
                        set_err(errstr, errstr_size,
                                "bad position \"%s\": -N needs N >= 1", s);
                        return -EINVAL;
                }
                p.kind = EB_REPLAY_POS_TAIL;
                p.value = v;
        } else if (*s && parse_uint(s, strlen(s), INT64_MAX, &v) == 0) {
                p.kind = EB_REPLAY_POS_OFFSET;
                p.value = v;
        } else if (!strncmp(s, "group:", 6)) {
                if (!s[6]) {
                        set_err(errstr, errstr_size,
                                "bad position \"%s\": group name missing", s);
                        return -EINVAL;
                }
                p.kind = EB_REPLAY_POS_GROUP;
                p.group = s + 6;
        } else if (eb_rfc3339_parse(s, &v) == 0) {
                p.kind = EB_REPLAY_POS_TIME;
                p.value = v;
        } else if (eb_duration_parse(s, &v) == 0) {
                p.kind = EB_REPLAY_POS_TIME;
                p.value = now_ms - v;
        } else {
                expected(allow, exp, sizeof(exp));
                set_err(errstr, errstr_size, "bad position \"%s\": expected %s",
                        s, exp);
                return -EINVAL;
        }
        if (!(allow & EB_REPLAY_POS_ALLOW(p.kind))) {
                expected(allow, exp, sizeof(exp));
                set_err(errstr, errstr_size,
                        "position \"%s\" (%s) is not allowed here: "
                        "expected %s",
                        s, kind_name(p.kind), exp);
                return -EINVAL;
        }
        *pos = p;
        return 0;
}

int eb_replay_topic_name_valid(const char *name)
{
        size_t i, n;

        if (!name)
                return 0;
        n = strlen(name);
        if (!n || n > EB_REPLAY_TOPIC_MAX || !strcmp(name, ".") ||
            !strcmp(name, ".."))
                return 0;
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)name[i];

                if (!isalnum(c) && c != '.' && c != '_' && c != '-')
                        return 0;
        }
        return 1;
}

int eb_replay_ppos_parse(const char *s, int64_t now_ms, unsigned allow,
                         struct eb_replay_ppos *pp, char *errstr,
                         size_t errstr_size)
{
        const char *c1, *c2;
        char plain_err[300];
        int64_t part;
        size_t tlen;

        memset(pp, 0, sizeof(*pp));
        pp->partition = -1;
        if (!s)
                s = "";
        if (eb_replay_pos_parse(s, now_ms, allow, &pp->pos, plain_err,
                                sizeof(plain_err)) == 0)
                return 0;
        c1 = strchr(s, ':');
        c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c1 || !c2 || !strncmp(s, "group:", 6)) {
                set_err(errstr, errstr_size, "%s", plain_err);
                return -EINVAL;
        }
        tlen = (size_t)(c1 - s);
        if (tlen > EB_REPLAY_TOPIC_MAX) {
                set_err(errstr, errstr_size, "bad position \"%s\": %s", s,
                        "topic name too long");
                return -EINVAL;
        }
        memcpy(pp->topic, s, tlen);
        pp->topic[tlen] = '\0';
        if (!eb_replay_topic_name_valid(pp->topic)) {
                set_err(errstr, errstr_size,
                        "bad position \"%s\": \"%s\" is not a topic name", s,
                        pp->topic);
                return -EINVAL;
        }
        if (parse_uint(c1 + 1, (size_t)(c2 - c1 - 1), EB_REPLAY_MAX_PARTITION,
                       &part)) {
                set_err(errstr, errstr_size,
                        "bad position \"%s\": expected TOPIC:PARTITION:POS "
                        "with a partition number",
                        s);
                return -EINVAL;
        }
        pp->partition = (int32_t)part;
        if (eb_replay_pos_parse(c2 + 1, now_ms, allow, &pp->pos, errstr,
                                errstr_size))
                return -EINVAL;
        if (pp->pos.kind == EB_REPLAY_POS_GROUP) {
                set_err(errstr, errstr_size,
                        "bad position \"%s\": group:NAME applies to every "
                        "partition, not one",
                        s);
                return -EINVAL;
        }
        return 0;
}

/* ---- topics and partitions ---------------------------------------------- */

static int i32_cmp(const void *a, const void *b)
{
        int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

        return x < y ? -1 : x > y;
}

int eb_replay_partitions_parse(const char *s, int32_t **partsp, size_t *np,
                               char *errstr, size_t errstr_size)
{
        int32_t *v = NULL;
        size_t n = 0, cap = 0, i, out;
        const char *p = s;

        *partsp = NULL;
        *np = 0;
        if (!s || !*s)
                goto bad;
        while (*p) {
                const char *comma = strchr(p, ',');
                const char *end = comma ? comma : p + strlen(p);
                const char *dash = memchr(p, '-', (size_t)(end - p));
                int64_t a, b, k;

                if (dash) {
                        if (parse_uint(p, (size_t)(dash - p),
                                       EB_REPLAY_MAX_PARTITION, &a) ||
                            parse_uint(dash + 1, (size_t)(end - dash - 1),
                                       EB_REPLAY_MAX_PARTITION, &b) ||
                            b < a)
                                goto bad;
                } else {
                        if (parse_uint(p, (size_t)(end - p),
                                       EB_REPLAY_MAX_PARTITION, &a))
                                goto bad;
                        b = a;
                }
                for (k = a; k <= b; k++) {
                        if (n == EB_REPLAY_MAX_PARTS) {
                                set_err(errstr, errstr_size,
                                        "partition list \"%s\" is too long", s);
                                free(v);
                                return -EINVAL;
                        }
                        if (n == cap) {
                                cap = cap ? cap * 2 : 8;
                                v = eb_xrealloc(v, cap * sizeof(*v));
                        }
                        v[n++] = (int32_t)k;
                }
                if (!comma)
                        break;
                p = comma + 1;
                if (!*p)
                        goto bad;
        }
        qsort(v, n, sizeof(*v), i32_cmp);
        for (i = 0, out = 0; i < n; i++)
                if (!out || v[out - 1] != v[i])
                        v[out++] = v[i];
        *partsp = v;
        *np = out;
        return 0;
bad:
        free(v);
        set_err(errstr, errstr_size,
                "bad partition list \"%s\": expected e.g. 0,2 or 0-3",
                s ? s : "");
        return -EINVAL;
}

int eb_replay_topic_spec_parse(const char *s, struct eb_replay_topic_spec *spec,
                               char *errstr, size_t errstr_size)
{
        const char *colon;
        size_t plen;
        int rc;

        memset(spec, 0, sizeof(*spec));
        if (!s || !*s) {
                set_err(errstr, errstr_size, "empty topic");
                return -EINVAL;
        }
        /* ":parts" is recognised only when what follows the last ':' looks
         * like a partition list, so a regex may still contain ':'. */
        colon = strrchr(s, ':');
        if (colon && colon[1] &&
            strspn(colon + 1, "0123456789,-") == strlen(colon + 1)) {
                if (eb_replay_partitions_parse(colon + 1, &spec->parts,
                                               &spec->nparts, errstr,
                                               errstr_size))
                        return -EINVAL;
                plen = (size_t)(colon - s);
        } else {
                plen = strlen(s);
        }
        spec->pattern = eb_xstrndup(s, plen);
        spec->is_regex = spec->pattern[0] == '^';
        if (spec->is_regex) {
                rc = regcomp(&spec->re, spec->pattern,
                             REG_EXTENDED | REG_NOSUB);
                if (rc) {
                        char msg[128];

                        regerror(rc, &spec->re, msg, sizeof(msg));
                        set_err(errstr, errstr_size,
                                "bad topic regex \"%s\": %s", spec->pattern,
                                msg);
                        spec->is_regex = 0;
                        eb_replay_topic_spec_fini(spec);
                        return -EINVAL;
                }
        } else if (!eb_replay_topic_name_valid(spec->pattern)) {
                set_err(errstr, errstr_size,
                        "\"%s\" is not a topic name (use ^REGEX for a "
                        "pattern)",
                        spec->pattern);
                eb_replay_topic_spec_fini(spec);
                return -EINVAL;
        }
        return 0;
}

int eb_replay_topic_spec_match(const struct eb_replay_topic_spec *spec,
                               const char *topic)
{
        if (spec->is_regex)
                return regexec(&spec->re, topic, 0, NULL, 0) == 0;
        return strcmp(spec->pattern, topic) == 0;
}

void eb_replay_topic_spec_fini(struct eb_replay_topic_spec *spec)
{
        if (!spec)
                return;
        if (spec->is_regex)
                regfree(&spec->re);
        free(spec->pattern);
        free(spec->parts);
        memset(spec, 0, sizeof(*spec));
}

int eb_replay_rate_parse(const char *s, double *per_sec)
{
        char num[64];
        const char *slash;
        double v, div = 1.0;
        size_t n;

        if (!s)
                return -EINVAL;
        slash = strchr(s, '/');
        n = slash ? (size_t)(slash - s) : strlen(s);
        if (!n || n >= sizeof(num))
                return -EINVAL;
        memcpy(num, s, n);
        num[n] = '\0';
        if (!isdigit((unsigned char)num[0]) || eb_parse_double(num, &v) ||
            !(v > 0))
                return -EINVAL;
        if (slash) {
                if (!strcmp(slash, "/s"))
                        div = 1.0;
                else if (!strcmp(slash, "/m"))
                        div = 60.0;
                else if (!strcmp(slash, "/h"))
                        div = 3600.0;
                else
                        return -EINVAL;
        }
        *per_sec = v / div;
        return 0;
}

/* ---- records ------------------------------------------------------------ */

void eb_replay_record_fini(struct eb_replay_record *rec)
{
        if (!rec)
                return;
        free(rec->id);
        free(rec->type);
        free(rec->source);
        free(rec->sourcename);
        free(rec->subject);
        free(rec->entityid);
        free(rec->envelope_owned_);
        memset(rec, 0, sizeof(*rec));
}

/* Attributes a filter or the output needs, from either mode. */
static void take_attr(struct eb_replay_record *rec, const char *name,
                      const char *val, size_t len)
{
        char **slot = NULL;

        if (!strcmp(name, "id"))
                slot = &rec->id;
        else if (!strcmp(name, "type"))
                slot = &rec->type;
        else if (!strcmp(name, "source"))
                slot = &rec->source;
        else if (!strcmp(name, "sourcename"))
                slot = &rec->sourcename;
        else if (!strcmp(name, "subject"))
                slot = &rec->subject;
        else if (!strcmp(name, "entityid"))
                slot = &rec->entityid;
        if (slot) {
                free(*slot);
                *slot = eb_xstrndup(val, len);
        } else if (!strcmp(name, "time")) {
                char *t = eb_xstrndup(val, len);

                rec->has_time = eb_rfc3339_parse(t, &rec->time_ms) == 0;
                free(t);
        }
}

/* entityid of events that lack the extension: "<entity>/<id>" subject. */
static void derive_entity(struct eb_replay_record *rec)
{
        const char *slash;

        if (rec->entityid || !rec->subject)
                return;
        slash = strrchr(rec->subject, '/');
        if (slash)
                rec->entityid = eb_xstrdup(slash + 1);
}

static int has_newline(const char *p, size_t n)
{
        return memchr(p, '\n', n) || memchr(p, '\r', n);
}

static int parse_structured(const void *value, size_t len,
                            struct eb_replay_record *rec, char *errstr,
                            size_t errstr_size)
{
        json_error_t jerr;
        json_t *root = NULL, *sv;
        const char *k;
        json_t *v;
        int rc = -EINVAL;

        if (!value || !len) {
                set_err(errstr, errstr_size, "empty value and no ce_ headers");
                return -EINVAL;
        }
        root = json_loadb(value, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                set_err(errstr, errstr_size, "value is not JSON: %s",
                        jerr.text);
                goto out;
        }
        sv = json_object_get(root, "specversion");
        if (!json_is_object(root) || !json_is_string(sv)) {
                set_err(errstr, errstr_size,
                        "value is not a CloudEvent (no specversion)");
                goto out;
        }
        json_object_foreach(root, k, v)
        {
                if (json_is_string(v))
                        take_attr(rec, k, json_string_value(v),
                                  json_string_length(v));
        }
        if (has_newline(value, len)) {
                rec->envelope_owned_ = eb_json_dumps(root);
                if (!rec->envelope_owned_) {
                        rc = -ENOMEM;
                        goto out;
                }
                rec->envelope = rec->envelope_owned_;
                rec->envelope_len = strlen(rec->envelope_owned_);
        } else {
                rec->envelope = value;
                rec->envelope_len = len;
        }
        rc = 0;
out:
        json_decref(root);
        return rc;
}

/* Append "name":"value" (JSON-escaped) to @p b; -EINVAL for bad UTF-8. */
static int append_member(struct eb_buf *b, const char *name, const char *val,
                         size_t len)
{
        json_t *s = json_stringn(val, len);
        char *enc;
        int rc;

        if (!s)
                return -EINVAL;
        enc = eb_json_dumps(s);
        json_decref(s);
        if (!enc)
                return -ENOMEM;
        rc = eb_buf_printf(b, "%s\"%s\":%s", b->len > 1 ? "," : "", name, enc);
        free(enc);
        return rc ? -ENOMEM : 0;
}

static const struct eb_replay_hdr *find_hdr(const struct eb_replay_hdr *hdrs,
                                            size_t n, const char *name)
{
        const struct eb_replay_hdr *found = NULL;
        size_t i;

        for (i = 0; i < n; i++)
                if (!strcmp(hdrs[i].name, name))
                        found = &hdrs[i];
        return found;
}

static int ct_is_json(const struct eb_replay_hdr *ct)
{
        char buf[128];
        size_t n, i;
        char *semi;

        if (!ct || !ct->value)
                return 1; /* evbridge's binary mode always sends JSON */
        n = ct->len < sizeof(buf) - 1 ? ct->len : sizeof(buf) - 1;
        for (i = 0; i < n; i++)
                buf[i] = (char)tolower(((const unsigned char *)ct->value)[i]);
        buf[n] = '\0';
        semi = strchr(buf, ';');
        if (semi)
                *semi = '\0';
        n = strlen(buf);
        while (n && buf[n - 1] == ' ')
                buf[--n] = '\0';
        return !strcmp(buf, "application/json") ||
               (n > 5 && !strcmp(buf + n - 5, "+json")) ||
               !strcmp(buf, "text/json");
}

static int parse_binary(const void *value, size_t len,
                        const struct eb_replay_hdr *hdrs, size_t nhdrs,
                        struct eb_replay_record *rec, char *errstr,
                        size_t errstr_size)
{
        static const char *const core[] = {"specversion", "id",   "source",
                                           "type",        "time", "subject"};
        const struct eb_replay_hdr *ct = find_hdr(hdrs, nhdrs, "content-type");
        struct eb_buf b;
        json_t *data = NULL;
        char *b64 = NULL;
        size_t i, j;
        int rc = -ENOMEM;

        eb_buf_init(&b, 0);
        rec->binary = 1;
        if (eb_buf_append_str(&b, "{"))
                goto out;
        /* Core attributes in CloudEvents order, then datacontenttype, then
         * the extensions in the order the headers carry them. */
        for (j = 0; j < sizeof(core) / sizeof(core[0]); j++) {
                char hname[32];
                const struct eb_replay_hdr *h;

                snprintf(hname, sizeof(hname), "ce_%s", core[j]);
                h = find_hdr(hdrs, nhdrs, hname);
                if (!h || !h->value)
                        continue;
                rc = append_member(&b, core[j], h->value, h->len);
                if (rc)
                        goto bad_utf8;
                take_attr(rec, core[j], h->value, h->len);
        }
        if (ct && ct->value) {
                rc = append_member(&b, "datacontenttype", ct->value, ct->len);
                if (rc)
                        goto bad_utf8;
        }
        for (i = 0; i < nhdrs; i++) {
                const char *name = hdrs[i].name;
                int is_core = 0;

                if (strncmp(name, "ce_", 3) || !name[3] || !hdrs[i].value)
                        continue;
                for (j = 0; j < sizeof(core) / sizeof(core[0]); j++)
                        if (!strcmp(name + 3, core[j]))
                                is_core = 1;
                /* Repeated headers: the last one won above; skip earlier
                 * duplicates so every member appears once. */
                if (is_core || find_hdr(hdrs, nhdrs, name) != &hdrs[i])
                        continue;
                rc = append_member(&b, name + 3, hdrs[i].value, hdrs[i].len);
                if (rc)
                        goto bad_utf8;
                take_attr(rec, name + 3, hdrs[i].value, hdrs[i].len);
        }
        rc = -ENOMEM;
        if (value && len) {
                if (ct_is_json(ct))
                        data = json_loadb(value, len, 0, NULL);
                if (data && !has_newline(value, len)) {
                        if (eb_buf_append_str(&b, ",\"data\":") ||
                            eb_buf_append(&b, value, len))
                                goto out;
                } else if (data) {
                        char *enc = eb_json_dumps(data);

                        if (!enc)
                                goto out;
                        rc = eb_buf_printf(&b, ",\"data\":%s", enc);
                        free(enc);
                        if (rc) {
                                rc = -ENOMEM;
                                goto out;
                        }
                } else {
                        b64 = eb_base64_encode(value, len);
                        if (!b64 ||
                            eb_buf_printf(&b, ",\"data_base64\":\"%s\"", b64))
                                goto out;
                }
        }
        if (eb_buf_append_str(&b, "}"))
                goto out;
        rec->envelope_owned_ = eb_buf_take(&b, &rec->envelope_len);
        rec->envelope = rec->envelope_owned_;
        rc = 0;
        goto out;
bad_utf8:
        if (rc == -EINVAL)
                set_err(errstr, errstr_size,
                        "a ce_ or content-type header is not UTF-8");
out:
        json_decref(data);
        free(b64);
        eb_buf_fini(&b);
        return rc;
}

int eb_replay_record_parse(const void *value, size_t len,
                           const struct eb_replay_hdr *hdrs, size_t nhdrs,
                           struct eb_replay_record *rec, char *errstr,
                           size_t errstr_size)
{
        int rc;

        memset(rec, 0, sizeof(*rec));
        if (find_hdr(hdrs, nhdrs, "ce_specversion"))
                rc = parse_binary(value, len, hdrs, nhdrs, rec, errstr,
                                  errstr_size);
        else
                rc = parse_structured(value, len, rec, errstr, errstr_size);
        if (rc == -ENOMEM)
                set_err(errstr, errstr_size, "out of memory");
        if (!rc)
                derive_entity(rec);
        return rc;
}

/* ---- filters ------------------------------------------------------------ */

struct eb_replay_filter_s {
        char **pats[EB_REPLAY_F_COUNT_];
        size_t npats[EB_REPLAY_F_COUNT_];
        int64_t since_ms;
        int64_t until_ms;
};

eb_replay_filter_t *eb_replay_filter_new(void)
{
        eb_replay_filter_t *f = eb_xcalloc(1, sizeof(*f));

        f->since_ms = INT64_MIN;
        f->until_ms = INT64_MAX;
        return f;
}

void eb_replay_filter_free(eb_replay_filter_t *f)
{
        size_t i, j;

        if (!f)
                return;
        for (i = 0; i < EB_REPLAY_F_COUNT_; i++) {
                for (j = 0; j < f->npats[i]; j++)
                        free(f->pats[i][j]);
                free(f->pats[i]);
        }
        free(f);
}

int eb_replay_filter_add(eb_replay_filter_t *f, eb_replay_field_t field,
                         const char *pattern)
{
        size_t n;

        if ((unsigned)field >= EB_REPLAY_F_COUNT_ || !pattern || !*pattern ||
            strlen(pattern) > EB_REPLAY_MAX_PATTERN)
                return -EINVAL;
        n = f->npats[field];
        f->pats[field] =
                eb_xrealloc(f->pats[field], (n + 1) * sizeof(*f->pats[field]));
        f->pats[field][n] = eb_xstrdup(pattern);
        f->npats[field] = n + 1;
        return 0;
}

void eb_replay_filter_set_time(eb_replay_filter_t *f, int64_t since_ms,
                               int64_t until_ms)
{
        f->since_ms = since_ms;
        f->until_ms = until_ms;
}

int eb_replay_filter_empty(const eb_replay_filter_t *f)
{
        size_t i;

        for (i = 0; i < EB_REPLAY_F_COUNT_; i++)
                if (f->npats[i])
                        return 0;
        return f->since_ms == INT64_MIN && f->until_ms == INT64_MAX;
}

static int any_glob(char *const *pats, size_t n, const char *a, const char *b)
{
        size_t i;

        for (i = 0; i < n; i++)
                if ((a && !fnmatch(pats[i], a, 0)) ||
                    (b && !fnmatch(pats[i], b, 0)))
                        return 1;
        return 0;
}

int eb_replay_filter_match(const eb_replay_filter_t *f,
                           const struct eb_replay_record *rec)
{
        const char *vals[EB_REPLAY_F_COUNT_][2] = {
                [EB_REPLAY_F_TYPE] = {rec->type, NULL},
                [EB_REPLAY_F_SOURCE] = {rec->source, rec->sourcename},
                [EB_REPLAY_F_SUBJECT] = {rec->subject, NULL},
                [EB_REPLAY_F_ENTITY] = {rec->entityid, NULL},
                [EB_REPLAY_F_ID] = {rec->id, NULL},
        };
        size_t i;

        for (i = 0; i < EB_REPLAY_F_COUNT_; i++)
                if (f->npats[i] &&
                    !any_glob(f->pats[i], f->npats[i], vals[i][0], vals[i][1]))
                        return 0;
        if (f->since_ms != INT64_MIN || f->until_ms != INT64_MAX) {
                if (!rec->has_time || rec->time_ms < f->since_ms ||
                    rec->time_ms >= f->until_ms)
                        return 0;
        }
        return 1;
}

/* ---- HTTP --------------------------------------------------------------- */

eb_replay_http_t eb_replay_http_verdict(eb_replay_net_t net, long status)
{
        if (net == EB_REPLAY_NET_TRANSIENT)
                return EB_REPLAY_HTTP_RETRY;
        if (net != EB_REPLAY_NET_OK)
                return EB_REPLAY_HTTP_FAIL;
        if (status >= 200 && status < 300)
                return EB_REPLAY_HTTP_DONE;
        if (status >= 500 || status == 408 || status == 429)
                return EB_REPLAY_HTTP_RETRY;
        return EB_REPLAY_HTTP_FAIL;
}

int64_t eb_replay_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms)
{
        int64_t d = base_ms > 0 ? base_ms : 0;
        int i;

        for (i = 1; i < attempt && d < max_ms; i++)
                d *= 2;
        return d < max_ms ? d : max_ms;
}

int64_t eb_replay_retry_after_ms(const char *value)
{
        int64_t secs;
        size_t n;

        if (!value)
                return -1;
        while (*value == ' ' || *value == '\t')
                value++;
        n = strcspn(value, " \t\r\n");
        if (parse_uint(value, n, 86400 * 7, &secs))
                return -1;
        return secs * 1000;
}

/* ---- the evbridge-replay-from header ------------------------------------ */

int eb_replay_from_header_format(char *buf, size_t sz, const char *topic,
                                 int32_t partition, int64_t offset)
{
        int n = snprintf(buf, sz, "%s/%d/%lld", topic, (int)partition,
                         (long long)offset);

        return n < 0 || (size_t)n >= sz ? -ENOSPC : 0;
}

int eb_replay_from_header_parse(const void *value, size_t len, char *topic,
                                size_t topic_size, int32_t *partition,
                                int64_t *offset)
{
        const char *s = value, *s1, *s2;
        int64_t part, off;
        size_t tlen;

        if (!s || !len)
                return -EINVAL;
        s1 = memchr(s, '/', len);
        if (!s1)
                return -EINVAL;
        s2 = memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - s));
        if (!s2)
                return -EINVAL;
        tlen = (size_t)(s1 - s);
        if (!tlen || tlen >= topic_size || tlen > EB_REPLAY_TOPIC_MAX)
                return -EINVAL;
        if (parse_uint(s1 + 1, (size_t)(s2 - s1 - 1), INT32_MAX, &part) ||
            parse_uint(s2 + 1, len - (size_t)(s2 + 1 - s), INT64_MAX, &off))
                return -EINVAL;
        memcpy(topic, s, tlen);
        topic[tlen] = '\0';
        if (!eb_replay_topic_name_valid(topic))
                return -EINVAL;
        *partition = (int32_t)part;
        *offset = off;
        return 0;
}

/* ---- offset searches ---------------------------------------------------- */

int eb_replay_time_search(int64_t lo, int64_t hi, int64_t t_ms,
                          eb_replay_probe_fn *probe, void *opaque,
                          int64_t *offp)
{
        int64_t a = lo, b = hi, off, ts;
        int rc;

        /*
         * Smallest x in [lo, hi] such that the first data record at or
         * after x is missing or has ts >= t. Records between a probe
         * point and the record found there are markers, so a "too early"
         * answer lets the search jump past the record found.
         */
        while (a < b) {
                int64_t mid = a + (b - a) / 2;

                rc = probe(opaque, mid, &off, &ts);
                if (rc < 0)
                        return rc;
                if (rc == 1 || off >= hi || ts >= t_ms)
                        b = mid;
                else
                        a = off + 1;
        }
        if (a >= hi) {
                *offp = hi;
                return 0;
        }
        rc = probe(opaque, a, &off, &ts);
        if (rc < 0)
                return rc;
        *offp = rc == 1 || off >= hi ? hi : off;
        return 0;
}

int eb_replay_tail_start(int64_t lo, int64_t hi, int64_t n,
                         eb_replay_count_fn *count, void *opaque,
                         int64_t *startp)
{
        int64_t need = n, end = hi, c = hi, got;
        int rc;

        if (n <= 0 || hi <= lo) {
                *startp = hi > lo ? hi : lo;
                return 0;
        }
        while (need > 0 && end > lo) {
                c = end - lo > need ? end - need : lo;
                rc = count(opaque, c, end, &got);
                if (rc < 0)
                        return rc;
                need -= got;
                end = c;
        }
        *startp = c;
        return 0;
}
