#include "eb_shard.h"

#include <errno.h>
#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_json.h"
#include "eb_kafka.h"
#include "eb_log.h"
#include "eb_shard_state.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_unit.h"
#include "eb_util.h"

#define MOD "shard"

struct shard {
        eb_shards_t *m;
        int n;
        enum eb_shard_state state; /* only through set_state() */
        struct eb_config cfg; /* shallow copy: transactional.id, no sources */
        char *txn_id;
        eb_kafka_t *kafka;
        eb_pipeline_t *pipeline;
        size_t nsources; /* sources started by the last shard_add_sources */
        int64_t stop_deadline_ms;
        int restart;    /* start again once stopped (still assigned) */
        int intake_on;  /* intake partition n assigned */
        int intake_bad; /* an intake publish failed: restart the shard */
        uint64_t restored_ids, restored_checkpoints;
        int64_t restore_ms;
        struct event *restore_ev; /* the next restore attempt */
        int restore_tries;
};

/* A shard's restore runs on the loop, which every other shard shares: it
 * reads for at most this long, then lets the loop run and tries again.
 * The state topics are shared by every shard, so read_committed holds
 * the restore back while any shard's transaction (a dead replica's lasts
 * until its new owner or transaction.timeout.ms aborts it) is open;
 * blocking until then would stall the other shards' transactions past
 * their own timeout. */
/* Shard group heartbeat, at most (eb_shards_new). */
#define SHARD_HEARTBEAT_MS 1000

#define SHARD_RESTORE_SLICE_MS 8000
#define SHARD_RESTORE_RETRY_MS 500
#define SHARD_RESTORE_TRIES    30

struct eb_shards_s {
        struct event_base *base;
        const struct eb_config *cfg;  /* borrowed, current */
        const struct eb_config *boot; /* borrowed: eb_shards_new()'s, which
                                       * the owner keeps until the end */
        eb_poller_t *poller;
        eb_shards_fatal_cb *fatal;
        void *fatal_opaque;
        int failed; /* fatal reported */
        int n;
        struct shard **sh; /* [n], NULL: not owned */
        int *assigned;     /* [n], the group gave it to us */
        char *control_topic, *group, *intake_topic, *intake_group;
        rd_kafka_t *member; /* group member on the control topic */
        rd_kafka_t *intake; /* intake consumer (manual assign) */
        eb_kafka_t *writer; /* intake producer (idempotent) */
        rd_kafka_topic_partition_list_t *revoking; /* given back when done */
        struct event *tick;
        int stopping;     /* shutdown: no shard starts any more */
        int closing;      /* eb_shards_free(): unassign at once */
        int layout_noted; /* legacy_layout_note(): bit per state topic */
        /* metrics */
        uint64_t rebalances, revoked_total;
        uint64_t illegal_transitions; /* eb_shard_state_set() refused */
        uint64_t intake_written, intake_write_failed, intake_consumed,
                intake_skipped, intake_publish_failed;
};

int eb_shard_of(const char *name, int nshards)
{
        if (nshards <= 1)
                return 0;
        return (int)(eb_fnv1a64(name, strlen(name)) % (uint64_t)nshards);
}

static int set_state(struct shard *sh, enum eb_shard_state to)
{
        return eb_shard_state_set(&sh->state, to, sh->n,
                                  &sh->m->illegal_transitions);
}

static void fail(eb_shards_t *m, const char *why)
{
        if (m->failed)
                return;
        m->failed = 1;
        eb_error(MOD, "%s", why);
        if (m->fatal)
                m->fatal(m->fatal_opaque, why);
}

/* ---- intake record format ----------------------------------------------- */

static void jset_str(json_t *o, const char *k, const char *v)
{
        if (v)
                json_object_set_new(o, k, json_string(v));
}

char *eb_intake_encode(const struct eb_event *e, size_t *lenp)
{
        json_t *o = json_object(), *ev = json_object();
        char *s;

        jset_str(ev, "id", e->id);
        jset_str(ev, "source", e->source_name);
        jset_str(ev, "provider", e->provider);
        jset_str(ev, "account", e->account);
        jset_str(ev, "entity_type", e->entity_type);
        jset_str(ev, "entity_id", e->entity_id);
        jset_str(ev, "action", e->action);
        jset_str(ev, "actor", e->actor);
        jset_str(ev, "version", e->version);
        json_object_set_new(ev, "time_ms", json_integer(e->time_ms));
        if (e->fields)
                json_object_set(ev, "fields", e->fields);
        if (e->native)
                json_object_set(ev, "native", e->native);
        json_object_set_new(o, "v", json_integer(EB_INTAKE_VERSION));
        jset_str(o, "source", e->source_name);
        json_object_set_new(o, "received_ms", json_integer(eb_now_ms()));
        json_object_set_new(o, "event", ev);
        s = eb_json_dumps(o);
        json_decref(o);
        *lenp = s ? strlen(s) : 0;
        return s;
}

static char *jdup(json_t *o, const char *k, int required, int *bad)
{
        json_t *v = json_object_get(o, k);

        if (json_is_string(v))
                return eb_xstrdup(json_string_value(v));
        if (v && !json_is_null(v))
                *bad = 1;
        if (required)
                *bad = 1;
        return NULL;
}

int eb_intake_decode(const void *buf, size_t len, char **sourcep,
                     struct eb_event **evtp, int *trigger)
{
        json_t *o = eb_json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
        json_t *ev, *src, *t;
        struct eb_event *e;
        int bad = 0;

