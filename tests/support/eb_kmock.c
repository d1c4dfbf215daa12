#include "eb_kmock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eb_log.h"

#define EB_KMOCK_MAX_BROKERS 16

struct eb_kmock_s {
        rd_kafka_t *rk; /* owns the cluster (librdkafka 2.0.2 needs one) */
        rd_kafka_mock_cluster_t *mc;
        char *bootstrap;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xstrndup0(const void *p, size_t n)
{
        char *s = malloc(n + 1);

        if (!s) {
                fprintf(stderr, "eb_kmock: out of memory\n");
                abort();
        }
        if (n)
                memcpy(s, p, n);
        s[n] = '\0';
        return s;
}

/* A quiet client config shared by every helper handle. */
static rd_kafka_conf_t *base_conf(const char *bootstrap, const char *client_id)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[256];

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        if (rd_kafka_conf_set(conf, "client.id", client_id, err, sizeof(err)) ||
            rd_kafka_conf_set(conf, "log_level", "4", err, sizeof(err)) ||
            (bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers",
                                            bootstrap, err, sizeof(err)))) {
                fprintf(stderr, "eb_kmock: conf: %s\n", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        return conf;
}

eb_kmock_t *eb_kmock_start(int brokers)
{
        eb_kmock_t *m = NULL;
        rd_kafka_conf_t *conf = NULL;
        char err[256];

        if (brokers < 1 || brokers > EB_KMOCK_MAX_BROKERS) {
                fprintf(stderr, "eb_kmock: %d brokers is out of range\n",
                        brokers);
                return NULL;
        }
        conf = base_conf(NULL, "eb-kmock-cluster");
        if (!conf)
                return NULL;
        m = calloc(1, sizeof(*m));
        if (!m)
                goto fail;
        m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!m->rk) {
                fprintf(stderr, "eb_kmock: rd_kafka_new: %s\n", err);
                goto fail;
        }
        conf = NULL;
        m->mc = rd_kafka_mock_cluster_new(m->rk, brokers);
        if (!m->mc) {
                fprintf(stderr, "eb_kmock: cannot create mock cluster\n");
                goto fail;
        }
        m->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(m->mc));
        if (!m->bootstrap)
                goto fail;
        return m;
fail:
        if (conf)
                rd_kafka_conf_destroy(conf);
        eb_kmock_stop(m);
        return NULL;
}

const char *eb_kmock_bootstrap(const eb_kmock_t *m)
{
        return m->bootstrap;
}

rd_kafka_mock_cluster_t *eb_kmock_cluster(eb_kmock_t *m)
{
        return m->mc;
}

void eb_kmock_stop(eb_kmock_t *m)
{
        if (!m)
                return;
        if (m->mc)
                rd_kafka_mock_cluster_destroy(m->mc);
        if (m->rk)
                rd_kafka_destroy(m->rk);
        free(m->bootstrap);
        free(m);
}

int eb_kmock_create_topic(rd_kafka_mock_cluster_t *mc, const char *topic,
                          int partitions)
{
        rd_kafka_resp_err_t err;

        if (!mc || !topic || !*topic || partitions < 1)
                return -EINVAL;
        /* The mock places replicas itself (min(3, brokers)); 1 is always
         * accepted. */
        err = rd_kafka_mock_topic_create(mc, topic, partitions, 1);
        if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                return -EEXIST;
        if (err) {
                fprintf(stderr, "eb_kmock: create topic %s: %s\n", topic,
                        rd_kafka_err2str(err));
                return -EINVAL;
        }
        return 0;
}

/*
 * Metadata for all topics, retried until @p deadline while the cluster is
 * unreachable or a partition has no leader yet.
 */
