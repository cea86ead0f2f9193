/*
 * _leafscan.c: the compiled part of the audit log's start-up check and of its
 * Merkle tree (audit_log._log, audit_log._merkle).
 *
 * scan(rows, first, start, out) walks rows[first:], entry rows as
 * audit_log._store.scan_rows returns them (idx, leaf_data, leaf_hash, type,
 * professional_id, family_id, purpose_code, decision, request_id, event_time),
 * and accepts a row only if
 *   - idx == start for rows[first], start + 1 for the next, and so on,
 *   - leaf_hash == SHA-256(0x00 || leaf_data) (the RFC 6962 leaf hash),
 *   - leaf_data is a canonical leaf {"entry":{...},"index":idx,...} whose
 *     entry fields give exactly the row's indexed columns, as
 *     audit_log._entries.entry_columns derives them.
 * It appends each accepted leaf hash to out (a bytearray) and returns how many
 * rows it accepted, stopping at the first one it cannot accept. The caller then
 * re-checks that row in Python (audit_log._log._check_row), which names what
 * differs or, when the row was merely unusual for this scanner (an escaped
 * string, a field of another JSON type), accepts it and scans on. So this code
 * may refuse a good row but must never accept a row whose hash, index or
 * columns differ from its bytes. Whether the leaf bytes are a valid entry at
 * all is not decided here: the signed checkpoint's root vouches for them (and
 * the caller parses the unsigned tail in full).
 *
 * leaf_hashes(datas) and node_hashes(level, first, count) are the RFC 6962
 * leaf and interior-node hashes over many inputs in one call.
 *
 * SHA-256 is OpenSSL 3's (EVP): no hash function is implemented here. Nothing
 * here keeps a Python object or releases the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#define HASH_SIZE 32
#define ROW_WIDTH 10

static EVP_MD *sha256; /* fetched once at import */

static int digest2(EVP_MD_CTX *ctx, unsigned char prefix, const void *a, size_t alen,
                   const void *b, size_t blen, unsigned char *out) {
    return EVP_DigestInit_ex2(ctx, sha256, NULL) == 1 &&
           EVP_DigestUpdate(ctx, &prefix, 1) == 1 && EVP_DigestUpdate(ctx, a, alen) == 1 &&
           (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1) &&
           EVP_DigestFinal_ex(ctx, out, NULL) == 1;
}

static PyObject *openssl_error(void) {
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The few shapes of canonical leaf JSON this scanner reads.                 */

enum { ABSENT = 0, NUL, STR, OTHER };

typedef struct {
    int kind;
    const char *p;
    Py_ssize_t n;
} value_t;

enum { F_TYPE, F_PROFESSIONAL, F_ACTOR, F_FAMILY, F_PURPOSE, F_DECISION, F_REQUEST, F_TIME, NFIELDS };

static const char *const field_names[NFIELDS] = {
    "type", "professional_id", "actor_id", "family_id",
    "purpose_code", "decision", "request_id", "time",
};

/* A JSON string without escapes or control characters starting at s[*i] (the
 * opening quote); on success *i is past the closing quote. */
static int read_plain_string(const char *s, Py_ssize_t n, Py_ssize_t *i, value_t *v) {
    if (*i >= n || s[*i] != '"')
        return 0;
    Py_ssize_t j = *i + 1;
    while (j < n && s[j] != '"') {
        unsigned char c = (unsigned char)s[j];
        if (c == '\\' || c < 0x20)
            return 0;
        j++;
    }
    if (j >= n)
        return 0;
    v->kind = STR;
    v->p = s + *i + 1;
    v->n = j - *i - 1;
    *i = j + 1;
    return 1;
}

static int read_literal(const char *s, Py_ssize_t n, Py_ssize_t *i, const char *word) {
    size_t len = strlen(word);
    if (*i + (Py_ssize_t)len > n || memcmp(s + *i, word, len) != 0)
        return 0;
    *i += (Py_ssize_t)len;
    return 1;
}

/* Non-negative decimal without leading zeros, below 2**62. */
static int read_index(const char *s, Py_ssize_t n, Py_ssize_t *i, long long *out) {
    Py_ssize_t j = *i;
    long long value = 0;
    if (j >= n || s[j] < '0' || s[j] > '9')
        return 0;
    if (s[j] == '0' && j + 1 < n && s[j + 1] >= '0' && s[j + 1] <= '9')
        return 0;
    while (j < n && s[j] >= '0' && s[j] <= '9') {
        if (value > ((1LL << 62) - 10) / 10)
            return 0;
        value = value * 10 + (s[j] - '0');
        j++;
    }
    *i = j;
    *out = value;
    return 1;
}

/* The entry's fields this scanner needs and the top-level index, from leaf bytes
 * of the form {"entry":{...},"index":N,...}. The entry must be flat: its values
 * are plain strings, null, true, false or integers; anything else is refused. */
static int parse_leaf(const char *s, Py_ssize_t n, value_t fields[NFIELDS], long long *index) {
    static const char head[] = "{\"entry\":{";
    static const char tail[] = ",\"index\":";
    Py_ssize_t i = sizeof(head) - 1;
    memset(fields, 0, sizeof(value_t) * NFIELDS);
    if (n < i || memcmp(s, head, (size_t)i) != 0)
        return 0;
    if (i < n && s[i] == '}') {
        i++;
    } else {
        for (;;) {
            value_t key, value = {OTHER, NULL, 0};
            if (!read_plain_string(s, n, &i, &key) || i >= n || s[i] != ':')
                return 0;
            i++;
            if (i >= n)
                return 0;
            if (s[i] == '"') {
                if (!read_plain_string(s, n, &i, &value))
                    return 0;
            } else if (s[i] == 'n') {
                if (!read_literal(s, n, &i, "null"))
                    return 0;
                value.kind = NUL;
            } else if (s[i] == 't' || s[i] == 'f') {
                if (!read_literal(s, n, &i, s[i] == 't' ? "true" : "false"))
                    return 0;
            } else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
                i++;
                while (i < n && s[i] >= '0' && s[i] <= '9')
                    i++;
            } else {
                return 0; /* nested object or array: not a flat entry */
            }
            for (int f = 0; f < NFIELDS; f++) {
                size_t len = strlen(field_names[f]);
                if ((size_t)key.n == len && memcmp(key.p, field_names[f], len) == 0) {
                    if (fields[f].kind != ABSENT)
                        return 0; /* a duplicate key */
                    fields[f] = value;
                    break;
                }
            }
            if (i >= n)
                return 0;
            if (s[i] == '}') {
                i++;
                break;
            }
            if (s[i] != ',')
                return 0;
            i++;
        }
    }
    if (n - i < (Py_ssize_t)(sizeof(tail) - 1) || memcmp(s + i, tail, sizeof(tail) - 1) != 0)
        return 0;
    i += sizeof(tail) - 1;
    return read_index(s, n, &i, index) && i < n && (s[i] == ',' || s[i] == '}');
}

