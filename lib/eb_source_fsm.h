/*
 * eb_source_fsm: the state machine of one polled source (eb_poller.c),
 * checked by eb_fsm. Runs on the event loop thread, like the poller.
 *
 *   IDLE/WAITING/BACKOFF --src_step--> FETCHING --answer--> FETCHED
 *   FETCHED --page to publish--> PUBLISHING --settled--> PUBLISHED
 *   FETCHED/PUBLISHED --next page, 429, error, walk done--> FETCHING,
 *       WAITING, BACKOFF, IDLE
 *   anything not in flight --ban, refusal, bad checkpoint, stop--> STOPPED
 *
 * A request or a publish in flight (FETCHING, PUBLISHING) leaves only by
 * its own callback (FETCHED, PUBLISHED) or, a request, by being cancelled
 * (STOPPED): nothing else starts meanwhile. FETCHED and PUBLISHED last as
 * long as the callback handling the result; they are shown as "fetching"
 * and "publishing" (eb_source_fsm_public()), as before.
 *
 * What stays a flag beside it (struct src in eb_poller.c), and why:
 * removed (this incarnation was retired while in flight and is freed once
 * that settles: the state still follows the request or publish), in_walk
 * (a walk's cursor exists: it spans many fetches, publishes and backoffs),
 * snap_taken (the rollback snapshot covers the buffered pages: data, not
 * a phase), trigger_pending (a webhook asked for a poll in any busy state).
 */
#ifndef EB_SOURCE_FSM_H
#define EB_SOURCE_FSM_H

#include "eb_fsm.h"
#include "eb_poller.h"

enum eb_src_fsm_state {
        EB_SRCF_IDLE = 0,   /* between walks, the next one scheduled */
        EB_SRCF_WAITING,    /* for a token, a rate-limit pause, a twin */
        EB_SRCF_BACKOFF,    /* retrying after an error */
        EB_SRCF_FETCHING,   /* HTTP request (page or OAuth) in flight */
        EB_SRCF_FETCHED,    /* its answer being handled */
        EB_SRCF_PUBLISHING, /* events or a checkpoint handed to the sink */
        EB_SRCF_PUBLISHED,  /* its result being handled */
        EB_SRCF_STOPPED,    /* banned, refused, unusable checkpoint, stop */
        EB_SRCF_NSTATES
};

extern const struct eb_fsm eb_source_fsm;

/* The state shown in /status and the evbridge_source_state gauge. */
enum eb_source_state eb_source_fsm_public(enum eb_src_fsm_state st);

#endif
