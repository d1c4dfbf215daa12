/*
 * sim_harness.c: see sim_harness.h.
 */
#include "sim_harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eb_test.h"

#define SIM_MAX_RESP (64 * 1024 * 1024)

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void curl_init_once(void)
{
        static int done;

        if (!done) {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                done = 1;
        }
}

static char *sim_binary(void)
{
        const char *dir = getenv("EB_BUILD_DIR");
        size_t n;
        char *p;

        if (!dir || !*dir)
                dir = "build/release";
        n = strlen(dir) + sizeof("/bin/evbridge-sim");
        p = malloc(n);
        if (p)
                snprintf(p, n, "%s/bin/evbridge-sim", dir);
        return p;
}

int eb_sim_start(const char *const argv_extra[], struct eb_sim *out)
{
        char *bin = sim_binary();
        const char **argv = NULL;
        size_t nextra = 0, i, n = 0, cap = 4096, len = 0;
        int pfd[2] = {-1, -1};
        char *buf = NULL;
        int64_t deadline;
        json_error_t jerr;
        json_t *port;
        pid_t pid;

        memset(out, 0, sizeof(*out));
        out->out_fd = -1;
        while (argv_extra && argv_extra[nextra])
                nextra++;
        argv = calloc(nextra + 4, sizeof(*argv));
        buf = malloc(cap);
        if (!bin || !argv || !buf || pipe(pfd) < 0)
                goto fail;
        argv[n++] = bin;
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
        for (i = 0; i < nextra; i++)
                argv[n++] = argv_extra[i];
        argv[n] = NULL;
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
                goto fail;
        if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(pfd[1], STDOUT_FILENO);
                close(pfd[0]);
                close(pfd[1]);
                execv(bin, (char *const *)argv);
                fprintf(stderr, "sim_harness: exec %s: %s\n", bin,
                        strerror(errno));
                _exit(127);
        }
        close(pfd[1]);
        pfd[1] = -1;
        out->pid = pid;
        out->out_fd = pfd[0];
        /* read the one start-up line */
        deadline = mono_ms() + EB_T_TMOUT(20000);
        for (;;) {
                struct pollfd p = {pfd[0], POLLIN, 0};
                int64_t left = deadline - mono_ms();
                ssize_t r;

                if (memchr(buf, '\n', len))
                        break;
                if (left <= 0) {
                        fprintf(stderr, "sim_harness: no start-up line\n");
                        goto fail_child;
                }
                if (poll(&p, 1, (int)left) <= 0)
                        continue;
                if (len + 1 >= cap) {
                        char *nb = realloc(buf, cap * 2);
                        if (!nb)
                                goto fail_child;
                        buf = nb;
                        cap *= 2;
                }
                r = read(pfd[0], buf + len, cap - len - 1);
                if (r <= 0) {
                        fprintf(stderr, "sim_harness: simulator exited "
                                        "before its start-up line\n");
                        goto fail_child;
                }
                len += (size_t)r;
                buf[len] = '\0';
        }
        *(char *)memchr(buf, '\n', len) = '\0';
        out->line = buf;
        buf = NULL;
        out->info = json_loads(out->line, 0, &jerr);
        port = out->info ? json_object_get(out->info, "port") : NULL;
        if (!json_is_integer(port)) {
                fprintf(stderr, "sim_harness: bad start-up line: %s\n",
                        out->line);
                goto fail_child;
        }
        out->port = (int)json_integer_value(port);
        snprintf(out->origin, sizeof(out->origin), "http://127.0.0.1:%d",
                 out->port);
        free(argv);
        free(bin);
        curl_init_once();
        return 0;
fail_child:
        kill(out->pid, SIGKILL);
        waitpid(out->pid, NULL, 0);
fail:
        if (pfd[0] >= 0)
                close(pfd[0]);
        if (pfd[1] >= 0)
                close(pfd[1]);
        json_decref(out->info);
        free(out->line);
        free(buf);
        free(argv);
        free(bin);
        memset(out, 0, sizeof(*out));
        out->out_fd = -1;
        return -1;
}

