#ifndef SLUICE_FAILPOINTS_H
#define SLUICE_FAILPOINTS_H

/// Nonzero when SLUICE_FAILPOINTS is set and not empty, decided once when the binary is loaded
/// (before main, before any thread) and never written again.
extern int sluice_failpoints_armed;

/// Read by `Failpoint.hit` first, so a hit while the variable is unset is one load and a branch.
static inline __attribute__((always_inline)) int sluice_failpoints_are_armed(void) {
    return sluice_failpoints_armed;
}

#endif