static int digits(const char *p, int count, int *out) {
    int value = 0;
    for (int k = 0; k < count; k++) {
        if (p[k] < '0' || p[k] > '9')
            return 0;
        value = value * 10 + (p[k] - '0');
    }
    *out = value;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Microseconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", the form
 * pydantic writes a UTC datetime in; any other form is refused. */
static int parse_time(const value_t *v, long long *out) {
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = v->p;
    int y, mo, d, h, mi, sec, frac = 0;
    if (v->kind != STR || (v->n != 20 && v->n != 27))
        return 0;
    if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':' ||
        p[v->n - 1] != 'Z')
        return 0;
    if (!digits(p, 4, &y) || !digits(p + 5, 2, &mo) || !digits(p + 8, 2, &d) ||
        !digits(p + 11, 2, &h) || !digits(p + 14, 2, &mi) || !digits(p + 17, 2, &sec))
        return 0;
    if (v->n == 27 && (p[19] != '.' || !digits(p + 20, 6, &frac)))
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59)
        return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int dim = month_days[mo - 1] + (mo == 2 && leap);
    if (d < 1 || d > dim)
        return 0;
    long long seconds = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + sec;
    *out = seconds * 1000000LL + frac;
    return 1;
}

/* Whether a column value equals what the leaf says: None for an absent or null
 * field, the same text for a plain string; a field of another JSON type is
 * never accepted here. */
static int column_is(PyObject *column, const value_t *v) {
    if (v->kind == ABSENT || v->kind == NUL)
        return column == Py_None;
    if (v->kind != STR || !PyUnicode_CheckExact(column))
        return 0;
    Py_ssize_t len;
    const char *text = PyUnicode_AsUTF8AndSize(column, &len);
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    return len == v->n && memcmp(text, v->p, (size_t)len) == 0;
}

