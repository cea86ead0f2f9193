/*
 * _bloom.c: the compiled Bloom-filter kernel behind agency_client._encoder.
 *
 * Owns two things: turning the values of a filter's fields into the filter's
 * bytes (FilterKernel), and keyed tokens under several keys at once, in base64
 * (KeyedTokens: the blocking keys and exact-identifier tokens of a record).
 * For each field of a filter it tokenises each value (bigrams, positional
 * unigrams, the whole value, or date parts), hashes each feature with keyed
 * BLAKE2b and sets the feature's bits. The bytes are exactly those of the documented
 * derivation, restated slowly in tests/agency_client/test_encoder.py:
 *
 *   stream = BLAKE2b-512(feature, key=field key, person=be128(0))
 *         || BLAKE2b-512(feature, key=field key, person=be128(1)) || ...
 *   position i = uint16_le(stream[2i : 2i + 2]) & (length_bits - 1), i < k
 *   filter bit p = bit p % 8 (least significant first) of byte p / 8
 *
 * Keyed BLAKE2b is OpenSSL 3's EVP_MAC "BLAKE2BMAC" ("custom" is BLAKE2's
 * personalisation): no hash function is implemented here. Python's hashlib
 * cannot be used from C, and libsodium ships no headers on the target systems.
 *
 * Why compiled: per feature the Python encoder paid a dict lookup, a bytes
 * encode, a hashlib object and a big-int OR; a record has about 60 features.
 * Here a record's filter is one call. Feature -> positions results are kept in
 * a bounded per-kernel cache (names and dates repeat heavily): at most
 * cache_limit entries, dropped all at once when full, so memory stays flat.
 * The cache holds keyed-hash outputs of identity fragments; it lives and dies
 * with the process like the rest of the encoder's state and is never exported.
 *
 * Nothing here logs, releases the GIL or keeps a Python object besides the
 * kernel itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define TOK_BIGRAMS 0
#define TOK_POSITIONAL 1
#define TOK_EXACT 2
#define TOK_DATE_PARTS 3

#define MAX_K 128                 /* FilterField.bits_per_feature le=128 */
#define MAX_BLOCKS ((2 * MAX_K + 63) / 64)
#define MAX_CACHED_FEATURE 512    /* longer features are hashed every time */
#define DEFAULT_CACHE_LIMIT 65536 /* entries per kernel */

static EVP_MAC *blake2bmac; /* fetched once at import */

/* ------------------------------------------------------------------------ */
/* One field: its hashing contexts (one per 64-byte block of the stream).    */

typedef struct {
    EVP_MAC_CTX *ctx[MAX_BLOCKS];
    int nblocks;
    int k;
    int tokenizer;
} field_t;

static int field_init(field_t *f, const unsigned char *key, size_t keylen, int k, int tokenizer) {
    memset(f, 0, sizeof(*f));
    f->k = k;
    f->tokenizer = tokenizer;
    f->nblocks = (2 * k + 63) / 64;
    size_t size = 64;
    for (int b = 0; b < f->nblocks; b++) {
        unsigned char person[16] = {0};
        person[15] = (unsigned char)b; /* big-endian block number; b < 256 */
        OSSL_PARAM params[3];
        params[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_CUSTOM, person, 16);
        params[2] = OSSL_PARAM_construct_end();
        f->ctx[b] = EVP_MAC_CTX_new(blake2bmac);
        if (f->ctx[b] == NULL || !EVP_MAC_init(f->ctx[b], key, keylen, params)) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL BLAKE2BMAC initialisation failed");
            return -1;
        }
    }
    return 0;
}

static void field_free(field_t *f) {
    for (int b = 0; b < f->nblocks; b++) EVP_MAC_CTX_free(f->ctx[b]);
    f->nblocks = 0;
}

