/*
 * sim_harness: run evbridge-sim as a child process from a test, and talk
 * to it with a plain blocking HTTP client (libcurl easy).
 *
 *     const char *args[] = {"--accounts", "close=1", "--rate", "0", NULL};
 *     struct eb_sim sim;
 *     if (eb_sim_start(args, &sim) < 0) ...;
 *     char auth[256];
 *     eb_sim_auth(&sim, "close-1", auth, sizeof(auth));
 *     struct eb_sim_resp r;
 *     eb_sim_get(url, auth, 5000, &r);  ... eb_sim_resp_free(&r);
 *     eb_sim_control(&sim, "{\"target\":\"close-1\",\"generate\":10}", NULL);
 *     EB_CHECK(eb_sim_stop(&sim) == 0);    // exit status 0 (ASan: no leak)
 *
 * The binary is $EB_BUILD_DIR/bin/evbridge-sim (build/release by default),
 * so ASan test runs use the ASan simulator. It always listens on
 * 127.0.0.1:0; the port and every account's base URL, credentials and
 * webhook secrets come from its start-up JSON line (docs/simulator.md).
 * The child gets SIGKILL if the test process dies.
 */
#ifndef SIM_HARNESS_H
#define SIM_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct eb_sim {
        pid_t pid;
        int port;
        int out_fd;      /* read end of the child's stdout */
        char origin[64]; /* "http://127.0.0.1:PORT" */
        char *line;      /* the start-up JSON line (owned) */
        json_t *info;    /* parsed start-up line (owned) */
};

struct eb_sim_resp {
        int curl_rc; /* CURLcode: 0, or e.g. 28 timeout, 56 reset */
        long status; /* HTTP status, 0 when none was received */
        char *body;  /* NUL-terminated (owned), never NULL after a call */
        size_t len;
        char *headers; /* raw response header block (owned) */
        char content_type[128];
};

/**
 * @brief Start the simulator with "--listen 127.0.0.1:0" plus
 * @p argv_extra (NULL-terminated, may be NULL) and wait for its start-up
 * line.
 * @returns 0 and a filled @p out (free with eb_sim_stop()), or -1 with a
 * message on stderr (nothing to free).
 */
int eb_sim_start(const char *const argv_extra[], struct eb_sim *out);

/**
 * @brief SIGTERM the simulator, wait for it (SIGKILL after a timeout) and
 * free @p sim. Safe on a zeroed struct.
 * @returns the exit status (0 on a clean exit), or -1 if it had to be
 * killed or died from a signal.
 */
int eb_sim_stop(struct eb_sim *sim);

/** @returns borrowed account object of the start-up line, or NULL. */
const json_t *eb_sim_account(const struct eb_sim *sim, const char *account);

/**
 * @brief A string of an account by dotted path, e.g. "base_url",
 * "credentials.token", "credentials.api_key", "webhook.secret".
 * @returns borrowed string or NULL.
 */
const char *eb_sim_str(const struct eb_sim *sim, const char *account,
                       const char *path);

/**
 * @brief The Authorization header value for @p account: "Bearer <token>"
 * (Kommo, Kota) or "Basic base64(<api key>:)" (Close).
 * @returns 0 or -1.
 */
int eb_sim_auth(const struct eb_sim *sim, const char *account, char *buf,
                size_t bufsz);

/** @brief Build "<base_url><path>" of an account into @p buf. @returns 0/-1 */
int eb_sim_url(const struct eb_sim *sim, const char *account, const char *path,
               char *buf, size_t bufsz);

/**
 * @brief One blocking HTTP request. @p auth is a full Authorization value
 * or NULL; @p body (JSON) makes it a POST when @p method is NULL.
 * @returns the CURLcode (also in resp->curl_rc); @p resp is always filled
 * and must be freed with eb_sim_resp_free().
 */
int eb_sim_request(const char *method, const char *url, const char *auth,
                   const char *body, long timeout_ms, struct eb_sim_resp *resp);

/** @brief GET @p url (see eb_sim_request()). */
int eb_sim_get(const char *url, const char *auth, long timeout_ms,
               struct eb_sim_resp *resp);

/**
 * @brief POST @p json to /_sim/control.
 * @returns the HTTP status (200 on success) or -1; the response goes to
 * @p resp when not NULL (then free it).
 */
long eb_sim_control(const struct eb_sim *sim, const char *json,
                    struct eb_sim_resp *resp);

/** @returns new parsed JSON of GET <origin><path> (e.g. "/_sim/stats"),
 * or NULL. */
json_t *eb_sim_get_json(const struct eb_sim *sim, const char *path);

/** @returns a new array of the JSON lines of GET /_sim/truth<query>. */
json_t *eb_sim_truth(const struct eb_sim *sim, const char *query);

/** @returns new copy of response header @p name (case-insensitive, value
 * trimmed), or NULL. */
char *eb_sim_resp_header(const struct eb_sim_resp *resp, const char *name);

/** @brief Free what @p resp owns (safe twice). */
void eb_sim_resp_free(struct eb_sim_resp *resp);

#endif /* SIM_HARNESS_H */
