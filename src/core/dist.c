#include "core/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"

static double comm_seconds;
static int64_t bytes_sent, messages_sent;
static int error_agreed;

double tern_dist_comm_seconds(void) { return comm_seconds; }
int64_t tern_dist_bytes_sent(void) { return bytes_sent; }
int64_t tern_dist_messages_sent(void) { return messages_sent; }
int tern_dist_error_agreed(void) { return error_agreed; }

static int env_int(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : -1;
}

// The world size an MPI launcher (Open MPI's mpirun, or a PMI one such as
// MPICH's hydra or Slurm's srun) gave this process, or -1.
static int launched_size(void) {
    int n = env_int("OMPI_COMM_WORLD_SIZE");
    return n >= 0 ? n : env_int("PMI_SIZE") >= 0 ? env_int("PMI_SIZE") : env_int("PMIX_RANK") >= 0 ? 1 : -1;
}

#ifdef TERN_HAVE_MPI
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

static int active, rank, size = 1, local_size = 1;
static int real_stderr = 2;
// Work and the exit handshake use separate communicators, so a rank that
// leaves early can never be matched with a peer's collective in the middle
// of training.
static MPI_Comm work = MPI_COMM_NULL, leave = MPI_COMM_NULL;

int tern_dist_built(void) { return 1; }

int tern_dist_init(int *argc, char ***argv) {
    // A plain run (no launcher) stays a single process and never touches MPI.
    if (launched_size() < 0) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return tern_errorf("MPI_Init failed");
    active = 1;
    MPI_Comm_dup(MPI_COMM_WORLD, &work);
    MPI_Comm_dup(MPI_COMM_WORLD, &leave);
    MPI_Comm_rank(work, &rank);
    MPI_Comm_size(work, &size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    // Progress, announcements and errors every rank meets alike: rank 0 says
    // them (TERN_DIST_ALL_STDERR=1 keeps every rank's stderr, for debugging).
    if (rank > 0 && !getenv("TERN_DIST_ALL_STDERR")) {
        real_stderr = dup(2);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2), close(null);
    }
    return 0;
}

int tern_dist_rank(void) { return rank; }
int tern_dist_size(void) { return size; }
int tern_dist_local_size(void) { return local_size; }

// The ring's receive buffer (one chunk, the last being the largest: S/N
// bytes rounded up), kept from step to step.
static char *tmp;
static size_t tmp_cap;

static void ring_buffer_free(void) {
    free(tmp);
    tmp = NULL, tmp_cap = 0;
}

static void abort_job(int code) {
    if (rank > 0) dprintf(real_stderr, "tern: rank %d: %s\n", rank, tern_last_error());
    dprintf(real_stderr, "tern: rank %d failed alone; stopping every rank\n", rank);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

int tern_dist_finish(int rc) {
    if (!active) return rc;
    int mine = rc ? rank : size, first = size, done = 0;
    MPI_Request req;
    MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, leave, &req);
    double wait = getenv("TERN_DIST_EXIT_WAIT") ? atof(getenv("TERN_DIST_EXIT_WAIT")) : 10.0;
    double t0 = tern_now_sec();
    while (MPI_Test(&req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done) {
        if (rc && !error_agreed && tern_now_sec() - t0 > wait) abort_job(rc);
        usleep(1000);
    }
    if (first < size) { // someone failed; rank 0 says so when it was not rank 0 itself
        char msg[TERN_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", tern_last_error());
        MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, leave);
        if (rank == 0 && first > 0) fprintf(stderr, "tern: rank %d: %s\n", first, msg);
        int code = rc, worst;
        MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, leave);
        rc = worst ? worst : 1;
    }
    ring_buffer_free();
    MPI_Comm_free(&work);
    MPI_Comm_free(&leave);
    MPI_Finalize();
    active = 0;
    return rc;
}

int tern_dist_agree(int rc) {
    if (size == 1) return rc ? -1 : 0;
    int mine = rc ? rank : size, first;
    double t0 = tern_now_sec();
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, work);
    if (first < size) {
        char msg[TERN_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", tern_last_error());
        MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, work);
        if (first > 0) tern_errorf("rank %d: %s", first, msg);
        else tern_errorf("%s", msg);
        error_agreed = 1;
    }
    comm_seconds += tern_now_sec() - t0;
    return first < size ? -1 : 0;
}

// One point-to-point exchange with the ring neighbours, in pieces that fit
// MPI's int counts.
static void exchange(const char *send, int64_t n_send, char *recv, int64_t n_recv, size_t esz, int right, int left) {
    const int64_t piece = (int64_t)1 << 26; // elements
    for (int64_t o = 0; o < n_send || o < n_recv; o += piece) {
        int s = (int)(n_send - o < 0 ? 0 : n_send - o < piece ? n_send - o : piece);
        int r = (int)(n_recv - o < 0 ? 0 : n_recv - o < piece ? n_recv - o : piece);
        MPI_Sendrecv(send + (size_t)o * esz, s * (int)esz, MPI_BYTE, right, 7, recv + (size_t)o * esz, r * (int)esz,
                     MPI_BYTE, left, 7, work, MPI_STATUS_IGNORE);
        bytes_sent += (int64_t)s * (int64_t)esz;
        messages_sent += s > 0;
    }
}