        *evtp = NULL;
        *trigger = 0;
        *sourcep = NULL;
        src = json_object_get(o, "source");
        if (!json_is_object(o) ||
            json_integer_value(json_object_get(o, "v")) != EB_INTAKE_VERSION ||
            !json_is_string(src)) {
                json_decref(o);
                return -EINVAL;
        }
        if (json_is_true(json_object_get(o, "trigger"))) {
                *sourcep = eb_xstrdup(json_string_value(src));
                *trigger = 1;
                json_decref(o);
                return 0;
        }
        ev = json_object_get(o, "event");
        if (!json_is_object(ev)) {
                json_decref(o);
                return -EINVAL;
        }
        e = eb_event_new();
        e->id = jdup(ev, "id", 1, &bad);
        e->source_name = jdup(ev, "source", 1, &bad);
        e->provider = jdup(ev, "provider", 1, &bad);
        e->account = jdup(ev, "account", 0, &bad);
        e->entity_type = jdup(ev, "entity_type", 1, &bad);
        e->entity_id = jdup(ev, "entity_id", 1, &bad);
        e->action = jdup(ev, "action", 1, &bad);
        e->actor = jdup(ev, "actor", 0, &bad);
        e->version = jdup(ev, "version", 0, &bad);
        t = json_object_get(ev, "time_ms");
        if (!json_is_integer(t))
                bad = 1;
        e->time_ms = json_integer_value(t);
        t = json_object_get(ev, "fields");
        if (json_is_object(t))
                e->fields = json_incref(t);
        else if (t && !json_is_null(t))
                bad = 1;
        t = json_object_get(ev, "native");
        if (!t)
                bad = 1;
        else
                e->native = json_incref(t);
        if (!bad && strcmp(e->source_name, json_string_value(src)))
                bad = 1;
        /* What the envelope needs: a record that passes here renders. */
        if (!bad && (!*e->id || !*e->action || !*e->provider ||
                     !*e->entity_type || !*e->source_name || e->time_ms < 0 ||
                     e->time_ms > EB_RFC3339_MAX_MS))
                bad = 1;
        if (bad) {
                eb_event_free(e);
                json_decref(o);
                return -EINVAL;
        }
        *sourcep = eb_xstrdup(json_string_value(src));
        *evtp = e;
        json_decref(o);
        return 0;
}

/* ---- topics ---------------------------------------------------------------
 */

/* The control and intake topics must have exactly N partitions: the
 * partition IS the shard. */
static int ensure_topic(eb_kafka_t *k, const char *topic, int n, char *errstr,
                        size_t errstr_size)
{
        char why[512] = "";
        int have = eb_kafka_topic_ensure(k, topic, n, why, sizeof(why));

        if (have == n)
                return 0;
        if (have > 0)
                snprintf(errstr, errstr_size,
                         "scale.shards is %d but topic %s has %d "
                         "partition(s): the partition is the shard, so they "
                         "must match (create a new state_prefix to change "
                         "the shard count)",
                         n, topic, have);
        else
                snprintf(errstr, errstr_size,
                         "scale: topic %s is missing and cannot be created "
                         "(%s): create it with %d partitions",
                         topic, why[0] ? why : "created, not visible yet", n);
        return -EINVAL;
}

/* ---- shards ---------------------------------------------------------------
 */

static void shard_fatal_cb(void *opaque, const char *reason)
{
        struct shard *sh = opaque;
        char why[700];

        /* A shard being handed back aborts what it left open; a broker
         * that has already moved on (the next owner's InitProducerId, or
         * INVALID_TXN_STATE for an end it cut short) answers that with a
         * fatal error. The producer is going anyway: nothing to fail. */
        if (sh->state == EB_SHARD_STOPPING) {
                eb_warn(MOD,
                        "shard %d: producer error while handing it back "
                        "(ignored, the shard is stopped): %s",
                        sh->n, reason);
                return;
        }
        snprintf(why, sizeof(why),
                 "shard %d: Kafka producer fatal error: %s (another replica "
                 "owns it now; stopping so the group can rebalance)",
                 sh->n, reason);
        fail(sh->m, why);
}

static int want_source(const char *source, void *opaque)
{
        struct shard *sh = opaque;

        return eb_shard_of(source, sh->m->n) == sh->n;
}

static void intake_assign(eb_shards_t *m, struct shard *sh, int on)
{
        rd_kafka_topic_partition_list_t *tpl;
        rd_kafka_error_t *error;

        if (sh->intake_on == on)
                return;
        tpl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tpl, m->intake_topic, sh->n)->offset =
                RD_KAFKA_OFFSET_STORED;
        error = on ? rd_kafka_incremental_assign(m->intake, tpl)
                   : rd_kafka_incremental_unassign(m->intake, tpl);
        if (error) {
                eb_error(MOD, "shard %d: intake partition %s: %s", sh->n,
                         on ? "assign" : "unassign",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        } else {
                sh->intake_on = on;
        }
        rd_kafka_topic_partition_list_destroy(tpl);
}

/* This shard's sources are those of the current configuration that hash
 * to it: a reload (eb_shards_reload) keeps the poller in step with it. */
static int owns(const struct shard *sh, const struct eb_source_cfg *src)
{
        return src->enabled && eb_shard_of(src->name, sh->m->n) == sh->n;
}

static void shard_add_sources(struct shard *sh, json_t *cps)
{
        eb_shards_t *m = sh->m;
        const struct eb_config *cfg = m->cfg;
        char err[512];
        size_t i;

        sh->nsources = 0;
        for (i = 0; i < cfg->sources_cnt; i++) {
                const struct eb_source_cfg *src = &cfg->sources[i];
                json_t *cp;

                if (!owns(sh, src))
                        continue;
                cp = cps ? json_object_get(cps, src->name) : NULL;
                if (!cp)
                        cp = eb_pipeline_checkpoint(sh->pipeline, src->name);
                if (eb_poller_add(m->poller, src, cp, err, sizeof(err))) {
                        eb_error(MOD, "shard %d: source=%s cannot start: %s",
                                 sh->n, src->name, err);
                        continue;
                }
                sh->nsources++;
        }
}

