/* The packet loop of Pipeline.run (run_frames) and FlowTable.packet's commonest case (FlowPath),
 * compiled.
 *
 * run_frames does for a batch of frames what the loop of Pipeline.run does in Python: keep each
 * frame and its flow key for the evidence ring, decode it (the decoder's first case without a
 * call), number it and hand it to the flow table.
 *
 * A TCP packet without SYN, FIN or RST on a flow the table knows, before the next idle sweep is
 * due: its counters are updated and, when it carries the next bytes of a stream whose buffer is
 * empty, its payload goes straight to the stream's dissector (TcpStream.segment's first case).
 * Anything else — a new flow, a handshake or teardown flag, a probe, a sweep, a hole, buffered
 * bytes, a subclass — is left untouched and handed to FlowTable.packet itself, so the Python
 * methods stay the reference for every decision.
 *
 * The Flow and TcpStream attributes are their __slots__: their offsets are read once from the
 * classes' member descriptors, and every object is checked to be exactly of those classes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define IPPROTO_TCP_ 6
#define SEQ_MASK 0xFFFFFFFFLL
/* what TcpStream.segment hands on when the dissector raised */
#define PARSE_RAISED (-(1LL << 62))

enum {
    F_LAST_TS,
    F_PACKETS_C,
    F_PACKETS_S,
    F_BYTES_C,
    F_BYTES_S,
    F_CLOSED,
    F_REASSEMBLE,
    F_STREAM_C,
    F_STREAM_S,
    F_DISSECTOR,
    F_PROBE_LEFT,
    F_COUNT
};
static const char *const flow_slots[F_COUNT] = {
    "last_ts",  "packets_c",  "packets_s", "bytes_c",  "bytes_s",   "closed",
    "reassemble", "stream_c", "stream_s",  "dissector", "probe_left",
};

enum { S_NEXT_SEQ, S_BUF, S_OOO, S_DISSECTOR, S_FROM_CLIENT, S_COUNT };
static const char *const stream_slots[S_COUNT] = {
    "next_seq", "buf", "ooo", "dissector", "from_client",
};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *table;
    PyObject *flows;     /* table.flows: key -> (flow, from client) */
    PyObject *slow;      /* table.packet */
    PyTypeObject *flow_type;
    PyTypeObject *stream_type;
    Py_ssize_t flow_off[F_COUNT];
    Py_ssize_t stream_off[S_COUNT];
    PyObject *s_next_sweep;
    PyObject *s_parse;
    PyObject *s_after;
    PyObject *zero;
    PyObject *raised;
    /* counters, for tests and the benchmarks: packets taken here, packets handed on */
    Py_ssize_t fast;
    Py_ssize_t handed_on;
} FlowPath;

/* attribute names of run_frames */
static PyObject *s_frame, *s_in_run;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* the offsets of a class's writable object slots (also used by _eventline.c) */
int otsentry_slot_offsets(PyTypeObject *type, const char *const *names, int n, Py_ssize_t *out);

int otsentry_slot_offsets(PyTypeObject *type, const char *const *names, int n, Py_ssize_t *out)
{
    for (int i = 0; i < n; i++) {
        PyObject *d = PyDict_GetItemString(type->tp_dict, names[i]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, names[i]);
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a writable object slot", type->tp_name,
                         names[i]);
            return -1;
        }
        out[i] = m->offset;
    }
    return 0;
}

/* store ``value`` (a new reference, stolen) in a slot */
static inline void set_slot(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject **p = (PyObject **)((char *)obj + off);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
}

/* a slot holding an int, plus ``add`` (0 when the slot is unset or not a plain int) */
static inline int add_to_slot(PyObject *obj, Py_ssize_t off, long long add)
{
    PyObject *v = SLOT(obj, off);
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    PyObject *n = PyLong_FromLongLong(x + add);
    if (n == NULL)
        return -1;
    set_slot(obj, off, n);
    return 0;
}

static inline int is_plain_int(PyObject *v) { return v != NULL && PyLong_CheckExact(v); }

/* an int's value, or -1 when it does not fit a C long */
static inline long small_int(PyObject *v)
{
    int overflow = 0;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    return overflow ? -1 : x;
}

