/*
 * End-to-end tests of evbridge-replay, run as users run it: every case
 * execs $EB_BUILD_DIR/bin/evbridge-replay against a real Apache Kafka
 * broker started here once (tests/kafka/broker through eb_tkafka), and
 * checks its stdout, stderr, exit status and what it wrote (an in-test
 * HTTP receiver, a target topic read with read_committed, committed
 * offsets).
 *
 * Data set: 3 crm topics (3 + 2 + 2 partitions; two structured, one in
 * binary mode, one written transactionally like the daemon does) with 12
 * envelopes each from two sources, four entities, hourly event times and
 * message timestamps 20 minutes apart ending now; one record that is not
 * an envelope; and an unrelated topic a ^crm\. regex must not select.
 * Every expectation is computed from the table of what was published
 * (with the offsets the delivery reports gave), never hard-coded.
 *
 * --from TIME resolves through the broker's time index (ListOffsets by
 * timestamp): the scan fallback must not be used, except for a time after
 * every record, where the broker's -1 is checked by a scan. A re-publish
 * run again with --resume adds no duplicate to what a read_committed
 * consumer reads of the target.
 *
 * One case stays on librdkafka 2.0.2's mock cluster, with its own copy of
 * T1: test_republish_abort_retry, which needs the broker to refuse one
 * AddPartitionsToTxn (TOPIC_AUTHORIZATION_FAILED, injected).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eb_kmock.h"
#include "eb_log.h"
#include "eb_replay.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tkafka.h"

#define T1        "crm.close.lead.updated" /* 3 partitions, transactional */
#define T2        "crm.kommo.lead.status-changed" /* 2 partitions + 1 non-envelope */
#define T3        "crm.kota.employee.created" /* 2 partitions, binary mode */
#define TX        "other.topic"               /* not matched by ^crm\. */
#define PER_TOPIC 12
#define MAX_PUBS  128
#define MIN_MS    (60LL * 1000)
#define EV0       1709251200000LL /* 2024-03-01T00:00:00Z */

struct pub {
        const char *topic;
        int32_t partition;
        int64_t offset;
        int64_t ts;     /* message timestamp */
        int64_t evtime; /* CloudEvents time */
        char *type, *source, *sourcename, *subject, *entity, *id, *key;
        char *value;
        size_t value_len;
        json_t *envelope; /* what a replay must output */
        int valid;
        int binary;
};

static struct pub pubs[MAX_PUBS];
static size_t npubs;
static size_t pubs_from; /* the data set in use is pubs[pubs_from..] */
static eb_tkafka_t *kafka;
static const char *bs;
static char bin[1024];
static int64_t base_now;

/* ---- running the tool --------------------------------------------------- */

struct res {
        int code;
        char *out;
        char *err;
};

static void res_free(struct res *r)
{
        free(r->out);
        free(r->err);
        memset(r, 0, sizeof(*r));
}

static char *slurp(const char *path)
{
        FILE *fp = fopen(path, "rb");
        char *buf = NULL;
        long n;

        if (!fp)
                return calloc(1, 1);
        fseek(fp, 0, SEEK_END);
        n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        buf = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
        if (buf && n > 0 && fread(buf, 1, (size_t)n, fp) != (size_t)n)
                buf[0] = '\0';
        fclose(fp);
        return buf;
}

static char out_path[64], err_path[64];

static pid_t spawn(const char *const *args, int with_brokers)
{
        const char *argv[96];
        size_t n = 0, i;
        pid_t pid;

        argv[n++] = bin;
        for (i = 0; args[i] && n < 90; i++)
                argv[n++] = args[i];
        if (with_brokers) {
                argv[n++] = "-b";
                argv[n++] = bs;
        }
        argv[n] = NULL;
        snprintf(out_path, sizeof(out_path), "/tmp/eb-replay-out-%d",
                 (int)getpid());
        snprintf(err_path, sizeof(err_path), "/tmp/eb-replay-err-%d",
                 (int)getpid());
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid == 0) {
                int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
                int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

                if (fo < 0 || fe < 0)
                        _exit(126);
                dup2(fo, 1);
                dup2(fe, 2);
                close(fo);
                close(fe);
                execv(bin, (char *const *)argv);
                _exit(127);
        }
        return pid;
}

static int wait_code(pid_t pid, int timeout_ms)
{
        int64_t deadline = eb_mono_ms() + timeout_ms;
        int status = 0;

        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);

                if (w == pid)
                        break;
                if (eb_mono_ms() > deadline) {
                        fprintf(stderr, "  tool timed out; killing it\n");
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        return -1;
                }
                usleep(10 * 1000);
        }
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void collect(struct res *r, int code)
{
        r->code = code;
        r->out = slurp(out_path);
        r->err = slurp(err_path);
        unlink(out_path);
        unlink(err_path);
}

static void toolv(struct res *r, int with_brokers, const char *const *args)
{
        pid_t pid = spawn(args, with_brokers);

        collect(r, pid > 0 ? wait_code(pid, EB_T_TMOUT(60000)) : -1);
        /* Under make asan the tool is instrumented too: any report fails
         * the case, whatever the exit status was expected to be. */
        if (strstr(r->err, "Sanitizer") || strstr(r->err, "runtime error:")) {
                fprintf(stderr, "  sanitizer report from the tool:\n%.4000s\n",
                        r->err);
                EB_CHECK(0);
        }
}

#define TOOL(r, ...) toolv((r), 1, (const char *const[]){__VA_ARGS__, NULL})

/* Show what the tool said when a check on it failed. */
static void dump(const struct res *r, const char *what)
{
        fprintf(stderr,
                "  --- %s: exit %d\n  --- stdout:\n%.3000s\n"
                "  --- stderr:\n%.3000s\n",
                what, r->code, r->out ? r->out : "", r->err ? r->err : "");
}

/* ---- publishing the data set -------------------------------------------- */

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        struct pub *p = m->_private;

        (void)rk;
        (void)opaque;
        if (!m->err && p)
                p->offset = m->offset;
}

static rd_kafka_t *producer(const char *txn_id)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char err[256];
        rd_kafka_t *rk;

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bs, err,
                              sizeof(err)) ||
            (txn_id && rd_kafka_conf_set(conf, "transactional.id", txn_id, err,
                                         sizeof(err)))) {
                fprintf(stderr, "  conf: %s\n", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk)
                rd_kafka_conf_destroy(conf);
        return rk;
}

static char *fmt_time(int64_t ms)
{
        char buf[40];

        eb_rfc3339_format(ms, 3, buf, sizeof(buf));
        return strdup(buf);
}

static char *xasprintf(const char *fmt, ...) EB_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

static void pub_free(struct pub *p)
{
        free(p->type);
        free(p->source);
        free(p->sourcename);
        free(p->subject);
        free(p->entity);
        free(p->id);
        free(p->key);
        free(p->value);
        json_decref(p->envelope);
        memset(p, 0, sizeof(*p));
}

/* Fill a pub's attributes for event @p i of @p topic. */
static struct pub *new_pub(const char *topic, int nparts, int i, int64_t ts)
{
        struct pub *p = &pubs[npubs++];
        const char *prov = !strcmp(topic, T2)   ? "kommo"
                           : !strcmp(topic, T3) ? "kota"
                                                : "close";
        const char *etype = !strcmp(topic, T3) ? "employee" : "lead";
        const char *action = !strcmp(topic, T2)   ? "status_changed"
                             : !strcmp(topic, T3) ? "created"
                                                  : "updated";
        int acct = i % 2;

        memset(p, 0, sizeof(*p));
        p->topic = topic;
        p->partition = i % nparts;
        p->offset = -1;
        p->ts = ts;
        p->evtime = EV0 + (int64_t)i * 3600 * 1000;
        p->valid = 1;
        p->binary = !strcmp(topic, T3);
        p->type = xasprintf("%s.%s.%s", prov, etype, action);
        p->source = xasprintf("/%s/%s", prov, acct ? "orga_B" : "orga_A");
        p->sourcename = xasprintf("%s-%s", acct ? "beta" : "acme", prov);
        p->entity = xasprintf("e%d", i % 4);
        p->subject = xasprintf("%s/%s", etype, p->entity);
        p->id = xasprintf("ev-%s-%d-%lld", topic, i, (long long)ts);
        p->key = xasprintf("%s/%s/%s", p->sourcename, etype, p->entity);
        return p;
}