/* One row: 1 if accepted (hash written to out), 0 if not, -1 on a Python error. */
static int check_row(EVP_MD_CTX *ctx, PyObject *row, long long expected, unsigned char *out) {
    PyObject *items[ROW_WIDTH];
    if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != ROW_WIDTH)
        return 0;
    for (int k = 0; k < ROW_WIDTH; k++)
        items[k] = PyTuple_GET_ITEM(row, k);
    if (!PyLong_CheckExact(items[0]) || !PyBytes_CheckExact(items[1]) ||
        !PyBytes_CheckExact(items[2]) || !PyLong_CheckExact(items[9]))
        return 0;
    int overflow;
    long long idx = PyLong_AsLongLongAndOverflow(items[0], &overflow);
    if (overflow || idx != expected)
        return 0;
    const char *data = PyBytes_AS_STRING(items[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(items[1]);
    if (PyBytes_GET_SIZE(items[2]) != HASH_SIZE)
        return 0;
    if (!digest2(ctx, 0x00, data, (size_t)n, NULL, 0, out)) {
        openssl_error();
        return -1;
    }
    if (memcmp(out, PyBytes_AS_STRING(items[2]), HASH_SIZE) != 0)
        return 0;

    value_t f[NFIELDS];
    long long index, when;
    if (!parse_leaf(data, n, f, &index) || index != idx)
        return 0;
    if (f[F_TYPE].kind != STR || !parse_time(&f[F_TIME], &when))
        return 0;
    long long event_time = PyLong_AsLongLongAndOverflow(items[9], &overflow);
    if (overflow || event_time != when)
        return 0;
    /* entry_columns: professional_id, else actor_id (Python's "or"). */
    const value_t *pro = &f[F_PROFESSIONAL];
    if (pro->kind == OTHER || f[F_ACTOR].kind == OTHER)
        return 0;
    if (!(pro->kind == STR && pro->n > 0))
        pro = &f[F_ACTOR];
    return column_is(items[3], &f[F_TYPE]) && column_is(items[4], pro) &&
           column_is(items[5], &f[F_FAMILY]) && column_is(items[6], &f[F_PURPOSE]) &&
           column_is(items[7], &f[F_DECISION]) && column_is(items[8], &f[F_REQUEST]);
}

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *rows, *out;
    Py_ssize_t first;
    long long start;
    if (!PyArg_ParseTuple(args, "O!nLO!:scan", &PyList_Type, &rows, &first, &start,
                          &PyByteArray_Type, &out))
        return NULL;
    if (first < 0 || first > PyList_GET_SIZE(rows)) {
        PyErr_Format(PyExc_IndexError, "first %zd is outside the %zd rows", first,
                     PyList_GET_SIZE(rows));
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(rows) - first;
    Py_ssize_t base = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, base + count * HASH_SIZE) < 0)
        return NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return openssl_error();
    Py_ssize_t k = 0;
    int ok = 1;
    for (; k < count; k++) {
        unsigned char *dest = (unsigned char *)PyByteArray_AS_STRING(out) + base + k * HASH_SIZE;
        ok = check_row(ctx, PyList_GET_ITEM(rows, first + k), start + k, dest);
        if (ok != 1)
            break;
    }
    EVP_MD_CTX_free(ctx);
    if (ok < 0 || PyByteArray_Resize(out, base + k * HASH_SIZE) < 0)
        return NULL;
    return PyLong_FromSsize_t(k);
}

static PyObject *leaf_hashes(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "leaf_hashes expects a sequence of bytes");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * HASH_SIZE);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (result == NULL || ctx == NULL)
        goto fail;
    unsigned char *dest = (unsigned char *)PyBytes_AS_STRING(result);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "leaf %zd is %s, not bytes", k, Py_TYPE(item)->tp_name);
            goto fail;
        }
        if (!digest2(ctx, 0x00, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item), NULL, 0,
                     dest + k * HASH_SIZE)) {
            openssl_error();
            goto fail;
        }
    }
    EVP_MD_CTX_free(ctx);
    Py_DECREF(seq);
    return result;
fail:
    EVP_MD_CTX_free(ctx);
    Py_XDECREF(result);
    Py_DECREF(seq);
    if (!PyErr_Occurred())
        PyErr_NoMemory();
    return NULL;
}

static PyObject *node_hashes(PyObject *self, PyObject *args) {
    Py_buffer level;
    Py_ssize_t first, count;
    if (!PyArg_ParseTuple(args, "y*nn:node_hashes", &level, &first, &count))
        return NULL;
    PyObject *result = NULL;
    EVP_MD_CTX *ctx = NULL;
    if (first < 0 || count < 0 || first > PY_SSIZE_T_MAX / (4 * HASH_SIZE) ||
        count > PY_SSIZE_T_MAX / (4 * HASH_SIZE) ||
        (first + count) * 2 * HASH_SIZE > level.len) {
        PyErr_Format(PyExc_ValueError,
                     "pairs %zd..%zd are outside a level of %zd bytes", first, first + count,
                     level.len);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, count * HASH_SIZE);
    ctx = EVP_MD_CTX_new();
    if (result == NULL || ctx == NULL) {
        Py_CLEAR(result);
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    const unsigned char *src = (const unsigned char *)level.buf + first * 2 * HASH_SIZE;
    unsigned char *dest = (unsigned char *)PyBytes_AS_STRING(result);
    for (Py_ssize_t k = 0; k < count; k++) {
        if (!digest2(ctx, 0x01, src + k * 2 * HASH_SIZE, 2 * HASH_SIZE, NULL, 0,
                     dest + k * HASH_SIZE)) {
            Py_CLEAR(result);
            openssl_error();
            goto done;
        }
    }
done:
    EVP_MD_CTX_free(ctx);
    PyBuffer_Release(&level);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(rows, first, start, out) -> accepted: check rows[first:] in order, append their "
     "leaf hashes"},
    {"leaf_hashes", leaf_hashes, METH_O,
     "leaf_hashes(datas) -> bytes: SHA-256(0x00 || data) of each, packed"},
    {"node_hashes", node_hashes, METH_VARARGS,
     "node_hashes(level, first, count) -> bytes: SHA-256(0x01 || left || right) of pairs"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "audit_log._leafscan",
    "Compiled leaf checks and Merkle hashing of the audit log (see _leafscan.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__leafscan(void) {
    if (sha256 == NULL) {
        sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (sha256 == NULL) {
            PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA256");
            return NULL;
        }
    }
    return PyModule_Create(&module);
}
