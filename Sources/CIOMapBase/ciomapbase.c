// Storage for the words declared in include/ciomapbase.h.
#include "ciomapbase.h"

long ciomap_bound_threads = 0;
_Thread_local void *ciomap_thread_binding = 0;
