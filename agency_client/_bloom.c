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
 * Here a record's filter is one call. Two bounded per-kernel caches keep the
 * results (names and dates repeat heavily): feature -> its k positions, and a
 * whole value (a name, a date) -> the positions of all its features, so a
 * repeated value is one lookup. Each holds at most cache_limit entries (the
 * value cache also at most 16 MB) and is dropped all at once when full, so
 * memory stays flat. The caches hold keyed-hash outputs of identity fragments;
 * they live and die with the process like the rest of the encoder's state and
 * are never exported.
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
#define MAX_CACHED_VALUE 256      /* longer values are split into features every time */
#define MAX_VALUE_POSITIONS 2048  /* values with more feature positions are not cached */
#define VALUE_ARENA_MAX (16u << 20) /* bytes of cached values per kernel */

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

/* The payload stored for (field, bytes), or NULL. Entry layout in the arena:
 * the bytes (padded to even length), then the payload (uint16 words). */
static const uint16_t *cache_find(cache_t *c, uint8_t fi, const unsigned char *data, size_t len,
                                  uint64_t h) {
    if (!c->cap) return NULL;
    size_t j = (size_t)h & (c->cap - 1);
    while (c->slots[j].used) {
        slot_t *s = &c->slots[j];
        if (s->hash == h && s->field == fi && s->len == len &&
            memcmp(c->arena + s->off, data, len) == 0)
            return (const uint16_t *)(c->arena + s->off + ((len + 1) & ~(size_t)1));
        j = (j + 1) & (c->cap - 1);
    }
    return NULL;
}

/* Store (field, bytes) -> payload (nwords uint16 words); returns the stored copy,
 * or NULL when there is no memory for it. The cache is emptied first when it
 * holds limit entries or its arena would pass max_arena bytes. */
static const uint16_t *cache_put(cache_t *c, uint8_t fi, const unsigned char *data, size_t len,
                                 uint64_t h, const uint16_t *payload, size_t nwords,
                                 size_t max_arena) {
    size_t need = ((len + 1) & ~(size_t)1) + 2 * nwords;
    if (c->count >= c->limit || c->arena_len + need > max_arena) cache_clear(c);
    if (2 * (c->count + 1) > c->cap && cache_grow(c)) return NULL;
    if (c->arena_len + need > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap * 2 : 65536;
        while (cap < c->arena_len + need) cap *= 2;
        unsigned char *arena = realloc(c->arena, cap);
        if (!arena) return NULL;
        c->arena = arena;
        c->arena_cap = cap;
    }
    unsigned char *dst = c->arena + c->arena_len;
    memcpy(dst, data, len);
    uint16_t *stored = (uint16_t *)(dst + ((len + 1) & ~(size_t)1));
    memcpy(stored, payload, 2 * nwords);
    size_t j = (size_t)h & (c->cap - 1);
    while (c->slots[j].used) j = (j + 1) & (c->cap - 1);
    c->slots[j] = (slot_t){h, (uint32_t)c->arena_len, (uint16_t)len, fi, 1};
    c->arena_len += need;
    c->count++;
    return stored;
}

/* Cached positions of a feature, computing and storing them on a miss. */
static const uint16_t *lookup(cache_t *c, field_t *fields, uint8_t fi, const unsigned char *data,
                              size_t len, int mask, uint16_t *scratch) {
    field_t *f = &fields[fi];
    if (len > MAX_CACHED_FEATURE || c->limit == 0) {
        return field_positions(f, data, len, mask, scratch) ? NULL : scratch;
    }
    uint64_t h = fnv1a(fi, data, len);
    const uint16_t *hit = cache_find(c, fi, data, len, h);
    if (hit) return hit;
    if (field_positions(f, data, len, mask, scratch)) return NULL;
    /* arena offsets are uint32 */
    const uint16_t *stored = cache_put(c, fi, data, len, h, scratch, (size_t)f->k, UINT32_MAX);
    return stored ? stored : scratch; /* no memory: uncached */
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
    if (PyUnicode_IS_ASCII(value)) { /* one byte per code point, already UTF-8 */
        if (start >= end) return 0;
        return buf_ascii(b, (const char *)data + start, (size_t)(end - start));
    }
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
    cache_t cache;  /* feature -> positions */
    cache_t values; /* whole value -> positions of all its features */
    uint16_t *collect; /* the value cache's payload being built: count, then positions */
    size_t ncollect;
    int collecting;
} KernelObject;

