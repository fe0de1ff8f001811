/* Direct k×k stencil for kernelnet filters: the "native" CPU backend of kernelnet.runtime.
 *
 * y = combine(bias_c + Σ_ij K_c[i][j] · x[r + i − h, c + j − h])   (cross-correlation, h = k // 2)
 * combine: raw (C = 1), abs (C = 1) or magnitude sqrt(a² + b²) (C = 2), or a rank filter (stencil_rank.h: min, max
 * or median of the taps where the one kernel is nonzero); borders zeros / reflect (no edge repeat,
 * numpy "reflect") / replicate / symmetric (edge repeated, numpy "symmetric") / reflect_symmetric (reflect before
 * each axis, symmetric after it). Every tap is evaluated (zeros included, so NaN/Inf always reach the output) in one
 * fixed order, so a pixel's value does not depend on the image size or on how the image is split into tiles.
 *
 * One pass over the image: each thread owns a band of rows, keeps the k padded source rows it needs in a ring
 * buffer, and writes each output row once. Kernel sizes 1, 3, 5 and 7 are specialised (fully unrolled, vectorised
 * over columns); other sizes use the same code with a run-time k.
 *
 * Python: correlate(src, dst, n, h, w, kernels, bias, k, channels, combine, border, threads, row0=0, row1=h,
 *                   in_kind=0, out_kind=0, stage=None)
 *   src: n·h·w values (C order): float32 (in_kind 0), uint8 read as v / 255 (1) or uint16 read as v / 65535 (2),
 *   each row converted as it is read; dst: n·(row1 − row0)·w values, output rows [row0, row1) of each image, float32
 *   (out_kind 0), uint8 (1) or uint16 (2); kernels: float32 channels·k·k; bias: float32 channels; stage: the output
 *   stage (stencil_stage.h), None for none. Returns True when every combined value is finite (every source row
 *   within k // 2 of an output row is read). Releases the GIL while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { COMBINE_RAW = 0, COMBINE_ABS = 1, COMBINE_MAGNITUDE = 2 };
enum { BORDER_ZEROS = 0, BORDER_REFLECT = 1, BORDER_REPLICATE = 2, BORDER_SYMMETRIC = 3, BORDER_REFLECT_SYMMETRIC = 4 };
#define MAX_K 31
#define MAX_THREADS 256
#define SPIN_SECONDS 2e-4 /* how long an idle thread spins before it sleeps */

/* The module is built once per instruction set (setup.py: -march=x86-64-v4 as _stencil_avx512, x86-64-v3 as
 * _stencil_avx2, the compiler's default as _stencil), and kernelnet.runtime.stencil_isa imports the best one this
 * CPU runs, or the one KERNELNET_STENCIL_ISA names: every path can be tested on any machine that runs it. */
#ifndef STENCIL_MODULE
#define STENCIL_MODULE _stencil
#endif
#define CONCAT_(a, b) a##b
#define CONCAT(a, b) CONCAT_(a, b)
#define STRINGIFY_(a) #a
#define STRINGIFY(a) STRINGIFY_(a)
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define STENCIL_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define STENCIL_ISA "avx2"
#elif defined(__aarch64__)
#define STENCIL_ISA "aarch64"
#else
#define STENCIL_ISA "baseline"
#endif

#include "stencil_convert.h"
#include "stencil_stage.h"
#include "stencil_blocked.h"
#include "stencil_rank.h"

typedef struct {
    const float *src;
    const void *srcint; /* integer frames (NULL for float32): each row is converted as it is read */
    int in_kind;        /* KIND_F32 / KIND_U8 / KIND_U16 */
    void *dst;          /* float32, or uint8 / uint16 levels (out_kind) */
    int out_kind;
    const Stage *stage; /* output stage, NULL for none */
    Py_ssize_t h, w;
    int k, channels, combine, border;
    const float *kernels, *bias;
    Py_ssize_t first, rows; /* each image's output rows: [first, first + rows) of its h */
    Py_ssize_t row0, row1;  /* output rows (image index · rows + row − first) this job writes */
    int finite, failed;
    const Rank *rank;       /* combine min / max / median: the footprint's taps (and the median's network) */
    int levels_rank;        /* a rank filter computed on 8-bit levels (stencil_rank_u8.h) */
} Job;

