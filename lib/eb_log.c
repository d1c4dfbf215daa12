#include "eb_log.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

eb_log_level_t eb_log_level = EB_LOG_INFO;

static eb_log_format_t log_format = EB_LOG_FMT_TEXT;
static void (*log_sink)(const char *line, void *opaque);
static void *log_sink_opaque;

/* Secrets are few (one or two per source) and set at start-up or reload;
 * a plain array behind a mutex is enough. librdkafka may log from its own
 * threads, hence the lock. */
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char **secrets;
static size_t secrets_cnt;

#define EB_LOG_LINE_MAX 8192

void eb_log_set_level(eb_log_level_t lvl)
{
        eb_log_level = lvl;
}

void eb_log_set_format(eb_log_format_t fmt)
{
        log_format = fmt;
}

int eb_log_level_parse(const char *s, eb_log_level_t *lvl)
{
        static const char *names[] = {"debug", "info", "warn", "error", "off"};
        size_t i;

        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (!strcasecmp(s, names[i])) {
                        *lvl = (eb_log_level_t)i;
                        return 0;
                }
        }
        if (!strcasecmp(s, "warning")) {
                *lvl = EB_LOG_WARN;
                return 0;
        }
        return -EINVAL;
}

void eb_log_add_secret(const char *secret)
{
        char **n;
        size_t i;

        if (!secret || strlen(secret) < 4)
                return;
        pthread_mutex_lock(&secrets_lock);
        for (i = 0; i < secrets_cnt; i++) {
                if (!strcmp(secrets[i], secret))
                        goto out;
        }
        n = realloc(secrets, (secrets_cnt + 1) * sizeof(*secrets));
        if (!n)
                goto out;
        secrets = n;
        secrets[secrets_cnt] = strdup(secret);
        if (secrets[secrets_cnt])
                secrets_cnt++;
out:
        pthread_mutex_unlock(&secrets_lock);
}

void eb_log_remove_secret(const char *secret)
{
        size_t i;

        if (!secret)
                return;
        pthread_mutex_lock(&secrets_lock);
        for (i = 0; i < secrets_cnt; i++) {
                if (strcmp(secrets[i], secret))
                        continue;
                memset(secrets[i], 0, strlen(secrets[i]));
                free(secrets[i]);
                secrets[i] = secrets[--secrets_cnt];
                break;
        }
        pthread_mutex_unlock(&secrets_lock);
}

size_t eb_log_secret_count(void)
{
        size_t n;

        pthread_mutex_lock(&secrets_lock);
        n = secrets_cnt;
        pthread_mutex_unlock(&secrets_lock);
        return n;
}

void eb_log_clear_secrets(void)
{
        size_t i;

        pthread_mutex_lock(&secrets_lock);
        for (i = 0; i < secrets_cnt; i++) {
                /* Scrub: the freed block may be handed out again. */
                memset(secrets[i], 0, strlen(secrets[i]));
                free(secrets[i]);
        }
        free(secrets);
        secrets = NULL;
        secrets_cnt = 0;
        pthread_mutex_unlock(&secrets_lock);
}

void eb_log_shutdown(void)
{
        eb_log_clear_secrets();
}

void eb_log_set_sink(void (*fn)(const char *line, void *opaque), void *opaque)
{
        log_sink = fn;
        log_sink_opaque = opaque;
}

char *eb_log_redact(const char *in, char *out, size_t outsz)
{
        size_t o = 0;
        const char *p = in;

        if (!outsz)
                return out;
        pthread_mutex_lock(&secrets_lock);
        while (*p && o + 1 < outsz) {
                size_t i, hit = 0;

                for (i = 0; i < secrets_cnt; i++) {
                        size_t l = strlen(secrets[i]);
                        if (!strncmp(p, secrets[i], l)) {
                                hit = l;
                                break;
                        }
                }
                if (hit) {
                        const char *mask = "***";
                        while (*mask && o + 1 < outsz)
                                out[o++] = *mask++;
                        p += hit;
                } else {
                        out[o++] = *p++;
                }
        }
        out[o] = '\0';
        pthread_mutex_unlock(&secrets_lock);
        return out;
}

