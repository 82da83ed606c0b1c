// Data-parallel runs over MPI (optional at build time; docs/SCALING.md). The
// trainer talks to this layer only. Built without MPI, or started without
// mpirun, it is one process of rank 0 in a world of 1 and every call is a no-op.
//
// Sums are bit-reproducible: a ring all-reduce written here on point-to-point
// messages (never MPI_Allreduce, whose summation order is the library's
// choice) adds each chunk in an order fixed by the ring, so two runs with the
// same rank count give the same bits, and every rank ends with the same bits.
//
// Output: only rank 0 writes to stderr (the others' stderr goes to /dev/null
// at init unless TERN_DIST_ALL_STDERR=1); an error that only one rank meets reaches rank 0 through
// tern_dist_agree, or is printed by that rank itself by tern_dist_fail.
#ifndef TERN_CORE_DIST_H
#define TERN_CORE_DIST_H

#include <stdint.h>

// Starts MPI when the process was launched by mpirun (Open MPI's or a PMI
// launcher's environment); otherwise does nothing. Returns 0, or -1 with an error.
int tern_dist_init(int *argc, char ***argv);
// Ends the job: every rank calls it with its own exit status `rc`. When the
// ranks all get here (within TERN_DIST_EXIT_WAIT seconds, default 10, of a
// failing rank), the status is the worst of all ranks' and rank 0 prints a
// failure that only another rank met ("tern: rank K: ..."). A failing rank
// whose peers do not come (they wait in a collective for it) prints its
// error on its real stderr and aborts the job (MPI_Abort), so no rank hangs.
// Returns the exit status (rc itself when there is no MPI job).
int tern_dist_finish(int rc);
// 1 when built with MPI support.
int tern_dist_built(void);
int tern_dist_rank(void);
int tern_dist_size(void);
// Ranks on this machine (cores are shared among them when --threads is not given).
int tern_dist_local_size(void);

// Collective: combines each rank's rc. Returns 0 when every rank's rc is 0,
// else -1 on every rank, with the error of the lowest failing rank as every
// rank's error ("rank K: ..." when K > 0). A failure agreed on this way is
// marked agreed, and the CLI then exits without aborting the job.
int tern_dist_agree(int rc);
// 1 when the error being returned was agreed by every rank (tern_dist_agree),
// so every rank is leaving together.
int tern_dist_error_agreed(void);

// In-place sums over ranks, the same bits on every rank.
int tern_dist_sum_f32(float *buf, int64_t n);
int tern_dist_sum_f64(double *buf, int64_t n);
// Rank 0's bytes to every rank.
int tern_dist_bcast(void *buf, int64_t bytes);
// Collective: -1 with an error naming the first rank whose value differs from rank 0's.
int tern_dist_check_same(uint64_t value, const char *what);

// Wall time spent inside this layer's collectives, and the bytes this rank
// sent in them, since the start.
double tern_dist_comm_seconds(void);
int64_t tern_dist_bytes_sent(void);
int64_t tern_dist_messages_sent(void);

#endif