/* Source index of virtual index v on an axis of `len` samples, or -1 for a zero sample. */
static Py_ssize_t map_index(Py_ssize_t v, Py_ssize_t len, int border) {
    if (v >= 0 && v < len) return v;
    if (border == BORDER_ZEROS) return -1;
    if (border == BORDER_REPLICATE || len == 1) return v < 0 ? 0 : len - 1;
    if (border == BORDER_SYMMETRIC) { /* reflect repeating the edge sample (numpy "symmetric") */
        while (v < 0 || v >= len) v = v < 0 ? -v - 1 : 2 * len - 1 - v;
        return v;
    }
    if (border == BORDER_REFLECT_SYMMETRIC) { /* reflect before the start, symmetric after the end (ffmpeg) */
        while (v < 0 || v >= len) v = v < 0 ? -v : 2 * len - 1 - v;
        return v;
    }
    while (v < 0 || v >= len) v = v < 0 ? -v : 2 * (len - 1) - v; /* reflect without repeating the edge */
    return v;
}

/* Row `v` (virtual, may lie outside the image) of image `img` (or the integer image `imgint`), padded by `half` on
 * both sides, into `out`. */
static void padded_row(const Job *job, const float *img, const void *imgint, Py_ssize_t v, int half, float *out) {
    Py_ssize_t w = job->w, src_row = map_index(v, job->h, job->border);
    if (src_row < 0) {
        memset(out, 0, (size_t)(w + 2 * half) * sizeof(float));
        return;
    }
    const float *row;
    if (imgint != NULL) {
        convert_row(imgint, job->in_kind, src_row * w, out + half, w);
        row = out + half;
    } else {
        row = img + src_row * w;
        memcpy(out + half, row, (size_t)w * sizeof(float));
    }
    for (int j = 0; j < half; j++) {
        Py_ssize_t left = map_index(j - half, w, job->border), right = map_index(w + j, w, job->border);
        out[j] = left < 0 ? 0.0f : row[left];
        out[half + w + j] = right < 0 ? 0.0f : row[right];
    }
}

/* One output row from k padded rows; returns nonzero when an output value is not finite. */
static inline __attribute__((always_inline)) int
stencil_row(const float *const *rows, float *restrict out, Py_ssize_t w, int k, int channels, int combine,
            const float *restrict kern, const float *restrict bias) {
    float ka[49], kb[49]; /* k <= 7 paths only */
    const float *r[7];
    int bad = 0;
    if (k <= 7) {
        for (int i = 0; i < k * k; i++) { ka[i] = kern[i]; kb[i] = channels == 2 ? kern[k * k + i] : 0.0f; }
        for (int i = 0; i < k; i++) r[i] = rows[i];
    }
    const float ba = bias[0], bb = channels == 2 ? bias[1] : 0.0f;
    if (k <= 7 && channels == 1) {
        for (Py_ssize_t x = 0; x < w; x++) {
            float a = ba;
#pragma GCC unroll 8
            for (int i = 0; i < k; i++)
#pragma GCC unroll 8
                for (int j = 0; j < k; j++) a += ka[i * k + j] * r[i][x + j];
            float y = combine == COMBINE_ABS ? fabsf(a) : a;
            out[x] = y;
            bad |= !(fabsf(y) <= FLT_MAX);
        }
    } else if (k <= 7) {
#pragma GCC unroll 4 /* four vectors of pixels per pass: their two chains of k² dependent multiply-adds overlap
                        (magnitude 3×3 at 4K: AVX2 3.4 → 3.0 ms, AVX-512 3.2 → 2.5 ms on a Zen 4 EPYC) */
        for (Py_ssize_t x = 0; x < w; x++) {
            float a = ba, b = bb;
#pragma GCC unroll 8
            for (int i = 0; i < k; i++)
#pragma GCC unroll 8
                for (int j = 0; j < k; j++) {
                    a += ka[i * k + j] * r[i][x + j];
                    b += kb[i * k + j] * r[i][x + j];
                }
            float y = sqrtf(a * a + b * b);
            out[x] = y;
            bad |= !(fabsf(y) <= FLT_MAX);
        }
    } else {
        for (Py_ssize_t x = 0; x < w; x++) {
            float acc[2] = {bias[0], channels == 2 ? bias[1] : 0.0f};
            for (int c = 0; c < channels; c++)
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) acc[c] += kern[(c * k + i) * k + j] * rows[i][x + j];
            float y = channels == 2 ? sqrtf(acc[0] * acc[0] + acc[1] * acc[1])
                                    : (combine == COMBINE_ABS ? fabsf(acc[0]) : acc[0]);
            out[x] = y;
            bad |= !(fabsf(y) <= FLT_MAX);
        }
    }
    return bad;
}