static json_t *data_of(const struct pub *p, int i)
{
        return json_pack("{s:{s:i},s:{s:s}}", "fields", "n", i, "native", "id",
                         p->id);
}

static json_t *envelope_of(const struct pub *p, int i)
{
        json_t *o = json_object();
        char *t = fmt_time(p->evtime);
        const char *prov = strchr(p->source + 1, '/');
        char provider[16];

        snprintf(provider, sizeof(provider), "%.*s",
                 (int)(prov - p->source - 1), p->source + 1);
        json_object_set_new(o, "specversion", json_string("1.0"));
        json_object_set_new(o, "id", json_string(p->id));
        json_object_set_new(o, "source", json_string(p->source));
        json_object_set_new(o, "type", json_string(p->type));
        json_object_set_new(o, "time", json_string(t));
        json_object_set_new(o, "subject", json_string(p->subject));
        json_object_set_new(o, "datacontenttype",
                            json_string("application/json"));
        json_object_set_new(o, "provider", json_string(provider));
        json_object_set_new(o, "entitytype",
                            json_string(p->binary ? "employee" : "lead"));
        json_object_set_new(o, "entityid", json_string(p->entity));
        json_object_set_new(o, "action",
                            json_string(strrchr(p->type, '.') + 1));
        json_object_set_new(o, "sourcename", json_string(p->sourcename));
        json_object_set_new(o, "data", data_of(p, i));
        free(t);
        return o;
}

static int produce_pub(rd_kafka_t *rk, struct pub *p, int i)
{
        rd_kafka_headers_t *h = rd_kafka_headers_new(16);
        rd_kafka_resp_err_t err;
        json_t *data = NULL;

        if (!p->valid) {
                rd_kafka_header_add(h, "content-type", -1, "text/plain", -1);
        } else if (p->binary) {
                const char *const names[] = {
                        "specversion", "id",      "source",     "type",
                        "time",        "subject", "provider",   "entitytype",
                        "entityid",    "action",  "sourcename", NULL};
                size_t k;

                for (k = 0; names[k]; k++) {
                        char hn[32];
                        json_t *v = json_object_get(p->envelope, names[k]);

                        snprintf(hn, sizeof(hn), "ce_%s", names[k]);
                        rd_kafka_header_add(h, hn, -1, json_string_value(v),
                                            -1);
                }
                rd_kafka_header_add(h, "content-type", -1, "application/json",
                                    -1);
                data = data_of(p, i);
                p->value = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(data);
        } else {
                rd_kafka_header_add(h, "content-type", -1,
                                    "application/cloudevents+json", -1);
                p->value = json_dumps(p->envelope,
                                      JSON_COMPACT | JSON_PRESERVE_ORDER);
        }
        if (!p->valid)
                p->value = strdup("this is not an envelope");
        p->value_len = strlen(p->value);
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(p->topic),
                                RD_KAFKA_V_PARTITION(p->partition),
                                RD_KAFKA_V_KEY(p->key, strlen(p->key)),
                                RD_KAFKA_V_VALUE(p->value, p->value_len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_TIMESTAMP(p->ts),
                                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(p),
                                RD_KAFKA_V_END);
        if (err) {
                rd_kafka_headers_destroy(h);
                fprintf(stderr, "  produce: %s\n", rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

static int publish_topic(const char *topic, int nparts, int txn)
{
        rd_kafka_t *rk = producer(txn ? "test-replay-publisher" : NULL);
        rd_kafka_error_t *error;
        int i, rc = 0;

        if (!rk)
                return -1;
        if (txn) {
                error = rd_kafka_init_transactions(rk, EB_T_TMOUT(20000));
                if (!error)
                        error = rd_kafka_begin_transaction(rk);
                if (error) {
                        fprintf(stderr, "  txn: %s\n",
                                rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        rd_kafka_destroy(rk);
                        return -1;
                }
        }
        for (i = 0; i < PER_TOPIC && !rc; i++) {
                /* Timestamps 20 min apart, the last 10 min ago. */
                int64_t ts = base_now - (int64_t)(PER_TOPIC - i) * 20 * MIN_MS +
                             10 * MIN_MS;
                struct pub *p = new_pub(topic, nparts, i, ts);

                p->envelope = envelope_of(p, i);
                rc = produce_pub(rk, p, i);
        }
        if (!rc && !strcmp(topic, T2)) {
                /* One record that is not an envelope, last in T2:1. */
                struct pub *p = new_pub(topic, nparts, 1, base_now - MIN_MS);

                p->valid = 0;
                rc = produce_pub(rk, p, 0);
        }
        if (txn && !rc) {
                error = rd_kafka_commit_transaction(rk, EB_T_TMOUT(20000));
                if (error) {
                        fprintf(stderr, "  commit: %s\n",
                                rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        rc = -1;
                }
        }
        if (rd_kafka_flush(rk, EB_T_TMOUT(20000)))
                rc = -1;
        rd_kafka_destroy(rk);
        return rc;
}

/* ---- checking output ---------------------------------------------------- */

typedef int pred_fn(const struct pub *p, const void *arg);

static struct pub *find_pub(const char *topic, int32_t part, int64_t off)
{
        size_t i;

        for (i = pubs_from; i < npubs; i++)
                if (pubs[i].partition == part && pubs[i].offset == off &&
                    !strcmp(pubs[i].topic, topic))
                        return &pubs[i];
        return NULL;
}

static int in_topics(const struct pub *p, const char *const *topics)
{
        size_t i;

        for (i = 0; topics[i]; i++)
                if (!strcmp(p->topic, topics[i]))
                        return 1;
        return 0;
}

static const char *const CRM[] = {T1, T2, T3, NULL};

/* Every NDJSON line is a selected pub, exactly once, with the right
 * fields; every selected pub has its line. */
static int check_ndjson(const struct res *r, pred_fn *pred, const void *arg,
                        const char *what)
{
        char seen[MAX_PUBS] = {0};
        const char *line = r->out;
        int ok = 1, lines = 0;
        size_t i;

        while (line && *line) {
                const char *nl = strchr(line, '\n');
                json_error_t jerr;
                json_t *j = json_loadb(line,
                                       nl ? (size_t)(nl - line) : strlen(line),
                                       0, &jerr);
                struct pub *p = NULL;

                lines++;
                if (j)
                        p = find_pub(
                                json_string_value(json_object_get(j, "topic")),
                                (int32_t)json_integer_value(
                                        json_object_get(j, "partition")),
                                json_integer_value(
                                        json_object_get(j, "offset")));
                if (!j || !p || !p->valid || !pred(p, arg)) {
                        fprintf(stderr, "  %s: unexpected line: %.300s\n", what,
                                line);
                        ok = 0;
                } else if (seen[p - pubs]++) {
                        fprintf(stderr, "  %s: duplicate: %.300s\n", what,
                                line);
                        ok = 0;
                } else if (json_integer_value(
                                   json_object_get(j, "timestamp")) != p->ts ||
                           strcmp(json_string_value(json_object_get(j, "key")),
                                  p->key) ||
                           !json_equal(json_object_get(j, "event"),
                                       p->envelope)) {
                        fprintf(stderr, "  %s: wrong content: %.300s\n", what,
                                line);
                        ok = 0;
                }
                json_decref(j);
                line = nl ? nl + 1 : NULL;
        }
        for (i = pubs_from; i < npubs; i++)
                if (pubs[i].valid && pred(&pubs[i], arg) && !seen[i]) {
                        fprintf(stderr, "  %s: missing %s:%d:%lld\n", what,
                                pubs[i].topic, (int)pubs[i].partition,
                                (long long)pubs[i].offset);
                        ok = 0;
                }
        if (!ok)
                dump(r, what);
        return ok;
}

static int count_selected(pred_fn *pred, const void *arg)
{
        size_t i;
        int n = 0;

        for (i = pubs_from; i < npubs; i++)
                if (pubs[i].valid && pred(&pubs[i], arg))
                        n++;
        return n;
}

static int pred_topics(const struct pub *p, const void *arg)
{
        return in_topics(p, arg);
}

/* ---- cases: arguments --------------------------------------------------- */

static void test_binary_exists(void)
{
        EB_REQUIRE(access(bin, X_OK) == 0);
}

static void test_help(void)
{
        static const char *const opts[] = {"--brokers",
                                           "EVBRIDGE_BROKERS",
                                           "-X",
                                           "--timeout",
                                           "--topic",
                                           "--partitions",
                                           "--from",
                                           "--until",
                                           "--count",
                                           "--follow",
                                           "--type",
                                           "--source",
                                           "--subject",
                                           "--entity",
                                           "--id",
                                           "--event-since",
                                           "--event-until",
                                           "--to-topic",
                                           "--transactional-id",
                                           "--batch-size",
                                           "--resume",
                                           "--keep-timestamp",
                                           "--http",
                                           "--header",
                                           "--http-timeout",
                                           "--rate",
                                           "--retries",
                                           "--retry-backoff",
                                           "--retry-backoff-max",
                                           "--progress",
                                           "--no-progress",
                                           "--progress-every",
                                           "--quiet",
                                           "--time-lookup",
                                           "reset-offsets",
                                           "--group",
                                           "--to",
                                           "--execute",
                                           "Examples:",
                                           "Exit status",
                                           NULL};
        struct res r;
        size_t i;

        TOOL(&r, "--help");
        EB_CHECK_INT(r.code, 0);
        for (i = 0; opts[i]; i++)
                if (!strstr(r.out, opts[i])) {
                        fprintf(stderr, "  --help lacks %s\n", opts[i]);
                        EB_CHECK(0);
                }
        res_free(&r);
        TOOL(&r, "--version");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(strstr(r.out, "librdkafka") != NULL);
        res_free(&r);
}

static void test_usage_errors(void)
{
        static const char *const bad[][6] = {
                {T1, "--bogus", NULL},
                {NULL},
                {T1, "--from", "yesterday", NULL},
                {T1, "--until", "-5", NULL},
                {T1, "--follow", "--until", "end", NULL},
                {T1, "--to-topic", "x", "--http", "http://127.0.0.1:1/", NULL},
                {T1, "--resume", NULL},
                {T1, "--http", "ftp://x", NULL},
                {T1, "--rate", "fast", NULL},
                {T1, "-X", "novalue", NULL},
                {T1, "--count", "0", NULL},
                {T1, "--partitions", "1-", NULL},
                {"bad topic!", NULL},
                {"^(", NULL},
                {T1, "--event-since", "2h", "--event-until", "3h", NULL},
                {"reset-offsets", "--to", "earliest", T1, NULL},
                {"reset-offsets", "--group", "g", T1, NULL},
                {"reset-offsets", "--group", "g", "--to", "group:x", T1},
                {"reset-offsets", "--group", "g", "--from", "0", T1},
                {T1, "--group", "g", NULL},
        };
        struct res r;
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const char *args[8] = {NULL};
                size_t k;

                for (k = 0; k < 6 && bad[i][k]; k++)
                        args[k] = bad[i][k];
                toolv(&r, 1, args);
                if (r.code != 2 || !strstr(r.err, "evbridge-replay: ")) {
                        fprintf(stderr, "  case %zu (%s %s)\n", i,
                                args[0] ? args[0] : "", args[1] ? args[1] : "");
                        dump(&r, "usage error");
                        EB_CHECK(0);
                }
                res_free(&r);
        }
        /* No brokers anywhere. */
        unsetenv("EVBRIDGE_BROKERS");
        toolv(&r, 0, (const char *const[]){T1, NULL});
        EB_CHECK_INT(r.code, 2);
        EB_CHECK(strstr(r.err, "EVBRIDGE_BROKERS") != NULL);
        res_free(&r);
        /* A topic that does not exist is a runtime failure. */
        TOOL(&r, "no.such.topic");
        EB_CHECK_INT(r.code, 1);
        EB_CHECK(strstr(r.err, "no.such.topic does not exist") != NULL);
        res_free(&r);
        TOOL(&r, T1 ":7");
        EB_CHECK_INT(r.code, 1);
        EB_CHECK(strstr(r.err, "no partition 7") != NULL);
        res_free(&r);
        /* Re-publishing into a topic being read would feed on itself. */
        TOOL(&r, "--to-topic", T2, "^crm\\..*");
        EB_CHECK_INT(r.code, 1);
        EB_CHECK(strstr(r.err, "also a topic being read") != NULL);
        res_free(&r);
}

/* ---- cases: from / until ------------------------------------------------ */

static void test_regex_all_and_env(void)
{
        struct res r;
        char line[256];

        /* Brokers from the environment; a regex over the crm topics. */
        setenv("EVBRIDGE_BROKERS", bs, 1);
        toolv(&r, 0, (const char *const[]){"^crm\\..*", NULL});
        unsetenv("EVBRIDGE_BROKERS");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_topics, CRM, "regex"));
        EB_CHECK(strstr(r.out, TX) == NULL);
        /* Summary: totals and one row per topic (T2 holds the record that
         * is not an envelope). */
        snprintf(line, sizeof(line),
                 "summary: read %d, matched %d, written %d, skipped 1",
                 count_selected(pred_topics, CRM) + 1,
                 count_selected(pred_topics, CRM),
                 count_selected(pred_topics, CRM));
        EB_CHECK(strstr(r.err, line) != NULL);
        EB_CHECK(strstr(r.err, "skipping " T2 ":1:") != NULL);
        EB_CHECK(strstr(r.err, "  " T3) != NULL);
        if (!strstr(r.err, line))
                dump(&r, line);
        res_free(&r);
}

struct parts_sel {
        const char *topic;
        int mask; /* bit per partition */
};

static int pred_parts(const struct pub *p, const void *arg)
{
        const struct parts_sel *s;

        for (s = arg; s->topic; s++)
                if (!strcmp(s->topic, p->topic) &&
                    (s->mask >> p->partition) & 1)
                        return 1;
        return 0;
}

static void test_partitions(void)
{
        const struct parts_sel sel[] = {{T1, 0x5}, {T2, 0x2}, {NULL, 0}};
        const struct parts_sel sel2[] = {{T1, 0x2}, {T3, 0x2}, {NULL, 0}};
        struct res r;

        TOOL(&r, T1, "--partitions", "0,2", T2 ":1");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_parts, sel, "partitions"));
        res_free(&r);
        TOOL(&r, "-t", "^crm\\.(close|kota)\\..*:1");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_parts, sel2, "regex:partition"));
        res_free(&r);
}

