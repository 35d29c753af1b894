#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfgtree.h"
#include "diag.h"
#include "options.h"
#include "util.h"

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/mittari-test.XXXXXX", base && *base ? base : "/tmp") < 0)
        return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

void tu_rmtree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    if (d) {
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char *p = tu_path(path, de->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                tu_rmtree(p);
            else
                unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(path);
}

char *tu_path(const char *dir, const char *name)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

char *tu_write(const char *dir, const char *name, const char *text)
{
    char *p = tu_path(dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

char *tu_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct mt_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        mt_buf_add(&b, tmp, n);
    fclose(f);
    if (len)
        *len = b.len;
    if (!b.p)
        return calloc(1, 1);
    return b.p;
}

static struct mt_buf captured;
static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;

static void sink(int level, const char *line, void *arg)
{
    (void)level;
    (void)arg;
    pthread_mutex_lock(&cap_lock);
    mt_buf_adds(&captured, line);
    mt_buf_addc(&captured, '\n');
    pthread_mutex_unlock(&cap_lock);
}

void tu_capture_start(void)
{
    pthread_mutex_lock(&cap_lock);
    captured.len = 0;
    if (captured.p)
        captured.p[0] = 0;
    pthread_mutex_unlock(&cap_lock);
    mt_diag_set_level(MT_DEBUG);
    mt_diag_set_sink(sink, NULL);
}

void tu_capture_stop(void)
{
    mt_diag_set_sink(NULL, NULL);
}

bool tu_captured(const char *needle)
{
    pthread_mutex_lock(&cap_lock);
    bool r = captured.p && strstr(captured.p, needle) != NULL;
    pthread_mutex_unlock(&cap_lock);
    return r;
}

const char *tu_captured_all(void)
{
    return mt_buf_cstr(&captured);
}

struct until {
    bool (*pred)(void *);
    void *arg;
    uv_timer_t poll;
    bool timed_out;
    int64_t deadline;
};

static void until_cb(uv_timer_t *t)
{
    struct until *u = t->data;
    if (u->pred(u->arg) || mt_mono_us() > u->deadline) {
        u->timed_out = !u->pred(u->arg);
        uv_timer_stop(t);
        uv_stop(t->loop);
    }
}

bool tu_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, int timeout_ms)
{
    struct until u = {.pred = pred, .arg = arg};
    u.deadline = mt_mono_us() + (int64_t)timeout_ms * 1000;
    uv_timer_init(loop, &u.poll);
    u.poll.data = &u;
    uv_timer_start(&u.poll, until_cb, 0, 5);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&u.poll, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return !u.timed_out;
}

struct tu_opts {
    struct mt_arena arena;
    _Alignas(16) unsigned char conf[];
};

void *tu_options(const struct mittari_option *table, size_t conf_size, const char *yaml)
{
    struct tu_opts *t = calloc(1, sizeof(*t) + conf_size + 1);
    struct mt_cfgdoc doc;
    struct mt_diags d = {0};
    struct mt_pos pos = {"test", 1, 1};
    char *text = NULL;

    assert_non_null(t);
    assert_true(asprintf(&text, "o: %s\n", yaml) > 0);
    mt_cfgdoc_init(&doc);
    mt_cfg_load_file(&doc, "test", text, &d);
    struct mt_optset os = {table, conf_size, "test", NULL, false, NULL};
    mt_options_apply(&os, t->conf, mt_node_get(doc.root, "o"), &pos, &t->arena, &d);
    if (d.n) {
        mt_diags_print(&d, stderr);
        fail_msg("options '%s' refused", yaml);
    }
    mt_diags_free(&d);
    mt_cfgdoc_free(&doc);
    free(text);
    return t->conf;
}

void tu_options_free(void *conf)
{
    if (!conf)
        return;
    struct tu_opts *t = (struct tu_opts *)((unsigned char *)conf - offsetof(struct tu_opts, conf));
    mt_arena_free(&t->arena);
    free(t);
}
