/*
 * conf: see conf.h. The checks are written once and report to either the
 * agent's checker or the instance's log (struct mb_report).
 */
#include "conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cfg_error(struct mb_report *rp, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_error(struct mb_report *rp, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (rp->chk)
        rp->chk->error(rp->chk, path, "%s", msg);
    else if (rp->h)
        rp->h->log(rp->ctx, MITTARI_LOG_ERR, "%s", msg);
    rp->n++;
    return MITTARI_ECONFIG;
}

static bool valid_name(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == ':' || *s == '-'))
            return false;
    return n > 0 && n <= 63;
}

/* Modbus over Serial Line 1.02, 2.5.1.1: a frame ends after 3.5 character
 * times of silence; above 19200 baud a fixed 1.75 ms. */
int64_t mb_frame_delay_us(int64_t baud, int64_t data_bits, int parity, int64_t stop_bits)
{
    int64_t bits = 1 + data_bits + (parity != MB_PARITY_NONE) + stop_bits;
    if (baud <= 0 || baud > 19200)
        return 1750;
    return (bits * 3500000 + baud - 1) / baud;
}

int mb_conf_order(const struct mb_dev_conf *d, const struct mb_reg_conf *r)
{
    /* r->order 0 = the device's order (ABCD...), else enum mbd_order + 1 */
    return r->order ? r->order - 1 : mbd_order_for(r->type, d->order + MBD_ABCD);
}

bool mb_conf_same_link(const struct mb_dev_conf *a, const struct mb_dev_conf *b)
{
    if (a->serial || b->serial)
        return a->serial && b->serial && strcmp(a->serial, b->serial) == 0;
    return a->host && b->host && strcmp(a->host, b->host) == 0 && a->port == b->port;
}

static const char *const fn_names[] = {"holding", "input", "coil", "discrete"};

static int check_reg(struct mb_report *rp, const struct mb_dev_conf *d, size_t di, size_t i)
{
    const struct mb_reg_conf *r = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, i);
    int order = mb_conf_order(d, r);
    char p[96], pk[112];
    snprintf(p, sizeof(p), "devices[%zu].registers[%zu]", di, i);
#define AT(key) (snprintf(pk, sizeof(pk), "%s.%s", p, key), pk)
    bool bitfn = r->function == MBD_FN_COIL || r->function == MBD_FN_DISCRETE;
    static const char *const tn[] = {"u16", "i16", "u32", "i32", "u64", "f32", "f64"};
    static const char *const on[] = {"AB", "BA", "ABCD", "CDAB", "BADC", "DCBA"};

    if (!valid_name(r->metric))
        return cfg_error(rp, AT("metric"),
                         "device %s, register %zu: metric '%s' must be 1-63 of "
                         "A-Z a-z 0-9 _ . : -",
                         d->name, i + 1, r->metric ? r->metric : "");
    if (bitfn && (r->type != MBD_U16 || r->kind != MB_KIND_GAUGE))
        return cfg_error(rp, AT("type"),
                         "device %s, register %s: a %s is one bit: type u16, "
                         "kind gauge",
                         d->name, r->metric, fn_names[r->function]);
    if (!bitfn && !mbd_order_fits(r->type, order))
        return cfg_error(rp, AT("order"),
                         "device %s, register %s: order %s does not fit type %s "
                         "(AB or BA for 16-bit types, ABCD, CDAB, BADC or DCBA for 32- and 64-bit "
                         "ones)",
                         d->name, r->metric, on[order], tn[r->type]);
    if (r->address + mbd_words(r->type) > 65536)
        return cfg_error(rp, AT("address"),
                         "device %s, register %s: address %lld + %u registers "
                         "is past 65535",
                         d->name, r->metric, (long long)r->address, mbd_words(r->type));
    if (r->kind == MB_KIND_CUMULATIVE && (!mbd_bits(r->type) || r->scale != 1 || r->offset != 0))
        return cfg_error(rp, AT("kind"),
                         "device %s, register %s: a cumulative counter is u16, "
                         "u32 or u64, without scale or offset (the agent turns it into deltas)",
                         d->name, r->metric);
    if (r->reset_after_read && r->kind == MB_KIND_CUMULATIVE)
        return cfg_error(rp, AT("reset_after_read"),
                         "device %s, register %s: a counter cleared "
                         "after each read is kind delta, not cumulative",
                         d->name, r->metric);
    if (r->reset_after_read && r->kind == MB_KIND_DELTA && mbd_bits(r->type) == 0)
        return cfg_error(rp, AT("type"),
                         "device %s, register %s: a cleared counter is u16, u32 "
                         "or u64",
                         d->name, r->metric);