/* The k positions of one feature. */
static int field_positions(field_t *f, const unsigned char *data, size_t len, int mask,
                           uint16_t *out) {
    unsigned char stream[64 * MAX_BLOCKS];
    for (int b = 0; b < f->nblocks; b++) {
        size_t outl = 0;
        /* init with no key re-initialises with the key and parameters set before */
        if (!EVP_MAC_init(f->ctx[b], NULL, 0, NULL) || !EVP_MAC_update(f->ctx[b], data, len) ||
            !EVP_MAC_final(f->ctx[b], stream + 64 * b, &outl, 64) || outl != 64) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL BLAKE2BMAC failed");
            return -1;
        }
    }
    for (int i = 0; i < f->k; i++)
        out[i] = (uint16_t)((stream[2 * i] | (stream[2 * i + 1] << 8)) & mask);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Feature cache: open addressing over (field, feature bytes) -> positions.  */

typedef struct {
    uint64_t hash;
    uint32_t off; /* into the arena: feature bytes, then k uint16 positions */
    uint16_t len;
    uint8_t field;
    uint8_t used;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t cap; /* power of two, 0 before first use */
    size_t count;
    size_t limit;
    unsigned char *arena;
    size_t arena_len;
    size_t arena_cap;
} cache_t;

static uint64_t fnv1a(uint8_t field, const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL ^ field;
    h *= 1099511628211ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void cache_clear(cache_t *c) {
    if (c->slots) memset(c->slots, 0, c->cap * sizeof(slot_t));
    c->count = 0;
    c->arena_len = 0;
}

static void cache_free(cache_t *c) {
    free(c->slots);
    free(c->arena);
    memset(c, 0, sizeof(*c));
}

static int cache_grow(cache_t *c) {
    size_t cap = c->cap ? c->cap * 2 : 1024;
    slot_t *slots = calloc(cap, sizeof(slot_t));
    if (!slots) return -1;
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->slots[i].used) continue;
        size_t j = (size_t)c->slots[i].hash & (cap - 1);
        while (slots[j].used) j = (j + 1) & (cap - 1);
        slots[j] = c->slots[i];
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    return 0;
}

/* Cached positions of a feature, computing and storing them on a miss. */
static const uint16_t *lookup(cache_t *c, field_t *fields, uint8_t fi, const unsigned char *data,
                              size_t len, int mask, uint16_t *scratch) {
    field_t *f = &fields[fi];
    if (len > MAX_CACHED_FEATURE || c->limit == 0) {
        return field_positions(f, data, len, mask, scratch) ? NULL : scratch;
    }
    uint64_t h = fnv1a(fi, data, len);
    if (c->cap) {
        size_t j = (size_t)h & (c->cap - 1);
        while (c->slots[j].used) {
            slot_t *s = &c->slots[j];
            if (s->hash == h && s->field == fi && s->len == len &&
                memcmp(c->arena + s->off, data, len) == 0)
                return (const uint16_t *)(c->arena + s->off + ((len + 1) & ~(size_t)1));
            j = (j + 1) & (c->cap - 1);
        }
    }
    if (field_positions(f, data, len, mask, scratch)) return NULL;
    if (c->count >= c->limit) cache_clear(c);
    if (2 * (c->count + 1) > c->cap && cache_grow(c)) return scratch; /* no memory: uncached */
    size_t need = ((len + 1) & ~(size_t)1) + 2 * (size_t)f->k;
    if (c->arena_len + need > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap * 2 : 65536;
        while (cap < c->arena_len + need) cap *= 2;
        if (cap > UINT32_MAX) {
            cache_clear(c);
            cap = c->arena_cap;
        }
        if (cap != c->arena_cap) {
            unsigned char *arena = realloc(c->arena, cap);
            if (!arena) return scratch;
            c->arena = arena;
            c->arena_cap = cap;
        }
    }
    unsigned char *dst = c->arena + c->arena_len;
    memcpy(dst, data, len);
    uint16_t *pos = (uint16_t *)(dst + ((len + 1) & ~(size_t)1));
    memcpy(pos, scratch, 2 * (size_t)f->k);
    size_t j = (size_t)h & (c->cap - 1);
    while (c->slots[j].used) j = (j + 1) & (c->cap - 1);
    c->slots[j] = (slot_t){h, (uint32_t)c->arena_len, (uint16_t)len, fi, 1};
    c->arena_len += need;
    c->count++;
    return pos;
}

