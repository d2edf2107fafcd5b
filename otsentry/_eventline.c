/* EventLines: otsentry.ecs.event_line's commonest case, compiled.
 *
 * A protocol event whose flow, action, second and wall-clock millisecond the Python function
 * has already seen (its caches hold the pieces), whose record is a plain dict without
 * ``direction`` or ``anomalies`` members, without anomalies, and whose outcome and duration
 * are the usual kinds: its line is put together here from the same cached pieces, the record
 * serialised by orjson as the Python function does, and its event.id made by the same uuid5.
 * Anything else is handed to the Python function, which stays the reference for every byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <structmember.h>
#include <string.h>
#include <time.h>

/* _flowpath.c, _speedups.c */
int otsentry_slot_offsets(PyTypeObject *type, const char *const *names, int n, Py_ssize_t *out);
void otsentry_uuid5_text(const unsigned char *head, size_t nh, const unsigned char *tail,
                         size_t nt, char out[36]);

enum { E_ENVELOPE, E_ACTION, E_FIELDS, E_ANOMALIES, E_OUTCOME, E_DURATION, E_COUNT };
static const char *const event_slots[E_COUNT] = {
    "envelope", "action", "fields", "anomalies", "outcome", "duration_ns",
};
enum { V_TS, V_CONN, V_PROTOCOL, V_DIRECTION, V_COUNT };
static const char *const envelope_slots[V_COUNT] = {"ts", "conn", "protocol", "direction"};
enum { C_COMMUNITY_ID, C_COUNT };
static const char *const conn_slots[C_COUNT] = {"community_id"};
enum { I_HEADS, I_N, I_COUNT };
static const char *const ids_slots[I_COUNT] = {"_heads", "_n"};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;      /* ecs.event_line */
    PyObject *refresh;       /* ecs._created_now */
    PyObject *module_dict;   /* ecs.__dict__, for _CREATED (rebound on each new millisecond) */
    PyObject *now;           /* ecs._NOW: [millisecond, its text] */
    PyObject *flow_lines;    /* ecs._FLOW_LINES */
    PyObject *line_seconds;  /* ecs._LINE_SECONDS */
    PyObject *directions;    /* ecs._DIRECTIONS */
    PyObject *outcomes;      /* ecs._OUTCOMES */
    PyObject *digits;        /* ecs._DIGITS3 */
    PyObject *after_ts;      /* ecs._AFTER_TIMESTAMP */
    PyObject *dumps;         /* orjson.dumps */
    PyObject *event_type, *envelope_type, *conn_type, *ids_type;
    Py_ssize_t event_off[E_COUNT], envelope_off[V_COUNT], conn_off[C_COUNT], ids_off[I_COUNT];
    PyObject *s_created, *s_event, *s_direction, *s_anomalies, *default_kw;
    Py_ssize_t fast, handed_on;
    /* _DIRECTIONS' items when made (the Direction members are singletons) */
    int n_known;
    PyObject *known_direction[8], *known_piece[8];
} EventLines;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* ``x`` in decimal at ``out`` (room for 21 characters); the characters written */
static int put_int(char *out, long long x)
{
    char digits[24];
    int n = 0, len = 0;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        out[len++] = '-';
    while (n)
        out[len++] = digits[--n];
    return len;
}

static PyObject *hand_on(EventLines *self, PyObject *const *args)
{
    self->handed_on++;
    return PyObject_Vectorcall(self->fallback, args, 3, NULL);
}

static int read_slots(PyObject *obj, const Py_ssize_t *offsets, int n, PyObject **out)
{
    for (int i = 0; i < n; i++) {
        out[i] = SLOT(obj, offsets[i]);
        if (out[i] == NULL)
            return -1;
    }
    return 0;
}

/* a bytes object's bytes and size */
#define BYTES(o) PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o)

