/*
 * `evbridge status [URL]`: GET <URL>/status from a running evbridge and
 * print it for a person: one block per source with its state, lag, next
 * poll, last error and backfill progress.
 */
#include "status.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_buf.h"
#include "eb_time.h"
#include "eb_util.h"

#define STATUS_MAX_BODY (4 * 1024 * 1024)

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
        struct eb_buf *b = arg;

        if (eb_buf_append(b, p, size * n))
                return 0; /* too big: curl stops */
        return size * n;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
        const char *s = json_string_value(json_object_get(o, key));

        return s ? s : dflt;
}

/* "in 12s", "3m ago": a time relative to now, from RFC 3339; a
 * @p future one already past is "now" (the poll is due). */
static void relative(const char *when, int future, int64_t now, char *buf,
                     size_t size)
{
        int64_t ms, d;
        char dur[32];

        if (!when || eb_rfc3339_parse(when, &ms)) {
                snprintf(buf, size, "-");
                return;
        }
        d = ms - now;
        if (d < 0 && future) {
                snprintf(buf, size, "now");
                return;
        }
        eb_duration_format(d < 0 ? -d : d, dur, sizeof(dur));
        if (d >= 0)
                snprintf(buf, size, "in %s", dur);
        else
                snprintf(buf, size, "%s ago", dur);
}

static void print_status(const json_t *root)
{
        const json_t *srcs = json_object_get(root, "sources");
        int64_t now = eb_now_ms();
        size_t i;
        json_t *s;

        printf("evbridge %s, kafka %s: %s%s\n", str_or(root, "version", "?"),
               str_or(root, "kafka", "?"),
               json_is_true(json_object_get(root, "ready")) ? "ready"
                                                            : "NOT READY: ",
               str_or(root, "not_ready_reason", ""));
        if (json_is_string(json_object_get(root, "ready_detail")))
                printf("attention: %s\n", str_or(root, "ready_detail", ""));
        if (json_is_string(json_object_get(root, "kafka_last_failure"))) {
                char when[48];

                relative(str_or(root, "kafka_last_failure_time", NULL), 0, now,
                         when, sizeof(when));
                printf("last Kafka refusal: %s (%s)\n",
                       str_or(root, "kafka_last_failure", ""), when);
        }
        if (!json_array_size(srcs)) {
                printf("no source running%s\n",
                       json_is_true(json_object_get(root, "ready"))
                               ? ""
                               : " (sources start once evbridge is ready)");
                return;
        }
        printf("\n%-24s %-8s %-10s %-10s %-12s %s\n", "SOURCE", "PROVIDER",
               "STATE", "LAG", "NEXT POLL", "LAST ERROR");
        json_array_foreach(srcs, i, s)
        {
                const json_t *lag = json_object_get(s, "lag_seconds");
                char lagbuf[32], next[48], errwhen[48];
                const char *err = str_or(s, "last_error", NULL);

                if (json_is_integer(lag))
                        eb_duration_format(json_integer_value(lag) * 1000,
                                           lagbuf, sizeof(lagbuf));
                else
                        snprintf(lagbuf, sizeof(lagbuf), "-");
                relative(str_or(s, "next_poll", NULL), 1, now, next,
                         sizeof(next));
                relative(str_or(s, "last_error_time", NULL), 0, now, errwhen,
                         sizeof(errwhen));
                printf("%-24s %-8s %-10s %-10s %-12s ", str_or(s, "name", "?"),
                       str_or(s, "provider", "?"), str_or(s, "state", "?"),
                       lagbuf, next);
                if (err)
                        printf("%s (%s)\n", err, errwhen);
                else
                        printf("-\n");
                printf("    backfill: events from %s to %s, target %s; "
                       "%lld walk(s), %lld poll(s), %lld event(s)\n",
                       str_or(s, "oldest_event_time", "(none yet)"),
                       str_or(s, "newest_event_time", "(none yet)"),
                       str_or(s, "backfill_target", "(not started)"),
                       (long long)json_integer_value(
                               json_object_get(s, "walks")),
                       (long long)json_integer_value(
                               json_object_get(s, "polls")),
                       (long long)json_integer_value(
                               json_object_get(s, "events")));
                if (json_is_string(json_object_get(s, "oauth")))
                        printf("    oauth: %s; %lld token renewal(s)\n",
                               str_or(s, "oauth", "?"),
                               (long long)json_integer_value(
                                       json_object_get(s, "oauth_refreshes")));
        }
}

int eb_status_main(const char *base)
{
        struct eb_buf b;
        CURL *c;
        CURLcode cc;
        long code = 0;
        char *url;
        size_t n = strlen(base);
        json_error_t jerr;
        json_t *root;
        int rc = 1;

        while (n > 0 && base[n - 1] == '/')
                n--;
        if (n >= 7 && !strncmp(base + n - 7, "/status", 7))
                url = eb_xasprintf("%.*s", (int)n, base);
        else
                url = eb_xasprintf("%.*s/status", (int)n, base);
        eb_buf_init(&b, STATUS_MAX_BODY);
        c = curl_easy_init();
        if (!c) {
                fprintf(stderr, "evbridge status: cannot start libcurl\n");
                goto out;
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        cc = curl_easy_perform(c);
        if (cc != CURLE_OK) {
                fprintf(stderr, "evbridge status: %s: %s\n", url,
                        curl_easy_strerror(cc));
                goto out;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code != 200) {
                fprintf(stderr, "evbridge status: %s: HTTP %ld\n", url, code);
                goto out;
        }
        root = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
        if (!root) {
                fprintf(stderr, "evbridge status: %s: not JSON: %s\n", url,
                        jerr.text);
                goto out;
        }
        print_status(root);
        rc = json_is_true(json_object_get(root, "ready")) ? 0 : 3;
        json_decref(root);
out:
        if (c)
                curl_easy_cleanup(c);
        eb_buf_fini(&b);
        free(url);
        return rc;
}
