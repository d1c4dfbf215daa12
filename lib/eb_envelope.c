/*
 * eb_envelope: the CloudEvents 1.0 envelope and topic naming
 * (eb_envelope.h; the event itself lives in eb_event.c).
 *
 * Attribute order is fixed (specversion, id, source, type, time, subject,
 * datacontenttype, extensions, data) and the JSON is compact, so the same
 * event always renders to the same bytes: consumers may hash or compare
 * values, and replays are byte-identical.
 */
#include "eb_envelope.h"

#include "eb_event.h"
#include "eb_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_buf.h"
#include "eb_time.h"
#include "eb_util.h"

#define EB_TOPIC_MAX          249 /* Kafka's limit on a topic name */
#define EB_TOPIC_HASH_HEX     8
#define EB_TOPIC_TEMPLATE_MAX 1024
/* Bound on an expanded name before sanitizing (values come from upstream
 * APIs); a longer one is refused rather than cut. */
#define EB_TOPIC_EXPANDED_MAX     65536
#define EB_TOPIC_DEFAULT_TEMPLATE "{prefix}.{provider}.{entity}.{action}"
#define EB_ENVELOPE_RESERVE       2048

/* 9999-12-31T23:59:59.999Z: RFC 3339 has four-digit years. */
#define EB_TIME_MAX_MS INT64_C(253402300799999)

static const char *const placeholders[] = {
        "prefix", "provider", "entity", "action", "source", "account",
};

#define EB_N_PLACEHOLDERS (sizeof(placeholders) / sizeof(placeholders[0]))

static int is_topic_char(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '-';
}

static int is_sep(char c)
{
        return c == '.' || c == '-';
}

/*
 * Lowercase, map illegal bytes (and '_') to '-', collapse runs of '.' and
 * of '-', trim separators at both ends. No length limit, no "unnamed":
 * those apply to whole names only, not to placeholder values.
 * @returns new string, possibly "".
 */
static char *sanitize_part(const char *in)
{
        size_t n = strlen(in);
        char *out = eb_xmalloc(n + 1);
        size_t o = 0;
        size_t i;

        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)in[i];
                char m;

                if (c >= 'A' && c <= 'Z')
                        c = (unsigned char)(c - 'A' + 'a');
                m = is_topic_char(c) ? (char)c : '-';
                if (is_sep(m) && o > 0 && out[o - 1] == m)
                        continue; /* collapse a run */
                if (is_sep(m) && o == 0)
                        continue; /* leading separator */
                out[o++] = m;
        }
        while (o > 0 && is_sep(out[o - 1]))
                o--;
        out[o] = '\0';
        return out;
}

char *eb_topic_sanitize(const char *name)
{
        char *s = sanitize_part(name ? name : "");
        size_t n = strlen(s);
        char *out;
        uint64_t h;
        size_t cut;

        if (n == 0) {
                free(s);
                return eb_xstrdup("unnamed");
        }
        if (n <= EB_TOPIC_MAX)
                return s;

        /*
         * Too long: keep a prefix and append '-' + 8 hex digits of the hash
         * of the whole sanitized name, so two long names that share their
         * first 240 characters still map to different topics.
         */
        h = eb_fnv1a64(s, n);
        cut = EB_TOPIC_MAX - 1 - EB_TOPIC_HASH_HEX;
        while (cut > 0 && is_sep(s[cut - 1]))
                cut--;
        out = eb_xmalloc(cut + 1 + EB_TOPIC_HASH_HEX + 1);
        memcpy(out, s, cut);
        snprintf(out + cut, 1 + EB_TOPIC_HASH_HEX + 1, "-%08" PRIx32,
                 (uint32_t)(h >> 32));
        free(s);
        return out;
}

/* @returns index into placeholders[] of name [p, p + len), or -1. */
static int placeholder_index(const char *p, size_t len)
{
        size_t i;

        for (i = 0; i < EB_N_PLACEHOLDERS; i++)
                if (strlen(placeholders[i]) == len &&
                    !memcmp(placeholders[i], p, len))
                        return (int)i;
        return -1;
}

