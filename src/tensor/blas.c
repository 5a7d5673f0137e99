/*
 * blas.c — OpenBLAS sgemm and thread count for the trainer (tensor.h):
 * BLAS stays inside src/tensor.
 */
#include "tensor/tensor.h"

#include <cblas.h>
#include <unistd.h>

void tensor_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

void tensor_blas_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    openblas_set_num_threads(n);
}

int tensor_blas_threads(void)
{
    return openblas_get_num_threads();
}
