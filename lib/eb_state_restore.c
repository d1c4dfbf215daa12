/*
 * eb_state_restore.c: the restore I/O. Reads the state topics with a
 * consumer (read_committed, up to the high watermarks seen at the start)
 * and hands every record to the loader (eb_state_loader.c). Blocking; runs
 * at start-up, before the loop serves anything.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_json.h"
#include "eb_kafka.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "state"

/* Properties that only a producer understands: left out of the restore
 * consumer's config (librdkafka would warn about each). */
static const char *const producer_only[] = {
        "acks",
        "request.required.acks",
        "enable.idempotence",
        "enable.gapless.guarantee",
        "transactional.id",
        "transaction.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "linger.ms",
        "queue.buffering.max.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "queue.buffering.backpressure.threshold",
        "batch.num.messages",
        "batch.size",
        "compression.codec",
        "compression.type",
        "compression.level",
        "retries",
        "message.send.max.retries",
        "partitioner",
        "sticky.partitioning.linger.ms",
        "request.timeout.ms",
        "queuing.strategy",
        "produce.offset.report",
        "delivery.report.only.error",
        "dr_cb",
        "dr_msg_cb",
        NULL,
};

static int is_producer_only(const char *key)
{
        size_t i;

        for (i = 0; producer_only[i]; i++)
                if (!strcmp(key, producer_only[i]))
                        return 1;
        return 0;
}

static int cset(rd_kafka_conf_t *conf, const char *what, const char *key,
                const char *val, char *errstr, size_t errstr_size)
{
        char why[600];

        if (!eb_kafka_conf_set(conf, what, key, val, why, sizeof(why)))
                return 0;
        snprintf(errstr, errstr_size, "state restore: %s", why);
        return -EINVAL;
}

rd_kafka_t *eb_state_consumer_new(const char *bootstrap,
                                  const struct eb_config *cfg,
                                  const char *group, const char *role,
                                  const char *const *extra,
                                  rd_kafka_conf_t *conf, char *errstr,
                                  size_t errstr_size)
{
        char *client_id = NULL;
        char msg[512];
        rd_kafka_t *rk = NULL;
        size_t i;

        if (!conf)
                conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        /* A default (properties may change it): don't let the broker hold
         * a fetch at the end of a partition for long, start-up waits on
         * it. */
        if (cset(conf, "fetch.wait.max.ms", "fetch.wait.max.ms", "50", errstr,
                 errstr_size))
                goto fail;
        for (i = 0; i < cfg->properties_cnt; i++) {
                const struct eb_kv *kv = &cfg->properties[i];
                char what[300];

                if (!kv->key || !kv->value || is_producer_only(kv->key))
                        continue;
                snprintf(what, sizeof(what), "kafka.properties.%s", kv->key);
                if (cset(conf, what, kv->key, kv->value, errstr, errstr_size))
                        goto fail;
        }
        client_id = eb_xasprintf("evbridge-%s", role);
        if ((bootstrap && *bootstrap &&
             cset(conf, "bootstrap.servers", "bootstrap.servers", bootstrap,
                  errstr, errstr_size)) ||
            cset(conf, "client.id", "client.id", client_id, errstr,
                 errstr_size) ||
            cset(conf, "group.id", "group.id", group, errstr, errstr_size) ||
            cset(conf, "isolation.level", "isolation.level", "read_committed",
                 errstr, errstr_size) ||
            cset(conf, "auto.offset.reset", "auto.offset.reset", "earliest",
                 errstr, errstr_size) ||
            cset(conf, "enable.auto.commit", "enable.auto.commit", "false",
                 errstr, errstr_size) ||
            cset(conf, "enable.auto.offset.store", "enable.auto.offset.store",
                 "false", errstr, errstr_size))
                goto fail;
        for (i = 0; extra && extra[i] && extra[i + 1]; i += 2)
                if (cset(conf, extra[i], extra[i], extra[i + 1], errstr,
                         errstr_size))
                        goto fail;
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, msg, sizeof(msg));
        if (!rk) {
                char red[512];

                eb_log_redact(msg, red, sizeof(red));
                snprintf(errstr, errstr_size, "%s: %s", role, red);
                goto fail;
        }
        conf = NULL; /* rk owns it */
