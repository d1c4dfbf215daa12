/*
 * Kafka plumbing for evbridge-replay: clients, topic selection,
 * watermarks, and turning positions into offsets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eb_log.h"
#include "eb_time.h"
#include "eb_util.h"
#include "replay.h"

volatile sig_atomic_t rp_stop_signal;

int64_t rp_mono_ms(void)
{
        return eb_mono_ms();
}

void rp_sleep_ms(int64_t ms)
{
        int64_t end = rp_mono_ms() + ms;

        while (!rp_stop_signal) {
                int64_t left = end - rp_mono_ms();
                struct timespec ts;

                if (left <= 0)
                        break;
                if (left > 100)
                        left = 100;
                ts.tv_sec = 0;
                ts.tv_nsec = (long)left * 1000000L;
                nanosleep(&ts, NULL);
        }
}

void rp_private_group(char *buf, size_t sz, const char *what)
{
        static unsigned seq;

        snprintf(buf, sz, "evbridge-replay-%s-%ld-%lld-%u", what,
                 (long)getpid(), (long long)eb_now_ms(), seq++);
}

rd_kafka_t *rp_kafka_new(const struct rp_opts *o, rd_kafka_type_t type,
                         const char *const *kv, char *errstr, size_t sz)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[512], key[256];
        rd_kafka_t *rk;
        size_t i;

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        if (rd_kafka_conf_set(conf, "client.id", "evbridge-replay", err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, err,
                              sizeof(err)) ||
            rd_kafka_conf_set(conf, "log_level", "4", err, sizeof(err))) {
                snprintf(errstr, sz, "kafka: %s", err);
                goto fail;
        }
        for (i = 0; kv && kv[i]; i += 2)
                if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], err,
                                      sizeof(err))) {
                        snprintf(errstr, sz, "kafka: %s=%s: %s", kv[i],
                                 kv[i + 1], err);
                        goto fail;
                }
        for (i = 0; i < o->nprops; i++) {
                const char *eq = strchr(o->props[i], '=');
                size_t klen = eq ? (size_t)(eq - o->props[i]) : 0;

                if (!eq || !klen || klen >= sizeof(key)) {
                        snprintf(errstr, sz, "-X %s: expected key=value",
                                 o->props[i]);
                        goto fail;
                }
                memcpy(key, o->props[i], klen);
                key[klen] = '\0';
                /* Passwords and keys must not reach any message, ours or
                 * librdkafka's (its log lines go through eb_log). */
                if (strstr(key, "password") || strstr(key, "secret") ||
                    strstr(key, "key") || strstr(key, "token") ||
                    strstr(key, "jaas"))
                        eb_log_add_secret(eq + 1);
                if (rd_kafka_conf_set(conf, key, eq + 1, err, sizeof(err))) {
                        char safe[sizeof(err)];

                        /* Never echo the value itself. */
                        eb_log_redact(err, safe, sizeof(safe));
                        snprintf(errstr, sz, "-X %s: %s", key, safe);
                        goto fail;
                }
        }
        rk = rd_kafka_new(type, conf, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, sz, "kafka: %s", err);
                goto fail;
        }
        return rk;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/* ---- topic selection ---------------------------------------------------- */

