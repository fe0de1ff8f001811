/* Rank filters for the stencil: the min, max or median of the values under a footprint (the kernel's nonzero taps),
 * each output row from the same k padded source rows the linear paths read, so borders, tiles, integer frames and
 * the output stage work unchanged. Order statistics only pick input values: every build gives the same bits as
 * the exported graph and the numpy reference.
 *
 *   min / max over a square: separable, the k rows' column extremes of a block, then k-wide row extremes (2k
 *     compares per pixel instead of k²); over any other footprint one compare per tap;
 *   median of n ≤ MAX_MEDIAN_TAPS taps: the taps of a block of pixels gathered side by side, then the selection
 *     network of kernelnet.runtime.rank_network (Batcher's odd-even merge sort, wires past n dropped, pruned to the
 *     middle wire) as elementwise min / max over the block.
 *
 * The finite flag covers each output and its own input pixel (every pixel is one output's centre), so a clean run
 * still proves the input finite, and the runtime refuses NaN / Inf input as it does for every model (what a NaN
 * under a footprint would give is left unspecified).
 * Included by _stencil.c only. */
#ifndef KERNELNET_STENCIL_RANK_H
#define KERNELNET_STENCIL_RANK_H

enum { COMBINE_MIN = 3, COMBINE_MAX = 4, COMBINE_MEDIAN = 5 };
#define MAX_MEDIAN_TAPS 81
#define MAX_NETWORK 1536 /* Batcher's network of 128 wires has 1471 comparators */
#define RANK_BLOCK 64

typedef struct {
    int n, square;                          /* taps; whether the footprint is the whole k×k square */
    short tap_i[MAX_K * MAX_K], tap_j[MAX_K * MAX_K];
    int comparators;                        /* the median's network: */
    short wire_a[MAX_NETWORK], wire_b[MAX_NETWORK];
    unsigned char use_min[MAX_NETWORK], use_max[MAX_NETWORK];
} Rank;

/* The median network of n wires (n ≤ MAX_MEDIAN_TAPS): returns 0 on success. */
static int build_median_network(Rank *rank) {
    const int n = rank->n;
    int size = 1;
    while (size < n) size *= 2;
    static __thread short pa[MAX_NETWORK], pb[MAX_NETWORK];
    int count = 0;
    for (int p = 1; p < size; p *= 2)
        for (int k = p; k >= 1; k /= 2)
            for (int j = k % p; j < size - k; j += 2 * k)
                for (int i = 0; i < k && i < size - j - k; i++)
                    if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < n) {
                        if (count >= MAX_NETWORK) return -1;
                        pa[count] = (short)(i + j);
                        pb[count] = (short)(i + j + k);
                        count++;
                    }
    unsigned char need[MAX_MEDIAN_TAPS] = {0};
    need[n / 2] = 1;
    int kept = 0;
    for (int c = count - 1; c >= 0; c--) { /* backwards: keep what the middle wire depends on */
        const int a = pa[c], b = pb[c];
        if (!need[a] && !need[b]) continue;
        rank->wire_a[kept] = (short)a;
        rank->wire_b[kept] = (short)b;
        rank->use_min[kept] = need[a];
        rank->use_max[kept] = need[b];
        need[a] = need[b] = 1;
        kept++;
    }
    for (int c = 0; c < kept / 2; c++) { /* into forward order */
        short ta = rank->wire_a[c], tb = rank->wire_b[c];
        unsigned char tl = rank->use_min[c], th = rank->use_max[c];
        const int d = kept - 1 - c;
        rank->wire_a[c] = rank->wire_a[d], rank->wire_b[c] = rank->wire_b[d];
        rank->use_min[c] = rank->use_min[d], rank->use_max[c] = rank->use_max[d];
        rank->wire_a[d] = ta, rank->wire_b[d] = tb, rank->use_min[d] = tl, rank->use_max[d] = th;
    }
    rank->comparators = kept;
    return 0;
}

/* The rank description of a footprint kernel (k×k, nonzero = tap): returns 0, or -1 when a median has more than
 * MAX_MEDIAN_TAPS taps or an even number of them. */
