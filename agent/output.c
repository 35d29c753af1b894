#include "output.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "diag.h"
#include "util.h"

#define COMPLAIN_US (300 * 1000000LL)
#define STATUS_EVERY_US (10 * 1000000LL) /* a success is recorded at most this often */
#define PLAN_RETRY_MS 200

static const char *const permanent_values[] = {"skip", "stop", NULL};
static const char *const readings_values[] = {"all", "raw", "derived", NULL};

static const struct mittari_option match_options[] = {
    {.name = "series", .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct mt_match_item, series),
     .help = "Glob over site/device/metric, e.g. 'kuusamo-*/*/visitors_*' (default: any)."},
    {.name = "tags", .type = MITTARI_OPT_STRING, .offset = offsetof(struct mt_match_item, tags),
     .help = "key=glob pairs separated by commas; every one must match (default: any)."},
    {.name = "readings", .type = MITTARI_OPT_ENUM, .def = "all", .values = readings_values,
     .offset = offsetof(struct mt_match_item, readings),
     .help = "raw: from inputs; derived: a rule's figures; all: both."},
    {0},
};

const struct mittari_option mt_output_common_options[] = {
    {.name = "batch_size", .type = MITTARI_OPT_INT, .def = "1000", .min = 1, .max = 100000,
     .offset = offsetof(struct mt_output_common, batch_size),
     .help = "Most readings sent in one batch."},
    {.name = "batch_wait", .type = MITTARI_OPT_DURATION, .def = "0s", .min = 0, .max = 3600000,
     .offset = offsetof(struct mt_output_common, batch_wait_ms),
     .help = "Longest a batch waits to fill up to batch_size before it is sent (0: send what "
             "is there)."},
    {.name = "retry_min", .type = MITTARI_OPT_DURATION, .def = "1s", .min = 10, .max = 3600000,
     .offset = offsetof(struct mt_output_common, retry_min_ms),
     .help = "First wait after a failed delivery; doubles on each failure."},
    {.name = "retry_max", .type = MITTARI_OPT_DURATION, .def = "5m", .min = 10, .max = 86400000,
     .offset = offsetof(struct mt_output_common, retry_max_ms),
     .help = "Longest wait between retries."},
    {.name = "on_permanent_error", .type = MITTARI_OPT_ENUM, .def = "skip",
     .values = permanent_values, .offset = offsetof(struct mt_output_common, on_permanent_error),
     .help = "A batch the destination refuses for good is parked; then skip it and go on, or "
             "stop this output until a restart or reload."},
    {.name = "match", .type = MITTARI_OPT_LIST, .min = 0, .max = 64, .sub = match_options,
     .sub_size = sizeof(struct mt_match_item),
     .offset = offsetof(struct mt_output_common, match),
     .help = "Readings this output takes: a list of {series, tags, readings}; a reading passes "
             "when it passes any item (default: every reading)."},
    {0},
};

/* http, mqtt and postgresql are modules (outmod.h) */
const struct mt_output_type *const mt_output_types[] = {&mt_output_file, NULL};

const struct mt_output_type *mt_output_type_find(const char *name)
{
    for (size_t i = 0; mt_output_types[i]; i++)
        if (strcmp(mt_output_types[i]->name, name) == 0)
            return mt_output_types[i];
    return NULL;
}

/* ---- match ---- */

struct mt_matcher {
    const struct mittari_list *list;
    uint8_t *known; /* per series id: 0 unknown, 1 no, 2 yes (series part only) */
    size_t nknown;
    uint64_t hash;
};

/* Next "key=glob" of a tag list into key/glob; false at the end. */
static bool next_tag(const char **p, char *key, size_t klen, char *glob, size_t glen)
{
    const char *s = *p;
    while (*s == ',' || *s == ' ')
        s++;
    if (!*s)
        return false;
    const char *eq = strchr(s, '='), *end = strchr(s, ',');
    if (!end)
        end = s + strlen(s);
    if (!eq || eq > end)
        eq = end;
    snprintf(key, klen, "%.*s", (int)(eq - s), s);
    snprintf(glob, glen, "%.*s", eq < end ? (int)(end - eq - 1) : 0, eq < end ? eq + 1 : "");
    *p = end;
    return true;
}

/* The value of key in a canonical JSON object of string values (the agent
 * builds it: {"k":"v",...}), unescaped into out; false when absent. */
static bool tag_value(const char *json, const char *key, char *out, size_t outlen)
{
    const char *p = json;
    char k[128];

    if (!p || *p != '{')
        return false;
    p++;
    while (*p == '"') {
        for (int field = 0; field < 2; field++) {
            char *dst = field ? out : k;
            size_t cap = field ? outlen : sizeof(k), n = 0;
            if (*p != '"')
                return false;
            for (p++; *p && *p != '"'; p++) {
                char c = *p;
                if (c == '\\' && p[1])
                    c = *++p; /* \" \\ \/; \uXXXX stays as written */
                if (n + 1 < cap)
                    dst[n++] = c;
            }
            dst[n] = 0;
            if (*p != '"')
                return false;
            p++;
            if (field == 0) {
                if (*p != ':')
                    return false;
                p++;
            }
        }
        if (strcmp(k, key) == 0)
            return true;
        if (*p == ',')
            p++;
    }
    return false;
}

static bool item_series(const struct mt_match_item *it, const struct mt_series_info *s)
{
    if (it->series) {
        char name[512];
        snprintf(name, sizeof(name), "%s/%s/%s", s->site, s->device, s->metric);
        if (fnmatch(it->series, name, 0) != 0)
            return false;
    }
    const char *t = it->tags;
    char key[128], glob[256], val[256];
    while (t && next_tag(&t, key, sizeof(key), glob, sizeof(glob)))
        if (!tag_value(s->tags, key, val, sizeof(val)) || fnmatch(glob, val, 0) != 0)
            return false;
    return true;
}