static void Kernel_dealloc(KernelObject *self) {
    for (int i = 0; i < self->nfields; i++) field_free(&self->fields[i]);
    PyMem_Free(self->fields);
    cache_free(&self->cache);
    cache_free(&self->values);
    PyMem_Free(self->collect);
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
    self->values.limit = (size_t)cache_limit;
    self->collect = PyMem_Malloc((1 + MAX_VALUE_POSITIONS) * sizeof(uint16_t));
    if (!self->collect) {
        PyErr_NoMemory();
        return -1;
    }
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
    if (self->collecting) {
        if (self->ncollect + (size_t)f->k > MAX_VALUE_POSITIONS) {
            self->collecting = 0; /* too many to cache */
        } else {
            memcpy(self->collect + 1 + self->ncollect, pos, 2 * (size_t)f->k);
            self->ncollect += (size_t)f->k;
        }
    }
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
static int encode_features(KernelObject *self, uint8_t fi, PyObject *value, buf_t *b,
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

/* One value of field fi: from the value cache, or feature by feature (then cached). */
static int encode_value(KernelObject *self, uint8_t fi, PyObject *value, buf_t *b,
                        unsigned char *out) {
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "field %d: values must be str, not %.100s", fi,
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    /* an exact value is one feature: the feature cache already holds it */
    if (self->fields[fi].tokenizer == TOK_EXACT || self->values.limit == 0)
        return encode_features(self, fi, value, b, out);
    buf_t key;
    buf_init(&key);
    if (buf_slice(&key, value, 0, PyUnicode_GET_LENGTH(value))) {
        buf_free(&key);
        return -1;
    }
    if (key.len > MAX_CACHED_VALUE) {
        buf_free(&key);
        return encode_features(self, fi, value, b, out);
    }
    uint64_t h = fnv1a(fi, key.p, key.len);
    /* value cache: (field, whole value) -> count, then every position of every
     * feature of the value: a repeated name or date is one lookup, not one per feature */
    const uint16_t *hit = cache_find(&self->values, fi, key.p, key.len, h);
    if (hit) {
        for (uint16_t i = 1; i <= hit[0]; i++)
            out[hit[i] >> 3] |= (unsigned char)(1u << (hit[i] & 7));
        buf_free(&key);
        return 0;
    }
    self->collecting = 1;
    self->ncollect = 0;
    int rc = encode_features(self, fi, value, b, out);
    if (rc == 0 && self->collecting) {
        self->collect[0] = (uint16_t)self->ncollect;
        cache_put(&self->values, fi, key.p, key.len, h, self->collect, 1 + self->ncollect,
                  VALUE_ARENA_MAX); /* not stored for want of memory: just not cached */
    }
    self->collecting = 0;
    buf_free(&key);
    return rc;
}

PyDoc_STRVAR(encode_doc,
             "encode(values) -> bytes\n\n"
             "The filter of one record. values[i] holds field i's values: a sequence of str,\n"
             "or one str (the empty string: no value), or None (no value).");

/* Set the bits of every field's values (vals[i]: field i's values) in out. */
static int kernel_fill(KernelObject *self, PyObject *const *vals, unsigned char *out, buf_t *b) {
    memset(out, 0, (size_t)self->length_bits / 8);
    for (int fi = 0; fi < self->nfields; fi++) {
        PyObject *field_values = vals[fi];
        if (field_values == Py_None) continue; /* missing */
        if (PyUnicode_Check(field_values)) {  /* one value; "" is missing */
            if (PyUnicode_GET_LENGTH(field_values) &&
                encode_value(self, (uint8_t)fi, field_values, b, out))
                return -1;
            continue;
        }
        PyObject *vs = PySequence_Fast(field_values, "each field's values must be a sequence");
        if (!vs) return -1;
        Py_ssize_t nv = PySequence_Fast_GET_SIZE(vs);
        for (Py_ssize_t j = 0; j < nv; j++) {
            if (encode_value(self, (uint8_t)fi, PySequence_Fast_GET_ITEM(vs, j), b, out)) {
                Py_DECREF(vs);
                return -1;
            }
        }
        Py_DECREF(vs);
    }
    return 0;
}

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
    buf_t b;
    buf_init(&b);
    int rc = kernel_fill(self, PySequence_Fast_ITEMS(seq), (unsigned char *)PyBytes_AS_STRING(result),
                         &b);
    buf_free(&b);
    Py_DECREF(seq);
    if (rc) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
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

static PyObject *Kernel_value_entries(KernelObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->values.count);
}

static PyMethodDef Kernel_methods[] = {
    {"encode", (PyCFunction)Kernel_encode, METH_O, encode_doc},
    {"positions", (PyCFunction)Kernel_positions, METH_VARARGS, positions_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Kernel_getset[] = {
    {"cache_entries", (getter)Kernel_cache_entries, NULL, "features cached now", NULL},
    {"value_entries", (getter)Kernel_value_entries, NULL, "whole values cached now", NULL},
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

#define TOKEN_TEXT (4 * ((MAX_TOKEN_BYTES + 2) / 3) + 1)

/* base64 (standard alphabet, padded) of key i's token of data into text; its length or -1. */
static int token_b64(TokensObject *self, Py_ssize_t i, const unsigned char *data, size_t len,
                     unsigned char *text) {
    unsigned char digest[MAX_TOKEN_BYTES];
    size_t outl = 0;
    if (!EVP_MAC_init(self->ctx[i], NULL, 0, NULL) || !EVP_MAC_update(self->ctx[i], data, len) ||
        !EVP_MAC_final(self->ctx[i], digest, &outl, sizeof digest) ||
        outl != (size_t)self->size[i]) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL BLAKE2BMAC failed");
        return -1;
    }
    return EVP_EncodeBlock(text, digest, (int)outl);
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
        unsigned char text[TOKEN_TEXT];
        int n = token_b64(self, i, (const unsigned char *)utf8, (size_t)len, text);
        if (n < 0) goto fail;
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

/* ------------------------------------------------------------------------ */
/* Record kernel: everything a record's line carries that the encoder makes  */
/* (both filters, exact tokens, blocking keys), as one JSON fragment.        */
/*                                                                           */
/* The features tuple is _encoder._FEATURE_ORDER; blocking parts are          */
/* _encoder._PART_ORDER. Filters may be XOR-folded (person_fold,             */
/* address_fold). The Python path in _encoder (used for balanced or salted    */
/* filters) writes the same bytes: tests/agency_client/test_bloom.py.         */

#define N_FEATURES 11
#define F_GIVEN 0
#define F_FAMILY 3
#define F_DOB 5
#define F_SEX 6
#define F_STREET 7
#define F_POSTCODE 9
#define N_PARTS 9

typedef struct {
    PyObject_HEAD
    KernelObject *filter[2]; /* person, address */
    int *pick[2];            /* feature index of each filter field */
    TokensObject *exact;
    PyObject *exact_names; /* tuple of str */
    TokensObject *blocking;
    PyObject *blocking_names; /* tuple of str */
    int *parts;               /* blocking->n rows of N_PARTS part indexes, -1 ends a row */
    int fold[2];              /* XOR-fold the person/address filter in half (xor_fold) */
} RecordObject;

static void Record_dealloc(RecordObject *self) {
    Py_XDECREF(self->filter[0]);
    Py_XDECREF(self->filter[1]);
    PyMem_Free(self->pick[0]);
    PyMem_Free(self->pick[1]);
    Py_XDECREF(self->exact);
    Py_XDECREF(self->exact_names);
    Py_XDECREF(self->blocking);
    Py_XDECREF(self->blocking_names);
    PyMem_Free(self->parts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A tuple of n plain ASCII names safe to write inside JSON quotes. */
static PyObject *json_names(PyObject *names, Py_ssize_t n, const char *what) {
    PyObject *t = PySequence_Tuple(names);
    if (!t) return NULL;
    if (PyTuple_GET_SIZE(t) != n) {
        PyErr_Format(PyExc_ValueError, "expected %zd %s names, got %zd", n, what,
                     PyTuple_GET_SIZE(t));
        Py_DECREF(t);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyTuple_GET_ITEM(t, i);
        if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s)) {
            PyErr_Format(PyExc_ValueError, "%s name %zd must be an ASCII str", what, i);
            Py_DECREF(t);
            return NULL;
        }
        const char *c = PyUnicode_AsUTF8(s);
        for (; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) {
                PyErr_Format(PyExc_ValueError, "%s name %zd has a character JSON escapes", what,
                             i);
                Py_DECREF(t);
                return NULL;
            }
    }
    return t;
}

static int *feature_picks(PyObject *features, int nfields, const char *what) {
    PyObject *seq = PySequence_Fast(features, "feature indexes must be a sequence of int");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != nfields) {
        PyErr_Format(PyExc_ValueError, "the %s filter has %d fields, got %zd feature indexes",
                     what, nfields, PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return NULL;
    }
    int *pick = PyMem_Calloc(nfields ? (size_t)nfields : 1, sizeof(int));
    if (!pick) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = 0; i < nfields; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) goto fail;
        if (v < 0 || v >= N_FEATURES) {
            PyErr_Format(PyExc_ValueError, "%s filter field %d: no feature %ld", what, i, v);
            goto fail;
        }
        pick[i] = (int)v;
    }
    Py_DECREF(seq);
    return pick;
fail:
    Py_DECREF(seq);
    PyMem_Free(pick);
    return NULL;
}

static int Record_init(RecordObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"person",       "person_features", "address",
                             "address_features", "exact",     "exact_names",
                             "blocking",     "blocking_names",  "blocking_parts",
                             "person_fold",  "address_fold",    NULL};
    PyObject *person, *pf, *address, *af, *exact, *en, *blocking, *bn, *bp;
    int fold_person = 0, fold_address = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!OO!OO!OO|$pp", kwlist, &KernelType,
                                     &person, &pf, &KernelType, &address, &af, &TokensType,
                                     &exact, &en, &TokensType, &blocking, &bn, &bp, &fold_person,
                                     &fold_address))
        return -1;
    if (self->filter[0]) {
        PyErr_SetString(PyExc_TypeError, "RecordKernel is already initialised");
        return -1;
    }
    KernelObject *ks[2] = {(KernelObject *)person, (KernelObject *)address};
    PyObject *fs[2] = {pf, af};
    const char *what[2] = {"person", "address"};
    for (int f = 0; f < 2; f++) {
        if (!ks[f]->fields) {
            PyErr_Format(PyExc_TypeError, "the %s FilterKernel is not initialised", what[f]);
            return -1;
        }
        self->pick[f] = feature_picks(fs[f], ks[f]->nfields, what[f]);
        if (!self->pick[f]) return -1;
        Py_INCREF(ks[f]);
        self->filter[f] = ks[f];
    }
    self->fold[0] = fold_person;
    self->fold[1] = fold_address;
    self->exact = (TokensObject *)exact;
    Py_INCREF(exact);
    self->blocking = (TokensObject *)blocking;
    Py_INCREF(blocking);
    self->exact_names = json_names(en, self->exact->n, "exact token");
    if (!self->exact_names) return -1;
    self->blocking_names = json_names(bn, self->blocking->n, "blocking key");
    if (!self->blocking_names) return -1;
    Py_ssize_t nkeys = self->blocking->n;
    PyObject *seq = PySequence_Fast(bp, "blocking_parts must be a sequence of part indexes");
    if (!seq) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != nkeys) {
        PyErr_Format(PyExc_ValueError, "expected parts for %zd blocking keys, got %zd", nkeys,
                     PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return -1;
    }
    self->parts = PyMem_Malloc((nkeys ? (size_t)nkeys : 1) * N_PARTS * sizeof(int));
    if (!self->parts) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        int *row = self->parts + k * N_PARTS;
        for (int j = 0; j < N_PARTS; j++) row[j] = -1;
        PyObject *ps = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, k),
                                       "each blocking key's parts must be a sequence of int");
        if (!ps) goto fail;
        Py_ssize_t np = PySequence_Fast_GET_SIZE(ps);
        if (np < 1 || np > N_PARTS) {
            PyErr_Format(PyExc_ValueError, "blocking key %zd: 1 to %d parts, got %zd", k, N_PARTS,
                         np);
            Py_DECREF(ps);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < np; j++) {
            long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(ps, j));
            if ((v == -1 && PyErr_Occurred()) || v < 0 || v >= N_PARTS) {
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_ValueError, "blocking key %zd: no part %ld", k, v);
                Py_DECREF(ps);
                goto fail;
            }
            row[j] = (int)v;
        }
        Py_DECREF(ps);
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

