/*
 * The control channel of evbridge-kafka-mock (control.h).
 *
 * Protocol: a client connects to 127.0.0.1:<port> (the port is written to
 * --control-port-file), sends one command per line and gets one answer
 * line per command, "ok ..." or "error <why>". Commands:
 *
 *   ping                                      ok pong
 *   broker-down <id|all>                      rd_kafka_mock_broker_set_down
 *   broker-up <id|all>                        rd_kafka_mock_broker_set_up
 *   rtt <id|all> <ms>                         rd_kafka_mock_broker_set_rtt
 *   push-errors <api> <err> [<err>...]        the next requests of <api>,
 *                                             on any broker, fail with
 *                                             these errors in this order
 *                                             (..._push_request_errors)
 *   push-broker-errors <id> <api> <err> <rtt_ms> [<err> <rtt_ms>...]
 *                                             the same on one broker, each
 *                                             answer delayed by rtt_ms
 *                                             (..._push_request_error_rtts)
 *   error-count <id> <api>                    ok <n>: errors pushed on
 *                                             broker <id> not consumed yet
 *                                             (..._error_stack_cnt)
 *   clear-errors <api>                        drop the cluster-wide
 *                                             errors of <api> not
 *                                             consumed yet
 *   coordinator <transaction|group> <key> <id>
 *                                             make broker <id> the
 *                                             coordinator of that
 *                                             transactional.id or group
 *
 * <api> is a Kafka ApiKey, by number or name (Produce, InitProducerId,
 * AddPartitionsToTxn, EndTxn, ...); <err> a broker error code by number
 * or name (NOT_ENOUGH_REPLICAS or RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
 * 0 for no error). Everything runs on the main thread; the mock's own
 * thread serves the requests. Bad input never stops the cluster.
 */
#include "control.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eb_util.h"

#define CTL_MAX_CLIENTS 8
#define CTL_MAX_LINE    1024
#define CTL_MAX_ARGS    66 /* command + 64 errors + 1 to detect too many */
#define CTL_MAX_ERRORS  64
#define CTL_MAX_RTT_MS  600000

