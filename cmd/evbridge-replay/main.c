/*
 * evbridge-replay: replay a range of evbridge's topics to stdout (NDJSON),
 * an HTTP endpoint or another topic, and move consumer groups' offsets.
 * See docs/replay.md; `evbridge-replay --help` lists every option.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_log.h"
#include "eb_time.h"
#include "eb_util.h"
#include "replay.h"

static const char *const usage_text[] = {
        "usage: evbridge-replay [OPTIONS] TOPIC...\n"
        "       evbridge-replay reset-offsets --group G --to POS [--execute]"
        " TOPIC...\n"
        "\n",
        "Replays evbridge's CloudEvents topics (read_committed) to stdout as\n"
        "NDJSON, to an HTTP endpoint, or into another topic exactly once.\n"
        "\n",
        "TOPIC is a name (crm.close.lead.updated), a name with partitions\n"
        "(crm.close.lead.updated:0,2), or a POSIX extended regex starting\n"
        "with ^ ('^crm\\..*', also with :PARTITIONS). Quote regexes.\n"
        "\n",
        "Connection:\n"
        "  -b, --brokers LIST        bootstrap servers (default: "
        "$EVBRIDGE_BROKERS)\n"
        "  -X, --property KEY=VALUE  librdkafka property for every client,\n"
        "                            e.g. -X security.protocol=SASL_SSL\n"
        "      --timeout DURATION    bound on metadata, lookups, commits "
        "(30s)\n"
        "\n",
        "What to read:\n"
        "  -t, --topic TOPIC         same as a TOPIC argument (repeatable)\n"
        "  -p, --partitions LIST     partitions of every TOPIC: 0,2 or 0-3\n"
        "  -f, --from POS            where to start (default beginning):\n"
        "                              beginning | end | OFFSET | -N (last N\n"
        "                              records per partition) | RFC 3339 "
        "time\n"
        "                              | DURATION ago (2h, 1h30m, 7d) |\n"
        "                              group:NAME (a group's committed "
        "offsets)\n"
        "                            or TOPIC:PARTITION:POS for one "
        "partition\n"
        "                            (repeatable; what a resume line "
        "prints)\n"
        "  -u, --until POS           where to stop (exclusive): end (the "
        "end\n"
        "                            seen at start, default) | OFFSET | TIME "
        "|\n"
        "                            DURATION ago\n"
        "  -c, --count N             stop after N matching events\n"
        "  -F, --follow              keep reading new events until SIGINT\n"
        "\n",
        "Filters (globs: * ? [..]; one option repeated = any of them):\n"
        "      --type GLOB           CloudEvents type, e.g. 'close.lead.*'\n"
        "      --source GLOB         source (/close/orga_x) or source name\n"
        "      --subject GLOB        subject, e.g. 'lead/lead_42'\n"
        "      --entity GLOB         entity id (entityid attribute)\n"
        "      --id GLOB             event id\n"
        "      --event-since TIME    event time >= TIME (RFC 3339 or "
        "DURATION ago)\n"
        "      --event-until TIME    event time < TIME\n"
        "\n",
        "Sinks (default: NDJSON on stdout, one line per event:\n"
        "  {\"topic\",\"partition\",\"offset\",\"timestamp\",\"key\","
        "\"event\"}):\n"
        "      --to-topic TOPIC      re-publish, transactionally, keeping key\n"
        "                            and headers, adding evbridge-replay-from\n"
        "      --transactional-id ID (default evbridge-replay-<to-topic>)\n"
        "      --batch-size N        records per transaction (500)\n"
        "      --resume              continue after what the target already\n"
        "                            holds (read back from its "
        "evbridge-replay-from\n"
        "                            headers): re-runs add no duplicates\n"
        "      --keep-timestamp      keep the source records' timestamps\n"
        "      --http URL            POST each event (CloudEvents structured "
        "mode)\n"
        "  -H, --header 'N: V'       extra request header (repeatable)\n"
        "      --http-timeout DUR    per request (10s)\n"
        "      --rate N[/s|/m|/h]    at most N events per second (any sink)\n"
        "      --retries N           attempts per event or batch (5)\n"
        "      --retry-backoff DUR   first retry delay, doubled each time "
        "(500ms)\n"
        "      --retry-backoff-max DUR  longest retry delay (30s)\n"
        "\n",
        "Output:\n"
        "      --progress            progress on stderr every second (default\n"
        "                            when stderr is a terminal)\n"
        "      --no-progress         never print progress\n"
        "      --progress-every N    also every N records read\n"
        "  -q, --quiet               no progress, no summary\n"
        "      --time-lookup MODE    auto (broker, scan when it answers -1),\n"
        "                            broker, or scan (timestamps only)\n"
        "  -h, --help                this text\n"
        "  -V, --version             version\n"
        "\n",
        "reset-offsets (dry run unless --execute):\n"
        "  -g, --group G             the consumer group\n"
        "      --to POS              earliest | latest | OFFSET | -N | TIME |\n"
        "                            DURATION ago, or TOPIC:PARTITION:POS\n"
        "      --execute             commit the new offsets (the group must\n"
        "                            have no active members)\n"
        "\n",
        "Exit status: 0 done, 1 runtime failure, 2 usage error, 3 sink failed\n"
        "(a resume line is printed), 4 nothing matched, 5 reset-offsets "
        "refused\n"
        "because the group is active, 130 interrupted (resume line "
        "printed).\n"
        "\n",
        "Examples:\n"
        "  evbridge-replay -b kafka:9092 --from 2024-05-15T00:00:00Z \\\n"
        "      --until 2024-05-16T00:00:00Z '^crm\\..*' > day.ndjson\n"
        "  evbridge-replay --from 2h --type 'close.lead.*' --follow "
        "'^crm\\.close\\..*'\n"
        "  evbridge-replay --entity lead_42 --to-topic crm.repair --resume "
        "'^crm\\..*'\n"
        "  evbridge-replay --http https://svc/events --rate 50/s "
        "crm.close.lead.updated\n"
        "  evbridge-replay reset-offsets --group billing --to 2h --execute \\\n"
        "      '^crm\\..*'\n",
        NULL,
};

enum {
        OPT_TIMEOUT = 256,
        OPT_TYPE,
        OPT_SOURCE,
        OPT_SUBJECT,
        OPT_ENTITY,
        OPT_ID,
        OPT_EVENT_SINCE,
        OPT_EVENT_UNTIL,
        OPT_TO_TOPIC,
        OPT_TXN_ID,
        OPT_BATCH_SIZE,
        OPT_RESUME,
        OPT_KEEP_TS,
        OPT_HTTP,
        OPT_HTTP_TIMEOUT,
        OPT_RATE,
        OPT_RETRIES,
        OPT_BACKOFF,
        OPT_BACKOFF_MAX,
        OPT_PROGRESS,
        OPT_NO_PROGRESS,
        OPT_PROGRESS_EVERY,
        OPT_TIME_LOOKUP,
        OPT_TO,
        OPT_EXECUTE,
};

static const struct option long_opts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"property", required_argument, NULL, 'X'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"topic", required_argument, NULL, 't'},
        {"partitions", required_argument, NULL, 'p'},
        {"from", required_argument, NULL, 'f'},
        {"until", required_argument, NULL, 'u'},
        {"count", required_argument, NULL, 'c'},
        {"follow", no_argument, NULL, 'F'},
        {"type", required_argument, NULL, OPT_TYPE},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"subject", required_argument, NULL, OPT_SUBJECT},
        {"entity", required_argument, NULL, OPT_ENTITY},
        {"id", required_argument, NULL, OPT_ID},
        {"event-since", required_argument, NULL, OPT_EVENT_SINCE},
        {"event-until", required_argument, NULL, OPT_EVENT_UNTIL},
        {"to-topic", required_argument, NULL, OPT_TO_TOPIC},
        {"transactional-id", required_argument, NULL, OPT_TXN_ID},
        {"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
        {"resume", no_argument, NULL, OPT_RESUME},
        {"keep-timestamp", no_argument, NULL, OPT_KEEP_TS},
        {"http", required_argument, NULL, OPT_HTTP},
        {"header", required_argument, NULL, 'H'},
        {"http-timeout", required_argument, NULL, OPT_HTTP_TIMEOUT},
        {"rate", required_argument, NULL, OPT_RATE},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"retry-backoff", required_argument, NULL, OPT_BACKOFF},
        {"retry-backoff-max", required_argument, NULL, OPT_BACKOFF_MAX},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"progress-every", required_argument, NULL, OPT_PROGRESS_EVERY},
        {"quiet", no_argument, NULL, 'q'},
        {"time-lookup", required_argument, NULL, OPT_TIME_LOOKUP},
        {"group", required_argument, NULL, 'g'},
        {"to", required_argument, NULL, OPT_TO},
        {"execute", no_argument, NULL, OPT_EXECUTE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
};

/* Options that only one of the two commands takes. */
static int replay_only(int c)
{
        switch (c) {
        case 'f':
        case 'u':
        case 'c':
        case 'F':
        case 'H':
        case 'q':
                return 1;
        default:
                return c >= OPT_TYPE && c <= OPT_PROGRESS_EVERY;
        }
}