static PyObject *eventlines_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames)
{
    EventLines *self = (EventLines *)callable;
    if (PyVectorcall_NARGS(nargsf) != 3 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "EventLines(event, observer, ids) takes three arguments");
        return NULL;
    }
    PyObject *ev = args[0], *observer = args[1], *ids = args[2];
    PyObject *e[E_COUNT], *v[V_COUNT], *c[C_COUNT], *d[I_COUNT];
    if ((PyObject *)Py_TYPE(ev) != self->event_type ||
        (PyObject *)Py_TYPE(ids) != self->ids_type ||
        read_slots(ev, self->event_off, E_COUNT, e) < 0 ||
        (PyObject *)Py_TYPE(e[E_ENVELOPE]) != self->envelope_type ||
        read_slots(e[E_ENVELOPE], self->envelope_off, V_COUNT, v) < 0 ||
        (PyObject *)Py_TYPE(v[V_CONN]) != self->conn_type ||
        read_slots(v[V_CONN], self->conn_off, C_COUNT, c) < 0 ||
        read_slots(ids, self->ids_off, I_COUNT, d) < 0)
        return hand_on(self, args);
    PyObject *conn = v[V_CONN], *protocol = v[V_PROTOCOL], *ts = v[V_TS];
    PyObject *fields = e[E_FIELDS], *action = e[E_ACTION];
    if (!PyDict_CheckExact(fields) || !PyTuple_CheckExact(e[E_ANOMALIES]) ||
        PyTuple_GET_SIZE(e[E_ANOMALIES]) != 0 || !PyUnicode_CheckExact(protocol) ||
        !PyUnicode_CheckExact(action) || !PyLong_CheckExact(ts))
        return hand_on(self, args);
    /* the record: a plain dict without the members the line appends (these lookups and the
     * serialisation may run Python code: done before any cached piece is borrowed) */
    int has = PyDict_Contains(fields, self->s_direction);
    if (has == 0)
        has = PyDict_Contains(fields, self->s_anomalies);
    if (has != 0)
        return has < 0 ? NULL : hand_on(self, args);
    /* _DIRECTIONS[direction]: its members by identity first (an Enum hashes in Python) */
    PyObject *direction = NULL;
    for (int i = 0; i < self->n_known; i++) {
        if (self->known_direction[i] == v[V_DIRECTION]) {
            direction = self->known_piece[i];
            break;
        }
    }
    if (direction == NULL) {
        direction = PyDict_GetItemWithError(self->directions, v[V_DIRECTION]);
        if (direction == NULL || !PyBytes_CheckExact(direction))
            return PyErr_Occurred() ? NULL : hand_on(self, args);
    }
    Py_INCREF(direction);
    /* event.created: now_iso()'s text for the wall clock's millisecond and its member, brought
     * up to date by the Python side when the millisecond moved on */
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
        Py_DECREF(direction);
        return hand_on(self, args);
    }
    long long now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    PyObject *cached_ms = PyList_GET_ITEM(self->now, 0);
    int overflow = 0;
    if (!PyLong_CheckExact(cached_ms) ||
        PyLong_AsLongLongAndOverflow(cached_ms, &overflow) != now_ms || overflow) {
        PyObject *r = PyObject_CallNoArgs(self->refresh);
        if (r == NULL) {
            Py_DECREF(direction);
            return NULL;
        }
        Py_DECREF(r);
    }
    PyObject *record = NULL;
    const char *record_start = "{";
    Py_ssize_t record_len = 1, direction_skip = 0;
    if (PyDict_GET_SIZE(fields)) {
        PyObject *call[2] = {fields, (PyObject *)&PyUnicode_Type};
        record = PyObject_Vectorcall(self->dumps, call, 1, self->default_kw);
        if (record == NULL) {
            Py_DECREF(direction);
            return NULL;
        }
        if (!PyBytes_CheckExact(record) || PyBytes_GET_SIZE(record) < 2) {
            Py_DECREF(record);
            Py_DECREF(direction);
            PyErr_SetString(PyExc_TypeError, "orjson.dumps gave no JSON object");
            return NULL;
        }
        record_start = PyBytes_AS_STRING(record);
        record_len = PyBytes_GET_SIZE(record) - 1; /* its members: the closing brace goes */
    }
    else
        direction_skip = 1; /* no member before the direction: its comma goes */
    /* from here on only dicts with exact int and str keys are read: no Python code runs, and
     * the borrowed pieces stay alive until the line is made */
    PyObject *line = NULL;
    int taken = 0;
    do {
        /* the flow's pieces: _FLOW_LINES[id(conn)] = (conn, protocol, observer, (flow, heads)) */
        PyObject *conn_id = PyLong_FromVoidPtr(conn);
        if (conn_id == NULL)
            break;
        PyObject *hit = PyDict_GetItemWithError(self->flow_lines, conn_id);
        Py_DECREF(conn_id);
        if (hit == NULL || !PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 4 ||
            PyTuple_GET_ITEM(hit, 0) != conn || PyTuple_GET_ITEM(hit, 2) != observer)
            goto miss;
        PyObject *hit_protocol = PyTuple_GET_ITEM(hit, 1), *pieces = PyTuple_GET_ITEM(hit, 3);
        if (hit_protocol != protocol && (!PyUnicode_CheckExact(hit_protocol) ||
                                         PyUnicode_Compare(hit_protocol, protocol) != 0))
            goto miss;
        if (!PyTuple_CheckExact(pieces) || PyTuple_GET_SIZE(pieces) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(pieces, 0)) ||
            !PyDict_CheckExact(PyTuple_GET_ITEM(pieces, 1)))
            goto miss;
        PyObject *flow = PyTuple_GET_ITEM(pieces, 0);
        PyObject *head = PyDict_GetItemWithError(PyTuple_GET_ITEM(pieces, 1), action);
        if (head == NULL || !PyBytes_CheckExact(head))
            goto miss;
        /* the timestamp: the second's start of line, then milliseconds and microseconds */
        long long t = PyLong_AsLongLongAndOverflow(ts, &overflow);
        if (overflow || t < 0)
            goto miss;
        long long ns = t % 1000000000LL;
        PyObject *secs = PyLong_FromLongLong(t / 1000000000LL);
        if (secs == NULL)
            break;
        PyObject *start = PyDict_GetItemWithError(self->line_seconds, secs);
        Py_DECREF(secs);
        if (start == NULL || !PyBytes_CheckExact(start))
            goto miss;
        PyObject *ms_digits = PyList_GET_ITEM(self->digits, ns / 1000000);
        PyObject *us_digits = PyList_GET_ITEM(self->digits, ns / 1000 % 1000);
        PyObject *text = PyList_GET_ITEM(self->now, 1);
        PyObject *created = PyDict_GetItemWithError(self->module_dict, self->s_created);
        if (created == NULL || !PyTuple_CheckExact(created) || PyTuple_GET_SIZE(created) != 2 ||
            PyTuple_GET_ITEM(created, 0) != text ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(created, 1)))
            goto miss;
        PyObject *created_member = PyTuple_GET_ITEM(created, 1);
        /* the outcome's member (cached per text) and the duration's */
        PyObject *outcome = e[E_OUTCOME], *outcome_piece = NULL;
        if (outcome != Py_None) {
            if (!PyUnicode_CheckExact(outcome))
                goto miss;
            if (PyUnicode_GET_LENGTH(outcome) != 0) {
                outcome_piece = PyDict_GetItemWithError(self->outcomes, outcome);
                if (outcome_piece == NULL || !PyBytes_CheckExact(outcome_piece))
                    goto miss;
            }
        }
        char duration[40];
        int duration_len = 0;
        PyObject *dur = e[E_DURATION];
        if (dur != Py_None) {
            if (!PyLong_CheckExact(dur))
                goto miss;
            long long dn = PyLong_AsLongLongAndOverflow(dur, &overflow);
            if (overflow)
                goto miss;
            memcpy(duration, ",\"duration\":", 12);
            duration_len = 12 + put_int(duration + 12, dn);
        }
        /* the id's hashed name: its start per kind (DocumentIds._heads), then flow|ts|number */
        PyObject *id_head = PyDict_GetItemWithError(d[I_HEADS], self->s_event);
        if (id_head == NULL || !PyBytes_CheckExact(id_head) || !PyLong_CheckExact(d[I_N]) ||
            !PyUnicode_CheckExact(c[C_COMMUNITY_ID]))
            goto miss;
        long long number = PyLong_AsLongLongAndOverflow(d[I_N], &overflow);
        if (overflow || number < 0 || number == LLONG_MAX)
            goto miss;
        Py_ssize_t flow_id_len;
        const char *flow_id = PyUnicode_AsUTF8AndSize(c[C_COMMUNITY_ID], &flow_id_len);
        if (flow_id == NULL)
            break;
        if (flow_id_len > 64)
            goto miss;
        char name[128]; /* flow|ts|number */
        memcpy(name, flow_id, (size_t)flow_id_len);
        int name_len = (int)flow_id_len;
        name[name_len++] = '|';
        name_len += put_int(name + name_len, t);
        name[name_len++] = '|';
        name_len += put_int(name + name_len, number + 1);
        PyObject *n_obj = PyLong_FromLongLong(number + 1);
        if (n_obj == NULL)
            break;
        char id_text[36];
        otsentry_uuid5_text((const unsigned char *)PyBytes_AS_STRING(id_head),
                            (size_t)PyBytes_GET_SIZE(id_head), (const unsigned char *)name,
                            (size_t)name_len, id_text);
        PyObject **n_slot = (PyObject **)((char *)ids + self->ids_off[I_N]);
        PyObject *old_n = *n_slot;
        *n_slot = n_obj; /* the document takes its number */
        /* the line */
        struct {
            const char *p;
            Py_ssize_t n;
        } parts[] = {
            {BYTES(start)},
            {BYTES(ms_digits)},
            {BYTES(us_digits)},
            {BYTES(self->after_ts)},
            {BYTES(head)},
            {id_text, 36},
            {BYTES(created_member)},
            {outcome_piece ? PyBytes_AS_STRING(outcome_piece) : "",
             outcome_piece ? PyBytes_GET_SIZE(outcome_piece) : 0},
            {duration, duration_len},
            {BYTES(flow)},
            {record_start, record_len},
            {PyBytes_AS_STRING(direction) + direction_skip,
             PyBytes_GET_SIZE(direction) - direction_skip},
            {"}}}\n", 4},
        };
        Py_ssize_t total = 0;
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            total += parts[i].n;
        line = PyBytes_FromStringAndSize(NULL, total);
        if (line != NULL) {
            char *out = PyBytes_AS_STRING(line);
            for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
                memcpy(out, parts[i].p, (size_t)parts[i].n);
                out += parts[i].n;
            }
            taken = 1;
        }
        Py_DECREF(old_n);
        break;
    miss:
        if (!PyErr_Occurred())
            taken = -1;
    } while (0);
    Py_XDECREF(record);
    Py_DECREF(direction);
    if (taken < 0)
        return hand_on(self, args);
    if (taken)
        self->fast++;
    return line;
}

