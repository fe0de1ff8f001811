/* Integer frames for the stencil: rows of uint8 / uint16 samples converted to float32 as they are read.
 *
 * v / 255 and v / 65535 without a division: q = v·(1/d) corrected by one Newton step, q + (v − d·q)·(1/d) with
 * fused multiply-adds, is the correctly rounded quotient, the very float32 a numpy conversion of the frame gives
 * (so an integer frame gives the results of the same frame converted first). The module checks every value of
 * both widths on import (for the code this compiler made) and keeps the plain division for a width where any
 * value differed. Included by _stencil.c only. */
#ifndef KERNELNET_STENCIL_CONVERT_H
#define KERNELNET_STENCIL_CONVERT_H

#include <math.h>
#include <stdint.h>

enum { KIND_F32 = 0, KIND_U8 = 1, KIND_U16 = 2 };

static inline Py_ssize_t kind_size(int kind) { return kind == KIND_F32 ? 4 : kind == KIND_U8 ? 1 : 2; }

static int u8_fast = 0, u16_fast = 0;

static inline float corrected_quotient(float f, float d, float r) {
    const float q = f * r;
    return fmaf(fmaf(-q, d, f), r, q);
}

static void check_fast_quotients(void) {
    int ok8 = 1, ok16 = 1;
    for (int v = 0; v < 65536; v++) {
        volatile float f = (float)v;
        if (v < 256) ok8 &= corrected_quotient(f, 255.0f, 1.0f / 255.0f) == f / 255.0f;
        ok16 &= corrected_quotient(f, 65535.0f, 1.0f / 65535.0f) == f / 65535.0f;
    }
    u8_fast = ok8;
    u16_fast = ok16;
}

static void convert_u8(const uint8_t *restrict row, float *restrict out, Py_ssize_t w) {
    if (u8_fast) {
        for (Py_ssize_t j = 0; j < w; j++) out[j] = corrected_quotient((float)row[j], 255.0f, 1.0f / 255.0f);
    } else {
        for (Py_ssize_t j = 0; j < w; j++) out[j] = (float)row[j] / 255.0f;
    }
}

static void convert_u16(const uint16_t *restrict row, float *restrict out, Py_ssize_t w) {
    if (u16_fast) {
        for (Py_ssize_t j = 0; j < w; j++) out[j] = corrected_quotient((float)row[j], 65535.0f, 1.0f / 65535.0f);
    } else {
        for (Py_ssize_t j = 0; j < w; j++) out[j] = (float)row[j] / 65535.0f;
    }
}

/* A 1×1 filter of an integer row in one pass: each sample converted as convert_u8 / convert_u16 do, then
 * bias + weight · value and the combine, the arithmetic of stencil_row for k = 1 (no row buffer in between). */
#define POINTWISE(TYPE, FAST, D)                                                                              \
    for (Py_ssize_t j = 0; j < w; j++) {                                                                     \
        const float f = (float)((const TYPE *)row)[j];                                                       \
        const float v = (FAST) ? corrected_quotient(f, D, 1.0f / D) : f / D;                                \
        float a = ba;                                                                                        \
        a += ka * v;                                                                                         \
        if (channels == 2) {                                                                                 \
            float b = bb;                                                                                    \
            b += kb * v;                                                                                     \
            a = sqrtf(a * a + b * b);                                                                        \
        } else if (combine == 1) {                                                                           \
            a = fabsf(a);                                                                                    \
        }                                                                                                    \
        out[j] = a;                                                                                          \
        bad |= !(fabsf(a) <= FLT_MAX);                                                                       \
    }

static int pointwise_integer_row(const void *restrict row, int kind, float *restrict out,
                                              Py_ssize_t w, int channels, int combine, const float *kern,
                                              const float *bias) {
    const float ka = kern[0], kb = channels == 2 ? kern[1] : 0.0f, ba = bias[0], bb = channels == 2 ? bias[1] : 0.0f;
    int bad = 0;
    if (kind == KIND_U8) {
        if (u8_fast) { POINTWISE(uint8_t, 1, 255.0f) } else { POINTWISE(uint8_t, 0, 255.0f) }
    } else {
        if (u16_fast) { POINTWISE(uint16_t, 1, 65535.0f) } else { POINTWISE(uint16_t, 0, 65535.0f) }
    }
    return bad;
}

/* Samples [start, start + w) of an integer image as float32 in [0, 1]. */
static void convert_row(const void *image, int kind, Py_ssize_t start, float *out, Py_ssize_t w) {
    if (kind == KIND_U8)
        convert_u8((const uint8_t *)image + start, out, w);
    else
        convert_u16((const uint16_t *)image + start, out, w);
}

#endif