fail:
        if (conf)
                rd_kafka_conf_destroy(conf);
        free(client_id);
        return rk;
}

static rd_kafka_t *restore_client(const char *bootstrap,
                                  const struct eb_config *cfg,
                                  const char *isolation, const char *role,
                                  char *errstr, size_t errstr_size)
{
        const char *extra[] = {"isolation.level", isolation,
                               "enable.partition.eof", "true", NULL};
        char *group = eb_xasprintf(
                "%s-restore", cfg->transactional_id && *cfg->transactional_id
                                      ? cfg->transactional_id
                                      : eb_state_prefix(cfg));
        rd_kafka_t *rk = eb_state_consumer_new(
                bootstrap, cfg, group, role, extra, NULL, errstr, errstr_size);

        free(group);
        return rk;
}

/* One partition to read. */
struct rpart {
        const char *topic; /* borrowed */
        int32_t partition;
        int64_t lo, hi; /* watermarks at start */
        int64_t pos;    /* next offset to read */
        int done;
};

struct rtopic {
        char *name;
        struct rpart *parts;
        int cnt;
        int missing;
        int by_shard; /* partitioned by shard: only 0 and the shard's own */
};

/* Partition count of @p t (0 and missing=1 if the topic does not exist). */
static int describe_topic(rd_kafka_t *rk, struct rtopic *t, int64_t deadline,
                          char *errstr, size_t errstr_size)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t->name, NULL);
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        int rc = -ETIMEDOUT;
        int i;

        while (eb_mono_left_ms(deadline) > 0) {
                const struct rd_kafka_metadata *md = NULL;
                const struct rd_kafka_metadata_topic *mt;
                int64_t left = eb_mono_left_ms(deadline);
                int leaderless = 0;

                err = rd_kafka_metadata(rk, 0, rkt, &md,
                                        (int)(left > 5000 ? 5000 : left));
                if (err) {
                        if (eb_kafka_auth_error(err)) {
                                rc = -EACCES;
                                break;
                        }
                        usleep(100 * 1000);
                        continue;
                }
                mt = md->topic_cnt == 1 ? &md->topics[0] : NULL;
                err = mt ? mt->err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                    err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
                        rd_kafka_metadata_destroy(md);
                        t->missing = 1;
                        t->cnt = 0;
                        rc = 0;
                        break;
                }
                if (err) {
                        rd_kafka_metadata_destroy(md);
                        if (eb_kafka_auth_error(err)) {
                                rc = -EACCES;
                                break;
                        }
                        usleep(100 * 1000); /* e.g. LEADER_NOT_AVAILABLE */
                        continue;
                }
                for (i = 0; i < mt->partition_cnt; i++)
                        if (mt->partitions[i].leader < 0)
                                leaderless = 1;
                if (leaderless || mt->partition_cnt <= 0) {
                        rd_kafka_metadata_destroy(md);
                        usleep(100 * 1000);
                        continue;
                }
                t->cnt = mt->partition_cnt;
                t->parts = eb_xcalloc((size_t)t->cnt, sizeof(*t->parts));
                for (i = 0; i < t->cnt; i++) {
                        t->parts[i].topic = t->name;
                        t->parts[i].partition = mt->partitions[i].id;
                }
                rd_kafka_metadata_destroy(md);
                rc = 0;
                break;
        }
        rd_kafka_topic_destroy(rkt);
        if (rc)
                snprintf(errstr, errstr_size,
                         "state restore: metadata of %s: %s", t->name,
                         rc == -ETIMEDOUT && !err ? "timed out"
                                                  : rd_kafka_err2str(err));
        return rc;
}