static int get_into(PyObject *kwds, const char *name, PyObject **slot)
{
    PyObject *value = PyDict_GetItemString(kwds, name);
    if (value == NULL) {
        PyErr_Format(PyExc_TypeError, "EventLines needs %s", name);
        return -1;
    }
    Py_XSETREF(*slot, Py_NewRef(value));
    return 0;
}

static int eventlines_init(EventLines *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || kwds == NULL) {
        PyErr_SetString(PyExc_TypeError, "EventLines takes keyword arguments only");
        return -1;
    }
    if (get_into(kwds, "fallback", &self->fallback) < 0 ||
        get_into(kwds, "refresh", &self->refresh) < 0 ||
        get_into(kwds, "module_dict", &self->module_dict) < 0 ||
        get_into(kwds, "now", &self->now) < 0 ||
        get_into(kwds, "flow_lines", &self->flow_lines) < 0 ||
        get_into(kwds, "line_seconds", &self->line_seconds) < 0 ||
        get_into(kwds, "directions", &self->directions) < 0 ||
        get_into(kwds, "outcomes", &self->outcomes) < 0 ||
        get_into(kwds, "digits", &self->digits) < 0 ||
        get_into(kwds, "after_timestamp", &self->after_ts) < 0 ||
        get_into(kwds, "dumps", &self->dumps) < 0 ||
        get_into(kwds, "event_type", &self->event_type) < 0 ||
        get_into(kwds, "envelope_type", &self->envelope_type) < 0 ||
        get_into(kwds, "conn_type", &self->conn_type) < 0 ||
        get_into(kwds, "ids_type", &self->ids_type) < 0)
        return -1;
    if (!PyDict_CheckExact(self->module_dict) || !PyList_CheckExact(self->now) ||
        PyList_GET_SIZE(self->now) != 2 || !PyDict_CheckExact(self->flow_lines) ||
        !PyDict_CheckExact(self->line_seconds) || !PyDict_CheckExact(self->directions) ||
        !PyDict_CheckExact(self->outcomes) || !PyList_CheckExact(self->digits) ||
        PyList_GET_SIZE(self->digits) != 1000 || !PyBytes_CheckExact(self->after_ts) ||
        !PyType_Check(self->event_type) || !PyType_Check(self->envelope_type) ||
        !PyType_Check(self->conn_type) || !PyType_Check(self->ids_type)) {
        PyErr_SetString(PyExc_TypeError, "EventLines: a cache or class of the wrong kind");
        return -1;
    }
    for (Py_ssize_t i = 0; i < 1000; i++) {
        if (!PyBytes_CheckExact(PyList_GET_ITEM(self->digits, i))) {
            PyErr_SetString(PyExc_TypeError, "EventLines: digits must be bytes");
            return -1;
        }
    }
    if (otsentry_slot_offsets((PyTypeObject *)self->event_type, event_slots, E_COUNT,
                              self->event_off) < 0 ||
        otsentry_slot_offsets((PyTypeObject *)self->envelope_type, envelope_slots, V_COUNT,
                              self->envelope_off) < 0 ||
        otsentry_slot_offsets((PyTypeObject *)self->conn_type, conn_slots, C_COUNT,
                              self->conn_off) < 0 ||
        otsentry_slot_offsets((PyTypeObject *)self->ids_type, ids_slots, I_COUNT, self->ids_off) <
            0)
        return -1;
    for (int i = 0; i < self->n_known; i++) {
        Py_CLEAR(self->known_direction[i]);
        Py_CLEAR(self->known_piece[i]);
    }
    self->n_known = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (self->n_known < 8 && PyDict_Next(self->directions, &pos, &key, &value)) {
        if (!PyBytes_CheckExact(value))
            continue;
        self->known_direction[self->n_known] = Py_NewRef(key);
        self->known_piece[self->n_known++] = Py_NewRef(value);
    }
    Py_XSETREF(self->s_created, PyUnicode_InternFromString("_CREATED"));
    Py_XSETREF(self->s_event, PyUnicode_InternFromString("event"));
    Py_XSETREF(self->s_direction, PyUnicode_InternFromString("direction"));
    Py_XSETREF(self->s_anomalies, PyUnicode_InternFromString("anomalies"));
    /* orjson tells its keywords by identity: the interned name */
    PyObject *default_name = PyUnicode_InternFromString("default");
    Py_XSETREF(self->default_kw, default_name ? PyTuple_Pack(1, default_name) : NULL);
    Py_XDECREF(default_name);
    if (self->s_created == NULL || self->s_event == NULL || self->s_direction == NULL ||
        self->s_anomalies == NULL || self->default_kw == NULL)
        return -1;
    self->vectorcall = eventlines_vectorcall;
    return 0;
}

