/*
 * dist.h — data-parallel processes over MPI (OpenMPI), only when launched by
 * mpirun: dist_init looks for OMPI_COMM_WORLD_SIZE or PMIX_RANK in the
 * environment and calls MPI_Init only then, so an ordinary run (and a
 * sanitizer run) never touches MPI. Without MPI every call is the identity
 * for one process: rank 0 of 1.
 *
 * Design: the trainer needs four collectives — a sum of float gradients (in
 * place), a sum of doubles (losses), a barrier and a broadcast of a few
 * bytes; MPI_Allreduce with MPI_SUM is deterministic for a fixed process
 * count in OpenMPI's default algorithms on one machine.
 *
 * THREAD SAFETY: call from the main thread only (MPI_THREAD_FUNNELED).
 */
#ifndef AISLE_TRAIN_DIST_H
#define AISLE_TRAIN_DIST_H

#include <stddef.h>

struct dist {
    int rank, size;
    int mpi; /* 1 when MPI_Init was called */
};

/* 1 when the environment says this process was started by mpirun. */
int dist_launched(void);
/* Start MPI when launched by mpirun (else rank 0 of 1). 0 or AISLE_EIO with detail in err. */
int dist_init(struct dist *d, char *err, size_t errlen);
/* MPI_Finalize when started. */
void dist_finalize(struct dist *d);
/* In-place sum over processes. 0 or AISLE_EIO. Counts above INT_MAX go in chunks. */
int dist_sum_f32(struct dist *d, float *x, size_t n);
int dist_sum_f64(struct dist *d, double *x, size_t n);
int dist_barrier(struct dist *d);
/* Rank 0's n bytes to every process. 0 or AISLE_EIO. */
int dist_bcast(struct dist *d, void *p, size_t n);
/* Stop every process after a fatal error on one (MPI_Abort); a no-op without MPI. */
void dist_abort(struct dist *d, int code);

#endif
