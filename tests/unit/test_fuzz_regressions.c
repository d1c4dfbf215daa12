/*
 * Replays what the fuzzers found, and their seed corpora, through the same
 * entry points the libFuzzer targets use (tests/fuzz/entries.c, built
 * here by the normal compiler), so `make test`, `make asan` and
 * `make valgrind` re-check every old finding:
 *
 *   tests/fixtures/fuzz-regressions/<target>/   inputs that once crashed
 *                                               or broke a contract
 *   tests/fuzz/corpus/<target>/                 the real-shaped seeds
 *
 * <target> is an entry of eb_fuzz_targets (fuzz_<target>.c). A finding
 * becomes a regression by copying the input from build/fuzz/artifacts/
 * into the matching directory here, after the fix.
 *
 * Plus a direct test of each bug fixed that way.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eb_config.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"

/* The entries themselves: one translation unit, no Makefile change. */
#include "../fuzz/entries.c"

#define REG_DIR    "tests/fixtures/fuzz-regressions"
#define CORPUS_DIR "tests/fuzz/corpus"

static char *read_file(const char *path, size_t *lenp)
{
        FILE *fp = fopen(path, "rb");
        char *buf = NULL;
        long n;

        if (!fp)
                return NULL;
        if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 ||
            fseek(fp, 0, SEEK_SET))
                goto out;
        buf = malloc((size_t)n + 1);
        if (!buf)
                goto out;
        if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
                free(buf);
                buf = NULL;
                goto out;
        }
        buf[n] = '\0';
        *lenp = (size_t)n;
out:
        fclose(fp);
        return buf;
}

static int name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted regular file names in @p dir (NULL-terminated, new), or NULL
 * when the directory does not exist. */
static char **list_dir(const char *dir, size_t *np)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        char **names = NULL, path[4096];
        size_t n = 0;
        struct stat st;

        *np = 0;
        if (!d)
                return NULL;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                if (stat(path, &st) || !S_ISREG(st.st_mode))
                        continue;
                names = realloc(names, (n + 2) * sizeof(*names));
                if (!names)
                        abort();
                names[n++] = strdup(de->d_name);
        }
        closedir(d);
        if (!names) {
                names = calloc(1, sizeof(*names));
                if (!names)
                        abort();
        }
        names[n] = NULL;
        qsort(names, n, sizeof(*names), name_cmp);
        *np = n;
        return names;
}

static void free_names(char **names)
{
        size_t i;

        for (i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
}

/* Every file of @p root/<target>/ through the target's entry.
 * @returns the number of files replayed. */
static size_t replay(const char *root, const struct eb_fuzz_target *t)
{
        char dir[1024], path[4096], **names;
        size_t n, i, len = 0;

        snprintf(dir, sizeof(dir), "%s/%s", root, t->name);
        names = list_dir(dir, &n);
        for (i = 0; i < n; i++) {
                char *data;
                int rc;

                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                data = read_file(path, &len);
                EB_CHECK(data != NULL);
                if (!data)
                        continue;
                rc = t->fn((const uint8_t *)data, len);
                if (rc)
                        fprintf(stderr, "  %s: contract broken\n", path);
                EB_CHECK_INT(rc, 0);
                free(data);
        }
        free_names(names);
        return n;
}

static const struct eb_fuzz_target *target_named(const char *name)
{
        const struct eb_fuzz_target *t;

        for (t = eb_fuzz_targets; t->name; t++)
                if (!strcmp(t->name, name))
                        return t;
        return NULL;
}

/* ---- replays ------------------------------------------------------------ */

static void test_regressions(void)
{
        const struct eb_fuzz_target *t;
        size_t total = 0;

        for (t = eb_fuzz_targets; t->name; t++)
                total += replay(REG_DIR, t);
        /* The findings fixed so far (see the direct tests below). */
        EB_CHECK(total >= 2);
}

/* Every directory under the regressions belongs to a target: a typo in a
 * directory name would silently replay nothing. */
static void test_regression_dirs_known(void)
{
        DIR *d = opendir(REG_DIR);
        struct dirent *de;

        EB_REQUIRE(d != NULL);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (!target_named(de->d_name))
                        fprintf(stderr, "  %s/%s: no such fuzz target\n",
                                REG_DIR, de->d_name);
                EB_CHECK(target_named(de->d_name) != NULL);
        }
        closedir(d);
}

/* The seeds are real-shaped samples; each target must have some, and all
 * of them must pass (a seed that breaks a contract is a bug too). */
static void test_corpus(void)
{
        const struct eb_fuzz_target *t;

        for (t = eb_fuzz_targets; t->name; t++) {
                size_t n = replay(CORPUS_DIR, t);

                if (!n)
                        fprintf(stderr, "  no seeds for %s\n", t->name);
                EB_CHECK(n > 0);
        }
}

