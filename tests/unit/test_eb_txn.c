/* Unit tests for the transaction state machine (lib/eb_txn.c): every legal
 * transition is taken, every other one is refused loudly. No Kafka. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eb_kafka_int.h"
#include "eb_test.h"

#define NSTATES ((int)EB_KAFKA_TXN_FATAL + 1)

/* The transitions the producer makes (lib/eb_txn.c, lib/eb_kafka.c). */
static const struct {
        eb_kafka_txn_state_t from, to;
} legal[] = {
        {EB_KAFKA_TXN_NONE, EB_KAFKA_TXN_INIT},
        {EB_KAFKA_TXN_INIT, EB_KAFKA_TXN_INITIALIZING},
        {EB_KAFKA_TXN_INIT, EB_KAFKA_TXN_FATAL},
        {EB_KAFKA_TXN_INITIALIZING, EB_KAFKA_TXN_READY},
        {EB_KAFKA_TXN_INITIALIZING, EB_KAFKA_TXN_FATAL},
        {EB_KAFKA_TXN_READY, EB_KAFKA_TXN_IN_TXN},
        {EB_KAFKA_TXN_READY, EB_KAFKA_TXN_FATAL},
        {EB_KAFKA_TXN_IN_TXN, EB_KAFKA_TXN_COMMITTING},
        {EB_KAFKA_TXN_IN_TXN, EB_KAFKA_TXN_ABORTING},
        {EB_KAFKA_TXN_IN_TXN, EB_KAFKA_TXN_READY},
        {EB_KAFKA_TXN_IN_TXN, EB_KAFKA_TXN_FATAL},
        {EB_KAFKA_TXN_COMMITTING, EB_KAFKA_TXN_READY},
        {EB_KAFKA_TXN_COMMITTING, EB_KAFKA_TXN_ABORTABLE},
        {EB_KAFKA_TXN_COMMITTING, EB_KAFKA_TXN_FATAL},
        {EB_KAFKA_TXN_ABORTING, EB_KAFKA_TXN_READY},
        {EB_KAFKA_TXN_ABORTING, EB_KAFKA_TXN_FATAL},
        {EB_KAFKA_TXN_ABORTABLE, EB_KAFKA_TXN_ABORTING},
        {EB_KAFKA_TXN_ABORTABLE, EB_KAFKA_TXN_READY},
        {EB_KAFKA_TXN_ABORTABLE, EB_KAFKA_TXN_FATAL},
};

#define NLEGAL (sizeof(legal) / sizeof(legal[0]))

static int is_legal(int from, int to)
{
        size_t i;

        if (from == to)
                return 1;
        for (i = 0; i < NLEGAL; i++)
                if ((int)legal[i].from == from && (int)legal[i].to == to)
                        return 1;
        return 0;
}

static int logged;

static void sink(const char *line, void *opaque)
{
        (void)opaque;
        if (strstr(line, "illegal transaction state transition"))
                logged++;
}

/* Every legal transition: taken, nothing logged or counted. */
static void test_legal(void)
{
        uint64_t before = eb_txn_illegal_count();
        size_t i;

        eb_log_set_sink(sink, NULL);
        logged = 0;
        for (i = 0; i < NLEGAL; i++) {
                eb_kafka_txn_state_t st = legal[i].from;

                EB_CHECK(eb_txn_transition_ok(legal[i].from, legal[i].to));
                EB_CHECK_INT(eb_txn_state_set(&st, legal[i].to, "t"), 0);
                EB_CHECK_INT(st, legal[i].to);
        }
        EB_CHECK_INT(eb_txn_illegal_count() - before, 0);
        EB_CHECK_INT(logged, 0);
        eb_log_set_sink(NULL, NULL);
}

/* The life of a producer: init, two transactions (one committed, one
 * failed and aborted), then fenced. */