/* ------------------------------------------------------------------------ */
/* Features of a value, assembled as UTF-8 in a growable buffer.             */

typedef struct {
    unsigned char *p;
    size_t len;
    size_t cap;
    unsigned char small[256];
} buf_t;

static void buf_init(buf_t *b) {
    b->p = b->small;
    b->len = 0;
    b->cap = sizeof(b->small);
}

static void buf_free(buf_t *b) {
    if (b->p != b->small) PyMem_Free(b->p);
}

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap * 2;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *p = PyMem_Malloc(cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(p, b->p, b->len);
    if (b->p != b->small) PyMem_Free(b->p);
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Append one code point as UTF-8; a lone surrogate raises the same
 * UnicodeEncodeError that str.encode("utf-8") would. */
static int buf_put(buf_t *b, Py_UCS4 c, PyObject *value, Py_ssize_t at) {
    if (buf_reserve(b, 4)) return -1;
    unsigned char *d = b->p + b->len;
    if (c < 0x80) {
        d[0] = (unsigned char)c;
        b->len += 1;
    } else if (c < 0x800) {
        d[0] = (unsigned char)(0xC0 | (c >> 6));
        d[1] = (unsigned char)(0x80 | (c & 0x3F));
        b->len += 2;
    } else if (c < 0x10000) {
        if (c >= 0xD800 && c <= 0xDFFF) {
            PyObject *one = PyUnicode_Substring(value, at, at + 1);
            if (one) {
                PyObject *enc = PyUnicode_AsUTF8String(one); /* sets the error */
                Py_XDECREF(enc);
                Py_DECREF(one);
            }
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_UnicodeEncodeError, "surrogate");
            return -1;
        }
        d[0] = (unsigned char)(0xE0 | (c >> 12));
        d[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (c & 0x3F));
        b->len += 3;
    } else {
        d[0] = (unsigned char)(0xF0 | (c >> 18));
        d[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
        d[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        d[3] = (unsigned char)(0x80 | (c & 0x3F));
        b->len += 4;
    }
    return 0;
}

static int buf_ascii(buf_t *b, const char *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Append value[start:end] (code points, clipped like a slice). */
static int buf_slice(buf_t *b, PyObject *value, Py_ssize_t start, Py_ssize_t end) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    if (end > n) end = n;
    for (Py_ssize_t i = start; i < end; i++)
        if (buf_put(b, PyUnicode_READ(kind, data, i), value, i)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The kernel object.                                                        */

typedef struct {
    PyObject_HEAD
    field_t *fields;
    int nfields;
    int length_bits;
    cache_t cache;
} KernelObject;

static void Kernel_dealloc(KernelObject *self) {
    for (int i = 0; i < self->nfields; i++) field_free(&self->fields[i]);
    PyMem_Free(self->fields);
    cache_free(&self->cache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Kernel_init(KernelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"length_bits", "fields", "cache_limit", NULL};
    int length_bits;
    PyObject *fields;
    Py_ssize_t cache_limit = DEFAULT_CACHE_LIMIT;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO|n", kwlist, &length_bits, &fields,
                                     &cache_limit))
        return -1;
    if (self->fields) {
        PyErr_SetString(PyExc_TypeError, "FilterKernel is already initialised");
        return -1;
    }
    if (length_bits < 8 || length_bits > 65536 || (length_bits & (length_bits - 1))) {
        PyErr_Format(PyExc_ValueError,
                     "length_bits must be a power of two from 8 to 65536, got %d", length_bits);
        return -1;
    }
    if (cache_limit < 0) {
        PyErr_SetString(PyExc_ValueError, "cache_limit must not be negative");
        return -1;
    }
    PyObject *seq = PySequence_Fast(fields, "fields must be a sequence of (key, k, tokenizer)");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 255) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "at most 255 fields");
        return -1;
    }
    self->fields = PyMem_Calloc(n ? (size_t)n : 1, sizeof(field_t));
    if (!self->fields) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *key;
        Py_ssize_t keylen;
        int k, tok;
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyArg_ParseTuple(item, "y#ii;each field is (key: bytes, k: int, tokenizer: int)",
                              &key, &keylen, &k, &tok))
            goto fail;
        if (keylen < 1 || keylen > 64) {
            PyErr_Format(PyExc_ValueError, "field %zd: key must be 1 to 64 bytes", i);
            goto fail;
        }
        if (k < 1 || k > MAX_K) {
            PyErr_Format(PyExc_ValueError, "field %zd: k must be 1 to %d, got %d", i, MAX_K, k);
            goto fail;
        }
        if (tok < TOK_BIGRAMS || tok > TOK_DATE_PARTS) {
            PyErr_Format(PyExc_ValueError, "field %zd: unknown tokenizer %d", i, tok);
            goto fail;
        }
        self->nfields = (int)i + 1; /* so dealloc frees a half-built field too */
        if (field_init(&self->fields[i], (const unsigned char *)key, (size_t)keylen, k, tok))
            goto fail;
    }
    Py_DECREF(seq);
    self->length_bits = length_bits;
    self->cache.limit = (size_t)cache_limit;
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

