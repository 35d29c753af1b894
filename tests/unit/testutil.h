/*
 * testutil: helpers for the cmocka unit tests: private temporary
 * directories, writing files, capturing the agent's log lines, running a
 * loop until a condition holds (with a timeout, so a test fails instead of
 * hanging).
 */
#ifndef MT_TESTUTIL_H
#define MT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <uv.h>

/* mkdtemp under $TMPDIR or /tmp; removed (recursively) by tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *path);
/* Writes text to dir/name (mode 0644); returns the malloc'ed path. */
char *tu_write(const char *dir, const char *name, const char *text);
char *tu_path(const char *dir, const char *name);
/* Reads a whole file, or NULL. */
char *tu_read(const char *path, size_t *len);

/* Captures agent log lines in memory while active. */
void tu_capture_start(void);
void tu_capture_stop(void);
bool tu_captured(const char *needle); /* some captured line contains needle */
const char *tu_captured_all(void);

/* A config struct filled from YAML flow text ("{path: /x, fsync: false}")
 * through the real option machinery; fails the test on any problem. Free it
 * with tu_options_free. */
struct mittari_option;
void *tu_options(const struct mittari_option *table, size_t conf_size, const char *yaml);
void tu_options_free(void *conf);

/* Runs the loop until pred(arg) is true or timeout_ms passes. */
bool tu_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, int timeout_ms);

#endif