static void test_walk(void)
{
        static const eb_kafka_txn_state_t path[] = {
                EB_KAFKA_TXN_INIT,       EB_KAFKA_TXN_INITIALIZING,
                EB_KAFKA_TXN_READY,      EB_KAFKA_TXN_IN_TXN,
                EB_KAFKA_TXN_COMMITTING, EB_KAFKA_TXN_READY,
                EB_KAFKA_TXN_IN_TXN,     EB_KAFKA_TXN_COMMITTING,
                EB_KAFKA_TXN_ABORTABLE,  EB_KAFKA_TXN_ABORTING,
                EB_KAFKA_TXN_READY,      EB_KAFKA_TXN_FATAL,
        };
        eb_kafka_txn_state_t st = EB_KAFKA_TXN_NONE;
        uint64_t before = eb_txn_illegal_count();
        size_t i;

        for (i = 0; i < sizeof(path) / sizeof(path[0]); i++) {
                EB_CHECK_INT(eb_txn_state_set(&st, path[i], "t"), 0);
                EB_CHECK_INT(st, path[i]);
        }
        EB_CHECK_INT(eb_txn_illegal_count() - before, 0);
}

/* Every pair not in the table: refused (logged, counted), and in the
 * non-aborting mode the state still moves, as release builds behave. */
static void test_illegal(void)
{
        int prev = eb_txn_abort_on_illegal(0);
        int from, to, n = 0;
        uint64_t before = eb_txn_illegal_count();

        eb_log_set_sink(sink, NULL);
        logged = 0;
        for (from = 0; from < NSTATES; from++)
                for (to = 0; to < NSTATES; to++) {
                        eb_kafka_txn_state_t st = (eb_kafka_txn_state_t)from;

                        if (is_legal(from, to))
                                continue;
                        n++;
                        EB_CHECK(!eb_txn_transition_ok(
                                (eb_kafka_txn_state_t)from,
                                (eb_kafka_txn_state_t)to));
                        EB_CHECK_INT(eb_txn_state_set(&st,
                                                      (eb_kafka_txn_state_t)to,
                                                      "t"),
                                     -1);
                        EB_CHECK_INT(st, to);
                }
        /* 9 states: 81 pairs, 9 to themselves, 19 in the table */
        EB_CHECK_INT(n, NSTATES * NSTATES - NSTATES - (int)NLEGAL);
        EB_CHECK_INT(eb_txn_illegal_count() - before, (uint64_t)n);
        EB_CHECK_INT(logged, n);
        /* FATAL is final; out-of-range states are never legal */
        EB_CHECK(!eb_txn_transition_ok(EB_KAFKA_TXN_FATAL, EB_KAFKA_TXN_READY));
        EB_CHECK(!eb_txn_transition_ok((eb_kafka_txn_state_t)NSTATES,
                                       EB_KAFKA_TXN_READY));
        eb_log_set_sink(NULL, NULL);
        eb_txn_abort_on_illegal(prev);
}

/* In the aborting mode (debug builds) an illegal transition kills the
 * process: checked in a child. */
static void test_abort(void)
{
        int status = 0;
        pid_t pid = fork();

        EB_REQUIRE(pid >= 0);
        if (pid == 0) {
                eb_kafka_txn_state_t st = EB_KAFKA_TXN_READY;

                eb_log_set_sink(sink, NULL);
                (void)eb_txn_abort_on_illegal(1);
                (void)eb_txn_state_set(&st, EB_KAFKA_TXN_COMMITTING, "t");
                _exit(0); /* not reached when the check works */
        }
        EB_REQUIRE(waitpid(pid, &status, 0) == pid);
        EB_CHECK(WIFSIGNALED(status));
        EB_CHECK_INT(WIFSIGNALED(status) ? WTERMSIG(status) : 0, SIGABRT);
}

/* The default follows the build: aborting with EB_DEBUG, not without. */
static void test_default(void)
{
        int prev = eb_txn_abort_on_illegal(0);

        eb_txn_abort_on_illegal(prev);
#if defined(EB_DEBUG) && EB_DEBUG /* 0 in release builds (Makefile) */
        EB_CHECK_INT(prev, 1);
#else
        EB_CHECK_INT(prev, 0);
#endif
}

int main(void)
{
        EB_RUN(test_default);
        EB_RUN(test_legal);
        EB_RUN(test_walk);
        EB_RUN(test_illegal);
        EB_RUN(test_abort);
        eb_log_shutdown();
        return eb_test_summary();
}