int eb_topic_template_check(const char *topic_template, char *errstr,
                            size_t errstr_size)
{
        const char *p = topic_template;
        size_t len;
        int usable = 0; /* anything that survives sanitizing? */

        if (!p || !*p) {
                snprintf(errstr, errstr_size, "topic template is empty");
                return -EINVAL;
        }
        len = strlen(p);
        if (len > EB_TOPIC_TEMPLATE_MAX) {
                snprintf(errstr, errstr_size,
                         "topic template is too long (%zu bytes, at most %d)",
                         len, EB_TOPIC_TEMPLATE_MAX);
                return -EINVAL;
        }
        while (*p) {
                const char *close;

                if (*p == '}') {
                        snprintf(errstr, errstr_size,
                                 "topic template: unmatched '}' at offset %zu",
                                 (size_t)(p - topic_template));
                        return -EINVAL;
                }
                if (*p != '{') {
                        unsigned char c = (unsigned char)*p;

                        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9'))
                                usable = 1;
                        p++;
                        continue;
                }
                close = strchr(p + 1, '}');
                if (!close) {
                        snprintf(errstr, errstr_size,
                                 "topic template: unterminated '{' at offset "
                                 "%zu",
                                 (size_t)(p - topic_template));
                        return -EINVAL;
                }
                if (memchr(p + 1, '{', (size_t)(close - p - 1)) ||
                    placeholder_index(p + 1, (size_t)(close - p - 1)) < 0) {
                        snprintf(errstr, errstr_size,
                                 "topic template: unknown placeholder "
                                 "\"%.*s\" (known: {prefix}, {provider}, "
                                 "{entity}, {action}, {source}, {account})",
                                 (int)(close - p + 1), p);
                        return -EINVAL;
                }
                usable = 1;
                p = close + 1;
        }
        if (!usable) {
                snprintf(errstr, errstr_size,
                         "topic template \"%s\" has no placeholder and no "
                         "usable character",
                         topic_template);
                return -EINVAL;
        }
        return 0;
}

static const char *placeholder_value(int idx, const char *prefix,
                                     const struct eb_event *evt)
{
        const char *v = NULL;

        switch (idx) {
        case 0:
                v = prefix;
                break;
        case 1:
                v = evt->provider;
                break;
        case 2:
                v = evt->entity_type;
                break;
        case 3:
                v = evt->action;
                break;
        case 4:
                v = evt->source_name;
                break;
        case 5:
                v = evt->account;
                break;
        default:
                break;
        }
        return v ? v : "";
}

char *eb_topic_name(const char *topic_template, const char *prefix,
                    const struct eb_event *evt)
{
        const char *p = topic_template;
        struct eb_buf b;
        char *name = NULL;
        char *out = NULL;

        if (!p)
                return NULL;
        eb_buf_init(&b, EB_TOPIC_EXPANDED_MAX);
        while (*p) {
                const char *close;
                char *val;
                int idx;
                int rc;

                if (*p == '}')
                        goto out;
                if (*p != '{') {
                        if (eb_buf_append(&b, p, 1))
                                goto out;
                        p++;
                        continue;
                }
                close = strchr(p + 1, '}');
                if (!close)
                        goto out;
                idx = placeholder_index(p + 1, (size_t)(close - p - 1));
                if (idx < 0)
                        goto out;
                val = sanitize_part(placeholder_value(idx, prefix, evt));
                rc = eb_buf_append_str(&b, val);
                free(val);
                if (rc)
                        goto out;
                p = close + 1;
        }
        name = eb_buf_take(&b, NULL);
        out = eb_topic_sanitize(name);
out:
        free(name);
        eb_buf_fini(&b);
        return out;
}

static int nonempty(const char *s)
{
        return s && *s;
}

/*
 * The CloudEvents context attributes in their fixed order, shared by the
 * structured (JSON members) and binary ("ce_" headers) renderings.
 */
struct ce_attr {
        const char *name;   /* JSON member name */
        const char *header; /* Kafka header name in binary mode */
        char *value;        /* owned, NULL = omitted */
};

enum {
        CE_SPECVERSION,
        CE_ID,
        CE_SOURCE,
        CE_TYPE,
        CE_TIME,
        CE_SUBJECT,
        CE_DATACONTENTTYPE,
        CE_PROVIDER,
        CE_ACCOUNT,
        CE_ENTITYTYPE,
        CE_ENTITYID,
        CE_ACTION,
        CE_ACTOR,
        CE_EVENTVERSION,
        CE_SOURCENAME,
        CE_N
};

