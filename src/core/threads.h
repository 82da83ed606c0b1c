// Thread count shared by all parallel loops (OpenMP when available).
#ifndef TERN_CORE_THREADS_H
#define TERN_CORE_THREADS_H

// n <= 0 selects the number of online CPUs (divided among the ranks of an
// MPI job that share this machine).
void tern_set_threads(int n);
int tern_get_threads(void);
double tern_now_sec(void); // monotonic clock

#endif
