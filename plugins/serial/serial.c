/*
 * serial: readings from a device on a serial line (a people counter that
 * prints "IN=12 OUT=9", a sensor with its own line protocol). One port per
 * instance: bytes are cut into frames (lines, STX...ETX, fixed length),
 * each frame is decoded (key=value pairs, a field pattern, or a Lua
 * decoder run by the agent), and decoded values become readings as the
 * `values` list says.
 *
 * Owns the port (through devloop: non-blocking, watched on the loop,
 * reopened after an unplug), the framer, the compiled pattern or Lua
 * decoder. Everything runs on the loop thread, except a Lua decoder's
 * script: each frame is handed to the agent's decoder thread
 * (host->decoder_submit, ABI 1.1), so a slow script never holds the loop;
 * lua_done then runs on that thread and only counts (count is safe from
 * any thread). With an agent older than ABI 1.1 the frame is decoded on
 * the loop (decoder_run), as before.
 *
 * Never invents a reading: a frame that does not decode completely gives
 * none, and is counted (bad_frames) and logged at most once per
 * log_interval with how many were held back.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "devloop.h"
#include "frame.h"
#include "kv.h"
#include "mapping.h"
#include "pattern.h"
#include "ratelimit.h"
#include "serial.h"

enum framing { FR_LINE, FR_STXETX, FR_FIXED };
enum decoder { DEC_KV, DEC_PATTERN, DEC_LUA };

struct conf {
    struct mts_conf line;
    int framing;
    const char *delimiter;
    int64_t stx, etx;
    int64_t frame_length;
    const char *sync;
    int64_t max_frame;
    int decoder;
    const char *pattern;
    const char *lua;
    struct mittari_list values;
    const char *device;
    const char *command;
    int64_t command_ms;
    int64_t log_ms;
    bool log_frames;
    int64_t hold_ms;
};

static const char *const framings[] = {"line", "stxetx", "fixed", NULL};
static const char *const decoders[] = {"kv", "pattern", "lua", NULL};

static const struct mittari_option options[] = {
    MTS_OPTIONS(struct conf, line),
    {.name = "framing",
     .type = MITTARI_OPT_ENUM,
     .def = "line",
     .values = framings,
     .offset = offsetof(struct conf, framing),
     .help = "How frames are cut: line (delimiter), stxetx (STX ... ETX), fixed (length)."},
    {.name = "delimiter",
     .type = MITTARI_OPT_STRING,
     .def = "\\n",
     .offset = offsetof(struct conf, delimiter),
     .help = "line: end of a line, 1-8 bytes with escapes \\r \\n \\t \\xHH; with \\n a "
             "trailing \\r is dropped."},
    {.name = "stx",
     .type = MITTARI_OPT_INT,
     .def = "2",
     .min = 0,
     .max = 255,
     .offset = offsetof(struct conf, stx),
     .help = "stxetx: the start byte."},
    {.name = "etx",
     .type = MITTARI_OPT_INT,
     .def = "3",
     .min = 0,
     .max = 255,
     .offset = offsetof(struct conf, etx),
     .help = "stxetx: the end byte."},
    {.name = "frame_length",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .min = 0,
     .max = MTF_MAX_LEN,
     .offset = offsetof(struct conf, frame_length),
     .help = "fixed: bytes per frame."},
    {.name = "sync",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, sync),
     .help = "fixed: 1-4 bytes every frame starts with (escapes as in delimiter), to find the "
             "frames again after noise."},
    {.name = "max_frame_length",
     .type = MITTARI_OPT_INT,
     .def = "256",
     .min = 1,
     .max = MTF_MAX_LEN,
     .offset = offsetof(struct conf, max_frame),
     .help = "Longer frames are dropped and counted (overlong_frames)."},
    {.name = "decoder",
     .type = MITTARI_OPT_ENUM,
     .def = "kv",
     .values = decoders,
     .offset = offsetof(struct conf, decoder),
     .help = "kv (KEY=VALUE pairs), pattern (a regular expression), lua (a decode function)."},
    {.name = "pattern",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, pattern),
     .help = "pattern: POSIX extended regular expression matching the whole frame; groups "
             "(...) or (?<name>...) are the fields."},
    {.name = "lua",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_LUA_FILE,
     .offset = offsetof(struct conf, lua),
     .help = "lua: file defining decode(frame, ts), run in the agent's sandbox."},
    {.name = "values",
     .type = MITTARI_OPT_LIST,
     .min = 0,
     .max = MTM_MAX_OUT,
     .offset = offsetof(struct conf, values),
     .sub = mtm_value_options,
     .sub_size = sizeof(struct mtm_value),
     .help = "kv, pattern: which field becomes which reading."},
    {.name = "device",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, device),
     .help = "Device name of the readings and of the port's health; unset: the input's name."},
    {.name = "command",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct conf, command),
     .help = "Sent every command_interval while the port is open, for devices that answer a "
             "poll (escapes as in delimiter, e.g. \"gcounters\\r\")."},
    {.name = "command_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1s",
     .min = 100,
     .max = 86400000,
     .offset = offsetof(struct conf, command_ms),
     .help = "How often command is sent."},
    {.name = "log_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "1m",
     .min = 1000,
     .max = 86400000,
     .offset = offsetof(struct conf, log_ms),
     .help = "Bad frames are logged at most once per interval (all are counted)."},
    {.name = "log_frames",
     .type = MITTARI_OPT_BOOL,
     .def = "false",
     .offset = offsetof(struct conf, log_frames),
     .help = "Log the bytes of bad frames too (for setting a device up; never for card "
             "readers)."},
    {.name = "read_hold",
     .type = MITTARI_OPT_DURATION,
     .def = "50ms",
     .min = 0,
     .max = 1000,
     .offset = offsetof(struct conf, hold_ms),
     .help = "Bytes that come less than this after the last ones are read together once per "
             "hold, not line by line: one wake-up of the agent per hold at high rates; a frame "
             "then waits at most this long (less at high baud rates) before it is read and "
             "timestamped. 0 = read each frame as soon as it comes."},
    {0},
};

struct ser {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct conf *c;
    struct mts_port *port;
    struct mtf_framer *framer;
    struct mtf_stats seen; /* framer statistics already counted */
    struct mtp_pattern *pattern;
    struct mittari_decoder *lua;
    struct mtl *loop;
    struct mittari_timer *cmd_timer;
    uint8_t cmd[256];
    size_t cmd_len;
    struct mtr_limit bad_log, frame_log, drop_log;
    struct mtr_limit lua_drop_log;     /* the decoder thread's (lua_done) */
    int64_t last_ts;                   /* of the last frame (loop thread) */
    const struct mittari_checker *chk; /* set when only checking the configuration */
};

