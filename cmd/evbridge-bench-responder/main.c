/*
 * evbridge-bench-responder: the baseline of the webhook benchmark. A bare
 * libevent evhttp server that answers every request 200 at once, with
 * the same body limit and a reply of the same shape as evbridge's, and
 * does nothing else (no verification, no Kafka).
 *
 *   evbridge-bench-responder --listen HOST:PORT [--port-file FILE]
 *
 * Runs until SIGTERM or SIGINT.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_util.h"

static const char usage[] =
        "usage: evbridge-bench-responder --listen HOST:PORT "
        "[--port-file FILE]\n"
        "Answers every HTTP request 200 at once (benchmark baseline).\n";

static const char reply[] = "{\"result\":\"ok\"}";

static void on_request(struct evhttp_request *req, void *arg)
{
        struct evbuffer *out = evhttp_request_get_output_buffer(req);

        (void)arg;
        /* Read the body as a real handler would before answering. */
        evbuffer_pullup(evhttp_request_get_input_buffer(req), -1);
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type", "application/json");
        evbuffer_add(out, reply, sizeof(reply) - 1);
        evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
        const char *listen = NULL, *port_file = NULL, *colon;
        struct event_base *base = NULL;
        struct evhttp *http = NULL;
        struct evhttp_bound_socket *sock;
        struct event *sigterm = NULL, *sigint = NULL;
        char host[256];
        int64_t port;
        int rc = 1, a;
        FILE *fp;

        for (a = 1; a < argc; a++) {
                if (!strcmp(argv[a], "--listen") && a + 1 < argc) {
                        listen = argv[++a];
                } else if (!strcmp(argv[a], "--port-file") && a + 1 < argc) {
                        port_file = argv[++a];
                } else if (!strcmp(argv[a], "-h") ||
                           !strcmp(argv[a], "--help")) {
                        fputs(usage, stdout);
                        return 0;
                } else {
                        fputs(usage, stderr);
                        return 2;
                }
        }
        colon = listen ? strrchr(listen, ':') : NULL;
        if (!colon || colon == listen ||
            (size_t)(colon - listen) >= sizeof(host) ||
            eb_parse_i64(colon + 1, &port) || port < 0 || port > 65535) {
                fputs(usage, stderr);
                return 2;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';

        signal(SIGPIPE, SIG_IGN);
        base = event_base_new();
        http = base ? evhttp_new(base) : NULL;
        if (!http)
                goto out;
        evhttp_set_max_body_size(http, 1024 * 1024);
        evhttp_set_gencb(http, on_request, NULL);
        sock = evhttp_bind_socket_with_handle(http, host, (uint16_t)port);
        if (!sock) {
                fprintf(stderr,
                        "evbridge-bench-responder: cannot listen on "
                        "%s\n",
                        listen);
                goto out;
        }
        if (port_file) {
                struct sockaddr_storage ss;
                ev_socklen_t len = sizeof(ss);
                int bound = (int)port;

                if (getsockname(evhttp_bound_socket_get_fd(sock),
                                (struct sockaddr *)&ss, &len) == 0 &&
                    ss.ss_family == AF_INET)
                        bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
                fp = fopen(port_file, "w");
                if (!fp || fprintf(fp, "%d\n", bound) < 0) {
                        fprintf(stderr, "evbridge-bench-responder: %s: %s\n",
                                port_file, strerror(errno));
                        if (fp)
                                fclose(fp);
                        goto out;
                }
                fclose(fp);
        }
        sigterm = evsignal_new(base, SIGTERM, on_signal, base);
        sigint = evsignal_new(base, SIGINT, on_signal, base);
        if (!sigterm || !sigint || evsignal_add(sigterm, NULL) ||
            evsignal_add(sigint, NULL))
                goto out;
        event_base_dispatch(base);
        rc = 0;
out:
        if (sigterm)
                event_free(sigterm);
        if (sigint)
                event_free(sigint);
        if (http)
                evhttp_free(http);
        if (base)
                event_base_free(base);
        return rc;
}
