/*
 * _dice.c: the compiled Dice kernel behind linkage_service._kernel.
 *
 * Owns the three hot loops of record linkage on packed Bloom filters: per-row
 * popcounts, Dice of listed pairs, and all pairs of a x b at or above a
 * threshold. Results are bit-for-bit those of linkage_service._kernel_ref:
 * Dice = (2.0 * (double)inter) / (double)(count_a + count_b), 0.0 when both
 * rows are empty, compared with >=. It never allocates numpy arrays and, but
 * for agglomeration (below), never holds the GIL while looping.
 *
 * Blocking's loops live here too (band signatures, the block order as a stable
 * radix sort, the pairs of each block): the same results as the numpy
 * reference linkage_service._blocking_ref, several times faster at a million rows.
 *
 * And the edge loop of agglomeration (linkage_service._cluster.agglomerate):
 * the one loop here that holds the GIL throughout, since it works on the
 * clusters' Python member lists and calls the Python cohesion check; its
 * reference is agglomerate_reference in the same module.
 *
 * Why the plain C API with the buffer protocol (not cffi, not numpy's C API):
 * numpy arrays export PEP 3118 buffers carrying shape, strides and format, which
 * is all the validation we need; so the build needs no numpy headers (no numpy
 * in [build-system] requires, no ABI coupling to the numpy version) and the
 * runtime needs no cffi. Output arrays are allocated by the Python wrapper and
 * passed in as writable buffers, except dice_above whose size is unknown until
 * the loop ends: it returns three bytearrays that numpy wraps without copying.
 *
 * Instruction sets: nothing here is compiled for more than baseline x86-64.
 * Faster bodies carry function-level target attributes and are chosen at
 * runtime with __builtin_cpu_supports (which also checks that the OS saves the
 * wide registers), so the same binary runs on any x86_64 machine; on other
 * architectures only the portable body exists.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DICE_X86 1
#include <immintrin.h>
#else
#define DICE_X86 0
#endif

/* ------------------------------------------------------------------------ */
/* Hit list for dice_above (grown without the GIL, so plain malloc).         */

typedef struct {
    int64_t *i;
    int64_t *j;
    double *s;
    Py_ssize_t len;
    Py_ssize_t cap;
    int failed; /* allocation failed: stop and report MemoryError */
} hits_t;

static int hits_push(hits_t *h, int64_t i, int64_t j, double s) {
    if (h->len == h->cap) {
        Py_ssize_t cap = h->cap ? h->cap * 2 : 1024;
        int64_t *ni = realloc(h->i, (size_t)cap * sizeof(int64_t));
        if (ni) h->i = ni;
        int64_t *nj = ni ? realloc(h->j, (size_t)cap * sizeof(int64_t)) : NULL;
        if (nj) h->j = nj;
        double *ns = nj ? realloc(h->s, (size_t)cap * sizeof(double)) : NULL;
        if (!ns) {
            h->failed = 1;
            return -1;
        }
        h->s = ns;
        h->cap = cap;
    }
    h->i[h->len] = i;
    h->j[h->len] = j;
    h->s[h->len] = s;
    h->len++;
    return 0;
}

static void hits_free(hits_t *h) {
    free(h->i);
    free(h->j);
    free(h->s);
}

/* Exact Dice as the reference computes it. */
static inline double dice_of(uint64_t inter, uint64_t total) {
    return total ? (2.0 * (double)inter) / (double)total : 0.0;
}

/*
 * Cheap pre-test for s >= thr that never rejects a true hit: it skips the
 * division for the (overwhelmingly common) far-below-threshold pairs. The 1e-9
 * slack dwarfs the two roundings involved, and NaN thresholds reject as >= does.
 */
#define DICE_SLACK2 (2.0 * (1.0 + 1e-9))
#define MAYBE_HIT(inter, total, thr) \
    (DICE_SLACK2 * (double)(inter) >= (thr) * (double)(total) || (total) == 0)

/* ------------------------------------------------------------------------ */
/* Scalar bodies: one template, instantiated portable and with popcnt.        */

#define SCALAR_KERNELS(NAME, ATTR)                                                       \
    static ATTR uint64_t rowpop_##NAME(const uint64_t *p, Py_ssize_t w) {               \
        uint64_t c = 0;                                                                  \
        for (Py_ssize_t k = 0; k < w; k++) c += (uint64_t)__builtin_popcountll(p[k]);    \
        return c;                                                                        \
    }                                                                                    \
    static ATTR void popcounts_##NAME(const uint64_t *f, Py_ssize_t n, Py_ssize_t w,     \
                                      uint32_t *out) {                                   \
        for (Py_ssize_t r = 0; r < n; r++) out[r] = (uint32_t)rowpop_##NAME(f + r * w, w); \
    }                                                                                    \
    static ATTR inline uint64_t andpop_##NAME(const uint64_t *p, const uint64_t *q,      \
                                              Py_ssize_t w) {                            \
        uint64_t c = 0;                                                                  \
        for (Py_ssize_t k = 0; k < w; k++) c += (uint64_t)__builtin_popcountll(p[k] & q[k]); \
        return c;                                                                        \
    }                                                                                    \
    static ATTR uint64_t andpop16_##NAME(const uint64_t *p, const uint64_t *q) {         \
        uint64_t c0 = 0, c1 = 0;                                                         \
        for (int k = 0; k < 16; k += 2) {                                                \
            c0 += (uint64_t)__builtin_popcountll(p[k] & q[k]);                           \
            c1 += (uint64_t)__builtin_popcountll(p[k + 1] & q[k + 1]);                   \
        }                                                                                \
        return c0 + c1;                                                                  \
    }                                                                                    \
    static ATTR uint64_t andpop32_##NAME(const uint64_t *p, const uint64_t *q) {         \
        return andpop16_##NAME(p, q) + andpop16_##NAME(p + 16, q + 16);                  \
    }                                                                                    \
    static ATTR void pairs_##NAME(const uint64_t *a, const uint64_t *b, Py_ssize_t w,    \
                                  const int64_t *ia, const int64_t *ib, Py_ssize_t k,    \
                                  const uint32_t *ca, const uint32_t *cb, double *out) { \
        for (Py_ssize_t t = 0; t < k; t++) {                                             \
            const uint64_t *p = a + ia[t] * w, *q = b + ib[t] * w;                       \
            uint64_t inter = w == 16   ? andpop16_##NAME(p, q)                           \
                             : w == 32 ? andpop32_##NAME(p, q)                           \
                                       : andpop_##NAME(p, q, w);                         \
            uint64_t x = ca ? ca[ia[t]] : rowpop_##NAME(p, w);                           \
            uint64_t y = cb ? cb[ib[t]] : rowpop_##NAME(q, w);                           \
            out[t] = dice_of(inter, x + y);                                              \
        }                                                                                \
    }                                                                                    \
    static ATTR int above_##NAME(const uint64_t *a, Py_ssize_t na, const uint64_t *b,    \
                                 Py_ssize_t nb, Py_ssize_t w, const uint32_t *ca,        \
                                 const uint32_t *cb, double thr, hits_t *h) {            \
        for (Py_ssize_t i = 0; i < na; i++) {                                            \
            const uint64_t *p = a + i * w;                                               \
            for (Py_ssize_t j = 0; j < nb; j++) {                                        \
                const uint64_t *q = b + j * w;                                           \
                uint64_t inter = w == 16   ? andpop16_##NAME(p, q)                       \
                                 : w == 32 ? andpop32_##NAME(p, q)                       \
                                           : andpop_##NAME(p, q, w);                     \
                uint64_t total = (uint64_t)ca[i] + cb[j];                                \
                if (MAYBE_HIT(inter, total, thr)) {                                      \
                    double s = dice_of(inter, total);                                    \
                    if (s >= thr && hits_push(h, i, j, s)) return -1;                    \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        return 0;                                                                        \
    }

SCALAR_KERNELS(portable, )
#if DICE_X86
SCALAR_KERNELS(popcnt, __attribute__((target("popcnt"))))
#endif

/* ------------------------------------------------------------------------ */
/* AVX-512 VPOPCNTQ bodies.                                                  */

#if DICE_X86
#define AVX512 __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))

/* Per-lane popcount of p & q summed over the row (8 lanes, each <= 64*ceil(w/8)). */
static AVX512 inline __m512i lanes_andpop_avx512(const uint64_t *p, const uint64_t *q,
                                                 Py_ssize_t w) {
    __m512i acc = _mm512_setzero_si512();
    Py_ssize_t k = 0;
    for (; k + 8 <= w; k += 8) {
        __m512i x = _mm512_and_si512(_mm512_loadu_si512(p + k), _mm512_loadu_si512(q + k));
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
    }
    if (k < w) {
        __mmask8 m = (__mmask8)((1u << (w - k)) - 1u);
        __m512i x = _mm512_and_si512(_mm512_maskz_loadu_epi64(m, p + k),
                                     _mm512_maskz_loadu_epi64(m, q + k));
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
    }
    return acc;
}

static AVX512 uint64_t rowpop_avx512(const uint64_t *p, Py_ssize_t w) {
    return (uint64_t)_mm512_reduce_add_epi64(lanes_andpop_avx512(p, p, w));
}

static AVX512 void popcounts_avx512(const uint64_t *f, Py_ssize_t n, Py_ssize_t w,
                                    uint32_t *out) {
    for (Py_ssize_t r = 0; r < n; r++) out[r] = (uint32_t)rowpop_avx512(f + r * w, w);
}

static AVX512 void pairs_avx512(const uint64_t *a, const uint64_t *b, Py_ssize_t w,
                                const int64_t *ia, const int64_t *ib, Py_ssize_t k,
                                const uint32_t *ca, const uint32_t *cb, double *out) {
    for (Py_ssize_t t = 0; t < k; t++) {
        const uint64_t *p = a + ia[t] * w, *q = b + ib[t] * w;
        uint64_t inter = (uint64_t)_mm512_reduce_add_epi64(lanes_andpop_avx512(p, q, w));
        uint64_t x = ca ? ca[ia[t]] : rowpop_avx512(p, w);
        uint64_t y = cb ? cb[ib[t]] : rowpop_avx512(q, w);
        out[t] = dice_of(inter, x + y);
    }
}

/*
 * All-pairs loop. b is first interleaved in blocks of 8 rows (word k of rows
 * 8m..8m+7 adjacent), so that ANDing with a broadcast word of row i of a and
 * VPOPCNTQ gives the counts of 8 pairs in the 8 lanes of one vector: no
 * horizontal reductions, and the threshold pre-test runs on 8 pairs at once
 * (in double, exactly like the scalar MAYBE_HIT). W is the compile-time width
 * for the 16- and 32-word fast paths, 0 for any width.
 */
static AVX512 inline void above_block_avx512(__m512i acc, Py_ssize_t i, Py_ssize_t j0,
                                             __mmask8 valid, uint64_t cai, const double *cbd,
                                             const uint32_t *cb, double thr, hits_t *h) {
    __m512d tot = _mm512_add_pd(_mm512_set1_pd((double)cai), _mm512_loadu_pd(cbd + j0));
    __m512d inter = _mm512_cvtepi32_pd(_mm512_cvtepi64_epi32(acc));
    __mmask8 m = _mm512_cmp_pd_mask(_mm512_mul_pd(inter, _mm512_set1_pd(DICE_SLACK2)),
                                    _mm512_mul_pd(_mm512_set1_pd(thr), tot), _CMP_GE_OQ) |
                 _mm512_cmp_pd_mask(tot, _mm512_setzero_pd(), _CMP_EQ_OQ);
    m &= valid;
    if (!m) return;
    uint64_t counts[8];
    _mm512_storeu_si512(counts, acc);
    for (int r = 0; r < 8; r++) {
        if (!(m >> r & 1)) continue;
        double s = dice_of(counts[r], cai + cb[j0 + r]);
        if (s >= thr) hits_push(h, i, j0 + r, s);
    }
}

#define ABOVE_AVX512(SUFFIX, W)                                                           \
    static AVX512 void above_loop##SUFFIX##_avx512(                                      \
        const uint64_t *a, Py_ssize_t na, const uint64_t *bt, Py_ssize_t nb, Py_ssize_t w, \
        const uint32_t *ca, const uint32_t *cb, const double *cbd, double thr, hits_t *h) { \
        const Py_ssize_t ww = (W) ? (W) : w;                                              \
        for (Py_ssize_t i = 0; i < na && !h->failed; i++) {                               \
            const uint64_t *p = a + i * ww;                                               \
            for (Py_ssize_t j0 = 0; j0 < nb; j0 += 8) {                                   \
                const uint64_t *q = bt + j0 * ww;                                         \
                __m512i acc = _mm512_setzero_si512();                                     \
                for (Py_ssize_t k = 0; k < ww; k++)                                       \
                    acc = _mm512_add_epi64(                                               \
                        acc, _mm512_popcnt_epi64(_mm512_and_si512(                        \
                                 _mm512_set1_epi64((long long)p[k]),                      \
                                 _mm512_loadu_si512(q + 8 * k))));                        \
                __mmask8 valid =                                                          \
                    nb - j0 >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (nb - j0)) - 1u);  \
                above_block_avx512(acc, i, j0, valid, ca[i], cbd, cb, thr, h);            \
            }                                                                             \
        }                                                                                 \
    }