static int reset_only(int c)
{
        return c == 'g' || c == OPT_TO || c == OPT_EXECUTE;
}

static const char *opt_name(int c, char *buf, size_t sz)
{
        size_t i;

        for (i = 0; long_opts[i].name; i++)
                if (long_opts[i].val == c) {
                        snprintf(buf, sz, "--%s", long_opts[i].name);
                        return buf;
                }
        snprintf(buf, sz, "-%c", c);
        return buf;
}

struct args {
        struct rp_opts o;
        const char **topics; /* from -t and arguments */
        size_t ntopics;
        int64_t event_since, event_until;
};

static int usage_error(const char *fmt, ...) EB_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
        va_list ap;

        fputs("evbridge-replay: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\n(see evbridge-replay --help)\n", stderr);
        return RP_EXIT_USAGE;
}

static int parse_count(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
        int64_t v;

        if (!s || !*s || s[0] == '+' || s[0] == '-' || s[0] == ' ' ||
            eb_parse_i64(s, &v) || v < lo || v > hi)
                return -EINVAL;
        *out = v;
        return 0;
}

static int parse_dur(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
        int64_t v;

        if (eb_duration_parse(s, &v) || v < lo || v > hi)
                return -EINVAL;
        *out = v;
        return 0;
}

static int parse_time(const char *s, int64_t now, int64_t *out)
{
        return eb_time_parse_start(s, now, out);
}

