/*
 * evbridge-kafka-mock's control channel: a line protocol on a loopback TCP
 * port through which a test script injects faults into the running
 * cluster (brokers down and up, round-trip times, request errors). The
 * commands are listed in control.c and in `evbridge-kafka-mock --help`.
 */
#ifndef EB_KMOCK_CONTROL_H
#define EB_KMOCK_CONTROL_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stddef.h>

/**
 * @brief Answer one command line (without its newline) on @p mc, which has
 * brokers 1..@p brokers.
 * @param reply receives "ok ..." or "error ..." (no newline).
 * @returns 0 when the command succeeded, -EINVAL otherwise.
 * @remark Never aborts on bad input.
 */
int eb_kmock_control_exec(rd_kafka_mock_cluster_t *mc, int brokers,
                          const char *line, char *reply, size_t reply_size);

/**
 * @brief Serve the control port (when @p port_file is not NULL: listen on
 * 127.0.0.1:0 and write the port to @p port_file) until one of the
 * signals in @p set (blocked by the caller) arrives.
 * @returns 0 after a signal, -errno if the port cannot be set up (a
 * message is printed on stderr).
 */
int eb_kmock_control_run(rd_kafka_mock_cluster_t *mc, int brokers,
                         const char *port_file, const sigset_t *set);

#endif /* EB_KMOCK_CONTROL_H */
