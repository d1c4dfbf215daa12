/*
 * eb_txn.c: transactions of a transactional producer: the state machine,
 * the helper thread that makes librdkafka's blocking calls, and the
 * loop's side that drives an operation and reports its result. The
 * helper runs txn_worker_main() and touches only struct txn_worker; all
 * else runs on the loop thread.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eb_kafka_int.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "kafka"

/* A transaction operation still running says so this often. */
#define EB_KAFKA_TXN_REPORT_MS 10000

/* ---- the state machine ---------------------------------------------------
 *
 * One enum (eb_kafka_txn_state_t), one function that changes it, and the
 * table of what may follow what, as librdkafka's rd_kafka_txn_set_state()
 * does. FATAL is final. Shutdown may leave an operation's state as it was
 * (a transition to the same state changes nothing and is always allowed)
 * and aborts an open transaction straight to READY.
 */

#define TXN_BIT(s) (1u << (s))

static const unsigned txn_next[] = {
        [EB_KAFKA_TXN_NONE] = TXN_BIT(EB_KAFKA_TXN_INIT),
        [EB_KAFKA_TXN_INIT] = TXN_BIT(EB_KAFKA_TXN_INITIALIZING) |
                              TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_INITIALIZING] =
                TXN_BIT(EB_KAFKA_TXN_READY) | TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_READY] =
                TXN_BIT(EB_KAFKA_TXN_IN_TXN) | TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_IN_TXN] = TXN_BIT(EB_KAFKA_TXN_COMMITTING) |
                                TXN_BIT(EB_KAFKA_TXN_ABORTING) |
                                TXN_BIT(EB_KAFKA_TXN_READY) |
                                TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_COMMITTING] = TXN_BIT(EB_KAFKA_TXN_READY) |
                                    TXN_BIT(EB_KAFKA_TXN_ABORTABLE) |
                                    TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_ABORTING] =
                TXN_BIT(EB_KAFKA_TXN_READY) | TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_ABORTABLE] = TXN_BIT(EB_KAFKA_TXN_ABORTING) |
                                   TXN_BIT(EB_KAFKA_TXN_READY) |
                                   TXN_BIT(EB_KAFKA_TXN_FATAL),
        [EB_KAFKA_TXN_FATAL] = 0,
};

#define TXN_NSTATES (sizeof(txn_next) / sizeof(txn_next[0]))

/* EB_DEBUG is defined in every build (0 in release, Makefile). */
#if defined(EB_DEBUG) && EB_DEBUG
#define TXN_ABORT_DEFAULT 1
#else
#define TXN_ABORT_DEFAULT 0
#endif

static atomic_int txn_abort_illegal = TXN_ABORT_DEFAULT;
static atomic_uint_least64_t txn_illegal;

int eb_txn_transition_ok(eb_kafka_txn_state_t from, eb_kafka_txn_state_t to)
{
        if ((unsigned)from >= TXN_NSTATES || (unsigned)to >= TXN_NSTATES)
                return 0;
        return from == to || (txn_next[from] & TXN_BIT(to)) != 0;
}

int eb_txn_state_set(eb_kafka_txn_state_t *st, eb_kafka_txn_state_t to,
                     const char *txn_id)
{
        eb_kafka_txn_state_t from = *st;

        *st = to;
        if (eb_txn_transition_ok(from, to))
                return 0;
        atomic_fetch_add(&txn_illegal, 1);
        eb_error(MOD,
                 "BUG: illegal transaction state transition %s -> %s "
                 "(transactional.id=%s)",
                 eb_kafka_txn_state_name(from), eb_kafka_txn_state_name(to),
                 txn_id ? txn_id : "");
        if (atomic_load(&txn_abort_illegal))
                abort();
        return -1;
}

uint64_t eb_txn_illegal_count(void)
{
        return atomic_load(&txn_illegal);
}

uint64_t eb_kafka_txn_illegal_total(void)
{
        return eb_txn_illegal_count();
}

int eb_txn_abort_on_illegal(int on)
{
        return atomic_exchange(&txn_abort_illegal, on ? 1 : 0);
}

void txn_set_state(eb_kafka_t *k, eb_kafka_txn_state_t to)
{
        (void)eb_txn_state_set(&k->txn_state, to, k->txn_id);
}

static void txn_schedule(eb_kafka_t *k, int ms);

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

void txn_on_delivered(eb_kafka_t *k)
{
        /* The last report a commit or abort waits for: go on now rather
         * than at the operation's next tick. */
        if (k->txn_op != TXN_OP_NONE && k->txn_phase == TXN_PHASE_WAIT_DRS &&
            undelivered(k) == 0)
                txn_schedule(k, 0);
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
                kafka_wake_loop(k);
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

void txn_offsets_clear(eb_kafka_t *k)
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
                txn_set_state(k, st);
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
                kafka_set_fatal(k, code, text);
                txn_finish(k, EB_KAFKA_TXN_FATAL, kafka_fatal_errno(code),
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
        kafka_set_fatal(k, code, text);
        txn_finish(k, EB_KAFKA_TXN_FATAL, -EIO, k->fatal_msg);
}

/* From serve(): the helper has finished? */
void txn_poll_worker(eb_kafka_t *k)
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
void txn_step(evutil_socket_t fd, short what, void *arg)
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
        txn_set_state(k, st);
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
                        kafka_set_fatal(k, code, text);
                return rc;
        }
        txn_set_state(k, EB_KAFKA_TXN_IN_TXN);
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
void txn_teardown(eb_kafka_t *k)
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
                        txn_set_state(k, EB_KAFKA_TXN_READY);
                } else {
                        eb_warn(MOD, "shutdown: abort: %s",
                                rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                }
        }
}