#undef AT
    return 0;
}

/* Issue 8, section 5: two registers of one device with one metric feed one
 * series (site, device, metric, tags): a counter would take both devices'
 * values in turn and count the difference each time. Both are reported, so
 * the user sees the file:line of each. */
static int check_metrics(struct mb_report *rp, const struct mb_dev_conf *d, size_t di)
{
    int bad = 0;
    char p[112];
    for (size_t i = 0; i < d->registers.n; i++) {
        const struct mb_reg_conf *a = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, i);
        for (size_t j = 0; j < d->registers.n && a->metric; j++) {
            const struct mb_reg_conf *b = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, j);
            if (j == i || !b->metric || strcmp(a->metric, b->metric))
                continue;
            snprintf(p, sizeof(p), "devices[%zu].registers[%zu].metric", di, i);
            bad = cfg_error(rp, p,
                            "device %s: registers %zu and %zu both give metric %s, so "
                            "they would feed one series; give each register its own metric",
                            d->name, i < j ? i + 1 : j + 1, i < j ? j + 1 : i + 1, a->metric);
            break; /* each register reported once */
        }
    }
    return bad;
}

int mb_conf_plan(struct mb_report *rp, const struct mb_dev_conf *d, size_t di, struct mb_slot *regs,
                 struct mbd_request *reqs)
{
    size_t n = d->registers.n;
    struct mbd_item *items = calloc(n ? n : 1, sizeof(*items));
    size_t *req_of = calloc(n ? n : 1, sizeof(*req_of));
    int rc = -ENOMEM;

    if (!items || !req_of)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const struct mb_reg_conf *r = MITTARI_LIST_ITEM(&d->registers, struct mb_reg_conf, i);
        bool bitfn = r->function == MBD_FN_COIL || r->function == MBD_FN_DISCRETE;
        if ((rc = check_reg(rp, d, di, i)))
            goto out;
        items[i] =
            (struct mbd_item){r->function, (uint32_t)r->address, bitfn ? 1 : mbd_words(r->type)};
    }
    if ((rc = check_metrics(rp, d, di)))
        goto out;
    rc = mbd_plan(items, n, (unsigned)d->max_registers, (unsigned)d->max_bits,
                  (unsigned)d->merge_gap, reqs, req_of);
    if (rc < 0) {
        char p[48];
        snprintf(p, sizeof(p), "devices[%zu].registers", di);
        rc = cfg_error(rp, p,
                       "device %s: the register map does not fit in requests of "
                       "max_registers %lld",
                       d->name, (long long)d->max_registers);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        regs[i].req = req_of[i];
        regs[i].off = items[i].address - reqs[req_of[i]].address;
    }
out:
    free(items);
    free(req_of);
    return rc;
}

