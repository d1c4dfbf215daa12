/*
 * Unit tests for eb_shard_state: the shard's life walked through its
 * legal transitions, every other pair refused (logged, counted, state
 * kept), and an illegal one aborting in strict mode. No Kafka.
 */
#include "eb_log.h"
#include "eb_shard_state.h"
#include "eb_test.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char last[4096];
static int lines;

static void sink(const char *line, void *opaque)
{
        (void)opaque;
        snprintf(last, sizeof(last), "%s", line);
        lines++;
}

/* The table as eb_shard_state.h states it. */
static int expected(enum eb_shard_state a, enum eb_shard_state b)
{
        return (a == EB_SHARD_STARTING && b == EB_SHARD_RUNNING) ||
               (a == EB_SHARD_STARTING && b == EB_SHARD_STOPPING) ||
               (a == EB_SHARD_RUNNING && b == EB_SHARD_STOPPING) ||
               (a == EB_SHARD_STOPPING && b == EB_SHARD_STOPPED);
}

static void test_walk_legal(void)
{
        enum eb_shard_state st = EB_SHARD_STARTING;
        uint64_t illegal = 0;

        /* assigned, restored, revoked, settled */
        EB_CHECK_INT(eb_shard_state_set(&st, EB_SHARD_RUNNING, 3, &illegal), 0);
        EB_CHECK_INT(st, EB_SHARD_RUNNING);
        EB_CHECK_INT(eb_shard_state_set(&st, EB_SHARD_STOPPING, 3, &illegal),
                     0);
        EB_CHECK_INT(eb_shard_state_set(&st, EB_SHARD_STOPPED, 3, &illegal), 0);
        EB_CHECK_INT(st, EB_SHARD_STOPPED);
        /* revoked while starting */
        st = EB_SHARD_STARTING;
        EB_CHECK_INT(eb_shard_state_set(&st, EB_SHARD_STOPPING, 3, &illegal),
                     0);
        EB_CHECK_INT(st, EB_SHARD_STOPPING);
        EB_CHECK_INT(illegal, 0);
}

static void test_every_pair(void)
{
        int a, b, refused = 0;
        uint64_t illegal = 0;

        eb_shard_state_strict = 0;
        eb_log_set_sink(sink, NULL);
        for (a = 0; a < EB_SHARD_STATES; a++) {
                for (b = 0; b < EB_SHARD_STATES; b++) {
                        enum eb_shard_state st = (enum eb_shard_state)a;
                        int rc, want = expected(st, (enum eb_shard_state)b);

                        EB_CHECK_INT(eb_shard_state_legal(st, b), want);
                        lines = 0;
                        rc = eb_shard_state_set(&st, b, 7, &illegal);
                        EB_CHECK_INT(rc, want ? 0 : -EPERM);
                        EB_CHECK_INT(st, want ? b : a);
                        EB_CHECK_INT(lines, want ? 0 : 1);
                        refused += !want;
                }
        }
        EB_CHECK_INT(illegal, (uint64_t)refused);
        EB_CHECK_INT(refused, EB_SHARD_STATES * EB_SHARD_STATES - 4);
        /* the log line names the shard and both states */
        {
                enum eb_shard_state st = EB_SHARD_STOPPED;

                eb_shard_state_set(&st, EB_SHARD_RUNNING, 5, &illegal);
                EB_CHECK(strstr(last, "shard 5: illegal state transition "
                                      "stopped -> running") != NULL);
        }
        EB_CHECK_INT(eb_shard_state_legal(EB_SHARD_STATES, EB_SHARD_RUNNING),
                     0);
        EB_CHECK_STR(eb_shard_state_name(EB_SHARD_STATES), "?");
        EB_CHECK_STR(eb_shard_state_name(EB_SHARD_STOPPING), "stopping");
        eb_log_set_sink(NULL, NULL);
}

static void test_strict_aborts(void)
{
        int status = 0;
        pid_t pid = fork();

        EB_REQUIRE(pid >= 0);
        if (pid == 0) {
                enum eb_shard_state st = EB_SHARD_RUNNING;
                uint64_t illegal = 0;

                eb_log_set_sink(sink, NULL); /* quiet */
                eb_shard_state_strict = 1;
                eb_shard_state_set(&st, EB_SHARD_STARTING, 1, &illegal);
                _exit(0);
        }
        EB_REQUIRE(waitpid(pid, &status, 0) == pid);
        EB_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* The default follows the build: strict with EB_DEBUG=1 (every build but
 * release, which defines it 0) or under ASan, not otherwise. Runs first,
 * before the tests that set eb_shard_state_strict. */
static void test_default(void)
{
#if (defined(EB_DEBUG) && EB_DEBUG) || defined(__SANITIZE_ADDRESS__)
        EB_CHECK_INT(eb_shard_state_strict, 1);
#else
        EB_CHECK_INT(eb_shard_state_strict, 0);
#endif
}

int main(void)
{
        EB_RUN(test_default);
        EB_RUN(test_walk_legal);
        EB_RUN(test_every_pair);
        EB_RUN(test_strict_aborts);
        eb_log_shutdown();
        return eb_test_summary();
}