static void fmt_time(char *buf, size_t sz)
{
        struct timeval tv;
        struct tm tm;

        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(buf, sz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

/* JSON string escaping for the json format. The message is ours or a
 * library's and may hold quotes and control bytes; those are escaped. Bytes
 * >= 0x80 pass through unchanged. */
static size_t json_escape(const char *in, char *out, size_t outsz)
{
        size_t o = 0;

        for (; *in && o + 7 < outsz; in++) {
                unsigned char c = (unsigned char)*in;
                switch (c) {
                case '"':
                case '\\':
                        out[o++] = '\\';
                        out[o++] = (char)c;
                        break;
                case '\n':
                        out[o++] = '\\';
                        out[o++] = 'n';
                        break;
                case '\t':
                        out[o++] = '\\';
                        out[o++] = 't';
                        break;
                case '\r':
                        out[o++] = '\\';
                        out[o++] = 'r';
                        break;
                default:
                        if (c < 0x20)
                                o += (size_t)snprintf(out + o, outsz - o,
                                                      "\\u%04x", c);
                        else
                                out[o++] = (char)c;
                }
        }
        out[o] = '\0';
        return o;
}

void eb_log_vwrite(eb_log_level_t lvl, const char *mod, const char *fmt,
                   va_list ap)
{
        static const char letters[] = "DIWE";
        static const char *names[] = {"debug", "info", "warn", "error"};
        char msg[EB_LOG_LINE_MAX], red[EB_LOG_LINE_MAX];
        char line[EB_LOG_LINE_MAX * 2], ts[32];
        char *nl;

        if (lvl < EB_LOG_DEBUG || lvl > EB_LOG_ERROR)
                lvl = EB_LOG_ERROR;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        /* One record is one line, whatever the message holds. */
        while ((nl = strpbrk(msg, "\r\n")))
                *nl = ' ';
        eb_log_redact(msg, red, sizeof(red));
        fmt_time(ts, sizeof(ts));

        if (log_format == EB_LOG_FMT_JSON) {
                char esc[EB_LOG_LINE_MAX + 64], emod[64];
                json_escape(red, esc, sizeof(esc));
                json_escape(mod ? mod : "-", emod, sizeof(emod));
                snprintf(line, sizeof(line),
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"%s\","
                         "\"msg\":\"%s\"}",
                         ts, names[lvl], emod, esc);
        } else {
                snprintf(line, sizeof(line), "%s %c %s: %s", ts, letters[lvl],
                         mod ? mod : "-", red);
        }

        if (log_sink) {
                log_sink(line, log_sink_opaque);
        } else {
                size_t l = strlen(line);
                line[l] = '\n';
                fwrite(line, 1, l + 1, stderr);
        }
}

void eb_log_write(eb_log_level_t lvl, const char *mod, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        eb_log_vwrite(lvl, mod, fmt, ap);
        va_end(ap);
}

static void libevent_log_cb(int severity, const char *msg)
{
        eb_log_level_t lvl;

        /* Must not call back into libevent from here. */
        switch (severity) {
        case EVENT_LOG_DEBUG:
                lvl = EB_LOG_DEBUG;
                break;
        case EVENT_LOG_MSG:
                lvl = EB_LOG_INFO;
                break;
        case EVENT_LOG_WARN:
                lvl = EB_LOG_WARN;
                break;
        default:
                lvl = EB_LOG_ERROR;
        }
        eb_log(lvl, "libevent", "%s", msg);
}

void eb_log_hook_libevent(void)
{
        event_set_log_callback(libevent_log_cb);
}

void eb_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac,
                       const char *buf)
{
        eb_log_level_t lvl;

        (void)rk;
        if (level <= 3) /* emerg, alert, crit, err */
                lvl = EB_LOG_ERROR;
        else if (level == 4) /* warning */
                lvl = EB_LOG_WARN;
        else if (level <= 6) /* notice, info */
                lvl = EB_LOG_INFO;
        else
                lvl = EB_LOG_DEBUG;
        eb_log(lvl, "rdkafka", "%s: %s", fac ? fac : "-", buf ? buf : "");
}