/* Every fuzz_<name>.c has an entry, and every entry a fuzz_<name>.c. */
static void test_targets_match_files(void)
{
        const struct eb_fuzz_target *t;
        char **names, path[1024];
        size_t n, i, found = 0;

        names = list_dir("tests/fuzz", &n);
        EB_REQUIRE(names != NULL);
        for (i = 0; i < n; i++) {
                size_t l = strlen(names[i]);
                char base[256];

                if (strncmp(names[i], "fuzz_", 5) || l < 8 ||
                    strcmp(names[i] + l - 2, ".c"))
                        continue;
                snprintf(base, sizeof(base), "%.*s", (int)(l - 7),
                         names[i] + 5);
                if (!target_named(base))
                        fprintf(stderr, "  %s has no entry\n", names[i]);
                EB_CHECK(target_named(base) != NULL);
                found++;
        }
        free_names(names);
        for (t = eb_fuzz_targets; t->name; t++) {
                struct stat st;

                snprintf(path, sizeof(path), "tests/fuzz/fuzz_%s.c", t->name);
                EB_CHECK(stat(path, &st) == 0);
        }
        EB_CHECK_INT(found,
                     sizeof(eb_fuzz_targets) / sizeof(eb_fuzz_targets[0]) - 1);
}

/* ---- the bugs fixed ------------------------------------------------------ */

/*
 * close_page, close_webhook: an upstream date_updated of year 804 parsed
 * to a negative time; the adapter accepted the event, but the envelope
 * cannot render a time before 1970, so the pipeline failed the page as an
 * adapter bug on every retry. eb_rfc3339_parse now accepts only what
 * eb_rfc3339_format can write back (1970..9999), so the adapter refuses
 * the page as a bad body instead.
 */
static void test_rfc3339_range(void)
{
        static const struct {
                const char *in;
                int rc;
        } cases[] = {
                {"0804-11-14T22:12:30.000000", -EINVAL},
                {"1969-12-31T23:59:59.999Z", -EINVAL},
                {"1970-01-01T00:00:00+00:01", -EINVAL},
                {"1970-01-01T00:00:00Z", 0},
                {"1970-01-01T00:00:00-00:01", 0},
                {"9999-12-31T23:59:59.999Z", 0},
                {"9999-12-31T23:59:59.999-00:01", -EINVAL},
                {"9999-12-31T23:59:60Z", -EINVAL},
        };
        char buf[64];
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int64_t ms = -1, again = -1;
                int rc = eb_rfc3339_parse(cases[i].in, &ms);

                if (rc != cases[i].rc)
                        fprintf(stderr, "  %s\n", cases[i].in);
                EB_CHECK_INT(rc, cases[i].rc);
                if (rc)
                        continue;
                eb_rfc3339_format(ms, 3, buf, sizeof(buf));
                EB_CHECK_INT(eb_rfc3339_parse(buf, &again), 0);
                EB_CHECK_INT(again, ms);
        }
}

/* A date before 1970: that event is poison (dead-letter topic), never a
 * crash; the page itself is fine. */
static void test_close_old_date_is_poison(void)
{
        char *body = eb_test_read_fixture(
                "fuzz-regressions/close_page/date-updated-before-1970.json",
                NULL);
        struct eb_response resp;
        struct eb_page page;
        struct eb_walk w;

        EB_REQUIRE(body != NULL);
        eb_fuzz_init();
        eb_walk_init(&w, &eb_provider_close, fz.close, NULL, FZ_NOW_MS);
        EB_REQUIRE(eb_provider_close.walk_begin(&w) == 0);
        memset(&resp, 0, sizeof(resp));
        resp.status = 200;
        resp.body = body;
        resp.body_len = strlen(body);
        resp.content_type = "application/json";
        resp.now_ms = FZ_NOW_MS;
        eb_page_init(&page);
        eb_provider_close.handle_response(&w, &resp, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 1);
        EB_CHECK(page.events_cnt && page.events[0]->deadletter &&
                 strstr(page.events[0]->deadletter, "date_updated"));
        EB_CHECK(strstr(page.detail, "date_updated") != NULL);
        eb_page_fini(&page);
        eb_walk_fini(&w);
        free(body);
}

int main(void)
{
        EB_RUN(test_targets_match_files);
        EB_RUN(test_regression_dirs_known);
        EB_RUN(test_regressions);
        EB_RUN(test_corpus);
        EB_RUN(test_rfc3339_range);
        EB_RUN(test_close_old_date_is_poison);
        eb_fuzz_fini();
        return eb_test_summary();
}
