#include "eb_test.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>

#include "eb_time.h"

int eb_test_passed_;
int eb_test_failed_;
int eb_test_case_failed_;
const char *eb_test_case_name_ = "";

void eb_test_run_(const char *name, void (*fn)(void))
{
        eb_test_case_name_ = name;
        eb_test_case_failed_ = 0;
        fn();
        if (eb_test_case_failed_) {
                eb_test_failed_++;
                printf("FAIL %s\n", name);
        } else {
                eb_test_passed_++;
                printf("ok   %s\n", name);
        }
        fflush(stdout);
}

int eb_test_summary(void)
{
        printf("%d passed, %d failed\n", eb_test_passed_, eb_test_failed_);
        fflush(stdout);
        return eb_test_failed_ ? 1 : 0;
}

int eb_test_tmout(int ms)
{
        const char *s = getenv("EB_TEST_TMOUT_MULT");
        long mult = 1;

        if (s) {
                char *end = NULL;
                mult = strtol(s, &end, 10);
                if (!end || *end || mult < 1 || mult > 100)
                        mult = 1;
        }
        return (int)(ms * mult);
}

char *eb_test_fixture(const char *name)
{
        const char *dir = getenv("EB_FIXTURES");
        size_t n;
        char *p;

        if (!dir)
                dir = "tests/fixtures";
        n = strlen(dir) + strlen(name) + 2;
        p = malloc(n);
        if (p)
                snprintf(p, n, "%s/%s", dir, name);
        return p;
}

char *eb_test_read_fixture(const char *name, size_t *lenp)
{
        char *path = eb_test_fixture(name);
        FILE *fp = path ? fopen(path, "rb") : NULL;
        char *buf = NULL;
        long len;

        free(path);
        if (!fp)
                return NULL;
        if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 &&
            fseek(fp, 0, SEEK_SET) == 0) {
                buf = malloc((size_t)len + 1);
                if (buf && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
                        free(buf);
                        buf = NULL;
                }
                if (buf) {
                        buf[len] = '\0';
                        if (lenp)
                                *lenp = (size_t)len;
                }
        }
        fclose(fp);
        return buf;
}

int eb_test_run_until(struct event_base *base, const int *counter, int target,
                      int timeout_ms)
{
        int64_t deadline = eb_mono_ms() + EB_T_TMOUT(timeout_ms);

        while (*counter < target && eb_mono_ms() < deadline)
                event_base_loop(base, EVLOOP_ONCE);
        return *counter >= target ? 0 : -ETIMEDOUT;
}
