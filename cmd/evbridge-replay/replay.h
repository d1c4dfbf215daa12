/*
 * evbridge-replay internals, shared by the files of this program only.
 *
 * main.c    arguments, --help, dispatch
 * kafka.c   clients, topic selection, watermarks, resolving positions
 *           (offsets_for_times with a timestamp-scan fallback, -N,
 *           committed group offsets)
 * run.c     the replay loop, progress, summary, resume line
 * sink_*.c  NDJSON on stdout, HTTP (CloudEvents structured mode), and
 *           transactional re-publish to a topic
 * reset.c   the reset-offsets command
 *
 * Everything runs on the main thread and blocks; librdkafka's own threads
 * are the only others.
 */
#ifndef EB_REPLAY_CMD_H
#define EB_REPLAY_CMD_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_replay.h"

/* Exit codes (documented in docs/replay.md and --help). */
#define RP_EXIT_OK           0
#define RP_EXIT_RUNTIME      1
#define RP_EXIT_USAGE        2
#define RP_EXIT_SINK         3
#define RP_EXIT_NOTHING      4
#define RP_EXIT_GROUP_ACTIVE 5
#define RP_EXIT_INTERRUPTED  130

enum rp_sink_kind { RP_SINK_STDOUT = 0, RP_SINK_TOPIC, RP_SINK_HTTP };
enum rp_lookup { RP_LOOKUP_AUTO = 0, RP_LOOKUP_BROKER, RP_LOOKUP_SCAN };

/** Parsed command line. Strings are borrowed from argv. */
struct rp_opts {
        const char *brokers;
        const char **props; /* "key=value" for every client */
        size_t nprops;
        struct eb_replay_topic_spec *specs;
        size_t nspecs;
        int32_t *parts; /* --partitions, NULL: all */
        size_t nparts;
        struct eb_replay_ppos *froms; /* --from / --to, later ones win */
        size_t nfroms;
        struct eb_replay_pos until;
        int has_until;
        int64_t count; /* 0: no limit */
        int follow;
        eb_replay_filter_t *filter;
        enum rp_sink_kind sink;
        const char *to_topic;
        const char *txn_id;
        int64_t batch_size;
        int resume;
        int keep_timestamp;
        const char *url;
        const char **http_headers;
        size_t nhttp_headers;
        int64_t http_timeout_ms;
        int retries;
        int64_t backoff_ms;
        int64_t backoff_max_ms;
        double rate;  /* events/s, 0: unlimited */
        int progress; /* -1: when stderr is a tty */
        int64_t progress_every;
        int quiet;
        enum rp_lookup lookup;
        int64_t timeout_ms;
        const char *group; /* reset-offsets */
        int execute;
        int64_t now_ms;
};

struct rp_topic {
        char *name;
        uint64_t read, matched, written, skipped;
};

struct rp_part {
        const char *topic; /* borrowed from rp_set.topics */
        int32_t partition;
        size_t tix;          /* index in rp_set.topics */
        int64_t lo, hi;      /* watermarks when the run started */
        int64_t start, stop; /* replay [start, stop) */
        int64_t next;        /* next offset to process */
        int64_t durable;     /* everything before it reached the sink */
        int64_t committed;   /* reset-offsets: the group's offset, or -1 */
        int done;
};

struct rp_set {
        struct rp_topic *topics;
        size_t ntopics;
        struct rp_part *parts; /* sorted by topic, partition */
        size_t nparts;
};

extern volatile sig_atomic_t rp_stop_signal;

/* ---- kafka.c ------------------------------------------------------------ */

/**
 * @brief A client with our defaults, then @p kv pairs (NULL-terminated
 * key, value list), then every -X property.
 * @returns new handle or NULL (reason in @p errstr).
 */
rd_kafka_t *rp_kafka_new(const struct rp_opts *o, rd_kafka_type_t type,
                         const char *const *kv, char *errstr, size_t sz);

/** @brief A throw-away group.id for assign-only consumers. */
void rp_private_group(char *buf, size_t sz, const char *what);

/** @brief Expand the topic arguments into partitions (metadata). */
int rp_select(rd_kafka_t *rk, const struct rp_opts *o, struct rp_set *set,
              char *errstr, size_t sz);

/** @brief Fill lo/hi of every partition. */
int rp_watermarks(rd_kafka_t *rk, const struct rp_opts *o, struct rp_set *set,
                  char *errstr, size_t sz);

/**
 * @brief Resolve a position per partition into @p out (one per part):
 * the last of @p pps naming that partition, else the last general one,
 * else @p dflt. Results are clamped to [lo, hi].
 * @param rk the consumer (offsets_for_times).
 */
int rp_resolve(rd_kafka_t *rk, const struct rp_opts *o, struct rp_set *set,
               const struct eb_replay_ppos *pps, size_t npps,
               const struct eb_replay_pos *dflt, int64_t *out, char *errstr,
               size_t sz);

/** @brief Free everything in @p set. */
void rp_set_fini(struct rp_set *set);

/** @returns the partition, or NULL (binary search). */
struct rp_part *rp_find(struct rp_set *set, const char *topic,
                        int32_t partition);

/** @returns ms on the monotonic clock. */
int64_t rp_mono_ms(void);

/** @brief Sleep @p ms in slices, returning early on a stop signal. */
void rp_sleep_ms(int64_t ms);

/* ---- sinks -------------------------------------------------------------- */

typedef struct rp_sink_s rp_sink_t;

/** A record handed to a sink (everything borrowed for the call). */
struct rp_rec {
        const rd_kafka_message_t *msg;
        const struct eb_replay_record *evt;
        const char *topic;
};

struct rp_sink_ops {
        const char *name;
        /* 1: a successful write() is already durable (HTTP). */
        int sync;
        /* Called once after positions are resolved; may move part->start
         * forward (--resume). */
        int (*open)(rp_sink_t *s, struct rp_set *set, char *errstr, size_t sz);
        /* 0, or a negative errno with the reason in errstr. */
        int (*write)(rp_sink_t *s, const struct rp_rec *r, char *errstr,
                     size_t sz);
        /* Make everything written durable (commit, fflush). Returns the
         * number of events made durable, or a negative errno. */
        int64_t (*flush)(rp_sink_t *s, char *errstr, size_t sz);
        /* Pending (written, not yet durable) events. */
        int64_t (*pending)(rp_sink_t *s);
        /* Extra summary line, or NULL. */
        void (*summary)(rp_sink_t *s);
        void (*free)(rp_sink_t *s);
};

struct rp_sink_s {
        const struct rp_sink_ops *ops;
        const struct rp_opts *o;
};

rp_sink_t *rp_sink_stdout_new(const struct rp_opts *o);
rp_sink_t *rp_sink_http_new(const struct rp_opts *o, char *errstr, size_t sz);
rp_sink_t *rp_sink_topic_new(const struct rp_opts *o);

/* ---- run.c / reset.c ---------------------------------------------------- */

/** @returns an RP_EXIT_* code. */
int rp_run(const struct rp_opts *o);

/** @returns an RP_EXIT_* code. */
int rp_reset_offsets(const struct rp_opts *o);

#endif /* EB_REPLAY_CMD_H */