int mt_output_common_check(const struct mt_output_common *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->match.n; i++) {
        const struct mt_match_item *it = MITTARI_LIST_ITEM(&c->match, struct mt_match_item, i);
        const char *t = it->tags;
        char key[128], glob[256];
        while (t && next_tag(&t, key, sizeof(key), glob, sizeof(glob))) {
            if (!key[0] || !strchr(it->tags, '=')) {
                snprintf(err, errlen, "match item %zu: tags are key=glob pairs separated by "
                         "commas, e.g. 'theme=culture,zone=*'", i + 1);
                return -EINVAL;
            }
        }
        if (it->series && !*it->series) {
            snprintf(err, errlen, "match item %zu: series is empty (leave it out for any)", i + 1);
            return -EINVAL;
        }
    }
    return 0;
}

int mt_matcher_new(struct mt_matcher **out, const struct mittari_list *match)
{
    struct mt_matcher *m = calloc(1, sizeof(*m));
    uint64_t h = MT_HASH_INIT;

    *out = NULL;
    if (!m)
        return -ENOMEM;
    m->list = match;
    for (size_t i = 0; i < match->n; i++) {
        const struct mt_match_item *it = MITTARI_LIST_ITEM(match, struct mt_match_item, i);
        const char *s = it->series ? it->series : "\x01", *t = it->tags ? it->tags : "\x01";
        h = mt_hash_bytes(h, s, strlen(s) + 1);
        h = mt_hash_bytes(h, t, strlen(t) + 1);
        h = mt_hash_bytes(h, &it->readings, sizeof(it->readings));
    }
    m->hash = match->n ? h : 0;
    *out = m;
    return 0;
}

void mt_matcher_free(struct mt_matcher *m)
{
    if (!m)
        return;
    free(m->known);
    free(m);
}

uint64_t mt_matcher_hash(const struct mt_matcher *m)
{
    return m->hash;
}

bool mt_matcher_row(struct mt_matcher *m, const struct mt_series_reg *reg, const struct mt_row *r)
{
    if (m->list->n == 0)
        return true;
    if (r->series >= m->nknown) {
        size_t n = m->nknown ? m->nknown : 64;
        while (n <= r->series)
            n *= 2;
        uint8_t *k = realloc(m->known, n);
        if (!k)
            return true; /* out of memory: deliver rather than lose */
        memset(k + m->nknown, 0, n - m->nknown);
        m->known = k;
        m->nknown = n;
    }
    const struct mt_series_info *s = mt_series_get(reg, r->series);
    bool any = false;
    for (size_t i = 0; i < m->list->n && !any; i++) {
        const struct mt_match_item *it = MITTARI_LIST_ITEM(m->list, struct mt_match_item, i);
        if (it->readings == MT_MATCH_RAW && r->derived)
            continue;
        if (it->readings == MT_MATCH_DERIVED && !r->derived)
            continue;
        if (!s)
            continue;
        /* the series part is cached per id; items that differ only in
         * raw/derived share it through the loop above */
        if (it->readings == MT_MATCH_ALL && m->known[r->series])
            any = m->known[r->series] == 2;
        else
            any = item_series(it, s);
    }
    if (s && m->list->n == 1 &&
        MITTARI_LIST_ITEM(m->list, struct mt_match_item, 0)->readings == MT_MATCH_ALL)
        m->known[r->series] = any ? 2 : 1;
    return any;
}

/* ---- status record ---- */

int mt_output_status_parse(const void *blob, size_t len, struct mt_output_status *st)
{
    char *t = malloc(len + 1);
    *st = (struct mt_output_status){0};
    if (!t)
        return -ENOMEM;
    memcpy(t, blob, len);
    t[len] = 0;
    for (char *line = t, *nl; line && *line; line = nl) {
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        const char *v = eq + 1;
        long long n = strtoll(v, NULL, 10);
        if (strcmp(line, "plan_start") == 0)
            st->plan_start = n;
        else if (strcmp(line, "plan_end") == 0)
            st->plan_end = n;
        else if (strcmp(line, "plan_size") == 0)
            st->plan_size = n;
        else if (strcmp(line, "plan_match") == 0)
            st->plan_match = strtoull(v, NULL, 16);
        else if (strcmp(line, "ok_at") == 0)
            st->ok_at = n;
        else if (strcmp(line, "err_at") == 0)
            st->err_at = n;
        else if (strcmp(line, "stopped") == 0)
            st->stopped = n != 0;
        else if (strcmp(line, "error") == 0)
            snprintf(st->error, sizeof(st->error), "%s", v);
    }
    free(t);
    return 0;
}