/* ---- complaints ---- */

static void bad_frame(struct ser *s, const char *why, const uint8_t *p, size_t len)
{
    char text[300] = "";

    s->h->count(s->ctx, s->c->device, "bad_frames", 1);
    if (s->c->log_frames)
        mtf_escape(p, len, text, sizeof(text));
    mtr_log(&s->bad_log, s->h, s->ctx, MITTARI_LOG_WARNING, "bad frame (%zu bytes): %s%s%s%s", len,
            why, text[0] ? ": \"" : "", text, text[0] ? "\"" : "");
}

/* Over-long frames, frames cut short by a new STX and skipped bytes, from
 * the framer's statistics. */
static void count_framer(struct ser *s)
{
    const struct mtf_stats *st = mtf_stats(s->framer);
    uint64_t over = st->overlong - s->seen.overlong;
    uint64_t skipped = st->skipped_bytes - s->seen.skipped_bytes;
    uint64_t cut = st->cut - s->seen.cut;

    s->seen = *st;
    if (skipped)
        s->h->count(s->ctx, s->c->device, "skipped_bytes", skipped);
    if (cut) {
        s->h->count(s->ctx, s->c->device, "bad_frames", cut);
        mtr_log(&s->bad_log, s->h, s->ctx, MITTARI_LOG_WARNING,
                "bad frame: cut short by the next start byte (no end byte)");
    }
    if (!over)
        return;
    s->h->count(s->ctx, s->c->device, "overlong_frames", over);
    mtr_log(&s->frame_log, s->h, s->ctx, MITTARI_LOG_WARNING,
            "frame longer than %lld bytes dropped", (long long)s->c->max_frame);
}

/* ---- frames to readings ---- */

static void dropped(struct ser *s, struct mtr_limit *log)
{
    /* the agent is behind; a cumulative counter loses nothing, the next
     * sample carries the difference */
    s->h->count(s->ctx, s->c->device, "dropped_readings", 1);
    mtr_log(log, s->h, s->ctx, MITTARI_LOG_WARNING, "reading dropped: the agent's intake is full");
}

