/*
 * modbus: polls Modbus TCP and RTU devices (people counters, pulse counter
 * modules) with a register map per device in YAML.
 *
 * Owns the option tables and one instance's links (link.h), and drives
 * them: TCP links on the loop from one timer per instance (the polls due in
 * one grid step share a wake; the sockets are the links' own fd watches),
 * RTU links (libmodbus, blocking) each as a host->poll_start work on a
 * worker. Decoding is decode.h's, not libmodbus's (see there why).
 *
 * Threads: create/start/stop/destroy, the timers and the TCP links on the
 * loop; the RTU polls and host-name lookups on workers. A failing device is
 * counted and reported with host->set_health; it never stops the others. No
 * globals: a plugin configured twice runs twice.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <mittari/mittari.h>

#include "conf.h"
#include "decode.h"
#include "link.h"

static const char *const functions[] = {"holding", "input", "coil", "discrete", NULL};
static const char *const types[] = {"u16", "i16", "u32", "i32", "u64", "f32", "f64", NULL};
static const char *const reg_orders[] = {"device", "AB", "BA", "ABCD", "CDAB", "BADC", "DCBA", NULL};
static const char *const dev_orders[] = {"ABCD", "CDAB", "BADC", "DCBA", NULL};
static const char *const kinds[] = {"gauge", "cumulative", "delta", NULL};
static const char *const reset_functions[] = {"coil", "holding", NULL};
static const char *const parities[] = {"none", "even", "odd", NULL};

#define R(f) offsetof(struct mb_reg_conf, f)
static const struct mittari_option reg_options[] = {
    {.name = "metric", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED,
     .offset = R(metric), .help = "Metric name of the reading, e.g. visitors_in."},
    {.name = "function", .type = MITTARI_OPT_ENUM, .def = "holding", .values = functions,
     .offset = R(function),
     .help = "Register table: holding (FC03), input (FC04), coil (FC01), discrete (FC02)."},
    {.name = "address", .type = MITTARI_OPT_INT, .flags = MITTARI_OPT_REQUIRED, .min = 0,
     .max = 65535, .offset = R(address),
     .help = "0-based protocol address (Modicon 40001 = holding 0, 30001 = input 0)."},
    {.name = "type", .type = MITTARI_OPT_ENUM, .def = "u16", .values = types, .offset = R(type),
     .help = "Value type; 32-bit types take 2 registers, 64-bit 4. Coils and discrete: u16."},
    {.name = "order", .type = MITTARI_OPT_ENUM, .def = "device", .values = reg_orders,
     .offset = R(order),
     .help = "Byte order on the wire: AB, BA (16-bit); ABCD, CDAB, BADC, DCBA (32/64-bit); "
             "device = the device's order."},
    {.name = "scale", .type = MITTARI_OPT_DOUBLE, .def = "1", .offset = R(scale),
     .help = "Gauge and delta: value = raw * scale + offset."},
    {.name = "offset", .type = MITTARI_OPT_DOUBLE, .def = "0", .offset = R(offset),
     .help = "Added after scale."},
    {.name = "unit", .type = MITTARI_OPT_STRING, .offset = R(unit),
     .help = "Unit of the reading, e.g. persons, degC."},
    {.name = "kind", .type = MITTARI_OPT_ENUM, .def = "gauge", .values = kinds, .offset = R(kind),
     .help = "cumulative: a device counter (u16/u32/u64; the agent makes deltas, handles wrap "
             "and resets); gauge: a level; delta: a count since the last read."},
    {.name = "reset_after_read", .type = MITTARI_OPT_BOOL, .def = "false",
     .offset = R(reset_after_read),
     .help = "Write reset_value to reset_address after each successful read (kind delta)."},
    {.name = "reset_function", .type = MITTARI_OPT_ENUM, .def = "coil", .values = reset_functions,
     .offset = R(reset_function), .help = "What clears the counter: a coil (FC05) or a "
                                           "holding register (FC06)."},
    {.name = "reset_address", .type = MITTARI_OPT_INT, .def = "0", .min = 0, .max = 65535,
     .offset = R(reset_address), .help = "0-based address of the clearing coil or register."},
    {.name = "reset_value", .type = MITTARI_OPT_INT, .def = "1", .min = 0, .max = 65535,
     .offset = R(reset_value), .help = "Value written to clear (a coil: 0 = off, else on)."},
    {0},
};

#define D(f) offsetof(struct mb_dev_conf, f)
static const struct mittari_option dev_options[] = {
    {.name = "name", .type = MITTARI_OPT_STRING, .flags = MITTARI_OPT_REQUIRED, .offset = D(name),
     .help = "Device name in readings, health and counters."},
    {.name = "host", .type = MITTARI_OPT_STRING, .offset = D(host),
     .help = "Modbus TCP: host name or address (give host or serial)."},
    {.name = "port", .type = MITTARI_OPT_INT, .def = "502", .min = 1, .max = 65535,
     .offset = D(port), .help = "Modbus TCP port."},
    {.name = "serial", .type = MITTARI_OPT_STRING, .offset = D(serial),
     .help = "Modbus RTU: serial device (/dev/serial/by-id/...); devices on one port form a bus."},
    {.name = "baud", .type = MITTARI_OPT_INT, .def = "9600", .min = 300, .max = 921600,
     .offset = D(baud), .help = "RTU baud rate."},
    {.name = "parity", .type = MITTARI_OPT_ENUM, .def = "even", .values = parities,
     .offset = D(parity), .help = "RTU parity (the Modbus serial default is even)."},
    {.name = "data_bits", .type = MITTARI_OPT_INT, .def = "8", .min = 7, .max = 8,
     .offset = D(data_bits), .help = "RTU data bits."},
    {.name = "stop_bits", .type = MITTARI_OPT_INT, .def = "1", .min = 1, .max = 2,
     .offset = D(stop_bits), .help = "RTU stop bits."},
    {.name = "rs485", .type = MITTARI_OPT_BOOL, .def = "false", .offset = D(rs485),
     .help = "Switch the adapter to RS-485 mode (TIOCSRS485) where it needs it."},
    {.name = "frame_delay", .type = MITTARI_OPT_DURATION, .def = "0", .min = 0, .max = 1000,
     .offset = D(frame_delay_ms),
     .help = "RTU silence between frames on the bus; 0 = t3.5 from the line settings."},
    {.name = "unit", .type = MITTARI_OPT_INT, .def = "1", .min = 0, .max = 255, .offset = D(unit),
     .help = "Unit id (slave address): RTU 1-247; TCP often 1 or 255."},
    {.name = "order", .type = MITTARI_OPT_ENUM, .def = "ABCD", .values = dev_orders,
     .offset = D(order),
     .help = "Default order of the device's registers (16-bit ones take its byte order)."},
    {.name = "poll_interval", .type = MITTARI_OPT_DURATION, .def = "1s", .min = 50,
     .max = 3600000, .offset = D(poll_ms), .help = "How often the device is read."},
    {.name = "response_timeout", .type = MITTARI_OPT_DURATION, .def = "500ms", .min = 10,
     .max = 60000, .offset = D(response_timeout_ms), .help = "Wait for an answer."},
    {.name = "connect_timeout", .type = MITTARI_OPT_DURATION, .def = "3s", .min = 10,
     .max = 60000, .offset = D(connect_timeout_ms), .help = "Wait for a TCP connection."},
    {.name = "backoff_max", .type = MITTARI_OPT_DURATION, .def = "1m", .min = 100,
     .max = 3600000, .offset = D(backoff_max_ms),
     .help = "Longest wait between attempts to reach a device that is down."},
    {.name = "down_after", .type = MITTARI_OPT_INT, .def = "3", .min = 1, .max = 1000,
     .offset = D(down_after), .help = "Failed polls in a row before the device counts as down."},
    {.name = "max_registers", .type = MITTARI_OPT_INT, .def = "125", .min = 1, .max = 125,
     .offset = D(max_registers), .help = "Most registers one request reads (device limit)."},
    {.name = "max_bits", .type = MITTARI_OPT_INT, .def = "2000", .min = 1, .max = 2000,
     .offset = D(max_bits), .help = "Most coils or discrete inputs one request reads."},
    {.name = "merge_gap", .type = MITTARI_OPT_INT, .def = "0", .min = 0, .max = 124,
     .offset = D(merge_gap),
     .help = "Unused registers a request may span to merge two reads into one."},
    {.name = "registers", .type = MITTARI_OPT_LIST, .min = 1, .max = 1024,
     .offset = D(registers), .sub = reg_options, .sub_size = sizeof(struct mb_reg_conf),
     .help = "The register map (usually from a profile)."},
    {0},
};

static const struct mittari_option options[] = {
    {.name = "devices", .type = MITTARI_OPT_LIST, .flags = MITTARI_OPT_REQUIRED, .min = 1,
     .max = 4096, .offset = offsetof(struct mb_conf, devices), .sub = dev_options,
     .sub_size = sizeof(struct mb_dev_conf),
     .help = "Modbus devices; `profile: NAME` takes conf.d/profiles/NAME.yaml."},
    {0},
};

struct slot {
    struct mb *m;
    size_t i;
};

struct mb {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    struct mb_link **links;
    size_t nlinks;
    /* RTU links: a worker poll each, started spread over the first tick */
    struct slot *slots;
    struct mittari_poll **polls;
    struct mittari_timer **starts;
    /* TCP links: one timer for all of them, at the earliest time one needs */
    struct mittari_timer *timer;
    int64_t timer_at, grid_us;
    bool sweeping, stopped;
};