static void test_from_end(void)
{
        struct res r;

        TOOL(&r, "--from", "end", "^crm\\..*");
        EB_CHECK_INT(r.code, 4);
        EB_CHECK_STR(r.out, "");
        EB_CHECK(strstr(r.err, "matched 0") != NULL);
        res_free(&r);
}

struct off_sel {
        const char *const *topics;
        int64_t min, max; /* offsets in [min, max) */
};

static int pred_off(const struct pub *p, const void *arg)
{
        const struct off_sel *s = arg;

        return in_topics(p, s->topics) && p->offset >= s->min &&
               p->offset < s->max;
}

static void test_from_until_offsets(void)
{
        const char *const t12[] = {T1, T2, NULL};
        const char *const t1[] = {T1, NULL};
        struct off_sel from2 = {t12, 2, INT64_MAX};
        struct off_sel until2 = {t1, 0, 2};
        struct off_sel range = {t1, 1, 3};
        struct res r;

        TOOL(&r, "--from", "2", T1, T2);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_off, &from2, "--from 2"));
        res_free(&r);
        TOOL(&r, "--until", "2", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_off, &until2, "--until 2"));
        res_free(&r);
        TOOL(&r, "-f", "1", "-u", "3", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_off, &range, "--from 1 --until 3"));
        res_free(&r);
        /* An offset past the end is clamped (with a notice). */
        TOOL(&r, "--from", "99999", T1);
        EB_CHECK_INT(r.code, 4);
        EB_CHECK(strstr(r.err, "outside") != NULL);
        res_free(&r);
}

static int64_t high(const char *topic, int32_t part)
{
        int64_t hi = 0;
        size_t i;

        for (i = pubs_from; i < npubs; i++)
                if (pubs[i].partition == part &&
                    !strcmp(pubs[i].topic, topic) && pubs[i].offset + 1 > hi)
                        hi = pubs[i].offset + 1;
        return hi;
}

static int pred_tail2(const struct pub *p, const void *arg)
{
        (void)arg;
        return in_topics(p, CRM) &&
               p->offset >= high(p->topic, p->partition) - 2;
}