/* Set the bits of one feature (the first len bytes of buf). */
static inline int set_feature(KernelObject *self, uint8_t fi, buf_t *b, unsigned char *out) {
    uint16_t scratch[MAX_K];
    field_t *f = &self->fields[fi];
    const uint16_t *pos = lookup(&self->cache, self->fields, fi, b->p, b->len,
                                 self->length_bits - 1, scratch);
    if (!pos) return -1;
    for (int i = 0; i < f->k; i++) out[pos[i] >> 3] |= (unsigned char)(1u << (pos[i] & 7));
    return 0;
}

static int cmp_slices(PyObject *v, Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t b0, Py_ssize_t b1) {
    /* Python string order of v[a0:a1] and v[b0:b1] (already clipped) */
    int kind = PyUnicode_KIND(v);
    const void *data = PyUnicode_DATA(v);
    Py_ssize_t na = a1 - a0, nb = b1 - b0;
    for (Py_ssize_t i = 0; i < na && i < nb; i++) {
        Py_UCS4 x = PyUnicode_READ(kind, data, a0 + i), y = PyUnicode_READ(kind, data, b0 + i);
        if (x != y) return x < y ? -1 : 1;
    }
    return na < nb ? -1 : (na > nb ? 1 : 0);
}

static Py_ssize_t clip(Py_ssize_t i, Py_ssize_t n) { return i < n ? i : n; }