#define SPECIALISE(K)                                                                                         \
    static int stencil_row_k##K(const float *const *rows, float *out, Py_ssize_t w, int channels, int combine, \
                                const float *kern, const float *bias) {                                      \
        return stencil_row(rows, out, w, K, channels, combine, kern, bias);                                   \
    }

SPECIALISE(1)
SPECIALISE(3)
SPECIALISE(5)
SPECIALISE(7)

#define BLOCK 256
/* Passes of COUNT taps each over the block: the taps' weights in registers, each pixel's sum in one register. */
#define TAP_PASSES(COUNT)                                                                              \
    for (; j + (COUNT) <= k; j += (COUNT)) {                                                          \
        float kt[COUNT];                                                                               \
        for (int t = 0; t < (COUNT); t++) kt[t] = kr[j + t];                                           \
        for (Py_ssize_t x = 0; x < n; x++) {                                                           \
            float v = a[x];                                                                            \
            _Pragma("GCC unroll 8") for (int t = 0; t < (COUNT); t++) v += kt[t] * src[x + j + t];     \
            a[x] = v;                                                                                  \
        }                                                                                              \
    }
/* Any k: the row in blocks of BLOCK pixels, tap by tap (each tap one vectorised multiply-add over the block), so
 * every pixel still sums bias, then its taps in (channel, row, column) order: the arithmetic of stencil_row,
 * without a per-pixel loop over a run-time k that no compiler vectorises (9×9 went from 102 ms to a few). */
static int stencil_row_any(const float *const *rows, float *out, Py_ssize_t w, int k, int channels,
                                        int combine, const float *kern, const float *bias) {
    float acc[2][BLOCK];
    int bad = 0;
    for (Py_ssize_t x0 = 0; x0 < w; x0 += BLOCK) {
        const Py_ssize_t n = w - x0 < BLOCK ? w - x0 : BLOCK;
        for (int c = 0; c < channels; c++) {
            float *restrict a = acc[c];
            for (Py_ssize_t x = 0; x < n; x++) a[x] = bias[c];
            for (int i = 0; i < k; i++) {
                const float *restrict kr = kern + (c * k + i) * k;
                const float *restrict src = rows[i] + x0;
                int j = 0;
                TAP_PASSES(8);  /* eight, then four taps per pass over the block, still added one by one */
                TAP_PASSES(4);
                for (; j < k; j++) {
                    const float kv = kr[j];
                    for (Py_ssize_t x = 0; x < n; x++) a[x] += kv * src[x + j];
                }
            }
        }
        for (Py_ssize_t x = 0; x < n; x++) {
            float y = channels == 2 ? sqrtf(acc[0][x] * acc[0][x] + acc[1][x] * acc[1][x])
                                    : (combine == COMBINE_ABS ? fabsf(acc[0][x]) : acc[0][x]);
            out[x0 + x] = y;
            bad |= !(fabsf(y) <= FLT_MAX);
        }
    }
    return bad;
}

static int run_row(const float *const *rows, float *out, Py_ssize_t w, const Job *job) {
    if (job->combine >= COMBINE_MIN) return rank_row(rows, out, w, job->k, job->combine, job->rank);
    switch (job->k) {
    case 1: return stencil_row_k1(rows, out, w, job->channels, job->combine, job->kernels, job->bias);
    case 3: return stencil_row_k3(rows, out, w, job->channels, job->combine, job->kernels, job->bias);
    case 5: return stencil_row_k5(rows, out, w, job->channels, job->combine, job->kernels, job->bias);
    case 7: return stencil_row_k7(rows, out, w, job->channels, job->combine, job->kernels, job->bias);
    default: return stencil_row_any(rows, out, w, job->k, job->channels, job->combine, job->kernels, job->bias);
    }
}

static int blocked_ok = 0; /* blocked_rows is built and not switched off (set on import) */

/* The padded source rows a job keeps for border rows and integer frames: slot v mod (k + BLOCK_ROWS − 1). */
typedef struct {
    float *rows;
    Py_ssize_t image;
    Py_ssize_t held[MAX_K + BLOCK_ROWS]; /* virtual row held by each slot (per image) */
} RowRing;