static void test_from_tail(void)
{
        struct res r;

        TOOL(&r, "--from", "-2", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        /* Last 2 records of every partition (T2:1's last one is not an
         * envelope, so one event there). */
        EB_CHECK(check_ndjson(&r, pred_tail2, NULL, "--from -2"));
        res_free(&r);
}

struct ts_sel {
        const char *const *topics;
        int64_t min, max; /* message timestamps in [min, max) */
};

static int pred_ts(const struct pub *p, const void *arg)
{
        const struct ts_sel *s = arg;

        return in_topics(p, s->topics) && p->ts >= s->min && p->ts < s->max;
}

/* How many lines of @p text contain @p needle. */
static int count_lines_with(const char *text, const char *needle)
{
        const char *p = text;
        int n = 0;

        while (p && *p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                const char *hit = strstr(p, needle);

                if (hit && (size_t)(hit - p) < len)
                        n++;
                p = nl ? nl + 1 : NULL;
        }
        return n;
}

static void test_from_time(void)
{
        /* Between the 7th and 8th timestamps of every topic. */
        int64_t t = base_now - 5 * 20 * MIN_MS;
        char *when = fmt_time(t);
        struct ts_sel sel = {CRM, t, INT64_MAX};
        struct res r;

        TOOL(&r, "--from", when, "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_ts, &sel, "--from TIME (auto)"));
        /* The broker's time index answered: no fallback to a scan. */
        EB_CHECK(strstr(r.err, "answered -1") == NULL);
        EB_CHECK(strstr(r.err, "scanned message timestamps") == NULL);
        EB_CHECK(strstr(r.err, "scanning message timestamps") == NULL);
        if (strstr(r.err, "scanned message timestamps"))
                dump(&r, "--from TIME (auto)");
        res_free(&r);

        TOOL(&r, "--from", when, "--time-lookup", "scan", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_ts, &sel, "--from TIME (scan)"));
        EB_CHECK(strstr(r.err, "answered -1") == NULL);
        res_free(&r);

        /* Only the broker's index: the same selection. */
        TOOL(&r, "--from", when, "--time-lookup", "broker", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_ts, &sel, "--from TIME (broker)"));
        EB_CHECK(strstr(r.err, "scanned message timestamps") == NULL);
        res_free(&r);
        free(when);

        /* After every record the broker answers -1 ("nothing at or after
         * t"): trusted as it is, nothing is replayed and nothing scanned;
         * in auto mode a scan confirms it (the notice), still nothing. */
        when = fmt_time(base_now + MIN_MS);
        TOOL(&r, "--from", when, "--time-lookup", "broker", "^crm\\..*");
        EB_CHECK_INT(r.code, 4);
        EB_CHECK_STR(r.out, "");
        EB_CHECK(strstr(r.err, "scanned message timestamps") == NULL);
        res_free(&r);
        TOOL(&r, "--from", when, "^crm\\..*");
        EB_CHECK_INT(r.code, 4);
        EB_CHECK_STR(r.out, "");
        /* Every partition answered -1: one notice for all of them. */
        EB_CHECK(strstr(r.err, "answered -1") != NULL);
        EB_CHECK(strstr(r.err, "scanned message timestamps of") != NULL);
        EB_CHECK(strstr(r.err, "and other partitions") != NULL);
        EB_CHECK_INT(count_lines_with(r.err, "answered -1"), 1);
        res_free(&r);
        free(when);
}

static void test_from_duration_until_time(void)
{
        /* "2h" ago lies 10 minutes away from the nearest timestamps. */
        struct ts_sel from2h = {CRM, eb_now_ms() - 2 * 3600 * 1000, INT64_MAX};
        const char *const t12[] = {T1, T2, NULL};
        int64_t until = base_now - 8 * 20 * MIN_MS;
        char *when = fmt_time(until);
        struct ts_sel until_sel = {t12, INT64_MIN, until};
        struct ts_sel both = {CRM, eb_now_ms() - 3 * 3600 * 1000, 0};
        struct res r;

        TOOL(&r, "--from", "2h", "--time-lookup", "scan", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_ts, &from2h, "--from 2h"));
        res_free(&r);

        TOOL(&r, "--until", when, T1, T2);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_ts, &until_sel, "--until TIME"));
        res_free(&r);

        both.max = eb_now_ms() - 1 * 3600 * 1000;
        TOOL(&r, "--from", "3h", "--until", "1h", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_ts, &both, "--from 3h --until 1h"));
        res_free(&r);
        free(when);
}

static int commit_offsets(const char *group, const char *topic,
                          const int64_t *offs, int n)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *tpl;
        rd_kafka_resp_err_t err;
        char e[256];
        rd_kafka_t *rk;
        int i;

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        rd_kafka_conf_set(conf, "bootstrap.servers", bs, e, sizeof(e));
        rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
        if (!rk)
                return -1;
        tpl = rd_kafka_topic_partition_list_new(n);
        for (i = 0; i < n; i++)
                if (offs[i] >= 0)
                        rd_kafka_topic_partition_list_add(tpl, topic, i)
                                ->offset = offs[i];
        err = rd_kafka_commit(rk, tpl, 0);
        rd_kafka_topic_partition_list_destroy(tpl);
        rd_kafka_destroy(rk);
        return err ? -1 : 0;
}

/* Committed offsets of @p group for partitions 0..n-1 of @p topic. */
static int committed(const char *group, const char *topic, int64_t *offs, int n)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *tpl;
        rd_kafka_resp_err_t err;
        char e[256];
        rd_kafka_t *rk;
        int i;

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        rd_kafka_conf_set(conf, "bootstrap.servers", bs, e, sizeof(e));
        rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e));
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
        if (!rk)
                return -1;
        tpl = rd_kafka_topic_partition_list_new(n);
        for (i = 0; i < n; i++)
                rd_kafka_topic_partition_list_add(tpl, topic, i);
        err = rd_kafka_committed(rk, tpl, EB_T_TMOUT(10000));
        for (i = 0; i < n && !err; i++)
                offs[i] = tpl->elems[i].offset;
        rd_kafka_topic_partition_list_destroy(tpl);
        rd_kafka_destroy(rk);
        return err ? -1 : 0;
}

struct group_sel {
        int64_t min[3];
};

static int pred_group(const struct pub *p, const void *arg)
{
        const struct group_sel *s = arg;

        return !strcmp(p->topic, T1) && p->offset >= s->min[p->partition];
}

static int pred_t1p1from2(const struct pub *p, const void *arg)
{
        (void)arg;
        return !strcmp(p->topic, T1) && p->partition == 1 && p->offset >= 2;
}

static void test_from_group_and_partition(void)
{
        const int64_t offs[3] = {2, 3, -1};
        struct group_sel sel = {{2, 3, 0}};
        const struct parts_sel none[] = {{NULL, 0}};

        struct res r;

        EB_REQUIRE(commit_offsets("g-from", T1, offs, 3) == 0);
        TOOL(&r, "--from", "group:g-from", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_group, &sel, "--from group:G"));
        EB_CHECK(strstr(r.err, "no committed offset for " T1 ":2") != NULL);
        res_free(&r);

        /* TOPIC:PARTITION:POS overrides the general position. */
        TOOL(&r, "--from", "end", "--from", T1 ":1:2", T1 ":1");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_t1p1from2, NULL, "--from T:P:O"));
        res_free(&r);
        TOOL(&r, "--from", T1 ":1:2", T2);
        EB_CHECK_INT(r.code, 1); /* not among the selected partitions */
        EB_CHECK(check_ndjson(&r, pred_parts, none, "unselected"));
        res_free(&r);
}