/* Every feature of one value of field fi. */
static int encode_value(KernelObject *self, uint8_t fi, PyObject *value, buf_t *b,
                        unsigned char *out) {
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "field %d: values must be str, not %.100s", fi,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    switch (self->fields[fi].tokenizer) {
    case TOK_EXACT:
        b->len = 0;
        if (buf_slice(b, value, 0, n)) return -1;
        return set_feature(self, fi, b, out);
    case TOK_POSITIONAL:
        for (Py_ssize_t i = 0; i < n; i++) {
            char num[32];
            int w = snprintf(num, sizeof num, "%zd:", i);
            b->len = 0;
            if (buf_ascii(b, num, (size_t)w) ||
                buf_put(b, PyUnicode_READ(kind, data, i), value, i) ||
                set_feature(self, fi, b, out))
                return -1;
        }
        return 0;
    case TOK_DATE_PARTS: {
        /* "y:" v[:4], "m:" v[4:6], "d:" v[6:8], "s:" min(m, d) max(m, d) */
        Py_ssize_t y1 = clip(4, n), m0 = clip(4, n), m1 = clip(6, n), d0 = clip(6, n),
                   d1 = clip(8, n);
        b->len = 0;
        if (buf_ascii(b, "y:", 2) || buf_slice(b, value, 0, y1) || set_feature(self, fi, b, out))
            return -1;
        b->len = 0;
        if (buf_ascii(b, "m:", 2) || buf_slice(b, value, m0, m1) || set_feature(self, fi, b, out))
            return -1;
        b->len = 0;
        if (buf_ascii(b, "d:", 2) || buf_slice(b, value, d0, d1) || set_feature(self, fi, b, out))
            return -1;
        int m_first = cmp_slices(value, m0, m1, d0, d1) <= 0;
        b->len = 0;
        if (buf_ascii(b, "s:", 2) ||
            (m_first ? buf_slice(b, value, m0, m1) || buf_slice(b, value, d0, d1)
                     : buf_slice(b, value, d0, d1) || buf_slice(b, value, m0, m1)) ||
            set_feature(self, fi, b, out))
            return -1;
        return 0;
    }
    default: /* TOK_BIGRAMS: "_" word "_" of every word of value.split() */
        for (Py_ssize_t i = 0; i < n;) {
            while (i < n && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i))) i++;
            if (i >= n) break;
            Py_UCS4 prev = '_';
            Py_ssize_t prev_at = -1;
            for (; i < n; i++) {
                Py_UCS4 c = PyUnicode_READ(kind, data, i);
                if (Py_UNICODE_ISSPACE(c)) break;
                b->len = 0;
                if ((prev_at < 0 ? buf_ascii(b, "_", 1) : buf_put(b, prev, value, prev_at)) ||
                    buf_put(b, c, value, i) || set_feature(self, fi, b, out))
                    return -1;
                prev = c;
                prev_at = i;
            }
            b->len = 0;
            if (buf_put(b, prev, value, prev_at) || buf_ascii(b, "_", 1) ||
                set_feature(self, fi, b, out))
                return -1;
        }
        return 0;
    }
}

PyDoc_STRVAR(encode_doc,
             "encode(values) -> bytes\n\n"
             "The filter of one record. values[i] holds field i's values: a sequence of str,\n"
             "or one str (the empty string: no value), or None (no value).");

