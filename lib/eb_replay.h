/*
 * eb_replay: the parts of evbridge-replay that need no Kafka connection,
 * so they can be unit-tested: positions (--from, --until, reset-offsets
 * --to), topic and partition selections, envelope filters, reading an
 * envelope out of a record in structured or binary mode, HTTP retry
 * decisions, the evbridge-replay-from header, and the two search
 * algorithms that turn a time or "last N" into an offset.
 *
 * No application state; every function may be called from any thread.
 */
#ifndef EB_REPLAY_H
#define EB_REPLAY_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

/** Longest legal Kafka topic name. */
#define EB_REPLAY_TOPIC_MAX 249

/** Header written on every re-published record: "topic/partition/offset". */
#define EB_REPLAY_FROM_HEADER "evbridge-replay-from"

/* ---- positions ---------------------------------------------------------- */

typedef enum {
        EB_REPLAY_POS_BEGINNING = 0, /* "beginning", "earliest" */
        EB_REPLAY_POS_END = 1,       /* "end", "latest", "now" */
        EB_REPLAY_POS_OFFSET = 2,    /* "1234": value is the offset */
        EB_REPLAY_POS_TAIL = 3,      /* "-N": value is N (> 0) */
        EB_REPLAY_POS_TIME = 4,      /* RFC 3339 or "2h" ago: value in ms */
        EB_REPLAY_POS_GROUP = 5,     /* "group:NAME": committed offsets */
} eb_replay_pos_kind_t;

/** Bit masks of the kinds a caller accepts (eb_replay_pos_parse()). */
#define EB_REPLAY_POS_ALLOW(kind) (1u << (kind))
#define EB_REPLAY_ALLOW_FROM      0x3fu /* every kind */
#define EB_REPLAY_ALLOW_UNTIL                                                  \
        (EB_REPLAY_POS_ALLOW(EB_REPLAY_POS_END) |                              \
         EB_REPLAY_POS_ALLOW(EB_REPLAY_POS_OFFSET) |                           \
         EB_REPLAY_POS_ALLOW(EB_REPLAY_POS_TIME))
#define EB_REPLAY_ALLOW_RESET                                                  \
        (EB_REPLAY_ALLOW_FROM & ~EB_REPLAY_POS_ALLOW(EB_REPLAY_POS_GROUP))

/** A parsed position. */
struct eb_replay_pos {
        eb_replay_pos_kind_t kind;
        int64_t value;     /* offset, N, or ms since the epoch */
        const char *group; /* GROUP only: borrowed from the parsed string */
};

/**
 * @brief Parse one position: "beginning", "end", an offset ("1234"),
 * "-N" (the last N records of each partition), an RFC 3339 time, a
 * duration back from @p now_ms ("2h", "1h30m") or "group:NAME".
 * @param allow EB_REPLAY_ALLOW_* mask; other kinds are rejected.
 * @param pos receives the position; pos->group is borrowed from @p s.
 * @param errstr receives e.g. "bad position \"x\": expected beginning,
 * end, OFFSET, -N, an RFC 3339 time, a duration or group:NAME".
 * @returns 0 or -EINVAL.
 */
int eb_replay_pos_parse(const char *s, int64_t now_ms, unsigned allow,
                        struct eb_replay_pos *pos, char *errstr,
                        size_t errstr_size) EB_WUR;

/** A position for one partition ("TOPIC:PARTITION:POS") or for all. */
struct eb_replay_ppos {
        char topic[EB_REPLAY_TOPIC_MAX + 1]; /* "" for every partition */
        int32_t partition;                   /* -1 for every partition */
        struct eb_replay_pos pos;
};

/**
 * @brief Parse a position that may name its partition:
 * "TOPIC:PARTITION:POS" (what a resume line prints) or a plain position
 * (then topic is "" and partition -1). A plain position is tried first, so
 * RFC 3339 times (which contain ':') are never taken for a partition.
 * Kafka topic names cannot contain ':', which keeps this unambiguous.
 * @returns 0 or -EINVAL (message in @p errstr).
 */
int eb_replay_ppos_parse(const char *s, int64_t now_ms, unsigned allow,
                         struct eb_replay_ppos *pp, char *errstr,
                         size_t errstr_size) EB_WUR;

/* ---- topics and partitions ---------------------------------------------- */

/** @returns 1 if @p name is a legal Kafka topic name, else 0. */
int eb_replay_topic_name_valid(const char *name);

/**
 * @brief Parse a partition list: "0", "0,2", "0-3,7" (ascending, unique
 * after parsing; at most 100000 entries, each 0..999999).
 * @param partsp receives a new sorted array (caller frees).
 * @returns 0 or -EINVAL.
 */