static int fetch_metadata(rd_kafka_t *rk, int64_t timeout_ms,
                          const struct rd_kafka_metadata **mdp, char *errstr,
                          size_t sz)
{
        int64_t deadline = rp_mono_ms() + timeout_ms;
        rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR__TIMED_OUT;

        for (;;) {
                const struct rd_kafka_metadata *md = NULL;
                int64_t left = deadline - rp_mono_ms();
                rd_kafka_resp_err_t err;
                int leaderless = 0, i, j;

                if (left <= 0 || rp_stop_signal) {
                        snprintf(errstr, sz,
                                 "cannot read cluster metadata: %s "
                                 "(are the brokers reachable?)",
                                 rd_kafka_err2str(last));
                        return -ETIMEDOUT;
                }
                err = rd_kafka_metadata(rk, 1, NULL, &md,
                                        (int)(left > 5000 ? 5000 : left));
                if (err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
                    err == RD_KAFKA_RESP_ERR__TRANSPORT) {
                        last = err;
                        rp_sleep_ms(100);
                        continue;
                }
                if (err) {
                        snprintf(errstr, sz, "metadata: %s",
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
                last = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
                rd_kafka_metadata_destroy(md);
                rp_sleep_ms(100);
        }
}

static int part_cmp(const void *a, const void *b)
{
        const struct rp_part *x = a, *y = b;
        int c = strcmp(x->topic, y->topic);

        if (c)
                return c;
        return x->partition < y->partition ? -1 : x->partition > y->partition;
}

static int has_part(const struct rd_kafka_metadata_topic *mt, int32_t id)
{
        int j;

        for (j = 0; j < mt->partition_cnt; j++)
                if (mt->partitions[j].id == id)
                        return 1;
        return 0;
}

static void add_part(struct rp_set *set, size_t *cap, const char *topic,
                     int32_t partition)
{
        if (set->nparts == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                set->parts =
                        eb_xrealloc(set->parts, *cap * sizeof(*set->parts));
        }
        memset(&set->parts[set->nparts], 0, sizeof(set->parts[0]));
        set->parts[set->nparts].topic = topic; /* metadata-owned for now */
        set->parts[set->nparts].partition = partition;
        set->parts[set->nparts].committed = -1;
        set->nparts++;
}

int rp_select(rd_kafka_t *rk, const struct rp_opts *o, struct rp_set *set,
              char *errstr, size_t sz)
{
        const struct rd_kafka_metadata *md = NULL;
        size_t cap = 0, s, i, out;
        int rc, t, j;

        memset(set, 0, sizeof(*set));
        rc = fetch_metadata(rk, o->timeout_ms, &md, errstr, sz);
        if (rc)
                return rc;
        rc = -ENOENT;
        for (s = 0; s < o->nspecs; s++) {
                const struct eb_replay_topic_spec *spec = &o->specs[s];
                const int32_t *want = spec->parts ? spec->parts : o->parts;
                size_t nwant = spec->parts ? spec->nparts : o->nparts;
                int matched = 0;

                for (t = 0; t < md->topic_cnt; t++) {
                        const struct rd_kafka_metadata_topic *mt =
                                &md->topics[t];

                        if (mt->err ||
                            !eb_replay_topic_spec_match(spec, mt->topic))
                                continue;
                        /* A regex never selects internal topics. */
                        if (spec->is_regex && !strncmp(mt->topic, "__", 2))
                                continue;
                        matched++;
                        if (!want) {
                                for (j = 0; j < mt->partition_cnt; j++)
                                        add_part(set, &cap, mt->topic,
                                                 mt->partitions[j].id);
                                continue;
                        }
                        for (i = 0; i < nwant; i++) {
                                if (!has_part(mt, want[i])) {
                                        if (spec->is_regex)
                                                continue;
                                        snprintf(errstr, sz,
                                                 "topic %s has no partition "
                                                 "%d (it has %d)",
                                                 mt->topic, (int)want[i],
                                                 mt->partition_cnt);
                                        goto out;
                                }
                                add_part(set, &cap, mt->topic, want[i]);
                        }
                }
                if (!matched) {
                        snprintf(errstr, sz,
                                 spec->is_regex ? "no topic matches %s"
                                                : "topic %s does not exist",
                                 spec->pattern);
                        goto out;
                }
        }
        if (!set->nparts) {
                snprintf(errstr, sz, "no partition selected");
                goto out;
        }
        qsort(set->parts, set->nparts, sizeof(*set->parts), part_cmp);
        /* Dedupe, and give every part a stable topic string of our own. */
        set->topics = eb_xcalloc(set->nparts, sizeof(*set->topics));
        for (i = 0, out = 0; i < set->nparts; i++) {
                struct rp_part *p = &set->parts[i];

                if (out && set->parts[out - 1].partition == p->partition &&
                    !strcmp(set->topics[set->parts[out - 1].tix].name,
                            p->topic))
                        continue;
                if (!set->ntopics ||
                    strcmp(set->topics[set->ntopics - 1].name, p->topic))
                        set->topics[set->ntopics++].name = eb_xstrdup(p->topic);
                set->parts[out] = *p;
                set->parts[out].tix = set->ntopics - 1;
                set->parts[out].topic = set->topics[set->ntopics - 1].name;
                out++;
        }
        set->nparts = out;
        rc = 0;
out:
        rd_kafka_metadata_destroy(md);
        if (rc)
                rp_set_fini(set);
        return rc;
}

void rp_set_fini(struct rp_set *set)
{
        size_t i;

        for (i = 0; i < set->ntopics; i++)
                free(set->topics[i].name);
        free(set->topics);
        free(set->parts);
        memset(set, 0, sizeof(*set));
}

struct rp_part *rp_find(struct rp_set *set, const char *topic,
                        int32_t partition)
{
        size_t a = 0, b = set->nparts;

        while (a < b) {
                size_t mid = a + (b - a) / 2;
                struct rp_part *p = &set->parts[mid];
                int c = strcmp(p->topic, topic);

                if (!c)
                        c = p->partition < partition ? -1
                                                     : p->partition > partition;
                if (!c)
                        return p;
                if (c < 0)
                        a = mid + 1;
                else
                        b = mid;
        }
        return NULL;
}

int rp_watermarks(rd_kafka_t *rk, const struct rp_opts *o, struct rp_set *set,
                  char *errstr, size_t sz)
{
        size_t i;

        for (i = 0; i < set->nparts; i++) {
                struct rp_part *p = &set->parts[i];
                rd_kafka_resp_err_t err;
                int tries = 0;

                do {
                        err = rd_kafka_query_watermark_offsets(
                                rk, p->topic, p->partition, &p->lo, &p->hi,
                                (int)o->timeout_ms);
                        /* Leadership may still be settling right after a
                         * topic was created. */
                        if (err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                            err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION)
                                rp_sleep_ms(200);
                        else
                                break;
                } while (++tries < 25 && !rp_stop_signal);
                if (err) {
                        snprintf(errstr, sz, "watermarks of %s:%d: %s",
                                 p->topic, (int)p->partition,
                                 rd_kafka_err2str(err));
                        return -EIO;
                }
        }
        return 0;
}

/* ---- probing a partition ------------------------------------------------ */

struct probe {
        rd_kafka_t *rk;
        const struct rp_part *p;
        int64_t timeout_ms;
        int err_reported;
};

static int probe_assign(struct probe *pr, int64_t off)
{
        rd_kafka_topic_partition_list_t *tpl =
                rd_kafka_topic_partition_list_new(1);
        rd_kafka_resp_err_t err;

        rd_kafka_topic_partition_list_add(tpl, pr->p->topic, pr->p->partition)
                ->offset = off;
        err = rd_kafka_assign(pr->rk, tpl);
        rd_kafka_topic_partition_list_destroy(tpl);
        return err ? -EIO : 0;
}

/*
 * Next message of the probed partition at or after @p from: 0 with the
 * message, 1 at the end of the log, negative on error or timeout.
 */
static int probe_next(struct probe *pr, int64_t from, int64_t deadline,
                      int64_t *off, int64_t *ts)
{
        while (!rp_stop_signal) {
                rd_kafka_message_t *m;
                rd_kafka_timestamp_type_t tstype;

                if (rp_mono_ms() > deadline)
                        return -ETIMEDOUT;
                m = rd_kafka_consumer_poll(pr->rk, 100);
                if (!m)
                        continue;
                if (m->rkt && m->partition == pr->p->partition &&
                    !strcmp(rd_kafka_topic_name(m->rkt), pr->p->topic)) {
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                if (m->offset >= from) {
                                        rd_kafka_message_destroy(m);
                                        return 1;
                                }
                        } else if (!m->err && m->offset >= from) {
                                *off = m->offset;
                                *ts = rd_kafka_message_timestamp(m, &tstype);
                                rd_kafka_message_destroy(m);
                                return 0;
                        }
                }
                if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                    !pr->err_reported) {
                        fprintf(stderr, "evbridge-replay: %s\n",
                                rd_kafka_message_errstr(m));
                        pr->err_reported = 1;
                }
                rd_kafka_message_destroy(m);
        }
        return -EINTR;
}

