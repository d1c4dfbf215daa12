#include "eb_kafka.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eb_time.h"
#include "eb_util.h"

#define MOD "kafka"

/* At most this many lines per second for a repeated kind of failure. */
#define EB_KAFKA_LOG_BURST 10

/* A transaction operation still running says so this often. */
#define EB_KAFKA_TXN_REPORT_MS 10000

/* Error events handed from another thread to the loop, at most. */
#define EB_KAFKA_DEFERRED_MAX 16

/* The transaction operation running. */
enum txn_op {
        TXN_OP_NONE = 0,
        TXN_OP_INIT,
        TXN_OP_COMMIT,
        TXN_OP_ABORT,
};

/* Where the running operation is. */
enum txn_phase {
        TXN_PHASE_IDLE = 0,
        TXN_PHASE_WAIT_DRS, /* loop: waiting for every delivery report */
        TXN_PHASE_WORKER,   /* the helper thread is in librdkafka */
};

/* The helper thread that makes librdkafka's blocking transactional calls
 * (see "transactions" below). Everything but thread is under mu. */
struct txn_worker {
        pthread_t thread;
        int started; /* loop thread only */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        enum txn_op job;          /* to run; NONE: idle */
        int quit;                 /* stop at the next slice */
        int done;                 /* finished; result below */
        rd_kafka_error_t *result; /* NULL: success */
};

/* An error event librdkafka served on the helper thread. */
struct deferred_err {
        int err;
        char reason[512];
};

struct ratelimit {
        int64_t window_ms; /* start of the current 1 s window */
        int count;         /* lines logged in it */
        uint64_t dropped;  /* lines suppressed since the last report */
};

struct eb_kafka_s {
        struct event_base *base; /* borrowed */
        rd_kafka_t *rk;
        rd_kafka_queue_t *mainq; /* io-event enabled main queue */
        int wake_fds[2];         /* [0] read end (loop), [1] librdkafka */
        struct event *wake_ev;
        struct event *backstop_ev;

        /* Embedded mode: the mock cluster and the handle that owns it. */
        rd_kafka_t *mock_rk;
        rd_kafka_mock_cluster_t *mock;
        char *bootstrap;

        eb_kafka_fatal_cb_t *fatal_cb;
        void *fatal_opaque;
        int64_t drain_ms;

        int flags;
#define EB_KAFKA_F_FATAL    0x1 /* fatal error seen: produce refuses */
#define EB_KAFKA_F_CLOSING  0x2 /* inside eb_kafka_free() */
#define EB_KAFKA_F_REPORTED 0x4 /* fatal callback has run (at most once) */

        eb_kafka_persisted_t dr_status; /* of the DR being served */
        struct eb_kafka_stats stats;
        struct ratelimit rl_dr;
        struct ratelimit rl_err;
        char fatal_msg[768]; /* what the fatal callback was told */

        /* The last connection-level problem librdkafka reported (error
         * events: transport, resolve, TLS, SASL, all brokers down), for
         * the start-up and /readyz while the cluster cannot be used. */
        char problem[512];
        int problem_err;
        /* The last message the cluster refused (an ACL, a topic), for
         * /status: the log has every one, rate-limited. */
        char failure[400];
        int64_t failure_ms;

        pthread_t loop_thread; /* the thread that made the handle */
        int sync_ready;        /* the mutexes below are initialised */
        pthread_mutex_t def_mu;
        struct deferred_err deferred[EB_KAFKA_DEFERRED_MAX];
        int ndeferred;
        uint64_t deferred_dropped;

        /* Transactions: txn_id is NULL unless transactional. */
        char *txn_id;
        eb_kafka_txn_state_t txn_state;
        struct event *txn_ev; /* drives txn_op */
        enum txn_op txn_op;
        enum txn_phase txn_phase;
        struct txn_worker worker;
        eb_kafka_txn_cb_t *txn_cb;
        void *txn_opaque;
        int64_t txn_op_start_ms; /* when txn_op started */
        int64_t txn_report_ms;   /* next "still running" line */
        int txn_tick_ms;         /* next resume delay */
        uint64_t txn_msgs;       /* produced in the open transaction */
        /* Consumed offsets to commit with the open transaction
         * (eb_kafka_txn_set_offsets()); the helper sends them before the
         * commit. Owned; cleared when the transaction ends. */
        rd_kafka_topic_partition_list_t *txn_offsets;
        rd_kafka_consumer_group_metadata_t *txn_cgmd;
        int txn_offsets_sent;
};

/* Per-message context, recovered in the delivery report as _private. */
struct msgctx {
        eb_kafka_dr_cb_t *cb;
        void *opaque;
};

static int rl_allow(struct ratelimit *rl)
{
        int64_t now = eb_mono_ms();

        if (now - rl->window_ms >= 1000) {
                rl->window_ms = now;
                rl->count = 0;
        }
        if (rl->count >= EB_KAFKA_LOG_BURST) {
                rl->dropped++;
                return 0;
        }
        rl->count++;
        return 1;
}

static int errno_of(rd_kafka_resp_err_t err)
{
        switch (err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
                return 0;
        case RD_KAFKA_RESP_ERR__QUEUE_FULL:
                return -EAGAIN;
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
                return -ETIMEDOUT;
        case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
                return -ECANCELED;
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
                return -EACCES;
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
                return -ENOENT;
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_MSG:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
                return -EINVAL;
        default:
                return -EIO;
        }
}

static const char *status_name(rd_kafka_msg_status_t st)
{
        switch (st) {
        case RD_KAFKA_MSG_STATUS_NOT_PERSISTED:
                return "NOT_PERSISTED";
        case RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED:
                return "POSSIBLY_PERSISTED";
        case RD_KAFKA_MSG_STATUS_PERSISTED:
                return "PERSISTED";
        }
        return "?";
}

static uint64_t undelivered(const eb_kafka_t *k);
static void txn_schedule(eb_kafka_t *k, int ms);

/* A refusal worth showing: not a purge (aborted transaction, teardown). */
static void note_failure(eb_kafka_t *k, const char *topic,
                         rd_kafka_resp_err_t err)
{
        if (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
            err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
                return;
        snprintf(k->failure, sizeof(k->failure), "topic %s: %s (%s)",
                 topic ? topic : "?", rd_kafka_err2str(err),
                 rd_kafka_err2name(err));
        k->failure_ms = eb_now_ms();
}

/*
 * Delivery report: served on the loop thread by rd_kafka_poll() or
 * rd_kafka_flush(). Exactly one per accepted message.
 */
static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
        eb_kafka_t *k = opaque;
        struct msgctx *ctx = rkm->_private;
        rd_kafka_msg_status_t st = rd_kafka_message_status(rkm);
        int err = errno_of(rkm->err);

        (void)rk;
        if (!rkm->err) {
                k->stats.delivered++;
                k->dr_status = EB_KAFKA_PERSISTED;
        } else {
                k->stats.failed++;
                k->dr_status = st == RD_KAFKA_MSG_STATUS_NOT_PERSISTED
                                       ? EB_KAFKA_NOT_PERSISTED
                                       : EB_KAFKA_POSSIBLY_PERSISTED;
                if (!(k->flags & EB_KAFKA_F_CLOSING))
                        note_failure(k, rd_kafka_topic_name(rkm->rkt),
                                     rkm->err);
                /* Purges at teardown are summed up by eb_kafka_free(). */
                if (!(err == -ECANCELED && (k->flags & EB_KAFKA_F_CLOSING)) &&
                    rl_allow(&k->rl_dr))
                        eb_warn(MOD,
                                "delivery failed topic=%s partition=%d "
                                "key=%.*s err=%s status=%s: %s",
                                rd_kafka_topic_name(rkm->rkt),
                                (int)rkm->partition,
                                (int)(rkm->key_len > 200 ? 200 : rkm->key_len),
                                rkm->key ? (const char *)rkm->key : "",
                                rd_kafka_err2name(rkm->err), status_name(st),
                                rd_kafka_err2str(rkm->err));
        }
        if (ctx) {
                if (ctx->cb)
                        ctx->cb(ctx->opaque, err, rd_kafka_err2str(rkm->err));
                free(ctx);
        }
        k->dr_status = EB_KAFKA_NOT_PERSISTED;
        /* The last report a commit or abort waits for: go on now rather
         * than at the operation's next tick. */
        if (k->txn_op != TXN_OP_NONE && k->txn_phase == TXN_PHASE_WAIT_DRS &&
            undelivered(k) == 0)
                txn_schedule(k, 0);
}