/* @p fn on each of the shard's sources; @returns the first nonzero. */
static int each_source(const struct shard *sh,
                       int (*fn)(eb_poller_t *p, const char *name))
{
        const struct eb_config *cfg = sh->m->cfg;
        size_t i;
        int rc;

        for (i = 0; i < cfg->sources_cnt; i++)
                if (owns(sh, &cfg->sources[i]) &&
                    (rc = fn(sh->m->poller, cfg->sources[i].name)))
                        return rc;
        return 0;
}

/* Stop: requests in flight are let finish (eb_poller_remove). */
static int retire_source(eb_poller_t *p, const char *name)
{
        eb_poller_remove(p, name);
        return 0;
}

static int source_busy(eb_poller_t *p, const char *name)
{
        return eb_poller_busy(p, name);
}

/* A deadline passed: cancel whatever still runs. */
static int cancel_source(eb_poller_t *p, const char *name)
{
        eb_poller_cancel(p, name);
        return 0;
}

/* Once per process and topic: a state topic that is not partitioned by
 * shard (an existing deployment's, made with one partition) still works,
 * but every shard's restore reads all of it. Say how to change that. */
static void legacy_layout_note(eb_shards_t *m,
                               const struct eb_state_restore_stats *st)
{
        int want = eb_state_partitions(m->cfg);
        int i;

        for (i = 0; i < 2; i++) {
                int have = i == 0 ? st->partitions_seen
                                  : st->partitions_checkpoints;
                char *topic;

                if ((st->partitioned & (1 << i)) || have <= 0 ||
                    (m->layout_noted & (1 << i)))
                        continue;
                m->layout_noted |= 1 << i;
                topic = i == 0 ? eb_state_topic_seen(m->cfg)
                               : eb_state_topic_checkpoints(m->cfg);
                if (have == 1)
                        eb_warn(MOD,
                                "state topic %s has 1 partition, not %d "
                                "(scale.shards + 1): every shard's restore "
                                "reads it "
                                "whole, which slows hand-overs. To partition "
                                "it, add partitions (kafka-topics.sh --alter "
                                "--topic %s --partitions %d); the records "
                                "already there stay in partition 0, which "
                                "every shard keeps reading (docs/scaling.md, "
                                "\"State partitions\")",
                                topic, want, topic, want);
                else
                        eb_warn(MOD,
                                "state topic %s has %d partitions, not %d "
                                "(scale.shards + 1): every shard's restore "
                                "reads it whole, which slows hand-overs. It "
                                "cannot be partitioned by shard in place "
                                "(docs/scaling.md, \"State partitions\")",
                                topic, have, want);
                free(topic);
        }
}

static void on_shard_init(void *opaque, int err, const char *errstr);

static void on_restore_retry(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        on_shard_init(arg, 0, NULL);
}

static void on_shard_init(void *opaque, int err, const char *errstr)
{
        struct shard *sh = opaque;
        eb_shards_t *m = sh->m;
        struct eb_state_restore_opts o;
        struct eb_state_restore_stats st;
        const char *keys[3];
        char ebuf[1024];
        json_t *cps;
        int rc;

        if (err == -ESHUTDOWN || sh->state != EB_SHARD_STARTING)
                return;
        if (err) {
                snprintf(ebuf, sizeof(ebuf),
                         "shard %d: Kafka transactions cannot start: %s", sh->n,
                         errstr);
                fail(m, ebuf);
                return;
        }
        /* This shard's ids: its own transactional.id's records, and those
         * of the unsharded process (migration from scale.shards 0). */
        memset(&o, 0, sizeof(o));
        keys[0] = sh->txn_id;
        keys[1] = m->cfg->transactional_id;
        keys[2] = NULL;
        o.seen_keys = keys;
        o.want_source = want_source;
        o.want_opaque = sh;
        o.shard_partition = eb_state_shard_partition(sh->n);
        o.partitions = eb_state_partitions(m->cfg);
        o.timeout_ms = SHARD_RESTORE_SLICE_MS;
        memset(&st, 0, sizeof(st));
        cps = json_object();
        rc = eb_pipeline_restore_ex(sh->pipeline, eb_kafka_bootstrap(sh->kafka),
                                    &o, cps, &st, ebuf, sizeof(ebuf));
        if (rc == -ETIMEDOUT && ++sh->restore_tries < SHARD_RESTORE_TRIES) {
                struct timeval tv = {0, SHARD_RESTORE_RETRY_MS * 1000};

                eb_warn(MOD,
                        "shard %d: state restore not at the end after %d ms "
                        "(a transaction on the state topics is still open); "
                        "trying again (%d of %d): %s",
                        sh->n, SHARD_RESTORE_SLICE_MS, sh->restore_tries + 1,
                        SHARD_RESTORE_TRIES, ebuf);
                json_decref(cps);
                if (!sh->restore_ev)
                        sh->restore_ev =
                                evtimer_new(m->base, on_restore_retry, sh);
                evtimer_add(sh->restore_ev, &tv);
                return;
        }
        if (rc) {
                char why[1200];

                snprintf(why, sizeof(why), "shard %d: state restore failed: %s",
                         sh->n, ebuf);
                json_decref(cps);
                fail(m, why);
                return;
        }
        sh->restored_ids = st.ids;
        sh->restored_checkpoints = st.checkpoints;
        sh->restore_ms = st.ms;
        /* This shard's records go where the next owner's restore reads
         * them: its own partition of a topic partitioned by shard, else
         * partition 0 (also once more partitions are added: partition 0
         * stays read by every shard). */
        eb_pipeline_set_state_partitions(
                sh->pipeline, st.partitioned & 1 ? o.shard_partition : 0,
                st.partitioned & 2 ? o.shard_partition : 0);
        legacy_layout_note(m, &st);
        shard_add_sources(sh, cps);
        json_decref(cps);
        set_state(sh, EB_SHARD_RUNNING);
        eb_pipeline_set_consumer(sh->pipeline, m->intake_topic, m->intake);
        intake_assign(m, sh, 1);
        eb_info(MOD,
                "shard %d: owned (transactional.id=%s): restored %llu ids "
                "and %llu checkpoints in %lld ms (%s), %zu source(s) polling",
                sh->n, sh->txn_id, (unsigned long long)st.ids,
                (unsigned long long)st.checkpoints, (long long)st.ms,
                st.partitioned == 3 ? "state partition of its own"
                                    : "whole state topics read",
                sh->nsources);
}