static PyObject *hand_on(FlowPath *self, PyObject *const *args)
{
    self->handed_on++;
    return PyObject_Vectorcall(self->slow, args, 3, NULL);
}

static PyObject *flowpath_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames)
{
    FlowPath *self = (FlowPath *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 3 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "FlowPath(pkt, ts, frame) takes three arguments");
        return NULL;
    }
    PyObject *pkt = args[0], *ts = args[1], *frame = args[2];
    if (!PyTuple_CheckExact(pkt) || PyTuple_GET_SIZE(pkt) != 5 || !is_plain_int(ts) ||
        !PyBytes_CheckExact(frame))
        return hand_on(self, args);
    PyObject *key = PyTuple_GET_ITEM(pkt, 0), *flags = PyTuple_GET_ITEM(pkt, 1);
    PyObject *seq = PyTuple_GET_ITEM(pkt, 2), *payload = PyTuple_GET_ITEM(pkt, 3);
    if (!PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 6 || !is_plain_int(flags) ||
        !is_plain_int(seq) || !PyBytes_CheckExact(payload))
        return hand_on(self, args);
    PyObject *transport = PyTuple_GET_ITEM(key, 5);
    if (!is_plain_int(transport) || small_int(transport) != IPPROTO_TCP_ ||
        (small_int(flags) & (TCP_SYN | TCP_FIN | TCP_RST | ~0xFFL)))
        return hand_on(self, args);
    PyObject *entry = PyDict_GetItemWithError(self->flows, key); /* borrowed */
    if (entry == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return hand_on(self, args);
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2)
        return hand_on(self, args);
    PyObject *flow = PyTuple_GET_ITEM(entry, 0), *fc_obj = PyTuple_GET_ITEM(entry, 1);
    if (Py_TYPE(flow) != self->flow_type || (fc_obj != Py_True && fc_obj != Py_False))
        return hand_on(self, args);
    int fc = fc_obj == Py_True;
    /* a sweep is due: FlowTable.packet does it */
    PyObject *due = PyObject_GetAttr(self->table, self->s_next_sweep);
    if (due == NULL)
        return NULL;
    int swept = PyObject_RichCompareBool(ts, due, Py_GE);
    Py_DECREF(due);
    if (swept < 0)
        return NULL;
    if (swept)
        return hand_on(self, args);
    for (int i = 0; i < F_COUNT; i++) {
        if (SLOT(flow, self->flow_off[i]) == NULL)
            return hand_on(self, args);
    }
    const Py_ssize_t *fo = self->flow_off;
    if (!is_plain_int(SLOT(flow, fo[fc ? F_PACKETS_C : F_PACKETS_S])) ||
        !is_plain_int(SLOT(flow, fo[fc ? F_BYTES_C : F_BYTES_S])))
        return hand_on(self, args);
    Py_ssize_t plen = PyBytes_GET_SIZE(payload);
    PyObject *stream = NULL;
    long long next = 0;
    if (plen > 0) {
        PyObject *closed = SLOT(flow, fo[F_CLOSED]), *reassemble = SLOT(flow, fo[F_REASSEMBLE]);
        if ((closed != Py_True && closed != Py_False) ||
            (reassemble != Py_True && reassemble != Py_False))
            return hand_on(self, args);
        if (closed == Py_False && reassemble == Py_True) {
            /* the Python path makes the stream, probes, or takes the general segment path */
            stream = SLOT(flow, fo[fc ? F_STREAM_C : F_STREAM_S]);
            if (Py_TYPE(stream) != self->stream_type || SLOT(flow, fo[F_DISSECTOR]) == Py_None)
                return hand_on(self, args);
            for (int i = 0; i < S_COUNT; i++) {
                if (SLOT(stream, self->stream_off[i]) == NULL)
                    return hand_on(self, args);
            }
            const Py_ssize_t *so = self->stream_off;
            PyObject *nxt = SLOT(stream, so[S_NEXT_SEQ]), *buf = SLOT(stream, so[S_BUF]);
            PyObject *ooo = SLOT(stream, so[S_OOO]);
            if (!is_plain_int(nxt) || PyObject_RichCompareBool(nxt, seq, Py_EQ) != 1 ||
                !PyByteArray_CheckExact(buf) || PyByteArray_GET_SIZE(buf) != 0 ||
                !PyDict_CheckExact(ooo) || PyDict_GET_SIZE(ooo) != 0 ||
                SLOT(stream, so[S_DISSECTOR]) == Py_None) {
                PyErr_Clear();
                return hand_on(self, args);
            }
            long long s = PyLong_AsLongLong(seq);
            if (s == -1 && PyErr_Occurred())
                return NULL;
            next = (s + plen) & SEQ_MASK;
        }
    }
    /* taken here: the flow's time and counters */
    self->fast++;
    Py_INCREF(ts);
    set_slot(flow, fo[F_LAST_TS], ts);
    if (add_to_slot(flow, fo[fc ? F_PACKETS_C : F_PACKETS_S], 1) < 0 ||
        add_to_slot(flow, fo[fc ? F_BYTES_C : F_BYTES_S], PyBytes_GET_SIZE(frame)) < 0)
        return NULL;
    if (stream == NULL)
        Py_RETURN_NONE;
    /* TcpStream.segment's first case: the next bytes, nothing buffered — parse in place */
    const Py_ssize_t *so = self->stream_off;
    PyObject *next_obj = PyLong_FromLongLong(next);
    if (next_obj == NULL)
        return NULL;
    Py_INCREF(stream); /* the parse may end the flow */
    set_slot(stream, so[S_NEXT_SEQ], next_obj);
    PyObject *dissector = SLOT(stream, so[S_DISSECTOR]);
    Py_INCREF(dissector);
    PyObject *call[5] = {dissector, payload, self->zero, SLOT(stream, so[S_FROM_CLIENT]), ts};
    PyObject *r = PyObject_VectorcallMethod(self->s_parse, call,
                                            5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(dissector);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_DECREF(stream);
            return NULL;
        }
        PyErr_Clear();
        r = Py_NewRef(self->raised);
    }
    else if (PyLong_CheckExact(r)) {
        int overflow = 0;
        long long consumed = PyLong_AsLongLongAndOverflow(r, &overflow);
        if (!overflow && consumed == plen) {
            Py_DECREF(r);
            Py_DECREF(stream);
            Py_RETURN_NONE;
        }
    }
    PyObject *rest = PyObject_CallMethodObjArgs(stream, self->s_after, payload, r, ts, NULL);
    Py_DECREF(r);
    Py_DECREF(stream);
    return rest;
}

