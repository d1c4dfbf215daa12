/*
 * settings.c: the per-account settings table. One table drives the
 * command-line options, the config file keys, the control API's "set"
 * object, GET /_sim/control and --help, so the four can never disagree.
 */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_time.h"
#include "eb_util.h"

enum key_type {
        KT_DOUBLE, /* double in [min, max] */
        KT_INT,    /* int in [min, max] */
        KT_DUR,    /* int64 ms, "10s" or a number of ms */
        KT_BOOL,   /* on|off|true|false|1|0 */
        KT_STR,    /* owned string, "" or "none" clears */
        KT_FAULTS, /* fault spec */
        KT_DOWN,   /* off|503|reset */
        KT_KVER,   /* v1|v2 */
        KT_CAPOL,  /* reject|clamp */
        KT_SCOPE,  /* address|account */
        KT_STRICT, /* on|off: sets every strict switch at once */
};

struct sim_key {
        const char *name;
        int type;
        size_t off;
        double min, max;
        int start_only;
        const char *arg;
        const char *help;
};

#define OFF(f) offsetof(struct sim_settings, f)

static const struct sim_key keys[] = {
        {"rate", KT_DOUBLE, OFF(rate), 0, 1e6, 0, "EV_PER_SEC",
         "live events per second per account (0: none; default 1)"},
        {"backlog", KT_INT, OFF(backlog), 0, 10000000, 1, "N",
         "events generated in the past at start, per account (default 0)"},
        {"backlog_span", KT_DUR, OFF(backlog_span_ms), 1, 400 * 86400e3, 1,
         "DUR", "how far back the backlog is spread (default 1h)"},
        {"entities", KT_INT, OFF(entities), 1, 1000000, 1, "N",
         "entity pool size per account; events repeat on them (default "
         "20)"},
        {"consolidate", KT_DOUBLE, OFF(consolidate), 0, 1, 0, "SHARE",
         "Close: probability that an update to an object folds into its "
         "recent 'updated' event (rewritten in place; default 0.2)"},
        {"consolidate_window", KT_DUR, OFF(consolidate_window_ms), 0, 86400e3,
         0, "DUR",
         "Close: how recent an event must be to be folded into (default "
         "2m)"},
        {"retention", KT_DUR, OFF(retention_ms), 0, 1e13, 0, "DUR",
         "events older than this are not served (default: Kommo 0 = keep, "
         "Close and Kota 30d)"},
        {"credential", KT_STR, OFF(credential), 0, 0, 0, "STR",
         "API credential accepted (Kommo token, Close API key, Kota key; "
         "default kommo-token-<acct>, close-key-<acct>, pk_test_<acct>)"},
        {"webhook_secret", KT_STR, OFF(webhook_secret), 0, 0, 0, "STR",
         "webhook secret (Close: hex signature key, default derived from "
         "seed; Kota: default whsec_<acct>; Kommo path token, default "
         "kommo-hook-<acct>)"},
        {"limits", KT_BOOL, OFF(limits), 0, 1, 0, "on|off",
         "enforce the platforms' rate limits (default on)"},
        {"kommo_rps", KT_INT, OFF(kommo_rps), 1, 1000000, 0, "N",
         "Kommo: requests per sliding second per account (default 7)"},
        {"kommo_ban_after", KT_INT, OFF(kommo_ban_after), 0, 1000000, 0, "N",
         "Kommo: 403 ban after N 429s within --kommo-ban-window (0: never; "
         "default 10)"},
        {"kommo_ban_window", KT_DUR, OFF(kommo_ban_window_ms), 1, 86400e3, 0,
         "DUR", "Kommo: window counting 429s (default 60s)"},
        {"kommo_ban_duration", KT_DUR, OFF(kommo_ban_ms), 1, 86400e3 * 30, 0,
         "DUR", "Kommo: how long a ban lasts (default 1h)"},
        {"kommo_retry_after", KT_INT, OFF(kommo_retry_after), 0, 86400, 0,
         "SECS",
         "Kommo: retry_after in 429 bodies (0: seconds until a slot frees, "
         "at least 1; default 0)"},
        {"kommo_max_limit", KT_INT, OFF(kommo_max_limit), 1, 100000, 0, "N",
         "Kommo: largest accepted limit (default 250; amoCRM RU docs say "
         "100)"},
        {"strict", KT_STRICT, OFF(strict), 0, 1, 0, "on|off",
         "on (default): the real platforms' harsher behaviours, each of "
         "which has its own switch below (kommo_array_filters off, "
         "kommo_ban_scope address, kommo_ban_duration 1h, tie_shuffle on, "
         "kota_created_seconds on, late_visibility 5s, close_cursor_ttl "
         "60s, close_admin off, Kota webhook_attempts 1); off: the lenient "
         "values (on, account, 60s, "
         "off, off, 0, 0, on, 5). Later options override single switches"},
        {"kommo_array_filters", KT_BOOL, OFF(kommo_array_filters), 0, 1, 0,
         "on|off",
         "Kommo: accept the array filter form filter[type][]=a (default "
         "off: only the comma form filter[type]=a,b of the reference page; "
         "the array form is a 400)"},
        {"kommo_ban_scope", KT_SCOPE, OFF(kommo_ban_account), 0, 1, 0,
         "address|account",
         "Kommo: what a ban blocks: every account asked from the client's "
         "address (default, as Kommo's limitations page says) or only the "
         "account"},
        {"tie_shuffle", KT_BOOL, OFF(tie_shuffle), 0, 1, 0, "on|off",
         "Kommo and Kota: events of the same second (Kommo created_at; "
         "Kota created, or its millisecond with kota_created_seconds off) "
         "come in a different order on every request (default on)"},
        {"late_visibility", KT_DUR, OFF(late_ms), 0, 3600e3, 0, "DUR",
         "an event becomes visible in the list API up to DUR after its own "
         "time (a per-event draw; default 5s, 0 = at once)"},
        {"close_cursor_ttl", KT_DUR, OFF(close_cursor_ttl_ms), 0, 86400e3, 0,
         "DUR",
         "Close: a cursor older than DUR is refused with a 400 (default "
         "60s; 0 = never)"},
        {"close_admin", KT_BOOL, OFF(close_admin), 0, 1, 0, "on|off",
         "Close: the API key is an admin's (default off: data and "
         "previous_data are null in events older than --close-strip-after)"},
        {"close_strip_after", KT_DUR, OFF(close_strip_ms), 1, 86400e3 * 30, 0,
         "DUR",
         "Close: age after which a non-admin key sees no data (default 1h)"},
        {"kommo_token_ttl", KT_DUR, OFF(kommo_token_ttl_ms), 1, 86400e3 * 30, 0,
         "DUR",
         "Kommo: lifetime of the OAuth access tokens that POST "
         "/oauth2/access_token issues (default 1d, as Kommo's expires_in); "
         "each refresh also replaces the refresh token, and the old one is "
         "refused"},
        {"close_limit", KT_INT, OFF(close_limit), 1, 1000000, 0, "N",
         "Close: requests per window per API key (default 20)"},
        {"close_window", KT_DUR, OFF(close_window_ms), 1, 3600e3, 0, "DUR",
         "Close: rate-limit window (default 1s)"},
        {"kota_rps", KT_INT, OFF(kota_rps), 1, 1000000, 0, "N",
         "Kota: requests per sliding second per account (default 10)"},
        {"kota_version", KT_KVER, OFF(kota_v2), 0, 1, 0, "v1|v2",
         "Kota: API version when the request names none, and the webhook "
         "version (default v2)"},
        {"kota_created_seconds", KT_BOOL, OFF(kota_seconds), 0, 1, 0, "on|off",
         "Kota: \"created\" in whole seconds, as the reference's examples "
         "show, and created_after compared with that (default on; off: "
         "milliseconds)"},
        {"kota_created_after", KT_CAPOL, OFF(kota_clamp), 0, 1, 0,
         "reject|clamp",
         "Kota: created_after older than the retention: 400 (reject, "
         "default) or clamp to it"},
        {"faults", KT_FAULTS, OFF(faults), 0, 0, 0, "SPEC",
         "fault rules, comma-separated: KIND=P | KIND@every=N | "
         "KIND@next=N | KIND@for=DUR | KIND@window=START+DUR; KIND is "
         "500 502 503 504 slow reset truncated malformed html; 'none' "
         "clears"},
        {"slow_ms", KT_DUR, OFF(slow_ms), 0, 3600e3, 0, "MS",
         "delay of a 'slow' fault (default 25000)"},
        {"latency_ms", KT_DUR, OFF(latency_ms), 0, 3600e3, 0, "MS",
         "delay added to every API response (default 0)"},
        {"down", KT_DOWN, OFF(down), 0, 0, 0, "off|503|reset",
         "account down: every API request fails (default off)"},
        {"webhook_url", KT_STR, OFF(webhook_url), 0, 0, 0, "URL",
         "webhook target; {account}, {provider} and {token} are "
         "substituted (Kommo: ?token=<path token> is appended when the URL "
         "has no {token}); 'none' disables"},
        {"webhook_share", KT_DOUBLE, OFF(webhook_share), 0, 1, 0, "0..1",
         "share of eligible live events sent as webhooks (default 1)"},
        {"webhook_dup", KT_DOUBLE, OFF(webhook_dup), 0, 1, 0, "0..1",
         "probability of a duplicate delivery (default 0.02)"},
        {"webhook_jitter", KT_DUR, OFF(webhook_jitter_ms), 0, 3600e3, 0, "DUR",
         "random delay before the first attempt (default 200ms)"},
        {"webhook_retry_base", KT_DUR, OFF(webhook_retry_base_ms), 1, 3600e3, 0,
         "DUR", "first retry delay, doubling (default 100ms)"},
        {"webhook_retry_max", KT_DUR, OFF(webhook_retry_max_ms), 1, 86400e3, 0,
         "DUR", "longest retry delay (default 5s)"},
        {"webhook_timeout", KT_DUR, OFF(webhook_timeout_ms), 1, 3600e3, 0,
         "DUR", "per-attempt timeout (default 5s; Kommo 2s)"},
        {"webhook_attempts", KT_INT, OFF(webhook_attempts), 1, 1000, 0, "N",
         "attempts per delivery before giving up (default 5; Kota 1: "
         "Kota does not retry)"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const fault_names[SIM_F_NKINDS] = {
        "none", "500",   "502",       "503",       "504",
        "slow", "reset", "truncated", "malformed", "html",
};

const char *sim_fault_name(int kind)
{
        if (kind < 0 || kind >= SIM_F_NKINDS)
                return "?";
        return fault_names[kind];
}

size_t sim_settings_count(void)
{
        return NKEYS;
}

const char *sim_settings_name(size_t i)
{
        return i < NKEYS ? keys[i].name : NULL;
}

/* The switches of docs/simulator.md "Strict mode". */
static void set_strict(struct sim_settings *s, int prov, int on)
{
        s->strict = on;
        s->kommo_array_filters = !on;
        s->kommo_ban_account = !on;
        s->kommo_ban_ms = on ? 3600 * 1000 : 60 * 1000;
        s->tie_shuffle = on;
        s->kota_seconds = on;
        s->late_ms = on ? 5000 : 0;
        s->close_cursor_ttl_ms = on ? 60 * 1000 : 0;
        s->close_admin = !on;
        /* Kota: "If a non 2xx status code is returned, we will not retry
         * the delivery" (the webhooks guide; the harsher of its two
         * readings). */
        s->webhook_attempts = on && prov == SIM_KOTA ? 1 : 5;
}

void sim_settings_default(struct sim_settings *s, int prov)
{
        memset(s, 0, sizeof(*s));
        s->prov = prov;
        s->rate = 1;
        s->backlog = 0;
        s->backlog_span_ms = 3600 * 1000;
        s->entities = 20;
        s->consolidate = prov == SIM_CLOSE ? 0.2 : 0;
        s->consolidate_window_ms = 120 * 1000;
        s->retention_ms = prov == SIM_KOMMO ? 0 : 30LL * 86400 * 1000;
        s->limits = 1;
        s->kommo_rps = 7;
        s->kommo_ban_after = 10;
        s->kommo_ban_window_ms = 60 * 1000;
        s->kommo_retry_after = 0;
        s->kommo_max_limit = 250;
        s->close_strip_ms = 3600 * 1000;
        s->kommo_token_ttl_ms = 86400LL * 1000;
        s->close_limit = 20;
        s->close_window_ms = 1000;
        s->kota_rps = 10;
        s->kota_v2 = 1;
        s->kota_clamp = 0;
        s->slow_ms = 25000;
        s->latency_ms = 0;
        s->down = SIM_DOWN_OFF;
        s->webhook_share = 1;
        s->webhook_dup = 0.02;
        s->webhook_jitter_ms = 200;
        s->webhook_retry_base_ms = 100;
        s->webhook_retry_max_ms = 5000;
        s->webhook_timeout_ms = prov == SIM_KOMMO ? 2000 : 5000;
        set_strict(s, prov, 1);
}

void sim_settings_fini(struct sim_settings *s)
{
        free(s->credential);
        free(s->webhook_secret);
        free(s->webhook_url);
        free(s->faults);
        memset(s, 0, sizeof(*s));
}

void sim_settings_copy(struct sim_settings *dst, const struct sim_settings *src)
{
        sim_settings_fini(dst);
        *dst = *src;
        dst->credential = eb_xstrdup(src->credential);
        dst->webhook_secret = eb_xstrdup(src->webhook_secret);
        dst->webhook_url = eb_xstrdup(src->webhook_url);
        dst->faults = NULL;
        if (src->nfaults) {
                dst->faults = eb_xcalloc(src->nfaults, sizeof(*src->faults));
                memcpy(dst->faults, src->faults,
                       src->nfaults * sizeof(*src->faults));
        }
}

static const struct sim_key *find_key(const char *name)
{
        size_t i;

        for (i = 0; i < NKEYS; i++)
                if (!strcmp(keys[i].name, name))
                        return &keys[i];
        return NULL;
}

int sim_setting_known(const char *key)
{
        return find_key(key) != NULL;
}

static int parse_fault_kind(const char *s, size_t n)
{
        int k;

        for (k = 1; k < SIM_F_NKINDS; k++)
                if (strlen(fault_names[k]) == n &&
                    !strncmp(fault_names[k], s, n))
                        return k;
        return -1;
}

/* Parse one "KIND=P" / "KIND@mode=ARG" item. */
static int parse_fault_item(const char *item, struct sim_fault_rule *r,
                            int64_t now_ms, int64_t start_ms, char *err,
                            size_t errsz)
{
        const char *eq = strchr(item, '=');
        const char *at = strchr(item, '@');
        const char *kend;
        char *tmp = NULL;
        int rc = -EINVAL;

        memset(r, 0, sizeof(*r));
        if (!eq) {
                snprintf(err, errsz,
                         "fault '%s': expected KIND=P or "
                         "KIND@MODE=ARG",
                         item);
                return -EINVAL;
        }
        kend = (at && at < eq) ? at : eq;
        r->kind = parse_fault_kind(item, (size_t)(kend - item));
        if (r->kind < 0) {
                snprintf(err, errsz,
                         "fault '%s': unknown kind (500 502 503 504 slow "
                         "reset truncated malformed html)",
                         item);
                return -EINVAL;
        }
        if (kend == eq) {
                r->mode = SIM_FM_PROB;
                if (eb_parse_double(eq + 1, &r->prob) < 0 || r->prob < 0 ||
                    r->prob > 1) {
                        snprintf(err, errsz,
                                 "fault '%s': probability must be 0..1", item);
                        return -EINVAL;
                }
                return 0;
        }
        tmp = eb_xstrndup(at + 1, (size_t)(eq - at - 1));
        if (!strcmp(tmp, "every") || !strcmp(tmp, "next")) {
                r->mode = !strcmp(tmp, "every") ? SIM_FM_EVERY : SIM_FM_NEXT;
                if (eb_parse_i64(eq + 1, &r->n) < 0 || r->n < 1) {
                        snprintf(err, errsz,
                                 "fault '%s': expected a positive count", item);
                        goto out;
                }
        } else if (!strcmp(tmp, "for")) {
                r->mode = SIM_FM_FOR;
                if (eb_duration_parse(eq + 1, &r->dur_ms) < 0) {
                        snprintf(err, errsz, "fault '%s': expected a duration",
                                 item);
                        goto out;
                }
                r->from_ms = now_ms;
                r->until_ms = now_ms + r->dur_ms;
        } else if (!strcmp(tmp, "window")) {
                const char *plus = strchr(eq + 1, '+');
                char *a = NULL;
                int64_t st = 0, du = 0;
                int bad;

                r->mode = SIM_FM_WINDOW;
                if (!plus) {
                        snprintf(err, errsz,
                                 "fault '%s': expected window=START+DUR", item);
                        goto out;
                }
                a = eb_xstrndup(eq + 1, (size_t)(plus - eq - 1));
                bad = eb_duration_parse(a, &st) < 0 ||
                      eb_duration_parse(plus + 1, &du) < 0;
                free(a);
                if (bad) {
                        snprintf(err, errsz,
                                 "fault '%s': expected window=START+DUR "
                                 "(durations since start)",
                                 item);
                        goto out;
                }
                r->from_ms = start_ms + st;
                r->until_ms = start_ms + st + du;
        } else {
                snprintf(err, errsz,
                         "fault '%s': unknown mode '%s' (every, next, for, "
                         "window)",
                         item, tmp);
                goto out;
        }
        rc = 0;
out:
        free(tmp);
        return rc;
}

static int parse_faults(const char *spec, struct sim_fault_rule **rules,
                        size_t *n, int64_t now_ms, int64_t start_ms, char *err,
                        size_t errsz)
{
        char *copy = eb_xstrdup(spec), *save = NULL, *tok;
        struct sim_fault_rule *out = NULL;
        size_t cnt = 0;
        int rc = 0;

        *rules = NULL;
        *n = 0;
        if (!*spec || !strcmp(spec, "none")) {
                free(copy);
                return 0;
        }
        for (tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                while (*tok == ' ')
                        tok++;
                if (!*tok)
                        continue;
                if (cnt >= 64) {
                        snprintf(err, errsz, "faults: at most 64 rules");
                        rc = -EINVAL;
                        break;
                }
                out = eb_xrealloc(out, (cnt + 1) * sizeof(*out));
                rc = parse_fault_item(tok, &out[cnt], now_ms, start_ms, err,
                                      errsz);
                if (rc < 0)
                        break;
                cnt++;
        }
        free(copy);
        if (rc < 0) {
                free(out);
                return rc;
        }
        *rules = out;
        *n = cnt;
        return 0;
}

/* The words a setting of a word type accepts, and the value each sets. */
static const struct {
        int type;
        const char *word;
        int value;
} words[] = {
        {KT_BOOL, "on", 1},
        {KT_BOOL, "true", 1},
        {KT_BOOL, "1", 1},
        {KT_BOOL, "yes", 1},
        {KT_BOOL, "off", 0},
        {KT_BOOL, "false", 0},
        {KT_BOOL, "0", 0},
        {KT_BOOL, "no", 0},
        {KT_STRICT, "on", 1},
        {KT_STRICT, "true", 1},
        {KT_STRICT, "1", 1},
        {KT_STRICT, "off", 0},
        {KT_STRICT, "false", 0},
        {KT_STRICT, "0", 0},
        {KT_DOWN, "off", SIM_DOWN_OFF},
        {KT_DOWN, "false", SIM_DOWN_OFF},
        {KT_DOWN, "none", SIM_DOWN_OFF},
        {KT_DOWN, "0", SIM_DOWN_OFF},
        {KT_DOWN, "503", SIM_DOWN_503},
        {KT_DOWN, "true", SIM_DOWN_503},
        {KT_DOWN, "on", SIM_DOWN_503},
        {KT_DOWN, "reset", SIM_DOWN_RESET},
        {KT_KVER, "v1", 0},
        {KT_KVER, "V1", 0},
        {KT_KVER, "v2", 1},
        {KT_KVER, "V2", 1},
        {KT_CAPOL, "reject", 0},
        {KT_CAPOL, "clamp", 1},
        {KT_SCOPE, "address", 0},
        {KT_SCOPE, "account", 1},
};

/* The value @p sv names for a setting of @p type, or -1. */
static int word_value(int type, const char *sv)
{
        size_t i;

        for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (words[i].type == type && !strcmp(words[i].word, sv))
                        return words[i].value;
        return -1;
}

/* Render a value as a string for parsing; numbers keep their form. */
static const char *val_str(const json_t *val, char *buf, size_t sz)
{
        if (json_is_string(val))
                return json_string_value(val);
        if (json_is_integer(val)) {
                snprintf(buf, sz, "%lld", (long long)json_integer_value(val));
                return buf;
        }
        if (json_is_real(val)) {
                snprintf(buf, sz, "%.17g", json_real_value(val));
                return buf;
        }
        if (json_is_true(val))
                return "true";
        if (json_is_false(val))
                return "false";
        if (json_is_null(val))
                return "none";
        return NULL;
}

int sim_setting_apply(struct sim_settings *s, const char *key,
                      const json_t *val, int at_start, int64_t now_ms,
                      int64_t start_ms, char *err, size_t errsz)
{
        const struct sim_key *k = find_key(key);
        char nb[64];
        const char *sv;
        char *base = (char *)s;

        if (!k) {
                snprintf(err, errsz, "unknown setting '%s'", key);
                return -ENOENT;
        }
        if (k->start_only && !at_start) {
                snprintf(err, errsz, "%s: can only be set at start", key);
                return -EINVAL;
        }
        sv = val_str(val, nb, sizeof(nb));
        if (!sv) {
                snprintf(err, errsz, "%s: expected a string or number", key);
                return -EINVAL;
        }
        switch (k->type) {
        case KT_DOUBLE: {
                double d;
                if (eb_parse_double(sv, &d) < 0 || !isfinite(d) || d < k->min ||
                    d > k->max) {
                        snprintf(err, errsz,
                                 "%s: expected a number in "
                                 "%g..%g, got '%s'",
                                 key, k->min, k->max, sv);
                        return -EINVAL;
                }
                *(double *)(base + k->off) = d;
                return 0;
        }
        case KT_INT: {
                int64_t v;
                if (eb_parse_i64(sv, &v) < 0 || (double)v < k->min ||
                    (double)v > k->max) {
                        snprintf(err, errsz,
                                 "%s: expected an integer in "
                                 "%.0f..%.0f, got '%s'",
                                 key, k->min, k->max, sv);
                        return -EINVAL;
                }
                if (k->off == OFF(backlog))
                        *(int64_t *)(base + k->off) = v;
                else
                        *(int *)(base + k->off) = (int)v;
                return 0;
        }
        case KT_DUR: {
                int64_t v;
                if (eb_parse_i64(sv, &v) < 0 && eb_duration_parse(sv, &v) < 0) {
                        snprintf(err, errsz,
                                 "%s: expected a duration like "
                                 "\"10s\" or a number of ms, got '%s'",
                                 key, sv);
                        return -EINVAL;
                }
                if ((double)v < k->min || (double)v > k->max) {
                        snprintf(err, errsz, "%s: %lld ms is out of range", key,
                                 (long long)v);
                        return -EINVAL;
                }
                *(int64_t *)(base + k->off) = v;
                return 0;
        }
        case KT_STR: {
                char **dst = (char **)(base + k->off);
                size_t n = strlen(sv);
                if (n > 2048) {
                        snprintf(err, errsz, "%s: too long", key);
                        return -EINVAL;
                }
                if (k->off == OFF(webhook_url) && n && strcmp(sv, "none") &&
                    strncmp(sv, "http://", 7) && strncmp(sv, "https://", 8)) {
                        snprintf(err, errsz,
                                 "%s: expected an http(s) URL, "
                                 "got '%s'",
                                 key, sv);
                        return -EINVAL;
                }
                free(*dst);
                *dst = (!n || !strcmp(sv, "none")) ? NULL : eb_xstrdup(sv);
                return 0;
        }
        case KT_FAULTS: {
                struct sim_fault_rule *rules = NULL;
                size_t nr = 0;
                int rc = parse_faults(sv, &rules, &nr, now_ms, start_ms, err,
                                      errsz);
                if (rc < 0)
                        return rc;
                free(s->faults);
                s->faults = rules;
                s->nfaults = nr;
                return 0;
        }
        case KT_BOOL:
        case KT_DOWN:
        case KT_KVER:
        case KT_CAPOL:
        case KT_SCOPE:
        case KT_STRICT: {
                int v = word_value(k->type, sv);

                if (v < 0) {
                        snprintf(err, errsz, "%s: expected %s, got '%s'", key,
                                 k->arg, sv);
                        return -EINVAL;
                }
                if (k->type == KT_STRICT)
                        set_strict(s, s->prov, v);
                else
                        *(int *)(base + k->off) = v;
                return 0;
        }
        }
        return -EINVAL;
}

static json_t *faults_json(const struct sim_settings *s)
{
        json_t *arr = json_array();
        size_t i;

        for (i = 0; i < s->nfaults; i++) {
                const struct sim_fault_rule *r = &s->faults[i];
                json_t *o = json_pack("{s:s}", "kind", sim_fault_name(r->kind));
                switch (r->mode) {
                case SIM_FM_PROB:
                        json_object_set_new(o, "probability",
                                            json_real(r->prob));
                        break;
                case SIM_FM_EVERY:
                        json_object_set_new(o, "every", json_integer(r->n));
                        break;
                case SIM_FM_NEXT:
                        json_object_set_new(o, "next", json_integer(r->n));
                        break;
                default:
                        json_object_set_new(o, "from_ms",
                                            json_integer(r->from_ms));
                        json_object_set_new(o, "until_ms",
                                            json_integer(r->until_ms));
                        break;
                }
                json_array_append_new(arr, o);
        }
        return arr;
}

json_t *sim_settings_json(const struct sim_settings *s)
{
        json_t *o = json_object();
        const char *base = (const char *)s;
        size_t i;

        for (i = 0; i < NKEYS; i++) {
                const struct sim_key *k = &keys[i];
                json_t *v = NULL;

                switch (k->type) {
                case KT_DOUBLE:
                        v = json_real(*(const double *)(base + k->off));
                        break;
                case KT_INT:
                        if (k->off == OFF(backlog))
                                v = json_integer(
                                        *(const int64_t *)(base + k->off));
                        else
                                v = json_integer(*(const int *)(base + k->off));
                        break;
                case KT_DUR:
                        v = json_integer(*(const int64_t *)(base + k->off));
                        break;
                case KT_BOOL:
                        v = json_boolean(*(const int *)(base + k->off));
                        break;
                case KT_STR: {
                        const char *str = *(char *const *)(base + k->off);
                        /* never echo secrets back */
                        if (k->off == OFF(credential) ||
                            k->off == OFF(webhook_secret))
                                v = json_boolean(str != NULL);
                        else
                                v = str ? json_string(str) : json_null();
                        break;
                }
                case KT_FAULTS:
                        v = faults_json(s);
                        break;
                case KT_DOWN:
                        v = json_string(s->down == SIM_DOWN_503     ? "503"
                                        : s->down == SIM_DOWN_RESET ? "reset"
                                                                    : "off");
                        break;
                case KT_KVER:
                        v = json_string(s->kota_v2 ? "v2" : "v1");
                        break;
                case KT_CAPOL:
                        v = json_string(s->kota_clamp ? "clamp" : "reject");
                        break;
                case KT_STRICT:
                        v = json_boolean(s->strict);
                        break;
                case KT_SCOPE:
                        v = json_string(s->kommo_ban_account ? "account"
                                                             : "address");
                        break;
                }
                json_object_set_new(o, k->name, v);
        }
        return o;
}

/* Print @p text word-wrapped at 78 columns, indented by 6. */
static void wrap(FILE *fp, const char *text)
{
        const char *p = text;
        size_t col = 6;

        fputs("      ", fp);
        while (*p) {
                const char *sp = strchr(p, ' ');
                size_t w = sp ? (size_t)(sp - p) : strlen(p);

                if (col > 6 && col + 1 + w > 78) {
                        fputs("\n      ", fp);
                        col = 6;
                } else if (col > 6) {
                        fputc(' ', fp);
                        col++;
                }
                fwrite(p, 1, w, fp);
                col += w;
                p += w;
                while (*p == ' ')
                        p++;
        }
        fputc('\n', fp);
}

void sim_settings_help(FILE *fp)
{
        size_t i;

        for (i = 0; i < NKEYS; i++) {
                char opt[64], help[600];
                size_t j;

                snprintf(opt, sizeof(opt), "--%s", keys[i].name);
                for (j = 2; opt[j]; j++)
                        if (opt[j] == '_')
                                opt[j] = '-';
                fprintf(fp, "  %s [TARGET=]%s\n", opt, keys[i].arg);
                snprintf(help, sizeof(help), "%s%s", keys[i].help,
                         keys[i].start_only ? " [start only]" : "");
                wrap(fp, help);
        }
}