/* A str or None; anything else is a TypeError naming the feature. */
static int str_or_none(PyObject *v, const char *what) {
    if (v == Py_None || PyUnicode_Check(v)) return 0;
    PyErr_Format(PyExc_TypeError, "%s must be str or None, not %.100s", what,
                 Py_TYPE(v)->tp_name);
    return -1;
}

static int present(PyObject *v) { return v != Py_None && PyUnicode_GET_LENGTH(v) > 0; }

/* Soundex of the letters a-z of v (as _normalise.soundex); writes 4 chars or none. */
static size_t soundex(PyObject *v, char *out) {
    /* a b c d e f g h i j k l m n o p q r s t u v w x y z */
    static const char codes[26] = {0,   '1', '2', '3', 0,   '1', '2', 0,   0,
                                   '2', '2', '4', '5', '5', 0,   '1', '2', '6',
                                   '2', '3', 0,   '1', 0,   '2', 0,   '2'};
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    int kind = PyUnicode_KIND(v);
    const void *data = PyUnicode_DATA(v);
    size_t len = 0;
    char last = 0;
    for (Py_ssize_t i = 0; i < n && len < 4; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 'a' || c > 'z') continue;
        char digit = codes[c - 'a'];
        if (len == 0) {
            out[len++] = (char)(c - 'a' + 'A');
        } else if (c == 'h' || c == 'w') {
            continue; /* h and w do not separate letters with the same code */
        } else if (digit && digit != last) {
            out[len++] = digit;
        }
        last = digit;
    }
    if (len == 0) return 0;
    while (len < 4) out[len++] = '0';
    return len;
}