static int eventlines_traverse(EventLines *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->refresh);
    Py_VISIT(self->module_dict);
    Py_VISIT(self->now);
    Py_VISIT(self->flow_lines);
    Py_VISIT(self->line_seconds);
    Py_VISIT(self->directions);
    Py_VISIT(self->outcomes);
    Py_VISIT(self->digits);
    Py_VISIT(self->dumps);
    Py_VISIT(self->event_type);
    Py_VISIT(self->envelope_type);
    Py_VISIT(self->conn_type);
    Py_VISIT(self->ids_type);
    for (int i = 0; i < self->n_known; i++) {
        Py_VISIT(self->known_direction[i]);
        Py_VISIT(self->known_piece[i]);
    }
    return 0;
}

static int eventlines_clear(EventLines *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->refresh);
    Py_CLEAR(self->module_dict);
    Py_CLEAR(self->now);
    Py_CLEAR(self->flow_lines);
    Py_CLEAR(self->line_seconds);
    Py_CLEAR(self->directions);
    Py_CLEAR(self->outcomes);
    Py_CLEAR(self->digits);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->event_type);
    Py_CLEAR(self->envelope_type);
    Py_CLEAR(self->conn_type);
    Py_CLEAR(self->ids_type);
    for (int i = 0; i < self->n_known; i++) {
        Py_CLEAR(self->known_direction[i]);
        Py_CLEAR(self->known_piece[i]);
    }
    self->n_known = 0;
    return 0;
}