static void ce_attrs_fill(const struct eb_event *evt, struct ce_attr *a)
{
        static const char *const names[CE_N][2] = {
                {"specversion", "ce_specversion"},
                {"id", "ce_id"},
                {"source", "ce_source"},
                {"type", "ce_type"},
                {"time", "ce_time"},
                {"subject", "ce_subject"},
                {"datacontenttype", NULL}, /* binary: content-type */
                {"provider", "ce_provider"},
                {"account", "ce_account"},
                {"entitytype", "ce_entitytype"},
                {"entityid", "ce_entityid"},
                {"action", "ce_action"},
                {"actor", "ce_actor"},
                {"eventversion", "ce_eventversion"},
                {"sourcename", "ce_sourcename"},
        };
        const char *entity_id = evt->entity_id ? evt->entity_id : "";
        char ts[40];
        int i;

        for (i = 0; i < CE_N; i++) {
                a[i].name = names[i][0];
                a[i].header = names[i][1];
                a[i].value = NULL;
        }
        eb_rfc3339_format(evt->time_ms, 3, ts, sizeof(ts));
        a[CE_SPECVERSION].value = eb_xstrdup("1.0");
        a[CE_ID].value = eb_xstrdup(evt->id);
        a[CE_SOURCE].value = eb_xasprintf(
                "/%s/%s", evt->provider,
                nonempty(evt->account) ? evt->account : evt->source_name);
        a[CE_TYPE].value = eb_event_type(evt);
        a[CE_TIME].value = eb_xstrdup(ts);
        a[CE_SUBJECT].value =
                eb_xasprintf("%s/%s", evt->entity_type, entity_id);
        a[CE_DATACONTENTTYPE].value = eb_xstrdup("application/json");
        a[CE_PROVIDER].value = eb_xstrdup(evt->provider);
        if (nonempty(evt->account))
                a[CE_ACCOUNT].value = eb_xstrdup(evt->account);
        a[CE_ENTITYTYPE].value = eb_xstrdup(evt->entity_type);
        a[CE_ENTITYID].value = eb_xstrdup(entity_id);
        a[CE_ACTION].value = eb_xstrdup(evt->action);
        if (evt->actor)
                a[CE_ACTOR].value = eb_xstrdup(evt->actor);
        if (evt->version)
                a[CE_EVENTVERSION].value = eb_xstrdup(evt->version);
        a[CE_SOURCENAME].value = eb_xstrdup(evt->source_name);
}

static void ce_attrs_free(struct ce_attr *a)
{
        int i;

        for (i = 0; i < CE_N; i++) {
                free(a[i].value);
                a[i].value = NULL;
        }
}

static int add_header(struct eb_envelope *env, const char *name,
                      char *value /* takes ownership */)
{
        if (env->header_cnt >= EB_ENVELOPE_MAX_HEADERS) {
                free(value);
                return -E2BIG;
        }
        env->headers[env->header_cnt].name = name;
        env->headers[env->header_cnt].value = value;
        env->header_cnt++;
        return 0;
}

static int utf8_ok(const char *s)
{
        return !s || eb_utf8_valid(s, strlen(s));
}

/* Required fields present and usable? Every string that becomes a
 * CloudEvents attribute must be UTF-8 (a JSON string, a header value). */
static int event_valid(const struct eb_event *evt)
{
        if (!nonempty(evt->id) || !nonempty(evt->source_name) ||
            !nonempty(evt->provider) || !nonempty(evt->entity_type) ||
            !nonempty(evt->action) || !evt->native)
                return 0;
        if (evt->fields && !json_is_object(evt->fields))
                return 0;
        if (evt->time_ms < 0 || evt->time_ms > EB_TIME_MAX_MS)
                return 0;
        return utf8_ok(evt->id) && utf8_ok(evt->source_name) &&
               utf8_ok(evt->provider) && utf8_ok(evt->entity_type) &&
               utf8_ok(evt->action) && utf8_ok(evt->account) &&
               utf8_ok(evt->entity_id) && utf8_ok(evt->actor) &&
               utf8_ok(evt->version);
}

/* ,"name":"value" */
static int put_attr(struct eb_buf *b, const char *name, const char *value)
{
        int rc;

        if ((rc = eb_buf_append_str(b, name)))
                return rc;
        return eb_json_put_str(b, value, strlen(value));
}

/* "data": the normalized fields and the provider's own event. */
static int put_data(struct eb_buf *b, const struct eb_event *evt)
{
        int rc;

        if ((rc = eb_buf_append_str(b, "{\"fields\":")))
                return rc;
        rc = evt->fields ? eb_json_put_src(b, evt->fields, evt->src)
                         : eb_buf_append(b, "{}", 2);
        if (rc || (rc = eb_buf_append_str(b, ",\"native\":")) ||
            (rc = eb_json_put_src(b, evt->native, evt->src)))
                return rc;
        return eb_buf_append(b, "}", 1);
}

/*
 * The structured CloudEvent, written straight out (no jansson tree): the
 * attributes in the order of ce_attrs_fill(), then "data". Same bytes as
 * json_dumps() of the equivalent object.
 */
