/* The compiled parts of otsentry's hot path: the record loop of classic pcap files, the
 * host-pair share test of `--workers N`, the decoder's commonest case (Ethernet, IPv4 without
 * options, TCP) and the name-based UUIDs of event.id.
 *
 * Optional: each caller keeps a pure-Python path that gives the same results (tested against
 * each other, fuzzed); this module only moves per-record and per-document work out of the
 * interpreter. Every read is bounds-checked against its buffer; nothing here keeps state
 * between calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define RECORD_HEADER_LEN 16

#define LINKTYPE_NULL 0
#define LINKTYPE_ETHERNET 1
#define LINKTYPE_RAW 101
#define LINKTYPE_LOOP 108
#define LINKTYPE_LINUX_SLL 113
#define LINKTYPE_IPV4 228
#define LINKTYPE_IPV6 229
#define LINKTYPE_LINUX_SLL2 276

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86DD

static const uint64_t MIX = 0x9E3779B97F4A7C15ULL;

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint32_t le32(const unsigned char *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static inline uint64_t be64(const unsigned char *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

static inline int is_vlan_tpid(unsigned int etype)
{
    return etype == 0x8100 || etype == 0x88A8 || etype == 0x9100 || etype == 0x9200;
}

static inline int is_af_inet6(uint32_t family)
{
    return family == 10 || family == 24 || family == 28 || family == 30;
}

/* The pair hash as split.host_pair_hash computes it: the sum of the addresses (IPv4: two 32-bit
 * words; IPv6: four 64-bit words), as hi:lo (hi < 4). Returns 0 for "no IP header found". */
static int pair_sum(long linktype, const unsigned char *d, Py_ssize_t n, uint64_t *hi, uint64_t *lo)
{
    unsigned int etype;
    Py_ssize_t off;
    if (linktype == LINKTYPE_ETHERNET) {
        if (n >= 34) {
            etype = be16(d + 12);
            if (etype == ETH_IPV4) {
                *hi = 0;
                *lo = (uint64_t)be32(d + 26) + be32(d + 30);
                return 1;
            }
        } else if (n < 14) {
            return 0;
        }
        etype = be16(d + 12);
        off = 14;
        if (is_vlan_tpid(etype)) {
            for (int i = 0; i < 2; i++) {
                if (n < off + 4)
                    return 0;
                etype = be16(d + off + 2);
                off += 4;
                if (!is_vlan_tpid(etype))
                    break;
            }
        }
    } else if (linktype == LINKTYPE_LINUX_SLL) {
        if (n < 16)
            return 0;
        etype = be16(d + 14);
        off = 16;
    } else if (linktype == LINKTYPE_LINUX_SLL2) {
        if (n < 20)
            return 0;
        etype = be16(d);
        off = 20;
    } else if (linktype == LINKTYPE_RAW || linktype == LINKTYPE_IPV4 || linktype == LINKTYPE_IPV6) {
        if (!n)
            return 0;
        etype = (d[0] >> 4) == 6 ? ETH_IPV6 : ETH_IPV4;
        off = 0;
    } else if (linktype == LINKTYPE_NULL || linktype == LINKTYPE_LOOP) {
        uint32_t family;
        if (n < 4)
            return 0;
        if (linktype == LINKTYPE_LOOP) {
            family = be32(d);
        } else {
            family = le32(d);
            if (family > 0xFFFF) /* written on a host of the other byte order */
                family = be32(d);
        }
        etype = family == 2 ? ETH_IPV4 : is_af_inet6(family) ? ETH_IPV6 : 0;
        off = 4;
    } else {
        return 0;
    }
    if (etype == ETH_IPV4) {
        if (n < off + 20)
            return 0;
        *hi = 0;
        *lo = (uint64_t)be32(d + off + 12) + be32(d + off + 16);
        return 1;
    }
    if (etype == ETH_IPV6) {
        uint64_t words[4], sum = 0, carry = 0;
        if (n < off + 40)
            return 0;
        for (int i = 0; i < 4; i++) {
            words[i] = be64(d + off + 8 + 8 * i);
            sum += words[i];
            if (sum < words[i])
                carry++;
        }
        *hi = carry;
        *lo = sum;
        return 1;
    }
    return 0;
}

