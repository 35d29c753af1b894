/* The file output type called directly: formats, rotation, crash recovery
 * (have_seq, a cut-off last line) and a failed write. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mittari/mittari.h>

#include "output.h"
#include "series.h"

#define MAXROWS 512

#define HEADER                                                                                     \
    "seq,gen,ts,site,device,metric,value,unit,kind,subject,tags,revision,suppressed_below,origin\n"

struct fixture {
    char *dir;
    char *path;
    void *conf;
    void *state;
    struct mt_series_reg reg;
    uint32_t sid[2];
    struct mt_row rows[MAXROWS];
    struct mt_deliver_result res;
    int64_t have_ts; /* from the last open_out */
    int64_t have_gen;
    int64_t gen; /* the generation deliver() gives its batches */
};


static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->dir = tu_tmpdir();
    f->path = tu_path(f->dir, "out/readings.jsonl");
    f->gen = 1764084344123456;
    if (mt_series_init(&f->reg))
        return -1;
    struct mt_series_info a = {.site = "hki",
                               .device = "door-1",
                               .metric = "people_in",
                               .unit = "1",
                               .kind = MITTARI_KIND_DELTA,
                               .tags = ""};
    struct mt_series_info b = {.site = "hki",
                               .device = "t, 1",
                               .metric = "temp",
                               .unit = "C",
                               .kind = MITTARI_KIND_GAUGE,
                               .tags = "{\"room\":\"a\"}"};
    if (mt_series_intern(&f->reg, &a, &f->sid[0]) || mt_series_intern(&f->reg, &b, &f->sid[1]))
        return -1;
    *state = f;
    return 0;
}

static void destroy(struct fixture *f)
{
    if (f->state)
        mt_output_file.destroy(f->state);
    f->state = NULL;
    tu_options_free(f->conf);
    f->conf = NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    destroy(f);
    mt_series_free(&f->reg);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void create(struct fixture *f, const char *format, uint64_t max_size, int64_t max_files)
{
    char err[256] = "", text[600];
    destroy(f);
    snprintf(text, sizeof(text), "{path: %s, format: %s, max_size: %llu, max_files: %lld, fsync: true}",
             f->path, format, (unsigned long long)max_size, (long long)max_files);
    f->conf = tu_options(mt_output_file.options, mt_output_file.config_size, text);
    struct mt_output_ctx ctx = {NULL, "test", "agent1", "output file[test]"};
    assert_int_equal(mt_output_file.create(f->conf, &ctx, &f->state, err, sizeof(err)), 0);
}

static int64_t open_out(struct fixture *f)
{
    struct mt_have h = {-1, -1, -1};
    memset(&f->res, 0, sizeof(f->res));
    int rc = mt_output_file.open(f->state, &h, &f->res);
    if (rc)
        fail_msg("open: %d %s", rc, f->res.error);
    int64_t have = h.seq;
    f->have_ts = h.ts;
    f->have_gen = h.gen;
    /* the time of the record it reports, so the framework can tell its log */
    if (have > 0) {
        assert_int_equal(f->have_ts, 1764084344000000 + have);
        assert_int_equal(f->have_gen, f->gen);
    } else {
        assert_int_equal(f->have_ts, 0);
    }
    return have;
}

/* Delivers rows first..last (seq = ts offset = value). */
static int deliver(struct fixture *f, int64_t first, int64_t last)
{
    assert_true(last - first + 1 <= MAXROWS);
    size_t n = 0;
    for (int64_t s = first; s <= last; s++, n++) {
        f->rows[n] = (struct mt_row){
            .seq = s, .ts = 1764084344000000 + s, .value = (double)s, .series = f->sid[s % 2]};
        if (s % 3 == 0)
            snprintf(f->rows[n].subject, sizeof(f->rows[n].subject), "Subj%018lld", (long long)s);
    }
    char key[64];
    snprintf(key, sizeof(key), "agent/test/%lld-%lld", (long long)first, (long long)last);
    struct mt_batch b = {.first_seq = first,
                         .last_seq = last,
                         .generation = f->gen,
                         .n = n,
                         .rows = f->rows,
                         .series = &f->reg,
                         .key = key};
    memset(&f->res, 0, sizeof(f->res));
    return mt_output_file.deliver(f->state, &b, &f->res);
}

static char *slurp(const char *path)
{
    char *t = tu_read(path, NULL);
    assert_non_null(t);
    return t;
}

static char *rotated(struct fixture *f, int k)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s.%d", f->path, k) > 0);
    return p;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int count_lines(const char *t)
{
    int n = 0;
    for (; *t; t++)
        n += *t == '\n';
    return n;
}

/* Seqs of all record lines of a file in order; returns how many. */
static int seqs_of(const char *path, int64_t *out, int max)
{
    char *t = tu_read(path, NULL);
    int n = 0;
    if (!t)
        return 0;
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every record is a whole line */
        long long s;
        if (sscanf(line, "{\"seq\":%lld,", &s) == 1 || sscanf(line, "%lld,", &s) == 1) {
            assert_true(n < max);
            out[n++] = s;
        }
        line = nl + 1;
    }
    free(t);
    return n;
}

