/*
 * tpool.c — the persistent thread pool behind tensor_matmul and the forward.
 *
 * Design: nthreads - 1 workers are started once; a job is published by
 * bumping a generation counter. Workers spin on it for a short while (the
 * next matmul of a forward usually follows within microseconds), then sleep
 * on a futex. The caller runs thread 0's share itself and waits for a pending
 * counter to reach zero the same way (spin, then futex). Nothing is allocated
 * per job.
 *
 * tpool_run_dynamic lets the caller revoke the job from workers that have
 * not started when its own share is done (for work shared through a counter:
 * on a loaded machine a descheduled worker then costs nothing).
 *
 * Invariants: `gen` only grows; a worker runs fn at most once per generation,
 * exactly once unless its claim was revoked; `pending` counts workers that have not finished the
 * current generation; futex_wake is only called when a sleeper count says
 * somebody may be asleep (seq_cst ordering of the counter and the word makes
 * the "check, then sleep" race safe: futex_wait re-checks the word).
 */
#include "tensor/tensor.h"
#include "tensor/tensor_impl.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a waiting thread spins before it sleeps. Long enough to bridge
 * the gap between two matmuls of one forward (a few µs), short enough not to
 * burn a shared core between tokens. */
#define TPOOL_SPIN_NS 50000

struct tpool_worker {
    struct tpool *pool;
    int ith;
    pthread_t thread;
    /* The generation offered to this worker, 0 once taken or revoked: the
     * worker and (in tpool_run_dynamic) the caller race to swap it to 0, and
     * only the winner decides whether this worker runs the job. */
    _Alignas(64) atomic_int claim;
};

struct tpool {
    int nthreads;
    struct tpool_worker *workers; /* (nthreads - 1) */
    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
    _Alignas(64) atomic_int gen;      /* futex word: job generation */
    atomic_int gen_sleepers;          /* workers asleep (or about to be) on gen */
    atomic_int stop;
    _Alignas(64) atomic_int pending;  /* futex word: workers still running */
    atomic_int pending_sleeper;       /* 1 while the caller sleeps on pending */
    struct tensor_scratch scratch;    /* matmul scratch, owned */
};

static void futex_wait(atomic_int *addr, int val)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_int *addr)
{
    syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spin up to TPOOL_SPIN_NS while *addr == val; 1 when it changed. The
 * clock is read every 64 pauses (a pause is 10-140 cycles depending on the CPU). */
static int spin_while(atomic_int *addr, int val)
{
    int64_t end = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(addr, memory_order_acquire) != val)
            return 1;
        cpu_relax();
        if ((i & 63) == 0) {
            int64_t t = now_ns();
            if (!end)
                end = t + TPOOL_SPIN_NS;
            else if (t > end)
                return 0;
        }
    }
}

/* Wait until *addr != val: spin, then sleep, counting ourselves in *sleepers. */
static void wait_change(atomic_int *addr, int val, atomic_int *sleepers)
{
    if (spin_while(addr, val))
        return;
    while (atomic_load(addr) == val) {
        atomic_fetch_add(sleepers, 1);
        if (atomic_load(addr) == val)
            futex_wait(addr, val);
        atomic_fetch_sub(sleepers, 1);
    }
}

static void *tpool_main(void *arg)
{
    struct tpool_worker *w = arg;
    struct tpool *p = w->pool;
    int seen = 0;
    for (;;) {
        wait_change(&p->gen, seen, &p->gen_sleepers);
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (atomic_load(&p->stop))
            return NULL;
        int g = seen;
        if (!atomic_compare_exchange_strong(&w->claim, &g, 0))
            continue; /* revoked: the caller did this job without us */
        p->fn(p->ctx, w->ith, p->nthreads);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->pending_sleeper))
            futex_wake(&p->pending);
    }
}

struct tpool *tpool_new(int nthreads)
{
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    if (nthreads > 1024)
        nthreads = 1024;
    struct tpool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->nthreads = nthreads;
    p->workers = calloc((size_t)nthreads, sizeof(*p->workers));
    if (!p->workers) {
        free(p);
        return NULL;
    }
    int started = 0;
    for (int i = 1; i < nthreads; i++) {
        p->workers[i].pool = p;
        p->workers[i].ith = i;
        if (pthread_create(&p->workers[i].thread, NULL, tpool_main, &p->workers[i]) != 0)
            goto fail;
        started = i;
    }
    return p;
fail:
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen);
    for (int i = 1; i <= started; i++)
        pthread_join(p->workers[i].thread, NULL);
    free(p->workers);
    free(p);
    return NULL;
}

void tpool_free(struct tpool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake(&p->gen);
    for (int i = 1; i < p->nthreads; i++)
        pthread_join(p->workers[i].thread, NULL);
    tensor_scratch_release(&p->scratch);
    free(p->workers);
    free(p);
}

int tpool_nthreads(const struct tpool *p)
{
    return p ? p->nthreads : 1;
}

static void run(struct tpool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx, int dynamic)
{
    if (!p || p->nthreads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->nthreads - 1);
    int g = atomic_load(&p->gen) + 1;
    for (int i = 1; i < p->nthreads; i++)
        atomic_store(&p->workers[i].claim, g);
    atomic_store(&p->gen, g); /* seq_cst: publishes fn, ctx, pending, claims */
    if (atomic_load(&p->gen_sleepers) > 0)
        futex_wake(&p->gen);
    fn(ctx, 0, p->nthreads);
    if (dynamic) {
        /* fn shares its work through its own counter, so a worker that has
         * not started by now has nothing left to do: take its claim back
         * instead of waiting for the scheduler to run it. */
        for (int i = 1; i < p->nthreads; i++) {
            int want = g;
            if (atomic_compare_exchange_strong(&p->workers[i].claim, &want, 0))
                atomic_fetch_sub(&p->pending, 1);
        }
    }
    int v = atomic_load_explicit(&p->pending, memory_order_acquire);
    if (v == 0)
        return;
    /* pending only falls: waiting for it to leave v, then re-checking, is a spin until 0 */
    while (spin_while(&p->pending, v))
        if ((v = atomic_load_explicit(&p->pending, memory_order_acquire)) == 0)
            return;
    atomic_store(&p->pending_sleeper, 1);
    while ((v = atomic_load(&p->pending)) != 0)
        futex_wait(&p->pending, v);
    atomic_store(&p->pending_sleeper, 0);
}

void tpool_run(struct tpool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    run(p, fn, ctx, 0);
}

void tpool_run_dynamic(struct tpool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    run(p, fn, ctx, 1);
}

struct tensor_scratch *tpool_scratch(struct tpool *p)
{
    return p ? &p->scratch : NULL;
}