typedef void (*add_fn)(void *dst, const void *src, int64_t n);
static void add_f32(void *dst, const void *src, int64_t n) {
    float *d = dst;
    const float *s = src;
    for (int64_t i = 0; i < n; i++) d[i] += s[i];
}
static void add_f64(void *dst, const void *src, int64_t n) {
    double *d = dst;
    const double *s = src;
    for (int64_t i = 0; i < n; i++) d[i] += s[i];
}

// Ring all-reduce (reduce-scatter, then all-gather) over `size` chunks.
// Chunk c is summed along the ring starting at rank c, always in that order:
// the result does not depend on timing, and every rank receives the same bits.
static int ring_sum(void *buf, int64_t n, size_t esz, add_fn add) {
    if (size == 1 || n == 0) return 0;
    double t0 = tern_now_sec();
    char *b = buf;
#define CHUNK_LO(c) ((int64_t)(c) * n / size)
#define CHUNK_N(c) (CHUNK_LO((c) + 1) - CHUNK_LO(c))
    size_t need = (size_t)(CHUNK_N(size - 1) + 1) * esz;
    if (need > tmp_cap) {
        free(tmp);
        tmp_cap = 0;
        if (!(tmp = malloc(need))) return tern_errorf("out of memory for a gradient exchange of %lld values", (long long)n);
        tmp_cap = need;
    }
    int right = (rank + 1) % size, left = (rank + size - 1) % size;
    for (int s = 0; s < size - 1; s++) {
        int cs = (rank - s + 2 * size) % size, cr = (rank - s - 1 + 2 * size) % size;
        exchange(b + CHUNK_LO(cs) * esz, CHUNK_N(cs), tmp, CHUNK_N(cr), esz, right, left);
        add(b + CHUNK_LO(cr) * esz, tmp, CHUNK_N(cr));
    }
    for (int s = 0; s < size - 1; s++) {
        int cs = (rank + 1 - s + 2 * size) % size, cr = (rank - s + 2 * size) % size;
        exchange(b + CHUNK_LO(cs) * esz, CHUNK_N(cs), b + CHUNK_LO(cr) * esz, CHUNK_N(cr), esz, right, left);
    }
#undef CHUNK_LO
#undef CHUNK_N
    comm_seconds += tern_now_sec() - t0;
    return 0;
}

int tern_dist_sum_f32(float *buf, int64_t n) { return ring_sum(buf, n, sizeof *buf, add_f32); }
int tern_dist_sum_f64(double *buf, int64_t n) { return ring_sum(buf, n, sizeof *buf, add_f64); }

int tern_dist_bcast(void *buf, int64_t bytes) {
    if (size == 1) return 0;
    double t0 = tern_now_sec();
    const int64_t piece = (int64_t)1 << 30;
    for (int64_t o = 0; o < bytes; o += piece)
        MPI_Bcast((char *)buf + o, (int)(bytes - o < piece ? bytes - o : piece), MPI_BYTE, 0, work);
    comm_seconds += tern_now_sec() - t0;
    return 0;
}

int tern_dist_check_same(uint64_t value, const char *what) {
    if (size == 1) return 0;
    uint64_t *all = malloc((size_t)size * sizeof *all);
    if (!all) return tern_dist_agree(tern_errorf("out of memory"));
    double t0 = tern_now_sec();
    MPI_Allgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, work);
    comm_seconds += tern_now_sec() - t0;
    int bad = 0;
    for (int r = 1; r < size && !bad; r++)
        if (all[r] != all[0]) bad = r;
    if (bad) {
        tern_errorf("%s differs between rank 0 (%016llx) and rank %d (%016llx): the ranks went out of step", what,
                    (unsigned long long)all[0], bad, (unsigned long long)all[bad]);
        error_agreed = 1; // every rank saw the same values
    }
    free(all);
    return bad ? -1 : 0;
}

#else // built without MPI: one process

int tern_dist_built(void) { return 0; }
int tern_dist_init(int *argc, char ***argv) {
    // N copies of a whole run would write the same files: refuse.
    if (launched_size() > 1)
        return tern_errorf("started by mpirun with %d ranks, but this tern was built without MPI: install "
                           "libopenmpi-dev and rebuild (cmake finds it), or run one process",
                           launched_size());
    return 0;
}
int tern_dist_finish(int rc) { return rc; }
int tern_dist_rank(void) { return 0; }
int tern_dist_size(void) { return 1; }
int tern_dist_local_size(void) { return 1; }
int tern_dist_agree(int rc) { return rc ? -1 : 0; }
int tern_dist_sum_f32(float *buf, int64_t n) { return 0; }
int tern_dist_sum_f64(double *buf, int64_t n) { return 0; }
int tern_dist_bcast(void *buf, int64_t bytes) { return 0; }
int tern_dist_check_same(uint64_t value, const char *what) { return 0; }

#endif