static void eventlines_dealloc(EventLines *self)
{
    PyObject_GC_UnTrack(self);
    eventlines_clear(self);
    Py_CLEAR(self->after_ts);
    Py_CLEAR(self->s_created);
    Py_CLEAR(self->s_event);
    Py_CLEAR(self->s_direction);
    Py_CLEAR(self->s_anomalies);
    Py_CLEAR(self->default_kw);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef eventlines_members[] = {
    {"fast", T_PYSSIZET, offsetof(EventLines, fast), READONLY, "lines made here"},
    {"handed_on", T_PYSSIZET, offsetof(EventLines, handed_on), READONLY,
     "events handed to the Python function"},
    {NULL},
};

PyDoc_STRVAR(eventlines_doc,
    "EventLines(*, fallback, refresh, module_dict, now, flow_lines, line_seconds, directions, outcomes, "
    "digits, after_timestamp, dumps, event_type, envelope_type, conn_type, ids_type)\n\n"
    "A callable doing fallback(event, observer, ids) (ecs.event_line): the commonest event's "
    "line made here from the function's caches, any other handed to it.");

static PyTypeObject EventLinesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otsentry._speedups.EventLines",
    .tp_basicsize = sizeof(EventLines),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = eventlines_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)eventlines_init,
    .tp_dealloc = (destructor)eventlines_dealloc,
    .tp_traverse = (traverseproc)eventlines_traverse,
    .tp_clear = (inquiry)eventlines_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(EventLines, vectorcall),
    .tp_members = eventlines_members,
};

int otsentry_add_eventlines(PyObject *module)
{
    if (PyType_Ready(&EventLinesType) < 0)
        return -1;
    Py_INCREF(&EventLinesType);
    if (PyModule_AddObject(module, "EventLines", (PyObject *)&EventLinesType) < 0) {
        Py_DECREF(&EventLinesType);
        return -1;
    }
    return 0;
}
