/*
 * evbridge-bench-restore: time the start-up restore of remembered ids.
 *
 *   evbridge-bench-restore --brokers ADDR [--ids N] [--runs R]
 *
 * Writes N seen ids (10,000 per transaction, 60 source checkpoints in
 * each) through eb_state's writer and a transactional producer, exactly
 * as the pipeline does, then runs eb_state_restore() R times, each into a
 * fresh dedupe table, and prints one JSON line per run. The state topics
 * live on a standalone cluster: evbridge-kafka-mock started with
 * --topic evbridge.checkpoints:1 --topic evbridge.seen:16 (a mock has no
 * controller, so they cannot be created over the wire). Every run is
 * checked (all N ids back, every checkpoint back); a mismatch exits with
 * status 1.
 *
 * librdkafka's mock keeps only about 5 MB per partition and drops older
 * records, and one writer keys all its seen records by its
 * transactional.id (one partition). So the ids are written by
 * N / 50,000 writer sessions, each with its own transactional.id, which
 * spread over the partitions of .seen: restore reads them all, as it
 * would after a scale-in.
 */
#include "eb_dedupe.h"
#include "eb_kafka.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PER_TXN     10000
#define PER_SESSION 50000
#define SOURCES     60
#define WINDOW_S    (72 * 3600)

static char prefix[] = "evbridge";
static char txn_id[] = "evbridge-bench-restore";

struct op {
        int fired;
        int err;
};

static void on_op(void *opaque, int err, const char *errstr)
{
        struct op *o = opaque;

        (void)errstr;
        o->fired++;
        o->err = err;
}

static int run_until(struct event_base *base, const int *counter,
                     int timeout_ms)
{
        int64_t deadline = eb_mono_ms() + timeout_ms;

        while (*counter < 1 && eb_mono_ms() < deadline)
                event_base_loop(base, EVLOOP_ONCE);
        return *counter >= 1 ? 0 : -ETIMEDOUT;
}

static uint64_t rnd(uint64_t *s)
{
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* One committed transaction: the seen records of @p n ids and one
 * checkpoint per source. */
static int write_txn(struct event_base *base, eb_kafka_t *k,
                     eb_state_writer_t *w, const struct eb_fp *fps,
                     const int64_t *times, size_t n, size_t t)
{
        struct eb_envelope *envs = NULL;
        struct op o = {0, 0};
        size_t cnt = 0, i;
        int rc;

        if (eb_kafka_txn_begin(k) != 0)
                return -EIO;
        eb_state_writer_begin(w);
        rc = eb_state_seen_records(w, fps, times, n, 0, &envs, &cnt);
        for (i = 0; i < cnt; i++) {
                if (!rc && eb_kafka_produce(k, &envs[i], NULL, NULL) != 0)
                        rc = -EIO;
                eb_envelope_fini(&envs[i]);
        }
        free(envs);
        for (i = 0; i < SOURCES && !rc; i++) {
                struct eb_envelope env;
                char name[32];
                json_t *cp = json_pack("{s:I}", "t", (json_int_t)t);

                snprintf(name, sizeof(name), "src-%02zu", i);
                rc = eb_state_checkpoint_record(w, name, cp, eb_now_ms(), &env);
                json_decref(cp);
                if (!rc) {
                        if (eb_kafka_produce(k, &env, NULL, NULL) != 0)
                                rc = -EIO;
                        eb_envelope_fini(&env);
                }
        }
        if (rc)
                return rc;
        if (eb_kafka_txn_commit(k, on_op, &o) != 0)
                return -EIO;
        if (run_until(base, &o.fired, 60000) != 0)
                return -ETIMEDOUT;
        if (o.err)
                eb_state_writer_aborted(w);
        else
                eb_state_writer_committed(w);
        return o.err;
}

/* One writer session: its own transactional.id (so its own .seen key),
 * @p n ids in transactions of PER_TXN. */
static int write_session(struct event_base *base, const struct eb_config *cfg0,
                         size_t s, const struct eb_fp *fps,
                         const int64_t *times, size_t n)
{
        struct eb_config cfg = *cfg0;
        struct op init = {0, 0};
        eb_state_writer_t *w = NULL;
        eb_kafka_t *k;
        char errstr[1024];
        char id[64];
        size_t i;
        int rc = -EIO;

        snprintf(id, sizeof(id), "%s-%02zu", cfg0->transactional_id, s);
        cfg.transactional_id = id;
        k = eb_kafka_new_ex(base, &cfg, EB_KAFKA_NEW_F_TRANSACTIONS, errstr,
                            sizeof(errstr));
        if (!k) {
                fprintf(stderr, "evbridge-bench-restore: kafka: %s\n", errstr);
                return -EIO;
        }
        if (eb_kafka_txn_init(k, on_op, &init) != 0 ||
            run_until(base, &init.fired, 30000) != 0 || init.err) {
                fprintf(stderr, "evbridge-bench-restore: txn init failed\n");
                goto out;
        }
        w = eb_state_writer_new(&cfg, 0);
        for (i = 0; i < n; i += PER_TXN) {
                rc = write_txn(base, k, w, fps + i, times + i,
                               n - i < PER_TXN ? n - i : PER_TXN, i);
                if (rc) {
                        fprintf(stderr,
                                "evbridge-bench-restore: session %zu: "
                                "transaction failed (%d)\n",
                                s, rc);
                        goto out;
                }
        }
        rc = eb_kafka_flush(k, 30000);
out:
        eb_state_writer_free(w);
        eb_kafka_free(k);
        return rc;
}

static int parse_count(const char *s, size_t lo, size_t hi, size_t *out)
{
        int64_t v, mult = 1;
        char buf[32];
        size_t len = strlen(s);

        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, len + 1);
        if (buf[len - 1] == 'k' || buf[len - 1] == 'K')
                mult = 1000;
        else if (buf[len - 1] == 'm' || buf[len - 1] == 'M')
                mult = 1000000;
        if (mult > 1)
                buf[len - 1] = '\0';
        if (eb_parse_i64(buf, &v) || v < 1 || (uint64_t)v > hi / (uint64_t)mult)
                return -EINVAL;
        v *= mult;
        if ((size_t)v < lo)
                return -EINVAL;
        *out = (size_t)v;
        return 0;
}

