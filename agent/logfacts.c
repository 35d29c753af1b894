#include "logfacts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mt_facts *mt_facts_ref(struct mt_facts *f)
{
    if (f)
        atomic_fetch_add(&f->refs, 1);
    return f;
}

void mt_facts_unref(struct mt_facts *f)
{
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    mt_arena_free(&f->arena);
    free(f);
}

const struct mt_fact_output *mt_facts_output(const struct mt_facts *f, const char *name)
{
    for (size_t i = 0; f && i < f->noutputs; i++)
        if (strcmp(f->outputs[i].name, name) == 0)
            return &f->outputs[i];
    return NULL;
}

const struct mt_fact_parked *mt_facts_parked(const struct mt_facts *f, const char *output)
{
    for (size_t i = 0; f && i < f->nparked; i++)
        if (strcmp(f->parked[i].output, output) == 0)
            return &f->parked[i];
    return NULL;
}

/* Grows v (elements of size sz, in the arena) to hold n + 1. */
static void *grow(struct mt_arena *a, void *v, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *nv = mt_arena_alloc(a, ncap * sz);
    if (!nv)
        return NULL;
    if (n)
        memcpy(nv, v, n * sz);
    *cap = ncap;
    return nv;
}

struct load {
    struct mt_facts *f;
    size_t cap;
};

static int add_cursor(void *arg, const char *name, int64_t seq)
{
    struct load *l = arg;
    struct mt_facts *f = l->f;
    struct mt_fact_output *v =
        grow(&f->arena, f->outputs, f->noutputs, &l->cap, sizeof(*f->outputs));
    if (!v)
        return -ENOMEM;
    f->outputs = v;
    v[f->noutputs] = (struct mt_fact_output){.name = mt_arena_strdup(&f->arena, name),
                                              .cursor = seq};
    if (!v[f->noutputs].name)
        return -ENOMEM;
    f->noutputs++;
    return 0;
}

static int add_parked(void *arg, const struct mt_parked_summary *p)
{
    struct load *l = arg;
    struct mt_facts *f = l->f;
    struct mt_fact_parked *v = grow(&f->arena, f->parked, f->nparked, &l->cap, sizeof(*f->parked));
    if (!v)
        return -ENOMEM;
    f->parked = v;
    v[f->nparked] = (struct mt_fact_parked){
        .output = mt_arena_strdup(&f->arena, p->output),
        .batches = p->batches,
        .readings = p->readings,
        .last_at_us = p->last_at,
        .last_error = mt_arena_strdup(&f->arena, p->last_error),
    };
    if (!v[f->nparked].output || !v[f->nparked].last_error)
        return -ENOMEM;
    f->nparked++;
    return 0;
}

/* Backlog of each output: readings after its cursor, and the oldest one's
 * timestamp (the first after the cursor: seq order is arrival order). */
static int read_backlogs(struct mt_logdb *db, struct mt_facts *f, int64_t committed)
{
    struct mt_row row;
    size_t n;

    for (size_t i = 0; i < f->noutputs; i++) {
        struct mt_fact_output *o = &f->outputs[i];
        o->backlog = committed > o->cursor ? committed - o->cursor : 0;
        o->oldest_us = 0;
        if (!o->backlog)
            continue;
        int rc = mt_log_read(db, o->cursor, committed, 1, &row, &n);
        if (rc)
            return rc;
        if (n)
            o->oldest_us = row.ts;
        else
            o->backlog = 0; /* dropped at the cap or deleted since */
    }
    return 0;
}

static int read_all(struct mt_logdb *db, const struct mt_snap *snap, struct mt_facts *f)
{
    struct load l = {f, 0};
    int64_t committed;
    int rc;

    rc = mt_log_used_bytes(db, &f->log_bytes);
    if (!rc)
        rc = mt_log_bounds(db, &f->min_seq, &f->max_seq, &f->rows);
    if (rc)
        return rc;
    if (snap) {
        f->outputs = mt_arena_alloc(&f->arena, (snap->noutputs + 1) * sizeof(*f->outputs));
        if (!f->outputs)
            return -ENOMEM;
        for (size_t i = 0; i < snap->noutputs; i++)
            f->outputs[f->noutputs++] = (struct mt_fact_output){
                .name = snap->outputs[i].name, /* lives in f's arena below */
                .cursor = snap->outputs[i].cursor,
            };
        for (size_t i = 0; i < f->noutputs; i++)
            if (!(f->outputs[i].name = mt_arena_strdup(&f->arena, f->outputs[i].name)))
                return -ENOMEM;
        committed = snap->committed;
    } else {
        rc = mt_log_load_cursors(db, add_cursor, &l);
        if (!rc)
            rc = mt_log_last_seq(db, &committed);
        if (rc)
            return rc;
    }
    rc = read_backlogs(db, f, committed);
    if (rc)
        return rc;
    l.cap = 0;
    return mt_log_parked_summary(db, add_parked, &l);
}

int mt_facts_read(struct mt_logdb *db, const struct mt_snap *snap, int64_t now_us,
                  struct mt_facts **out)
{
    struct mt_facts *f = calloc(1, sizeof(*f));

    *out = NULL;
    if (!f)
        return -ENOMEM;
    atomic_init(&f->refs, 1);
    f->taken_us = now_us;
    /* one read transaction: every figure from the same state of the log */
    int rc = mt_log_begin_read(db);
    if (!rc) {
        rc = read_all(db, snap, f);
        mt_log_end_read(db);
    }
    if (rc == -ENOMEM) {
        mt_facts_unref(f);
        return rc;
    }
    if (rc) {
        f->error = rc;
        f->error_text = mt_arena_strdup(&f->arena, mt_log_errmsg(db));
        if (!f->error_text)
            f->error_text = "";
    }
    *out = f;
    return rc;
}