static int query_watermarks(rd_kafka_t *rk, struct rtopic *t, int64_t deadline,
                            char *errstr, size_t errstr_size)
{
        int i;

        for (i = 0; i < t->cnt; i++) {
                struct rpart *p = &t->parts[i];
                rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;

                while (eb_mono_left_ms(deadline) > 0) {
                        int64_t left = eb_mono_left_ms(deadline);

                        err = rd_kafka_query_watermark_offsets(
                                rk, t->name, p->partition, &p->lo, &p->hi,
                                (int)(left > 5000 ? 5000 : left));
                        if (!err || eb_kafka_auth_error(err))
                                break;
                        usleep(100 * 1000);
                }
                if (err) {
                        snprintf(errstr, errstr_size,
                                 "state restore: watermarks of %s[%d]: %s",
                                 t->name, (int)p->partition,
                                 rd_kafka_err2str(err));
                        return eb_kafka_auth_error(err) ? -EACCES
                               : err == RD_KAFKA_RESP_ERR__TIMED_OUT
                                       ? -ETIMEDOUT
                                       : -EIO;
                }
                p->pos = p->lo;
                p->done = p->hi <= p->lo;
        }
        return 0;
}

/*
 * Have @p rk learn @p topic's leaders now. A consumer handle asks for the
 * metadata of a topic it was not bootstrapped with only on its 1 s topic
 * scan, and a partition without a known leader is not fetched before
 * then: that was a second of every restore. Best effort: reading still
 * works without it, just later.
 */
static void prefetch_metadata(rd_kafka_t *rk, const char *topic,
                              int64_t deadline)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int64_t left = eb_mono_left_ms(deadline);

        if (!rkt)
                return;
        if (rd_kafka_metadata(rk, 0, rkt, &md,
                              (int)(left > 5000 ? 5000 : left)) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR &&
            md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
}

/* A topic partitioned by shard: keep only partition 0 (records written
 * before it was partitioned) and the shard's own. */
static void keep_shard_parts(struct rtopic *t, int32_t shard_partition)
{
        int i, k = 0;

        for (i = 0; i < t->cnt; i++)
                if (t->parts[i].partition == 0 ||
                    t->parts[i].partition == shard_partition)
                        t->parts[k++] = t->parts[i];
        t->cnt = k;
}

static struct rpart *find_rpart(struct rtopic *t, int32_t partition)
{
        int i;

        for (i = 0; i < t->cnt; i++)
                if (t->parts[i].partition == partition)
                        return &t->parts[i];
        return NULL;
}

static int left_to_read(const struct rtopic *t)
{
        int i, n = 0;

        for (i = 0; i < t->cnt; i++)
                n += !t->parts[i].done;
        return n;
}

/* Read every partition of @p t to its start-time high watermark. */
/* Sharding filters (eb_state_restore_opts): 1 if the record is wanted. */
static int key_in(const char *const *keys, const void *key, size_t len)
{
        size_t i;

        if (!keys)
                return 1;
        for (i = 0; keys[i]; i++)
                if (key && strlen(keys[i]) == len && !memcmp(keys[i], key, len))
                        return 1;
        return 0;
}

static int want_record(const struct eb_state_restore_opts *o,
                       const struct rtopic *t, int is_seen,
                       const rd_kafka_message_t *m)
{
        char name[EB_STATE_KEY_MAX + 1];

        /* The shard's own partition holds only its records, whatever
         * their kind or key: no filter (a per-source record need not be
         * keyed by the bare source name). */
        if (t->by_shard && m->partition == o->shard_partition)
                return 1;
        if (is_seen)
                return key_in(o->seen_keys, m->key, m->key_len);
        if (!o->want_source || !m->key || m->key_len > EB_STATE_KEY_MAX)
                return 1; /* garbage is the loader's to count */
        memcpy(name, m->key, m->key_len);
        name[m->key_len] = '\0';
        return o->want_source(name, o->want_opaque);
}

