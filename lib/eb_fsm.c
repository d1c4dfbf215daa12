#include "eb_fsm.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "eb_log.h"

static atomic_uint_fast64_t illegal_total;

int eb_fsm_legal(const struct eb_fsm *m, int from, int to)
{
        if (from < 0 || to < 0 || from >= m->nstates || to >= m->nstates)
                return 0;
        return m->legal[from * m->nstates + to] != 0;
}

const char *eb_fsm_state_name(const struct eb_fsm *m, int st)
{
        if (st < 0 || st >= m->nstates)
                return "unknown";
        return m->state_names[st];
}

int eb_fsm_move(const struct eb_fsm *m, int *state, int to, const char *who)
{
        int from = *state;

        if (eb_fsm_legal(m, from, to)) {
                *state = to;
                return 0;
        }
        atomic_fetch_add(&illegal_total, 1);
        eb_error("fsm", "%s %s: illegal state transition %s -> %s", m->name,
                 who ? who : "-", eb_fsm_state_name(m, from),
                 eb_fsm_state_name(m, to));
#if EB_DEBUG
        abort();
#endif
        *state = to;
        return -1;
}

uint64_t eb_fsm_illegal_total(void)
{
        return (uint64_t)atomic_load(&illegal_total);
}
