/*
 * probe: a test plugin that exercises the host API on command of its
 * options: readings at start, readings from a worker-thread poll,
 * cumulative counter sequences, raw subjects, a failing create.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

struct device {
    const char *name;
    int64_t unit;
    int order;
};

static const char *const orders[] = {"ABCD", "CDAB", "BADC", "DCBA", NULL};

static const struct mittari_option device_opts[] = {
    {.name = "name", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct device, name), .help = "Device name."},
    {.name = "unit", .type = MITTARI_OPT_INT, .def = "1", .min = 0, .max = 247,
     .offset = offsetof(struct device, unit), .help = "Unit id (emitted as the value)."},
    {.name = "order", .type = MITTARI_OPT_ENUM, .def = "ABCD", .values = orders,
     .offset = offsetof(struct device, order), .help = "Word order."},
    {0},
};

struct conf {
    struct mittari_list devices;
    int64_t count;
    int64_t poll_ms;
    int64_t poll_runs;
    const char *counters; /* "65530,65535,3" */
    int64_t bits;
    const char *subject;
    bool fail_create;
    const char *metric;
};

static const struct mittari_option opts[] = {
    {.name = "devices", .type = MITTARI_OPT_LIST, .min = 0, .max = 16,
     .offset = offsetof(struct conf, devices), .sub = device_opts,
     .sub_size = sizeof(struct device),
     .help = "Devices: one gauge each at start, value = unit, metric = word order."},
    {.name = "count",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .max = 1e9,
     .offset = offsetof(struct conf, count),
     .help = "Delta readings emitted at start."},
    {.name = "poll_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "0",
     .offset = offsetof(struct conf, poll_ms),
     .help = "Emit one reading from a worker thread this often; 0 = no poll."},
    {.name = "poll_runs",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .max = 1e9,
     .offset = offsetof(struct conf, poll_runs),
     .help = "Stop polling after this many runs; 0 = never."},
    {.name = "counters",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, counters),
     .help = "Comma-separated raw values of a cumulative counter, emitted at start."},
    {.name = "bits",
     .type = MITTARI_OPT_INT,
     .def = "16",
     .min = 1,
     .max = 64,
     .offset = offsetof(struct conf, bits),
     .help = "Counter width."},
    {.name = "subject",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_SECRET,
     .offset = offsetof(struct conf, subject),
     .help = "Raw subject id of a check-in emitted at start."},
    {.name = "fail_create",
     .type = MITTARI_OPT_BOOL,
     .def = "false",
     .offset = offsetof(struct conf, fail_create),
     .help = "create() fails with -EIO."},
    {.name = "metric",
     .type = MITTARI_OPT_STRING,
     .def = "probe",
     .offset = offsetof(struct conf, metric),
     .help = "Metric name of the readings."},
    {0},
};

struct probe {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct conf *c;
    struct mittari_poll *poll;
    int64_t runs;
};

static int create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *cf, void **s)
{
    const struct conf *c = cf;
    if (c->fail_create)
        return -EIO;
    struct probe *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->h = h;
    p->ctx = ctx;
    p->c = c;
    *s = p;
    return 0;
}

static int work(void *arg)
{
    struct probe *p = arg;
    struct mittari_reading r = MITTARI_READING_INIT;
    r.metric = "polled";
    r.kind = MITTARI_KIND_DELTA;
    r.value = 1;
    return p->h->emit(p->ctx, &r);
}

static void done(void *arg, int status)
{
    struct probe *p = arg;
    if (status)
        p->h->log(p->ctx, MITTARI_LOG_WARNING, "poll emit failed: %d", status);
    if (p->c->poll_runs && ++p->runs >= p->c->poll_runs) {
        p->h->poll_stop(p->poll);
        p->poll = NULL;
    }
}

static int start(void *s)
{
    struct probe *p = s;
    for (size_t i = 0; i < p->c->devices.n; i++) {
        const struct device *d = MITTARI_LIST_ITEM(&p->c->devices, struct device, i);
        struct mittari_reading r = MITTARI_READING_INIT;
        r.device = d->name;
        r.metric = orders[d->order];
        r.kind = MITTARI_KIND_GAUGE;
        r.value = (double)d->unit;
        int rc = p->h->emit(p->ctx, &r);
        if (rc)
            return rc;
    }
    for (int64_t i = 0; i < p->c->count; i++) {
        struct mittari_reading r = MITTARI_READING_INIT;
        r.metric = p->c->metric;
        r.kind = MITTARI_KIND_DELTA;
        r.value = 1;
        int rc = p->h->emit(p->ctx, &r);
        if (rc)
            return rc;
    }
    if (p->c->counters) {
        char *copy = strdup(p->c->counters), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            struct mittari_reading r = MITTARI_READING_INIT;
            r.metric = "count";
            r.kind = MITTARI_KIND_CUMULATIVE;
            r.counter = strtoull(t, NULL, 10);
            r.counter_bits = (unsigned)p->c->bits;
            p->h->emit(p->ctx, &r);
        }
        free(copy);
    }
    if (p->c->subject) {
        struct mittari_reading r = MITTARI_READING_INIT;
        r.metric = "checkin";
        r.kind = MITTARI_KIND_EVENT;
        r.value = 1;
        r.subject_id = p->c->subject;
        r.subject_id_len = strlen(p->c->subject);
        r.subject_space = "card";
        p->h->emit(p->ctx, &r);
    }
    if (p->c->poll_ms)
        return p->h->poll_start(p->ctx, (uint64_t)p->c->poll_ms, work, done, p, &p->poll);
    return 0;
}

static void stop(void *s)
{
    (void)s;
}

static void destroy(void *s)
{
    free(s);
}

/* Checks across options: device names unique; counters need bits <= 32. */
static int check(const void *config, const struct mittari_checker *chk)
{
    const struct conf *c = config;
    int n = 0;
    char path[64];
    for (size_t i = 0; i < c->devices.n; i++) {
        const struct device *a = MITTARI_LIST_ITEM(&c->devices, struct device, i);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->name, MITTARI_LIST_ITEM(&c->devices, struct device, j)->name) == 0) {
                snprintf(path, sizeof(path), "devices[%zu].name", i);
                chk->error(chk, path, "device name %s is used twice", a->name);
                n++;
            }
        }
    }
    if (c->counters && c->bits > 32) {
        chk->error(chk, "bits", "counters are at most 32 bits here");
        n++;
    }
    return n;
}

static const struct mittari_plugin desc = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "probe",
    .version = "1",
    .description = "test plugin exercising the host API",
    .options = opts,
    .config_size = sizeof(struct conf),
    .create = create,
    .start = start,
    .stop = stop,
    .destroy = destroy,
    .check = check,
};
MITTARI_PLUGIN_DEFINE(desc)