static int check_dev(struct mb_report *rp, const struct mb_dev_conf *d, size_t di)
{
    char p[48], pk[64];
    snprintf(p, sizeof(p), "devices[%zu]", di);
#define AT(key) (snprintf(pk, sizeof(pk), "%s.%s", p, key), pk)
    if (!valid_name(d->name))
        return cfg_error(rp, AT("name"), "device name '%s' must be 1-63 of A-Z a-z 0-9 _ . : -",
                         d->name ? d->name : "");
    if (!d->host == !d->serial)
        return cfg_error(rp, p, "device %s: give either host (Modbus TCP) or serial (Modbus RTU)",
                         d->name);
    /* libmodbus refuses an empty serial path at create; an empty host never
     * resolves */
    if (d->host && !*d->host)
        return cfg_error(rp, AT("host"), "device %s: host is empty", d->name);
    if (d->serial && !*d->serial)
        return cfg_error(rp, AT("serial"), "device %s: serial is empty", d->name);
    if (d->serial && (d->unit < 1 || d->unit > 247))
        return cfg_error(rp, AT("unit"), "device %s: an RTU unit id is 1 to 247", d->name);
    if (d->registers.n == 0)
        return cfg_error(rp, p, "device %s: no registers (give registers or a profile)", d->name);
#undef AT
    return 0;
}

/* b (devices[bi]) shares a's connection */
static int check_bus(struct mb_report *rp, const struct mb_dev_conf *a, const struct mb_dev_conf *b,
                     size_t bi)
{
    char p[48];
    snprintf(p, sizeof(p), "devices[%zu]", bi);
    if (a->unit == b->unit)
        return cfg_error(rp, p, "devices %s and %s share a connection and unit id %lld", a->name,
                         b->name, (long long)a->unit);
    if (a->serial && (a->baud != b->baud || a->parity != b->parity ||
                      a->data_bits != b->data_bits || a->stop_bits != b->stop_bits ||
                      a->rs485 != b->rs485 || a->frame_delay_ms != b->frame_delay_ms))
        return cfg_error(rp, p,
                         "devices %s and %s share a serial port but not its line settings "
                         "(baud, parity, data_bits, stop_bits, rs485, frame_delay)",
                         a->name, b->name);
    return 0;
}

/* Every device on its own and the names across them; reports them all. */
static int check_devices(struct mb_report *rp, const struct mb_conf *c)
{
    int bad = 0;
    char p[48];
    for (size_t i = 0; i < c->devices.n; i++) {
        const struct mb_dev_conf *a = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, i);
        bad |= check_dev(rp, a, i) != 0;
        for (size_t j = 0; j < i; j++) {
            const struct mb_dev_conf *b = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j);
            if (a->name && b->name && !strcmp(a->name, b->name)) {
                snprintf(p, sizeof(p), "devices[%zu].name", i);
                bad |= cfg_error(rp, p, "device name %s is used twice", a->name) != 0;
            }
        }
    }
    return bad ? MITTARI_ECONFIG : 0;
}

int mb_conf_check(struct mb_report *rp, const struct mb_conf *c)
{
    int bad = 0;
    if (check_devices(rp, c))
        return MITTARI_ECONFIG;
    for (size_t i = 0; i < c->devices.n; i++) {
        const struct mb_dev_conf *a = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, i);
        size_t n = a->registers.n;
        struct mb_slot *regs = calloc(n, sizeof(*regs));
        struct mbd_request *reqs = calloc(n, sizeof(*reqs));
        int rc = regs && reqs ? mb_conf_plan(rp, a, i, regs, reqs) : -ENOMEM;
        free(regs);
        free(reqs);
        if (rc == -ENOMEM)
            return rc;
        bad |= rc < 0;
        for (size_t j = 0; j < i; j++) {
            const struct mb_dev_conf *b = MITTARI_LIST_ITEM(&c->devices, struct mb_dev_conf, j);
            if (mb_conf_same_link(b, a))
                bad |= check_bus(rp, b, a, i) != 0;
        }
    }
    return bad ? MITTARI_ECONFIG : 0;
}

int mb_check(const struct mb_conf *c, const struct mittari_checker *chk)
{
    struct mb_report rp = {.chk = chk};
    mb_conf_check(&rp, c);
    return rp.n;
}