int eb_replay_partitions_parse(const char *s, int32_t **partsp, size_t *np,
                               char *errstr, size_t errstr_size) EB_WUR;

/** One topic argument: a name or a regular expression, with partitions. */
struct eb_replay_topic_spec {
        char *pattern;  /* name, or the regex without any ":parts" */
        int is_regex;   /* pattern started with '^' */
        regex_t re;     /* compiled when is_regex */
        int32_t *parts; /* NULL: every partition */
        size_t nparts;
};

/**
 * @brief Parse "NAME", "NAME:0,2", "^REGEX" or "^REGEX:1-3". A pattern
 * beginning with '^' is a POSIX extended regular expression matched
 * against topic names (like librdkafka's subscription regex).
 * @param spec initialised here; release with eb_replay_topic_spec_fini()
 * after success (nothing to release on error).
 * @returns 0 or -EINVAL.
 */
int eb_replay_topic_spec_parse(const char *s, struct eb_replay_topic_spec *spec,
                               char *errstr, size_t errstr_size) EB_WUR;

/** @returns 1 when @p topic is selected by @p spec, else 0. */
int eb_replay_topic_spec_match(const struct eb_replay_topic_spec *spec,
                               const char *topic);

/** @brief Free what eb_replay_topic_spec_parse() allocated. */
void eb_replay_topic_spec_fini(struct eb_replay_topic_spec *spec);

/**
 * @brief Parse a rate: "N", "N/s", "N/m" or "N/h" (N may be fractional).
 * @returns 0 and events per second (> 0), or -EINVAL.
 */
int eb_replay_rate_parse(const char *s, double *per_sec) EB_WUR;

/* ---- records and envelopes ---------------------------------------------- */

/** One Kafka header, borrowed. @p value is NULL for a null value. */
struct eb_replay_hdr {
        const char *name;
        const void *value;
        size_t len;
};

/** What a record says about its event. Strings are owned (NULL: absent). */
struct eb_replay_record {
        int binary; /* 1: attributes came from ce_* headers */
        char *id;
        char *type;
        char *source;
        char *sourcename;
        char *subject;
        char *entityid; /* the extension, or what follows '/' in subject */
        int has_time;
        int64_t time_ms; /* the CloudEvents time attribute */
        /* The envelope in CloudEvents JSON structured form, one line.
         * Borrowed from the record value in structured mode when the value
         * is already a single line, else owned by the record. */
        const char *envelope;
        size_t envelope_len;
        char *envelope_owned_; /* internal */
};

/**
 * @brief Read a record as an evbridge envelope. Binary mode is recognised
 * by a "ce_specversion" header: the attributes come from the ce_* headers
 * and the structured envelope is rebuilt from them (core attributes,
 * datacontenttype from "content-type", the remaining extensions in header
 * order, then "data": the value if it is JSON, else "data_base64").
 * Otherwise the value must be a JSON object with a string "specversion".
 * @param value borrowed; must outlive @p rec when the envelope is borrowed.
 * @param rec receives the result; release with eb_replay_record_fini(),
 * also after an error.
 * @returns 0, -EINVAL when the record is not an envelope (reason in
 * @p errstr), or -ENOMEM.
 */
int eb_replay_record_parse(const void *value, size_t len,
                           const struct eb_replay_hdr *hdrs, size_t nhdrs,
                           struct eb_replay_record *rec, char *errstr,
                           size_t errstr_size) EB_WUR;

/** @brief Free what a record owns; it is empty afterwards. */
void eb_replay_record_fini(struct eb_replay_record *rec);

/* ---- filters ------------------------------------------------------------ */

typedef struct eb_replay_filter_s eb_replay_filter_t;

typedef enum {
        EB_REPLAY_F_TYPE = 0,    /* type attribute */
        EB_REPLAY_F_SOURCE = 1,  /* source attribute or sourcename */
        EB_REPLAY_F_SUBJECT = 2, /* subject attribute */
        EB_REPLAY_F_ENTITY = 3,  /* entityid (or the id part of subject) */
        EB_REPLAY_F_ID = 4,      /* event id */
        EB_REPLAY_F_COUNT_ = 5,
} eb_replay_field_t;

/** @returns new empty filter (matches everything); free with _free(). */
eb_replay_filter_t *eb_replay_filter_new(void);

/** @brief Free a filter; NULL is a no-op. */
void eb_replay_filter_free(eb_replay_filter_t *f);

/**
 * @brief Add a glob (fnmatch(3): '*', '?', '[...]') for @p field. Patterns
 * of one field are alternatives; different fields must all match.
 * @p pattern is copied.
 * @returns 0 or -EINVAL (empty or longer than 1024 bytes).
 */
