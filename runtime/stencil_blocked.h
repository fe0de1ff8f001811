/* Register-blocked rows for kernels of 5×5 and up: BLOCK_ROWS output rows at once, so that each source vector
 * loaded feeds up to BLOCK_ROWS multiply-adds (output row r takes source row s with kernel row s − r), and each
 * weight broadcast feeds a row's SINGLE_NV (or PAIR_NV) vectors.
 *
 * Two shapes, by the registers the build has (GCC vector extensions): the x86-64-v4 build (32 zmm) keeps 4 rows ×
 * 6 vectors of 16 floats for one kernel, 4 × 3 × 2 for a magnitude pair; the x86-64-v3 build (16 ymm) 2 rows × 4
 * vectors of 8, 2 × 2 × 2. 5×5 and 7×7 are compiled with k known (their tap loops unrolled). Measured on the
 * 2-core AMD EPYC (Zen 4) here, one thread, half a 1080p frame, against the row-at-a-time path (ms):
 * AVX2 5×5 1.22 → 0.88, 7×7 3.2 → 1.63, 9×9 3.2 → 2.2, 15×15 9.3 → 5.8, magnitude 5×5 2.4 → 1.7; AVX-512 5×5
 * 0.95 → 0.75, 7×7 2.3 → 1.38, magnitude 5×5 2.2 → 1.3, 15×15 10.4 → 5.0 (earlier, on an Intel Xeon at 1080p
 * with 2 threads: 9×9 2.5 → 1.6–1.7, 31×31 27.6 → 15.1–17.0 single, 54.7 → 34.5–37.6 magnitude). 3×3 runs row
 * by row in every build: its 9 (or 18) weights stay in registers there, and blocking gained nothing.
 *
 * Every pixel still sums its bias, then its taps in (kernel row, kernel column) order, one fused multiply-add at a
 * time — the arithmetic of the row paths, so a row gives the same bits in a block, alone, in a tile, on another
 * thread or in the other optimised build. blocked_rows computes the columns [0, n_done) it covers with whole
 * vectors and returns n_done; the caller finishes the row with the row path. Included by _stencil.c only. */
#ifndef KERNELNET_STENCIL_BLOCKED_H
#define KERNELNET_STENCIL_BLOCKED_H

#if defined(__GNUC__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) /* the x86-64-v4 build: 32 zmm registers */
#define HAVE_BLOCKED 1
#define LANES 16
#define BLOCK_ROWS 4
#define SINGLE_NV 6 /* 4 rows × 6 vectors: 24 accumulators */
#define PAIR_NV 3   /* 4 rows × 3 vectors × 2 kernels */
#define BLOCKED_MIN_K 5 /* 3×3 rows alone are as fast (every weight fits a register) */
#elif defined(__GNUC__) && defined(__AVX2__) && defined(__FMA__) /* the x86-64-v3 build: 16 ymm registers */
#define HAVE_BLOCKED 1
#define LANES 8
#define BLOCK_ROWS 2
#define SINGLE_NV 4 /* 2 rows × 4 vectors: 8 accumulators, 4 source vectors, a weight */
#define PAIR_NV 2   /* 2 rows × 2 vectors × 2 kernels */
#define BLOCKED_MIN_K 5
#else
#define HAVE_BLOCKED 0
#define BLOCK_ROWS 4
#define BLOCKED_MIN_K (MAX_K + 1)
#endif

#if HAVE_BLOCKED
#pragma GCC diagnostic ignored "-Wpsabi" /* wide vectors only pass between always-inlined helpers */
typedef float vfloat __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(LANES * sizeof(int32_t))));