/* Wake the loop from another thread (the pipe librdkafka also writes to);
 * a full pipe already holds a wake-up. */
static void wake_loop(eb_kafka_t *k)
{
        ssize_t n = write(k->wake_fds[1], "w", 1);

        (void)n;
}

static int is_fenced(rd_kafka_resp_err_t code)
{
        return code == RD_KAFKA_RESP_ERR__FENCED ||
               code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
               code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* How a fatal error reaches a transaction callback. */
static int fatal_errno(rd_kafka_resp_err_t code)
{
        if (is_fenced(code))
                return -EPERM;
        switch (code) {
        case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
                return -EACCES;
        default:
                return -EIO;
        }
}

/*
 * The one place a fatal error is recorded: produce refuses from now on,
 * the transaction state is FATAL, and the fatal callback runs once, with
 * a message that says plainly when this instance was fenced (librdkafka's
 * own text does not name the transactional.id).
 */
static void set_fatal(eb_kafka_t *k, rd_kafka_resp_err_t code, const char *text)
{
        k->flags |= EB_KAFKA_F_FATAL;
        if (k->txn_id)
                k->txn_state = EB_KAFKA_TXN_FATAL;
        if (k->flags & EB_KAFKA_F_REPORTED)
                return;
        k->flags |= EB_KAFKA_F_REPORTED;
        if (k->txn_id && is_fenced(code))
                snprintf(k->fatal_msg, sizeof(k->fatal_msg),
                         "fenced: another evbridge with transactional.id=%s "
                         "took over (%s). If no instance was restarted or "
                         "replaced, two replicas run with one config: run "
                         "one replica, or set scale.shards so that they "
                         "share the sources (docs/scaling.md)",
                         k->txn_id, text);
        else
                snprintf(k->fatal_msg, sizeof(k->fatal_msg), "%s", text);
        eb_error(MOD, "fatal producer error: %s", k->fatal_msg);
        if (k->fatal_cb)
                k->fatal_cb(k->fatal_opaque, k->fatal_msg);
}

/* Connection-level error events are kept (the last one wins, but "all
 * brokers are down" does not hide the reason they are). */
static void note_problem(eb_kafka_t *k, int err, const char *reason)
{
        switch (err) {
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
                if (k->problem_err &&
                    k->problem_err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                        return;
                break;
        case RD_KAFKA_RESP_ERR__TRANSPORT:
        case RD_KAFKA_RESP_ERR__RESOLVE:
        case RD_KAFKA_RESP_ERR__SSL:
        case RD_KAFKA_RESP_ERR__AUTHENTICATION:
                break;
        default:
                return;
        }
        k->problem_err = err;
        snprintf(k->problem, sizeof(k->problem), "%s", reason ? reason : "");
}

/*
 * librdkafka error events. Most are informational (a broker went away and
 * librdkafka reconnects by itself); only ERR__FATAL means the producer is
 * finished. Served on the loop thread.
 */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        eb_kafka_t *k = opaque;
        rd_kafka_resp_err_t code;
        char buf[512];

        if (!pthread_equal(pthread_self(), k->loop_thread)) {
                /*
                 * Served by the transaction helper from inside librdkafka's
                 * flush: hand it to the loop (serve() runs it there).
                 */
                pthread_mutex_lock(&k->def_mu);
                if (k->ndeferred < EB_KAFKA_DEFERRED_MAX) {
                        struct deferred_err *d = &k->deferred[k->ndeferred++];

                        d->err = err;
                        snprintf(d->reason, sizeof(d->reason), "%s",
                                 reason ? reason : "");
                } else {
                        k->deferred_dropped++;
                }
                pthread_mutex_unlock(&k->def_mu);
                wake_loop(k);
                return;
        }

        note_problem(k, err, reason);
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
                /* Wrong credentials or mechanism: librdkafka would retry
                 * for ever, and no retry can fix it. */
                char msg[600];

                snprintf(msg, sizeof(msg), "authentication failed: %s",
                         reason ? reason : "");
                set_fatal(k, (rd_kafka_resp_err_t)err, msg);
                return;
        }
        if (err == RD_KAFKA_RESP_ERR__TRANSPORT) {
                /* librdkafka has logged it already (log facility FAIL) */
                eb_debug(MOD, "error err=%s: %s",
                         rd_kafka_err2name((rd_kafka_resp_err_t)err),
                         reason ? reason : "");
                return;
        }
        if (err != RD_KAFKA_RESP_ERR__FATAL) {
                if (rl_allow(&k->rl_err))
                        eb_warn(MOD, "error err=%s: %s",
                                rd_kafka_err2name((rd_kafka_resp_err_t)err),
                                reason ? reason : "");
                return;
        }
        buf[0] = '\0';
        code = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        set_fatal(k, code, buf[0] ? buf : (reason ? reason : "fatal error"));
}

/* Once a window has passed, say how many lines it swallowed. */
static void report_dropped(struct ratelimit *rl, const char *what)
{
        if (rl->dropped && eb_mono_ms() - rl->window_ms >= 1000) {
                eb_warn(MOD, "%llu more %s not logged",
                        (unsigned long long)rl->dropped, what);
                rl->dropped = 0;
        }
}

/* Error events the helper thread handed over, run on the loop. */
static void serve_deferred(eb_kafka_t *k)
{
        struct deferred_err d[EB_KAFKA_DEFERRED_MAX];
        uint64_t dropped;
        int n, i;

        if (!k->sync_ready)
                return;
        pthread_mutex_lock(&k->def_mu);
        n = k->ndeferred;
        memcpy(d, k->deferred, (size_t)n * sizeof(d[0]));
        k->ndeferred = 0;
        dropped = k->deferred_dropped;
        k->deferred_dropped = 0;
        pthread_mutex_unlock(&k->def_mu);
        for (i = 0; i < n; i++)
                on_error(k->rk, d[i].err, d[i].reason, k);
        if (dropped)
                eb_warn(MOD, "%llu librdkafka error events lost",
                        (unsigned long long)dropped);
}

static void txn_poll_worker(eb_kafka_t *k);

static void serve(eb_kafka_t *k)
{
        (void)rd_kafka_poll(k->rk, 0);
        serve_deferred(k);
        if (k->txn_id)
                txn_poll_worker(k);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
        char buf[64];

        (void)what;
        /* Drain first: a write that lands after this is a new wake-up. */
        while (read(fd, buf, sizeof(buf)) > 0)
                ;
        serve(arg);
}

static void on_backstop(evutil_socket_t fd, short what, void *arg)
{
        eb_kafka_t *k = arg;

        (void)fd;
        (void)what;
        serve(k);
        report_dropped(&k->rl_dr, "delivery failures");
        report_dropped(&k->rl_err, "errors");
}

