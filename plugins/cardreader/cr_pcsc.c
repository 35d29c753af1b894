/*
 * cr_pcsc: the PC/SC backend (pcsclite): contactless readers behind pcscd.
 * Finds the reader, notices a card put on it, reads the UID with the
 * standard GET DATA APDU (FF CA 00 00 00, PC/SC part 3) and hands the bytes
 * to cr_card in the space "iso14443".
 *
 * Threads: every pcsclite call blocks on pcscd's socket, so all of them run
 * in host->poll_start work on a worker, never on the loop. Each run asks
 * SCardGetStatusChange with a timeout of 0 (answer now: a change or
 * SCARD_E_TIMEOUT) instead of waiting inside pcscd: the workers are shared
 * with outputs and device polls, and a run that sat in a long wait would
 * hold one of them for good. A dedicated thread blocked in pcscd would
 * react a few ms sooner, but a card is on the reader for far longer than
 * poll_interval, and the agent already knows how to stop a poll (it waits
 * for the run in flight before destroy), which a private thread would have
 * to re-implement with SCardCancel and a join. Runs never overlap, so the
 * state below needs no lock; the loop only starts and stops the poll.
 *
 * Owns the PC/SC context (re-established when pcscd restarts) and the name
 * of the reader it follows. Reader gone: DOWN, then found again when it
 * (or pcscd) comes back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <winscard.h>

#include "cardreader.h"

#define RETRY_US 1000000 /* pcscd or the reader missing: ask again after this */

struct pc {
    struct cr *c;
    struct mittari_poll *poll;
    SCARDCONTEXT sc;
    bool have_sc;
    char reader[256]; /* "" = none bound */
    DWORD state;      /* the reader's state as last seen, for the next change */
    bool card_in;     /* the card on the reader was already read */
    int64_t retry_at;
};

static void down(struct pc *p, const char *fmt, const char *arg)
{
    char why[160];
    snprintf(why, sizeof(why), fmt, arg);
    cr_health(p->c, MITTARI_HEALTH_DOWN, why);
    p->retry_at = p->c->host->now(p->c->ctx) + RETRY_US;
}

static void drop_context(struct pc *p, LONG rv)
{
    if (p->have_sc)
        SCardReleaseContext(p->sc);
    p->have_sc = false;
    p->reader[0] = 0;
    p->card_in = false;
    down(p, "pcscd is not reachable: %s", pcsc_stringify_error(rv));
}

static bool service_gone(LONG rv)
{
    return rv == SCARD_E_NO_SERVICE || rv == SCARD_E_SERVICE_STOPPED ||
           rv == SCARD_E_INVALID_HANDLE || rv == SCARD_F_COMM_ERROR;
}

static int establish(struct pc *p)
{
    LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &p->sc);
    if (rv != SCARD_S_SUCCESS) {
        drop_context(p, rv);
        return -ENODEV;
    }
    p->have_sc = true;
    return 0;
}

/* The first reader whose name contains the configured text. */
static const char *pick(const struct pc *p, const char *list, DWORD len)
{
    const char *want = p->c->conf->reader;
    for (const char *r = list; r < list + len && *r; r += strlen(r) + 1)
        if (!want || strstr(r, want))
            return r;
    return NULL;
}

static int find_reader(struct pc *p)
{
    char list[4096];
    DWORD len = sizeof(list);
    LONG rv = SCardListReaders(p->sc, NULL, list, &len);
    const char *r;

    if (service_gone(rv)) {
        drop_context(p, rv);
        return -ENODEV;
    }
    r = rv == SCARD_S_SUCCESS ? pick(p, list, len) : NULL;
    if (!r) {
        down(p, "%s", p->c->conf->reader ? "no reader of that name" : "no reader");
        return -ENODEV;
    }
    snprintf(p->reader, sizeof(p->reader), "%s", r);
    p->state = SCARD_STATE_UNAWARE;
    p->card_in = false;
    p->c->host->log(p->c->ctx, MITTARI_LOG_INFO, "following reader '%s'", p->reader);
    cr_health(p->c, MITTARI_HEALTH_UP, NULL);
    return 0;
}

static void reader_gone(struct pc *p)
{
    p->c->host->log(p->c->ctx, MITTARI_LOG_WARNING, "reader '%s' is gone", p->reader);
    p->reader[0] = 0;
    p->card_in = false;
    down(p, "%s", "the reader is gone");
}

/* GET DATA for the UID. The answer's length (with SW1 SW2), or -1. */
static long get_uid(struct pc *p, SCARDHANDLE h, DWORD proto, uint8_t le, uint8_t *resp, DWORD size)
{
    const uint8_t apdu[] = {0xFF, 0xCA, 0x00, 0x00, le};
    const SCARD_IO_REQUEST *pci = proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
    DWORD n = size;
    LONG rv = SCardTransmit(h, pci, apdu, sizeof(apdu), NULL, resp, &n);

    if (rv != SCARD_S_SUCCESS || n < 2 || n > size) {
        if (rv != SCARD_W_REMOVED_CARD) /* taken away in between: nothing to say */
            cr_bad(p->c, "read_errors", "GET DATA failed");
        return -1;
    }
    return (long)n;
}

void cr_pcsc_uid(struct cr *c, const uint8_t *uid, size_t len)
{
    struct cr_subject s = {.len = len};

    if (len == 0 || len > CR_SUBJECT_MAX) {
        cr_bad(c, "bad_frames", "a UID of an impossible length was dropped");
        return;
    }
    /* ISO 14443-3: a 4-byte UID starting 08 is random, new at every tap */
    if (len == 4 && uid[0] == 0x08 && !c->conf->random_uids) {
        cr_bad(c, "random_uids",
               "a card with a random UID (a passport, some ID cards) was "
               "not counted");
        return;
    }
    memcpy(s.id, uid, len);
    /* other lengths (FeliCa IDm: 8) are not ISO 14443-A UIDs: their own space */
    s.space = len == 4 || len == 7 || len == 10 ? "iso14443" : "pcsc-uid";
    cr_card(c, &s);
}

