/*
 * eb_state.c: the state records, pure (no Kafka): topic names, the varint
 * codec, the seen and checkpoint record formats (encode, decode, split)
 * and the writer's transaction stamps. Runs on whichever thread calls it.
 * The loader is eb_state_loader.c, the restore I/O eb_state_restore.c,
 * topic creation eb_kafka_admin.c.
 */
#include "eb_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "eb_json.h"
#include "eb_time.h"
#include "eb_util.h"

#define MOD "state"

/* Bytes before the ids in a seen record: magic, version, flags, session. */
#define SEEN_FIXED 12
/* Largest header: fixed part + three 10-byte varints. */
#define SEEN_HEADER_MAX (SEEN_FIXED + 30)
/* Largest encoded id: fingerprint + a 10-byte varint. */
#define SEEN_ID_MAX 26
/* Smallest encoded id: fingerprint + a 1-byte varint. */
#define SEEN_ID_MIN 17
/* Event times are Unix seconds in 0 .. 2^40. */
#define SEEN_TIME_MAX ((int64_t)1 << 40)

/* ---- names ------------------------------------------------------------ */

const char *eb_state_prefix(const struct eb_config *cfg)
{
        return cfg->state_prefix && *cfg->state_prefix ? cfg->state_prefix
                                                       : "evbridge";
}

char *eb_state_topic_checkpoints(const struct eb_config *cfg)
{
        return eb_xasprintf("%s%s", eb_state_prefix(cfg),
                            EB_STATE_CHECKPOINTS_SUFFIX);
}

char *eb_state_topic_seen(const struct eb_config *cfg)
{
        return eb_xasprintf("%s%s", eb_state_prefix(cfg), EB_STATE_SEEN_SUFFIX);
}

int eb_state_partitions(const struct eb_config *cfg)
{
        return cfg->scale_shards > 0 ? cfg->scale_shards + 1 : 1;
}

int64_t eb_state_seen_retention_ms(const struct eb_config *cfg)
{
        if (cfg->dedupe_window_ms <= 0)
                return -1;
        return cfg->dedupe_window_ms + EB_STATE_RETENTION_MARGIN_MS;
}

/* ---- varints ------------------------------------------------------------
 * LEB128 unsigned varints (7 bits per byte, low first, high bit = more)
 * and zigzag for signed values, as in protobuf. */

static size_t put_uvarint(unsigned char *p, uint64_t v)
{
        size_t n = 0;

        while (v >= 0x80) {
                p[n++] = (unsigned char)(v | 0x80);
                v >>= 7;
        }
        p[n++] = (unsigned char)v;
        return n;
}