static int probe_first(void *opaque, int64_t off, int64_t *rec_off,
                       int64_t *ts_ms)
{
        struct probe *pr = opaque;

        if (off >= pr->p->hi)
                return 1;
        if (probe_assign(pr, off))
                return -EIO;
        return probe_next(pr, off, rp_mono_ms() + pr->timeout_ms, rec_off,
                          ts_ms);
}

static int probe_count(void *opaque, int64_t a, int64_t b, int64_t *count)
{
        struct probe *pr = opaque;
        int64_t deadline = rp_mono_ms() + pr->timeout_ms, off = a, ts;
        int rc;

        *count = 0;
        if (a >= b)
                return 0;
        if (probe_assign(pr, a))
                return -EIO;
        while (off < b) {
                rc = probe_next(pr, off, deadline, &off, &ts);
                if (rc < 0)
                        return rc;
                if (rc == 1 || off >= b)
                        break;
                (*count)++;
                off++;
        }
        return 0;
}

/* ---- resolving positions ------------------------------------------------ */

struct resolver {
        const struct rp_opts *o;
        rd_kafka_t *rk;    /* offsets_for_times, committed */
        rd_kafka_t *probe; /* lazily created scan consumer */
};

static rd_kafka_t *probe_rk(struct resolver *r, char *errstr, size_t sz)
{
        char group[128];
        const char *kv[] = {"group.id", group, "isolation.level",
                            "read_committed", "enable.partition.eof", "true",
                            "enable.auto.commit", "false", "auto.offset.reset",
                            "earliest",
                            /* Probes re-assign often, and a new
                             * assignment waits for the fetch in flight:
                             * keep fetches short. */
                            "fetch.wait.max.ms", "10", NULL};

        if (r->probe)
                return r->probe;
        rp_private_group(group, sizeof(group), "scan");
        r->probe = rp_kafka_new(r->o, RD_KAFKA_CONSUMER, kv, errstr, sz);
        if (r->probe) {
                const struct rd_kafka_metadata *md = NULL;

                rd_kafka_poll_set_consumer(r->probe);
                /* Learn every topic's leaders now, so that assigning a
                 * partition of another topic does not wait for a
                 * metadata refresh. */
                if (!rd_kafka_metadata(r->probe, 1, NULL, &md,
                                       (int)r->o->timeout_ms))
                        rd_kafka_metadata_destroy(md);
        }
        return r->probe;
}