/* Source columns of the two edge segments of a row: virtual columns [−half, 2·half) then [w − 2·half, w + half)
 * (w > 2·half), −1 for a zero sample. Computed once per job. */
static void edge_map(const Job *job, Py_ssize_t *cols) {
    const int half = job->k / 2;
    for (int j = 0; j < 3 * half; j++) {
        cols[j] = map_index(j - half, job->w, job->border);
        cols[3 * half + j] = map_index(job->w - 2 * half + j, job->w, job->border);
    }
}

/* Output columns [0, half) and [w − half, w) of a row whose k source rows lie inside the image (w > 2·half), in
 * one call over the two segments side by side: outputs [0, half) come from the left one, [3·half, 4·half) from the
 * right one, the ones between straddle both and are dropped. */
static int edge_columns(const Job *job, const float *const *rows, const Py_ssize_t *cols, float *out) {
    const int k = job->k, half = k / 2;
    float seg[MAX_K][6 * (MAX_K / 2)], both[4 * (MAX_K / 2)];
    const float *seg_rows[MAX_K];
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < 6 * half; j++) seg[i][j] = cols[j] < 0 ? 0.0f : rows[i][cols[j]];
        seg_rows[i] = seg[i];
    }
    int bad = run_row(seg_rows, both, 4 * half, job); /* a rank filter flags its centre pixels there */
    for (int j = 0; j < half; j++) {
        out[j] = both[j];
        out[job->w - half + j] = both[3 * half + j];
        bad |= !(fabsf(both[j]) <= FLT_MAX) | !(fabsf(both[3 * half + j]) <= FLT_MAX);
    }
    return bad;
}

/* The k + count − 1 source rows of output rows [y, y + count) of image n into rows[]: pointers into the float32
 * image itself when every one of them is an inner row (returns 1: the caller computes columns [half, w − half)
 * and the edges apart), else padded copies in the job's ring (returns 0: full width). -1: out of memory. */
static int gather_rows(const Job *job, RowRing *ring, Py_ssize_t n, Py_ssize_t y, int count, const float **rows) {
    const int k = job->k, half = k / 2, span = k + count - 1;
    const Py_ssize_t h = job->h, w = job->w;
    const float *img = job->srcint ? NULL : job->src + n * h * w;
    const void *imgint = job->srcint ? (const char *)job->srcint + n * h * w * kind_size(job->in_kind) : NULL;
    if (!imgint && y >= half && y + count - 1 + half < h && w > 2 * half) {
        for (int i = 0; i < span; i++) rows[i] = img + (y - half + i) * w;
        return 1;
    }
    const Py_ssize_t stride = w + 2 * half;
    const int slots = k + BLOCK_ROWS - 1;
    if (ring->rows == NULL) {
        ring->rows = (float *)malloc((size_t)slots * (size_t)stride * sizeof(float));
        if (ring->rows == NULL) return -1;
    }
    if (n != ring->image) {
        ring->image = n;
        for (int s = 0; s < slots; s++) ring->held[s] = PY_SSIZE_T_MIN;
    }
    for (int i = 0; i < span; i++) {
        Py_ssize_t v = y + i - half;
        int slot = (int)(((v % slots) + slots) % slots);
        if (ring->held[slot] != v) {
            padded_row(job, img, imgint, v, half, ring->rows + slot * stride);
            ring->held[slot] = v;
        }
        rows[i] = ring->rows + slot * stride;
    }
    return 0;
}

#include "stencil_rank_u8.h"