static size_t uvarint_len(uint64_t v)
{
        size_t n = 1;

        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

/* @returns bytes read, or 0 if truncated or longer than 10 bytes. */
static size_t get_uvarint(const unsigned char *p, const unsigned char *end,
                          uint64_t *v)
{
        uint64_t r = 0;
        size_t i;

        for (i = 0; i < 10 && p + i < end; i++) {
                uint64_t b = p[i] & 0x7f;

                if (i == 9 && p[i] > 1)
                        return 0; /* more than 64 bits */
                r |= b << (7 * i);
                if (!(p[i] & 0x80)) {
                        *v = r;
                        return i + 1;
                }
        }
        return 0;
}

static uint64_t zigzag(int64_t v)
{
        return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static void put_be64(unsigned char *p, uint64_t v)
{
        int i;

        for (i = 7; i >= 0; i--) {
                p[i] = (unsigned char)v;
                v >>= 8;
        }
}

static uint64_t get_be64(const unsigned char *p)
{
        uint64_t v = 0;
        int i;

        for (i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* ---- seen records --------------------------------------------------------
 *
 *   0   2  magic 0xEB 0x5E
 *   2   1  version (1)
 *   3   1  flags (0; a reader refuses any bit it does not know)
 *   4   8  session, big-endian
 *  12      uvarint seq, uvarint prev, uvarint n
 *          n x { 16 bytes fingerprint (hi, lo; big-endian),
 *                zigzag varint time - previous time (the first: - 0) }
 *
 * Nothing may follow the last id. Times are Unix seconds. */

static size_t seen_header(unsigned char *p, const struct eb_state_txn *txn,
                          size_t n)
{
        size_t off = SEEN_FIXED;

        p[0] = EB_STATE_SEEN_MAGIC0;
        p[1] = EB_STATE_SEEN_MAGIC1;
        p[2] = EB_STATE_SEEN_VERSION;
        p[3] = 0;
        put_be64(p + 4, txn->session);
        off += put_uvarint(p + off, txn->seq);
        off += put_uvarint(p + off, txn->prev);
        off += put_uvarint(p + off, (uint64_t)n);
        return off;
}

static size_t seen_id(unsigned char *p, const struct eb_fp *fp, int64_t t,
                      int64_t prev_t)
{
        put_be64(p, fp->hi);
        put_be64(p + 8, fp->lo);
        return 16 + put_uvarint(p + 16, zigzag(t - prev_t));
}

static int times_ok(const int64_t *times, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (times[i] < 0 || times[i] > SEEN_TIME_MAX)
                        return 0;
        return 1;
}

int eb_state_seen_encode(const struct eb_state_txn *txn,
                         const struct eb_fp *fps, const int64_t *times,
                         size_t n, unsigned char **outp, size_t *lenp)
{
        unsigned char *buf;
        size_t off, i;
        int64_t prev_t = 0;

        *outp = NULL;
        *lenp = 0;
        if (!txn->session || (n && (!fps || !times)) || !times_ok(times, n))
                return -EINVAL;
        buf = eb_xmalloc(SEEN_HEADER_MAX + n * SEEN_ID_MAX);
        off = seen_header(buf, txn, n);
        for (i = 0; i < n; i++) {
                off += seen_id(buf + off, &fps[i], times[i], prev_t);
                prev_t = times[i];
        }
        *outp = buf;
        *lenp = off;
        return 0;
}

int eb_state_seen_decode(const void *buf, size_t len, struct eb_state_txn *txn,
                         struct eb_fp **fpsp, int64_t **timesp, size_t *np)
{
        const unsigned char *p = buf;
        const unsigned char *end = p + len;
        const unsigned char *ids;
        struct eb_fp *fps = NULL;
        int64_t *times = NULL;
        uint64_t seq, prev, n, dt;
        int64_t t = 0;
        size_t used, i;

        *fpsp = NULL;
        *timesp = NULL;
        *np = 0;
        if (!buf || len < SEEN_FIXED + 3 || p[0] != EB_STATE_SEEN_MAGIC0 ||
            p[1] != EB_STATE_SEEN_MAGIC1 || p[2] != EB_STATE_SEEN_VERSION ||
            p[3] != 0)
                return -EINVAL;
        memset(txn, 0, sizeof(*txn));
        txn->session = get_be64(p + 4);
        p += SEEN_FIXED;
        used = get_uvarint(p, end, &seq);
        if (!used)
                return -EINVAL;
        p += used;
        used = get_uvarint(p, end, &prev);
        if (!used)
                return -EINVAL;
        p += used;
        used = get_uvarint(p, end, &n);
        if (!used)
                return -EINVAL;
        p += used;
        if (!txn->session || !seq || prev >= seq ||
            n > (uint64_t)(end - p) / SEEN_ID_MIN)
                return -EINVAL;

        /* Walk once to validate, so garbage never half-fills a table. */
        ids = p;
        for (i = 0; i < n; i++) {
                if (end - p < SEEN_ID_MIN)
                        return -EINVAL;
                int64_t d;

                p += 16;
                used = get_uvarint(p, end, &dt);
                if (!used)
                        return -EINVAL;
                p += used;
                d = unzigzag(dt);
                /* 0 <= t <= 2^40 here, so this cannot overflow */
                if (d < -SEEN_TIME_MAX || d > SEEN_TIME_MAX)
                        return -EINVAL;
                t += d;
                if (t < 0 || t > SEEN_TIME_MAX)
                        return -EINVAL;
        }
        if (p != end)
                return -EINVAL;

        if (n) {
                fps = eb_xmalloc((size_t)n * sizeof(*fps));
                times = eb_xmalloc((size_t)n * sizeof(*times));
        }
        p = ids;
        t = 0;
        for (i = 0; i < n; i++) {
                fps[i].hi = get_be64(p);
                fps[i].lo = get_be64(p + 8);
                p += 16;
                p += get_uvarint(p, end, &dt);
                t += unzigzag(dt);
                times[i] = t;
        }
        txn->seq = seq;
        txn->prev = prev;
        *fpsp = fps;
        *timesp = times;
        *np = (size_t)n;
        return 0;
}

/* ---- the writer ------------------------------------------------------ */

struct eb_state_writer_s {
        char *topic_checkpoints;
        char *topic_seen;
        char *seen_key;
        uint64_t session;
        uint64_t last_seq;  /* last seq handed out */
        uint64_t committed; /* seq of the last committed transaction */
        int open;           /* last_seq is open */
};

static uint64_t random_session(void)
{
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
                /* No entropy source: time, pid and an address, mixed. */
                struct eb_fp fp;
                char seed[64];
                int len = snprintf(seed, sizeof(seed), "%lld/%ld/%p",
                                   (long long)eb_now_ms(), (long)getpid(),
                                   (void *)&v);

                eb_fp_murmur3(seed, (size_t)len, 0x5e55u, &fp);
                v = fp.hi ^ ((uint64_t)eb_mono_ms() << 20);
        }
        return v ? v : 1;
}

eb_state_writer_t *eb_state_writer_new(const struct eb_config *cfg,
                                       uint64_t session)
{
        eb_state_writer_t *w = eb_xcalloc(1, sizeof(*w));

        w->topic_checkpoints = eb_state_topic_checkpoints(cfg);
        w->topic_seen = eb_state_topic_seen(cfg);
        w->seen_key = eb_xstrdup(cfg->transactional_id && *cfg->transactional_id
                                         ? cfg->transactional_id
                                         : eb_state_prefix(cfg));
        w->session = session ? session : random_session();
        return w;
}

void eb_state_writer_free(eb_state_writer_t *w)
{
        if (!w)
                return;
        free(w->topic_checkpoints);
        free(w->topic_seen);
        free(w->seen_key);
        free(w);
}

uint64_t eb_state_writer_begin(eb_state_writer_t *w)
{
        w->open = 1;
        return ++w->last_seq;
}

void eb_state_writer_committed(eb_state_writer_t *w)
{
        if (w->open)
                w->committed = w->last_seq;
        w->open = 0;
}

void eb_state_writer_aborted(eb_state_writer_t *w)
{
        w->open = 0;
}

void eb_state_writer_txn(const eb_state_writer_t *w, struct eb_state_txn *txn)
{
        txn->session = w->session;
        txn->seq = w->open ? w->last_seq : 0;
        txn->prev = w->committed;
}

/* ---- checkpoint records ------------------------------------------------ */

int eb_state_checkpoint_record(const eb_state_writer_t *w, const char *source,
                               const json_t *cp, int64_t ts_ms,
                               struct eb_envelope *env)
{
        struct eb_state_txn txn;
        char session[17];
        json_t *root;
        char *value;

        memset(env, 0, sizeof(*env));
        eb_state_writer_txn(w, &txn);
        if (!txn.seq || !source || !*source || !cp)
                return -EINVAL;
        snprintf(session, sizeof(session), "%016" PRIx64, txn.session);
        root = json_pack("{s:i, s:s, s:O, s:I, s:s, s:I, s:I}", "v", 1,
                         "source", source, "checkpoint", (json_t *)cp, "ts",
                         (json_int_t)ts_ms, "w", session, "seq",
                         (json_int_t)txn.seq, "prev", (json_int_t)txn.prev);
        if (!root)
                return -EINVAL;
        value = eb_json_dumps(root);
        json_decref(root);
        if (!value)
                return -EINVAL;
        env->topic = eb_xstrdup(w->topic_checkpoints);
        env->key = eb_xstrdup(source);
        env->key_len = strlen(source);
        env->value = value;
        env->value_len = strlen(value);
        return 0;
}

static int get_u64(const json_t *v, uint64_t *out)
{
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -1;
        *out = (uint64_t)json_integer_value(v);
        return 0;
}

int eb_state_checkpoint_decode(const void *buf, size_t len, char **sourcep,
                               json_t **cpp, int64_t *ts_msp,
                               struct eb_state_txn *txn)
{
        json_t *root = NULL;
        json_t *src, *cp, *ts, *w;
        json_error_t jerr;
        int rc = -EINVAL;

        *sourcep = NULL;
        *cpp = NULL;
        *ts_msp = 0;
        memset(txn, 0, sizeof(*txn));
        if (!buf || !len || len > EB_STATE_MAX_CHECKPOINT)
                return -EINVAL;
        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(root))
                goto out;
        src = json_object_get(root, "source");
        cp = json_object_get(root, "checkpoint");
        ts = json_object_get(root, "ts");
        w = json_object_get(root, "w");
        if (!json_is_string(src) || !*json_string_value(src) || !cp)
                goto out;
        if (json_object_get(root, "v") &&
            (!json_is_integer(json_object_get(root, "v")) ||
             json_integer_value(json_object_get(root, "v")) != 1))
                goto out; /* a format this reader does not know */
        if (ts && !json_is_integer(ts))
                goto out;
        if (w) {
                const char *hex = json_string_value(w);
                char *end = NULL;

                if (!hex || strlen(hex) != 16)
                        goto out;
                errno = 0;
                txn->session = strtoull(hex, &end, 16);
                if (errno || !end || *end || !txn->session ||
                    get_u64(json_object_get(root, "seq"), &txn->seq) ||
                    get_u64(json_object_get(root, "prev"), &txn->prev) ||
                    !txn->seq || txn->prev >= txn->seq) {
                        memset(txn, 0, sizeof(*txn));
                        goto out;
                }
        }
        *sourcep = eb_xstrdup(json_string_value(src));
        *cpp = json_incref(cp);
        *ts_msp = ts ? (int64_t)json_integer_value(ts) : 0;
        rc = 0;
out:
        json_decref(root);
        return rc;
}

/* ---- splitting -------------------------------------------------------- */

static void seen_env(const eb_state_writer_t *w, unsigned char *value,
                     size_t len, struct eb_envelope *env)
{
        memset(env, 0, sizeof(*env));
        env->topic = eb_xstrdup(w->topic_seen);
        env->key = eb_xstrdup(w->seen_key);
        env->key_len = strlen(w->seen_key);
        env->value = (char *)value;
        env->value_len = len;
}

int eb_state_seen_records(const eb_state_writer_t *w, const struct eb_fp *fps,
                          const int64_t *times, size_t n, size_t max_bytes,
                          struct eb_envelope **envsp, size_t *cntp)
{
        struct eb_envelope *envs = NULL;
        struct eb_state_txn txn;
        size_t cnt = 0, cap = 0, i = 0;

        *envsp = NULL;
        *cntp = 0;
        if (!max_bytes)
                max_bytes = EB_STATE_MAX_RECORD;
        eb_state_writer_txn(w, &txn);
        if (!txn.seq || max_bytes < EB_STATE_MIN_RECORD ||
            (n && (!fps || !times)) || !times_ok(times, n))
                return -EINVAL;
        do {
                /*
                 * Take as many ids as fit: the header's count varint is
                 * sized for the ids still to go (an upper bound).
                 */
                size_t hdr = SEEN_FIXED + uvarint_len(txn.seq) +
                             uvarint_len(txn.prev) + uvarint_len(n - i);
                size_t size = hdr, j = i, off;
                int64_t prev_t = 0;
                unsigned char *buf;

                while (j < n) {
                        size_t one =
                                16 + uvarint_len(zigzag(times[j] - prev_t));

                        if (size + one > max_bytes)
                                break;
                        size += one;
                        prev_t = times[j];
                        j++;
                }
                if (j == i && i < n) {
                        /* cannot happen with max_bytes >= MIN_RECORD */
                        for (j = 0; j < cnt; j++)
                                eb_envelope_fini(&envs[j]);
                        free(envs);
                        return -EINVAL;
                }
                buf = eb_xmalloc(size);
                off = seen_header(buf, &txn, j - i);
                prev_t = 0;
                for (; i < j; i++) {
                        off += seen_id(buf + off, &fps[i], times[i], prev_t);
                        prev_t = times[i];
                }
                if (cnt == cap) {
                        cap = cap ? cap * 2 : 4;
                        envs = eb_xrealloc(envs, cap * sizeof(*envs));
                }
                seen_env(w, buf, off, &envs[cnt++]);
        } while (i < n);
        *envsp = envs;
        *cntp = cnt;
        return 0;
}