int eb_sim_stop(struct eb_sim *sim)
{
        int status = 0, rc = -1;
        int64_t deadline;

        if (sim->pid > 0) {
                kill(sim->pid, SIGTERM);
                deadline = mono_ms() + EB_T_TMOUT(20000);
                for (;;) {
                        pid_t w = waitpid(sim->pid, &status, WNOHANG);
                        if (w == sim->pid) {
                                if (WIFEXITED(status))
                                        rc = WEXITSTATUS(status);
                                break;
                        }
                        if (w < 0 || mono_ms() > deadline) {
                                kill(sim->pid, SIGKILL);
                                waitpid(sim->pid, NULL, 0);
                                fprintf(stderr, "sim_harness: simulator "
                                                "did not stop; killed\n");
                                break;
                        }
                        usleep(5000);
                }
        }
        if (sim->out_fd >= 0)
                close(sim->out_fd);
        json_decref(sim->info);
        free(sim->line);
        memset(sim, 0, sizeof(*sim));
        sim->out_fd = -1;
        return rc;
}

const json_t *eb_sim_account(const struct eb_sim *sim, const char *account)
{
        const json_t *arr =
                sim->info ? json_object_get(sim->info, "accounts") : NULL;
        size_t i;
        json_t *a;

        json_array_foreach(arr, i, a)
        {
                const char *name =
                        json_string_value(json_object_get(a, "account"));
                if (name && !strcmp(name, account))
                        return a;
        }
        return NULL;
}

const char *eb_sim_str(const struct eb_sim *sim, const char *account,
                       const char *path)
{
        const json_t *cur = eb_sim_account(sim, account);
        char key[64];

        while (cur && *path) {
                const char *dot = strchr(path, '.');
                size_t n = dot ? (size_t)(dot - path) : strlen(path);

                if (n >= sizeof(key))
                        return NULL;
                memcpy(key, path, n);
                key[n] = '\0';
                cur = json_object_get(cur, key);
                path += n + (dot ? 1 : 0);
        }
        return json_string_value(cur);
}

static void b64(const char *in, char *out, size_t outsz)
{
        static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrst"
                                "uvwxyz0123456789+/";
        size_t n = strlen(in), i, o = 0;

        for (i = 0; i < n && o + 5 < outsz; i += 3) {
                unsigned v = (unsigned char)in[i] << 16;
                if (i + 1 < n)
                        v |= (unsigned char)in[i + 1] << 8;
                if (i + 2 < n)
                        v |= (unsigned char)in[i + 2];
                out[o++] = t[v >> 18];
                out[o++] = t[(v >> 12) & 63];
                out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < n ? t[v & 63] : '=';
        }
        out[o] = '\0';
}

int eb_sim_auth(const struct eb_sim *sim, const char *account, char *buf,
                size_t bufsz)
{
        const char *prov = eb_sim_str(sim, account, "provider");
        const char *cred;

        if (!prov)
                return -1;
        if (!strcmp(prov, "close")) {
                char user[512], enc[800];
                cred = eb_sim_str(sim, account, "credentials.api_key");
                if (!cred)
                        return -1;
                snprintf(user, sizeof(user), "%s:", cred);
                b64(user, enc, sizeof(enc));
                snprintf(buf, bufsz, "Basic %s", enc);
                return 0;
        }
        cred = eb_sim_str(sim, account,
                          !strcmp(prov, "kommo") ? "credentials.token"
                                                 : "credentials.api_key");
        if (!cred)
                return -1;
        snprintf(buf, bufsz, "Bearer %s", cred);
        return 0;
}

int eb_sim_url(const struct eb_sim *sim, const char *account, const char *path,
               char *buf, size_t bufsz)
{
        const char *base = eb_sim_str(sim, account, "base_url");

        if (!base)
                return -1;
        snprintf(buf, bufsz, "%s%s", base, path);
        return 0;
}

struct sink {
        char *p;
        size_t len;
};

static size_t sink_cb(char *data, size_t sz, size_t n, void *userp)
{
        struct sink *s = userp;
        size_t add = sz * n;
        char *np;

        if (s->len + add > SIM_MAX_RESP)
                return 0;
        np = realloc(s->p, s->len + add + 1);
        if (!np)
                return 0;
        s->p = np;
        memcpy(s->p + s->len, data, add);
        s->len += add;
        s->p[s->len] = '\0';
        return add;
}