ABOVE_AVX512(16, 16)
ABOVE_AVX512(32, 32)
ABOVE_AVX512(any, 0)

static AVX512 int above_avx512(const uint64_t *a, Py_ssize_t na, const uint64_t *b,
                               Py_ssize_t nb, Py_ssize_t w, const uint32_t *ca,
                               const uint32_t *cb, double thr, hits_t *h) {
    Py_ssize_t nbp = (nb + 7) / 8 * 8; /* padded with empty rows, masked off */
    uint64_t *bt = calloc((size_t)(nbp * w + 1), sizeof(uint64_t));
    double *cbd = malloc((size_t)(nbp + 1) * sizeof(double));
    if (!bt || !cbd) {
        free(bt);
        free(cbd);
        h->failed = 1;
        return -1;
    }
    for (Py_ssize_t j = 0; j < nb; j++) {
        const uint64_t *q = b + j * w;
        uint64_t *blk = bt + (j / 8) * 8 * w + (j % 8);
        for (Py_ssize_t k = 0; k < w; k++) blk[8 * k] = q[k];
        cbd[j] = (double)cb[j];
    }
    for (Py_ssize_t j = nb; j < nbp; j++) cbd[j] = 0.0;
    if (w == 16)
        above_loop16_avx512(a, na, bt, nb, w, ca, cb, cbd, thr, h);
    else if (w == 32)
        above_loop32_avx512(a, na, bt, nb, w, ca, cb, cbd, thr, h);
    else
        above_loopany_avx512(a, na, bt, nb, w, ca, cb, cbd, thr, h);
    free(bt);
    free(cbd);
    return h->failed ? -1 : 0;
}
#endif /* DICE_X86 */

/* ------------------------------------------------------------------------ */
/* Implementation table and runtime selection.                               */

typedef struct {
    const char *name;
    void (*popcounts)(const uint64_t *, Py_ssize_t, Py_ssize_t, uint32_t *);
    void (*pairs)(const uint64_t *, const uint64_t *, Py_ssize_t, const int64_t *,
                  const int64_t *, Py_ssize_t, const uint32_t *, const uint32_t *, double *);
    int (*above)(const uint64_t *, Py_ssize_t, const uint64_t *, Py_ssize_t, Py_ssize_t,
                 const uint32_t *, const uint32_t *, double, hits_t *);
    int (*available)(void);
} impl_t;

static int always(void) { return 1; }
#if DICE_X86
static int has_popcnt(void) { return __builtin_cpu_supports("popcnt"); }
static int has_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") &&
           __builtin_cpu_supports("popcnt");
}
#endif

/* Best first. */
static const impl_t IMPLS[] = {
#if DICE_X86
    {"avx512", popcounts_avx512, pairs_avx512, above_avx512, has_avx512},
    {"popcnt", popcounts_popcnt, pairs_popcnt, above_popcnt, has_popcnt},
#endif
    {"portable", popcounts_portable, pairs_portable, above_portable, always},
};
#define N_IMPLS ((int)(sizeof(IMPLS) / sizeof(IMPLS[0])))

/* Resolve the impl= keyword: None means the best one this CPU supports. */
static const impl_t *pick_impl(PyObject *name) {
    if (name == NULL || name == Py_None) {
        for (int k = 0; k < N_IMPLS; k++)
            if (IMPLS[k].available()) return &IMPLS[k];
        return &IMPLS[N_IMPLS - 1];
    }
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_ValueError, "impl: expected a str or None");
        return NULL;
    }
    for (int k = 0; k < N_IMPLS; k++) {
        if (PyUnicode_CompareWithASCIIString(name, IMPLS[k].name) == 0) {
            if (!IMPLS[k].available()) {
                PyErr_Format(PyExc_ValueError, "impl: %s is not supported by this CPU",
                             IMPLS[k].name);
                return NULL;
            }
            return &IMPLS[k];
        }
    }
    PyErr_Format(PyExc_ValueError, "impl: unknown implementation %R", name);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Buffer validation.                                                        */

/* Does a PEP 3118 format string name a native integer/float of this kind? */
static int format_is(const char *fmt, Py_ssize_t itemsize, const char *codes, Py_ssize_t size) {
    if (fmt == NULL) fmt = "B";
    if (*fmt == '@' || *fmt == '=') fmt++;
#if PY_LITTLE_ENDIAN
    else if (*fmt == '<') fmt++;
#else
    else if (*fmt == '>' || *fmt == '!') fmt++;
#endif
    return itemsize == size && fmt[0] != '\0' && fmt[1] == '\0' && strchr(codes, fmt[0]) != NULL;
}

/*
 * Get a C-contiguous buffer of ndim dimensions whose items match codes/size.
 * `what` describes the expectation for the error message, e.g. "2-D uint64".
 */
