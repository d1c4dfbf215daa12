/*
 * eb_instance: one active evbridge per transactional.id, without a
 * fencing war.
 *
 * Without scale.shards, every replica of one config uses the same
 * transactional.id: the broker fences all but the newest. That is how a
 * restarted or replacing instance takes over safely, but a Deployment
 * scaled above one replica by mistake would fence its replicas in turn,
 * each restart fencing the other, for ever. So an exactly-once instance
 * first looks for another live one: a member of the consumer group
 * "<transactional.id>.instance" whose identity (EVBRIDGE_INSTANCE, else
 * HOSTNAME, which Kubernetes sets to the pod name, else the host name)
 * is not its own. If there is one, it waits as a standby, not ready,
 * saying so, and checks again every few seconds; it goes on once the
 * other is gone (its membership expires session.timeout after it
 * stopped). Then it joins the group itself (a static member, so that a
 * restart of the same pod replaces its old membership at once) and
 * stays a member while it runs.
 *
 * Where the group cannot be used (no READ on it), the check is skipped
 * with a warning: fencing alone still keeps the output exactly once.
 *
 * Runs on the caller's event loop; the check is one blocking Admin call
 * (bounded by a few seconds) per attempt.
 */
#ifndef EB_INSTANCE_H
#define EB_INSTANCE_H

#include <event2/event.h>

#include "eb_config.h"

typedef struct eb_instance_s eb_instance_t;

/** Called once, when this instance may start (no other live one). */
typedef void eb_instance_cb(void *opaque);

/**
 * @brief A guard for @p cfg's transactional.id on the cluster at
 * @p bootstrap (cfg's kafka.properties apply: TLS, SASL).
 * @returns the guard, or NULL with @p errstr set.
 */
eb_instance_t *eb_instance_new(struct event_base *base, const char *bootstrap,
                               const struct eb_config *cfg, char *errstr,
                               size_t errstr_size);

/** @brief Check now, and call @p cb once this instance may run. */
void eb_instance_start(eb_instance_t *g, eb_instance_cb *cb, void *opaque);

/** @returns why this instance waits (for /readyz), or NULL. */
const char *eb_instance_waiting(const eb_instance_t *g);

/** @returns this instance's identity (group.instance.id). */
const char *eb_instance_id(const eb_instance_t *g);

/** @brief Leave and free. NULL ok. */
void eb_instance_free(eb_instance_t *g);

#endif /* EB_INSTANCE_H */