static int flowpath_init(FlowPath *self, PyObject *args, PyObject *kwds)
{
    PyObject *table, *flow_type, *stream_type;
    static char *kwlist[] = {"table", "flow_type", "stream_type", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!:FlowPath", kwlist, &table, &PyType_Type,
                                     &flow_type, &PyType_Type, &stream_type))
        return -1;
    PyObject *flows = PyObject_GetAttrString(table, "flows");
    if (flows == NULL)
        return -1;
    if (!PyDict_CheckExact(flows)) {
        Py_DECREF(flows);
        PyErr_SetString(PyExc_TypeError, "table.flows must be a dict");
        return -1;
    }
    PyObject *slow = PyObject_GetAttrString(table, "packet");
    if (slow == NULL) {
        Py_DECREF(flows);
        return -1;
    }
    Py_XSETREF(self->flows, flows);
    Py_XSETREF(self->slow, slow);
    Py_XSETREF(self->table, Py_NewRef(table));
    Py_XSETREF(self->flow_type, (PyTypeObject *)Py_NewRef(flow_type));
    Py_XSETREF(self->stream_type, (PyTypeObject *)Py_NewRef(stream_type));
    if (otsentry_slot_offsets(self->flow_type, flow_slots, F_COUNT, self->flow_off) < 0 ||
        otsentry_slot_offsets(self->stream_type, stream_slots, S_COUNT, self->stream_off) < 0)
        return -1;
    Py_XSETREF(self->s_next_sweep, PyUnicode_InternFromString("next_sweep"));
    Py_XSETREF(self->s_parse, PyUnicode_InternFromString("parse"));
    Py_XSETREF(self->s_after, PyUnicode_InternFromString("_after_first_parse"));
    Py_XSETREF(self->zero, PyLong_FromLong(0));
    Py_XSETREF(self->raised, PyLong_FromLongLong(PARSE_RAISED));
    if (!self->s_next_sweep || !self->s_parse || !self->s_after || !self->zero || !self->raised)
        return -1;
    self->vectorcall = flowpath_vectorcall;
    return 0;
}