static void *run_job(void *arg) {
    Job *job = (Job *)arg;
    if (job->levels_rank) {
        rank_levels_job(job);
        return NULL;
    }
    const int k = job->k, half = k / 2;
    const Py_ssize_t h = job->h, w = job->w;
    const int direct = job->out_kind == KIND_F32; /* float32 rows are computed in place, levels via `scratch` */
    float *scratch = direct ? NULL : (float *)malloc((size_t)BLOCK_ROWS * (size_t)w * sizeof(float));
    RowRing ring = {NULL, -1, {0}};
    const float *rows[MAX_K + BLOCK_ROWS];
    Py_ssize_t cols[6 * (MAX_K / 2)];
    int bad = 0;
    if (!direct && scratch == NULL) {
        job->failed = 1;
        return NULL;
    }
    if (w > 2 * half) edge_map(job, cols);
    job->finite = 1;
    for (Py_ssize_t g = job->row0; g < job->row1;) {
        const Py_ssize_t n = g / job->rows, y = job->first + g % job->rows;
        const Py_ssize_t left = job->rows - g % job->rows; /* rows of this image still to come */
        int count = 1;
        if (k >= BLOCKED_MIN_K && blocked_ok && job->combine < COMBINE_MIN && job->row1 - g >= BLOCK_ROWS &&
            left >= BLOCK_ROWS)
            count = BLOCK_ROWS;
        if (k == 1 && job->srcint != NULL) { /* 1×1 on an integer frame: convert and filter in one pass */
            float *out = direct ? (float *)job->dst + g * w : scratch;
            const char *row = (const char *)job->srcint + (n * h + y) * w * kind_size(job->in_kind);
            bad |= pointwise_integer_row(row, job->in_kind, out, w, job->channels, job->combine, job->kernels,
                                         job->bias);
            if (job->stage != NULL || !direct) /* k = 1 has no ring to copy: `out` stands for the unused input row */
                finish_row(job->stage, out, out, y, h, w, half, job->out_kind,
                           (char *)job->dst + g * w * kind_size(job->out_kind));
            g += 1;
            continue;
        }
        const int inplace = gather_rows(job, &ring, n, y, count, rows);
        if (inplace < 0) {
            job->failed = 1;
            break;
        }
        float *outs[BLOCK_ROWS];
        for (int r = 0; r < count; r++) outs[r] = direct ? (float *)job->dst + (g + r) * w : scratch + r * w;
        const Py_ssize_t first = inplace ? half : 0, width = inplace ? w - 2 * half : w;
        if (count == BLOCK_ROWS) {
            float *inner[BLOCK_ROWS];
            for (int r = 0; r < count; r++) inner[r] = outs[r] + first;
            const Py_ssize_t done = blocked_rows(rows, inner, width, k, job->channels, job->combine, job->kernels,
                                                 job->bias, &bad);
            if (done < width)
                for (int r = 0; r < count; r++) {
                    const float *tail[MAX_K];
                    for (int i = 0; i < k; i++) tail[i] = rows[r + i] + done;
                    bad |= run_row(tail, inner[r] + done, width - done, job);
                }
        } else {
            bad |= run_row(rows, outs[0] + first, width, job);
        }
        for (int r = 0; r < count; r++) {
            if (inplace && half > 0) bad |= edge_columns(job, rows + r, cols, outs[r]);
            const float *center = rows[r + half] + (inplace ? 0 : half);
            if (job->stage != NULL || !direct)
                finish_row(job->stage, outs[r], center, y + r, h, w, half, job->out_kind,
                           (char *)job->dst + (g + r) * w * kind_size(job->out_kind));
        }
        g += count;
    }
    free(ring.rows);
    free(scratch);
    job->finite = !bad;
    return NULL;
}

/* A persistent pool of worker threads (creating threads per call costs ~45 µs here). One caller at a time uses it;
 * a concurrent caller runs its whole image on its own thread. Reset in a forked child, which has no workers. */
static struct {
    pthread_mutex_t lock, user;
    pthread_cond_t wake, done;
    int workers, active;
    unsigned long pending, generation;
    unsigned long born[MAX_THREADS]; /* generation current when each worker was created */
    Job *jobs;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, 0, {0}, NULL};

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Spin up to SPIN_SECONDS while (*value == than) == equal: waking a sleeping thread takes ~45 µs here. */
static void spin_while(const unsigned long *value, unsigned long than, int equal) {
    double until = seconds_now() + SPIN_SECONDS;
    while ((__atomic_load_n(value, __ATOMIC_ACQUIRE) == than) == equal) {
        for (int i = 0; i < 64; i++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");
#endif
        }
        if (seconds_now() > until) return;
    }
}

static void *worker(void *arg) {
    const int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.lock);
    unsigned long seen = pool.born[id];
    pthread_mutex_unlock(&pool.lock);
    for (;;) {
        spin_while(&pool.generation, seen, 1);
        pthread_mutex_lock(&pool.lock);
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        Job *job = id < pool.active ? &pool.jobs[id] : NULL;
        pthread_mutex_unlock(&pool.lock);
        if (job == NULL) continue;
        run_job(job);
        pthread_mutex_lock(&pool.lock);
        if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_RELEASE) == 0) pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.lock);
    }
    return NULL;
}

static void pool_after_fork(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.user, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.workers = pool.active = pool.pending = 0;
}

