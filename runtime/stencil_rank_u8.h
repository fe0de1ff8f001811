/* Rank filters of 8-bit frames written as 8-bit levels, on the levels themselves.
 *
 * The float path reads v = x / 255 (correctly rounded: distinct and in the order of x), picks one v, and the
 * output stage writes round(v · 255) = x for half-even or half-up rounding (v · 255 is within 2⁻¹⁶ of x), clipped
 * to [0, 255]: the level of the picked pixel. So when the stage is exactly that — scale 255, no offset, a clip
 * holding 0..255, a grid of at most 256 or none, rounding to nearest, no copy ring — the filter is the same order
 * statistic of the 8-bit levels, computed 32 (AVX2) or 64 (AVX-512) lanes at a time and stored as it is: the bits
 * of the float path and of the exported graph. Measured on the 2-core AMD EPYC (Zen 4), 3×3 erosion of a 1080p
 * frame, 2 threads: 2.1 ms through float32, see benchmarks/rank_filters.py for this path.
 * Included by _stencil.c only (after Job and map_index). */
#ifndef KERNELNET_STENCIL_RANK_U8_H
#define KERNELNET_STENCIL_RANK_U8_H

/* Whether a rank job of these kinds and stage can run on the levels (see above). */
static int rank_on_levels(int combine, int in_kind, int out_kind, const Stage *st) {
    return combine >= COMBINE_MIN && in_kind == KIND_U8 && out_kind == KIND_U8 && st != NULL &&
           st->scale == 255.0f && st->offset == 0.0f && (!st->has_grid || st->grid <= 256.0f) && st->has_clip &&
           st->lo <= 0.0f && st->hi >= 255.0f && (st->rounding == ROUND_HALF_EVEN || st->rounding == ROUND_HALF_UP) &&
           !st->copy_ring;
}

/* Row v (virtual) of 8-bit image `img`, padded by `half` on both sides with the job's border, into `out`. */
static void padded_levels(const Job *job, const uint8_t *img, Py_ssize_t v, int half, uint8_t *out) {
    const Py_ssize_t w = job->w, src_row = map_index(v, job->h, job->border);
    if (src_row < 0) {
        memset(out, 0, (size_t)(w + 2 * half));
        return;
    }
    const uint8_t *row = img + src_row * w;
    memcpy(out + half, row, (size_t)w);
    for (int j = 0; j < half; j++) {
        const Py_ssize_t left = map_index(j - half, w, job->border), right = map_index(w + j, w, job->border);
        out[j] = left < 0 ? 0 : row[left];
        out[half + w + j] = right < 0 ? 0 : row[right];
    }
}

#define LEVELS_BLOCK 512

/* One output row of levels from k padded level rows. */
static void rank_levels_row(const uint8_t *const *rows, uint8_t *out, Py_ssize_t w, int k, int combine,
                            const Rank *rank) {
    uint8_t col[LEVELS_BLOCK + MAX_K];
    static __thread uint8_t buf[MAX_MEDIAN_TAPS][LEVELS_BLOCK];
    for (Py_ssize_t x0 = 0; x0 < w; x0 += LEVELS_BLOCK) {
        const Py_ssize_t m = w - x0 < LEVELS_BLOCK ? w - x0 : LEVELS_BLOCK;
        uint8_t *restrict o = out + x0;
        if (combine != COMBINE_MEDIAN && rank->square) {
            const Py_ssize_t span = m + k - 1;
            memcpy(col, rows[0] + x0, (size_t)span);
            for (int i = 1; i < k; i++) {
                const uint8_t *restrict r = rows[i] + x0;
                if (combine == COMBINE_MIN)
                    for (Py_ssize_t x = 0; x < span; x++) col[x] = r[x] < col[x] ? r[x] : col[x];
                else
                    for (Py_ssize_t x = 0; x < span; x++) col[x] = r[x] > col[x] ? r[x] : col[x];
            }
            memcpy(o, col, (size_t)m);
            for (int j = 1; j < k; j++) {
                if (combine == COMBINE_MIN)
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = col[x + j] < o[x] ? col[x + j] : o[x];
                else
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = col[x + j] > o[x] ? col[x + j] : o[x];
            }
        } else if (combine != COMBINE_MEDIAN) {
            memcpy(o, rows[rank->tap_i[0]] + x0 + rank->tap_j[0], (size_t)m);
            for (int t = 1; t < rank->n; t++) {
                const uint8_t *restrict r = rows[rank->tap_i[t]] + x0 + rank->tap_j[t];
                if (combine == COMBINE_MIN)
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = r[x] < o[x] ? r[x] : o[x];
                else
                    for (Py_ssize_t x = 0; x < m; x++) o[x] = r[x] > o[x] ? r[x] : o[x];
            }
        } else if (rank->n == 9) {
            TAP_POINTERS(uint8_t, p, rows, rank, x0);
            MEDIAN9(uint8_t, p, o, m);
        } else {
            MEDIAN_NETWORK(uint8_t, buf, rows, rank, x0, o, m);
        }
    }
}

/* A rank job on 8-bit levels (rank_on_levels): each output row from k padded level rows kept in a ring. */
static void rank_levels_job(Job *job) {
    const int k = job->k, half = k / 2;
    const Py_ssize_t w = job->w, stride = w + 2 * half;
    uint8_t *ring = (uint8_t *)malloc((size_t)k * (size_t)stride);
    Py_ssize_t held[MAX_K];
    if (ring == NULL) {
        job->failed = 1;
        return;
    }
    Py_ssize_t image = -1;
    for (Py_ssize_t g = job->row0; g < job->row1; g++) {
        const Py_ssize_t n = g / job->rows, y = job->first + g % job->rows;
        const uint8_t *img = (const uint8_t *)job->srcint + n * job->h * w;
        if (n != image) {
            image = n;
            for (int s = 0; s < k; s++) held[s] = PY_SSIZE_T_MIN;
        }
        const uint8_t *rows[MAX_K];
        for (int i = 0; i < k; i++) {
            const Py_ssize_t v = y + i - half;
            const int slot = (int)(((v % k) + k) % k);
            if (held[slot] != v) {
                padded_levels(job, img, v, half, ring + slot * stride);
                held[slot] = v;
            }
            rows[i] = ring + slot * stride;
        }
        rank_levels_row(rows, (uint8_t *)job->dst + g * w, w, k, job->combine, job->rank);
    }
    free(ring);
    job->finite = 1; /* levels are finite */
}

#endif