static int set_nonblock(int fd)
{
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

static int is_sensitive(const char *key)
{
        return strstr(key, "password") || strstr(key, "secret") ||
               strstr(key, "ssl.key.pem") ||
               strstr(key, "oauthbearer.config") || strstr(key, "jaas");
}

int eb_kafka_conf_set(rd_kafka_conf_t *conf, const char *what, const char *key,
                      const char *val, char *errstr, size_t errstr_size)
{
        char msg[512];
        char red[512];

        if (rd_kafka_conf_set(conf, key, val, msg, sizeof(msg)) ==
            RD_KAFKA_CONF_OK)
                return 0;
        eb_log_redact(msg, red, sizeof(red));
        snprintf(errstr, errstr_size, "%s: %s", what, red);
        return -EINVAL;
}

static int start_embedded(eb_kafka_t *k, const struct eb_config *cfg,
                          char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int n = cfg->embedded_brokers ? cfg->embedded_brokers : 1;
        char msg[512];

        if (n < 1 || n > EB_KAFKA_MAX_EMBEDDED_BROKERS) {
                snprintf(errstr, errstr_size,
                         "kafka.embedded_brokers: %d is out of range 1..%d",
                         cfg->embedded_brokers, EB_KAFKA_MAX_EMBEDDED_BROKERS);
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        /*
         * librdkafka 2.0.2's rd_kafka_mock_cluster_new() wants an rd_kafka_t
         * for its bookkeeping; a dedicated one keeps the cluster's life
         * independent of the producer's (which must go first at teardown).
         * It never connects anywhere, so only its warnings are of interest.
         */
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        if (eb_kafka_conf_set(conf, "kafka", "client.id",
                              "evbridge-embedded-cluster", errstr,
                              errstr_size) ||
            eb_kafka_conf_set(conf, "kafka", "log_level", "4", errstr,
                              errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof(msg));
        if (!k->mock_rk) {
                rd_kafka_conf_destroy(conf);
                snprintf(errstr, errstr_size, "kafka: embedded cluster: %s",
                         msg);
                return -EIO;
        }
        k->mock = rd_kafka_mock_cluster_new(k->mock_rk, n);
        if (!k->mock) {
                snprintf(errstr, errstr_size,
                         "kafka: could not start the embedded cluster");
                return -EIO;
        }
        k->bootstrap = eb_xstrdup(rd_kafka_mock_cluster_bootstraps(k->mock));
        (void)eb_kafka_mock_nodelay();
        eb_warn(MOD,
                "EMBEDDED KAFKA: no kafka.brokers configured, running an "
                "in-process mock cluster (%d broker%s). NOTHING IS DURABLE: "
                "every event, checkpoint and dedupe record is lost when this "
                "process exits. Not for production.",
                n, n == 1 ? "" : "s");
        eb_warn(MOD,
                "embedded cluster bootstrap.servers=%s (inspect it with "
                "`kcat -b %s -L`)",
                k->bootstrap, k->bootstrap);
        return 0;
}

static int make_conf(eb_kafka_t *k, const struct eb_config *cfg,
                     rd_kafka_conf_t **confp, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char host[256];
        char num[32];
        char *client_id = NULL;
        int user_bootstrap = 0;
        int user_msg_timeout = 0;
        size_t i;
        int rc = -EINVAL;

        if (gethostname(host, sizeof(host)) != 0 || !host[0])
                snprintf(host, sizeof(host), "unknown");
        host[sizeof(host) - 1] = '\0';
        client_id = eb_xasprintf("evbridge-%s", host);

        rd_kafka_conf_set_opaque(conf, k);
        rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
        rd_kafka_conf_set_error_cb(conf, on_error);
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);

        snprintf(num, sizeof(num), "%d", EB_KAFKA_MESSAGE_TIMEOUT_MS);
        if (eb_kafka_conf_set(conf, "kafka", "enable.idempotence", "true",
                              errstr, errstr_size) ||
            eb_kafka_conf_set(conf, "kafka", "acks", "all", errstr,
                              errstr_size) ||
            eb_kafka_conf_set(conf, "kafka", "message.timeout.ms", num, errstr,
                              errstr_size) ||
            eb_kafka_conf_set(conf, "kafka", "client.id", client_id, errstr,
                              errstr_size) ||
            eb_kafka_conf_set(conf, "kafka", "log.queue", "true", errstr,
                              errstr_size))
                goto out;
        if (!cfg->embedded && cfg->brokers &&
            eb_kafka_conf_set(conf, "kafka.brokers", "bootstrap.servers",
                              cfg->brokers, errstr, errstr_size))
                goto out;
        if (cfg->queue_max_messages > 0) {
                snprintf(num, sizeof(num), "%zu", cfg->queue_max_messages);
                if (eb_kafka_conf_set(conf, "kafka.queue_max_messages",
                                      "queue.buffering.max.messages", num,
                                      errstr, errstr_size))
                        goto out;
        }
        if (k->txn_id) {
                /* A transaction produces its messages in one go and then
                 * waits for them: librdkafka's 5 ms linger would only add
                 * latency to every transaction. */
                snprintf(num, sizeof(num), "%d", EB_KAFKA_TXN_TIMEOUT_MS);
                if (eb_kafka_conf_set(conf, "kafka.transactional_id",
                                      "transactional.id", k->txn_id, errstr,
                                      errstr_size) ||
                    eb_kafka_conf_set(conf, "kafka", "transaction.timeout.ms",
                                      num, errstr, errstr_size) ||
                    eb_kafka_conf_set(conf, "kafka", "linger.ms", "1", errstr,
                                      errstr_size))
                        goto out;
        }
        for (i = 0; i < cfg->properties_cnt; i++) {
                const struct eb_kv *kv = &cfg->properties[i];
                char what[300];

                if (!kv->key || !kv->value) {
                        snprintf(errstr, errstr_size,
                                 "kafka.properties: entry %zu has no key or "
                                 "value",
                                 i);
                        goto out;
                }
                if (is_sensitive(kv->key))
                        eb_log_add_secret(kv->value);
                if (!strcmp(kv->key, "bootstrap.servers") ||
                    !strcmp(kv->key, "metadata.broker.list"))
                        user_bootstrap = 1;
                if (!strcmp(kv->key, "message.timeout.ms") ||
                    !strcmp(kv->key, "delivery.timeout.ms"))
                        user_msg_timeout = 1;
                if (!strcmp(kv->key, "transactional.id")) {
                        /* A producer made transactional behind our back
                         * refuses every produce outside a transaction. */
                        snprintf(errstr, errstr_size,
                                 "kafka.properties.transactional.id: not "
                                 "allowed here; set kafka.transactional_id");
                        goto out;
                }
                snprintf(what, sizeof(what), "kafka.properties.%s", kv->key);
                if (eb_kafka_conf_set(conf, what, kv->key, kv->value, errstr,
                                      errstr_size))
                        goto out;
        }
        if (k->txn_id && !user_msg_timeout) {
                /*
                 * librdkafka refuses message.timeout.ms >
                 * transaction.timeout.ms; a message may not outlive its
                 * transaction anyway.
                 */
                char tmo[32];
                size_t tmo_size = sizeof(tmo);

                if (rd_kafka_conf_get(conf, "transaction.timeout.ms", tmo,
                                      &tmo_size) != RD_KAFKA_CONF_OK ||
                    eb_kafka_conf_set(conf, "kafka", "message.timeout.ms", tmo,
                                      errstr, errstr_size))
                        goto out;
        }
        if (cfg->embedded) {
                /* bootstrap.servers is set once the cluster runs */
                if (user_bootstrap)
                        eb_warn(MOD, "embedded mode: ignoring "
                                     "kafka.properties.bootstrap.servers");
        } else if (!cfg->brokers && !user_bootstrap) {
                snprintf(errstr, errstr_size,
                         "kafka.brokers: not set (and not embedded)");
                goto out;
        }
        *confp = conf;
        conf = NULL;
        rc = 0;
out:
        if (conf)
                rd_kafka_conf_destroy(conf);
        free(client_id);
        return rc;
}

static void txn_step(evutil_socket_t fd, short what, void *arg);

eb_kafka_t *eb_kafka_new(struct event_base *base, const struct eb_config *cfg,
                         char *errstr, size_t errstr_size)
{
        return eb_kafka_new_ex(base, cfg, 0, errstr, errstr_size);
}

eb_kafka_t *eb_kafka_new_ex(struct event_base *base,
                            const struct eb_config *cfg, int flags,
                            char *errstr, size_t errstr_size)
{
        eb_kafka_t *k = eb_xcalloc(1, sizeof(*k));
        rd_kafka_conf_t *conf = NULL;
        struct timeval tv = {0, EB_KAFKA_BACKSTOP_MS * 1000};
        char msg[512];
        rd_kafka_resp_err_t err;
        int rc;

        k->base = base;
        k->wake_fds[0] = -1;
        k->wake_fds[1] = -1;
        k->loop_thread = pthread_self();
        if (pthread_mutex_init(&k->def_mu, NULL) != 0 ||
            pthread_mutex_init(&k->worker.mu, NULL) != 0 ||
            pthread_cond_init(&k->worker.cv, NULL) != 0) {
                snprintf(errstr, errstr_size, "kafka: cannot create locks");
                free(k);
                return NULL;
        }
        k->sync_ready = 1;
        k->drain_ms = cfg->drain_timeout_ms > 0 ? cfg->drain_timeout_ms
                                                : EB_KAFKA_DEFAULT_DRAIN_MS;
        if ((flags & EB_KAFKA_NEW_F_TRANSACTIONS) &&
            cfg->delivery == EB_DELIVERY_EXACTLY_ONCE) {
                if (!cfg->transactional_id || !*cfg->transactional_id) {
                        snprintf(errstr, errstr_size,
                                 "kafka.transactional_id: must be set for "
                                 "exactly-once delivery");
                        goto fail;
                }
                k->txn_id = eb_xstrdup(cfg->transactional_id);
                k->txn_state = EB_KAFKA_TXN_INIT;
        }

        /* Validate every property before starting anything. */
        if (make_conf(k, cfg, &conf, errstr, errstr_size) != 0)
                goto fail;
        if (cfg->embedded) {
                if (start_embedded(k, cfg, errstr, errstr_size) != 0 ||
                    eb_kafka_conf_set(conf, "kafka", "bootstrap.servers",
                                      k->bootstrap, errstr, errstr_size) != 0) {
                        rd_kafka_conf_destroy(conf);
                        goto fail;
                }
        } else {
                k->bootstrap = eb_xstrdup(cfg->brokers ? cfg->brokers : "");
        }

        k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof(msg));
        if (!k->rk) {
                char red[512];

                rd_kafka_conf_destroy(conf); /* still ours on failure */
                eb_log_redact(msg, red, sizeof(red));
                snprintf(errstr, errstr_size, "kafka: %s", red);
                goto fail;
        }
        /* conf now belongs to rk. */

        /*
         * Logs to the main queue too, so that every callback (log, error,
         * delivery report) runs on the loop thread, from rd_kafka_poll().
         */
        err = rd_kafka_set_log_queue(k->rk, NULL);
        if (err) {
                snprintf(errstr, errstr_size, "kafka: log queue: %s",
                         rd_kafka_err2str(err));
                goto fail;
        }

        if (pipe(k->wake_fds) != 0) {
                snprintf(errstr, errstr_size, "kafka: pipe: %s",
                         strerror(errno));
                goto fail;
        }
        rc = set_nonblock(k->wake_fds[0]);
        if (!rc)
                rc = set_nonblock(k->wake_fds[1]);
        if (rc) {
                snprintf(errstr, errstr_size, "kafka: pipe: %s", strerror(-rc));
                goto fail;
        }
        k->wake_ev = event_new(base, k->wake_fds[0], EV_READ | EV_PERSIST,
                               on_wake, k);
        k->backstop_ev = event_new(base, -1, EV_PERSIST, on_backstop, k);
        if (k->txn_id)
                k->txn_ev = evtimer_new(base, txn_step, k);
        if (!k->wake_ev || !k->backstop_ev || (k->txn_id && !k->txn_ev) ||
            event_add(k->wake_ev, NULL) || event_add(k->backstop_ev, &tv)) {
                snprintf(errstr, errstr_size, "kafka: cannot add loop events");
                goto fail;
        }
        k->mainq = rd_kafka_queue_get_main(k->rk);
        rd_kafka_queue_io_event_enable(k->mainq, k->wake_fds[1], "1", 1);

        eb_info(MOD, "producer ready bootstrap.servers=%s client.id=%s%s%s%s",
                k->bootstrap, rd_kafka_name(k->rk),
                k->txn_id ? " transactional.id=" : "",
                k->txn_id ? k->txn_id : "", cfg->embedded ? " (embedded)" : "");
        return k;
fail:
        eb_kafka_free(k);
        return NULL;
}

int eb_kafka_mock_nodelay(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)) != NULL) {
                int on = 1, acc = 0, dom = 0, fd;
                socklen_t len = sizeof(acc);
                int64_t v;

                if (eb_parse_i64(de->d_name, &v) || v <= 2 || v > INT_MAX)
                        continue;
                fd = (int)v;
                if (fd == dirfd(d))
                        continue;
                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ||
                    !acc)
                        continue;
                len = sizeof(dom);
                if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) ||
                    (dom != AF_INET && dom != AF_INET6))
                        continue;
                if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) ==
                    0)
                        n++;
        }
        closedir(d);
        return n;
}