/* ((hi:lo * MIX) >> 32) % workers, exactly as Python's unbounded integers give it. */
static long share_of_sum(uint64_t hi, uint64_t lo, long workers)
{
    unsigned __int128 a = (unsigned __int128)lo * MIX;
    unsigned __int128 b = (unsigned __int128)hi * MIX; /* hi < 4: at most 66 bits */
    uint64_t p0 = (uint64_t)a;
    unsigned __int128 t = (a >> 64) + (uint64_t)b;
    uint64_t p1 = (uint64_t)t;
    uint64_t p2 = (uint64_t)(b >> 64) + (uint64_t)(t >> 64);
    uint64_t q2 = p2 >> 32;
    uint64_t q1 = (p1 >> 32) | (p2 << 32);
    uint64_t q0 = (p0 >> 32) | (p1 << 32);
    unsigned __int128 r = q2 % (uint64_t)workers;
    r = ((r << 64) | q1) % (uint64_t)workers;
    r = ((r << 64) | q0) % (uint64_t)workers;
    return (long)r;
}

static long frame_share(long linktype, const unsigned char *d, Py_ssize_t n, long workers)
{
    uint64_t hi, lo;
    if (!pair_sum(linktype, d, n, &hi, &lo))
        return 0;
    return share_of_sum(hi, lo, workers);
}

PyDoc_STRVAR(share_doc,
             "share(linktype, data, workers) -> int\n\n"
             "The worker (0 .. workers-1) a frame falls to; as split.share_of(host_pair_hash()).");

static PyObject *fast_share(PyObject *self, PyObject *args)
{
    long linktype, workers;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "ly*l", &linktype, &view, &workers))
        return NULL;
    if (workers < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "workers must be at least 1");
        return NULL;
    }
    long w = frame_share(linktype, (const unsigned char *)view.buf, view.len, workers);
    PyBuffer_Release(&view);
    return PyLong_FromLong(w);
}

PyDoc_STRVAR(
    scan_doc,
    "scan(buf, pos, linktype, big_endian, frac_ns, limit, worker, workers, number, frames, "
    "numbers) -> (pos, number)\n\n"
    "Walk the complete pcap records of ``buf`` from ``pos``: each one counts in ``number``; "
    "those that fall to ``worker`` of ``workers`` are appended to ``frames`` as (ts, linktype, "
    "bytes) and their numbers to ``numbers`` (unless None). Stops at the first record that is "
    "incomplete in ``buf`` or longer than ``limit``; returns its offset and the count.");

