#include "eb_source_fsm.h"

static const char *const names[EB_SRCF_NSTATES] = {
        [EB_SRCF_IDLE] = "idle",           [EB_SRCF_WAITING] = "waiting",
        [EB_SRCF_BACKOFF] = "backoff",     [EB_SRCF_FETCHING] = "fetching",
        [EB_SRCF_FETCHED] = "fetched",     [EB_SRCF_PUBLISHING] = "publishing",
        [EB_SRCF_PUBLISHED] = "published", [EB_SRCF_STOPPED] = "stopped",
};

#define I  EB_SRCF_IDLE
#define W  EB_SRCF_WAITING
#define B  EB_SRCF_BACKOFF
#define F  EB_SRCF_FETCHING
#define FD EB_SRCF_FETCHED
#define P  EB_SRCF_PUBLISHING
#define PD EB_SRCF_PUBLISHED
#define S  EB_SRCF_STOPPED
#define N  EB_SRCF_NSTATES

/* [from * N + to]: 1 when legal. */
static const unsigned char legal[N * N] = {
        /* src_step: wait, fetch, persist an OAuth pair first, back off
         * (no walk, no request), stop (unusable checkpoint, stop). */
        [I * N + W] = 1,
        [I * N + F] = 1,
        [I * N + P] = 1,
        [I * N + B] = 1,
        [I * N + S] = 1,
        [W * N + W] = 1,
        [W * N + F] = 1,
        [W * N + P] = 1,
        [W * N + B] = 1,
        [W * N + S] = 1,
        [B * N + W] = 1,
        [B * N + F] = 1,
        [B * N + P] = 1,
        [B * N + B] = 1,
        [B * N + S] = 1,
        /* In flight: only its answer, or a cancel (shard hand-over). */
        [F * N + FD] = 1,
        [F * N + S] = 1,
        /* An answer: next page, publish, 429, errors, ban, stop. */
        [FD * N + W] = 1,
        [FD * N + F] = 1,
        [FD * N + P] = 1,
        [FD * N + B] = 1,
        [FD * N + S] = 1,
        [P * N + PD] = 1,
        /* A publish settled: the walk's end, next page or part, retry. */
        [PD * N + I] = 1,
        [PD * N + W] = 1,
        [PD * N + F] = 1,
        [PD * N + P] = 1,
        [PD * N + B] = 1,
        [PD * N + S] = 1,
        /* Stopped stays stopped, except that stopping makes an OAuth
         * pair already spent upstream durable (eb_poller_stop()). */
        [S * N + S] = 1,
        [S * N + P] = 1,
};

const struct eb_fsm eb_source_fsm = {
        .name = "source",
        .nstates = N,
        .state_names = names,
        .legal = legal,
};

enum eb_source_state eb_source_fsm_public(enum eb_src_fsm_state st)
{
        switch (st) {
        case EB_SRCF_IDLE:
                return EB_SRC_IDLE;
        case EB_SRCF_WAITING:
                return EB_SRC_WAITING;
        case EB_SRCF_BACKOFF:
                return EB_SRC_BACKOFF;
        case EB_SRCF_FETCHING:
        case EB_SRCF_FETCHED:
                return EB_SRC_FETCHING;
        case EB_SRCF_PUBLISHING:
        case EB_SRCF_PUBLISHED:
                return EB_SRC_PUBLISHING;
        case EB_SRCF_STOPPED:
        case EB_SRCF_NSTATES:
                break;
        }
        return EB_SRC_STOPPED;
}