int eb_sim_request(const char *method, const char *url, const char *auth,
                   const char *body, long timeout_ms, struct eb_sim_resp *resp)
{
        struct sink b = {NULL, 0}, h = {NULL, 0};
        struct curl_slist *hdrs = NULL;
        char line[1024];
        CURL *easy;
        char *ct = NULL;
        CURLcode rc;

        curl_init_once();
        memset(resp, 0, sizeof(*resp));
        easy = curl_easy_init();
        if (!easy) {
                resp->curl_rc = CURLE_FAILED_INIT;
                resp->body = calloc(1, 1);
                return resp->curl_rc;
        }
        if (auth) {
                snprintf(line, sizeof(line), "Authorization: %s", auth);
                hdrs = curl_slist_append(hdrs, line);
        }
        if (body) {
                hdrs = curl_slist_append(hdrs,
                                         "Content-Type: application/json");
                curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
        }
        if (method)
                curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sink_cb);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, sink_cb);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, &h);
        rc = curl_easy_perform(easy);
        resp->curl_rc = (int)rc;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &resp->status);
        if (curl_easy_getinfo(easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK &&
            ct)
                snprintf(resp->content_type, sizeof(resp->content_type), "%s",
                         ct);
        curl_easy_cleanup(easy);
        curl_slist_free_all(hdrs);
        resp->body = b.p ? b.p : calloc(1, 1);
        resp->len = b.len;
        resp->headers = h.p ? h.p : calloc(1, 1);
        return resp->curl_rc;
}

int eb_sim_get(const char *url, const char *auth, long timeout_ms,
               struct eb_sim_resp *resp)
{
        return eb_sim_request(NULL, url, auth, NULL, timeout_ms, resp);
}

long eb_sim_control(const struct eb_sim *sim, const char *json,
                    struct eb_sim_resp *resp)
{
        struct eb_sim_resp tmp;
        char url[128];
        long st;

        snprintf(url, sizeof(url), "%s/_sim/control", sim->origin);
        eb_sim_request(NULL, url, NULL, json, EB_T_TMOUT(20000), &tmp);
        st = tmp.curl_rc ? -1 : tmp.status;
        if (st != 200)
                fprintf(stderr, "sim_harness: control %s -> %ld %s\n", json, st,
                        tmp.body ? tmp.body : "");
        if (resp)
                *resp = tmp;
        else
                eb_sim_resp_free(&tmp);
        return st;
}

json_t *eb_sim_get_json(const struct eb_sim *sim, const char *path)
{
        struct eb_sim_resp r;
        char url[1024];
        json_t *root = NULL;

        snprintf(url, sizeof(url), "%s%s", sim->origin, path);
        if (eb_sim_get(url, NULL, EB_T_TMOUT(20000), &r) == 0 &&
            r.status == 200)
                root = json_loadb(r.body, r.len, 0, NULL);
        eb_sim_resp_free(&r);
        return root;
}

json_t *eb_sim_truth(const struct eb_sim *sim, const char *query)
{
        struct eb_sim_resp r;
        char url[1024];
        json_t *arr = json_array();
        char *p, *nl;

        snprintf(url, sizeof(url), "%s/_sim/truth%s", sim->origin,
                 query ? query : "");
        if (eb_sim_get(url, NULL, EB_T_TMOUT(30000), &r) == 0 &&
            r.status == 200) {
                for (p = r.body; *p; p = nl + 1) {
                        json_t *line;
                        nl = strchr(p, '\n');
                        if (!nl)
                                break;
                        line = json_loadb(p, (size_t)(nl - p), 0, NULL);
                        if (line)
                                json_array_append_new(arr, line);
                }
        }
        eb_sim_resp_free(&r);
        return arr;
}

char *eb_sim_resp_header(const struct eb_sim_resp *resp, const char *name)
{
        size_t n = strlen(name);
        const char *p = resp->headers;

        while (p && *p) {
                const char *eol = strstr(p, "\r\n");
                size_t ll = eol ? (size_t)(eol - p) : strlen(p);

                if (ll > n && p[n] == ':' && !strncasecmp(p, name, n)) {
                        const char *v = p + n + 1;
                        char *out;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        out = strndup(v, ll - (size_t)(v - p));
                        return out;
                }
                if (!eol)
                        break;
                p = eol + 2;
        }
        return NULL;
}

void eb_sim_resp_free(struct eb_sim_resp *resp)
{
        free(resp->body);
        free(resp->headers);
        resp->body = NULL;
        resp->headers = NULL;
}