static int get_buf(PyObject *obj, Py_buffer *view, const char *arg, int ndim, const char *codes,
                   Py_ssize_t size, const char *what, int writable) {
    int flags = PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous %s%s array, got %.100s", arg,
                     writable ? "writable " : "", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    const char *why = NULL;
    if (view->ndim != ndim)
        why = "wrong number of dimensions";
    else if (!format_is(view->format, view->itemsize, codes, size))
        why = "wrong dtype";
    else if (!PyBuffer_IsContiguous(view, 'C'))
        why = "not C-contiguous";
    if (why) {
        PyErr_Format(PyExc_ValueError,
                     "%s: expected a C-contiguous %s array, got %s (ndim=%d, format=%s)", arg,
                     what, why, view->ndim, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define U64_CODES "LQ"
#define I64_CODES "lq"
#define U32_CODES "IL"

static int get_filters(PyObject *obj, Py_buffer *view, const char *arg) {
    return get_buf(obj, view, arg, 2, U64_CODES, 8, "2-D uint64", 0);
}

static int check_indices(const int64_t *idx, Py_ssize_t k, Py_ssize_t n, const char *arg,
                         const char *rows) {
    for (Py_ssize_t t = 0; t < k; t++) {
        if (idx[t] < 0 || idx[t] >= n) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] = %lld is out of bounds for %s with %zd rows",
                         arg, t, (long long)idx[t], rows, n);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Python entry points.                                                      */

static PyObject *py_popcounts(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"filters", "out", "impl", NULL};
    PyObject *fo, *oo, *io = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$O:popcounts", kw, &fo, &oo, &io))
        return NULL;
    const impl_t *impl = pick_impl(io);
    if (!impl) return NULL;
    Py_buffer f, o;
    if (get_filters(fo, &f, "filters")) return NULL;
    if (get_buf(oo, &o, "out", 1, U32_CODES, 4, "1-D uint32", 1)) {
        PyBuffer_Release(&f);
        return NULL;
    }
    Py_ssize_t n = f.shape[0], w = f.shape[1];
    if (o.shape[0] != n) {
        PyErr_Format(PyExc_ValueError, "out: has %zd entries, expected %zd (rows of filters)",
                     o.shape[0], n);
    } else if (w > 0x3ffffff) {
        PyErr_Format(PyExc_ValueError, "filters: %zd words per row is too many", w);
    } else {
        Py_BEGIN_ALLOW_THREADS
        impl->popcounts(f.buf, n, w, o.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&f);
    PyBuffer_Release(&o);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_dice_pairs(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"a", "b", "ia", "ib", "out", "impl", NULL};
    PyObject *ao, *bo, *iao, *ibo, *oo, *io = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO|$O:dice_pairs", kw, &ao, &bo, &iao,
                                     &ibo, &oo, &io))
        return NULL;
    const impl_t *impl = pick_impl(io);
    if (!impl) return NULL;
    Py_buffer a = {0}, b = {0}, ia = {0}, ib = {0}, o = {0};
    int got = 0; /* how many buffers to release */
    if (get_filters(ao, &a, "a")) goto done;
    got = 1;
    if (get_filters(bo, &b, "b")) goto done;
    got = 2;
    if (get_buf(iao, &ia, "ia", 1, I64_CODES, 8, "1-D int64", 0)) goto done;
    got = 3;
    if (get_buf(ibo, &ib, "ib", 1, I64_CODES, 8, "1-D int64", 0)) goto done;
    got = 4;
    if (get_buf(oo, &o, "out", 1, "d", 8, "1-D float64", 1)) goto done;
    got = 5;
    Py_ssize_t na = a.shape[0], nb = b.shape[0], w = a.shape[1], k = ia.shape[0];
    if (b.shape[1] != w) {
        PyErr_Format(PyExc_ValueError, "b: has %zd words per row, a has %zd", b.shape[1], w);
        goto done;
    }
    if (w > 0x3ffffff) {
        PyErr_Format(PyExc_ValueError, "a: %zd words per row is too many", w);
        goto done;
    }
    if (ib.shape[0] != k) {
        PyErr_Format(PyExc_ValueError, "ib: has %zd entries, ia has %zd", ib.shape[0], k);
        goto done;
    }
    if (o.shape[0] != k) {
        PyErr_Format(PyExc_ValueError, "out: has %zd entries, expected %zd", o.shape[0], k);
        goto done;
    }
    if (check_indices(ia.buf, k, na, "ia", "a") || check_indices(ib.buf, k, nb, "ib", "b"))
        goto done;
    /*
     * Row counts once per row when pairs revisit rows (the usual case after
     * blocking); for a handful of pairs over huge arrays, count per pair instead.
     */
    int precount = k >= na + nb;
    uint32_t *ca = NULL, *cb = NULL;
    if (precount) {
        ca = PyMem_RawMalloc((size_t)(na + nb + 1) * sizeof(uint32_t));
        if (!ca) {
            PyErr_NoMemory();
            goto done;
        }
        cb = ca + na;
    }
    Py_BEGIN_ALLOW_THREADS
    if (precount) {
        impl->popcounts(a.buf, na, w, ca);
        impl->popcounts(b.buf, nb, w, cb);
    }
    impl->pairs(a.buf, b.buf, w, ia.buf, ib.buf, k, ca, cb, o.buf);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(ca);
done:
    if (got >= 5) PyBuffer_Release(&o);
    if (got >= 4) PyBuffer_Release(&ib);
    if (got >= 3) PyBuffer_Release(&ia);
    if (got >= 2) PyBuffer_Release(&b);
    if (got >= 1) PyBuffer_Release(&a);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_dice_above(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"a", "b", "threshold", "impl", NULL};
    PyObject *ao, *bo, *io = NULL;
    double thr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOd|$O:dice_above", kw, &ao, &bo, &thr, &io))
        return NULL;
    const impl_t *impl = pick_impl(io);
    if (!impl) return NULL;
    Py_buffer a, b;
    if (get_filters(ao, &a, "a")) return NULL;
    if (get_filters(bo, &b, "b")) {
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t na = a.shape[0], nb = b.shape[0], w = a.shape[1];
    hits_t h = {0};
    uint32_t *ca = NULL;
    if (b.shape[1] != w) {
        PyErr_Format(PyExc_ValueError, "b: has %zd words per row, a has %zd", b.shape[1], w);
        goto done;
    }
    if (w > 0x3ffffff) {
        PyErr_Format(PyExc_ValueError, "a: %zd words per row is too many", w);
        goto done;
    }
    ca = PyMem_RawMalloc((size_t)(na + nb + 1) * sizeof(uint32_t));
    if (!ca) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t *cb = ca + na;
    Py_BEGIN_ALLOW_THREADS
    impl->popcounts(a.buf, na, w, ca);
    impl->popcounts(b.buf, nb, w, cb);
    impl->above(a.buf, na, b.buf, nb, w, ca, cb, thr, &h);
    Py_END_ALLOW_THREADS
    if (h.failed) {
        PyErr_NoMemory();
        goto done;
    }
    /* bytearrays, so that the numpy views on them are writable like the reference's. */
    PyObject *bi = PyByteArray_FromStringAndSize((const char *)h.i, h.len * 8);
    PyObject *bj = bi ? PyByteArray_FromStringAndSize((const char *)h.j, h.len * 8) : NULL;
    PyObject *bs = bj ? PyByteArray_FromStringAndSize((const char *)h.s, h.len * 8) : NULL;
    if (bs) result = PyTuple_Pack(3, bi, bj, bs);
    Py_XDECREF(bi);
    Py_XDECREF(bj);
    Py_XDECREF(bs);
done:
    hits_free(&h);
    PyMem_RawFree(ca);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

/* Is the Dice of every pair (a, b), a in rows_a, b in rows_b, at least `floor`?
 * For cluster cohesion checks: a handful of rows each side, so one call per check
 * rather than one per pair; stops at the first pair below. Dice is computed as
 * (2.0 * common) / (set bits of a + set bits of b), 0.0 when both are empty:
 * the same double as the Python and numpy paths. */
static int rows_of(PyObject *seq, Py_ssize_t n, const char *arg, int64_t *out, Py_ssize_t cap,
                   Py_ssize_t *k) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of row numbers");
    if (!fast) return -1;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(fast);
    if (m > cap) {
        Py_DECREF(fast);
        return 1; /* too many for the stack buffer: caller falls back */
    }
    for (Py_ssize_t t = 0; t < m; t++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, t));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (v < 0 || v >= n) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] = %lld is out of bounds for %zd rows", arg,
                         t, v, n);
            Py_DECREF(fast);
            return -1;
        }
        out[t] = (int64_t)v;
    }
    *k = m;
    Py_DECREF(fast);
    return 0;
}

static uint32_t row_bits(const uint64_t *x, Py_ssize_t w) {
    uint32_t c = 0;
    for (Py_ssize_t t = 0; t < w; t++) c += (uint32_t)__builtin_popcountll(x[t]);
    return c;
}

/* Whether the Dice of rows p and q (with pb and qb set bits) is at least `floor`:
 * (2.0 * common) / (pb + qb), 0.0 when both are empty, the same double as the
 * Python and numpy paths. The one pair check of every cohesion check here. */
static int dice_at_least(const uint64_t *p, const uint64_t *q, Py_ssize_t w, uint32_t pb,
                         uint32_t qb, double floor) {
    uint32_t common = 0;
    for (Py_ssize_t t = 0; t < w; t++) common += (uint32_t)__builtin_popcountll(p[t] & q[t]);
    uint32_t total = pb + qb;
    double d = total ? 2.0 * (double)common / (double)total : 0.0;
    return d >= floor;
}

#define COHERE_ROWS 256

static PyObject *py_dice_all_at_least(PyObject *self, PyObject *args) {
    PyObject *fo, *ao, *bo;
    double floor;
    if (!PyArg_ParseTuple(args, "OOOd:dice_all_at_least", &fo, &ao, &bo, &floor)) return NULL;
    Py_buffer f;
    if (get_filters(fo, &f, "filters")) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = f.shape[0], w = f.shape[1], ka = 0, kb = 0;
    int64_t ra[COHERE_ROWS], rb[COHERE_ROWS];
    int rc = rows_of(ao, n, "rows_a", ra, COHERE_ROWS, &ka);
    if (rc == 0) rc = rows_of(bo, n, "rows_b", rb, COHERE_ROWS, &kb);
    if (rc < 0) goto done;
    if (rc > 0) {
        PyErr_Format(PyExc_ValueError, "dice_all_at_least: at most %d rows a side",
                     COHERE_ROWS);
        goto done;
    }
    {
        const uint64_t *base = f.buf;
        uint32_t cb[COHERE_ROWS];
        for (Py_ssize_t y = 0; y < kb; y++) cb[y] = row_bits(base + rb[y] * w, w);
        int ok = 1;
        for (Py_ssize_t x = 0; x < ka && ok; x++) {
            const uint64_t *p = base + ra[x] * w;
            uint32_t ca = row_bits(p, w);
            for (Py_ssize_t y = 0; y < kb; y++) {
                if (!dice_at_least(p, base + rb[y] * w, w, ca, cb[y], floor)) {
                    ok = 0;
                    break;
                }
            }
        }
        result = PyBool_FromLong(ok);
    }
done:
    PyBuffer_Release(&f);
    return result;
}