static int make_rank(Rank *rank, const float *kern, int k, int combine) {
    rank->n = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            if (kern[i * k + j] != 0.0f) {
                rank->tap_i[rank->n] = (short)i;
                rank->tap_j[rank->n] = (short)j;
                rank->n++;
            }
    rank->square = rank->n == k * k;
    rank->comparators = 0;
    if (combine != COMBINE_MEDIAN) return rank->n > 0 ? 0 : -1;
    if (rank->n > MAX_MEDIAN_TAPS || rank->n % 2 == 0) return -1;
    return build_median_network(rank);
}

#define PICK_MIN(a, v) ((v) < (a) ? (v) : (a)) /* one vector compare and blend (minps / maxps) */
#define PICK_MAX(a, v) ((v) > (a) ? (v) : (a))

/* The median of nine values in 19 compare-exchanges (Paeth's network), all in registers: a 3×3 square or a 5×5
 * cross, one pass over the row (the general network goes through a buffer, one pass per comparator). */
#define EXCHANGE(T, a, b) do { const T lo_ = (b) < (a) ? (b) : (a); (b) = (b) < (a) ? (a) : (b); (a) = lo_; } while (0)
#define MEDIAN9(T, p, out, m)                                                                                 \
    for (Py_ssize_t x = 0; x < (m); x++) {                                                                   \
        T v0 = p##0[x], v1 = p##1[x], v2 = p##2[x], v3 = p##3[x], v4 = p##4[x], v5 = p##5[x], v6 = p##6[x],  \
          v7 = p##7[x], v8 = p##8[x];                                                                        \
        EXCHANGE(T, v1, v2); EXCHANGE(T, v4, v5); EXCHANGE(T, v7, v8); EXCHANGE(T, v0, v1);                  \
        EXCHANGE(T, v3, v4); EXCHANGE(T, v6, v7); EXCHANGE(T, v1, v2); EXCHANGE(T, v4, v5);                  \
        EXCHANGE(T, v7, v8); EXCHANGE(T, v0, v3); EXCHANGE(T, v5, v8); EXCHANGE(T, v4, v7);                  \
        EXCHANGE(T, v3, v6); EXCHANGE(T, v1, v4); EXCHANGE(T, v2, v5); EXCHANGE(T, v4, v7);                  \
        EXCHANGE(T, v2, v4); EXCHANGE(T, v4, v6); EXCHANGE(T, v2, v4);                                       \
        (out)[x] = v4;                                                                                       \
    }
#define TAP_POINTERS(T, p, rows, rank, x0)                                                                   \
    const T *restrict p##0 = rows[rank->tap_i[0]] + x0 + rank->tap_j[0], *restrict p##1 = rows[rank->tap_i[1]] + x0 + rank->tap_j[1], \
            *restrict p##2 = rows[rank->tap_i[2]] + x0 + rank->tap_j[2], *restrict p##3 = rows[rank->tap_i[3]] + x0 + rank->tap_j[3], \
            *restrict p##4 = rows[rank->tap_i[4]] + x0 + rank->tap_j[4], *restrict p##5 = rows[rank->tap_i[5]] + x0 + rank->tap_j[5], \
            *restrict p##6 = rows[rank->tap_i[6]] + x0 + rank->tap_j[6], *restrict p##7 = rows[rank->tap_i[7]] + x0 + rank->tap_j[7], \
            *restrict p##8 = rows[rank->tap_i[8]] + x0 + rank->tap_j[8]

/* The median of rank->n taps through the general network: the taps of m pixels side by side in buf, one pass per
 * comparator (only the outputs read later are computed), the middle wire out. */
#define MEDIAN_NETWORK(T, buf, rows, rank, x0, o, m)                                                         \
    do {                                                                                                     \
        for (int t = 0; t < (rank)->n; t++)                                                                 \
            memcpy(buf[t], rows[(rank)->tap_i[t]] + (x0) + (rank)->tap_j[t], (size_t)(m) * sizeof(T));      \
        for (int c = 0; c < (rank)->comparators; c++) {                                                     \
            T *restrict a = buf[(rank)->wire_a[c]], *restrict b = buf[(rank)->wire_b[c]];                  \
            if ((rank)->use_min[c] && (rank)->use_max[c]) {                                                 \
                for (Py_ssize_t x = 0; x < (m); x++) {                                                      \
                    const T va = a[x], vb = b[x];                                                           \
                    a[x] = vb < va ? vb : va;                                                               \
                    b[x] = vb < va ? va : vb;                                                               \
                }                                                                                           \
            } else if ((rank)->use_min[c]) {                                                                \
                for (Py_ssize_t x = 0; x < (m); x++) a[x] = b[x] < a[x] ? b[x] : a[x];                     \
            } else {                                                                                        \
                for (Py_ssize_t x = 0; x < (m); x++) b[x] = b[x] < a[x] ? a[x] : b[x];                     \
            }                                                                                               \
        }                                                                                                   \
        memcpy(o, buf[(rank)->n / 2], (size_t)(m) * sizeof(T));                                             \
    } while (0)

