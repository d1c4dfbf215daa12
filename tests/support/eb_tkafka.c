#include "eb_tkafka.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eb_kafka.h"
#include "eb_log.h"

struct eb_tkafka_s {
        char *dir; /* NULL for a shared cluster */
        char *bootstrap;
        char describe[128];
};

/* The broker script, from the source tree (tests run from its root) or
 * EB_SRC_DIR. */
static const char *broker_script(char *buf, size_t size)
{
        const char *src = getenv("EB_SRC_DIR");

        snprintf(buf, size, "%s/tests/kafka/broker", src ? src : ".");
        return buf;
}

static char *xstrdup0(const char *s)
{
        char *d = strdup(s);

        if (!d) {
                fprintf(stderr, "eb_tkafka: out of memory\n");
                abort();
        }
        return d;
}

/* Runs a command; returns its first stdout line in @p out (may be NULL)
 * and its exit status. */
static int run(const char *cmd, char *out, size_t size)
{
        FILE *p = popen(cmd, "r");
        char line[512];
        int rc;

        if (!p) {
                fprintf(stderr, "eb_tkafka: popen: %s\n", strerror(errno));
                return -1;
        }
        if (out && size)
                out[0] = '\0';
        while (fgets(line, sizeof(line), p)) {
                if (out && size && !out[0]) {
                        line[strcspn(line, "\r\n")] = '\0';
                        snprintf(out, size, "%s", line);
                }
        }
        rc = pclose(p);
        return rc;
}

eb_tkafka_t *eb_tkafka_start(int nodes, const char *opts)
{
        const char *shared = getenv("EB_TEST_BROKERS");
        eb_tkafka_t *k = calloc(1, sizeof(*k));
        char tmpl[] = "/tmp/evbridge-kafka.XXXXXX";
        char script[1024], cmd[2048], bs[512];

        if (!k)
                return NULL;
        if (shared && *shared && nodes == 1 && !(opts && *opts)) {
                k->bootstrap = xstrdup0(shared);
                snprintf(k->describe, sizeof(k->describe),
                         "existing cluster at %s", shared);
                return k;
        }
        if (!mkdtemp(tmpl)) {
                fprintf(stderr, "eb_tkafka: mkdtemp: %s\n", strerror(errno));
                free(k);
                return NULL;
        }
        k->dir = xstrdup0(tmpl);
        snprintf(cmd, sizeof(cmd), "%s start %s --nodes %d %s",
                 broker_script(script, sizeof(script)), k->dir, nodes,
                 opts ? opts : "");
        if (run(cmd, bs, sizeof(bs)) != 0 || !bs[0]) {
                fprintf(stderr, "eb_tkafka: could not start Kafka (%s)\n", cmd);
                eb_tkafka_stop(k);
                return NULL;
        }
        k->bootstrap = xstrdup0(bs);
        snprintf(cmd, sizeof(cmd), "%s version", script);
        run(cmd, k->describe, sizeof(k->describe));
        return k;
}

const char *eb_tkafka_bootstrap(const eb_tkafka_t *k)
{
        return k->bootstrap;
}

int eb_tkafka_shared(const eb_tkafka_t *k)
{
        return k->dir == NULL;
}

const char *eb_tkafka_describe(const eb_tkafka_t *k)
{
        return k->describe;
}

int eb_tkafka_ctl(eb_tkafka_t *k, const char *verb, int node)
{
        char script[1024], cmd[2048], nodebuf[16] = "";

        if (!k->dir)
                return -1;
        if (node > 0)
                snprintf(nodebuf, sizeof(nodebuf), "%d", node);
        snprintf(cmd, sizeof(cmd), "%s %s %s %s",
                 broker_script(script, sizeof(script)), verb, k->dir, nodebuf);
        return run(cmd, NULL, 0) == 0 ? 0 : -1;
}

void eb_tkafka_stop(eb_tkafka_t *k)
{
        char script[1024], cmd[2048];

        if (!k)
                return;
        if (k->dir) {
                snprintf(cmd, sizeof(cmd), "%s stop %s; rm -rf %s",
                         broker_script(script, sizeof(script)), k->dir, k->dir);
                run(cmd, NULL, 0);
        }
        free(k->dir);
        free(k->bootstrap);
        free(k);
}

/* A quiet handle for the Admin API calls below, or NULL (reason on
 * stderr). */
static rd_kafka_t *admin_client(const char *bootstrap)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;
        char err[512];

        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                              sizeof(err))) {
                fprintf(stderr, "eb_tkafka: conf: %s\n", err);
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "eb_tkafka: rd_kafka_new: %s\n", err);
                rd_kafka_conf_destroy(conf);
        }
        return rk;
}

