/*
 * eb_shard_state: the life of one owned shard as a checked state machine.
 *
 *   STARTING --restore done--> RUNNING --revoked, shutdown, intake
 *   failure--> STOPPING --sources over, publishes settled--> STOPPED
 *   STARTING --revoked or shutdown before the restore ended--> STOPPING
 *
 * STOPPED is final: the shard's producer and pipeline are freed; a shard
 * assigned again is a new one, starting in STARTING. Every change goes
 * through eb_shard_state_set(), which refuses any other transition: it
 * logs it, counts it and leaves the state as it was, and aborts when
 * eb_shard_state_strict is set (the default in sanitizer and EB_DEBUG
 * builds).
 *
 * Thread context: the loop thread only (like eb_shard).
 */
#ifndef EB_SHARD_STATE_H
#define EB_SHARD_STATE_H

#include <stdint.h>

enum eb_shard_state {
        EB_SHARD_STARTING = 0, /* transactions init, restore */
        EB_SHARD_RUNNING,      /* sources polling, intake consumed */
        EB_SHARD_STOPPING,     /* sources removed, last transaction settling */
        EB_SHARD_STOPPED,      /* producer and pipeline freed (final) */
        EB_SHARD_STATES
};

/** Abort on an illegal transition (1) or only log and count it (0). */
extern int eb_shard_state_strict;

/** @returns the state's name ("starting", ...), "?" out of range. */
const char *eb_shard_state_name(enum eb_shard_state s);

/** @returns 1 when @p from -> @p to is in the transition table. */
int eb_shard_state_legal(enum eb_shard_state from, enum eb_shard_state to);

/**
 * @brief Move shard @p shard from *@p st to @p to if that is legal.
 * Otherwise log it, add 1 to *@p illegal, abort when
 * eb_shard_state_strict, and leave *@p st unchanged.
 * @returns 0 or -EPERM (illegal).
 */
int eb_shard_state_set(enum eb_shard_state *st, enum eb_shard_state to,
                       int shard, uint64_t *illegal);

/** Illegal transitions of every shard of this process (part of
 *  evbridge_state_transitions_illegal_total). */
uint64_t eb_shard_state_illegal_total(void);

#endif /* EB_SHARD_STATE_H */
