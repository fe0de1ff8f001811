/* Register-blocked rows for kernels above 7×7 on AVX-512: BLOCK_ROWS output rows at once, so that each source
 * vector loaded feeds up to BLOCK_ROWS multiply-adds (output row r takes source row s with kernel row s − r).
 *
 * The accumulators — 4 rows × 6 vectors of 16 floats for one kernel, 4 × 3 × 2 for a magnitude pair — stay in
 * the 32 zmm registers (GCC vector extensions, in the x86-64-v4 build alone, which runs only where the CPU has
 * AVX-512: with 16 registers they would spill, and the row-at-a-time path runs there instead; a 4 rows × 3 ymm variant
 * measured no faster than it with everything compiled for AVX2). Measured at 1080p, 2 threads, against the
 * row-at-a-time path: 9×9 2.5 → 1.6–1.7 ms, 15×15 6.9 → 4.2–4.6 ms, 31×31 27.6 → 15.1–17.0 ms single and
 * 54.7 → 34.5–37.6 ms magnitude. Every pixel still sums its bias, then its taps in
 * (kernel row, kernel column) order, one multiply-add at a time — the arithmetic of stencil_row_any, so a row
 * gives the same bits in a block, alone, in a tile or on another thread. blocked_rows computes the columns
 * [0, n_done) it covers with whole vectors and returns n_done; the caller finishes the row with stencil_row_any.
 * Included by _stencil.c only. */
#ifndef KERNELNET_STENCIL_BLOCKED_H
#define KERNELNET_STENCIL_BLOCKED_H

#define BLOCK_ROWS 4

#if defined(__GNUC__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) /* the x86-64-v4 build */
#pragma GCC diagnostic ignored "-Wpsabi" /* 64-byte vectors only pass between always-inlined helpers */
#define HAVE_BLOCKED 1
#define LANES 16
typedef float vfloat __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(LANES * sizeof(int32_t))));

