#include "eb_shard_state.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "eb_log.h"

/* EB_DEBUG is defined in every build (0 in release, Makefile). */
#if (defined(EB_DEBUG) && EB_DEBUG) || defined(__SANITIZE_ADDRESS__)
#define STRICT_DEFAULT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRICT_DEFAULT 1
#endif
#endif
#ifndef STRICT_DEFAULT
#define STRICT_DEFAULT 0
#endif

int eb_shard_state_strict = STRICT_DEFAULT;
static atomic_uint_least64_t illegal_total;

uint64_t eb_shard_state_illegal_total(void)
{
        return atomic_load(&illegal_total);
}

static const char *const names[EB_SHARD_STATES] = {
        [EB_SHARD_STARTING] = "starting",
        [EB_SHARD_RUNNING] = "running",
        [EB_SHARD_STOPPING] = "stopping",
        [EB_SHARD_STOPPED] = "stopped",
};

/* legal[from][to] */
static const unsigned char legal[EB_SHARD_STATES][EB_SHARD_STATES] = {
        [EB_SHARD_STARTING] = {[EB_SHARD_RUNNING] = 1, [EB_SHARD_STOPPING] = 1},
        [EB_SHARD_RUNNING] = {[EB_SHARD_STOPPING] = 1},
        [EB_SHARD_STOPPING] = {[EB_SHARD_STOPPED] = 1},
};

const char *eb_shard_state_name(enum eb_shard_state s)
{
        return (unsigned)s < EB_SHARD_STATES ? names[s] : "?";
}

int eb_shard_state_legal(enum eb_shard_state from, enum eb_shard_state to)
{
        return (unsigned)from < EB_SHARD_STATES &&
               (unsigned)to < EB_SHARD_STATES && legal[from][to];
}

int eb_shard_state_set(enum eb_shard_state *st, enum eb_shard_state to,
                       int shard, uint64_t *illegal)
{
        if (eb_shard_state_legal(*st, to)) {
                *st = to;
                return 0;
        }
        eb_error("shard",
                 "shard %d: illegal state transition %s -> %s (kept %s)", shard,
                 eb_shard_state_name(*st), eb_shard_state_name(to),
                 eb_shard_state_name(*st));
        (*illegal)++;
        atomic_fetch_add(&illegal_total, 1);
        if (eb_shard_state_strict)
                abort();
        return -EPERM;
}
