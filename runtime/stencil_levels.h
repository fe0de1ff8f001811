/* Float32 filter outputs mapped to the levels of an 8/16-bit file, as kernelnet.runtime.images.quantize_unit does
 * it in numpy, in one pass without scratch arrays:
 *
 *   extrema(src) -> (min, max)                        of a float32 buffer (NaN, NaN if it holds a NaN, as numpy)
 *   unit_levels(src, dst, factor, shift, top)         dst = rint(clip(src · factor + shift, 0, 1) · top)
 *
 * each step one float32 operation in numpy's order (the products stored before the shift is added: no fused
 * multiply-add), so the levels are numpy's, bit for bit;
 * dst is uint8 (top 255) or uint16 (top 65535). Both release the GIL. Included by _stencil.c only. */
#ifndef KERNELNET_STENCIL_LEVELS_H
#define KERNELNET_STENCIL_LEVELS_H

static void extrema_of(const float *restrict v, Py_ssize_t n, float *lo, float *hi) {
    float a[16], b[16]; /* 16 lanes each, so that the compares vectorise */
    int nan[16] = {0};
    for (int j = 0; j < 16; j++) a[j] = b[j] = v[0];
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            a[j] = v[i + j] < a[j] ? v[i + j] : a[j];
            b[j] = v[i + j] > b[j] ? v[i + j] : b[j];
            nan[j] |= v[i + j] != v[i + j];
        }
    for (; i < n; i++) {
        a[0] = v[i] < a[0] ? v[i] : a[0];
        b[0] = v[i] > b[0] ? v[i] : b[0];
        nan[0] |= v[i] != v[i];
    }
    for (int j = 1; j < 16; j++) {
        a[0] = a[j] < a[0] ? a[j] : a[0];
        b[0] = b[j] > b[0] ? b[j] : b[0];
        nan[0] |= nan[j];
    }
    *lo = nan[0] ? NAN : a[0]; /* numpy's min and max: NaN when any value is */
    *hi = nan[0] ? NAN : b[0];
}

static void unit_levels_of(const float *restrict v, Py_ssize_t n, float factor, float shift, float top,
                                        int kind, void *restrict out) {
    float t[1024];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += 1024) {
        const Py_ssize_t m = n - i0 < 1024 ? n - i0 : 1024;
        for (Py_ssize_t i = 0; i < m; i++) t[i] = v[i0 + i] * factor;
        if (shift != 0.0f)
            for (Py_ssize_t i = 0; i < m; i++) t[i] = t[i] + shift;
        for (Py_ssize_t i = 0; i < m; i++) t[i] = CLAMPED(t[i], 0.0f, 1.0f) * top;
        for (Py_ssize_t i = 0; i < m; i++) t[i] = rintf(t[i]);
        store_levels(t, m, kind, kind == KIND_U8 ? (void *)((uint8_t *)out + i0) : (void *)((uint16_t *)out + i0));
    }
}

static PyObject *extrema(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer view;
    float lo, hi;
    if (!PyArg_ParseTuple(args, "O", &obj)) return NULL;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (view.itemsize != 4 || view.format == NULL || strcmp(view.format, "f") != 0 || view.len < 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "extrema takes a non-empty C-contiguous float32 buffer");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    extrema_of((const float *)view.buf, view.len / 4, &lo, &hi);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(dd)", (double)lo, (double)hi);
}

static PyObject *unit_levels(PyObject *self, PyObject *args) {
    PyObject *src_obj, *dst_obj;
    float factor, shift;
    int bits;
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "OOffi", &src_obj, &dst_obj, &factor, &shift, &bits)) return NULL;
    if (bits != 8 && bits != 16) {
        PyErr_SetString(PyExc_ValueError, "bits must be 8 or 16");
        return NULL;
    }
    const int kind = bits == 8 ? KIND_U8 : KIND_U16;
    if (PyObject_GetBuffer(src_obj, &src, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (src.itemsize != 4 || src.format == NULL || strcmp(src.format, "f") != 0) {
        PyBuffer_Release(&src);
        PyErr_SetString(PyExc_ValueError, "src must be a C-contiguous float32 buffer");
        return NULL;
    }
    if (get_buffer_as(dst_obj, &dst, src.len / 4, 1, "dst", kind) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    unit_levels_of((const float *)src.buf, src.len / 4, factor, shift, bits == 8 ? 255.0f : 65535.0f, kind, dst.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    Py_RETURN_NONE;
}

#endif