static inline __attribute__((always_inline)) vfloat vload(const float *p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void vstore(float *p, vfloat v) { memcpy(p, &v, sizeof v); }

/* One kernel row's taps for the output rows of a block that use source row s (r = s − i for kernel row i). */
#define TAPS_OF(ROW, ACC, NV)                                                                                \
    if (s - (ROW) >= 0 && s - (ROW) < k) {                                                                     \
        const vfloat wt = (vfloat){0} + kern[((s - (ROW)) * k + j)];                                          \
        for (int v = 0; v < (NV); v++) ACC[v] += wt * sv[v];                                                  \
    }
/* The same for both kernels of a magnitude pair, sharing the loads. */
#define PAIR_TAPS_OF(ROW, ACC_A, ACC_B)                                                                      \
    if (s - (ROW) >= 0 && s - (ROW) < k) {                                                                     \
        const vfloat wa = (vfloat){0} + kern[((s - (ROW)) * k + j)];                                          \
        const vfloat wb = (vfloat){0} + kern[k * k + ((s - (ROW)) * k + j)];                                  \
        for (int v = 0; v < PAIR_NV; v++) {                                                                   \
            ACC_A[v] += wa * sv[v];                                                                           \
            ACC_B[v] += wb * sv[v];                                                                           \
        }                                                                                                     \
    }
#define PAIR_NV 3

#define SINGLE_NV 6
#define STORE_SINGLE(ROW, ACC)                                                                                \
    for (int v = 0; v < SINGLE_NV; v++)                                                                               \
        vstore(out[ROW] + x0 + v * LANES, combine == COMBINE_ABS ? (vfloat)((vint)ACC[v] & 0x7fffffff) : ACC[v]);
#define STORE_PAIR(ROW, ACC_A, ACC_B)                                                                         \
    for (int v = 0; v < PAIR_NV; v++) vstore(out[ROW] + x0 + v * LANES, ACC_A[v] * ACC_A[v] + ACC_B[v] * ACC_B[v]);

/* One kernel: 4 rows × 4 vectors (16 accumulators). */
#define SINGLE_BODY                                                                                            \
    for (; x0 + SINGLE_NV * LANES <= n; x0 += SINGLE_NV * LANES) {                                            \
        vfloat a0[SINGLE_NV], a1[SINGLE_NV], a2[SINGLE_NV], a3[SINGLE_NV];                                    \
        for (int v = 0; v < SINGLE_NV; v++) a0[v] = a1[v] = a2[v] = a3[v] = (vfloat){0} + bias[0];          \
        for (int s = 0; s < k + BLOCK_ROWS - 1; s++) {                                                        \
            const float *restrict row = src[s] + x0;                                                          \
            for (int j = 0; j < k; j++) {                                                                     \
                vfloat sv[SINGLE_NV];                                                                         \
                for (int v = 0; v < SINGLE_NV; v++) sv[v] = vload(row + v * LANES + j);                      \
                TAPS_OF(0, a0, SINGLE_NV) TAPS_OF(1, a1, SINGLE_NV) TAPS_OF(2, a2, SINGLE_NV)                 \
                TAPS_OF(3, a3, SINGLE_NV)                                                                     \
            }                                                                                                 \
        }                                                                                                     \
        STORE_SINGLE(0, a0) STORE_SINGLE(1, a1) STORE_SINGLE(2, a2) STORE_SINGLE(3, a3)                       \
    }

/* A magnitude pair: 4 rows × 2 vectors × 2 kernels (16 accumulators), a² + b² stored (square roots after). */
#define PAIR_BODY                                                                                              \
    for (; x0 + PAIR_NV * LANES <= n; x0 += PAIR_NV * LANES) {                                                \
        vfloat a0[PAIR_NV], a1[PAIR_NV], a2[PAIR_NV], a3[PAIR_NV];                                            \
        vfloat b0[PAIR_NV], b1[PAIR_NV], b2[PAIR_NV], b3[PAIR_NV];                                            \
        for (int v = 0; v < PAIR_NV; v++) {                                                                   \
            a0[v] = a1[v] = a2[v] = a3[v] = (vfloat){0} + bias[0];                                           \
            b0[v] = b1[v] = b2[v] = b3[v] = (vfloat){0} + bias[1];                                           \
        }                                                                                                     \
        for (int s = 0; s < k + BLOCK_ROWS - 1; s++) {                                                        \
            const float *restrict row = src[s] + x0;                                                          \
            for (int j = 0; j < k; j++) {                                                                     \
                vfloat sv[PAIR_NV];                                                                           \
                for (int v = 0; v < PAIR_NV; v++) sv[v] = vload(row + v * LANES + j);                        \
                PAIR_TAPS_OF(0, a0, b0) PAIR_TAPS_OF(1, a1, b1) PAIR_TAPS_OF(2, a2, b2) PAIR_TAPS_OF(3, a3, b3) \
            }                                                                                                 \
        }                                                                                                     \
        STORE_PAIR(0, a0, b0) STORE_PAIR(1, a1, b1) STORE_PAIR(2, a2, b2) STORE_PAIR(3, a3, b3)               \
    }

/* Columns [0, n_done) of BLOCK_ROWS output rows from their k + BLOCK_ROWS − 1 source rows (output column x reads
 * src[s][x .. x + k)); magnitudes are square roots taken after the block, like every other path's sqrtf. Sets
 * *bad when an output is not finite. */
static Py_ssize_t blocked_rows(const float *const *src, float *const *out, Py_ssize_t n, int k, int channels,
                               int combine, const float *kern, const float *bias, int *bad) {
    Py_ssize_t x0 = 0;
    if (channels == 1) {
        SINGLE_BODY
    } else {
        PAIR_BODY
    }
    for (int r = 0; r < BLOCK_ROWS; r++) {
        float *restrict o = out[r];
        int b = 0;
        if (channels == 2)
            for (Py_ssize_t x = 0; x < x0; x++) o[x] = sqrtf(o[x]);
        for (Py_ssize_t x = 0; x < x0; x++) b |= !(fabsf(o[x]) <= FLT_MAX);
        *bad |= b;
    }
    return x0;
}
#else
#define HAVE_BLOCKED 0
static Py_ssize_t blocked_rows(const float *const *src, float *const *out, Py_ssize_t n, int k, int channels,
                               int combine, const float *kern, const float *bias, int *bad) {
    return 0;
}
#endif

#endif