int eb_kafka_produce(eb_kafka_t *k, const struct eb_envelope *env,
                     eb_kafka_dr_cb_t *cb, void *opaque)
{
        return eb_kafka_produce_to(k, env, RD_KAFKA_PARTITION_UA, cb, opaque);
}

int eb_kafka_produce_to(eb_kafka_t *k, const struct eb_envelope *env,
                        int32_t partition, eb_kafka_dr_cb_t *cb, void *opaque)
{
        rd_kafka_headers_t *hdrs = NULL;
        struct msgctx *ctx = NULL;
        rd_kafka_resp_err_t err;
        int rc;
        int i;

        if (k->flags & EB_KAFKA_F_FATAL)
                return -EIO;
        if (k->txn_id && k->txn_state != EB_KAFKA_TXN_IN_TXN) {
                if (rl_allow(&k->rl_err))
                        eb_warn(MOD,
                                "produce refused topic=%s: no open "
                                "transaction (state %s)",
                                env->topic ? env->topic : "",
                                eb_kafka_txn_state_name(k->txn_state));
                return -EIO;
        }
        if (!env->topic || !*env->topic || !env->value || env->header_cnt < 0 ||
            env->header_cnt > EB_ENVELOPE_MAX_HEADERS)
                return -EINVAL;
        if (env->header_cnt > 0) {
                hdrs = rd_kafka_headers_new((size_t)env->header_cnt);
                for (i = 0; i < env->header_cnt; i++) {
                        const struct eb_header *h = &env->headers[i];

                        if (!h->name || !h->value) {
                                rd_kafka_headers_destroy(hdrs);
                                return -EINVAL;
                        }
                        (void)rd_kafka_header_add(hdrs, h->name, -1, h->value,
                                                  -1);
                }
        }
        if (cb) { /* fire-and-forget needs no context */
                ctx = eb_xmalloc(sizeof(*ctx));
                ctx->cb = cb;
                ctx->opaque = opaque;
        }

        err = rd_kafka_producev(
                k->rk, RD_KAFKA_V_TOPIC(env->topic),
                RD_KAFKA_V_PARTITION(partition),
                RD_KAFKA_V_KEY(env->key, env->key ? env->key_len : 0),
                RD_KAFKA_V_VALUE(env->value, env->value_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(ctx),
                RD_KAFKA_V_END);
        if (err) {
                /* Nothing was taken over: headers and ctx are still ours. */
                if (hdrs)
                        rd_kafka_headers_destroy(hdrs);
                free(ctx);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        k->stats.queue_full++;
                        return -EAGAIN;
                }
                if (err == RD_KAFKA_RESP_ERR__FATAL)
                        return -EIO;
                note_failure(k, env->topic, err);
                if (rl_allow(&k->rl_err))
                        eb_warn(MOD, "produce refused topic=%s err=%s: %s",
                                env->topic, rd_kafka_err2name(err),
                                rd_kafka_err2str(err));
                rc = errno_of(err);
                return rc == -EINVAL || rc == -ENOENT ? -EINVAL : -EIO;
        }
        k->stats.produced++;
        k->txn_msgs++;
        return 0;
}