static const char usage[] =
        "usage: evbridge-bench-restore --brokers ADDR [--ids N] [--runs R]\n"
        "  --brokers ADDR  a standalone cluster with the state topics\n"
        "                  evbridge.checkpoints (1 partition) and\n"
        "                  evbridge.seen (16 partitions)\n"
        "  --ids N         ids to write and restore (default 1M; k/M "
        "suffixes)\n"
        "  --runs R        restores to time (default 5)\n";

int main(int argc, char **argv)
{
        size_t ids = 1000000, runs = 5, done = 0, r, i, s;
        struct event_base *base = NULL;
        struct eb_fp *fps = NULL;
        int64_t *times = NULL;
        struct eb_config cfg;
        char errstr[1024];
        uint64_t rng = 0x726573746f7265ULL;
        int64_t t0, now_s;
        int rc = 1, a;

        memset(&cfg, 0, sizeof(cfg));
        for (a = 1; a < argc; a++) {
                const char *v = a + 1 < argc ? argv[a + 1] : NULL;

                if (!strcmp(argv[a], "--brokers") && v) {
                        cfg.brokers = argv[++a];
                } else if (!strcmp(argv[a], "--ids") && v &&
                           !parse_count(v, PER_TXN, 100000000, &ids)) {
                        a++;
                } else if (!strcmp(argv[a], "--runs") && v &&
                           !parse_count(v, 1, 100, &runs)) {
                        a++;
                } else if (!strcmp(argv[a], "-h") ||
                           !strcmp(argv[a], "--help")) {
                        fputs(usage, stdout);
                        return 0;
                } else {
                        fputs(usage, stderr);
                        return 2;
                }
        }
        if (!cfg.brokers) {
                fputs(usage, stderr);
                return 2;
        }
        ids -= ids % PER_TXN;
        cfg.queue_max_messages = 200000;
        cfg.drain_timeout_ms = 10000;
        cfg.delivery = EB_DELIVERY_EXACTLY_ONCE;
        cfg.transactional_id = txn_id;
        cfg.state_prefix = prefix;
        cfg.dedupe_window_ms = (int64_t)WINDOW_S * 1000;
        cfg.dedupe_capacity = ids;

        base = event_base_new();
        if (!base)
                goto out;
        /* Ids seen over the last two hours, as a busy deployment has. */
        fps = eb_xcalloc(ids, sizeof(*fps));
        times = eb_xcalloc(ids, sizeof(*times));
        now_s = eb_now_ms() / 1000;
        for (i = 0; i < ids; i++) {
                fps[i].hi = rnd(&rng);
                fps[i].lo = rnd(&rng);
                times[i] = now_s - 7200 + (int64_t)(i * 7200 / ids);
        }
        t0 = eb_mono_ms();
        for (s = 0; s * PER_SESSION < ids; s++) {
                size_t first = s * PER_SESSION;
                size_t n =
                        ids - first < PER_SESSION ? ids - first : PER_SESSION;

                if (write_session(base, &cfg, s, fps + first, times + first,
                                  n) != 0)
                        goto out;
        }
        fprintf(stderr, "evbridge-bench-restore: wrote %zu ids in %lld ms\n",
                ids, (long long)(eb_mono_ms() - t0));

        for (r = 0; r < runs; r++) {
                struct eb_state_restore_opts opts;
                struct eb_state_restore_stats st;
                eb_dedupe_t *dd = eb_dedupe_new(ids, WINDOW_S);
                json_t *cps = json_object();
                int64_t wall = eb_mono_ms();
                size_t found = 0;
                int err;

                memset(&opts, 0, sizeof(opts));
                opts.timeout_ms = 120000;
                err = eb_state_restore(cfg.brokers, &cfg, &opts, dd, cps, &st,
                                       errstr, sizeof(errstr));
                wall = eb_mono_ms() - wall;
                for (i = 0; !err && i < ids; i++)
                        found += (size_t)eb_dedupe_contains(dd, &fps[i]);
                if (!err && (found != ids || st.ids != ids ||
                             json_object_size(cps) != SOURCES))
                        err = -EPROTO;
                if (err == -EPROTO)
                        snprintf(errstr, sizeof(errstr), "incomplete");
                if (err)
                        fprintf(stderr,
                                "evbridge-bench-restore: run %zu: %s (%d; "
                                "%zu of %zu ids found)\n",
                                r + 1, errstr, err, found, ids);
                else
                        printf("{\"run\":%zu,\"ids\":%zu,\"records\":%" PRIu64
                               ",\"restore_ms\":%lld,\"wall_ms\":%lld,"
                               "\"table_bytes\":%zu}\n",
                               r + 1, ids, st.records, (long long)st.ms,
                               (long long)wall, eb_dedupe_bytes(dd));
                fflush(stdout);
                json_decref(cps);
                eb_dedupe_free(dd);
                if (err)
                        goto out;
                done++;
        }
        rc = done == runs ? 0 : 1;
out:
        if (base)
                event_base_free(base);
        free(fps);
        free(times);
        return rc;
}