static void jsonl_contents(void **state)
{
    struct fixture *f = *state;
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0); /* creates the directory and the file */
    assert_int_equal(deliver(f, 1, 3), 0);
    char *t = slurp(f->path);
    assert_string_equal(
        t,
        "{\"seq\":1,\"gen\":1764084344123456,\"ts\":\"2025-11-25T15:25:44.000001Z\",\"site\":\"hki\",\"device\":\"t, 1\","
        "\"metric\":\"temp\",\"value\":1,\"unit\":\"C\",\"kind\":\"gauge\",\"tags\":{\"room\":"
        "\"a\"}}\n"
        "{\"seq\":2,\"gen\":1764084344123456,\"ts\":\"2025-11-25T15:25:44.000002Z\",\"site\":\"hki\",\"device\":\"door-1\","
        "\"metric\":\"people_in\",\"value\":2,\"unit\":\"1\",\"kind\":\"delta\"}\n"
        "{\"seq\":3,\"gen\":1764084344123456,\"ts\":\"2025-11-25T15:25:44.000003Z\",\"site\":\"hki\",\"device\":\"t, 1\","
        "\"metric\":\"temp\",\"value\":3,\"unit\":\"C\",\"kind\":\"gauge\","
        "\"subject\":\"Subj000000000000000003\",\"tags\":{\"room\":\"a\"}}\n");
    free(t);
    /* appends */
    assert_int_equal(deliver(f, 4, 4), 0);
    t = slurp(f->path);
    assert_int_equal(count_lines(t), 4);
    assert_non_null(strstr(t, "\n{\"seq\":4,"));
    free(t);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void csv_contents_header_once(void **state)
{
    struct fixture *f = *state;
    create(f, "csv", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 2), 0);
    assert_int_equal(deliver(f, 3, 3), 0);
    char *t = slurp(f->path);
    assert_string_equal(t, HEADER
                           "1,1764084344123456,2025-11-25T15:25:44.000001Z,hki,\"t, 1\",temp,1,"
                           "C,gauge,,\"{\"\"room\"\":\"\"a\"\"}\",0,,\n"
                           "2,1764084344123456,2025-11-25T15:25:44.000002Z,hki,door-1,people_in,"
                           "2,1,delta,,,0,,\n"
                           "3,1764084344123456,2025-11-25T15:25:44.000003Z,hki,\"t, 1\",temp,3,"
                           "C,gauge,Subj000000000000000003,\"{\"\"room\"\":\"\"a\"\"}\",0,,\n");
    free(t);
    /* a restart appends to the same file: still one header */
    create(f, "csv", 0, 5);
    assert_int_equal(open_out(f), 3);
    assert_int_equal(deliver(f, 4, 5), 0);
    t = slurp(f->path);
    const char *h = strstr(t, "seq,gen,ts,");
    assert_true(h == t);
    assert_null(strstr(h + 1, "seq,gen,ts,"));
    assert_int_equal(count_lines(t), 6);
    free(t);
}