/* Append `,"name":{"k":"token",...}` for the present values; nothing if none. */
static int put_tokens(buf_t *o, const char *name, TokensObject *tok, PyObject *names,
                      const unsigned char *const *vals, const size_t *lens) {
    int first = 1;
    for (Py_ssize_t i = 0; i < tok->n; i++) {
        if (!vals[i]) continue;
        unsigned char text[TOKEN_TEXT];
        int n = token_b64(tok, i, vals[i], lens[i], text);
        if (n < 0) return -1;
        Py_ssize_t klen;
        const char *key = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(names, i), &klen);
        if (first && (buf_ascii(o, ",\"", 2) || buf_ascii(o, name, strlen(name)) ||
                      buf_ascii(o, "\":{", 3)))
            return -1;
        if ((!first && buf_ascii(o, ",", 1)) || buf_ascii(o, "\"", 1) ||
            buf_ascii(o, key, (size_t)klen) || buf_ascii(o, "\":\"", 3) ||
            buf_ascii(o, (const char *)text, (size_t)n) || buf_ascii(o, "\"", 1))
            return -1;
        first = 0;
    }
    return first ? 0 : buf_ascii(o, "}", 1);
}

static int put_filter(RecordObject *self, int f, PyObject *const *features, const char *name,
                      buf_t *o, buf_t *scratch) {
    KernelObject *k = self->filter[f];
    PyObject *vals[255];
    unsigned char bits[8192];
    unsigned char text[4 * (8192 + 2) / 3 + 4];
    for (int i = 0; i < k->nfields; i++) vals[i] = features[self->pick[f][i]];
    if (kernel_fill(k, vals, bits, scratch)) return -1;
    int nbytes = k->length_bits / 8;
    if (self->fold[f]) {
        /* xor_fold: the low half XOR the high half, as _encoder.FilterEncoder._harden */
        nbytes /= 2;
        for (int i = 0; i < nbytes; i++) bits[i] ^= bits[i + nbytes];
    }
    int n = EVP_EncodeBlock(text, bits, nbytes);
    return buf_ascii(o, ",\"", 2) || buf_ascii(o, name, strlen(name)) ||
           buf_ascii(o, "\":\"", 3) || buf_ascii(o, (const char *)text, (size_t)n) ||
           buf_ascii(o, "\"", 1);
}

