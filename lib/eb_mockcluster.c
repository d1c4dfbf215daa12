/*
 * eb_mockcluster.c: the embedded Kafka cluster (librdkafka's mock), for a
 * config without kafka.brokers, and the TCP_NODELAY fix-up of its
 * listeners. Loop thread, at start-up and teardown.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "eb_kafka_int.h"
#include "eb_util.h"

#define MOD "kafka"

int kafka_mock_start(eb_kafka_t *k, const struct eb_config *cfg, char *errstr,
                     size_t errstr_size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int n = cfg->embedded_brokers ? cfg->embedded_brokers : 1;
        char msg[512];

        if (n < 1 || n > EB_KAFKA_MAX_EMBEDDED_BROKERS) {
                snprintf(errstr, errstr_size,
                         "kafka.embedded_brokers: %d is out of range 1..%d",
                         cfg->embedded_brokers, EB_KAFKA_MAX_EMBEDDED_BROKERS);
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        /*
         * librdkafka 2.0.2's rd_kafka_mock_cluster_new() wants an rd_kafka_t
         * for its bookkeeping; a dedicated one keeps the cluster's life
         * independent of the producer's (which must go first at teardown).
         * It never connects anywhere, so only its warnings are of interest.
         */
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        if (eb_kafka_conf_set(conf, "kafka", "client.id",
                              "evbridge-embedded-cluster", errstr,
                              errstr_size) ||
            eb_kafka_conf_set(conf, "kafka", "log_level", "4", errstr,
                              errstr_size)) {
                rd_kafka_conf_destroy(conf);
                return -EINVAL;
        }
        k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof(msg));
        if (!k->mock_rk) {
                rd_kafka_conf_destroy(conf);
                snprintf(errstr, errstr_size, "kafka: embedded cluster: %s",
                         msg);
                return -EIO;
        }
        k->mock = rd_kafka_mock_cluster_new(k->mock_rk, n);
        if (!k->mock) {
                snprintf(errstr, errstr_size,
                         "kafka: could not start the embedded cluster");
                return -EIO;
        }
        k->bootstrap = eb_xstrdup(rd_kafka_mock_cluster_bootstraps(k->mock));
        (void)eb_kafka_mock_nodelay();
        eb_warn(MOD,
                "EMBEDDED KAFKA: no kafka.brokers configured, running an "
                "in-process mock cluster (%d broker%s). NOTHING IS DURABLE: "
                "every event, checkpoint and dedupe record is lost when this "
                "process exits. Not for production.",
                n, n == 1 ? "" : "s");
        eb_warn(MOD,
                "embedded cluster bootstrap.servers=%s (inspect it with "
                "`kcat -b %s -L`)",
                k->bootstrap, k->bootstrap);
        return 0;
}

void kafka_mock_stop(eb_kafka_t *k)
{
        if (k->mock)
                rd_kafka_mock_cluster_destroy(k->mock);
        if (k->mock_rk)
                rd_kafka_destroy(k->mock_rk);
        k->mock = NULL;
        k->mock_rk = NULL;
}

int eb_kafka_mock_nodelay(void)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        int n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)) != NULL) {
                int on = 1, acc = 0, dom = 0, fd;
                socklen_t len = sizeof(acc);
                int64_t v;

                if (eb_parse_i64(de->d_name, &v) || v <= 2 || v > INT_MAX)
                        continue;
                fd = (int)v;
                if (fd == dirfd(d))
                        continue;
                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ||
                    !acc)
                        continue;
                len = sizeof(dom);
                if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) ||
                    (dom != AF_INET && dom != AF_INET6))
                        continue;
                if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) ==
                    0)
                        n++;
        }
        closedir(d);
        return n;
}

int eb_kafka_embedded(const eb_kafka_t *k)
{
        return k->mock != NULL;
}

rd_kafka_mock_cluster_t *eb_kafka_mock_cluster(eb_kafka_t *k)
{
        return k->mock;
}
