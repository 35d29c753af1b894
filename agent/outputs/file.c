/*
 * file output: JSON Lines or CSV, appended to a file with size rotation
 * (path -> path.1 -> ... -> path.N), or written to standard output ("-").
 *
 * Runs on a worker thread (blocking writes and fsync). Acknowledges a batch
 * only after it is written whole (and fdatasync'ed with fsync: true); a
 * failed write is cut back off the file, so a retry never leaves half a
 * batch behind. On start it reads the last complete line of the file to
 * learn the newest reading it already holds (seq and log generation), and
 * cuts off a partial last line left by a crash: after kill -9 no reading is
 * written twice. Before each batch it checks that the path still names the
 * file it has open: a file deleted (to free disk space) or moved away
 * (logrotate) under it is reopened, so writing goes on into a new file at
 * the path instead of into the unlinked one (issue 8, section 3).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../diag.h"
#include "../encode.h"
#include "../output.h"

struct file_conf {
    const char *path;
    int format;
    uint64_t max_size;
    int64_t max_files;
    bool fsync;
};

static const char *const formats[] = {"jsonl", "csv", NULL};

static const struct mittari_option file_options[] = {
    {.name = "path", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct file_conf, path),
     .help = "File to append to; \"-\" writes to standard output."},
    {.name = "format", .type = MITTARI_OPT_ENUM, .def = "jsonl", .values = formats,
     .offset = offsetof(struct file_conf, format),
     .help = "jsonl: one JSON object per line; csv: RFC 4180 with a header line."},
    {.name = "max_size", .type = MITTARI_OPT_SIZE, .def = "64MiB",
     .offset = offsetof(struct file_conf, max_size),
     .help = "Rotate when the file would grow past this; 0 = never."},
    {.name = "max_files", .type = MITTARI_OPT_INT, .def = "5", .min = 1, .max = 1000,
     .offset = offsetof(struct file_conf, max_files),
     .help = "Rotated files kept (path.1 is the newest)."},
    {.name = "fsync", .type = MITTARI_OPT_BOOL, .def = "true",
     .offset = offsetof(struct file_conf, fsync),
     .help = "fdatasync each batch before acknowledging it."},
    {0},
};

struct file_out {
    const struct file_conf *conf;
    const char *module;
    int fd;
    bool is_stdout;
    uint64_t size;
    struct mt_encoder enc;
    struct mt_buf buf;
};

static int file_create(const void *conf, const struct mt_output_ctx *ctx, void **state, char *err,
                       size_t errlen)
{
    const struct file_conf *c = conf;
    struct file_out *f = calloc(1, sizeof(*f));

    if (!f)
        return -ENOMEM;
    if (!*c->path) {
        snprintf(err, errlen, "path is empty");
        free(f);
        return -EINVAL;
    }
    f->conf = c;
    f->module = ctx->module;
    f->fd = -1;
    f->is_stdout = strcmp(c->path, "-") == 0;
    mt_encoder_init(&f->enc, c->format == 1 ? MT_FMT_CSV : MT_FMT_JSONL, 0);
    *state = f;
    return 0;
}

static void file_destroy(void *state)
{
    struct file_out *f = state;
    if (f->fd >= 0 && !f->is_stdout)
        close(f->fd);
    mt_buf_free(&f->buf);
    free(f);
}

/* "2026-11-25T15:25:44.123456Z" -> µs; 0 if it is not that */
static int64_t parse_ts(const char *p, size_t n)
{
    struct tm tm = {0};
    int frac = 0, k = 0;
    char t[28];

    if (n < 27 || p[26] != 'Z')
        return 0;
    /* sscanf reads its string to the end: p is a slice of the file's
     * tail, not NUL-terminated where the timestamp ends */
    memcpy(t, p, 27);
    t[27] = 0;
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac, &k) != 7 || k != 26)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000000 + frac;
}

static bool digits(const char *p, size_t n, size_t *i, int64_t *v)
{
    size_t start = *i;
    *v = 0;
    for (; *i < n && p[*i] >= '0' && p[*i] <= '9'; (*i)++) {
        if (*v > (INT64_MAX - 9) / 10)
            return false;
        *v = *v * 10 + (p[*i] - '0');
    }
    return *i > start;
}

/* A record line: JSON Lines start {"seq":N,"gen":G,"ts":"...", CSV lines
 * N,G,TS, (files written before generations: without G). Fills *have (gen
 * and ts 0 where unreadable) and returns true; false for another line. */
