/*
 * cpu.c — runtime CPU feature detection and the choice of kernel path.
 *
 * Design: cpuid (leaf 1 and 7) plus xgetbv (the OS saves the YMM/ZMM state)
 * are read once; the path is the best supported one unless AISLE_TENSOR_PATH
 * or tensor_set_path says otherwise. The chosen table is read by every kernel
 * call through one relaxed atomic pointer.
 *
 * Invariant: the current table is always one the CPU can run.
 */
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include "core/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static int has_avx2, has_avx512;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static _Atomic(const struct tensor_kernels *) cur_kernels;
static atomic_int cur_path;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}
#endif

static void cpu_detect(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
        unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
        int ymm_os = (xcr0 & 6) == 6, zmm_os = (xcr0 & 0xe6) == 0xe6;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            int avx2 = (b >> 5) & 1;
            int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
                avx512vl = (b >> 31) & 1;
            has_avx2 = ymm_os && avx && avx2 && fma && f16c;
            has_avx512 = has_avx2 && zmm_os && avx512f && avx512dq && avx512bw && avx512vl;
        }
    }
#endif
    /* AVX-512 kernels have not yet run on a CPU that has AVX-512 (they were
     * written on a Zen 3), so the automatic choice stops at AVX2; ask for them
     * with AISLE_TENSOR_PATH=avx512 or tensor_set_path() until verified. */
    int path = has_avx2 ? TENSOR_PATH_AVX2 : TENSOR_PATH_SCALAR;
    const char *env = getenv("AISLE_TENSOR_PATH");
    if (env) {
        if (!strcmp(env, "scalar"))
            path = TENSOR_PATH_SCALAR;
        else if (!strcmp(env, "avx2") && has_avx2)
            path = TENSOR_PATH_AVX2;
        else if (!strcmp(env, "avx512") && has_avx512)
            path = TENSOR_PATH_AVX512;
    }
    atomic_store(&cur_path, path);
    atomic_store(&cur_kernels, path == TENSOR_PATH_AVX512 ? &tensor_kernels_avx512
                               : path == TENSOR_PATH_AVX2 ? &tensor_kernels_avx2
                                                          : &tensor_kernels_scalar);
}

int tensor_cpu_has_avx2(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return has_avx2;
}

int tensor_cpu_has_avx512(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return has_avx512;
}

const struct tensor_kernels *tensor_kernels(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return atomic_load_explicit(&cur_kernels, memory_order_relaxed);
}

int tensor_set_path(enum tensor_path path)
{
    pthread_once(&cpu_once, cpu_detect);
    if (path == TENSOR_PATH_AUTO)
        path = has_avx2 ? TENSOR_PATH_AVX2 : TENSOR_PATH_SCALAR; /* see cpu_detect */
    const struct tensor_kernels *k;
    switch (path) {
    case TENSOR_PATH_SCALAR: k = &tensor_kernels_scalar; break;
    case TENSOR_PATH_AVX2: k = has_avx2 ? &tensor_kernels_avx2 : NULL; break;
    case TENSOR_PATH_AVX512: k = has_avx512 ? &tensor_kernels_avx512 : NULL; break;
    default: k = NULL; break;
    }
    if (!k)
        return AISLE_EINVAL;
    atomic_store(&cur_path, (int)path);
    atomic_store(&cur_kernels, k);
    return 0;
}

enum tensor_path tensor_path(void)
{
    pthread_once(&cpu_once, cpu_detect);
    return (enum tensor_path)atomic_load(&cur_path);
}

const char *tensor_path_name(enum tensor_path path)
{
    switch (path) {
    case TENSOR_PATH_AUTO: return "auto";
    case TENSOR_PATH_SCALAR: return "scalar";
    case TENSOR_PATH_AVX2: return "avx2";
    case TENSOR_PATH_AVX512: return "avx512";
    }
    return "?";
}

int tensor_scratch_reserve(struct tensor_scratch *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    void *d = aligned_alloc(64, (cap + 63) & ~(size_t)63);
    if (!d)
        return AISLE_ENOMEM;
    free(s->data);
    s->data = d;
    s->cap = cap;
    return 0;
}

void tensor_scratch_release(struct tensor_scratch *s)
{
    free(s->data);
    s->data = NULL;
    s->cap = 0;
}
