/*
 * evbridge-kafka-mock: a throw-away Kafka cluster (librdkafka's mock) for
 * manual runs and scripts, since kcat on Debian has no -M. Nothing is
 * durable. Prints "bootstrap.servers=<addr>" and runs until SIGTERM/SIGINT.
 * With --control-port-file a test script injects faults at run time
 * (control.c).
 */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "eb_kafka.h"
#include "eb_log.h"
#include "eb_util.h"

static const char usage[] =
        "usage: evbridge-kafka-mock [--brokers N] [--port-file FILE]\n"
        "                           [--topic NAME:PARTITIONS]...\n"
        "                           [--control-port-file FILE]\n"
        "Runs an in-process mock Kafka cluster (not durable) until SIGTERM\n"
        "or SIGINT and prints bootstrap.servers=<addr> on stdout.\n"
        "\n"
        "--control-port-file FILE: also listen on 127.0.0.1:<port> (written\n"
        "to FILE, and \"control=127.0.0.1:<port>\" on stdout) for fault\n"
        "injection, one command per line, one answer line each (\"ok ...\"\n"
        "or \"error <why>\"):\n"
        "  ping\n"
        "  broker-down <id|all>          broker-up <id|all>\n"
        "  rtt <id|all> <ms>\n"
        "  push-errors <api> <err> [<err>...]\n"
        "      the next requests of <api> (any broker) fail with these\n"
        "  push-broker-errors <id> <api> <err> <rtt_ms> [<err> <rtt_ms>...]\n"
        "      the same on one broker, each answer delayed by rtt_ms\n"
        "  error-count <id> <api>        ok <n>: broker errors not consumed\n"
        "  clear-errors <api>            drop <api>'s cluster-wide errors\n"
        "  coordinator <transaction|group> <key> <id>\n"
        "      make broker <id> the coordinator of that key\n"
        "<api>: ApiKey number or name (Produce, InitProducerId,\n"
        "AddPartitionsToTxn, EndTxn, ...); <err>: broker error code number\n"
        "or name (NOT_ENOUGH_REPLICAS, PRODUCER_FENCED, ...). Brokers are\n"
        "numbered 1..N.\n";

static int parse_int(const char *s, int lo, int hi, int *out)
{
        int64_t v;

        if (eb_parse_i64(s, &v) || v < lo || v > hi)
                return -EINVAL;
        *out = (int)v;
        return 0;
}

int main(int argc, char **argv)
{
        int brokers = 3, ntopics = 0, i, rc = 1;
        const char *port_file = NULL, *ctl_file = NULL, *bs;
        rd_kafka_mock_cluster_t *mc = NULL;
        rd_kafka_t *rk = NULL;
        rd_kafka_conf_t *conf;
        char **names = eb_xcalloc((size_t)argc, sizeof(*names));
        int *parts = eb_xcalloc((size_t)argc, sizeof(*parts));
        char err[256];
        sigset_t set;
        FILE *fp;

        for (i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
                const char *colon = strrchr(v, ':');

                if (!strcmp(a, "--help")) {
                        fputs(usage, stdout);
                        rc = 0;
                        goto out;
                } else if (!strcmp(a, "--version")) {
                        printf("evbridge-kafka-mock %s (librdkafka %s)\n",
                               EB_VERSION, rd_kafka_version_str());
                        rc = 0;
                        goto out;
                } else if (!strcmp(a, "--brokers") &&
                           !parse_int(v, 1, 16, &brokers)) {
                        i++;
                } else if (!strcmp(a, "--port-file") && *v) {
                        port_file = argv[++i];
                } else if (!strcmp(a, "--control-port-file") && *v) {
                        ctl_file = argv[++i];
                } else if (!strcmp(a, "--topic") && colon && colon > v &&
                           !parse_int(colon + 1, 1, 10000, &parts[ntopics])) {
                        names[ntopics++] = eb_xstrndup(v, (size_t)(colon - v));
                        i++;
                } else {
                        fprintf(stderr,
                                "evbridge-kafka-mock: bad argument "
                                "\"%s\"\n%s",
                                a, usage);
                        rc = 2;
                        goto out;
                }
        }

        /* Block the signals before librdkafka starts its threads, so they
         * all inherit the mask and sigwait() below receives them. */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        /* The cluster's owner handle never connects: keep its "no
         * bootstrap.servers" notice out of the output. */
        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "4", err, sizeof(err)) ==
            RD_KAFKA_CONF_OK)
                rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (rk)
                mc = rd_kafka_mock_cluster_new(rk, brokers);
        else
                rd_kafka_conf_destroy(conf);
        /* Nagle off on the brokers' sockets, as on a real broker
         * (eb_kafka_mock_nodelay()). */
        if (mc)
                (void)eb_kafka_mock_nodelay();
        if (!mc) {
                fprintf(stderr, "evbridge-kafka-mock: cannot start: %s\n",
                        rk ? "mock cluster" : err);
                goto out;
        }
        for (i = 0; i < ntopics; i++)
                if (rd_kafka_mock_topic_create(mc, names[i], parts[i], 1)) {
                        fprintf(stderr,
                                "evbridge-kafka-mock: cannot create "
                                "topic %s\n",
                                names[i]);
                        goto out;
                }
        bs = rd_kafka_mock_cluster_bootstraps(mc);
        if (port_file) {
                fp = fopen(port_file, "w");
                if (!fp || fprintf(fp, "%s\n", bs) < 0 || fflush(fp) != 0) {
                        fprintf(stderr, "evbridge-kafka-mock: %s: %s\n",
                                port_file, strerror(errno));
                        if (fp)
                                fclose(fp);
                        goto out;
                }
                fclose(fp);
        }
        printf("bootstrap.servers=%s\n", bs);
        fflush(stdout);
        if (eb_kmock_control_run(mc, brokers, ctl_file, &set))
                goto out;
        rc = 0;
out:
        if (mc)
                rd_kafka_mock_cluster_destroy(mc);
        if (rk)
                rd_kafka_destroy(rk);
        for (i = 0; i < ntopics; i++)
                free(names[i]);
        free(names);
        free(parts);
        return rc;
}
