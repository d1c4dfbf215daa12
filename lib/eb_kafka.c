/*
 * eb_kafka.c: the producer. Configuration, creation and teardown of the
 * librdkafka handle, produce, delivery reports and error events, all
 * served on the loop thread (eb_kafka.h). Transactions are in eb_txn.c,
 * the embedded cluster in eb_mockcluster.c, topics in eb_kafka_admin.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_kafka_int.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "kafka"

/* At most this many lines per second for a repeated kind of failure. */
#define EB_KAFKA_LOG_BURST 10

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
        txn_on_delivered(k);
}

/* Wake the loop from another thread (the pipe librdkafka also writes to);
 * a full pipe already holds a wake-up. */
void kafka_wake_loop(eb_kafka_t *k)
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
int kafka_fatal_errno(rd_kafka_resp_err_t code)
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
void kafka_set_fatal(eb_kafka_t *k, rd_kafka_resp_err_t code, const char *text)
{
        k->flags |= EB_KAFKA_F_FATAL;
        if (k->txn_id)
                txn_set_state(k, EB_KAFKA_TXN_FATAL);
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
                kafka_wake_loop(k);
                return;
        }

        note_problem(k, err, reason);
        if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
                /* Wrong credentials or mechanism: librdkafka would retry
                 * for ever, and no retry can fix it. */
                char msg[600];

                snprintf(msg, sizeof(msg), "authentication failed: %s",
                         reason ? reason : "");
                kafka_set_fatal(k, (rd_kafka_resp_err_t)err, msg);
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
        kafka_set_fatal(k, code,
                        buf[0] ? buf : (reason ? reason : "fatal error"));
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

/* kafka.properties, passed through (their secrets kept out of the log);
 * notes whether they set the bootstrap servers or a message timeout. */
static int apply_properties(rd_kafka_conf_t *conf, const struct eb_config *cfg,
                            int *user_bootstrap, int *user_msg_timeout,
                            char *errstr, size_t errstr_size)
{
        size_t i;

        for (i = 0; i < cfg->properties_cnt; i++) {
                const struct eb_kv *kv = &cfg->properties[i];
                char what[300];

                if (!kv->key || !kv->value) {
                        snprintf(errstr, errstr_size,
                                 "kafka.properties: entry %zu has no key or "
                                 "value",
                                 i);
                        return -EINVAL;
                }
                if (is_sensitive(kv->key))
                        eb_log_add_secret(kv->value);
                if (!strcmp(kv->key, "bootstrap.servers") ||
                    !strcmp(kv->key, "metadata.broker.list"))
                        *user_bootstrap = 1;
                if (!strcmp(kv->key, "message.timeout.ms") ||
                    !strcmp(kv->key, "delivery.timeout.ms"))
                        *user_msg_timeout = 1;
                if (!strcmp(kv->key, "transactional.id")) {
                        /* A producer made transactional behind our back
                         * refuses every produce outside a transaction. */
                        snprintf(errstr, errstr_size,
                                 "kafka.properties.transactional.id: not "
                                 "allowed here; set kafka.transactional_id");
                        return -EINVAL;
                }
                snprintf(what, sizeof(what), "kafka.properties.%s", kv->key);
                if (eb_kafka_conf_set(conf, what, kv->key, kv->value, errstr,
                                      errstr_size))
                        return -EINVAL;
        }
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
        if (apply_properties(conf, cfg, &user_bootstrap, &user_msg_timeout,
                             errstr, errstr_size))
                goto out;
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
                txn_set_state(k, EB_KAFKA_TXN_INIT);
        }

        /* Validate every property before starting anything. */
        if (make_conf(k, cfg, &conf, errstr, errstr_size) != 0)
                goto fail;
        if (cfg->embedded) {
                if (kafka_mock_start(k, cfg, errstr, errstr_size) != 0 ||
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

rd_kafka_t *eb_kafka_rk(eb_kafka_t *k)
{
        return k->rk;
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
        kafka_mock_stop(k);
        if (k->sync_ready) {
                pthread_mutex_destroy(&k->def_mu);
                pthread_mutex_destroy(&k->worker.mu);
                pthread_cond_destroy(&k->worker.cv);
        }
        free(k->bootstrap);
        free(k->txn_id);
        free(k);
}