static inline __attribute__((always_inline)) vfloat vload(const float *p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void vstore(float *p, vfloat v) { memcpy(p, &v, sizeof v); }

/* One kernel: BLOCK_ROWS rows × SINGLE_NV vectors of accumulators. Source row s feeds output row r with kernel
 * row s − r: each source vector is loaded once for every row of the block that uses it. */
#define SINGLE_BODY                                                                                            \
    for (; x0 + SINGLE_NV * LANES <= n; x0 += SINGLE_NV * LANES) {                                            \
        vfloat acc[BLOCK_ROWS][SINGLE_NV];                                                                    \
        _Pragma("GCC unroll 8") for (int r = 0; r < BLOCK_ROWS; r++)                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < SINGLE_NV; v++) acc[r][v] = (vfloat){0} + bias[0];   \
        _Pragma("GCC unroll 1") for (int s = 0; s < k + BLOCK_ROWS - 1; s++) {                                \
            const float *restrict row = src[s] + x0;                                                          \
            _Pragma("GCC unroll 8") for (int j = 0; j < k; j++) {                                             \
                vfloat sv[SINGLE_NV];                                                                         \
                _Pragma("GCC unroll 8") for (int v = 0; v < SINGLE_NV; v++) sv[v] = vload(row + v * LANES + j); \
                _Pragma("GCC unroll 8") for (int r = 0; r < BLOCK_ROWS; r++) {                                \
                    if (s - r >= 0 && s - r < k) {                                                            \
                        const vfloat wt = (vfloat){0} + kern[(s - r) * k + j];                               \
                        _Pragma("GCC unroll 8") for (int v = 0; v < SINGLE_NV; v++) acc[r][v] += wt * sv[v]; \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
        _Pragma("GCC unroll 8") for (int r = 0; r < BLOCK_ROWS; r++)                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < SINGLE_NV; v++)                                      \
                vstore(out[r] + x0 + v * LANES,                                                               \
                       combine == COMBINE_ABS ? (vfloat)((vint)acc[r][v] & 0x7fffffff) : acc[r][v]);         \
    }

/* A magnitude pair: BLOCK_ROWS rows × PAIR_NV vectors × 2 kernels sharing the loads; a² + b² stored (square
 * roots after the block). */
#define PAIR_BODY                                                                                              \
    for (; x0 + PAIR_NV * LANES <= n; x0 += PAIR_NV * LANES) {                                                \
        vfloat a[BLOCK_ROWS][PAIR_NV], b[BLOCK_ROWS][PAIR_NV];                                                \
        _Pragma("GCC unroll 8") for (int r = 0; r < BLOCK_ROWS; r++)                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < PAIR_NV; v++) {                                       \
                a[r][v] = (vfloat){0} + bias[0];                                                              \
                b[r][v] = (vfloat){0} + bias[1];                                                              \
            }                                                                                                 \
        _Pragma("GCC unroll 1") for (int s = 0; s < k + BLOCK_ROWS - 1; s++) {                                \
            const float *restrict row = src[s] + x0;                                                          \
            _Pragma("GCC unroll 8") for (int j = 0; j < k; j++) {                                             \
                vfloat sv[PAIR_NV];                                                                           \
                _Pragma("GCC unroll 8") for (int v = 0; v < PAIR_NV; v++) sv[v] = vload(row + v * LANES + j); \
                _Pragma("GCC unroll 8") for (int r = 0; r < BLOCK_ROWS; r++) {                                \
                    if (s - r >= 0 && s - r < k) {                                                            \
                        const vfloat wa = (vfloat){0} + kern[(s - r) * k + j];                               \
                        const vfloat wb = (vfloat){0} + kern[k * k + (s - r) * k + j];                       \
                        _Pragma("GCC unroll 8") for (int v = 0; v < PAIR_NV; v++) {                           \
                            a[r][v] += wa * sv[v];                                                            \
                            b[r][v] += wb * sv[v];                                                            \
                        }                                                                                     \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
        _Pragma("GCC unroll 8") for (int r = 0; r < BLOCK_ROWS; r++)                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < PAIR_NV; v++)                                         \
                vstore(out[r] + x0 + v * LANES, a[r][v] * a[r][v] + b[r][v] * b[r][v]);                      \
    }

/* Columns [0, n_done) of BLOCK_ROWS output rows from their k + BLOCK_ROWS − 1 source rows (output column x reads
 * src[s][x .. x + k)); magnitudes are square roots taken after the block, like every other path's sqrtf. Sets
 * *bad when an output is not finite. */
static inline __attribute__((always_inline)) Py_ssize_t
blocked_columns(const float *const *src, float *const *out, Py_ssize_t n, const int k, int channels, int combine,
                const float *kern, const float *bias) {
    Py_ssize_t x0 = 0;
    if (channels == 1) {
        SINGLE_BODY
    } else {
        PAIR_BODY
    }
    return x0;
}

/* The kernel sizes below 9 with k known to the compiler: every loop over taps unrolled, the row tests folded. */
#define BLOCKED_K(K)                                                                                           \
    static Py_ssize_t blocked_k##K(const float *const *src, float *const *out, Py_ssize_t n, int channels,       \
                                   int combine, const float *kern, const float *bias) {                        \
        return blocked_columns(src, out, n, K, channels, combine, kern, bias);                                 \
    }
BLOCKED_K(3)
BLOCKED_K(5)
BLOCKED_K(7)

static Py_ssize_t blocked_rows(const float *const *src, float *const *out, Py_ssize_t n, int k, int channels,
                               int combine, const float *kern, const float *bias, int *bad) {
    const Py_ssize_t x0 = k == 3   ? blocked_k3(src, out, n, channels, combine, kern, bias)
                          : k == 5 ? blocked_k5(src, out, n, channels, combine, kern, bias)
                          : k == 7 ? blocked_k7(src, out, n, channels, combine, kern, bias)
                                   : blocked_columns(src, out, n, k, channels, combine, kern, bias);
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
static Py_ssize_t blocked_rows(const float *const *src, float *const *out, Py_ssize_t n, int k, int channels,
                               int combine, const float *kern, const float *bias, int *bad) {
    return 0;
}
#endif

#endif
