/*
 * eb_test.h: the tiny test harness every test binary uses.
 *
 * A test binary is a list of cases:
 *
 *     static void test_parse_ok(void) { EB_CHECK(x == 1); ... }
 *     int main(void) {
 *             EB_RUN(test_parse_ok);
 *             return eb_test_summary();
 *     }
 *
 * EB_CHECK records a failure and keeps going (so one run reports every
 * broken expectation); EB_REQUIRE records it and returns from the case.
 * eb_test_summary() prints the closing "N passed, N failed" line that
 * tests/run adds up, and returns the exit status.
 */
#ifndef EB_TEST_H
#define EB_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int eb_test_passed_;
extern int eb_test_failed_;
extern int eb_test_case_failed_;
extern const char *eb_test_case_name_;

#define EB_CHECK(cond)                                                         \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "  %s:%d: %s: check failed: %s\n",     \
                                __FILE__, __LINE__, eb_test_case_name_,        \
                                #cond);                                        \
                        eb_test_case_failed_ = 1;                              \
                }                                                              \
        } while (0)

#define EB_REQUIRE(cond)                                                       \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        fprintf(stderr, "  %s:%d: %s: required: %s\n",         \
                                __FILE__, __LINE__, eb_test_case_name_,        \
                                #cond);                                        \
                        eb_test_case_failed_ = 1;                              \
                        return;                                                \
                }                                                              \
        } while (0)

#define EB_CHECK_STR(a, b)                                                     \
        do {                                                                   \
                const char *eb_a_ = (a), *eb_b_ = (b);                         \
                if (!eb_a_ || !eb_b_ || strcmp(eb_a_, eb_b_) != 0) {           \
                        fprintf(stderr,                                        \
                                "  %s:%d: %s: \"%s\" != \"%s\" (%s vs %s)\n",  \
                                __FILE__, __LINE__, eb_test_case_name_,        \
                                eb_a_ ? eb_a_ : "(null)",                      \
                                eb_b_ ? eb_b_ : "(null)", #a, #b);             \
                        eb_test_case_failed_ = 1;                              \
                }                                                              \
        } while (0)

#define EB_CHECK_INT(a, b)                                                     \
        do {                                                                   \
                long long eb_a_ = (long long)(a), eb_b_ = (long long)(b);      \
                if (eb_a_ != eb_b_) {                                          \
                        fprintf(stderr,                                        \
                                "  %s:%d: %s: %lld != %lld (%s vs %s)\n",      \
                                __FILE__, __LINE__, eb_test_case_name_, eb_a_, \
                                eb_b_, #a, #b);                                \
                        eb_test_case_failed_ = 1;                              \
                }                                                              \
        } while (0)

#define EB_RUN(fn) eb_test_run_(#fn, fn)

void eb_test_run_(const char *name, void (*fn)(void));
int eb_test_summary(void);

/** @returns ms scaled by $EB_TEST_TMOUT_MULT (slow sanitizer/valgrind runs) */
int eb_test_tmout(int ms);
#define EB_T_TMOUT(ms) eb_test_tmout(ms)

struct event_base;

/**
 * @brief Run @p base until @p *counter reaches @p target or
 * EB_T_TMOUT(@p timeout_ms) passes. @returns 0, or -ETIMEDOUT.
 */
int eb_test_run_until(struct event_base *base, const int *counter, int target,
                      int timeout_ms);

/** @returns new path of a file under tests/fixtures (caller frees) */
char *eb_test_fixture(const char *name);

/** @returns new contents of a fixture file, NUL-terminated, or NULL */
char *eb_test_read_fixture(const char *name, size_t *lenp);

#endif /* EB_TEST_H */