int eb_kafka_flush(eb_kafka_t *k, int timeout_ms)
{
        rd_kafka_resp_err_t err = rd_kafka_flush(k->rk, timeout_ms);

        return err ? -ETIMEDOUT : 0;
}

int eb_kafka_outq_len(eb_kafka_t *k)
{
        return rd_kafka_outq_len(k->rk);
}

void eb_kafka_get_stats(eb_kafka_t *k, struct eb_kafka_stats *st)
{
        *st = k->stats;
        st->outq = k->rk ? rd_kafka_outq_len(k->rk) : 0;
}

void eb_kafka_set_fatal_cb(eb_kafka_t *k, eb_kafka_fatal_cb_t *cb, void *opaque)
{
        k->fatal_cb = cb;
        k->fatal_opaque = opaque;
}

eb_kafka_persisted_t eb_kafka_dr_persisted(const eb_kafka_t *k)
{
        return k->dr_status;
}

int eb_kafka_problem(eb_kafka_t *k, char *buf, size_t size)
{
        if (size)
                buf[0] = '\0';
        if (!k || !k->problem_err)
                return 0;
        snprintf(buf, size, "%s", k->problem);
        return -1;
}

int64_t eb_kafka_last_failure(const eb_kafka_t *k, char *buf, size_t size)
{
        if (size)
                buf[0] = '\0';
        if (!k || !k->failure_ms)
                return 0;
        snprintf(buf, size, "%s", k->failure);
        return k->failure_ms;
}

void eb_kafka_problem_clear(eb_kafka_t *k)
{
        k->problem_err = 0;
        k->problem[0] = '\0';
}

const char *eb_kafka_bootstrap(const eb_kafka_t *k)
{
        return k->bootstrap;
}

int eb_kafka_embedded(const eb_kafka_t *k)
{
        return k->mock != NULL;
}

rd_kafka_t *eb_kafka_rk(eb_kafka_t *k)
{
        return k->rk;
}

rd_kafka_mock_cluster_t *eb_kafka_mock_cluster(eb_kafka_t *k)
{
        return k->mock;
}

/* ---- transactions --------------------------------------------------------
 *
 * librdkafka's init/commit/abort_transaction() block until done or until
 * their timeout. Since 1.8 a call that returned a retriable _TIMED_OUT may
 * be repeated to resume, which suggests calling them with a zero timeout
 * from a loop timer. On 2.0.2 that crashes the process (docs/delivery.md):
 * a resumed commit whose first internal step does not get its answer
 * within the timeout returns without resuming and forgets that a commit
 * is running; when EndTxn then completes, librdkafka takes it for an
 * abort and asserts ("CommittingTransaction -> AbortedNotAcked"). Any
 * short timeout leaves that window open.
 *
 * So the blocking calls are made, with long time slices (EB_KAFKA_TXN_
 * SLICE_MS, so eb_kafka_free() can stop them), by one helper thread per
 * transactional producer, and the loop never blocks:
 *
 *  - init: straight to the helper.
 *  - commit: the loop first waits (timer) until every message of the
 *    transaction has had its delivery report served here; only then does
 *    the helper call commit_transaction(). Its internal flush then finds
 *    no delivery report to serve, so every delivery callback still runs
 *    on the loop thread.
 *  - abort: the same wait, then the helper aborts. (Purging the queued
 *    messages first, outside librdkafka's abort, would break the
 *    sequence numbers of the next transaction.)
 *
 * The helper touches no application state: it calls librdkafka, stores
 * the result under a mutex and writes the wake-up pipe; the loop picks the
 * result up in serve(). The only callbacks librdkafka may run on the
 * helper (from inside its flush) are log lines (eb_log is thread-safe) and
 * error events, which on_error() hands over to the loop.
 */

static const char *op_name(enum txn_op op)
{
        switch (op) {
        case TXN_OP_INIT:
                return "init";
        case TXN_OP_COMMIT:
                return "commit";
        case TXN_OP_ABORT:
                return "abort";
        case TXN_OP_NONE:
                break;
        }
        return "none";
}

const char *eb_kafka_txn_state_name(eb_kafka_txn_state_t st)
{
        switch (st) {
        case EB_KAFKA_TXN_NONE:
                return "none";
        case EB_KAFKA_TXN_INIT:
                return "init";
        case EB_KAFKA_TXN_INITIALIZING:
                return "initializing";
        case EB_KAFKA_TXN_READY:
                return "ready";
        case EB_KAFKA_TXN_IN_TXN:
                return "in_txn";
        case EB_KAFKA_TXN_COMMITTING:
                return "committing";
        case EB_KAFKA_TXN_ABORTING:
                return "aborting";
        case EB_KAFKA_TXN_ABORTABLE:
                return "abortable";
        case EB_KAFKA_TXN_FATAL:
                return "fatal";
        }
        return "?";
}

int eb_kafka_transactional(const eb_kafka_t *k)
{
        return k->txn_id != NULL;
}

eb_kafka_txn_state_t eb_kafka_txn_state(const eb_kafka_t *k)
{
        return k->txn_id ? k->txn_state : EB_KAFKA_TXN_NONE;
}

/* Messages whose delivery report has not been served yet. */
static uint64_t undelivered(const eb_kafka_t *k)
{
        uint64_t done = k->stats.delivered + k->stats.failed;

        return k->stats.produced > done ? k->stats.produced - done : 0;
}

/* ---- the helper thread ---------------------------------------------------
 */

static rd_kafka_error_t *txn_call(eb_kafka_t *k, enum txn_op op, int ms)
{
        rd_kafka_t *rk = k->rk;
        rd_kafka_error_t *error;

        switch (op) {
        case TXN_OP_INIT:
                return rd_kafka_init_transactions(rk, ms);
        case TXN_OP_COMMIT:
                /* Consumed offsets first (consume-transform-produce): set
                 * by the loop before the job was handed over, read here
                 * only; sent once per attempt. */
                if (k->txn_offsets && !k->txn_offsets_sent) {
                        error = rd_kafka_send_offsets_to_transaction(
                                rk, k->txn_offsets, k->txn_cgmd, ms);
                        if (error)
                                return error;
                        k->txn_offsets_sent = 1;
                }
                return rd_kafka_commit_transaction(rk, ms);
        case TXN_OP_ABORT:
                return rd_kafka_abort_transaction(rk, ms);
        case TXN_OP_NONE:
                break;
        }
        return NULL;
}