static int scan_time(struct resolver *r, const struct rp_part *p, int64_t t,
                     int64_t *out, char *errstr, size_t sz)
{
        struct probe pr = {NULL, p, r->o->timeout_ms, 0};
        int rc;

        pr.rk = probe_rk(r, errstr, sz);
        if (!pr.rk)
                return -EIO;
        rc = eb_replay_time_search(p->lo, p->hi, t, probe_first, &pr, out);
        if (rc)
                snprintf(errstr, sz, "timestamp scan of %s:%d: %s", p->topic,
                         (int)p->partition,
                         rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        return rc;
}

static int tail(struct resolver *r, const struct rp_part *p, int64_t n,
                int64_t *out, char *errstr, size_t sz)
{
        struct probe pr = {NULL, p, r->o->timeout_ms, 0};
        int rc;

        /* Transaction markers take offsets too, so hi - n is only a
         * first guess: count the data records going back until n are
         * found. */
        pr.rk = probe_rk(r, errstr, sz);
        if (!pr.rk)
                return -EIO;
        rc = eb_replay_tail_start(p->lo, p->hi, n, probe_count, &pr, out);
        if (rc)
                snprintf(errstr, sz, "reading the tail of %s:%d: %s", p->topic,
                         (int)p->partition,
                         rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        return rc;
}

static void fmt_time(int64_t ms, char *buf, size_t sz)
{
        eb_rfc3339_format(ms, 3, buf, sz);
}

/* offsets_for_times for every part whose position is this time. */
static int resolve_times(struct resolver *r, struct rp_set *set,
                         const struct eb_replay_pos **pos, int64_t *out,
                         char *errstr, size_t sz)
{
        rd_kafka_topic_partition_list_t *tpl = NULL;
        char first[300] = "";
        size_t i;
        int rc = 0, n = 0, scans = 0;

        tpl = rd_kafka_topic_partition_list_new(16);
        for (i = 0; i < set->nparts; i++)
                if (pos[i]->kind == EB_REPLAY_POS_TIME &&
                    set->parts[i].hi > set->parts[i].lo) {
                        rd_kafka_topic_partition_list_add(
                                tpl, set->parts[i].topic,
                                set->parts[i].partition)
                                ->offset = pos[i]->value;
                        n++;
                }
        if (n && r->o->lookup != RP_LOOKUP_SCAN) {
                rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(
                        r->rk, tpl, (int)r->o->timeout_ms);

                if (err) {
                        fprintf(stderr,
                                "evbridge-replay: notice: offsets_for_times "
                                "failed (%s)%s\n",
                                rd_kafka_err2str(err),
                                r->o->lookup == RP_LOOKUP_AUTO
                                        ? "; scanning message timestamps"
                                        : "");
                        if (r->o->lookup == RP_LOOKUP_BROKER) {
                                snprintf(errstr, sz, "time lookup failed: %s",
                                         rd_kafka_err2str(err));
                                rc = -EIO;
                                goto out;
                        }
                        for (i = 0; i < (size_t)tpl->cnt; i++)
                                tpl->elems[i].offset = -1;
                }
        }
        for (i = 0; i < set->nparts; i++) {
                struct rp_part *p = &set->parts[i];
                rd_kafka_topic_partition_t *e;
                char when[40];
                int64_t ans = -1;

                if (pos[i]->kind != EB_REPLAY_POS_TIME)
                        continue;
                if (p->hi <= p->lo) {
                        out[i] = p->hi;
                        continue;
                }
                e = rd_kafka_topic_partition_list_find(tpl, p->topic,
                                                       p->partition);
                if (r->o->lookup == RP_LOOKUP_SCAN) {
                        rc = scan_time(r, p, pos[i]->value, &out[i], errstr,
                                       sz);
                        if (rc)
                                goto out;
                        continue;
                }
                if (e && !e->err)
                        ans = e->offset;
                if (ans >= 0) {
                        out[i] = ans;
                        continue;
                }
                if (r->o->lookup == RP_LOOKUP_BROKER) {
                        /* Trust the broker: no record at or after t. */
                        out[i] = p->hi;
                        continue;
                }
                /*
                 * -1 means either "no record at or after t" or a broker
                 * that cannot search by time (librdkafka's mock cluster
                 * always answers -1). A scan tells the two apart.
                 */
                if (!scans++) {
                        fmt_time(pos[i]->value, when, sizeof(when));
                        snprintf(first, sizeof(first), "%s in %s:%d", when,
                                 p->topic, (int)p->partition);
                }
                rc = scan_time(r, p, pos[i]->value, &out[i], errstr, sz);
                if (rc)
                        goto out;
        }
out:
        /* One line for all of them: a broker without a time index
         * answers -1 for every partition. */
        if (scans)
                fprintf(stderr,
                        "evbridge-replay: notice: the broker found no offset "
                        "for %s%s (answered -1: no time index, or nothing at "
                        "or after that time); scanned message timestamps of "
                        "%d partition(s) instead\n",
                        first, scans > 1 ? " and other partitions" : "", scans);
        rd_kafka_topic_partition_list_destroy(tpl);
        return rc;
}

static int resolve_group(struct resolver *r, struct rp_set *set,
                         const char *group, const struct eb_replay_pos **pos,
                         int64_t *out, char *errstr, size_t sz)
{
        const char *kv[] = {"group.id", group, "enable.auto.commit", "false",
                            NULL};
        rd_kafka_topic_partition_list_t *tpl = NULL;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk;
        size_t i;
        int rc = -EIO;

        rk = rp_kafka_new(r->o, RD_KAFKA_CONSUMER, kv, errstr, sz);
        if (!rk)
                return -EIO;
        tpl = rd_kafka_topic_partition_list_new(16);
        for (i = 0; i < set->nparts; i++)
                if (pos[i]->kind == EB_REPLAY_POS_GROUP &&
                    !strcmp(pos[i]->group, group))
                        rd_kafka_topic_partition_list_add(
                                tpl, set->parts[i].topic,
                                set->parts[i].partition);
        err = rd_kafka_committed(rk, tpl, (int)r->o->timeout_ms);
        if (err) {
                snprintf(errstr, sz, "committed offsets of group %s: %s", group,
                         rd_kafka_err2str(err));
                goto out;
        }
        for (i = 0; i < set->nparts; i++) {
                struct rp_part *p = &set->parts[i];
                rd_kafka_topic_partition_t *e;

                if (pos[i]->kind != EB_REPLAY_POS_GROUP ||
                    strcmp(pos[i]->group, group))
                        continue;
                e = rd_kafka_topic_partition_list_find(tpl, p->topic,
                                                       p->partition);
                if (!e || e->err || e->offset < 0) {
                        fprintf(stderr,
                                "evbridge-replay: notice: group %s has no "
                                "committed offset for %s:%d; starting at "
                                "the beginning (%lld)\n",
                                group, p->topic, (int)p->partition,
                                (long long)p->lo);
                        out[i] = p->lo;
                } else {
                        out[i] = e->offset;
                }
        }
        rc = 0;
out:
        rd_kafka_topic_partition_list_destroy(tpl);
        rd_kafka_destroy(rk);
        return rc;
}

int rp_resolve(rd_kafka_t *rk, const struct rp_opts *o, struct rp_set *set,
               const struct eb_replay_ppos *pps, size_t npps,
               const struct eb_replay_pos *dflt, int64_t *out, char *errstr,
               size_t sz)
{
        struct resolver r = {o, rk, NULL};
        const struct eb_replay_pos **pos;
        size_t i, k;
        int rc = 0;

        pos = eb_xcalloc(set->nparts, sizeof(*pos));
        for (i = 0; i < set->nparts; i++) {
                const struct rp_part *p = &set->parts[i];
                const struct eb_replay_pos *general = dflt, *own = NULL;

                for (k = 0; k < npps; k++) {
                        if (!pps[k].topic[0])
                                general = &pps[k].pos;
                        else if (pps[k].partition == p->partition &&
                                 !strcmp(pps[k].topic, p->topic))
                                own = &pps[k].pos;
                }
                pos[i] = own ? own : general;
                if (!pos[i]) {
                        snprintf(errstr, sz, "no position given for %s:%d",
                                 p->topic, (int)p->partition);
                        rc = -EINVAL;
                        goto out;
                }
        }
        /* Partition positions naming a partition that is not selected are
         * almost certainly a mistake (a resume line pasted into the wrong
         * command). */
        for (k = 0; k < npps; k++)
                if (pps[k].topic[0] &&
                    !rp_find(set, pps[k].topic, pps[k].partition)) {
                        snprintf(errstr, sz,
                                 "%s:%d is given a position but is not "
                                 "among the selected partitions",
                                 pps[k].topic, (int)pps[k].partition);
                        rc = -EINVAL;
                        goto out;
                }
        for (i = 0; i < set->nparts && !rc; i++) {
                struct rp_part *p = &set->parts[i];
                int64_t clamped;

                switch (pos[i]->kind) {
                case EB_REPLAY_POS_BEGINNING:
                        out[i] = p->lo;
                        break;
                case EB_REPLAY_POS_END:
                        out[i] = p->hi;
                        break;
                case EB_REPLAY_POS_OFFSET:
                        clamped = pos[i]->value < p->lo   ? p->lo
                                  : pos[i]->value > p->hi ? p->hi
                                                          : pos[i]->value;
                        if (clamped != pos[i]->value)
                                fprintf(stderr,
                                        "evbridge-replay: notice: offset "
                                        "%lld is outside %s:%d [%lld, %lld]; "
                                        "using %lld\n",
                                        (long long)pos[i]->value, p->topic,
                                        (int)p->partition, (long long)p->lo,
                                        (long long)p->hi, (long long)clamped);
                        out[i] = clamped;
                        break;
                case EB_REPLAY_POS_TAIL:
                        rc = tail(&r, p, pos[i]->value, &out[i], errstr, sz);
                        break;
                case EB_REPLAY_POS_GROUP:
                case EB_REPLAY_POS_TIME:
                        break; /* below, in batches */
                }
        }
        if (rc)
                goto out;
        for (i = 0; i < set->nparts && !rc; i++) {
                int first = 1;

                if (pos[i]->kind != EB_REPLAY_POS_GROUP)
                        continue;
                for (k = 0; k < i; k++)
                        if (pos[k]->kind == EB_REPLAY_POS_GROUP &&
                            !strcmp(pos[k]->group, pos[i]->group))
                                first = 0;
                if (first)
                        rc = resolve_group(&r, set, pos[i]->group, pos, out,
                                           errstr, sz);
        }
        if (!rc)
                rc = resolve_times(&r, set, pos, out, errstr, sz);
        for (i = 0; i < set->nparts && !rc; i++) {
                if (out[i] < set->parts[i].lo)
                        out[i] = set->parts[i].lo;
                if (out[i] > set->parts[i].hi)
                        out[i] = set->parts[i].hi;
        }
out:
        if (r.probe) {
                (void)rd_kafka_consumer_close(r.probe);
                rd_kafka_destroy(r.probe);
        }
        free(pos);
        return rc;
}