/* Run jobs[0..count) in parallel: jobs[0] on the calling thread, the others on pool workers 1..count-1. */
static void run_parallel(Job *jobs, int count) {
    if (count == 1 || pthread_mutex_trylock(&pool.user) != 0) { /* one band, or the pool is busy: run here */
        for (int t = 0; t < count; t++) run_job(&jobs[t]);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.workers < count - 1) {
        pthread_t id;
        pool.born[pool.workers + 1] = pool.generation;
        if (pthread_create(&id, NULL, worker, (void *)(intptr_t)(pool.workers + 1)) != 0) break;
        pthread_detach(id);
        pool.workers++;
    }
    int usable = pool.workers + 1 < count ? pool.workers + 1 : count;
    pool.jobs = jobs;
    pool.active = usable;
    pool.pending = usable - 1;
    __atomic_add_fetch(&pool.generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int t = usable; t < count; t++) run_job(&jobs[t]); /* bands no worker could take */
    run_job(&jobs[0]);
    spin_while(&pool.pending, 0, 0);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.user);
}

/* The instruction sets of the module's builds that this CPU runs (as their names: "avx2", "avx512"). */
static PyObject *cpu_isas(PyObject *self, PyObject *unused) {
    PyObject *found = PyList_New(0);
    if (found == NULL) return NULL;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    const int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && /* x86-64-v3, whole */
                   __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                   __builtin_cpu_supports("f16c") && __builtin_cpu_supports("lzcnt") &&
                   __builtin_cpu_supports("movbe");
    const int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                   __builtin_cpu_supports("avx512cd");
    const char *names[2] = {v3 ? "avx2" : NULL, v4 ? "avx512" : NULL};
    for (int i = 0; i < 2; i++) {
        if (names[i] == NULL) continue;
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL || PyList_Append(found, name) < 0) { /* PyList_Append takes no reference of its own */
            Py_XDECREF(name);
            Py_DECREF(found);
            return NULL;
        }
        Py_DECREF(name);
    }
#endif
    return found;
}

static const char *const KIND_FORMATS[] = {"f", "B", "H"};
static const char *const KIND_NAMES[] = {"float32", "uint8", "uint16"};