/* min / max over a K×K square with K known: every tap in registers, one pass over the row. */
#define SQUARE_EXTREME(K, PICK)                                                                              \
    for (Py_ssize_t x = 0; x < m; x++) {                                                                     \
        float a = rows[0][x0 + x];                                                                           \
        _Pragma("GCC unroll 8") for (int i = 0; i < (K); i++)                                                \
            _Pragma("GCC unroll 8") for (int j = 0; j < (K); j++) a = PICK(a, rows[i][x0 + x + j]);          \
        o[x] = a;                                                                                            \
    }

/* One output row of a rank filter from k padded rows (row i, column x + j under tap (i, j)); returns nonzero when
 * an output or an output's own input pixel is not finite. */
static int rank_row(const float *const *rows, float *out, Py_ssize_t w, int k, int combine, const Rank *rank) {
    const int half = k / 2;
    int bad = 0;
    float buf[MAX_MEDIAN_TAPS][RANK_BLOCK];
    float col[RANK_BLOCK + MAX_K];
    for (Py_ssize_t x0 = 0; x0 < w; x0 += RANK_BLOCK) {
        const Py_ssize_t m = w - x0 < RANK_BLOCK ? w - x0 : RANK_BLOCK;
        float *restrict o = out + x0;
        if (combine != COMBINE_MEDIAN && rank->square && k <= 5) {
            if (k == 3 && combine == COMBINE_MIN) SQUARE_EXTREME(3, PICK_MIN)
            else if (k == 3) SQUARE_EXTREME(3, PICK_MAX)
            else if (k == 5 && combine == COMBINE_MIN) SQUARE_EXTREME(5, PICK_MIN)
            else if (k == 5) SQUARE_EXTREME(5, PICK_MAX)
            else for (Py_ssize_t x = 0; x < m; x++) o[x] = rows[0][x0 + x]; /* 1×1 */
        } else if (combine != COMBINE_MEDIAN && rank->square) {
            const Py_ssize_t span = m + k - 1;
            for (Py_ssize_t x = 0; x < span; x++) col[x] = rows[0][x0 + x];
            for (int i = 1; i < k; i++) {
                const float *restrict r = rows[i] + x0;
                if (combine == COMBINE_MIN)
                    for (Py_ssize_t x = 0; x < span; x++) col[x] = PICK_MIN(col[x], r[x]);
                else
                    for (Py_ssize_t x = 0; x < span; x++) col[x] = PICK_MAX(col[x], r[x]);
            }
            for (Py_ssize_t x = 0; x < m; x++) o[x] = col[x];
            for (int j = 1; j < k; j++) {
                if (combine == COMBINE_MIN)
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = PICK_MIN(o[x], col[x + j]);
                else
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = PICK_MAX(o[x], col[x + j]);
            }
        } else if (combine != COMBINE_MEDIAN) {
            const float *first = rows[rank->tap_i[0]] + x0 + rank->tap_j[0];
            for (Py_ssize_t x = 0; x < m; x++) o[x] = first[x];
            for (int t = 1; t < rank->n; t++) {
                const float *restrict r = rows[rank->tap_i[t]] + x0 + rank->tap_j[t];
                if (combine == COMBINE_MIN)
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = PICK_MIN(o[x], r[x]);
                else
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = PICK_MAX(o[x], r[x]);
            }
        } else if (rank->n == 9) {
            TAP_POINTERS(float, p, rows, rank, x0);
            MEDIAN9(float, p, o, m);
        } else {
            MEDIAN_NETWORK(float, buf, rows, rank, x0, o, m);
        }
        const float *restrict centre = rows[half] + x0 + half;
        for (Py_ssize_t x = 0; x < m; x++) bad |= !(fabsf(o[x]) <= FLT_MAX) | !(fabsf(centre[x]) <= FLT_MAX);
    }
    return bad;
}

#endif