/* ------------------------------------------------------------------------ */
/* Blocking: band signatures, block order and the pairs of each block.       */
/* Same results as the numpy code they replace in linkage_service._blocking  */
/* (kept there as the reference the tests cross-check).                      */

/* Band signatures: for each row and band, the band's sampled bits packed into a
 * uint64 (bit t = filter bit positions[band][t]), plus the band's salt, forced odd,
 * 0 where the row is absent. Unsigned arithmetic wraps as numpy's does. */
static PyObject *py_lsh_signatures(PyObject *self, PyObject *args) {
    PyObject *fo, *po, *so, *ao, *oo;
    if (!PyArg_ParseTuple(args, "OOOOO:lsh_signatures", &fo, &po, &so, &ao, &oo)) return NULL;
    Py_buffer f = {0}, p = {0}, s = {0}, a = {0}, o = {0};
    int got = 0;
    if (get_filters(fo, &f, "filters")) goto done;
    got = 1;
    if (get_buf(po, &p, "positions", 2, I64_CODES, 8, "2-D int64", 0)) goto done;
    got = 2;
    if (get_buf(so, &s, "salts", 1, U64_CODES, 8, "1-D uint64", 0)) goto done;
    got = 3;
    if (get_buf(ao, &a, "present", 1, "?bB", 1, "1-D bool", 0)) goto done;
    got = 4;
    if (get_buf(oo, &o, "out", 2, U64_CODES, 8, "2-D uint64", 1)) goto done;
    got = 5;
    {
        Py_ssize_t n = f.shape[0], w = f.shape[1], bands = p.shape[0], k = p.shape[1];
        const int64_t *pos = p.buf;
        if (k > 64 || s.shape[0] != bands || a.shape[0] != n || o.shape[0] != n ||
            o.shape[1] != bands) {
            PyErr_SetString(PyExc_ValueError, "lsh_signatures: shapes do not agree");
            goto done;
        }
        for (Py_ssize_t t = 0; t < bands * k; t++) {
            if (pos[t] < 0 || pos[t] >= 64 * w) {
                PyErr_Format(PyExc_ValueError, "positions: %lld is not a bit of a %zd-word row",
                             (long long)pos[t], w);
                goto done;
            }
        }
        const uint64_t *fb = f.buf, *salt = s.buf;
        const uint8_t *present = a.buf;
        uint64_t *out = o.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < n; r++) {
            const uint64_t *row = fb + r * w;
            for (Py_ssize_t b = 0; b < bands; b++) {
                uint64_t sig = 0;
                const int64_t *pb = pos + b * k;
                for (Py_ssize_t t = 0; t < k; t++)
                    sig |= ((row[pb[t] >> 6] >> (pb[t] & 63)) & 1u) << t;
                out[r * bands + b] = present[r] ? ((sig + salt[b]) | 1u) : 0u;
            }
        }
        Py_END_ALLOW_THREADS
    }
done:
    if (got >= 5) PyBuffer_Release(&o);
    if (got >= 4) PyBuffer_Release(&a);
    if (got >= 3) PyBuffer_Release(&s);
    if (got >= 2) PyBuffer_Release(&p);
    if (got >= 1) PyBuffer_Release(&f);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

typedef struct {
    uint64_t v;
    int64_t r;
} keyed_row_t;

/* Stable LSD radix sort of a[0..m) by v (16-bit digits, digits every item shares
 * skipped); tmp has room for m items. Returns where the sorted items are. */
static keyed_row_t *radix_sort(keyed_row_t *a, keyed_row_t *tmp, Py_ssize_t m, size_t *count) {
    memset(count, 0, 4 * 65536 * sizeof(size_t));
    for (Py_ssize_t t = 0; t < m; t++) {
        uint64_t v = a[t].v;
        count[v & 0xffff]++;
        count[65536 + ((v >> 16) & 0xffff)]++;
        count[2 * 65536 + ((v >> 32) & 0xffff)]++;
        count[3 * 65536 + (v >> 48)]++;
    }
    for (int d = 0; d < 4; d++) {
        size_t *c = count + d * 65536;
        int shift = 16 * d;
        if (m == 0 || c[(a[0].v >> shift) & 0xffff] == (size_t)m) continue;
        size_t at = 0;
        for (int x = 0; x < 65536; x++) {
            size_t k = c[x];
            c[x] = at;
            at += k;
        }
        for (Py_ssize_t t = 0; t < m; t++) tmp[c[(a[t].v >> shift) & 0xffff]++] = a[t];
        keyed_row_t *swap = a;
        a = tmp;
        tmp = swap;
    }
    return a;
}

/* block_order(keys, within or None, rows, out_rows, out_keys): rows (ascending) sorted
 * by key, then within, then row; their keys alongside. */