char *mt_output_status_format(const struct mt_output_status *st, size_t *len)
{
    struct mt_buf b = {0};
    char err[sizeof(st->error)];
    /* one line per field: no newline inside the error text */
    snprintf(err, sizeof(err), "%s", st->error);
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (mt_buf_printf(&b,
                      "plan_start=%" PRId64 "\nplan_end=%" PRId64 "\nplan_size=%" PRId64 "\nplan_match=%016" PRIx64
                      "\nok_at=%" PRId64 "\nerr_at=%" PRId64 "\nstopped=%d\nerror=%s\n",
                      st->plan_start, st->plan_end, st->plan_size, st->plan_match, st->ok_at, st->err_at,
                      st->stopped ? 1 : 0, err)) {
        mt_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ---- the instance ---- */

/* Three slots: while the sender has one batch, the encoder (asynchronous
 * types) makes the next one's payload on a worker and the reader reads the
 * one after on another, so that SQLite's reading (about 0.2 us a row) and
 * the encoding overlap instead of adding up. */
#define NSLOTS 3

/* One batch: read by the reader on a worker, encoded by the encoder on a
 * worker (asynchronous types), sent by the sender. In seq order: reader,
 * encoder and sender each take the first slot that waits for them. */
struct slot {
    struct mt_row *rows;
    size_t n;
    int64_t end;  /* the cursor once it is acknowledged (or skipped) */
    uint64_t lost; /* readings missing from the log in its range (the cap) */
    int64_t lost_first, lost_last;
    char key[200];
    struct mt_batch b;
    void *payload;
    void *spare; /* the payload of the slot's last batch, for encode() to fill again */
    int enc_rc; /* encode() failed: permanent */
    struct mt_deliver_result enc_res;
    bool to_encode; /* read, waiting for the encoder */
    bool ready;     /* can be sent (encoded, or a blocking type's) */
};

struct mt_output {
    struct mt_output_env env;
    char *name;
    char module[96];
    const struct mt_output_type *type;
    const struct mt_output_common *common;
    struct mt_output_ctx ctx;
    void *state;
    struct mt_logdb *rdb; /* used by one worker job at a time */
    struct mt_matcher *matcher;
    bool async, stable, replay;

    enum mt_output_state st;
    enum mt_reader_state rst;
    enum mt_sender_state sst;

    int64_t cursor;    /* delivered through (in memory) */
    int64_t committed; /* highest seq committed to the log */
    int64_t read_pos;  /* the reader goes on after this */
    int64_t gen;
    int64_t resume_after;
    bool flushing;
    bool close_started;
    uint64_t wait_until; /* uv_now() when batch_wait ends; 0 = not waiting */
    unsigned attempts, open_attempts;

    /* the plan (stable keys): batches from plan_start are cut up to plan_end */
    int64_t plan_start, plan_end;
    int64_t plan_ticket; /* > 0: waiting for this step to be durable */
    struct mt_output_status status;
    int64_t status_saved_us;

    /* worker jobs: one reader job (open or read), one encode job, one
     * deliver job */
    uv_work_t rwork, ework, swork;
    bool rjob, ejob, sjob;
    bool opened_ok, open_loaded;
    int open_rc;
    struct mt_deliver_result open_res;
    int64_t have_seq, have_raw, start_cursor;
    bool known;
    int64_t read_bound;
    int read_rc;
    char read_err[256];

    struct slot slots[NSLOTS];
    int send_slot, read_slot, enc_slot; /* indexes; -1 none */
    struct mt_send send;
    int send_rc;

    uv_timer_t retry_timer, wait_timer;
    int handles_open;

    struct mt_output_stats stats;
    struct mt_complain c_fail, c_lost;
    void (*closed_cb)(void *arg, int64_t cursor);
    void *closed_arg;
};

static void kick(struct mt_output *o);
static void maybe_finish_close(struct mt_output *o);
static struct slot *last_held(struct mt_output *o);

const char *mt_output_name(const struct mt_output *o)
{
    return o->name;
}

int64_t mt_output_cursor(const struct mt_output *o)
{
    return o->cursor;
}

enum mt_output_state mt_output_state(const struct mt_output *o)
{
    return o->st;
}

const struct mt_output_stats *mt_output_stats(const struct mt_output *o)
{
    return &o->stats;
}

const struct mt_output_status *mt_output_last(const struct mt_output *o)
{
    return &o->status;
}

bool mt_output_busy(const struct mt_output *o)
{
    return o->rjob || o->ejob || o->sjob || o->sst == MT_S_BUSY;
}

bool mt_output_sending(const struct mt_output *o)
{
    return o->sst == MT_S_BUSY;
}

bool mt_output_drained(const struct mt_output *o)
{
    if (o->st == MT_OUT_STOPPED)
        return !mt_output_busy(o);
    return !mt_output_busy(o) && o->cursor >= o->committed;
}

int mt_output_create(struct mt_output **out, const struct mt_output_env *env, const char *name,
                     const struct mt_output_type *type, const void *conf,
                     const struct mt_output_common *common, char *err, size_t errlen)
{
    struct mt_output *o = calloc(1, sizeof(*o));
    int rc = -ENOMEM;

    *out = NULL;
    if (!o)
        return -ENOMEM;
    o->env = *env;
    o->name = strdup(name);
    o->type = type;
    o->common = common;
    o->async = type->flags & MT_OUTPUT_ASYNC;
    o->replay = env->writer == NULL;
    o->stable = (type->flags & MT_OUTPUT_STABLE_KEYS) && !o->replay;
    o->send_slot = o->read_slot = o->enc_slot = -1;
    snprintf(o->module, sizeof(o->module), "output %s[%s]", type->name, name);
    if (!o->name)
        goto fail;
    for (int i = 0; i < NSLOTS; i++) {
        o->slots[i].rows = calloc((size_t)common->batch_size, sizeof(struct mt_row));
        if (!o->slots[i].rows)
            goto fail;
    }
    rc = mt_output_common_check(common, err, errlen);
    if (!rc)
        rc = mt_matcher_new(&o->matcher, &common->match);
    if (!rc && type->check)
        rc = type->check(conf, err, errlen);
    if (rc)
        goto fail;
    o->ctx = (struct mt_output_ctx){env->loop, o->name, env->agent_id, o->module};
    rc = type->create(conf, &o->ctx, &o->state, err, errlen);
    if (rc)
        goto fail;
    uv_timer_init(env->loop, &o->retry_timer);
    uv_timer_init(env->loop, &o->wait_timer);
    o->retry_timer.data = o->wait_timer.data = o;
    o->handles_open = 2;
    o->rwork.data = o->ework.data = o->swork.data = o;
    *out = o;
    return 0;
fail:
    mt_matcher_free(o->matcher);
    for (int i = 0; i < NSLOTS; i++)
        free(o->slots[i].rows);
    free(o->name);
    free(o);
    return rc;
}

void mt_output_resume_after(struct mt_output *o, int64_t seq)
{
    o->resume_after = seq;
}

/* ---- helpers (loop) ---- */

static const char *errtext(int rc, const struct mt_deliver_result *res)
{
    if (res->error[0])
        return res->error;
    const char *own = mittari_strerror_own(rc);
    return own ? own : strerror(rc < 0 ? -rc : rc);
}

static void advance(struct mt_output *o, int64_t seq)
{
    if (seq <= o->cursor)
        return;
    o->cursor = seq;
    if (o->read_pos < seq)
        o->read_pos = seq;
    if (o->env.writer)
        mt_writer_cursor(o->env.writer, o->name, seq);
}

/* The status (and the plan) go to the log as the output's consumer state,
 * in one step with its cursor. Returns the step's ticket (0: not written). */
static int64_t save_status(struct mt_output *o)
{
    size_t len = 0;
    int64_t ticket = 0;

    if (!o->env.writer)
        return 0;
    o->status.plan_start = o->stable ? o->plan_start : 0;
    o->status.plan_end = o->stable ? o->plan_end : 0;
    o->status.plan_size = o->common->batch_size;
    o->status.plan_match = mt_matcher_hash(o->matcher);
    char *blob = mt_output_status_format(&o->status, &len);
    if (!blob)
        return 0;
    struct mt_consumer_step s = {.name = o->name, .cursor = o->cursor,
                                 .state_version = MT_OUTPUT_STATUS_VERSION, .state = blob,
                                 .state_len = len};
    if (mt_writer_step(o->env.writer, &s, &ticket) == 0)
        o->status_saved_us = mt_mono_us();
    else
        ticket = 0;
    free(blob);
    return ticket;
}

static void note_error(struct mt_output *o, const char *what)
{
    bool changed = strcmp(o->status.error, what) != 0 || o->status.err_at <= o->status.ok_at;
    snprintf(o->status.error, sizeof(o->status.error), "%s", what);
    o->status.err_at = mt_now_us();
    if (changed || mt_mono_us() - o->status_saved_us > STATUS_EVERY_US)
        save_status(o);
}

static void note_ok(struct mt_output *o)
{
    bool recovered = o->status.err_at > o->status.ok_at;
    o->status.ok_at = mt_now_us();
    if (recovered || mt_mono_us() - o->status_saved_us > STATUS_EVERY_US)
        save_status(o);
}

static int64_t backoff_ms(struct mt_output *o, unsigned attempts, int64_t retry_after_ms)
{
    int64_t delay = o->common->retry_min_ms;
    uint32_t rnd = 0;

    for (unsigned i = 0; i < attempts && delay < o->common->retry_max_ms; i++)
        delay *= 2;
    if (delay > o->common->retry_max_ms)
        delay = o->common->retry_max_ms;
    /* jitter: somewhere in [delay/2, delay], so many gateways do not retry in step */
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        rnd = (uint32_t)mt_mono_us();
    delay = delay / 2 + (int64_t)(rnd % (uint32_t)(delay / 2 + 1));
    if (retry_after_ms > delay)
        delay = retry_after_ms; /* 429/503 Retry-After: the server said when */
    return delay;
}

/* The slot's payload is kept for its next batch (encode() fills it again). */
static void release_slot(struct mt_output *o, int i)
{
    struct slot *s = &o->slots[i];
    if (s->payload) {
        if (s->spare)
            o->type->free_payload(o->state, s->spare);
        s->spare = s->payload;
    }
    s->payload = NULL;
    s->to_encode = s->ready = false;
    s->n = 0;
}

/* ---- OPENING (worker, then loop) ---- */

static int load_status(struct mt_output *o)
{
    void *blob = NULL;
    size_t len = 0;
    int64_t version = 0;
    int rc = mt_log_get_state(o->rdb, o->name, &version, &blob, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    if (version == MT_OUTPUT_STATUS_VERSION && blob)
        mt_output_status_parse(blob, len, &o->status);
    free(blob);
    return 0;
}

/* Worker: a damaged log (SQLITE_CORRUPT/NOTADB) is the writer's to act on:
 * it stops writing and the agent stops with exit 4 (issue 8 §2), instead
 * of this output retrying forever. Replay has no writer: its error says it. */
static void report_damage(struct mt_output *o, int rc, const char *error)
{
    char what[400];
    if (rc != MITTARI_ESTORAGE || !o->env.writer)
        return;
    snprintf(what, sizeof(what), "output %s: %s", o->name, error);
    mt_writer_fault(o->env.writer, rc, what);
}

/* The reading connection, the durable cursor, the generation and the
 * output's status, once. */
static int load_cursor(struct mt_output *o)
{
    char err[sizeof(o->open_res.error)];
    int64_t seq = 0;
    int rc = o->rdb ? 0 : mt_log_open(&o->rdb, o->env.db_path, MT_LOG_READER, err, sizeof(err));

    if (rc) {
        snprintf(o->open_res.error, sizeof(o->open_res.error), "%s", err);
        report_damage(o, rc, o->open_res.error);
        return -EAGAIN;
    }
    if ((rc = mt_log_generation(o->rdb, &o->gen))) {
        snprintf(o->open_res.error, sizeof(o->open_res.error),
                 "cannot read the log's generation: %s", mt_log_errmsg(o->rdb));
        report_damage(o, rc, o->open_res.error);
        return -EAGAIN;
    }
    if (o->replay) {
        int64_t last = 0;
        if (mt_log_last_seq(o->rdb, &last)) {
            snprintf(o->open_res.error, sizeof(o->open_res.error), "cannot read the log: %s",
                     mt_log_errmsg(o->rdb));
            return -EAGAIN;
        }
        o->committed = last;
        o->start_cursor = 0;
        o->open_loaded = true;
        return 0;
    }
    rc = mt_log_get_cursor(o->rdb, o->name, &seq);
    if (rc && rc != -ENOENT) {
        snprintf(o->open_res.error, sizeof(o->open_res.error), "cannot read the cursor: %s",
                 mt_log_errmsg(o->rdb));
        report_damage(o, rc, o->open_res.error);
        return -EAGAIN;
    }
    o->known = rc == 0;
    if ((rc = load_status(o))) {
        snprintf(o->open_res.error, sizeof(o->open_res.error), "cannot read the output's state: %s",
                 mt_log_errmsg(o->rdb));
        report_damage(o, rc, o->open_res.error);
        return -EAGAIN;
    }
    o->start_cursor = seq > o->resume_after ? seq : o->resume_after;
    o->open_loaded = true;
    return 0;
}

/* What the destination holds counts only if it came from this log: a log
 * moved aside and started anew numbers from 1 again (with another
 * generation), and one that lost its last commits (sync: normal, power cut)
 * gives their numbers again. A destination written before generations
 * existed is checked by the reading's time: the reading with that seq must be
 * in this log with the same time, or, when retention already deleted it, the
 * log must know this output. */
static bool have_from_this_log(struct mt_output *o, const struct mt_have *have, int64_t last)
{
    struct mt_row row;
    size_t n = 0;

    if (have->seq > last)
        return false;
    if (have->gen)
        return have->gen == o->gen;
    if (mt_log_read(o->rdb, have->seq - 1, have->seq, 1, &row, &n) == 0 && n == 1)
        return have->ts != 0 && row.seq == have->seq && row.ts == have->ts;
    return o->known;
}

static void open_work(uv_work_t *req)
{
    struct mt_output *o = req->data;
    struct mt_have have = {0};
    int64_t last = 0;

    memset(&o->open_res, 0, sizeof(o->open_res));
    o->open_rc = 0;
    if (!o->open_loaded && (o->open_rc = load_cursor(o)))
        return;
    if (o->async || !o->type->open)
        return;
    o->open_rc = o->type->open(o->state, &have, &o->open_res);
    if (o->open_rc)
        return;
    o->have_seq = o->have_raw = have.seq;
    if (have.seq > 0) {
        if (mt_log_last_seq(o->rdb, &last) || !have_from_this_log(o, &have, last))
            o->have_seq = 0;
    }
}

static void retry_cb(uv_timer_t *t);

/* OPENING -> RUNNING: the cursor, the plan and what the destination holds. */
static void opened(struct mt_output *o)
{
    o->st = MT_OUT_RUNNING;
    o->cursor = o->read_pos = o->start_cursor;
    o->open_attempts = 0;
    if (o->env.writer) {
        /* registers the consumer so retention keeps what it has not delivered */
        mt_writer_cursor(o->env.writer, o->name, o->cursor);
        if (o->stable && o->status.plan_end > o->cursor &&
            o->status.plan_size == o->common->batch_size &&
            o->status.plan_match == mt_matcher_hash(o->matcher)) {
            /* the batches cut before a crash are cut the same way again */
            o->plan_start = o->status.plan_start;
            o->plan_end = o->status.plan_end;
        }
        mt_diag(MT_INFO, o->module,
                "starting after seq %" PRId64 " (%" PRId64 " readings waiting)", o->cursor,
                o->committed > o->cursor ? o->committed - o->cursor : 0);
    }
    if (o->status.stopped) {
        o->status.stopped = false;
        save_status(o);
    }
    if (o->have_raw && o->have_raw != o->have_seq)
        mt_diag(MT_WARNING, o->module,
                "destination holds readings through seq %" PRId64 " that are not this log's "
                "(a new log, or one that lost commits); appending this log's readings after them",
                o->have_raw);
    if (o->have_seq > o->cursor) {
        mt_diag(MT_NOTICE, o->module,
                "destination already holds readings through seq %" PRId64
                " (cursor was %" PRId64 "); not writing them again",
                o->have_seq, o->cursor);
        advance(o, o->have_seq);
    }
}

static void open_after(uv_work_t *req, int status)
{
    struct mt_output *o = req->data;

    (void)status;
    o->rjob = false;
    if (o->st == MT_OUT_CLOSING) {
        maybe_finish_close(o);
        return;
    }
    if (o->open_rc == 0) {
        opened(o);
        kick(o);
        return;
    }
    mt_complain(&o->c_fail, MT_WARNING, o->module, COMPLAIN_US, "cannot start, will retry: %s",
                errtext(o->open_rc, &o->open_res));
    note_error(o, errtext(o->open_rc, &o->open_res));
    o->st = MT_OUT_OPEN_BACKOFF;
    o->stats.retries++;
    uv_timer_start(&o->retry_timer, retry_cb,
                   (uint64_t)backoff_ms(o, o->open_attempts++, o->open_res.retry_after_ms), 0);
}

static void start_open(struct mt_output *o)
{
    o->st = MT_OUT_OPENING;
    o->rjob = true;
    int rc = uv_queue_work(o->env.loop, &o->rwork, open_work, open_after);
    if (rc) {
        o->rjob = false;
        mt_diag(MT_ERR, o->module, "cannot queue work: %s", uv_strerror(rc));
    }
}

void mt_output_start(struct mt_output *o)
{
    /* the database is opened and the cursor read by the first work on a
     * worker: the loop does no file I/O, also not at a reload */
    if (o->st != MT_OUT_NEW)
        return;
    if (o->env.writer)
        o->committed = mt_writer_committed(o->env.writer);
    start_open(o);
}

/* ---- the reader ---- */

/* Worker: fills the read slot with up to batch_size matching readings after
 * read_pos, up to read_bound. */
static void read_work(uv_work_t *req)
{
    struct mt_output *o = req->data;
    struct slot *s = &o->slots[o->read_slot];
    size_t max = (size_t)o->common->batch_size, n = 0;
    int64_t after = o->read_pos, bound = o->read_bound;

    o->read_rc = 0;
    s->n = 0;
    s->lost = 0;
    s->enc_rc = 0;
    memset(&s->enc_res, 0, sizeof(s->enc_res));
    while (n < max) {
        size_t got = 0;
        int rc = o->replay ? mt_log_scan(o->rdb, o->env.replay_since, o->env.replay_until, after,
                                         max - n, s->rows + n, &got)
                           : mt_log_read(o->rdb, after, bound, max - n, s->rows + n, &got);
        if (rc) {
            o->read_rc = -EAGAIN;
            snprintf(o->read_err, sizeof(o->read_err), "cannot read the log: %s",
                     mt_log_errmsg(o->rdb));
            report_damage(o, rc, o->read_err);
            return;
        }
        size_t keep = n;
        for (size_t i = n; i < n + got; i++) {
            const struct mt_row *r = &s->rows[i];
            if (!o->replay && r->seq > after + 1) {
                if (!s->lost)
                    s->lost_first = after + 1;
                s->lost += (uint64_t)(r->seq - after - 1);
                s->lost_last = r->seq - 1;
            }
            after = r->seq;
            if (mt_matcher_row(o->matcher, o->env.series, r)) {
                if (keep != i)
                    s->rows[keep] = *r;
                keep++;
            }
        }
        bool short_read = got < max - n;
        n = keep;
        if (got == 0 || short_read)
            break;
    }
    if (n == max) {
        s->end = s->rows[n - 1].seq;
    } else {
        if (!o->replay && after < bound) {
            /* the rest of the range is gone from the log (the cap) */
            if (!s->lost)
                s->lost_first = after + 1;
            s->lost += (uint64_t)(bound - after);
            s->lost_last = bound;
        }
        s->end = bound;
    }
    s->n = n;
    if (n == 0)
        return;
    snprintf(s->key, sizeof(s->key), "%s/%" PRId64 "/%s/%" PRId64 "-%" PRId64, o->env.agent_id,
             o->gen, o->name, s->rows[0].seq, s->rows[n - 1].seq);
    s->b = (struct mt_batch){
        .first_seq = s->rows[0].seq,
        .last_seq = s->rows[n - 1].seq,
        .generation = o->gen,
        .n = n,
        .rows = s->rows,
        .series = o->env.series,
        .agent_id = o->env.agent_id,
        .output = o->name,
        .key = s->key,
    };
}

static void wait_cb(uv_timer_t *t)
{
    struct mt_output *o = t->data;
    if (o->rst == MT_R_WAIT) {
        o->rst = MT_R_IDLE;
        kick(o);
    }
}

static void stop_wait(struct mt_output *o)
{
    if (o->rst == MT_R_WAIT)
        o->rst = MT_R_IDLE;
    o->wait_until = 0;
    uv_timer_stop(&o->wait_timer);
}

static void count_lost(struct mt_output *o, struct slot *s)
{
    if (!s->lost)
        return;
    o->stats.lost += s->lost;
    mt_complain(&o->c_lost, MT_WARNING, o->module, COMPLAIN_US,
                "readings %" PRId64 "..%" PRId64
                " were dropped at the log's size cap before delivery",
                s->lost_first, s->lost_last);
}

static void read_after(uv_work_t *req, int status)
{
    struct mt_output *o = req->data;
    struct slot *s = &o->slots[o->read_slot];
    int i = o->read_slot;

    (void)status;
    o->rjob = false;
    o->read_slot = -1;
    o->rst = MT_R_IDLE;
    if (o->st != MT_OUT_RUNNING) {
        release_slot(o, i);
        maybe_finish_close(o);
        return;
    }
    if (o->read_rc) {
        release_slot(o, i);
        mt_complain(&o->c_fail, MT_WARNING, o->module, COMPLAIN_US, "%s; will retry", o->read_err);
        o->rst = MT_R_WAIT;
        uv_timer_start(&o->wait_timer, wait_cb, (uint64_t)o->common->retry_min_ms, 0);
        return;
    }
    count_lost(o, s);
    o->read_pos = s->end;
    if (s->n == 0) {
        /* nothing of this output's in the range: pass it, unless a batch
         * before it is still waiting or on its way (its ack moves the
         * cursor past the range too) */
        struct slot *before = last_held(o);
        release_slot(o, i);
        if (before)
            before->end = s->end;
        else
            advance(o, s->end);
    } else if (o->async) {
        s->to_encode = true;
    } else {
        s->ready = true;
    }
    kick(o);
}

static bool held(const struct mt_output *o, int i)
{
    return o->slots[i].ready || o->slots[i].to_encode || i == o->enc_slot || i == o->read_slot;
}

static int free_slot(struct mt_output *o)
{
    for (int i = 0; i < NSLOTS; i++)
        if (!held(o, i) && i != o->send_slot)
            return i;
    return -1;
}

/* The slot of the newest batch read and not yet done with, or NULL. */
static struct slot *last_held(struct mt_output *o)
{
    struct slot *last = NULL;
    for (int i = 0; i < NSLOTS; i++)
        if (held(o, i) && i != o->read_slot && (!last || o->slots[i].b.first_seq > last->b.first_seq))
            last = &o->slots[i];
    return last;
}

/* The slot of the oldest batch read and not yet done with: -1 none. */
static int first_held(struct mt_output *o)
{
    int first = -1;
    for (int i = 0; i < NSLOTS; i++)
        if (held(o, i) && i != o->read_slot &&
            (first < 0 || o->slots[i].b.first_seq < o->slots[first].b.first_seq))
            first = i;
    return first;
}

/* The end of the batches the reader may cut after pos. */
static int64_t bound_after(struct mt_output *o, int64_t pos)
{
    if (!o->stable)
        return o->committed;
    return pos < o->plan_start ? o->plan_start : o->plan_end;
}

/* R_IDLE -> R_WAIT | R_PLAN | R_BUSY, or stays idle. */
static void kick_reader(struct mt_output *o)
{
    if (o->st != MT_OUT_RUNNING || o->rst == MT_R_BUSY)
        return;
    if (o->rst == MT_R_PLAN) {
        if (mt_writer_steps_committed(o->env.writer) < o->plan_ticket)
            return;
        o->plan_ticket = 0;
        o->rst = MT_R_IDLE;
    }
    int i = free_slot(o);
    if (i < 0)
        return;
    int64_t pos = o->read_pos;
    if (pos >= o->committed) {
        stop_wait(o);
        return;
    }
    bool planned = o->stable && pos < o->plan_end;
    if (!planned && !o->replay && o->common->batch_wait_ms > 0 && !o->flushing &&
        o->committed - pos < o->common->batch_size) {
        /* batch_wait: a small batch waits for more readings, for a while */
        uint64_t now = uv_now(o->env.loop);
        if (!o->wait_until) {
            o->wait_until = now + (uint64_t)o->common->batch_wait_ms;
            uv_timer_start(&o->wait_timer, wait_cb, (uint64_t)o->common->batch_wait_ms, 0);
        }
        if (now < o->wait_until) {
            o->rst = MT_R_WAIT;
            return;
        }
    }
    stop_wait(o);
    if (o->stable && !planned) {
        /* a new plan: durable before any of its batches is sent */
        o->plan_start = pos;
        o->plan_end = o->committed;
        o->plan_ticket = save_status(o);
        if (o->plan_ticket <= 0) {
            o->plan_end = pos; /* not written: try again soon */
            o->rst = MT_R_WAIT;
            uv_timer_start(&o->wait_timer, wait_cb, PLAN_RETRY_MS, 0);
            return;
        }
        o->rst = MT_R_PLAN;
        mt_writer_flush(o->env.writer);
        return;
    }
    o->read_slot = i;
    o->read_bound = bound_after(o, pos);
    o->rst = MT_R_BUSY;
    o->rjob = true;
    int rc = uv_queue_work(o->env.loop, &o->rwork, read_work, read_after);
    if (rc) {
        o->rjob = false;
        o->read_slot = -1;
        o->rst = MT_R_IDLE;
        mt_diag(MT_ERR, o->module, "cannot queue work: %s", uv_strerror(rc));
    }
}

/* ---- the encoder (asynchronous types) ---- */

static void encode_work(uv_work_t *req)
{
    struct mt_output *o = req->data;
    struct slot *s = &o->slots[o->enc_slot];
    /* enc_rc and enc_res were cleared by the read */
    s->payload = s->spare;
    s->spare = NULL;
    s->enc_rc = o->type->encode(o->state, &s->b, &s->payload, &s->enc_res);
}

static void encode_after(uv_work_t *req, int status)
{
    struct mt_output *o = req->data;
    int i = o->enc_slot;

    (void)status;
    o->ejob = false;
    o->enc_slot = -1;
    if (o->st != MT_OUT_RUNNING) {
        release_slot(o, i);
        maybe_finish_close(o);
        return;
    }
    o->slots[i].ready = true;
    kick(o);
}

/* One encode at a time (a type's encode() is never called twice at once),
 * the oldest batch read first. */
static void kick_encoder(struct mt_output *o)
{
    if (o->st != MT_OUT_RUNNING || o->ejob)
        return;
    int i = -1;
    for (int k = 0; k < NSLOTS; k++)
        if (o->slots[k].to_encode &&
            (i < 0 || o->slots[k].b.first_seq < o->slots[i].b.first_seq))
            i = k;
    if (i < 0)
        return;
    o->slots[i].to_encode = false;
    o->enc_slot = i;
    o->ejob = true;
    int rc = uv_queue_work(o->env.loop, &o->ework, encode_work, encode_after);
    if (rc) {
        o->ejob = false;
        o->enc_slot = -1;
        o->slots[i].to_encode = true;
        mt_diag(MT_ERR, o->module, "cannot queue work: %s", uv_strerror(rc));
    }
}

/* ---- the sender ---- */

static void sent(struct mt_output *o, int rc, const struct mt_deliver_result *res);

static void deliver_work(uv_work_t *req)
{
    struct mt_output *o = req->data;
    struct slot *s = &o->slots[o->send_slot];
    memset(&o->send.res, 0, sizeof(o->send.res));
    o->send_rc = o->type->deliver(o->state, &s->b, &o->send.res);
}

static void deliver_after(uv_work_t *req, int status)
{
    struct mt_output *o = req->data;
    (void)status;
    o->sjob = false;
    sent(o, o->send_rc, &o->send.res);
}

static void send_done(struct mt_send *s, int rc)
{
    struct mt_output *o = s->owner;
    sent(o, rc, &s->res);
}

static void send_retry_cb(uv_timer_t *t);

static void kick_sender(struct mt_output *o)
{
    if (o->st != MT_OUT_RUNNING || o->sst != MT_S_IDLE)
        return;
    /* the oldest batch, once it is ready (batches leave in seq order) */
    int i = first_held(o);
    if (i < 0 || !o->slots[i].ready)
        return;
    o->send_slot = i;
    o->sst = MT_S_BUSY;
    struct slot *s = &o->slots[i];
    if (s->enc_rc) {
        sent(o, s->enc_rc, &s->enc_res);
        return;
    }
    if (o->async) {
        o->send = (struct mt_send){.batch = &s->b, .payload = s->payload, .done = send_done,
                                   .owner = o};
        o->type->send(o->state, &o->send);
        return;
    }
    o->sjob = true;
    int rc = uv_queue_work(o->env.loop, &o->swork, deliver_work, deliver_after);
    if (rc) {
        o->sjob = false;
        o->sst = MT_S_IDLE;
        o->send_slot = -1;
        mt_diag(MT_ERR, o->module, "cannot queue work: %s", uv_strerror(rc));
    }
}

static void send_retry_cb(uv_timer_t *t)
{
    struct mt_output *o = t->data;
    if (o->sst == MT_S_BACKOFF) {
        o->sst = MT_S_IDLE;
        kick(o);
    }
}

/* A permanent refusal: park the batch; skip it, or stop. */
static void park(struct mt_output *o, struct slot *s, int rc, const struct mt_deliver_result *res)
{
    const char *why = errtext(rc, res);
    bool stop = o->common->on_permanent_error == MT_PERMANENT_STOP && !o->replay;
    bool closing = o->st == MT_OUT_CLOSING;

    mt_diag(MT_ERR, o->module, "batch %" PRId64 "..%" PRId64 " (%zu readings) refused permanently "
            "(%s); parked, %s", s->b.first_seq, s->b.last_seq, s->n, why,
            !stop      ? "moving on"
            : !closing ? "output stopped until a restart or reload"
                       : "output closing: the next start tries it again");
    if (o->env.writer)
        mt_writer_park(o->env.writer, o->name, s->b.first_seq, s->b.last_seq, why);
    o->stats.parked_batches++;
    o->stats.parked_readings += s->n;
    snprintf(o->status.error, sizeof(o->status.error), "%s", why);
    o->status.err_at = mt_now_us();
    if (!stop) {
        advance(o, s->end);
        save_status(o);
        return;
    }
    /* the cursor stays before the batch; a refusal that arrives while
     * closing leaves the state alone (STOPPED there would keep the close
     * from ever finishing) */
    if (!closing)
        o->st = MT_OUT_STOPPED;
    o->status.stopped = true;
    save_status(o);
}

/* The outcome of a send, on the loop; also while closing: a batch the
 * destination acknowledged is never forgotten, or a replacement would send
 * it again. */
static void sent(struct mt_output *o, int rc, const struct mt_deliver_result *res)
{
    int i = o->send_slot;
    struct slot *s = &o->slots[i];

    o->sst = MT_S_IDLE;
    if (rc == 0) {
        o->stats.delivered += s->n;
        o->stats.batches++;
        advance(o, s->end);
        o->attempts = 0;
        mt_complain_clear(&o->c_fail, o->module, "delivering again");
        if (!o->replay)
            note_ok(o);
        release_slot(o, i);
        o->send_slot = -1;
    } else if (rc == -EAGAIN) {
        mt_complain(&o->c_fail, MT_WARNING, o->module, COMPLAIN_US,
                    "delivery failed, will retry: %s", errtext(rc, res));
        if (!o->replay)
            note_error(o, errtext(rc, res));
        o->send_slot = -1;
        if (o->st == MT_OUT_RUNNING) {
            o->stats.retries++;
            o->sst = MT_S_BACKOFF;
            uv_timer_start(&o->retry_timer, send_retry_cb,
                           (uint64_t)backoff_ms(o, o->attempts++, res->retry_after_ms), 0);
        }
    } else {
        o->attempts = 0;
        park(o, s, rc, res);
        o->send_slot = -1;
        if (o->st == MT_OUT_STOPPED) {
            for (int k = 0; k < NSLOTS; k++)
                if (k != o->read_slot && k != o->enc_slot)
                    release_slot(o, k); /* the workers' slots: when they are done */
        } else {
            release_slot(o, i);
        }
    }
    if (o->st == MT_OUT_CLOSING) {
        maybe_finish_close(o);
        return;
    }
    kick(o);
}

/* The workers' stages first: their work goes to workers at once and runs
 * while the sender hands a batch to its type (an asynchronous send() may
 * take a while on the loop, e.g. libmosquitto copying every message). */
static void kick(struct mt_output *o)
{
    kick_reader(o);
    kick_encoder(o);
    kick_sender(o);
}

static void retry_cb(uv_timer_t *t)
{
    struct mt_output *o = t->data;
    if (o->st == MT_OUT_OPEN_BACKOFF)
        start_open(o);
}

void mt_output_notify(struct mt_output *o, int64_t committed)
{
    if (committed > o->committed)
        o->committed = committed;
    kick(o);
}

void mt_output_flush(struct mt_output *o)
{
    o->flushing = true;
    if (o->rst == MT_R_WAIT)
        o->rst = MT_R_IDLE;
    kick(o);
}

/* ---- CLOSING ---- */

static void handle_closed(uv_handle_t *h)
{
    struct mt_output *o = h->data;
    if (--o->handles_open > 0)
        return;
    void (*cb)(void *, int64_t) = o->closed_cb;
    void *arg = o->closed_arg;
    int64_t cursor = o->cursor;

    for (int i = 0; i < NSLOTS; i++) {
        release_slot(o, i);
        if (o->slots[i].spare)
            o->type->free_payload(o->state, o->slots[i].spare);
    }
    if (o->type->destroy && o->state)
        o->type->destroy(o->state);
    mt_log_close(o->rdb);
    mt_matcher_free(o->matcher);
    for (int i = 0; i < NSLOTS; i++)
        free(o->slots[i].rows);
    free(o->name);
    free(o);
    if (cb)
        cb(arg, cursor);
}

static void type_closed(void *arg)
{
    struct mt_output *o = arg;
    uv_close((uv_handle_t *)&o->retry_timer, handle_closed);
    uv_close((uv_handle_t *)&o->wait_timer, handle_closed);
}

static void maybe_finish_close(struct mt_output *o)
{
    if (o->st != MT_OUT_CLOSING || mt_output_busy(o) || o->close_started)
        return;
    o->close_started = true;
    if (o->type->close && o->state)
        o->type->close(o->state, type_closed, o);
    else
        type_closed(o);
}

void mt_output_close(struct mt_output *o, void (*done)(void *arg, int64_t cursor), void *arg)
{
    o->closed_cb = done;
    o->closed_arg = arg;
    o->st = MT_OUT_CLOSING;
    uv_timer_stop(&o->retry_timer);
    uv_timer_stop(&o->wait_timer);
    if (o->sst == MT_S_BUSY && o->async && !o->sjob && o->type->abort)
        o->type->abort(o->state);
    maybe_finish_close(o);
}
