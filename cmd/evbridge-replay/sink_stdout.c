/*
 * NDJSON on stdout, one line per event:
 *
 *   {"topic":"crm.close.lead.updated","partition":0,"offset":12,
 *    "timestamp":1718000000000,"key":"acme-close/lead/lead_1",
 *    "event":{...the envelope...}}
 *
 * The envelope is copied byte for byte from a structured record (it is
 * already compact JSON); a binary record's envelope is rebuilt from its
 * ce_ headers. Lines are buffered and flushed per batch; a failed flush
 * stops the replay with the last flushed positions as the resume point.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_buf.h"
#include "eb_util.h"
#include "replay.h"

struct stdout_sink {
        struct rp_sink_s base;
        struct eb_buf line;
        int64_t pending;
};

static int put_key(struct eb_buf *b, const rd_kafka_message_t *m)
{
        json_t *s;
        char *enc, *b64;
        int rc;

        if (!m->key)
                return eb_buf_append_str(b, ",\"key\":null");
        s = json_stringn(m->key, m->key_len);
        if (!s) {
                /* Not UTF-8: keep it, losslessly, beside a null key. */
                b64 = eb_base64_encode(m->key, m->key_len);
                if (!b64)
                        return -ENOMEM;
                rc = eb_buf_printf(b, ",\"key\":null,\"key_base64\":\"%s\"",
                                   b64);
                free(b64);
                return rc;
        }
        enc = json_dumps(s, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref(s);
        if (!enc)
                return -ENOMEM;
        rc = eb_buf_printf(b, ",\"key\":%s", enc);
        free(enc);
        return rc;
}

static int stdout_write(rp_sink_t *s, const struct rp_rec *r, char *errstr,
                        size_t sz)
{
        struct stdout_sink *ss = (struct stdout_sink *)s;
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(r->msg, &tstype);
        json_t *topic = json_string(r->topic);
        char *tenc = topic ? json_dumps(topic, JSON_ENCODE_ANY) : NULL;
        int rc = -ENOMEM;

        eb_buf_reset(&ss->line);
        if (!tenc)
                goto out;
        if (eb_buf_printf(&ss->line,
                          "{\"topic\":%s,\"partition\":%d,"
                          "\"offset\":%lld,",
                          tenc, (int)r->msg->partition,
                          (long long)r->msg->offset))
                goto out;
        if (ts >= 0 ? eb_buf_printf(&ss->line, "\"timestamp\":%lld",
                                    (long long)ts)
                    : eb_buf_append_str(&ss->line, "\"timestamp\":null"))
                goto out;
        if (put_key(&ss->line, r->msg) ||
            eb_buf_append_str(&ss->line, ",\"event\":") ||
            eb_buf_append(&ss->line, r->evt->envelope, r->evt->envelope_len) ||
            eb_buf_append_str(&ss->line, "}\n"))
                goto out;
        if (fwrite(ss->line.data, 1, ss->line.len, stdout) != ss->line.len) {
                snprintf(errstr, sz, "writing to stdout: %s", strerror(errno));
                rc = -EIO;
                goto out;
        }
        ss->pending++;
        rc = 0;
out:
        if (rc == -ENOMEM)
                snprintf(errstr, sz, "out of memory");
        free(tenc);
        json_decref(topic);
        return rc;
}

static int64_t stdout_flush(rp_sink_t *s, char *errstr, size_t sz)
{
        struct stdout_sink *ss = (struct stdout_sink *)s;
        int64_t n = ss->pending;

        if (fflush(stdout) != 0 || ferror(stdout)) {
                snprintf(errstr, sz, "writing to stdout: %s", strerror(errno));
                return -EIO;
        }
        ss->pending = 0;
        return n;
}

static int64_t stdout_pending(rp_sink_t *s)
{
        return ((struct stdout_sink *)s)->pending;
}

static void stdout_free(rp_sink_t *s)
{
        struct stdout_sink *ss = (struct stdout_sink *)s;

        if (!ss)
                return;
        eb_buf_fini(&ss->line);
        free(ss);
}

static const struct rp_sink_ops stdout_ops = {
        .name = "stdout",
        .sync = 0,
        .open = NULL,
        .write = stdout_write,
        .flush = stdout_flush,
        .pending = stdout_pending,
        .summary = NULL,
        .free = stdout_free,
};

rp_sink_t *rp_sink_stdout_new(const struct rp_opts *o)
{
        struct stdout_sink *ss = eb_xcalloc(1, sizeof(*ss));

        ss->base.ops = &stdout_ops;
        ss->base.o = o;
        eb_buf_init(&ss->line, 0);
        return &ss->base;
}