static const struct {
        const char *name;
        int key;
} api_names[] = {
        {"Produce", 0},          {"Fetch", 1},
        {"ListOffsets", 2},      {"Metadata", 3},
        {"OffsetCommit", 8},     {"OffsetFetch", 9},
        {"FindCoordinator", 10}, {"JoinGroup", 11},
        {"Heartbeat", 12},       {"LeaveGroup", 13},
        {"SyncGroup", 14},       {"ApiVersions", 18},
        {"InitProducerId", 22},  {"AddPartitionsToTxn", 24},
        {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
        {"TxnOffsetCommit", 28},
};

static int parse_range(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
        if (eb_parse_i64(s, out) || *out < lo || *out > hi)
                return -EINVAL;
        return 0;
}

static int parse_api(const char *s, int16_t *out)
{
        int64_t v;
        size_t i;

        for (i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++)
                if (!strcasecmp(s, api_names[i].name)) {
                        *out = (int16_t)api_names[i].key;
                        return 0;
                }
        if (parse_range(s, 0, 32767, &v))
                return -EINVAL;
        *out = (int16_t)v;
        return 0;
}

/* Broker error codes only: the mock sends them on the wire, where a
 * negative (librdkafka-local) code means nothing. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
        const struct rd_kafka_err_desc *descs;
        size_t cnt, i;
        int64_t v;

        if (!strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18))
                s += 18;
        rd_kafka_get_err_descs(&descs, &cnt);
        if (!eb_parse_i64(s, &v)) {
                if (v == 0) {
                        *out = RD_KAFKA_RESP_ERR_NO_ERROR;
                        return 0;
                }
                for (i = 0; i < cnt; i++)
                        if (descs[i].name && descs[i].code > 0 &&
                            descs[i].code == v) {
                                *out = descs[i].code;
                                return 0;
                        }
                return -EINVAL;
        }
        for (i = 0; i < cnt; i++)
                if (descs[i].name && descs[i].code >= 0 &&
                    !strcasecmp(descs[i].name, s)) {
                        *out = descs[i].code;
                        return 0;
                }
        return -EINVAL;
}

/* "all" -> 0 (every broker), else 1..brokers. */
static int parse_broker(const char *s, int brokers, int *out)
{
        int64_t v;

        if (!strcmp(s, "all")) {
                *out = 0;
                return 0;
        }
        if (parse_range(s, 1, brokers, &v))
                return -EINVAL;
        *out = (int)v;
        return 0;
}

enum broker_op { OP_DOWN, OP_UP, OP_RTT };

static rd_kafka_resp_err_t broker_op(rd_kafka_mock_cluster_t *mc, int id,
                                     enum broker_op op, int rtt_ms)
{
        switch (op) {
        case OP_DOWN:
                return rd_kafka_mock_broker_set_down(mc, id);
        case OP_UP:
                return rd_kafka_mock_broker_set_up(mc, id);
        case OP_RTT:
                return rd_kafka_mock_broker_set_rtt(mc, id, rtt_ms);
        }
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
}

static int do_brokers(rd_kafka_mock_cluster_t *mc, int brokers, int id,
                      enum broker_op op, int rtt_ms, char *reply,
                      size_t reply_size)
{
        rd_kafka_resp_err_t err;
        int b;

        for (b = id ? id : 1; b <= (id ? id : brokers); b++) {
                err = broker_op(mc, b, op, rtt_ms);
                if (err) {
                        snprintf(reply, reply_size, "error broker %d: %s", b,
                                 rd_kafka_err2str(err));
                        return -EINVAL;
                }
        }
        if (id)
                snprintf(reply, reply_size, "ok broker %d", id);
        else
                snprintf(reply, reply_size, "ok %d broker(s)", brokers);
        return 0;
}

int eb_kmock_control_exec(rd_kafka_mock_cluster_t *mc, int brokers,
                          const char *line, char *reply, size_t reply_size)
{
        char buf[CTL_MAX_LINE + 1], *argv[CTL_MAX_ARGS], *save = NULL, *tok;
        rd_kafka_resp_err_t errs[CTL_MAX_ERRORS], err;
        const char *api_arg = "";
        int argc = 0, id, i;
        int16_t api;
        int64_t ms;

        if (strlen(line) > CTL_MAX_LINE) {
                snprintf(reply, reply_size, "error line too long");
                return -EINVAL;
        }
        snprintf(buf, sizeof(buf), "%s", line);
        for (tok = strtok_r(buf, " \t\r", &save); tok && argc < CTL_MAX_ARGS;
             tok = strtok_r(NULL, " \t\r", &save))
                argv[argc++] = tok;
        if (argc == 0) {
                snprintf(reply, reply_size, "error empty command");
                return -EINVAL;
        }
        if (argc == CTL_MAX_ARGS) {
                snprintf(reply, reply_size, "error too many arguments");
                return -EINVAL;
        }

        if (!strcmp(argv[0], "ping") && argc == 1) {
                snprintf(reply, reply_size, "ok pong");
                return 0;
        }
        if ((!strcmp(argv[0], "broker-down") ||
             !strcmp(argv[0], "broker-up")) &&
            argc == 2) {
                if (parse_broker(argv[1], brokers, &id))
                        goto bad_broker;
                return do_brokers(mc, brokers, id,
                                  argv[0][7] == 'd' ? OP_DOWN : OP_UP, 0, reply,
                                  reply_size);
        }
        if (!strcmp(argv[0], "rtt") && argc == 3) {
                if (parse_broker(argv[1], brokers, &id))
                        goto bad_broker;
                if (parse_range(argv[2], 0, CTL_MAX_RTT_MS, &ms)) {
                        snprintf(reply, reply_size,
                                 "error bad rtt \"%s\" (0..%d ms)", argv[2],
                                 CTL_MAX_RTT_MS);
                        return -EINVAL;
                }
                return do_brokers(mc, brokers, id, OP_RTT, (int)ms, reply,
                                  reply_size);
        }
        if (!strcmp(argv[0], "push-errors") && argc >= 3) {
                api_arg = argv[1];
                if (parse_api(argv[1], &api))
                        goto bad_api;
                if (argc - 2 > CTL_MAX_ERRORS)
                        goto too_many;
                for (i = 2; i < argc; i++)
                        if (parse_err(argv[i], &errs[i - 2])) {
                                snprintf(reply, reply_size,
                                         "error unknown error code \"%s\"",
                                         argv[i]);
                                return -EINVAL;
                        }
                rd_kafka_mock_push_request_errors_array(
                        mc, api, (size_t)(argc - 2), errs);
                snprintf(reply, reply_size, "ok %d error(s) for ApiKey %d",
                         argc - 2, api);
                return 0;
        }
        if (!strcmp(argv[0], "push-broker-errors") && argc >= 5 &&
            (argc - 3) % 2 == 0) {
                int rtts[CTL_MAX_ERRORS];

                if (parse_broker(argv[1], brokers, &id) || id == 0)
                        goto bad_broker;
                api_arg = argv[2];
                if (parse_api(argv[2], &api))
                        goto bad_api;
                if ((argc - 3) / 2 > CTL_MAX_ERRORS)
                        goto too_many;
                /* Validate every pair before pushing any. */
                for (i = 3; i < argc; i += 2) {
                        if (parse_err(argv[i], &errs[(i - 3) / 2])) {
                                snprintf(reply, reply_size,
                                         "error unknown error code \"%s\"",
                                         argv[i]);
                                return -EINVAL;
                        }
                        if (parse_range(argv[i + 1], 0, CTL_MAX_RTT_MS, &ms)) {
                                snprintf(reply, reply_size,
                                         "error bad rtt \"%s\" (0..%d ms)",
                                         argv[i + 1], CTL_MAX_RTT_MS);
                                return -EINVAL;
                        }
                        rtts[(i - 3) / 2] = (int)ms;
                }
                for (i = 0; i < (argc - 3) / 2; i++) {
                        err = rd_kafka_mock_broker_push_request_error_rtts(
                                mc, id, api, 1, errs[i], rtts[i]);
                        if (err) {
                                snprintf(reply, reply_size,
                                         "error broker %d: %s", id,
                                         rd_kafka_err2str(err));
                                return -EINVAL;
                        }
                }
                snprintf(reply, reply_size,
                         "ok %d error(s) for ApiKey %d on broker %d",
                         (argc - 3) / 2, api, id);
                return 0;
        }
        if (!strcmp(argv[0], "error-count") && argc == 3) {
                size_t cnt = 0;

                if (parse_broker(argv[1], brokers, &id) || id == 0)
                        goto bad_broker;
                api_arg = argv[2];
                if (parse_api(argv[2], &api))
                        goto bad_api;
                err = rd_kafka_mock_broker_error_stack_cnt(mc, id, api, &cnt);
                if (err) {
                        snprintf(reply, reply_size, "error broker %d: %s", id,
                                 rd_kafka_err2str(err));
                        return -EINVAL;
                }
                snprintf(reply, reply_size, "ok %zu", cnt);
                return 0;
        }
        if (!strcmp(argv[0], "coordinator") && argc == 4 &&
            (!strcmp(argv[1], "transaction") || !strcmp(argv[1], "group"))) {
                if (parse_broker(argv[3], brokers, &id) || id == 0)
                        goto bad_broker;
                err = rd_kafka_mock_coordinator_set(mc, argv[1], argv[2], id);
                if (err) {
                        snprintf(reply, reply_size, "error %s",
                                 rd_kafka_err2str(err));
                        return -EINVAL;
                }
                snprintf(reply, reply_size, "ok %s %s -> broker %d", argv[1],
                         argv[2], id);
                return 0;
        }
        if (!strcmp(argv[0], "clear-errors") && argc == 2) {
                api_arg = argv[1];
                if (parse_api(argv[1], &api))
                        goto bad_api;
                rd_kafka_mock_clear_request_errors(mc, api);
                snprintf(reply, reply_size, "ok cleared ApiKey %d", api);
                return 0;
        }
        snprintf(reply, reply_size,
                 "error unknown command or wrong arguments: \"%s\" (ping, "
                 "broker-down, broker-up, rtt, push-errors, "
                 "push-broker-errors, error-count, clear-errors, "
                 "coordinator)",
                 argv[0]);
        return -EINVAL;

bad_broker:
        snprintf(reply, reply_size, "error bad broker id (1..%d%s)", brokers,
                 strcmp(argv[0], "push-broker-errors") ? " or all" : "");
        return -EINVAL;
bad_api:
        snprintf(reply, reply_size, "error unknown ApiKey \"%s\"", api_arg);
        return -EINVAL;
too_many:
        snprintf(reply, reply_size, "error at most %d errors per command",
                 CTL_MAX_ERRORS);
        return -EINVAL;
}

/* ---- the loopback server ------------------------------------------------ */

struct ctl_client {
        int fd; /* -1: free slot */
        size_t len;
        int overlong; /* discarding up to the next newline */
        char line[CTL_MAX_LINE + 1];
};

static void client_close(struct ctl_client *c)
{
        close(c->fd);
        c->fd = -1;
        c->len = 0;
        c->overlong = 0;
}

/* A reply that does not fit the socket buffer at once means a client that
 * does not read its answers: it is dropped rather than waited for. */
static int client_reply(struct ctl_client *c, const char *reply)
{
        char out[CTL_MAX_LINE + 2];
        int n = snprintf(out, sizeof(out), "%s\n", reply);

        if (n < 0 || (size_t)n >= sizeof(out)) {
                n = (int)sizeof(out) - 1;
                out[n - 1] = '\n';
        }
        return send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n
                       ? 0
                       : -EIO;
}

static void client_read(struct ctl_client *c, rd_kafka_mock_cluster_t *mc,
                        int brokers)
{
        char buf[512], reply[CTL_MAX_LINE];
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        ssize_t i;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (n <= 0) {
                client_close(c);
                return;
        }
        for (i = 0; i < n && c->fd >= 0; i++) {
                if (buf[i] != '\n') {
                        if (c->len < CTL_MAX_LINE)
                                c->line[c->len++] = buf[i];
                        else
                                c->overlong = 1;
                        continue;
                }
                c->line[c->len] = '\0';
                if (c->overlong)
                        snprintf(reply, sizeof(reply),
                                 "error line too long (max %d bytes)",
                                 CTL_MAX_LINE);
                else if (memchr(c->line, '\0', c->len))
                        snprintf(reply, sizeof(reply), "error NUL in line");
                else
                        (void)eb_kmock_control_exec(mc, brokers, c->line, reply,
                                                    sizeof(reply));
                fprintf(stderr, "evbridge-kafka-mock: control: %.200s -> %s\n",
                        c->overlong ? "(overlong line)" : c->line, reply);
                c->len = 0;
                c->overlong = 0;
                if (client_reply(c, reply))
                        client_close(c);
        }
}

static int listen_loopback(const char *port_file, int *fd_out)
{
        struct sockaddr_in sa;
        socklen_t salen = sizeof(sa);
        int fd, one = 1, rc;
        FILE *fp;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = 0;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
            listen(fd, CTL_MAX_CLIENTS) ||
            getsockname(fd, (struct sockaddr *)&sa, &salen)) {
                rc = -errno;
                close(fd);
                return rc;
        }
        fp = fopen(port_file, "w");
        if (!fp || fprintf(fp, "%d\n", ntohs(sa.sin_port)) < 0 ||
            fflush(fp) != 0) {
                rc = errno ? -errno : -EIO;
                fprintf(stderr, "evbridge-kafka-mock: %s: %s\n", port_file,
                        strerror(-rc));
                if (fp)
                        fclose(fp);
                close(fd);
                return rc;
        }
        fclose(fp);
        printf("control=127.0.0.1:%d\n", ntohs(sa.sin_port));
        fflush(stdout);
        *fd_out = fd;
        return 0;
}