PyDoc_STRVAR(record_doc,
             "encode(features, postcode_district, exact_values) -> str\n\n"
             "The JSON members of one record the encoder makes, each preceded by a comma:\n"
             "clk, address_clk (when there is an address line or a postcode), exact_tokens\n"
             "and blocking_keys (when any). features is in _encoder._FEATURE_ORDER;\n"
             "exact_values[i] is the i-th exact identifier's normalised value or None.");

static PyObject *Record_encode(RecordObject *self, PyObject *args) {
    PyObject *features, *outward, *exact_values;
    if (!PyArg_ParseTuple(args, "O!OO", &PyTuple_Type, &features, &outward, &exact_values))
        return NULL;
    if (!self->filter[0]) {
        PyErr_SetString(PyExc_TypeError, "RecordKernel is not initialised");
        return NULL;
    }
    if (PyTuple_GET_SIZE(features) != N_FEATURES) {
        PyErr_Format(PyExc_ValueError, "expected %d features, got %zd", N_FEATURES,
                     PyTuple_GET_SIZE(features));
        return NULL;
    }
    PyObject *const *ft = &PyTuple_GET_ITEM(features, 0);
    PyObject *given = ft[F_GIVEN], *family = ft[F_FAMILY], *dob8 = ft[F_DOB], *sex = ft[F_SEX];
    if (str_or_none(given, "given name") || str_or_none(family, "family name") ||
        str_or_none(dob8, "date of birth") || str_or_none(sex, "sex") ||
        str_or_none(ft[F_STREET], "street line") || str_or_none(outward, "postcode district"))
        return NULL;
    if (present(dob8) && (!PyUnicode_IS_ASCII(dob8) || PyUnicode_GET_LENGTH(dob8) != 8)) {
        PyErr_SetString(PyExc_ValueError, "date of birth must be 8 ASCII digits (yyyymmdd)");
        return NULL;
    }
    PyObject *ev = PySequence_Fast(exact_values, "exact_values must be a sequence");
    if (!ev) return NULL;
    if (PySequence_Fast_GET_SIZE(ev) != self->exact->n) {
        PyErr_Format(PyExc_ValueError, "expected %zd exact values, got %zd", self->exact->n,
                     PySequence_Fast_GET_SIZE(ev));
        Py_DECREF(ev);
        return NULL;
    }
    buf_t o, scratch, parts;
    buf_init(&o);
    buf_init(&scratch);
    buf_init(&parts);
    PyObject *result = NULL;

    if (put_filter(self, 0, ft, "clk", &o, &scratch)) goto done;
    if (present(ft[F_STREET]) || ft[F_POSTCODE] != Py_None)
        if (put_filter(self, 1, ft, "address_clk", &o, &scratch)) goto done;

    /* exact tokens: present values, in the given order */
    {
        const unsigned char *vals[64] = {0};
        size_t lens[64] = {0};
        if (self->exact->n > 64) {
            PyErr_SetString(PyExc_ValueError, "at most 64 exact identifiers");
            goto done;
        }
        for (Py_ssize_t i = 0; i < self->exact->n; i++) {
            PyObject *v = PySequence_Fast_GET_ITEM(ev, i);
            if (str_or_none(v, "exact value")) goto done;
            if (!present(v)) continue;
            Py_ssize_t len;
            vals[i] = (const unsigned char *)PyUnicode_AsUTF8AndSize(v, &len);
            if (!vals[i]) goto done;
            lens[i] = (size_t)len;
        }
        if (put_tokens(&o, "exact_tokens", self->exact, self->exact_names, vals, lens)) goto done;
    }

    /* blocking parts in _PART_ORDER, as UTF-8 slices of one buffer; length 0: missing */
    {
        size_t off[N_PARTS] = {0}, len[N_PARTS] = {0};
        char code[4];
        size_t at;
#define PART(i, EXPR)                                                                         \
    do {                                                                                      \
        at = parts.len;                                                                       \
        if (EXPR) goto done;                                                                  \
        off[i] = at;                                                                          \
        len[i] = parts.len - at;                                                              \
    } while (0)
        if (present(given)) {
            size_t n = soundex(given, code);
            PART(0, buf_ascii(&parts, code, n));
            PART(2, buf_slice(&parts, given, 0, 1));
        }
        if (present(family)) {
            size_t n = soundex(family, code);
            PART(1, buf_ascii(&parts, code, n));
            PART(3, buf_slice(&parts, family, 0, 1));
        }
        if (present(dob8)) {
            const char *d = PyUnicode_AsUTF8(dob8); /* yyyymmdd */
            int day_first = memcmp(d + 6, d + 4, 2) <= 0;
            PART(4, buf_ascii(&parts, d, 8));
            PART(5, buf_ascii(&parts, d, 4));
            PART(6, buf_ascii(&parts, day_first ? d + 6 : d + 4, 2) ||
                        buf_ascii(&parts, day_first ? d + 4 : d + 6, 2));
        }
        if (present(sex)) PART(7, buf_slice(&parts, sex, 0, PyUnicode_GET_LENGTH(sex)));
        if (present(outward))
            PART(8, buf_slice(&parts, outward, 0, PyUnicode_GET_LENGTH(outward)));
#undef PART
        Py_ssize_t nkeys = self->blocking->n;
        if (nkeys > 64) {
            PyErr_SetString(PyExc_ValueError, "at most 64 blocking keys");
            goto done;
        }
        buf_t joined;
        buf_init(&joined);
        size_t start[64] = {0}, klen[64] = {0};
        int has[64] = {0};
        for (Py_ssize_t k = 0; k < nkeys; k++) {
            const int *row = self->parts + k * N_PARTS;
            int all = 1;
            for (int j = 0; j < N_PARTS && row[j] >= 0; j++) all &= len[row[j]] > 0;
            if (!all) continue;
            start[k] = joined.len;
            for (int j = 0; j < N_PARTS && row[j] >= 0; j++) {
                if ((j && buf_ascii(&joined, "\x1f", 1)) ||
                    buf_ascii(&joined, (const char *)parts.p + off[row[j]], len[row[j]])) {
                    buf_free(&joined);
                    goto done;
                }
            }
            klen[k] = joined.len - start[k];
            has[k] = 1;
        }
        const unsigned char *vals[64] = {0};
        for (Py_ssize_t k = 0; k < nkeys; k++)
            if (has[k]) vals[k] = joined.p + start[k];
        int rc = put_tokens(&o, "blocking_keys", self->blocking, self->blocking_names, vals, klen);
        buf_free(&joined);
        if (rc) goto done;
    }
    result = PyUnicode_FromStringAndSize((const char *)o.p, (Py_ssize_t)o.len);
done:
    buf_free(&o);
    buf_free(&scratch);
    buf_free(&parts);
    Py_DECREF(ev);
    return result;
}

static PyMethodDef Record_methods[] = {
    {"encode", (PyCFunction)Record_encode, METH_VARARGS, record_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "agency_client._bloom.RecordKernel",
    .tp_basicsize = sizeof(RecordObject),
    .tp_dealloc = (destructor)Record_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RecordKernel(person, person_features, address, address_features, exact,\n"
              "             exact_names, blocking, blocking_names, blocking_parts, *,\n"
              "             person_fold=False, address_fold=False)\n\n"
              "A record's filters and tokens in one call, for unsalted filters that are\n"
              "unhardened or XOR-folded (person_fold, address_fold).",
    .tp_methods = Record_methods,
    .tp_init = (initproc)Record_init,
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
    if (PyType_Ready(&KernelType) < 0 || PyType_Ready(&TokensType) < 0 ||
        PyType_Ready(&RecordType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&bloom_module);
    if (!m) return NULL;
    if (PyModule_AddType(m, &KernelType) < 0 || PyModule_AddType(m, &TokensType) < 0 ||
        PyModule_AddType(m, &RecordType) < 0) {
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