/* SW1 SW2 of the answer to GET DATA (DEVICES.md section 5). */
void cr_pcsc_answer(struct cr *c, uint8_t *resp, long n, cr_pcsc_again_fn again, void *arg)
{
    if (n < 2 || n > CR_PCSC_RESP_MAX)
        return;
    uint16_t sw = (uint16_t)(resp[n - 2] << 8 | resp[n - 1]);

    if ((sw >> 8) == 0x6C) { /* wrong Le: ask again with the one SW2 gives */
        n = again(arg, (uint8_t)sw, resp, CR_PCSC_RESP_MAX);
        if (n < 2 || n > CR_PCSC_RESP_MAX)
            return;
        sw = (uint16_t)(resp[n - 2] << 8 | resp[n - 1]);
    }
    if (sw == 0x9000 || (sw == 0x6282 && n > 2)) /* 62 82: fewer bytes than Le 00 asked */
        cr_pcsc_uid(c, resp, (size_t)n - 2);
    else if (sw == 0x6A81)
        cr_bad(c, "unsupported_cards", "a card that gives no UID (6A 81) was ignored");
    else if (sw == 0x6300)
        cr_bad(c, "read_errors", "the reader could not read a card's UID (63 00)");
    else
        cr_bad(c, "read_errors", "unexpected answer to GET DATA");
}

struct again {
    struct pc *p;
    SCARDHANDLE h;
    DWORD proto;
};

static long ask_again(void *arg, uint8_t le, uint8_t *resp, size_t size)
{
    struct again *a = arg;
    return get_uid(a->p, a->h, a->proto, le, resp, (DWORD)size);
}

static void read_card(struct pc *p)
{
    SCARDHANDLE h;
    DWORD proto;
    uint8_t resp[CR_PCSC_RESP_MAX];
    LONG rv = SCardConnect(p->sc, p->reader, SCARD_SHARE_SHARED,
                           SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &h, &proto);

    if (rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD)
        return; /* gone before we could talk to it */
    if (rv != SCARD_S_SUCCESS) {
        cr_bad(p->c, "unsupported_cards", "a card the reader cannot talk to was ignored");
        return;
    }
    long n = get_uid(p, h, proto, 0x00, resp, sizeof(resp));
    struct again a = {p, h, proto};
    if (n >= 2)
        cr_pcsc_answer(p->c, resp, n, ask_again, &a);
    explicit_bzero(resp, sizeof(resp)); /* it held the UID */
    SCardDisconnect(h, SCARD_LEAVE_CARD);
}

static void on_state(struct pc *p, DWORD ev)
{
    bool present = ev & SCARD_STATE_PRESENT;
    /* the high word counts insertions and removals: a card swapped between two runs */
    bool swapped = (ev >> 16) != (p->state >> 16) && p->state != SCARD_STATE_UNAWARE;

    p->state = ev & ~(DWORD)SCARD_STATE_CHANGED;
    if (!present) {
        p->card_in = false;
        return;
    }
    if (p->card_in && !swapped)
        return;
    p->card_in = true;
    if (ev & SCARD_STATE_MUTE)
        cr_bad(p->c, "unsupported_cards", "a card that does not answer (mute) was ignored");
    else
        read_card(p);
}

static void watch_reader(struct pc *p)
{
    SCARD_READERSTATE rs = {.szReader = p->reader, .dwCurrentState = p->state};
    LONG rv = SCardGetStatusChange(p->sc, 0, &rs, 1);

    if (rv == SCARD_E_TIMEOUT)
        return; /* nothing changed */
    if (service_gone(rv)) {
        drop_context(p, rv);
        return;
    }
    if (rv == SCARD_E_UNKNOWN_READER ||
        (rv == SCARD_S_SUCCESS && (rs.dwEventState & SCARD_STATE_UNKNOWN))) {
        reader_gone(p);
        return;
    }
    if (rv != SCARD_S_SUCCESS) {
        cr_bad(p->c, "read_errors", "SCardGetStatusChange failed");
        return;
    }
    on_state(p, rs.dwEventState);
}

static int pc_work(void *arg)
{
    struct pc *p = arg;

    cr_expire(p->c);
    if (!p->reader[0] && p->c->host->now(p->c->ctx) < p->retry_at)
        return 0;
    if (!p->have_sc && establish(p))
        return 0;
    if (!p->reader[0] && find_reader(p))
        return 0;
    watch_reader(p);
    return 0;
}

static int pc_create(struct cr *c, void **state)
{
    struct pc *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->c = c;
    *state = p;
    return 0;
}

static int pc_start(void *state)
{
    struct pc *p = state;
    struct cr *c = p->c;
    return c->host->poll_start(c->ctx, (uint64_t)c->conf->pcsc_poll_ms, pc_work, NULL, p, &p->poll);
}

static void pc_stop(void *state)
{
    struct pc *p = state;
    if (p->poll)
        p->c->host->poll_stop(p->poll);
    p->poll = NULL;
}

/* No run is in flight any more (the agent waits for it before destroy). */
static void pc_destroy(void *state)
{
    struct pc *p = state;
    if (p->have_sc)
        SCardReleaseContext(p->sc);
    free(p);
}

const struct cr_backend cr_backend_pcsc = {
    .name = "pcsc",
    .create = pc_create,
    .start = pc_start,
    .stop = pc_stop,
    .destroy = pc_destroy,
};