static int read_topic(rd_kafka_t *rk, struct rtopic *t, int is_seen,
                      eb_state_loader_t *ld,
                      const struct eb_state_restore_opts *o, int64_t deadline,
                      char *errstr, size_t errstr_size)
{
        rd_kafka_topic_partition_list_t *tpl;
        rd_kafka_resp_err_t err;
        int rc = 0;
        int i;

        if (!left_to_read(t))
                return 0;
        /* From the low watermark read at the start, not BEGINNING: a
         * logical offset is resolved by a ListOffsets that librdkafka 2.0.2
         * puts on a 500 ms timer when the partition's leader is not known
         * yet, as it never is on a fresh handle (it was half of every
         * restore, per topic). If the log start moved meanwhile,
         * auto.offset.reset=earliest takes over. */
        tpl = rd_kafka_topic_partition_list_new(t->cnt);
        for (i = 0; i < t->cnt; i++)
                if (!t->parts[i].done)
                        rd_kafka_topic_partition_list_add(tpl, t->name,
                                                          t->parts[i].partition)
                                ->offset = t->parts[i].pos;
        err = rd_kafka_assign(rk, tpl);
        rd_kafka_topic_partition_list_destroy(tpl);
        if (err) {
                snprintf(errstr, errstr_size, "state restore: assign %s: %s",
                         t->name, rd_kafka_err2str(err));
                return -EIO;
        }
        while (left_to_read(t)) {
                rd_kafka_message_t *m;
                struct rpart *p;
                int64_t left = eb_mono_left_ms(deadline);

                if (!left) {
                        char *b = errstr;
                        size_t sz = errstr_size;
                        int n = snprintf(b, sz,
                                         "state restore: timed out reading "
                                         "%s:",
                                         t->name);

                        for (i = 0; i < t->cnt && n > 0 && (size_t)n < sz;
                             i++) {
                                const struct rpart *q = &t->parts[i];

                                if (q->done)
                                        continue;
                                b += n;
                                sz -= (size_t)n;
                                n = snprintf(b, sz,
                                             " partition %d at offset %lld "
                                             "of %lld;",
                                             (int)q->partition,
                                             (long long)q->pos,
                                             (long long)q->hi);
                        }
                        rc = -ETIMEDOUT;
                        break;
                }
                m = rd_kafka_consumer_poll(rk, (int)(left > 200 ? 200 : left));
                if (!m)
                        continue;
                p = m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), t->name)
                            ? find_rpart(t, m->partition)
                            : NULL;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (p) {
                                if (m->offset > p->pos)
                                        p->pos = m->offset;
                                if (p->pos >= p->hi)
                                        p->done = 1;
                        }
                } else if (m->err) {
                        if (eb_kafka_auth_error(m->err) ||
                            m->err == RD_KAFKA_RESP_ERR__FATAL) {
                                snprintf(errstr, errstr_size,
                                         "state restore: reading %s: %s",
                                         t->name, rd_kafka_message_errstr(m));
                                rc = eb_kafka_auth_error(m->err) ? -EACCES
                                                                 : -EIO;
                                rd_kafka_message_destroy(m);
                                break;
                        }
                        eb_debug(MOD, "restore: %s: %s", t->name,
                                 rd_kafka_message_errstr(m));
                } else if (p && !p->done && m->offset < p->hi) {
                        if (!want_record(o, t, is_seen, m))
                                ; /* another shard's */
                        else if (is_seen)
                                (void)eb_state_loader_seen(ld, m->payload,
                                                           m->len);
                        else
                                (void)eb_state_loader_checkpoint(
                                        ld, m->key, m->key_len, m->payload,
                                        m->len, m->partition, m->offset);
                        p->pos = m->offset + 1;
                        if (p->pos >= p->hi)
                                p->done = 1;
                }
                rd_kafka_message_destroy(m);
        }
        (void)rd_kafka_assign(rk, NULL);
        return rc;
}

/*
 * Partitions and high watermarks of both topics, from a read_uncommitted
 * handle (the true ends). A shard keeps only its own partition of topics
 * partitioned by shard (bit i of *partitionedp for topics[i]).
 */
static int measure_topics(const char *bootstrap, const struct eb_config *cfg,
                          const struct eb_state_restore_opts *o,
                          struct rtopic topics[2], int64_t deadline,
                          int nparts[2], int *partitionedp, char *errstr,
                          size_t errstr_size)
{
        rd_kafka_t *meta = restore_client(bootstrap, cfg, "read_uncommitted",
                                          "restore-meta", errstr, errstr_size);
        int rc = 0, i;

        if (!meta)
                return -EINVAL;
        for (i = 0; i < 2 && !rc; i++) {
                rc = describe_topic(meta, &topics[i], deadline, errstr,
                                    errstr_size);
                if (rc)
                        break;
                if (topics[i].missing) {
                        eb_warn(MOD,
                                "state topic %s does not exist: starting "
                                "with no %s",
                                topics[i].name,
                                i == 0 ? "dedupe ids" : "checkpoints");
                        continue;
                }
                nparts[i] = topics[i].cnt;
                if (o->shard_partition > 0 && o->partitions > 1 &&
                    topics[i].cnt == o->partitions) {
                        keep_shard_parts(&topics[i], o->shard_partition);
                        topics[i].by_shard = 1;
                        *partitionedp |= 1 << i;
                }
                rc = query_watermarks(meta, &topics[i], deadline, errstr,
                                      errstr_size);
        }
        rd_kafka_destroy(meta);
        return rc;
}