int eb_tkafka_create_topic(const char *bootstrap, const char *topic,
                           int partitions, const char *const *configs)
{
        struct eb_kafka_topic_spec t;
        rd_kafka_t *rk = admin_client(bootstrap);
        char err[512];
        int rc = -EIO;

        if (!rk)
                return -EIO;
        memset(&t, 0, sizeof(t));
        t.name = topic;
        t.partitions = partitions;
        t.configs = configs;
        if (eb_kafka_create_topics(rk, &t, 1, 30000, err, sizeof(err)))
                fprintf(stderr, "eb_tkafka: %s\n", err);
        else if (t.err == RD_KAFKA_RESP_ERR_NO_ERROR)
                rc = 0;
        else if (t.err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                rc = -EEXIST;
        else
                fprintf(stderr, "eb_tkafka: CreateTopics %s: %s\n", topic,
                        t.errstr);
        rd_kafka_destroy(rk);
        return rc;
}

char *eb_tkafka_name(char *out, size_t size, const char *stem)
{
        snprintf(out, size, "%s.%ld", stem, (long)getpid());
        return out;
}

/* DescribeConfigs of one resource; config @p name into @p out. */
static int describe_config(const char *bootstrap, rd_kafka_ResourceType_t type,
                           const char *resname, const char *name, char *out,
                           size_t size);

int eb_tkafka_topic_config(const char *bootstrap, const char *topic,
                           const char *name, char *out, size_t size)
{
        return describe_config(bootstrap, RD_KAFKA_RESOURCE_TOPIC, topic, name,
                               out, size);
}

int eb_tkafka_broker_config(const char *bootstrap, int node, const char *name,
                            char *out, size_t size)
{
        char id[16];

        snprintf(id, sizeof(id), "%d", node);
        return describe_config(bootstrap, RD_KAFKA_RESOURCE_BROKER, id, name,
                               out, size);
}

static int describe_config(const char *bootstrap, rd_kafka_ResourceType_t type,
                           const char *topic, const char *name, char *out,
                           size_t size)
{
        rd_kafka_t *rk = NULL;
        rd_kafka_ConfigResource_t *cr = NULL;
        rd_kafka_queue_t *q = NULL;
        rd_kafka_event_t *ev = NULL;
        rd_kafka_AdminOptions_t *o = NULL;
        char err[512];
        int rc = -EIO;

        if (size)
                out[0] = '\0';
        rk = admin_client(bootstrap);
        if (!rk)
                return -EIO;
        cr = rd_kafka_ConfigResource_new(type, topic);
        q = rd_kafka_queue_new(rk);
        o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
        rd_kafka_AdminOptions_set_request_timeout(o, 30000, err, sizeof(err));
        rd_kafka_DescribeConfigs(rk, &cr, 1, o, q);
        ev = rd_kafka_queue_poll(q, 40000);
        if (!ev) {
                fprintf(stderr, "eb_tkafka: DescribeConfigs %s: timed out\n",
                        topic);
        } else if (rd_kafka_event_error(ev)) {
                fprintf(stderr, "eb_tkafka: DescribeConfigs %s: %s\n", topic,
                        rd_kafka_event_error_string(ev));
        } else {
                const rd_kafka_DescribeConfigs_result_t *res =
                        rd_kafka_event_DescribeConfigs_result(ev);
                size_t cnt = 0, nc = 0, i;
                const rd_kafka_ConfigResource_t **rs =
                        rd_kafka_DescribeConfigs_result_resources(res, &cnt);
                const rd_kafka_ConfigEntry_t **ce = NULL;

                if (cnt != 1 || rd_kafka_ConfigResource_error(rs[0])) {
                        fprintf(stderr, "eb_tkafka: DescribeConfigs %s: %s\n",
                                topic,
                                cnt ? rd_kafka_ConfigResource_error_string(
                                              rs[0])
                                    : "no result");
                        rc = cnt && rd_kafka_ConfigResource_error(rs[0]) ==
                                                     RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                                     ? -ENOENT
                                     : -EIO;
                        goto out;
                }
                ce = rd_kafka_ConfigResource_configs(rs[0], &nc);
                rc = -ENOENT;
                for (i = 0; i < nc; i++) {
                        const char *v;

                        if (strcmp(rd_kafka_ConfigEntry_name(ce[i]), name))
                                continue;
                        v = rd_kafka_ConfigEntry_value(ce[i]);
                        snprintf(out, size, "%s", v ? v : "");
                        rc = 0;
                        break;
                }
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        if (o)
                rd_kafka_AdminOptions_destroy(o);
        if (q)
                rd_kafka_queue_destroy(q);
        if (cr)
                rd_kafka_ConfigResource_destroy(cr);
        rd_kafka_destroy(rk);
        return rc;
}