static PyObject *fast_scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    long linktype, worker, workers;
    int big_endian;
    unsigned long long frac_ns, number;
    Py_ssize_t limit;
    PyObject *frames, *numbers, *lt_obj = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*nlpKnllKO!O", &view, &pos, &linktype, &big_endian, &frac_ns,
                          &limit, &worker, &workers, &number, &PyList_Type, &frames, &numbers))
        return NULL;
    if (workers < 1 || worker < 0 || worker >= workers) {
        PyErr_SetString(PyExc_ValueError, "worker must be one of 0 .. workers-1");
        goto done;
    }
    if (numbers != Py_None && !PyList_Check(numbers)) {
        PyErr_SetString(PyExc_TypeError, "numbers must be a list or None");
        goto done;
    }
    if (pos < 0) {
        PyErr_SetString(PyExc_ValueError, "negative position");
        goto done;
    }
    lt_obj = PyLong_FromLong(linktype);
    if (lt_obj == NULL)
        goto done;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t end = view.len;
    while (pos <= end - RECORD_HEADER_LEN) {
        const unsigned char *h = buf + pos;
        uint32_t sec, frac, caplen;
        if (big_endian) {
            sec = be32(h);
            frac = be32(h + 4);
            caplen = be32(h + 8);
        } else {
            sec = le32(h);
            frac = le32(h + 4);
            caplen = le32(h + 8);
        }
        Py_ssize_t start = pos + RECORD_HEADER_LEN;
        if ((Py_ssize_t)caplen > limit || (Py_ssize_t)caplen > end - start)
            break;
        number++;
        const unsigned char *data = buf + start;
        if (workers == 1 || frame_share(linktype, data, (Py_ssize_t)caplen, workers) == worker) {
            unsigned long long ts = (unsigned long long)sec * 1000000000ULL + (unsigned long long)frac * frac_ns;
            PyObject *frame = PyTuple_New(3);
            if (frame == NULL)
                goto done;
            PyObject *ts_obj = PyLong_FromUnsignedLongLong(ts);
            PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)caplen);
            if (ts_obj == NULL || bytes == NULL) {
                Py_XDECREF(ts_obj);
                Py_XDECREF(bytes);
                Py_DECREF(frame);
                goto done;
            }
            Py_INCREF(lt_obj);
            PyTuple_SET_ITEM(frame, 0, ts_obj);
            PyTuple_SET_ITEM(frame, 1, lt_obj);
            PyTuple_SET_ITEM(frame, 2, bytes);
            int failed = PyList_Append(frames, frame);
            Py_DECREF(frame);
            if (failed)
                goto done;
            if (numbers != Py_None) {
                PyObject *num = PyLong_FromUnsignedLongLong(number);
                if (num == NULL)
                    goto done;
                failed = PyList_Append(numbers, num);
                Py_DECREF(num);
                if (failed)
                    goto done;
            }
        }
        pos = start + (Py_ssize_t)caplen;
    }
    result = Py_BuildValue("nK", pos, number);
done:
    Py_XDECREF(lt_obj);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(
    tcp4_doc,
    "ethernet_ipv4_tcp(data) -> packet | None\n\n"
    "Decoder.decode's first case: an untagged Ethernet frame of at least 54 bytes carrying IPv4 "
    "without options, not a fragment, and TCP; the same packet tuple, or None for anything else.");

/* also called by the packet loop of _flowpath.c */
PyObject *otsentry_ethernet_ipv4_tcp(PyObject *self, PyObject *arg);

PyObject *otsentry_ethernet_ipv4_tcp(PyObject *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    if (n < 54)
        Py_RETURN_NONE;
    unsigned int total = be16(d + 16), frag = be16(d + 20), doff = d[46];
    if (be16(d + 12) != ETH_IPV4 || d[14] != 0x45 || d[23] != 6 || (frag & 0x3FFF) || total < 40 ||
        doff < 0x50)
        Py_RETURN_NONE;
    Py_ssize_t end = 14 + (Py_ssize_t)total;
    if (end > n)
        end = n;
    Py_ssize_t start = 34 + (Py_ssize_t)(doff >> 4) * 4;
    if (start > end)
        start = end;
    /* ((src, sport, dst, dport, 0, 6), flags, seq, payload, 0), built item by item:
     * Py_BuildValue parses its format on every call and doubled the cost */
    PyObject *key = PyTuple_New(6);
    PyObject *pkt = PyTuple_New(5);
    if (key == NULL || pkt == NULL)
        goto fail;
    PyObject *items[9] = {
        PyBytes_FromStringAndSize((const char *)d + 26, 4),
        PyLong_FromLong(be16(d + 34)),
        PyBytes_FromStringAndSize((const char *)d + 30, 4),
        PyLong_FromLong(be16(d + 36)),
        PyLong_FromLong(0),
        PyLong_FromLong(6),
        PyLong_FromLong(d[47]),
        PyLong_FromUnsignedLong(be32(d + 38)),
        PyBytes_FromStringAndSize((const char *)d + start, end - start),
    };
    for (int i = 0; i < 9; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < 9; j++)
                Py_XDECREF(items[j]);
            goto fail;
        }
    }
    for (int i = 0; i < 6; i++)
        PyTuple_SET_ITEM(key, i, items[i]);
    PyTuple_SET_ITEM(pkt, 0, key);
    PyTuple_SET_ITEM(pkt, 1, items[6]);
    PyTuple_SET_ITEM(pkt, 2, items[7]);
    PyTuple_SET_ITEM(pkt, 3, items[8]);
    PyTuple_SET_ITEM(pkt, 4, PyLong_FromLong(0)); /* a cached small int: cannot fail */
    return pkt;