static void push(const char ***v, size_t *n, const char *s)
{
        *v = eb_xrealloc(*v, (*n + 1) * sizeof(**v));
        (*v)[(*n)++] = s;
}

static int add_ppos(struct rp_opts *o, const char *s, unsigned allow,
                    const char *opt)
{
        char err[512];

        o->froms = eb_xrealloc(o->froms, (o->nfroms + 1) * sizeof(*o->froms));
        if (eb_replay_ppos_parse(s, o->now_ms, allow, &o->froms[o->nfroms], err,
                                 sizeof(err))) {
                fprintf(stderr, "evbridge-replay: %s: %s\n", opt, err);
                return -EINVAL;
        }
        o->nfroms++;
        return 0;
}

static int header_ok(const char *h)
{
        const char *colon = strchr(h, ':');

        return colon && colon > h && !strpbrk(h, "\r\n");
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, int reset, struct args *a)
{
        struct rp_opts *o = &a->o;
        eb_replay_field_t field;
        char err[512], buf[64];
        size_t i;
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":b:X:t:p:f:u:c:FH:qg:hV",
                                long_opts, NULL)) != -1) {
                const char *v = optarg;

                if (c == '?')
                        return usage_error("unknown option \"%s\"",
                                           argv[optind - 1]);
                if (c == ':')
                        return usage_error("option \"%s\" needs a value",
                                           argv[optind - 1]);
                if (reset && replay_only(c))
                        return usage_error("option %s does not apply to "
                                           "reset-offsets",
                                           opt_name(c, buf, sizeof(buf)));
                if (!reset && reset_only(c))
                        return usage_error("option %s belongs to "
                                           "reset-offsets (write "
                                           "\"evbridge-replay reset-offsets "
                                           "...\", the command first)",
                                           opt_name(c, buf, sizeof(buf)));
                switch (c) {
                case 'h':
                        for (i = 0; usage_text[i]; i++)
                                fputs(usage_text[i], stdout);
                        return RP_EXIT_OK;
                case 'V':
                        printf("evbridge-replay %s (%s, librdkafka %s)\n",
                               EB_VERSION, EB_GITREV, rd_kafka_version_str());
                        return RP_EXIT_OK;
                case 'b':
                        o->brokers = v;
                        break;
                case 'X':
                        if (!strchr(v, '=') || v[0] == '=')
                                return usage_error("-X %s: expected "
                                                   "key=value",
                                                   v);
                        push(&o->props, &o->nprops, v);
                        break;
                case OPT_TIMEOUT:
                        if (parse_dur(v, 100, 3600000, &o->timeout_ms))
                                return usage_error("bad --timeout \"%s\"", v);
                        break;
                case 't':
                        push(&a->topics, &a->ntopics, v);
                        break;
                case 'p':
                        free(o->parts);
                        if (eb_replay_partitions_parse(v, &o->parts, &o->nparts,
                                                       err, sizeof(err)))
                                return usage_error("--partitions: %s", err);
                        break;
                case 'f':
                        if (add_ppos(o, v, EB_REPLAY_ALLOW_FROM, "--from"))
                                return RP_EXIT_USAGE;
                        break;
                case OPT_TO:
                        if (add_ppos(o, v, EB_REPLAY_ALLOW_RESET, "--to"))
                                return RP_EXIT_USAGE;
                        break;
                case 'u':
                        if (eb_replay_pos_parse(v, o->now_ms,
                                                EB_REPLAY_ALLOW_UNTIL,
                                                &o->until, err, sizeof(err)))
                                return usage_error("--until: %s", err);
                        o->has_until = 1;
                        break;
                case 'c':
                        if (parse_count(v, 1, INT64_MAX, &o->count))
                                return usage_error("bad --count \"%s\"", v);
                        break;
                case 'F':
                        o->follow = 1;
                        break;
                case OPT_TYPE:
                case OPT_SOURCE:
                case OPT_SUBJECT:
                case OPT_ENTITY:
                case OPT_ID:
                        field = c == OPT_TYPE      ? EB_REPLAY_F_TYPE
                                : c == OPT_SOURCE  ? EB_REPLAY_F_SOURCE
                                : c == OPT_SUBJECT ? EB_REPLAY_F_SUBJECT
                                : c == OPT_ENTITY  ? EB_REPLAY_F_ENTITY
                                                   : EB_REPLAY_F_ID;
                        if (eb_replay_filter_add(o->filter, field, v))
                                return usage_error("bad filter pattern "
                                                   "\"%s\"",
                                                   v);
                        break;
                case OPT_EVENT_SINCE:
                        if (parse_time(v, o->now_ms, &a->event_since))
                                return usage_error("bad --event-since \"%s\": "
                                                   "expected an RFC 3339 "
                                                   "time or a duration",
                                                   v);
                        break;
                case OPT_EVENT_UNTIL:
                        if (parse_time(v, o->now_ms, &a->event_until))
                                return usage_error("bad --event-until \"%s\": "
                                                   "expected an RFC 3339 "
                                                   "time or a duration",
                                                   v);
                        break;
                case OPT_TO_TOPIC:
                        if (!eb_replay_topic_name_valid(v))
                                return usage_error("--to-topic: \"%s\" is not "
                                                   "a topic name",
                                                   v);
                        o->to_topic = v;
                        break;
                case OPT_TXN_ID:
                        if (!*v)
                                return usage_error("empty --transactional-id"
                                                   "");
                        o->txn_id = v;
                        break;
                case OPT_BATCH_SIZE:
                        if (parse_count(v, 1, 100000, &o->batch_size))
                                return usage_error("bad --batch-size \"%s\" "
                                                   "(1..100000)",
                                                   v);
                        break;
                case OPT_RESUME:
                        o->resume = 1;
                        break;
                case OPT_KEEP_TS:
                        o->keep_timestamp = 1;
                        break;
                case OPT_HTTP:
                        if (strncmp(v, "http://", 7) &&
                            strncmp(v, "https://", 8))
                                return usage_error("--http: \"%s\" is not an "
                                                   "http:// or https:// URL",
                                                   v);
                        o->url = v;
                        break;
                case 'H':
                        if (!header_ok(v))
                                return usage_error("bad --header \"%s\": "
                                                   "expected 'Name: value'",
                                                   v);
                        push(&o->http_headers, &o->nhttp_headers, v);
                        break;
                case OPT_HTTP_TIMEOUT:
                        if (parse_dur(v, 1, 3600000, &o->http_timeout_ms))
                                return usage_error("bad --http-timeout \"%s\"",
                                                   v);
                        break;
                case OPT_RATE:
                        if (eb_replay_rate_parse(v, &o->rate))
                                return usage_error("bad --rate \"%s\": "
                                                   "expected e.g. 100/s",
                                                   v);
                        break;
                case OPT_RETRIES: {
                        int64_t n;

                        if (parse_count(v, 1, 100, &n))
                                return usage_error("bad --retries \"%s\" "
                                                   "(1..100)",
                                                   v);
                        o->retries = (int)n;
                        break;
                }
                case OPT_BACKOFF:
                        if (parse_dur(v, 0, 3600000, &o->backoff_ms))
                                return usage_error("bad --retry-backoff "
                                                   "\"%s\"",
                                                   v);
                        break;
                case OPT_BACKOFF_MAX:
                        if (parse_dur(v, 0, 3600000, &o->backoff_max_ms))
                                return usage_error("bad --retry-backoff-max "
                                                   "\"%s\"",
                                                   v);
                        break;
                case OPT_PROGRESS:
                        o->progress = 1;
                        break;
                case OPT_NO_PROGRESS:
                        o->progress = 0;
                        break;
                case OPT_PROGRESS_EVERY:
                        if (parse_count(v, 1, INT64_MAX, &o->progress_every))
                                return usage_error("bad --progress-every "
                                                   "\"%s\"",
                                                   v);
                        break;
                case 'q':
                        o->quiet = 1;
                        if (o->progress == -1)
                                o->progress = 0;
                        break;
                case OPT_TIME_LOOKUP:
                        if (!strcmp(v, "auto"))
                                o->lookup = RP_LOOKUP_AUTO;
                        else if (!strcmp(v, "broker"))
                                o->lookup = RP_LOOKUP_BROKER;
                        else if (!strcmp(v, "scan"))
                                o->lookup = RP_LOOKUP_SCAN;
                        else
                                return usage_error("bad --time-lookup \"%s\": "
                                                   "expected auto, broker or "
                                                   "scan",
                                                   v);
                        break;
                case 'g':
                        if (!*v)
                                return usage_error("empty --group");
                        o->group = v;
                        break;
                case OPT_EXECUTE:
                        o->execute = 1;
                        break;
                default:
                        return usage_error("unhandled option \"%s\"",
                                           argv[optind - 1]);
                }
        }
        for (; optind < argc; optind++)
                push(&a->topics, &a->ntopics, argv[optind]);
        return -1;
}