static void mb_destroy(void *state);

static int mb_create(const struct mittari_host *h, struct mittari_ctx *ctx, const void *config,
                     void **state)
{
    struct mb *m = calloc(1, sizeof(*m));
    int rc;

    if (!m)
        return -ENOMEM;
    m->h = h;
    m->ctx = ctx;
    rc = mb_links_build(h, ctx, config, &m->links, &m->nlinks);
    if (rc) {
        free(m);
        return rc;
    }
    m->slots = calloc(m->nlinks, sizeof(*m->slots));
    m->polls = calloc(m->nlinks, sizeof(*m->polls));
    m->starts = calloc(m->nlinks, sizeof(*m->starts));
    if (!m->slots || !m->polls || !m->starts) {
        mb_destroy(m); /* the agent calls destroy only after a create that succeeded */
        return -ENOMEM;
    }
    *state = m;
    return 0;
}

/* ---- TCP: one timer ---- */

static void on_timer(void *arg);

/* Makes the timer fire at `at` unless it fires earlier already. */
static void arm(struct mb *m, int64_t at, int64_t now)
{
    if (at == INT64_MAX || (m->timer && at >= m->timer_at))
        return;
    if (m->timer)
        m->h->timer_stop(m->timer);
    m->timer = NULL;
    uint64_t ms = at > now ? (uint64_t)(at - now + 999) / 1000 : 0;
    if (m->h->timer_start(m->ctx, ms, 0, on_timer, m, &m->timer) == 0)
        m->timer_at = at;
    else
        m->h->log(m->ctx, MITTARI_LOG_ERR, "cannot start the poll timer: TCP devices stop polling");
}