static void shard_start(eb_shards_t *m, int n)
{
        struct eb_unit u;
        struct shard *sh;
        char err[512];

        if (m->stopping || m->failed)
                return;
        if (m->sh[n]) {
                /* still stopping from an earlier assignment */
                m->sh[n]->restart = 1;
                return;
        }
        sh = eb_xcalloc(1, sizeof(*sh));
        sh->m = m;
        sh->n = n;
        sh->state = EB_SHARD_STARTING; /* initial state, not a change */
        sh->txn_id = eb_xasprintf("%s-shard-%d", m->cfg->state_prefix, n);
        /* The producer and pipeline settings need a restart (a reload
         * warns so): the start-up configuration's, which outlives every
         * shard, never a reloaded one that may be freed before it. */
        sh->cfg = *m->boot;
        sh->cfg.transactional_id = sh->txn_id;
        sh->cfg.sources = NULL;
        sh->cfg.sources_cnt = 0;
        m->sh[n] = sh;
        if (eb_unit_open(&u, m->base, &sh->cfg, EB_KAFKA_NEW_F_TRANSACTIONS,
                         shard_fatal_cb, sh, err, sizeof(err)) == 0) {
                sh->kafka = u.kafka;
                sh->pipeline = u.pipeline;
        }
        if (!sh->kafka || eb_kafka_txn_init(sh->kafka, on_shard_init, sh)) {
                char why[700];

                snprintf(why, sizeof(why), "shard %d cannot start: %s", n, err);
                fail(m, why);
                return;
        }
        eb_info(MOD, "shard %d: assigned; starting transactions", n);
}

static void shard_stop(eb_shards_t *m, struct shard *sh, const char *why)
{
        if (sh->state == EB_SHARD_STOPPING)
                return;
        eb_info(MOD, "shard %d: stopping (%s): %zu source(s)", sh->n, why,
                sh->nsources);
        set_state(sh, EB_SHARD_STOPPING);
        sh->stop_deadline_ms =
                eb_mono_ms() + m->cfg->scale_rebalance_timeout_ms;
        (void)each_source(sh, retire_source);
        intake_assign(m, sh, 0);
}

static void shard_free(struct shard *sh)
{
        /* eb_kafka_free() settles every publish (callbacks into the
         * pipeline and the poller's removed sources) before the pipeline
         * goes. */
        set_state(sh, EB_SHARD_STOPPED);
        if (sh->restore_ev)
                event_free(sh->restore_ev);
        eb_kafka_free(sh->kafka);
        eb_pipeline_free(sh->pipeline);
        (void)each_source(sh, cancel_source);
        free(sh->txn_id);
        free(sh);
}

/* Hand @p parts back to the group (cooperative: just those; eager: the
 * whole assignment, which the group has revoked as a whole). */