static void *txn_worker_main(void *arg)
{
        eb_kafka_t *k = arg;
        struct txn_worker *w = &k->worker;

        pthread_mutex_lock(&w->mu);
        for (;;) {
                rd_kafka_error_t *error = NULL;
                enum txn_op op;

                while (!w->quit && w->job == TXN_OP_NONE)
                        pthread_cond_wait(&w->cv, &w->mu);
                if (w->quit)
                        break;
                op = w->job;
                w->job = TXN_OP_NONE;
                pthread_mutex_unlock(&w->mu);

                for (;;) {
                        int quit;

                        error = txn_call(k, op, EB_KAFKA_TXN_SLICE_MS);
                        if (!error || !rd_kafka_error_is_retriable(error))
                                break;
                        pthread_mutex_lock(&w->mu);
                        quit = w->quit;
                        if (!quit && rd_kafka_error_code(error) !=
                                             RD_KAFKA_RESP_ERR__TIMED_OUT) {
                                /* e.g. COORDINATOR_NOT_AVAILABLE: back off */
                                struct timespec ts;

                                clock_gettime(CLOCK_REALTIME, &ts);
                                ts.tv_nsec += 100 * 1000 * 1000;
                                if (ts.tv_nsec >= 1000000000L) {
                                        ts.tv_sec++;
                                        ts.tv_nsec -= 1000000000L;
                                }
                                (void)pthread_cond_timedwait(&w->cv, &w->mu,
                                                             &ts);
                                quit = w->quit;
                        }
                        pthread_mutex_unlock(&w->mu);
                        if (quit)
                                break; /* error still set: retriable */
                        rd_kafka_error_destroy(error);
                }

                pthread_mutex_lock(&w->mu);
                w->result = error;
                w->done = 1;
                pthread_mutex_unlock(&w->mu);
                wake_loop(k);
                pthread_mutex_lock(&w->mu);
        }
        pthread_mutex_unlock(&w->mu);
        return NULL;
}

