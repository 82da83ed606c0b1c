// Thread count shared by all parallel loops (OpenMP when available).
#ifndef TERN_CORE_THREADS_H
#define TERN_CORE_THREADS_H

// n <= 0 selects the number of online CPUs (divided among the ranks of an
// MPI job that share this machine).
void tern_set_threads(int n);
int tern_get_threads(void);
// Threads of the parallel loops the calling thread starts (each thread that
// runs its own work, e.g. a server connection, may have its own count).
void tern_threads_this_thread(int n);
double tern_now_sec(void); // monotonic clock

#endif