static void give_back(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts)
{
        rd_kafka_error_t *error = NULL;

        if (!strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE"))
                error = rd_kafka_incremental_unassign(rk, parts);
        else
                (void)rd_kafka_assign(rk, NULL);
        if (error) {
                eb_warn(MOD, "giving shards back: %s",
                        rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        }
}

/* Give revoked partitions back to the group once their shards stopped. */
static void revoke_settle(eb_shards_t *m)
{
        int i;

        if (!m->revoking)
                return;
        for (i = 0; i < m->revoking->cnt; i++) {
                int n = m->revoking->elems[i].partition;

                if (n >= 0 && n < m->n && m->sh[n])
                        return; /* still stopping */
        }
        give_back(m->member, m->revoking);
        eb_info(MOD, "%d shard(s) handed back to the group", m->revoking->cnt);
        rd_kafka_topic_partition_list_destroy(m->revoking);
        m->revoking = NULL;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        eb_shards_t *m = opaque;
        int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        int i;

        m->rebalances++;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                rd_kafka_error_t *error = NULL;

                if (coop)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        (void)rd_kafka_assign(rk, parts);
                if (error) {
                        eb_error(MOD, "assign: %s",
                                 rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                }
                for (i = 0; i < parts->cnt; i++) {
                        int n = parts->elems[i].partition;

                        if (n < 0 || n >= m->n)
                                continue;
                        m->assigned[n] = 1;
                        shard_start(m, n);
                }
                return;
        }
        if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
                int lost = rd_kafka_assignment_lost(rk);

                for (i = 0; i < parts->cnt; i++) {
                        int n = parts->elems[i].partition;

                        if (n < 0 || n >= m->n)
                                continue;
                        m->assigned[n] = 0;
                        m->revoked_total++;
                        if (m->sh[n]) {
                                m->sh[n]->restart = 0;
                                shard_stop(m, m->sh[n],
                                           lost ? "assignment lost"
                                                : "revoked by the group");
                        }
                }
                if (m->closing) {
                        give_back(rk, parts);
                        return;
                }
                if (!m->revoking)
                        m->revoking =
                                rd_kafka_topic_partition_list_new(parts->cnt);
                for (i = 0; i < parts->cnt; i++)
                        rd_kafka_topic_partition_list_add(
                                m->revoking, parts->elems[i].topic,
                                parts->elems[i].partition);
                revoke_settle(m);
                return;
        }
        eb_error(MOD, "rebalance error: %s", rd_kafka_err2str(err));
        (void)rd_kafka_assign(rk, NULL);
}

/* ---- intake consumption ---------------------------------------------------
 */

struct intake_pub {
        struct shard *sh;
        int64_t offset;
};

static void on_intake_published(void *arg, int err)
{
        struct intake_pub *ip = arg;
        struct shard *sh = ip->sh;

        if (err == -EINVAL) {
                /* The event cannot be rendered: reading it again would
                 * fail again. Skipped (its offset commits with the next
                 * record's), loudly. */
                sh->m->intake_skipped++;
                eb_error(MOD,
                         "shard %d: intake record at offset %lld cannot be "
                         "published (invalid event); skipped",
                         sh->n, (long long)ip->offset);
        } else if (err) {
                sh->m->intake_publish_failed++;
                if (!sh->intake_bad) {
                        /* Later transactions must not commit offsets past
                         * this record: detach, read it again after a
                         * restart (dedupe drops what did commit). */
                        eb_warn(MOD,
                                "shard %d: intake record at offset %lld "
                                "not published (%s); restarting the shard",
                                sh->n, (long long)ip->offset, strerror(-err));
                        sh->intake_bad = 1;
                        eb_pipeline_set_consumer(sh->pipeline, NULL, NULL);
                }
        }
        free(ip);
}

/* Stands in for the source of a record that is skipped (garbage, an
 * unknown source): its offset still commits with the next transaction. */
static char intake_nosrc_name[] = "(intake)";
static const struct eb_source_cfg intake_nosrc = {.name = intake_nosrc_name};

static void intake_handle(eb_shards_t *m, rd_kafka_message_t *msg)
{
        struct shard *sh;
        const struct eb_source_cfg *src = NULL;
        struct eb_event *evt = NULL, **evts = NULL;
        struct intake_pub *ip;
        char *source = NULL;
        int trigger = 0, rc;
        size_t cnt = 0;

        if (msg->partition < 0 || msg->partition >= m->n)
                return;
        sh = m->sh[msg->partition];
        if (!sh || sh->state != EB_SHARD_RUNNING || sh->intake_bad)
                return; /* released: the next owner reads it */
        m->intake_consumed++;
        if (eb_intake_decode(msg->payload, msg->len, &source, &evt, &trigger)) {
                m->intake_skipped++;
                eb_warn(MOD,
                        "shard %d: intake offset %lld is not an intake "
                        "record; skipped",
                        sh->n, (long long)msg->offset);
        } else {
                src = eb_config_source(m->cfg, source);
                if (!src || !src->enabled ||
                    eb_shard_of(source, m->n) != sh->n) {
                        m->intake_skipped++;
                        eb_warn(MOD,
                                "shard %d: intake record for source %s, "
                                "which is not configured here (or not in "
                                "this shard); skipped",
                                sh->n, source);
                        src = NULL;
                } else if (trigger) {
                        (void)eb_poller_trigger(m->poller, src->name);
                } else {
                        evts = eb_xmalloc(sizeof(*evts));
                        evts[0] = evt;
                        evt = NULL;
                        cnt = 1;
                }
        }
        eb_event_free(evt);
        free(source);
        /* Even with no event (a trigger, a skipped record) the offset goes
         * into the shard's next transaction. */
        ip = eb_xcalloc(1, sizeof(*ip));
        ip->sh = sh;
        ip->offset = msg->offset;
        rc = eb_pipeline_publish_consumed(
                sh->pipeline, src ? src : &intake_nosrc, evts, cnt,
                msg->partition, msg->offset, on_intake_published, ip);
        if (rc) {
                /* back-pressure: read it again in a moment */
                rd_kafka_topic_partition_list_t *tpl =
                        rd_kafka_topic_partition_list_new(1);
                rd_kafka_error_t *error;

                free(ip);
                rd_kafka_topic_partition_list_add(tpl, m->intake_topic,
                                                  msg->partition)
                        ->offset = msg->offset;
                error = rd_kafka_seek_partitions(m->intake, tpl, 1000);
                if (error)
                        rd_kafka_error_destroy(error);
                rd_kafka_topic_partition_list_destroy(tpl);
                m->intake_consumed--;
        }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        eb_shards_t *m = arg;
        struct timeval tv = {0, EB_SHARD_TICK_MS * 1000};
        rd_kafka_message_t *msg;
        int i;

        (void)fd;
        (void)what;
        /* The group member: rebalances run from here (on_rebalance). */
        while ((msg = rd_kafka_consumer_poll(m->member, 0)) != NULL) {
                if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        eb_warn(MOD, "shard group: %s",
                                rd_kafka_message_errstr(msg));
                rd_kafka_message_destroy(msg);
        }
        for (i = 0; i < EB_INTAKE_BATCH; i++) {
                msg = rd_kafka_consumer_poll(m->intake, 0);
                if (!msg)
                        break;
                if (!msg->err)
                        intake_handle(m, msg);
                else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        eb_warn(MOD, "intake: %s",
                                rd_kafka_message_errstr(msg));
                rd_kafka_message_destroy(msg);
        }
        for (i = 0; i < m->n; i++) {
                struct shard *sh = m->sh[i];
                int restart;

                if (!sh)
                        continue;
                if (sh->intake_bad && sh->state == EB_SHARD_RUNNING) {
                        sh->restart = m->assigned[i];
                        shard_stop(m, sh, "intake publish failed");
                }
                if (sh->state != EB_SHARD_STOPPING)
                        continue;
                /* Handed back only once its sources' requests are over
                 * (the next owner's must not overlap them at the
                 * upstream) and its publishes settled; bounded by
                 * scale.rebalance_timeout. */
                if ((eb_pipeline_pending(sh->pipeline) > 0 ||
                     each_source(sh, source_busy)) &&
                    eb_mono_ms() < sh->stop_deadline_ms)
                        continue;
                if (eb_pipeline_pending(sh->pipeline) > 0) {
                        eb_warn(MOD,
                                "shard %d: %d publish(es) still pending after "
                                "scale.rebalance_timeout; dropped (their "
                                "pages are fetched again by the next owner)",
                                i, eb_pipeline_pending(sh->pipeline));
                        /* Given up: purge them now rather than wait
                         * shutdown.drain_timeout on the loop, once per
                         * shard, while the group waits for the hand-back
                         * (the next owner's InitProducerId aborts what
                         * this producer left open). */
                        eb_kafka_set_drain(sh->kafka, 0);
                }
                if (each_source(sh, source_busy))
                        eb_warn(MOD,
                                "shard %d: requests still running after "
                                "scale.rebalance_timeout; cancelled",
                                i);
                restart = sh->restart && m->assigned[i];
                m->sh[i] = NULL;
                shard_free(sh);
                eb_info(MOD, "shard %d: stopped", i);
                if (restart)
                        shard_start(m, i);
        }
        revoke_settle(m);
        evtimer_add(m->tick, &tv);
}

/* ---- sinks ----------------------------------------------------------------
 */

static int poll_publish(void *opaque, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg)
{
        eb_shards_t *m = opaque;
        struct shard *sh = m->sh[eb_shard_of(src->name, m->n)];

        if (sh && sh->state == EB_SHARD_RUNNING)
                return eb_pipeline_publish(sh->pipeline, src, evts, cnt, cp,
                                           done, arg);
        eb_events_free(evts, cnt);
        return -EAGAIN;
}

struct eb_sink eb_shards_poll_sink(eb_shards_t *m)
{
        struct eb_sink s;

        s.publish = poll_publish;
        s.opaque = m;
        return s;
}

struct intake_write {
        eb_shards_t *m;
        eb_publish_done_cb *done;
        void *arg;
        int outstanding;
        int err;
};

static void on_intake_written(void *opaque, int err, const char *errstr)
{
        struct intake_write *w = opaque;

        if (err) {
                w->m->intake_write_failed++;
                if (!w->err)
                        w->err = err;
                eb_warn(MOD, "intake write failed: %s", errstr);
        } else {
                w->m->intake_written++;
        }
        if (--w->outstanding > 0)
                return;
        if (w->done)
                w->done(w->arg, w->err);
        free(w);
}

static int intake_produce(eb_shards_t *m, const char *source, char *value,
                          size_t len, struct intake_write *w)
{
        struct eb_envelope env;
        int rc;

        memset(&env, 0, sizeof(env));
        env.topic = m->intake_topic;
        env.key = (char *)source;
        env.key_len = strlen(source);
        env.value = value;
        env.value_len = len;
        rc = eb_kafka_produce_to(m->writer, &env, eb_shard_of(source, m->n),
                                 on_intake_written, w);
        if (!rc)
                w->outstanding++;
        return rc;
}

static int intake_publish(void *opaque, const struct eb_source_cfg *src,
                          struct eb_event **evts, size_t cnt, json_t *cp,
                          eb_publish_done_cb *done, void *arg)
{
        eb_shards_t *m = opaque;
        struct intake_write *w;
        size_t i;
        int rc = 0;

        (void)cp; /* webhooks carry no checkpoint */
        if (cnt == 0) {
                free(evts);
                return -EINVAL;
        }
        w = eb_xcalloc(1, sizeof(*w));
        w->m = m;
        w->done = done;
        w->arg = arg;
        w->outstanding = 1; /* held until every produce call is made */
        for (i = 0; i < cnt; i++) {
                size_t len;
                char *val;

                if (!rc) {
                        val = eb_intake_encode(evts[i], &len);
                        rc = val ? intake_produce(m, src->name, val, len, w)
                                 : -ENOMEM;
                        free(val);
                }
                eb_event_free(evts[i]);
        }
        free(evts);
        if (rc && w->outstanding == 1) {
                free(w); /* nothing produced: the caller answers */
                return rc;
        }
        if (rc)
                w->err = rc; /* the rest failed: the answer will say so */
        /* Drop the hold. Something was produced, so its delivery report
         * (served later, from the loop) settles the publish. */
        w->outstanding--;
        return 0;
}

struct eb_sink eb_shards_intake_sink(eb_shards_t *m)
{
        struct eb_sink s;

        s.publish = intake_publish;
        s.opaque = m;
        return s;
}

int eb_shards_trigger(eb_shards_t *m, const char *source)
{
        struct intake_write *w;
        json_t *o;
        char *val;
        int rc;

        if (!eb_config_source(m->cfg, source))
                return -ENOENT;
        o = json_pack("{s:i, s:s, s:b}", "v", EB_INTAKE_VERSION, "source",
                      source, "trigger", 1);
        val = o ? eb_json_dumps(o) : NULL;
        json_decref(o);
        if (!val)
                return -ENOMEM;
        w = eb_xcalloc(1, sizeof(*w));
        w->m = m;
        rc = intake_produce(m, source, val, strlen(val), w);
        free(val);
        if (rc)
                free(w);
        return rc;
}

/* ---- life -----------------------------------------------------------------
 */

eb_pipeline_t *eb_shards_pipeline_for(void *opaque, const char *source)
{
        eb_shards_t *m = opaque;
        struct shard *sh = m->sh[eb_shard_of(source, m->n)];

        return sh ? sh->pipeline : NULL;
}

eb_shards_t *eb_shards_new(struct event_base *base, const struct eb_config *cfg,
                           eb_poller_t *poller, eb_shards_fatal_cb *fatal,
                           void *opaque, char *errstr, size_t errstr_size)
{
        eb_shards_t *m = eb_xcalloc(1, sizeof(*m));
        rd_kafka_conf_t *conf;
        rd_kafka_resp_err_t err;
        rd_kafka_topic_partition_list_t *tpl;
        const char *member_extra[] = {"partition.assignment.strategy",
                                      "cooperative-sticky", NULL};
        struct timeval tv = {0, 0};
        char msg[256], sess[32], hb[32];

        m->base = base;
        m->cfg = cfg;
        m->boot = cfg;
        m->poller = poller;
        m->fatal = fatal;
        m->fatal_opaque = opaque;
        m->n = cfg->scale_shards;
        m->sh = eb_xcalloc((size_t)m->n, sizeof(*m->sh));
        m->assigned = eb_xcalloc((size_t)m->n, sizeof(*m->assigned));
        m->control_topic = eb_xasprintf("%s.shards", cfg->state_prefix);
        m->group = eb_xasprintf("%s-shards", cfg->state_prefix);
        m->intake_topic = eb_xasprintf("%s.intake", cfg->state_prefix);
        m->intake_group = eb_xasprintf("%s-intake", cfg->state_prefix);

        m->writer = eb_kafka_new_ex(base, cfg, 0, errstr, errstr_size);
        if (!m->writer)
                goto fail;
        if (ensure_topic(m->writer, m->control_topic, m->n, errstr,
                         errstr_size) ||
            ensure_topic(m->writer, m->intake_topic, m->n, errstr, errstr_size))
                goto fail;
        if (!eb_kafka_state_topics_exist(m->writer, cfg) &&
            eb_kafka_ensure_state_topics(m->writer, cfg, 1, 30000, errstr,
                                         errstr_size))
                goto fail;

        /* The group member: a dead replica's shards move after
         * scale.session_timeout (kafka.properties may still override).
         * Members learn of a rebalance from a heartbeat's answer, and a
         * cooperative hand-over takes two rounds (revoke, then assign),
         * so the heartbeat is at most SHARD_HEARTBEAT_MS rather than a
         * fifth of the session (2 s by default): a heartbeat a second
         * costs the coordinator next to nothing. No static membership
         * (group.instance.id): a static member leaving cleanly would hold
         * its shards until the session timeout instead of handing them
         * over at once. */
        conf = rd_kafka_conf_new();
        snprintf(sess, sizeof(sess), "%lld",
                 (long long)cfg->scale_session_timeout_ms);
        snprintf(hb, sizeof(hb), "%lld",
                 (long long)(cfg->scale_session_timeout_ms / 5 <
                                             SHARD_HEARTBEAT_MS
                                     ? cfg->scale_session_timeout_ms / 5
                                     : SHARD_HEARTBEAT_MS));
        if (rd_kafka_conf_set(conf, "session.timeout.ms", sess, msg,
                              sizeof(msg)) ||
            rd_kafka_conf_set(conf, "heartbeat.interval.ms", hb, msg,
                              sizeof(msg))) {
                rd_kafka_conf_destroy(conf);
                snprintf(errstr, errstr_size, "scale: %s", msg);
                goto fail;
        }
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_opaque(conf, m);
        m->member = eb_state_consumer_new(eb_kafka_bootstrap(m->writer), cfg,
                                          m->group, "shards", member_extra,
                                          conf, errstr, errstr_size);
        if (!m->member)
                goto fail;
        m->intake = eb_state_consumer_new(eb_kafka_bootstrap(m->writer), cfg,
                                          m->intake_group, "intake", NULL, NULL,
                                          errstr, errstr_size);
        if (!m->intake)
                goto fail;
        tpl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tpl, m->control_topic,
                                          RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(m->member, tpl);
        rd_kafka_topic_partition_list_destroy(tpl);
        if (err) {
                snprintf(errstr, errstr_size, "scale: subscribe to %s: %s",
                         m->control_topic, rd_kafka_err2str(err));
                goto fail;
        }
        m->tick = evtimer_new(base, on_tick, m);
        evtimer_add(m->tick, &tv);
        eb_info(MOD,
                "sharding: %d shard(s), group %s on %s, intake %s; waiting "
                "for an assignment",
                m->n, m->group, m->control_topic, m->intake_topic);
        return m;
fail:
        eb_shards_free(m);
        return NULL;
}

struct shard_reload {
        eb_shards_t *m;
        struct eb_reload_tally *tally;
};

/* One source's reload, applied if a running shard of ours owns it. */
static void reload_source(const struct eb_source_cfg *o,
                          const struct eb_source_cfg *n, void *opaque)
{
        struct shard_reload *r = opaque;
        const char *name = n ? n->name : o->name;
        struct shard *sh = r->m->sh[eb_shard_of(name, r->m->n)];
        char err[512];

        /* A starting shard starts the new configuration's sources; a
         * stopping one has retired its own already. */
        if (!sh || sh->state != EB_SHARD_RUNNING)
                return;
        (void)eb_poller_replace(
                r->m->poller, o, n,
                n ? eb_pipeline_checkpoint(sh->pipeline, n->name) : NULL,
                r->tally, err, sizeof(err));
}

void eb_shards_reload(eb_shards_t *m, const struct eb_config *cfg,
                      struct eb_reload_tally *tally)
{
        const struct eb_config *old = m->cfg;
        struct shard_reload r = {m, tally};

        m->cfg = cfg;
        eb_config_diff_sources(old, cfg, reload_source, &r);
}

void eb_shards_stop(eb_shards_t *m)
{
        int i;

        m->stopping = 1;
        for (i = 0; i < m->n; i++)
                if (m->sh[i])
                        shard_stop(m, m->sh[i], "shutting down");
}

int eb_shards_idle(const eb_shards_t *m)
{
        int i;

        for (i = 0; i < m->n; i++)
                if (m->sh[i] && eb_pipeline_pending(m->sh[i]->pipeline) > 0)
                        return 0;
        return 1;
}

int eb_shards_owned(const eb_shards_t *m)
{
        int i, n = 0;

        for (i = 0; i < m->n; i++)
                n += m->sh[i] && m->sh[i]->state != EB_SHARD_STOPPING;
        return n;
}

void eb_shards_collect(struct eb_prom *w, void *opaque)
{
        eb_shards_t *m = opaque;
        char num[16];
        const char *lab[] = {"shard", num, NULL};
        const char *res[] = {"result", NULL, NULL};
        int i;

        eb_prom_family(w, "evbridge_shards", "gauge",
                       "Shards configured (scale.shards).");
        eb_prom_sample(w, NULL, NULL, m->n);
        eb_prom_family(w, "evbridge_shards_owned", "gauge",
                       "Shards this replica owns now.");
        eb_prom_sample(w, NULL, NULL, eb_shards_owned(m));
        eb_prom_family(w, "evbridge_shard_rebalances_total", "counter",
                       "Assignments and revocations of the shard group.");
        eb_prom_sample(w, NULL, NULL, (double)m->rebalances);
        eb_prom_family(w, "evbridge_shard_revoked_total", "counter",
                       "Shards taken away from this replica (lost ones "
                       "included).");
        eb_prom_sample(w, NULL, NULL, (double)m->revoked_total);
        eb_prom_family(w, "evbridge_shard_illegal_transitions_total", "counter",
                       "Shard state changes refused as illegal (a bug: "
                       "each is logged with both states).");
        eb_prom_sample(w, NULL, NULL, (double)m->illegal_transitions);
        eb_prom_family(w, "evbridge_shard_running", "gauge",
                       "1 for an owned shard that polls, 0 while it starts "
                       "or stops.");
        for (i = 0; i < m->n; i++) {
                if (!m->sh[i])
                        continue;
                snprintf(num, sizeof(num), "%d", i);
                eb_prom_sample(w, NULL, lab,
                               m->sh[i]->state == EB_SHARD_RUNNING);
        }
        eb_prom_family(w, "evbridge_shard_restored_ids", "gauge",
                       "Dedupe ids restored when the shard was assigned.");
        for (i = 0; i < m->n; i++) {
                if (!m->sh[i])
                        continue;
                snprintf(num, sizeof(num), "%d", i);
                eb_prom_sample(w, NULL, lab, (double)m->sh[i]->restored_ids);
        }
        eb_prom_family(w, "evbridge_shard_offset_commits_total", "counter",
                       "Transactions of the shard's current owner that "
                       "committed consumed intake offsets with its events.");
        for (i = 0; i < m->n; i++) {
                struct eb_kafka_stats ks;

                if (!m->sh[i])
                        continue;
                eb_kafka_get_stats(m->sh[i]->kafka, &ks);
                snprintf(num, sizeof(num), "%d", i);
                eb_prom_sample(w, NULL, lab, (double)ks.txn_offset_commits);
        }
        eb_prom_family(w, "evbridge_intake_records_total", "counter",
                       "Webhook intake records: written (by this replica's "
                       "listener), write_failed, consumed (by this "
                       "replica's shards), skipped (not an intake record "
                       "or unknown source), publish_failed.");
        res[1] = "written";
        eb_prom_sample(w, NULL, res, (double)m->intake_written);
        res[1] = "write_failed";
        eb_prom_sample(w, NULL, res, (double)m->intake_write_failed);
        res[1] = "consumed";
        eb_prom_sample(w, NULL, res, (double)m->intake_consumed);
        res[1] = "skipped";
        eb_prom_sample(w, NULL, res, (double)m->intake_skipped);
        res[1] = "publish_failed";
        eb_prom_sample(w, NULL, res, (double)m->intake_publish_failed);
}

void eb_shards_free(eb_shards_t *m)
{
        int i;

        if (!m)
                return;
        m->stopping = 1;
        m->closing = 1;
        if (m->tick)
                event_free(m->tick);
        for (i = 0; i < m->n; i++) {
                if (!m->sh[i])
                        continue;
                shard_stop(m, m->sh[i], "shutting down");
                shard_free(m->sh[i]);
                m->sh[i] = NULL;
        }
        if (m->intake) {
                rd_kafka_consumer_close(m->intake);
                rd_kafka_destroy(m->intake);
        }
        if (m->member) {
                /* leaves the group: the revoke runs on_rebalance (closing) */
                rd_kafka_consumer_close(m->member);
                rd_kafka_destroy(m->member);
        }
        if (m->revoking)
                rd_kafka_topic_partition_list_destroy(m->revoking);
        eb_kafka_free(m->writer);
        free(m->sh);
        free(m->assigned);
        free(m->control_topic);
        free(m->group);
        free(m->intake_topic);
        free(m->intake_group);
        free(m);
}
