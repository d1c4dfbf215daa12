/*
 * eb_fsm: checked state machines. A machine is one enum (0..nstates-1),
 * its state names and a table of the legal transitions; every change of
 * state goes through eb_fsm_move(), which checks it against the table.
 *
 * An illegal transition is a bug in the caller. Debug builds (EB_DEBUG=1:
 * every build but release, see the Makefile) abort on it, so the tests
 * under ASan stop at the first one; release builds log it with both state
 * names, count it (eb_fsm_illegal_total()) and carry it out, so a running
 * bridge keeps the behaviour it had.
 *
 * Runs on whichever thread owns the machine; only the counter is shared.
 */
#ifndef EB_FSM_H
#define EB_FSM_H

#include <stdint.h>

#ifndef EB_DEBUG
#define EB_DEBUG 0
#endif

struct eb_fsm {
        const char *name;               /* "source", in log lines */
        int nstates;                    /* states are 0 .. nstates-1 */
        const char *const *state_names; /* nstates entries */
        const unsigned char *legal;     /* nstates x nstates, [from][to] */
};

/* 1 when @p from -> @p to is in the table (out of range: 0). */
int eb_fsm_legal(const struct eb_fsm *m, int from, int to);

/* The checked transition: @p *state becomes @p to. An illegal one aborts
 * (EB_DEBUG) or is logged, counted and carried out; @p who names the
 * instance (a source's name) in the log line. @returns 0 when legal,
 * -1 when not. */
int eb_fsm_move(const struct eb_fsm *m, int *state, int to, const char *who);

/* The name of @p st, "unknown" out of range. */
const char *eb_fsm_state_name(const struct eb_fsm *m, int st);

/* Illegal transitions seen by this process, all machines together. */
uint64_t eb_fsm_illegal_total(void);

#endif