static bool line_have(const char *p, size_t n, struct mt_have *have)
{
    static const char pre[] = "{\"seq\":", genpre[] = "\"gen\":", tspre[] = "\"ts\":\"";
    int64_t v = 0;
    size_t i = 0, k;
    bool json = false;

    *have = (struct mt_have){0};
    if (n >= sizeof(pre) - 1 && memcmp(p, pre, sizeof(pre) - 1) == 0) {
        i = sizeof(pre) - 1;
        json = true;
    }
    if (!digits(p, n, &i, &v) || i >= n || (p[i] != ',' && p[i] != '}'))
        return false;
    have->seq = v;
    i++;
    if (json && n - i > sizeof(genpre) - 1 && memcmp(p + i, genpre, sizeof(genpre) - 1) == 0) {
        k = i + sizeof(genpre) - 1;
        if (digits(p, n, &k, &v) && k < n && p[k] == ',') {
            have->gen = v;
            i = k + 1;
        }
    } else if (!json) {
        k = i;
        if (digits(p, n, &k, &v) && k < n && p[k] == ',') {
            have->gen = v;
            i = k + 1;
        }
    }
    if (json && n - i > sizeof(tspre) - 1 && memcmp(p + i, tspre, sizeof(tspre) - 1) == 0)
        i += sizeof(tspre) - 1;
    if (i < n)
        have->ts = parse_ts(p + i, n - i);
    return true;
}

static int tail_seq(int fd, bool truncate_partial, struct mt_have *have, char *err, size_t errlen)
{
    char buf[65536];
    struct stat st;

    *have = (struct mt_have){0};
    if (fstat(fd, &st))
        return -errno;
    if (st.st_size == 0)
        return 0;
    off_t start = st.st_size > (off_t)sizeof(buf) ? st.st_size - (off_t)sizeof(buf) : 0;
    ssize_t n = pread(fd, buf, (size_t)(st.st_size - start), start);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0; /* cut by somebody else since the fstat */
    size_t end = (size_t)n;
    if (buf[end - 1] != '\n') {
        /* a write cut short by a crash: the batch was never acknowledged */
        while (end > 0 && buf[end - 1] != '\n')
            end--;
        if (truncate_partial) {
            if (end == 0 && start > 0) {
                snprintf(err, errlen, "last line is longer than %zu bytes", sizeof(buf));
                return -EINVAL;
            }
            if (ftruncate(fd, start + (off_t)end))
                return -errno;
        }
    }
    while (end > 0) {
        size_t ls = end - 1;
        while (ls > 0 && buf[ls - 1] != '\n')
            ls--;
        if (line_have(buf + ls, end - 1 - ls, have))
            return 0;
        end = ls; /* a header or foreign line: look further up */
    }
    return 0;
}

static int open_current(struct file_out *f, char *err, size_t errlen)
{
    struct stat st;
    char dir[PATH_MAX];

    snprintf(dir, sizeof(dir), "%s", f->conf->path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int r = mt_mkdirs(dir, 0750);
        if (r) {
            snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(-r));
            return r;
        }
    }
    f->fd = open(f->conf->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (f->fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", f->conf->path, strerror(errno));
        return -errno;
    }
    if (fstat(f->fd, &st)) {
        snprintf(err, errlen, "cannot stat %s: %s", f->conf->path, strerror(errno));
        return -errno;
    }
    f->size = (uint64_t)st.st_size;
    return 0;
}

static int read_back(struct file_out *f, const char *path, bool truncate, struct mt_have *have,
                     char *err, size_t errlen)
{
    int fd = truncate ? dup(f->fd) : open(path, O_RDONLY | O_CLOEXEC);
    int r;

    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    r = tail_seq(fd, truncate, have, err, errlen);
    close(fd);
    if (r && !err[0])
        snprintf(err, errlen, "cannot read back %s: %s", path, strerror(-r));
    return r;
}

static int open_and_read_back(struct file_out *f, struct mt_have *have,
                              struct mt_deliver_result *res)
{
    char rotated[PATH_MAX];
    struct stat st;

    if (open_current(f, res->error, sizeof(res->error)))
        return -EAGAIN;
    if (read_back(f, f->conf->path, true, have, res->error, sizeof(res->error)))
        return -EAGAIN;
    if (fstat(f->fd, &st) == 0)
        f->size = (uint64_t)st.st_size;
    if (have->seq == 0) {
        /* rotated just before a crash: the newest record is in path.1 */
        snprintf(rotated, sizeof(rotated), "%s.1", f->conf->path);
        if (read_back(f, rotated, false, have, res->error, sizeof(res->error)))
            return -EAGAIN;
    }
    return 0;
}

static int file_open(void *state, struct mt_have *have, struct mt_deliver_result *res)
{
    struct file_out *f = state;
    int r;

    *have = (struct mt_have){0};
    if (f->is_stdout) {
        f->fd = STDOUT_FILENO;
        return 0;
    }
    r = open_and_read_back(f, have, res);
    if (r && f->fd >= 0) {
        /* open() is called again on the retry: do not keep this descriptor */
        close(f->fd);
        f->fd = -1;
    }
    return r;
}

static int sync_dir(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof(dir), ".");
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) ? -errno : 0;
    close(fd);
    return r;
}

