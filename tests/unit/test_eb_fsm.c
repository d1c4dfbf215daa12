/* Unit tests for eb_fsm (checked transitions) and the source machine it
 * checks (eb_source_fsm): every legal transition is walked, every other
 * one is tried and refused (abort in EB_DEBUG builds, log and count in
 * release builds). No Kafka, no network. */
#include "eb_fsm.h"
#include "eb_source_fsm.h"
#include "eb_test.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define NS EB_SRCF_NSTATES

/* The transitions eb_poller.c makes, written out once more here, from
 * the code: the table in eb_source_fsm.c must say exactly this. */
static const int expect_legal[][2] = {
        {EB_SRCF_IDLE, EB_SRCF_WAITING},
        {EB_SRCF_IDLE, EB_SRCF_FETCHING},
        {EB_SRCF_IDLE, EB_SRCF_PUBLISHING},
        {EB_SRCF_IDLE, EB_SRCF_BACKOFF},
        {EB_SRCF_IDLE, EB_SRCF_STOPPED},
        {EB_SRCF_WAITING, EB_SRCF_WAITING},
        {EB_SRCF_WAITING, EB_SRCF_FETCHING},
        {EB_SRCF_WAITING, EB_SRCF_PUBLISHING},
        {EB_SRCF_WAITING, EB_SRCF_BACKOFF},
        {EB_SRCF_WAITING, EB_SRCF_STOPPED},
        {EB_SRCF_BACKOFF, EB_SRCF_WAITING},
        {EB_SRCF_BACKOFF, EB_SRCF_FETCHING},
        {EB_SRCF_BACKOFF, EB_SRCF_PUBLISHING},
        {EB_SRCF_BACKOFF, EB_SRCF_BACKOFF},
        {EB_SRCF_BACKOFF, EB_SRCF_STOPPED},
        {EB_SRCF_FETCHING, EB_SRCF_FETCHED},
        {EB_SRCF_FETCHING, EB_SRCF_STOPPED},
        {EB_SRCF_FETCHED, EB_SRCF_WAITING},
        {EB_SRCF_FETCHED, EB_SRCF_FETCHING},
        {EB_SRCF_FETCHED, EB_SRCF_PUBLISHING},
        {EB_SRCF_FETCHED, EB_SRCF_BACKOFF},
        {EB_SRCF_FETCHED, EB_SRCF_STOPPED},
        {EB_SRCF_PUBLISHING, EB_SRCF_PUBLISHED},
        {EB_SRCF_PUBLISHED, EB_SRCF_IDLE},
        {EB_SRCF_PUBLISHED, EB_SRCF_WAITING},
        {EB_SRCF_PUBLISHED, EB_SRCF_FETCHING},
        {EB_SRCF_PUBLISHED, EB_SRCF_PUBLISHING},
        {EB_SRCF_PUBLISHED, EB_SRCF_BACKOFF},
        {EB_SRCF_PUBLISHED, EB_SRCF_STOPPED},
        {EB_SRCF_STOPPED, EB_SRCF_STOPPED},
        {EB_SRCF_STOPPED, EB_SRCF_PUBLISHING},
};
#define N_LEGAL (sizeof(expect_legal) / sizeof(expect_legal[0]))

static int expected(int from, int to)
{
        size_t i;

        for (i = 0; i < N_LEGAL; i++)
                if (expect_legal[i][0] == from && expect_legal[i][1] == to)
                        return 1;
        return 0;
}

/* Every legal transition, made through eb_fsm_move(): accepted, the
 * state moves, nothing is counted. */
static void test_source_legal_walk(void)
{
        uint64_t before = eb_fsm_illegal_total();
        size_t i;

        for (i = 0; i < N_LEGAL; i++) {
                int st = expect_legal[i][0];

                EB_CHECK_INT(eb_fsm_move(&eb_source_fsm, &st,
                                         expect_legal[i][1], "t"),
                             0);
                EB_CHECK_INT(st, expect_legal[i][1]);
        }
        EB_CHECK(eb_fsm_illegal_total() == before);
}

/* The table holds exactly the transitions above: nothing more. */
static void test_source_table_exact(void)
{
        int from, to, n = 0;

        for (from = 0; from < NS; from++)
                for (to = 0; to < NS; to++) {
                        int l = eb_fsm_legal(&eb_source_fsm, from, to);

                        if (l != expected(from, to))
                                fprintf(stderr, "  %s -> %s: table says %d\n",
                                        eb_fsm_state_name(&eb_source_fsm, from),
                                        eb_fsm_state_name(&eb_source_fsm, to),
                                        l);
                        EB_CHECK_INT(l, expected(from, to));
                        n += l;
                }
        EB_CHECK_INT(n, (int)N_LEGAL);
}