static int put_structured(struct eb_buf *b, const struct eb_event *evt)
{
        const char *entity_id = evt->entity_id ? evt->entity_id : "";
        const char *acct =
                nonempty(evt->account) ? evt->account : evt->source_name;
        char ts[40], *type = eb_event_type(evt);
        int rc;

        eb_rfc3339_format(evt->time_ms, 3, ts, sizeof(ts));
        if ((rc = put_attr(b, "{\"specversion\":\"1.0\",\"id\":", evt->id)) ||
            (rc = eb_buf_append_str(b, ",\"source\":\"/")) ||
            (rc = eb_json_put_chars(b, evt->provider, strlen(evt->provider))) ||
            (rc = eb_buf_append(b, "/", 1)) ||
            (rc = eb_json_put_chars(b, acct, strlen(acct))) ||
            (rc = put_attr(b, "\",\"type\":", type)) ||
            (rc = put_attr(b, ",\"time\":", ts)) ||
            (rc = eb_buf_append_str(b, ",\"subject\":\"")) ||
            (rc = eb_json_put_chars(b, evt->entity_type,
                                    strlen(evt->entity_type))) ||
            (rc = eb_buf_append(b, "/", 1)) ||
            (rc = eb_json_put_chars(b, entity_id, strlen(entity_id))) ||
            (rc = eb_buf_append_str(b, "\",\"datacontenttype\":"
                                       "\"application/json\"")) ||
            (rc = put_attr(b, ",\"provider\":", evt->provider)) ||
            (nonempty(evt->account) &&
             (rc = put_attr(b, ",\"account\":", evt->account))) ||
            (rc = put_attr(b, ",\"entitytype\":", evt->entity_type)) ||
            (rc = put_attr(b, ",\"entityid\":", entity_id)) ||
            (rc = put_attr(b, ",\"action\":", evt->action)) ||
            (evt->actor && (rc = put_attr(b, ",\"actor\":", evt->actor))) ||
            (evt->version &&
             (rc = put_attr(b, ",\"eventversion\":", evt->version))) ||
            (rc = put_attr(b, ",\"sourcename\":", evt->source_name)) ||
            (rc = eb_buf_append_str(b, ",\"data\":")) ||
            (rc = put_data(b, evt)))
                goto out;
        rc = eb_buf_append(b, "}", 1);
out:
        free(type);
        return rc;
}

int eb_envelope_render(const struct eb_event *evt, const char *topic_template,
                       const char *prefix, eb_envelope_mode_t mode,
                       struct eb_envelope *env)
{
        struct ce_attr a[CE_N];
        struct eb_buf b;
        int rc = -EINVAL;
        int i;

        memset(env, 0, sizeof(*env));
        eb_buf_init(&b, 0);
        /* most envelopes fit: one allocation instead of a few */
        if ((rc = eb_buf_reserve(&b, EB_ENVELOPE_RESERVE)))
                goto out;
        rc = -EINVAL;
        if (!event_valid(evt) ||
            (mode != EB_ENVELOPE_STRUCTURED && mode != EB_ENVELOPE_BINARY))
                goto out;
        env->topic = eb_topic_name(topic_template ? topic_template
                                                  : EB_TOPIC_DEFAULT_TEMPLATE,
                                   prefix, evt);
        if (!env->topic)
                goto out;
        env->key = eb_event_key(evt);
        env->key_len = strlen(env->key);

        if (mode == EB_ENVELOPE_STRUCTURED) {
                if ((rc = put_structured(&b, evt)))
                        goto out;
                rc = add_header(env, "content-type",
                                eb_xstrdup("application/cloudevents+json"));
        } else {
                if ((rc = put_data(&b, evt)))
                        goto out;
                ce_attrs_fill(evt, a);
                for (i = 0; i < CE_N && !rc; i++) {
                        if (!a[i].value || !a[i].header)
                                continue;
                        rc = add_header(env, a[i].header, a[i].value);
                        a[i].value = NULL; /* now owned by env */
                }
                ce_attrs_free(a);
                if (!rc)
                        rc = add_header(env, "content-type",
                                        eb_xstrdup("application/json"));
        }
        if (rc)
                goto out;
        env->value = eb_buf_take(&b, &env->value_len);
out:
        eb_buf_fini(&b);
        if (rc)
                eb_envelope_fini(env);
        return rc;
}

void eb_envelope_fini(struct eb_envelope *env)
{
        int i;

        if (!env)
                return;
        free(env->topic);
        free(env->key);
        free(env->value);
        for (i = 0; i < env->header_cnt; i++)
                free(env->headers[i].value);
        memset(env, 0, sizeof(*env));
}
