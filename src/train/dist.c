/*
 * dist.c — MPI when launched by mpirun, one process otherwise (see dist.h).
 */
#include "train/dist.h"

#include "core/error.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int dist_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK");
}

int dist_init(struct dist *d, char *err, size_t errlen)
{
    d->rank = 0;
    d->size = 1;
    d->mpi = 0;
    if (!dist_launched())
        return 0;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS ||
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &d->size) != MPI_SUCCESS) {
        if (err && errlen)
            snprintf(err, errlen, "MPI_Init failed (launched by mpirun, but MPI could not start)");
        return AISLE_EIO;
    }
    d->mpi = 1;
    return 0;
}

void dist_finalize(struct dist *d)
{
    if (d->mpi)
        MPI_Finalize();
    d->mpi = 0;
}

static int sum(struct dist *d, void *x, size_t n, MPI_Datatype t, size_t elsize)
{
    if (!d->mpi || d->size == 1)
        return 0;
    char *p = x;
    while (n) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (MPI_Allreduce(MPI_IN_PLACE, p, k, t, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return AISLE_EIO;
        p += (size_t)k * elsize;
        n -= (size_t)k;
    }
    return 0;
}

int dist_sum_f32(struct dist *d, float *x, size_t n)
{
    return sum(d, x, n, MPI_FLOAT, sizeof *x);
}

int dist_sum_f64(struct dist *d, double *x, size_t n)
{
    return sum(d, x, n, MPI_DOUBLE, sizeof *x);
}

int dist_barrier(struct dist *d)
{
    if (!d->mpi)
        return 0;
    return MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : AISLE_EIO;
}

int dist_bcast(struct dist *d, void *p, size_t n)
{
    if (!d->mpi || d->size == 1)
        return 0;
    if (n > (size_t)INT_MAX)
        return AISLE_ETOOBIG;
    return MPI_Bcast(p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : AISLE_EIO;
}

void dist_abort(struct dist *d, int code)
{
    if (d->mpi)
        MPI_Abort(MPI_COMM_WORLD, code);
}