/* What the machine is for: nothing starts while a request or a publish
 * is in flight, and a stopped source never polls again. */
static void test_source_in_flight_exclusive(void)
{
        int to;

        for (to = 0; to < NS; to++) {
                EB_CHECK(
                        !eb_fsm_legal(&eb_source_fsm, EB_SRCF_PUBLISHING, to) ||
                        to == EB_SRCF_PUBLISHED);
                EB_CHECK(!eb_fsm_legal(&eb_source_fsm, EB_SRCF_FETCHING, to) ||
                         to == EB_SRCF_FETCHED || to == EB_SRCF_STOPPED);
        }
        EB_CHECK(!eb_fsm_legal(&eb_source_fsm, EB_SRCF_STOPPED,
                               EB_SRCF_FETCHING));
        EB_CHECK(!eb_fsm_legal(&eb_source_fsm, EB_SRCF_STOPPED, EB_SRCF_IDLE));
        EB_CHECK(!eb_fsm_legal(&eb_source_fsm, EB_SRCF_IDLE, NS));
        EB_CHECK(!eb_fsm_legal(&eb_source_fsm, -1, EB_SRCF_IDLE));
}

/* Try one illegal transition in a child: in an EB_DEBUG build it must
 * die of SIGABRT; in a release build it returns -1, carries the move out
 * and counts it. */
static void try_illegal(int from, int to)
{
        pid_t pid;
        int status = 0;

        fflush(NULL);
        pid = fork();
        if (pid == 0) {
                int st = from;
                uint64_t before = eb_fsm_illegal_total();
                int rc = eb_fsm_move(&eb_source_fsm, &st, to, "t");

                _exit(rc == -1 && st == to &&
                                      eb_fsm_illegal_total() == before + 1
                              ? 0
                              : 3);
        }
        EB_REQUIRE(pid > 0);
        EB_REQUIRE(waitpid(pid, &status, 0) == pid);
#if EB_DEBUG
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
                fprintf(stderr, "  %s -> %s: not aborted\n",
                        eb_fsm_state_name(&eb_source_fsm, from),
                        eb_fsm_state_name(&eb_source_fsm, to));
        EB_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#else
        EB_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
}

static void test_source_illegal_refused(void)
{
        int from, to, tried = 0;

        for (from = 0; from < NS; from++)
                for (to = 0; to < NS; to++)
                        if (!expected(from, to)) {
                                try_illegal(from, to);
                                tried++;
                        }
        EB_CHECK_INT(tried, NS * NS - (int)N_LEGAL);
}

/* In the process itself (release builds only: a debug build aborts):
 * the counter counts and the log line names both states. */
static void test_release_counts(void)
{
#if !EB_DEBUG
        int st = EB_SRCF_PUBLISHING;
        uint64_t before = eb_fsm_illegal_total();

        EB_CHECK_INT(eb_fsm_move(&eb_source_fsm, &st, EB_SRCF_FETCHING, "x"),
                     -1);
        EB_CHECK_INT(st, EB_SRCF_FETCHING);
        EB_CHECK(eb_fsm_illegal_total() == before + 1);
#else
        EB_CHECK(EB_DEBUG == 1);
#endif
}

/* /status and the gauge show the six states they always showed. */
static void test_source_public(void)
{
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_IDLE), EB_SRC_IDLE);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_WAITING), EB_SRC_WAITING);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_BACKOFF), EB_SRC_BACKOFF);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_FETCHING), EB_SRC_FETCHING);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_FETCHED), EB_SRC_FETCHING);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_PUBLISHING),
                     EB_SRC_PUBLISHING);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_PUBLISHED),
                     EB_SRC_PUBLISHING);
        EB_CHECK_INT(eb_source_fsm_public(EB_SRCF_STOPPED), EB_SRC_STOPPED);
        EB_CHECK_STR(eb_fsm_state_name(&eb_source_fsm, EB_SRCF_FETCHED),
                     "fetched");
        EB_CHECK_STR(eb_fsm_state_name(&eb_source_fsm, NS), "unknown");
}

int main(void)
{
        EB_RUN(test_source_legal_walk);
        EB_RUN(test_source_table_exact);
        EB_RUN(test_source_in_flight_exclusive);
        EB_RUN(test_source_illegal_refused);
        EB_RUN(test_release_counts);
        EB_RUN(test_source_public);
        return eb_test_summary();
}
