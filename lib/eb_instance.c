/*
 * eb_instance: one active evbridge per transactional.id (eb_instance.h).
 */
#include "eb_instance.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_kafka.h"
#include "eb_log.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "instance"

#define CHECK_EVERY_MS  3000
#define POLL_EVERY_MS   500
#define DESCRIBE_TMOUT  3000
#define REPEAT_ERROR_MS 60000
#define SESSION_TIMEOUT "10000"
#define JOIN_WAIT_MS    15000
#define CHECK_TRIES     15

enum guard_state {
        G_IDLE = 0, /* not started */
        G_WAITING,  /* another instance is live: standby */
        G_JOINING,  /* joining the group before the instance runs */
        G_ACTIVE,   /* a member of the group; the instance runs */
};

struct eb_instance_s {
        struct event_base *base;
        const struct eb_config *cfg;
        char *bootstrap;
        char *id;    /* group.instance.id */
        char *group; /* <transactional.id>.instance */
        char *topic; /* subscribed (paused): the checkpoints topic */
        enum guard_state state;
        rd_kafka_t *member;
        struct event *timer;
        eb_instance_cb *cb;
        void *opaque;
        char waiting[512];
        int64_t last_error_ms;
        int transient;      /* the last check failed for a passing reason */
        int check_failures; /* transient failures in a row */
        int joined;         /* the group assigned this member */
        int64_t join_deadline_ms;
};

static char *identity(void)
{
        const char *e = getenv("EVBRIDGE_INSTANCE");
        char host[256];

        if (!e || !*e)
                e = getenv("HOSTNAME");
        if (e && *e)
                return eb_xstrdup(e);
        if (gethostname(host, sizeof(host)) == 0) {
                host[sizeof(host) - 1] = '\0';
                return eb_xstrdup(host);
        }
        return eb_xstrdup("evbridge");
}

eb_instance_t *eb_instance_new(struct event_base *base, const char *bootstrap,
                               const struct eb_config *cfg, char *errstr,
                               size_t errstr_size)
{
        eb_instance_t *g = eb_xcalloc(1, sizeof(*g));

        (void)errstr;
        (void)errstr_size;
        g->base = base;
        g->cfg = cfg;
        g->bootstrap = eb_xstrdup(bootstrap ? bootstrap : "");
        g->id = identity();
        g->group = eb_xasprintf("%s.instance", cfg->transactional_id);
        g->topic = eb_state_topic_checkpoints(cfg);
        return g;
}

const char *eb_instance_waiting(const eb_instance_t *g)
{
        return g && g->state == G_WAITING ? g->waiting : NULL;
}

const char *eb_instance_id(const eb_instance_t *g)
{
        return g->id;
}

/* The group only marks membership: what it is assigned is never read. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        eb_instance_t *g = opaque;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                (void)rd_kafka_assign(rk, parts);
                (void)rd_kafka_pause_partitions(rk, parts);
                g->joined = 1;
        } else {
                (void)rd_kafka_assign(rk, NULL);
        }
}

/* A group coordinator still loading or moving: ask again shortly. */
static int transient(rd_kafka_resp_err_t err)
{
        switch (err) {
        case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
        case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
                return 1;
        default:
                return 0;
        }
}