static int worker_start(eb_kafka_t *k)
{
        sigset_t all, old;
        int rc;

        if (k->worker.started)
                return 0;
        /* Signals are for the loop (libevent): the helper blocks them all,
         * like librdkafka's own threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&k->worker.thread, NULL, txn_worker_main, k);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0)
                return -EAGAIN;
        k->worker.started = 1;
        return 0;
}

static void worker_submit(eb_kafka_t *k, enum txn_op op)
{
        pthread_mutex_lock(&k->worker.mu);
        k->worker.job = op;
        k->worker.done = 0;
        pthread_cond_signal(&k->worker.cv);
        pthread_mutex_unlock(&k->worker.mu);
}

/* @returns 1 and the result (NULL: success) if the helper has finished. */
static int worker_collect(eb_kafka_t *k, rd_kafka_error_t **errorp)
{
        int done;

        pthread_mutex_lock(&k->worker.mu);
        done = k->worker.done;
        if (done) {
                *errorp = k->worker.result;
                k->worker.result = NULL;
                k->worker.done = 0;
        }
        pthread_mutex_unlock(&k->worker.mu);
        return done;
}

static void worker_stop(eb_kafka_t *k)
{
        rd_kafka_error_t *error = NULL;

        if (!k->worker.started)
                return;
        pthread_mutex_lock(&k->worker.mu);
        k->worker.quit = 1;
        pthread_cond_signal(&k->worker.cv);
        pthread_mutex_unlock(&k->worker.mu);
        pthread_join(k->worker.thread, NULL);
        k->worker.started = 0;
        if (worker_collect(k, &error) && error)
                rd_kafka_error_destroy(error);
}

/* ---- the loop's side --------------------------------------------------- */

static void txn_schedule(eb_kafka_t *k, int ms)
{
        struct timeval tv;

        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
        evtimer_add(k->txn_ev, &tv);
}

static void txn_offsets_clear(eb_kafka_t *k)
{
        if (k->txn_offsets)
                rd_kafka_topic_partition_list_destroy(k->txn_offsets);
        if (k->txn_cgmd)
                rd_kafka_consumer_group_metadata_destroy(k->txn_cgmd);
        k->txn_offsets = NULL;
        k->txn_cgmd = NULL;
        k->txn_offsets_sent = 0;
}

int eb_kafka_txn_set_offsets(eb_kafka_t *k,
                             rd_kafka_topic_partition_list_t *offsets,
                             rd_kafka_consumer_group_metadata_t *cgmd)
{
        if (!k->txn_id || k->txn_state != EB_KAFKA_TXN_IN_TXN ||
            k->txn_op != TXN_OP_NONE || !offsets || !cgmd) {
                if (offsets)
                        rd_kafka_topic_partition_list_destroy(offsets);
                if (cgmd)
                        rd_kafka_consumer_group_metadata_destroy(cgmd);
                return -EINVAL;
        }
        txn_offsets_clear(k);
        k->txn_offsets = offsets;
        k->txn_cgmd = cgmd;
        return 0;
}

/* Settle the running operation, then tell its owner (which may start the
 * next one from the callback). */
static void txn_finish(eb_kafka_t *k, eb_kafka_txn_state_t st, int err,
                       const char *errstr)
{
        eb_kafka_txn_cb_t *cb = k->txn_cb;
        void *opaque = k->txn_opaque;

        if (!err && k->txn_op == TXN_OP_COMMIT && k->txn_offsets_sent)
                k->stats.txn_offset_commits++;
        k->txn_op = TXN_OP_NONE;
        k->txn_phase = TXN_PHASE_IDLE;
        k->txn_cb = NULL;
        k->txn_opaque = NULL;
        txn_offsets_clear(k);
        if (k->txn_state != EB_KAFKA_TXN_FATAL)
                k->txn_state = st;
        if (cb)
                cb(opaque, err, errstr ? errstr : "");
}

static void txn_succeeded(eb_kafka_t *k, enum txn_op op, int64_t took_ms)
{
        switch (op) {
        case TXN_OP_INIT:
                eb_info(MOD,
                        "transactions ready transactional.id=%s (init took "
                        "%lld ms)",
                        k->txn_id, (long long)took_ms);
                break;
        case TXN_OP_COMMIT:
                k->stats.txn_committed++;
                k->stats.txn_last_commit_ms = took_ms;
                eb_debug(MOD, "committed transaction: %llu messages in %lld ms",
                         (unsigned long long)k->txn_msgs, (long long)took_ms);
                break;
        case TXN_OP_ABORT:
                k->stats.txn_aborted++;
                eb_info(MOD, "aborted transaction of %llu messages",
                        (unsigned long long)k->txn_msgs);
                break;
        case TXN_OP_NONE:
                break;
        }
        txn_finish(k, EB_KAFKA_TXN_READY, 0, "Success");
}

/*
 * The outcome of a transactional call (takes @p error): success, abortable
 * (the transaction must be aborted), fatal (fenced, authorization, ...),
 * or, only when the helper was told to quit, still retriable.
 */
static void txn_result(eb_kafka_t *k, enum txn_op op, rd_kafka_error_t *error)
{
        rd_kafka_resp_err_t code;
        int64_t took = eb_mono_ms() - k->txn_op_start_ms;
        char text[512];

        if (!error) {
                txn_succeeded(k, op, took);
                return;
        }
        code = rd_kafka_error_code(error);
        snprintf(text, sizeof(text), "%s", rd_kafka_error_string(error));
        if (rd_kafka_error_is_fatal(error)) {
                rd_kafka_error_destroy(error);
                if (op == TXN_OP_COMMIT)
                        k->stats.txn_commit_failed++;
                set_fatal(k, code, text);
                txn_finish(k, EB_KAFKA_TXN_FATAL, fatal_errno(code),
                           k->fatal_msg);
                return;
        }
        if (rd_kafka_error_is_retriable(error)) {
                /* only when stopped by eb_kafka_free() */
                rd_kafka_error_destroy(error);
                txn_finish(k, k->txn_state, -ESHUTDOWN, "producer shut down");
                return;
        }
        if (op == TXN_OP_COMMIT) {
                /*
                 * Abortable, or neither abortable nor fatal (librdkafka and
                 * we disagree about the state, e.g. _STATE): an unknown
                 * commit outcome is made abortable, since aborting is
                 * always safe and the batch is redone.
                 */
                int abortable = rd_kafka_error_txn_requires_abort(error);

                rd_kafka_error_destroy(error);
                k->stats.txn_commit_failed++;
                if (abortable)
                        eb_warn(MOD,
                                "transaction of %llu messages failed and must "
                                "be aborted (err=%s): %s",
                                (unsigned long long)k->txn_msgs,
                                rd_kafka_err2name(code), text);
                else
                        eb_error(MOD, "transaction commit: unexpected %s: %s",
                                 rd_kafka_err2name(code), text);
                txn_finish(k, EB_KAFKA_TXN_ABORTABLE, -ECANCELED, text);
                return;
        }
        /* An init or abort that can neither proceed nor be retried leaves
         * nothing safe to do. */
        rd_kafka_error_destroy(error);
        eb_error(MOD, "transaction %s: unexpected %s: %s", op_name(op),
                 rd_kafka_err2name(code), text);
        set_fatal(k, code, text);
        txn_finish(k, EB_KAFKA_TXN_FATAL, -EIO, k->fatal_msg);
}

/* From serve(): the helper has finished? */
static void txn_poll_worker(eb_kafka_t *k)
{
        rd_kafka_error_t *error = NULL;

        if (k->txn_phase != TXN_PHASE_WORKER || !worker_collect(k, &error))
                return;
        evtimer_del(k->txn_ev);
        txn_result(k, k->txn_op, error);
}

/*
 * The operation's timer: waits for the delivery reports before handing
 * commit/abort to the helper, then only reports an operation that takes
 * long (the result itself comes through serve()).
 */
static void txn_step(evutil_socket_t fd, short what, void *arg)
{
        eb_kafka_t *k = arg;
        int64_t now = eb_mono_ms();
        int64_t took = now - k->txn_op_start_ms;

        (void)fd;
        (void)what;
        if (k->txn_op == TXN_OP_NONE)
                return;
        if (now >= k->txn_report_ms) {
                if (took >= EB_KAFKA_TXN_REPORT_MS)
                        eb_warn(MOD,
                                "transaction %s still running after %lld s "
                                "(%llu messages, %llu without a delivery "
                                "report)",
                                op_name(k->txn_op), (long long)(took / 1000),
                                (unsigned long long)k->txn_msgs,
                                (unsigned long long)undelivered(k));
                k->txn_report_ms = now + EB_KAFKA_TXN_REPORT_MS;
        }
        if (k->txn_phase == TXN_PHASE_WAIT_DRS) {
                if (undelivered(k) == 0) {
                        k->txn_phase = TXN_PHASE_WORKER;
                        worker_submit(k, k->txn_op);
                        txn_schedule(k, EB_KAFKA_TXN_SLOW_TICK_MS);
                        return;
                }
                if (took >= EB_KAFKA_TXN_SLOW_MS)
                        k->txn_tick_ms = EB_KAFKA_TXN_SLOW_TICK_MS;
                else if (k->txn_tick_ms < EB_KAFKA_TXN_TICK_MAX_MS)
                        k->txn_tick_ms =
                                k->txn_tick_ms * 2 > EB_KAFKA_TXN_TICK_MAX_MS
                                        ? EB_KAFKA_TXN_TICK_MAX_MS
                                        : k->txn_tick_ms * 2;
                txn_schedule(k, k->txn_tick_ms);
                return;
        }
        /* TXN_PHASE_WORKER: the result comes through the wake-up pipe */
        txn_poll_worker(k);
        if (k->txn_op != TXN_OP_NONE)
                txn_schedule(k, EB_KAFKA_TXN_SLOW_TICK_MS);
}

/* Common checks of the asynchronous calls. */
static int txn_check(const eb_kafka_t *k)
{
        if (!k->txn_id)
                return -EINVAL;
        if (k->flags & EB_KAFKA_F_CLOSING)
                return -ESHUTDOWN;
        if (k->txn_state == EB_KAFKA_TXN_FATAL || (k->flags & EB_KAFKA_F_FATAL))
                return -EIO;
        if (k->txn_op != TXN_OP_NONE)
                return -EBUSY;
        return 0;
}

static void txn_start(eb_kafka_t *k, enum txn_op op, eb_kafka_txn_state_t st,
                      eb_kafka_txn_cb_t *cb, void *opaque)
{
        int64_t now = eb_mono_ms();

        k->txn_op = op;
        k->txn_state = st;
        k->txn_cb = cb;
        k->txn_opaque = opaque;
        k->txn_op_start_ms = now;
        k->txn_report_ms = now + EB_KAFKA_TXN_REPORT_MS;
        k->txn_tick_ms = 1;
        if (op == TXN_OP_INIT) {
                k->txn_phase = TXN_PHASE_WORKER;
                worker_submit(k, op);
                txn_schedule(k, EB_KAFKA_TXN_SLOW_TICK_MS);
        } else {
                /* never call back from inside the call */
                k->txn_phase = TXN_PHASE_WAIT_DRS;
                txn_schedule(k, 0);
        }
}

int eb_kafka_txn_init(eb_kafka_t *k, eb_kafka_txn_cb_t *cb, void *opaque)
{
        int rc = txn_check(k);

        if (rc)
                return rc;
        if (!cb || k->txn_state != EB_KAFKA_TXN_INIT)
                return -EINVAL;
        rc = worker_start(k);
        if (rc) {
                eb_error(MOD, "cannot start the transaction thread");
                return -EIO;
        }
        eb_info(MOD, "initialising transactions transactional.id=%s",
                k->txn_id);
        txn_start(k, TXN_OP_INIT, EB_KAFKA_TXN_INITIALIZING, cb, opaque);
        return 0;
}

int eb_kafka_txn_begin(eb_kafka_t *k)
{
        rd_kafka_error_t *error;
        int rc = txn_check(k);

        if (rc)
                return rc;
        if (k->txn_state != EB_KAFKA_TXN_READY)
                return -EINVAL;
        error = rd_kafka_begin_transaction(k->rk);
        if (error) {
                rd_kafka_resp_err_t code = rd_kafka_error_code(error);
                char text[512];

                snprintf(text, sizeof(text), "%s",
                         rd_kafka_error_string(error));
                rc = rd_kafka_error_is_fatal(error) ? -EIO : -EINVAL;
                rd_kafka_error_destroy(error);
                eb_warn(MOD, "begin transaction: %s: %s",
                        rd_kafka_err2name(code), text);
                if (rc == -EIO)
                        set_fatal(k, code, text);
                return rc;
        }
        k->txn_state = EB_KAFKA_TXN_IN_TXN;
        k->txn_msgs = 0;
        return 0;
}

int eb_kafka_txn_commit(eb_kafka_t *k, eb_kafka_txn_cb_t *cb, void *opaque)
{
        int rc = txn_check(k);

        if (rc)
                return rc;
        if (!cb || k->txn_state != EB_KAFKA_TXN_IN_TXN)
                return -EINVAL;
        txn_start(k, TXN_OP_COMMIT, EB_KAFKA_TXN_COMMITTING, cb, opaque);
        return 0;
}

int eb_kafka_txn_abort(eb_kafka_t *k, eb_kafka_txn_cb_t *cb, void *opaque)
{
        int rc = txn_check(k);

        if (rc)
                return rc;
        if (!cb || (k->txn_state != EB_KAFKA_TXN_IN_TXN &&
                    k->txn_state != EB_KAFKA_TXN_ABORTABLE))
                return -EINVAL;
        /*
         * The messages still queued are not purged here: a purge outside
         * librdkafka's own abort leaves a gap in the idempotent sequence
         * numbers and fails the next transaction (OUT_OF_ORDER_SEQUENCE_
         * NUMBER). txn_step waits until every one has its delivery report
         * (after an abortable error librdkafka has purged them already).
         */
        txn_start(k, TXN_OP_ABORT, EB_KAFKA_TXN_ABORTING, cb, opaque);
        return 0;
}

/*
 * Teardown of a transactional producer, before the generic flush/purge.
 * It may block (bounded by the drain timeout), and serves callbacks on
 * this thread. A running commit or abort is finished and its callback
 * told the result; an open transaction is aborted, so the next instance
 * does not wait for it to time out. Single blocking calls on this thread
 * are safe: the 2.0.2 bug needs a resumed call.
 */
static void txn_teardown(eb_kafka_t *k)
{
        enum txn_op op = k->txn_op;
        rd_kafka_error_t *error = NULL;
        int64_t deadline;

        if (!k->txn_id || !k->rk)
                return;
        if (k->txn_ev)
                event_del(k->txn_ev);
        deadline = eb_mono_ms() + k->drain_ms;
        if (op != TXN_OP_NONE && k->txn_phase == TXN_PHASE_WORKER) {
                int done = 0;

                /* Let the helper finish what it runs, serving callbacks. */
                while (!(done = worker_collect(k, &error)) &&
                       op != TXN_OP_INIT && eb_mono_ms() < deadline)
                        (void)rd_kafka_poll(k->rk, 20);
                worker_stop(k);
                if (done)
                        txn_result(k, op, error);
                else
                        txn_finish(k, k->txn_state, -ESHUTDOWN,
                                   "producer shut down");
        } else if (op != TXN_OP_NONE) {
                /* commit/abort still waiting for delivery reports */
                int64_t left = deadline - eb_mono_ms();

                k->txn_op_start_ms = eb_mono_ms();
                error = txn_call(k, op, left > 0 ? (int)left : 0);
                txn_result(k, op, error);
        }
        worker_stop(k);
        if (k->txn_state == EB_KAFKA_TXN_IN_TXN ||
            k->txn_state == EB_KAFKA_TXN_ABORTABLE) {
                int64_t left = deadline - eb_mono_ms();

                eb_warn(MOD,
                        "shutdown: aborting the open transaction of %llu "
                        "messages",
                        (unsigned long long)k->txn_msgs);
                error = rd_kafka_abort_transaction(
                        k->rk, left > 1000 ? (int)left : 1000);
                if (!error) {
                        k->stats.txn_aborted++;
                        k->txn_state = EB_KAFKA_TXN_READY;
                } else {
                        eb_warn(MOD, "shutdown: abort: %s",
                                rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                }
        }
}

void eb_kafka_set_drain(eb_kafka_t *k, int64_t ms)
{
        k->drain_ms = ms < 0 ? 0 : ms;
}

void eb_kafka_free(eb_kafka_t *k)
{
        if (!k)
                return;
        k->flags |= EB_KAFKA_F_CLOSING;
        txn_teardown(k);
        txn_offsets_clear(k);
        if (k->rk) {
                uint64_t failed = k->stats.failed;
                int left;

                /*
                 * Deliver what we can within the drain bound, then purge the
                 * rest: purged messages get their delivery report (and
                 * their callback, -ECANCELED) here, so no caller context is
                 * left dangling and none leaks.
                 */
                if (rd_kafka_outq_len(k->rk) > 0 &&
                    rd_kafka_flush(k->rk, (int)k->drain_ms) != 0)
                        eb_warn(MOD,
                                "shutdown: %d messages still queued after "
                                "%lld ms; purging them",
                                rd_kafka_outq_len(k->rk),
                                (long long)k->drain_ms);
                (void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE |
                                                    RD_KAFKA_PURGE_F_INFLIGHT);
                (void)rd_kafka_flush(k->rk, 1000);
                (void)rd_kafka_poll(k->rk, 0);
                left = rd_kafka_outq_len(k->rk);
                if (k->stats.failed > failed || left > 0)
                        eb_warn(MOD,
                                "shutdown: %llu messages not delivered, %d "
                                "left in the queue",
                                (unsigned long long)(k->stats.failed - failed),
                                left);
        }
        /*
         * The io-event must be disabled before the pipe is closed: a
         * librdkafka thread may otherwise write into a reused descriptor.
         */
        if (k->mainq) {
                rd_kafka_queue_io_event_enable(k->mainq, -1, NULL, 0);
                rd_kafka_queue_destroy(k->mainq);
        }
        if (k->wake_ev)
                event_free(k->wake_ev);
        if (k->backstop_ev)
                event_free(k->backstop_ev);
        if (k->txn_ev)
                event_free(k->txn_ev);
        if (k->wake_fds[0] >= 0)
                close(k->wake_fds[0]);
        if (k->wake_fds[1] >= 0)
                close(k->wake_fds[1]);
        if (k->rk)
                rd_kafka_destroy(k->rk);
        /* The producer is gone; now its cluster may go. */
        if (k->mock)
                rd_kafka_mock_cluster_destroy(k->mock);
        if (k->mock_rk)
                rd_kafka_destroy(k->mock_rk);
        if (k->sync_ready) {
                pthread_mutex_destroy(&k->def_mu);
                pthread_mutex_destroy(&k->worker.mu);
                pthread_cond_destroy(&k->worker.cv);
        }
        free(k->bootstrap);
        free(k->txn_id);
        free(k);
}

/* ---- topic creation -------------------------------------------------------
 */

int eb_kafka_create_topics(rd_kafka_t *rk, struct eb_kafka_topic_spec *t,
                           size_t n, int timeout_ms, char *errstr,
                           size_t errstr_size)
{
        rd_kafka_NewTopic_t **nt = eb_xcalloc(n ? n : 1, sizeof(*nt));
        rd_kafka_AdminOptions_t *opts = NULL;
        rd_kafka_queue_t *q = NULL;
        rd_kafka_event_t *ev = NULL;
        const rd_kafka_topic_result_t **res;
        char msg[256];
        size_t nres = 0, i, j;
        int rc = -EINVAL;

        if (timeout_ms <= 0)
                timeout_ms = 30000;
        for (i = 0; i < n; i++) {
                t[i].err = RD_KAFKA_RESP_ERR__TIMED_OUT;
                t[i].errstr[0] = '\0';
                nt[i] = rd_kafka_NewTopic_new(t[i].name, t[i].partitions, -1,
                                              msg, sizeof(msg));
                if (!nt[i]) {
                        snprintf(errstr, errstr_size, "topic %s: %s", t[i].name,
                                 msg);
                        goto out;
                }
                for (j = 0; t[i].configs && t[i].configs[j]; j += 2)
                        if (!t[i].configs[j + 1] ||
                            rd_kafka_NewTopic_set_config(nt[i], t[i].configs[j],
                                                         t[i].configs[j + 1])) {
                                snprintf(errstr, errstr_size,
                                         "topic %s: bad config %s", t[i].name,
                                         t[i].configs[j]);
                                goto out;
                        }
        }
        q = rd_kafka_queue_new(rk);
        opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        if (rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, msg,
                                                      sizeof(msg)) ||
            rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, msg,
                                                        sizeof(msg))) {
                snprintf(errstr, errstr_size, "CreateTopics: %s", msg);
                goto out;
        }
        rd_kafka_CreateTopics(rk, nt, n, opts, q);
        ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        if (!ev || rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "CreateTopics failed: %s",
                         ev ? rd_kafka_event_error_string(ev) : "timed out");
                rc = !ev || rd_kafka_event_error(ev) ==
                                             RD_KAFKA_RESP_ERR__TIMED_OUT
                             ? -ETIMEDOUT
                             : -EIO;
                goto out;
        }
        res = rd_kafka_CreateTopics_result_topics(
                rd_kafka_event_CreateTopics_result(ev), &nres);
        for (j = 0; j < nres; j++) {
                const char *name = rd_kafka_topic_result_name(res[j]);
                const char *estr = rd_kafka_topic_result_error_string(res[j]);

                for (i = 0; i < n; i++) {
                        if (strcmp(name, t[i].name))
                                continue;
                        t[i].err = rd_kafka_topic_result_error(res[j]);
                        snprintf(t[i].errstr, sizeof(t[i].errstr), "%s",
                                 estr ? estr : rd_kafka_err2str(t[i].err));
                }
        }
        rc = 0;
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        if (opts)
                rd_kafka_AdminOptions_destroy(opts);
        if (q)
                rd_kafka_queue_destroy(q);
        for (i = 0; i < n; i++)
                if (nt[i])
                        rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        return rc;
}
