// Storage for the words declared in include/ciomapbase.h, and the constants Swift's Glibc
// module cannot give (they need _GNU_SOURCE).
#define _GNU_SOURCE
#include <fcntl.h>
#include "ciomapbase.h"

int ciomap_o_direct(void) {
#ifdef O_DIRECT
    return O_DIRECT;
#else
    return 0;
#endif
}

long ciomap_bound_threads = 0;
_Thread_local void *ciomap_thread_binding = 0;