int eb_kmock_control_run(rd_kafka_mock_cluster_t *mc, int brokers,
                         const char *port_file, const sigset_t *set)
{
        struct ctl_client clients[CTL_MAX_CLIENTS];
        struct pollfd pfd[CTL_MAX_CLIENTS + 1];
        struct timespec zero = {0, 0};
        int lfd = -1, rc, i, n;

        if (!port_file) {
                int sig;
                while (sigwait(set, &sig) != 0)
                        ;
                return 0;
        }
        rc = listen_loopback(port_file, &lfd);
        if (rc) {
                fprintf(stderr, "evbridge-kafka-mock: control port: %s\n",
                        strerror(-rc));
                return rc;
        }
        for (i = 0; i < CTL_MAX_CLIENTS; i++)
                clients[i].fd = -1;
        /* Signals are blocked: poll with a short timeout and collect them
         * with a zero-timeout sigtimedwait(). */
        while (sigtimedwait(set, NULL, &zero) < 0) {
                n = 0;
                pfd[n].fd = lfd;
                pfd[n++].events = POLLIN;
                for (i = 0; i < CTL_MAX_CLIENTS; i++) {
                        pfd[n].fd = clients[i].fd; /* -1 is ignored */
                        pfd[n++].events = POLLIN;
                }
                if (poll(pfd, (nfds_t)n, 100) <= 0)
                        continue;
                for (i = 0; i < CTL_MAX_CLIENTS; i++)
                        if (clients[i].fd >= 0 &&
                            (pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                                client_read(&clients[i], mc, brokers);
                if (pfd[0].revents & POLLIN) {
                        int cfd = accept(lfd, NULL, NULL);
                        if (cfd < 0)
                                continue;
                        (void)fcntl(cfd, F_SETFD, FD_CLOEXEC);
                        (void)fcntl(cfd, F_SETFL, O_NONBLOCK);
                        for (i = 0; i < CTL_MAX_CLIENTS; i++)
                                if (clients[i].fd < 0)
                                        break;
                        if (i == CTL_MAX_CLIENTS) {
                                struct ctl_client tmp = {.fd = cfd};
                                (void)client_reply(&tmp, "error too many "
                                                         "control clients");
                                close(cfd);
                                continue;
                        }
                        clients[i].fd = cfd;
                        clients[i].len = 0;
                        clients[i].overlong = 0;
                }
        }
        for (i = 0; i < CTL_MAX_CLIENTS; i++)
                if (clients[i].fd >= 0)
                        client_close(&clients[i]);
        close(lfd);
        return 0;
}