static PyObject *py_block_order(PyObject *self, PyObject *args) {
    PyObject *ko, *wo, *ro, *oro, *oko;
    if (!PyArg_ParseTuple(args, "OOOOO:block_order", &ko, &wo, &ro, &oro, &oko)) return NULL;
    Py_buffer k = {0}, w = {0}, r = {0}, orow = {0}, okey = {0};
    int got = 0, has_within = wo != Py_None;
    keyed_row_t *a = NULL;
    size_t *count = NULL;
    if (get_buf(ko, &k, "keys", 1, U64_CODES, 8, "1-D uint64", 0)) goto done;
    got = 1;
    if (has_within && get_buf(wo, &w, "within", 1, U64_CODES, 8, "1-D uint64", 0)) goto done;
    got = 2;
    if (get_buf(ro, &r, "rows", 1, I64_CODES, 8, "1-D int64", 0)) goto done;
    got = 3;
    if (get_buf(oro, &orow, "out_rows", 1, I64_CODES, 8, "1-D int64", 1)) goto done;
    got = 4;
    if (get_buf(oko, &okey, "out_keys", 1, U64_CODES, 8, "1-D uint64", 1)) goto done;
    got = 5;
    {
        Py_ssize_t n = k.shape[0], m = r.shape[0];
        if ((has_within && w.shape[0] != n) || orow.shape[0] != m || okey.shape[0] != m) {
            PyErr_SetString(PyExc_ValueError, "block_order: shapes do not agree");
            goto done;
        }
        if (check_indices(r.buf, m, n, "rows", "keys")) goto done;
        a = PyMem_RawMalloc((size_t)(2 * m + 1) * sizeof(keyed_row_t));
        count = PyMem_RawMalloc(4 * 65536 * sizeof(size_t));
        if (!a || !count) {
            PyErr_NoMemory();
            goto done;
        }
        const uint64_t *key = k.buf, *within = has_within ? w.buf : NULL;
        const int64_t *rows = r.buf;
        int64_t *out_rows = orow.buf;
        uint64_t *out_keys = okey.buf;
        Py_BEGIN_ALLOW_THREADS
        keyed_row_t *s = a, *tmp = a + m;
        if (within) {
            for (Py_ssize_t t = 0; t < m; t++) s[t] = (keyed_row_t){within[rows[t]], rows[t]};
            s = radix_sort(s, tmp, m, count);
            tmp = s == a ? a + m : a;
            for (Py_ssize_t t = 0; t < m; t++) s[t].v = key[s[t].r];
        } else {
            for (Py_ssize_t t = 0; t < m; t++) s[t] = (keyed_row_t){key[rows[t]], rows[t]};
        }
        s = radix_sort(s, tmp, m, count);
        for (Py_ssize_t t = 0; t < m; t++) {
            out_rows[t] = s[t].r;
            out_keys[t] = s[t].v;
        }
        Py_END_ALLOW_THREADS
    }
done:
    PyMem_RawFree(a);
    PyMem_RawFree(count);
    if (got >= 5) PyBuffer_Release(&okey);
    if (got >= 4) PyBuffer_Release(&orow);
    if (got >= 3) PyBuffer_Release(&r);
    if (got >= 2 && has_within) PyBuffer_Release(&w);
    if (got >= 1) PyBuffer_Release(&k);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* The pairs of ordered rows, as codes min * n + max: each position whose row is new
 * and whose run of equal keys has two rows or more pairs with the positions of its
 * run at most `window` away; a pair of two new rows is kept from its smaller row. */
static Py_ssize_t block_walk(const int64_t *rows, const uint64_t *keys, Py_ssize_t m,
                             const uint8_t *is_new, Py_ssize_t window, int64_t n,
                             int64_t *out) {
    Py_ssize_t count = 0, start = 0;
    while (start < m) {
        Py_ssize_t end = start + 1;
        while (end < m && keys[end] == keys[start]) end++;
        if (end - start > 1) {
            for (Py_ssize_t p = start; p < end; p++) {
                int64_t a = rows[p];
                if (!is_new[a]) continue;
                Py_ssize_t lo = p - window > start ? p - window : start;
                Py_ssize_t hi = p + window + 1 < end ? p + window + 1 : end;
                for (Py_ssize_t q = lo; q < hi; q++) {
                    int64_t b = rows[q];
                    if (a == b || (is_new[b] && a > b)) continue;
                    if (out) out[count] = a < b ? a * n + b : b * n + a;
                    count++;
                }
            }
        }
        start = end;
    }
    return count;
}

static PyObject *py_block_codes(PyObject *self, PyObject *args) {
    PyObject *ro, *ko, *no;
    Py_ssize_t window;
    long long n;
    if (!PyArg_ParseTuple(args, "OOOnL:block_codes", &ro, &ko, &no, &window, &n)) return NULL;
    Py_buffer r = {0}, k = {0}, isn = {0};
    int got = 0;
    PyObject *result = NULL;
    if (get_buf(ro, &r, "rows", 1, I64_CODES, 8, "1-D int64", 0)) goto done;
    got = 1;
    if (get_buf(ko, &k, "keys", 1, U64_CODES, 8, "1-D uint64", 0)) goto done;
    got = 2;
    if (get_buf(no, &isn, "is_new", 1, "?bB", 1, "1-D bool", 0)) goto done;
    got = 3;
    {
        Py_ssize_t m = r.shape[0];
        if (k.shape[0] != m || window < 0 || n < isn.shape[0] || n > 3037000499LL) {
            PyErr_SetString(PyExc_ValueError, "block_codes: shapes do not agree");
            goto done;
        }
        if (check_indices(r.buf, m, isn.shape[0], "rows", "is_new")) goto done;
        Py_ssize_t total;
        Py_BEGIN_ALLOW_THREADS
        total = block_walk(r.buf, k.buf, m, isn.buf, window, (int64_t)n, NULL);
        Py_END_ALLOW_THREADS
        result = PyByteArray_FromStringAndSize(NULL, total * (Py_ssize_t)sizeof(int64_t));
        if (!result) goto done;
        int64_t *out = (int64_t *)PyByteArray_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        block_walk(r.buf, k.buf, m, isn.buf, window, (int64_t)n, out);
        Py_END_ALLOW_THREADS
    }
done:
    if (got >= 3) PyBuffer_Release(&isn);
    if (got >= 2) PyBuffer_Release(&k);
    if (got >= 1) PyBuffer_Release(&r);
    if (PyErr_Occurred()) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

/* ------------------------------------------------------------------------ */
/* Comparison patterns (linkage_service._scoring / _matchmodel), one pass a  */
/* pair: the same levels as the numpy code, the level boundaries passed in.  */

typedef struct {
    Py_buffer clk, addr, has_addr, exact, checked, sex, birth, width, keys;
    Py_buffer person_cuts, address_cuts, places;
    int got;
    Py_ssize_t n, w, types, nkeys, npc, nac;
    long key_levels;
    double birth_close;
} features_t;

static void features_release(features_t *f) {
    Py_buffer *all[] = {&f->clk,    &f->addr,  &f->has_addr, &f->exact,       &f->checked,
                        &f->sex,    &f->birth, &f->width,    &f->keys,        &f->person_cuts,
                        &f->address_cuts, &f->places};
    for (int k = 0; k < f->got; k++) PyBuffer_Release(all[k]);
    f->got = 0;
}

/* features = (clk, addr, has_addr, exact, checked, sex, birth, width, keys);
 * levels = (person_cuts, address_cuts, places, key_levels, birth_close). */
static int features_get(PyObject *fo, PyObject *lo, features_t *f) {
    memset(f, 0, sizeof(*f));
    PyObject *clk, *addr, *has, *exact, *checked, *sex, *birth, *width, *keys;
    PyObject *pc, *ac, *pl;
    if (!PyArg_ParseTuple(fo, "OOOOOOOOO:features", &clk, &addr, &has, &exact, &checked, &sex,
                          &birth, &width, &keys))
        return -1;
    if (!PyArg_ParseTuple(lo, "OOOld:levels", &pc, &ac, &pl, &f->key_levels, &f->birth_close))
        return -1;
    if (get_filters(clk, &f->clk, "clk")) return -1;
    f->got = 1;
    if (get_filters(addr, &f->addr, "addr")) goto fail;
    f->got = 2;
    if (get_buf(has, &f->has_addr, "has_addr", 1, "?bB", 1, "1-D bool", 0)) goto fail;
    f->got = 3;
    if (get_buf(exact, &f->exact, "exact", 2, U64_CODES, 8, "2-D uint64", 0)) goto fail;
    f->got = 4;
    if (get_buf(checked, &f->checked, "checked", 1, "?bB", 1, "1-D bool", 0)) goto fail;
    f->got = 5;
    if (get_buf(sex, &f->sex, "sex", 1, "bB", 1, "1-D int8", 0)) goto fail;
    f->got = 6;
    if (get_buf(birth, &f->birth, "birth", 1, "d", 8, "1-D float64", 0)) goto fail;
    f->got = 7;
    if (get_buf(width, &f->width, "birth_width", 1, "d", 8, "1-D float64", 0)) goto fail;
    f->got = 8;
    if (get_buf(keys, &f->keys, "keys", 2, U64_CODES, 8, "2-D uint64", 0)) goto fail;
    f->got = 9;
    if (get_buf(pc, &f->person_cuts, "person_cuts", 1, "d", 8, "1-D float64", 0)) goto fail;
    f->got = 10;
    if (get_buf(ac, &f->address_cuts, "address_cuts", 1, "d", 8, "1-D float64", 0)) goto fail;
    f->got = 11;
    if (get_buf(pl, &f->places, "places", 1, I64_CODES, 8, "1-D int64", 0)) goto fail;
    f->got = 12;
    f->n = f->clk.shape[0];
    f->w = f->clk.shape[1];
    f->types = f->exact.shape[1];
    f->nkeys = f->keys.shape[1];
    f->npc = f->person_cuts.shape[0];
    f->nac = f->address_cuts.shape[0];
    if (f->addr.shape[0] != f->n || f->addr.shape[1] != f->w || f->has_addr.shape[0] != f->n ||
        f->exact.shape[0] != f->n || f->checked.shape[0] != f->types ||
        f->sex.shape[0] != f->n || f->birth.shape[0] != f->n || f->width.shape[0] != f->n ||
        f->keys.shape[0] != f->n || f->places.shape[0] != 5 || f->key_levels < 1) {
        PyErr_SetString(PyExc_ValueError, "features: shapes do not agree");
        goto fail;
    }
    return 0;
fail:
    features_release(f);
    return -1;
}

/* How many of the ascending cuts are <= x (numpy searchsorted side="right"). */
static inline long cuts_at_or_below(const double *cuts, Py_ssize_t k, double x) {
    long c = 0;
    while (c < k && cuts[c] <= x) c++;
    return c;
}

#define PATTERN_KERNELS(NAME, ATTR) \
static ATTR inline double dice_rows_##NAME(const uint64_t *p, const uint64_t *q, Py_ssize_t w) { \
    uint64_t inter = 0, total = 0;                                                               \
    for (Py_ssize_t t = 0; t < w; t++) {                                                         \
        inter += (uint64_t)__builtin_popcountll(p[t] & q[t]);                                    \
        total += (uint64_t)__builtin_popcountll(p[t]) + (uint64_t)__builtin_popcountll(q[t]);    \
    }                                                                                            \
    return dice_of(inter, total);                                                                \
}                                                                                                \
                                                                                                 \
/* The pattern number of rows a and b; *conflict: a checked identifier disagrees. */             \
static ATTR int64_t pattern_at_##NAME(const features_t *f, int64_t a, int64_t b, int *conflict) { \
    Py_ssize_t w = f->w;                                                                         \
    const uint64_t *clk = f->clk.buf, *addr = f->addr.buf;                                       \
    double dice = dice_rows_##NAME(clk + a * w, clk + b * w, w);                                 \
    const uint64_t *ka = (const uint64_t *)f->keys.buf + a * f->nkeys;                           \
    const uint64_t *kb = (const uint64_t *)f->keys.buf + b * f->nkeys;                           \
    long kagree = 0, kdiff = 0;                                                                  \
    for (Py_ssize_t t = 0; t < f->nkeys; t++) {                                                  \
        if (ka[t] && kb[t]) {                                                                    \
            if (ka[t] == kb[t])                                                                  \
                kagree++;                                                                        \
            else                                                                                 \
                kdiff++;                                                                         \
        }                                                                                        \
    }                                                                                            \
    const double *birth = f->birth.buf, *width = f->width.buf;                                   \
    double x = birth[a] - width[a] - birth[b], y = birth[b] - width[b] - birth[a];               \
    long bl;                                                                                     \
    if (x != x || y != y) {                                                                      \
        bl = 2;                                                                                  \
    } else {                                                                                     \
        double gap = x > y ? x : y;                                                              \
        if (gap < 0.0) gap = 0.0;                                                                \
        bl = gap <= f->birth_close ? 0 : 1;                                                      \
    }                                                                                            \
    long band = cuts_at_or_below(f->person_cuts.buf, f->npc, dice);                              \
    long person = ((bl * (f->npc + 1) + band) * f->key_levels +                                  \
                   (kagree < f->key_levels - 1 ? kagree : f->key_levels - 1)) * 2 +              \
                  (kdiff > 0);                                                                   \
    const uint8_t *has = f->has_addr.buf;                                                        \
    long address = 0;                                                                            \
    if (has[a] && has[b])                                                                        \
        address = cuts_at_or_below(f->address_cuts.buf, f->nac,                                  \
                                   dice_rows_##NAME(addr + a * w, addr + b * w, w)) + 1;         \
    const uint64_t *ea = (const uint64_t *)f->exact.buf + a * f->types;                          \
    const uint64_t *eb = (const uint64_t *)f->exact.buf + b * f->types;                          \
    const uint8_t *checked = f->checked.buf;                                                     \
    int c_agree = 0, c_dis = 0, l_agree = 0, l_dis = 0;                                          \
    for (Py_ssize_t t = 0; t < f->types; t++) {                                                  \
        if (ea[t] && eb[t]) {                                                                    \
            int same = ea[t] == eb[t];                                                           \
            if (checked[t]) {                                                                    \
                c_agree |= same;                                                                 \
                c_dis |= !same;                                                                  \
            } else {                                                                             \
                l_agree |= same;                                                                 \
                l_dis |= !same;                                                                  \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    const int8_t *sex = f->sex.buf;                                                              \
    long sl = (sex[a] && sex[b]) ? (sex[a] == sex[b] ? 1 : 2) : 0;                               \
    const int64_t *pl = f->places.buf;                                                           \
    *conflict = c_dis;                                                                           \
    return person * pl[0] + address * pl[1] + (c_agree ? 1 : c_dis ? 2 : 0) * pl[2] +            \
           (l_agree ? 1 : l_dis ? 2 : 0) * pl[3] + sl * pl[4];                                   \
}                                                                                                \

PATTERN_KERNELS(portable, )
#if DICE_X86
PATTERN_KERNELS(popcnt, __attribute__((target("popcnt"))))
PATTERN_KERNELS(avx512, AVX512)
#endif

#define PREFETCH 12

/* Pair codes i * n + j into (i, j): sorted codes mostly keep their i, so the
 * division (dozens of cycles) is done only when i changes. */
typedef struct {
    int64_t i, base;
} decoder_t;

static inline void decode(decoder_t *d, int64_t code, int64_t n, int64_t *i, int64_t *j) {
    if (code < d->base || code - d->base >= n) {
        d->i = code / n;
        d->base = d->i * n;
    }
    *i = d->i;
    *j = code - d->base;
}

typedef int64_t (*pattern_fn)(const features_t *, int64_t, int64_t, int *);

/* The pattern body of an implementation (impl: None for the best this CPU supports,
 * as pick_impl resolves it); NULL with an exception set for a bad name. */
static pattern_fn pick_pattern(PyObject *name) {
    const impl_t *impl = pick_impl(name);
    if (!impl) return NULL;
#if DICE_X86
    if (strcmp(impl->name, "avx512") == 0) return pattern_at_avx512;
    if (strcmp(impl->name, "popcnt") == 0) return pattern_at_popcnt;
#endif
    return pattern_at_portable;
}

/* pair_patterns(features, levels, codes, n, out): pattern of each pair code i * n + j
 * into out (int16). */
static PyObject *py_pair_patterns(PyObject *self, PyObject *args) {
    PyObject *fo, *lo, *co, *oo, *io = NULL;
    long long n;
    if (!PyArg_ParseTuple(args, "O!O!OLO|O:pair_patterns", &PyTuple_Type, &fo, &PyTuple_Type,
                          &lo, &co, &n, &oo, &io))
        return NULL;
    pattern_fn pattern_at = pick_pattern(io);
    if (!pattern_at) return NULL;
    features_t f;
    if (features_get(fo, lo, &f)) return NULL;
    Py_buffer c = {0}, o = {0};
    int got = 0;
    if (get_buf(co, &c, "codes", 1, I64_CODES, 8, "1-D int64", 0)) goto done;
    got = 1;
    if (get_buf(oo, &o, "out", 1, "h", 2, "1-D int16", 1)) goto done;
    got = 2;
    {
        Py_ssize_t k = c.shape[0];
        const int64_t *codes = c.buf;
        if (o.shape[0] != k || n < 1) {
            PyErr_SetString(PyExc_ValueError, "pair_patterns: shapes do not agree");
            goto done;
        }
        /* i < rows exactly when code < rows * n; j < n <= rows needs no division */
        for (Py_ssize_t t = 0; t < k; t++) {
            if (codes[t] < 0 || codes[t] >= (int64_t)f.n * n || (n > f.n && codes[t] % n >= f.n)) {
                PyErr_Format(PyExc_ValueError, "codes[%zd] = %lld names a row past %zd", t,
                             (long long)codes[t], f.n);
                goto done;
            }
        }
        int16_t *out = o.buf;
        Py_BEGIN_ALLOW_THREADS
        /* pairs name rows all over the arrays: fetch the rows of the pair PREFETCH
         * ahead while this one is compared (twice as fast at a million rows) */
        const uint64_t *clk = f.clk.buf, *addr = f.addr.buf, *exact = f.exact.buf;
        const uint64_t *keys = f.keys.buf;
        const double *birth = f.birth.buf, *width = f.width.buf;
        decoder_t now = {0, 0}, ahead = {0, 0};
        for (Py_ssize_t t = 0; t < k; t++) {
            if (t + PREFETCH < k) {
                int64_t i2, j2;
                decode(&ahead, codes[t + PREFETCH], n, &i2, &j2);
                for (int h = 0; h < 2; h++) {
                    int64_t r = h ? j2 : i2;
                    for (Py_ssize_t x = 0; x < f.w; x += 8) {
                        __builtin_prefetch(clk + r * f.w + x);
                        __builtin_prefetch(addr + r * f.w + x);
                    }
                    __builtin_prefetch(exact + r * f.types);
                    __builtin_prefetch(keys + r * f.nkeys);
                    __builtin_prefetch(birth + r);
                    __builtin_prefetch(width + r);
                }
            }
            int conflict;
            int64_t i, j;
            decode(&now, codes[t], n, &i, &j);
            out[t] = (int16_t)pattern_at(&f, i, j, &conflict);
        }
        Py_END_ALLOW_THREADS
    }
done:
    if (got >= 2) PyBuffer_Release(&o);
    if (got >= 1) PyBuffer_Release(&c);
    features_release(&f);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* patterns_all_at_least(features, levels, probability, rows_a, rows_b, floor): whether
 * every pair (a, b) has no conflicting checked identifier and a probability (the
 * table, indexed by pattern) at least floor. For person cohesion checks. */
static PyObject *py_patterns_all_at_least(PyObject *self, PyObject *args) {
    PyObject *fo, *lo, *po, *ao, *bo, *io = NULL;
    double floor;
    if (!PyArg_ParseTuple(args, "O!O!OOOd|O:patterns_all_at_least", &PyTuple_Type, &fo,
                          &PyTuple_Type, &lo, &po, &ao, &bo, &floor, &io))
        return NULL;
    pattern_fn pattern_at = pick_pattern(io);
    if (!pattern_at) return NULL;
    features_t f;
    if (features_get(fo, lo, &f)) return NULL;
    Py_buffer p = {0};
    PyObject *result = NULL;
    int got = 0;
    int64_t ra[COHERE_ROWS], rb[COHERE_ROWS];
    Py_ssize_t ka = 0, kb = 0;
    if (get_buf(po, &p, "probability", 1, "d", 8, "1-D float64", 0)) goto done;
    got = 1;
    int rc = rows_of(ao, f.n, "rows_a", ra, COHERE_ROWS, &ka);
    if (rc == 0) rc = rows_of(bo, f.n, "rows_b", rb, COHERE_ROWS, &kb);
    if (rc < 0) goto done;
    if (rc > 0) {
        PyErr_Format(PyExc_ValueError, "patterns_all_at_least: at most %d rows a side",
                     COHERE_ROWS);
        goto done;
    }
    {
        const double *prob = p.buf;
        Py_ssize_t np_ = p.shape[0];
        int ok = 1;
        for (Py_ssize_t x = 0; x < ka && ok; x++) {
            for (Py_ssize_t y = 0; y < kb; y++) {
                int conflict;
                int64_t pat = pattern_at(&f, ra[x], rb[y], &conflict);
                if (pat < 0 || pat >= np_) {
                    PyErr_Format(PyExc_ValueError, "pattern %lld past the probability table",
                                 (long long)pat);
                    goto done;
                }
                if (conflict || !(prob[pat] >= floor)) {
                    ok = 0;
                    break;
                }
            }
        }
        result = PyBool_FromLong(ok);
    }
done:
    if (got >= 1) PyBuffer_Release(&p);
    features_release(&f);
    return result;
}

static PyObject *py_implementations(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (int k = 0; k < N_IMPLS; k++) {
        if (!IMPLS[k].available()) continue;
        PyObject *s = PyUnicode_FromString(IMPLS[k].name);
        if (!s || PyList_Append(out, s)) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    PyObject *t = PyList_AsTuple(out);
    Py_DECREF(out);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Agglomeration: the edge loop of linkage_service._cluster.agglomerate over  */
/* a Clusters' parent array (array('q'), -1 = row not held) and its member    */
/* lists (dict root -> list, clusters of two rows or more). The same steps as  */
/* agglomerate_reference there, which the tests hold it to: find with path    */
/* compression, the cohesion callback when either side has more than one row, */
/* union by size (ties to the smaller root), members of the survivor first.   */

static int64_t uf_find(int64_t *parent, Py_ssize_t n, int64_t r) {
    int64_t root = (r >= 0 && r < n) ? parent[r] : -1;
    if (root < 0) return -1;
    if (root == r) return r;
    while (parent[root] != root) root = parent[root];
    while (parent[r] != root) {
        int64_t next = parent[r];
        parent[r] = root;
        r = next;
    }
    return root;
}

/* The members of the cluster rooted at `root`: its list in groups (a new
 * reference to it), or a new one-row list. NULL with an exception on failure. */
static PyObject *uf_members(PyObject *groups, PyObject *key, int64_t root, Py_ssize_t *len) {
    PyObject *got = PyDict_GetItemWithError(groups, key);
    if (got != NULL) {
        if (!PyList_Check(got)) {
            PyErr_SetString(PyExc_TypeError, "agglomerate: member lists must be lists");
            return NULL;
        }
        *len = PyList_GET_SIZE(got);
        Py_INCREF(got);
        return got;
    }
    if (PyErr_Occurred()) return NULL;
    PyObject *one = PyList_New(1);
    if (one == NULL) return NULL;
    PyObject *r = PyLong_FromLongLong(root);
    if (r == NULL) {
        Py_DECREF(one);
        return NULL;
    }
    PyList_SET_ITEM(one, 0, r);
    *len = 1;
    return one;
}

static int int64_buffer(PyObject *o, Py_buffer *b, const char *name, int writable) {
    if (PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                     (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (b->itemsize != 8 || b->format == NULL ||
        (strcmp(b->format, "q") != 0 && strcmp(b->format, "l") != 0 &&
         strcmp(b->format, "<q") != 0 && strcmp(b->format, "=q") != 0)) {
        PyErr_Format(PyExc_TypeError, "agglomerate: %s must be int64", name);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

static PyObject *py_agglomerate(PyObject *self, PyObject *args) {
    PyObject *po, *groups, *io, *jo, *oo, *ro, *coheres;
    if (!PyArg_ParseTuple(args, "OO!OOOOO:agglomerate", &po, &PyDict_Type, &groups, &io, &jo,
                          &oo, &ro, &coheres))
        return NULL;
    Py_buffer pb = {0}, ib = {0}, jb = {0}, ob = {0}, rb = {0};
    PyObject *result = NULL;
    if (int64_buffer(po, &pb, "parent", 1)) return NULL;
    if (int64_buffer(io, &ib, "i", 0)) goto release_p;
    if (int64_buffer(jo, &jb, "j", 0)) goto release_i;
    if (int64_buffer(oo, &ob, "order", 0)) goto release_j;
    if (PyObject_GetBuffer(ro, &rb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) goto release_o;
    {
        int64_t *parent = pb.buf;
        const int64_t *I = ib.buf, *J = jb.buf, *order = ob.buf;
        unsigned char *refused = rb.buf;
        Py_ssize_t n = pb.len / 8, m = ib.len / 8, edges = ob.len / 8;
        if (jb.len / 8 != m || rb.len != m) {
            PyErr_SetString(PyExc_ValueError, "agglomerate: i, j and refused differ in length");
            goto release_r;
        }
        for (Py_ssize_t k = 0; k < edges; k++) {
            int64_t e = order[k];
            if (e < 0 || e >= m) {
                PyErr_SetString(PyExc_IndexError, "agglomerate: order names no edge");
                goto release_r;
            }
            int64_t ra = uf_find(parent, n, I[e]), rb_ = uf_find(parent, n, J[e]);
            if (ra < 0 || rb_ < 0) {
                PyObject *missing = PyLong_FromLongLong(ra < 0 ? I[e] : J[e]);
                if (missing != NULL) {
                    PyErr_SetObject(PyExc_KeyError, missing);
                    Py_DECREF(missing);
                }
                goto release_r;
            }
            if (ra == rb_) continue;
            PyObject *ka = PyLong_FromLongLong(ra), *kb = PyLong_FromLongLong(rb_);
            PyObject *ma = NULL, *mb = NULL;
            Py_ssize_t la = 0, lb = 0;
            int ok = 1;
            if (ka == NULL || kb == NULL) goto edge_fail;
            ma = uf_members(groups, ka, ra, &la);
            if (ma == NULL) goto edge_fail;
            mb = uf_members(groups, kb, rb_, &lb);
            if (mb == NULL) goto edge_fail;
            if (la > 1 || lb > 1) {
                PyObject *answer = PyObject_CallFunctionObjArgs(coheres, ma, mb, NULL);
                if (answer == NULL) goto edge_fail;
                ok = PyObject_IsTrue(answer);
                Py_DECREF(answer);
                if (ok < 0) goto edge_fail;
            }
            if (!ok) {
                refused[e] = 1;
            } else {
                /* union: the larger survives, or of two the same size the smaller root */
                if (la < lb || (la == lb && ra > rb_)) {
                    int64_t tr = ra;
                    ra = rb_;
                    rb_ = tr;
                    PyObject *t = ka;
                    ka = kb;
                    kb = t;
                    t = ma;
                    ma = mb;
                    mb = t;
                }
                parent[rb_] = ra;
                PyObject *held = PyDict_GetItemWithError(groups, ka);
                if (held == NULL) {
                    if (PyErr_Occurred()) goto edge_fail;
                    /* ma is a new one-row list here: it becomes the survivor's own */
                    if (PyDict_SetItem(groups, ka, ma) < 0) goto edge_fail;
                    held = ma;
                }
                if (PyList_SetSlice(held, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, mb) < 0)
                    goto edge_fail;
                if (PyDict_DelItem(groups, kb) < 0) {
                    if (!PyErr_ExceptionMatches(PyExc_KeyError)) goto edge_fail;
                    PyErr_Clear();
                }
            }
            Py_DECREF(ka);
            Py_DECREF(kb);
            Py_DECREF(ma);
            Py_DECREF(mb);
            continue;
        edge_fail:
            Py_XDECREF(ka);
            Py_XDECREF(kb);
            Py_XDECREF(ma);
            Py_XDECREF(mb);
            goto release_r;
        }
        result = Py_NewRef(Py_None);
    }
release_r:
    PyBuffer_Release(&rb);
release_o:
    PyBuffer_Release(&ob);
release_j:
    PyBuffer_Release(&jb);
release_i:
    PyBuffer_Release(&ib);
release_p:
    PyBuffer_Release(&pb);
    return result;
}

/* agglomerate_dice: agglomerate with the cohesion check "every cross pair's Dice
 * over `filters` is at least `floor`" done here, so that the loop over the edges
 * runs without the interpreter lock (the places of an update are clustered on one
 * core while the persons' Python runs on the other). The same steps and answers
 * as agglomerate with that check as its callback (kernel.dice_all_at_least), and
 * no cap on a cluster's size.
 *
 * Work is in proportion to the edges and the rows of the clusters they touch,
 * never to all rows held (an update's retired places call it once each). The
 * clusters the edges start in are read in first, with the lock, and numbered
 * 0..k-1 (sorted by root row); the loop joins those numbers, each keeping its
 * root row, size and member chain (slots into one array of rows); at the end the
 * parent array and the member lists of the clusters that changed are written. */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The number of root row `r` among the k sorted roots. */
static Py_ssize_t root_number(const int64_t *roots, Py_ssize_t k, int64_t r) {
    Py_ssize_t lo = 0, hi = k;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (roots[mid] < r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static PyObject *py_agglomerate_dice(PyObject *self, PyObject *args) {
    PyObject *po, *groups, *io, *jo, *oo, *ro, *fo;
    double floor;
    if (!PyArg_ParseTuple(args, "OO!OOOOOd:agglomerate_dice", &po, &PyDict_Type, &groups, &io,
                          &jo, &oo, &ro, &fo, &floor))
        return NULL;
    Py_buffer pb = {0}, ib = {0}, jb = {0}, ob = {0}, rb = {0}, fb = {0};
    PyObject *result = NULL;
    /* per edge: the numbers of its ends' clusters; per cluster: root row, union-find
     * parent, size at the start and now, first and last member slot; per slot: row
     * and next slot (-1 at the end) */
    int64_t *roots = NULL, *ea = NULL, *eb = NULL, *rows = NULL, *next = NULL, *num = NULL;
    int64_t *up = NULL;
    Py_ssize_t *start = NULL, *size = NULL, *head = NULL, *tail = NULL;
    if (int64_buffer(po, &pb, "parent", 1)) return NULL;
    if (int64_buffer(io, &ib, "i", 0)) goto release;
    if (int64_buffer(jo, &jb, "j", 0)) goto release;
    if (int64_buffer(oo, &ob, "order", 0)) goto release;
    if (PyObject_GetBuffer(ro, &rb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) goto release;
    if (get_filters(fo, &fb, "filters")) goto release;
    {
        int64_t *parent = pb.buf;
        const int64_t *I = ib.buf, *J = jb.buf, *order = ob.buf;
        unsigned char *refused = rb.buf;
        const uint64_t *base = fb.buf;
        Py_ssize_t n = pb.len / 8, m = ib.len / 8, edges = ob.len / 8;
        Py_ssize_t nf = fb.shape[0], w = fb.shape[1];
        if (jb.len / 8 != m || rb.len != m) {
            PyErr_SetString(PyExc_ValueError,
                            "agglomerate_dice: i, j and refused differ in length");
            goto release;
        }
        size_t cap = (size_t)(2 * edges + 1);
        roots = PyMem_RawMalloc(cap * 8);
        ea = PyMem_RawMalloc(cap * 8);
        eb = PyMem_RawMalloc(cap * 8);
        /* many edges for the rows held (a link from scratch): clusters are numbered
         * through a map of every row rather than by sorting */
        int dense = (Py_ssize_t)cap > n / 16;
        if (dense) num = PyMem_RawCalloc((size_t)(n ? n : 1), 8);
        if (!roots || !ea || !eb || (dense && !num)) {
            PyErr_NoMemory();
            goto release;
        }
        /* every edge's ends and the clusters they are in now (no Python here: the
         * lock is let go, and the first bad edge is named after) */
        Py_ssize_t k = 0, bad = -1;
        int64_t missing = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t t = 0; t < edges && bad < 0; t++) {
            int64_t e = order[t];
            if (e < 0 || e >= m) {
                bad = t;
                break;
            }
            for (int side = 0; side < 2; side++) {
                int64_t row = side ? J[e] : I[e];
                int64_t root = uf_find(parent, n, row);
                if (root < 0 || root >= nf) {
                    bad = t;
                    missing = row;
                    break;
                }
                if (dense) {
                    if (num[root] == 0) {
                        roots[k] = root;
                        num[root] = ++k;
                    }
                } else {
                    roots[k++] = root;
                }
                (side ? eb : ea)[t] = root;
            }
        }
        if (bad < 0) {
            if (dense) {
                for (Py_ssize_t t = 0; t < edges; t++) {
                    ea[t] = num[ea[t]] - 1;
                    eb[t] = num[eb[t]] - 1;
                }
            } else {
                qsort(roots, (size_t)k, 8, cmp_i64);
                Py_ssize_t kk = 0;
                for (Py_ssize_t t = 0; t < k; t++)
                    if (kk == 0 || roots[t] != roots[kk - 1]) roots[kk++] = roots[t];
                k = kk;
                for (Py_ssize_t t = 0; t < edges; t++) {
                    ea[t] = root_number(roots, k, ea[t]);
                    eb[t] = root_number(roots, k, eb[t]);
                }
            }
        }
        Py_END_ALLOW_THREADS
        if (bad >= 0) {
            int64_t e = order[bad];
            if (e < 0 || e >= m) {
                PyErr_SetString(PyExc_IndexError, "agglomerate_dice: order names no edge");
            } else if (uf_find(parent, n, missing) < 0) {
                PyObject *row = PyLong_FromLongLong(missing);
                if (row != NULL) {
                    PyErr_SetObject(PyExc_KeyError, row);
                    Py_DECREF(row);
                }
            } else {
                PyErr_Format(PyExc_ValueError, "agglomerate_dice: row %lld lies past the filters",
                             (long long)missing);
            }
            goto release;
        }
        up = PyMem_RawMalloc((size_t)(k + 1) * sizeof(int64_t));
        start = PyMem_RawMalloc((size_t)(k + 1) * sizeof(Py_ssize_t));
        size = PyMem_RawMalloc((size_t)(k + 1) * sizeof(Py_ssize_t));
        head = PyMem_RawMalloc((size_t)(k + 1) * sizeof(Py_ssize_t));
        tail = PyMem_RawMalloc((size_t)(k + 1) * sizeof(Py_ssize_t));
        if (!up || !start || !size || !head || !tail) {
            PyErr_NoMemory();
            goto release;
        }
        /* the member lists of those clusters, as chains of slots */
        Py_ssize_t slots = 0, slot_cap = k + 1;
        rows = PyMem_RawMalloc((size_t)slot_cap * 8);
        next = PyMem_RawMalloc((size_t)slot_cap * 8);
        if (!rows || !next) {
            PyErr_NoMemory();
            goto release;
        }
        int any_lists = PyDict_GET_SIZE(groups) > 0;
        for (Py_ssize_t c = 0; c < k; c++) {
            int64_t root = roots[c];
            PyObject *got = NULL;
            if (any_lists) {
                PyObject *key = PyLong_FromLongLong(root);
                if (key == NULL) goto release;
                got = PyDict_GetItemWithError(groups, key);
                Py_DECREF(key);
                if (got == NULL && PyErr_Occurred()) goto release;
            }
            Py_ssize_t len = 1;
            if (got != NULL) {
                if (!PyList_Check(got) || PyList_GET_SIZE(got) < 1) {
                    PyErr_SetString(PyExc_TypeError,
                                    "agglomerate_dice: member lists must be lists");
                    goto release;
                }
                len = PyList_GET_SIZE(got);
            }
            if (slots + len > slot_cap) {
                while (slots + len > slot_cap) slot_cap *= 2;
                int64_t *r2 = PyMem_RawRealloc(rows, (size_t)slot_cap * 8);
                if (r2) rows = r2;
                int64_t *n2 = r2 ? PyMem_RawRealloc(next, (size_t)slot_cap * 8) : NULL;
                if (n2) next = n2;
                if (!r2 || !n2) {
                    PyErr_NoMemory();
                    goto release;
                }
            }
            head[c] = slots;
            for (Py_ssize_t t = 0; t < len; t++) {
                int64_t v = root;
                if (got != NULL) {
                    long long x = PyLong_AsLongLong(PyList_GET_ITEM(got, t));
                    if (x == -1 && PyErr_Occurred()) goto release;
                    v = (int64_t)x;
                }
                if (v < 0 || v >= nf || (t == 0 && v != root)) {
                    PyErr_Format(PyExc_ValueError,
                                 "agglomerate_dice: the members of %lld are not its own or "
                                 "lie past the filters",
                                 (long long)root);
                    goto release;
                }
                rows[slots] = v;
                next[slots] = t + 1 < len ? slots + 1 : -1;
                slots++;
            }
            tail[c] = slots - 1;
            up[c] = c;
            start[c] = size[c] = len;
        }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t t = 0; t < edges; t++) {
            /* the clusters' own union-find: the same find as the rows' */
            int64_t ca = uf_find(up, k, ea[t]), cb = uf_find(up, k, eb[t]);
            if (ca == cb) continue;
            int ok = 1;
            if (size[ca] > 1 || size[cb] > 1) {
                for (int64_t x = head[ca]; x >= 0 && ok; x = next[x]) {
                    const uint64_t *p = base + rows[x] * w;
                    uint32_t bx = row_bits(p, w);
                    for (int64_t y = head[cb]; y >= 0; y = next[y]) {
                        const uint64_t *q = base + rows[y] * w;
                        if (!dice_at_least(p, q, w, bx, row_bits(q, w), floor)) {
                            ok = 0;
                            break;
                        }
                    }
                }
            }
            if (!ok) {
                refused[order[t]] = 1;
                continue;
            }
            /* union: the larger survives, or of two the same size the smaller root
             * row; the survivor's members first */
            if (size[ca] < size[cb] || (size[ca] == size[cb] && roots[ca] > roots[cb])) {
                int64_t tmp = ca;
                ca = cb;
                cb = tmp;
            }
            up[cb] = ca;
            next[tail[ca]] = head[cb];
            tail[ca] = tail[cb];
            size[ca] += size[cb];
        }
        Py_END_ALLOW_THREADS
        /* with the lock again: the parent array, and the member lists that changed */
        for (Py_ssize_t c = 0; c < k; c++) {
            int64_t top = uf_find(up, k, c);
            if (top == c && size[c] == start[c]) continue; /* untouched */
            PyObject *key = PyLong_FromLongLong(roots[c]);
            if (key == NULL) goto release;
            int rc = 0;
            if (top != c) {
                parent[roots[c]] = roots[top];
                if (PyDict_DelItem(groups, key) < 0) {
                    if (PyErr_ExceptionMatches(PyExc_KeyError))
                        PyErr_Clear();
                    else
                        rc = -1;
                }
            } else {
                PyObject *list = PyList_New(size[c]);
                if (list == NULL) {
                    rc = -1;
                } else {
                    Py_ssize_t at = 0;
                    for (int64_t x = head[c]; x >= 0 && rc == 0; x = next[x]) {
                        PyObject *v = PyLong_FromLongLong(rows[x]);
                        if (v == NULL)
                            rc = -1;
                        else
                            PyList_SET_ITEM(list, at++, v);
                    }
                    if (rc == 0) rc = PyDict_SetItem(groups, key, list);
                    Py_DECREF(list);
                }
            }
            Py_DECREF(key);
            if (rc < 0) goto release;
        }
        result = Py_NewRef(Py_None);
    }
release:
    PyMem_RawFree(roots);
    PyMem_RawFree(num);
    PyMem_RawFree(ea);
    PyMem_RawFree(eb);
    PyMem_RawFree(rows);
    PyMem_RawFree(next);
    PyMem_RawFree(up);
    PyMem_RawFree(start);
    PyMem_RawFree(size);
    PyMem_RawFree(head);
    PyMem_RawFree(tail);
    if (fb.obj) PyBuffer_Release(&fb);
    if (rb.obj) PyBuffer_Release(&rb);
    if (ob.obj) PyBuffer_Release(&ob);
    if (jb.obj) PyBuffer_Release(&jb);
    if (ib.obj) PyBuffer_Release(&ib);
    PyBuffer_Release(&pb);
    return result;
}

static PyMethodDef methods[] = {
    {"popcounts", (PyCFunction)(void (*)(void))py_popcounts, METH_VARARGS | METH_KEYWORDS,
     "popcounts(filters, out, *, impl=None): set bits of each row into out (uint32)."},
    {"dice_pairs", (PyCFunction)(void (*)(void))py_dice_pairs, METH_VARARGS | METH_KEYWORDS,
     "dice_pairs(a, b, ia, ib, out, *, impl=None): Dice of a[ia[k]], b[ib[k]] into out."},
    {"dice_above", (PyCFunction)(void (*)(void))py_dice_above, METH_VARARGS | METH_KEYWORDS,
     "dice_above(a, b, threshold, *, impl=None) -> (i, j, s) as bytearrays of int64, "
     "int64, float64."},
    {"dice_all_at_least", py_dice_all_at_least, METH_VARARGS,
     "dice_all_at_least(filters, rows_a, rows_b, floor) -> whether every cross pair's Dice "
     "is at least floor (at most 256 rows a side)."},
    {"lsh_signatures", py_lsh_signatures, METH_VARARGS,
     "lsh_signatures(filters, positions, salts, present, out): band signatures into out."},
    {"block_order", py_block_order, METH_VARARGS,
     "block_order(keys, within, rows, out_rows, out_keys): rows sorted by key, within, row."},
    {"block_codes", py_block_codes, METH_VARARGS,
     "block_codes(rows, keys, is_new, window, n) -> pair codes of ordered rows (bytearray)."},
    {"pair_patterns", py_pair_patterns, METH_VARARGS,
     "pair_patterns(features, levels, codes, n, out, impl=None): comparison pattern of each "
     "pair code."},
    {"patterns_all_at_least", py_patterns_all_at_least, METH_VARARGS,
     "patterns_all_at_least(features, levels, probability, rows_a, rows_b, floor, impl=None) "
     "-> bool."},
    {"agglomerate", py_agglomerate, METH_VARARGS,
     "agglomerate(parent, groups, i, j, order, refused, coheres): apply the edges in order "
     "to a Clusters' parent array and member lists (see linkage_service._cluster)."},
    {"agglomerate_dice", py_agglomerate_dice, METH_VARARGS,
     "agglomerate_dice(parent, groups, i, j, order, refused, filters, floor): agglomerate "
     "under 'every cross pair's Dice is at least floor', without the interpreter lock."},
    {"implementations", py_implementations, METH_NOARGS,
     "implementations() -> names usable on this CPU, fastest first."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "linkage_service._dice",
    .m_doc = "Compiled Dice kernel; use linkage_service._kernel.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__dice(void) {
#if DICE_X86
    __builtin_cpu_init();
#endif
    return PyModule_Create(&module);
}
