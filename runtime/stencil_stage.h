/* The output stage of a kernelnet filter, after the combine step, as the exported graph computes it:
 *
 *   y = v · scale (Mul) + offset (Add); y = round_half_even(y · grid) / grid (Mul, Round, Div); clip (Clip);
 *   rounding (Round | Floor(y + 0.5) | Floor | Sign·Floor(|y|))
 *
 * each step one float32 operation in that order — every multiplication stored in its own pass over the row
 * before anything is added to it, so that no compiler fuses a multiply-add — and the values are the graph's own. Border "copy" (Pillow): the outer k // 2 ring is the input
 * sample · ring_scale, rounded by the same rule. Levels (uint8 / uint16 output) are those values stored as
 * integers; they lie within the clip bounds, and ring samples outside [0, 2^bits − 1] (only float32 inputs
 * beyond [0, 1] make them) saturate. Included by _stencil.c only. */
#ifndef KERNELNET_STENCIL_STAGE_H
#define KERNELNET_STENCIL_STAGE_H

#include <math.h>
#include <stdint.h>

enum { ROUND_NONE = 0, ROUND_HALF_EVEN = 1, ROUND_HALF_UP = 2, ROUND_FLOOR = 3, ROUND_TOWARD_ZERO = 4 };

typedef struct {
    float scale, offset, grid, lo, hi, ring_scale;
    float grid_inverse; /* 1 / grid when that is exact (a power of two), else 0 */
    int has_grid, has_clip, rounding, copy_ring;
} Stage;

/* Parse the Python tuple (scale, offset, grid, clip_lo, clip_hi, rounding, copy_ring, ring_scale): grid 0 = none,
 * clip bounds NaN = none (both or neither), rounding one of ROUND_*. Returns 0 and sets an exception if invalid. */
static int parse_stage(PyObject *obj, Stage *stage) {
    int grid = 0;
    if (!PyArg_ParseTuple(obj, "ffiffiif", &stage->scale, &stage->offset, &grid, &stage->lo, &stage->hi,
                          &stage->rounding, &stage->copy_ring, &stage->ring_scale))
        return 0;
    stage->has_grid = grid != 0;
    stage->grid = (float)grid;
    stage->grid_inverse = grid > 0 && (grid & (grid - 1)) == 0 ? 1.0f / (float)grid : 0.0f;
    stage->has_clip = !isnan(stage->lo);
    if (grid < 0 || grid > 65536 || stage->rounding < ROUND_NONE || stage->rounding > ROUND_TOWARD_ZERO ||
        isnan(stage->lo) != isnan(stage->hi) || (stage->has_clip && !(stage->lo < stage->hi))) {
        PyErr_SetString(PyExc_ValueError, "invalid output stage");
        return 0;
    }
    return 1;
}

#define ROUNDED(y, rule)                                                                                   \
    ((rule) == ROUND_HALF_EVEN ? rintf(y) : (rule) == ROUND_HALF_UP ? floorf((y) + 0.5f)                  \
     : (rule) == ROUND_FLOOR ? floorf(y) : (rule) == ROUND_TOWARD_ZERO ? truncf(y) : (y))

/* min(max(v, lo), hi) as compares, which vectorise (fminf / fmaxf do not without -ffinite-math-only); the same
 * for every non-NaN v, and the stencil's values are proven finite. */
#define CLAMPED(v, lo, hi) ((v) < (lo) ? (lo) : (v) > (hi) ? (hi) : (v))

static void stage_values(const Stage *st, float *restrict v, Py_ssize_t w) {
    const float scale = st->scale, offset = st->offset, grid = st->grid, lo = st->lo, hi = st->hi;
    const int rule = st->rounding;
    if (scale != 1.0f)
        for (Py_ssize_t x = 0; x < w; x++) v[x] = v[x] * scale;
    if (offset != 0.0f)
        for (Py_ssize_t x = 0; x < w; x++) v[x] = v[x] + offset;
    if (st->has_grid && st->grid_inverse != 0.0f) /* a power-of-two grid: the exact reciprocal, same quotient */
        for (Py_ssize_t x = 0; x < w; x++) v[x] = rintf(v[x] * grid) * st->grid_inverse;
    else if (st->has_grid)
        for (Py_ssize_t x = 0; x < w; x++) v[x] = rintf(v[x] * grid) / grid;
    if (st->has_clip)
        for (Py_ssize_t x = 0; x < w; x++) v[x] = CLAMPED(v[x], lo, hi);
    if (rule != ROUND_NONE)
        for (Py_ssize_t x = 0; x < w; x++) v[x] = ROUNDED(v[x], rule);
}

static void store_levels(const float *restrict v, Py_ssize_t w, int kind, void *restrict out) { /* NaN -> 0 */
    if (kind == KIND_U8) {
        uint8_t *o = (uint8_t *)out;
        for (Py_ssize_t x = 0; x < w; x++) o[x] = (uint8_t)(v[x] >= 0.0f ? (v[x] <= 255.0f ? v[x] : 255.0f) : 0.0f);
    } else {
        uint16_t *o = (uint16_t *)out;
        for (Py_ssize_t x = 0; x < w; x++) o[x] = (uint16_t)(v[x] >= 0.0f ? (v[x] <= 65535.0f ? v[x] : 65535.0f) : 0.0f);
    }
}

/* Apply `stage` (may be NULL) to the combined values `v` of output row y (w values; modified in place), put the
 * copy ring from `center` (input row y as float32) and store the row into `out` as `kind` (KIND_F32: `out` may be
 * `v` itself). */
static void finish_row(const Stage *stage, float *v, const float *center, Py_ssize_t y, Py_ssize_t h,
                                      Py_ssize_t w, int half, int kind, void *out) {
    if (stage != NULL) {
        stage_values(stage, v, w);
        if (stage->copy_ring && half > 0) {
            const int rule = stage->rounding;
            const float s = stage->ring_scale;
            const int whole = y < half || y >= h - half;
            for (Py_ssize_t x = 0; x < w; x++) {
                if (whole || x < half || x >= w - half) {
                    volatile float r = center[x] * s; /* stored: never fused with the rounding's + 0.5 */
                    v[x] = ROUNDED(r, rule);
                }
                if (!whole && x == half - 1 && w - half > x + 1) x = w - half - 1; /* skip the row's inside */
            }
        }
    }
    if (kind == KIND_F32) {
        if ((float *)out != v) memcpy(out, v, (size_t)w * sizeof(float));
    } else {
        store_levels(v, w, kind, out);
    }
}

#endif