static rd_kafka_t *admin_handle(eb_instance_t *g, char *errstr,
                                size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;
        char msg[512];
        size_t i;

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        /* TLS and SASL as the producer has them; what a producer handle
         * does not take is left out (it concerns consumers). */
        for (i = 0; i < g->cfg->properties_cnt; i++) {
                const struct eb_kv *kv = &g->cfg->properties[i];

                if (kv->key && kv->value)
                        (void)rd_kafka_conf_set(conf, kv->key, kv->value, msg,
                                                sizeof(msg));
        }
        if (eb_kafka_conf_set(conf, "kafka.brokers", "bootstrap.servers",
                              g->bootstrap, errstr, errstr_size) ||
            eb_kafka_conf_set(conf, "instance", "client.id",
                              "evbridge-instance-check", errstr, errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof(msg));
        if (!rk) {
                eb_log_redact(msg, errstr, errstr_size);
                rd_kafka_conf_destroy(conf);
        }
        return rk;
}

/*
 * Another live instance, described into @p who, or 0. -1 when the group
 * cannot be described (then @p who says why), -2 on librdkafka's mock.
 */
static int other_instance(eb_instance_t *g, char *who, size_t who_size)
{
        rd_kafka_t *rk;
        rd_kafka_queue_t *q;
        rd_kafka_AdminOptions_t *o;
        rd_kafka_event_t *ev;
        const char *groups[1];
        char err[512];
        int found = -1;

        /* A producer handle: an Admin call needs no consumer group, and
         * destroying a consumer waits for its group coordinator, which a
         * cluster without one (librdkafka's mock) never answers. */
        rk = admin_handle(g, err, sizeof(err));
        if (!rk) {
                snprintf(who, who_size, "%s", err);
                return -1;
        }
        /* librdkafka's mock cluster (evbridge-kafka-mock) describes no
         * group, and a handle that asked it cannot be destroyed. */
        {
                char *cid = rd_kafka_clusterid(rk, DESCRIBE_TMOUT);
                int mock = cid && !strncmp(cid, "mockCluster", 11);

                if (cid)
                        rd_kafka_mem_free(rk, cid);
                if (mock) {
                        rd_kafka_destroy(rk);
                        return -2;
                }
        }
        groups[0] = g->group;
        q = rd_kafka_queue_new(rk);
        o = rd_kafka_AdminOptions_new(rk,
                                      RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
        (void)rd_kafka_AdminOptions_set_request_timeout(o, DESCRIBE_TMOUT, err,
                                                        sizeof(err));
        rd_kafka_DescribeConsumerGroups(rk, groups, 1, o, q);
        ev = rd_kafka_queue_poll(q, DESCRIBE_TMOUT + 1000);
        g->transient = 0;
        if (!ev) {
                g->transient = 1;
                snprintf(who, who_size, "DescribeConsumerGroups timed out");
        } else if (rd_kafka_event_error(ev)) {
                g->transient = transient(rd_kafka_event_error(ev));
                snprintf(who, who_size, "%s", rd_kafka_event_error_string(ev));
        } else {
                const rd_kafka_DescribeConsumerGroups_result_t *res =
                        rd_kafka_event_DescribeConsumerGroups_result(ev);
                size_t n = 0, i;
                const rd_kafka_ConsumerGroupDescription_t **d =
                        rd_kafka_DescribeConsumerGroups_result_groups(res, &n);
                const rd_kafka_error_t *ge =
                        n ? rd_kafka_ConsumerGroupDescription_error(d[0])
                          : NULL;

                if (!n || ge) {
                        g->transient =
                                !ge || transient(rd_kafka_error_code(ge));
                        snprintf(who, who_size, "%s",
                                 ge ? rd_kafka_error_string(ge) : "no result");
                } else {
                        found = 0;
                        for (i = 0;
                             i < rd_kafka_ConsumerGroupDescription_member_count(
                                         d[0]);
                             i++) {
                                const rd_kafka_MemberDescription_t *m =
                                        rd_kafka_ConsumerGroupDescription_member(
                                                d[0], i);
                                const char *iid =
                                        rd_kafka_MemberDescription_group_instance_id(
                                                m);

                                if (iid && !strcmp(iid, g->id))
                                        continue; /* our own, restarted */
                                snprintf(who, who_size, "instance %s (host %s)",
                                         iid ? iid : "?",
                                         rd_kafka_MemberDescription_host(m));
                                found = 1;
                                break;
                        }
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(o);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return found;
}

static int join(eb_instance_t *g, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        const char *extra[] = {"group.instance.id",
                               g->id,
                               "session.timeout.ms",
                               SESSION_TIMEOUT,
                               "enable.partition.eof",
                               "false",
                               NULL,
                               NULL};
        rd_kafka_topic_partition_list_t *sub;
        rd_kafka_resp_err_t err;

        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_opaque(conf, g);
        g->member = eb_state_consumer_new(g->bootstrap, g->cfg, g->group,
                                          "instance", extra, conf, errstr,
                                          errstr_size);
        if (!g->member)
                return -EINVAL;
        sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, g->topic, RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(g->member, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (err) {
                snprintf(errstr, errstr_size, "subscribe %s: %s", g->topic,
                         rd_kafka_err2str(err));
                return -EIO;
        }
        return 0;
}

static void arm(eb_instance_t *g, int ms)
{
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        evtimer_add(g->timer, &tv);
}

/* Serve the member's callbacks (rebalances, errors); never read data. */
static void poll_member(eb_instance_t *g)
{
        rd_kafka_message_t *m;

        while ((m = rd_kafka_consumer_poll(g->member, 0)) != NULL) {
                if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        eb_debug(MOD, "group %s: %s", g->group,
                                 rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
        }
}

static void run(eb_instance_t *g)
{
        g->state = G_ACTIVE;
        g->waiting[0] = '\0';
        if (g->member)
                arm(g, POLL_EVERY_MS);
        g->cb(g->opaque);
}

/* No other instance: join the group, and run once it has taken us in
 * (so that an instance starting meanwhile finds this one), or after
 * JOIN_WAIT_MS whatever the group says. */
static void go_active(eb_instance_t *g, int join_group)
{
        char err[512];

        g->waiting[0] = '\0';
        if (!join_group) {
                run(g);
                return;
        }
        if (join(g, err, sizeof(err))) {
                eb_warn(MOD,
                        "cannot join group %s (%s): running without the "
                        "single-instance check; fencing still keeps the "
                        "output exactly once",
                        g->group, err);
                run(g);
                return;
        }
        g->state = G_JOINING;
        g->join_deadline_ms = eb_mono_ms() + JOIN_WAIT_MS;
        arm(g, 50);
}

static void check(eb_instance_t *g)
{
        char who[400];
        int rc = other_instance(g, who, sizeof(who));
        int64_t now = eb_mono_ms();

        if (rc == -2) {
                eb_info(MOD, "librdkafka's mock cluster: no single-instance "
                             "check (it describes no consumer group)");
                go_active(g, 0);
                return;
        }
        if (rc < 0 && g->transient && ++g->check_failures < CHECK_TRIES) {
                /* e.g. a new cluster's group coordinator still loading */
                eb_debug(MOD, "group %s: %s; checking again", g->group, who);
                arm(g, 1000);
                return;
        }
        g->check_failures = 0;
        if (rc < 0) {
                eb_warn(MOD,
                        "cannot check for another instance with "
                        "transactional.id=%s (group %s: %s; grant READ and "
                        "DESCRIBE on it): going on, fencing still keeps the "
                        "output exactly once",
                        g->cfg->transactional_id, g->group, who);
                go_active(g, 1);
                return;
        }
        if (rc == 0) {
                if (g->state == G_WAITING)
                        eb_info(MOD,
                                "the other instance is gone: taking over "
                                "transactional.id=%s",
                                g->cfg->transactional_id);
                go_active(g, 1);
                return;
        }
        snprintf(g->waiting, sizeof(g->waiting),
                 "standby: %s runs with transactional.id=%s", who,
                 g->cfg->transactional_id);
        if (g->state != G_WAITING ||
            now - g->last_error_ms >= REPEAT_ERROR_MS) {
                eb_error(MOD,
                         "another evbridge, %s, already runs with "
                         "transactional.id=%s: without scale.shards only one "
                         "replica may run. Run one replica, or set "
                         "scale.shards so that replicas share the sources "
                         "(docs/scaling.md). Waiting as a standby (not "
                         "ready); this one takes over when the other stops",
                         who, g->cfg->transactional_id);
                g->last_error_ms = now;
        }
        g->state = G_WAITING;
        arm(g, CHECK_EVERY_MS);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        eb_instance_t *g = arg;

        (void)fd;
        (void)what;
        if (g->state == G_ACTIVE) {
                poll_member(g);
                arm(g, POLL_EVERY_MS);
        } else if (g->state == G_JOINING) {
                poll_member(g);
                if (g->joined) {
                        run(g);
                } else if (eb_mono_ms() >= g->join_deadline_ms) {
                        eb_warn(MOD,
                                "group %s has not taken this instance in "
                                "after %d ms; going on (fencing still keeps "
                                "the output exactly once)",
                                g->group, JOIN_WAIT_MS);
                        run(g);
                } else {
                        arm(g, 50);
                }
        } else {
                check(g);
        }
}

void eb_instance_start(eb_instance_t *g, eb_instance_cb *cb, void *opaque)
{
        g->cb = cb;
        g->opaque = opaque;
        g->timer = evtimer_new(g->base, on_timer, g);
        check(g);
}

void eb_instance_free(eb_instance_t *g)
{
        if (!g)
                return;
        if (g->timer)
                event_free(g->timer);
        if (g->member) {
                (void)rd_kafka_consumer_close(g->member);
                rd_kafka_destroy(g->member);
        }
        free(g->bootstrap);
        free(g->id);
        free(g->group);
        free(g->topic);
        free(g);
}
