/*
 * eb_tloop: what the poller and pipeline tests share to drive their event
 * loop and stand in for the publishing side.
 *
 *     struct eb_tresult r = {0};
 *     eb_pipeline_publish(pl, src, evts, 1, NULL, eb_tresult_done, &r);
 *     eb_tresult_wait(base, &r, 10000);   // until settled, or timeout
 *     EB_CHECK(r.done == 1 && r.err == 0);
 *
 * A fake sink settles a publish on the next loop turn with
 * eb_tsettle_later(), never from inside the publish call (as Kafka does).
 */
#ifndef EB_TLOOP_H
#define EB_TLOOP_H

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

#include "eb_poller.h"

/* How often a publish settled, and its last error. */
struct eb_tresult {
        int done;
        int err;
};

/* An eb_publish_done_cb for a struct eb_tresult *. */
void eb_tresult_done(void *arg, int err);

/* Run @p base until @p r settled, at most EB_T_TMOUT(@p ms). */
void eb_tresult_wait(struct event_base *base, struct eb_tresult *r, int ms);

/* Run @p base for @p ms milliseconds. */
void eb_trun_for(struct event_base *base, int ms);

/* Call done(@p arg, @p err) from @p base 1 ms from now. */
void eb_tsettle_later(struct event_base *base, eb_publish_done_cb *done,
                      void *arg, int err);

/* obj[key] += 1 (an integer, 1 when new). */
void eb_tjson_bump(json_t *obj, const char *key);

/* One Kota "employee created" event of source acme (account pt_1, entity
 * ee_1) with native id @p id at @p time_ms, in a one-element array. */
struct eb_event **eb_tone_event(const char *id, int64_t time_ms);

/* How many records of @p topic a read_committed consumer of
 * @p bootstrap reads whose event has native id @p id (-1 if it cannot
 * read). */
int eb_tcommitted_events(const char *bootstrap, const char *topic,
                         const char *id);

#include "eb_config.h"
#include "eb_http.h"
#include "sim_harness.h"

/* A poller over the simulator, as the upstream tests run it. */
struct eb_trig {
        struct eb_sim sim;
        struct eb_config *cfg;
        eb_http_t *http;
        eb_poller_t *p;
};

/* Zero @p r and start the simulator with @p args. @returns 0 or -1. */
int eb_trig_sim(struct eb_trig *r, const char *const *args);

/* Retries after 50 .. 200 ms: what the upstream tests poll with. */
extern const struct eb_poller_opts eb_trig_fast;

/* Load the configuration @p json and poll every source of it on @p base
 * into @p sink with @p opts (NULL: the poller's defaults). @returns 0 or
 * -1 (said on stderr). */
int eb_trig_poll(struct eb_trig *r, struct event_base *base, const char *json,
                 const struct eb_sink *sink, const struct eb_poller_opts *opts);

/* Stop the poller (its last publishes settle), free it all and check the
 * simulator exits cleanly. */
void eb_trig_stop(struct eb_trig *r, struct event_base *base);

/* How many events of the simulator's truth (GET /_sim/truth@p query) are
 * not keys of @p seen (dedupe identities, eb_event_dedupe_key()), -1 if
 * the truth cannot be read. @p versioned: keys carry the version and
 * superseded versions are skipped (Close, Kota); else the version part
 * is empty (Kommo). @p want, when set, picks the truth's native events
 * that count. */
int eb_tmissing(const struct eb_sim *sim, const char *query, json_t *seen,
                int versioned, int (*want)(const json_t *native));

#endif