static int fetch_metadata(rd_kafka_t *rk, int64_t deadline,
                          const struct rd_kafka_metadata **mdp)
{
        for (;;) {
                const struct rd_kafka_metadata *md = NULL;
                int64_t left = deadline - now_ms();
                rd_kafka_resp_err_t err;
                int leaderless = 0;
                int i, j;

                if (left <= 0)
                        return -ETIMEDOUT;
                err = rd_kafka_metadata(rk, 1, NULL, &md,
                                        (int)(left > 5000 ? 5000 : left));
                if (err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
                    err == RD_KAFKA_RESP_ERR__TRANSPORT) {
                        usleep(100 * 1000); /* not reachable yet */
                        continue;
                }
                if (err) {
                        fprintf(stderr, "eb_kmock: metadata: %s\n",
                                rd_kafka_err2str(err));
                        return -EIO;
                }
                for (i = 0; i < md->topic_cnt; i++)
                        for (j = 0; j < md->topics[i].partition_cnt; j++)
                                if (md->topics[i].partitions[j].leader < 0)
                                        leaderless = 1;
                if (!leaderless) {
                        *mdp = md;
                        return 0;
                }
                rd_kafka_metadata_destroy(md);
                usleep(100 * 1000);
        }
}

static int topic_cmp(const void *a, const void *b)
{
        const struct eb_kmock_topic *x = a, *y = b;

        return strcmp(x->name, y->name);
}

int eb_kmock_list_topics(const char *bootstrap, int timeout_ms,
                         struct eb_kmock_topic **topicsp, size_t *cntp)
{
        int64_t deadline = now_ms() + timeout_ms;
        const struct rd_kafka_metadata *md = NULL;
        struct eb_kmock_topic *v = NULL;
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk = NULL;
        char err[256];
        size_t n = 0;
        int rc;
        int i;

        *topicsp = NULL;
        *cntp = 0;
        conf = base_conf(bootstrap, "eb-kmock-meta");
        if (!conf)
                return -EIO;
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "eb_kmock: rd_kafka_new: %s\n", err);
                rd_kafka_conf_destroy(conf);
                return -EIO;
        }
        rc = fetch_metadata(rk, deadline, &md);
        if (rc)
                goto out;
        v = calloc((size_t)md->topic_cnt + 1, sizeof(*v));
        if (!v) {
                rc = -ENOMEM;
                goto out;
        }
        for (i = 0; i < md->topic_cnt; i++) {
                if (md->topics[i].err)
                        continue;
                v[n].name = xstrndup0(md->topics[i].topic,
                                      strlen(md->topics[i].topic));
                v[n].partitions = md->topics[i].partition_cnt;
                n++;
        }
        qsort(v, n, sizeof(*v), topic_cmp);
        *topicsp = v;
        *cntp = n;
        v = NULL;
out:
        free(v);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return rc;
}

void eb_kmock_topics_free(struct eb_kmock_topic *topics, size_t cnt)
{
        size_t i;

        if (!topics)
                return;
        for (i = 0; i < cnt; i++)
                free(topics[i].name);
        free(topics);
}

int eb_kmock_topics_has(const struct eb_kmock_topic *topics, size_t cnt,
                        const char *name)
{
        size_t i;

        for (i = 0; i < cnt; i++)
                if (!strcmp(topics[i].name, name))
                        return 1;
        return 0;
}

/* Per-partition progress of eb_kmock_consume_all(). */
struct part {
        const char *topic; /* borrowed from the caller's list */
        int32_t partition;
        int at_end; /* EOF seen and nothing read since */
};

static struct part *find_part(struct part *parts, size_t n, const char *topic,
                              int32_t partition)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (parts[i].partition == partition &&
                    !strcmp(parts[i].topic, topic))
                        return &parts[i];
        return NULL;
}