fail:
    Py_XDECREF(key);
    Py_XDECREF(pkt);
    return NULL;
}

/* SHA-1 (FIPS 180-4) for the name-based UUIDs of event.id: the hash is fixed by the id
 * contract (uuid5), and one call doing hash and formatting costs a third of hashlib's objects. */
static inline uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

/* One 64-byte block. The message schedule lives in a 16-word ring computed as the rounds go,
 * and the rounds are unrolled by the macros below (five at a time, the variables rotating). */
#define SHA1_W(t) (w[(t) & 15] = rol32(w[((t) + 13) & 15] ^ w[((t) + 8) & 15] ^ w[((t) + 2) & 15] ^ w[(t) & 15], 1))
#define SHA1_ROUND(t, a, b, c, d, e, f, k, x) \
    do {                                       \
        uint32_t tmp_ = (x);                   \
        e += rol32(a, 5) + (f) + (k) + tmp_;   \
        b = rol32(b, 30);                      \
    } while (0)
#define F1(b, c, d) (((c ^ d) & b) ^ d)
#define F2(b, c, d) (b ^ c ^ d)
#define F3(b, c, d) ((b & c) + (d & (b ^ c)))
#define FIVE(t, F, k, X)                                  \
    SHA1_ROUND(t, a, b, c, d, e, F(b, c, d), k, X(t));    \
    SHA1_ROUND(t + 1, e, a, b, c, d, F(a, b, c), k, X(t + 1)); \
    SHA1_ROUND(t + 2, d, e, a, b, c, F(e, a, b), k, X(t + 2)); \
    SHA1_ROUND(t + 3, c, d, e, a, b, F(d, e, a), k, X(t + 3)); \
    SHA1_ROUND(t + 4, b, c, d, e, a, F(c, d, e), k, X(t + 4))