static void rotation_keeps_max_files(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[4096];
    const uint64_t max = 2000;

    create(f, "jsonl", max, 3);
    assert_int_equal(open_out(f), 0);
    /* batches of 4 rows (~600 bytes): a file takes 3 of them */
    for (int64_t s = 1; s <= 200; s += 4)
        assert_int_equal(deliver(f, s, s + 3), 0);
    char *r[5];
    for (int k = 1; k <= 4; k++)
        r[k] = rotated(f, k);
    assert_true(exists(f->path));
    assert_true(exists(r[1]));
    assert_true(exists(r[2]));
    assert_true(exists(r[3]));
    assert_false(exists(r[4])); /* max_files rotated files, the oldest dropped */

    /* path.3 oldest ... path newest, seqs continuous across them, each file
     * at most max_size and made of whole batches */
    const char *order[] = {r[3], r[2], r[1], f->path};
    int64_t expect = -1;
    for (int i = 0; i < 4; i++) {
        struct stat st;
        assert_int_equal(stat(order[i], &st), 0);
        assert_true((uint64_t)st.st_size <= max);
        int n = seqs_of(order[i], seqs, 4096);
        assert_true(n > 0);
        assert_int_equal(n % 4, 0);
        assert_int_equal(seqs[0] % 4, 1); /* starts with a batch */
        for (int j = 0; j < n; j++) {
            if (expect >= 0)
                assert_int_equal(seqs[j], expect);
            expect = seqs[j] + 1;
        }
    }
    assert_int_equal(expect, 201); /* the newest file ends with the last batch */
    for (int k = 1; k <= 4; k++)
        free(r[k]);
}

static void rotation_csv_header_in_each_file(void **state)
{
    struct fixture *f = *state;
    create(f, "csv", 600, 2);
    assert_int_equal(open_out(f), 0);
    for (int64_t s = 1; s <= 30; s += 3)
        assert_int_equal(deliver(f, s, s + 2), 0);
    char *r1 = rotated(f, 1);
    const char *files[] = {f->path, r1};
    for (int i = 0; i < 2; i++) {
        char *t = slurp(files[i]);
        assert_true(strncmp(t, "seq,gen,ts,", 11) == 0);
        assert_null(strstr(t + 1, "seq,gen,ts,"));
        free(t);
    }
    free(r1);
}

static void big_batch_is_not_split(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[64];
    create(f, "jsonl", 500, 2);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 1), 0);
    /* larger than max_size alone: goes whole into a fresh file */
    assert_int_equal(deliver(f, 2, 11), 0);
    assert_int_equal(seqs_of(f->path, seqs, 64), 10);
    assert_int_equal(seqs[0], 2);
    char *r1 = rotated(f, 1);
    assert_int_equal(seqs_of(r1, seqs, 64), 1);
    assert_int_equal(seqs[0], 1);
    free(r1);
}

static void open_reports_have_seq(void **state)
{
    struct fixture *f = *state;
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 10), 0);
    assert_int_equal(deliver(f, 11, 17), 0);
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 17);
    /* CSV too, past its header */
    free(f->path);
    f->path = tu_path(f->dir, "readings.csv");
    create(f, "csv", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 5, 9), 0);
    create(f, "csv", 0, 5);
    assert_int_equal(open_out(f), 9);
    /* a header alone holds no record */
    free(f->path);
    f->path =
        tu_write(f->dir, "header.csv", HEADER);
    create(f, "csv", 0, 5);
    assert_int_equal(open_out(f), 0);
}

static void open_cuts_a_partial_last_line(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[64];
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 5), 0);
    size_t whole = 0;
    free(tu_read(f->path, &whole));
    /* a crash in the middle of writing batch 6..8 */
    FILE *fp = fopen(f->path, "ab");
    assert_non_null(fp);
    fputs("{\"seq\":6,\"gen\":1764084344123456,\"ts\":\"2025-11-25T15:25:44.000006Z\",\"site\":\"hki\",\"dev", fp);
    fclose(fp);

    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 5); /* not 6: that line was never whole */
    size_t len = 0;
    free(tu_read(f->path, &len));
    assert_int_equal(len, whole);
    assert_int_equal(deliver(f, 6, 8), 0);
    assert_int_equal(seqs_of(f->path, seqs, 64), 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(seqs[i], i + 1);
}