static void record_from(struct eb_kmock_record *r, const rd_kafka_message_t *m)
{
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_timestamp_type_t tstype;
        size_t i;

        memset(r, 0, sizeof(*r));
        r->topic = xstrndup0(rd_kafka_topic_name(m->rkt),
                             strlen(rd_kafka_topic_name(m->rkt)));
        r->partition = m->partition;
        r->offset = m->offset;
        if (m->key) {
                r->key = xstrndup0(m->key, m->key_len);
                r->key_len = m->key_len;
        }
        if (m->payload) {
                r->value = xstrndup0(m->payload, m->len);
                r->value_len = m->len;
        }
        r->timestamp = rd_kafka_message_timestamp(m, &tstype);
        if (rd_kafka_message_headers(m, &hdrs) || !hdrs)
                return;
        r->header_cnt = rd_kafka_header_cnt(hdrs);
        r->headers =
                calloc(r->header_cnt ? r->header_cnt : 1, sizeof(*r->headers));
        if (!r->headers) {
                fprintf(stderr, "eb_kmock: out of memory\n");
                abort();
        }
        for (i = 0; i < r->header_cnt; i++) {
                const char *name = NULL;
                const void *val = NULL;
                size_t size = 0;

                if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size))
                        break;
                r->headers[i].name = xstrndup0(name, strlen(name));
                if (val) {
                        r->headers[i].value = xstrndup0(val, size);
                        r->headers[i].value_len = size;
                }
        }
}

static int record_cmp(const void *a, const void *b)
{
        const struct eb_kmock_record *x = a, *y = b;
        int c = strcmp(x->topic, y->topic);

        if (c)
                return c;
        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        if (x->offset != y->offset)
                return x->offset < y->offset ? -1 : 1;
        return 0;
}

static int push_record(struct eb_kmock_records *out, size_t *cap,
                       const rd_kafka_message_t *m)
{
        if (out->cnt == *cap) {
                size_t ncap = *cap ? *cap * 2 : 64;
                struct eb_kmock_record *nv =
                        realloc(out->v, ncap * sizeof(*nv));

                if (!nv)
                        return -ENOMEM;
                out->v = nv;
                *cap = ncap;
        }
        record_from(&out->v[out->cnt++], m);
        return 0;
}