static int flowpath_traverse(FlowPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->table);
    Py_VISIT(self->flows);
    Py_VISIT(self->slow);
    Py_VISIT(self->flow_type);
    Py_VISIT(self->stream_type);
    return 0;
}

static int flowpath_clear(FlowPath *self)
{
    Py_CLEAR(self->table);
    Py_CLEAR(self->flows);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->flow_type);
    Py_CLEAR(self->stream_type);
    return 0;
}

static void flowpath_dealloc(FlowPath *self)
{
    PyObject_GC_UnTrack(self);
    flowpath_clear(self);
    Py_CLEAR(self->s_next_sweep);
    Py_CLEAR(self->s_parse);
    Py_CLEAR(self->s_after);
    Py_CLEAR(self->zero);
    Py_CLEAR(self->raised);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef flowpath_members[] = {
    {"fast", T_PYSSIZET, offsetof(FlowPath, fast), READONLY, "packets taken here"},
    {"handed_on", T_PYSSIZET, offsetof(FlowPath, handed_on), READONLY,
     "packets handed to FlowTable.packet"},
    {NULL},
};

PyDoc_STRVAR(flowpath_doc,
    "FlowPath(table, flow_type, stream_type)\n\n"
    "A callable doing table.packet(pkt, ts, frame): the commonest TCP packet here, any other "
    "handed to table.packet unchanged.");

static PyTypeObject FlowPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otsentry._speedups.FlowPath",
    .tp_basicsize = sizeof(FlowPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = flowpath_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)flowpath_init,
    .tp_dealloc = (destructor)flowpath_dealloc,
    .tp_traverse = (traverseproc)flowpath_traverse,
    .tp_clear = (inquiry)flowpath_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FlowPath, vectorcall),
    .tp_members = flowpath_members,
};

/* _speedups.c: Decoder.decode's first case */
PyObject *otsentry_ethernet_ipv4_tcp(PyObject *self, PyObject *arg);