#define SHA1_LOAD(t) (w[t] = be32(p + 4 * (t)))

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[16];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    FIVE(0, F1, 0x5A827999, SHA1_LOAD);
    FIVE(5, F1, 0x5A827999, SHA1_LOAD);
    FIVE(10, F1, 0x5A827999, SHA1_LOAD);
    SHA1_ROUND(15, a, b, c, d, e, F1(b, c, d), 0x5A827999, SHA1_LOAD(15));
    SHA1_ROUND(16, e, a, b, c, d, F1(a, b, c), 0x5A827999, SHA1_W(16));
    SHA1_ROUND(17, d, e, a, b, c, F1(e, a, b), 0x5A827999, SHA1_W(17));
    SHA1_ROUND(18, c, d, e, a, b, F1(d, e, a), 0x5A827999, SHA1_W(18));
    SHA1_ROUND(19, b, c, d, e, a, F1(c, d, e), 0x5A827999, SHA1_W(19));
    FIVE(20, F2, 0x6ED9EBA1, SHA1_W);
    FIVE(25, F2, 0x6ED9EBA1, SHA1_W);
    FIVE(30, F2, 0x6ED9EBA1, SHA1_W);
    FIVE(35, F2, 0x6ED9EBA1, SHA1_W);
    FIVE(40, F3, 0x8F1BBCDC, SHA1_W);
    FIVE(45, F3, 0x8F1BBCDC, SHA1_W);
    FIVE(50, F3, 0x8F1BBCDC, SHA1_W);
    FIVE(55, F3, 0x8F1BBCDC, SHA1_W);
    FIVE(60, F2, 0xCA62C1D6, SHA1_W);
    FIVE(65, F2, 0xCA62C1D6, SHA1_W);
    FIVE(70, F2, 0xCA62C1D6, SHA1_W);
    FIVE(75, F2, 0xCA62C1D6, SHA1_W);
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* SHA-1 of the concatenation of two buffers. */
static void sha1_two(const unsigned char *x, size_t nx, const unsigned char *y, size_t ny,
                     unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char block[64];
    size_t fill = 0;
    const unsigned char *parts[2] = {x, y};
    size_t sizes[2] = {nx, ny};
    for (int part = 0; part < 2; part++) {
        const unsigned char *p = parts[part];
        size_t n = sizes[part];
        while (n) {
            if (fill == 0 && n >= 64) {
                sha1_block(h, p);
                p += 64;
                n -= 64;
                continue;
            }
            size_t take = 64 - fill < n ? 64 - fill : n;
            memcpy(block + fill, p, take);
            fill += take;
            p += take;
            n -= take;
            if (fill == 64) {
                sha1_block(h, block);
                fill = 0;
            }
        }
    }
    uint64_t bits = ((uint64_t)nx + ny) * 8;
    block[fill++] = 0x80;
    if (fill > 56) {
        memset(block + fill, 0, 64 - fill);
        sha1_block(h, block);
        fill = 0;
    }
    memset(block + fill, 0, 56 - fill);
    for (int i = 0; i < 8; i++)
        block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_block(h, block);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

PyDoc_STRVAR(uuid5_doc,
             "uuid5(head, tail) -> bytes\n\n"
             "str(uuid.uuid5(ns, name)) as ASCII bytes, where head + tail is ns.bytes + name.");

/* str(uuid5) of head + tail into out (36 characters); also used by _eventline.c */
void otsentry_uuid5_text(const unsigned char *head, size_t nh, const unsigned char *tail,
                         size_t nt, char out[36]);

void otsentry_uuid5_text(const unsigned char *head, size_t nh, const unsigned char *tail,
                         size_t nt, char out[36])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[20], text[40];
    sha1_two(head, nh, tail, nt, digest);
    for (int i = 0; i < 20; i++) {
        text[2 * i] = (unsigned char)hex[digest[i] >> 4];
        text[2 * i + 1] = (unsigned char)hex[digest[i] & 15];
    }
    /* 8-4-4-4-12; version 5 in the time_hi nibble, the RFC 4122 variant in clock_seq's */
    memcpy(out, text, 8);
    out[8] = '-';
    memcpy(out + 9, text + 8, 4);
    out[13] = '-';
    out[14] = '5';
    memcpy(out + 15, text + 13, 3);
    out[18] = '-';
    out[19] = hex[((digest[8] >> 4) & 0x3) | 0x8];
    memcpy(out + 20, text + 17, 3);
    out[23] = '-';
    memcpy(out + 24, text + 20, 12);
}

static PyObject *fast_uuid5(PyObject *self, PyObject *args)
{
    Py_buffer head, tail;
    if (!PyArg_ParseTuple(args, "y*y*", &head, &tail))
        return NULL;
    char out[36];
    otsentry_uuid5_text(head.buf, (size_t)head.len, tail.buf, (size_t)tail.len, out);
    PyBuffer_Release(&head);
    PyBuffer_Release(&tail);
    return PyBytes_FromStringAndSize(out, 36);
}

static PyMethodDef methods[] = {
    {"scan", fast_scan, METH_VARARGS, scan_doc},
    {"share", fast_share, METH_VARARGS, share_doc},
    {"ethernet_ipv4_tcp", otsentry_ethernet_ipv4_tcp, METH_O, tcp4_doc},
    {"uuid5", fast_uuid5, METH_VARARGS, uuid5_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The pcap record loop, the workers' share test, decode's first case and uuid5, compiled.", -1,
    methods,
};

/* _flowpath.c, _eventline.c */
int otsentry_add_flowpath(PyObject *module);
int otsentry_add_eventlines(PyObject *module);

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (otsentry_add_flowpath(m) < 0 || otsentry_add_eventlines(m) < 0))
        Py_CLEAR(m);
    return m;
}