static int validate(struct args *a, int reset)
{
        struct rp_opts *o = &a->o;
        char err[512];
        size_t i;
        int general = 0;

        if (!o->brokers || !*o->brokers)
                o->brokers = getenv("EVBRIDGE_BROKERS");
        if (!o->brokers || !*o->brokers)
                return usage_error("no brokers: use -b LIST or set "
                                   "EVBRIDGE_BROKERS");
        if (!a->ntopics)
                return usage_error("no topic given");
        o->specs = eb_xcalloc(a->ntopics, sizeof(*o->specs));
        for (i = 0; i < a->ntopics; i++) {
                if (eb_replay_topic_spec_parse(a->topics[i], &o->specs[i], err,
                                               sizeof(err)))
                        return usage_error("%s", err);
                o->nspecs++;
        }
        if (reset) {
                if (!o->group)
                        return usage_error("reset-offsets needs --group");
                for (i = 0; i < o->nfroms; i++)
                        if (!o->froms[i].topic[0])
                                general = 1;
                if (!general)
                        return usage_error("reset-offsets needs --to POS "
                                           "(earliest, latest, an offset, a "
                                           "time or a duration)");
                return -1;
        }
        if (o->follow && o->has_until)
                return usage_error("--follow and --until exclude each "
                                   "other");
        if (o->to_topic && o->url)
                return usage_error("choose one sink: --to-topic or --http");
        if (!o->to_topic && (o->resume || o->txn_id || o->keep_timestamp))
                return usage_error("--resume, --transactional-id and "
                                   "--keep-timestamp need --to-topic");
        if (!o->url && o->nhttp_headers)
                return usage_error("--header needs --http");
        if (o->backoff_max_ms < o->backoff_ms)
                o->backoff_max_ms = o->backoff_ms;
        if (a->event_since != INT64_MIN || a->event_until != INT64_MAX) {
                if (a->event_since >= a->event_until)
                        return usage_error("--event-since must be before "
                                           "--event-until");
                eb_replay_filter_set_time(o->filter, a->event_since,
                                          a->event_until);
        }
        o->sink = o->to_topic ? RP_SINK_TOPIC
                  : o->url    ? RP_SINK_HTTP
                              : RP_SINK_STDOUT;
        return -1;
}