static void emit_all(struct ser *s, const struct mtm_out *out)
{
    for (size_t i = 0; i < out->n; i++) {
        int rc = s->h->emit(s->ctx, &out->r[i]);
        if (rc == -EAGAIN || rc == MITTARI_EFULL)
            dropped(s, &s->drop_log); /* MITTARI_EREADING: the agent logs and counts it */
    }
}

/* What decoding one frame gave. With decoder_submit: on the agent's decoder
 * thread, never after decoder_free returned. */
static void lua_done(void *arg, int rc)
{
    struct ser *s = arg;

    if (rc == 0)
        s->h->count(s->ctx, s->c->device, "ignored_frames", 1);
    else if (rc == MITTARI_EREADING) /* the agent logged why with file:line, rate-limited */
        s->h->count(s->ctx, s->c->device, "bad_frames", 1);
    else if (rc == -EAGAIN || rc == MITTARI_EFULL)
        dropped(s, &s->lua_drop_log);
}

static bool host_has_submit(const struct mittari_host *h)
{
    return h->size >= offsetof(struct mittari_host, decoder_submit) + sizeof(h->decoder_submit) &&
           h->decoder_submit;
}

static void run_lua(struct ser *s, const uint8_t *p, size_t len, int64_t ts)
{
    /* a frame the agent did not queue (paused decoder, full queue) is
     * counted and logged by the agent as decoder_skipped */
    if (host_has_submit(s->h))
        s->h->decoder_submit(s->lua, p, len, ts, lua_done, s);
    else
        lua_done(s, s->h->decoder_run(s->lua, p, len, ts));
}

static int decode_fields(struct ser *s, const uint8_t *p, size_t len, struct mtd_fields *fs,
                         const char **why)
{
    int rc;
    if (s->c->decoder == DEC_KV) {
        rc = mtk_parse(p, len, fs);
        *why = rc == -EEXIST  ? "kv: a key twice"
               : rc == -E2BIG ? "kv: too many pairs, or a key or value too long"
                              : "kv: not KEY=VALUE pairs";
    } else {
        rc = mtp_match(s->pattern, p, len, fs);
        *why = rc == -E2BIG ? "pattern: a field longer than 63 bytes"
                            : "pattern: the frame does not match";
    }
    return rc;
}

/* A frame's time: when it was read. Frames read together (a read hold,
 * or an adapter that hands over its buffer every few ms) are put a
 * microsecond apart at least, in their order: two values of one counter at
 * the very same time would be refused as two counters feeding one series
 * (issue 8 §5). A clock that stepped back by more than a millisecond is
 * taken as it is. */
static int64_t frame_ts(struct ser *s)
{
    int64_t ts = s->h->now(s->ctx);
    if (ts <= s->last_ts && s->last_ts - ts < 1000)
        ts = s->last_ts + 1;
    s->last_ts = ts;
    return ts;
}

static void on_frame(void *arg, const uint8_t *p, size_t len)
{
    struct ser *s = arg;
    int64_t ts = frame_ts(s);
    struct mtd_fields fs;
    struct mtm_out out;
    const char *why = NULL;
    char err[160];
    int rc;

    if (s->c->decoder == DEC_LUA) {
        run_lua(s, p, len, ts);
        return;
    }
    if (decode_fields(s, p, len, &fs, &why) < 0) {
        bad_frame(s, why, p, len);
        return;
    }
    rc = mtm_apply(&s->c->values, &fs, s->c->device, ts, &out, err, sizeof(err));
    if (rc < 0)
        bad_frame(s, err, p, len);
    else if (rc == 0)
        s->h->count(s->ctx, s->c->device, "ignored_frames", 1);
    else
        emit_all(s, &out);
}

/* ---- the port ---- */

static int port_open(void *arg, int *fd, char *note, size_t notelen, char *err, size_t errlen)
{
    struct ser *s = arg;
    int rc = mts_open(&s->port, &s->c->line, err, errlen);
    if (rc)
        return rc;
    *fd = mts_fd(s->port);
    if (mts_note(s->port))
        snprintf(note, notelen, "%s", mts_note(s->port));
    return 0;
}

static void port_close(void *arg)
{
    struct ser *s = arg;
    mts_close(s->port);
    s->port = NULL;
}