static inline int call_one(PyObject *f, PyObject *arg)
{
    PyObject *r = PyObject_CallOneArg(f, arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* one frame of run_frames; -1 on an exception */
static int run_frame(PyObject *const *args, PyObject *frame, PyObject *number, long long *packets,
                     long long *nbytes, long long *first, long long *last)
{
    PyObject *keep = args[3], *mark = args[4], *decode = args[6], *packet = args[7];
    if (keep != Py_None && call_one(keep, frame) < 0)
        return -1;
    if (!PyTuple_CheckExact(frame) || PyTuple_GET_SIZE(frame) != 3) {
        PyErr_SetString(PyExc_TypeError, "a frame is a (ts, linktype, data) tuple");
        return -1;
    }
    PyObject *ts = PyTuple_GET_ITEM(frame, 0), *linktype = PyTuple_GET_ITEM(frame, 1);
    PyObject *data = PyTuple_GET_ITEM(frame, 2);
    long long t = PyLong_AsLongLong(ts);
    if (t == -1 && PyErr_Occurred())
        return -1;
    Py_ssize_t size = PyObject_Length(data);
    if (size < 0)
        return -1;
    if (*first < 0)
        *first = t;
    *last = t;
    *packets += 1;
    *nbytes += size;
    PyObject *pkt = NULL;
    if (args[5] == Py_True && PyBytes_CheckExact(data) && PyLong_CheckExact(linktype) &&
        small_int(linktype) == 1) {
        pkt = otsentry_ethernet_ipv4_tcp(NULL, data);
        if (pkt == NULL)
            return -1;
        if (pkt == Py_None)
            Py_CLEAR(pkt);
    }
    if (pkt == NULL) {
        PyObject *call[3] = {linktype, data, ts};
        pkt = PyObject_Vectorcall(decode, call, 3, NULL);
        if (pkt == NULL)
            return -1;
    }
    int rc = 0;
    PyObject *key = Py_None;
    if (pkt != Py_None) {
        key = PySequence_GetItem(pkt, 0);
        if (key == NULL) {
            Py_DECREF(pkt);
            return -1;
        }
    }
    else
        Py_INCREF(key);
    if (mark != Py_None)
        rc = call_one(mark, key);
    Py_DECREF(key);
    if (rc == 0 && pkt != Py_None) {
        PyObject *n = PyLong_FromLongLong(*packets);
        if (n == NULL || PyObject_SetAttr(args[8], s_frame, number) < 0 ||
            PyObject_SetAttr(args[9], s_in_run, n) < 0)
            rc = -1;
        Py_XDECREF(n);
        if (rc == 0) {
            PyObject *call[3] = {pkt, ts, data};
            PyObject *r = Py_IS_TYPE(packet, &FlowPathType)
                              ? flowpath_vectorcall(packet, call, 3, NULL)
                              : PyObject_Vectorcall(packet, call, 3, NULL);
            if (r == NULL)
                rc = -1;
            Py_XDECREF(r);
        }
    }
    Py_DECREF(pkt);
    return rc;
}

static int store_state(PyObject *state, const long long *values)
{
    for (Py_ssize_t i = 0; i < 4; i++) {
        PyObject *v = PyLong_FromLongLong(values[i]);
        if (v == NULL || PyList_SetItem(state, i, v) < 0)
            return -1;
    }
    return 0;
}

PyDoc_STRVAR(run_frames_doc,
    "run_frames(frames, numbers, limit, keep, mark, decode_fast, decode, packet, table, "
    "pipeline, state) -> int\n\n"
    "Pipeline.run's loop over at most ``limit`` frames: each frame to ``keep``, decoded "
    "(``decode_fast``: an Ethernet frame's first case here, else ``decode(linktype, data, ts)``), "
    "its flow key (or None) to ``mark``, and a packet numbered from ``numbers`` to "
    "``packet(pkt, ts, data)`` after setting ``table.frame`` and ``pipeline._in_run``. "
    "``keep``/``mark`` may be None. ``state`` is the list [packets, bytes, first ts, last ts], "
    "updated even when an exception stops the loop. Returns the frames taken.");

static PyObject *run_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "run_frames takes eleven arguments");
        return NULL;
    }
    PyObject *frames = args[0], *numbers = args[1], *state = args[10];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (!PyIter_Check(frames) || !PyIter_Check(numbers) || !PyList_CheckExact(state) ||
        PyList_GET_SIZE(state) != 4) {
        PyErr_SetString(PyExc_TypeError, "iterators and a list of four ints expected");
        return NULL;
    }
    long long values[4];
    for (Py_ssize_t i = 0; i < 4; i++) {
        values[i] = PyLong_AsLongLong(PyList_GET_ITEM(state, i));
        if (values[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    Py_ssize_t taken = 0;
    int failed = 0;
    while (taken < limit) {
        PyObject *frame = PyIter_Next(frames);
        if (frame == NULL) {
            failed = PyErr_Occurred() != NULL;
            break;
        }
        PyObject *number = PyIter_Next(numbers);
        if (number == NULL) { /* as zip: the frame is dropped */
            Py_DECREF(frame);
            failed = PyErr_Occurred() != NULL;
            break;
        }
        taken++;
        int rc = run_frame(args, frame, number, &values[0], &values[1], &values[2], &values[3]);
        Py_DECREF(frame);
        Py_DECREF(number);
        if (rc < 0) {
            failed = 1;
            break;
        }
    }
    if (failed) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (store_state(state, values) < 0) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (store_state(state, values) < 0)
        return NULL;
    return PyLong_FromSsize_t(taken);
}

static PyMethodDef loop_methods[] = {
    {"run_frames", (PyCFunction)(void (*)(void))run_frames, METH_FASTCALL, run_frames_doc},
    {NULL, NULL, 0, NULL},
};

int otsentry_add_flowpath(PyObject *module)
{
    s_frame = PyUnicode_InternFromString("frame");
    s_in_run = PyUnicode_InternFromString("_in_run");
    if (s_frame == NULL || s_in_run == NULL || PyModule_AddFunctions(module, loop_methods) < 0)
        return -1;
    if (PyType_Ready(&FlowPathType) < 0)
        return -1;
    Py_INCREF(&FlowPathType);
    if (PyModule_AddObject(module, "FlowPath", (PyObject *)&FlowPathType) < 0) {
        Py_DECREF(&FlowPathType);
        return -1;
    }
    return 0;
}
