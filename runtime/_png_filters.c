/* PNG row filters undone (PNG spec, section 9: None, Sub, Up, Average, Paeth) for kernelnet.runtime.png_decode.
 *
 * unfilter(raw, height, row_bytes, bpp, out) -> bool
 *   raw:  height rows of 1 filter-type byte + row_bytes filtered bytes (the inflated IDAT stream), read only
 *   out:  height * row_bytes writable bytes, the reconstructed rows
 *   bpp:  bytes per complete pixel (1..8), the distance Sub, Average and Paeth look back
 *   False where a row names a filter type other than 0..4 (the caller then lets Pillow read the file).
 *
 * Paeth is computed without branches (the comparisons become conditional moves): a decoder spends most of a
 * gray photo's time here, since each byte depends on the one bpp before it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint8_t paeth(int a, int b, int c) {
    int pa = b - c, pb = a - c;
    int pc = pa + pb;
    pa = pa < 0 ? -pa : pa;
    pb = pb < 0 ? -pb : pb;
    pc = pc < 0 ? -pc : pc;
    int near_bc = pb <= pc ? b : c;
    return (uint8_t)((pa <= pb && pa <= pc) ? a : near_bc);
}

static int unfilter_rows(const uint8_t *raw, uint8_t *out, Py_ssize_t height, Py_ssize_t row_bytes, int bpp) {
    static const uint8_t zeros[1]; /* the row above the first: all zero (read through a stride of 0) */
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *src = raw + y * (row_bytes + 1) + 1;
        uint8_t *dst = out + y * row_bytes;
        const uint8_t *up = y ? dst - row_bytes : zeros;
        const Py_ssize_t up_step = y ? 1 : 0;
        Py_ssize_t i;
        switch (src[-1]) {
        case 0:
            memcpy(dst, src, (size_t)row_bytes);
            break;
        case 1:
            for (i = 0; i < row_bytes && i < bpp; i++) dst[i] = src[i];
            if (bpp == 1 && row_bytes > 0) {
                uint8_t a = dst[0];
                for (i = 1; i < row_bytes; i++) dst[i] = a = (uint8_t)(src[i] + a);
                break;
            }
            for (; i < row_bytes; i++) dst[i] = (uint8_t)(src[i] + dst[i - bpp]);
            break;
        case 2:
            if (up_step)
                for (i = 0; i < row_bytes; i++) dst[i] = (uint8_t)(src[i] + up[i]);
            else
                memcpy(dst, src, (size_t)row_bytes);
            break;
        case 3:
            for (i = 0; i < row_bytes && i < bpp; i++) dst[i] = (uint8_t)(src[i] + (up[i * up_step] >> 1));
            for (; i < row_bytes; i++)
                dst[i] = (uint8_t)(src[i] + ((dst[i - bpp] + up[i * up_step]) >> 1));
            break;
        case 4:
            for (i = 0; i < row_bytes && i < bpp; i++) dst[i] = (uint8_t)(src[i] + up[i * up_step]);
            if (bpp == 1 && up_step && row_bytes > 0) { /* gray 8-bit: left and upper-left kept in registers */
                int a = dst[0], c = up[0];
                for (i = 1; i < row_bytes; i++) {
                    int b = up[i];
                    a = (uint8_t)(src[i] + paeth(a, b, c));
                    dst[i] = (uint8_t)a;
                    c = b;
                }
                break;
            }
            for (; i < row_bytes; i++)
                dst[i] = (uint8_t)(src[i] + paeth(dst[i - bpp], up[i * up_step], up[(i - bpp) * up_step]));
            break;
        default:
            return 0;
        }
    }
    return 1;
}

static PyObject *unfilter(PyObject *self, PyObject *args) {
    Py_buffer raw, out;
    Py_ssize_t height, row_bytes;
    int bpp, ok;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nniw*", &raw, &height, &row_bytes, &bpp, &out)) return NULL;
    if (height < 0 || row_bytes < 0 || bpp < 1 || bpp > 8 || raw.len != height * (row_bytes + 1)
        || out.len != height * row_bytes) {
        PyBuffer_Release(&raw);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "unfilter: buffer sizes do not match height, row_bytes and bpp");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    ok = unfilter_rows((const uint8_t *)raw.buf, (uint8_t *)out.buf, height, row_bytes, bpp);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"unfilter", unfilter, METH_VARARGS, "unfilter(raw, height, row_bytes, bpp, out) -> bool: PNG rows unfiltered"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_png_filters", NULL, -1, methods};

PyMODINIT_FUNC PyInit__png_filters(void) { return PyModule_Create(&module); }