static void port_data(void *arg, const uint8_t *p, size_t n)
{
    struct ser *s = arg;
    mtf_feed(s->framer, p, n, on_frame, s);
    count_framer(s);
}

static void port_lost(void *arg)
{
    struct ser *s = arg;
    mtf_reset(s->framer); /* a frame cut by the unplug is no frame */
    count_framer(s);
}

static const struct mtl_ops port_ops = {
    .open = port_open, .close = port_close, .data = port_data, .lost = port_lost};

static void send_command(void *arg)
{
    struct ser *s = arg;
    if (!s->port)
        return;
    ssize_t n = mts_write(s->port, s->cmd, s->cmd_len);
    if (n != (ssize_t)s->cmd_len)
        s->h->count(s->ctx, s->c->device, "write_errors", 1);
}

/* ---- configuration ---- */

__attribute__((format(printf, 2, 3))) static int config_error(struct ser *s, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->chk)
        s->chk->error(s->chk, NULL, "%s", msg);
    else
        s->h->log(s->ctx, MITTARI_LOG_ERR, "%s", msg);
    return MITTARI_ECONFIG;
}

static int make_framer(struct ser *s)
{
    const struct conf *c = s->c;
    struct mtf_conf fc = {.mode = c->framing == FR_LINE     ? MTF_LINE
                                  : c->framing == FR_STXETX ? MTF_STXETX
                                                            : MTF_FIXED,
                          .stx = (uint8_t)c->stx,
                          .etx = (uint8_t)c->etx,
                          .max_len = (size_t)c->max_frame};
    int n;

    if (c->framing == FR_LINE) {
        n = mtf_unescape(c->delimiter, (uint8_t *)fc.delimiter, sizeof(fc.delimiter));
        if (n < 1)
            return config_error(s, "delimiter '%s': 1 to 8 bytes, escapes \\r \\n \\t \\xHH",
                                c->delimiter);
        fc.delimiter_len = (size_t)n;
    } else if (c->framing == FR_FIXED) {
        if (c->frame_length < 1)
            return config_error(s, "framing fixed needs frame_length");
        n = c->sync ? mtf_unescape(c->sync, fc.sync, sizeof(fc.sync)) : 0;
        if (n < 0 || n > c->frame_length || (c->sync && n == 0))
            return config_error(s, "sync '%s': 1 to 4 bytes, no longer than frame_length", c->sync);
        fc.sync_len = (size_t)n;
        fc.fixed_len = (size_t)c->frame_length;
        fc.max_len = 0;
    } else if (c->stx == c->etx) {
        return config_error(s, "stx and etx must differ");
    }
    return mtf_create(&s->framer, &fc) ? config_error(s, "framing settings out of range") : 0;
}

static int make_pattern(struct ser *s)
{
    const char *groups[MTP_MAX_GROUPS];
    char err[300];
    size_t n;

    if (!s->c->pattern)
        return config_error(s, "decoder pattern needs pattern");
    if (mtp_compile(&s->pattern, s->c->pattern, err, sizeof(err)))
        return config_error(s, "pattern: %s", err);
    n = mtp_groups(s->pattern);
    for (size_t i = 0; i < n; i++)
        groups[i] = mtp_group_name(s->pattern, i + 1);
    if (mtm_check(&s->c->values, groups, n, err, sizeof(err)))
        return config_error(s, "%s", err);
    return 0;
}

static bool host_has_decoders(const struct mittari_host *h)
{
    return h->size >= offsetof(struct mittari_host, decoder_free) + sizeof(h->decoder_free) &&
           h->decoder_load && h->decoder_run && h->decoder_free;
}

static int make_decoder(struct ser *s)
{
    const struct conf *c = s->c;
    char err[300];

    if (c->decoder != DEC_LUA && c->lua)
        return config_error(s, "lua is for decoder: lua");
    if (c->decoder == DEC_LUA) {
        if (!c->lua)
            return config_error(s, "decoder lua needs lua (the decoder file)");
        if (c->values.n)
            return config_error(s, "values are for the kv and pattern decoders; a Lua "
                                   "decoder returns its readings itself");
        if (s->chk) /* the agent compiles the file itself (MITTARI_OPT_LUA_FILE) */
            return 0;
        if (!host_has_decoders(s->h))
            return config_error(s, "this agent cannot run Lua decoders");
        int rc = s->h->decoder_load(s->ctx, c->lua, &s->lua);
        return rc ? config_error(s, "cannot load the Lua decoder %s", c->lua) : 0;
    }
    if (c->values.n == 0)
        return config_error(s, "values: at least one item for decoder %s", decoders[c->decoder]);
    if (c->decoder == DEC_PATTERN)
        return make_pattern(s);
    if (c->pattern)
        return config_error(s, "pattern is for decoder: pattern");
    if (mtm_check(&c->values, NULL, 0, err, sizeof(err)))
        return config_error(s, "%s", err);
    return 0;
}