static PyObject *Kernel_encode(KernelObject *self, PyObject *values) {
    if (!self->fields) {
        PyErr_SetString(PyExc_TypeError, "FilterKernel is not initialised");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(values, "values must be a sequence, one item per field");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != self->nfields) {
        PyErr_Format(PyExc_ValueError, "expected values for %d fields, got %zd", self->nfields,
                     PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, self->length_bits / 8);
    if (!result) {
        Py_DECREF(seq);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    memset(out, 0, (size_t)self->length_bits / 8);
    buf_t b;
    buf_init(&b);
    for (int fi = 0; fi < self->nfields; fi++) {
        PyObject *field_values = PySequence_Fast_GET_ITEM(seq, fi);
        if (field_values == Py_None) continue; /* missing */
        if (PyUnicode_Check(field_values)) {  /* one value; "" is missing */
            if (PyUnicode_GET_LENGTH(field_values) &&
                encode_value(self, (uint8_t)fi, field_values, &b, out))
                goto fail;
            continue;
        }
        PyObject *vs = PySequence_Fast(field_values, "each field's values must be a sequence");
        if (!vs) goto fail;
        Py_ssize_t nv = PySequence_Fast_GET_SIZE(vs);
        for (Py_ssize_t j = 0; j < nv; j++) {
            if (encode_value(self, (uint8_t)fi, PySequence_Fast_GET_ITEM(vs, j), &b, out)) {
                Py_DECREF(vs);
                goto fail;
            }
        }
        Py_DECREF(vs);
    }
    buf_free(&b);
    Py_DECREF(seq);
    return result;
fail:
    buf_free(&b);
    Py_DECREF(seq);
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(positions_doc,
             "positions(field, feature) -> list[int]\n\n"
             "The k bit positions of one feature of one field (never cached).");

static PyObject *Kernel_positions(KernelObject *self, PyObject *args) {
    int fi;
    PyObject *feature;
    if (!PyArg_ParseTuple(args, "iU", &fi, &feature)) return NULL;
    if (!self->fields || fi < 0 || fi >= self->nfields) {
        PyErr_Format(PyExc_IndexError, "no field %d", fi);
        return NULL;
    }
    buf_t b;
    buf_init(&b);
    uint16_t pos[MAX_K];
    if (buf_slice(&b, feature, 0, PyUnicode_GET_LENGTH(feature)) ||
        field_positions(&self->fields[fi], b.p, b.len, self->length_bits - 1, pos)) {
        buf_free(&b);
        return NULL;
    }
    buf_free(&b);
    field_t *f = &self->fields[fi];
    PyObject *list = PyList_New(f->k);
    if (!list) return NULL;
    for (int i = 0; i < f->k; i++) {
        PyObject *v = PyLong_FromLong(pos[i]);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *Kernel_cache_entries(KernelObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->cache.count);
}

static PyMethodDef Kernel_methods[] = {
    {"encode", (PyCFunction)Kernel_encode, METH_O, encode_doc},
    {"positions", (PyCFunction)Kernel_positions, METH_VARARGS, positions_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Kernel_getset[] = {
    {"cache_entries", (getter)Kernel_cache_entries, NULL, "features cached now", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "agency_client._bloom.FilterKernel",
    .tp_basicsize = sizeof(KernelObject),
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FilterKernel(length_bits, fields, cache_limit=65536)\n\n"
              "One Bloom filter's fields: fields[i] = (key, bits_per_feature, tokenizer) with\n"
              "tokenizer 0 bigrams, 1 positional unigrams, 2 exact, 3 date parts.",
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
    .tp_init = (initproc)Kernel_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------------ */
/* Keyed tokens: BLAKE2b(value, key, digest_size) in base64, several keys.  */

#define MAX_TOKEN_BYTES 64

typedef struct {
    PyObject_HEAD
    EVP_MAC_CTX **ctx;
    int *size;
    Py_ssize_t n;
} TokensObject;

static void Tokens_dealloc(TokensObject *self) {
    for (Py_ssize_t i = 0; i < self->n; i++) EVP_MAC_CTX_free(self->ctx[i]);
    PyMem_Free(self->ctx);
    PyMem_Free(self->size);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Tokens_init(TokensObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"keys", NULL};
    PyObject *keys;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", kwlist, &keys)) return -1;
    if (self->ctx) {
        PyErr_SetString(PyExc_TypeError, "KeyedTokens is already initialised");
        return -1;
    }
    PyObject *seq = PySequence_Fast(keys, "keys must be a sequence of (key, digest_size)");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->ctx = PyMem_Calloc(n ? (size_t)n : 1, sizeof(EVP_MAC_CTX *));
    self->size = PyMem_Calloc(n ? (size_t)n : 1, sizeof(int));
    if (!self->ctx || !self->size) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *key;
        Py_ssize_t keylen;
        int size;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i),
                              "y#i;each key is (key: bytes, digest_size: int)", &key, &keylen,
                              &size))
            goto fail;
        if (keylen < 1 || keylen > 64) {
            PyErr_Format(PyExc_ValueError, "key %zd: key must be 1 to 64 bytes", i);
            goto fail;
        }
        if (size < 1 || size > MAX_TOKEN_BYTES) {
            PyErr_Format(PyExc_ValueError, "key %zd: digest_size must be 1 to 64, got %d", i, size);
            goto fail;
        }
        size_t sz = (size_t)size;
        OSSL_PARAM params[2];
        params[0] = OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &sz);
        params[1] = OSSL_PARAM_construct_end();
        self->n = i + 1;
        self->size[i] = size;
        self->ctx[i] = EVP_MAC_CTX_new(blake2bmac);
        if (!self->ctx[i] || !EVP_MAC_init(self->ctx[i], (const unsigned char *)key,
                                           (size_t)keylen, params)) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL BLAKE2BMAC initialisation failed");
            goto fail;
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

PyDoc_STRVAR(tokens_doc,
             "encode(values) -> list[str | None]\n\n"
             "base64 of BLAKE2b(values[i].encode(), key=keys[i], digest_size) for each i;\n"
             "None stays None.");

static PyObject *Tokens_encode(TokensObject *self, PyObject *values) {
    PyObject *seq = PySequence_Fast(values, "values must be a sequence, one item per key");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != self->n) {
        PyErr_Format(PyExc_ValueError, "expected %zd values, got %zd", self->n,
                     PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *out = PyList_New(self->n);
    if (!out) {
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *v = PySequence_Fast_GET_ITEM(seq, i);
        if (v == Py_None) {
            Py_INCREF(Py_None);
            PyList_SET_ITEM(out, i, Py_None);
            continue;
        }
        if (!PyUnicode_Check(v)) {
            PyErr_Format(PyExc_TypeError, "value %zd must be str or None, not %.100s", i,
                         Py_TYPE(v)->tp_name);
            goto fail;
        }
        Py_ssize_t len;
        const char *utf8 = PyUnicode_AsUTF8AndSize(v, &len);
        if (!utf8) goto fail;
        unsigned char digest[MAX_TOKEN_BYTES];
        unsigned char text[4 * ((MAX_TOKEN_BYTES + 2) / 3) + 1];
        size_t outl = 0;
        if (!EVP_MAC_init(self->ctx[i], NULL, 0, NULL) ||
            !EVP_MAC_update(self->ctx[i], (const unsigned char *)utf8, (size_t)len) ||
            !EVP_MAC_final(self->ctx[i], digest, &outl, sizeof digest) ||
            outl != (size_t)self->size[i]) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL BLAKE2BMAC failed");
            goto fail;
        }
        int n = EVP_EncodeBlock(text, digest, (int)outl); /* standard alphabet, padded */
        PyObject *s = PyUnicode_FromStringAndSize((const char *)text, n);
        if (!s) goto fail;
        PyList_SET_ITEM(out, i, s);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef Tokens_methods[] = {
    {"encode", (PyCFunction)Tokens_encode, METH_O, tokens_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TokensType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "agency_client._bloom.KeyedTokens",
    .tp_basicsize = sizeof(TokensObject),
    .tp_dealloc = (destructor)Tokens_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "KeyedTokens(keys)\n\n"
              "Keyed BLAKE2b tokens under several keys: keys[i] = (key, digest_size).",
    .tp_methods = Tokens_methods,
    .tp_init = (initproc)Tokens_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef bloom_module = {
    PyModuleDef_HEAD_INIT, .m_name = "agency_client._bloom",
    .m_doc = "Compiled keyed Bloom-filter kernel (OpenSSL BLAKE2BMAC); see _encoder.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__bloom(void) {
    blake2bmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_BLAKE2BMAC, NULL);
    if (!blake2bmac) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no BLAKE2BMAC (OpenSSL 3 is required)");
        return NULL;
    }
    if (PyType_Ready(&KernelType) < 0 || PyType_Ready(&TokensType) < 0) return NULL;
    PyObject *m = PyModule_Create(&bloom_module);
    if (!m) return NULL;
    if (PyModule_AddType(m, &KernelType) < 0 || PyModule_AddType(m, &TokensType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "BIGRAMS", TOK_BIGRAMS) ||
        PyModule_AddIntConstant(m, "POSITIONAL_UNIGRAMS", TOK_POSITIONAL) ||
        PyModule_AddIntConstant(m, "EXACT", TOK_EXACT) ||
        PyModule_AddIntConstant(m, "DATE_PARTS", TOK_DATE_PARTS) ||
        PyModule_AddIntConstant(m, "MAX_BITS_PER_FEATURE", MAX_K)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