int eb_state_restore(const char *bootstrap, const struct eb_config *cfg,
                     const struct eb_state_restore_opts *opts, eb_dedupe_t *dd,
                     json_t *checkpoints_out, struct eb_state_restore_stats *st,
                     char *errstr, size_t errstr_size)
{
        struct eb_state_restore_opts o;
        struct eb_state_restore_stats stats;
        struct rtopic topics[2];
        eb_state_loader_t *ld = NULL;
        rd_kafka_t *rk = NULL;
        int64_t start = eb_mono_ms();
        int64_t deadline;
        int nparts[2] = {0, 0}, partitioned = 0;
        int rc = -EIO;
        int i;

        memset(&o, 0, sizeof(o));
        if (opts)
                o = *opts;
        if (o.timeout_ms <= 0)
                o.timeout_ms = EB_STATE_RESTORE_TIMEOUT_MS;
        if (o.now_s <= 0)
                o.now_s = eb_now_ms() / 1000;
        deadline = start + o.timeout_ms;
        memset(topics, 0, sizeof(topics));
        memset(&stats, 0, sizeof(stats));
        if (!dd || !json_is_object(checkpoints_out)) {
                snprintf(errstr, errstr_size,
                         "state restore: no table or checkpoint map");
                return -EINVAL;
        }
        topics[0].name = eb_state_topic_seen(cfg);
        topics[1].name = eb_state_topic_checkpoints(cfg);

        rc = measure_topics(bootstrap, cfg, &o, topics, deadline, nparts,
                            &partitioned, errstr, errstr_size);
        if (rc)
                goto out;

        rk = restore_client(bootstrap, cfg, "read_committed", "restore", errstr,
                            errstr_size);
        if (!rk) {
                rc = -EINVAL;
                goto out;
        }
        for (i = 0; i < 2; i++)
                if (!topics[i].missing && left_to_read(&topics[i]))
                        prefetch_metadata(rk, topics[i].name, deadline);
        ld = eb_state_loader_new(dd, o.now_s, o.distrust_tail);
        /* .seen first: checkpoints are judged by what it proves. */
        rc = read_topic(rk, &topics[0], 1, ld, &o, deadline, errstr,
                        errstr_size);
        if (rc)
                goto out;
        eb_state_loader_seen_done(ld);
        rc = read_topic(rk, &topics[1], 0, ld, &o, deadline, errstr,
                        errstr_size);
        if (rc)
                goto out;
        eb_state_loader_finish(ld, checkpoints_out, &stats);
        stats.ms = eb_mono_ms() - start;
        eb_info(MOD,
                "restored %llu ids (%llu expired, %llu of aborted "
                "transactions skipped) and %llu checkpoints from %llu "
                "records in %lld ms%s",
                (unsigned long long)stats.ids,
                (unsigned long long)stats.ids_expired,
                (unsigned long long)stats.ids_aborted,
                (unsigned long long)stats.checkpoints,
                (unsigned long long)stats.records, (long long)stats.ms,
                stats.garbage ? " (some records were undecodable)" : "");
        rc = 0;
out:
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        if (ld && rc) {
                eb_state_loader_finish(ld, NULL, &stats);
                stats.ms = eb_mono_ms() - start;
        }
        eb_state_loader_free(ld);
        for (i = 0; i < 2; i++) {
                free(topics[i].name);
                free(topics[i].parts);
        }
        stats.partitions_seen = nparts[0];
        stats.partitions_checkpoints = nparts[1];
        stats.partitioned = partitioned;
        if (st)
                *st = stats;
        return rc;
}