/* A link needs a tick earlier than planned (a request went out). */
static void resched(void *arg, int64_t at)
{
    struct mb *m = arg;
    if (!m->sweeping && !m->stopped)
        arm(m, at, mb_mono_us(NULL));
}

/* Every link whose time has come, then the timer for the earliest next. */
static void on_timer(void *arg)
{
    struct mb *m = arg;
    int64_t now = mb_mono_us(NULL), next = INT64_MAX;

    m->h->timer_stop(m->timer);
    m->timer = NULL;
    m->sweeping = true;
    for (size_t i = 0; i < m->nlinks; i++) {
        struct mb_link *l = m->links[i];
        if (mb_link_is_rtu(l))
            continue;
        int64_t t = mb_tcp_next(l);
        if (t <= now + m->grid_us / 2) {
            mb_tcp_tick(l, now);
            t = mb_tcp_next(l);
        }
        next = t < next ? t : next;
    }
    m->sweeping = false;
    arm(m, next, now);
}

/* ---- RTU: worker polls ---- */

static void begin_poll(void *arg)
{
    struct slot *s = arg;
    struct mb *m = s->m;
    struct mb_link *l = m->links[s->i];

    m->h->timer_stop(m->starts[s->i]);
    m->starts[s->i] = NULL;
    int rc = m->h->poll_start(m->ctx, mb_link_tick_ms(l), mb_link_run, NULL, l, &m->polls[s->i]);
    if (rc)
        m->h->log(m->ctx, MITTARI_LOG_ERR, "cannot start polling: %d", rc);
}