int eb_kmock_consume_all(const char *bootstrap, const char *const *topics,
                         int timeout_ms, struct eb_kmock_records *out)
{
        int64_t deadline = now_ms() + timeout_ms;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *tpl = NULL;
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        struct part *parts = NULL;
        size_t nparts = 0, pending, cap = 0;
        static unsigned seq;
        char group[64];
        char err[256];
        size_t t;
        int rc = -EIO;
        int i, j;

        out->v = NULL;
        out->cnt = 0;
        conf = base_conf(bootstrap, "eb-kmock-reader");
        if (!conf)
                return -EIO;
        /*
         * rd_kafka_consumer_poll() needs a group.id even with a manual
         * assignment; a fresh one per call and no commits keeps every read
         * independent of the others.
         */
        snprintf(group, sizeof(group), "eb-kmock-%ld-%u", (long)getpid(),
                 seq++);
        if (rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
            rd_kafka_conf_set(conf, "isolation.level", "read_committed", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "enable.partition.eof", "true", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err,
                              sizeof(err))) {
                fprintf(stderr, "eb_kmock: conf: %s\n", err);
                goto out;
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "eb_kmock: rd_kafka_new: %s\n", err);
                goto out;
        }
        conf = NULL;
        rd_kafka_poll_set_consumer(rk);

        rc = fetch_metadata(rk, deadline, &md);
        if (rc)
                goto out;
        tpl = rd_kafka_topic_partition_list_new(16);
        for (t = 0; topics[t]; t++) {
                const struct rd_kafka_metadata_topic *mt = NULL;

                for (i = 0; i < md->topic_cnt; i++)
                        if (!strcmp(md->topics[i].topic, topics[t]) &&
                            !md->topics[i].err)
                                mt = &md->topics[i];
                if (!mt) {
                        fprintf(stderr, "eb_kmock: topic %s does not exist\n",
                                topics[t]);
                        rc = -ENOENT;
                        goto out;
                }
                for (j = 0; j < mt->partition_cnt; j++) {
                        struct part *np =
                                realloc(parts, (nparts + 1) * sizeof(*parts));

                        if (!np) {
                                rc = -ENOMEM;
                                goto out;
                        }
                        parts = np;
                        parts[nparts].topic = topics[t];
                        parts[nparts].partition = mt->partitions[j].id;
                        parts[nparts].at_end = 0;
                        nparts++;
                        rd_kafka_topic_partition_list_add(tpl, topics[t],
                                                          mt->partitions[j].id)
                                ->offset = RD_KAFKA_OFFSET_BEGINNING;
                }
        }
        if (rd_kafka_assign(rk, tpl)) {
                fprintf(stderr, "eb_kmock: assign failed\n");
                rc = -EIO;
                goto out;
        }

        pending = nparts;
        rc = 0;
        while (pending > 0) {
                rd_kafka_message_t *m;
                struct part *p;

                if (now_ms() >= deadline) {
                        fprintf(stderr,
                                "eb_kmock: %zu of %zu partitions not read to "
                                "the end in time\n",
                                pending, nparts);
                        rc = -ETIMEDOUT;
                        break;
                }
                m = rd_kafka_consumer_poll(rk, 100);
                if (!m)
                        continue;
                p = m->rkt ? find_part(parts, nparts,
                                       rd_kafka_topic_name(m->rkt),
                                       m->partition)
                           : NULL;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (p && !p->at_end) {
                                p->at_end = 1;
                                pending--;
                        }
                } else if (m->err) {
                        /* Transient consumer errors (a broker going away)
                         * are retried by librdkafka; only report them. */
                        fprintf(stderr, "eb_kmock: consumer: %s\n",
                                rd_kafka_message_errstr(m));
                } else {
                        if (p && p->at_end) {
                                p->at_end = 0; /* more arrived after EOF */
                                pending++;
                        }
                        if (push_record(out, &cap, m)) {
                                rd_kafka_message_destroy(m);
                                rc = -ENOMEM;
                                break;
                        }
                }
                rd_kafka_message_destroy(m);
        }
        if (out->cnt > 1)
                qsort(out->v, out->cnt, sizeof(*out->v), record_cmp);
out:
        if (conf)
                rd_kafka_conf_destroy(conf);
        if (tpl)
                rd_kafka_topic_partition_list_destroy(tpl);
        if (md)
                rd_kafka_metadata_destroy(md);
        if (rk) {
                (void)rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        free(parts);
        return rc;
}

void eb_kmock_records_free(struct eb_kmock_records *recs)
{
        size_t i, j;

        if (!recs)
                return;
        for (i = 0; i < recs->cnt; i++) {
                struct eb_kmock_record *r = &recs->v[i];

                free(r->topic);
                free(r->key);
                free(r->value);
                for (j = 0; j < r->header_cnt; j++) {
                        free(r->headers[j].name);
                        free(r->headers[j].value);
                }
                free(r->headers);
        }
        free(recs->v);
        recs->v = NULL;
        recs->cnt = 0;
}

const char *eb_kmock_header(const struct eb_kmock_record *rec, const char *name)
{
        const char *v = NULL;
        size_t i;

        for (i = 0; i < rec->header_cnt; i++)
                if (!strcmp(rec->headers[i].name, name))
                        v = rec->headers[i].value;
        return v;
}

size_t eb_kmock_header_count(const struct eb_kmock_record *rec,
                             const char *name)
{
        size_t i, n = 0;

        for (i = 0; i < rec->header_cnt; i++)
                if (!strcmp(rec->headers[i].name, name))
                        n++;
        return n;
}

size_t eb_kmock_count(const struct eb_kmock_records *recs, const char *topic)
{
        size_t i, n = 0;

        for (i = 0; i < recs->cnt; i++)
                if (!strcmp(recs->v[i].topic, topic))
                        n++;
        return n;
}
