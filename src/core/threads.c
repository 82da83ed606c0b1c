#include "core/threads.h"

#include <time.h>

#include "core/dist.h"
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int n_threads = 0;

void tern_set_threads(int n) {
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
        // Ranks of an MPI job on one machine share its cores.
        int ranks = tern_dist_local_size();
        n = n / ranks > 0 ? n / ranks : 1;
    }
    n_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int tern_get_threads(void) {
    if (n_threads == 0) tern_set_threads(0);
    return n_threads;
}

void tern_threads_this_thread(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n > 0 ? n : 1);
#else
    (void)n;
#endif
}

double tern_now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