/* RTU links start spread over their first tick; TCP devices are spread over
 * their interval on the grid (mb_tcp_plan). */
static int mb_start(void *state)
{
    struct mb *m = state;
    int64_t now = mb_mono_us(NULL);
    size_t nrtu = 0, k = 0;
    bool tcp = false;

    mb_tcp_plan(m->links, m->nlinks, now);
    for (size_t i = 0; i < m->nlinks; i++) {
        if (mb_link_is_rtu(m->links[i])) {
            nrtu++;
            continue;
        }
        mb_tcp_set_resched(m->links[i], resched, m);
        m->grid_us = mb_tcp_grid_us(m->links[i]);
        tcp = true;
    }
    for (size_t i = 0; i < m->nlinks; i++) {
        if (!mb_link_is_rtu(m->links[i]))
            continue;
        uint64_t offset = mb_link_tick_ms(m->links[i]) * k++ / nrtu;
        m->slots[i] = (struct slot){m, i};
        int rc = m->h->timer_start(m->ctx, offset, 0, begin_poll, &m->slots[i], &m->starts[i]);
        if (rc)
            return rc;
    }
    if (tcp)
        arm(m, now, now);
    return 0;
}

static void mb_stop(void *state)
{
    struct mb *m = state;
    m->stopped = true;
    if (m->timer)
        m->h->timer_stop(m->timer);
    m->timer = NULL;
    for (size_t i = 0; i < m->nlinks; i++) {
        if (m->starts[i])
            m->h->timer_stop(m->starts[i]);
        if (m->polls[i])
            m->h->poll_stop(m->polls[i]);
        m->starts[i] = NULL;
        m->polls[i] = NULL;
        if (!mb_link_is_rtu(m->links[i]))
            mb_tcp_stop(m->links[i]);
    }
}

static void mb_destroy(void *state)
{
    struct mb *m = state;
    for (size_t i = 0; i < m->nlinks; i++)
        mb_link_free(m->links[i]);
    free(m->links);
    free(m->slots);
    free(m->polls);
    free(m->starts);
    free(m);
}

static int mb_check_conf(const void *config, const struct mittari_checker *chk)
{
    return mb_check(config, chk);
}

static const struct mittari_plugin modbus_plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "modbus",
    .version = "1.0",
    .description = "Modbus TCP and RTU devices (people counters, counter modules) with register "
                   "maps and profiles",
    .options = options,
    .config_size = sizeof(struct mb_conf),
    .create = mb_create,
    .start = mb_start,
    .stop = mb_stop,
    .destroy = mb_destroy,
    .check = mb_check_conf,
};

MITTARI_PLUGIN_DEFINE(modbus_plugin)