int eb_replay_filter_add(eb_replay_filter_t *f, eb_replay_field_t field,
                         const char *pattern) EB_WUR;

/**
 * @brief Keep events whose time is in [@p since_ms, @p until_ms); INT64_MIN
 * and INT64_MAX leave a side open. An event without a time fails a time
 * range.
 */
void eb_replay_filter_set_time(eb_replay_filter_t *f, int64_t since_ms,
                               int64_t until_ms);

/** @returns 1 when the filter has no condition, else 0. */
int eb_replay_filter_empty(const eb_replay_filter_t *f);

/** @returns 1 when @p rec passes every condition of @p f, else 0. */
int eb_replay_filter_match(const eb_replay_filter_t *f,
                           const struct eb_replay_record *rec);

/* ---- HTTP sink decisions ------------------------------------------------ */

typedef enum {
        EB_REPLAY_NET_OK = 0,        /* a response arrived */
        EB_REPLAY_NET_TRANSIENT = 1, /* timeout, refused, reset, DNS */
        EB_REPLAY_NET_FATAL = 2,     /* bad URL, TLS setup, out of memory */
} eb_replay_net_t;

typedef enum {
        EB_REPLAY_HTTP_DONE = 0,  /* 2xx: delivered */
        EB_REPLAY_HTTP_RETRY = 1, /* 5xx, 408, 429, transient network */
        EB_REPLAY_HTTP_FAIL = 2,  /* anything else: retrying cannot help */
} eb_replay_http_t;

/** @returns what to do after one POST attempt. */
eb_replay_http_t eb_replay_http_verdict(eb_replay_net_t net, long status);

/**
 * @returns the wait before retry number @p attempt (1 = first retry):
 * @p base_ms * 2^(attempt-1), at most @p max_ms.
 */
int64_t eb_replay_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms);

/**
 * @returns a Retry-After header's delay in ms (delta-seconds form), or -1
 * when absent or not a number.
 */
int64_t eb_replay_retry_after_ms(const char *value);

/* ---- the evbridge-replay-from header ------------------------------------ */

/**
 * @brief Format "topic/partition/offset" into @p buf.
 * @returns 0 or -ENOSPC.
 */
int eb_replay_from_header_format(char *buf, size_t sz, const char *topic,
                                 int32_t partition, int64_t offset) EB_WUR;

/**
 * @brief Parse a header value written by eb_replay_from_header_format().
 * @param topic receives the topic (capacity @p topic_size).
 * @returns 0 or -EINVAL.
 */
int eb_replay_from_header_parse(const void *value, size_t len, char *topic,
                                size_t topic_size, int32_t *partition,
                                int64_t *offset) EB_WUR;

/* ---- offset searches ---------------------------------------------------- */

/**
 * Probe for eb_replay_time_search(): find the first data record at or
 * after offset @p off (transaction markers and gaps are skipped).
 * @returns 0 with its offset and timestamp, 1 when there is none before
 * the end of the range, or a negative errno.
 */
typedef int eb_replay_probe_fn(void *opaque, int64_t off, int64_t *rec_off,
                               int64_t *ts_ms);

/**
 * @brief Binary search for the first record in [@p lo, @p hi) whose
 * timestamp is >= @p t_ms, assuming timestamps grow with offsets (what a
 * broker's time index assumes too). About log2(hi - lo) probes.
 * @param offp receives that record's offset, or @p hi when there is none.
 * @returns 0 or the probe's negative errno.
 */
int eb_replay_time_search(int64_t lo, int64_t hi, int64_t t_ms,
                          eb_replay_probe_fn *probe, void *opaque,
                          int64_t *offp) EB_WUR;

/**
 * Counter for eb_replay_tail_start(): how many data records (not
 * transaction markers) the partition holds in [@p a, @p b).
 * @returns 0 or a negative errno.
 */
typedef int eb_replay_count_fn(void *opaque, int64_t a, int64_t b,
                               int64_t *count);

/**
 * @brief Where to start so that exactly the last @p n data records of
 * [@p lo, @p hi) are read, even when transaction markers take offsets:
 * windows going back from @p hi, each the size of what is still missing,
 * so every offset is counted at most once.
 * @param startp receives the start offset (@p lo when fewer than @p n).
 * @returns 0 or the counter's negative errno.
 */
int eb_replay_tail_start(int64_t lo, int64_t hi, int64_t n,
                         eb_replay_count_fn *count, void *opaque,
                         int64_t *startp) EB_WUR;

#endif /* EB_REPLAY_H */