static void open_of_a_lone_partial_line(void **state)
{
    struct fixture *f = *state;
    free(f->path);
    f->path = tu_write(f->dir, "partial.jsonl", "{\"seq\":1,\"ts\":\"2025");
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    size_t len = 99;
    free(tu_read(f->path, &len));
    assert_int_equal(len, 0);
    assert_int_equal(deliver(f, 1, 1), 0);
    int64_t seqs[4];
    assert_int_equal(seqs_of(f->path, seqs, 4), 1);
}

static void have_seq_from_rotated_file(void **state)
{
    struct fixture *f = *state;
    create(f, "jsonl", 700, 3);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 4), 0);
    assert_int_equal(deliver(f, 5, 8), 0); /* rotates: 1..4 in path.1 */
    char *r1 = rotated(f, 1);
    assert_true(exists(r1));
    /* crashed right after a rotation: path is empty, the newest is in path.1 */
    assert_int_equal(rename(f->path, r1), 0);
    close(open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0640));
    create(f, "jsonl", 700, 3);
    assert_int_equal(open_out(f), 8);
    /* the same with only a CSV header in path */
    free(r1);
    free(f->path);
    f->path = tu_path(f->dir, "b.csv");
    create(f, "csv", 400, 3);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 3), 0);
    assert_int_equal(deliver(f, 4, 6), 0);
    r1 = rotated(f, 1);
    assert_int_equal(rename(f->path, r1), 0);
    free(tu_write(f->dir, "b.csv", HEADER));
    create(f, "csv", 400, 3);
    assert_int_equal(open_out(f), 6);
    free(r1);
}

/* A write that fails half-way (here: EFBIG past RLIMIT_FSIZE, as a full disk
 * would) leaves no partial batch behind, and the retry writes it whole. */
static void failed_write_leaves_no_partial_batch(void **state)
{
    struct fixture *f = *state;
    struct rlimit old, lim;
    int64_t seqs[64];

    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 3), 0);
    size_t before = 0;
    char *good = tu_read(f->path, &before);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = before + 300; /* room for about two of the next ten lines */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = deliver(f, 4, 13);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    assert_int_equal(rc, -EAGAIN);
    assert_non_null(strstr(f->res.error, "File too large"));
    size_t after = 0;
    char *t = tu_read(f->path, &after);
    assert_int_equal(after, before);
    assert_memory_equal(t, good, before);
    free(t);
    free(good);

    assert_int_equal(deliver(f, 4, 13), 0);
    assert_int_equal(seqs_of(f->path, seqs, 64), 13);
    for (int i = 0; i < 13; i++)
        assert_int_equal(seqs[i], i + 1);
}

static void failed_header_write_is_retried_whole(void **state)
{
    struct fixture *f = *state;
    struct rlimit old, lim;
    free(f->path);
    f->path = tu_path(f->dir, "h.csv");
    create(f, "csv", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 20; /* not even the header fits */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = deliver(f, 1, 2);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -EAGAIN);
    size_t len = 99;
    free(tu_read(f->path, &len));
    assert_int_equal(len, 0);
    assert_int_equal(deliver(f, 1, 2), 0);
    char *t = slurp(f->path);
    assert_true(strncmp(t, "seq,gen,ts,", 11) == 0);
    assert_null(strstr(t + 1, "seq,gen,ts,"));
    assert_int_equal(count_lines(t), 3);
    free(t);
}

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

/* open() that fails after opening the file (here: a last line longer than
 * it reads back) is retried by the framework: no descriptor may leak. */
