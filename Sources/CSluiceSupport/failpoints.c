#include <stdlib.h>
#include "sluice_failpoints.h"

int sluice_failpoints_armed = 0;

// Runs when the image is loaded, before any thread exists: the flag is never written afterwards.
__attribute__((constructor))
static void sluice_failpoints_arm(void) {
    const char *value = getenv("SLUICE_FAILPOINTS");
    sluice_failpoints_armed = value != NULL && value[0] != '\0';
}