static void on_signal(int sig)
{
        (void)sig;
        rp_stop_signal = 1;
}

int main(int argc, char **argv)
{
        struct args a;
        struct sigaction sa;
        int reset = 0, code;
        size_t i;

        memset(&a, 0, sizeof(a));
        a.o.now_ms = eb_now_ms();
        a.o.filter = eb_replay_filter_new();
        a.o.batch_size = 500;
        a.o.http_timeout_ms = 10000;
        a.o.retries = 5;
        a.o.backoff_ms = 500;
        a.o.backoff_max_ms = 30000;
        a.o.progress = -1;
        a.o.timeout_ms = 30000;
        a.event_since = INT64_MIN;
        a.event_until = INT64_MAX;
        if (argc > 1 && !strcmp(argv[1], "reset-offsets")) {
                reset = 1;
                argv++;
                argc--;
        }
        code = parse_args(argc, argv, reset, &a);
        if (code < 0)
                code = validate(&a, reset);
        if (code >= 0)
                goto out;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (reset) {
                code = rp_reset_offsets(&a.o);
        } else {
                if (a.o.sink == RP_SINK_HTTP) {
                        /* A server closing a TLS connection must not kill
                         * the process (CURLOPT_NOSIGNAL leaves SIGPIPE to
                         * us); the write then fails and is retried. */
                        signal(SIGPIPE, SIG_IGN);
                        curl_global_init(CURL_GLOBAL_DEFAULT);
                }
                code = rp_run(&a.o);
                if (a.o.sink == RP_SINK_HTTP)
                        curl_global_cleanup();
        }
out:
        for (i = 0; i < a.o.nspecs; i++)
                eb_replay_topic_spec_fini(&a.o.specs[i]);
        free(a.o.specs);
        free(a.o.parts);
        free(a.o.froms);
        free(a.o.props);
        free(a.o.http_headers);
        free(a.topics);
        eb_replay_filter_free(a.o.filter);
        eb_log_shutdown();
        return code;
}