static void test_count(void)
{
        struct res r;
        int lines = 0;
        const char *s;

        TOOL(&r, "--count", "5", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        for (s = r.out; (s = strchr(s, '\n')); s++)
                lines++;
        EB_CHECK_INT(lines, 5);
        EB_CHECK(strstr(r.err, "matched 5, written 5") != NULL);
        res_free(&r);
}

/* ---- cases: filters ----------------------------------------------------- */

struct filt {
        const char *type, *source, *entity, *subject;
        int64_t since, until;
};

static int pred_filter(const struct pub *p, const void *arg)
{
        const struct filt *f = arg;

        if (!in_topics(p, CRM))
                return 0;
        if (f->type && strncmp(p->type, f->type, strlen(f->type)))
                return 0;
        if (f->source && strcmp(p->source, f->source) &&
            strcmp(p->sourcename, f->source))
                return 0;
        if (f->entity && strcmp(p->entity, f->entity))
                return 0;
        if (f->subject && strcmp(p->subject, f->subject))
                return 0;
        return p->evtime >= f->since && p->evtime < f->until;
}

static void test_filters(void)
{
        struct filt kommo = {"kommo.", NULL, NULL, NULL, INT64_MIN, INT64_MAX};
        struct filt acme = {NULL, "acme-close", NULL,
                            NULL, INT64_MIN,    INT64_MAX};
        struct filt orgb = {NULL, "/kota/orga_B", NULL,
                            NULL, INT64_MIN,      INT64_MAX};
        struct filt ent = {NULL, NULL, "e1", NULL, INT64_MIN, INT64_MAX};
        struct filt subj = {NULL,          NULL,      NULL,
                            "employee/e2", INT64_MIN, INT64_MAX};
        struct filt times = {NULL,
                             NULL,
                             NULL,
                             NULL,
                             EV0 + 3LL * 3600 * 1000,
                             EV0 + 7LL * 3600 * 1000};
        struct filt combo = {"kota.", NULL, "e3", NULL, INT64_MIN, INT64_MAX};
        char *since = fmt_time(times.since), *until = fmt_time(times.until);
        struct res r;

        TOOL(&r, "--type", "kommo.*", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &kommo, "--type"));
        res_free(&r);
        TOOL(&r, "--source", "acme-close", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &acme, "--source NAME"));
        res_free(&r);
        TOOL(&r, "--source", "/kota/orga_B", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &orgb, "--source (binary)"));
        res_free(&r);
        TOOL(&r, "--entity", "e1", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &ent, "--entity"));
        res_free(&r);
        TOOL(&r, "--subject", "employee/e2", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &subj, "--subject (binary)"));
        res_free(&r);
        TOOL(&r, "--event-since", since, "--event-until", until, "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &times, "--event-since/until"));
        res_free(&r);
        TOOL(&r, "--type", "kota.*", "--entity", "e3", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_ndjson(&r, pred_filter, &combo, "two filters"));
        res_free(&r);
        TOOL(&r, "--type", "nothing.*", "^crm\\..*");
        EB_CHECK_INT(r.code, 4);
        EB_CHECK_STR(r.out, "");
        res_free(&r);
        free(since);
        free(until);
}

/* ---- the HTTP receiver -------------------------------------------------- */

struct got {
        char *body;
        size_t len;
        char *ctype;
        int status;
};

struct rcv {
        pthread_t th;
        struct event_base *base;
        struct evhttp *http;
        struct event *tick;
        int port;
        pthread_mutex_t mu;
        int stop;
        int fail_after; /* -1: never; else accept this many, then 500 */
        int fail_every; /* 0: never; else every Nth request gets 503 */
        int status_all; /* 0: off; else answer everything with it */
        int nreq;
        int accepted;
        struct got got[512];
        size_t ngot;
};

static void on_req(struct evhttp_request *req, void *arg)
{
        struct rcv *rc = arg;
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        const char *ct = evhttp_find_header(
                evhttp_request_get_input_headers(req), "Content-Type");
        size_t len = evbuffer_get_length(in);
        int status = 200;
        struct got *g;

        pthread_mutex_lock(&rc->mu);
        rc->nreq++;
        if (rc->status_all)
                status = rc->status_all;
        else if (rc->fail_every && rc->nreq % rc->fail_every == 0)
                status = 503;
        else if (rc->fail_after >= 0 && rc->accepted >= rc->fail_after)
                status = 500;
        if (status == 200)
                rc->accepted++;
        if (rc->ngot < sizeof(rc->got) / sizeof(rc->got[0])) {
                g = &rc->got[rc->ngot++];
                g->body = malloc(len + 1);
                evbuffer_copyout(in, g->body, len);
                g->body[len] = '\0';
                g->len = len;
                g->ctype = strdup(ct ? ct : "");
                g->status = status;
        }
        pthread_mutex_unlock(&rc->mu);
        evhttp_send_reply(req, status, status == 200 ? "OK" : "Nope", NULL);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        struct rcv *rc = arg;
        int stop;

        (void)fd;
        (void)what;
        pthread_mutex_lock(&rc->mu);
        stop = rc->stop;
        pthread_mutex_unlock(&rc->mu);
        if (stop)
                event_base_loopbreak(rc->base);
}

static void *rcv_main(void *arg)
{
        struct rcv *rc = arg;

        event_base_dispatch(rc->base);
        return NULL;
}

static void rcv_reset(struct rcv *rc, int fail_after, int fail_every,
                      int status_all)
{
        size_t i;

        pthread_mutex_lock(&rc->mu);
        for (i = 0; i < rc->ngot; i++) {
                free(rc->got[i].body);
                free(rc->got[i].ctype);
        }
        rc->ngot = 0;
        rc->nreq = 0;
        rc->accepted = 0;
        rc->fail_after = fail_after;
        rc->fail_every = fail_every;
        rc->status_all = status_all;
        pthread_mutex_unlock(&rc->mu);
}

static int rcv_start(struct rcv *rc)
{
        struct evhttp_bound_socket *sock;
        struct sockaddr_in sin;
        socklen_t slen = sizeof(sin);
        struct timeval tv = {0, 20000};

        memset(rc, 0, sizeof(*rc));
        pthread_mutex_init(&rc->mu, NULL);
        rc->fail_after = -1;
        rc->base = event_base_new();
        rc->http = rc->base ? evhttp_new(rc->base) : NULL;
        if (!rc->http)
                return -1;
        evhttp_set_gencb(rc->http, on_req, rc);
        evhttp_set_max_body_size(rc->http, 1 << 20);
        sock = evhttp_bind_socket_with_handle(rc->http, "127.0.0.1", 0);
        if (!sock || getsockname(evhttp_bound_socket_get_fd(sock),
                                 (struct sockaddr *)&sin, &slen))
                return -1;
        rc->port = ntohs(sin.sin_port);
        rc->tick = event_new(rc->base, -1, EV_PERSIST, on_tick, rc);
        event_add(rc->tick, &tv);
        return pthread_create(&rc->th, NULL, rcv_main, rc) ? -1 : 0;
}

static void rcv_stop(struct rcv *rc)
{
        pthread_mutex_lock(&rc->mu);
        rc->stop = 1;
        pthread_mutex_unlock(&rc->mu);
        pthread_join(rc->th, NULL);
        rcv_reset(rc, -1, 0, 0);
        event_free(rc->tick);
        evhttp_free(rc->http);
        event_base_free(rc->base);
        pthread_mutex_destroy(&rc->mu);
}

/* The pub an HTTP body is the envelope of (by event id). */
static struct pub *pub_of_body(const char *body)
{
        json_t *j = json_loads(body, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "id"));
        struct pub *p = NULL;
        size_t i;

        for (i = 0; id && i < npubs; i++)
                if (pubs[i].valid && !strcmp(pubs[i].id, id))
                        p = &pubs[i];
        if (p && !json_equal(j, p->envelope))
                p = NULL;
        json_decref(j);
        return p;
}

/* Bodies accepted (2xx) since the last reset, as a pub bitmap; checks
 * content type and body bytes. Returns 0 on a bad request. */
static int rcv_accepted(struct rcv *rc, char *seen, int *dups)
{
        size_t i;
        int ok = 1;

        pthread_mutex_lock(&rc->mu);
        for (i = 0; i < rc->ngot; i++) {
                struct got *g = &rc->got[i];
                struct pub *p;

                if (g->status != 200)
                        continue;
                p = pub_of_body(g->body);
                if (!p || strcmp(g->ctype, "application/cloudevents+json")) {
                        fprintf(stderr, "  bad POST (%s): %.200s\n", g->ctype,
                                g->body);
                        ok = 0;
                        continue;
                }
                /* Structured records are forwarded byte for byte. */
                if (!p->binary && (g->len != p->value_len ||
                                   memcmp(g->body, p->value, g->len))) {
                        fprintf(stderr, "  body differs from the record\n");
                        ok = 0;
                }
                if (seen[p - pubs]++)
                        (*dups)++;
        }
        pthread_mutex_unlock(&rc->mu);
        return ok;
}

static int same_set(const char *seen, const char *const *topics,
                    const char *what)
{
        size_t i;
        int ok = 1;

        for (i = pubs_from; i < npubs; i++) {
                int want = pubs[i].valid && in_topics(&pubs[i], topics);

                if (want != (seen[i] > 0)) {
                        fprintf(stderr, "  %s: %s %s:%d:%lld\n", what,
                                want ? "missing" : "unexpected", pubs[i].topic,
                                (int)pubs[i].partition,
                                (long long)pubs[i].offset);
                        ok = 0;
                }
        }
        return ok;
}