static int make_command(struct ser *s)
{
    int n;
    if (!s->c->command)
        return 0;
    n = mtf_unescape(s->c->command, s->cmd, sizeof(s->cmd));
    if (n < 1)
        return config_error(s, "command: 1 to 256 bytes, escapes \\r \\n \\t \\xHH");
    s->cmd_len = (size_t)n;
    return 0;
}

/* The read hold in effect: at most what the option says, and short enough
 * that the bytes a hold lets pile up (at 10 bits per byte) stay under
 * HOLD_MAX_BYTES, far below the kernel's 4 KiB tty buffer (issue 14). */
#define HOLD_MAX_BYTES 1024

int64_t mtser_hold_ms(int64_t hold_ms, int64_t baud)
{
    int64_t cap = baud > 0 ? HOLD_MAX_BYTES * 10 * 1000 / baud : hold_ms;
    return hold_ms < cap ? hold_ms : cap;
}

/* ---- lifecycle ---- */

static void ser_destroy(void *state)
{
    struct ser *s = state;
    if (!s)
        return;
    mtl_free(s->loop);
    if (s->lua)
        s->h->decoder_free(s->lua);
    mtp_free(s->pattern);
    mtf_free(s->framer);
    free(s);
}

static int ser_create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *config,
                      void **state)
{
    const struct conf *c = config;
    struct ser *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return -ENOMEM;
    s->h = h;
    s->ctx = ctx;
    s->c = c;
    s->bad_log.interval_us = s->frame_log.interval_us = s->drop_log.interval_us =
        s->lua_drop_log.interval_us = c->log_ms * 1000;
    struct mtl_conf lc = {
        .device = c->device,
        .path = c->line.port,
        .reopen_ms = c->line.reopen_ms,
        .hold_ms = mtser_hold_ms(c->hold_ms, c->line.baud)};
    rc = make_framer(s);
    if (!rc)
        rc = make_decoder(s);
    if (!rc)
        rc = make_command(s);
    if (!rc)
        rc = mtl_create(&s->loop, h, ctx, &lc, &port_ops, s);
    if (rc) {
        ser_destroy(s);
        return rc;
    }
    *state = s;
    return 0;
}

/* mittari check: the same checks as create, without opening anything */
static int ser_check(const void *config, const struct mittari_checker *chk)
{
    struct ser s = {.c = config, .chk = chk};
    int rc = make_framer(&s);
    if (!rc)
        rc = make_decoder(&s);
    if (!rc)
        rc = make_command(&s);
    mtp_free(s.pattern);
    mtf_free(s.framer);
    return rc ? 1 : 0;
}

static int ser_start(void *state)
{
    struct ser *s = state;
    if (s->cmd_len) {
        int rc = s->h->timer_start(s->ctx, (uint64_t)s->c->command_ms, (uint64_t)s->c->command_ms,
                                   send_command, s, &s->cmd_timer);
        if (rc)
            return rc;
    }
    return mtl_start(s->loop);
}

static void ser_stop(void *state)
{
    struct ser *s = state;
    if (s->cmd_timer)
        s->h->timer_stop(s->cmd_timer);
    s->cmd_timer = NULL;
    mtl_stop(s->loop); /* releases the port: a reload can open it again */
}

static const struct mittari_plugin serial_plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "serial",
    .version = "1.0",
    .description = "A device on a serial port: lines or STX/ETX or fixed frames, decoded as "
                   "key=value, a pattern or Lua",
    .options = options,
    .config_size = sizeof(struct conf),
    .create = ser_create,
    .start = ser_start,
    .stop = ser_stop,
    .destroy = ser_destroy,
    .check = ser_check,
};

MITTARI_PLUGIN_DEFINE(serial_plugin)