static void failed_open_does_not_leak(void **state)
{
    struct fixture *f = *state;
    size_t big = 70000;
    char *line = malloc(big + 1);
    memset(line, 'x', big);
    line[big] = 0;
    free(f->path);
    f->path = tu_write(f->dir, "long.jsonl", line);
    free(line);
    create(f, "jsonl", 0, 5);
    int fds = count_fds();
    for (int i = 0; i < 3; i++) {
        struct mt_have h = {-1, -1, -1};
        memset(&f->res, 0, sizeof(f->res));
        assert_int_equal(mt_output_file.open(f->state, &h, &f->res), -EAGAIN);
        assert_non_null(strstr(f->res.error, "longer than"));
    }
    assert_int_equal(count_fds(), fds);
}

/* The generation comes back with the seq: the framework trusts a seq only
 * from its own log. Files written before generations give 0 and their ts. */
static void open_reports_the_generation(void **state)
{
    struct fixture *f = *state;
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 3), 0);
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 3);
    assert_int_equal(f->have_gen, 1764084344123456);
    /* a line of the old format */
    free(f->path);
    f->path = tu_write(f->dir, "old.jsonl",
                       "{\"seq\":9,\"ts\":\"2025-11-25T15:25:44.000009Z\",\"site\":\"s\"}\n");
    create(f, "jsonl", 0, 5);
    struct mt_have h = {-1, -1, -1};
    assert_int_equal(mt_output_file.open(f->state, &h, &f->res), 0);
    assert_int_equal(h.seq, 9);
    assert_int_equal(h.gen, 0);
    assert_int_equal(h.ts, 1764084344000009);
    /* CSV, old and new */
    free(f->path);
    f->path = tu_write(f->dir, "old.csv",
                       "seq,ts,site\n12,2025-11-25T15:25:44.000012Z,s\n");
    create(f, "csv", 0, 5);
    assert_int_equal(mt_output_file.open(f->state, &h, &f->res), 0);
    assert_int_equal(h.seq, 12);
    assert_int_equal(h.gen, 0);
    assert_int_equal(h.ts, 1764084344000012);
    free(f->path);
    f->path = tu_write(f->dir, "new.csv", HEADER "12,77,2025-11-25T15:25:44.000012Z,s\n");
    create(f, "csv", 0, 5);
    assert_int_equal(mt_output_file.open(f->state, &h, &f->res), 0);
    assert_int_equal(h.seq, 12);
    assert_int_equal(h.gen, 77);
    assert_int_equal(h.ts, 1764084344000012);
}

/* Issue 8 (3): a file deleted to free disk space, or moved away by
 * logrotate, is not written to any more: the next batch goes into a new file
 * at the path. The old code kept appending to the unlinked inode. */
static void deleted_file_is_reopened(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[16];
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 3), 0);
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(deliver(f, 4, 5), 0);
    assert_true(exists(f->path));
    int n = seqs_of(f->path, seqs, 16);
    assert_int_equal(n, 2);
    assert_int_equal(seqs[0], 4);
    assert_int_equal(seqs[1], 5);
}

static void rotated_away_file_is_reopened(void **state)
{
    struct fixture *f = *state;
    int64_t seqs[16];
    char *moved = rotated(f, 9);
    create(f, "jsonl", 0, 5);
    assert_int_equal(open_out(f), 0);
    assert_int_equal(deliver(f, 1, 3), 0);
    assert_int_equal(rename(f->path, moved), 0); /* logrotate's rename */
    assert_int_equal(deliver(f, 4, 6), 0);
    assert_int_equal(seqs_of(moved, seqs, 16), 3); /* nothing more went there */
    int n = seqs_of(f->path, seqs, 16);
    assert_int_equal(n, 3);
    assert_int_equal(seqs[0], 4);
    free(moved);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(deleted_file_is_reopened),
        T(rotated_away_file_is_reopened),
        T(jsonl_contents),
        T(csv_contents_header_once),
        T(rotation_keeps_max_files),
        T(rotation_csv_header_in_each_file),
        T(big_batch_is_not_split),
        T(open_reports_have_seq),
        T(open_reports_the_generation),
        T(open_cuts_a_partial_last_line),
        T(open_of_a_lone_partial_line),
        T(have_seq_from_rotated_file),
        T(failed_write_leaves_no_partial_batch),
        T(failed_header_write_is_retried_whole),
        T(failed_open_does_not_leak),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