static void test_http_sink(void)
{
        struct rcv rc;
        char url[64], seen[MAX_PUBS] = {0};
        struct res r;
        int dups = 0;

        EB_REQUIRE(rcv_start(&rc) == 0);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/events", rc.port);
        TOOL(&r, "--http", url, "--rate", "500/s", "-H", "X-Token: s3cret",
             "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(rcv_accepted(&rc, seen, &dups));
        EB_CHECK_INT(dups, 0);
        EB_CHECK(same_set(seen, CRM, "http"));
        EB_CHECK(strstr(r.err, "s3cret") == NULL);
        if (r.code)
                dump(&r, "http");
        res_free(&r);

        /* Every 3rd request fails with 503: retried, still exactly once. */
        rcv_reset(&rc, -1, 3, 0);
        memset(seen, 0, sizeof(seen));
        TOOL(&r, "--http", url, "--retry-backoff", "5ms", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(rcv_accepted(&rc, seen, &dups));
        EB_CHECK_INT(dups, 0);
        EB_CHECK(same_set(seen, (const char *const[]){T1, NULL}, "http 503"));
        EB_CHECK(strstr(r.err, "HTTP 503") != NULL);
        res_free(&r);

        /* A 400 is not retried: exit 3 at once, with a resume line. */
        rcv_reset(&rc, -1, 0, 400);
        TOOL(&r, "--http", url, "--retry-backoff", "5ms", T1);
        EB_CHECK_INT(r.code, 3);
        EB_CHECK(strstr(r.err, "HTTP 400 (not retried)") != NULL);
        EB_CHECK(strstr(r.err, "resume with: --from " T1 ":0:0") != NULL);
        pthread_mutex_lock(&rc.mu);
        EB_CHECK_INT(rc.nreq, 1);
        pthread_mutex_unlock(&rc.mu);
        res_free(&r);

        /* Nobody listening: connection errors are retried, then exit 3. */
        rcv_stop(&rc);
        TOOL(&r, "--http", url, "--retries", "2", "--retry-backoff", "5ms",
             T1 ":0");
        EB_CHECK_INT(r.code, 3);
        EB_CHECK(strstr(r.err, "after 2 attempts") != NULL);
        res_free(&r);
}

/* Parse "resume with: --from T:P:O ..." into args (pointers into a copy). */
static int parse_resume(const char *err, char **copy, const char **args,
                        size_t max)
{
        const char *line = strstr(err, "resume with:");
        char *save = NULL, *tok;
        size_t n = 0;

        if (!line)
                return -1;
        *copy = strndup(line + 12, strcspn(line + 12, "\n"));
        for (tok = strtok_r(*copy, " ", &save); tok && n + 1 < max;
             tok = strtok_r(NULL, " ", &save))
                args[n++] = tok;
        args[n] = NULL;
        return (int)n;
}

static void test_http_failure_resume(void)
{
        const char *const t12[] = {T1, T2, NULL};
        char url[64], seen[MAX_PUBS] = {0}, *copy = NULL;
        const char *args[40];
        struct pub *failed = NULL;
        struct rcv rc;
        struct res r;
        int n, i, dups = 0, attempts = 0;
        size_t k;

        EB_REQUIRE(rcv_start(&rc) == 0);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", rc.port);
        rcv_reset(&rc, 5, 0, 0); /* 5 accepted, then 500 for good */
        TOOL(&r, "--http", url, "--retries", "3", "--retry-backoff", "5ms", T1,
             T2);
        EB_CHECK_INT(r.code, 3);
        EB_CHECK(rcv_accepted(&rc, seen, &dups));
        pthread_mutex_lock(&rc.mu);
        EB_CHECK_INT(rc.accepted, 5);
        for (k = 0; k < rc.ngot; k++)
                if (rc.got[k].status == 500) {
                        struct pub *p = pub_of_body(rc.got[k].body);

                        EB_CHECK(p && (!failed || failed == p));
                        failed = p;
                        attempts++;
                }
        pthread_mutex_unlock(&rc.mu);
        EB_CHECK_INT(attempts, 3); /* --retries attempts of one event */
        EB_CHECK(strstr(r.err, "HTTP 500 after 3 attempts") != NULL);
        n = parse_resume(r.err, &copy, args, 30);
        EB_CHECK_INT(n, 2 * 5); /* --from T:P:O for each of 5 partitions */
        if (n != 10 || !failed) {
                dump(&r, "http failure");
                goto out;
        }
        /* The resume position of every partition: everything before it was
         * delivered, nothing at or after it; the failed event's partition
         * resumes at that event. */
        for (i = 1; i < n; i += 2) {
                struct eb_replay_ppos pp;
                char e[256];

                EB_CHECK_STR(args[i - 1], "--from");
                EB_REQUIRE(eb_replay_ppos_parse(args[i], 0,
                                                EB_REPLAY_ALLOW_FROM, &pp, e,
                                                sizeof(e)) == 0);
                EB_CHECK_INT(pp.pos.kind, EB_REPLAY_POS_OFFSET);
                if (!strcmp(pp.topic, failed->topic) &&
                    pp.partition == failed->partition)
                        EB_CHECK_INT(pp.pos.value, failed->offset);
                for (k = 0; k < npubs; k++) {
                        struct pub *p = &pubs[k];

                        if (!p->valid || strcmp(p->topic, pp.topic) ||
                            p->partition != pp.partition)
                                continue;
                        EB_CHECK((p->offset < pp.pos.value) == (seen[k] > 0));
                }
        }
        res_free(&r);

        /* Re-run from the printed position: the rest, exactly. */
        rcv_reset(&rc, -1, 0, 0);
        args[n++] = "--http";
        args[n++] = url;
        args[n++] = T1;
        args[n++] = T2;
        args[n++] = "-b";
        args[n++] = bs;
        args[n] = NULL;
        toolv(&r, 0, args);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(rcv_accepted(&rc, seen, &dups));
        EB_CHECK_INT(dups, 0);
        EB_CHECK(same_set(seen, t12, "http resume"));
out:
        res_free(&r);
        free(copy);
        rcv_stop(&rc);
}

/* ---- cases: re-publish -------------------------------------------------- */

/* Check the target holds each selected source record exactly once, with
 * key, value and headers kept and evbridge-replay-from added. */
static int check_target(const char *target, pred_fn *pred, const void *arg,
                        const char *what)
{
        const char *const topics[] = {target, NULL};
        struct eb_kmock_records recs;
        char seen[MAX_PUBS] = {0};
        size_t i;
        int ok = 1;

        if (eb_kmock_consume_all(bs, topics, EB_T_TMOUT(20000), &recs)) {
                fprintf(stderr, "  %s: cannot read %s\n", what, target);
                eb_kmock_records_free(&recs);
                return 0;
        }
        for (i = 0; i < recs.cnt; i++) {
                const struct eb_kmock_record *t = &recs.v[i];
                const char *from = eb_kmock_header(t, EB_REPLAY_FROM_HEADER);
                char topic[256];
                int32_t part;
                int64_t off;
                struct pub *p = NULL;

                if (from &&
                    !eb_replay_from_header_parse(from, strlen(from), topic,
                                                 sizeof(topic), &part, &off))
                        p = find_pub(topic, part, off);
                if (!p || !pred(p, arg)) {
                        fprintf(stderr, "  %s: unexpected record (%s)\n", what,
                                from ? from : "no header");
                        ok = 0;
                        continue;
                }
                if (seen[p - pubs]++) {
                        fprintf(stderr, "  %s: duplicate of %s\n", what, from);
                        ok = 0;
                }
                if (!t->key || strcmp(t->key, p->key) ||
                    t->value_len != p->value_len ||
                    memcmp(t->value, p->value, p->value_len) ||
                    eb_kmock_header_count(t, EB_REPLAY_FROM_HEADER) != 1 ||
                    strcmp(t->headers[t->header_cnt - 1].name,
                           EB_REPLAY_FROM_HEADER)) {
                        fprintf(stderr, "  %s: content differs for %s\n", what,
                                from);
                        ok = 0;
                }
                if (p->binary ? !eb_kmock_header(t, "ce_type") ||
                                        strcmp(eb_kmock_header(t, "ce_type"),
                                               p->type) ||
                                        t->header_cnt != 13
                              : !eb_kmock_header(t, "content-type") ||
                                        t->header_cnt != 2) {
                        fprintf(stderr, "  %s: headers not kept for %s\n", what,
                                from);
                        ok = 0;
                }
        }
        for (i = pubs_from; i < npubs; i++)
                if (pubs[i].valid && pred(&pubs[i], arg) && !seen[i]) {
                        fprintf(stderr, "  %s: missing %s:%d:%lld\n", what,
                                pubs[i].topic, (int)pubs[i].partition,
                                (long long)pubs[i].offset);
                        ok = 0;
                }
        eb_kmock_records_free(&recs);
        return ok;
}

static int count_target(const char *target)
{
        const char *const topics[] = {target, NULL};
        struct eb_kmock_records recs;
        int n;

        if (eb_kmock_consume_all(bs, topics, EB_T_TMOUT(20000), &recs))
                n = -1;
        else
                n = (int)recs.cnt;
        eb_kmock_records_free(&recs);
        return n;
}

static int txn_counts(const char *err, long *commits, long *aborts)
{
        const char *s = strstr(err, "transactions committed");
        const char *line;

        if (!s)
                return -1;
        for (line = s; line > err && line[-1] != '\n'; line--)
                ;
        line = strchr(line, ':');
        line = line ? strchr(line + 1, ':') : NULL;
        if (!line || sscanf(line + 1, " %ld transactions committed, %ld",
                            commits, aborts) != 2)
                return -1;
        return 0;
}

static void test_republish(void)
{
        struct filt e1 = {NULL, NULL, "e1", NULL, INT64_MIN, INT64_MAX};
        long commits = -1, aborts = -1;
        int n = count_selected(pred_filter, &e1);
        struct res r;

        EB_REQUIRE(eb_tkafka_create_topic(bs, "repair.e1", 2, NULL) == 0);
        TOOL(&r, "--to-topic", "repair.e1", "--transactional-id", "tid-e1",
             "--batch-size", "4", "--entity", "e1", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(check_target("repair.e1", pred_filter, &e1, "republish"));
        EB_CHECK_INT(txn_counts(r.err, &commits, &aborts), 0);
        /* Batches of at most 4, each one transaction. */
        EB_CHECK(commits >= (n + 3) / 4);
        EB_CHECK_INT(aborts, 0);
        if (r.code)
                dump(&r, "republish");
        res_free(&r);
}

static void test_republish_resume(void)
{
        long commits = -1, aborts = -1;
        int total = count_selected(pred_topics, CRM);
        struct res r;

        EB_REQUIRE(total > 7);
        /* First run stops after 7 events (as a crashed run would have
         * committed only part of the range). */
        TOOL(&r, "--to-topic", "repair.all", "--batch-size", "3", "--count",
             "7", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK_INT(count_target("repair.all"), 7);
        res_free(&r);
        /* Without --resume it would repeat those 7; with it, the rest. */
        TOOL(&r, "--to-topic", "repair.all", "--batch-size", "3", "--resume",
             "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(strstr(r.err, "--resume:") != NULL);
        EB_CHECK(check_target("repair.all", pred_topics, CRM, "resume"));
        EB_CHECK_INT(txn_counts(r.err, &commits, &aborts), 0);
        EB_CHECK_INT(aborts, 0);
        if (r.code)
                dump(&r, "resume");
        res_free(&r);
        /* A third run finds everything there: nothing to write, and a
         * read_committed consumer still reads each record once. */
        TOOL(&r, "--to-topic", "repair.all", "--resume", "^crm\\..*");
        EB_CHECK_INT(r.code, 4);
        EB_CHECK_INT(count_target("repair.all"), total);
        EB_CHECK(check_target("repair.all", pred_topics, CRM, "resume again"));
        res_free(&r);
}

/*
 * On the mock, with its own copy of T1 (pubs[pubs_from..] while it runs):
 * the first AddPartitionsToTxn (API key 24) is refused, which a real broker
 * cannot be made to do once: the transaction must be aborted and the batch
 * sent again.
 */
static void test_republish_abort_retry(void)
{
        eb_kmock_t *mock = eb_kmock_start(1);
        const char *real_bs = bs;
        size_t real_from = pubs_from;
        struct res r;
        long commits = -1, aborts = -1;

        EB_REQUIRE(mock != NULL);
        bs = eb_kmock_bootstrap(mock);
        pubs_from = npubs;
        if (eb_kmock_create_topic(eb_kmock_cluster(mock), T1, 3) ||
            publish_topic(T1, 3, 1)) {
                bs = real_bs;
                while (npubs > pubs_from)
                        pub_free(&pubs[--npubs]);
                pubs_from = real_from;
                eb_kmock_stop(mock);
                EB_REQUIRE(!"cannot publish T1 to the mock");
        }
        rd_kafka_mock_push_request_errors(
                eb_kmock_cluster(mock), 24, 1,
                RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
        TOOL(&r, "--to-topic", "repair.abort", "--retry-backoff", "10ms",
             "--transactional-id", "tid-abort", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(strstr(r.err, "transaction aborted") != NULL);
        EB_CHECK_INT(txn_counts(r.err, &commits, &aborts), 0);
        EB_CHECK_INT(aborts, 1);
        EB_CHECK(commits >= 1);
        EB_CHECK(check_target("repair.abort", pred_topics,
                              (const char *const[]){T1, NULL}, "abort"));
        if (r.code)
                dump(&r, "abort retry");
        res_free(&r);
        bs = real_bs;
        while (npubs > pubs_from)
                pub_free(&pubs[--npubs]);
        pubs_from = real_from;
        eb_kmock_stop(mock);
}

/* ---- cases: reset-offsets ----------------------------------------------- */

static int64_t first_at(const char *topic, int32_t part, int64_t t)
{
        int64_t best = high(topic, part);
        size_t i;

        for (i = pubs_from; i < npubs; i++)
                if (pubs[i].partition == part &&
                    !strcmp(pubs[i].topic, topic) && pubs[i].ts >= t &&
                    pubs[i].offset < best)
                        best = pubs[i].offset;
        return best;
}

/* The partition's end offset as the broker reports it (for T1, written in
 * a transaction, one past its commit marker), or -1. */
static int64_t log_end(const char *topic, int32_t part)
{
        rd_kafka_t *rk = producer(NULL);
        int64_t lo = -1, hi = -1;

        if (!rk)
                return -1;
        if (rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi,
                                             EB_T_TMOUT(10000)))
                hi = -1;
        rd_kafka_destroy(rk);
        return hi;
}

static void test_reset_offsets(void)
{
        int64_t got[3] = {-9, -9, -9};
        int64_t t = base_now - 6 * 20 * MIN_MS;
        char *when = fmt_time(t);
        struct res r;
        int i;

        /* Dry run: a table, nothing committed. */
        TOOL(&r, "reset-offsets", "--group", "g-reset", "--to", "earliest", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(strstr(r.out, "TOPIC") && strstr(r.out, "CURRENT") &&
                 strstr(r.out, "NEW"));
        EB_CHECK(strstr(r.err, "dry run") != NULL);
        EB_CHECK_INT(committed("g-reset", T1, got, 3), 0);
        for (i = 0; i < 3; i++)
                EB_CHECK(got[i] < 0);
        res_free(&r);

        TOOL(&r, "reset-offsets", "-g", "g-reset", "--to", "latest",
             "--execute", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK_INT(committed("g-reset", T1, got, 3), 0);
        for (i = 0; i < 3; i++) {
                EB_CHECK_INT(got[i], log_end(T1, i));
                /* past the last record */
                EB_CHECK(got[i] >= high(T1, i));
        }
        res_free(&r);

        /* The table shows the current and the new offsets. */
        TOOL(&r, "reset-offsets", "--group", "g-reset", "--to", "1", T1 ":2");
        EB_CHECK_INT(r.code, 0);
        {
                char row[128];
                char cur[32];

                snprintf(cur, sizeof(cur), "%lld", (long long)log_end(T1, 2));
                snprintf(row, sizeof(row), "%d %12s %12d", 2, cur, 1);
                EB_CHECK(strstr(r.out, row) != NULL);
        }
        res_free(&r);

        TOOL(&r, "reset-offsets", "--group", "g-reset", "--to", when, "--to",
             T1 ":0:1", "--execute", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK_INT(committed("g-reset", T1, got, 3), 0);
        EB_CHECK_INT(got[0], 1); /* per-partition position wins */
        EB_CHECK_INT(got[1], first_at(T1, 1, t));
        EB_CHECK_INT(got[2], first_at(T1, 2, t));
        res_free(&r);

        TOOL(&r, "reset-offsets", "--group", "g-reset", "--to", "2h",
             "--execute", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK_INT(committed("g-reset", T1, got, 3), 0);
        for (i = 0; i < 3; i++)
                EB_CHECK_INT(got[i],
                             first_at(T1, i, eb_now_ms() - 2 * 3600 * 1000));
        res_free(&r);

        TOOL(&r, "reset-offsets", "--group", "g-reset", "--to", "-1",
             "--execute", T1);
        EB_CHECK_INT(r.code, 0);
        EB_CHECK_INT(committed("g-reset", T1, got, 3), 0);
        for (i = 0; i < 3; i++)
                EB_CHECK_INT(got[i], high(T1, i) - 1);
        res_free(&r);
        free(when);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        int *assigned = opaque;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                rd_kafka_assign(rk, parts);
                *assigned = 1;
        } else {
                rd_kafka_assign(rk, NULL);
        }
}

static void test_reset_refuses_active_group(void)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *sub;
        int64_t before[3], after[3];
        int assigned = 0, i;
        int64_t deadline;
        rd_kafka_t *rk;
        struct res r;
        char e[256];

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        rd_kafka_conf_set(conf, "bootstrap.servers", bs, e, sizeof(e));
        rd_kafka_conf_set(conf, "group.id", "g-active", e, sizeof(e));
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_opaque(conf, &assigned);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
        EB_REQUIRE(rk != NULL);
        rd_kafka_poll_set_consumer(rk);
        sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, T1, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(rk, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        deadline = eb_mono_ms() + EB_T_TMOUT(20000);
        while (!assigned && eb_mono_ms() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

                if (m)
                        rd_kafka_message_destroy(m);
        }
        EB_CHECK(assigned);
        EB_CHECK_INT(committed("g-active", T1, before, 3), 0);

        TOOL(&r, "reset-offsets", "--group", "g-active", "--to", "earliest",
             "--execute", T1);
        EB_CHECK_INT(r.code, 5);
        EB_CHECK(strstr(r.err, "active members") != NULL);
        EB_CHECK_INT(committed("g-active", T1, after, 3), 0);
        for (i = 0; i < 3; i++)
                EB_CHECK_INT(after[i], before[i]);
        if (r.code != 5)
                dump(&r, "active group");
        res_free(&r);
        (void)rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
}

/* ---- cases: follow, progress -------------------------------------------- */

static int pred_new(const struct pub *p, const void *arg)
{
        const size_t *first = arg;

        return (size_t)(p - pubs) >= *first;
}

static void test_follow(void)
{
        char from[3][64];
        size_t first = npubs;
        rd_kafka_t *rk;
        struct res r;
        pid_t pid;
        int i, code;
        int64_t deadline;

        /* Explicit start offsets (the current ends), so nothing produced
         * after this point can be missed however slowly the tool starts. */
        for (i = 0; i < 3; i++)
                snprintf(from[i], sizeof(from[i]), T1 ":%d:%lld", i,
                         (long long)high(T1, i));
        pid = spawn((const char *const[]){"--follow", "--from", from[0],
                                          "--from", from[1], "--from", from[2],
                                          T1, NULL},
                    1);
        EB_REQUIRE(pid > 0);
        rk = producer(NULL);
        EB_REQUIRE(rk != NULL);
        for (i = 0; i < 3; i++) {
                struct pub *p = new_pub(T1, 3, 100 + i, eb_now_ms());

                p->envelope = envelope_of(p, 100 + i);
                EB_CHECK_INT(produce_pub(rk, p, 100 + i), 0);
        }
        EB_CHECK_INT(rd_kafka_flush(rk, EB_T_TMOUT(10000)), 0);
        rd_kafka_destroy(rk);
        deadline = eb_mono_ms() + EB_T_TMOUT(20000);
        for (;;) {
                char *out = slurp(out_path);
                int lines = 0;
                const char *s;

                for (s = out; (s = strchr(s, '\n')); s++)
                        lines++;
                free(out);
                if (lines >= 3 || eb_mono_ms() > deadline)
                        break;
                usleep(50 * 1000);
        }
        kill(pid, SIGTERM);
        code = wait_code(pid, EB_T_TMOUT(20000));
        collect(&r, code);
        EB_CHECK(strstr(r.err, "Sanitizer") == NULL);
        EB_CHECK_INT(r.code, 0); /* SIGTERM is how --follow ends */
        EB_CHECK(check_ndjson(&r, pred_new, &first, "--follow"));
        EB_CHECK(strstr(r.err, "resume with:") != NULL);
        EB_CHECK(strstr(r.err, "summary: read 3, matched 3") != NULL);
        res_free(&r);
}

static void test_progress(void)
{
        struct res r;

        int lines = 0;
        const char *s;

        TOOL(&r, "--progress", "--progress-every", "5", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        /* At least one line per 5 records read (plus any per second). */
        for (s = r.err; (s = strstr(s, "progress: read ")); s++)
                lines++;
        EB_CHECK(lines >= (count_selected(pred_topics, CRM) + 1) / 5);
        EB_CHECK(strstr(r.err, "remaining <= ") != NULL);
        if (lines < (count_selected(pred_topics, CRM) + 1) / 5)
                dump(&r, "--progress");
        res_free(&r);
        TOOL(&r, "-q", "^crm\\..*");
        EB_CHECK_INT(r.code, 0);
        EB_CHECK(strstr(r.err, "summary") == NULL);
        EB_CHECK(strstr(r.err, "progress") == NULL);
        res_free(&r);
}

int main(void)
{
        const char *dir = getenv("EB_BUILD_DIR");
        size_t i;

        snprintf(bin, sizeof(bin), "%s/bin/evbridge-replay",
                 dir && *dir ? dir : "build/release");
        signal(SIGPIPE, SIG_IGN);
        unsetenv("EVBRIDGE_BROKERS");
        base_now = eb_now_ms();
        kafka = eb_tkafka_start(1, NULL);
        if (!kafka) {
                fprintf(stderr, "cannot start the Kafka broker\n");
                return 1;
        }
        fprintf(stderr, "  info: broker: %s at %s\n", eb_tkafka_describe(kafka),
                eb_tkafka_bootstrap(kafka));
        bs = eb_tkafka_bootstrap(kafka);
        /* the partition counts the data set needs */
        if (eb_tkafka_create_topic(bs, T1, 3, NULL) ||
            eb_tkafka_create_topic(bs, T2, 2, NULL) ||
            eb_tkafka_create_topic(bs, T3, 2, NULL) ||
            eb_tkafka_create_topic(bs, TX, 1, NULL) ||
            publish_topic(T1, 3, 1) || publish_topic(T2, 2, 0) ||
            publish_topic(T3, 2, 0) || publish_topic(TX, 1, 0)) {
                fprintf(stderr, "cannot publish the data set\n");
                eb_tkafka_stop(kafka);
                return 1;
        }
        for (i = 0; i < npubs; i++)
                if (pubs[i].offset < 0) {
                        fprintf(stderr, "no offset for a published record\n");
                        return 1;
                }

        EB_RUN(test_binary_exists);
        EB_RUN(test_help);
        EB_RUN(test_usage_errors);
        EB_RUN(test_regex_all_and_env);
        EB_RUN(test_partitions);
        EB_RUN(test_from_end);
        EB_RUN(test_from_until_offsets);
        EB_RUN(test_from_tail);
        EB_RUN(test_from_time);
        EB_RUN(test_from_duration_until_time);
        EB_RUN(test_from_group_and_partition);
        EB_RUN(test_count);
        EB_RUN(test_filters);
        EB_RUN(test_http_sink);
        EB_RUN(test_http_failure_resume);
        EB_RUN(test_republish);
        EB_RUN(test_republish_resume);
        EB_RUN(test_republish_abort_retry);
        EB_RUN(test_reset_offsets);
        EB_RUN(test_reset_refuses_active_group);
        EB_RUN(test_progress);
        EB_RUN(test_follow);

        while (npubs)
                pub_free(&pubs[--npubs]);
        eb_tkafka_stop(kafka);
        eb_log_shutdown();
        return eb_test_summary();
}