static int rotate(struct file_out *f, struct mt_deliver_result *res)
{
    char from[PATH_MAX], to[PATH_MAX];

    if (f->conf->fsync && fdatasync(f->fd)) {
        snprintf(res->error, sizeof(res->error), "fdatasync %s: %s", f->conf->path,
                 strerror(errno));
        return -EAGAIN;
    }
    for (int64_t k = f->conf->max_files; k >= 1; k--) {
        if (k == 1)
            snprintf(from, sizeof(from), "%s", f->conf->path);
        else
            snprintf(from, sizeof(from), "%s.%" PRId64, f->conf->path, k - 1);
        snprintf(to, sizeof(to), "%s.%" PRId64, f->conf->path, k);
        if (rename(from, to) && errno != ENOENT) {
            snprintf(res->error, sizeof(res->error), "cannot rotate %s: %s", from,
                     strerror(errno));
            return -EAGAIN;
        }
    }
    close(f->fd);
    f->fd = -1;
    int r = open_current(f, res->error, sizeof(res->error));
    if (!r && f->conf->fsync)
        sync_dir(f->conf->path);
    return r ? -EAGAIN : 0;
}

static int fail_write(struct file_out *f, const char *what, int err, struct mt_deliver_result *res)
{
    if (f->is_stdout && err == EPIPE) {
        /* the agent ignores SIGPIPE (issue 15): the reader of our standard
         * output went away (piped into head, or journald restarted). Nothing
         * written there can arrive any more; the readings stay in the log,
         * and this output waits, retrying at its retry_max, until mittari is
         * restarted with a standard output someone reads. */
        snprintf(res->error, sizeof(res->error),
                 "standard output is closed (EPIPE: nobody reads it any more); the readings stay "
                 "in the log until mittari runs with a standard output that is read");
        return -EAGAIN;
    }
    snprintf(res->error, sizeof(res->error), "%s %s: %s", what, f->conf->path, strerror(err));
    /* never leave part of a batch behind: the retry writes it whole */
    if (!f->is_stdout && ftruncate(f->fd, (off_t)f->size)) {
        close(f->fd);
        f->fd = -1;
    }
    return -EAGAIN;
}

/* The path no longer names the open file: deleted or moved away. */
static bool replaced(struct file_out *f)
{
    struct stat fst, pst;
    if (fstat(f->fd, &fst))
        return true;
    if (stat(f->conf->path, &pst))
        return errno == ENOENT;
    return fst.st_dev != pst.st_dev || fst.st_ino != pst.st_ino;
}

static int file_deliver(void *state, const struct mt_batch *b, struct mt_deliver_result *res)
{
    struct file_out *f = state;
    struct mt_buf head = {0};
    struct mt_have have = {0};
    int r;

    if (f->fd >= 0 && !f->is_stdout && replaced(f)) {
        mt_diag(MT_NOTICE, f->module, "%s was deleted or replaced; writing to a new file there",
                f->conf->path);
        close(f->fd);
        f->fd = -1;
    }
    if (f->fd < 0) {
        /* closed after a write that could not be cut back: what of this
         * batch made it into the file is not written again */
        if (open_and_read_back(f, &have, res))
            return -EAGAIN;
        if (have.gen != b->generation)
            have.seq = 0; /* another log's readings */
    }
    f->enc.gen = b->generation;
    f->buf.len = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct mt_row *row = &b->rows[i];
        if (row->seq <= have.seq)
            continue;
        if (mt_encode_row(&f->enc, &f->buf, row, mt_series_get(b->series, row->series))) {
            snprintf(res->error, sizeof(res->error), "out of memory");
            return -EAGAIN;
        }
    }
    if (!f->is_stdout && f->conf->max_size && f->size > 0 &&
        f->size + f->buf.len > f->conf->max_size) {
        r = rotate(f, res);
        if (r)
            return r;
    }
    if (f->size == 0 && mt_encode_header(&f->enc, &head) == 0 && head.len) {
        r = mt_write_all(f->fd, head.p, head.len);
        mt_buf_free(&head);
        if (r)
            return fail_write(f, "cannot write", -r, res);
        f->size += head.len;
    }
    mt_buf_free(&head);
    r = mt_write_all(f->fd, f->buf.p, f->buf.len);
    if (r)
        return fail_write(f, "cannot write", -r, res);
    if (f->conf->fsync && !f->is_stdout && fdatasync(f->fd))
        return fail_write(f, "fdatasync", errno, res);
    f->size += f->buf.len;
    if (f->buf.cap > (1u << 22)) /* give a burst's buffer back */
        mt_buf_free(&f->buf);
    return 0;
}

const struct mt_output_type mt_output_file = {
    .name = "file",
    .description = "JSON Lines or CSV file with size rotation, or standard output",
    .options = file_options,
    .config_size = sizeof(struct file_conf),
    .create = file_create,
    .open = file_open,
    .deliver = file_deliver,
    .destroy = file_destroy,
};
