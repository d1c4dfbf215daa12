/*
 * evbridge-bench-render: the CPU of turning one upstream page into
 * CloudEvents, without HTTP or Kafka (docs/benchmarks.md, "CPU per
 * event").
 *
 *   evbridge-bench-render PROVIDER PAGE.json [ROUNDS] [--parse-only]
 *
 * Each round runs the adapter's handle_response on the page (as the
 * poller does at HTTP 200: parse, normalise) and renders every event as
 * a structured CloudEvent with its key and dedupe identity, then frees
 * it all. Prints the events and the process CPU per event. Under
 * `valgrind --tool=callgrind` the instruction counts are exact, whatever
 * else the machine is doing: run it at two round counts and take the
 * difference to leave the start-up out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eb_config.h"
#include "eb_envelope.h"
#include "eb_event.h"
#include "eb_provider.h"
#include "eb_time.h"
#include "eb_util.h"

static char *slurp(const char *path, size_t *lenp)
{
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        long n;

        if (!f)
                return NULL;
        if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
            fseek(f, 0, SEEK_SET) == 0) {
                buf = eb_xmalloc((size_t)n + 1);
                if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                        free(buf);
                        buf = NULL;
                } else {
                        buf[n] = '\0';
                        *lenp = (size_t)n;
                }
        }
        fclose(f);
        return buf;
}

static double cpu_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
        const struct eb_provider *prov;
        struct eb_source_cfg src;
        int rounds = 100, parse_only = 0, i;
        int64_t n;
        size_t len = 0, total = 0, j;
        double t0;
        char *body;

        if (argc < 3) {
                fprintf(stderr, "usage: evbridge-bench-render PROVIDER "
                                "PAGE.json [ROUNDS] [--parse-only]\n");
                return 2;
        }
        prov = eb_provider_lookup(argv[1]);
        if (!prov) {
                fprintf(stderr, "unknown provider %s\n", argv[1]);
                return 2;
        }
        for (i = 3; i < argc; i++) {
                if (!strcmp(argv[i], "--parse-only"))
                        parse_only = 1;
                else if (eb_parse_i64(argv[i], &n) || n < 1 || n > 1000000) {
                        fprintf(stderr,
                                "ROUNDS: expected 1..1000000, got "
                                "\"%s\"\n",
                                argv[i]);
                        return 2;
                } else {
                        rounds = (int)n;
                }
        }
        body = slurp(argv[2], &len);
        if (!body) {
                fprintf(stderr, "%s: %s\n", argv[2], strerror(errno));
                return 1;
        }
        memset(&src, 0, sizeof(src));
        src.name = eb_xstrdup("bench");
        src.provider = eb_xstrdup(argv[1]);
        src.base_url = eb_xstrdup("http://127.0.0.1:1");
        src.token = eb_xstrdup("bench-token");
        src.api_key = eb_xstrdup("bench-key");
        src.poll_start = eb_xstrdup("30d");
        src.enabled = 1;
        src.overlap_ms = -1;
        src.lag_ms = -1;
        src.json = json_object();
        eb_log_set_level(EB_LOG_ERROR);
        t0 = cpu_s();
        for (i = 0; i < rounds; i++) {
                struct eb_response resp;
                struct eb_page page;
                struct eb_walk w;
                char *url = NULL, *auth = NULL;

                eb_walk_init(&w, prov, &src, NULL, eb_now_ms());
                if (prov->walk_begin(&w) ||
                    prov->next_request(&w, &url, &auth)) {
                        fprintf(stderr, "cannot begin a walk\n");
                        return 1;
                }
                free(url);
                free(auth);
                memset(&resp, 0, sizeof(resp));
                resp.status = 200;
                resp.body = body;
                resp.body_len = len;
                resp.content_type = "application/json";
                resp.now_ms = eb_now_ms();
                memset(&page, 0, sizeof(page));
                prov->handle_response(&w, &resp, &page);
                if (page.kind != EB_RESP_OK) {
                        fprintf(stderr, "page refused: %s\n", page.detail);
                        return 1;
                }
                for (j = 0; j < page.events_cnt && !parse_only; j++) {
                        struct eb_envelope env;
                        size_t klen;
                        char *dkey = eb_event_dedupe_key(page.events[j], &klen);

                        free(dkey);
                        if (eb_envelope_render(page.events[j],
                                               "{prefix}.{provider}", "bench",
                                               EB_ENVELOPE_STRUCTURED, &env)) {
                                fprintf(stderr, "event %zu not rendered\n", j);
                                return 1;
                        }
                        eb_envelope_fini(&env);
                }
                total += page.events_cnt;
                eb_page_fini(&page);
                eb_walk_fini(&w);
        }
        printf("%s: %zu events, %.2f us CPU per event%s\n", argv[1], total,
               total ? (cpu_s() - t0) * 1e6 / (double)total : 0.0,
               parse_only ? " (parse and normalise only)" : "");
        json_decref(src.json);
        free(src.name);
        free(src.provider);
        free(src.base_url);
        free(src.token);
        free(src.api_key);
        free(src.poll_start);
        free(body);
        return 0;
}