static int get_buffer_as(PyObject *obj, Py_buffer *view, Py_ssize_t count, int writable, const char *what, int kind) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != kind_size(kind) || view->format == NULL || strcmp(view->format, KIND_FORMATS[kind]) != 0 ||
        view->len != count * kind_size(kind)) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %s buffer of %zd values", what, KIND_NAMES[kind],
                     count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *correlate(PyObject *self, PyObject *args) {
    PyObject *src_obj, *dst_obj, *kern_obj, *bias_obj, *stage_obj = Py_None;
    Py_ssize_t n, h, w;
    int k, channels, combine, border, threads;
    Py_ssize_t row0 = 0, row1 = -1;
    int in_kind = KIND_F32, out_kind = KIND_F32;
    Stage stage;
    if (!PyArg_ParseTuple(args, "OOnnnOOiiiii|nniiO", &src_obj, &dst_obj, &n, &h, &w, &kern_obj, &bias_obj, &k,
                          &channels, &combine, &border, &threads, &row0, &row1, &in_kind, &out_kind, &stage_obj))
        return NULL;
    if (row1 < 0) row1 = h;
    if (n < 1 || h < 1 || w < 1 || row0 < 0 || row1 <= row0 || row1 > h || k < 1 || k > MAX_K || k % 2 == 0 ||
        (channels != 1 && channels != 2) || combine < COMBINE_RAW || combine > COMBINE_MEDIAN ||
        (channels == 2) != (combine == COMBINE_MAGNITUDE) || border < BORDER_ZEROS || border > BORDER_REFLECT_SYMMETRIC ||
        threads < 1 || in_kind < KIND_F32 || in_kind > KIND_U16 || out_kind < KIND_F32 || out_kind > KIND_U16) {
        PyErr_SetString(PyExc_ValueError, "invalid stencil arguments");
        return NULL;
    }
    if (stage_obj != Py_None && !parse_stage(stage_obj, &stage)) return NULL;
    if (n > PY_SSIZE_T_MAX / h / w / (Py_ssize_t)sizeof(float)) { /* n·h·w floats must be addressable */
        PyErr_SetString(PyExc_ValueError, "stencil image size overflows");
        return NULL;
    }
    Py_buffer src, dst, kern, bias;
    if (get_buffer_as(src_obj, &src, n * h * w, 0, "src", in_kind) < 0) return NULL;
    const Py_ssize_t rows = row1 - row0;
    if (get_buffer_as(dst_obj, &dst, n * rows * w, 1, "dst", out_kind) < 0) { PyBuffer_Release(&src); return NULL; }
    if (get_buffer_as(kern_obj, &kern, (Py_ssize_t)channels * k * k, 0, "kernels", KIND_F32) < 0) {
        PyBuffer_Release(&src); PyBuffer_Release(&dst); return NULL;
    }
    if (get_buffer_as(bias_obj, &bias, channels, 0, "bias", KIND_F32) < 0) {
        PyBuffer_Release(&src); PyBuffer_Release(&dst); PyBuffer_Release(&kern); return NULL;
    }
    Rank rank;
    if (combine >= COMBINE_MIN && make_rank(&rank, (const float *)kern.buf, k, combine) < 0) {
        PyBuffer_Release(&src); PyBuffer_Release(&dst); PyBuffer_Release(&kern); PyBuffer_Release(&bias);
        PyErr_SetString(PyExc_ValueError, "a rank footprint needs a tap (a median an odd number, at most "
                                          STRINGIFY(MAX_MEDIAN_TAPS) ")");
        return NULL;
    }
    Py_ssize_t total = n * rows;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > total) threads = (int)total;
    Job jobs[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        jobs[t] = (Job){in_kind == KIND_F32 ? (const float *)src.buf : NULL, in_kind == KIND_F32 ? NULL : src.buf,
                        in_kind, dst.buf, out_kind, stage_obj == Py_None ? NULL : &stage,
                        h, w, k, channels, combine, border,
                        (const float *)kern.buf, (const float *)bias.buf, row0, rows, total * t / threads,
                        total * (t + 1) / threads, 1, 0, combine >= COMBINE_MIN ? &rank : NULL,
                        rank_on_levels(combine, in_kind, out_kind, stage_obj == Py_None ? NULL : &stage)};
    }
    Py_BEGIN_ALLOW_THREADS
    run_parallel(jobs, threads);
    Py_END_ALLOW_THREADS
    int failed = 0, finite = 1;
    for (int t = 0; t < threads; t++) { failed |= jobs[t].failed; finite &= jobs[t].finite; }
    PyBuffer_Release(&src); PyBuffer_Release(&dst); PyBuffer_Release(&kern); PyBuffer_Release(&bias);
    if (failed) return PyErr_NoMemory();
    return PyBool_FromLong(finite);
}

#include "stencil_levels.h"

static PyMethodDef methods[] = {
    {"cpu_isas", cpu_isas, METH_NOARGS, "cpu_isas() -> list of the optimised builds this CPU runs ('avx2', 'avx512')"},
    {"extrema", extrema, METH_VARARGS, "extrema(src) -> (min, max) of a non-empty float32 buffer"},
    {"unit_levels", unit_levels, METH_VARARGS,
     "unit_levels(src, dst, factor, shift, bits): dst = rint(clip(src * factor + shift, 0, 1) * (2^bits - 1)),\n"
     "float32 steps in numpy's order, into a uint8 (bits 8) or uint16 (bits 16) buffer of src's size"},
    {"correlate", correlate, METH_VARARGS,
     "correlate(src, dst, n, h, w, kernels, bias, k, channels, combine, border, threads, row0=0, row1=h,\n"
     "          in_kind=0, out_kind=0, stage=None) -> bool\n\n"
     "Direct k x k cross-correlation of n h x w images (float32, or uint8 / uint16 read as v / 255 / v / 65535)\n"
     "into dst (output rows [row0, row1) of each image; float32, or uint8 / uint16 levels), then the output\n"
     "stage; True when every combined value is finite."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, STRINGIFY(STENCIL_MODULE),
                                    "Direct stencil kernels (see _stencil.c).", -1, methods};

PyMODINIT_FUNC CONCAT(PyInit_, STENCIL_MODULE)(void) {
    static int registered = 0;
    check_fast_quotients();
    blocked_ok = HAVE_BLOCKED && getenv("KERNELNET_STENCIL_ROWWISE") == NULL;
    if (!registered && pthread_atfork(NULL, NULL, pool_after_fork) == 0) registered = 1;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "isa", STENCIL_ISA) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
